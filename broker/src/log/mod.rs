//! The broker's storage: partition logs on disk, in Kafka's layout (names follow Kafka's
//! `LogSegment`, `UnifiedLog` and `LogManager`). No networking and no Kafka request
//! handling live here; the handlers and the replica layer call into it.
//!
//! # On-disk format
//!
//! ```text
//! <data dir>/
//!   recovery-point-offset-checkpoint   per partition: offset below which the log is fsynced
//!   log-start-offset-checkpoint        per partition: the log start offset
//!   cleaner-offset-checkpoint          per compacted partition: offset below which it is compacted
//!   <topic>-<partition>/
//!     00000000000000000000.log         record batches, exactly as produced (v2)
//!     00000000000000000000.index       sparse offset index
//!     00000000000000000000.timeindex   time index
//!     00000000000000004711.log         next segment: named by its base offset, 20 digits
//!     ...
//!     leader-epoch-checkpoint          leader epoch → start offset
//!     <base>.log.cleaned               (transient) a segment the log cleaner is writing
//!     <base>.<last>.log.swap           (transient) a cleaned segment replacing base..=last
//! ```
//!
//! - **`.log`**: Kafka record batches (message format v2, see [`batch`]) back to back,
//!   nothing else: no framing of our own. The leader validates each batch (magic 2,
//!   CRC-32C, lengths, counts) and patches only the base offset (bytes 0..8) and the
//!   partition leader epoch (bytes 12..16), which lie outside the CRC; followers store
//!   the leader's bytes unchanged. The same bytes go back out on fetch.
//! - **`.index`**: 8-byte entries `relative offset u32 BE, position u32 BE`, one per
//!   `index.interval.bytes` (4096) of log, relative to the segment's base offset
//!   ([`index`]).
//! - **`.timeindex`**: 12-byte entries `timestamp i64 BE, relative offset u32 BE`,
//!   timestamps strictly increasing ([`time_index`]).
//! - **Checkpoints**: Kafka's text format, version line `0`, a count line, then
//!   `topic partition offset` lines (or `epoch startOffset` lines for the leader epoch
//!   checkpoint); written atomically ([`checkpoint`]).
//!
//! Index files are caches: they are always rebuildable from the `.log`, and are rebuilt
//! when missing or inconsistent.
//!
//! # Compaction
//!
//! Topics with `cleanup.policy=compact` are compacted by the log cleaner ([`cleaner`]):
//! closed segments below the high watermark are rewritten keeping only the latest record
//! of each key, with offsets unchanged, and swapped in crash-safely. Retention by time
//! and size applies only to topics whose policy includes `delete`.
//!
//! # Durability and recovery
//!
//! The fsync policy is explicit ([`FsyncPolicy`]); the default relies on replication as
//! Kafka does, fsyncing on segment roll and clean close. A failed write or fsync makes
//! the log refuse further writes until it is reopened. On open, everything from the
//! recovery point on (at least the active segment) is scanned batch by batch; a torn or
//! corrupt tail is cut at the last valid batch boundary (and logged), segments after a
//! corruption point are deleted, and indexes are rebuilt ([`recovery`]).
//!
//! # Time
//!
//! Nothing here reads the clock: operations that depend on time (segment roll by
//! `segment.ms`, retention by `retention.ms`, the fsync interval) take `now_ms` from the
//! caller, so tests control time.
//!
//! - **Roll by time** uses the broker's clock: a segment rolls once `segment.ms` has
//!   passed since its first append (for a segment found on disk at startup: since its
//!   first batch's max timestamp, capped at now). Kafka compares producer timestamps
//!   (the first batch's against the incoming one's); the broker's clock means a producer
//!   with a skewed clock can neither force rolls nor postpone them.
//! - **Retention by time** compares a segment's largest batch timestamp with now, as
//!   Kafka does (the file's modification time if no batch has a timestamp).

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
pub mod config;
pub mod epoch_cache;
pub mod error;
pub mod index;
mod index_file;
pub mod manager;
pub mod partition;
pub mod read;
pub(crate) mod records;
pub(crate) mod recovery;
mod scan;
pub(crate) mod segment;
pub mod time_index;
pub mod topic_partition;

#[cfg(test)]
pub(crate) mod test_util;

pub use batch::{BatchError, BatchHeader};
pub use cleaner::{CleanStats, CleanerConfig, CleanerSummary, LogCleaner};
pub use config::{CleanupPolicy, FsyncPolicy, LogConfig};
pub use epoch_cache::{EpochEndOffset, EpochEntry, LeaderEpochCache};
pub use error::LogError;
pub use manager::{LogManager, MaintenanceSummary, SharedPartitionLog};
pub use partition::{AppendInfo, PartitionLog, RetentionOutcome, TimestampOffset};
pub use read::{FetchedRecords, ReadPlan};
pub use topic_partition::TopicPartition;
