//! Metadata: brokers, controller, cluster id, and topics with leaders, replicas, ISR and
//! (v10+) topic ids; v12 may ask for a topic by id.
//! Unknown topics are created on the fly when the client allows it and the broker is
//! configured to (`--auto-create-topics`), as most librdkafka-based tools expect. A topic
//! that does not exist and whose name is not legal gets INVALID_TOPIC_EXCEPTION, as in
//! Kafka, so clients fail its messages at once.
//!
//! With an authorizer, only topics the caller may DESCRIBE are listed; one asked for by
//! name that it may not describe (or auto-create without CREATE) is answered
//! TOPIC_AUTHORIZATION_FAILED.

use super::Ctx;
use crate::cluster::ClusterView;
use crate::security::acl::Operation;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::time::Duration;

fn topic_entry(view: &ClusterView, name: &str, version: i16) -> MetadataResponseTopic {
    let topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
        .with_is_internal(version >= 1 && name == crate::group::coordinator::OFFSETS_TOPIC);
    let Some(t) = view.topics.get(name) else {
        // A name no topic can have is an error of the request, not a topic that may still
        // appear: clients fail the messages at once instead of retrying until they time out.
        let error = if fjord_shared::cluster::valid_topic_name(name) {
            ResponseError::UnknownTopicOrPartition
        } else {
            ResponseError::InvalidTopicException
        };
        return topic.with_error_code(error.code());
    };
    let topic = if version >= 10 {
        topic.with_topic_id(t.uuid())
    } else {
        topic
    };
    let mut partitions = Vec::new();
    let mut any_missing = false;
    for (p, replicas) in &t.assignment {
        let mut part = MetadataResponsePartition::default()
            .with_partition_index(*p)
            .with_replica_nodes(replicas.iter().map(|r| BrokerId(*r)).collect());
        if version >= 5 {
            part = part.with_offline_replicas(
                replicas
                    .iter()
                    .filter(|r| !view.brokers.contains_key(r))
                    .map(|r| BrokerId(*r))
                    .collect(),
            );
        }
        match t.states.get(p) {
            Some((s, _)) if s.leader >= 0 && view.brokers.contains_key(&s.leader) => {
                part = part
                    .with_leader_id(BrokerId(s.leader))
                    .with_isr_nodes(s.isr.iter().map(|r| BrokerId(*r)).collect());
                if version >= 7 {
                    part = part.with_leader_epoch(s.leader_epoch);
                }
            }
            state => {
                any_missing = true;
                part = part
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_isr_nodes(
                        state
                            .map(|(s, _)| s.isr.iter().map(|r| BrokerId(*r)).collect())
                            .unwrap_or_default(),
                    );
                if version >= 7 {
                    part = part.with_leader_epoch(state.map_or(-1, |(s, _)| s.leader_epoch));
                }
            }
        }
        partitions.push(part);
    }
    let topic = topic.with_partitions(partitions);
    if t.assignment.is_empty() || (any_missing && t.states.is_empty()) {
        return topic.with_error_code(ResponseError::LeaderNotAvailable.code());
    }
    topic
}

/// The longest a Metadata answer waits for the controller to replace dead leaders.
const ELECTION_WAIT: Duration = Duration::from_millis(500);

/// Whether a partition of `topic` is led by a broker that is gone while another in-sync
/// replica is alive, with a controller in place to elect it: a new leader is imminent.
fn awaiting_election(view: &ClusterView, topic: &str) -> bool {
    if view.controller.is_none() {
        return false;
    }
    view.topics.get(topic).is_some_and(|t| {
        t.states.values().any(|(s, _)| {
            s.leader >= 0
                && !view.brokers.contains_key(&s.leader)
                && s.isr
                    .iter()
                    .any(|r| *r != s.leader && view.brokers.contains_key(r))
        })
    })
}

pub async fn handle(ctx: &Ctx<'_>, req: MetadataRequest) -> MetadataResponse {
    let broker = ctx.broker;
    let version = ctx.version;
    let mut view = broker.cluster.view();
    // v0 asks for every topic with an empty list; later versions with null. v12 may name
    // a topic by its id instead (KIP-516); an id no topic has is answered UNKNOWN_TOPIC_ID.
    let mut unknown_ids = Vec::new();
    let requested: Option<Vec<String>> =
        req.topics
            .filter(|ts| version > 0 || !ts.is_empty())
            .map(|ts| {
                ts.into_iter()
                    .filter_map(|t| match t.name {
                        Some(n) if version < 12 || t.topic_id.is_nil() || !n.0.is_empty() => {
                            Some(n.0.as_str().to_owned())
                        }
                        _ => {
                            let name = view.topic_name(t.topic_id).map(str::to_owned);
                            if name.is_none() && !t.topic_id.is_nil() {
                                unknown_ids.push(t.topic_id);
                            }
                            name
                        }
                    })
                    .collect()
            });
    // With an authorizer, a topic the caller may not describe is answered
    // TOPIC_AUTHORIZATION_FAILED (when asked for by name) or left out (when all are asked
    // for); auto-creating one needs CREATE too.
    let mut unauthorized: Vec<String> = Vec::new();
    let requested = requested.map(|names| {
        let (ok, refused): (Vec<String>, Vec<String>) = names
            .into_iter()
            .partition(|n| ctx.topic_allowed(Operation::Describe, n));
        unauthorized = refused;
        ok
    });
    // Auto-create what is missing, then wait briefly for leaders so the first answer is
    // useful (clients retry on LEADER_NOT_AVAILABLE anyway).
    let mut requested = requested;
    if let Some(names) = &mut requested {
        let allow = version < 4 || req.allow_auto_topic_creation;
        let mut missing: Vec<String> = names
            .iter()
            .filter(|n| !view.topics.contains_key(*n) && fjord_shared::cluster::valid_topic_name(n))
            .cloned()
            .collect();
        if allow && broker.config.auto_create_topics {
            let (creatable, refused): (Vec<String>, Vec<String>) =
                missing.into_iter().partition(|n| ctx.may_create_topic(n));
            names.retain(|n| !refused.contains(n));
            unauthorized.extend(refused);
            missing = creatable;
        }
        if allow && broker.config.auto_create_topics && !missing.is_empty() {
            let mut created = Vec::new();
            for name in &missing {
                if broker.auto_create(name).await {
                    created.push((name.clone(), 0));
                }
            }
            if !created.is_empty() {
                crate::cluster::admin::wait_ready(
                    &broker.cluster,
                    &created,
                    Duration::from_secs(3),
                )
                .await;
                view = broker.cluster.view();
            }
        }
    }
    let names: Vec<String> = requested.unwrap_or_else(|| {
        view.topics
            .keys()
            .filter(|n| ctx.topic_allowed(Operation::Describe, n))
            .cloned()
            .collect()
    });
    // A broker that just died has left the broker list, but the controller's new leaders
    // for its partitions may reach this broker a few milliseconds later. Answering in
    // between would tell clients those partitions have no leader, and librdkafka then
    // waits for its next metadata refresh (a second) before it produces again. Wait
    // briefly for the election instead, as Kafka's brokers never show that gap.
    if names.iter().any(|n| awaiting_election(&view, n)) {
        let mut rx = broker.cluster.subscribe();
        let _ = tokio::time::timeout(ELECTION_WAIT, async {
            loop {
                if !names
                    .iter()
                    .any(|n| awaiting_election(&rx.borrow_and_update(), n))
                {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        view = broker.cluster.view();
    }
    let mut resp = MetadataResponse::default()
        .with_brokers(
            view.listed_brokers(std::time::Instant::now())
                .into_iter()
                // Each broker's endpoint on the listener this client came in on (Kafka
                // leaves out brokers without that listener).
                .filter_map(|(id, b)| Some((id, b, b.endpoint(ctx.listener)?)))
                .map(|(id, b, endpoint)| {
                    let mut e = MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(StrBytes::from_string(endpoint.host))
                        .with_port(i32::from(endpoint.port));
                    if version >= 1 {
                        e = e.with_rack(b.rack.clone().map(StrBytes::from_string));
                    }
                    e
                })
                .collect(),
        )
        .with_topics(
            names
                .iter()
                .map(|n| topic_entry(&view, n, version))
                .chain(unauthorized.iter().map(|n| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                }))
                .chain(unknown_ids.into_iter().map(|id| {
                    MetadataResponseTopic::default()
                        .with_name(None)
                        .with_topic_id(id)
                        .with_error_code(ResponseError::UnknownTopicId.code())
                }))
                .collect(),
        );
    if version >= 1 {
        resp = resp.with_controller_id(BrokerId(view.controller.unwrap_or(-1)));
    }
    if version >= 2 {
        resp = resp.with_cluster_id(Some(StrBytes::from_string(view.cluster_id.clone())));
    }
    resp
}
