//! The leader's view of its followers: their progress, the in-sync replica set and the
//! high watermark. Pure: the clock is passed in (milliseconds), so every decision is
//! tested without time passing.
//!
//! The rules are Kafka's:
//!
//! - A follower's log end offset is the offset it asks for in its fetch.
//! - It is *caught up* at a fetch if it asked for the leader's log end offset at that
//!   moment, or if it asked for at least the log end offset the leader had at its
//!   previous fetch (it caught up with everything the leader had back then).
//! - The high watermark is the smallest log end offset over the ISR, the leader's own
//!   included. It only moves forward, and a follower that has not fetched yet holds it.
//! - Shrink: an ISR member that has not been caught up for `replica.lag.time.max.ms`
//!   leaves. Expand: a replica outside the ISR joins once its log end offset reaches the
//!   high watermark and the start of this leader's epoch.
//!
//! An ISR change takes effect only once it is written to the partition's state znode
//! ([`LeaderState::apply_isr`]); until then the old ISR holds the high watermark, so a
//! replica that the coordinator still lists as in sync never misses an acknowledged write.

use std::collections::BTreeMap;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset; -1 until it has fetched from this leader.
    pub log_end_offset: i64,
    pub last_caught_up_ms: i64,
    last_fetch_leader_end: i64,
    last_fetch_ms: i64,
}

/// The leader's replication state for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    pub me: i32,
    pub leader_epoch: i32,
    /// The log end offset when this broker became leader for `leader_epoch`.
    pub epoch_start_offset: i64,
    pub isr: Vec<i32>,
    /// The version of the state znode that `isr` was read from or written as.
    pub zk_version: i32,
    pub high_watermark: i64,
    followers: BTreeMap<i32, FollowerProgress>,
}

impl LeaderState {
    /// A new leader. Followers start unknown but counted as caught up now, so they get a
    /// full lag period to fetch before they can be dropped.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: i32,
        leader_epoch: i32,
        replicas: &[i32],
        isr: Vec<i32>,
        zk_version: i32,
        log_end_offset: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> LeaderState {
        let followers = replicas
            .iter()
            .filter(|&&r| r != me)
            .map(|&r| {
                (
                    r,
                    FollowerProgress {
                        log_end_offset: -1,
                        last_caught_up_ms: now_ms,
                        last_fetch_leader_end: -1,
                        last_fetch_ms: now_ms,
                    },
                )
            })
            .collect();
        let mut s = LeaderState {
            me,
            leader_epoch,
            epoch_start_offset: log_end_offset,
            isr,
            zk_version,
            high_watermark: high_watermark.min(log_end_offset),
            followers,
        };
        s.update_high_watermark(log_end_offset);
        s
    }

    pub fn follower(&self, replica: i32) -> Option<&FollowerProgress> {
        self.followers.get(&replica)
    }

    pub fn is_replica(&self, replica: i32) -> bool {
        self.followers.contains_key(&replica)
    }

    /// Replicas may be added by a reassignment; keep their progress otherwise.
    pub fn set_replicas(&mut self, replicas: &[i32], now_ms: i64) {
        self.followers
            .retain(|r, _| replicas.contains(r) && *r != self.me);
        for &r in replicas {
            if r != self.me {
                self.followers.entry(r).or_insert(FollowerProgress {
                    log_end_offset: -1,
                    last_caught_up_ms: now_ms,
                    last_fetch_leader_end: -1,
                    last_fetch_ms: now_ms,
                });
            }
        }
    }

    /// A follower fetched from `fetch_offset` while the leader's log ended at
    /// `leader_end`. Returns true if the high watermark moved.
    pub fn on_follower_fetch(
        &mut self,
        replica: i32,
        fetch_offset: i64,
        leader_end: i64,
        now_ms: i64,
    ) -> bool {
        let Some(f) = self.followers.get_mut(&replica) else {
            return false;
        };
        if fetch_offset >= leader_end {
            f.last_caught_up_ms = now_ms;
        } else if f.last_fetch_leader_end >= 0 && fetch_offset >= f.last_fetch_leader_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.last_fetch_leader_end = leader_end;
        f.last_fetch_ms = now_ms;
        f.log_end_offset = fetch_offset;
        self.update_high_watermark(leader_end)
    }

    /// Recomputes the high watermark from the ISR; true if it moved forward.
    pub fn update_high_watermark(&mut self, leader_end: i64) -> bool {
        let mut hw = leader_end;
        for r in &self.isr {
            if *r == self.me {
                continue;
            }
            match self.followers.get(r) {
                Some(f) if f.log_end_offset >= 0 => hw = hw.min(f.log_end_offset),
                // An ISR member we have not heard from (or do not know) holds it.
                _ => return false,
            }
        }
        if hw > self.high_watermark {
            self.high_watermark = hw;
            true
        } else {
            false
        }
    }

    /// The ISR without the members that have lagged for longer than `lag_max_ms`, if that
    /// differs. The leader never removes itself.
    pub fn shrink_candidate(&self, now_ms: i64, lag_max_ms: i64) -> Option<Vec<i32>> {
        let isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| {
                *r == self.me
                    || self
                        .followers
                        .get(r)
                        .is_none_or(|f| now_ms - f.last_caught_up_ms <= lag_max_ms)
            })
            .collect();
        (isr.len() != self.isr.len()).then_some(isr)
    }

    /// The ISR with the replicas that have caught up added, if any has. Only brokers that
    /// are `alive` (registered) qualify, and only on progress reported since they left the
    /// ISR: a dead follower's last position must not bring it back.
    pub fn expand_candidate(&self, alive: impl Fn(i32) -> bool) -> Option<Vec<i32>> {
        let mut isr = self.isr.clone();
        for (r, f) in &self.followers {
            if !isr.contains(r)
                && alive(*r)
                && f.log_end_offset >= 0
                && f.log_end_offset >= self.high_watermark
                && f.log_end_offset >= self.epoch_start_offset
            {
                isr.push(*r);
            }
        }
        (isr.len() != self.isr.len()).then(|| {
            isr.sort_unstable();
            isr
        })
    }

    /// Adopts an ISR that is now in the state znode (written by us or by the controller).
    /// Returns true if the high watermark moved.
    pub fn apply_isr(&mut self, isr: Vec<i32>, zk_version: i32, leader_end: i64) -> bool {
        for (r, f) in self.followers.iter_mut() {
            if self.isr.contains(r) && !isr.contains(r) {
                // It must fetch again before it can rejoin.
                f.log_end_offset = -1;
            }
        }
        self.isr = isr;
        self.zk_version = zk_version;
        self.update_high_watermark(leader_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(isr: &[i32], leo: i64) -> LeaderState {
        LeaderState::new(1, 5, &[1, 2, 3], isr.to_vec(), 7, leo, 0, 1_000)
    }

    #[test]
    fn high_watermark_is_the_smallest_isr_log_end_and_waits_for_silent_members() {
        let mut s = leader(&[1, 2, 3], 10);
        assert_eq!(s.high_watermark, 0, "followers have not fetched yet");
        assert!(!s.on_follower_fetch(2, 10, 10, 1_100));
        assert_eq!(s.high_watermark, 0, "follower 3 is still unknown");
        assert!(s.on_follower_fetch(3, 6, 10, 1_100));
        assert_eq!(s.high_watermark, 6);
        // It never goes back, even if a follower reports less (it truncated).
        assert!(!s.on_follower_fetch(3, 4, 10, 1_200));
        assert_eq!(s.high_watermark, 6);
        assert!(s.on_follower_fetch(3, 10, 10, 1_300));
        assert_eq!(s.high_watermark, 10);
    }

    #[test]
    fn a_leader_alone_in_the_isr_has_its_log_end_as_high_watermark() {
        let mut s = leader(&[1], 10);
        assert_eq!(s.high_watermark, 10);
        assert!(s.update_high_watermark(12));
        assert_eq!(s.high_watermark, 12);
    }

    #[test]
    fn a_lagging_follower_is_dropped_after_the_lag_time_and_not_before() {
        let mut s = leader(&[1, 2, 3], 100);
        s.on_follower_fetch(2, 100, 100, 2_000);
        s.on_follower_fetch(3, 50, 100, 2_000);
        // Follower 3 got everything the leader had at its previous fetch: caught up then.
        s.on_follower_fetch(3, 100, 120, 5_000);
        assert_eq!(s.follower(3).map(|f| f.last_caught_up_ms), Some(2_000));
        assert_eq!(s.shrink_candidate(11_000, 10_000), None);
        s.on_follower_fetch(2, 120, 120, 11_500);
        assert_eq!(s.shrink_candidate(12_001, 10_000), Some(vec![1, 2]));
        // A stopped follower (no fetches at all) goes the same way.
        let fresh = leader(&[1, 2, 3], 0);
        assert_eq!(fresh.shrink_candidate(11_000, 10_000), None);
        assert_eq!(fresh.shrink_candidate(11_001, 10_000), Some(vec![1]));
    }

    #[test]
    fn isr_changes_take_effect_only_when_applied() {
        let mut s = leader(&[1, 2, 3], 10);
        s.on_follower_fetch(2, 10, 10, 1_100);
        let shrunk = s.shrink_candidate(100_000, 10_000).unwrap();
        assert_eq!(shrunk, vec![1], "both followers lagged long enough");
        assert_eq!(s.high_watermark, 0, "not applied yet: follower 3 holds it");
        assert!(s.apply_isr(vec![1, 2], 8, 10));
        assert_eq!((s.high_watermark, s.zk_version), (10, 8));
    }

    #[test]
    fn a_follower_rejoins_once_it_reaches_the_high_watermark_and_the_epoch_start() {
        let mut s = LeaderState::new(1, 5, &[1, 2, 3], vec![1, 2], 3, 50, 40, 0);
        assert_eq!(s.epoch_start_offset, 50);
        s.on_follower_fetch(2, 60, 60, 100);
        assert_eq!(s.high_watermark, 60);
        s.on_follower_fetch(3, 45, 60, 100);
        assert_eq!(
            s.expand_candidate(|_| true),
            None,
            "behind the high watermark"
        );
        s.on_follower_fetch(3, 60, 60, 200);
        assert_eq!(s.expand_candidate(|r| r != 3), None, "not registered");
        assert_eq!(s.expand_candidate(|_| true), Some(vec![1, 2, 3]));
        assert!(!s.apply_isr(vec![1, 2, 3], 4, 60));
        assert_eq!(s.expand_candidate(|_| true), None);
        // Dropped (it died): its old position does not bring it back; a new fetch does.
        s.apply_isr(vec![1, 2], 5, 60);
        assert_eq!(s.expand_candidate(|_| true), None);
        s.on_follower_fetch(3, 60, 60, 300);
        assert_eq!(s.expand_candidate(|_| true), Some(vec![1, 2, 3]));
    }
}
