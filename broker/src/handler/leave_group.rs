//! LeaveGroup: one member (v0–2) or a list of members (v3+, static members by instance
//! id) leave; the rest rebalance.

use super::Ctx;
use crate::group::LeaveMember;
use crate::security::acl::Operation;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

pub async fn handle(ctx: &Ctx<'_>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let broker = ctx.broker;
    if !ctx.group_allowed(Operation::Read, req.group_id.as_str()) {
        return LeaveGroupResponse::default()
            .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code());
    }
    let members: Vec<LeaveMember> = if ctx.version >= 3 {
        req.members
            .iter()
            .map(|m| LeaveMember {
                member_id: m.member_id.as_str().to_owned(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.as_str().to_owned()),
                reason: m.reason.as_ref().map(|s| s.as_str().to_owned()),
            })
            .collect()
    } else {
        vec![LeaveMember {
            member_id: req.member_id.as_str().to_owned(),
            group_instance_id: None,
            reason: None,
        }]
    };
    match broker
        .groups
        .leave(broker, req.group_id.as_str(), members)
        .await
    {
        Ok(results) => {
            if ctx.version < 3 {
                let code = results
                    .first()
                    .and_then(|r| r.as_ref().err())
                    .map_or(0, |e| e.code());
                return LeaveGroupResponse::default().with_error_code(code);
            }
            let members = req
                .members
                .into_iter()
                .zip(results)
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(r.err().map_or(0, |e| e.code()))
                })
                .collect();
            LeaveGroupResponse::default().with_members(members)
        }
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
    }
}
