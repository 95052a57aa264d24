//! OffsetFetch: a group's committed offsets (-1 where none), for the listed partitions or
//! (v2+, null topics) all of them. v8+ asks for several groups in one request (KIP-709),
//! each answered with its own error; v9's member id and epoch concern consumer-protocol
//! groups (KIP-848) only, and classic groups ignore them, as in Kafka.

use super::Ctx;
use crate::log::TopicPartition;
use crate::security::acl::Operation;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;

/// One committed position as the response carries it.
struct Found {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
    /// TOPIC_AUTHORIZATION_FAILED for a topic the caller may not describe.
    error: i16,
}

/// The committed offsets of `group` for `wanted` (all when `None`), by topic. With an
/// authorizer the group needs DESCRIBE; topics the caller may not describe are left out
/// of "all", and answered TOPIC_AUTHORIZATION_FAILED when named.
async fn committed(
    ctx: &Ctx<'_>,
    group: &str,
    wanted: Option<Vec<TopicPartition>>,
) -> Result<BTreeMap<String, Vec<Found>>, ResponseError> {
    if !ctx.group_allowed(Operation::Describe, group) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let mut denied = Vec::new();
    let wanted = wanted.map(|w| {
        let (ok, refused): (Vec<_>, Vec<_>) = w
            .into_iter()
            .partition(|tp| ctx.topic_allowed(Operation::Describe, &tp.topic));
        denied = refused;
        ok
    });
    let found = if wanted.as_ref().is_some_and(Vec::is_empty) {
        Vec::new()
    } else {
        ctx.broker
            .groups
            .fetch_offsets(ctx.broker, group, wanted)
            .await?
    };
    let mut by_topic: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    for (tp, o) in found {
        if !ctx.topic_allowed(Operation::Describe, &tp.topic) {
            continue;
        }
        by_topic.entry(tp.topic.clone()).or_default().push(Found {
            partition: tp.partition,
            offset: o.as_ref().map_or(-1, |o| o.offset),
            leader_epoch: o.as_ref().and_then(|o| o.leader_epoch).unwrap_or(-1),
            metadata: o.map(|o| o.metadata).unwrap_or_default(),
            error: 0,
        });
    }
    for tp in denied {
        by_topic.entry(tp.topic.clone()).or_default().push(Found {
            partition: tp.partition,
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
            error: ResponseError::TopicAuthorizationFailed.code(),
        });
    }
    Ok(by_topic)
}

fn wanted<'a>(
    topics: Option<impl Iterator<Item = (&'a str, &'a [i32])>>,
) -> Option<Vec<TopicPartition>> {
    topics.map(|ts| {
        ts.flat_map(|(name, parts)| parts.iter().map(move |p| TopicPartition::new(name, *p)))
            .collect()
    })
}

fn topic_name(t: String) -> TopicName {
    TopicName(StrBytes::from_string(t))
}

pub async fn handle(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        return handle_groups(ctx, req).await;
    }
    let topics = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.as_str(), t.partition_indexes.as_slice()))
    });
    match committed(ctx, req.group_id.as_str(), wanted(topics)).await {
        Ok(found) => OffsetFetchResponse::default().with_topics(
            found
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(
                            ps.into_iter()
                                .map(|f| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(f.partition)
                                        .with_committed_offset(f.offset)
                                        .with_committed_leader_epoch(f.leader_epoch)
                                        .with_metadata(Some(StrBytes::from_string(f.metadata)))
                                        .with_error_code(f.error)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(e) => {
            // v2+ has a top-level error; v1 puts it on every partition.
            if ctx.version >= 2 {
                return OffsetFetchResponse::default().with_error_code(e.code());
            }
            let topics = req
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    let ps = t
                        .partition_indexes
                        .iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(-1)
                                .with_error_code(e.code())
                        })
                        .collect();
                    OffsetFetchResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(ps)
                })
                .collect();
            OffsetFetchResponse::default().with_topics(topics)
        }
    }
}

/// v8+: every group of the request, each with its offsets or its error.
async fn handle_groups(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in &req.groups {
        let topics = g.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.as_str(), t.partition_indexes.as_slice()))
        });
        let answer = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
        groups.push(
            match committed(ctx, g.group_id.as_str(), wanted(topics)).await {
                Ok(found) => answer.with_topics(
                    found
                        .into_iter()
                        .map(|(t, ps)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(topic_name(t))
                                .with_partitions(
                                    ps.into_iter()
                                        .map(|f| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(f.partition)
                                                .with_committed_offset(f.offset)
                                                .with_committed_leader_epoch(f.leader_epoch)
                                                .with_metadata(Some(StrBytes::from_string(
                                                    f.metadata,
                                                )))
                                                .with_error_code(f.error)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
                Err(e) => answer.with_error_code(e.code()),
            },
        );
    }
    OffsetFetchResponse::default().with_groups(groups)
}
