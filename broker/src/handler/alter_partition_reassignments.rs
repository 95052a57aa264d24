//! AlterPartitionReassignments (KIP-455): starts, changes or cancels partition
//! reassignments. Any broker writes them to the topic znodes (see
//! [`crate::cluster::reassignment`]); the controller carries them out. The answer comes
//! once the reassignment is recorded, not once it is complete: ListPartitionReassignments
//! shows progress, as in Kafka.

use super::Ctx;
use crate::cluster::reassignment;
use crate::security::acl::Operation;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

fn partition(
    p: i32,
    code: ResponseError,
    message: Option<String>,
) -> ReassignablePartitionResponse {
    ReassignablePartitionResponse::default()
        .with_partition_index(p)
        .with_error_code(if message.is_some() { code.code() } else { 0 })
        .with_error_message(message.map(StrBytes::from_string))
}

pub async fn handle(
    ctx: &Ctx<'_>,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let allow_rf_change = ctx.version < 1 || req.allow_replication_factor_change;
    let response = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change);
    if !ctx.cluster_allowed(Operation::Alter) {
        let message = format!("{} may not reassign partitions", ctx.principal);
        let code = ResponseError::ClusterAuthorizationFailed;
        let responses = req
            .topics
            .iter()
            .map(|t| {
                ReassignableTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| partition(p.partition_index, code, Some(message.clone())))
                            .collect(),
                    )
            })
            .collect();
        return response
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message)))
            .with_responses(responses);
    }
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let topic = t.name.0.as_str();
        let changes: Vec<(i32, Option<Vec<i32>>)> = t
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
                )
            })
            .collect();
        let outcomes =
            reassignment::alter(&ctx.broker.cluster, topic, &changes, allow_rf_change).await;
        let partitions = match outcomes {
            Ok(outcomes) => outcomes
                .into_iter()
                .map(|(p, outcome)| match outcome {
                    Ok(()) => {
                        tracing::info!(topic, partition = p, target = ?changes.iter().find(|c| c.0 == p).and_then(|c| c.1.clone()), "partition reassignment recorded");
                        partition(p, ResponseError::UnknownServerError, None)
                    }
                    Err((code, message)) => partition(p, code, Some(message)),
                })
                .collect(),
            Err(e) => changes
                .iter()
                .map(|(p, _)| partition(*p, e.code, Some(e.message.clone())))
                .collect(),
        };
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    response.with_responses(responses)
}
