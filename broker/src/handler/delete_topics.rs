//! DeleteTopics: marks topics for deletion and waits (up to the timeout) until the
//! controller has removed them.

use super::Ctx;
use crate::cluster::admin;
use crate::security::acl::Operation;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub async fn handle(ctx: &Ctx<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let broker = ctx.broker;
    // v6 names each topic by name or by id (KIP-516), never both.
    let view = broker.cluster.view();
    let mut asked: Vec<(Option<TopicName>, Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.clone()), Uuid::nil()))
        .collect();
    asked.extend(req.topics.iter().map(|t| {
        let name = t.name.clone().filter(|n| !n.0.is_empty());
        (name, t.topic_id)
    }));
    let mut results = Vec::new();
    let mut pending = Vec::new();
    for (name, id) in asked {
        let resolved = match (&name, id.is_nil()) {
            (Some(_), false) => Err((
                ResponseError::InvalidRequest,
                format!("give a topic name or a topic id, not both ({id})"),
            )),
            (Some(n), true) => Ok(n.clone()),
            (None, _) => view
                .topic_name(id)
                .map(|n| TopicName(StrBytes::from_string(n.to_owned())))
                .ok_or_else(|| {
                    (
                        ResponseError::UnknownTopicId,
                        format!("no topic has the id {id}"),
                    )
                }),
        };
        let name = match resolved {
            Ok(name) => name,
            Err((code, message)) => {
                let mut r = DeletableTopicResult::default()
                    .with_name(name)
                    .with_topic_id(id)
                    .with_error_code(code.code());
                if ctx.version >= 5 {
                    r = r.with_error_message(Some(StrBytes::from_string(message)));
                }
                results.push(r);
                continue;
            }
        };
        let topic = name.0.as_str().to_owned();
        let mut r = DeletableTopicResult::default().with_name(Some(name.clone()));
        if ctx.version >= 6 {
            r = r.with_topic_id(view.topics.get(&topic).map_or(id, |t| t.uuid()));
        }
        let outcome = if !ctx.topic_allowed(Operation::Delete, &topic) {
            Err(admin::AdminError::new(
                ResponseError::TopicAuthorizationFailed,
                format!("{} may not delete topic {topic}", ctx.principal),
            ))
        } else if broker.cluster.is_fenced() {
            Err(admin::AdminError::new(
                ResponseError::NotController,
                "this broker has lost its coordinator session",
            ))
        } else {
            admin::delete_topic(&broker.cluster, &topic).await
        };
        match outcome {
            Ok(()) => pending.push(topic),
            Err(e) => {
                r = r.with_error_code(e.code.code());
                if ctx.version >= 5 {
                    r = r.with_error_message(Some(StrBytes::from_string(e.message)));
                }
            }
        }
        results.push(r);
    }
    let deadline = Instant::now() + Duration::from_millis(req.timeout_ms.clamp(0, 60_000) as u64);
    let mut rx = broker.cluster.subscribe();
    loop {
        if pending
            .iter()
            .all(|t| !rx.borrow_and_update().topics.contains_key(t))
        {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero()
            || tokio::time::timeout(left, rx.changed())
                .await
                .map(|r| r.is_err())
                .unwrap_or(true)
        {
            let view = broker.cluster.view();
            for r in results.iter_mut() {
                let still = r
                    .name
                    .as_ref()
                    .is_some_and(|n| view.topics.contains_key(n.0.as_str()));
                if still && r.error_code == 0 {
                    r.error_code = ResponseError::RequestTimedOut.code();
                }
            }
            break;
        }
    }
    DeleteTopicsResponse::default().with_responses(results)
}
