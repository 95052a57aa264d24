//! SyncGroup: the leader sends the assignment; every member waits for its own.

use super::Ctx;
use crate::group::SyncRequest;
use crate::security::acl::Operation;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

pub async fn handle(ctx: &Ctx<'_>, req: SyncGroupRequest) -> SyncGroupResponse {
    let broker = ctx.broker;
    if !ctx.group_allowed(Operation::Read, req.group_id.as_str()) {
        return SyncGroupResponse::default()
            .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code());
    }
    let sync = SyncRequest {
        member_id: req.member_id.as_str().to_owned(),
        generation_id: req.generation_id,
        group_instance_id: req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        protocol_type: req.protocol_type.as_ref().map(|s| s.as_str().to_owned()),
        protocol_name: req.protocol_name.as_ref().map(|s| s.as_str().to_owned()),
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.as_str().to_owned(), a.assignment.clone()))
            .collect(),
    };
    match broker
        .groups
        .sync(broker, req.group_id.as_str(), sync)
        .await
    {
        Ok(r) => SyncGroupResponse::default()
            .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(r.protocol_name.map(StrBytes::from_string))
            .with_assignment(r.assignment),
        Err(e) => SyncGroupResponse::default().with_error_code(e.code()),
    }
}
