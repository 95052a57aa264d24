//! Durable state: snapshots, and the transaction log of the standalone coordinator before
//! it ran on Raft (read once, to import it).
//!
//! On-disk format (all in the data directory):
//!
//! - `raftlog.<sequence>`: the replicated log, see [`crate::ensemble::log_store`].
//! - `snapshot.<last zxid, 16 hex digits>`: the magic `FJSNAP03`, then frames
//!   `[u32 length][u32 crc32c][msgpack]`:
//!   1. a header: `[last_zxid, node count, [[session id, timeout ms, password], ..], raft
//!      metadata (bin: the msgpack of openraft's snapshot meta: last log id, membership)]`;
//!   2. node frames, each a msgpack array of nodes `[path, data (bin or nil),
//!      [[perms, scheme, id], ..] (the ACL), stat]`, where `stat` is the array of
//!      [`crate::tree::StatPersisted`]'s fields in order. Nodes come parent first
//!      (pre-order), which lets recovery rebuild the tree in one pass; a frame is closed at
//!      about 1 MiB, so neither writing nor reading holds the whole encoded tree.
//!
//!   The file ends right after the node frame that completes the count. Anything else (a
//!   torn or corrupt frame, a count that does not add up, trailing bytes) makes the whole
//!   snapshot unreadable and recovery falls back to an older one. Written to
//!   `snapshot.<zxid>.tmp`, fsynced, renamed, and the directory fsynced. `FJSNAP02` files
//!   are the same without the Raft metadata.
//! - `log.<first zxid, 16 hex digits>` (before Raft): the magic `FJTXLOG1`, then frames of
//!   msgpack `TxnRecord`s, preallocated with zeros. [`recovery`] replays them after the
//!   newest `FJSNAP02` snapshot, once, when such a data directory is first opened; the
//!   result becomes a `FJSNAP03` snapshot and the old files are removed.
//! - `cluster-id`: the ensemble this data belongs to.
//! - `LOCK`: held (flock) while a coordinator uses the directory.

pub mod recovery;
pub mod snapshot;

use std::path::{Path, PathBuf};

pub const LOG_MAGIC: &[u8; 8] = b"FJTXLOG1";
pub const SNAP_MAGIC: &[u8; 8] = b"FJSNAP03";
/// Snapshots written before the Raft log: no metadata in the header. Still read.
pub const SNAP_MAGIC_V2: &[u8; 8] = b"FJSNAP02";

/// Errors of the persistence layer.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {0} is in use by another coordinator")]
    Locked(PathBuf),
    #[error(
        "{path}: corrupt at offset {offset}; refusing to start (not the tail of the newest log)"
    )]
    Corrupt { path: PathBuf, offset: usize },
    #[error("{path}: record at offset {offset} does not decode: {reason}")]
    Undecodable {
        path: PathBuf,
        offset: usize,
        reason: String,
    },
    #[error("transaction log gap: expected zxid {expected:#x}, found {found:#x} in {path}")]
    Gap {
        path: PathBuf,
        expected: i64,
        found: i64,
    },
    #[error("cannot encode: {0}")]
    Encode(String),
}

impl PersistError {
    pub fn io(path: &Path, source: std::io::Error) -> PersistError {
        PersistError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// `prefix.<zxid as 16 hex digits>`.
pub fn file_name(prefix: &str, zxid: i64) -> String {
    format!("{prefix}.{zxid:016x}")
}

/// Files in `dir` named `prefix.<hex>`, sorted by zxid.
pub fn list(dir: &Path, prefix: &str) -> Result<Vec<(i64, PathBuf)>, PersistError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| PersistError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| PersistError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(hex) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        if hex.len() != 16 {
            continue;
        }
        if let Ok(z) = i64::from_str_radix(hex, 16) {
            out.push((z, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}
