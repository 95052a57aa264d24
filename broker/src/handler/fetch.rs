//! Fetch: reads whole batches from partition leaders, below the high watermark. v13+
//! addresses topics by id, and v15+ carries a follower's id in `replica_state`.
//!
//! It long-polls: when less than `min_bytes` is available it waits, without spinning, for
//! new data (any append or high-watermark move wakes waiting fetches, which then re-read)
//! until `max_wait_ms`.
//! `max_bytes` and `partition_max_bytes` bound the response, except that the first batch is
//! always returned whole so that a consumer can make progress past a large batch.
//!
//! A fetch with `replica_id` set comes from a follower: it reads up to the log end rather
//! than the high watermark, and its fetch offset is the follower's log end offset, which
//! may move the high watermark (and so wake consumers and acks=all produces).
//!
//! With an authorizer, a consumer needs READ on each topic and a follower CLUSTER_ACTION
//! on the cluster; other partitions get TOPIC_AUTHORIZATION_FAILED, as in Kafka.

use super::Ctx;
use crate::replica::{check_epoch, ReadResult};
use crate::security::acl::Operation;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use std::collections::HashMap;
use std::time::{Duration, Instant};

struct Wanted {
    topic_index: usize,
    partition: i32,
    offset: i64,
    max_bytes: i32,
    current_leader_epoch: i32,
}

pub async fn handle(ctx: &Ctx<'_>, req: FetchRequest) -> FetchResponse {
    let broker = ctx.broker;
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.clamp(0, 60_000) as u64);
    let wanted: Vec<Wanted> = req
        .topics
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            t.partitions.iter().map(move |p| Wanted {
                topic_index: i,
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
            })
        })
        .collect();
    let total_max = if req.max_bytes <= 0 {
        i32::MAX
    } else {
        req.max_bytes
    };
    // v15 moved the follower's id into `replica_state` (KIP-903).
    let replica = if ctx.version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let follower = replica >= 0;
    // v13+ names topics by id (KIP-516); an id no topic has gets UNKNOWN_TOPIC_ID.
    let view = (ctx.version >= 13).then(|| broker.cluster.view());
    let names: Vec<Option<&str>> = req
        .topics
        .iter()
        .map(|t| match &view {
            Some(v) => v.topic_name(t.topic_id),
            None => Some(t.topic.0.as_str()),
        })
        .collect();
    let topic_of = |w: &Wanted| names[w.topic_index].unwrap_or_default();
    // A follower's fetch position counts (ISR, high watermark) only once its epoch and
    // offset check out; a refused partition is answered with that error, and a broker
    // that is not a replica never reads above the high watermark.
    // Followers need CLUSTER_ACTION on the cluster, consumers READ on each topic.
    let follower_allowed = follower && ctx.cluster_allowed(Operation::ClusterAction);
    let mut readable: HashMap<&str, bool> = HashMap::new();
    let mut refused: Vec<Option<crate::replica::PartitionError>> = wanted
        .iter()
        .map(|w| {
            let Some(topic) = names[w.topic_index] else {
                return Some(crate::replica::PartitionError::new(
                    ResponseError::UnknownTopicId,
                    format!("no topic has the id {}", req.topics[w.topic_index].topic_id),
                ));
            };
            let allowed = if !ctx.authorizing() {
                true
            } else if follower {
                follower_allowed
            } else {
                *readable
                    .entry(topic)
                    .or_insert_with(|| ctx.topic_allowed(Operation::Read, topic))
            };
            (!allowed).then(|| {
                crate::replica::PartitionError::new(
                    ResponseError::TopicAuthorizationFailed,
                    format!("{} may not read {topic}", ctx.principal),
                )
            })
        })
        .collect();
    // A follower's position may move the high watermark; parked consumer fetches are
    // then woken once for the whole request (acks=all produces by the partition).
    if follower {
        let mut moved = false;
        for (w, refusal) in wanted.iter().zip(refused.iter_mut()) {
            if refusal.is_some() {
                continue;
            }
            let topic = topic_of(w);
            let fetched = broker
                .replicas
                .leader(&broker.cluster, topic, w.partition)
                .and_then(|part| {
                    check_epoch(w.current_leader_epoch, part.leader_epoch())?;
                    part.follower_fetched(replica, w.offset)
                });
            match fetched {
                Ok(m) => moved |= m,
                Err(e) => *refusal = Some(e),
            }
        }
        if moved {
            broker.replicas.data_arrived().notify_waiters();
        }
    }
    let quota = &broker.replicas.throttles.leader;
    loop {
        // Register for wake-ups before reading, so an append in between is not missed.
        let notified = broker.replicas.data_arrived().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let mut throttled_until: Option<Instant> = None;
        let mut results: Vec<(usize, PartitionData)> = Vec::with_capacity(wanted.len());
        let mut total: usize = 0;
        let mut any_error = false;
        for (w, refusal) in wanted.iter().zip(&refused) {
            let topic = topic_of(w);
            let budget = (total_max as usize)
                .saturating_sub(total)
                .min(w.max_bytes.max(0) as usize);
            let data = PartitionData::default()
                .with_partition_index(w.partition)
                .with_preferred_read_replica(BrokerId(-1));
            let outcome = match refusal {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            }
            .and_then(|()| broker.replicas.leader(&broker.cluster, topic, w.partition))
            .and_then(|part| {
                check_epoch(w.current_leader_epoch, part.leader_epoch())?;
                // Catch-up of an out-of-sync follower of a throttled replica waits while
                // the leader quota is spent; it still learns the high watermark.
                let throttled =
                    follower && part.leader_throttled() && !part.isr().contains(&replica);
                let wait = if throttled {
                    quota.wait_time(Instant::now())
                } else {
                    Duration::ZERO
                };
                let budget = if wait.is_zero() {
                    budget
                } else {
                    // Come back when the quota allows it rather than at the deadline.
                    let at = Instant::now() + wait;
                    throttled_until = Some(throttled_until.map_or(at, |t: Instant| t.min(at)));
                    0
                };
                let read = part.read(w.offset, budget, total == 0 && budget > 0, follower)?;
                if throttled {
                    quota.record(read.records.len(), Instant::now());
                }
                Ok(read)
            });
            let data = match outcome {
                Ok(ReadResult {
                    records,
                    high_watermark,
                    log_start_offset,
                }) => {
                    total += records.len();
                    let mut d = data
                        .with_high_watermark(high_watermark)
                        .with_last_stable_offset(high_watermark)
                        .with_records(Some(records));
                    if ctx.version >= 5 {
                        d = d.with_log_start_offset(log_start_offset);
                    }
                    d
                }
                Err(e) => {
                    any_error = true;
                    // A follower that fell behind the leader's log start restarts there.
                    let start = match (&e.code, follower) {
                        (ResponseError::OffsetOutOfRange, true) => broker
                            .replicas
                            .leader(&broker.cluster, topic, w.partition)
                            .map_or(-1, |p| p.log_start_offset()),
                        _ => -1,
                    };
                    let mut d = data
                        .with_error_code(e.code.code())
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_records(Some(bytes::Bytes::new()));
                    if ctx.version >= 5 {
                        d = d.with_log_start_offset(start);
                    }
                    d
                }
            };
            results.push((w.topic_index, data));
        }
        let now = Instant::now();
        if any_error
            || total >= req.min_bytes.max(0) as usize
            || now >= deadline
            || wanted.is_empty()
        {
            let mut topics: Vec<FetchableTopicResponse> = req
                .topics
                .iter()
                .map(|t| {
                    FetchableTopicResponse::default()
                        .with_topic(t.topic.clone())
                        .with_topic_id(t.topic_id)
                })
                .collect();
            for (i, d) in results {
                if let Some(topic) = names[i] {
                    let ok = d.error_code == 0;
                    let bytes = d.records.as_ref().map_or(0, |r| r.len()) as u64;
                    broker
                        .stats
                        .fetched(topic, ok.then_some(if follower { 0 } else { bytes }));
                }
                topics[i].partitions.push(d);
            }
            return FetchResponse::default().with_responses(topics);
        }
        let wake = throttled_until.map_or(deadline, |t| t.min(deadline));
        let _ = tokio::time::timeout(wake.saturating_duration_since(now), notified).await;
    }
}
