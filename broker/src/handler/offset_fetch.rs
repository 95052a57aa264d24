//! OffsetFetch: a group's committed offsets (-1 where none), for the listed partitions or
//! (v2+, null topics) all of them.

use super::Ctx;
use crate::log::TopicPartition;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

pub async fn handle(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let broker = ctx.broker;
    let wanted: Option<Vec<TopicPartition>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(move |p| TopicPartition::new(t.name.as_str(), *p))
            })
            .collect()
    });
    match broker
        .groups
        .fetch_offsets(broker, req.group_id.as_str(), wanted)
        .await
    {
        Ok(found) => {
            let mut by_topic: BTreeMap<String, Vec<OffsetFetchResponsePartition>> = BTreeMap::new();
            for (tp, o) in found {
                let p = OffsetFetchResponsePartition::default()
                    .with_partition_index(tp.partition)
                    .with_committed_offset(o.as_ref().map_or(-1, |o| o.offset))
                    .with_committed_leader_epoch(
                        o.as_ref().and_then(|o| o.leader_epoch).unwrap_or(-1),
                    )
                    .with_metadata(Some(StrBytes::from_string(
                        o.map(|o| o.metadata).unwrap_or_default(),
                    )));
                by_topic.entry(tp.topic.clone()).or_default().push(p);
            }
            OffsetFetchResponse::default().with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            )
        }
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
