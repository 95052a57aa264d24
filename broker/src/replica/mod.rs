//! The partitions this broker hosts, and their role.
//!
//! [`ReplicaManager`] follows the cluster view: for every partition assigned to this
//! broker it opens (or creates) the log and takes the role the partition state gives it.
//! A leader accepts produce and fetch; anything else answers NOT_LEADER_OR_FOLLOWER so
//! clients refresh their metadata. Logs of topics that no longer exist are deleted.
//!
//! With one replica per partition the high watermark is the log end offset; replication
//! (followers, ISR, a high watermark below the log end) builds on this.

pub mod producer_state;

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
use kafka_protocol::ResponseError;
use producer_state::{Check, ProducerStates};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
    pub log_start_offset: i64,
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One hosted partition.
pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: Mutex<String>,
    log: SharedPartitionLog,
    is_leader: AtomicBool,
    leader_epoch: AtomicI32,
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
        format!("{tp:?}: the log lock is poisoned"),
    )
}

impl Partition {
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Appends a producer's batches as the leader, with idempotent-producer checks.
    pub async fn append(&self, records: Bytes, _acks: i16) -> Result<Appended, PartitionError> {
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
        if let Some((pid, epoch, seq, count)) = producer {
            match producers.check(pid, epoch, seq, count) {
                Check::Append => {}
                Check::Duplicate { base_offset } => {
                    let log = self.log.read().map_err(|_| poisoned(&self.tp))?;
                    return Ok(Appended {
                        base_offset,
                        log_start_offset: log.log_start_offset(),
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
        let mut log = self.log.write().map_err(|_| poisoned(&self.tp))?;
        let info = log.append_as_leader(records, self.leader_epoch(), now_ms())?;
        if self.fsync_always {
            log.flush()?;
        }
        if let Some((pid, epoch, seq, count)) = producer {
            producers.record(pid, epoch, seq, count, info.first_offset);
        }
        Ok(Appended {
            base_offset: info.first_offset,
            log_start_offset: info.log_start_offset,
            appended: true,
        })
    }

    /// The high watermark: with a single replica, the log end offset.
    pub fn high_watermark(&self) -> Result<i64, PartitionError> {
        Ok(self
            .log
            .read()
            .map_err(|_| poisoned(&self.tp))?
            .log_end_offset())
    }

    /// Reads whole batches below the high watermark. The file I/O happens after the log
    /// lock is released. With `budget` 0 and `min_one` false nothing is read.
    pub fn read(
        &self,
        offset: i64,
        budget: usize,
        min_one: bool,
    ) -> Result<ReadResult, PartitionError> {
        let (plan, hw, start) = {
            let log = self.log.read().map_err(|_| poisoned(&self.tp))?;
            let hw = log.log_end_offset();
            let start = log.log_start_offset();
            if !min_one && budget == 0 {
                if offset < start || offset > hw {
                    return Err(LogError::OffsetOutOfRange {
                        offset,
                        log_start_offset: start,
                        log_end_offset: hw,
                    }
                    .into());
                }
                return Ok(ReadResult {
                    records: Bytes::new(),
                    high_watermark: hw,
                    log_start_offset: start,
                });
            }
            (log.prepare_read(offset, budget.max(1), hw)?, hw, start)
        };
        let fetched = plan.read()?;
        Ok(ReadResult {
            records: fetched.records,
            high_watermark: hw,
            log_start_offset: start,
        })
    }

    /// ListOffsets: (offset, timestamp, leader epoch) for a timestamp or -1/-2/-3.
    pub fn offset_for(&self, timestamp: i64) -> Result<(i64, i64, i32), PartitionError> {
        let log = self.log.read().map_err(|_| poisoned(&self.tp))?;
        let epoch = self.leader_epoch();
        Ok(match timestamp {
            -1 => (log.log_end_offset(), -1, epoch),
            -2 => (log.log_start_offset(), -1, epoch),
            -3 => match log.offset_of_max_timestamp() {
                Some(t) => (t.offset, t.timestamp, t.leader_epoch.unwrap_or(epoch)),
                None => (-1, -1, epoch),
            },
            ts => match log.offset_for_timestamp(ts)? {
                Some(t) => (t.offset, t.timestamp, t.leader_epoch.unwrap_or(epoch)),
                None => (-1, -1, epoch),
            },
        })
    }

    /// DeleteRecords: -1 means the high watermark. Returns the new low watermark.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, PartitionError> {
        let mut log = self.log.write().map_err(|_| poisoned(&self.tp))?;
        let target = if offset == -1 {
            log.log_end_offset()
        } else {
            offset
        };
        Ok(log.delete_records_before(target)?)
    }

    fn set_config(&self, config: LogConfig) {
        if let Ok(mut log) = self.log.write() {
            if *log.config() != config {
                if let Err(e) = log.set_config(config) {
                    tracing::warn!(topic = %self.tp.topic, partition = self.tp.partition, error = %e, "cannot apply the topic config");
                }
            }
        }
    }

    fn become_leader(&self, epoch: i32) {
        if let Ok(mut log) = self.log.write() {
            if let Err(e) = log.assign_epoch_start(epoch) {
                tracing::error!(topic = %self.tp.topic, partition = self.tp.partition, error = %e, "cannot record the leader epoch");
            }
        }
        self.leader_epoch.store(epoch, Ordering::Release);
        self.is_leader.store(true, Ordering::Release);
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, leader_epoch = epoch, "leading partition");
    }
}

/// All hosted partitions.
pub struct ReplicaManager {
    logs: Mutex<LogManager>,
    apply_lock: Mutex<()>,
    partitions: DashMap<TopicPartition, Arc<Partition>>,
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
    log: LogConfig,
    fsync_always: bool,
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
        let rm = ReplicaManager {
            logs: Mutex::new(manager),
            apply_lock: Mutex::new(()),
            partitions: DashMap::new(),
            defaults: BrokerDefaults {
                log,
                fsync_always: cfg.fsync == "always",
            },
        };
        Ok(rm)
    }

    /// The partition if this broker leads it, or the error a client should see.
    pub fn leader(
        &self,
        cluster: &Cluster,
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
    pub fn apply_view(&self, cluster: &Cluster) {
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
                part.set_config(config.clone());
                match t.states.get(p) {
                    Some((s, _)) if s.leader == me => {
                        if !part.is_leader() || part.leader_epoch() != s.leader_epoch {
                            part.become_leader(s.leader_epoch);
                        }
                    }
                    _ => {
                        if part.is_leader() {
                            tracing::info!(topic, partition = p, "no longer leading partition");
                        }
                        part.is_leader.store(false, Ordering::Release);
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
            log,
            is_leader: AtomicBool::new(false),
            leader_epoch: AtomicI32::new(-1),
            producers: Mutex::new(producers),
            fsync_always: self.defaults.fsync_always,
        });
        self.partitions.insert(tp.clone(), part.clone());
        Ok(part)
    }

    fn delete(&self, tp: &TopicPartition) {
        self.partitions.remove(tp);
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

    /// Flushes and closes every log (clean shutdown).
    pub fn close(&self) {
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
                    h.record_count(),
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

/// Periodic log maintenance: interval fsyncs and checkpoints every second, retention every
/// `--retention-check-ms`.
pub async fn housekeeping(broker: Arc<Broker>, shutdown: CancellationToken) {
    let retention_every = Duration::from_millis(broker.config.retention_check_ms.max(1000));
    let mut last_retention = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
        let retention = last_retention.elapsed() >= retention_every;
        if retention {
            last_retention = tokio::time::Instant::now();
        }
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || b.replicas.maintain(retention)).await;
    }
}
