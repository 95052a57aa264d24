//! [`ReplicaManager`]: every partition this broker hosts, opened from the log manager and
//! given the role that the cluster view names.

use super::fetcher::{FetcherConfig, Fetchers};
use super::partition::{now_ms, Partition, PartitionError, PartitionInit};

use super::producer_state::rebuild_from_log;
use super::throttle::{self, Throttles};
use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::log::config::{FsyncPolicy, LogConfig};
use crate::log::error::LogError;
use crate::log::manager::{LogManager, SharedPartitionLog};
use crate::log::topic_partition::TopicPartition;
use dashmap::DashMap;
use fjord_shared::cluster::DEFAULT_ENTITY;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// All hosted partitions.
pub struct ReplicaManager {
    pub(super) logs: Mutex<LogManager>,
    pub(super) apply_lock: Mutex<()>,
    pub(super) partitions: DashMap<TopicPartition, Arc<Partition>>,
    pub(super) fetchers: Fetchers,
    pub(super) defaults: BrokerDefaults,
    /// Woken after every append to a led partition (by producers and by the broker's own
    /// writers alike) and whenever a high watermark moves, so parked fetches re-read.
    data_arrived: Arc<Notify>,
    /// ISR shrinks and expansions of the partitions led here, for the metrics.
    pub isr_changes: Arc<crate::stats::IsrChanges>,
    /// Replication throttles (dynamic broker configs), as a leader and as a follower.
    pub throttles: Arc<Throttles>,
}

impl std::fmt::Debug for ReplicaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaManager")
            .field("partitions", &self.partitions.len())
            .finish()
    }
}

#[derive(Debug, Clone)]
pub(super) struct BrokerDefaults {
    pub(super) me: i32,
    pub(super) log: LogConfig,
    pub(super) fsync_always: bool,
    pub(super) min_insync: usize,
    pub(super) lag_max_ms: i64,
}

pub(super) fn fsync_policy(cfg: &BrokerConfig) -> FsyncPolicy {
    match cfg.fsync.as_str() {
        "interval" => FsyncPolicy::Interval(Duration::from_millis(cfg.fsync_interval_ms)),
        // `always` is applied by the partition after each append (one fsync per request).
        _ => FsyncPolicy::Never,
    }
}

/// The log settings of a topic: broker defaults overridden by the topic's config.
pub(super) fn log_config(defaults: &LogConfig, topic: &BTreeMap<String, String>) -> LogConfig {
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
    pub fn open(
        cfg: &BrokerConfig,
        inter_broker: Arc<crate::security::InterBroker>,
    ) -> Result<ReplicaManager, LogError> {
        let log = LogConfig {
            segment_bytes: cfg.segment_bytes,
            retention_ms: (cfg.retention_ms >= 0).then_some(cfg.retention_ms as u64),
            max_message_bytes: cfg.max_message_bytes,
            fsync: fsync_policy(cfg),
            ..LogConfig::default()
        };
        let manager = LogManager::open(cfg.data_dir.join("logs"), log.clone(), now_ms())?;
        let throttles = Arc::new(Throttles::default());
        let fetch = FetcherConfig {
            throttles: throttles.clone(),
            max_wait: Duration::from_millis(cfg.replica_fetch_wait_max_ms),
            max_bytes: 10 << 20,
            partition_max_bytes: 1 << 20,
            inter_broker,
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
            data_arrived: Arc::new(Notify::new()),
            isr_changes: Default::default(),
            throttles,
        };
        Ok(rm)
    }

    /// The signal parked fetches wait on: see [`Partition::append`].
    pub fn data_arrived(&self) -> &Notify {
        &self.data_arrived
    }

    /// The hosted partition, whatever its role, without applying a pending view.
    pub fn hosted(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .get(&TopicPartition::new(topic, partition))
            .map(|p| p.clone())
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

    /// Takes the roles the latest view gives this broker, and deletes the logs of
    /// partitions it no longer holds (vanished topics, replicas moved away). Serialized,
    /// and always from the newest view, so an older view can never be applied over a
    /// newer one.
    pub fn apply_view(&self, cluster: &Arc<Cluster>) {
        let Ok(_guard) = self.apply_lock.lock() else {
            return;
        };
        let view = cluster.view();
        let me = cluster.broker_id;
        if !view.loaded {
            return;
        }
        let rate = |key: &str| -> Option<u64> {
            [me.to_string(), DEFAULT_ENTITY.to_owned()]
                .iter()
                .find_map(|e| view.broker_configs.get(e)?.get(key)?.parse().ok())
        };
        self.throttles.leader.set_rate(rate(throttle::LEADER_RATE));
        self.throttles
            .follower
            .set_rate(rate(throttle::FOLLOWER_RATE));
        let mut wanted = std::collections::BTreeSet::new();
        for (topic, t) in &view.topics {
            let config = log_config(&self.defaults.log, &t.config);
            let min_insync = t
                .config
                .get("min.insync.replicas")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(self.defaults.min_insync);
            for (p, replicas) in &t.assignment {
                // A broker a reassignment dropped keeps its log while the state still
                // names it leader or in sync: the controller moves that away first.
                let named = t
                    .states
                    .get(p)
                    .is_some_and(|(s, _)| s.leader == me || s.isr.contains(&me));
                if !replicas.contains(&me) && !named {
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
                part.set_throttled(
                    throttle::throttled(&t.config, throttle::LEADER_REPLICAS, *p, me),
                    throttle::throttled(&t.config, throttle::FOLLOWER_REPLICAS, *p, me),
                );
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

    pub(super) fn partition_for(
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
        let producers = rebuild_from_log(&log);
        let part = Partition::new(PartitionInit {
            tp: tp.clone(),
            topic_id: topic_id.to_owned(),
            me: self.defaults.me,
            log,
            producers,
            min_insync: self.defaults.min_insync,
            fsync_always: self.defaults.fsync_always,
            data_arrived: self.data_arrived.clone(),
            isr_changes: self.isr_changes.clone(),
        });
        self.partitions.insert(tp.clone(), part.clone());
        Ok(part)
    }

    pub(super) fn delete(&self, tp: &TopicPartition) {
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
    pub(super) fn maintain(&self, retention: bool) {
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
    pub(super) fn clean(&self) {
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
    /// The directory holding the partition logs.
    pub fn log_dir(&self) -> std::path::PathBuf {
        self.logs
            .lock()
            .map(|l| l.data_dir().to_path_buf())
            .unwrap_or_default()
    }

    /// Every hosted partition, led or followed.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.iter().map(|p| p.clone()).collect()
    }

    pub(super) fn leading(&self) -> Vec<Arc<Partition>> {
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

/// Kafka's `partition.metadata` file records the topic id a log belongs to, so a log left
/// from a deleted topic is not served as part of a new topic with the same name. Returns a
/// fresh log if the old one belonged to another topic id.
pub(super) fn check_topic_id(
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
    // A new partition's file is fsynced by its first flush (`PartitionLog::flush`); if a
    // machine crash loses it before, it is written again here.
    let write = |dir: &std::path::Path, durable: bool| {
        let text = format!("version: 0\ntopic_id: {topic_id}\n");
        let path = dir.join("partition.metadata");
        if durable {
            fjord_shared::fs::write_atomic(&path, text.as_bytes())
        } else {
            fjord_shared::fs::write_replace(&path, text.as_bytes())
        }
        .map_err(LogError::io("write", &path))
    };
    let unsynced =
        |log: &SharedPartitionLog| log.read().map(|l| l.dirs_unsynced()).unwrap_or(false);
    match found {
        Some(id) if id == topic_id => Ok(None),
        None => {
            let durable = !logs.get(tp).is_some_and(|l| unsynced(&l));
            write(dir, durable)?;
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
            write(dir, !unsynced(&fresh))?;
            Ok(Some(fresh))
        }
    }
}
