//! ListPartitionReassignments (KIP-455): the partitions being reassigned, with every
//! replica and those being added and removed, from this broker's view of the topic
//! znodes. Partitions not being reassigned (or unknown) are left out, as in Kafka.

use super::Ctx;
use crate::security::acl::Operation;
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeSet;

fn ids(list: &[i32]) -> Vec<BrokerId> {
    list.iter().map(|b| BrokerId(*b)).collect()
}

pub fn handle(
    ctx: &Ctx<'_>,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !ctx.cluster_allowed(Operation::Describe) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(StrBytes::from_string(format!(
                "{} may not describe the cluster",
                ctx.principal
            ))));
    }
    // None: every partition; otherwise only those named.
    let wanted: Option<BTreeSet<(String, i32)>> = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(move |p| (t.name.0.as_str().to_owned(), *p))
            })
            .collect()
    });
    let view = ctx.broker.cluster.view();
    let mut topics = Vec::new();
    for (name, t) in &view.topics {
        if !t.reassigning() {
            continue;
        }
        let partitions: Vec<OngoingPartitionReassignment> = t
            .assignment
            .keys()
            .filter(|p| {
                wanted
                    .as_ref()
                    .is_none_or(|w| w.contains(&(name.clone(), **p)))
            })
            .map(|p| (*p, t.replicas(*p)))
            .filter(|(_, r)| r.is_reassigning())
            .map(|(p, r)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(p)
                    .with_replicas(ids(&r.all))
                    .with_adding_replicas(ids(&r.adding))
                    .with_removing_replicas(ids(&r.removing))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(name.clone())))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
