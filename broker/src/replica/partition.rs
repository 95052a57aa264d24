//! One hosted partition: its log, its role (leader or follower), the high watermark and,
//! as leader, its followers' progress and the ISR.

use super::isr::LeaderState;
use super::producer_state::rebuild_from_log;
use super::producer_state::{Check, ProducerStates};
use crate::log::batch::{self, BatchError};
use crate::log::config::LogConfig;
use crate::log::error::LogError;
use crate::log::manager::SharedPartitionLog;
use crate::log::topic_partition::TopicPartition;
use bytes::Bytes;
use fjord_shared::cluster::PartitionState;
use kafka_protocol::ResponseError;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A per-partition failure, with the Kafka error to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionError {
    pub code: ResponseError,
    pub message: String,
}

impl PartitionError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> PartitionError {
        PartitionError {
            code,
            message: message.into(),
        }
    }
}

impl From<LogError> for PartitionError {
    fn from(e: LogError) -> PartitionError {
        let code = match &e {
            LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            LogError::RecordTooLarge { .. } | LogError::RecordBatchTooLarge { .. } => {
                ResponseError::MessageTooLarge
            }
            LogError::InvalidBatch { source, .. } => match source {
                BatchError::CorruptCrc { .. }
                | BatchError::Truncated { .. }
                | BatchError::LengthMismatch { .. }
                | BatchError::InvalidBatchLength { .. } => ResponseError::CorruptMessage,
                BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
                _ => ResponseError::InvalidRecord,
            },
            LogError::InvalidConfig(_) => ResponseError::InvalidConfig,
            _ => ResponseError::KafkaStorageError,
        };
        PartitionError::new(code, e.to_string())
    }
}

/// What a produce to one partition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    /// The offset after the last record stored (what acks=all waits for).
    pub end_offset: i64,
    pub log_start_offset: i64,
    /// The leader epoch it was appended in.
    pub leader_epoch: i32,
}

/// What a fetch from one partition returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches; empty (never null: librdkafka rejects a null record set) if none.
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What this broker does for a partition.
#[derive(Debug)]
pub(super) enum Role {
    /// No state yet, or no leader.
    None,
    Leader(LeaderState),
    Follower {
        leader: i32,
    },
}

/// One hosted partition.
pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: Mutex<String>,
    pub(super) me: i32,
    pub(super) log: SharedPartitionLog,
    pub(super) is_leader: AtomicBool,
    pub(super) leader_epoch: AtomicI32,
    /// Lock order: `producers`, then `log`, then `role`.
    pub(super) role: Mutex<Role>,
    pub(super) high_watermark: AtomicI64,
    /// Woken when the high watermark moves or the role changes (acks=all waiters).
    pub(super) hw_changed: Notify,
    /// The broker-wide signal that wakes parked fetches (followers' and consumers'): every
    /// append fires it, whoever the writer is, so a follower never sleeps out its fetch
    /// wait on data that an acks=all writer is waiting for it to copy.
    pub(super) data_arrived: Arc<Notify>,
    pub(super) min_insync: AtomicUsize,
    pub(super) producers: Mutex<ProducerStates>,
    pub(super) fsync_always: bool,
    /// Where ISR shrinks and expansions of a partition led here are counted.
    pub(super) isr_changes: Arc<crate::stats::IsrChanges>,
    /// Whether this replica's catch-up traffic is throttled: bit 0 as a leader, bit 1 as
    /// a follower (see [`super::throttle`]).
    throttled: AtomicU8,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition").field("tp", &self.tp).finish()
    }
}

pub(super) fn poisoned(tp: &TopicPartition) -> PartitionError {
    PartitionError::new(
        ResponseError::KafkaStorageError,
        format!("{tp:?}: a partition lock is poisoned"),
    )
}

/// Checks a client's idea of the leader epoch (-1: no idea) against ours.
pub fn check_epoch(requested: i32, ours: i32) -> Result<(), PartitionError> {
    if requested < 0 || requested == ours {
        Ok(())
    } else if requested < ours {
        Err(PartitionError::new(
            ResponseError::FencedLeaderEpoch,
            format!("leader epoch {requested} is older than the current {ours}"),
        ))
    } else {
        Err(PartitionError::new(
            ResponseError::UnknownLeaderEpoch,
            format!("leader epoch {requested} is newer than the current {ours}"),
        ))
    }
}

/// What a new [`Partition`] starts from; everything else starts empty (no role yet).
pub(super) struct PartitionInit {
    pub tp: TopicPartition,
    pub topic_id: String,
    pub me: i32,
    pub log: SharedPartitionLog,
    pub producers: ProducerStates,
    pub min_insync: usize,
    pub fsync_always: bool,
    pub data_arrived: Arc<Notify>,
    pub isr_changes: Arc<crate::stats::IsrChanges>,
}

impl Partition {
    pub(super) fn new(init: PartitionInit) -> Arc<Partition> {
        Arc::new(Partition {
            tp: init.tp,
            topic_id: Mutex::new(init.topic_id),
            me: init.me,
            log: init.log,
            is_leader: AtomicBool::new(false),
            leader_epoch: AtomicI32::new(-1),
            role: Mutex::new(Role::None),
            high_watermark: AtomicI64::new(0),
            hw_changed: Notify::new(),
            data_arrived: init.data_arrived,
            min_insync: AtomicUsize::new(init.min_insync),
            producers: Mutex::new(init.producers),
            fsync_always: init.fsync_always,
            isr_changes: init.isr_changes,
            throttled: AtomicU8::new(0),
        })
    }

    /// Marks the replica throttled as a leader and as a follower (topic configs).
    pub(super) fn set_throttled(&self, leader: bool, follower: bool) {
        self.throttled.store(
            u8::from(leader) | (u8::from(follower) << 1),
            Ordering::Release,
        );
    }

    /// Whether out-of-sync followers of this leader are throttled.
    pub fn leader_throttled(&self) -> bool {
        self.throttled.load(Ordering::Acquire) & 1 != 0
    }

    /// Whether this follower's catch-up is throttled.
    pub fn follower_throttled(&self) -> bool {
        self.throttled.load(Ordering::Acquire) & 2 != 0
    }

    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.read().map(|l| l.log_end_offset()).unwrap_or(0)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.read().map(|l| l.log_start_offset()).unwrap_or(0)
    }

    /// The newest epoch in the log's leader epoch cache.
    pub fn latest_log_epoch(&self) -> Option<i32> {
        self.log.read().ok().and_then(|l| l.latest_epoch())
    }

    /// OffsetForLeaderEpoch on this log: the largest epoch at or below `epoch`, and its
    /// end offset.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let log = self.log.read().ok()?;
        log.end_offset_for_epoch(epoch)
            .map(|e| (e.leader_epoch, e.end_offset))
    }

    /// For the metrics, under one read lock: (log start, log end, bytes, segments).
    pub fn log_stats(&self) -> Option<(i64, i64, u64, usize)> {
        let log = self.log.read().ok()?;
        Some((
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes(),
            log.segment_count(),
        ))
    }

    /// min.insync.replicas of this partition's topic.
    pub fn min_insync(&self) -> usize {
        self.min_insync.load(Ordering::Relaxed)
    }

    /// The size of the ISR as this leader knows it; `None` if it does not lead.
    pub fn isr_len(&self) -> Option<usize> {
        match self.role.lock().as_deref() {
            Ok(Role::Leader(s)) => Some(s.isr.len()),
            _ => None,
        }
    }

    /// The ISR as this leader knows it; empty if it does not lead.
    pub fn isr(&self) -> Vec<i32> {
        match self.role.lock().as_deref() {
            Ok(Role::Leader(s)) => s.isr.clone(),
            _ => Vec::new(),
        }
    }

    /// Moves the high watermark and wakes acks=all waiters. Parked fetches are woken by
    /// the caller once it has released its locks ([`Partition::wake_fetches`]), since a
    /// woken fetch at once takes the log lock to read again.
    pub(super) fn set_high_watermark(&self, hw: i64) {
        let old = self.high_watermark.swap(hw, Ordering::AcqRel);
        if old != hw {
            self.hw_changed.notify_waiters();
        }
    }

    /// Wakes every parked fetch so it reads again: after an append, a high-watermark move
    /// or a change of role (a fetch waiting on a partition this broker no longer leads then
    /// gets NOT_LEADER_OR_FOLLOWER at once instead of after its wait).
    pub fn wake_fetches(&self) {
        self.data_arrived.notify_waiters();
    }

    /// Appends a producer's batches as the leader, with idempotent-producer checks. With
    /// acks=all the ISR must have at least `min.insync.replicas` members. A successful
    /// append wakes every parked fetch, so followers copy it at once: producers and the
    /// broker's own writers (group metadata, offset commits) share this path.
    pub fn append(&self, records: Bytes, acks: i16) -> Result<Appended, PartitionError> {
        // The producer fields of the first batch speak for the request: a producer sends
        // one batch per partition per request.
        let header = batch::validate_producer_batch(&records)
            .map_err(|source| LogError::InvalidBatch { index: 0, source })?;
        let producer = (header.producer_id() >= 0).then(|| {
            (
                header.producer_id(),
                header.producer_epoch(),
                header.base_sequence(),
                header.record_count(),
            )
        });
        let mut producers = self.producers.lock().map_err(|_| poisoned(&self.tp))?;
        let mut log = self.log.write().map_err(|_| poisoned(&self.tp))?;
        let epoch = {
            let role = self.role.lock().map_err(|_| poisoned(&self.tp))?;
            let Role::Leader(s) = &*role else {
                return Err(PartitionError::new(
                    ResponseError::NotLeaderOrFollower,
                    format!("this broker no longer leads {:?}", self.tp),
                ));
            };
            let min = self.min_insync.load(Ordering::Acquire);
            if acks == -1 && s.isr.len() < min {
                return Err(PartitionError::new(
                    ResponseError::NotEnoughReplicas,
                    format!(
                        "the ISR {:?} is smaller than min.insync.replicas {min}",
                        s.isr
                    ),
                ));
            }
            s.leader_epoch
        };
        if let Some((pid, pepoch, seq, count)) = producer {
            match producers.check(pid, pepoch, seq, count) {
                Check::Append => {}
                Check::Duplicate { base_offset } => {
                    // Acknowledged again once it is replicated as far as the original.
                    let end = base_offset + i64::from(count.max(1));
                    return Ok(Appended {
                        base_offset,
                        end_offset: end,
                        log_start_offset: log.log_start_offset(),
                        leader_epoch: epoch,
                    });
                }
                Check::OutOfOrder { expected, got } => {
                    return Err(PartitionError::new(
                        ResponseError::OutOfOrderSequenceNumber,
                        format!("producer {pid}: expected sequence {expected}, got {got}"),
                    ))
                }
                Check::Fenced { current_epoch, got } => {
                    return Err(PartitionError::new(
                        ResponseError::InvalidProducerEpoch,
                        format!("producer {pid}: epoch {got} is older than {current_epoch}"),
                    ))
                }
            }
        }
        let info = log.append_as_leader(records, epoch, now_ms())?;
        if self.fsync_always {
            log.flush()?;
        }
        if let Some((pid, pepoch, seq, count)) = producer {
            producers.record(pid, pepoch, seq, count, info.first_offset);
        }
        let end = log.log_end_offset();
        if let Ok(mut role) = self.role.lock() {
            if let Role::Leader(s) = &mut *role {
                if s.update_high_watermark(end) {
                    self.set_high_watermark(s.high_watermark);
                }
            }
        }
        drop(log);
        drop(producers);
        self.wake_fetches();
        Ok(Appended {
            base_offset: info.first_offset,
            end_offset: info.last_offset + 1,
            log_start_offset: info.log_start_offset,
            leader_epoch: epoch,
        })
    }

    /// acks=all: waits until the high watermark reaches `end_offset`, while this broker
    /// still leads in `epoch`, at most until `deadline`.
    pub async fn wait_replicated(
        &self,
        end_offset: i64,
        epoch: i32,
        deadline: tokio::time::Instant,
    ) -> Result<(), PartitionError> {
        loop {
            let notified = self.hw_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_leader() || self.leader_epoch() != epoch {
                return Err(PartitionError::new(
                    ResponseError::NotLeaderOrFollower,
                    format!(
                        "leadership of {:?} moved before the write was replicated",
                        self.tp
                    ),
                ));
            }
            if self.high_watermark() >= end_offset {
                let (isr, min) = (self.isr().len(), self.min_insync.load(Ordering::Acquire));
                if isr < min {
                    return Err(PartitionError::new(
                        ResponseError::NotEnoughReplicasAfterAppend,
                        format!("the ISR shrank to {isr}, below min.insync.replicas {min}"),
                    ));
                }
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(PartitionError::new(
                    ResponseError::RequestTimedOut,
                    format!("{:?}: not replicated to the ISR in time", self.tp),
                ));
            }
        }
    }

    /// Reads whole batches: for consumers below the high watermark, for followers below
    /// the log end. The file I/O happens after the log lock is released. With `budget` 0
    /// and `min_one` false nothing is read.
    pub fn read(
        &self,
        offset: i64,
        budget: usize,
        min_one: bool,
        follower: bool,
    ) -> Result<ReadResult, PartitionError> {
        let (plan, hw, start) = {
            let log = self.log.read().map_err(|_| poisoned(&self.tp))?;
            let end = log.log_end_offset();
            let hw = self.high_watermark().min(end);
            let limit = if follower { end } else { hw };
            let start = log.log_start_offset();
            if offset < start || offset > end {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start_offset: start,
                    log_end_offset: end,
                }
                .into());
            }
            if !min_one && budget == 0 {
                return Ok(ReadResult {
                    records: Bytes::new(),
                    high_watermark: hw,
                    log_start_offset: start,
                });
            }
            (log.prepare_read(offset, budget.max(1), limit)?, hw, start)
        };
        let fetched = plan.read()?;
        Ok(ReadResult {
            records: fetched.records,
            high_watermark: hw,
            log_start_offset: start,
        })
    }

    /// A follower fetched from `fetch_offset`. Returns true if the high watermark moved:
    /// acks=all produces are woken here, and the caller wakes parked fetches once for the
    /// whole request ([`Partition::wake_fetches`]).
    pub fn follower_fetched(
        &self,
        replica: i32,
        fetch_offset: i64,
    ) -> Result<bool, PartitionError> {
        let end = self.log_end_offset();
        let mut role = self.role.lock().map_err(|_| poisoned(&self.tp))?;
        let Role::Leader(s) = &mut *role else {
            return Err(PartitionError::new(
                ResponseError::NotLeaderOrFollower,
                format!("this broker does not lead {:?}", self.tp),
            ));
        };
        if !s.is_replica(replica) {
            return Err(PartitionError::new(
                ResponseError::NotLeaderOrFollower,
                format!("broker {replica} is not a replica of {:?}", self.tp),
            ));
        }
        // A diverged follower ahead of this log must truncate first (it then sees
        // OFFSET_OUT_OF_RANGE); counting it as caught up could raise the high watermark.
        if fetch_offset > end {
            return Err(PartitionError::new(
                ResponseError::OffsetOutOfRange,
                format!(
                    "broker {replica} fetches {:?} at {fetch_offset}, past the log end {end}",
                    self.tp
                ),
            ));
        }
        let moved = s.on_follower_fetch(replica, fetch_offset, end, now_ms());
        if moved {
            self.set_high_watermark(s.high_watermark);
        }
        Ok(moved)
    }

    /// The ISR change this leader should write now, if any: (new state, znode version).
    pub(super) fn isr_change(
        &self,
        lag_max_ms: i64,
        controller_epoch: i32,
        alive: impl Fn(i32) -> bool,
    ) -> Option<(PartitionState, i32)> {
        let role = self.role.lock().ok()?;
        let Role::Leader(s) = &*role else { return None };
        let isr = s
            .shrink_candidate(now_ms(), lag_max_ms)
            .or_else(|| s.expand_candidate(alive))?;
        Some((
            PartitionState {
                version: 1,
                leader: self.me,
                leader_epoch: s.leader_epoch,
                controller_epoch,
                isr,
            },
            s.zk_version,
        ))
    }

    /// Adopts an ISR written to the state znode at `zk_version`, if this broker still
    /// leads in that epoch.
    pub(super) fn adopt_isr(&self, epoch: i32, isr: Vec<i32>, zk_version: i32) -> bool {
        let end = self.log_end_offset();
        let Ok(mut role) = self.role.lock() else {
            return false;
        };
        let Role::Leader(s) = &mut *role else {
            return false;
        };
        if s.leader_epoch != epoch || zk_version <= s.zk_version {
            return false;
        }
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, from = ?s.isr, to = ?isr, "ISR changed");
        self.isr_changes.changed(s.isr.len(), isr.len());
        let moved = s.apply_isr(isr, zk_version, end);
        if moved {
            self.set_high_watermark(s.high_watermark);
        }
        drop(role);
        if moved {
            self.wake_fetches();
        }
        true
    }

    /// Appends batches fetched from `leader` in `epoch`, and learns the leader's high
    /// watermark and log start. False if there was nothing new or the role changed.
    pub fn append_replicated(
        &self,
        leader: i32,
        epoch: i32,
        records: Bytes,
        leader_hw: i64,
        leader_log_start: i64,
    ) -> Result<bool, PartitionError> {
        let mut producers = self.producers.lock().map_err(|_| poisoned(&self.tp))?;
        let mut log = self.log.write().map_err(|_| poisoned(&self.tp))?;
        if !self.follows(leader, epoch) {
            return Ok(false);
        }
        let appended = !records.is_empty();
        if appended {
            log.append_as_follower(records.clone(), now_ms())?;
            if self.fsync_always {
                log.flush()?;
            }
            for b in batch::batches(&records) {
                let Ok(b) = b else { break };
                let Ok(h) = batch::BatchHeader::parse(&b) else {
                    break;
                };
                if h.producer_id() >= 0 {
                    producers.record(
                        h.producer_id(),
                        h.producer_epoch(),
                        h.base_sequence(),
                        // The last offset delta, not the count: compaction may have
                        // removed records, but the sequence range stays (Kafka's rule).
                        h.last_offset_delta() + 1,
                        h.base_offset(),
                    );
                }
            }
        }
        let end = log.log_end_offset();
        if leader_log_start > log.log_start_offset() && leader_log_start <= end {
            log.delete_records_before(leader_log_start)?;
        }
        let hw = leader_hw.min(end);
        if hw >= 0 && hw != self.high_watermark() {
            self.set_high_watermark(hw);
        }
        Ok(appended)
    }

    /// Whether this broker follows `leader` in `epoch`. A fetcher's answer that arrives
    /// after the role changed (this broker may lead now) must not touch the log.
    pub(super) fn follows(&self, leader: i32, epoch: i32) -> bool {
        matches!(self.role.lock().as_deref(), Ok(Role::Follower { leader: l }) if *l == leader)
            && self.leader_epoch() == epoch
    }

    /// Cuts the follower's log to `offset` (it diverged from `leader`'s in `epoch`). Does
    /// nothing if the role has changed since.
    pub fn truncate_to(&self, leader: i32, epoch: i32, offset: i64) -> Result<(), PartitionError> {
        let mut producers = self.producers.lock().map_err(|_| poisoned(&self.tp))?;
        {
            let mut log = self.log.write().map_err(|_| poisoned(&self.tp))?;
            if !self.follows(leader, epoch) {
                return Ok(());
            }
            let cuts = offset < log.log_end_offset();
            log.truncate_to(offset)?;
            if !cuts {
                return Ok(());
            }
            let end = log.log_end_offset();
            if self.high_watermark() > end {
                self.high_watermark.store(end, Ordering::Release);
            }
        }
        // Producer state may name batches that were cut.
        *producers = rebuild_from_log(&self.log);
        Ok(())
    }

    /// Empties the follower's log and starts it at `offset` (`leader`'s log start in
    /// `epoch`). Does nothing if the role has changed since.
    pub fn restart_at(&self, leader: i32, epoch: i32, offset: i64) -> Result<(), PartitionError> {
        let mut producers = self.producers.lock().map_err(|_| poisoned(&self.tp))?;
        let mut log = self.log.write().map_err(|_| poisoned(&self.tp))?;
        if !self.follows(leader, epoch) {
            return Ok(());
        }
        log.truncate_fully_and_start_at(offset)?;
        self.high_watermark.store(offset, Ordering::Release);
        *producers = ProducerStates::default();
        Ok(())
    }

    /// ListOffsets: (offset, timestamp, leader epoch) for a timestamp or -1/-2/-3. The
    /// latest offset is the high watermark: consumers see nothing above it.
    ///
    /// With `monotonic` (clients that send an isolation level, ListOffsets v2+), a new
    /// leader whose high watermark has not yet reached the start of its epoch answers
    /// OFFSET_NOT_AVAILABLE instead of an offset that could be below one the previous
    /// leader gave (KIP-207): the high watermark a follower learned lags the leader's by
    /// a fetch, and catches up once the followers fetch from the new leader.
    pub fn offset_for(
        &self,
        timestamp: i64,
        monotonic: bool,
    ) -> Result<(i64, i64, i32), PartitionError> {
        let log = self.log.read().map_err(|_| poisoned(&self.tp))?;
        let epoch = self.leader_epoch();
        let hw = self.high_watermark().min(log.log_end_offset());
        let epoch_start = match self.role.lock().as_deref() {
            Ok(Role::Leader(s)) => s.epoch_start_offset,
            _ => -1,
        };
        let not_available = || {
            PartitionError::new(
                ResponseError::OffsetNotAvailable,
                format!(
                    "{:?}: the high watermark {hw} has not reached the start of leader epoch {epoch} at {epoch_start}",
                    self.tp
                ),
            )
        };
        let lagging = monotonic && epoch_start > hw;
        let visible = |t: crate::log::TimestampOffset| {
            if t.offset < hw {
                Ok((t.offset, t.timestamp, t.leader_epoch.unwrap_or(epoch)))
            } else if lagging {
                Err(not_available())
            } else {
                Ok((-1, -1, epoch))
            }
        };
        match timestamp {
            -1 if lagging => Err(not_available()),
            -1 => Ok((hw, -1, epoch)),
            // -4, earliest local (ListOffsets v8, KIP-405): every segment is local.
            -2 | -4 => Ok((log.log_start_offset(), -1, epoch)),
            -3 => match log.offset_of_max_timestamp()? {
                Some(t) => visible(t),
                None if lagging => Err(not_available()),
                None => Ok((-1, -1, epoch)),
            },
            ts => match log.offset_for_timestamp(ts)? {
                Some(t) => visible(t),
                None if lagging => Err(not_available()),
                None => Ok((-1, -1, epoch)),
            },
        }
    }

    /// DeleteRecords: -1 means the high watermark, and nothing above it may be deleted.
    /// Returns the new low watermark.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, PartitionError> {
        let mut log = self.log.write().map_err(|_| poisoned(&self.tp))?;
        let hw = self.high_watermark().min(log.log_end_offset());
        let target = if offset == -1 { hw } else { offset };
        if target > hw {
            return Err(PartitionError::new(
                ResponseError::OffsetOutOfRange,
                format!("offset {target} is above the high watermark {hw}"),
            ));
        }
        Ok(log.delete_records_before(target)?)
    }

    pub(super) fn set_config(&self, config: LogConfig, min_insync: usize) {
        self.min_insync.store(min_insync.max(1), Ordering::Release);
        if let Ok(mut log) = self.log.write() {
            if *log.config() != config {
                if let Err(e) = log.set_config(config) {
                    tracing::warn!(topic = %self.tp.topic, partition = self.tp.partition, error = %e, "cannot apply the topic config");
                }
            }
        }
    }

    /// Takes the role `state` (at znode version `zk_version`) gives this broker. Returns
    /// the leader to follow if this broker now follows, in which epoch.
    pub(super) fn apply_state(
        &self,
        state: &PartitionState,
        zk_version: i32,
        replicas: &[i32],
    ) -> Option<(i32, i32, bool)> {
        let now = now_ms();
        if state.leader == self.me {
            {
                let Ok(mut role) = self.role.lock() else {
                    return None;
                };
                if let Role::Leader(s) = &mut *role {
                    if s.leader_epoch == state.leader_epoch {
                        s.set_replicas(replicas, now);
                        drop(role);
                        self.adopt_isr(state.leader_epoch, state.isr.clone(), zk_version);
                        return None;
                    }
                }
            }
            self.become_leader(state, zk_version, replicas);
            return None;
        }
        let was = match self.role.lock().as_deref() {
            Ok(Role::Follower { leader }) => Some(*leader),
            Ok(Role::Leader(_)) => {
                tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, new_leader = state.leader, "no longer leading partition");
                None
            }
            _ => None,
        };
        if was == Some(state.leader) && self.leader_epoch() == state.leader_epoch {
            return None;
        }
        self.is_leader.store(false, Ordering::Release);
        self.leader_epoch
            .store(state.leader_epoch, Ordering::Release);
        if let Ok(mut role) = self.role.lock() {
            *role = if state.leader >= 0 {
                Role::Follower {
                    leader: state.leader,
                }
            } else {
                Role::None
            };
        }
        self.hw_changed.notify_waiters();
        self.wake_fetches();
        if state.leader >= 0 {
            tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, leader = state.leader, leader_epoch = state.leader_epoch, "following partition");
        }
        Some((state.leader, state.leader_epoch, state.leader >= 0))
    }

    pub(super) fn become_leader(&self, state: &PartitionState, zk_version: i32, replicas: &[i32]) {
        let Ok(mut log) = self.log.write() else {
            return;
        };
        if let Err(e) = log.assign_epoch_start(state.leader_epoch) {
            tracing::error!(topic = %self.tp.topic, partition = self.tp.partition, error = %e, "cannot record the leader epoch");
        }
        let end = log.log_end_offset();
        let s = LeaderState::new(
            self.me,
            state.leader_epoch,
            replicas,
            state.isr.clone(),
            zk_version,
            end,
            self.high_watermark(),
            now_ms(),
        );
        let hw = s.high_watermark;
        if let Ok(mut role) = self.role.lock() {
            *role = Role::Leader(s);
        }
        drop(log);
        self.leader_epoch
            .store(state.leader_epoch, Ordering::Release);
        self.is_leader.store(true, Ordering::Release);
        self.set_high_watermark(hw);
        self.hw_changed.notify_waiters();
        self.wake_fetches();
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, leader_epoch = state.leader_epoch, isr = ?state.isr, "leading partition");
    }

    pub(super) fn stop(&self) {
        self.is_leader.store(false, Ordering::Release);
        if let Ok(mut role) = self.role.lock() {
            *role = Role::None;
        }
        self.hw_changed.notify_waiters();
        self.wake_fetches();
    }
}
