//! ListGroups: the groups this broker coordinates (admin clients ask every broker),
//! filtered by state (v4+) and by type (v5+; every group here is "classic").

use super::Ctx;
use crate::group::GroupState;
use crate::security::acl::Operation;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

/// The type name of groups that use the classic rebalance protocol (all of ours).
const CLASSIC: &str = "classic";

pub async fn handle(ctx: &Ctx<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let broker = ctx.broker;
    let groups = broker.groups.list().await;
    // A state name we do not know matches no group (it still counts as a filter).
    let states: Vec<Option<GroupState>> = req
        .states_filter
        .iter()
        .map(|s| GroupState::parse(s.as_str()))
        .collect();
    // v5 filters by group type (KIP-848): every group here is a classic one.
    let classic = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.as_str().eq_ignore_ascii_case(CLASSIC));
    // With an authorizer: every group with DESCRIBE on the cluster, else those the caller
    // may describe.
    let all = ctx.cluster_allowed(Operation::Describe);
    let listed = groups
        .into_iter()
        .filter(|_| classic)
        .filter(|g| all || ctx.group_allowed(Operation::Describe, &g.group_id))
        .filter(|g| states.is_empty() || states.contains(&Some(g.state)))
        .map(|g| {
            let mut l = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            if ctx.version >= 4 {
                l = l.with_group_state(StrBytes::from_static_str(g.state.as_str()));
            }
            if ctx.version >= 5 {
                l = l.with_group_type(StrBytes::from_static_str(CLASSIC));
            }
            l
        })
        .collect();
    let code = if broker.groups.loading() {
        ResponseError::CoordinatorLoadInProgress.code()
    } else {
        0
    };
    ListGroupsResponse::default()
        .with_error_code(code)
        .with_groups(listed)
}
