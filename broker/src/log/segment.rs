//! One log segment (Kafka's `LogSegment`): a `.log` file of record batches whose offsets
//! start at the segment's base offset, plus its offset index and time index.
//!
//! The `.log` is append-only (opened `O_APPEND`; batches go in with one vectored write per
//! append) and is only ever shortened by truncation or recovery. Everything the segment
//! knows beyond the file (next offset, largest timestamp, index bookkeeping) can be
//! recomputed from it, which is what opening and recovery do.

use super::batch::{self, BatchHeader, NO_TIMESTAMP};
use super::error::LogError;
use super::index::{IndexEntry, OffsetIndex};
use super::partition::TimestampOffset;
use super::records;
use super::scan::{BatchInfo, FileScanner, Step, HEADER_SCAN_CHUNK};
use super::time_index::{TimeIndex, TimeIndexEntry};
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// Offsets in a segment stay within this distance of its base (Kafka keeps relative
/// offsets in an i32); an append that would pass it rolls a new segment.
pub(crate) const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;

/// Most `iovec`s handed to one `writev` (Linux's `IOV_MAX` is 1024).
const MAX_IOVECS: usize = 1024;

/// The 20-digit, zero-padded base offset that names a segment's files.
pub(crate) fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// `<dir>/<base>.log`
pub(crate) fn log_file(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.log", file_stem(base_offset)))
}

/// `<dir>/<base>.index`
pub(crate) fn index_file(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.index", file_stem(base_offset)))
}

/// `<dir>/<base>.timeindex`
pub(crate) fn time_index_file(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.timeindex", file_stem(base_offset)))
}

fn open_log(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(LogError::io("open", path))
}

/// Index bookkeeping shared by appends and rebuilds, so both make the same entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexState {
    /// Bytes appended since the last offset index entry (including that entry's batch).
    pub bytes_since_entry: u64,
    /// The largest batch max timestamp in the segment.
    pub max_timestamp: i64,
    /// Base offset of the batch that first reached it.
    pub offset_of_max_timestamp: i64,
}

impl IndexState {
    pub(crate) fn new(base_offset: i64) -> IndexState {
        IndexState {
            bytes_since_entry: 0,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
        }
    }

    /// Accounts for one batch. Kafka's rule: if more than `interval` bytes went in since
    /// the last entry, this batch gets an offset index entry and the time index gets the
    /// largest timestamp so far (if it grew; [`TimeIndex::maybe_append`] decides).
    pub(crate) fn step(
        &mut self,
        base_offset: i64,
        info: &BatchInfo,
        interval: u64,
    ) -> Option<(IndexEntry, TimeIndexEntry)> {
        if info.max_timestamp > self.max_timestamp {
            self.max_timestamp = info.max_timestamp;
            self.offset_of_max_timestamp = info.base_offset;
        }
        let entries = if self.bytes_since_entry > interval {
            self.bytes_since_entry = 0;
            Some((
                IndexEntry {
                    relative_offset: relative(base_offset, info.base_offset),
                    position: u32::try_from(info.position).unwrap_or(u32::MAX),
                },
                self.time_entry(base_offset),
            ))
        } else {
            None
        };
        self.bytes_since_entry += info.size;
        entries
    }

    /// The time index entry for the largest timestamp so far.
    pub(crate) fn time_entry(&self, base_offset: i64) -> TimeIndexEntry {
        TimeIndexEntry {
            timestamp: self.max_timestamp,
            relative_offset: relative(base_offset, self.offset_of_max_timestamp),
        }
    }
}

/// `offset - base` as an index's relative offset, clamped to the `u32` range (appends and
/// recovery keep real offsets within [`MAX_RELATIVE_OFFSET`]).
pub(crate) fn relative(base_offset: i64, offset: i64) -> u32 {
    u32::try_from(offset.saturating_sub(base_offset).max(0)).unwrap_or(u32::MAX)
}

/// What opening a segment without a full scan found.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// The indexes and the tail of the log agree.
    Ready(Segment),
    /// Something does not add up; the segment must be recovered (scanned and re-indexed).
    NeedsRecovery(String),
}

/// One segment.
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    log_path: Arc<Path>,
    file: Arc<File>,
    /// Bytes of whole batches in the file.
    size: u64,
    /// The offset after the last batch (the base offset when empty).
    next_offset: i64,
    index: OffsetIndex,
    time_index: TimeIndex,
    state: IndexState,
    /// When the segment's time-based roll clock started (its first append, broker clock).
    roll_start_ms: Option<i64>,
    /// Written since the last fsync.
    dirty: bool,
}

/// The time-based roll clock of a segment found on disk: its first batch's max timestamp,
/// but never later than now (a producer clock ahead of ours must not delay the roll), or
/// now if the batch has no timestamp.
fn recovered_roll_start(first_max_timestamp: Option<i64>, now_ms: i64) -> Option<i64> {
    first_max_timestamp.map(|ts| if ts >= 0 { ts.min(now_ms) } else { now_ms })
}

impl Segment {
    /// Creates an empty segment's three files and fsyncs the directory.
    pub(crate) fn create(dir: &Path, base_offset: i64) -> Result<Segment, LogError> {
        Self::create_with(dir, base_offset, true)
    }

    /// [`Segment::create`], fsyncing the directory only if `sync_dir` (the first segment of
    /// a new partition leaves that to the partition's first flush).
    pub(crate) fn create_with(
        dir: &Path,
        base_offset: i64,
        sync_dir: bool,
    ) -> Result<Segment, LogError> {
        let log_path = log_file(dir, base_offset);
        let file = open_log(&log_path)?;
        file.set_len(0)
            .map_err(LogError::io("truncate", &log_path))?;
        let index_path = index_file(dir, base_offset);
        let index =
            OffsetIndex::create(index_path.clone()).map_err(LogError::io("create", &index_path))?;
        let time_path = time_index_file(dir, base_offset);
        let time_index =
            TimeIndex::create(time_path.clone()).map_err(LogError::io("create", &time_path))?;
        if sync_dir {
            fjord_shared::fs::sync_dir(dir).map_err(LogError::io("fsync", dir))?;
        }
        Ok(Segment {
            base_offset,
            log_path: Arc::from(log_path),
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            index,
            time_index,
            state: IndexState::new(base_offset),
            roll_start_ms: None,
            dirty: false,
        })
    }

    /// Assembles a segment recovery has scanned and re-indexed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_recovery(
        base_offset: i64,
        log_path: PathBuf,
        file: File,
        size: u64,
        next_offset: i64,
        index: OffsetIndex,
        time_index: TimeIndex,
        state: IndexState,
        first_max_timestamp: Option<i64>,
        now_ms: i64,
    ) -> Segment {
        Segment {
            base_offset,
            log_path: Arc::from(log_path),
            file: Arc::new(file),
            size,
            next_offset,
            index,
            time_index,
            state,
            roll_start_ms: recovered_roll_start(first_max_timestamp, now_ms),
            dirty: true,
        }
    }

    /// Opens a segment below the recovery point without scanning all of it: loads and
    /// checks both indexes, then scans the batch headers after the last offset index
    /// entry to find the next offset and largest timestamp. Any inconsistency asks for
    /// recovery instead.
    pub(crate) fn load(dir: &Path, base_offset: i64, now_ms: i64) -> Result<Loaded, LogError> {
        let log_path = log_file(dir, base_offset);
        let file = open_log(&log_path)?;
        let size = file
            .metadata()
            .map_err(LogError::io("stat", &log_path))?
            .len();
        if size > u64::from(u32::MAX) {
            return Ok(Loaded::NeedsRecovery("log larger than 4 GiB".into()));
        }
        let index_path = index_file(dir, base_offset);
        let index = match OffsetIndex::load(index_path.clone(), size)
            .map_err(LogError::io("read", &index_path))?
        {
            Ok(index) => index,
            Err(e) => return Ok(Loaded::NeedsRecovery(format!("offset index: {e}"))),
        };
        let time_path = time_index_file(dir, base_offset);
        let time_index =
            match TimeIndex::load(time_path.clone()).map_err(LogError::io("read", &time_path))? {
                Ok(index) => index,
                Err(e) => return Ok(Loaded::NeedsRecovery(format!("time index: {e}"))),
            };
        let (state, next_offset) = match scan_tail(&file, base_offset, &index, &time_index, size)
            .map_err(LogError::io("read", &log_path))?
        {
            Ok(found) => found,
            Err(reason) => return Ok(Loaded::NeedsRecovery(reason)),
        };
        let first_max_timestamp =
            first_batch_max_timestamp(&file, size).map_err(LogError::io("read", &log_path))?;
        Ok(Loaded::Ready(Segment {
            base_offset,
            log_path: Arc::from(log_path),
            file: Arc::new(file),
            size,
            next_offset,
            index,
            time_index,
            state,
            roll_start_ms: recovered_roll_start(first_max_timestamp, now_ms),
            dirty: false,
        }))
    }

    /// The first offset this segment may hold.
    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// The offset after its last batch (the base offset when empty).
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Bytes of batches in the `.log`.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// True if written since the last fsync.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// True if it holds no batch.
    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The `.log` path.
    pub(crate) fn log_path(&self) -> &Arc<Path> {
        &self.log_path
    }

    /// The open `.log`, shared with reads in flight.
    pub(crate) fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// The offset index.
    pub(crate) fn index(&self) -> &OffsetIndex {
        &self.index
    }

    /// The time index.
    #[cfg(test)]
    pub(crate) fn time_index(&self) -> &TimeIndex {
        &self.time_index
    }

    /// The largest batch max timestamp (-1 if none).
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.state.max_timestamp
    }

    /// Base offset of the batch holding the largest timestamp.
    /// When the time-based roll clock started (None while empty).
    pub(crate) fn roll_start_ms(&self) -> Option<i64> {
        self.roll_start_ms
    }

    /// The timestamp retention compares: the largest batch timestamp, or the file's
    /// modification time if no batch has one (Kafka does the same).
    pub(crate) fn largest_timestamp(&self) -> i64 {
        if self.state.max_timestamp >= 0 {
            return self.state.max_timestamp;
        }
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            // Unknown age: never delete by time.
            .unwrap_or(i64::MAX)
    }

    /// Appends batches already validated and numbered. `bufs` are the bytes to write
    /// (in order; together exactly the batches); `batches` describe them, with positions
    /// relative to the start of this append.
    pub(crate) fn append(
        &mut self,
        bufs: &[&[u8]],
        batches: &[BatchInfo],
        index_interval: u64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let Some(last) = batches.last() else {
            return Ok(());
        };
        write_all_vectored(&self.file, bufs).map_err(LogError::io("append to", &self.log_path))?;
        self.dirty = true;
        let start = self.size;
        for b in batches {
            let info = BatchInfo {
                position: start + b.position,
                ..*b
            };
            if let Some((entry, time_entry)) =
                self.state.step(self.base_offset, &info, index_interval)
            {
                self.index
                    .append(entry)
                    .map_err(LogError::io("append to", self.index.path()))?;
                self.time_index
                    .maybe_append(time_entry)
                    .map_err(LogError::io("append to", self.time_index.path()))?;
            }
        }
        self.size = start + last.position + last.size;
        self.next_offset = last.last_offset + 1;
        self.roll_start_ms.get_or_insert(now_ms);
        Ok(())
    }

    /// Fsyncs the `.log` and both indexes if anything was written since the last sync.
    pub(crate) fn sync(&mut self) -> Result<(), LogError> {
        if !self.dirty {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(LogError::io("fsync", &self.log_path))?;
        self.index
            .sync()
            .map_err(LogError::io("fsync", self.index.path()))?;
        self.time_index
            .sync()
            .map_err(LogError::io("fsync", self.time_index.path()))?;
        self.dirty = false;
        Ok(())
    }

    /// Makes the segment inactive (on roll and close): the time index gets its final
    /// entry for the largest timestamp, and everything is written and fsynced.
    pub(crate) fn seal(&mut self) -> Result<(), LogError> {
        let entry = self.state.time_entry(self.base_offset);
        if self
            .time_index
            .maybe_append(entry)
            .map_err(LogError::io("append to", self.time_index.path()))?
        {
            self.dirty = true;
        }
        self.sync()
    }

    /// The first batch whose last offset is at or above `offset`, found through the
    /// offset index and a short header scan.
    pub(crate) fn find_batch(&self, offset: i64) -> Result<Option<BatchInfo>, LogError> {
        let start = self
            .index
            .lookup(relative(self.base_offset, offset))
            .map_or(0, |e| u64::from(e.position));
        let mut scan = FileScanner::new(&self.file, start, self.size, HEADER_SCAN_CHUNK);
        loop {
            match scan
                .next_header()
                .map_err(LogError::io("read", &self.log_path))?
            {
                Step::Batch(info) if info.last_offset >= offset => return Ok(Some(info)),
                Step::Batch(_) => {}
                Step::End => return Ok(None),
                Step::Invalid { position, reason } => {
                    return Err(LogError::Corrupt {
                        path: self.log_path.to_path_buf(),
                        position,
                        reason,
                    })
                }
            }
        }
    }

    /// Removes every batch from the one holding `offset` on (a batch is never split, so
    /// the new end may be below `offset`), fixes both indexes and fsyncs the cut. Returns
    /// the bytes removed.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<u64, LogError> {
        if offset >= self.next_offset {
            return Ok(0);
        }
        let (position, next_offset) = if offset <= self.base_offset {
            (0, self.base_offset)
        } else {
            match self.find_batch(offset)? {
                Some(info) if info.position > 0 => (info.position, info.base_offset),
                Some(_) => (0, self.base_offset),
                None => return Ok(0),
            }
        };
        let removed = self.size - position;
        self.file
            .set_len(position)
            .map_err(LogError::io("truncate", &self.log_path))?;
        self.file
            .sync_data()
            .map_err(LogError::io("fsync", &self.log_path))?;
        self.index
            .truncate_to_position(position)
            .map_err(LogError::io("truncate", self.index.path()))?;
        self.time_index
            .truncate_to_offset(relative(self.base_offset, next_offset))
            .map_err(LogError::io("truncate", self.time_index.path()))?;
        self.size = position;
        self.next_offset = next_offset;
        self.dirty = true;
        match scan_tail(
            &self.file,
            self.base_offset,
            &self.index,
            &self.time_index,
            position,
        )
        .map_err(LogError::io("read", &self.log_path))?
        {
            Ok((state, _)) => self.state = state,
            Err(reason) => {
                return Err(LogError::Corrupt {
                    path: self.log_path.to_path_buf(),
                    position,
                    reason,
                })
            }
        }
        if position == 0 {
            self.roll_start_ms = None;
        }
        Ok(removed)
    }

    /// The first record at or after `start_offset` whose timestamp is at least
    /// `timestamp`, if this segment has one, searched record by record (compressed batches
    /// are decompressed, as Kafka does; one that does not decode answers with its first
    /// offset at or after `start_offset` and its max timestamp).
    pub(crate) fn find_offset_by_timestamp(
        &self,
        timestamp: i64,
        start_offset: i64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        if self.state.max_timestamp < timestamp || start_offset >= self.next_offset {
            return Ok(None);
        }
        let hint = self
            .time_index
            .lookup(timestamp)
            .map_or(self.base_offset, |e| {
                self.base_offset + i64::from(e.relative_offset)
            })
            .max(start_offset);
        self.search_batches(
            hint,
            |info| info.last_offset >= start_offset && info.max_timestamp >= timestamp,
            |info, records| {
                if records.is_empty() {
                    // Not decodable: the batch's own first offset and largest timestamp.
                    return Some((info.base_offset.max(start_offset), info.max_timestamp));
                }
                records
                    .iter()
                    .find(|r| r.offset >= start_offset && r.timestamp >= timestamp)
                    .map(|r| (r.offset, r.timestamp))
            },
        )
    }

    /// ListOffsets "max timestamp" (KIP-734): the first record at or after `start_offset`
    /// that carries the segment's largest timestamp, as Kafka finds it (the batch that
    /// first reached it, then the record inside). `None` if the segment has no timestamp.
    pub(crate) fn find_offset_of_max_timestamp(
        &self,
        start_offset: i64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        let max = self.state.max_timestamp;
        if max < 0 || start_offset >= self.next_offset {
            return Ok(None);
        }
        self.search_batches(
            self.state.offset_of_max_timestamp.max(start_offset),
            |info| info.last_offset >= start_offset && info.max_timestamp == max,
            |info, records| {
                let offset = records
                    .iter()
                    .find(|r| r.offset >= start_offset && r.timestamp == max)
                    .map_or(info.base_offset.max(start_offset), |r| r.offset);
                Some((offset, max))
            },
        )
    }

    /// Walks the batches from the index entry at or below `from`; for each batch that
    /// `wanted` accepts by its header, `pick` sees its records' offsets and timestamps
    /// (decompressed if need be; empty if they do not decode) and may answer
    /// `(offset, timestamp)`. The first answer wins.
    fn search_batches(
        &self,
        from: i64,
        wanted: impl Fn(&BatchInfo) -> bool,
        pick: impl Fn(&BatchInfo, &[records::RecordPosition]) -> Option<(i64, i64)>,
    ) -> Result<Option<TimestampOffset>, LogError> {
        let start = self
            .index
            .lookup(relative(self.base_offset, from))
            .map_or(0, |e| u64::from(e.position));
        let mut scan = FileScanner::new(&self.file, start, self.size, HEADER_SCAN_CHUNK);
        loop {
            let info = match scan.next_header().map_err(|e| self.read_error(e))? {
                Step::Batch(info) => info,
                Step::End => return Ok(None),
                Step::Invalid { position, reason } => {
                    return Err(LogError::Corrupt {
                        path: self.log_path.to_path_buf(),
                        position,
                        reason,
                    })
                }
            };
            if !wanted(&info) {
                continue;
            }
            let bytes = scan.batch_bytes(&info).map_err(|e| self.read_error(e))?;
            if let Some((offset, timestamp)) = pick(&info, &records::record_times(bytes)) {
                return Ok(Some(TimestampOffset {
                    timestamp,
                    offset,
                    leader_epoch: (info.leader_epoch >= 0).then_some(info.leader_epoch),
                }));
            }
        }
    }

    fn read_error(&self, source: io::Error) -> LogError {
        LogError::Io {
            op: "read",
            path: self.log_path.to_path_buf(),
            source,
        }
    }

    /// Deletes the segment's files; see [`delete_files`].
    pub(crate) fn delete_files(&self, dir: &Path) -> Result<(), LogError> {
        delete_files(dir, self.base_offset)
    }
}

/// Deletes the files of segment `base_offset` in `dir`, the `.log` first (index files
/// without a `.log` are cleaned up on open). Reads holding the `.log` open keep working
/// until they finish.
pub(crate) fn delete_files(dir: &Path, base_offset: i64) -> Result<(), LogError> {
    for path in [
        log_file(dir, base_offset),
        index_file(dir, base_offset),
        time_index_file(dir, base_offset),
    ] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("delete", &path)(e)),
        }
    }
    Ok(())
}

/// The max timestamp of the first batch of a non-empty file.
fn first_batch_max_timestamp(file: &File, size: u64) -> io::Result<Option<i64>> {
    if size < batch::HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut header = [0u8; batch::HEADER_LEN];
    file.read_exact_at(&mut header, 0)?;
    Ok(BatchHeader::parse(&header).ok().map(|h| h.max_timestamp()))
}

/// Recomputes a segment's index state and next offset from its indexes and the batch
/// headers after the last offset index entry (up to `end`). `Err(reason)` if the headers
/// and the indexes disagree.
fn scan_tail(
    file: &File,
    base_offset: i64,
    index: &OffsetIndex,
    time_index: &TimeIndex,
    end: u64,
) -> io::Result<Result<(IndexState, i64), String>> {
    let mut state = IndexState::new(base_offset);
    if let Some(last) = time_index.last() {
        state.max_timestamp = last.timestamp;
        state.offset_of_max_timestamp = base_offset + i64::from(last.relative_offset);
    }
    let entry = index.last();
    let start = entry.map_or(0, |e| u64::from(e.position));
    let mut scan = FileScanner::new(file, start, end, HEADER_SCAN_CHUNK);
    let mut next_offset = base_offset;
    let mut first = true;
    loop {
        match scan.next_header()? {
            Step::Batch(info) => {
                if first {
                    if let Some(e) = entry {
                        if info.base_offset != base_offset + i64::from(e.relative_offset) {
                            return Ok(Err(format!(
                                "offset index entry {e:?} does not match the batch at that position (offset {})",
                                info.base_offset
                            )));
                        }
                    }
                }
                first = false;
                if info.base_offset < next_offset
                    || info.last_offset < info.base_offset
                    || info.last_offset - base_offset > MAX_RELATIVE_OFFSET
                {
                    return Ok(Err(format!(
                        "batch at position {} has offsets {}..={} out of order",
                        info.position, info.base_offset, info.last_offset
                    )));
                }
                if info.max_timestamp > state.max_timestamp {
                    state.max_timestamp = info.max_timestamp;
                    state.offset_of_max_timestamp = info.base_offset;
                }
                state.bytes_since_entry += info.size;
                next_offset = info.last_offset + 1;
            }
            Step::End => break,
            Step::Invalid { position, reason } => {
                return Ok(Err(format!("batch at position {position}: {reason}")))
            }
        }
    }
    if let Some(last) = time_index.last() {
        if base_offset + i64::from(last.relative_offset) >= next_offset && end > 0 {
            return Ok(Err("time index points past the last batch".into()));
        }
    }
    if end == 0 && (time_index.last().is_some() || entry.is_some()) {
        return Ok(Err("indexes of an empty segment are not empty".into()));
    }
    Ok(Ok((state, next_offset)))
}

/// Writes all of `bufs` with as few `writev` calls as the kernel allows, continuing after
/// short writes. The file is in append mode, so the bytes land at its end.
fn write_all_vectored(mut file: &File, bufs: &[&[u8]]) -> io::Result<()> {
    let mut bufs: Vec<&[u8]> = bufs.iter().copied().filter(|b| !b.is_empty()).collect();
    let mut first = 0;
    while first < bufs.len() {
        let slices: Vec<IoSlice<'_>> = bufs[first..]
            .iter()
            .take(MAX_IOVECS)
            .map(|b| IoSlice::new(b))
            .collect();
        let mut written = match file.write_vectored(&slices) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while first < bufs.len() && written >= bufs[first].len() {
            written -= bufs[first].len();
            first += 1;
        }
        if written > 0 {
            bufs[first] = &bufs[first][written..];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::validate;
    use crate::log::test_util::{batch_from, simple_batch};

    const NOW: i64 = 1_700_000_000_000;

    /// Appends follower-style batches of `count` records each; returns their infos.
    fn fill(seg: &mut Segment, batches: usize, count: usize) -> Vec<BatchInfo> {
        let mut infos = Vec::new();
        for _ in 0..batches {
            let b = batch_from(seg.next_offset(), count, 1000 + seg.next_offset(), 0);
            let h = validate(&b).unwrap();
            let info = BatchInfo::from_header(0, &h);
            seg.append(&[&b[..]], &[info], 100, NOW).unwrap();
            infos.push(BatchInfo {
                position: seg.size() - info.size,
                ..info
            });
        }
        infos
    }

    #[test]
    fn append_find_truncate_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 100).unwrap();
        assert!(log_file(dir.path(), 100).ends_with("00000000000000000100.log"));
        let infos = fill(&mut seg, 10, 3);
        assert_eq!(seg.next_offset(), 130);
        assert_eq!(seg.roll_start_ms(), Some(NOW));
        assert!(!seg.index().entries().is_empty());
        assert_eq!(seg.max_timestamp(), 1127);
        for (i, info) in infos.iter().enumerate() {
            for offset in info.base_offset..=info.last_offset {
                assert_eq!(seg.find_batch(offset).unwrap(), Some(*info), "batch {i}");
            }
        }
        assert_eq!(seg.find_batch(130).unwrap(), None);
        let found = seg.find_offset_by_timestamp(1110, 100).unwrap().unwrap();
        assert_eq!((found.offset, found.timestamp), (112, 1112));

        // Cut inside batch 6 (offsets 118..=120): it goes whole.
        let removed = seg.truncate_to(119).unwrap();
        assert_eq!(removed, infos[6..].iter().map(|i| i.size).sum::<u64>());
        assert_eq!(seg.next_offset(), 118);
        assert_eq!(seg.size(), infos[6].position);
        assert_eq!(seg.max_timestamp(), 1115);
        assert!(seg
            .index()
            .entries()
            .iter()
            .all(|e| u64::from(e.position) < infos[6].position));
        seg.seal().unwrap();

        let Loaded::Ready(loaded) = Segment::load(dir.path(), 100, NOW).unwrap() else {
            panic!("a sealed segment loads");
        };
        assert_eq!(loaded.next_offset(), 118);
        assert_eq!(loaded.size(), seg.size());
        assert_eq!(loaded.max_timestamp(), 1115);
        assert_eq!(loaded.state.offset_of_max_timestamp, 115);
        assert_eq!(loaded.index().entries(), seg.index().entries());
        assert_eq!(
            loaded.roll_start_ms(),
            Some(1100),
            "first batch's timestamp"
        );

        seg.truncate_to(100).unwrap();
        assert!(seg.is_empty());
        assert_eq!(seg.roll_start_ms(), None);
        seg.delete_files(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn index_state_follows_kafkas_interval_rule() {
        let mut state = IndexState::new(0);
        let b = |position, base_offset, size| BatchInfo {
            position,
            size,
            base_offset,
            last_offset: base_offset,
            max_timestamp: 10 + base_offset,
            leader_epoch: 0,
        };
        assert_eq!(state.step(0, &b(0, 0, 60), 100), None);
        assert_eq!(state.step(0, &b(60, 1, 60), 100), None);
        let (entry, time) = state.step(0, &b(120, 2, 60), 100).unwrap();
        assert_eq!((entry.relative_offset, entry.position), (2, 120));
        assert_eq!((time.timestamp, time.relative_offset), (12, 2));
        assert_eq!(state.bytes_since_entry, 60);
        assert_eq!(state.step(0, &b(180, 3, 60), 100), None);
    }

    #[test]
    fn vectored_writes_store_all_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open_log(&path).unwrap();
        let a = simple_batch(2, 1, 3);
        let pieces: Vec<&[u8]> = vec![&a[..16], &[], &a[16..], &a[..]];
        write_all_vectored(&file, &pieces).unwrap();
        let mut expected = a.to_vec();
        expected.extend_from_slice(&a);
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
