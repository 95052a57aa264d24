//! The log manager (Kafka's `LogManager`): every partition log of one data directory.
//!
//! On start it recovers each `<topic>-<partition>` directory, using the data directory's
//! `recovery-point-offset-checkpoint` (how much of each log is known fsynced, so how much
//! must be rescanned), `log-start-offset-checkpoint` and `cleaner-offset-checkpoint` (how
//! far each compacted log is cleaned). It creates and deletes partition logs and writes
//! those checkpoints.
//!
//! Each log sits behind its own `RwLock` ([`SharedPartitionLog`]): the broker caches the
//! handles of the partitions it serves, so produce and fetch never touch a global lock,
//! and retention and checkpoints take one partition's lock at a time. The manager starts
//! no threads; the broker's periodic tasks call [`LogManager::enforce_retention`],
//! [`LogManager::flush_due`], [`LogManager::write_checkpoints`] and the log cleaner
//! ([`LogManager::cleaner`] then [`LogCleaner::run`] without holding the manager, or
//! [`LogManager::clean`]).

use super::checkpoint::{
    self, CheckpointError, CLEANER_OFFSET_CHECKPOINT, LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
};
use super::cleaner::{CleanerConfig, CleanerSummary, LogCleaner};
use super::config::LogConfig;
use super::error::LogError;
use super::partition::PartitionLog;
use super::topic_partition::TopicPartition;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tracing::{debug, error, info, warn};

/// A partition log shared between the manager and the broker's request handlers.
pub type SharedPartitionLog = Arc<RwLock<PartitionLog>>;

/// Suffix of a partition directory being deleted (renamed first, so a crash midway leaves
/// a directory that is not mistaken for a log and is removed on the next start).
const DELETE_SUFFIX: &str = ".delete";

/// What a maintenance pass over all logs did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceSummary {
    /// Segments deleted by retention.
    pub deleted_segments: usize,
    /// Bytes deleted by retention.
    pub deleted_bytes: u64,
    /// Logs flushed (by [`LogManager::flush_due`]).
    pub flushed: usize,
    /// Partitions whose log failed during the pass (now refusing writes, and logged).
    pub failed: Vec<TopicPartition>,
}

/// All partition logs in one data directory.
#[derive(Debug)]
pub struct LogManager {
    data_dir: PathBuf,
    default_config: LogConfig,
    logs: BTreeMap<TopicPartition, SharedPartitionLog>,
    cleaner_config: CleanerConfig,
    /// What `cleaner-offset-checkpoint` holds, so it is rewritten only when it changes.
    cleaner_checkpoint: Mutex<Option<Vec<(TopicPartition, i64)>>>,
}

pub(super) fn read_lock<'a>(
    tp: &TopicPartition,
    log: &'a SharedPartitionLog,
) -> Result<RwLockReadGuard<'a, PartitionLog>, LogError> {
    log.read().map_err(|_| LogError::LockPoisoned(tp.clone()))
}

pub(super) fn write_lock<'a>(
    tp: &TopicPartition,
    log: &'a SharedPartitionLog,
) -> Result<RwLockWriteGuard<'a, PartitionLog>, LogError> {
    log.write().map_err(|_| LogError::LockPoisoned(tp.clone()))
}

/// Reads an offset checkpoint; a damaged one is treated as missing (which only costs a
/// longer recovery), an unreadable one is an error.
fn read_checkpoint(path: &Path) -> Result<HashMap<TopicPartition, i64>, LogError> {
    match checkpoint::read_offsets(path) {
        Ok(map) => Ok(map.into_iter().collect()),
        Err(e @ CheckpointError::Malformed { .. }) => {
            warn!(error = %e, "ignoring a damaged checkpoint");
            Ok(HashMap::new())
        }
        Err(e) => Err(e.into()),
    }
}

impl LogManager {
    /// Opens the data directory (creating it if needed) and recovers every partition log
    /// in it with `default_config` (apply per-topic configs afterwards with
    /// [`PartitionLog::set_config`]). Leftovers of interrupted deletions are removed.
    pub fn open(
        data_dir: impl Into<PathBuf>,
        default_config: LogConfig,
        now_ms: i64,
    ) -> Result<LogManager, LogError> {
        default_config.validate()?;
        let data_dir = data_dir.into();
        std::fs::create_dir_all(&data_dir).map_err(LogError::io("create", &data_dir))?;
        let recovery_points = read_checkpoint(&data_dir.join(RECOVERY_POINT_CHECKPOINT))?;
        let log_starts = read_checkpoint(&data_dir.join(LOG_START_OFFSET_CHECKPOINT))?;
        let cleaner_offsets = read_checkpoint(&data_dir.join(CLEANER_OFFSET_CHECKPOINT))?;

        let mut logs = BTreeMap::new();
        let entries = std::fs::read_dir(&data_dir).map_err(LogError::io("list", &data_dir))?;
        for entry in entries {
            let entry = entry.map_err(LogError::io("list", &data_dir))?;
            let path = entry.path();
            if !entry
                .file_type()
                .map_err(LogError::io("stat", &path))?
                .is_dir()
            {
                continue;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.ends_with(DELETE_SUFFIX) {
                info!(dir = %path.display(), "removing a partially deleted partition");
                std::fs::remove_dir_all(&path).map_err(LogError::io("delete", &path))?;
                continue;
            }
            let Some(tp) = TopicPartition::parse_dir_name(&name) else {
                debug!(dir = %path.display(), "not a partition directory; ignoring");
                continue;
            };
            let mut log = PartitionLog::open(
                path,
                tp.clone(),
                default_config.clone(),
                recovery_points.get(&tp).copied().unwrap_or(0),
                log_starts.get(&tp).copied(),
                now_ms,
            )?;
            log.set_cleaner_offset(cleaner_offsets.get(&tp).copied());
            logs.insert(tp, Arc::new(RwLock::new(log)));
        }
        let manager = LogManager {
            data_dir,
            default_config,
            logs,
            cleaner_config: CleanerConfig::default(),
            cleaner_checkpoint: Mutex::new(None),
        };
        manager.write_checkpoints()?;
        info!(data_dir = %manager.data_dir.display(), partitions = manager.logs.len(), "opened logs");
        Ok(manager)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The configuration new logs get unless told otherwise.
    pub fn default_config(&self) -> &LogConfig {
        &self.default_config
    }

    /// The log cleaner's broker-wide settings.
    pub fn cleaner_config(&self) -> &CleanerConfig {
        &self.cleaner_config
    }

    /// Replaces the log cleaner's broker-wide settings.
    pub fn set_cleaner_config(&mut self, config: CleanerConfig) {
        self.cleaner_config = config;
    }

    /// The log cleaner over the current logs: call [`LogCleaner::run`] on it after
    /// releasing the manager (a pass may take a while; it holds each log's lock only to
    /// plan and to swap). The cleaner offsets it moves are persisted by the next
    /// [`LogManager::write_checkpoints`].
    pub fn cleaner(&self) -> LogCleaner {
        LogCleaner::new(
            self.logs
                .iter()
                .map(|(tp, log)| (tp.clone(), log.clone()))
                .collect(),
            self.cleaner_config.clone(),
        )
    }

    /// Compacts every log whose `cleanup.policy` includes `compact` and that is due (see
    /// [`LogCleaner::run`]), then persists `cleaner-offset-checkpoint`.
    /// `max_offset_for` gives each partition's high watermark (`None`: skip it).
    pub fn clean(
        &self,
        now_ms: i64,
        max_offset_for: impl Fn(&TopicPartition) -> Option<i64>,
    ) -> CleanerSummary {
        let summary = self.cleaner().run(now_ms, max_offset_for);
        if summary.partitions_cleaned > 0 {
            if let Err(e) = self.write_cleaner_checkpoint() {
                warn!(error = %e, "cannot write the cleaner offset checkpoint");
            }
        }
        summary
    }

    /// The log of `tp`, if this broker has one.
    pub fn get(&self, tp: &TopicPartition) -> Option<SharedPartitionLog> {
        self.logs.get(tp).cloned()
    }

    /// The partitions that have a log, sorted.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.logs.keys().cloned().collect()
    }

    /// Creates the log of a new partition.
    pub fn create(
        &mut self,
        tp: TopicPartition,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<SharedPartitionLog, LogError> {
        tp.validate()?;
        if self.logs.contains_key(&tp) {
            return Err(LogError::AlreadyExists(tp));
        }
        let log = PartitionLog::create(
            self.data_dir.join(tp.dir_name()),
            tp.clone(),
            config,
            now_ms,
        )?;
        let shared = Arc::new(RwLock::new(log));
        self.logs.insert(tp.clone(), shared.clone());
        info!(topic = %tp.topic, partition = tp.partition, "created partition log");
        Ok(shared)
    }

    /// The log of `tp`, created with `config` if it does not exist.
    pub fn get_or_create(
        &mut self,
        tp: TopicPartition,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<SharedPartitionLog, LogError> {
        match self.get(&tp) {
            Some(log) => Ok(log),
            None => self.create(tp, config, now_ms),
        }
    }

    /// Deletes a partition's log and directory. Handles still held elsewhere refuse
    /// writes from now on; reads in flight finish. Returns false if there was no log.
    pub fn delete(&mut self, tp: &TopicPartition) -> Result<bool, LogError> {
        let Some(log) = self.logs.remove(tp) else {
            return Ok(false);
        };
        write_lock(tp, &log)?.mark_deleted();
        let dir = self.data_dir.join(tp.dir_name());
        let doomed = self
            .data_dir
            .join(format!("{}{DELETE_SUFFIX}", tp.dir_name()));
        if doomed.exists() {
            std::fs::remove_dir_all(&doomed).map_err(LogError::io("delete", &doomed))?;
        }
        std::fs::rename(&dir, &doomed).map_err(LogError::io("rename", &dir))?;
        fjord_shared::fs::sync_dir(&self.data_dir)
            .map_err(LogError::io("fsync", &self.data_dir))?;
        std::fs::remove_dir_all(&doomed).map_err(LogError::io("delete", &doomed))?;
        info!(topic = %tp.topic, partition = tp.partition, "deleted partition log");
        self.write_checkpoints()?;
        Ok(true)
    }

    /// Writes `recovery-point-offset-checkpoint` and `log-start-offset-checkpoint` for all
    /// logs (each atomically), and `cleaner-offset-checkpoint` if a cleaner offset changed.
    /// Call periodically and after shutdown.
    pub fn write_checkpoints(&self) -> Result<(), LogError> {
        let mut recovery_points = Vec::with_capacity(self.logs.len());
        let mut log_starts = Vec::with_capacity(self.logs.len());
        for (tp, log) in &self.logs {
            let log = read_lock(tp, log)?;
            recovery_points.push((tp.clone(), log.recovery_point()));
            log_starts.push((tp.clone(), log.log_start_offset()));
        }
        checkpoint::write_offsets(
            &self.data_dir.join(RECOVERY_POINT_CHECKPOINT),
            &recovery_points,
        )?;
        checkpoint::write_offsets(
            &self.data_dir.join(LOG_START_OFFSET_CHECKPOINT),
            &log_starts,
        )?;
        self.write_cleaner_checkpoint()
    }

    /// Writes `cleaner-offset-checkpoint` unless it already holds the current offsets.
    fn write_cleaner_checkpoint(&self) -> Result<(), LogError> {
        let mut entries = Vec::new();
        for (tp, log) in &self.logs {
            if let Some(offset) = read_lock(tp, log)?.cleaner_offset() {
                entries.push((tp.clone(), offset));
            }
        }
        let mut written = self
            .cleaner_checkpoint
            .lock()
            .map_err(|_| LogError::Cleaner("the checkpoint lock is poisoned".into()))?;
        if written.as_ref() == Some(&entries) {
            return Ok(());
        }
        checkpoint::write_offsets(&self.data_dir.join(CLEANER_OFFSET_CHECKPOINT), &entries)?;
        *written = Some(entries);
        Ok(())
    }

    /// Runs retention on every log (see [`PartitionLog::enforce_retention`]);
    /// `high_watermark` gives each partition's high watermark if the broker knows it.
    /// A failing log is reported in the summary and the others are still processed.
    pub fn enforce_retention(
        &self,
        now_ms: i64,
        high_watermark: impl Fn(&TopicPartition) -> Option<i64>,
    ) -> MaintenanceSummary {
        let mut summary = MaintenanceSummary::default();
        for (tp, log) in &self.logs {
            let outcome = write_lock(tp, log).and_then(|mut log| {
                if log.is_failed() {
                    return Ok(Default::default());
                }
                log.enforce_retention(now_ms, high_watermark(tp))
            });
            match outcome {
                Ok(o) => {
                    summary.deleted_segments += o.deleted_segments;
                    summary.deleted_bytes += o.deleted_bytes;
                }
                Err(e) => {
                    error!(topic = %tp.topic, partition = tp.partition, error = %e, "retention failed");
                    summary.failed.push(tp.clone());
                }
            }
        }
        summary
    }

    /// Flushes the logs whose [`FsyncPolicy::Interval`](super::FsyncPolicy::Interval)
    /// is due (the interval also applies on append; this covers idle logs).
    pub fn flush_due(&self, now_ms: i64) -> MaintenanceSummary {
        let mut summary = MaintenanceSummary::default();
        for (tp, log) in &self.logs {
            let result = write_lock(tp, log).and_then(|mut log| {
                if log.is_failed() {
                    return Ok(false);
                }
                log.flush_if_due(now_ms)
            });
            match result {
                Ok(flushed) => summary.flushed += usize::from(flushed),
                Err(e) => {
                    error!(topic = %tp.topic, partition = tp.partition, error = %e, "flush failed");
                    summary.failed.push(tp.clone());
                }
            }
        }
        summary
    }

    /// A clean shutdown: closes (seals and fsyncs) every log, then writes the checkpoints,
    /// so the next start rescans only active segments. Every log is attempted; the first
    /// error is returned.
    pub fn shutdown(&self) -> Result<(), LogError> {
        let mut first_error = None;
        for (tp, log) in &self.logs {
            let result = write_lock(tp, log).and_then(|mut log| {
                if log.is_failed() {
                    return Ok(());
                }
                log.close()
            });
            if let Err(e) = result {
                error!(topic = %tp.topic, partition = tp.partition, error = %e, "closing the log failed");
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.write_checkpoints() {
            first_error.get_or_insert(e);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::test_util::batch_at;

    const NOW: i64 = 1_700_000_000_000;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 1024,
            retention_ms: Some(60_000),
            ..LogConfig::default()
        }
    }

    #[test]
    fn create_append_checkpoint_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut manager = LogManager::open(dir.path(), config(), NOW).unwrap();
        assert!(manager.partitions().is_empty());
        let a = TopicPartition::new("orders", 0);
        let b = TopicPartition::new("my-topic", 3);
        let log_a = manager.create(a.clone(), config(), NOW).unwrap();
        manager.create(b.clone(), config(), NOW).unwrap();
        assert!(matches!(
            manager.create(a.clone(), config(), NOW),
            Err(LogError::AlreadyExists(_))
        ));
        assert!(matches!(
            manager.create(TopicPartition::new("../x", 0), config(), NOW),
            Err(LogError::InvalidTopicPartition { .. })
        ));
        for _ in 0..5 {
            log_a
                .write()
                .unwrap()
                .append_as_leader(batch_at(2, NOW, 100), 0, NOW)
                .unwrap();
        }
        log_a.write().unwrap().delete_records_before(3).unwrap();
        manager.shutdown().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(RECOVERY_POINT_CHECKPOINT)).unwrap(),
            "0\n2\nmy-topic 3 0\norders 0 10\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOG_START_OFFSET_CHECKPOINT)).unwrap(),
            "0\n2\nmy-topic 3 0\norders 0 3\n"
        );
        drop(manager);

        // Other things in the data directory are left alone.
        std::fs::create_dir(dir.path().join("not-a-partition")).unwrap();
        std::fs::write(dir.path().join("meta.properties"), "x").unwrap();
        let manager = LogManager::open(dir.path(), config(), NOW).unwrap();
        assert_eq!(manager.partitions(), vec![b.clone(), a.clone()]);
        let log = manager.get(&a).unwrap();
        let log = log.read().unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (3, 10));
        assert!(dir.path().join("not-a-partition").exists());
    }

    #[test]
    fn delete_removes_the_directory_and_fences_handles() {
        let dir = tempfile::tempdir().unwrap();
        let mut manager = LogManager::open(dir.path(), config(), NOW).unwrap();
        let tp = TopicPartition::new("gone", 0);
        let log = manager.get_or_create(tp.clone(), config(), NOW).unwrap();
        log.write()
            .unwrap()
            .append_as_leader(batch_at(1, NOW, 10), 0, NOW)
            .unwrap();
        assert!(manager.delete(&tp).unwrap());
        assert!(!manager.delete(&tp).unwrap());
        assert!(!dir.path().join("gone-0").exists());
        assert!(manager.get(&tp).is_none());
        assert!(matches!(
            log.write()
                .unwrap()
                .append_as_leader(batch_at(1, NOW, 10), 0, NOW),
            Err(LogError::Failed { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(RECOVERY_POINT_CHECKPOINT)).unwrap(),
            "0\n0\n"
        );
        // A deletion interrupted by a crash is finished on the next start.
        std::fs::create_dir(dir.path().join("half-0.delete")).unwrap();
        std::fs::write(dir.path().join("half-0.delete").join("x.log"), "x").unwrap();
        let manager = LogManager::open(dir.path(), config(), NOW).unwrap();
        assert!(manager.partitions().is_empty());
        assert!(!dir.path().join("half-0.delete").exists());
    }

    #[test]
    fn retention_and_flushes_run_over_all_logs() {
        let dir = tempfile::tempdir().unwrap();
        let mut manager = LogManager::open(dir.path(), config(), NOW).unwrap();
        let mut logs = Vec::new();
        for p in 0..2 {
            let tp = TopicPartition::new("r", p);
            let log = manager.create(tp, config(), NOW).unwrap();
            {
                let mut log = log.write().unwrap();
                for _ in 0..3 {
                    log.append_as_leader(batch_at(2, NOW - 120_000, 100), 0, NOW)
                        .unwrap();
                    log.roll().unwrap();
                }
            }
            logs.push(log);
        }
        // Partition 1's high watermark holds its data back.
        let summary = manager.enforce_retention(NOW, |tp| (tp.partition == 1).then_some(2));
        assert_eq!(summary.deleted_segments, 3 + 1);
        assert!(summary.failed.is_empty());
        assert_eq!(logs[0].read().unwrap().log_start_offset(), 6);
        assert_eq!(logs[1].read().unwrap().log_start_offset(), 2);

        let mut interval = config();
        interval.fsync = crate::log::FsyncPolicy::Interval(std::time::Duration::from_secs(1));
        for log in &logs {
            let mut log = log.write().unwrap();
            log.set_config(interval.clone()).unwrap();
            log.append_as_leader(batch_at(1, NOW, 10), 0, NOW).unwrap();
        }
        assert_eq!(manager.flush_due(NOW + 999).flushed, 0);
        assert_eq!(manager.flush_due(NOW + 1000).flushed, 2);
        assert_eq!(logs[0].read().unwrap().recovery_point(), 7);
    }

    #[test]
    fn clean_compacts_compacted_logs_and_checkpoints_how_far() {
        use crate::log::cleaner::CleanerConfig;
        use crate::log::test_util::kv_batch;
        use crate::log::CleanupPolicy;
        let dir = tempfile::tempdir().unwrap();
        let mut manager = LogManager::open(dir.path(), config(), NOW).unwrap();
        let compact = LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            min_cleanable_dirty_ratio: 0.5,
            ..config()
        };
        let offsets = TopicPartition::new("__consumer_offsets", 0);
        let skipped = TopicPartition::new("__consumer_offsets", 1);
        let plain = TopicPartition::new("plain", 0);
        let mut logs = Vec::new();
        for (tp, config) in [
            (offsets.clone(), compact.clone()),
            (skipped.clone(), compact.clone()),
            (plain.clone(), config()),
        ] {
            let log = manager.create(tp, config.clone(), NOW).unwrap();
            {
                let mut log = log.write().unwrap();
                let compacted = config.cleanup_policy.compacts();
                for i in 0..12 {
                    let value = format!("{i}");
                    let batch = if compacted {
                        kv_batch(
                            &[("group-a", Some(value.as_str())), ("group-b", Some("x"))],
                            NOW,
                        )
                    } else {
                        batch_at(2, NOW, 10)
                    };
                    log.append_as_leader(batch, 0, NOW).unwrap();
                }
                log.roll().unwrap();
            }
            logs.push(log);
        }
        let sizes: Vec<u64> = logs
            .iter()
            .map(|l| l.read().unwrap().size_bytes())
            .collect();
        // Partition 1 has no known high watermark: skipped.
        let summary = manager.clean(NOW, |tp| (tp.partition == 0).then_some(24));
        assert_eq!(summary.partitions_cleaned, 1);
        assert!(summary.failed.is_empty());
        assert_eq!(summary.records_removed, 22);
        assert!(logs[0].read().unwrap().size_bytes() < sizes[0]);
        assert_eq!(logs[1].read().unwrap().size_bytes(), sizes[1]);
        assert_eq!(logs[2].read().unwrap().size_bytes(), sizes[2]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(CLEANER_OFFSET_CHECKPOINT)).unwrap(),
            "0\n1\n__consumer_offsets 0 24\n"
        );
        // Nothing new: nothing due.
        assert_eq!(manager.clean(NOW, |_| Some(24)).partitions_cleaned, 1);
        assert_eq!(manager.clean(NOW, |_| Some(24)).partitions_cleaned, 0);
        // The two-step form: take the cleaner, release the manager, run it.
        let cleaner = manager.cleaner();
        assert_eq!(cleaner.run(NOW, |_| Some(24)).partitions_cleaned, 0);
        manager.set_cleaner_config(CleanerConfig {
            offset_map_bytes: 1,
            ..CleanerConfig::default()
        });
        assert_eq!(manager.cleaner_config().offset_map_bytes, 1);
        manager.shutdown().unwrap();
        let text = std::fs::read_to_string(dir.path().join(CLEANER_OFFSET_CHECKPOINT)).unwrap();
        assert_eq!(
            text,
            "0\n2\n__consumer_offsets 0 24\n__consumer_offsets 1 24\n"
        );
        drop((logs, manager));

        let manager = LogManager::open(dir.path(), config(), NOW).unwrap();
        let log = manager.get(&offsets).unwrap();
        assert_eq!(log.read().unwrap().cleaner_offset(), Some(24));
        assert_eq!(
            manager
                .get(&plain)
                .unwrap()
                .read()
                .unwrap()
                .cleaner_offset(),
            None
        );
    }

    #[test]
    fn a_damaged_checkpoint_only_costs_a_full_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let mut manager = LogManager::open(dir.path(), config(), NOW).unwrap();
        let tp = TopicPartition::new("c", 0);
        let log = manager.create(tp.clone(), config(), NOW).unwrap();
        for _ in 0..6 {
            log.write()
                .unwrap()
                .append_as_leader(batch_at(2, NOW, 200), 0, NOW)
                .unwrap();
        }
        manager.shutdown().unwrap();
        drop((log, manager));
        std::fs::write(dir.path().join(RECOVERY_POINT_CHECKPOINT), "0\n7\nbroken").unwrap();
        let manager = LogManager::open(dir.path(), config(), NOW).unwrap();
        assert_eq!(
            manager.get(&tp).unwrap().read().unwrap().log_end_offset(),
            12
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(RECOVERY_POINT_CHECKPOINT)).unwrap(),
            "0\n1\nc 0 12\n"
        );
    }
}
