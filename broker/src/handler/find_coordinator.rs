//! FindCoordinator: which broker coordinates a consumer group or a transactional id.
//!
//! Group coordination (the `__consumer_offsets` topic and the group protocol) is not served
//! yet, and neither are transactions, so every key is answered with
//! COORDINATOR_NOT_AVAILABLE, which is what a Kafka broker answers while no coordinator is
//! ready. Clients then keep working without one: assign-based consumers and producers are
//! unaffected. (librdkafka also needs this API advertised to enable lz4.)

use super::Ctx;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

pub fn handle(ctx: &Ctx<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let code = ResponseError::CoordinatorNotAvailable.code();
    let message = || {
        Some(StrBytes::from_static_str(
            "group and transaction coordination is not available on this cluster",
        ))
    };
    if ctx.version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_host(StrBytes::from_static_str(""))
                    .with_port(-1)
                    .with_error_code(code)
                    .with_error_message(message())
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_node_id(BrokerId(-1))
        .with_host(StrBytes::from_static_str(""))
        .with_port(-1);
    if ctx.version >= 1 {
        resp = resp.with_error_message(message());
    }
    resp
}
