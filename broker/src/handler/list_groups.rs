//! ListGroups: the groups this broker coordinates (admin clients ask every broker).

use super::Ctx;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

pub async fn handle(ctx: &Ctx<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let broker = ctx.broker;
    let groups = broker.groups.list().await;
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.as_str().to_lowercase())
        .collect();
    let listed = groups
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.as_str().to_lowercase()))
        .map(|g| {
            let mut l = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            if ctx.version >= 4 {
                l = l.with_group_state(StrBytes::from_static_str(g.state.as_str()));
            }
            if ctx.version >= 5 {
                l = l.with_group_type(StrBytes::from_static_str("classic"));
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
