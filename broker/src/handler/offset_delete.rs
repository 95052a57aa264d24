//! OffsetDelete (kafka-consumer-groups --delete-offsets, Admin.deleteConsumerGroupOffsets):
//! removes a group's committed offsets for topics it no longer consumes. Partitions of a
//! topic the group's members subscribe to are refused with GROUP_SUBSCRIBED_TO_TOPIC,
//! partitions of unknown topics with UNKNOWN_TOPIC_OR_PARTITION, as Kafka does.

use super::Ctx;
use crate::log::TopicPartition;
use crate::security::acl::Operation;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;
use std::collections::HashMap;

pub async fn handle(ctx: &Ctx<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let broker = ctx.broker;
    // With an authorizer: DELETE on the group, READ on each topic.
    if !ctx.group_allowed(Operation::Delete, req.group_id.as_str()) {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let view = broker.cluster.view();
    let mut known = Vec::new();
    let mut denied = Vec::new();
    for t in &req.topics {
        if !ctx.topic_allowed(Operation::Read, t.name.as_str()) {
            denied.push(t.name.as_str().to_owned());
        } else if view.topics.contains_key(t.name.as_str()) {
            for p in &t.partitions {
                known.push(TopicPartition {
                    topic: t.name.as_str().to_owned(),
                    partition: p.partition_index,
                });
            }
        }
    }
    let outcome = broker
        .groups
        .delete_offsets(broker, req.group_id.as_str(), known)
        .await;
    let errors: HashMap<(String, i32), i16> = match outcome {
        Ok(results) => results
            .into_iter()
            .map(|(tp, e)| ((tp.topic, tp.partition), e.map_or(0, |e| e.code())))
            .collect(),
        Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
    };
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if denied.iter().any(|d| d == t.name.as_str()) {
                        ResponseError::TopicAuthorizationFailed.code()
                    } else {
                        errors
                            .get(&(t.name.as_str().to_owned(), p.partition_index))
                            .copied()
                            .unwrap_or(ResponseError::UnknownTopicOrPartition.code())
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
