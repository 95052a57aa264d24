//! ElectLeaders (KIP-460).
//!
//! - Preferred: the broker writes Kafka's `/admin/preferred_replica_election` request for
//!   the controller, waits (up to `timeout_ms`) until the controller has carried it out
//!   and deleted it, and reports per partition whether its preferred replica leads now.
//!   `fjord cluster rebalance-leaders` and `kafka-leader-election.sh --election-type
//!   preferred` use it.
//! - Unclean: for partitions without a live leader, the controller makes the first live
//!   replica the leader even if it was out of sync (deliberately recovering an offline
//!   partition, accepting the loss of what only the dead replicas had). Served by the
//!   controller; another broker answers NOT_CONTROLLER, and clients ask the controller.

use super::Ctx;
use crate::security::acl::Operation;
use fjord_shared::cluster::{self, ElectionPartition, PreferredReplicaElection};
use fjord_shared::coord_client::Error as CoordError;
use fjord_shared::jute::{CreateMode, ErrorCode};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::time::Duration;

fn failed(code: ResponseError, message: &str) -> ElectLeadersResponse {
    ElectLeadersResponse::default()
        .with_error_code(code.code())
        .with_replica_election_results(vec![ReplicaElectionResult::default()
            .with_topic(TopicName(StrBytes::from_static_str("")))
            .with_partition_result(vec![PartitionResult::default()
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message.to_owned())))])])
}

pub async fn handle(ctx: &Ctx<'_>, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let broker = ctx.broker;
    if !ctx.cluster_allowed(Operation::Alter) {
        return failed(
            ResponseError::ClusterAuthorizationFailed,
            "electing leaders needs ALTER on the cluster",
        );
    }
    match req.election_type {
        0 => {}
        1 => return unclean(ctx, req).await,
        other => {
            return failed(
                ResponseError::InvalidRequest,
                &format!("unknown election type {other}"),
            )
        }
    }
    let before = broker.cluster.view();
    // The partitions asked for, with whether the preferred replica led before.
    let mut wanted: BTreeMap<(String, i32), Option<bool>> = BTreeMap::new();
    match &req.topic_partitions {
        Some(list) => {
            for t in list {
                for p in &t.partitions {
                    wanted.insert((t.topic.0.as_str().to_owned(), *p), None);
                }
            }
        }
        None => {
            for (topic, t) in &before.topics {
                for p in t.assignment.keys() {
                    wanted.insert((topic.clone(), *p), None);
                }
            }
        }
    }
    for ((topic, p), led) in wanted.iter_mut() {
        let t = before.topics.get(topic);
        let preferred = t.and_then(|t| t.assignment.get(p)).and_then(|r| r.first());
        *led = preferred.map(|r| before.leader(topic, *p) == Some(*r));
    }
    let request = PreferredReplicaElection {
        version: 1,
        partitions: if req.topic_partitions.is_none() {
            Vec::new()
        } else {
            wanted
                .iter()
                .filter(|(_, led)| **led == Some(false))
                .map(|((topic, partition), _)| ElectionPartition {
                    topic: topic.clone(),
                    partition: *partition,
                })
                .collect()
        },
    };
    let needed = wanted.values().any(|led| *led == Some(false));
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1000, 60_000) as u64);
    if needed {
        let client = broker.cluster.client();
        let data = serde_json::to_vec(&request).unwrap_or_default();
        let deadline = tokio::time::Instant::now() + timeout;
        // One election at a time: wait for a pending one to finish first.
        loop {
            match client
                .create(
                    cluster::PREFERRED_REPLICA_ELECTION,
                    data.clone(),
                    &client.acl_for(cluster::PREFERRED_REPLICA_ELECTION),
                    CreateMode::Persistent,
                )
                .await
            {
                Ok(_) => break,
                Err(CoordError::Zk(ErrorCode::NodeExists))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return failed(
                        ResponseError::UnknownServerError,
                        &format!("cannot request the election: {e}"),
                    )
                }
            }
        }
        // The controller deletes the request once it has carried it out.
        while tokio::time::Instant::now() < deadline {
            match client
                .exists(cluster::PREFERRED_REPLICA_ELECTION, false)
                .await
            {
                Ok(None) => break,
                Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => {
                    return failed(
                        ResponseError::UnknownServerError,
                        &format!("cannot follow the election: {e}"),
                    )
                }
            }
        }
    }
    // Read the outcome from the coordinator itself: this broker's view may lag behind.
    let client = broker.cluster.client();
    let mut leaders: BTreeMap<(String, i32), i32> = BTreeMap::new();
    for (topic, p) in wanted.keys() {
        if let Ok((data, _)) = client
            .get_data(&cluster::partition_state_path(topic, *p), false)
            .await
        {
            if let Ok(s) = serde_json::from_slice::<cluster::PartitionState>(&data) {
                leaders.insert((topic.clone(), *p), s.leader);
            }
        }
    }
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for ((topic, p), led_before) in wanted {
        let r = PartitionResult::default().with_partition_id(p);
        // Assignments do not change in an election: the view from before names the
        // preferred replicas.
        let preferred = before
            .topics
            .get(&topic)
            .and_then(|t| t.assignment.get(&p))
            .and_then(|r| r.first().copied());
        let (code, message) = match (led_before, preferred) {
            (None, _) | (_, None) => (
                ResponseError::UnknownTopicOrPartition,
                format!("no partition {topic}-{p}"),
            ),
            (Some(true), _) => (
                ResponseError::ElectionNotNeeded,
                "the preferred replica already leads".to_owned(),
            ),
            (Some(false), Some(pr)) if leaders.get(&(topic.clone(), p)) == Some(&pr) => {
                by_topic.entry(topic).or_default().push(r);
                continue;
            }
            (Some(false), Some(pr)) => (
                ResponseError::PreferredLeaderNotAvailable,
                format!("broker {pr} is not alive and in sync"),
            ),
        };
        by_topic.entry(topic).or_default().push(
            r.with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        );
    }
    answer(by_topic)
}

/// An unclean election (see the module docs).
async fn unclean(ctx: &Ctx<'_>, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let view = ctx.broker.cluster.view();
    let which: Vec<(String, i32)> = match &req.topic_partitions {
        Some(list) => list
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.topic.0.as_str().to_owned(), *p))
            })
            .collect(),
        // Every partition without a live leader.
        None => view
            .topics
            .iter()
            .flat_map(|(topic, t)| t.assignment.keys().map(move |p| (topic.clone(), *p)))
            .filter(|(topic, p)| {
                view.leader(topic, *p)
                    .is_none_or(|l| !view.brokers.contains_key(&l))
            })
            .collect(),
    };
    let elected = match ctx.broker.cluster.elect_unclean(&which).await {
        None => {
            return failed(
                ResponseError::NotController,
                "unclean elections are carried out by the controller",
            )
        }
        Some(Err(e)) => {
            return failed(
                ResponseError::UnknownServerError,
                &format!("coordinator: {e}"),
            )
        }
        Some(Ok(elected)) => elected,
    };
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for ((topic, p), outcome) in elected {
        let r = PartitionResult::default().with_partition_id(p);
        let r = match outcome {
            Ok(_) => r,
            Err(code) => {
                let message = match code {
                    ResponseError::ElectionNotNeeded => {
                        "the partition has a live leader".to_owned()
                    }
                    ResponseError::EligibleLeadersNotAvailable => "no replica is alive".to_owned(),
                    ResponseError::UnknownTopicOrPartition => format!("no partition {topic}-{p}"),
                    _ => "the partition changed meanwhile; try again".to_owned(),
                };
                r.with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
        };
        by_topic.entry(topic).or_default().push(r);
    }
    answer(by_topic)
}

fn answer(by_topic: BTreeMap<String, Vec<PartitionResult>>) -> ElectLeadersResponse {
    ElectLeadersResponse::default().with_replica_election_results(
        by_topic
            .into_iter()
            .map(|(t, parts)| {
                ReplicaElectionResult::default()
                    .with_topic(TopicName(StrBytes::from_string(t)))
                    .with_partition_result(parts)
            })
            .collect(),
    )
}
