//! Checkpoint files, in Kafka's text format so operators who know Kafka can read them:
//!
//! ```text
//! 0                      version
//! 2                      number of entries
//! orders 0 1200          offset checkpoints: topic partition offset
//! orders 1 1187
//! ```
//!
//! The leader-epoch checkpoint has the same version and count lines followed by
//! `epoch startOffset` lines. Every checkpoint is written atomically (temp file, fsync,
//! rename, directory fsync), so a crash leaves either the old or the new file.

use super::epoch_cache::EpochEntry;
use super::topic_partition::TopicPartition;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// In the data directory: per partition, the offset below which the log is fsynced.
pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
/// In the data directory: per partition, the log start offset.
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
/// In the data directory: per partition, the log cleaner's offset (everything below it is
/// compacted). Kafka's name.
pub const CLEANER_OFFSET_CHECKPOINT: &str = "cleaner-offset-checkpoint";
/// In a partition directory: the leader epoch cache.
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// The only checkpoint format version.
const VERSION: &str = "0";

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file does not parse.
    #[error("checkpoint {path}: line {line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
}

/// Writes `topic partition offset` entries atomically.
pub fn write_offsets(
    path: &Path,
    entries: &[(TopicPartition, i64)],
) -> Result<(), CheckpointError> {
    let mut text = format!("{VERSION}\n{}\n", entries.len());
    for (tp, offset) in entries {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "{} {} {}", tp.topic, tp.partition, offset);
    }
    write(path, &text)
}

/// Reads an offset checkpoint; a missing file is empty.
pub fn read_offsets(path: &Path) -> Result<BTreeMap<TopicPartition, i64>, CheckpointError> {
    let entries = read(path, |line| {
        let mut parts = line.split(' ');
        let topic = parts.next()?;
        let partition = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        let tp = TopicPartition::new(topic, partition);
        tp.validate().ok()?;
        Some((tp, offset))
    })?;
    Ok(entries.into_iter().collect())
}

/// Writes the leader epoch entries atomically; fsynced only if `durable` (a new
/// partition's checkpoint is made durable by its first flush, see `PartitionLog::flush`).
pub fn write_epochs(
    path: &Path,
    entries: &[EpochEntry],
    durable: bool,
) -> Result<(), CheckpointError> {
    let mut text = format!("{VERSION}\n{}\n", entries.len());
    for e in entries {
        let _ = writeln!(text, "{} {}", e.epoch, e.start_offset);
    }
    if durable {
        write(path, &text)
    } else {
        fjord_shared::fs::write_replace(path, text.as_bytes()).map_err(|source| {
            CheckpointError::Io {
                path: path.to_owned(),
                source,
            }
        })
    }
}

/// Reads a leader epoch checkpoint; a missing file is empty.
pub fn read_epochs(path: &Path) -> Result<Vec<EpochEntry>, CheckpointError> {
    read(path, |line| {
        let (epoch, start) = line.split_once(' ')?;
        Some(EpochEntry {
            epoch: epoch.parse().ok()?,
            start_offset: start.parse().ok()?,
        })
    })
}

fn write(path: &Path, text: &str) -> Result<(), CheckpointError> {
    fjord_shared::fs::write_atomic(path, text.as_bytes()).map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read<T>(path: &Path, parse_line: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, CheckpointError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let malformed = |line: usize, reason: &'static str| CheckpointError::Malformed {
        path: path.to_owned(),
        line,
        reason,
    };
    let mut lines = text.lines();
    if lines.next() != Some(VERSION) {
        return Err(malformed(1, "unsupported version (expected 0)"));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| malformed(2, "bad entry count"))?;
    let mut out = Vec::with_capacity(count.min(1 << 16));
    for i in 0..count {
        let line = lines
            .next()
            .ok_or_else(|| malformed(3 + i, "fewer entries than the count"))?;
        out.push(parse_line(line).ok_or_else(|| malformed(3 + i, "bad entry"))?);
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(malformed(3 + count, "more entries than the count"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECOVERY_POINT_CHECKPOINT);
        assert!(read_offsets(&path).unwrap().is_empty());
        let entries = vec![
            (TopicPartition::new("orders", 0), 1200),
            (TopicPartition::new("my-topic", 11), 7),
        ];
        write_offsets(&path, &entries).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "0\n2\norders 0 1200\nmy-topic 11 7\n"
        );
        let back = read_offsets(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[&TopicPartition::new("my-topic", 11)], 7);
    }

    #[test]
    fn epochs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEADER_EPOCH_CHECKPOINT);
        let entries = vec![
            EpochEntry {
                epoch: 0,
                start_offset: 0,
            },
            EpochEntry {
                epoch: 3,
                start_offset: 120,
            },
        ];
        write_epochs(&path, &entries, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "0\n2\n0 0\n3 120\n"
        );
        assert_eq!(read_epochs(&path).unwrap(), entries);
    }

    #[test]
    fn malformed_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        for (text, line) in [
            ("1\n0\n", 1),
            ("0\nx\n", 2),
            ("0\n2\n0 0\n", 4),
            ("0\n1\n0 0\n1 5\n", 4),
            ("0\n1\nzero 0\n", 3),
        ] {
            std::fs::write(&path, text).unwrap();
            match read_epochs(&path) {
                Err(CheckpointError::Malformed { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        std::fs::write(&path, "0\n1\nbad/topic 0 1\n").unwrap();
        assert!(read_offsets(&path).is_err());
    }
}
