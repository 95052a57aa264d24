//! Where a follower cuts its log before it fetches from a new leader (KIP-101, KIP-279).
//!
//! The follower asks the leader (OffsetForLeaderEpoch) for the end offset of its own latest
//! epoch. The leader answers with the largest epoch it has at or below that one, and where
//! that epoch ends in its log. If the follower knows that epoch too, the logs agree up to
//! the smaller of the two end offsets, and everything above is cut. If it does not, the
//! follower cuts to where its own epochs below the leader's answer end, and asks again
//! with its (now older) latest epoch: each round removes at least one epoch, so it ends.
//! Truncating to the high watermark is used only when the leader has no epoch
//! information at all, as Kafka does.

/// The leader's answer, as (epoch, end offset); negative values mean undefined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderEpochEnd {
    pub epoch: i32,
    pub end_offset: i64,
}

/// One step of the truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Cut the log to this offset (nothing happens if it is at or above the log end).
    pub offset: i64,
    /// False: ask the leader again with the follower's latest epoch after cutting.
    pub complete: bool,
}

/// Decides the next cut. `follower_end_for` is the follower's own OffsetForLeaderEpoch
/// lookup: the largest epoch at or below the given one and where it ends.
pub fn next_truncation(
    leader: LeaderEpochEnd,
    follower_log_end: i64,
    follower_high_watermark: i64,
    follower_end_for: impl Fn(i32) -> Option<(i32, i64)>,
) -> Truncation {
    if leader.end_offset < 0 {
        return Truncation {
            offset: follower_high_watermark.min(follower_log_end),
            complete: true,
        };
    }
    if leader.epoch < 0 {
        return Truncation {
            offset: leader.end_offset.min(follower_log_end),
            complete: true,
        };
    }
    match follower_end_for(leader.epoch) {
        Some((epoch, end)) if epoch == leader.epoch => Truncation {
            offset: end.min(leader.end_offset).min(follower_log_end),
            complete: true,
        },
        Some((_, end)) => Truncation {
            offset: end.min(follower_log_end),
            complete: false,
        },
        None => Truncation {
            offset: leader.end_offset.min(follower_log_end),
            complete: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::epoch_cache::LeaderEpochCache;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for &(e, o) in entries {
            c.assign(e, o);
        }
        c
    }

    /// Runs the protocol between two epoch caches to the end, as the fetcher does, and
    /// returns where the follower ends up.
    fn converge(
        leader: &LeaderEpochCache,
        leader_end: i64,
        follower: &mut LeaderEpochCache,
        mut follower_end: i64,
        follower_hw: i64,
    ) -> i64 {
        for _ in 0..10 {
            let Some(latest) = follower.latest() else {
                return follower_end;
            };
            let answer = leader.end_offset_for(latest.epoch, leader_end).map_or(
                LeaderEpochEnd {
                    epoch: -1,
                    end_offset: -1,
                },
                |e| LeaderEpochEnd {
                    epoch: e.leader_epoch,
                    end_offset: e.end_offset,
                },
            );
            let snapshot = follower.clone();
            let t = next_truncation(answer, follower_end, follower_hw, |e| {
                snapshot
                    .end_offset_for(e, follower_end)
                    .map(|x| (x.leader_epoch, x.end_offset))
            });
            if t.offset < follower_end {
                follower_end = t.offset;
                follower.truncate_from_end(follower_end);
            }
            if t.complete {
                return follower_end;
            }
        }
        panic!("truncation did not converge");
    }

    #[test]
    fn a_follower_that_agrees_keeps_everything() {
        let leader = cache(&[(0, 0), (1, 50)]);
        let mut follower = cache(&[(0, 0), (1, 50)]);
        assert_eq!(converge(&leader, 80, &mut follower, 70, 60), 70);
    }

    #[test]
    fn a_diverged_follower_is_cut_back_to_where_the_logs_agree() {
        // The follower led epoch 2 and wrote 100..120 that nobody else got; the new leader
        // (epoch 3) had only reached 100 in epoch 1, and wrote on from there.
        let leader = cache(&[(0, 0), (1, 50), (3, 100)]);
        let mut follower = cache(&[(0, 0), (1, 50), (2, 100)]);
        let end = converge(&leader, 140, &mut follower, 120, 90);
        assert_eq!(end, 100, "epoch 2's records must go, and nothing below");
        assert_eq!(follower.latest().map(|e| e.epoch), Some(1));
    }

    #[test]
    fn a_follower_whose_epoch_the_leader_never_had_asks_again() {
        // The follower has epochs 1 and 2; the leader's log has epochs 0 and 3 only.
        let leader = cache(&[(0, 0), (3, 40)]);
        let mut follower = cache(&[(0, 0), (1, 30), (2, 35)]);
        // Asked for epoch 2, the leader answers epoch 0 ending at 40; the follower's own
        // epoch 0 ends at 30, so it cuts there (complete: it knows epoch 0).
        let end = converge(&leader, 60, &mut follower, 38, 0);
        assert_eq!(end, 30);
        let t = next_truncation(
            LeaderEpochEnd {
                epoch: 1,
                end_offset: 40,
            },
            38,
            0,
            |_| Some((0, 30)),
        );
        assert_eq!(
            t,
            Truncation {
                offset: 30,
                complete: false
            }
        );
    }

    #[test]
    fn a_leader_without_epochs_means_the_high_watermark() {
        let t = next_truncation(
            LeaderEpochEnd {
                epoch: -1,
                end_offset: -1,
            },
            120,
            90,
            |_| None,
        );
        assert_eq!(
            t,
            Truncation {
                offset: 90,
                complete: true
            }
        );
    }

    #[test]
    fn a_follower_behind_the_leader_is_never_cut_above_its_end() {
        let leader = cache(&[(0, 0), (4, 100)]);
        let mut follower = cache(&[(0, 0)]);
        assert_eq!(converge(&leader, 500, &mut follower, 80, 80), 80);
    }
}
