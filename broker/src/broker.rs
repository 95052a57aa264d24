//! The broker's shared state: configuration, cluster membership, partitions, producer ids,
//! consumer groups.

use crate::cluster::{admin, Cluster};
use crate::config::BrokerConfig;
use crate::group::coordinator::GroupCoordinator;
use crate::producer_ids::ProducerIds;
use crate::replica::ReplicaManager;
use crate::security::{InterBroker, Security};
use crate::stats::BrokerStats;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything a request handler may need.
pub struct Broker {
    pub config: BrokerConfig,
    pub id: i32,
    pub cluster: Arc<Cluster>,
    pub replicas: ReplicaManager,
    pub producer_ids: ProducerIds,
    /// The consumer groups this broker coordinates.
    pub groups: GroupCoordinator,
    /// Authentication: credentials, mechanisms, session lifetime.
    pub security: Security,
    /// How this broker reaches the others.
    pub inter_broker: Arc<InterBroker>,
    /// What request handling counts, for the metrics.
    pub stats: BrokerStats,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("id", &self.id).finish()
    }
}

impl Broker {
    /// The replication factor for new topics that do not give one: the configured
    /// default, capped at the number of live brokers.
    pub fn default_replication_factor(&self) -> i16 {
        let live = self.cluster.view().brokers.len().max(1);
        self.config
            .default_replication_factor
            .min(live as i16)
            .max(1)
    }

    /// Creates a topic with the defaults, for auto-creation. True if it now exists.
    pub async fn auto_create(&self, topic: &str) -> bool {
        if self.cluster.is_fenced() {
            return false;
        }
        match admin::create_topic(
            &self.cluster,
            topic,
            self.config.num_partitions,
            self.default_replication_factor(),
            None,
            BTreeMap::new(),
            false,
        )
        .await
        {
            Ok(_) => {
                tracing::info!(topic, "topic auto-created");
                true
            }
            Err(e) if e.code == kafka_protocol::ResponseError::TopicAlreadyExists => true,
            Err(e) => {
                tracing::debug!(topic, error = %e, "auto-create refused");
                false
            }
        }
    }

    /// Topic config defaults, as DescribeConfigs reports them.
    pub fn default_topic_configs(&self) -> BTreeMap<String, String> {
        let c = &self.config;
        [
            ("cleanup.policy", "delete".to_owned()),
            ("compression.type", "producer".to_owned()),
            ("max.message.bytes", c.max_message_bytes.to_string()),
            ("message.timestamp.type", "CreateTime".to_owned()),
            ("min.insync.replicas", c.min_insync_replicas.to_string()),
            ("retention.bytes", "-1".to_owned()),
            ("retention.ms", c.retention_ms.to_string()),
            ("segment.bytes", c.segment_bytes.to_string()),
            ("segment.ms", "604800000".to_owned()),
            ("min.cleanable.dirty.ratio", "0.5".to_owned()),
            ("delete.retention.ms", "86400000".to_owned()),
            ("min.compaction.lag.ms", "0".to_owned()),
            ("unclean.leader.election.enable", "false".to_owned()),
            (crate::replica::throttle::LEADER_REPLICAS, String::new()),
            (crate::replica::throttle::FOLLOWER_REPLICAS, String::new()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The effective config of a topic: defaults overridden by its own settings.
    pub fn topic_config(&self, topic: &str) -> BTreeMap<String, String> {
        let mut c = self.default_topic_configs();
        if let Some(t) = self.cluster.view().topics.get(topic) {
            c.extend(t.config.clone());
        }
        c
    }

    /// Broker settings shown by DescribeConfigs (read-only).
    pub fn broker_configs(&self) -> BTreeMap<String, String> {
        let c = &self.config;
        [
            ("broker.id", c.id.to_string()),
            (
                "auto.create.topics.enable",
                c.auto_create_topics.to_string(),
            ),
            ("num.partitions", c.num_partitions.to_string()),
            (
                "default.replication.factor",
                c.default_replication_factor.to_string(),
            ),
            ("socket.request.max.bytes", c.max_request_bytes.to_string()),
            ("log.dirs", c.data_dir.display().to_string()),
            ("log.segment.bytes", c.segment_bytes.to_string()),
            ("log.retention.ms", c.retention_ms.to_string()),
            ("message.max.bytes", c.max_message_bytes.to_string()),
            ("log.flush.policy", c.fsync.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}
