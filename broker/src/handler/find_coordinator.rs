//! FindCoordinator: which broker coordinates a consumer group.
//!
//! A group's coordinator is the leader of its `__consumer_offsets` partition; the topic is
//! created on the first request, as Kafka does. Until that partition has a leader the
//! answer is COORDINATOR_NOT_AVAILABLE and clients retry. Transactions are not served, so
//! a transactional key (key type 1) gets COORDINATOR_NOT_AVAILABLE. (librdkafka also
//! needs this API advertised to enable lz4.) With an authorizer, finding a group's
//! coordinator needs DESCRIBE on the group.

use super::Ctx;
use crate::security::acl::Operation;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

/// (node id, host, port) of the coordinator for `key`, or the error.
async fn locate(
    ctx: &Ctx<'_>,
    key: &str,
    key_type: i8,
) -> Result<(i32, String, i32), ResponseError> {
    if key_type != 0 {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    if key.is_empty() {
        return Err(ResponseError::InvalidRequest);
    }
    if !ctx.group_allowed(Operation::Describe, key) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let broker = ctx.broker;
    let id = broker.groups.find(broker, key).await?;
    let view = broker.cluster.view();
    let b = view
        .brokers
        .get(&id)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    // The coordinator's address on the listener this client came in on.
    let e = b
        .endpoint(ctx.listener)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    Ok((id, e.host, i32::from(e.port)))
}

pub async fn handle(ctx: &Ctx<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    // v4 batches keys (KIP-699): one answer per key, in `coordinators`.
    if ctx.version >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in &req.coordinator_keys {
            let c = Coordinator::default().with_key(key.clone());
            coordinators.push(match locate(ctx, key.as_str(), req.key_type).await {
                Ok((id, host, port)) => c
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(host))
                    .with_port(port),
                Err(e) => c
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(refusal(key, e))))
                    .with_node_id(BrokerId(-1))
                    .with_port(-1),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match locate(ctx, req.key.as_str(), req.key_type).await {
        Ok((id, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_string(host))
            .with_port(port),
        Err(e) => {
            let mut resp = FindCoordinatorResponse::default()
                .with_error_code(e.code())
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::from_static_str(""))
                .with_port(-1);
            if ctx.version >= 1 {
                resp = resp.with_error_message(Some(StrBytes::from_string(refusal(&req.key, e))));
            }
            resp
        }
    }
}

fn refusal(key: &str, e: ResponseError) -> String {
    format!("no coordinator for {key:?}: {e:?}")
}
