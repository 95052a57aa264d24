//! A group's committed offsets and Kafka's rules for expiring them.
//!
//! Pure bookkeeping: the caller validates a commit with `Group::validate_commit`, writes
//! the offset record to `__consumer_offsets`, and stores it here once written.
//!
//! Expiry follows Kafka's `OffsetExpirationCondition` (`offsets.retention.minutes`,
//! default 7 days):
//!
//! - a commit that carried its own expiry time (OffsetCommit v1) expires then;
//! - a group that uses group management expires its offsets only while Empty, a
//!   retention period after it became Empty;
//! - a group that never used group management (commits with generation -1 only) expires
//!   each offset a retention period after its commit.
//!
//! Kafka also expires the offsets of topics a Stable consumer group no longer subscribes
//! to; that needs the consumer protocol's subscription format and is left out.

use crate::log::TopicPartition;
use std::collections::BTreeMap;

/// Kafka's default `offsets.retention.minutes` (7 days), in milliseconds.
pub const DEFAULT_OFFSETS_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    /// OffsetCommit v6+: the leader epoch of the last consumed record.
    pub leader_epoch: Option<i32>,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only for commits that asked for their own retention.
    pub expire_timestamp_ms: Option<i64>,
}

/// How a group's offsets age (see the module docs); from `Group::offset_expiry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetExpiry {
    /// Each offset ages from its commit time.
    SinceCommit,
    /// Every offset ages from this time (when the group became Empty).
    Since(i64),
}

/// The committed offsets of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetStore {
    offsets: BTreeMap<TopicPartition, CommittedOffset>,
}

impl OffsetStore {
    pub fn new() -> OffsetStore {
        OffsetStore::default()
    }

    /// Stores a commit (call once its record is written); returns the one it replaced.
    pub fn commit(
        &mut self,
        tp: TopicPartition,
        offset: CommittedOffset,
    ) -> Option<CommittedOffset> {
        self.offsets.insert(tp, offset)
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<&CommittedOffset> {
        self.offsets.get(tp)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, &CommittedOffset)> {
        self.offsets.iter()
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Removes one offset (OffsetDelete, a deleted partition, a tombstone read back).
    pub fn remove(&mut self, tp: &TopicPartition) -> Option<CommittedOffset> {
        self.offsets.remove(tp)
    }

    /// Removes every offset of a deleted topic; returns the partitions removed.
    pub fn remove_topic(&mut self, topic: &str) -> Vec<TopicPartition> {
        let gone: Vec<TopicPartition> = self
            .offsets
            .keys()
            .filter(|tp| tp.topic == topic)
            .cloned()
            .collect();
        for tp in &gone {
            self.offsets.remove(tp);
        }
        gone
    }

    /// True if `offset` has expired at `now_ms`.
    pub fn is_expired(
        offset: &CommittedOffset,
        expiry: OffsetExpiry,
        now_ms: i64,
        retention_ms: i64,
    ) -> bool {
        if let Some(at) = offset.expire_timestamp_ms {
            return now_ms >= at;
        }
        let base = match expiry {
            OffsetExpiry::SinceCommit => offset.commit_timestamp_ms,
            OffsetExpiry::Since(t) => t,
        };
        now_ms - base >= retention_ms
    }

    /// Removes the offsets that have expired and returns them (the caller writes a
    /// tombstone for each). `expiry` is `Group::offset_expiry()`; `None` expires nothing.
    pub fn remove_expired(
        &mut self,
        expiry: Option<OffsetExpiry>,
        now_ms: i64,
        retention_ms: i64,
    ) -> Vec<TopicPartition> {
        let Some(expiry) = expiry else {
            return Vec::new();
        };
        let gone: Vec<TopicPartition> = self
            .offsets
            .iter()
            .filter(|(_, o)| Self::is_expired(o, expiry, now_ms, retention_ms))
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in &gone {
            self.offsets.remove(tp);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(offset: i64, at: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: Some(3),
            metadata: String::new(),
            commit_timestamp_ms: at,
            expire_timestamp_ms: None,
        }
    }

    #[test]
    fn a_commit_replaces_the_previous_one() {
        let mut s = OffsetStore::new();
        let tp = TopicPartition::new("t", 0);
        assert_eq!(s.commit(tp.clone(), committed(5, 1)), None);
        assert_eq!(
            s.commit(tp.clone(), committed(9, 2)).map(|o| o.offset),
            Some(5)
        );
        assert_eq!(
            s.get(&tp).map(|o| (o.offset, o.leader_epoch)),
            Some((9, Some(3)))
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn an_empty_group_expires_everything_a_retention_period_after_it_emptied() {
        let mut s = OffsetStore::new();
        s.commit(TopicPartition::new("t", 0), committed(1, 0));
        s.commit(TopicPartition::new("t", 1), committed(1, 900));
        // Empty since 1000: nothing goes before 1000 + retention, whatever the commit time.
        assert!(s
            .remove_expired(Some(OffsetExpiry::Since(1_000)), 1_099, 100)
            .is_empty());
        let gone = s.remove_expired(Some(OffsetExpiry::Since(1_000)), 1_100, 100);
        assert_eq!(gone.len(), 2);
        assert!(s.is_empty());
    }

    #[test]
    fn a_group_without_group_management_ages_each_offset_from_its_commit() {
        let mut s = OffsetStore::new();
        s.commit(TopicPartition::new("t", 0), committed(1, 0));
        s.commit(TopicPartition::new("t", 1), committed(1, 50));
        let gone = s.remove_expired(Some(OffsetExpiry::SinceCommit), 100, 100);
        assert_eq!(gone, vec![TopicPartition::new("t", 0)]);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn an_explicit_expiry_wins_and_a_group_with_members_keeps_its_offsets() {
        let mut s = OffsetStore::new();
        let mut o = committed(1, 0);
        o.expire_timestamp_ms = Some(10);
        s.commit(TopicPartition::new("t", 0), o);
        assert!(s.remove_expired(None, i64::MAX / 2, 1).is_empty());
        assert_eq!(
            s.remove_expired(Some(OffsetExpiry::SinceCommit), 10, 1_000)
                .len(),
            1
        );
    }

    #[test]
    fn removing_a_topic_removes_all_its_partitions() {
        let mut s = OffsetStore::new();
        for p in 0..3 {
            s.commit(TopicPartition::new("a", p), committed(1, 0));
        }
        s.commit(TopicPartition::new("b", 0), committed(1, 0));
        assert_eq!(s.remove_topic("a").len(), 3);
        assert_eq!(s.iter().count(), 1);
        assert!(s.remove(&TopicPartition::new("b", 0)).is_some());
    }
}
