//! CreatePartitions: grows topics; the controller gives the new partitions leaders, and
//! the answer waits until every live broker serves them ([`crate::readiness`]).

use super::Ctx;
use crate::cluster::admin;
use crate::security::acl::Operation;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

pub async fn handle(ctx: &Ctx<'_>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let broker = ctx.broker;
    let mut results = Vec::new();
    let mut grown = Vec::new();
    for t in req.topics {
        let name = t.name.0.as_str().to_owned();
        // Only the partitions this request adds are waited for.
        let before = broker
            .cluster
            .view()
            .topics
            .get(&name)
            .map_or(0, |v| v.assignment.len() as i32);
        let outcome = if !ctx.topic_allowed(Operation::Alter, &name) {
            Err(admin::AdminError::new(
                ResponseError::TopicAuthorizationFailed,
                format!("{} may not alter topic {name}", ctx.principal),
            ))
        } else {
            let manual = t.assignments.as_ref().map(|lists| {
                lists
                    .iter()
                    .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                    .collect()
            });
            admin::create_partitions(&broker.cluster, &name, t.count, manual, req.validate_only)
                .await
        };
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        match outcome {
            Ok(()) => grown.push((name, before..t.count.max(before))),
            Err(e) => {
                r = r
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message)));
            }
        }
        results.push(r);
    }
    if req.validate_only {
        grown.clear();
    }
    let late = crate::readiness::wait_for_request(broker, &grown, req.timeout_ms).await;
    for r in results
        .iter_mut()
        .filter(|r| r.error_code == 0 && late.contains(r.name.0.as_str()))
    {
        r.error_code = ResponseError::RequestTimedOut.code();
        r.error_message = Some(StrBytes::from_static_str(
            "the partitions were added, but not every broker serves them yet",
        ));
    }
    CreatePartitionsResponse::default().with_results(results)
}
