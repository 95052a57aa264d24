//! Errors of the log layer. The Kafka handlers map these to protocol error codes
//! (`OffsetOutOfRange` → OFFSET_OUT_OF_RANGE, `InvalidBatch` → CORRUPT_MESSAGE,
//! `RecordTooLarge` → MESSAGE_TOO_LARGE, `RecordBatchTooLarge` → RECORD_LIST_TOO_LARGE,
//! `Io`/`Failed` → KAFKA_STORAGE_ERROR); that mapping lives at the handler boundary.

use super::batch::BatchError;
use super::checkpoint::CheckpointError;
use super::topic_partition::TopicPartition;
use std::path::{Path, PathBuf};

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Batch number `index` (0-based) of an append is not a valid v2 batch.
    #[error("batch {index} of the append is invalid: {source}")]
    InvalidBatch {
        index: usize,
        #[source]
        source: BatchError,
    },
    /// One batch is larger than `max.message.bytes`.
    #[error("a batch of {size} bytes exceeds max.message.bytes ({limit})")]
    RecordTooLarge { size: usize, limit: usize },
    /// The whole append is larger than a segment may be.
    #[error("an append of {size} bytes exceeds segment.bytes ({limit})")]
    RecordBatchTooLarge { size: u64, limit: u64 },
    /// An offset outside `[log_start_offset, log_end_offset]`.
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// A follower append whose first batch starts below the log end.
    #[error("follower append starts at offset {first_offset}, below the log end {log_end_offset}")]
    UnexpectedAppendOffset {
        first_offset: i64,
        log_end_offset: i64,
    },
    /// Batches of a follower append are not in increasing offset order.
    #[error("batch at offset {first_offset} follows one ending at {previous_last_offset}")]
    OffsetsOutOfOrder {
        previous_last_offset: i64,
        first_offset: i64,
    },
    /// The offsets of one append cannot be indexed relative to a single segment base.
    #[error("append spans offsets {first_offset}..={last_offset}, too many for one segment")]
    OffsetOverflow { first_offset: i64, last_offset: i64 },
    /// A negative or otherwise unusable offset argument.
    #[error("invalid offset {0}")]
    InvalidOffset(i64),
    /// Stored data that should be valid is not (found while reading).
    #[error("{path} is corrupt at position {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// An earlier write or fsync failed (or the partition was deleted); the log accepts no
    /// more writes until it is reopened, because what reached the disk is unknown.
    #[error("the log in {dir} refuses writes: {reason}")]
    Failed { dir: PathBuf, reason: String },
    /// A configuration value out of range.
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// `LogManager::create` for a partition that already has a log.
    #[error("partition {0} already has a log")]
    AlreadyExists(TopicPartition),
    /// A topic name that cannot be a directory name.
    #[error("invalid topic partition {name:?}: {reason}")]
    InvalidTopicPartition { name: String, reason: &'static str },
    /// A thread panicked while holding a partition's lock.
    #[error("the lock of partition {0} is poisoned")]
    LockPoisoned(TopicPartition),
    /// The log cleaner could not finish a pass (the log itself is unchanged unless the
    /// failure came while swapping, which makes the log refuse writes until reopened).
    #[error("log cleaner: {0}")]
    Cleaner(String),
}

impl LogError {
    /// A closure attaching the operation and path to an I/O error (for `map_err`).
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LogError {
        let path = path.to_owned();
        move |source| LogError::Io { op, path, source }
    }
}

/// Why an index file cannot be used as it is (it is then rebuilt from the `.log`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The file does not exist.
    #[error("missing")]
    Missing,
    /// The file size is not a multiple of the entry size.
    #[error("size {len} is not a multiple of the entry size {entry_size}")]
    BadSize { len: u64, entry_size: usize },
    /// Entry `at` does not increase over the one before it.
    #[error("entry {at} is not monotonic")]
    NotMonotonic { at: usize },
    /// An entry points past the end of the segment.
    #[error("entry {at} points past the end of the segment")]
    PastEnd { at: usize },
}
