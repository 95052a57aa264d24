//! CreateTopics: validates, writes the assignment and config to the coordinator, and waits
//! (up to the request's timeout) until every live broker serves every new partition and
//! each leader accepts writes ([`crate::readiness`]); a topic that is not ready by then is
//! answered REQUEST_TIMED_OUT, as Kafka does. It exists all the same.

use super::Ctx;
use crate::cluster::admin;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;

pub async fn handle(ctx: &Ctx<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let broker = ctx.broker;
    let mut results = Vec::new();
    let mut created = Vec::new();
    // A name given twice is refused for every entry, as Kafka does.
    let mut named = BTreeMap::<String, usize>::new();
    for t in &req.topics {
        *named.entry(t.name.0.as_str().to_owned()).or_default() += 1;
    }
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
        // Replicas given by hand (kafka-topics --replica-assignment) decide the partition
        // count and replication factor.
        let manual: Option<BTreeMap<i32, Vec<i32>>> = (!t.assignments.is_empty()).then(|| {
            t.assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect()
        });
        let partitions = match &manual {
            Some(m) => m.len() as i32,
            None if t.num_partitions == -1 => broker.config.num_partitions,
            None => t.num_partitions,
        };
        let rf = match &manual {
            Some(m) => m.values().next().map_or(0, Vec::len) as i16,
            None if t.replication_factor == -1 => broker.default_replication_factor(),
            None => t.replication_factor,
        };
        let outcome = if !ctx.may_create_topic(&name) {
            Err(admin::AdminError::new(
                ResponseError::TopicAuthorizationFailed,
                format!("{} may not create topic {name}", ctx.principal),
            ))
        } else if named.get(&name).is_some_and(|n| *n > 1) {
            Err(admin::AdminError::new(
                ResponseError::InvalidRequest,
                format!("topic {name} is named more than once in the request"),
            ))
        } else if !t.assignments.is_empty()
            && (t.num_partitions != -1 || t.replication_factor != -1)
        {
            Err(admin::AdminError::new(
                ResponseError::InvalidRequest,
                "give either replica assignments or a partition count and replication factor, not both",
            ))
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
                manual,
                configs,
                req.validate_only,
            )
            .await
        };
        let mut r = CreatableTopicResult::default().with_name(t.name.clone());
        match outcome {
            Ok(id) => {
                if ctx.version >= 7 {
                    let id = id.as_deref().map(crate::cluster::parse_topic_id);
                    r = r.with_topic_id(id.unwrap_or_default());
                }
                if ctx.version >= 5 {
                    r = r
                        .with_num_partitions(partitions)
                        .with_replication_factor(rf);
                }
                if !req.validate_only {
                    created.push((name, 0..partitions.max(0)));
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
    let late = crate::readiness::wait_for_request(broker, &created, req.timeout_ms).await;
    for r in results
        .iter_mut()
        .filter(|r| r.error_code == 0 && late.contains(r.name.0.as_str()))
    {
        r.error_code = ResponseError::RequestTimedOut.code();
        r.error_message = Some(StrBytes::from_static_str(
            "the topic was created, but not every broker serves all its partitions yet",
        ));
    }
    CreateTopicsResponse::default().with_topics(results)
}
