//! Per-partition log settings, named and defaulted like Kafka's topic configs
//! (`segment.bytes`, `segment.ms`, `retention.ms`, `retention.bytes`,
//! `max.message.bytes`, `index.interval.bytes`, `cleanup.policy`,
//! `min.cleanable.dirty.ratio`, `delete.retention.ms`, `min.compaction.lag.ms`) plus the
//! fsync policy.

use super::batch::HEADER_LEN;
use super::error::LogError;
use std::time::Duration;

/// When appended data is fsynced.
///
/// The default is [`FsyncPolicy::Never`], as in Kafka (`flush.messages` and `flush.ms`
/// unset): durability comes from replication (acks=all waits for the in-sync replicas),
/// and a broker that crashes recovers its tail from the leader. Even then a segment is
/// fsynced when it rolls and every log is fsynced on a clean close, so the recovery point
/// keeps up and a restart only rescans the active segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Every append is fsynced before it returns. A caller that wants group commit uses
    /// `Never` on the log and calls `PartitionLog::flush` once for a group of appends
    /// before acknowledging them.
    Always,
    /// Appends fsync when this much time has passed since the last fsync; idle logs are
    /// fsynced by `LogManager::flush_due`, which the broker calls periodically.
    Interval(Duration),
    /// Only rolls, closes and explicit `flush` calls fsync.
    #[default]
    Never,
}

/// `cleanup.policy`: what keeps a log from growing without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// `delete` (Kafka's default): whole segments are deleted by `retention.ms` and
    /// `retention.bytes`.
    #[default]
    Delete,
    /// `compact`: the log cleaner keeps the latest record of every key (see
    /// [`cleaner`](super::cleaner)); nothing is deleted by age or size.
    Compact,
    /// `compact,delete`: both; retention deletes segments of the compacted log.
    CompactDelete,
}

impl CleanupPolicy {
    /// Parses Kafka's list syntax: `delete`, `compact`, or both separated by a comma in
    /// either order (spaces around items allowed). `None` for anything else.
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let (mut compact, mut delete) = (false, false);
        for item in value.split(',') {
            match item.trim() {
                "compact" => compact = true,
                "delete" => delete = true,
                _ => return None,
            }
        }
        match (compact, delete) {
            (true, true) => Some(CleanupPolicy::CompactDelete),
            (true, false) => Some(CleanupPolicy::Compact),
            (false, true) => Some(CleanupPolicy::Delete),
            (false, false) => None,
        }
    }

    /// True if retention by time and size applies.
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    /// True if the log cleaner compacts the log.
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    /// The config value, as Kafka spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

/// Settings of one partition log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: a segment rolls before it would grow past this (default 1 GiB).
    pub segment_bytes: u64,
    /// `segment.ms`: a segment rolls once this long has passed since its first append,
    /// measured on the broker's clock (default 7 days).
    pub segment_ms: u64,
    /// `retention.ms`: non-active segments whose largest timestamp is older than this are
    /// deleted (default 7 days; `None` keeps data forever, Kafka's -1).
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: the oldest non-active segments are deleted while the log is
    /// larger than this (default `None`, Kafka's -1).
    pub retention_bytes: Option<u64>,
    /// `max.message.bytes`: the largest batch accepted (default 1048588, Kafka's).
    pub max_message_bytes: usize,
    /// `index.interval.bytes`: bytes of log between offset/time index entries (4096).
    pub index_interval_bytes: u64,
    /// When appends are fsynced.
    pub fsync: FsyncPolicy,
    /// `cleanup.policy`: retention by time and size applies only if it includes `delete`;
    /// the log cleaner compacts the log only if it includes `compact`.
    pub cleanup_policy: CleanupPolicy,
    /// `min.cleanable.dirty.ratio`: the cleaner compacts a log once the bytes written since
    /// its last clean make up at least this share of the cleanable bytes (default 0.5).
    pub min_cleanable_dirty_ratio: f64,
    /// `delete.retention.ms`: how long a tombstone (a record with a null value) survives
    /// after the cleaner first cleaned it, so consumers that read the log slowly still see
    /// the delete (default 1 day).
    pub delete_retention_ms: u64,
    /// `min.compaction.lag.ms`: records younger than this (by their segment's largest
    /// timestamp) are not compacted yet (default 0).
    pub min_compaction_lag_ms: u64,
}

/// Seven days in milliseconds, Kafka's default for `segment.ms` and `retention.ms`.
const WEEK_MS: u64 = 7 * DAY_MS;
/// One day in milliseconds, Kafka's default for `delete.retention.ms`.
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: WEEK_MS,
            retention_ms: Some(WEEK_MS),
            retention_bytes: None,
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Never,
            cleanup_policy: CleanupPolicy::Delete,
            min_cleanable_dirty_ratio: 0.5,
            delete_retention_ms: DAY_MS,
            min_compaction_lag_ms: 0,
        }
    }
}

impl LogConfig {
    /// Checks ranges: index entries hold 32-bit file positions, so a segment is at most
    /// `i32::MAX` bytes (Kafka's limit too), and must hold at least one batch header.
    pub fn validate(&self) -> Result<(), LogError> {
        if self.segment_bytes < HEADER_LEN as u64 || self.segment_bytes > i32::MAX as u64 {
            return Err(LogError::InvalidConfig(format!(
                "segment.bytes {} is outside [{HEADER_LEN}, {}]",
                self.segment_bytes,
                i32::MAX
            )));
        }
        if self.segment_ms == 0 {
            return Err(LogError::InvalidConfig(
                "segment.ms must be positive".into(),
            ));
        }
        if self.segment_ms > i64::MAX as u64 {
            return Err(LogError::InvalidConfig("segment.ms is too large".into()));
        }
        if self.retention_ms.is_some_and(|ms| ms > i64::MAX as u64) {
            return Err(LogError::InvalidConfig("retention.ms is too large".into()));
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return Err(LogError::InvalidConfig(format!(
                "min.cleanable.dirty.ratio {} is outside [0, 1]",
                self.min_cleanable_dirty_ratio
            )));
        }
        if self.delete_retention_ms > i64::MAX as u64 {
            return Err(LogError::InvalidConfig(
                "delete.retention.ms is too large".into(),
            ));
        }
        if self.min_compaction_lag_ms > i64::MAX as u64 {
            return Err(LogError::InvalidConfig(
                "min.compaction.lag.ms is too large".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas_and_valid() {
        let c = LogConfig::default();
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.retention_ms, Some(604_800_000));
        assert_eq!(c.index_interval_bytes, 4096);
        assert_eq!(c.fsync, FsyncPolicy::Never);
        c.validate().unwrap();
        let bad = LogConfig {
            segment_bytes: 10,
            ..LogConfig::default()
        };
        assert!(matches!(bad.validate(), Err(LogError::InvalidConfig(_))));
        let bad = LogConfig {
            segment_bytes: 1 << 32,
            ..LogConfig::default()
        };
        assert!(bad.validate().is_err());
        assert_eq!(c.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(c.delete_retention_ms, 86_400_000);
        assert_eq!(c.min_compaction_lag_ms, 0);
        let bad = LogConfig {
            min_cleanable_dirty_ratio: 1.5,
            ..LogConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn cleanup_policies_parse_like_kafkas_lists() {
        for (text, policy) in [
            ("delete", CleanupPolicy::Delete),
            ("compact", CleanupPolicy::Compact),
            ("compact,delete", CleanupPolicy::CompactDelete),
            ("delete, compact", CleanupPolicy::CompactDelete),
            ("compact,compact", CleanupPolicy::Compact),
        ] {
            assert_eq!(CleanupPolicy::parse(text), Some(policy), "{text}");
        }
        for bad in ["", "Compact", "compact;delete", "compact,", "none"] {
            assert_eq!(CleanupPolicy::parse(bad), None, "{bad:?}");
        }
        assert!(CleanupPolicy::Delete.deletes() && !CleanupPolicy::Delete.compacts());
        assert!(!CleanupPolicy::Compact.deletes() && CleanupPolicy::Compact.compacts());
        assert!(CleanupPolicy::CompactDelete.deletes() && CleanupPolicy::CompactDelete.compacts());
        assert_eq!(CleanupPolicy::CompactDelete.as_str(), "compact,delete");
    }
}
