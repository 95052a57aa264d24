//! ListGroups: the groups this broker coordinates (admin clients ask every broker).

use super::Ctx;
use crate::group::GroupState;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

pub async fn handle(ctx: &Ctx<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let broker = ctx.broker;
    let groups = broker.groups.list().await;
    // A state name we do not know matches no group (it still counts as a filter).
    let states: Vec<Option<GroupState>> = req
        .states_filter
        .iter()
        .map(|s| GroupState::parse(s.as_str()))
        .collect();
    let listed = groups
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&Some(g.state)))
        .map(|g| {
            let mut l = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            if ctx.version >= 4 {
                l = l.with_group_state(StrBytes::from_static_str(g.state.as_str()));
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
