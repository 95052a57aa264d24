//! Whether new partitions are usable from every broker: what CreateTopics and
//! CreatePartitions wait for before they answer.
//!
//! Kafka's clients take a CreateTopics answer to mean that every live broker knows the new
//! partitions and that each partition's leader accepts writes: an admin client creates a
//! topic through the controller, then fetches metadata from, and produces through, any
//! other broker at once. Our brokers learn a topic from their own coordinator watches, a few
//! milliseconds apart, and a leader takes its role only after it has opened the log. So a
//! topic counts as ready only when
//!
//! - this broker's view has leaders for all its partitions,
//! - every other live broker answers Metadata for it with a leader for every partition, and
//! - every leader answers ListOffsets (latest) for the partitions it leads, which it does
//!   only once it has taken the leader role in the current leader epoch.
//!
//! This broker checks itself without the network. Other brokers are asked over the Kafka
//! protocol, with the same client code the follower fetchers use.

use crate::broker::Broker;
use crate::client::{ClientOptions, Connection};
use crate::cluster::{admin, ClusterView};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, BrokerId, ListOffsetsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// How long to wait between two rounds of checks.
const RECHECK: Duration = Duration::from_millis(20);

/// The partitions one broker leads among the topics being waited for, with their epochs.
type Led = BTreeMap<String, Vec<(i32, i32)>>;

/// What CreateTopics and CreatePartitions wait for, given the request's `timeout_ms`: the
/// topics not ready on every broker in time. A timeout of 0 or less asks for no wait at
/// all (Kafka answers at once then); waits are capped at a minute.
pub async fn wait_for_request(
    broker: &Broker,
    topics: &[(String, usize)],
    timeout_ms: i32,
) -> BTreeSet<String> {
    if topics.is_empty() || timeout_ms <= 0 {
        return BTreeSet::new();
    }
    let timeout = Duration::from_millis(timeout_ms.min(60_000) as u64);
    wait_everywhere(broker, topics, timeout).await
}

/// Waits until every topic in `topics` (name, partition count) is ready on every live
/// broker (see the module docs), at most `timeout`. Returns the topics that were not.
pub async fn wait_everywhere(
    broker: &Broker,
    topics: &[(String, usize)],
    timeout: Duration,
) -> BTreeSet<String> {
    let deadline = Instant::now() + timeout;
    let all: BTreeSet<String> = topics.iter().map(|(t, _)| t.clone()).collect();
    let mut opts = ClientOptions::new("");
    opts.client_id = format!("fjord-broker-{}", broker.id);
    opts.connect_timeout = Duration::from_secs(2);
    opts.request_timeout = Duration::from_secs(5);
    let mut conns: HashMap<i32, Connection> = HashMap::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if !admin::wait_ready(&broker.cluster, topics, left).await {
            return all;
        }
        let view = broker.cluster.view();
        let mut pending = BTreeSet::new();
        for (&id, reg) in &view.brokers {
            let led = led_by(&view, topics, id);
            let missing = if id == broker.id {
                not_led_here(broker, &led)
            } else {
                let addr = format!("{}:{}", reg.host, reg.port);
                let checked = tokio::time::timeout_at(
                    deadline,
                    check_remote(&mut conns, id, &addr, &opts, topics, &led),
                )
                .await;
                match checked {
                    Ok(Some(m)) => m,
                    // Unreachable or too slow: every topic still waits for it.
                    Ok(None) | Err(_) => {
                        conns.remove(&id);
                        all.clone()
                    }
                }
            };
            pending.extend(missing);
        }
        if pending.is_empty() {
            return pending;
        }
        if Instant::now() + RECHECK >= deadline {
            tracing::info!(topics = ?pending, "new partitions are not ready on every broker yet");
            return pending;
        }
        tokio::time::sleep(RECHECK).await;
    }
}

/// The partitions (with leader epochs) of `topics` that `id` leads in `view`.
fn led_by(view: &ClusterView, topics: &[(String, usize)], id: i32) -> Led {
    let mut led = Led::new();
    for (name, _) in topics {
        let Some(t) = view.topics.get(name) else {
            continue;
        };
        for (p, (state, _)) in &t.states {
            if state.leader == id {
                led.entry(name.clone())
                    .or_default()
                    .push((*p, state.leader_epoch));
            }
        }
    }
    led
}

/// The topics with a partition this broker should lead but does not lead yet.
fn not_led_here(broker: &Broker, led: &Led) -> BTreeSet<String> {
    led.iter()
        .filter(|(topic, parts)| {
            parts.iter().any(|(p, epoch)| {
                broker
                    .replicas
                    .leader(&broker.cluster, topic, *p)
                    .map_or(true, |part| part.leader_epoch() < *epoch)
            })
        })
        .map(|(t, _)| t.clone())
        .collect()
}

/// Asks broker `id` about `topics`: the topics it does not serve yet, or `None` if it
/// could not be asked.
async fn check_remote(
    conns: &mut HashMap<i32, Connection>,
    id: i32,
    addr: &str,
    opts: &ClientOptions,
    topics: &[(String, usize)],
    led: &Led,
) -> Option<BTreeSet<String>> {
    if conns
        .get(&id)
        .is_none_or(|c| c.is_broken() || c.addr() != addr)
    {
        match Connection::connect(addr, opts).await {
            Ok(c) => {
                conns.insert(id, c);
            }
            Err(e) => {
                tracing::debug!(broker_id = id, %addr, error = %e, "cannot ask a broker about new partitions");
                return None;
            }
        }
    }
    let conn = conns.get_mut(&id)?;
    let mut missing = BTreeSet::new();
    let version = conn.version(ApiKey::Metadata).ok()?;
    let req = MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|(t, _)| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                })
                .collect(),
        ))
        .with_allow_auto_topic_creation(false);
    let resp = conn.send(&req, version, Duration::ZERO).await.ok()?;
    for (name, count) in topics {
        let served = resp.topics.iter().any(|t| {
            t.name.as_ref().is_some_and(|n| n.0.as_str() == name)
                && t.error_code == 0
                && t.partitions.len() >= *count
                && t.partitions
                    .iter()
                    .all(|p| p.error_code == 0 && p.leader_id.0 >= 0)
        });
        if !served {
            missing.insert(name.clone());
        }
    }
    if led.is_empty() {
        return Some(missing);
    }
    let version = conn.version(ApiKey::ListOffsets).ok()?;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            led.iter()
                .map(|(t, parts)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.clone())))
                        .with_partitions(
                            parts
                                .iter()
                                .map(|(p, epoch)| {
                                    let part = ListOffsetsPartition::default()
                                        .with_partition_index(*p)
                                        .with_timestamp(-1);
                                    if version >= 4 {
                                        part.with_current_leader_epoch(*epoch)
                                    } else {
                                        part
                                    }
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let resp = conn.send(&req, version, Duration::ZERO).await.ok()?;
    for (name, parts) in led {
        let answered = resp
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == name)
            .is_some_and(|t| {
                parts.iter().all(|(p, _)| {
                    t.partitions
                        .iter()
                        .any(|r| r.partition_index == *p && r.error_code == 0)
                })
            });
        if !answered {
            missing.insert(name.clone());
        }
    }
    Some(missing)
}
