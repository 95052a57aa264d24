//! OffsetForLeaderEpoch (KIP-101, KIP-279, KIP-320): the largest leader epoch at or below
//! the one asked for, and the offset where it ends in the leader's log. Followers use it
//! to find where their log diverged from the leader's; consumers (KIP-320) to detect that
//! they read a tail that was later truncated.

use super::Ctx;
use crate::replica::check_epoch;
use crate::security::acl::Operation;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

pub fn handle(ctx: &Ctx<'_>, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let broker = ctx.broker;
    // With an authorizer: followers need CLUSTER_ACTION, consumers DESCRIBE on the topic.
    let follower = req.replica_id.0 >= 0;
    let follower_allowed = follower && ctx.cluster_allowed(Operation::ClusterAction);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = t.topic.0.as_str().to_owned();
            let allowed = if follower {
                follower_allowed
            } else {
                ctx.topic_allowed(Operation::Describe, &topic)
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if !allowed {
                        return r.with_error_code(
                            kafka_protocol::ResponseError::TopicAuthorizationFailed.code(),
                        );
                    }
                    let outcome = broker
                        .replicas
                        .leader(&broker.cluster, &topic, p.partition)
                        .and_then(|part| {
                            check_epoch(p.current_leader_epoch, part.leader_epoch())?;
                            Ok(part.end_offset_for_epoch(p.leader_epoch))
                        });
                    match outcome {
                        Ok(Some((epoch, end))) => r.with_leader_epoch(epoch).with_end_offset(end),
                        Ok(None) => r,
                        Err(e) => r.with_error_code(e.code.code()),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
