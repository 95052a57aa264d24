//! DescribeGroups: state, protocol and members (with metadata and assignment while the
//! group is Stable) of groups this broker coordinates. An unknown group is described as
//! Dead with no members, as Kafka does.

use super::Ctx;
use crate::security::acl::Operation;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

pub async fn handle(ctx: &Ctx<'_>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let broker = ctx.broker;
    let mut groups = Vec::new();
    for id in req.groups {
        let g = DescribedGroup::default().with_group_id(id.clone());
        if !ctx.group_allowed(Operation::Describe, id.as_str()) {
            groups.push(
                g.with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code()),
            );
            continue;
        }
        groups.push(match broker.groups.describe(broker, id.as_str()).await {
            Ok(Some(d)) => g
                .with_group_state(StrBytes::from_static_str(d.state.as_str()))
                .with_protocol_type(StrBytes::from_string(d.protocol_type))
                .with_protocol_data(StrBytes::from_string(d.protocol_data))
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(m.member_id))
                                .with_group_instance_id(
                                    m.group_instance_id.map(StrBytes::from_string),
                                )
                                .with_client_id(StrBytes::from_string(m.client_id))
                                .with_client_host(StrBytes::from_string(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
            Ok(None) => g.with_group_state(StrBytes::from_static_str("Dead")),
            Err(e) => g.with_error_code(e.code()),
        });
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
