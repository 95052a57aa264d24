//! DescribeCluster: brokers, controller and cluster id (used by admin clients).

use super::Ctx;
use crate::security::acl::Operation;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

pub fn handle(ctx: &Ctx<'_>, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    if !ctx.cluster_allowed(Operation::Describe) {
        return DescribeClusterResponse::default()
            .with_error_code(kafka_protocol::ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(StrBytes::from_string(format!(
                "{} may not describe the cluster",
                ctx.principal
            ))));
    }
    let view = ctx.broker.cluster.view();
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(view.cluster_id.clone()))
        .with_controller_id(BrokerId(view.controller.unwrap_or(-1)))
        .with_brokers(
            view.brokers
                .iter()
                .filter_map(|(id, b)| Some((id, b, b.endpoint(ctx.listener)?)))
                .map(|(id, b, e)| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(*id))
                        .with_host(StrBytes::from_string(e.host))
                        .with_port(i32::from(e.port))
                        .with_rack(b.rack.clone().map(StrBytes::from_string))
                })
                .collect(),
        )
}
