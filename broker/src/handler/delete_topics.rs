//! DeleteTopics: marks topics for deletion and waits (up to the timeout) until the
//! controller has removed them.

use super::Ctx;
use crate::cluster::admin;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::time::{Duration, Instant};

pub async fn handle(ctx: &Ctx<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let broker = ctx.broker;
    let mut names: Vec<TopicName> = req.topic_names.clone();
    names.extend(req.topics.iter().filter_map(|t| t.name.clone()));
    let mut results = Vec::new();
    let mut pending = Vec::new();
    for name in names {
        let topic = name.0.as_str().to_owned();
        let mut r = DeletableTopicResult::default().with_name(Some(name.clone()));
        let outcome = if broker.cluster.is_fenced() {
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
