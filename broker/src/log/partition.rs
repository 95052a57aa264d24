//! The log of one partition (Kafka's `UnifiedLog` + `LocalLog`, without the high
//! watermark, which the replica layer owns): an ordered list of segments, the log start
//! and end offsets, the recovery point, and the leader epoch cache.
//!
//! Writes take `&mut self` and reads `&self`; the caller owns the locking (one lock per
//! partition). [`PartitionLog::prepare_read`] lets a fetch drop the lock before its file
//! I/O. Offsets: the log holds `[log_start_offset, log_end_offset)`; the log start only
//! moves forward (retention, DeleteRecords) except when a follower truncates below it.
//!
//! Failure: if a write, fsync or file operation fails midway, what reached the disk is
//! unknown, so the log refuses further writes ([`LogError::Failed`]) until it is reopened
//! (which recovers it). Reads keep working.
//!
//! Compaction ([`cleaner`](super::cleaner)) replaces closed segments by cleaned ones; the
//! log keeps the cleaner offset (below it everything is compacted) for the manager's
//! `cleaner-offset-checkpoint`. Retention by time and size applies only when
//! `cleanup.policy` includes `delete`.

use super::batch::{self, PATCHED_PREFIX_LEN};
use super::checkpoint::{self, LEADER_EPOCH_CHECKPOINT};
use super::cleaner::{self, CleanStats, Cleaned, CleanerConfig};
use super::config::{FsyncPolicy, LogConfig};
use super::epoch_cache::{EpochEndOffset, EpochEntry, LeaderEpochCache};
use super::error::LogError;
use super::read::{FetchedRecords, ReadPlan};
use super::records;
use super::recovery;
use super::scan::BatchInfo;
use super::segment::{self, relative, Loaded, Segment, MAX_RELATIVE_OFFSET};
use super::topic_partition::TopicPartition;
use bytes::Bytes;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tracing::{debug, error, info, warn};

/// What an append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Base offset of the first batch (the log end offset if nothing was appended).
    pub first_offset: i64,
    /// Last offset of the last batch (`first_offset - 1` if nothing was appended).
    pub last_offset: i64,
    /// Largest batch max timestamp of the append (-1 if none).
    pub max_timestamp: i64,
    /// Base offset of the batch holding `max_timestamp`.
    pub offset_of_max_timestamp: i64,
    /// Batches appended.
    pub batch_count: usize,
    /// Records appended, by the batches' record counts.
    pub record_count: u64,
    /// Bytes appended.
    pub bytes: u64,
    /// The log start offset after the append (Produce v5+ reports it).
    pub log_start_offset: i64,
}

/// A record found by timestamp (ListOffsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The record's timestamp (for a compressed batch, the batch's max timestamp).
    pub timestamp: i64,
    /// The record's offset (for a compressed batch, the batch's first offset at or after
    /// the log start).
    pub offset: i64,
    /// The partition leader epoch of its batch (ListOffsets v4+), if stamped.
    pub leader_epoch: Option<i32>,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub deleted_segments: usize,
    /// Bytes deleted.
    pub deleted_bytes: u64,
    /// The log start offset afterwards.
    pub log_start_offset: i64,
}

/// The log of one partition; see the module docs.
#[derive(Debug)]
pub struct PartitionLog {
    tp: TopicPartition,
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset, never empty; the last one is active (appended to).
    segments: Vec<Segment>,
    log_start_offset: i64,
    /// Everything below this offset is fsynced.
    recovery_point: i64,
    epochs: LeaderEpochCache,
    last_flush_ms: i64,
    /// Set when a write failed: the log refuses writes.
    failure: Option<String>,
    /// The cleaner offset: everything below it is compacted (`None`: never cleaned).
    cleaner_offset: Option<i64>,
    /// The earliest delete horizon of the tombstones the last clean kept (in memory
    /// only): once passed, a clean is due even if the log is not dirty.
    delete_horizon: Option<i64>,
    /// Truncations so far: a clean planned before a truncation must not swap after it.
    truncations: u64,
    /// Set while a cleaning pass of this log is under way (see `cleaner::CleaningGuard`).
    cleaning: Arc<AtomicBool>,
    /// Set when the partition is deleted.
    deleted: bool,
    /// A new partition whose directory, file names and metadata files are not fsynced yet:
    /// creating a thousand partitions would otherwise cost six fsyncs each. Its first
    /// flush (or roll) makes them durable before anything that depends on them; until
    /// then a machine crash can only lose an empty partition, which the broker creates
    /// again from the cluster's metadata (as Kafka writes these files in the background).
    unsynced_dirs: bool,
}

impl PartitionLog {
    /// Creates the directory of a new partition and opens it (its first flush fsyncs the
    /// directories, see `unsynced_dirs`).
    pub fn create(
        dir: impl Into<PathBuf>,
        tp: TopicPartition,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<PartitionLog, LogError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(LogError::io("create", &dir))?;
        PartitionLog::open(dir, tp, config, 0, None, now_ms)
    }

    /// Opens (and recovers) the partition log in `dir`.
    ///
    /// `recovery_point` and `log_start_offset` come from the data directory's checkpoints
    /// (0 and `None` if unknown). Segments from the one holding the recovery point on, and
    /// always the active one, are scanned and validated batch by batch; a torn or corrupt
    /// tail is cut (logged with `warn!`), later segments are deleted, and indexes are
    /// rebuilt. Older segments are opened from their indexes, which are checked and
    /// rebuilt if inconsistent. Recovered data is fsynced, so afterwards the recovery
    /// point is the log end.
    pub fn open(
        dir: impl Into<PathBuf>,
        tp: TopicPartition,
        config: LogConfig,
        recovery_point: i64,
        log_start_offset: Option<i64>,
        now_ms: i64,
    ) -> Result<PartitionLog, LogError> {
        config.validate()?;
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(LogError::io("create", &dir))?;
        recovery::complete_swaps(&dir, &tp)?;
        let bases = list_segments(&dir, &tp)?;

        let epoch_path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let stored_epochs = checkpoint::read_epochs(&epoch_path).unwrap_or_else(|e| {
            warn!(topic = %tp.topic, partition = tp.partition, error = %e,
                "unreadable leader epoch checkpoint; refilling it from recovered segments");
            Vec::new()
        });
        let mut epochs = LeaderEpochCache::from_entries(stored_epochs.clone());

        let recover_from = bases
            .iter()
            .rposition(|&b| b <= recovery_point)
            .unwrap_or(0);
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            if i < recover_from && !is_last {
                match Segment::load(&dir, base, now_ms)? {
                    Loaded::Ready(seg) => {
                        segments.push(seg);
                        continue;
                    }
                    Loaded::NeedsRecovery(reason) => {
                        warn!(topic = %tp.topic, partition = tp.partition,
                            file = %segment::log_file(&dir, base).display(), %reason,
                            "segment does not match its indexes; recovering it");
                    }
                }
            }
            let min_offset = segments.last().map_or(base, |s| s.next_offset());
            let recovered = recovery::recover_segment(
                &dir,
                base,
                min_offset,
                config.index_interval_bytes,
                now_ms,
            )?;
            for e in &recovered.epochs {
                epochs.assign(e.epoch, e.start_offset);
            }
            if recovered.indexes_rebuilt {
                info!(topic = %tp.topic, partition = tp.partition,
                    file = %recovered.segment.log_path().display(), "rebuilt segment indexes");
            }
            let cut = recovered.truncation.clone();
            segments.push(recovered.segment);
            if let Some(t) = cut {
                warn!(topic = %tp.topic, partition = tp.partition,
                    file = %segment::log_file(&dir, base).display(),
                    position = t.position, bytes = t.bytes, offset = t.next_offset,
                    reason = %t.reason, "cut a torn or corrupt tail off the log");
                for &later in &bases[i + 1..] {
                    warn!(topic = %tp.topic, partition = tp.partition,
                        file = %segment::log_file(&dir, later).display(),
                        "deleting a segment after the corruption point");
                    segment::delete_files(&dir, later)?;
                }
                break;
            }
        }

        // No segment at all: a new partition (or one whose files a crash lost before its
        // first flush).
        let unsynced_dirs = segments.is_empty();
        if unsynced_dirs {
            segments.push(Segment::create_with(
                &dir,
                log_start_offset.unwrap_or(0).max(0),
                false,
            )?);
        }
        let first_base = segments[0].base_offset();
        let mut start = log_start_offset.unwrap_or(first_base).max(first_base);
        let end = segments.last().map_or(first_base, |s| s.next_offset());
        if start > end {
            warn!(topic = %tp.topic, partition = tp.partition, log_start_offset = start,
                log_end_offset = end, "log start offset is past the recovered log end; starting empty there");
            for seg in segments.drain(..) {
                seg.delete_files(&dir)?;
            }
            segments.push(Segment::create(&dir, start)?);
            epochs.clear();
        }
        start = start.max(segments[0].base_offset());

        let mut log = PartitionLog {
            tp,
            dir,
            config,
            segments,
            log_start_offset: start,
            recovery_point: 0,
            epochs,
            last_flush_ms: now_ms,
            failure: None,
            cleaner_offset: None,
            delete_horizon: None,
            truncations: 0,
            cleaning: Arc::new(AtomicBool::new(false)),
            deleted: false,
            unsynced_dirs,
        };
        let end = log.log_end_offset();
        log.epochs.truncate_from_end(end);
        log.epochs.truncate_from_start(start);
        if log.epochs.entries() != stored_epochs.as_slice() {
            log.persist_epochs()?;
        }
        let count = log.segments.len();
        for seg in &mut log.segments[..count - 1] {
            seg.seal()?;
        }
        log.delete_segments_below_log_start()?;
        if log.unsynced_dirs {
            // A new, empty partition: nothing to fsync until its first flush.
            log.recovery_point = log.log_end_offset();
        } else {
            log.flush()?;
        }
        info!(topic = %log.tp.topic, partition = log.tp.partition,
            log_start_offset = log.log_start_offset, log_end_offset = log.log_end_offset(),
            segments = log.segments.len(), "opened partition log");
        Ok(log)
    }

    /// The partition.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration (a topic config change); applies from the next append
    /// or retention pass.
    pub fn set_config(&mut self, config: LogConfig) -> Result<(), LogError> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The first offset readable (ListOffsets "earliest").
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The offset the next record gets (ListOffsets "latest" before the high watermark).
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// Everything below this offset is known to be fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(Segment::base_offset).collect()
    }

    /// The leader epoch cache entries, oldest first.
    pub fn leader_epochs(&self) -> &[EpochEntry] {
        self.epochs.entries()
    }

    /// The latest leader epoch that wrote to (or was assigned on) this log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest().map(|e| e.epoch)
    }

    /// True once a write failed; the log then refuses writes until reopened.
    pub fn is_failed(&self) -> bool {
        self.failure.is_some()
    }

    /// The log cleaner's offset: everything below it is compacted (`None` until the first
    /// clean, or after a full truncation).
    pub fn cleaner_offset(&self) -> Option<i64> {
        self.cleaner_offset
    }

    /// Restores the cleaner offset from the data directory's checkpoint.
    pub(crate) fn set_cleaner_offset(&mut self, offset: Option<i64>) {
        self.cleaner_offset = offset;
    }

    /// The segments, oldest first; the last one is active.
    pub(super) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The earliest delete horizon of tombstones the last clean kept.
    pub(super) fn delete_horizon(&self) -> Option<i64> {
        self.delete_horizon
    }

    /// How many truncations the log has seen since it was opened.
    pub(super) fn truncation_count(&self) -> u64 {
        self.truncations
    }

    /// The flag a cleaning pass of this log holds.
    pub(super) fn cleaning_flag(&self) -> &Arc<AtomicBool> {
        &self.cleaning
    }

    fn active(&self) -> &Segment {
        // The list is never empty: every path that removes segments adds one back.
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    fn check_writable(&self) -> Result<(), LogError> {
        match &self.failure {
            Some(reason) => Err(LogError::Failed {
                dir: self.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Marks the log failed if `result` is an error (for operations that touch files).
    fn guard<T>(&mut self, result: Result<T, LogError>) -> Result<T, LogError> {
        if let Err(e) = &result {
            error!(topic = %self.tp.topic, partition = self.tp.partition, error = %e,
                "log write failed; refusing further writes until reopened");
            self.failure = Some(e.to_string());
        }
        result
    }

    /// Marks the log deleted: it refuses writes from now on.
    pub(crate) fn mark_deleted(&mut self) {
        self.failure = Some("the partition was deleted".into());
        self.deleted = true;
    }

    /// True once the partition was deleted.
    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// Appends a producer's batches as the leader: each is validated (v2, CRC-32C,
    /// counts, `max.message.bytes`), given the next offsets and `leader_epoch` by patching
    /// its first 16 bytes (outside the CRC; the rest is written untouched, with one
    /// vectored write), and the leader epoch cache learns `leader_epoch` if it is new.
    pub fn append_as_leader(
        &mut self,
        records: Bytes,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.check_writable()?;
        let mut parts: Vec<Bytes> = Vec::new();
        let mut prefixes: Vec<[u8; PATCHED_PREFIX_LEN]> = Vec::new();
        let mut infos: Vec<BatchInfo> = Vec::new();
        let mut next = self.log_end_offset();
        let mut position = 0u64;
        let mut record_count = 0u64;
        let compacted = self.config.cleanup_policy.compacts();
        for (index, part) in batch::batches(&records).enumerate() {
            let part = part.map_err(|source| LogError::InvalidBatch { index, source })?;
            let header = batch::validate_producer_batch(&part)
                .map_err(|source| LogError::InvalidBatch { index, source })?;
            if compacted {
                records::check_keys(&part)
                    .map_err(|source| LogError::InvalidBatch { index, source })?;
            }
            if part.len() > self.config.max_message_bytes {
                return Err(LogError::RecordTooLarge {
                    size: part.len(),
                    limit: self.config.max_message_bytes,
                });
            }
            let last = next + i64::from(header.last_offset_delta());
            prefixes.push(batch::patched_prefix(&header, next, leader_epoch));
            infos.push(BatchInfo {
                position,
                size: part.len() as u64,
                base_offset: next,
                last_offset: last,
                max_timestamp: header.max_timestamp(),
                leader_epoch,
            });
            record_count += header.record_count().max(0) as u64;
            position += part.len() as u64;
            next = last + 1;
            parts.push(part);
        }
        let mut bufs: Vec<&[u8]> = Vec::with_capacity(parts.len() * 2);
        for (prefix, part) in prefixes.iter().zip(&parts) {
            bufs.push(prefix);
            bufs.push(&part[PATCHED_PREFIX_LEN..]);
        }
        self.append_validated(&bufs, &infos, record_count, now_ms)
    }

    /// Appends batches fetched from the leader as a follower: validated (v2, CRC-32C,
    /// counts) but stored byte for byte, offsets and epochs included. The first batch must
    /// start at or after the log end, and offsets must increase.
    pub fn append_as_follower(
        &mut self,
        records: Bytes,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.check_writable()?;
        let log_end = self.log_end_offset();
        let mut infos: Vec<BatchInfo> = Vec::new();
        let mut position = 0u64;
        let mut record_count = 0u64;
        for (index, part) in batch::batches(&records).enumerate() {
            let part = part.map_err(|source| LogError::InvalidBatch { index, source })?;
            let header = batch::validate(&part)
                .map_err(|source| LogError::InvalidBatch { index, source })?;
            let info = BatchInfo::from_header(position, &header);
            match infos.last() {
                None if info.base_offset < log_end => {
                    return Err(LogError::UnexpectedAppendOffset {
                        first_offset: info.base_offset,
                        log_end_offset: log_end,
                    })
                }
                Some(prev) if info.base_offset <= prev.last_offset => {
                    return Err(LogError::OffsetsOutOfOrder {
                        previous_last_offset: prev.last_offset,
                        first_offset: info.base_offset,
                    })
                }
                _ => {}
            }
            record_count += header.record_count().max(0) as u64;
            position += info.size;
            infos.push(info);
        }
        let bufs: [&[u8]; 1] = [&records[..position as usize]];
        self.append_validated(&bufs, &infos, record_count, now_ms)
    }

    /// The common tail of both appends: size checks, roll, write, epoch cache, fsync.
    fn append_validated(
        &mut self,
        bufs: &[&[u8]],
        infos: &[BatchInfo],
        record_count: u64,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let log_end = self.log_end_offset();
        let (Some(first), Some(last)) = (infos.first(), infos.last()) else {
            return Ok(AppendInfo {
                first_offset: log_end,
                last_offset: log_end - 1,
                max_timestamp: batch::NO_TIMESTAMP,
                offset_of_max_timestamp: log_end,
                batch_count: 0,
                record_count: 0,
                bytes: 0,
                log_start_offset: self.log_start_offset,
            });
        };
        let bytes = last.position + last.size;
        if bytes > self.config.segment_bytes {
            return Err(LogError::RecordBatchTooLarge {
                size: bytes,
                limit: self.config.segment_bytes,
            });
        }
        if last.last_offset - first.base_offset > MAX_RELATIVE_OFFSET {
            return Err(LogError::OffsetOverflow {
                first_offset: first.base_offset,
                last_offset: last.last_offset,
            });
        }
        let result = self.maybe_roll(bytes, first.base_offset, last.last_offset, now_ms);
        self.guard(result)?;
        let interval = self.config.index_interval_bytes;
        let result = self.active_mut().append(bufs, infos, interval, now_ms);
        self.guard(result)?;

        let mut epochs_changed = false;
        for info in infos {
            epochs_changed |= self.epochs.assign(info.leader_epoch, info.base_offset);
        }
        if epochs_changed {
            let result = self.persist_epochs();
            self.guard(result)?;
        }
        match self.config.fsync {
            FsyncPolicy::Always => self.flush()?,
            FsyncPolicy::Interval(_) => {
                self.flush_if_due(now_ms)?;
            }
            FsyncPolicy::Never => {}
        }

        let (mut max_timestamp, mut offset_of_max_timestamp) =
            (batch::NO_TIMESTAMP, first.base_offset);
        for info in infos {
            if info.max_timestamp > max_timestamp {
                max_timestamp = info.max_timestamp;
                offset_of_max_timestamp = info.base_offset;
            }
        }
        Ok(AppendInfo {
            first_offset: first.base_offset,
            last_offset: last.last_offset,
            max_timestamp,
            offset_of_max_timestamp,
            batch_count: infos.len(),
            record_count,
            bytes,
            log_start_offset: self.log_start_offset,
        })
    }

    /// Rolls before an append of `bytes` covering `first_offset..=last_offset` if the
    /// active segment would pass `segment.bytes`, its roll clock passed `segment.ms`, or
    /// the offsets would not fit its relative index.
    fn maybe_roll(
        &mut self,
        bytes: u64,
        first_offset: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let seg = self.active();
        let offsets_overflow = last_offset - seg.base_offset() > MAX_RELATIVE_OFFSET;
        let reason = if seg.is_empty() {
            offsets_overflow.then_some("offsets")
        } else if seg.size() + bytes > self.config.segment_bytes {
            Some("size")
        } else if seg
            .roll_start_ms()
            .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.segment_ms as i64)
        {
            Some("time")
        } else if offsets_overflow {
            Some("offsets")
        } else {
            None
        };
        let Some(reason) = reason else {
            return Ok(());
        };
        debug!(topic = %self.tp.topic, partition = self.tp.partition, reason,
            new_base_offset = first_offset, "rolling a new segment");
        self.roll_to(first_offset)
    }

    /// Seals the active segment and starts a new one at `base_offset` (an empty active
    /// segment is replaced instead). Sealing fsyncs, so the recovery point moves up.
    fn roll_to(&mut self, base_offset: i64) -> Result<(), LogError> {
        let old_end = self.log_end_offset();
        let replaced = if self.active().is_empty() {
            if self.active().base_offset() == base_offset {
                return Ok(());
            }
            // An empty active segment at the wrong base is replaced rather than kept.
            self.active().delete_files(&self.dir)?;
            self.segments.pop()
        } else {
            self.active_mut().seal()?;
            None
        };
        let synced = self.sync_dirs();
        match synced.and_then(|()| Segment::create(&self.dir, base_offset)) {
            Ok(seg) => self.segments.push(seg),
            Err(e) => {
                // Keep the list non-empty; the log refuses writes after this anyway.
                self.segments.extend(replaced);
                return Err(e);
            }
        }
        if self.segments[..self.segments.len() - 1]
            .iter()
            .all(|s| !s.is_dirty())
        {
            self.recovery_point = self.recovery_point.max(old_end);
        }
        Ok(())
    }

    /// Rolls a new segment now if the active one is not empty (for operators and tests).
    pub fn roll(&mut self) -> Result<(), LogError> {
        self.check_writable()?;
        if self.active().is_empty() {
            return Ok(());
        }
        let end = self.log_end_offset();
        let result = self.roll_to(end);
        self.guard(result)
    }

    /// Fsyncs every segment with unsynced writes; the recovery point becomes the log end.
    /// With [`FsyncPolicy::Never`] a caller can group-commit by appending several
    /// requests and calling this once before acknowledging them.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.check_writable()?;
        let started = std::time::Instant::now();
        let mut result = Ok(());
        for seg in &mut self.segments {
            result = seg.sync();
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = self.sync_dirs();
        }
        crate::stats::LOG_FLUSH.observe(started.elapsed());
        self.guard(result)?;
        self.recovery_point = self.log_end_offset();
        Ok(())
    }

    /// Whether this is a new partition whose directories are not fsynced yet.
    pub fn dirs_unsynced(&self) -> bool {
        self.unsynced_dirs
    }

    /// Makes a new partition's directory entries and metadata files durable: the leader
    /// epoch checkpoint and `partition.metadata` fsynced, then the partition's directory
    /// and the data directory.
    fn sync_dirs(&mut self) -> Result<(), LogError> {
        if !self.unsynced_dirs {
            return Ok(());
        }
        checkpoint::write_epochs(
            &self.dir.join(LEADER_EPOCH_CHECKPOINT),
            self.epochs.entries(),
            true,
        )?;
        let metadata = self.dir.join("partition.metadata");
        match std::fs::File::open(&metadata) {
            Ok(f) => f.sync_all().map_err(LogError::io("fsync", &metadata))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("open", &metadata)(e)),
        }
        fjord_shared::fs::sync_dir(&self.dir).map_err(LogError::io("fsync", &self.dir))?;
        if let Some(parent) = self.dir.parent() {
            fjord_shared::fs::sync_dir(parent).map_err(LogError::io("fsync", parent))?;
        }
        self.unsynced_dirs = false;
        Ok(())
    }

    /// Under [`FsyncPolicy::Interval`], flushes if the interval has passed since the last
    /// flush and there is something to flush. Returns whether it flushed.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<bool, LogError> {
        let FsyncPolicy::Interval(interval) = self.config.fsync else {
            return Ok(false);
        };
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        if self.recovery_point >= self.log_end_offset()
            || now_ms.saturating_sub(self.last_flush_ms) < interval_ms
        {
            return Ok(false);
        }
        self.flush()?;
        self.last_flush_ms = now_ms;
        Ok(true)
    }

    /// A clean close: seals the active segment (final time index entry) and fsyncs
    /// everything, so the next open only rescans the active segment. The log stays usable.
    pub fn close(&mut self) -> Result<(), LogError> {
        self.check_writable()?;
        let result = self.active_mut().seal();
        self.guard(result)?;
        self.flush()
    }

    /// Reads whole batches from `from_offset` on; see [`ReadPlan`] for the rules. The
    /// offset must lie in `[log_start_offset, log_end_offset]`; `max_offset_exclusive`
    /// (the high watermark for consumers, the log end for followers) bounds what is
    /// returned.
    pub fn read(
        &self,
        from_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
    ) -> Result<FetchedRecords, LogError> {
        self.prepare_read(from_offset, max_bytes, max_offset_exclusive)?
            .read()
    }

    /// The lock-free half of [`PartitionLog::read`]: checks the offset and plans the
    /// read; [`ReadPlan::read`] then does the I/O without needing the log.
    pub fn prepare_read(
        &self,
        from_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
    ) -> Result<ReadPlan, LogError> {
        let start = self.log_start_offset;
        let end = self.log_end_offset();
        if from_offset < start || from_offset > end {
            return Err(LogError::OffsetOutOfRange {
                offset: from_offset,
                log_start_offset: start,
                log_end_offset: end,
            });
        }
        let limit = max_offset_exclusive.min(end);
        if from_offset >= limit {
            return Ok(ReadPlan::empty(from_offset, start, end));
        }
        let mut i = self
            .segments
            .partition_point(|s| s.base_offset() <= from_offset)
            .saturating_sub(1);
        // Past segments that end before the offset, and empty ones (compaction can empty a
        // segment; its next offset is then its base, which may lie above the offset).
        while i < self.segments.len()
            && (from_offset >= self.segments[i].next_offset() || self.segments[i].is_empty())
        {
            i += 1;
        }
        let Some(seg) = self.segments.get(i) else {
            return Ok(ReadPlan::empty(from_offset, start, end));
        };
        let base = seg.base_offset();
        let start_position = seg
            .index()
            .lookup(relative(base, from_offset))
            .map_or(0, |e| u64::from(e.position));
        let end_position = seg
            .index()
            .first_at_or_above(relative(base, limit))
            .map_or(seg.size(), |e| u64::from(e.position))
            .min(seg.size());
        Ok(ReadPlan::new(
            seg.file().clone(),
            seg.log_path().clone(),
            start_position,
            end_position,
            from_offset,
            limit,
            max_bytes,
            usize::try_from(self.config.index_interval_bytes).unwrap_or(usize::MAX),
            start,
            end,
        ))
    }

    /// ListOffsets by timestamp: the first record at or after the log start whose
    /// timestamp is at least `timestamp` (searched through the segments' largest
    /// timestamps, then the time index, then the batch headers). `None` if there is none.
    /// The special timestamps -2 (earliest) and -1 (latest) are the caller's:
    /// [`PartitionLog::log_start_offset`] and the high watermark or log end.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        for seg in &self.segments {
            if seg.next_offset() <= self.log_start_offset || seg.max_timestamp() < timestamp {
                continue;
            }
            if let Some(found) = seg.find_offset_by_timestamp(timestamp, self.log_start_offset)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// ListOffsets "max timestamp" (-3, KIP-734): the record holding the largest
    /// timestamp at or after the log start (the first such record, as Kafka).
    pub fn offset_of_max_timestamp(&self) -> Result<Option<TimestampOffset>, LogError> {
        let mut best: Option<&Segment> = None;
        for seg in &self.segments {
            if seg.next_offset() <= self.log_start_offset {
                continue;
            }
            let better = match best {
                None => seg.max_timestamp() >= 0,
                Some(b) => seg.max_timestamp() > b.max_timestamp(),
            };
            if better {
                best = Some(seg);
            }
        }
        let Some(seg) = best else {
            return Ok(None);
        };
        Ok(seg
            .find_offset_of_max_timestamp(self.log_start_offset)?
            .map(|mut t| {
                if t.leader_epoch.is_none() {
                    t.leader_epoch = self.epochs.epoch_for_offset(t.offset);
                }
                t
            }))
    }

    /// OffsetForLeaderEpoch: the largest epoch at or below `epoch` and its end offset.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<EpochEndOffset> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Records that `epoch` starts at the log end (a new leader does this when it takes
    /// over, before it appends, as Kafka's `maybeAssignEpochStartOffset`).
    pub fn assign_epoch_start(&mut self, epoch: i32) -> Result<(), LogError> {
        self.check_writable()?;
        if self.epochs.assign(epoch, self.log_end_offset()) {
            let result = self.persist_epochs();
            self.guard(result)?;
        }
        Ok(())
    }

    /// DeleteRecords: moves the log start offset up to `offset` (at most the log end; the
    /// caller checks the high watermark) and deletes the segments wholly below it. Returns
    /// the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, LogError> {
        self.check_writable()?;
        let end = self.log_end_offset();
        if offset < 0 || offset > end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: end,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = offset;
        info!(topic = %self.tp.topic, partition = self.tp.partition, log_start_offset = offset,
            "log start offset moved by DeleteRecords");
        let result = self.delete_segments_below_log_start();
        self.guard(result)?;
        Ok(self.log_start_offset)
    }

    fn delete_segments_below_log_start(&mut self) -> Result<(), LogError> {
        let mut n = 0;
        while n + 1 < self.segments.len()
            && self.segments[n + 1].base_offset() <= self.log_start_offset
        {
            n += 1;
        }
        self.delete_oldest(n, "log start offset")?;
        if self.epochs.truncate_from_start(self.log_start_offset) {
            self.persist_epochs()?;
        }
        Ok(())
    }

    /// Deletes whole non-active segments by `retention.ms` (largest timestamp older than
    /// it), `retention.bytes` (while the log stays at least that large without them) and
    /// the log start offset (wholly below it), oldest first, stopping at the first segment
    /// that stays. Time and size apply only if `cleanup.policy` includes `delete`.
    /// Segments reaching at or above `high_watermark` are kept (data not yet replicated is
    /// never deleted). The log start offset moves to the first remaining segment. The
    /// broker calls this periodically through the `LogManager`.
    pub fn enforce_retention(
        &mut self,
        now_ms: i64,
        high_watermark: Option<i64>,
    ) -> Result<RetentionOutcome, LogError> {
        self.check_writable()?;
        let end = self.log_end_offset();
        let bound = high_watermark.map_or(end, |hw| hw.min(end));
        let deletes = self.config.cleanup_policy.deletes();
        let retention_ms = self
            .config
            .retention_ms
            .filter(|_| deletes)
            .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
        let retention_bytes = self.config.retention_bytes.filter(|_| deletes);
        let mut remaining = self.size_bytes();
        let mut n = 0;
        while n + 1 < self.segments.len() {
            let seg = &self.segments[n];
            let next_base = self.segments[n + 1].base_offset();
            if next_base > bound {
                break;
            }
            let below_start = next_base <= self.log_start_offset;
            let expired =
                retention_ms.is_some_and(|ms| now_ms.saturating_sub(seg.largest_timestamp()) > ms);
            let oversized =
                retention_bytes.is_some_and(|max| remaining.saturating_sub(seg.size()) >= max);
            if !(below_start || expired || oversized) {
                break;
            }
            remaining -= seg.size();
            n += 1;
        }
        let before = self.size_bytes();
        let result = self.delete_oldest(n, "retention");
        self.guard(result)?;
        if self.epochs.truncate_from_start(self.log_start_offset) {
            let result = self.persist_epochs();
            self.guard(result)?;
        }
        Ok(RetentionOutcome {
            deleted_segments: n,
            deleted_bytes: before - self.size_bytes(),
            log_start_offset: self.log_start_offset,
        })
    }

    /// Deletes the `n` oldest segments (never the active one) and moves the log start
    /// offset to the first remaining segment if it was below.
    fn delete_oldest(&mut self, n: usize, reason: &str) -> Result<(), LogError> {
        let n = n.min(self.segments.len() - 1);
        if n == 0 {
            return Ok(());
        }
        for _ in 0..n {
            let seg = &self.segments[0];
            seg.delete_files(&self.dir)?;
            info!(topic = %self.tp.topic, partition = self.tp.partition,
                file = %seg.log_path().display(), bytes = seg.size(), reason, "deleted segment");
            self.segments.remove(0);
        }
        fjord_shared::fs::sync_dir(&self.dir).map_err(LogError::io("fsync", &self.dir))?;
        self.log_start_offset = self.log_start_offset.max(self.segments[0].base_offset());
        Ok(())
    }

    /// Removes everything at and above `offset`, for a follower whose log diverged
    /// (OffsetForLeaderEpoch told it where). Later segments are deleted, the segment
    /// holding `offset` is cut at a batch boundary (a batch is never split: if `offset`
    /// is inside one, that whole batch goes and the new end is its base offset), indexes
    /// are fixed, and the leader epoch cache forgets epochs starting at or after the new
    /// end. Truncating at or below the first segment empties the log and starts it at
    /// `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        self.check_writable()?;
        if offset < 0 {
            return Err(LogError::InvalidOffset(offset));
        }
        if offset >= self.log_end_offset() {
            // Nothing to cut, but an epoch may start at the log end with nothing written
            // in it (this broker led briefly): it conflicts with the leader's, and keeping
            // it would make every OffsetForLeaderEpoch round answer the same.
            let end = self.log_end_offset();
            if self.epochs.truncate_from_end(end) {
                self.persist_epochs()?;
            }
            return Ok(());
        }
        if offset <= self.segments[0].base_offset() {
            return self.truncate_fully_and_start_at(offset);
        }
        let result = self.truncate_inner(offset);
        self.guard(result)
    }

    fn truncate_inner(&mut self, offset: i64) -> Result<(), LogError> {
        self.truncations += 1;
        let old_end = self.log_end_offset();
        let mut removed = 0u64;
        while self.active().base_offset() >= offset {
            if let Some(seg) = self.segments.pop() {
                removed += seg.size();
                seg.delete_files(&self.dir)?;
            }
        }
        removed += self.active_mut().truncate_to(offset)?;
        let end = self.log_end_offset();
        info!(topic = %self.tp.topic, partition = self.tp.partition, offset, old_end,
            new_end = end, bytes = removed, "truncated log");
        self.recovery_point = self.recovery_point.min(end);
        self.log_start_offset = self.log_start_offset.min(end);
        self.cleaner_offset = self.cleaner_offset.map(|o| o.min(end));
        if self.epochs.truncate_from_end(end) {
            self.persist_epochs()?;
        }
        Ok(())
    }

    /// Deletes every segment and restarts the log empty at `offset` (a follower whose
    /// leader's log starts past this log's end). The epoch cache is cleared.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        self.check_writable()?;
        if offset < 0 {
            return Err(LogError::InvalidOffset(offset));
        }
        let result = self.truncate_fully_inner(offset);
        self.guard(result)
    }

    fn truncate_fully_inner(&mut self, offset: i64) -> Result<(), LogError> {
        self.truncations += 1;
        self.cleaner_offset = None;
        self.delete_horizon = None;
        info!(topic = %self.tp.topic, partition = self.tp.partition, offset,
            old_end = self.log_end_offset(), "truncating the whole log");
        let old = std::mem::take(&mut self.segments);
        let created = old
            .iter()
            .try_for_each(|seg| seg.delete_files(&self.dir))
            .and_then(|()| Segment::create(&self.dir, offset));
        match created {
            Ok(seg) => self.segments.push(seg),
            Err(e) => {
                // Keep the old list (its open files still serve reads); the log refuses
                // writes after this.
                self.segments = old;
                return Err(e);
            }
        }
        self.log_start_offset = offset;
        self.recovery_point = offset;
        if self.epochs.clear() {
            self.persist_epochs()?;
        }
        Ok(())
    }

    /// Compacts the log now if it is due, holding `&mut self` for the whole pass (the
    /// broker cleans through [`LogCleaner`](super::cleaner::LogCleaner), which holds the
    /// lock only to plan and to swap). `max_offset` is the high watermark: nothing at or
    /// above it is touched. `Ok(None)` if nothing was due. See [`cleaner`](super::cleaner).
    pub fn clean(
        &mut self,
        now_ms: i64,
        max_offset: i64,
        config: &CleanerConfig,
    ) -> Result<Option<CleanStats>, LogError> {
        let Some(plan) = cleaner::plan(self, now_ms, max_offset) else {
            return Ok(None);
        };
        let cleaned = plan.execute(config)?;
        self.install_cleaned(cleaned, now_ms)
    }

    /// The swap step of a clean: replaces the planned segments by the cleaned files
    /// (unless the log changed since the plan: then the files are deleted and `Ok(None)`
    /// returned) and moves the cleaner offset. See [`cleaner`](super::cleaner) for the
    /// order of renames that recovery relies on.
    pub(crate) fn install_cleaned(
        &mut self,
        cleaned: Cleaned,
        now_ms: i64,
    ) -> Result<Option<CleanStats>, LogError> {
        if self.failure.is_some()
            || cleaned.truncations != self.truncations
            || !cleaned.groups.iter().all(|g| self.holds(&g.members))
        {
            debug!(topic = %self.tp.topic, partition = self.tp.partition,
                "the log changed while it was cleaned; dropping the cleaned segments");
            cleaned.discard();
            return Ok(None);
        }
        if !cleaned.groups.is_empty() {
            let result = self.swap_in(&cleaned, now_ms);
            self.guard(result)?;
        }
        self.cleaner_offset = Some(cleaned.cleaned_up_to.min(self.log_end_offset()));
        self.delete_horizon = cleaned.delete_horizon;
        Ok(Some(cleaned.stats))
    }

    /// True if `members` are still consecutive closed segments of this log, unchanged.
    fn holds(&self, members: &[cleaner::SourceSegment]) -> bool {
        let Some(first) = members.first() else {
            return false;
        };
        let Some(i) = self
            .segments
            .iter()
            .position(|s| s.base_offset() == first.base_offset)
        else {
            return false;
        };
        // Never the active segment: it is the last one.
        i + members.len() < self.segments.len()
            && members
                .iter()
                .zip(&self.segments[i..])
                .all(|(m, s)| m.is(s))
    }

    fn swap_in(&mut self, cleaned: &Cleaned, now_ms: i64) -> Result<(), LogError> {
        let dir = self.dir.clone();
        let rename = |from: PathBuf, to: PathBuf| {
            std::fs::rename(&from, &to).map_err(LogError::io("rename", &from))
        };
        // The commit point of each group: its `.log.swap` exists (see the cleaner docs).
        for g in &cleaned.groups {
            rename(
                cleaner::cleaned_file(&dir, g.base_offset, "log"),
                cleaner::swap_file(&dir, g.base_offset, g.last_base_offset()),
            )?;
        }
        fjord_shared::fs::sync_dir(&dir).map_err(LogError::io("fsync", &dir))?;
        for g in &cleaned.groups {
            for m in &g.members[1..] {
                segment::delete_files(&dir, m.base_offset)?;
            }
            let base = g.base_offset;
            rename(
                cleaner::cleaned_file(&dir, base, "index"),
                segment::index_file(&dir, base),
            )?;
            rename(
                cleaner::cleaned_file(&dir, base, "timeindex"),
                segment::time_index_file(&dir, base),
            )?;
            rename(
                cleaner::swap_file(&dir, base, g.last_base_offset()),
                segment::log_file(&dir, base),
            )?;
        }
        fjord_shared::fs::sync_dir(&dir).map_err(LogError::io("fsync", &dir))?;
        for g in &cleaned.groups {
            let base = g.base_offset;
            let Some(i) = self.segments.iter().position(|s| s.base_offset() == base) else {
                return Err(LogError::Cleaner(format!("segment {base} vanished")));
            };
            let seg = match Segment::load(&dir, base, now_ms)? {
                Loaded::Ready(seg) => seg,
                Loaded::NeedsRecovery(reason) => {
                    warn!(topic = %self.tp.topic, partition = self.tp.partition,
                        file = %segment::log_file(&dir, base).display(), %reason,
                        "a cleaned segment does not match its indexes; recovering it");
                    let min_offset = match i.checked_sub(1) {
                        Some(p) => self.segments[p].next_offset(),
                        None => base,
                    };
                    let recovered = recovery::recover_segment(
                        &dir,
                        base,
                        min_offset,
                        self.config.index_interval_bytes,
                        now_ms,
                    )?;
                    if let Some(t) = recovered.truncation {
                        return Err(LogError::Cleaner(format!(
                            "the cleaned segment {base} is invalid at position {}: {}",
                            t.position, t.reason
                        )));
                    }
                    let mut seg = recovered.segment;
                    seg.seal()?;
                    seg
                }
            };
            debug!(topic = %self.tp.topic, partition = self.tp.partition, base_offset = base,
                replaced = g.members.len(), bytes = seg.size(), "swapped in a cleaned segment");
            self.segments.splice(i..i + g.members.len(), [seg]);
        }
        Ok(())
    }

    fn persist_epochs(&self) -> Result<(), LogError> {
        checkpoint::write_epochs(
            &self.dir.join(LEADER_EPOCH_CHECKPOINT),
            self.epochs.entries(),
            !self.unsynced_dirs,
        )?;
        Ok(())
    }
}

/// The base offsets of the segments in `dir`, sorted. Also cleans up what a crash can
/// leave behind: temp files of atomic writes and index files without a `.log`.
fn list_segments(dir: &Path, tp: &TopicPartition) -> Result<Vec<i64>, LogError> {
    let mut logs = BTreeSet::new();
    let mut indexes = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(LogError::io("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(LogError::io("list", dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.ends_with(".tmp") {
            debug!(topic = %tp.topic, partition = tp.partition, file = %path.display(), "removing a leftover temp file");
            std::fs::remove_file(&path).map_err(LogError::io("delete", &path))?;
        } else if let Some(base) = name.strip_suffix(".log").and_then(parse_base_offset) {
            logs.insert(base);
        } else if let Some(base) = name
            .strip_suffix(".index")
            .or_else(|| name.strip_suffix(".timeindex"))
            .and_then(parse_base_offset)
        {
            indexes.push((base, path));
        }
    }
    for (base, path) in indexes {
        if !logs.contains(&base) {
            debug!(topic = %tp.topic, partition = tp.partition, file = %path.display(), "removing an index without a log");
            std::fs::remove_file(&path).map_err(LogError::io("delete", &path))?;
        }
    }
    Ok(logs.into_iter().collect())
}

/// A 20-digit segment file stem as an offset.
pub(super) fn parse_base_offset(stem: &str) -> Option<i64> {
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[cfg(test)]
#[path = "partition_tests.rs"]
mod tests;
