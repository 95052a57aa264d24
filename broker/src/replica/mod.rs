//! The partitions this broker hosts, and their role.
//!
//! [`ReplicaManager`] follows the cluster view: for every partition assigned to this
//! broker it opens (or creates) the log and takes the role the partition's state znode
//! gives it.
//!
//! - **Leader**: accepts produce and serves fetches. It tracks its followers' progress
//!   ([`isr::LeaderState`]), keeps the high watermark (the smallest log end offset in the
//!   ISR; consumers read only below it), answers acks=all produces once the high watermark
//!   passes them, and shrinks or expands the ISR with a conditional write of the state
//!   znode ([`isr_maintenance`]).
//! - **Follower**: a [`fetcher`] copies the leader's batches byte for byte, after cutting
//!   any tail that diverged from the leader ([`truncation`]).
//!
//! Anything else answers NOT_LEADER_OR_FOLLOWER so clients refresh their metadata. Logs of
//! topics that no longer exist are deleted.

pub mod fetcher;
pub mod isr;
pub mod producer_state;
pub mod truncation;

use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::log::batch::{self, BatchError};
use crate::log::config::{FsyncPolicy, LogConfig};
use crate::log::error::LogError;
use crate::log::manager::{LogManager, SharedPartitionLog};
use crate::log::topic_partition::TopicPartition;
use bytes::Bytes;
use dashmap::DashMap;
use fetcher::{FetcherConfig, Fetchers};
use fjord_shared::cluster::PartitionState;
use isr::LeaderState;
use kafka_protocol::ResponseError;
use producer_state::{Check, ProducerStates};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
    /// False for an acknowledged duplicate (nothing new was stored).
    pub appended: bool,
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
enum Role {
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
    me: i32,
    log: SharedPartitionLog,
    is_leader: AtomicBool,
    leader_epoch: AtomicI32,
    /// Lock order: `producers`, then `log`, then `role`.
    role: Mutex<Role>,
    high_watermark: AtomicI64,
    /// Woken when the high watermark moves or the role changes (acks=all waiters).
    hw_changed: Notify,
    min_insync: AtomicUsize,
    producers: Mutex<ProducerStates>,
    fsync_always: bool,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition").field("tp", &self.tp).finish()
    }
}

fn poisoned(tp: &TopicPartition) -> PartitionError {
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

impl Partition {
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

    /// The ISR as this leader knows it; empty if it does not lead.
    pub fn isr(&self) -> Vec<i32> {
        match self.role.lock().as_deref() {
            Ok(Role::Leader(s)) => s.isr.clone(),
            _ => Vec::new(),
        }
    }

    fn set_high_watermark(&self, hw: i64) {
        let old = self.high_watermark.swap(hw, Ordering::AcqRel);
        if old != hw {
            self.hw_changed.notify_waiters();
        }
    }

    /// Appends a producer's batches as the leader, with idempotent-producer checks. With
    /// acks=all the ISR must have at least `min.insync.replicas` members.
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
                        appended: false,
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
        Ok(Appended {
            base_offset: info.first_offset,
            end_offset: info.last_offset + 1,
            log_start_offset: info.log_start_offset,
            leader_epoch: epoch,
            appended: true,
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

    /// A follower fetched from `fetch_offset`. Returns true if the high watermark moved
    /// (waiting consumers and acks=all produces should look again).
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
    fn isr_change(
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
    fn adopt_isr(&self, epoch: i32, isr: Vec<i32>, zk_version: i32) -> bool {
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
        if s.apply_isr(isr, zk_version, end) {
            self.set_high_watermark(s.high_watermark);
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
    fn follows(&self, leader: i32, epoch: i32) -> bool {
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
        *producers = rebuild_producer_states(&self.log);
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
            -2 => Ok((log.log_start_offset(), -1, epoch)),
            -3 => match log.offset_of_max_timestamp() {
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

    fn set_config(&self, config: LogConfig, min_insync: usize) {
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
    fn apply_state(
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
        if state.leader >= 0 {
            tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, leader = state.leader, leader_epoch = state.leader_epoch, "following partition");
        }
        Some((state.leader, state.leader_epoch, state.leader >= 0))
    }

    fn become_leader(&self, state: &PartitionState, zk_version: i32, replicas: &[i32]) {
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
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, leader_epoch = state.leader_epoch, isr = ?state.isr, "leading partition");
    }

    fn stop(&self) {
        self.is_leader.store(false, Ordering::Release);
        if let Ok(mut role) = self.role.lock() {
            *role = Role::None;
        }
        self.hw_changed.notify_waiters();
    }
}

/// All hosted partitions.
pub struct ReplicaManager {
    logs: Mutex<LogManager>,
    apply_lock: Mutex<()>,
    partitions: DashMap<TopicPartition, Arc<Partition>>,
    fetchers: Fetchers,
    defaults: BrokerDefaults,
}

impl std::fmt::Debug for ReplicaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaManager")
            .field("partitions", &self.partitions.len())
            .finish()
    }
}

#[derive(Debug, Clone)]
struct BrokerDefaults {
    me: i32,
    log: LogConfig,
    fsync_always: bool,
    min_insync: usize,
    lag_max_ms: i64,
}

fn fsync_policy(cfg: &BrokerConfig) -> FsyncPolicy {
    match cfg.fsync.as_str() {
        "interval" => FsyncPolicy::Interval(Duration::from_millis(cfg.fsync_interval_ms)),
        // `always` is applied by the partition after each append (one fsync per request).
        _ => FsyncPolicy::Never,
    }
}

/// The log settings of a topic: broker defaults overridden by the topic's config.
fn log_config(defaults: &LogConfig, topic: &BTreeMap<String, String>) -> LogConfig {
    let mut c = defaults.clone();
    let num = |k: &str| topic.get(k).and_then(|v| v.parse::<i64>().ok());
    if let Some(v) = num("segment.bytes") {
        c.segment_bytes = v.max(14) as u64;
    }
    if let Some(v) = num("segment.ms") {
        c.segment_ms = v.max(1) as u64;
    }
    if let Some(v) = num("retention.ms") {
        c.retention_ms = (v >= 0).then_some(v as u64);
    }
    if let Some(v) = num("retention.bytes") {
        c.retention_bytes = (v >= 0).then_some(v as u64);
    }
    if let Some(v) = num("max.message.bytes") {
        c.max_message_bytes = v.max(0) as usize;
    }
    if let Some(p) = topic
        .get("cleanup.policy")
        .and_then(|v| crate::log::config::CleanupPolicy::parse(v))
    {
        c.cleanup_policy = p;
    }
    if let Some(v) = topic
        .get("min.cleanable.dirty.ratio")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| (0.0..=1.0).contains(v))
    {
        c.min_cleanable_dirty_ratio = v;
    }
    if let Some(v) = num("delete.retention.ms") {
        c.delete_retention_ms = v.max(0) as u64;
    }
    if let Some(v) = num("min.compaction.lag.ms") {
        c.min_compaction_lag_ms = v.max(0) as u64;
    }
    c
}

impl ReplicaManager {
    /// Opens (and recovers) every partition log in the data directory.
    pub fn open(cfg: &BrokerConfig) -> Result<ReplicaManager, LogError> {
        let log = LogConfig {
            segment_bytes: cfg.segment_bytes,
            retention_ms: (cfg.retention_ms >= 0).then_some(cfg.retention_ms as u64),
            max_message_bytes: cfg.max_message_bytes,
            fsync: fsync_policy(cfg),
            ..LogConfig::default()
        };
        let manager = LogManager::open(cfg.data_dir.join("logs"), log.clone(), now_ms())?;
        let fetch = FetcherConfig {
            max_wait: Duration::from_millis(cfg.replica_fetch_wait_max_ms),
            max_bytes: 10 << 20,
            partition_max_bytes: 1 << 20,
        };
        let rm = ReplicaManager {
            logs: Mutex::new(manager),
            apply_lock: Mutex::new(()),
            partitions: DashMap::new(),
            fetchers: Fetchers::new(fetch, tokio::runtime::Handle::current()),
            defaults: BrokerDefaults {
                me: cfg.id,
                log,
                fsync_always: cfg.fsync == "always",
                min_insync: cfg.min_insync_replicas.max(1),
                lag_max_ms: cfg.replica_lag_time_max_ms as i64,
            },
        };
        Ok(rm)
    }

    /// The partition if this broker leads it, or the error a client should see.
    pub fn leader(
        &self,
        cluster: &Arc<Cluster>,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<Partition>, PartitionError> {
        if cluster.is_fenced() {
            return Err(PartitionError::new(
                ResponseError::NotLeaderOrFollower,
                "this broker lost its coordinator session",
            ));
        }
        let tp = TopicPartition::new(topic, partition);
        let leading = |rm: &ReplicaManager| {
            rm.partitions
                .get(&tp)
                .filter(|p| p.is_leader())
                .map(|p| p.clone())
        };
        if let Some(p) = leading(self) {
            return Ok(p);
        }
        let view = cluster.view();
        if view.leader(topic, partition) == Some(cluster.broker_id) {
            // The view already names this broker, but the background task has not applied
            // it yet (a topic created a moment ago): apply it now rather than turn the
            // client away.
            self.apply_view(cluster);
            if let Some(p) = leading(self) {
                return Ok(p);
            }
        }
        match view.topics.get(topic) {
            Some(t) if t.assignment.contains_key(&partition) => Err(PartitionError::new(
                ResponseError::NotLeaderOrFollower,
                format!(
                    "broker {} does not lead {topic}-{partition}",
                    cluster.broker_id
                ),
            )),
            _ => Err(PartitionError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("no partition {topic}-{partition}"),
            )),
        }
    }

    /// Takes the roles the latest view gives this broker, and deletes logs of vanished
    /// topics. Serialized, and always from the newest view, so an older view can never be
    /// applied over a newer one.
    pub fn apply_view(&self, cluster: &Arc<Cluster>) {
        let Ok(_guard) = self.apply_lock.lock() else {
            return;
        };
        let view = cluster.view();
        let me = cluster.broker_id;
        if !view.loaded {
            return;
        }
        let mut wanted = std::collections::BTreeSet::new();
        for (topic, t) in &view.topics {
            let config = log_config(&self.defaults.log, &t.config);
            let min_insync = t
                .config
                .get("min.insync.replicas")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(self.defaults.min_insync);
            for (p, replicas) in &t.assignment {
                if !replicas.contains(&me) {
                    continue;
                }
                let tp = TopicPartition::new(topic.as_str(), *p);
                wanted.insert(tp.clone());
                let part = match self.partition_for(&tp, &t.topic_id, &config) {
                    Ok(part) => part,
                    Err(e) => {
                        tracing::error!(topic, partition = p, error = %e, "cannot open the partition log");
                        continue;
                    }
                };
                part.set_config(config.clone(), min_insync);
                match t.states.get(p) {
                    Some((s, version)) => {
                        if s.leader == me {
                            self.fetchers.remove(&tp);
                        }
                        if let Some((leader, epoch, follow)) =
                            part.apply_state(s, *version, replicas)
                        {
                            if follow {
                                self.fetchers.follow(cluster, leader, epoch, part.clone());
                            } else {
                                self.fetchers.remove(&tp);
                            }
                        }
                    }
                    None => {
                        self.fetchers.remove(&tp);
                        part.stop();
                    }
                }
            }
        }
        let stale: Vec<TopicPartition> = self
            .partitions
            .iter()
            .map(|e| e.key().clone())
            .filter(|tp| !wanted.contains(tp))
            .collect();
        let on_disk: Vec<TopicPartition> =
            self.logs.lock().map(|l| l.partitions()).unwrap_or_default();
        for tp in stale
            .into_iter()
            .chain(on_disk.into_iter().filter(|tp| !wanted.contains(tp)))
        {
            self.delete(&tp);
        }
    }

    fn partition_for(
        &self,
        tp: &TopicPartition,
        topic_id: &str,
        config: &LogConfig,
    ) -> Result<Arc<Partition>, LogError> {
        if let Some(p) = self.partitions.get(tp) {
            let same = p
                .topic_id
                .lock()
                .map(|id| id.is_empty() || id.as_str() == topic_id)
                .unwrap_or(true);
            if same {
                return Ok(p.clone());
            }
        }
        if let Some(p) = self.partitions.get(tp).map(|p| p.clone()) {
            // The topic was deleted and created again under the same name.
            tracing::info!(topic = %tp.topic, partition = tp.partition, "the topic was recreated; dropping the old log");
            drop(p);
            self.delete(tp);
        }
        let log = {
            let mut logs = self
                .logs
                .lock()
                .map_err(|_| LogError::LockPoisoned(tp.clone()))?;
            let log = logs.get_or_create(tp.clone(), config.clone(), now_ms())?;
            let dir = logs.data_dir().join(tp.dir_name());
            check_topic_id(&dir, topic_id, tp, &mut logs)?.unwrap_or(log)
        };
        let producers = rebuild_producer_states(&log);
        let part = Arc::new(Partition {
            tp: tp.clone(),
            topic_id: Mutex::new(topic_id.to_owned()),
            me: self.defaults.me,
            log,
            is_leader: AtomicBool::new(false),
            leader_epoch: AtomicI32::new(-1),
            role: Mutex::new(Role::None),
            high_watermark: AtomicI64::new(0),
            hw_changed: Notify::new(),
            min_insync: AtomicUsize::new(self.defaults.min_insync),
            producers: Mutex::new(producers),
            fsync_always: self.defaults.fsync_always,
        });
        self.partitions.insert(tp.clone(), part.clone());
        Ok(part)
    }

    fn delete(&self, tp: &TopicPartition) {
        self.fetchers.remove(tp);
        if let Some((_, p)) = self.partitions.remove(tp) {
            p.stop();
        }
        if let Ok(mut logs) = self.logs.lock() {
            match logs.delete(tp) {
                Ok(true) => {
                    tracing::info!(topic = %tp.topic, partition = tp.partition, "partition log deleted")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(topic = %tp.topic, partition = tp.partition, error = %e, "cannot delete the partition log")
                }
            }
        }
    }

    /// Retention, interval flushes and checkpoints.
    fn maintain(&self, retention: bool) {
        let Ok(logs) = self.logs.lock() else { return };
        let now = now_ms();
        if retention {
            let summary = logs.enforce_retention(now, |_| None);
            if summary.deleted_segments > 0 {
                tracing::info!(
                    segments = summary.deleted_segments,
                    bytes = summary.deleted_bytes,
                    "retention deleted segments"
                );
            }
        }
        logs.flush_due(now);
        if let Err(e) = logs.write_checkpoints() {
            tracing::warn!(error = %e, "cannot write the log checkpoints");
        }
    }

    /// Compacts the logs of `cleanup.policy=compact` topics that are dirty enough, below
    /// each partition's high watermark. The manager lock is released while it works.
    fn clean(&self) {
        let cleaner = match self.logs.lock() {
            Ok(l) => l.cleaner(),
            Err(_) => return,
        };
        let summary = cleaner.run(now_ms(), |tp| {
            self.partitions.get(tp).map(|p| p.high_watermark())
        });
        tracing::debug!(?summary, "log cleaner pass");
    }

    /// Partitions this broker leads, for the ISR checks.
    fn leading(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .iter()
            .filter(|p| p.is_leader())
            .map(|p| p.clone())
            .collect()
    }

    /// Flushes and closes every log (clean shutdown).
    pub fn close(&self) {
        self.fetchers.shutdown();
        if let Ok(logs) = self.logs.lock() {
            if let Err(e) = logs.shutdown() {
                tracing::error!(error = %e, "closing the logs failed");
            }
        }
    }
}

/// How much of the newest log a restarted broker scans for idempotent producer state.
const PRODUCER_SCAN_BYTES: usize = 256 << 20;

/// Rebuilds idempotent producer state from the batch headers of the newest two segments
/// (at most [`PRODUCER_SCAN_BYTES`]), so that a producer retrying a batch that was stored
/// just before a crash is recognised after the restart instead of being stored twice.
fn rebuild_producer_states(log: &SharedPartitionLog) -> ProducerStates {
    let mut states = ProducerStates::default();
    let Ok(log) = log.read() else { return states };
    let bases = log.segment_base_offsets();
    let start = log.log_start_offset();
    let from = bases
        .len()
        .checked_sub(2)
        .map_or(start, |i| bases[i])
        .max(start);
    let end = log.log_end_offset();
    let (mut offset, mut scanned) = (from, 0usize);
    while offset < end && scanned < PRODUCER_SCAN_BYTES {
        let Ok(fetched) = log.read(offset, 1 << 20, end) else {
            break;
        };
        if fetched.records.is_empty() || fetched.next_offset <= offset {
            break;
        }
        for b in batch::batches(&fetched.records) {
            let Ok(b) = b else { break };
            let Ok(h) = batch::BatchHeader::parse(&b) else {
                break;
            };
            if h.producer_id() >= 0 && h.base_offset() >= offset {
                states.record(
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
        scanned += fetched.records.len();
        offset = fetched.next_offset;
    }
    states
}

/// Kafka's `partition.metadata` file records the topic id a log belongs to, so a log left
/// from a deleted topic is not served as part of a new topic with the same name. Returns a
/// fresh log if the old one belonged to another topic id.
fn check_topic_id(
    dir: &std::path::Path,
    topic_id: &str,
    tp: &TopicPartition,
    logs: &mut LogManager,
) -> Result<Option<SharedPartitionLog>, LogError> {
    if topic_id.is_empty() {
        return Ok(None);
    }
    let path = dir.join("partition.metadata");
    let found = std::fs::read_to_string(&path).ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("topic_id: ").map(|v| v.trim().to_owned()))
    });
    let write = |dir: &std::path::Path| {
        let text = format!("version: 0\ntopic_id: {topic_id}\n");
        fjord_shared::fs::write_atomic(&dir.join("partition.metadata"), text.as_bytes())
            .map_err(LogError::io("write", &dir.join("partition.metadata")))
    };
    match found {
        Some(id) if id == topic_id => Ok(None),
        None => {
            write(dir)?;
            Ok(None)
        }
        Some(_) => {
            tracing::info!(topic = %tp.topic, partition = tp.partition, "the log on disk belongs to an earlier topic of the same name; deleting it");
            let config = logs
                .get(tp)
                .and_then(|l| l.read().ok().map(|l| l.config().clone()))
                .unwrap_or_else(|| logs.default_config().clone());
            logs.delete(tp)?;
            let fresh = logs.create(tp.clone(), config, now_ms())?;
            write(dir)?;
            Ok(Some(fresh))
        }
    }
}

/// Applies every new cluster view to the hosted partitions.
pub async fn follow_view(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut rx = broker.cluster.subscribe();
    loop {
        rx.borrow_and_update();
        let b = broker.clone();
        // Opening logs does file I/O: keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || b.replicas.apply_view(&b.cluster)).await;
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
    }
}

/// How often the log cleaner looks for dirty compacted logs (log.cleaner.backoff.ms).
const CLEANER_BACKOFF: Duration = Duration::from_secs(15);

/// Periodic log maintenance: interval fsyncs and checkpoints every second, retention every
/// `--retention-check-ms`, compaction every 15 s.
pub async fn housekeeping(broker: Arc<Broker>, shutdown: CancellationToken) {
    let retention_every = Duration::from_millis(broker.config.retention_check_ms.max(1000));
    let mut last_retention = tokio::time::Instant::now();
    let mut last_clean = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
        let retention = last_retention.elapsed() >= retention_every;
        if retention {
            last_retention = tokio::time::Instant::now();
        }
        let clean = last_clean.elapsed() >= CLEANER_BACKOFF;
        if clean {
            last_clean = tokio::time::Instant::now();
        }
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || {
            b.replicas.maintain(retention);
            if clean {
                b.replicas.clean();
            }
        })
        .await;
    }
}

/// The leader's ISR upkeep: every 250 ms each led partition is checked, and a follower
/// that lagged for `--replica-lag-time-max-ms` is dropped, or one that caught up is added,
/// with a setData on the state znode conditional on the version the leader knows. If the
/// controller changed the state meanwhile the write fails, and the next view decides.
pub async fn isr_maintenance(broker: Arc<Broker>, shutdown: CancellationToken) {
    let lag_max_ms = broker.replicas.defaults.lag_max_ms;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.cancelled() => return,
        }
        if broker.cluster.is_fenced() {
            continue;
        }
        let view = broker.cluster.view();
        for part in broker.replicas.leading() {
            let tp = &part.tp;
            let Some((current, _)) = view
                .topics
                .get(&tp.topic)
                .and_then(|t| t.states.get(&tp.partition))
            else {
                continue;
            };
            let alive = |r: i32| view.brokers.contains_key(&r) && !view.shutting_down.contains(&r);
            let Some((next, version)) =
                part.isr_change(lag_max_ms, current.controller_epoch, alive)
            else {
                continue;
            };
            let path = fjord_shared::cluster::partition_state_path(&tp.topic, tp.partition);
            let data = serde_json::to_vec(&next).unwrap_or_default();
            match broker
                .cluster
                .client()
                .set_data(&path, data, Some(version))
                .await
            {
                Ok(stat) => {
                    part.adopt_isr(next.leader_epoch, next.isr, stat.version);
                }
                Err(fjord_shared::coord_client::Error::Zk(
                    fjord_shared::jute::ErrorCode::BadVersion,
                )) => {
                    tracing::debug!(topic = %tp.topic, partition = tp.partition, "the partition state changed meanwhile; the ISR change waits for the new view");
                }
                Err(e) => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e, "cannot write the ISR change");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::truncation::{next_truncation, LeaderEpochEnd};
    use super::*;
    use crate::log::test_util::simple_batch;

    fn partition(dir: &std::path::Path, me: i32) -> Arc<Partition> {
        let mut logs = LogManager::open(dir.to_path_buf(), LogConfig::default(), 0).unwrap();
        let tp = TopicPartition::new("t", 0);
        let log = logs
            .get_or_create(tp.clone(), LogConfig::default(), 0)
            .unwrap();
        Arc::new(Partition {
            tp,
            topic_id: Mutex::new(String::new()),
            me,
            log,
            is_leader: AtomicBool::new(false),
            leader_epoch: AtomicI32::new(-1),
            role: Mutex::new(Role::None),
            high_watermark: AtomicI64::new(0),
            hw_changed: Notify::new(),
            min_insync: AtomicUsize::new(1),
            producers: Mutex::new(ProducerStates::default()),
            fsync_always: false,
        })
    }

    fn state(leader: i32, epoch: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            version: 1,
            leader,
            leader_epoch: epoch,
            controller_epoch: 1,
            isr: isr.to_vec(),
        }
    }

    /// Copies everything the follower lacks from the leader, as one fetch would.
    fn replicate(leader: &Partition, follower: &Partition, leader_id: i32) {
        let from = follower.log_end_offset();
        follower.follower_fetched_by(leader, from);
        let r = leader.read(from, 1 << 20, true, true).unwrap();
        follower
            .append_replicated(
                leader_id,
                follower.leader_epoch(),
                r.records,
                r.high_watermark,
                r.log_start_offset,
            )
            .unwrap();
    }

    impl Partition {
        fn follower_fetched_by(&self, leader: &Partition, offset: i64) {
            leader.follower_fetched(self.me, offset).unwrap();
        }
    }

    /// Runs OffsetForLeaderEpoch rounds between two partitions, as the fetcher does.
    fn truncate_against(follower: &Partition, leader: &Partition) {
        for _ in 0..10 {
            let Some(epoch) = follower.latest_log_epoch() else {
                return;
            };
            let (e, end) = leader.end_offset_for_epoch(epoch).unwrap_or((-1, -1));
            let step = next_truncation(
                LeaderEpochEnd {
                    epoch: e,
                    end_offset: end,
                },
                follower.log_end_offset(),
                follower.high_watermark(),
                |x| follower.end_offset_for_epoch(x),
            );
            follower
                .truncate_to(leader.me, follower.leader_epoch(), step.offset)
                .unwrap();
            if step.complete {
                return;
            }
        }
        panic!("truncation did not finish");
    }

    #[test]
    fn acks_all_waits_for_the_isr_and_min_insync_refuses_early() {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (partition(dirs.0.path(), 1), partition(dirs.1.path(), 2));
        a.min_insync.store(2, Ordering::Release);
        a.apply_state(&state(1, 0, &[1]), 0, &[1, 2]);
        let err = a.append(simple_batch(3, 0, 4), -1).unwrap_err();
        assert_eq!(err.code, ResponseError::NotEnoughReplicas);
        // acks=1 does not care about the ISR size.
        a.append(simple_batch(3, 0, 4), 1).unwrap();
        assert_eq!(
            a.high_watermark(),
            3,
            "alone in the ISR: high watermark = log end"
        );

        a.apply_state(&state(1, 0, &[1, 2]), 1, &[1, 2]);
        assert!(b.apply_state(&state(1, 0, &[1, 2]), 1, &[1, 2]).is_some());
        let w = a.append(simple_batch(2, 0, 4), -1).unwrap();
        assert_eq!((w.base_offset, w.end_offset), (3, 5));
        assert_eq!(a.high_watermark(), 3, "the follower has not fetched yet");
        // Consumers see nothing above the high watermark.
        let r = a.read(3, 1 << 20, true, false).unwrap();
        assert!(r.records.is_empty());
        replicate(&a, &b, 1);
        assert_eq!(a.high_watermark(), 3, "fetched, but not yet confirmed");
        a.follower_fetched(2, b.log_end_offset()).unwrap();
        assert_eq!(a.high_watermark(), 5);
        assert_eq!(a.offset_for(-1, true).unwrap().0, 5);
    }

    #[test]
    fn a_new_leader_answers_offset_not_available_until_its_high_watermark_catches_up() {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (partition(dirs.0.path(), 1), partition(dirs.1.path(), 2));
        a.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
        b.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
        a.append(simple_batch(5, 0, 4), 1).unwrap();
        replicate(&a, &b, 1);
        a.follower_fetched(2, b.log_end_offset()).unwrap();
        assert_eq!(a.offset_for(-1, true).unwrap().0, 5);
        // b has all 5 records but learned the high watermark before it moved.
        assert_eq!(b.high_watermark(), 0);
        b.apply_state(&state(2, 1, &[2, 1]), 1, &[1, 2]);
        let err = b.offset_for(-1, true).unwrap_err();
        assert_eq!(err.code, ResponseError::OffsetNotAvailable);
        // A timestamp lookup that would land at or above the high watermark too.
        assert_eq!(
            b.offset_for(0, true).unwrap_err().code,
            ResponseError::OffsetNotAvailable
        );
        // Earliest is always known; old clients (ListOffsets v1) get the plain answer.
        assert_eq!(b.offset_for(-2, true).unwrap().0, 0);
        assert_eq!(b.offset_for(-1, false).unwrap().0, 0);
        // Once the follower fetches from the new leader, latest is monotonic again.
        assert!(a.apply_state(&state(2, 1, &[2, 1]), 1, &[1, 2]).is_some());
        b.follower_fetched(1, a.log_end_offset()).unwrap();
        assert_eq!(b.offset_for(-1, true).unwrap().0, 5);
        assert_eq!(b.offset_for(0, true).unwrap().0, 0);
    }

    #[test]
    fn a_late_fetcher_answer_never_cuts_the_log_of_a_broker_that_now_leads() {
        let dir = tempfile::tempdir().unwrap();
        let a = partition(dir.path(), 1);
        a.apply_state(&state(2, 0, &[2, 1]), 0, &[1, 2]);
        a.apply_state(&state(1, 1, &[1, 2]), 1, &[1, 2]);
        a.append(simple_batch(5, 0, 4), 1).unwrap();
        // Answers meant for the follower of broker 2 in epoch 0.
        a.truncate_to(2, 0, 0).unwrap();
        a.restart_at(2, 0, 100).unwrap();
        assert_eq!((a.log_start_offset(), a.log_end_offset()), (0, 5));
    }

    #[test]
    fn an_empty_epoch_at_the_log_end_is_dropped_by_a_truncation_that_cuts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = partition(dir.path(), 1);
        a.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
        a.append(simple_batch(5, 0, 4), 1).unwrap();
        // Leader in epoch 2 without writing anything, then a follower of broker 2.
        a.apply_state(&state(1, 2, &[1, 2]), 1, &[1, 2]);
        assert_eq!(a.latest_log_epoch(), Some(2));
        a.apply_state(&state(2, 3, &[2, 1]), 2, &[1, 2]);
        a.truncate_to(2, 3, 5).unwrap();
        assert_eq!(a.log_end_offset(), 5);
        assert_eq!(
            a.latest_log_epoch(),
            Some(0),
            "epoch 2 started at the end: gone"
        );
    }

    #[test]
    fn a_diverged_follower_is_cut_back_and_then_matches_the_leader() {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (partition(dirs.0.path(), 1), partition(dirs.1.path(), 2));
        // Epoch 0: broker 1 leads; broker 2 copies offsets 0..4.
        a.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
        b.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
        a.append(simple_batch(5, 0, 4), 1).unwrap();
        replicate(&a, &b, 1);
        // Broker 1 appends 5..9 that nobody copies (acks=1), then loses leadership.
        a.append(simple_batch(5, 0, 6), 1).unwrap();
        assert_eq!((a.log_end_offset(), b.log_end_offset()), (10, 5));
        // Epoch 1: broker 2 leads and writes its own 5..7.
        b.apply_state(&state(2, 1, &[2]), 2, &[1, 2]);
        b.append(simple_batch(3, 0, 9), 1).unwrap();
        // Broker 1 follows in epoch 1: it must drop its 5..9 before fetching.
        assert_eq!(
            a.apply_state(&state(2, 1, &[2]), 2, &[1, 2]),
            Some((2, 1, true))
        );
        assert!(!a.is_leader());
        truncate_against(&a, &b);
        assert_eq!(
            a.log_end_offset(),
            5,
            "epoch 0 ended at 5 on the new leader"
        );
        replicate(&b, &a, 2);
        assert_eq!(a.log_end_offset(), 8);
        let (x, y) = (
            a.read(0, 1 << 20, true, true).unwrap().records,
            b.read(0, 1 << 20, true, true).unwrap().records,
        );
        assert_eq!(x, y, "the logs are byte for byte the same");
        assert_eq!(a.end_offset_for_epoch(1), Some((1, 8)));
    }

    #[test]
    fn a_deposed_leader_fails_waiting_produces() {
        let dir = tempfile::tempdir().unwrap();
        let a = partition(dir.path(), 1);
        a.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
        let w = a.append(simple_batch(1, 0, 4), -1).unwrap();
        a.apply_state(&state(2, 1, &[2]), 1, &[1, 2]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let r = rt.block_on(a.wait_replicated(w.end_offset, w.leader_epoch, deadline));
        assert_eq!(r.unwrap_err().code, ResponseError::NotLeaderOrFollower);
        // And a write that nobody copies times out.
        let dir_b = tempfile::tempdir().unwrap();
        let b = partition(dir_b.path(), 1);
        b.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
        let w = b.append(simple_batch(1, 0, 4), -1).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let r = rt.block_on(b.wait_replicated(w.end_offset, w.leader_epoch, deadline));
        assert_eq!(r.unwrap_err().code, ResponseError::RequestTimedOut);
    }
}
