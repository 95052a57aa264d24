//! Topic administration as written to the coordinator: create (with Kafka's replica
//! assignment), mark for deletion, add partitions, change configs. Any broker may do
//! these; the controller then creates partition states or carries out deletions.

use super::view::read;
use super::{random_uuid, uuid_text, Cluster};
use crate::replica::throttle;
use fjord_shared::cluster::{self, TopicAssignment, TopicConfig};
use fjord_shared::coord_client::{Error as CoordError, MultiError, Op};
use fjord_shared::jute::{CreateMode, ErrorCode};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// An admin request that failed, with the Kafka error to report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct AdminError {
    pub code: ResponseError,
    pub message: String,
}

impl AdminError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> AdminError {
        AdminError {
            code,
            message: message.into(),
        }
    }
}

impl From<CoordError> for AdminError {
    fn from(e: CoordError) -> AdminError {
        AdminError::new(
            ResponseError::UnknownServerError,
            format!("coordinator: {e}"),
        )
    }
}

/// The topic configs we know, with how to check a value.
pub const TOPIC_CONFIGS: &[&str] = &[
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "cleanup.policy",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "compression.type",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "delete.retention.ms",
    "min.compaction.lag.ms",
    throttle::LEADER_REPLICAS,
    throttle::FOLLOWER_REPLICAS,
];

/// The broker configs that can be changed at run time (`/config/brokers/<id>` and
/// `<default>`).
pub const DYNAMIC_BROKER_CONFIGS: &[&str] = &[throttle::LEADER_RATE, throttle::FOLLOWER_RATE];

/// Checks one dynamic broker config; the error is the message for INVALID_CONFIG.
pub fn validate_broker_config(key: &str, value: &str) -> Result<(), String> {
    if !DYNAMIC_BROKER_CONFIGS.contains(&key) {
        return Err(format!(
            "{key:?} cannot be changed at run time; the broker configs that can are {}",
            DYNAMIC_BROKER_CONFIGS.join(", ")
        ));
    }
    match value.parse::<i64>() {
        Ok(v) if v >= 0 => Ok(()),
        _ => Err(format!(
            "{key} must be a number of bytes per second, not {value:?}"
        )),
    }
}

/// Checks one topic config; the error is the message for INVALID_CONFIG.
pub fn validate_config(key: &str, value: &str) -> Result<(), String> {
    let long = |min: i64| match value.parse::<i64>() {
        Ok(v) if v >= min => Ok(()),
        _ => Err(format!("{key} must be an integer >= {min}, not {value:?}")),
    };
    match key {
        "retention.ms" | "retention.bytes" => long(-1),
        "delete.retention.ms" | "min.compaction.lag.ms" => long(0),
        "min.cleanable.dirty.ratio" => match value.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => Err(format!(
                "{key} must be a number between 0 and 1, not {value:?}"
            )),
        },
        "segment.bytes" => long(14),
        "segment.ms" | "min.insync.replicas" => long(1),
        "max.message.bytes" => long(0),
        "cleanup.policy" => match value {
            "delete" | "compact" | "compact,delete" | "delete,compact" => Ok(()),
            _ => Err(format!(
                "cleanup.policy must be delete, compact or both, not {value:?}"
            )),
        },
        "unclean.leader.election.enable" => match value {
            "true" | "false" => Ok(()),
            _ => Err(format!("{key} must be true or false")),
        },
        "compression.type" => match value {
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
            _ => Err(format!("unknown compression.type {value:?}")),
        },
        throttle::LEADER_REPLICAS | throttle::FOLLOWER_REPLICAS => {
            throttle::ThrottledReplicas::parse(value)
                .map(|_| ())
                .map_err(|e| format!("{key}: {e}"))
        }
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err("message.timestamp.type must be CreateTime or LogAppendTime".to_owned()),
        },
        _ => Err(format!("unknown topic config {key:?}")),
    }
}

fn random_u32() -> u32 {
    let b = random_uuid();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Replica assignment for new partitions: rack-aware if every live broker has a rack,
/// else Kafka's rack-unaware round robin.
fn assign(
    view: &super::ClusterView,
    partitions: i32,
    rf: usize,
    first_partition: i32,
) -> BTreeMap<i32, Vec<i32>> {
    let brokers = view.live_brokers();
    let racks: Option<BTreeMap<i32, String>> = view
        .brokers
        .iter()
        .map(|(id, b)| b.rack.clone().map(|r| (*id, r)))
        .collect();
    match racks {
        Some(racks) if !racks.is_empty() => assign_replicas_rack_aware(
            &racks,
            partitions,
            rf,
            random_u32(),
            random_u32(),
            first_partition,
        ),
        _ => assign_replicas(
            &brokers,
            partitions,
            rf,
            random_u32(),
            random_u32(),
            first_partition,
        ),
    }
}

/// Kafka's rack-aware assignment (`assignReplicasToBrokersRackAware`): brokers are listed
/// alternating between racks, leaders go round robin over that list, and each follower is
/// the next shifted broker whose rack (and broker) holds no replica of the partition yet,
/// as long as such a rack (broker) remains.
pub fn assign_replicas_rack_aware(
    racks: &BTreeMap<i32, String>,
    partitions: i32,
    rf: usize,
    start: u32,
    shift: u32,
    first_partition: i32,
) -> BTreeMap<i32, Vec<i32>> {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (b, r) in racks {
        by_rack.entry(r.as_str()).or_default().push(*b);
    }
    let num_racks = by_rack.len();
    let mut arranged = Vec::with_capacity(racks.len());
    for i in 0.. {
        let before = arranged.len();
        for brokers in by_rack.values() {
            if let Some(b) = brokers.get(i) {
                arranged.push(*b);
            }
        }
        if arranged.len() == before {
            break;
        }
    }
    let n = arranged.len();
    let mut out = BTreeMap::new();
    if n == 0 {
        return out;
    }
    let start = start as usize % n;
    let mut next_shift = shift as usize % n;
    for i in 0..partitions.max(0) as usize {
        let pid = first_partition as usize + i;
        if pid > 0 && pid.is_multiple_of(n) {
            next_shift += 1;
        }
        let first = (pid + start) % n;
        let leader = arranged[first];
        let mut replicas = vec![leader];
        let mut used_racks = vec![racks[&leader].as_str()];
        // Bounded: every candidate index is visited within 2n steps per replica.
        let mut k = 0usize;
        while replicas.len() < rf.min(n) && k < rf * n * 2 {
            let s = 1 + (next_shift * num_racks + k) % (n - 1).max(1);
            let b = arranged[(first + s) % n];
            let rack = racks[&b].as_str();
            if (!used_racks.contains(&rack) || used_racks.len() == num_racks)
                && !replicas.contains(&b)
            {
                replicas.push(b);
                if !used_racks.contains(&rack) {
                    used_racks.push(rack);
                }
            }
            k += 1;
        }
        out.insert(pid as i32, replicas);
    }
    out
}

/// Kafka's rack-unaware replica assignment (`AdminUtils.assignReplicasToBrokers`): the
/// first replicas go round-robin from a random start, and the followers are shifted so
/// that leadership and load spread evenly.
pub fn assign_replicas(
    brokers: &[i32],
    partitions: i32,
    rf: usize,
    start: u32,
    shift: u32,
    first_partition: i32,
) -> BTreeMap<i32, Vec<i32>> {
    let n = brokers.len();
    let mut out = BTreeMap::new();
    if n == 0 {
        return out;
    }
    let start = start as usize % n;
    let mut next_shift = shift as usize % n;
    for i in 0..partitions.max(0) as usize {
        let pid = first_partition as usize + i;
        if pid > 0 && pid.is_multiple_of(n) {
            next_shift += 1;
        }
        let first = (pid + start) % n;
        let mut replicas = vec![brokers[first]];
        for j in 0..rf.saturating_sub(1) {
            let s = 1 + (next_shift + j) % (n - 1).max(1);
            replicas.push(brokers[(first + s) % n]);
        }
        out.insert(pid as i32, replicas);
    }
    out
}

/// Creates a topic, and returns its new id (`None` for `validate_only`). `rf` of -1 and
/// `partitions` of -1 mean the broker defaults.
/// Checks replica lists given by hand (CreateTopics and CreatePartitions with
/// assignments): one per partition from `first` on without gaps, none empty, no broker
/// twice in one, the same length `rf` for all (if given), and only live brokers, as Kafka
/// checks them. Returns the replication factor.
pub fn check_assignment(
    assignment: &BTreeMap<i32, Vec<i32>>,
    first: i32,
    rf: Option<usize>,
    live: &[i32],
) -> Result<usize, AdminError> {
    let bad = |m: String| Err(AdminError::new(ResponseError::InvalidReplicaAssignment, m));
    let expected: Vec<i32> = (first..first + assignment.len() as i32).collect();
    if assignment.is_empty() || assignment.keys().copied().collect::<Vec<_>>() != expected {
        return bad(format!(
            "the assignment must name partitions {first}..{} once each",
            first + assignment.len() as i32 - 1
        ));
    }
    let rf = rf.unwrap_or_else(|| assignment.values().next().map_or(0, Vec::len));
    for (p, replicas) in assignment {
        let distinct: std::collections::BTreeSet<i32> = replicas.iter().copied().collect();
        if replicas.is_empty() || distinct.len() != replicas.len() {
            return bad(format!(
                "partition {p}: the replicas {replicas:?} are empty or name a broker twice"
            ));
        }
        if replicas.len() != rf {
            return bad(format!(
                "partition {p} has {} replicas; every partition needs {rf}",
                replicas.len()
            ));
        }
        if let Some(b) = replicas.iter().find(|b| !live.contains(b)) {
            return bad(format!("partition {p}: broker {b} is not registered"));
        }
    }
    Ok(rf)
}

pub async fn create_topic(
    c: &Cluster,
    name: &str,
    partitions: i32,
    rf: i16,
    manual: Option<BTreeMap<i32, Vec<i32>>>,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<Option<String>, AdminError> {
    if !cluster::valid_topic_name(name) {
        return Err(AdminError::new(
            ResponseError::InvalidTopicException,
            format!("invalid topic name {name:?}"),
        ));
    }
    let view = c.view();
    if view.topics.contains_key(name) {
        return Err(AdminError::new(
            ResponseError::TopicAlreadyExists,
            format!("topic {name} already exists"),
        ));
    }
    if partitions <= 0 {
        return Err(AdminError::new(
            ResponseError::InvalidPartitions,
            "the number of partitions must be positive",
        ));
    }
    let brokers = view.live_brokers();
    if let Some(m) = &manual {
        check_assignment(m, 0, None, &brokers)?;
    } else if rf <= 0 || rf as usize > brokers.len() {
        return Err(AdminError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {rf} is not between 1 and the {} live brokers",
                brokers.len()
            ),
        ));
    }
    for (k, v) in &configs {
        validate_config(k, v).map_err(|m| AdminError::new(ResponseError::InvalidConfig, m))?;
    }
    if validate_only {
        return Ok(None);
    }
    let assignment = match manual {
        Some(m) => m,
        None => assign(&view, partitions, rf as usize, 0),
    };
    let topic_id = uuid_text(&random_uuid());
    let topic = TopicAssignment::new(&assignment, topic_id.clone());
    let config = TopicConfig {
        version: 1,
        config: configs,
    };
    let client = c.client();
    let ops = vec![
        Op::create(
            cluster::topic_config_path(name),
            serde_json::to_vec(&config).unwrap_or_default(),
            &client.acl_for(&cluster::topic_config_path(name)),
            CreateMode::Persistent,
        ),
        Op::create(
            cluster::topic_path(name),
            serde_json::to_vec(&topic).unwrap_or_default(),
            &client.acl_for(&cluster::topic_path(name)),
            CreateMode::Persistent,
        ),
    ];
    match client.multi(ops).await {
        Ok(_) => {
            tracing::info!(
                topic = name,
                partitions,
                replication_factor = rf,
                "topic created"
            );
            Ok(Some(topic_id))
        }
        Err(MultiError::Failed {
            code: ErrorCode::NodeExists,
            ..
        }) => Err(AdminError::new(
            ResponseError::TopicAlreadyExists,
            format!("topic {name} already exists"),
        )),
        Err(MultiError::Failed { code, .. }) => Err(CoordError::Zk(code).into()),
        Err(MultiError::Client(e)) => Err(e.into()),
    }
}

/// Marks a topic for deletion; the controller removes it.
pub async fn delete_topic(c: &Cluster, name: &str) -> Result<(), AdminError> {
    if !c.view().topics.contains_key(name) {
        return Err(AdminError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("no topic {name}"),
        ));
    }
    let client = c.client();
    let path = cluster::delete_topic_path(name);
    match client
        .create(
            &path,
            Vec::new(),
            &client.acl_for(&path),
            CreateMode::Persistent,
        )
        .await
    {
        Ok(_) | Err(CoordError::Zk(ErrorCode::NodeExists)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Grows a topic to `count` partitions.
pub async fn create_partitions(
    c: &Cluster,
    name: &str,
    count: i32,
    manual: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> Result<(), AdminError> {
    let client = c.client();
    let path = cluster::topic_path(name);
    let Some((data, version)) = read(&client, &path).await? else {
        return Err(AdminError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("no topic {name}"),
        ));
    };
    let mut topic: TopicAssignment = serde_json::from_slice(&data).map_err(|e| {
        AdminError::new(
            ResponseError::UnknownServerError,
            format!("bad topic znode: {e}"),
        )
    })?;
    let moving = |m: &BTreeMap<String, Vec<i32>>| m.values().any(|r| !r.is_empty());
    if moving(&topic.adding_replicas) || moving(&topic.removing_replicas) {
        return Err(AdminError::new(
            ResponseError::ReassignmentInProgress,
            format!("partitions of {name} are being reassigned; add partitions once that is done"),
        ));
    }
    let current = topic.by_partition();
    let have = current.len() as i32;
    if count <= have {
        return Err(AdminError::new(
            ResponseError::InvalidPartitions,
            format!(
                "topic {name} has {have} partitions; the new count must be larger, not {count}"
            ),
        ));
    }
    let rf = current.values().next().map_or(1, Vec::len);
    let view = c.view();
    let brokers = view.live_brokers();
    let manual = match manual {
        Some(lists) => {
            if lists.len() as i32 != count - have {
                return Err(AdminError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "{} replica lists for {} new partitions",
                        lists.len(),
                        count - have
                    ),
                ));
            }
            let m: BTreeMap<i32, Vec<i32>> = (have..).zip(lists).collect();
            check_assignment(&m, have, Some(rf), &brokers)?;
            Some(m)
        }
        None => None,
    };
    if manual.is_none() && rf > brokers.len() {
        return Err(AdminError::new(
            ResponseError::InvalidReplicationFactor,
            "not enough live brokers for the replication factor",
        ));
    }
    if validate_only {
        return Ok(());
    }
    let new = match manual {
        Some(m) => m,
        None => assign(&view, count - have, rf, have),
    };
    for (p, r) in new {
        topic.partitions.insert(p.to_string(), r);
    }
    match client
        .set_data(
            &path,
            serde_json::to_vec(&topic).unwrap_or_default(),
            Some(version),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(CoordError::Zk(ErrorCode::BadVersion)) => Err(AdminError::new(
            ResponseError::ConcurrentTransactions,
            "the topic changed meanwhile; retry",
        )),
        Err(e) => Err(e.into()),
    }
}

/// A topic's config overrides as stored in the coordinator, with the znode version
/// (`None` if the topic has no config znode).
pub async fn read_topic_config(
    c: &Cluster,
    name: &str,
) -> Result<(BTreeMap<String, String>, Option<i32>), AdminError> {
    match read(&c.client(), &cluster::topic_config_path(name)).await? {
        Some((data, version)) => {
            let config: TopicConfig = serde_json::from_slice(&data).unwrap_or_default();
            Ok((config.config, Some(version)))
        }
        None => Ok((BTreeMap::new(), None)),
    }
}

/// Changes a topic's config overrides with `change`, as a read-modify-write on the
/// coordinator with a version check: two concurrent changes to different keys both land.
pub async fn update_topic_config(
    c: &Cluster,
    name: &str,
    validate_only: bool,
    change: impl Fn(&mut BTreeMap<String, String>) -> Result<(), AdminError>,
) -> Result<(), AdminError> {
    if read(&c.client(), &cluster::topic_path(name))
        .await?
        .is_none()
    {
        return Err(AdminError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("no topic {name}"),
        ));
    }
    let path = cluster::topic_config_path(name);
    update_config(c, &path, validate_only, change, validate_config).await
}

/// A broker's dynamic config (`entity` is its id, or `<default>` for every broker), or
/// an empty one.
pub async fn read_broker_config(
    c: &Cluster,
    entity: &str,
) -> Result<BTreeMap<String, String>, AdminError> {
    Ok(read(&c.client(), &cluster::broker_config_path(entity))
        .await?
        .map(|(data, _)| {
            serde_json::from_slice::<TopicConfig>(&data)
                .unwrap_or_default()
                .config
        })
        .unwrap_or_default())
}

/// Changes a broker's dynamic config (`entity`: its id, or `<default>`), as
/// [`update_topic_config`] does a topic's.
pub async fn update_broker_config(
    c: &Cluster,
    entity: &str,
    validate_only: bool,
    change: impl Fn(&mut BTreeMap<String, String>) -> Result<(), AdminError>,
) -> Result<(), AdminError> {
    let path = cluster::broker_config_path(entity);
    update_config(c, &path, validate_only, change, validate_broker_config).await
}

/// Read-modify-write of the config znode at `path`, retried while others change it.
async fn update_config(
    c: &Cluster,
    path: &str,
    validate_only: bool,
    change: impl Fn(&mut BTreeMap<String, String>) -> Result<(), AdminError>,
    validate: fn(&str, &str) -> Result<(), String>,
) -> Result<(), AdminError> {
    let client = c.client();
    for _ in 0..50 {
        let (mut config, version) = match read(&client, path).await? {
            Some((data, version)) => (
                serde_json::from_slice::<TopicConfig>(&data)
                    .unwrap_or_default()
                    .config,
                Some(version),
            ),
            None => (BTreeMap::new(), None),
        };
        let before = config.clone();
        change(&mut config)?;
        for (k, v) in &config {
            validate(k, v).map_err(|m| AdminError::new(ResponseError::InvalidConfig, m))?;
        }
        if validate_only || config == before {
            return Ok(());
        }
        let data = serde_json::to_vec(&TopicConfig { version: 1, config }).unwrap_or_default();
        let written = match version {
            Some(v) => client.set_data(path, data, Some(v)).await.map(|_| ()),
            None => client
                .create(path, data, &client.acl_for(path), CreateMode::Persistent)
                .await
                .map(|_| ()),
        };
        match written {
            Ok(()) => return Ok(()),
            Err(CoordError::Zk(ErrorCode::BadVersion | ErrorCode::NodeExists)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AdminError::new(
        ResponseError::ConcurrentTransactions,
        format!("{path} kept changing; retry"),
    ))
}

/// Waits until each topic has at least its given number of partitions (0: any) and every
/// partition has a live leader in this broker's view, or the timeout passes. Returns
/// whether they all did. The count matters after CreatePartitions: until the watch brings
/// the new assignment, the old partitions alone look ready.
pub async fn wait_ready(c: &Cluster, topics: &[(String, usize)], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut rx = c.subscribe();
    loop {
        {
            let view = rx.borrow_and_update();
            if topics.iter().all(|(t, n)| {
                view.topic_ready(t) && view.topics.get(t).is_some_and(|v| v.assignment.len() >= *n)
            }) {
                return true;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero()
            || tokio::time::timeout(left, rx.changed())
                .await
                .map(|r| r.is_err())
                .unwrap_or(true)
        {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_made_assignments_are_checked_as_kafka_checks_them() {
        let m = |lists: &[&[i32]]| -> BTreeMap<i32, Vec<i32>> {
            lists
                .iter()
                .enumerate()
                .map(|(p, r)| (p as i32, r.to_vec()))
                .collect()
        };
        let live = [1, 2, 3];
        assert_eq!(
            check_assignment(&m(&[&[1, 2], &[2, 3]]), 0, None, &live),
            Ok(2)
        );
        for (bad, why) in [
            (m(&[&[1, 2], &[3]]), "every partition needs 2"),
            (m(&[&[1, 1]]), "name a broker twice"),
            (m(&[&[]]), "empty"),
            (m(&[&[1, 9]]), "broker 9 is not registered"),
        ] {
            let e = check_assignment(&bad, 0, None, &live).unwrap_err();
            assert_eq!(e.code, ResponseError::InvalidReplicaAssignment);
            assert!(e.message.contains(why), "{}", e.message);
        }
        let gap: BTreeMap<i32, Vec<i32>> = [(0, vec![1]), (2, vec![2])].into();
        assert!(check_assignment(&gap, 0, None, &live).is_err());
        // New partitions of a topic with 2 replicas, from partition 4 on.
        let more: BTreeMap<i32, Vec<i32>> = [(4, vec![1, 3])].into();
        assert_eq!(check_assignment(&more, 4, Some(2), &live), Ok(2));
        assert!(check_assignment(&more, 4, Some(3), &live).is_err());
    }

    #[test]
    fn assignment_spreads_leaders_and_never_repeats_a_broker() {
        let brokers = [1, 2, 3];
        let a = assign_replicas(&brokers, 6, 3, 0, 0, 0);
        assert_eq!(a.len(), 6);
        for r in a.values() {
            let mut s = r.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3, "{r:?}");
        }
        let mut leaders: Vec<i32> = a.values().map(|r| r[0]).collect();
        leaders.sort();
        assert_eq!(leaders, vec![1, 1, 2, 2, 3, 3]);
        let one = assign_replicas(&[7], 3, 1, 5, 9, 0);
        assert!(one.values().all(|r| r == &vec![7]));
        let more = assign_replicas(&brokers, 2, 2, 1, 1, 4);
        assert_eq!(more.keys().copied().collect::<Vec<_>>(), vec![4, 5]);
    }

    #[test]
    fn configs_are_checked() {
        assert!(validate_config("retention.ms", "-1").is_ok());
        assert!(validate_config("retention.ms", "soon").is_err());
        assert!(validate_config("cleanup.policy", "compact").is_ok());
        assert!(validate_config("segment.bytes", "10").is_err());
        assert!(validate_config("no.such.thing", "1").is_err());
    }

    #[test]
    fn rack_aware_assignment_puts_each_replica_on_another_rack() {
        let racks: BTreeMap<i32, String> =
            [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]
                .into_iter()
                .map(|(b, r)| (b, r.to_owned()))
                .collect();
        for start in 0..6 {
            for shift in 0..6 {
                let a = assign_replicas_rack_aware(&racks, 12, 3, start, shift, 0);
                assert_eq!(a.len(), 12);
                let mut leaders = BTreeMap::new();
                for replicas in a.values() {
                    let mut seen: Vec<&str> = replicas.iter().map(|b| racks[b].as_str()).collect();
                    seen.sort_unstable();
                    seen.dedup();
                    assert_eq!(seen.len(), 3, "{replicas:?} repeats a rack");
                    *leaders.entry(replicas[0]).or_insert(0) += 1;
                }
                assert!(
                    leaders.values().all(|&n| n == 2),
                    "leaders spread evenly: {leaders:?}"
                );
            }
        }
        // More replicas than racks: racks repeat only once every rack has one.
        let two: BTreeMap<i32, String> = [(1, "a"), (2, "a"), (3, "b")]
            .into_iter()
            .map(|(b, r)| (b, r.to_owned()))
            .collect();
        for replicas in assign_replicas_rack_aware(&two, 6, 3, 1, 2, 0).values() {
            let mut sorted = replicas.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![1, 2, 3]);
        }
    }
}
