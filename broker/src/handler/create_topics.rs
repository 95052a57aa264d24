//! CreateTopics: validates, writes the assignment and config to the coordinator, and waits
//! (up to the request's timeout) until every partition has a leader.

use super::Ctx;
use crate::cluster::admin;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::time::Duration;

pub async fn handle(ctx: &Ctx<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let broker = ctx.broker;
    let mut results = Vec::new();
    let mut created = Vec::new();
    for t in req.topics {
        let name = t.name.0.as_str().to_owned();
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| {
                Some((
                    c.name.as_str().to_owned(),
                    c.value.as_ref()?.as_str().to_owned(),
                ))
            })
            .collect();
        let partitions = if t.num_partitions == -1 {
            broker.config.num_partitions
        } else {
            t.num_partitions
        };
        let rf = if t.replication_factor == -1 {
            broker.default_replication_factor()
        } else {
            t.replication_factor
        };
        let outcome = if !t.assignments.is_empty() {
            Err(admin::AdminError::new(ResponseError::InvalidRequest, "manual replica assignment is not supported; give partitions and a replication factor"))
        } else if broker.cluster.is_fenced() {
            Err(admin::AdminError::new(
                ResponseError::NotController,
                "this broker has lost its coordinator session",
            ))
        } else {
            admin::create_topic(
                &broker.cluster,
                &name,
                partitions,
                rf,
                configs,
                req.validate_only,
            )
            .await
        };
        let mut r = CreatableTopicResult::default().with_name(t.name.clone());
        match outcome {
            Ok(()) => {
                if ctx.version >= 5 {
                    r = r
                        .with_num_partitions(partitions)
                        .with_replication_factor(rf);
                }
                if !req.validate_only {
                    created.push((name, partitions.max(0) as usize));
                }
            }
            Err(e) => {
                tracing::info!(topic = %name, error = %e, "create topic refused");
                r = r
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message)));
                if ctx.version >= 5 {
                    r = r.with_num_partitions(-1).with_replication_factor(-1);
                }
            }
        }
        results.push(r);
    }
    if !created.is_empty() {
        let timeout = Duration::from_millis(req.timeout_ms.clamp(0, 60_000) as u64);
        admin::wait_ready(&broker.cluster, &created, timeout).await;
    }
    CreateTopicsResponse::default().with_topics(results)
}
