//! JoinGroup: a member joins (or rejoins) a group; the answer waits until the join
//! completes for every member (see `group::Group::join`). v4+ members without an id first
//! get MEMBER_ID_REQUIRED with their new id.

use super::Ctx;
use crate::group::{JoinRequest, Protocol};
use crate::security::acl::Operation;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

pub async fn handle(ctx: &Ctx<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let broker = ctx.broker;
    if !ctx.group_allowed(Operation::Read, req.group_id.as_str()) {
        return JoinGroupResponse::default()
            .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code())
            .with_generation_id(-1)
            .with_protocol_name((ctx.version < 7).then(StrBytes::default))
            .with_member_id(req.member_id);
    }
    let suffix = crate::cluster::uuid_text(&crate::cluster::random_uuid());
    let join = JoinRequest {
        member_id: req.member_id.as_str().to_owned(),
        group_instance_id: req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        client_id: ctx
            .header
            .client_id
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if ctx.version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.as_str().to_owned(),
        protocols: req
            .protocols
            .iter()
            .map(|p| Protocol::new(p.name.as_str(), p.metadata.clone()))
            .collect(),
        require_known_member_id: ctx.version >= 4,
        reason: req.reason.as_ref().map(|s| s.as_str().to_owned()),
        new_member_id_suffix: suffix,
    };
    let resp = JoinGroupResponse::default();
    match broker
        .groups
        .join(broker, req.group_id.as_str(), join)
        .await
    {
        Ok(r) => resp
            .with_generation_id(r.generation_id)
            .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(r.protocol_name.map(StrBytes::from_string))
            .with_leader(StrBytes::from_string(r.leader_id))
            .with_member_id(StrBytes::from_string(r.member_id))
            .with_members(
                r.members
                    .into_iter()
                    .map(|m| {
                        JoinGroupResponseMember::default()
                            .with_member_id(StrBytes::from_string(m.member_id))
                            .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                            .with_metadata(m.metadata)
                    })
                    .collect(),
            ),
        Err(e) => resp
            .with_error_code(e.error.code())
            .with_generation_id(-1)
            .with_protocol_name(if ctx.version >= 7 {
                None
            } else {
                Some(StrBytes::default())
            })
            .with_member_id(StrBytes::from_string(e.member_id)),
    }
}
