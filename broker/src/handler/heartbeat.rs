//! Heartbeat: keeps a member's session alive, and tells it when to rejoin
//! (REBALANCE_IN_PROGRESS).

use super::Ctx;
use crate::group::HeartbeatRequest;
use crate::security::acl::Operation;
use kafka_protocol::messages::{HeartbeatRequest as Request, HeartbeatResponse};

pub async fn handle(ctx: &Ctx<'_>, req: Request) -> HeartbeatResponse {
    let broker = ctx.broker;
    if !ctx.group_allowed(Operation::Read, req.group_id.as_str()) {
        return HeartbeatResponse::default()
            .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code());
    }
    let hb = HeartbeatRequest {
        member_id: req.member_id.as_str().to_owned(),
        generation_id: req.generation_id,
        group_instance_id: req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_owned()),
    };
    match broker
        .groups
        .heartbeat(broker, req.group_id.as_str(), hb)
        .await
    {
        Ok(()) => HeartbeatResponse::default(),
        Err(e) => HeartbeatResponse::default().with_error_code(e.code()),
    }
}
