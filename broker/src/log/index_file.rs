//! Storage shared by the two segment indexes: fixed-size big-endian entries, held in
//! memory (they are small: one per `index.interval.bytes` of log) and appended to a file
//! as they are made.
//!
//! Index files are caches of facts in the `.log`: nothing is lost if one is missing or
//! damaged, because recovery rebuilds it. So they are written without their own fsync
//! discipline beyond the segment's: they are fsynced with the segment (on flush, roll,
//! close), and checked on open (size a multiple of the entry size, monotonic entries).
//! Unlike Kafka's, our index files are not preallocated or memory-mapped.
//!
//! No index file stays open, and a new one is not created before it is first written:
//! new entries wait in memory and are written (open, write, close) once [`PENDING_MAX`]
//! of them have gathered, on sync, and when the segment is sealed, so a partition holds
//! one descriptor (its active `.log`) instead of three, and a broker with 10,000
//! partitions fits in a 20,000-descriptor limit. After a crash an
//! index may lack its newest entries: it is then sparser, never wrong (a lookup scans on
//! from the last entry it has).

use super::error::IndexError;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A fixed-size index entry.
pub(crate) trait FixedEntry: Copy {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// Appends the encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes `SIZE` bytes.
    fn decode(b: &[u8]) -> Self;
}

/// Entries written to the file at most this many at a time.
pub(crate) const PENDING_MAX: usize = 32;

/// Entries in memory plus their file.
#[derive(Debug)]
pub(crate) struct EntryFile<E> {
    path: PathBuf,
    entries: Vec<E>,
    /// How many of `entries` the file holds; the rest are pending.
    written: usize,
    /// Whether the file has been written since its last fsync.
    unsynced: bool,
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

fn encode_all<E: FixedEntry>(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * E::SIZE);
    for e in entries {
        e.encode(&mut out);
    }
    out
}

impl<E: FixedEntry> EntryFile<E> {
    /// An empty index. A file left at `path` is removed; the new one is created by the
    /// first write or sync, so that a new partition creates one file (its `.log`) instead
    /// of three. Creating a file costs far more than writing to one on some file systems
    /// (ext4 without a journal scans past recently deleted inodes for every new one), and
    /// a new topic creates thousands. A missing index is rebuilt on open.
    pub(crate) fn create(path: PathBuf) -> io::Result<EntryFile<E>> {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(EntryFile {
            path,
            entries: Vec::new(),
            written: 0,
            unsynced: true,
        })
    }

    /// Reads the file; `Err(IndexError)` if it is missing or its size is wrong (the caller
    /// checks the entries' order, which depends on the entry type).
    pub(crate) fn load(path: PathBuf) -> io::Result<Result<EntryFile<E>, IndexError>> {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Err(IndexError::Missing)),
            Err(e) => return Err(e),
        };
        if bytes.len() % E::SIZE != 0 {
            return Ok(Err(IndexError::BadSize {
                len: bytes.len() as u64,
                entry_size: E::SIZE,
            }));
        }
        let entries: Vec<E> = bytes.chunks_exact(E::SIZE).map(E::decode).collect();
        Ok(Ok(EntryFile {
            path,
            written: entries.len(),
            entries,
            unsynced: false,
        }))
    }

    /// An index holding `entries`, rewriting the file only if its bytes differ. Returns
    /// whether they differed (the index was missing, stale or damaged).
    pub(crate) fn rebuild(path: PathBuf, entries: Vec<E>) -> io::Result<(EntryFile<E>, bool)> {
        let wanted = encode_all(&entries);
        let existing = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let changed = existing.as_deref() != Some(&wanted[..]);
        if changed {
            let file = open_rw(&path)?;
            file.set_len(0)?;
            file.write_all_at(&wanted, 0)?;
        }
        Ok((
            EntryFile {
                path,
                written: entries.len(),
                entries,
                unsynced: changed,
            },
            changed,
        ))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn entries(&self) -> &[E] {
        &self.entries
    }

    /// Writes the pending entries (if any); with `sync`, fsyncs the file if it was
    /// written since its last fsync. The file is closed again either way.
    fn write_pending(&mut self, sync: bool) -> io::Result<()> {
        let pending = self.written < self.entries.len();
        if !(pending || (sync && self.unsynced)) {
            return Ok(());
        }
        let file = open_rw(&self.path)?;
        if pending {
            let bytes = encode_all(&self.entries[self.written..]);
            file.write_all_at(&bytes, (self.written * E::SIZE) as u64)?;
            self.written = self.entries.len();
            self.unsynced = true;
        }
        if sync {
            file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Appends an entry; it reaches the file with the next [`PENDING_MAX`] or on sync.
    pub(crate) fn push(&mut self, entry: E) -> io::Result<()> {
        self.entries.push(entry);
        if self.entries.len() - self.written >= PENDING_MAX {
            self.write_pending(false)?;
        }
        Ok(())
    }

    /// Keeps the first `keep` entries.
    pub(crate) fn truncate(&mut self, keep: usize) -> io::Result<()> {
        if keep >= self.entries.len() {
            return Ok(());
        }
        if keep < self.written {
            open_rw(&self.path)?.set_len((keep * E::SIZE) as u64)?;
            self.written = keep;
            self.unsynced = true;
        }
        self.entries.truncate(keep);
        Ok(())
    }

    /// Writes what is pending and fsyncs the file.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.write_pending(true)
    }
}
