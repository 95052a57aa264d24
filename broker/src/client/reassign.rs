//! Partition reassignments (KIP-455): AlterPartitionReassignments and
//! ListPartitionReassignments, sent to the controller as Kafka's admin client sends them,
//! and the dynamic broker configs that throttle them (IncrementalAlterConfigs).

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, IncrementalAlterConfigsRequest,
    ListPartitionReassignmentsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::error::{Error, Result};
use super::{Client, ConfigChange};

/// Kafka's resource type for brokers in the config APIs.
const RESOURCE_BROKER: i8 = 4;

/// A partition being reassigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingReassignment {
    pub topic: String,
    pub partition: i32,
    /// Every replica: the target first, then the replicas leaving.
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// What a broker answered for one partition of an AlterPartitionReassignments request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignmentOutcome {
    pub topic: String,
    pub partition: i32,
    /// 0 on success.
    pub error_code: i16,
    pub message: Option<String>,
}

fn text(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.as_str().to_owned())
}

impl Client {
    /// Starts (`Some(replicas)`) or cancels (`None`) reassignments, per partition. The
    /// replication factor may change. Returns each partition's outcome.
    pub async fn alter_partition_reassignments(
        &self,
        changes: &[(String, i32, Option<Vec<i32>>)],
        timeout: Duration,
    ) -> Result<Vec<ReassignmentOutcome>> {
        let mut by_topic: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for (topic, partition, replicas) in changes {
            by_topic.entry(topic).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(*partition)
                    .with_replicas(
                        replicas
                            .as_ref()
                            .map(|r| r.iter().map(|b| BrokerId(*b)).collect()),
                    ),
            );
        }
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_allow_replication_factor_change(true)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, partitions)| {
                        ReassignableTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_owned())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let mut conn = self.controller_conn().await?;
        let version = conn.version(ApiKey::AlterPartitionReassignments)?;
        let resp = conn.send(&req, version, timeout).await?;
        if resp.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::AlterPartitionReassignments,
                "",
                resp.error_code,
                text(&resp.error_message),
            ));
        }
        Ok(resp
            .responses
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| ReassignmentOutcome {
                    topic: t.name.0.as_str().to_owned(),
                    partition: p.partition_index,
                    error_code: p.error_code,
                    message: text(&p.error_message),
                })
            })
            .collect())
    }

    /// Every partition being reassigned.
    pub async fn list_partition_reassignments(&self) -> Result<Vec<OngoingReassignment>> {
        let mut conn = self.controller_conn().await?;
        let version = conn.version(ApiKey::ListPartitionReassignments)?;
        let req = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(None);
        let resp = conn.send(&req, version, Duration::ZERO).await?;
        if resp.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::ListPartitionReassignments,
                "",
                resp.error_code,
                text(&resp.error_message),
            ));
        }
        let ids = |l: &[BrokerId]| l.iter().map(|b| b.0).collect::<Vec<i32>>();
        let mut out: Vec<OngoingReassignment> = resp
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| OngoingReassignment {
                    topic: t.name.0.as_str().to_owned(),
                    partition: p.partition_index,
                    replicas: ids(&p.replicas),
                    adding: ids(&p.adding_replicas),
                    removing: ids(&p.removing_replicas),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// Changes the dynamic configs of broker `id` (`None`: the default for every broker)
    /// with IncrementalAlterConfigs.
    pub async fn alter_broker_configs(
        &self,
        id: Option<i32>,
        changes: &[ConfigChange],
    ) -> Result<()> {
        let name = id.map(|i| i.to_string()).unwrap_or_default();
        let configs = changes
            .iter()
            .map(|c| match c {
                ConfigChange::Set(k, v) => AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(v.clone()))),
                ConfigChange::Delete(k) => AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(1)
                    .with_value(None),
            })
            .collect();
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_BROKER)
                .with_resource_name(StrBytes::from_string(name.clone()))
                .with_configs(configs),
        ]);
        let mut conn = self.controller_conn().await?;
        let version = conn.version(ApiKey::IncrementalAlterConfigs)?;
        let resp = conn.send(&req, version, Duration::ZERO).await?;
        match resp.responses.first() {
            Some(r) if r.error_code != 0 => Err(Error::kafka(
                ApiKey::IncrementalAlterConfigs,
                format!(
                    "broker {}",
                    if name.is_empty() { "<default>" } else { &name }
                ),
                r.error_code,
                text(&r.error_message),
            )),
            Some(_) => Ok(()),
            None => Err(Error::MissingResult {
                api: ApiKey::IncrementalAlterConfigs,
                resource: name,
            }),
        }
    }
}
