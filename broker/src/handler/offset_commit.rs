//! OffsetCommit: a group's consumed positions, written to `__consumer_offsets` and kept by
//! the group's coordinator. Members of an active generation are checked against it;
//! generation -1 with no member id is a "simple" commit, allowed while the group is empty.

use super::Ctx;
use crate::group::CommittedOffset;
use crate::log::TopicPartition;
use crate::security::acl::Operation;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

pub async fn handle(ctx: &Ctx<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let broker = ctx.broker;
    let now = crate::replica::now_ms();
    let view = broker.cluster.view();
    let mut offsets = Vec::new();
    let mut unknown: Vec<(usize, i32)> = Vec::new();
    let max_metadata = 4096;
    let mut too_large: Vec<(usize, i32)> = Vec::new();
    // With an authorizer: READ on the group, and READ on each topic.
    let group_ok = ctx.group_allowed(Operation::Read, req.group_id.as_str());
    let mut denied: Vec<usize> = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        if !group_ok {
            continue;
        }
        if !ctx.topic_allowed(Operation::Read, t.name.as_str()) {
            denied.push(ti);
            continue;
        }
        for p in &t.partitions {
            let exists = view
                .topics
                .get(t.name.as_str())
                .is_some_and(|x| x.assignment.contains_key(&p.partition_index));
            if !exists {
                unknown.push((ti, p.partition_index));
                continue;
            }
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            if metadata.len() > max_metadata {
                too_large.push((ti, p.partition_index));
                continue;
            }
            offsets.push((
                TopicPartition::new(t.name.as_str(), p.partition_index),
                CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: (ctx.version >= 6 && p.committed_leader_epoch >= 0)
                        .then_some(p.committed_leader_epoch),
                    metadata,
                    commit_timestamp_ms: now,
                    expire_timestamp_ms: (ctx.version >= 2 && req.retention_time_ms > 0)
                        .then(|| now + req.retention_time_ms),
                },
            ));
        }
    }
    let outcome = if !group_ok {
        Err(ResponseError::GroupAuthorizationFailed)
    } else if offsets.is_empty() {
        Ok(())
    } else {
        broker
            .groups
            .commit(
                broker,
                req.group_id.as_str(),
                req.member_id.as_str(),
                req.generation_id_or_member_epoch,
                req.group_instance_id.as_ref().map(|s| s.as_str()),
                offsets,
            )
            .await
    };
    let topics = req
        .topics
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if denied.contains(&ti) {
                        ResponseError::TopicAuthorizationFailed.code()
                    } else if unknown.contains(&(ti, p.partition_index)) {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else if too_large.contains(&(ti, p.partition_index)) {
                        ResponseError::OffsetMetadataTooLarge.code()
                    } else {
                        outcome.as_ref().err().map_or(0, |e| e.code())
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
