//! DescribeLogDirs: this broker's log directory and the size of every partition replica
//! in it (what `kafka-log-dirs --describe` and `fjord cluster log-dirs` show). Each broker
//! answers for itself; tools ask every broker.

use super::Ctx;
use crate::security::acl::Operation;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};

/// Kafka's value for volume sizes it cannot tell (total_bytes, usable_bytes, v4+).
const UNKNOWN_VOLUME_BYTES: i64 = -1;

pub fn handle(ctx: &Ctx<'_>, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    if !ctx.cluster_allowed(Operation::Describe) {
        // Before v3 there is no top-level error: an unauthorized caller sees no directory.
        return DescribeLogDirsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    // None: every partition; otherwise only those named.
    let wanted: Option<BTreeSet<(String, i32)>> = req.topics.map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.topic.0.as_str().to_owned(), *p))
            })
            .collect()
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for part in ctx.broker.replicas.all() {
        let key = (part.tp.topic.clone(), part.tp.partition);
        if wanted.as_ref().is_some_and(|w| !w.contains(&key)) {
            continue;
        }
        let Some((_, end, size, _)) = part.log_stats() else {
            continue;
        };
        // How far a follower is behind its leader's high watermark as it knows it; 0 on
        // the leader, as in Kafka (for a current replica, not a future one).
        let lag = if part.is_leader() {
            0
        } else {
            (part.high_watermark() - end).max(0)
        };
        by_topic.entry(key.0).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(key.1)
                .with_partition_size(size as i64)
                .with_offset_lag(lag)
                .with_is_future_key(false),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    let dir = ctx.broker.replicas.log_dir().display().to_string();
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir))
        .with_topics(topics)
        .with_total_bytes(UNKNOWN_VOLUME_BYTES)
        .with_usable_bytes(UNKNOWN_VOLUME_BYTES)])
}
