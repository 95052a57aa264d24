//! DescribeLogDirs: this broker's log directory, the size of every partition replica in
//! it, and (v4+) the size and free space of its file system (what `kafka-log-dirs
//! --describe` and `fjord cluster log-dirs` show, and what a reassignment's progress is
//! read from). Each broker answers for itself; tools ask every broker.

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

/// The size of the file system holding `dir` and the bytes still usable on it (v4+:
/// `kafka-log-dirs` and balancers read them); Kafka's -1 for what cannot be read.
#[allow(unsafe_code)]
fn volume_bytes(dir: &std::path::Path) -> (i64, i64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return (UNKNOWN_VOLUME_BYTES, UNKNOWN_VOLUME_BYTES);
    };
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and `st` points to
    // writable memory of the size statvfs fills; it is read only after a successful call.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return (UNKNOWN_VOLUME_BYTES, UNKNOWN_VOLUME_BYTES);
    }
    // SAFETY: statvfs returned 0, so it initialised the whole struct.
    let st = unsafe { st.assume_init() };
    let unit = st.f_frsize as u128;
    let bytes = |blocks: u128| i64::try_from(blocks * unit).unwrap_or(i64::MAX);
    (bytes(st.f_blocks as u128), bytes(st.f_bavail as u128))
}

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
    let dir = ctx.broker.replicas.log_dir();
    let (total, usable) = volume_bytes(&dir);
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_volume_of_a_directory_has_a_size_and_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let (total, usable) = volume_bytes(dir.path());
        assert!(
            total > 0 && usable >= 0 && usable <= total,
            "{total} {usable}"
        );
        let gone = dir.path().join("nope");
        assert_eq!(
            volume_bytes(&gone),
            (UNKNOWN_VOLUME_BYTES, UNKNOWN_VOLUME_BYTES)
        );
    }
}
