//! Consumer group lag for the groups this broker coordinates, as kafka_exporter computes
//! it: a partition's latest offset (its high watermark) minus the group's committed offset.
//!
//! High watermarks of partitions this broker leads are read in place; the others are
//! asked of their leaders with one ListOffsets per leader, bounded in time, so a scrape
//! never waits long on a broker that is down (its partitions then show no lag sample).

use crate::broker::Broker;
use crate::client::Connection;
use crate::group::coordinator::GroupOffsets;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// How long a scrape waits for other brokers' offsets.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// (topic, partition) → latest offset.
pub type EndOffsets = HashMap<(String, i32), i64>;

/// The committed offsets of the groups this broker coordinates, and the latest offsets
/// of their partitions.
#[derive(Debug, Default)]
pub struct GroupLag {
    pub groups: Vec<GroupOffsets>,
    pub ends: EndOffsets,
}

impl GroupLag {
    /// Reads the groups and finds their partitions' latest offsets.
    pub async fn gather(broker: &Broker) -> GroupLag {
        let groups = broker.groups.committed().await;
        let wanted: BTreeSet<(String, i32)> = groups
            .iter()
            .flat_map(|g| g.offsets.iter())
            .map(|(tp, _)| (tp.topic.clone(), tp.partition))
            .collect();
        let mut ends = EndOffsets::new();
        let view = broker.cluster.view();
        let mut remote: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        for (topic, partition) in wanted {
            match broker.replicas.hosted(&topic, partition) {
                Some(p) if p.is_leader() => {
                    ends.insert((topic, partition), p.high_watermark());
                }
                _ => {
                    if let Some(leader) = view.leader(&topic, partition) {
                        remote.entry(leader).or_default().push((topic, partition));
                    }
                }
            }
        }
        for (leader, parts) in remote {
            let Some(addr) = view
                .brokers
                .get(&leader)
                .and_then(|r| r.endpoint(&broker.inter_broker.listener))
                .map(|e| e.address())
            else {
                continue;
            };
            let asked = tokio::time::timeout(ASK_TIMEOUT, ask(broker, &addr, &parts)).await;
            match asked {
                Ok(Some(found)) => ends.extend(found),
                _ => tracing::debug!(
                    broker_id = leader,
                    "no latest offsets from a leader for the lag metrics"
                ),
            }
        }
        GroupLag { groups, ends }
    }

    /// (group, topic, partition, committed, lag) for every committed offset whose
    /// partition's latest offset is known. Lag is never negative.
    pub fn rows(&self) -> Vec<(&str, &str, i32, i64, i64)> {
        let mut rows = Vec::new();
        for g in &self.groups {
            for (tp, committed) in &g.offsets {
                if *committed < 0 {
                    continue;
                }
                let Some(end) = self.ends.get(&(tp.topic.clone(), tp.partition)) else {
                    continue;
                };
                rows.push((
                    g.group.as_str(),
                    tp.topic.as_str(),
                    tp.partition,
                    *committed,
                    (end - committed).max(0),
                ));
            }
        }
        rows.sort();
        rows
    }
}

/// One ListOffsets (latest) to the leader at `addr`.
async fn ask(broker: &Broker, addr: &str, parts: &[(String, i32)]) -> Option<EndOffsets> {
    let mut opts = broker
        .inter_broker
        .options(format!("fjord-broker-{}-metrics", broker.id));
    opts.connect_timeout = ASK_TIMEOUT;
    opts.request_timeout = ASK_TIMEOUT;
    let mut conn = Connection::connect(addr, &opts).await.ok()?;
    let version = conn.version(ApiKey::ListOffsets).ok()?;
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in parts {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            by_topic
                .iter()
                .map(|(t, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string((*t).to_owned())))
                        .with_partitions(
                            ps.iter()
                                .map(|p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(*p)
                                        .with_timestamp(-1)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let resp = conn.send(&req, version, Duration::ZERO).await.ok()?;
    let mut out = EndOffsets::new();
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code == 0 && p.offset >= 0 {
                out.insert((t.name.0.as_str().to_owned(), p.partition_index), p.offset);
            }
        }
    }
    Some(out)
}
