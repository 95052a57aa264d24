//! The time index of a segment (`<base offset>.timeindex`), as in Kafka (KIP-33): it
//! maps timestamps to offsets so ListOffsets by timestamp scans little of the `.log`.
//!
//! Entry (12 bytes, big-endian): `timestamp: i64` (the largest batch max timestamp seen in
//! the segment so far) and `relative offset: u32` (the base offset, relative to the
//! segment, of the batch that first reached it). Entries are added together with offset
//! index entries, only when the timestamp grew, so timestamps strictly increase; and when
//! a segment is sealed (rolled, closed, recovered) it gets a final entry for its largest
//! timestamp, so the last entry of a sealed segment is its max timestamp.

use super::error::IndexError;
use super::index_file::{EntryFile, FixedEntry};
use std::io;
use std::path::{Path, PathBuf};

/// One time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeIndexEntry {
    /// The largest timestamp seen in the segment up to this batch.
    pub timestamp: i64,
    /// The batch that first reached it: base offset minus the segment's base offset.
    pub relative_offset: u32,
}

impl FixedEntry for TimeIndexEntry {
    const SIZE: usize = 12;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }

    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        TimeIndexEntry {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// The time index of one segment.
#[derive(Debug)]
pub struct TimeIndex {
    file: EntryFile<TimeIndexEntry>,
}

impl TimeIndex {
    /// An empty index; the file is created when first written (see `index_file`).
    pub fn create(path: PathBuf) -> io::Result<TimeIndex> {
        Ok(TimeIndex {
            file: EntryFile::create(path)?,
        })
    }

    /// Loads the file and checks it: timestamps strictly increasing, offsets not
    /// decreasing.
    pub fn load(path: PathBuf) -> io::Result<Result<TimeIndex, IndexError>> {
        let file = match EntryFile::load(path)? {
            Ok(file) => file,
            Err(e) => return Ok(Err(e)),
        };
        let entries: &[TimeIndexEntry] = file.entries();
        for (at, pair) in entries.windows(2).enumerate() {
            if pair[1].timestamp <= pair[0].timestamp
                || pair[1].relative_offset < pair[0].relative_offset
            {
                return Ok(Err(IndexError::NotMonotonic { at: at + 1 }));
            }
        }
        Ok(Ok(TimeIndex { file }))
    }

    /// An index with exactly `entries`; rewrites the file if it differs, and says whether
    /// it did.
    pub fn rebuild(path: PathBuf, entries: Vec<TimeIndexEntry>) -> io::Result<(TimeIndex, bool)> {
        let (file, changed) = EntryFile::rebuild(path, entries)?;
        Ok((TimeIndex { file }, changed))
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// All entries, in order.
    pub fn entries(&self) -> &[TimeIndexEntry] {
        self.file.entries()
    }

    /// The last entry.
    pub fn last(&self) -> Option<TimeIndexEntry> {
        self.entries().last().copied()
    }

    /// The last entry with a timestamp at or below `timestamp`. Every batch before the
    /// entry's batch has a smaller max timestamp, so a search for the first batch with
    /// max timestamp `>= timestamp` can start at the entry's batch.
    pub fn lookup(&self, timestamp: i64) -> Option<TimeIndexEntry> {
        let entries = self.entries();
        let i = entries.partition_point(|e| e.timestamp <= timestamp);
        i.checked_sub(1).map(|i| entries[i])
    }

    /// Appends `entry` if its timestamp is larger than the last entry's (Kafka's
    /// `maybeAppend`); returns whether it did.
    pub fn maybe_append(&mut self, entry: TimeIndexEntry) -> io::Result<bool> {
        if entry.timestamp <= self.last().map_or(-1, |l| l.timestamp) {
            return Ok(false);
        }
        self.file.push(entry)?;
        Ok(true)
    }

    /// Drops entries for batches at or above `relative_offset` (the log was cut there).
    pub fn truncate_to_offset(&mut self, relative_offset: u32) -> io::Result<()> {
        let keep = self
            .entries()
            .partition_point(|e| e.relative_offset < relative_offset);
        self.file.truncate(keep)
    }

    /// Writes the entries not yet in the file, and fsyncs it.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(timestamp: i64, relative_offset: u32) -> TimeIndexEntry {
        TimeIndexEntry {
            timestamp,
            relative_offset,
        }
    }

    #[test]
    fn append_lookup_truncate_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.timeindex");
        let mut idx = TimeIndex::create(path.clone()).unwrap();
        assert!(idx.maybe_append(e(1000, 0)).unwrap());
        assert!(!idx.maybe_append(e(1000, 5)).unwrap(), "not larger");
        assert!(!idx.maybe_append(e(900, 6)).unwrap());
        assert!(idx.maybe_append(e(2000, 10)).unwrap());
        assert!(idx.maybe_append(e(3000, 20)).unwrap());
        assert!(!path.exists(), "pending until a sync");
        idx.sync().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 36);
        assert_eq!(idx.lookup(999), None);
        assert_eq!(idx.lookup(1000), Some(e(1000, 0)));
        assert_eq!(idx.lookup(2999), Some(e(2000, 10)));
        assert_eq!(idx.lookup(i64::MAX), Some(e(3000, 20)));

        let loaded = TimeIndex::load(path.clone()).unwrap().unwrap();
        assert_eq!(loaded.entries(), idx.entries());

        idx.truncate_to_offset(10).unwrap();
        assert_eq!(idx.entries(), &[e(1000, 0)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 12);
    }

    #[test]
    fn damaged_files_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.timeindex");
        std::fs::write(&path, [0u8; 13]).unwrap();
        assert!(matches!(
            TimeIndex::load(path.clone()).unwrap().unwrap_err(),
            IndexError::BadSize { len: 13, .. }
        ));
        let mut bytes = Vec::new();
        e(2000, 1).encode(&mut bytes);
        e(1000, 2).encode(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            TimeIndex::load(path).unwrap().unwrap_err(),
            IndexError::NotMonotonic { at: 1 }
        );
    }
}
