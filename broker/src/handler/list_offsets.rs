//! ListOffsets: earliest (-2), latest (-1), max-timestamp (-3, v7+), earliest-local (-4,
//! v8+: the same as earliest, as every segment is local) or the first offset whose batch
//! has a timestamp at or after a given time (kcat `-o s@ts`, offsetsForTimes).
//! "Latest" is the high watermark: consumers see nothing above it. With an authorizer,
//! each topic needs DESCRIBE.

use super::Ctx;
use crate::security::acl::Operation;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

pub async fn handle(ctx: &Ctx<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let broker = ctx.broker;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = t.name.0.as_str().to_owned();
            let allowed = ctx.topic_allowed(Operation::Describe, &topic);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let outcome = if allowed {
                        Ok(())
                    } else {
                        Err(crate::replica::PartitionError::new(
                            kafka_protocol::ResponseError::TopicAuthorizationFailed,
                            "not authorized",
                        ))
                    }
                    .and_then(|()| {
                        broker
                            .replicas
                            .leader(&broker.cluster, &topic, p.partition_index)
                    })
                    .and_then(|part| {
                        crate::replica::check_epoch(p.current_leader_epoch, part.leader_epoch())?;
                        part.offset_for(p.timestamp, ctx.version >= 2)
                    });
                    match outcome {
                        Ok((offset, timestamp, epoch)) => {
                            let mut r = r.with_offset(offset).with_timestamp(timestamp);
                            if ctx.version >= 4 {
                                r = r.with_leader_epoch(epoch);
                            }
                            r
                        }
                        Err(e) => r
                            .with_error_code(e.code.code())
                            .with_offset(-1)
                            .with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
