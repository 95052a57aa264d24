//! DeleteRecords: moves a partition's log start offset forward (whole segments below it
//! are deleted). Offset -1 means the high watermark. Compact-only topics refuse it with
//! POLICY_VIOLATION, as Kafka does.

use super::Ctx;
use crate::security::acl::Operation;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

pub async fn handle(ctx: &Ctx<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let broker = ctx.broker;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = t.name.0.as_str().to_owned();
            let compact_only = broker
                .topic_config(&topic)
                .get("cleanup.policy")
                .is_some_and(|p| p == "compact");
            let allowed = ctx.topic_allowed(Operation::Delete, &topic);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    if !allowed {
                        return r
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                            .with_low_watermark(-1);
                    }
                    if compact_only {
                        return r
                            .with_error_code(ResponseError::PolicyViolation.code())
                            .with_low_watermark(-1);
                    }
                    match broker
                        .replicas
                        .leader(&broker.cluster, &topic, p.partition_index)
                        .and_then(|part| part.delete_records_before(p.offset))
                    {
                        Ok(low) => r.with_low_watermark(low),
                        Err(e) => r.with_error_code(e.code.code()).with_low_watermark(-1),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
