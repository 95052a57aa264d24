//! DeleteGroups: removes empty groups and their committed offsets (tombstones in
//! `__consumer_offsets`); a group with members gets NON_EMPTY_GROUP.

use super::Ctx;
use crate::security::acl::Operation;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

pub async fn handle(ctx: &Ctx<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let broker = ctx.broker;
    let mut results = Vec::new();
    for id in req.groups_names {
        let code = if !ctx.group_allowed(Operation::Delete, id.as_str()) {
            kafka_protocol::ResponseError::GroupAuthorizationFailed.code()
        } else {
            match broker.groups.delete(broker, id.as_str()).await {
                Ok(()) => 0,
                Err(e) => e.code(),
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
