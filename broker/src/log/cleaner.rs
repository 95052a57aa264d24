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
use super::recovery::push_time_entry;
use super::scan::{BatchInfo, FileScanner, Step, FULL_SCAN_CHUNK, HEADER_SCAN_CHUNK};
use super::segment::{self, IndexState, Segment, MAX_RELATIVE_OFFSET};
use super::time_index::{TimeIndex, TimeIndexEntry};
use super::topic_partition::TopicPartition;
use std::borrow::Cow;
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
        let (index, _) = OffsetIndex::rebuild(index_path.clone(), index_entries)
            .map_err(LogError::io("write", &index_path))?;
        index.sync().map_err(LogError::io("fsync", &index_path))?;
        let time_path = cleaned_file(&self.dir, base, "timeindex");
        let (time_index, _) = TimeIndex::rebuild(time_path.clone(), time_entries)
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

/// The records of a compacted topic's batch must all have a key (checked on produce, as
/// Kafka's `LogValidator` does for compacted topics). Compressed batches are decompressed
/// for the check.
pub(crate) fn check_keys(batch: &[u8]) -> Result<(), batch::BatchError> {
    let h = BatchHeader::parse(batch)?;
    if h.is_control() {
        return Ok(());
    }
    let section = records_section(&h, batch).map_err(|_| batch::BatchError::InvalidRecords {
        reason: "the records cannot be decompressed",
    })?;
    let records = parse_records(&section, h.record_count())
        .map_err(|reason| batch::BatchError::InvalidRecords { reason })?;
    if records.iter().any(|r| r.key.is_none()) {
        return Err(batch::BatchError::MissingKey);
    }
    Ok(())
}

/// One record of a batch's (uncompressed) records section, not copied.
#[derive(Debug)]
struct RawRecord<'a> {
    /// The whole record, length prefix included.
    bytes: &'a [u8],
    /// Where the body (after the length prefix) starts in `bytes`.
    body_start: usize,
    /// Where the field after the timestamp delta starts in `bytes`.
    after_timestamp: usize,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&'a [u8]>,
    has_value: bool,
}

/// The records section of `batch`, decompressed if it is compressed.
fn records_section<'b>(h: &BatchHeader<'_>, batch: &'b [u8]) -> Result<Cow<'b, [u8]>, String> {
    let section = batch.get(HEADER_LEN..).unwrap_or(&[]);
    match h.compression() {
        0 => Ok(Cow::Borrowed(section)),
        codec => batch::decompress(codec, section).map(Cow::Owned),
    }
}

/// Splits a records section into `count` records (Kafka's `DefaultRecord` layout: length,
/// attributes, timestamp delta, offset delta, key, value, headers).
fn parse_records(section: &[u8], count: i32) -> Result<Vec<RawRecord<'_>>, &'static str> {
    fn varint(buf: &[u8], at: &mut usize) -> Result<i32, &'static str> {
        let (v, n) = buf
            .get(*at..)
            .and_then(batch::read_varint)
            .ok_or("bad varint")?;
        *at += n;
        Ok(v)
    }
    fn bytes<'a>(buf: &'a [u8], at: &mut usize) -> Result<Option<&'a [u8]>, &'static str> {
        let len = varint(buf, at)?;
        if len < 0 {
            return Ok(None);
        }
        let end = at.saturating_add(len as usize);
        let b = buf.get(*at..end).ok_or("field runs past the record")?;
        *at = end;
        Ok(Some(b))
    }
    let count = usize::try_from(count).map_err(|_| "negative record count")?;
    let mut records = Vec::with_capacity(count.min(section.len()));
    let mut pos = 0usize;
    for _ in 0..count {
        let mut at = pos;
        let len = varint(section, &mut at)?;
        let len = usize::try_from(len).map_err(|_| "negative record length")?;
        let end = at.saturating_add(len);
        let record = section.get(pos..end).ok_or("record runs past the batch")?;
        let body_start = at - pos;
        let mut p = body_start + 1; // attributes
        if p > record.len() {
            return Err("empty record");
        }
        let (timestamp_delta, n) = record
            .get(p..)
            .and_then(batch::read_varlong)
            .ok_or("bad timestamp delta")?;
        p += n;
        let after_timestamp = p;
        let offset_delta = varint(record, &mut p)?;
        let key = bytes(record, &mut p)?;
        let value = bytes(record, &mut p)?;
        records.push(RawRecord {
            bytes: record,
            body_start,
            after_timestamp,
            timestamp_delta,
            offset_delta,
            key,
            has_value: value.is_some(),
        });
        pos = end;
    }
    if pos != section.len() {
        return Err("bytes after the last record");
    }
    Ok(records)
}

/// Compresses a records section with Kafka codec `codec`.
fn compress(codec: u8, raw: &[u8]) -> Result<Vec<u8>, String> {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let mut out: Vec<u8> = Vec::new();
    let fill = |tmp: &mut bytes::BytesMut| {
        tmp.extend_from_slice(raw);
        Ok(())
    };
    let result = match codec {
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        other => return Err(format!("unknown compression codec {other}")),
    };
    result.map_err(|e| format!("{e:#}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{split_batches, validate};
    use crate::log::test_util::{
        codec_batch, encode_batch, kv_batch, simple_batch, TestBatch, TestRecord,
    };
    use crate::log::{CleanupPolicy, LogConfig, PartitionLog};
    use bytes::Bytes;
    use kafka_protocol::records::{Compression, RecordBatchDecoder};
    use std::collections::BTreeMap;

    const NOW: i64 = 1_700_000_000_000;
    const DAY: i64 = 86_400_000;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 1024,
            retention_ms: None,
            index_interval_bytes: 100,
            cleanup_policy: CleanupPolicy::Compact,
            min_cleanable_dirty_ratio: 0.0,
            delete_retention_ms: DAY as u64,
            ..LogConfig::default()
        }
    }

    fn open(dir: &Path) -> PartitionLog {
        PartitionLog::open(dir, TopicPartition::new("c", 0), config(), 0, None, NOW).unwrap()
    }

    fn reopen(log: PartitionLog) -> PartitionLog {
        let (dir, config, cleaner_offset) = (
            log.dir().to_owned(),
            log.config().clone(),
            log.cleaner_offset(),
        );
        let recovery_point = log.recovery_point();
        drop(log);
        let mut log = PartitionLog::open(
            dir,
            TopicPartition::new("c", 0),
            config,
            recovery_point,
            None,
            NOW,
        )
        .unwrap();
        log.set_cleaner_offset(cleaner_offset);
        log
    }

    fn clean(log: &mut PartitionLog, now: i64) -> Option<CleanStats> {
        let end = log.log_end_offset();
        log.clean(now, end, &CleanerConfig::default()).unwrap()
    }

    /// Every batch from the log start on, read as a consumer reads (segment by segment).
    fn read_all(log: &PartitionLog) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let r = log.read(offset, 1 << 20, i64::MAX).unwrap();
            assert!(r.next_offset > offset, "no progress reading at {offset}");
            out.extend(split_batches(&r.records).unwrap());
            offset = r.next_offset;
        }
        out
    }

    /// A record as a client sees it: offset, key, value, timestamp.
    type Rec = (i64, Option<String>, Option<String>, i64);

    /// Decodes batches with the kafka-protocol crate (an independent decoder, which checks
    /// each CRC-32C); every batch must also pass the log's own validation.
    fn decode(batches: &[Bytes]) -> Vec<Rec> {
        let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
        let mut out = Vec::new();
        for b in batches {
            validate(b).unwrap();
            let mut buf = b.clone();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            for r in set.records {
                out.push((r.offset, text(r.key), text(r.value), r.timestamp));
            }
        }
        out
    }

    fn records(log: &PartitionLog) -> Vec<Rec> {
        decode(&read_all(log))
    }

    /// The latest record of every key (and every record without one) of `recs`.
    fn compacted(recs: &[Rec]) -> Vec<Rec> {
        let mut latest: BTreeMap<Option<String>, i64> = BTreeMap::new();
        for r in recs.iter().filter(|r| r.1.is_some()) {
            latest.insert(r.1.clone(), r.0);
        }
        recs.iter()
            .filter(|r| r.1.is_none() || latest[&r.1] == r.0)
            .cloned()
            .collect()
    }

    fn files_with(dir: &Path, suffix: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(suffix))
            .collect();
        names.sort();
        names
    }

    /// Appends `rounds` batches of 3 records over 8 keys (picked pseudo-randomly), with
    /// leader epoch `epoch_of(round)`.
    fn overwrite(
        log: &mut PartitionLog,
        rounds: usize,
        seed: u64,
        epoch_of: impl Fn(usize) -> i32,
    ) {
        let mut x = seed;
        for round in 0..rounds {
            let recs: Vec<(String, String)> = (0..3)
                .map(|j| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (
                        format!("k{}", (x >> 33) % 8),
                        format!("v{seed}-{round}-{j}"),
                    )
                })
                .collect();
            let refs: Vec<(&str, Option<&str>)> = recs
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                .collect();
            log.append_as_leader(
                kv_batch(&refs, NOW - 1000 + round as i64),
                epoch_of(round),
                NOW,
            )
            .unwrap();
        }
    }

    #[test]
    fn overwritten_keys_keep_only_their_last_value_at_its_original_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = open(&tmp.path().join("c-0"));
        overwrite(&mut log, 30, 1, |round| (round / 10) as i32);
        log.roll().unwrap();
        assert!(log.segment_count() >= 4, "{:?}", log.segment_base_offsets());
        let before = records(&log);
        assert_eq!(before.len(), 90);
        let epochs = log.leader_epochs().to_vec();
        assert_eq!(epochs.len(), 3);
        let epoch_ends: Vec<_> = (0..4).map(|e| log.end_offset_for_epoch(e)).collect();

        let stats = clean(&mut log, NOW).unwrap();
        let after = records(&log);
        let expected = compacted(&before);
        assert_eq!(after, expected);
        assert_eq!(after.len(), 8, "one record per key");
        assert_eq!(stats.records_removed, 90 - 8);
        assert_eq!(stats.records_read, 90);
        assert_eq!(stats.cleaned_up_to, 90);
        assert_eq!(log.cleaner_offset(), Some(90));
        // Offsets are the originals: increasing, with gaps where records went.
        assert!(after.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(after.last().unwrap().0 - after[0].0 > 8);
        // Every kept batch keeps its base offset (a multiple of 3 here), its last offset
        // delta and its partition leader epoch.
        for b in read_all(&log) {
            let h = validate(&b).unwrap();
            assert_eq!(h.base_offset() % 3, 0);
            assert_eq!(h.last_offset_delta(), 2);
            assert_eq!(h.partition_leader_epoch() as i64, h.base_offset() / 30);
        }
        // The leader epoch cache is untouched and answers as before.
        assert_eq!(log.leader_epochs(), &epochs[..]);
        let ends: Vec<_> = (0..4).map(|e| log.end_offset_for_epoch(e)).collect();
        assert_eq!(ends, epoch_ends);
        // Every offset is readable: a fetch from a removed offset gets the next batch.
        for offset in 0..log.log_end_offset() {
            let r = log.read(offset, 1, i64::MAX).unwrap();
            let first = decode(&split_batches(&r.records).unwrap());
            assert!(first
                .iter()
                .all(|rec| rec.0 >= offset || r.first_offset < Some(offset)));
        }
        // Nothing more to do until new data arrives.
        assert_eq!(clean(&mut log, NOW), None);
        // The files agree with memory: reopening (indexes checked) reads the same.
        let segments = log.segment_base_offsets();
        let log = reopen(log);
        assert_eq!(records(&log), expected);
        assert_eq!(log.segment_base_offsets(), segments);
        assert!(files_with(log.dir(), CLEANED_SUFFIX).is_empty());
        assert!(files_with(log.dir(), SWAP_SUFFIX).is_empty());
    }

    #[test]
    fn small_cleaned_segments_are_merged_and_new_data_supersedes_old() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = open(&tmp.path().join("c-0"));
        overwrite(&mut log, 30, 2, |_| 0);
        log.roll().unwrap();
        clean(&mut log, NOW).unwrap();
        let first_pass = log.segment_count();
        overwrite(&mut log, 30, 3, |_| 1);
        log.roll().unwrap();
        let before = records(&log);
        let stats = clean(&mut log, NOW).unwrap();
        assert!(stats.segments_written >= 1);
        assert_eq!(records(&log), compacted(&before));
        assert_eq!(records(&log).len(), 8);
        // The small segments of the first pass and the new ones merged.
        assert!(
            log.segment_count() < first_pass + 4,
            "{} segments after merging, {first_pass} after the first pass",
            log.segment_count()
        );
        let segments = log.segment_base_offsets();
        let expected = records(&log);
        let log = reopen(log);
        assert_eq!(log.segment_base_offsets(), segments);
        assert_eq!(records(&log), expected);
    }

    #[test]
    fn tombstones_stay_for_delete_retention_then_go() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = open(&tmp.path().join("c-0"));
        log.append_as_leader(
            kv_batch(&[("a", Some("1")), ("b", Some("1"))], NOW - 50),
            0,
            NOW,
        )
        .unwrap();
        log.append_as_leader(kv_batch(&[("a", None)], NOW - 40), 0, NOW)
            .unwrap();
        log.append_as_leader(kv_batch(&[("c", Some("1"))], NOW - 30), 0, NOW)
            .unwrap();
        log.roll().unwrap();
        let rec = |o: i64, k: &str, v: Option<&str>, ts: i64| {
            (o, Some(k.to_owned()), v.map(str::to_owned), ts)
        };

        clean(&mut log, NOW).unwrap();
        assert_eq!(
            records(&log),
            vec![
                rec(1, "b", Some("1"), NOW - 50),
                rec(2, "a", None, NOW - 40),
                rec(3, "c", Some("1"), NOW - 30)
            ],
            "the tombstone stays, with its timestamp"
        );
        let batches = read_all(&log);
        let h = validate(&batches[1]).unwrap();
        assert_eq!(h.delete_horizon_ms(), Some(NOW + DAY));
        assert_eq!(h.max_timestamp(), NOW - 40);
        assert_eq!(log.delete_horizon(), Some(NOW + DAY));

        // Before the horizon nothing is due; a forced pass keeps it too.
        assert_eq!(clean(&mut log, NOW + DAY - 1), None);
        log.set_cleaner_offset(None);
        clean(&mut log, NOW + DAY - 1).unwrap();
        assert_eq!(records(&log).len(), 3);

        // At the horizon the pass is due by itself, and removes it.
        let stats = clean(&mut log, NOW + DAY).unwrap();
        assert_eq!(stats.records_removed, 1);
        assert_eq!(
            records(&log),
            vec![
                rec(1, "b", Some("1"), NOW - 50),
                rec(3, "c", Some("1"), NOW - 30)
            ]
        );
        assert_eq!(log.delete_horizon(), None);
        assert_eq!(clean(&mut log, NOW + 2 * DAY), None);
    }

    #[test]
    fn a_tombstone_superseded_by_a_new_value_goes_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = open(&tmp.path().join("c-0"));
        log.append_as_leader(
            kv_batch(&[("a", Some("1")), ("a", None), ("a", Some("2"))], NOW),
            0,
            NOW,
        )
        .unwrap();
        log.roll().unwrap();
        clean(&mut log, NOW).unwrap();
        assert_eq!(
            records(&log),
            vec![(2, Some("a".into()), Some("2".into()), NOW)]
        );
        assert_eq!(log.delete_horizon(), None);
    }

    #[test]
    fn the_active_segment_and_everything_at_or_above_max_offset_are_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = open(&tmp.path().join("c-0"));
        overwrite(&mut log, 40, 4, |_| 0);
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 4, "{bases:?}");
        // The active segment has data too (it is never cleaned).
        let active = *bases.last().unwrap();
        assert!(log.log_end_offset() > active);
        // The high watermark inside the third segment.
        let max_offset = bases[2] + 4;
        let before = records(&log);
        let snapshot = |log: &PartitionLog| -> Vec<Vec<u8>> {
            log.segment_base_offsets()
                .iter()
                .filter(|&&b| b >= bases[2])
                .map(|&b| std::fs::read(segment::log_file(log.dir(), b)).unwrap())
                .collect()
        };
        let untouched = snapshot(&log);

        log.clean(NOW, max_offset, &CleanerConfig::default())
            .unwrap()
            .unwrap();
        assert_eq!(snapshot(&log), untouched);
        assert_eq!(log.cleaner_offset(), Some(bases[2]));
        let after = records(&log);
        // Below the cleaned end only what later records (below it) supersede is gone;
        // from there on, everything is as it was.
        let cleaned_part: Vec<Rec> = before.iter().filter(|r| r.0 < bases[2]).cloned().collect();
        let expected: Vec<Rec> = compacted(&cleaned_part)
            .into_iter()
            .chain(before.iter().filter(|r| r.0 >= bases[2]).cloned())
            .collect();
        assert_eq!(after, expected);
        assert!(after.len() < before.len());
        // The uncommitted tail superseded nothing: keys rewritten above max_offset keep
        // their last value below it.
        assert!(cleaned_part
            .iter()
            .filter(|r| compacted(&cleaned_part).contains(r))
            .all(|r| after.contains(r)));
        // A high watermark in the first segment leaves nothing to clean.
        assert_eq!(log.clean(NOW, 3, &CleanerConfig::default()).unwrap(), None);
    }

    /// Three segments of overwrites, cleaned; then more overwrites and a roll, so the next
    /// pass merges small segments.
    fn log_to_clean_twice(dir: &Path) -> PartitionLog {
        let mut log = open(dir);
        overwrite(&mut log, 25, 5, |_| 0);
        log.roll().unwrap();
        clean(&mut log, NOW).unwrap();
        overwrite(&mut log, 12, 6, |_| 1);
        log.roll().unwrap();
        log
    }

    fn bytes_of(log: &PartitionLog) -> Vec<u8> {
        read_all(log).iter().flat_map(|b| b.to_vec()).collect()
    }

    #[test]
    fn a_crash_at_any_step_of_the_swap_keeps_every_record() {
        let tmp = tempfile::tempdir().unwrap();
        // The outcome of an uninterrupted pass.
        let mut reference = log_to_clean_twice(&tmp.path().join("ref-0"));
        let uncleaned = bytes_of(&reference);
        let uncleaned_records = records(&reference);
        clean(&mut reference, NOW).unwrap();
        let cleaned = bytes_of(&reference);
        assert_eq!(records(&reference), compacted(&uncleaned_records));
        assert_ne!(cleaned, uncleaned);

        // Steps: 0 = cleaned files written, 1 = committed (.log.swap), 2 = later members
        // deleted, 3 = indexes renamed, 4 = the .log renamed too (indexes of the new
        // segment missing, as if the rename of the indexes was lost).
        for step in 0..5 {
            let dir = tmp.path().join(format!("s{step}-0"));
            let log = log_to_clean_twice(&dir);
            let end = log.log_end_offset();
            let cleaned_files = plan(&log, NOW, end)
                .unwrap()
                .execute(&CleanerConfig::default())
                .unwrap();
            assert!(
                cleaned_files.groups.iter().any(|g| g.members.len() > 1),
                "the test wants a merge"
            );
            drop(log); // a crash: nothing more happens in memory
            for g in &cleaned_files.groups {
                let base = g.base_offset;
                if step >= 1 {
                    std::fs::rename(
                        cleaned_file(&dir, base, "log"),
                        swap_file(&dir, base, g.last_base_offset()),
                    )
                    .unwrap();
                }
                if step >= 2 {
                    for m in &g.members[1..] {
                        segment::delete_files(&dir, m.base_offset).unwrap();
                    }
                }
                if step >= 3 {
                    std::fs::rename(
                        cleaned_file(&dir, base, "index"),
                        segment::index_file(&dir, base),
                    )
                    .unwrap();
                    std::fs::rename(
                        cleaned_file(&dir, base, "timeindex"),
                        segment::time_index_file(&dir, base),
                    )
                    .unwrap();
                }
                if step >= 4 {
                    std::fs::rename(
                        swap_file(&dir, base, g.last_base_offset()),
                        segment::log_file(&dir, base),
                    )
                    .unwrap();
                    std::fs::remove_file(segment::index_file(&dir, base)).unwrap();
                }
            }
            let log = PartitionLog::open(&dir, TopicPartition::new("c", 0), config(), 0, None, NOW)
                .unwrap();
            let expected = if step == 0 { &uncleaned } else { &cleaned };
            assert!(bytes_of(&log) == *expected, "step {step}");
            assert!(files_with(&dir, CLEANED_SUFFIX).is_empty(), "step {step}");
            assert!(files_with(&dir, SWAP_SUFFIX).is_empty(), "step {step}");
            if step > 0 {
                assert_eq!(log.segment_base_offsets(), reference.segment_base_offsets());
            }
            // And it reopens the same again.
            let segments = log.segment_base_offsets();
            let log = reopen(log);
            assert_eq!(log.segment_base_offsets(), segments);
            assert!(bytes_of(&log) == *expected, "step {step}, reopened");
        }
    }

    #[test]
    fn a_swap_is_dropped_if_the_log_changed_meanwhile() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = log_to_clean_twice(&tmp.path().join("c-0"));
        let end = log.log_end_offset();
        let cleaned = plan(&log, NOW, end)
            .unwrap()
            .execute(&CleanerConfig::default())
            .unwrap();
        // One pass at a time per log.
        assert!(plan(&log, NOW, end).is_none());
        log.truncate_to(end - 4).unwrap();
        let before = bytes_of(&log);
        assert_eq!(log.install_cleaned(cleaned, NOW).unwrap(), None);
        assert_eq!(bytes_of(&log), before);
        assert!(files_with(log.dir(), CLEANED_SUFFIX).is_empty());
        // Truncation also pulls the cleaner offset back.
        assert!(log.cleaner_offset().unwrap() <= log.log_end_offset());
        // Retention deleting a planned segment aborts too.
        let end = log.log_end_offset();
        let cleaned = plan(&log, NOW, end)
            .unwrap()
            .execute(&CleanerConfig::default())
            .unwrap();
        assert!(plan(&log, NOW, end).is_none());
        let second = log.segment_base_offsets()[1];
        log.delete_records_before(second).unwrap();
        assert_eq!(log.install_cleaned(cleaned, NOW).unwrap(), None);
        assert!(files_with(log.dir(), CLEANED_SUFFIX).is_empty());
    }

    #[test]
    fn the_last_batch_of_each_live_producer_is_kept_even_when_emptied() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = open(&tmp.path().join("c-0"));
        let producer = |pid: i64, epoch: i16, seq: i32, ts: i64, kv: &[(&str, &str)]| {
            encode_batch(&TestBatch {
                producer_id: pid,
                producer_epoch: epoch,
                base_sequence: seq,
                keyed: kv
                    .iter()
                    .map(|(k, v)| TestRecord::kv(ts, k, Some(v)))
                    .collect(),
                ..TestBatch::default()
            })
        };
        // Offsets 0..=1: producer 7's only batch. 2: producer 8's first, 3: its last.
        // 4: producer 9's only batch, written two days ago. 5..=7: without a producer.
        for b in [
            producer(7, 0, 0, NOW - 10, &[("a", "1"), ("b", "1")]),
            producer(8, 2, 0, NOW - 9, &[("a", "2")]),
            producer(8, 2, 1, NOW - 8, &[("b", "2")]),
            producer(9, 0, 0, NOW - 2 * DAY, &[("c", "1")]),
            kv_batch(
                &[("a", Some("3")), ("b", Some("3")), ("c", Some("3"))],
                NOW - 1,
            ),
        ] {
            log.append_as_leader(b, 4, NOW).unwrap();
        }
        log.roll().unwrap();
        clean(&mut log, NOW).unwrap();
        let batches = read_all(&log);
        let headers: Vec<_> = batches
            .iter()
            .map(|b| {
                let h = validate(b).unwrap();
                (
                    h.base_offset(),
                    h.last_offset(),
                    h.record_count(),
                    h.producer_id(),
                    h.producer_epoch(),
                    h.base_sequence(),
                    h.partition_leader_epoch(),
                )
            })
            .collect();
        assert_eq!(
            headers,
            vec![
                (0, 1, 0, 7, 0, 0, 4),
                (3, 3, 0, 8, 2, 1, 4),
                (5, 7, 3, -1, -1, -1, 4)
            ]
        );
        assert_eq!(decode(&batches).len(), 3);
        // Empty batches read like Kafka's: no records, the original last offset.
        let h = validate(&batches[0]).unwrap();
        assert_eq!(
            (h.max_timestamp(), h.base_timestamp()),
            (NOW - 10, NOW - 10)
        );
        assert!(!h.is_compressed());
        // Once producer 7 wrote again later, its emptied batch is no longer needed.
        log.append_as_leader(producer(7, 0, 2, NOW, &[("d", "1")]), 4, NOW)
            .unwrap();
        log.roll().unwrap();
        clean(&mut log, NOW).unwrap();
        let bases: Vec<i64> = read_all(&log)
            .iter()
            .map(|b| validate(b).unwrap().base_offset())
            .collect();
        assert_eq!(bases, vec![3, 5, 8]);
    }

    #[test]
    fn compressed_batches_are_recompressed_with_their_codec() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = open(&tmp.path().join("c-0"));
        for (i, compression) in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ]
        .into_iter()
        .enumerate()
        {
            let key = format!("x{i}");
            let batch = codec_batch(
                &[
                    (0, NOW, &key, "old"),
                    (1, NOW + 1, "y", "kept-if-last"),
                    (2, NOW + 2, &key, "new"),
                ],
                compression,
            );
            let info = log.append_as_leader(batch, 0, NOW).unwrap();
            assert_eq!(info.record_count, 3);
        }
        log.roll().unwrap();
        clean(&mut log, NOW).unwrap();
        let batches = read_all(&log);
        assert_eq!(batches.len(), 4);
        for (i, b) in batches.iter().enumerate() {
            let h = validate(b).unwrap();
            assert_eq!(h.compression(), i as u8 + 1, "same codec");
            assert_eq!((h.base_offset(), h.last_offset_delta()), (3 * i as i64, 2));
            assert_eq!((h.producer_id(), h.base_sequence()), (5, 0));
            let mut buf = b.clone();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            let got: Vec<_> = set
                .records
                .iter()
                .map(|r| (r.offset, r.key.clone().unwrap(), r.timestamp))
                .collect();
            let base = 3 * i as i64;
            let mut want = vec![(base + 2, Bytes::from(format!("x{i}")), NOW + 2)];
            if i == 3 {
                // The last "y" stays; the earlier ones are superseded.
                want.insert(0, (base + 1, Bytes::from("y"), NOW + 1));
            }
            assert_eq!(got, want, "batch {i}");
        }
    }

    #[test]
    fn kept_records_are_copied_byte_for_byte_headers_included() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = open(&tmp.path().join("c-0"));
        let mut kept = TestRecord::kv(NOW + 5, "k", Some("v"));
        kept.headers = vec![
            (b"h".to_vec(), Some(b"1".to_vec())),
            (b"h".to_vec(), Some(b"2".to_vec())),
            (b"n".to_vec(), None),
        ];
        let batch = encode_batch(&TestBatch {
            keyed: vec![TestRecord::kv(NOW, "k", Some("old")), kept],
            ..TestBatch::default()
        });
        log.append_as_leader(batch.clone(), 0, NOW).unwrap();
        log.roll().unwrap();
        clean(&mut log, NOW).unwrap();
        let out = read_all(&log);
        let h = validate(&out[0]).unwrap();
        assert_eq!(h.record_count(), 1);
        assert_eq!(h.max_timestamp(), NOW + 5);
        let original = parse_records(&batch[HEADER_LEN..], 2).unwrap();
        let cleaned = parse_records(&out[0][HEADER_LEN..], 1).unwrap();
        assert_eq!(cleaned[0].bytes, original[1].bytes);
    }

    #[test]
    fn records_without_keys_are_kept_and_refused_on_produce() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = open(&tmp.path().join("c-0"));
        match log.append_as_leader(simple_batch(2, NOW, 5), 0, NOW) {
            Err(LogError::InvalidBatch {
                source: batch::BatchError::MissingKey,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(log.log_end_offset(), 0);
        // Written while the topic was not compacted.
        log.set_config(LogConfig {
            cleanup_policy: CleanupPolicy::Delete,
            ..config()
        })
        .unwrap();
        log.append_as_leader(simple_batch(2, NOW, 5), 0, NOW)
            .unwrap();
        log.set_config(config()).unwrap();
        log.append_as_leader(kv_batch(&[("a", Some("1")), ("a", Some("2"))], NOW), 0, NOW)
            .unwrap();
        log.roll().unwrap();
        clean(&mut log, NOW).unwrap();
        let recs = records(&log);
        assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 1, 3]);
        assert_eq!(recs[0].1, None);
    }

    #[test]
    fn the_dirty_ratio_and_the_compaction_lag_decide_when_to_clean() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = open(&tmp.path().join("c-0"));
        log.set_config(LogConfig {
            min_cleanable_dirty_ratio: 0.5,
            ..config()
        })
        .unwrap();
        overwrite(&mut log, 30, 7, |_| 0);
        log.roll().unwrap();
        clean(&mut log, NOW).unwrap();
        let cleaned_bytes = log.size_bytes();
        // A little new data: not dirty enough.
        log.append_as_leader(kv_batch(&[("k1", Some("x"))], NOW), 0, NOW)
            .unwrap();
        log.roll().unwrap();
        assert!(log.size_bytes() - cleaned_bytes < cleaned_bytes);
        assert_eq!(clean(&mut log, NOW), None);
        // Enough of it: due.
        overwrite(&mut log, 10, 8, |_| 0);
        log.roll().unwrap();
        assert!(clean(&mut log, NOW).is_some());

        // min.compaction.lag.ms: segments younger than the lag wait.
        log.set_config(LogConfig {
            min_compaction_lag_ms: 10_000,
            ..config()
        })
        .unwrap();
        overwrite(&mut log, 10, 9, |_| 0); // timestamps around NOW - 1000
        log.roll().unwrap();
        assert_eq!(clean(&mut log, NOW), None);
        assert!(clean(&mut log, NOW + 10_000).is_some());
    }

    #[test]
    fn codecs_round_trip() {
        let raw: Vec<u8> = (0..5000u32).flat_map(|i| (i % 251).to_be_bytes()).collect();
        for codec in 1..=4 {
            let packed = compress(codec, &raw).unwrap();
            assert_eq!(
                batch::decompress(codec, &packed).unwrap(),
                raw,
                "codec {codec}"
            );
        }
        assert!(compress(7, &raw).is_err());
        assert!(batch::decompress(1, b"not gzip").is_err());
    }
}
