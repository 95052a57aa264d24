//! The leader epoch cache: for each leader epoch, the first offset written in it
//! (KIP-101). OffsetForLeaderEpoch (KIP-279) answers from it, so a follower of a new
//! leader truncates exactly the offsets the leader does not have, and logs never diverge.
//!
//! The cache is pure state; the partition log persists it in `leader-epoch-checkpoint`
//! after every change. Entries are strictly increasing in both epoch and start offset.

/// Kafka's "no epoch".
pub const UNDEFINED_EPOCH: i32 = -1;

/// One leader epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// The first offset of that epoch.
    pub start_offset: i64,
}

/// The answer to OffsetForLeaderEpoch: the largest epoch at or below the requested one,
/// and the offset where it ends (the start of the next epoch, or the log end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    /// The largest known epoch not above the requested one (or the requested one itself
    /// when it is older than everything cached).
    pub leader_epoch: i32,
    /// The exclusive end offset of that epoch.
    pub end_offset: i64,
}

/// Epoch → start offset, ordered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// A cache holding `entries`, dropping any that break monotonicity (a damaged
    /// checkpoint): such entries would make OffsetForLeaderEpoch answers wrong.
    pub fn from_entries(entries: Vec<EpochEntry>) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for e in entries {
            cache.assign(e.epoch, e.start_offset);
        }
        cache
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest entry.
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`, if `epoch` is newer than every cached
    /// epoch (negative epochs are "none" and ignored). Entries starting at or after
    /// `start_offset` are dropped first: an epoch that never wrote anything is superseded.
    /// Returns whether the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        if self.latest().is_some_and(|l| epoch <= l.epoch) {
            return false;
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Drops entries starting at or after `end_offset` (after the log was truncated to it).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// Forgets offsets below `start_offset` (the log start moved): entries wholly below it
    /// go, and the epoch covering it now starts there.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covering = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if covering == 0 {
            return false;
        }
        let keep_from = covering - 1;
        if keep_from == 0 && self.entries[0].start_offset == start_offset {
            return false;
        }
        self.entries.drain(..keep_from);
        self.entries[0].start_offset = start_offset;
        true
    }

    /// Drops every entry.
    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// The epoch that wrote `offset`, if known.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let i = self.entries.partition_point(|e| e.start_offset <= offset);
        i.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// OffsetForLeaderEpoch, as Kafka's `LeaderEpochFileCache.endOffsetFor`:
    ///
    /// - the latest epoch ends at the log end offset;
    /// - an older epoch ends where the next larger cached epoch starts, and is reported as
    ///   the largest cached epoch at or below it;
    /// - an epoch older than everything cached reports itself, ending at the first cached
    ///   epoch's start (that data was deleted; the follower starts from there);
    /// - an undefined (negative) epoch, an epoch newer than the latest, or an empty cache
    ///   give `None` (UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET on the wire).
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<EpochEndOffset> {
        if epoch < 0 {
            return None;
        }
        let latest = self.latest()?;
        if epoch == latest.epoch {
            return Some(EpochEndOffset {
                leader_epoch: epoch,
                end_offset: log_end_offset,
            });
        }
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let next = self.entries.get(higher)?;
        let leader_epoch = match higher.checked_sub(1) {
            Some(floor) => self.entries[floor].epoch,
            None => epoch,
        };
        Some(EpochEndOffset {
            leader_epoch,
            end_offset: next.start_offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(pairs: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for &(e, o) in pairs {
            assert!(c.assign(e, o));
        }
        c
    }

    fn pairs(c: &LeaderEpochCache) -> Vec<(i32, i64)> {
        c.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn assign_keeps_entries_monotonic() {
        let mut c = cache(&[(0, 0), (2, 10)]);
        assert!(!c.assign(2, 15), "same epoch again");
        assert!(!c.assign(1, 20), "older epoch");
        assert!(!c.assign(-1, 30), "no epoch");
        // Epoch 3 became leader at 10 but wrote nothing; epoch 4 starts at 10 too.
        assert!(c.assign(3, 12));
        assert!(c.assign(4, 12));
        assert_eq!(pairs(&c), vec![(0, 0), (2, 10), (4, 12)]);
        let damaged = LeaderEpochCache::from_entries(vec![
            EpochEntry {
                epoch: 5,
                start_offset: 0,
            },
            EpochEntry {
                epoch: 3,
                start_offset: 9,
            },
        ]);
        assert_eq!(pairs(&damaged), vec![(5, 0)]);
    }

    #[test]
    fn end_offset_for_epoch() {
        let c = cache(&[(1, 0), (3, 100), (6, 250)]);
        let eo = |e| {
            c.end_offset_for(e, 400)
                .map(|r| (r.leader_epoch, r.end_offset))
        };
        assert_eq!(eo(6), Some((6, 400)), "latest epoch ends at the log end");
        assert_eq!(eo(3), Some((3, 250)));
        assert_eq!(eo(4), Some((3, 250)), "largest epoch <= 4 is 3");
        assert_eq!(eo(5), Some((3, 250)));
        assert_eq!(eo(1), Some((1, 100)));
        assert_eq!(eo(2), Some((1, 100)));
        assert_eq!(eo(0), Some((0, 0)), "older than all: first start");
        assert_eq!(eo(7), None, "newer than the latest");
        assert_eq!(eo(-1), None);
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 5), None);
        assert_eq!(c.epoch_for_offset(99), Some(1));
        assert_eq!(c.epoch_for_offset(100), Some(3));
        assert_eq!(c.epoch_for_offset(1000), Some(6));
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(1, 0), (3, 100), (6, 250)]);
        assert!(!c.truncate_from_end(300));
        assert!(c.truncate_from_end(250));
        assert_eq!(pairs(&c), vec![(1, 0), (3, 100)]);
        assert!(c.truncate_from_end(50));
        assert_eq!(pairs(&c), vec![(1, 0)]);

        let mut c = cache(&[(1, 0), (3, 100), (6, 250)]);
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(150));
        assert_eq!(pairs(&c), vec![(3, 150), (6, 250)]);
        assert!(c.truncate_from_start(250));
        assert_eq!(pairs(&c), vec![(6, 250)]);
        assert!(c.truncate_from_start(300));
        assert_eq!(pairs(&c), vec![(6, 300)]);
        assert!(c.clear());
        assert!(c.entries().is_empty());
    }
}
