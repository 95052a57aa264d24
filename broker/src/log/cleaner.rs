//! The log cleaner: Kafka's log compaction (`cleanup.policy=compact`, Kafka's
//! `LogCleaner`), which keeps the latest record of every key and drops the records it
//! supersedes. `__consumer_offsets` relies on it, and users get it per topic.
//!
//! # What a pass does
//!
//! A pass over one partition log has three steps, so that the partition's lock is held
//! only briefly:
//!
//! 1. **Plan** (read lock, no I/O): pick the *cleanable* segments: the closed segments
//!    from the oldest on, up to (not including) the first one that is active, reaches
//!    `max_offset` (the caller passes the high watermark: uncommitted records may still be
//!    truncated, so they must neither be rewritten nor supersede anything), or is younger
//!    than `min.compaction.lag.ms`. The log is *dirty* from its cleaner offset (everything
//!    below it was cleaned before) on. A pass runs when the dirty bytes make up at least
//!    `min.cleanable.dirty.ratio` of the cleanable bytes, or when tombstones the last pass
//!    kept have passed their delete horizon. The plan holds the segments' open files.
//! 2. **Clean** (no lock): build a map key → latest offset from the dirty records
//!    (bounded by [`CleanerConfig::offset_map_bytes`]; a pass that fills it stops there and
//!    the next pass continues), then rewrite every cleanable segment below the map's end
//!    into `<base>.log.cleaned` (plus `.index.cleaned` and `.timeindex.cleaned`), merging
//!    adjacent segments while their sizes add up to at most `segment.bytes`, as Kafka's
//!    `groupSegmentsBySize` does. All files are fsynced.
//! 3. **Swap** (write lock): check that the segments are still the ones planned (a
//!    truncation or retention in between aborts the pass), then replace them (see below),
//!    open the new segments from their indexes, and move the cleaner offset.
//!
//! # Which records stay (Kafka's rules)
//!
//! - A record with a key stays if no dirty record with the same key has a higher offset.
//!   Records at or after the map's end stay.
//! - A tombstone (a null value) that stays gets a *delete horizon* when it is first
//!   cleaned: its batch is rewritten with the delete-horizon attribute and `now +
//!   delete.retention.ms` in the base timestamp (KIP-534, what Kafka 3.1+ writes; record
//!   timestamps are unchanged because their deltas are re-based). A later pass after the
//!   horizon removes it. So tombstones survive at least `delete.retention.ms` after they
//!   were first cleaned, which is Kafka's guarantee for slow consumers.
//! - Records without a key stay. (Kafka drops them; here produce refuses them on compacted
//!   topics, so only records written before the topic became compacted have none, and
//!   keeping them loses nothing.)
//! - Control batches (transaction markers) stay untouched. Transactions are not
//!   supported, so aborted data is not looked for.
//! - Offsets never change: a batch keeps its base offset, last offset delta, producer id,
//!   epoch, base sequence and partition leader epoch; records keep their offset deltas, so
//!   offsets simply have gaps. A batch whose records all go disappears, except the last
//!   batch of a producer that wrote within `producer.id.expiration.ms`: it stays as an
//!   empty batch (no records, Kafka's `writeEmptyHeader`) so the producer's last sequence
//!   number survives. A batch that loses some records is re-encoded with the same codec
//!   (records are copied byte for byte, headers included, so nothing about them changes),
//!   its max timestamp recomputed and its CRC-32C with it. Its base timestamp stays (or
//!   becomes the delete horizon), so kept records need not be re-encoded. Untouched
//!   batches are copied as they are.
//! - A segment may end up empty, or end before the next segment's base offset; reads
//!   step over both to the next batch, as Kafka's do.
//!
//! "The last batch of a producer" is judged within the cleanable segments: a producer
//! whose newest batch is in the active segment may keep one extra empty batch, which
//! Kafka, knowing its producer state, would drop.
//!
//! # The swap and crash recovery
//!
//! Replacing segments `A, B, C` (merged into one segment with base `A`):
//!
//! 1. `A.log.cleaned` (+ `A.index.cleaned`, `A.timeindex.cleaned`) are written and
//!    fsynced (step 2 above).
//! 2. `A.log.cleaned` is renamed to `A.C.log.swap` (both base offsets, 20 digits each) and
//!    the directory fsynced: the commit. The name says which segments it replaces.
//! 3. `B` and `C` are deleted, the cleaned indexes renamed over `A`'s, and `A.C.log.swap`
//!    renamed over `A.log` (one atomic rename); the directory is fsynced.
//!
//! On open ([`recovery::complete_swaps`](super::recovery::complete_swaps)), `*.cleaned`
//! files are deleted (an uncommitted pass; the old segments are intact), and each
//! `A.C.log.swap` is finished: the segments with base offsets in `(A, C]` are deleted, as
//! are `A`'s index files, and the swap file becomes `A.log`; its indexes are then rebuilt
//! by the usual recovery. (Kafka names swap files `A.log.swap`; carrying the range in
//! the name lets recovery replace exactly the merged segments even when the cleaned data
//! ends before the last of them begins.)
//!
//! The leader epoch cache is not touched: epochs keep their start offsets, which stay
//! correct bounds even when the batch at a start offset was removed.
//!
//! # Simplifications
//!
//! No I/O throttling (Kafka's `log.cleaner.io.max.bytes.per.second`) and no cleaner
//! threads of its own: the broker calls [`LogCleaner::run`] periodically (one pass per
//! log at a time: a log being cleaned is skipped by a second caller). Whether tombstones
//! passed their horizon is remembered in memory only; after a restart, they are removed
//! by the next pass that the dirty ratio triggers. No `max.compaction.lag.ms`.

use super::batch::{
    self, BatchHeader, NewBatch, DELETE_HORIZON_MASK, EMPTY_BATCH_ATTRIBUTES_MASK, HEADER_LEN,
    NO_TIMESTAMP,
};
use super::config::LogConfig;
use super::error::LogError;
use super::index::{IndexEntry, OffsetIndex};
use super::manager::{read_lock, write_lock, SharedPartitionLog};
use super::partition::PartitionLog;
use super::records::{compress, parse_records, records_section, RawRecord};
use super::recovery::push_time_entry;
use super::scan::{BatchInfo, FileScanner, Step, FULL_SCAN_CHUNK, HEADER_SCAN_CHUNK};
use super::segment::{self, IndexState, Segment, MAX_RELATIVE_OFFSET};
use super::time_index::{TimeIndex, TimeIndexEntry};
use super::topic_partition::TopicPartition;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::{debug, error, info, warn};

/// Suffix of files a cleaning pass is writing (deleted on open: not committed).
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned `.log` that replaces segments (finished on open: committed).
pub(crate) const SWAP_SUFFIX: &str = ".swap";

/// Bytes an offset map entry costs beyond its key (hash table slot, allocation).
const MAP_ENTRY_OVERHEAD: usize = 48;

/// `<dir>/<base>.<ext>.cleaned`, where `ext` is `log`, `index` or `timeindex`.
pub(crate) fn cleaned_file(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!(
        "{}.{ext}{CLEANED_SUFFIX}",
        segment::file_stem(base_offset)
    ))
}

/// `<dir>/<base>.<last>.log.swap`: the cleaned segment `base` that replaces the segments
/// with base offsets from `base` to `last` (the last one merged into it; `last == base`
/// when it replaces one segment). The name carries the range so that recovery replaces
/// exactly those segments.
pub(crate) fn swap_file(dir: &Path, base_offset: i64, last_base_offset: i64) -> PathBuf {
    dir.join(format!(
        "{}.{}.log{SWAP_SUFFIX}",
        segment::file_stem(base_offset),
        segment::file_stem(last_base_offset)
    ))
}

/// Settings of the cleaner that are the broker's rather than a topic's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanerConfig {
    /// Memory for the key → latest offset map of one pass (Kafka's
    /// `log.cleaner.dedupe.buffer.size`, 128 MiB). A pass that fills it cleans up to where
    /// it got; the next pass continues from there.
    pub offset_map_bytes: usize,
    /// Kafka's `producer.id.expiration.ms` (1 day): the last batch of a producer that has
    /// written nothing for this long is no longer kept for its sequence numbers.
    pub producer_id_expiration_ms: i64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            offset_map_bytes: 128 << 20,
            producer_id_expiration_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// What one pass over one partition did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Segments read (cleanable segments below the map's end).
    pub segments_read: usize,
    /// Cleaned segments swapped in (a merge counts once).
    pub segments_written: usize,
    /// Bytes of the segments read.
    pub bytes_read: u64,
    /// Bytes of the segments read after cleaning.
    pub bytes_after: u64,
    /// Records read.
    pub records_read: u64,
    /// Records removed (superseded values and expired tombstones).
    pub records_removed: u64,
    /// The new cleaner offset: everything below it is compacted.
    pub cleaned_up_to: i64,
}

/// What [`LogCleaner::run`] did over all logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanerSummary {
    /// Partitions cleaned.
    pub partitions_cleaned: usize,
    /// Bytes read by those passes.
    pub bytes_read: u64,
    /// What those bytes became.
    pub bytes_after: u64,
    /// Records removed.
    pub records_removed: u64,
    /// Partitions whose pass failed (logged; a failure while swapping also makes the log
    /// refuse writes until it is reopened, like any failed log write).
    pub failed: Vec<TopicPartition>,
}

/// The logs of a [`LogManager`](super::LogManager), taken so that cleaning needs neither
/// the manager nor a long lock on any log. The manager's `write_checkpoints` persists
/// the cleaner offsets this moves (in `cleaner-offset-checkpoint`).
#[derive(Debug, Clone)]
pub struct LogCleaner {
    logs: Vec<(TopicPartition, SharedPartitionLog)>,
    config: CleanerConfig,
}

impl LogCleaner {
    pub(crate) fn new(
        logs: Vec<(TopicPartition, SharedPartitionLog)>,
        config: CleanerConfig,
    ) -> LogCleaner {
        LogCleaner { logs, config }
    }

    /// Cleans every log whose policy includes `compact` and that is due (dirty ratio or
    /// tombstones past their horizon). `max_offset_for` gives each partition's high
    /// watermark: nothing at or above it is cleaned or used to clean; a partition it
    /// returns `None` for is skipped. Each log's lock is held only to plan and to swap.
    pub fn run(
        &self,
        now_ms: i64,
        max_offset_for: impl Fn(&TopicPartition) -> Option<i64>,
    ) -> CleanerSummary {
        let mut summary = CleanerSummary::default();
        for (tp, log) in &self.logs {
            let Some(max_offset) = max_offset_for(tp) else {
                continue;
            };
            match clean_shared(log, tp, now_ms, max_offset, &self.config) {
                Ok(Some(stats)) => {
                    info!(topic = %tp.topic, partition = tp.partition,
                        segments_read = stats.segments_read, segments_written = stats.segments_written,
                        bytes_read = stats.bytes_read, bytes_after = stats.bytes_after,
                        records_removed = stats.records_removed, cleaned_up_to = stats.cleaned_up_to,
                        "compacted the log");
                    summary.partitions_cleaned += 1;
                    summary.bytes_read += stats.bytes_read;
                    summary.bytes_after += stats.bytes_after;
                    summary.records_removed += stats.records_removed;
                }
                Ok(None) => {}
                Err(e) if read_lock(tp, log).is_ok_and(|l| l.is_deleted()) => {
                    debug!(topic = %tp.topic, partition = tp.partition, error = %e,
                        "the partition was deleted while it was cleaned");
                }
                Err(e) => {
                    error!(topic = %tp.topic, partition = tp.partition, error = %e, "log cleaning failed");
                    summary.failed.push(tp.clone());
                }
            }
        }
        summary
    }
}

/// One pass over a shared log: plan under the read lock, clean without a lock, swap under
/// the write lock. `Ok(None)` if the log was not due or changed meanwhile.
fn clean_shared(
    log: &SharedPartitionLog,
    tp: &TopicPartition,
    now_ms: i64,
    max_offset: i64,
    config: &CleanerConfig,
) -> Result<Option<CleanStats>, LogError> {
    let plan = {
        let log = read_lock(tp, log)?;
        match plan(&log, now_ms, max_offset) {
            Some(plan) => plan,
            None => return Ok(None),
        }
    };
    let cleaned = plan.execute(config)?;
    let mut log = write_lock(tp, log)?;
    log.install_cleaned(cleaned, now_ms)
}

/// Marks a log as being cleaned from the plan until the swap (or until the pass is
/// abandoned), so that two passes over one log never write the same cleaned files.
#[derive(Debug)]
pub(crate) struct CleaningGuard(Arc<AtomicBool>);

impl CleaningGuard {
    /// Takes the log's flag, unless a pass already holds it.
    pub(crate) fn try_acquire(flag: &Arc<AtomicBool>) -> Option<CleaningGuard> {
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| CleaningGuard(flag.clone()))
    }
}

impl Drop for CleaningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A cleanable segment as planned: where its bytes are, and what identifies it.
#[derive(Debug, Clone)]
pub(crate) struct SourceSegment {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub file: Arc<File>,
    pub path: Arc<Path>,
}

impl SourceSegment {
    fn of(seg: &Segment) -> SourceSegment {
        SourceSegment {
            base_offset: seg.base_offset(),
            next_offset: seg.next_offset(),
            size: seg.size(),
            file: seg.file().clone(),
            path: seg.log_path().clone(),
        }
    }

    /// True if `seg` is still this segment, unchanged.
    pub(crate) fn is(&self, seg: &Segment) -> bool {
        seg.base_offset() == self.base_offset
            && seg.size() == self.size
            && Arc::ptr_eq(seg.file(), &self.file)
    }
}

/// Step 1's result: what to clean; see the module docs.
#[derive(Debug)]
pub(crate) struct CleanPlan {
    tp: TopicPartition,
    dir: PathBuf,
    config: LogConfig,
    /// The cleanable segments, oldest first.
    sources: Vec<SourceSegment>,
    /// The cleaner offset: records from here on are dirty.
    first_dirty: i64,
    /// The end of the cleanable segments (at most the caller's `max_offset`).
    end_offset: i64,
    now_ms: i64,
    /// The log's truncation count when planned (a truncation in between aborts the swap).
    truncations: u64,
    guard: CleaningGuard,
}

/// Step 1: the plan for `log`, if it is due. See the module docs.
pub(crate) fn plan(log: &PartitionLog, now_ms: i64, max_offset: i64) -> Option<CleanPlan> {
    let config = log.config();
    if log.is_failed() || !config.cleanup_policy.compacts() {
        return None;
    }
    let segments = log.segments();
    let closed = &segments[..segments.len().saturating_sub(1)];
    let start = log.log_start_offset();
    let first_dirty = match log.cleaner_offset() {
        Some(o) if o >= start && o <= log.log_end_offset() => o,
        _ => start,
    };
    let lag = i64::try_from(config.min_compaction_lag_ms).unwrap_or(i64::MAX);
    let mut k = 0;
    while k < closed.len() {
        let seg = &closed[k];
        if seg.next_offset() > max_offset {
            break;
        }
        if lag > 0
            && seg.next_offset() > first_dirty
            && seg.largest_timestamp() > now_ms.saturating_sub(lag)
        {
            break;
        }
        k += 1;
    }
    let cleanable = &closed[..k];
    if cleanable.is_empty() {
        return None;
    }
    // `segments[k]` exists: k <= closed.len() < segments.len().
    let end_offset = segments[k].base_offset().min(max_offset);
    let total: u64 = cleanable.iter().map(Segment::size).sum();
    let dirty: u64 = cleanable
        .iter()
        .filter(|s| s.next_offset() > first_dirty)
        .map(Segment::size)
        .sum();
    let ratio = if total == 0 {
        0.0
    } else {
        dirty as f64 / total as f64
    };
    let dirty_due =
        first_dirty < end_offset && dirty > 0 && ratio >= config.min_cleanable_dirty_ratio;
    let horizon_due = log.delete_horizon().is_some_and(|h| h <= now_ms);
    if !dirty_due && !horizon_due {
        return None;
    }
    let guard = CleaningGuard::try_acquire(log.cleaning_flag())?;
    Some(CleanPlan {
        tp: log.topic_partition().clone(),
        dir: log.dir().to_owned(),
        config: config.clone(),
        sources: cleanable.iter().map(SourceSegment::of).collect(),
        first_dirty: first_dirty.min(end_offset),
        end_offset,
        now_ms,
        truncations: log.truncation_count(),
        guard,
    })
}

/// Key → offset of its latest dirty record.
#[derive(Debug, Default)]
struct OffsetMap {
    map: HashMap<Box<[u8]>, i64>,
    bytes: usize,
}

impl OffsetMap {
    fn put(&mut self, key: &[u8], offset: i64) {
        match self.map.get_mut(key) {
            Some(o) => *o = (*o).max(offset),
            None => {
                self.bytes += key.len() + MAP_ENTRY_OVERHEAD;
                self.map.insert(key.into(), offset);
            }
        }
    }

    fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(key).copied()
    }
}

/// Step 2's result: cleaned files waiting to be swapped in.
#[derive(Debug)]
pub(crate) struct Cleaned {
    pub dir: PathBuf,
    pub groups: Vec<CleanedGroup>,
    /// The new cleaner offset.
    pub cleaned_up_to: i64,
    /// The earliest delete horizon of tombstones still in the cleaned segments.
    pub delete_horizon: Option<i64>,
    pub stats: CleanStats,
    /// The log's truncation count when planned.
    pub truncations: u64,
    /// Released when this is dropped (after the swap, or once discarded).
    _guard: CleaningGuard,
}

/// One cleaned segment and the segments it replaces.
#[derive(Debug)]
pub(crate) struct CleanedGroup {
    /// Base offset of the new segment (the first member's).
    pub base_offset: i64,
    /// The segments it replaces, oldest first.
    pub members: Vec<SourceSegment>,
}

impl CleanedGroup {
    /// Base offset of the last segment it replaces.
    pub(crate) fn last_base_offset(&self) -> i64 {
        self.members
            .last()
            .map_or(self.base_offset, |m| m.base_offset)
    }
}

impl Cleaned {
    /// Deletes the cleaned files (the pass is abandoned).
    pub(crate) fn discard(&self) {
        for g in &self.groups {
            remove_cleaned_files(&self.dir, g.base_offset);
        }
    }
}

fn remove_cleaned_files(dir: &Path, base_offset: i64) {
    for ext in ["log", "index", "timeindex"] {
        let path = cleaned_file(dir, base_offset, ext);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Left for the next open to delete.
            Err(e) => warn!(file = %path.display(), error = %e, "cannot delete a cleaned file"),
        }
    }
}

/// Producer id → (last offset, max timestamp) of its newest batch.
type LastBatches = HashMap<i64, (i64, i64)>;

/// What happens to one batch.
enum Outcome<'a> {
    /// Written as it is.
    Keep(&'a [u8]),
    /// Replaced by these bytes.
    Rewrite(Vec<u8>),
    /// Removed.
    Drop,
}

/// What cleaning one batch needs to know.
struct BatchContext<'a> {
    map: &'a OffsetMap,
    map_end: i64,
    producers: &'a LastBatches,
}

impl CleanPlan {
    /// Step 2: writes the cleaned segments; see the module docs. On error, nothing it
    /// wrote is left behind.
    pub(crate) fn execute(self, config: &CleanerConfig) -> Result<Cleaned, LogError> {
        let producers = self.last_batches_of_producers()?;
        let (map, map_end) = self.build_offset_map(config.offset_map_bytes)?;
        let ctx = BatchContext {
            map: &map,
            map_end,
            producers: &producers,
        };
        let rewrite: Vec<&SourceSegment> = self
            .sources
            .iter()
            .filter(|s| s.base_offset < map_end)
            .collect();
        let mut stats = CleanStats {
            cleaned_up_to: map_end,
            ..CleanStats::default()
        };
        let mut groups: Vec<CleanedGroup> = Vec::new();
        let mut delete_horizon = None;
        for group in self.group(&rewrite) {
            match self.clean_group(&group, &ctx, config, &mut stats, &mut delete_horizon) {
                Ok(true) => groups.push(CleanedGroup {
                    base_offset: group[0].base_offset,
                    members: group.iter().map(|s| (*s).clone()).collect(),
                }),
                Ok(false) => {}
                Err(e) => {
                    remove_cleaned_files(&self.dir, group[0].base_offset);
                    for g in &groups {
                        remove_cleaned_files(&self.dir, g.base_offset);
                    }
                    return Err(e);
                }
            }
        }
        stats.segments_written = groups.len();
        Ok(Cleaned {
            dir: self.dir,
            groups,
            cleaned_up_to: map_end,
            delete_horizon,
            stats,
            truncations: self.truncations,
            _guard: self.guard,
        })
    }

    fn corrupt(&self, src: &SourceSegment, position: u64, reason: String) -> LogError {
        LogError::Corrupt {
            path: src.path.to_path_buf(),
            position,
            reason,
        }
    }

    /// The newest batch of every producer in the cleanable segments.
    fn last_batches_of_producers(&self) -> Result<LastBatches, LogError> {
        let mut last = LastBatches::new();
        for src in &self.sources {
            let mut scan = FileScanner::new(&src.file, 0, src.size, HEADER_SCAN_CHUNK);
            loop {
                match scan
                    .next_header()
                    .map_err(LogError::io("read", &src.path))?
                {
                    Step::Batch(info) => {
                        let bytes = scan
                            .batch_bytes(&BatchInfo {
                                size: HEADER_LEN as u64,
                                ..info
                            })
                            .map_err(LogError::io("read", &src.path))?;
                        let h = BatchHeader::parse(bytes)
                            .map_err(|e| self.corrupt(src, info.position, e.to_string()))?;
                        if h.producer_id() >= 0 {
                            last.insert(h.producer_id(), (h.last_offset(), h.max_timestamp()));
                        }
                    }
                    Step::End => break,
                    Step::Invalid { position, reason } => {
                        return Err(self.corrupt(src, position, reason))
                    }
                }
            }
        }
        Ok(last)
    }

    /// The map of the dirty records, and the offset it covers up to (exclusive): the end
    /// of the cleanable segments, or less if the map filled up.
    fn build_offset_map(&self, limit: usize) -> Result<(OffsetMap, i64), LogError> {
        let mut map = OffsetMap::default();
        for src in self
            .sources
            .iter()
            .filter(|s| s.next_offset > self.first_dirty)
        {
            let mut scan = FileScanner::new(&src.file, 0, src.size, FULL_SCAN_CHUNK);
            loop {
                let info = match scan
                    .next_validated()
                    .map_err(LogError::io("read", &src.path))?
                {
                    Step::Batch(info) => info,
                    Step::End => break,
                    Step::Invalid { position, reason } => {
                        return Err(self.corrupt(src, position, reason))
                    }
                };
                if info.last_offset < self.first_dirty {
                    continue;
                }
                let bytes = scan
                    .batch_bytes(&info)
                    .map_err(LogError::io("read", &src.path))?;
                let h = BatchHeader::parse(bytes)
                    .map_err(|e| self.corrupt(src, info.position, e.to_string()))?;
                if h.is_control() {
                    continue;
                }
                let section = match records_section(&h, bytes) {
                    Ok(section) => section,
                    Err(reason) => {
                        // Its records then supersede nothing: less is removed, never more.
                        warn!(topic = %self.tp.topic, partition = self.tp.partition,
                            offset = h.base_offset(), %reason, "cannot read a batch's records; not compacting by it");
                        continue;
                    }
                };
                let records = match parse_records(&section, h.record_count()) {
                    Ok(records) => records,
                    Err(reason) => {
                        warn!(topic = %self.tp.topic, partition = self.tp.partition,
                            offset = h.base_offset(), reason, "malformed records; not compacting by them");
                        continue;
                    }
                };
                for r in &records {
                    let offset = h.base_offset().saturating_add(i64::from(r.offset_delta));
                    if let (Some(key), true) = (r.key, offset >= self.first_dirty) {
                        map.put(key, offset);
                    }
                }
                if map.bytes >= limit && info.last_offset + 1 < self.end_offset {
                    info!(topic = %self.tp.topic, partition = self.tp.partition,
                        offset = info.last_offset + 1, "the offset map is full; cleaning up to here this pass");
                    return Ok((map, info.last_offset + 1));
                }
            }
        }
        Ok((map, self.end_offset))
    }

    /// Groups adjacent segments to rewrite into one while their sizes add up to at most
    /// `segment.bytes` and their offsets fit one segment's relative index.
    fn group<'a>(&self, sources: &[&'a SourceSegment]) -> Vec<Vec<&'a SourceSegment>> {
        let mut groups: Vec<Vec<&SourceSegment>> = Vec::new();
        let mut size = 0u64;
        for &src in sources {
            let fits = groups.last().is_some_and(|g| {
                let base = g[0].base_offset;
                size + src.size <= self.config.segment_bytes
                    && src.next_offset.saturating_sub(1).saturating_sub(base) <= MAX_RELATIVE_OFFSET
            });
            match groups.last_mut() {
                Some(g) if fits => g.push(src),
                _ => {
                    groups.push(vec![src]);
                    size = 0;
                }
            }
            size += src.size;
        }
        groups
    }

    /// Cleans one group into `<base>.{log,index,timeindex}.cleaned`. Returns false (and
    /// writes nothing that stays) if the group is a single segment that would not change.
    fn clean_group(
        &self,
        group: &[&SourceSegment],
        ctx: &BatchContext<'_>,
        config: &CleanerConfig,
        stats: &mut CleanStats,
        delete_horizon: &mut Option<i64>,
    ) -> Result<bool, LogError> {
        let base = group[0].base_offset;
        let log_path = cleaned_file(&self.dir, base, "log");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(LogError::io("create", &log_path))?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let mut changed = group.len() > 1;
        let mut position = 0u64;
        let mut state = IndexState::new(base);
        let mut index_entries: Vec<IndexEntry> = Vec::new();
        let mut time_entries: Vec<TimeIndexEntry> = Vec::new();
        for src in group {
            stats.segments_read += 1;
            stats.bytes_read += src.size;
            let mut scan = FileScanner::new(&src.file, 0, src.size, FULL_SCAN_CHUNK);
            loop {
                let info = match scan
                    .next_validated()
                    .map_err(LogError::io("read", &src.path))?
                {
                    Step::Batch(info) => info,
                    Step::End => break,
                    Step::Invalid { position, reason } => {
                        return Err(self.corrupt(src, position, reason))
                    }
                };
                let bytes = scan
                    .batch_bytes(&info)
                    .map_err(LogError::io("read", &src.path))?;
                let (outcome, horizon) = self.clean_batch(bytes, ctx, config, stats);
                if let Some(h) = horizon {
                    *delete_horizon = Some(delete_horizon.map_or(h, |d| d.min(h)));
                }
                let written: &[u8] = match &outcome {
                    Outcome::Keep(b) => b,
                    Outcome::Rewrite(b) => b,
                    Outcome::Drop => {
                        changed = true;
                        continue;
                    }
                };
                let header = batch::validate(written).map_err(|e| {
                    LogError::Cleaner(format!(
                        "a rewritten batch at offset {} is invalid: {e}",
                        info.base_offset
                    ))
                })?;
                changed |= matches!(outcome, Outcome::Rewrite(_));
                let out_info = BatchInfo::from_header(position, &header);
                if let Some((entry, time_entry)) =
                    state.step(base, &out_info, self.config.index_interval_bytes)
                {
                    index_entries.push(entry);
                    push_time_entry(&mut time_entries, time_entry);
                }
                out.write_all(written)
                    .map_err(LogError::io("write", &log_path))?;
                position += out_info.size;
            }
        }
        out.flush().map_err(LogError::io("write", &log_path))?;
        drop(out);
        stats.bytes_after += position;
        if !changed {
            remove_cleaned_files(&self.dir, base);
            return Ok(false);
        }
        if position > u64::from(u32::MAX) {
            return Err(LogError::Cleaner(format!(
                "the cleaned segment at {base} would be {position} bytes, more than an index can address"
            )));
        }
        file.sync_all().map_err(LogError::io("fsync", &log_path))?;
        // Sealed, like every closed segment: the time index ends with the max timestamp.
        push_time_entry(&mut time_entries, state.time_entry(base));
        let index_path = cleaned_file(&self.dir, base, "index");
        let (mut index, _) = OffsetIndex::rebuild(index_path.clone(), index_entries)
            .map_err(LogError::io("write", &index_path))?;
        index.sync().map_err(LogError::io("fsync", &index_path))?;
        let time_path = cleaned_file(&self.dir, base, "timeindex");
        let (mut time_index, _) = TimeIndex::rebuild(time_path.clone(), time_entries)
            .map_err(LogError::io("write", &time_path))?;
        time_index
            .sync()
            .map_err(LogError::io("fsync", &time_path))?;
        Ok(true)
    }

    /// Decides one (validated) batch; also returns the delete horizon of the tombstones it
    /// keeps, if any.
    fn clean_batch<'b>(
        &self,
        bytes: &'b [u8],
        ctx: &BatchContext<'_>,
        config: &CleanerConfig,
        stats: &mut CleanStats,
    ) -> (Outcome<'b>, Option<i64>) {
        let Ok(h) = BatchHeader::parse(bytes) else {
            return (Outcome::Keep(bytes), None);
        };
        stats.records_read += h.record_count().max(0) as u64;
        if h.is_control() {
            return (Outcome::Keep(bytes), None);
        }
        let section = match records_section(&h, bytes) {
            Ok(section) => section,
            Err(reason) => {
                warn!(topic = %self.tp.topic, partition = self.tp.partition,
                    offset = h.base_offset(), %reason, "cannot read a batch's records; keeping it");
                return (Outcome::Keep(bytes), None);
            }
        };
        let records = match parse_records(&section, h.record_count()) {
            Ok(records) => records,
            Err(reason) => {
                warn!(topic = %self.tp.topic, partition = self.tp.partition,
                    offset = h.base_offset(), reason, "malformed records; keeping the batch");
                return (Outcome::Keep(bytes), None);
            }
        };
        let now = self.now_ms;
        let horizon = h.delete_horizon_ms();
        let mut kept: Vec<&RawRecord<'_>> = Vec::with_capacity(records.len());
        let mut tombstones_kept = false;
        for r in &records {
            let offset = h.base_offset().saturating_add(i64::from(r.offset_delta));
            let keep = offset >= ctx.map_end
                || match r.key {
                    None => true,
                    Some(key) => {
                        let latest = ctx.map.get(key).is_none_or(|o| offset >= o);
                        latest && (r.has_value || horizon.is_none_or(|t| now < t))
                    }
                };
            if keep {
                tombstones_kept |= !r.has_value;
                kept.push(r);
            }
        }
        let removed = records.len() - kept.len();
        stats.records_removed += removed as u64;
        if kept.is_empty() {
            // Kafka's RETAIN_EMPTY: the newest batch of a live producer stays, emptied.
            let producer_last = ctx
                .producers
                .get(&h.producer_id())
                .is_some_and(|&(last, ts)| {
                    h.producer_id() >= 0
                        && last == h.last_offset()
                        && now.saturating_sub(ts) < config.producer_id_expiration_ms
                });
            if !producer_last {
                return (Outcome::Drop, None);
            }
            if records.is_empty() {
                return (Outcome::Keep(bytes), None);
            }
            let mut out = Vec::with_capacity(HEADER_LEN);
            batch::encode_batch(
                &NewBatch {
                    base_offset: h.base_offset(),
                    leader_epoch: h.partition_leader_epoch(),
                    attributes: h.attributes() & EMPTY_BATCH_ATTRIBUTES_MASK,
                    last_offset_delta: h.last_offset_delta(),
                    base_timestamp: h.max_timestamp(),
                    max_timestamp: h.max_timestamp(),
                    producer_id: h.producer_id(),
                    producer_epoch: h.producer_epoch(),
                    base_sequence: h.base_sequence(),
                    record_count: 0,
                },
                &[],
                &mut out,
            );
            return (Outcome::Rewrite(out), None);
        }
        let needs_horizon = tombstones_kept && horizon.is_none();
        if removed == 0 && !needs_horizon {
            let kept_horizon = horizon.filter(|_| tombstones_kept);
            return (Outcome::Keep(bytes), kept_horizon);
        }
        let delete_retention = i64::try_from(self.config.delete_retention_ms).unwrap_or(i64::MAX);
        let new_horizon =
            horizon.or_else(|| needs_horizon.then(|| now.saturating_add(delete_retention)));
        match rewrite(&h, &kept, new_horizon) {
            Ok(out) => (
                Outcome::Rewrite(out),
                new_horizon.filter(|_| tombstones_kept),
            ),
            Err(reason) => {
                warn!(topic = %self.tp.topic, partition = self.tp.partition,
                    offset = h.base_offset(), %reason, "cannot re-encode a batch; keeping it whole");
                stats.records_removed -= removed as u64;
                (Outcome::Keep(bytes), horizon.filter(|_| tombstones_kept))
            }
        }
    }
}

/// Re-encodes batch `h` with only the records `kept`; see the module docs. With a new
/// delete horizon the base timestamp becomes the horizon and each record's timestamp
/// delta is re-based on it.
fn rewrite(
    h: &BatchHeader<'_>,
    kept: &[&RawRecord<'_>],
    horizon: Option<i64>,
) -> Result<Vec<u8>, String> {
    let old_base = h.base_timestamp();
    let base_timestamp = horizon.unwrap_or(old_base);
    let mut raw = Vec::new();
    let mut max_timestamp = NO_TIMESTAMP;
    for r in kept {
        let timestamp = old_base.saturating_add(r.timestamp_delta);
        max_timestamp = max_timestamp.max(timestamp);
        if base_timestamp == old_base {
            raw.extend_from_slice(r.bytes);
        } else {
            let body = &r.bytes[r.body_start..];
            let mut new_body = Vec::with_capacity(body.len() + 9);
            new_body.push(body[0]); // attributes
            batch::put_varlong(&mut new_body, timestamp.saturating_sub(base_timestamp));
            new_body.extend_from_slice(&r.bytes[r.after_timestamp..]);
            let len = i32::try_from(new_body.len()).map_err(|_| "record too large")?;
            batch::put_varint(&mut raw, len);
            raw.extend_from_slice(&new_body);
        }
    }
    let records = match h.compression() {
        0 => raw,
        codec => compress(codec, &raw)?,
    };
    let attributes = match horizon {
        Some(_) => h.attributes() | DELETE_HORIZON_MASK,
        None => h.attributes(),
    };
    let max_timestamp = if h.is_log_append_time() {
        h.max_timestamp()
    } else {
        max_timestamp
    };
    let mut out = Vec::with_capacity(HEADER_LEN + records.len());
    batch::encode_batch(
        &NewBatch {
            base_offset: h.base_offset(),
            leader_epoch: h.partition_leader_epoch(),
            attributes,
            last_offset_delta: h.last_offset_delta(),
            base_timestamp,
            max_timestamp,
            producer_id: h.producer_id(),
            producer_epoch: h.producer_epoch(),
            base_sequence: h.base_sequence(),
            record_count: i32::try_from(kept.len()).map_err(|_| "too many records")?,
        },
        &records,
        &mut out,
    );
    Ok(out)
}

#[cfg(test)]
#[path = "cleaner_tests.rs"]
mod tests;
