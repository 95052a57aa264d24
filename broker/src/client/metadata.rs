//! The cluster as the Metadata API describes it: brokers, the controller, and every topic's
//! partitions with their leader, replicas, ISR and offline replicas. Parsed from a
//! [`MetadataResponse`] into plain types (no codec types leak to callers), and merged into
//! the client's cache when only some topics were asked for.

use std::collections::BTreeMap;

use base64::Engine as _;
use kafka_protocol::messages::MetadataResponse;

/// One broker as the cluster advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`, ready for `TcpStream::connect`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            // An IPv6 literal.
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition of a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    /// The leader's broker id; `None` while the partition is offline.
    pub leader: Option<i32>,
    /// -1 when the broker does not report it (Metadata < v7).
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
    /// The partition-level error code (0: none), e.g. LEADER_NOT_AVAILABLE.
    pub error_code: i16,
}

/// One topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// Kafka's textual topic id (URL-safe base64 of the 16 bytes), when the broker sent one.
    pub topic_id: Option<String>,
    pub is_internal: bool,
    /// The topic-level error code (0: none), e.g. UNKNOWN_TOPIC_OR_PARTITION.
    pub error_code: i16,
    pub partitions: BTreeMap<i32, PartitionInfo>,
}

/// The cluster as one Metadata response described it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    /// `None` when the broker reports no controller (-1).
    pub controller_id: Option<i32>,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
}

impl ClusterMetadata {
    /// Converts a decoded response.
    pub fn from_response(resp: &MetadataResponse) -> ClusterMetadata {
        let brokers = resp
            .brokers
            .iter()
            .map(|b| {
                let info = BrokerInfo {
                    id: b.node_id.0,
                    host: b.host.as_str().to_owned(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.as_str().to_owned()),
                };
                (info.id, info)
            })
            .collect();
        let topics = resp
            .topics
            .iter()
            .filter_map(|t| {
                let name = t.name.as_ref()?.0.as_str().to_owned();
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let info = PartitionInfo {
                            partition: p.partition_index,
                            leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                            leader_epoch: p.leader_epoch,
                            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                            offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                            error_code: p.error_code,
                        };
                        (info.partition, info)
                    })
                    .collect();
                let topic_id = (!t.topic_id.is_nil()).then(|| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t.topic_id.as_bytes())
                });
                Some((
                    name.clone(),
                    TopicInfo {
                        name,
                        topic_id,
                        is_internal: t.is_internal,
                        error_code: t.error_code,
                        partitions,
                    },
                ))
            })
            .collect();
        ClusterMetadata {
            cluster_id: resp.cluster_id.as_ref().map(|c| c.as_str().to_owned()),
            controller_id: (resp.controller_id.0 >= 0).then_some(resp.controller_id.0),
            brokers,
            topics,
        }
    }

    /// Folds a newer, possibly partial view into this one: brokers and controller are
    /// replaced, topics in `newer` replace their old entries, other topics are kept.
    pub fn merge(&mut self, newer: ClusterMetadata) {
        self.cluster_id = newer.cluster_id.or(self.cluster_id.take());
        self.controller_id = newer.controller_id;
        self.brokers = newer.brokers;
        for (name, topic) in newer.topics {
            if topic.error_code == super::error::code::UNKNOWN_TOPIC_OR_PARTITION {
                self.topics.remove(&name);
            } else {
                self.topics.insert(name, topic);
            }
        }
    }

    /// The topic, if the cluster has it (an entry that only carries an error is not a topic).
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics
            .get(name)
            .filter(|t| t.error_code == 0 || !t.partitions.is_empty())
    }

    /// The address of broker `id`.
    pub fn broker_addr(&self, id: i32) -> Option<String> {
        self.brokers.get(&id).map(BrokerInfo::addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    /// partition, leader, replicas.
    type Partition<'a> = (i32, i32, &'a [i32]);

    fn response(topics: &[(&str, &[Partition<'_>])]) -> MetadataResponse {
        MetadataResponse::default()
            .with_cluster_id(Some(StrBytes::from_static_str("c1")))
            .with_controller_id(BrokerId(1))
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(9092),
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(2))
                    .with_host(StrBytes::from_static_str("::1"))
                    .with_port(9093)
                    .with_rack(Some(StrBytes::from_static_str("r2"))),
            ])
            .with_topics(
                topics
                    .iter()
                    .map(|(name, parts)| {
                        MetadataResponseTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string((*name).to_owned()))))
                            .with_partitions(
                                parts
                                    .iter()
                                    .map(|(p, leader, replicas)| {
                                        MetadataResponsePartition::default()
                                            .with_partition_index(*p)
                                            .with_leader_id(BrokerId(*leader))
                                            .with_replica_nodes(
                                                replicas.iter().map(|r| BrokerId(*r)).collect(),
                                            )
                                            .with_isr_nodes(
                                                replicas.iter().map(|r| BrokerId(*r)).collect(),
                                            )
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
    }

    #[test]
    fn responses_become_plain_types() {
        let m =
            ClusterMetadata::from_response(&response(&[("t", &[(0, 1, &[1, 2]), (1, -1, &[2])])]));
        assert_eq!(m.cluster_id.as_deref(), Some("c1"));
        assert_eq!(m.controller_id, Some(1));
        assert_eq!(m.broker_addr(1).as_deref(), Some("127.0.0.1:9092"));
        assert_eq!(m.broker_addr(2).as_deref(), Some("[::1]:9093"));
        assert_eq!(m.brokers[&2].rack.as_deref(), Some("r2"));
        let t = m.topic("t").unwrap();
        assert_eq!(t.partitions[&0].leader, Some(1));
        assert_eq!(t.partitions[&0].replicas, vec![1, 2]);
        assert_eq!(t.partitions[&1].leader, None);
        assert!(m.topic("other").is_none());
    }

    #[test]
    fn partial_refreshes_merge() {
        let mut m = ClusterMetadata::from_response(&response(&[
            ("a", &[(0, 1, &[1])]),
            ("b", &[(0, 1, &[1])]),
        ]));
        m.merge(ClusterMetadata::from_response(&response(&[(
            "b",
            &[(0, 2, &[2])],
        )])));
        assert_eq!(m.topics["a"].partitions[&0].leader, Some(1));
        assert_eq!(m.topics["b"].partitions[&0].leader, Some(2));
        let mut gone = ClusterMetadata::from_response(&response(&[]));
        gone.topics.insert(
            "a".into(),
            TopicInfo {
                name: "a".into(),
                topic_id: None,
                is_internal: false,
                error_code: 3,
                partitions: BTreeMap::new(),
            },
        );
        m.merge(gone);
        assert!(m.topic("a").is_none());
        assert!(m.topic("b").is_some());
    }
}
