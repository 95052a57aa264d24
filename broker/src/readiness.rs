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
//! - this broker's view has a live leader for each of the partitions waited for (all of a
//!   new topic's, or only those CreatePartitions added: an old partition that is offline
//!   must not make the new ones look late),
//! - every other live broker answers Metadata for the topic with a leader for each of them,
//!   and
//! - every leader answers ListOffsets (latest) for the ones it leads, which it does only
//!   once it has taken the leader role in the current leader epoch.
//!
//! This broker checks itself without the network. Other brokers are asked over the Kafka
//! protocol, with the same client code the follower fetchers use.

use crate::broker::Broker;
use crate::client::{ClientOptions, Connection};
use crate::cluster::ClusterView;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, BrokerId, ListOffsetsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::time::Duration;
use tokio::time::Instant;

/// How long to wait between two rounds of checks.
const RECHECK: Duration = Duration::from_millis(50);

/// Topics, each with the partitions to wait for.
pub type Wanted = [(String, Range<i32>)];

/// The partitions one broker leads among those waited for, with their leader epochs.
type Led = BTreeMap<String, Vec<(i32, i32)>>;

/// What CreateTopics and CreatePartitions wait for, given the request's `timeout_ms`: the
/// topics whose partitions were not ready on every broker in time. A timeout of 0 or less
/// asks for no wait at all (Kafka answers at once then); waits are capped at a minute.
pub async fn wait_for_request(
    broker: &Broker,
    topics: &Wanted,
    timeout_ms: i32,
) -> BTreeSet<String> {
    if topics.is_empty() || timeout_ms <= 0 {
        return BTreeSet::new();
    }
    let timeout = Duration::from_millis(timeout_ms.min(60_000) as u64);
    wait_everywhere(broker, topics, timeout).await
}

/// Waits until the partitions in `topics` are ready on every live broker (see the module
/// docs), at most `timeout`. Returns the topics that were not.
async fn wait_everywhere(broker: &Broker, topics: &Wanted, timeout: Duration) -> BTreeSet<String> {
    let deadline = Instant::now() + timeout;
    let mut opts = broker
        .inter_broker
        .options(format!("fjord-broker-{}", broker.id));
    opts.connect_timeout = Duration::from_secs(2);
    opts.request_timeout = Duration::from_secs(5);
    let mut conns: HashMap<i32, Connection> = HashMap::new();
    loop {
        let view = broker.cluster.view();
        // Not led in this broker's own view yet: nobody can serve them.
        let mut pending = not_in_view(&view, topics);
        let asked: Vec<(String, Range<i32>)> = topics
            .iter()
            .filter(|(t, _)| !pending.contains(t))
            .cloned()
            .collect();
        for (&id, reg) in view.brokers.iter().filter(|_| !asked.is_empty()) {
            let led = led_by(&view, &asked, id);
            let missing = if id == broker.id {
                not_led_here(broker, &led)
            } else {
                let Some(addr) = broker.inter_broker.address(reg) else {
                    continue;
                };
                let checked = tokio::time::timeout_at(
                    deadline,
                    check_remote(&mut conns, id, &addr, &opts, &asked, &led),
                )
                .await;
                match checked {
                    Ok(Some(m)) => m,
                    // Unreachable or too slow: every topic still waits for it.
                    Ok(None) | Err(_) => {
                        conns.remove(&id);
                        asked.iter().map(|(t, _)| t.clone()).collect()
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

/// The topics with a partition waited for that has no live leader in `view`.
fn not_in_view(view: &ClusterView, topics: &Wanted) -> BTreeSet<String> {
    topics
        .iter()
        .filter(|(name, parts)| !view.partitions_led(name, parts.clone()))
        .map(|(t, _)| t.clone())
        .collect()
}

/// The partitions waited for (with leader epochs) that `id` leads in `view`.
fn led_by(view: &ClusterView, topics: &Wanted, id: i32) -> Led {
    let mut led = Led::new();
    for (name, parts) in topics {
        let Some(t) = view.topics.get(name) else {
            continue;
        };
        for p in parts.clone() {
            if let Some((state, _)) = t.states.get(&p).filter(|(s, _)| s.leader == id) {
                led.entry(name.clone())
                    .or_default()
                    .push((p, state.leader_epoch));
            }
        }
    }
    led
}

/// The topics with a partition this broker should lead but does not lead yet (its view
/// task has not applied the new state: it will shortly).
fn not_led_here(broker: &Broker, led: &Led) -> BTreeSet<String> {
    led.iter()
        .filter(|(topic, parts)| {
            parts.iter().any(|(p, epoch)| {
                broker
                    .replicas
                    .hosted(topic, *p)
                    .is_none_or(|part| !part.is_leader() || part.leader_epoch() < *epoch)
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
    topics: &Wanted,
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
    for (name, parts) in topics {
        let served = resp.topics.iter().any(|t| {
            t.name.as_ref().is_some_and(|n| n.0.as_str() == name)
                && t.error_code == 0
                && parts.clone().all(|p| {
                    t.partitions
                        .iter()
                        .any(|x| x.partition_index == p && x.error_code == 0 && x.leader_id.0 >= 0)
                })
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
