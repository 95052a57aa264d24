//! Admin operations: create and delete topics, add partitions, describe and change topic
//! configs, describe the cluster.
//!
//! Requests that change the cluster go to the controller, as Kafka's admin client sends
//! them; a NOT_CONTROLLER answer (the controller moved) is retried after a metadata
//! refresh. They are not retried after a broken connection: the change may have been made,
//! and a blind retry would report TOPIC_ALREADY_EXISTS for a topic this call created.
//!
//! Config changes use IncrementalAlterConfigs when the broker has it. Otherwise the legacy
//! AlterConfigs replaces a topic's whole dynamic config, so the current overrides are read
//! first and the changes applied to them; that read-modify-write is not atomic against a
//! concurrent change by someone else.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest, ApiKey,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::error::{Error, Result};
use super::metadata::BrokerInfo;
use super::Client;

/// Kafka's resource type for topics in the config APIs.
const RESOURCE_TOPIC: i8 = 2;

/// A topic to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// `None`: the broker's default (CreateTopics v4+; 1 with older brokers).
    pub partitions: Option<i32>,
    /// `None`: the broker's default (CreateTopics v4+; 1 with older brokers).
    pub replication_factor: Option<i16>,
    /// Topic config overrides, e.g. `retention.ms`.
    pub configs: Vec<(String, String)>,
}

/// Where a config value comes from (DescribeConfigs v1+ `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on this topic.
    DynamicTopic,
    DynamicBroker,
    DynamicDefaultBroker,
    /// The broker's configuration file.
    StaticBroker,
    /// The built-in default.
    Default,
    DynamicBrokerLogger,
    Unknown(i8),
}

impl ConfigSource {
    /// From the wire value.
    pub fn from_wire(v: i8) -> ConfigSource {
        match v {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLogger,
            other => ConfigSource::Unknown(other),
        }
    }

    /// Kafka's name, as `kafka-configs --describe` prints it.
    pub fn name(self) -> String {
        match self {
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG".into(),
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG".into(),
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG".into(),
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG".into(),
            ConfigSource::Default => "DEFAULT_CONFIG".into(),
            ConfigSource::DynamicBrokerLogger => "DYNAMIC_BROKER_LOGGER_CONFIG".into(),
            ConfigSource::Unknown(v) => format!("UNKNOWN({v})"),
        }
    }
}

/// One config entry of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for sensitive values and for unset ones.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
}

/// One change to a topic's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Set `key` to `value` on the topic.
    Set(String, String),
    /// Remove the topic's override of `key` (back to the broker's value).
    Delete(String),
}

/// What DescribeCluster says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: String,
    pub controller_id: Option<i32>,
    pub brokers: Vec<BrokerInfo>,
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn text(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|m| m.as_str().to_owned())
}

fn timeout_ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// Applies `changes` to a topic's current overrides (for the legacy AlterConfigs).
pub(crate) fn apply_changes(
    current: &[ConfigEntry],
    changes: &[ConfigChange],
) -> BTreeMap<String, String> {
    let mut set: BTreeMap<String, String> = current
        .iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic)
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    for c in changes {
        match c {
            ConfigChange::Set(k, v) => {
                set.insert(k.clone(), v.clone());
            }
            ConfigChange::Delete(k) => {
                set.remove(k);
            }
        }
    }
    set
}

impl Client {
    /// Creates a topic; the controller waits up to `timeout` for it to be set up.
    pub async fn create_topic(&self, topic: &NewTopic, timeout: Duration) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.create_topic_once(topic, timeout).await {
                Err(e) if attempt < self.inner.opts.retries && e.is_retriable(false) => {
                    attempt += 1;
                    self.pause_and_refresh(attempt, &e, None).await;
                }
                other => return other,
            }
        }
    }

    async fn create_topic_once(&self, topic: &NewTopic, timeout: Duration) -> Result<()> {
        let mut conn = self.controller_conn().await?;
        let version = conn.version(ApiKey::CreateTopics)?;
        // -1 ("the broker's default") is only understood from v4 on.
        let default = if version >= 4 { -1 } else { 1 };
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(timeout_ms(timeout))
            .with_topics(vec![CreatableTopic::default()
                .with_name(name(&topic.name))
                .with_num_partitions(topic.partitions.unwrap_or(default))
                .with_replication_factor(topic.replication_factor.unwrap_or(default as i16))
                .with_configs(
                    topic
                        .configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(str_bytes(k))
                                .with_value(Some(str_bytes(v)))
                        })
                        .collect(),
                )]);
        let resp = conn.send(&req, version, timeout).await?;
        let result = resp
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == topic.name)
            .ok_or_else(|| Error::MissingResult {
                api: ApiKey::CreateTopics,
                resource: topic.name.clone(),
            })?;
        if result.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::CreateTopics,
                topic.name.clone(),
                result.error_code,
                text(&result.error_message),
            ));
        }
        Ok(())
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, topic: &str, timeout: Duration) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.delete_topic_once(topic, timeout).await {
                Err(e) if attempt < self.inner.opts.retries && e.is_retriable(false) => {
                    attempt += 1;
                    self.pause_and_refresh(attempt, &e, None).await;
                }
                other => return other,
            }
        }
    }

    async fn delete_topic_once(&self, topic: &str, timeout: Duration) -> Result<()> {
        let mut conn = self.controller_conn().await?;
        let version = conn.version(ApiKey::DeleteTopics)?;
        let req = DeleteTopicsRequest::default()
            .with_timeout_ms(timeout_ms(timeout))
            .with_topic_names(vec![name(topic)]);
        let resp = conn.send(&req, version, timeout).await?;
        let result = resp
            .responses
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
            .ok_or_else(|| Error::MissingResult {
                api: ApiKey::DeleteTopics,
                resource: topic.to_owned(),
            })?;
        if result.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::DeleteTopics,
                topic,
                result.error_code,
                text(&result.error_message),
            ));
        }
        Ok(())
    }

    /// Grows `topic` to `total` partitions (the broker places the new ones).
    pub async fn create_partitions(
        &self,
        topic: &str,
        total: i32,
        timeout: Duration,
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.create_partitions_once(topic, total, timeout).await {
                Err(e) if attempt < self.inner.opts.retries && e.is_retriable(false) => {
                    attempt += 1;
                    self.pause_and_refresh(attempt, &e, Some(topic)).await;
                }
                other => return other,
            }
        }
    }

    async fn create_partitions_once(
        &self,
        topic: &str,
        total: i32,
        timeout: Duration,
    ) -> Result<()> {
        let mut conn = self.controller_conn().await?;
        let version = conn.version(ApiKey::CreatePartitions)?;
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(timeout_ms(timeout))
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(name(topic))
                .with_count(total)
                .with_assignments(None)]);
        let resp = conn.send(&req, version, timeout).await?;
        let result = resp
            .results
            .iter()
            .find(|t| t.name.0.as_str() == topic)
            .ok_or_else(|| Error::MissingResult {
                api: ApiKey::CreatePartitions,
                resource: topic.to_owned(),
            })?;
        if result.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::CreatePartitions,
                topic,
                result.error_code,
                text(&result.error_message),
            ));
        }
        Ok(())
    }

    /// Every config entry of `topic`, with where each value comes from.
    pub async fn describe_topic_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let mut attempt = 0;
        loop {
            match self.describe_topic_configs_once(topic).await {
                Err(e) if attempt < self.inner.opts.retries && e.is_retriable(true) => {
                    attempt += 1;
                    self.pause_and_refresh(attempt, &e, None).await;
                }
                other => return other,
            }
        }
    }

    async fn describe_topic_configs_once(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let mut conn = self.any_conn().await?;
        let version = conn.version(ApiKey::DescribeConfigs)?;
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(topic))
                .with_configuration_keys(None),
        ]);
        let resp = conn.send(&req, version, Duration::ZERO).await?;
        let result = resp
            .results
            .iter()
            .find(|r| r.resource_type == RESOURCE_TOPIC && r.resource_name.as_str() == topic)
            .ok_or_else(|| Error::MissingResult {
                api: ApiKey::DescribeConfigs,
                resource: topic.to_owned(),
            })?;
        if result.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::DescribeConfigs,
                topic,
                result.error_code,
                text(&result.error_message),
            ));
        }
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .iter()
            .map(|c| ConfigEntry {
                name: c.name.as_str().to_owned(),
                value: text(&c.value),
                source: ConfigSource::from_wire(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// The topic's `min.insync.replicas`, if its configs say.
    pub async fn min_insync_replicas(&self, topic: &str) -> Result<Option<usize>> {
        Ok(self
            .describe_topic_configs(topic)
            .await?
            .iter()
            .find(|c| c.name == "min.insync.replicas")
            .and_then(|c| c.value.as_deref())
            .and_then(|v| v.parse().ok()))
    }

    /// Changes `topic`'s config (see the module docs for how).
    pub async fn alter_topic_configs(&self, topic: &str, changes: &[ConfigChange]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            match self.alter_topic_configs_once(topic, changes).await {
                Err(e) if attempt < self.inner.opts.retries && e.is_retriable(false) => {
                    attempt += 1;
                    self.pause_and_refresh(attempt, &e, None).await;
                }
                other => return other,
            }
        }
    }

    async fn alter_topic_configs_once(&self, topic: &str, changes: &[ConfigChange]) -> Result<()> {
        let incremental = {
            let conn = self.controller_conn().await?;
            conn.versions().supports(ApiKey::IncrementalAlterConfigs)
        };
        let (api, error_code, message) = if incremental {
            let configs = changes
                .iter()
                .map(|c| match c {
                    ConfigChange::Set(k, v) => {
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(str_bytes(k))
                            .with_config_operation(0)
                            .with_value(Some(str_bytes(v)))
                    }
                    ConfigChange::Delete(k) => {
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(str_bytes(k))
                            .with_config_operation(1)
                            .with_value(None)
                    }
                })
                .collect();
            let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(str_bytes(topic))
                    .with_configs(configs),
            ]);
            let mut conn = self.controller_conn().await?;
            let version = conn.version(ApiKey::IncrementalAlterConfigs)?;
            let resp = conn.send(&req, version, Duration::ZERO).await?;
            let r = resp
                .responses
                .iter()
                .find(|r| r.resource_name.as_str() == topic)
                .ok_or_else(|| Error::MissingResult {
                    api: ApiKey::IncrementalAlterConfigs,
                    resource: topic.to_owned(),
                })?;
            (
                ApiKey::IncrementalAlterConfigs,
                r.error_code,
                text(&r.error_message),
            )
        } else {
            let current = self.describe_topic_configs_once(topic).await?;
            let wanted = apply_changes(&current, changes);
            let req = AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(str_bytes(topic))
                    .with_configs(
                        wanted
                            .iter()
                            .map(|(k, v)| {
                                alter_configs_request::AlterableConfig::default()
                                    .with_name(str_bytes(k))
                                    .with_value(Some(str_bytes(v)))
                            })
                            .collect(),
                    ),
            ]);
            let mut conn = self.controller_conn().await?;
            let version = conn.version(ApiKey::AlterConfigs)?;
            let resp = conn.send(&req, version, Duration::ZERO).await?;
            let r = resp
                .responses
                .iter()
                .find(|r| r.resource_name.as_str() == topic)
                .ok_or_else(|| Error::MissingResult {
                    api: ApiKey::AlterConfigs,
                    resource: topic.to_owned(),
                })?;
            (ApiKey::AlterConfigs, r.error_code, text(&r.error_message))
        };
        if error_code != 0 {
            return Err(Error::kafka(api, topic, error_code, message));
        }
        Ok(())
    }

    /// The cluster id, controller and brokers, from DescribeCluster.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let mut conn = self.any_conn().await?;
        let version = conn.version(ApiKey::DescribeCluster)?;
        let resp = conn
            .send(&DescribeClusterRequest::default(), version, Duration::ZERO)
            .await?;
        if resp.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::DescribeCluster,
                "",
                resp.error_code,
                text(&resp.error_message),
            ));
        }
        Ok(ClusterDescription {
            cluster_id: resp.cluster_id.as_str().to_owned(),
            controller_id: (resp.controller_id.0 >= 0).then_some(resp.controller_id.0),
            brokers: resp
                .brokers
                .iter()
                .map(|b| BrokerInfo {
                    id: b.broker_id.0,
                    host: b.host.as_str().to_owned(),
                    port: b.port,
                    rack: text(&b.rack),
                })
                .collect(),
        })
    }

    /// An unclean leader election (ElectLeaders, type 1) for `partitions` (every partition
    /// without a live leader if empty), sent to the controller. Returns (topic, partition,
    /// error code, message) per partition; code 0 means it has a leader now.
    pub async fn elect_unclean_leaders(
        &self,
        partitions: &[(String, i32)],
        timeout: Duration,
    ) -> Result<Vec<(String, i32, i16, Option<String>)>> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in partitions {
            by_topic.entry(t).or_default().push(*p);
        }
        let topics = (!partitions.is_empty()).then(|| {
            by_topic
                .iter()
                .map(|(t, ps)| {
                    kafka_protocol::messages::elect_leaders_request::TopicPartitions::default()
                        .with_topic(name(t))
                        .with_partitions(ps.clone())
                })
                .collect()
        });
        let req = kafka_protocol::messages::ElectLeadersRequest::default()
            .with_election_type(1)
            .with_topic_partitions(topics)
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32);
        let mut attempt = 0;
        loop {
            let sent = async {
                let mut conn = self.controller_conn().await?;
                let version = conn.version(ApiKey::ElectLeaders)?;
                let resp = conn.send(&req, version, timeout).await?;
                if resp.error_code != 0 {
                    return Err(Error::kafka(
                        ApiKey::ElectLeaders,
                        "",
                        resp.error_code,
                        None,
                    ));
                }
                // A refusal of the whole request comes as one result without a topic.
                if let Some(p) = resp
                    .replica_election_results
                    .iter()
                    .filter(|t| t.topic.0.is_empty())
                    .flat_map(|t| t.partition_result.iter())
                    .find(|p| p.error_code != 0)
                {
                    return Err(Error::kafka(
                        ApiKey::ElectLeaders,
                        "",
                        p.error_code,
                        text(&p.error_message),
                    ));
                }
                Ok(election_results(resp))
            };
            match sent.await {
                Err(e) if attempt < self.inner.opts.retries && e.is_retriable(false) => {
                    attempt += 1;
                    self.pause_and_refresh(attempt, &e, None).await;
                }
                other => return other,
            }
        }
    }

    /// A preferred-leader election (ElectLeaders) on every partition: each moves back to
    /// its first replica if that broker is alive and in sync. Returns (topic, partition,
    /// error code, message) per partition; code 0 means it moved, 84
    /// (ELECTION_NOT_NEEDED) that it already led.
    pub async fn elect_preferred_leaders(
        &self,
        timeout: Duration,
    ) -> Result<Vec<(String, i32, i16, Option<String>)>> {
        let req = kafka_protocol::messages::ElectLeadersRequest::default()
            .with_election_type(0)
            .with_topic_partitions(None)
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32);
        let mut conn = self.any_conn().await?;
        let version = conn.version(ApiKey::ElectLeaders)?;
        let resp = conn.send(&req, version, timeout).await?;
        if resp.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::ElectLeaders,
                "",
                resp.error_code,
                None,
            ));
        }
        Ok(election_results(resp))
    }
}

/// (topic, partition, error code, message) per partition of an ElectLeaders answer.
fn election_results(
    resp: kafka_protocol::messages::ElectLeadersResponse,
) -> Vec<(String, i32, i16, Option<String>)> {
    resp.replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result.iter().map(move |p| {
                (
                    t.topic.0.as_str().to_owned(),
                    p.partition_id,
                    p.error_code,
                    text(&p.error_message),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value: &str, source: ConfigSource) -> ConfigEntry {
        ConfigEntry {
            name: name.into(),
            value: Some(value.into()),
            source,
            read_only: false,
            sensitive: false,
        }
    }

    #[test]
    fn legacy_alter_keeps_other_overrides_and_ignores_defaults() {
        let current = [
            entry("retention.ms", "1000", ConfigSource::DynamicTopic),
            entry("cleanup.policy", "compact", ConfigSource::DynamicTopic),
            entry("segment.bytes", "1073741824", ConfigSource::Default),
        ];
        let wanted = apply_changes(
            &current,
            &[
                ConfigChange::Set("max.message.bytes".into(), "2048".into()),
                ConfigChange::Delete("cleanup.policy".into()),
                ConfigChange::Set("retention.ms".into(), "5000".into()),
            ],
        );
        let want: BTreeMap<String, String> = [
            ("max.message.bytes".to_owned(), "2048".to_owned()),
            ("retention.ms".to_owned(), "5000".to_owned()),
        ]
        .into();
        assert_eq!(wanted, want);
    }

    #[test]
    fn config_sources_have_kafkas_names() {
        assert_eq!(ConfigSource::from_wire(1).name(), "DYNAMIC_TOPIC_CONFIG");
        assert_eq!(ConfigSource::from_wire(5), ConfigSource::Default);
        assert_eq!(ConfigSource::from_wire(-1).name(), "UNKNOWN(-1)");
    }
}
