//! Storage shared by the two segment indexes: fixed-size big-endian entries, held in
//! memory (they are small: one per `index.interval.bytes` of log) and appended to a file
//! as they are made.
//!
//! Index files are caches of facts in the `.log`: nothing is lost if one is missing or
//! damaged, because recovery rebuilds it. So they are written without their own fsync
//! discipline beyond the segment's: they are fsynced with the segment (on flush, roll,
//! close), and checked on open (size a multiple of the entry size, monotonic entries).
//! Unlike Kafka's, our index files are not preallocated or memory-mapped.

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

/// Entries in memory plus their file.
#[derive(Debug)]
pub(crate) struct EntryFile<E> {
    path: PathBuf,
    entries: Vec<E>,
    /// Open while the segment is written; closed for sealed segments (reopened on demand).
    file: Option<File>,
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
    /// An empty index; creates or empties the file.
    pub(crate) fn create(path: PathBuf) -> io::Result<EntryFile<E>> {
        let file = open_rw(&path)?;
        file.set_len(0)?;
        Ok(EntryFile {
            path,
            entries: Vec::new(),
            file: Some(file),
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
        let entries = bytes.chunks_exact(E::SIZE).map(E::decode).collect();
        Ok(Ok(EntryFile {
            path,
            entries,
            file: None,
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
        let file = open_rw(&path)?;
        if changed {
            file.set_len(0)?;
            file.write_all_at(&wanted, 0)?;
        }
        Ok((
            EntryFile {
                path,
                entries,
                file: Some(file),
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

    fn file(&mut self) -> io::Result<&File> {
        if self.file.is_none() {
            self.file = Some(open_rw(&self.path)?);
        }
        match &self.file {
            Some(f) => Ok(f),
            None => Err(io::Error::other("index file not open")),
        }
    }

    /// Appends an entry to memory and the file.
    pub(crate) fn push(&mut self, entry: E) -> io::Result<()> {
        let mut buf = Vec::with_capacity(E::SIZE);
        entry.encode(&mut buf);
        let at = (self.entries.len() * E::SIZE) as u64;
        self.file()?.write_all_at(&buf, at)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Keeps the first `keep` entries.
    pub(crate) fn truncate(&mut self, keep: usize) -> io::Result<()> {
        if keep >= self.entries.len() {
            return Ok(());
        }
        self.file()?.set_len((keep * E::SIZE) as u64)?;
        self.entries.truncate(keep);
        Ok(())
    }

    /// Fsyncs the file if it is open (a closed file was fsynced when it was closed).
    pub(crate) fn sync(&self) -> io::Result<()> {
        match &self.file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// Closes the file handle (after a sync) so sealed segments hold one descriptor.
    pub(crate) fn close_file(&mut self) {
        self.file = None;
    }
}
