//! Produce: validates each batch, appends it to the partition leader's log, and answers
//! with its base offset. With acks=0 there is no response at all; acks=1 answers once the
//! leader has appended. acks=-1 (all) is refused with NOT_ENOUGH_REPLICAS while the ISR is
//! smaller than `min.insync.replicas`, and otherwise answers once the high watermark has
//! passed the batch (every ISR member has it), or with REQUEST_TIMED_OUT after
//! `timeout_ms`. Every partition is appended first, then the waits run together.
//! With an authorizer, each topic needs WRITE (TOPIC_AUTHORIZATION_FAILED otherwise), and
//! auto-creating it needs CREATE.

use super::Ctx;
use crate::replica::PartitionError;
use crate::security::acl::Operation;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

pub async fn handle(ctx: &Ctx<'_>, req: ProduceRequest) -> Option<ProduceResponse> {
    let broker = ctx.broker;
    let mut responses = Vec::new();
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(req.timeout_ms.clamp(0, 300_000) as u64);
    // (topic index, partition index, partition, append) of acks=all writes to wait for.
    let mut waits = Vec::new();
    for t in req.topic_data {
        let topic = t.name.0.as_str().to_owned();
        let may_write = ctx.topic_allowed(Operation::Write, &topic);
        if may_write
            && !broker.cluster.view().topics.contains_key(&topic)
            && broker.config.auto_create_topics
            && ctx.may_create_topic(&topic)
            && broker.auto_create(&topic).await
        {
            // Give the new partitions a moment to get leaders; clients retry otherwise.
            let topics = [(topic.clone(), 0)];
            crate::cluster::admin::wait_ready(
                &broker.cluster,
                &topics,
                std::time::Duration::from_secs(3),
            )
            .await;
        }
        let mut parts = Vec::new();
        for p in t.partition_data {
            let mut r = PartitionProduceResponse::default()
                .with_index(p.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1);
            let outcome = if !may_write {
                Err(PartitionError::new(
                    ResponseError::TopicAuthorizationFailed,
                    format!("{} may not write to {topic}", ctx.principal),
                ))
            } else if req.transactional_id.is_some() {
                Err(PartitionError::new(
                    ResponseError::TransactionalIdAuthorizationFailed,
                    "transactions are not supported",
                ))
            } else {
                match broker.replicas.leader(&broker.cluster, &topic, p.index) {
                    Ok(part) => {
                        let records = p.records.unwrap_or_default();
                        let bytes = records.len() as u64;
                        let a = part.append(records, req.acks);
                        broker.stats.produced(
                            &topic,
                            a.as_ref()
                                .ok()
                                .map(|a| ((a.end_offset - a.base_offset).max(0) as u64, bytes)),
                        );
                        if let (Ok(a), -1) = (&a, req.acks) {
                            waits.push((responses.len(), parts.len(), part.clone(), *a));
                        }
                        a
                    }
                    Err(e) => {
                        broker.stats.produced(&topic, None);
                        Err(e)
                    }
                }
            };
            match outcome {
                Ok(a) => {
                    r = r.with_base_offset(a.base_offset);
                    if ctx.version >= 5 {
                        r = r.with_log_start_offset(a.log_start_offset);
                    }
                }
                Err(e) => {
                    tracing::debug!(topic = %topic, partition = p.index, error = %e.message, "produce refused");
                    r = r.with_error_code(e.code.code());
                    if ctx.version >= 5 {
                        r = r.with_log_start_offset(-1);
                    }
                    if ctx.version >= 8 {
                        r = r.with_error_message(Some(StrBytes::from_string(e.message)));
                    }
                }
            }
            parts.push(r);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_partition_responses(parts),
        );
    }
    if req.acks == 0 {
        return None;
    }
    // The waits share one deadline, so awaiting them one after another takes no longer
    // than awaiting them together.
    let waited = std::time::Instant::now();
    for (t, p, part, a) in &waits {
        if let Err(e) = part
            .wait_replicated(a.end_offset, a.leader_epoch, deadline)
            .await
        {
            let r = &mut responses[*t].partition_responses[*p];
            tracing::debug!(partition = r.index, error = %e.message, "acks=all produce failed");
            r.error_code = e.code.code();
            r.base_offset = -1;
            if ctx.version >= 5 {
                r.log_start_offset = -1;
            }
            if ctx.version >= 8 {
                r.error_message = Some(StrBytes::from_string(e.message));
            }
        }
    }
    if !waits.is_empty() {
        broker.stats.acks_all_wait.observe(waited.elapsed());
    }
    Some(ProduceResponse::default().with_responses(responses))
}
