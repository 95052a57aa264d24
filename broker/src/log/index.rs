//! The sparse offset index of a segment (`<base offset>.index`), as in Kafka: it maps
//! offsets to byte positions in the `.log` so a fetch seeks close to its batch and then
//! scans at most about `index.interval.bytes` of batch headers.
//!
//! Entry (8 bytes, big-endian): `relative offset: u32` (a batch's base offset minus the
//! segment's base offset) and `position: u32` (where that batch starts in the `.log`).
//! An entry is added for a batch when more than `index.interval.bytes` were appended since
//! the previous entry (Kafka's rule), so the first batch never has one: position 0 is
//! implied. Kafka indexes a batch's last offset; indexing the base offset instead makes a
//! lookup land on the batch itself when the target is inside it.

use super::error::IndexError;
use super::index_file::{EntryFile, FixedEntry};
use std::io;
use std::path::{Path, PathBuf};

/// One offset index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Base offset of the batch minus the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment's `.log`.
    pub position: u32,
}

impl FixedEntry for IndexEntry {
    const SIZE: usize = 8;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }

    fn decode(b: &[u8]) -> Self {
        IndexEntry {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// The offset index of one segment.
#[derive(Debug)]
pub struct OffsetIndex {
    file: EntryFile<IndexEntry>,
}

impl OffsetIndex {
    /// An empty index; the file is created when first written (see `index_file`).
    pub fn create(path: PathBuf) -> io::Result<OffsetIndex> {
        Ok(OffsetIndex {
            file: EntryFile::create(path)?,
        })
    }

    /// Loads the file and checks it against a `.log` of `log_size` bytes: entries strictly
    /// increasing in offset and position, all positions inside the log.
    pub fn load(path: PathBuf, log_size: u64) -> io::Result<Result<OffsetIndex, IndexError>> {
        let file = match EntryFile::load(path)? {
            Ok(file) => file,
            Err(e) => return Ok(Err(e)),
        };
        let entries: &[IndexEntry] = file.entries();
        for (at, pair) in entries.windows(2).enumerate() {
            if pair[1].relative_offset <= pair[0].relative_offset
                || pair[1].position <= pair[0].position
            {
                return Ok(Err(IndexError::NotMonotonic { at: at + 1 }));
            }
        }
        if let Some(at) = entries
            .iter()
            .position(|e| u64::from(e.position) >= log_size)
        {
            return Ok(Err(IndexError::PastEnd { at }));
        }
        Ok(Ok(OffsetIndex { file }))
    }

    /// An index with exactly `entries` (from a scan of the `.log`); rewrites the file if
    /// it differs, and says whether it did.
    pub fn rebuild(path: PathBuf, entries: Vec<IndexEntry>) -> io::Result<(OffsetIndex, bool)> {
        let (file, changed) = EntryFile::rebuild(path, entries)?;
        Ok((OffsetIndex { file }, changed))
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// All entries, in order.
    pub fn entries(&self) -> &[IndexEntry] {
        self.file.entries()
    }

    /// The last entry.
    pub fn last(&self) -> Option<IndexEntry> {
        self.entries().last().copied()
    }

    /// The last entry whose offset is at or below `relative_offset`: the batch holding
    /// that offset starts at or after its position.
    pub fn lookup(&self, relative_offset: u32) -> Option<IndexEntry> {
        let entries = self.entries();
        let i = entries.partition_point(|e| e.relative_offset <= relative_offset);
        i.checked_sub(1).map(|i| entries[i])
    }

    /// The first entry whose offset is at or above `relative_offset`: every batch from
    /// its position on starts at or above that offset.
    pub fn first_at_or_above(&self, relative_offset: u32) -> Option<IndexEntry> {
        let entries = self.entries();
        let i = entries.partition_point(|e| e.relative_offset < relative_offset);
        entries.get(i).copied()
    }

    /// Appends an entry (callers keep entries increasing).
    pub fn append(&mut self, entry: IndexEntry) -> io::Result<()> {
        self.file.push(entry)
    }

    /// Drops entries for batches at or after byte `position` (the log was cut there).
    pub fn truncate_to_position(&mut self, position: u64) -> io::Result<()> {
        let keep = self
            .entries()
            .partition_point(|e| u64::from(e.position) < position);
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

    fn e(relative_offset: u32, position: u32) -> IndexEntry {
        IndexEntry {
            relative_offset,
            position,
        }
    }

    #[test]
    fn append_lookup_truncate_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.index");
        let mut idx = OffsetIndex::create(path.clone()).unwrap();
        assert_eq!(idx.lookup(5), None);
        for (o, p) in [(10, 4100), (20, 8300), (35, 12500)] {
            idx.append(e(o, p)).unwrap();
        }
        // New entries wait in memory until a sync (or enough of them gather); the file
        // does not exist before that.
        assert!(!path.exists());
        idx.sync().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        assert_eq!(idx.lookup(9), None);
        assert_eq!(idx.lookup(10), Some(e(10, 4100)));
        assert_eq!(idx.lookup(34), Some(e(20, 8300)));
        assert_eq!(idx.lookup(u32::MAX), Some(e(35, 12500)));
        assert_eq!(idx.first_at_or_above(11), Some(e(20, 8300)));
        assert_eq!(idx.first_at_or_above(36), None);

        let loaded = OffsetIndex::load(path.clone(), 20000).unwrap().unwrap();
        assert_eq!(loaded.entries(), idx.entries());

        idx.truncate_to_position(8300).unwrap();
        assert_eq!(idx.entries(), &[e(10, 4100)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
    }

    #[test]
    fn create_removes_a_stale_file_and_an_empty_index_appears_on_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.index");
        std::fs::write(&path, [0u8, 0, 0, 5, 0, 0, 16, 0]).unwrap();
        let mut idx = OffsetIndex::create(path.clone()).unwrap();
        assert!(!path.exists(), "the old entries must not survive");
        assert_eq!(idx.lookup(u32::MAX), None);
        idx.sync().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(OffsetIndex::load(path, 0).unwrap().unwrap().entries(), &[]);
    }

    #[test]
    fn pending_entries_reach_the_file_in_groups_and_the_file_is_never_held_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.index");
        let mut idx = OffsetIndex::create(path.clone()).unwrap();
        let n = crate::log::index_file::PENDING_MAX as u32;
        for i in 0..n - 1 {
            idx.append(e(i * 10, i * 4096)).unwrap();
        }
        assert!(!path.exists());
        idx.append(e((n - 1) * 10, (n - 1) * 4096)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), u64::from(n) * 8);
        // A crash now loses only the pending tail: the file is a valid, sparser index.
        idx.append(e(n * 10, n * 4096)).unwrap();
        let loaded = OffsetIndex::load(path.clone(), u64::MAX).unwrap().unwrap();
        assert_eq!(loaded.entries(), &idx.entries()[..n as usize]);
        // Truncating below what the file holds cuts the file; above it, only memory.
        idx.truncate_to_position(u64::from(n) * 4096).unwrap();
        assert_eq!(idx.entries().len(), n as usize);
        idx.truncate_to_position(4096).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
        idx.sync().unwrap();
        assert_eq!(
            OffsetIndex::load(path, u64::MAX)
                .unwrap()
                .unwrap()
                .entries(),
            &[e(0, 0)]
        );
    }

    #[test]
    fn damaged_files_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        assert_eq!(
            OffsetIndex::load(path.clone(), 100).unwrap().unwrap_err(),
            IndexError::Missing
        );
        std::fs::write(&path, [0u8; 12]).unwrap();
        assert!(matches!(
            OffsetIndex::load(path.clone(), 100).unwrap().unwrap_err(),
            IndexError::BadSize { len: 12, .. }
        ));
        let mut bytes = Vec::new();
        e(10, 50).encode(&mut bytes);
        e(5, 60).encode(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            OffsetIndex::load(path.clone(), 100).unwrap().unwrap_err(),
            IndexError::NotMonotonic { at: 1 }
        );
        let mut bytes = Vec::new();
        e(10, 50).encode(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            OffsetIndex::load(path.clone(), 50).unwrap().unwrap_err(),
            IndexError::PastEnd { at: 0 }
        );
        let (idx, changed) = OffsetIndex::rebuild(path.clone(), vec![e(10, 50)]).unwrap();
        assert!(!changed);
        assert_eq!(idx.entries(), &[e(10, 50)]);
        let (_, changed) = OffsetIndex::rebuild(path.clone(), vec![]).unwrap();
        assert!(changed);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
