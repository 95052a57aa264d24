//! Consumer groups as an operator sees them (what Kafka's admin client does for
//! `kafka-consumer-groups.sh`): find a group's coordinator, list every group, describe one
//! (state, protocol, members and their assignments), read and commit its offsets, delete it.
//!
//! Routing follows Kafka's rules. FindCoordinator (key type 0, "group") may go to any
//! broker; DescribeGroups, OffsetFetch, OffsetCommit and DeleteGroups go to the group's
//! coordinator; ListGroups goes to every broker, since each lists only the groups it
//! coordinates, and the answers are merged. A coordinator that moved, is not known yet (the
//! broker is still creating `__consumer_offsets`) or is still loading the group
//! (COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR) means: find it
//! again and retry, with the client's usual bounded backoff. The broker did not act on a
//! request it refused that way, so even a commit or a delete is retried after it.
//!
//! Offsets are committed as a "simple" commit: generation -1 and an empty member id, the
//! form Kafka's admin client uses to reset offsets. A coordinator accepts it only while the
//! group has no members (Empty, or not yet existing); an active group answers
//! UNKNOWN_MEMBER_ID (or REBALANCE_IN_PROGRESS / ILLEGAL_GENERATION).
//!
//! Members' assignments are the consumer protocol's `ConsumerProtocolAssignment`, encoded
//! by the group leader: an `i16` version, then the body in that version. Versions above
//! the highest the codec knows are read as that highest version, as Kafka's own
//! `ConsumerProtocol` does (newer versions only append fields).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, DeleteGroupsRequest,
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Message, StrBytes};

use super::error::{code, Error, ProtocolError, Result};
use super::metadata::BrokerInfo;
use super::Client;

/// FindCoordinator's key type for consumer groups (1 would be a transactional id).
const KEY_TYPE_GROUP: i8 = 0;

/// The protocol type Kafka consumers use; their assignments are decodable.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A topic-partition.
pub type TopicPartition = (String, i32);

/// One group, as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// `consumer` for Kafka consumers; empty for a group that only stores offsets.
    pub protocol_type: String,
    /// Empty, Stable, PreparingRebalance, ...; `None` from a broker that answers ListGroups
    /// below v4 (which has no state).
    pub state: Option<String>,
    /// The broker that listed it: the group's coordinator.
    pub coordinator: i32,
}

/// One group, as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// Empty, PreparingRebalance, CompletingRebalance, Stable or Dead (Dead: the
    /// coordinator does not know the group).
    pub state: String,
    /// `consumer` for Kafka consumers.
    pub protocol_type: String,
    /// The protocol the group chose: for consumers the assignor (`range`,
    /// `cooperative-sticky`, ...); empty while none is chosen.
    pub protocol: String,
    pub members: Vec<GroupMember>,
    /// The broker that coordinates the group.
    pub coordinator: BrokerInfo,
}

impl GroupDescription {
    /// Whether the coordinator knows the group.
    pub fn exists(&self) -> bool {
        self.state != "Dead"
    }

    /// Whether the group has no active members, so its offsets may be changed from outside
    /// (Empty, or Dead: not known at all).
    pub fn is_inactive(&self) -> bool {
        matches!(self.state.as_str(), "Empty" | "Dead")
    }

    /// The highest generation the members reported in their subscriptions (consumer protocol
    /// v2+). DescribeGroups itself does not carry the group's generation; this is the
    /// generation the members last held when they (re)joined, so it trails the current one
    /// by the rebalance in which they joined. `None` if no member reports one.
    pub fn reported_generation(&self) -> Option<i32> {
        self.members
            .iter()
            .filter_map(|m| m.subscription_generation)
            .max()
    }
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    /// Set for static members (`group.instance.id`).
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The partitions assigned to it, by topic (sorted); empty before the group's first
    /// assignment, for a protocol type other than `consumer`, or if it did not decode.
    pub assignment: BTreeMap<String, Vec<i32>>,
    /// Why the assignment could not be read, if it could not.
    pub assignment_error: Option<String>,
    /// The generation in the member's subscription (consumer protocol v2+), if any.
    pub subscription_generation: Option<i32>,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will read.
    pub offset: i64,
    /// The leader epoch the committer saw (OffsetFetch v5+), when it sent one.
    pub leader_epoch: Option<i32>,
    pub metadata: Option<String>,
}

/// Decodes a member's assignment (ConsumerProtocolAssignment with its leading version)
/// into topic → sorted partitions. Empty bytes are an empty assignment.
pub fn decode_assignment(bytes: &[u8]) -> Result<BTreeMap<String, Vec<i32>>, ProtocolError> {
    if bytes.is_empty() {
        return Ok(BTreeMap::new());
    }
    let (version, mut body) = split_version::<ConsumerProtocolAssignment>(bytes, "assignment")?;
    let a = ConsumerProtocolAssignment::decode(&mut body, version).map_err(|e| {
        ProtocolError::ConsumerProtocol {
            what: "assignment",
            reason: format!("v{version}: {e:#}"),
        }
    })?;
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in a.assigned_partitions {
        out.entry(tp.topic.0.as_str().to_owned())
            .or_default()
            .extend(tp.partitions);
    }
    for partitions in out.values_mut() {
        partitions.sort_unstable();
        partitions.dedup();
    }
    Ok(out)
}

/// The generation in a member's subscription (ConsumerProtocolSubscription v2+); `None`
/// for older versions, a negative generation, or bytes that do not decode.
pub fn subscription_generation(bytes: &[u8]) -> Option<i32> {
    let (version, mut body) =
        split_version::<ConsumerProtocolSubscription>(bytes, "subscription").ok()?;
    if version < 2 {
        return None;
    }
    let s = ConsumerProtocolSubscription::decode(&mut body, version).ok()?;
    (s.generation_id >= 0).then_some(s.generation_id)
}

/// Reads the leading `i16` version of a consumer protocol message, capped at the highest
/// version `M` knows (newer versions only append fields).
fn split_version<'a, M: Message>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<(i16, &'a [u8]), ProtocolError> {
    let (head, body) = match bytes {
        [a, b, rest @ ..] => (i16::from_be_bytes([*a, *b]), rest),
        _ => {
            return Err(ProtocolError::ConsumerProtocol {
                what,
                reason: format!("{} byte(s), too short for a version", bytes.len()),
            })
        }
    };
    if head < M::VERSIONS.min {
        return Err(ProtocolError::ConsumerProtocol {
            what,
            reason: format!("negative version {head}"),
        });
    }
    Ok((head.min(M::VERSIONS.max), body))
}

/// How errors name a group.
fn group_resource(group: &str) -> String {
    format!("group {group}")
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn text(s: Option<&StrBytes>) -> Option<String> {
    s.map(|m| m.as_str().to_owned())
}

impl Client {
    /// Runs `op` against the coordinator of `group`, finding it first, and again after an
    /// answer that says it moved or is not ready. Other failures of `op` are retried as
    /// usual: after a refusal that left nothing changed, and also after a broken connection
    /// when `idempotent`.
    async fn with_coordinator<T, F, Fut>(
        &self,
        group: &str,
        idempotent: bool,
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut(BrokerInfo) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            let outcome = match self.find_coordinator_once(group).await {
                Ok(coordinator) => op(coordinator).await.map_err(|e| {
                    let retry = e.needs_coordinator_refresh() || e.is_retriable(idempotent);
                    (e, retry)
                }),
                // Finding the coordinator is a read: always worth another try.
                Err(e) => {
                    let retry = e.needs_coordinator_refresh() || e.is_retriable(true);
                    Err((e, retry))
                }
            };
            match outcome {
                Ok(v) => return Ok(v),
                Err((e, true)) if attempt < self.inner.opts.retries => {
                    attempt += 1;
                    self.pause_and_refresh(attempt, &e, None).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// The broker that coordinates `group`.
    #[cfg(test)]
    pub async fn find_group_coordinator(&self, group: &str) -> Result<BrokerInfo> {
        self.with_coordinator(group, true, |c| async move { Ok(c) })
            .await
    }

    async fn find_coordinator_once(&self, group: &str) -> Result<BrokerInfo> {
        let mut conn = self.any_conn().await?;
        let version = conn.version(ApiKey::FindCoordinator)?;
        let req = FindCoordinatorRequest::default()
            .with_key(str_bytes(group))
            .with_key_type(KEY_TYPE_GROUP);
        let resp = conn.send(&req, version, Duration::ZERO).await?;
        drop(conn);
        if resp.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::FindCoordinator,
                group_resource(group),
                resp.error_code,
                text(resp.error_message.as_ref()),
            ));
        }
        Ok(BrokerInfo {
            id: resp.node_id.0,
            host: resp.host.as_str().to_owned(),
            port: resp.port,
            rack: None,
        })
    }

    /// Every group in the cluster, sorted by id: ListGroups to every broker, merged (a group
    /// listed by two brokers while its coordinator moves appears once).
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let md = self.fetch_metadata(Some(&[]), false).await?;
        let mut all: BTreeMap<String, GroupListing> = BTreeMap::new();
        for broker in md.brokers.values() {
            for g in self.list_groups_on(broker).await? {
                all.entry(g.group_id.clone()).or_insert(g);
            }
        }
        Ok(all.into_values().collect())
    }

    /// The groups `broker` coordinates. A broker that left the cluster while being asked
    /// has none.
    async fn list_groups_on(&self, broker: &BrokerInfo) -> Result<Vec<GroupListing>> {
        let mut attempt = 0;
        loop {
            match self.list_groups_once(broker).await {
                Err(e)
                    if attempt < self.inner.opts.retries
                        && (e.needs_coordinator_refresh() || e.is_retriable(true)) =>
                {
                    attempt += 1;
                    self.pause_and_refresh(attempt, &e, None).await;
                    if !self.cached_metadata().brokers.contains_key(&broker.id) {
                        tracing::debug!(
                            broker_id = broker.id,
                            "broker left; not listing its groups"
                        );
                        return Ok(Vec::new());
                    }
                }
                other => return other,
            }
        }
    }

    async fn list_groups_once(&self, broker: &BrokerInfo) -> Result<Vec<GroupListing>> {
        let mut conn = self.conn(&broker.addr()).await?;
        let version = conn.version(ApiKey::ListGroups)?;
        let resp = conn
            .send(&ListGroupsRequest::default(), version, Duration::ZERO)
            .await?;
        drop(conn);
        if resp.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::ListGroups,
                format!("broker {}", broker.id),
                resp.error_code,
                None,
            ));
        }
        Ok(resp
            .groups
            .into_iter()
            .map(|g| GroupListing {
                group_id: g.group_id.0.as_str().to_owned(),
                protocol_type: g.protocol_type.as_str().to_owned(),
                state: (version >= 4).then(|| g.group_state.as_str().to_owned()),
                coordinator: broker.id,
            })
            .collect())
    }

    /// Describes `group` (a group the coordinator does not know is described as Dead, with
    /// no members).
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        self.with_coordinator(group, true, |c| self.describe_group_once(c, group))
            .await
    }

    async fn describe_group_once(
        &self,
        coordinator: BrokerInfo,
        group: &str,
    ) -> Result<GroupDescription> {
        let mut conn = self.conn(&coordinator.addr()).await?;
        let version = conn.version(ApiKey::DescribeGroups)?;
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))]);
        let resp = conn.send(&req, version, Duration::ZERO).await?;
        drop(conn);
        let g = resp
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| Error::MissingResult {
                api: ApiKey::DescribeGroups,
                resource: group_resource(group),
            })?;
        if g.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::DescribeGroups,
                group_resource(group),
                g.error_code,
                text(g.error_message.as_ref()),
            ));
        }
        let protocol_type = g.protocol_type.as_str().to_owned();
        // Kafka's admin client reads assignments of consumer groups and of groups that do
        // not name a protocol type; others (Connect, ...) have their own formats.
        let consumer = protocol_type.is_empty() || protocol_type == CONSUMER_PROTOCOL_TYPE;
        let members = g
            .members
            .into_iter()
            .map(|m| {
                let (assignment, assignment_error) = if consumer {
                    match decode_assignment(&m.member_assignment) {
                        Ok(a) => (a, None),
                        Err(e) => {
                            tracing::warn!(group, member = %m.member_id.as_str(), error = %e, "undecodable assignment");
                            (BTreeMap::new(), Some(e.to_string()))
                        }
                    }
                } else {
                    (BTreeMap::new(), None)
                };
                GroupMember {
                    member_id: m.member_id.as_str().to_owned(),
                    group_instance_id: text(m.group_instance_id.as_ref()),
                    client_id: m.client_id.as_str().to_owned(),
                    client_host: m.client_host.as_str().to_owned(),
                    assignment,
                    assignment_error,
                    subscription_generation: if consumer {
                        subscription_generation(&m.member_metadata)
                    } else {
                        None
                    },
                }
            })
            .collect();
        Ok(GroupDescription {
            group_id: group.to_owned(),
            state: g.group_state.as_str().to_owned(),
            protocol_type,
            protocol: g.protocol_data.as_str().to_owned(),
            members,
            coordinator,
        })
    }

    /// The offsets `group` has committed: for the given topics and partitions, or for every
    /// partition it has committed (`None`). Partitions without a commit are left out.
    pub async fn fetch_committed_offsets(
        &self,
        group: &str,
        topics: Option<&BTreeMap<String, BTreeSet<i32>>>,
    ) -> Result<BTreeMap<TopicPartition, CommittedOffset>> {
        self.with_coordinator(group, true, |c| async move {
            let version = self.conn(&c.addr()).await?.version(ApiKey::OffsetFetch)?;
            if topics.is_none() && version < 2 {
                // OffsetFetch v1 has no "all partitions": name every partition there is.
                let all = self.all_partitions().await?;
                return self.fetch_committed_once(c, group, Some(&all)).await;
            }
            self.fetch_committed_once(c, group, topics).await
        })
        .await
    }

    /// Every partition of every topic (for OffsetFetch v1).
    async fn all_partitions(&self) -> Result<BTreeMap<String, BTreeSet<i32>>> {
        let md = self.fetch_metadata(None, false).await?;
        Ok(md
            .topics
            .values()
            .map(|t| (t.name.clone(), t.partitions.keys().copied().collect()))
            .collect())
    }

    async fn fetch_committed_once(
        &self,
        coordinator: BrokerInfo,
        group: &str,
        topics: Option<&BTreeMap<String, BTreeSet<i32>>>,
    ) -> Result<BTreeMap<TopicPartition, CommittedOffset>> {
        let mut conn = self.conn(&coordinator.addr()).await?;
        let version = conn.version(ApiKey::OffsetFetch)?;
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(TopicName(str_bytes(t)))
                            .with_partition_indexes(ps.iter().copied().collect())
                    })
                    .collect()
            }));
        let resp = conn.send(&req, version, Duration::ZERO).await?;
        drop(conn);
        // The top-level error code exists from v2 on; v1 repeats it in every partition.
        if version >= 2 && resp.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::OffsetFetch,
                group_resource(group),
                resp.error_code,
                None,
            ));
        }
        let mut out = BTreeMap::new();
        let mut first_error = None;
        for t in resp.topics {
            let topic = t.name.0.as_str().to_owned();
            for p in t.partitions {
                match p.error_code {
                    0 => {}
                    // A topic deleted since the commit: nothing to report for it.
                    code::UNKNOWN_TOPIC_OR_PARTITION => continue,
                    c => {
                        let e = Error::kafka(
                            ApiKey::OffsetFetch,
                            format!("{} {topic}-{}", group_resource(group), p.partition_index),
                            c,
                            None,
                        );
                        // A coordinator error wins: it is retried as a whole.
                        if first_error.is_none() || e.needs_coordinator_refresh() {
                            first_error = Some(e);
                        }
                        continue;
                    }
                }
                if p.committed_offset < 0 {
                    continue;
                }
                out.insert(
                    (topic.clone(), p.partition_index),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: (version >= 5 && p.committed_leader_epoch >= 0)
                            .then_some(p.committed_leader_epoch),
                        metadata: text(p.metadata.as_ref()).filter(|m| !m.is_empty()),
                    },
                );
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Commits `offsets` for `group` as a simple commit (generation -1, no member id), the
    /// way offsets are reset from outside a group: the coordinator accepts it only while
    /// the group has no members. Committing the same absolute offsets twice has the effect
    /// of committing them once, so the request is also retried after a broken connection.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.with_coordinator(group, true, |c| self.commit_offsets_once(c, group, offsets))
            .await
    }

    async fn commit_offsets_once(
        &self,
        coordinator: BrokerInfo,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            by_topic.entry(topic.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(StrBytes::default())),
            );
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(str_bytes(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let mut conn = self.conn(&coordinator.addr()).await?;
        let version = conn.version(ApiKey::OffsetCommit)?;
        let resp = conn.send(&req, version, Duration::ZERO).await?;
        drop(conn);
        let mut answered = BTreeSet::new();
        let mut first_error: Option<Error> = None;
        for t in resp.topics {
            let topic = t.name.0.as_str().to_owned();
            for p in t.partitions {
                answered.insert((topic.clone(), p.partition_index));
                if p.error_code != 0 {
                    let e = Error::kafka(
                        ApiKey::OffsetCommit,
                        format!("{} {topic}-{}", group_resource(group), p.partition_index),
                        p.error_code,
                        None,
                    );
                    if first_error.is_none() || e.needs_coordinator_refresh() {
                        first_error = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if let Some((topic, partition)) = offsets.keys().find(|tp| !answered.contains(*tp)) {
            return Err(Error::MissingResult {
                api: ApiKey::OffsetCommit,
                resource: format!("{} {topic}-{partition}", group_resource(group)),
            });
        }
        Ok(())
    }

    /// Deletes `group` and its committed offsets. The coordinator refuses a group with
    /// members (NON_EMPTY_GROUP) and one it does not know (GROUP_ID_NOT_FOUND). Not retried
    /// after a broken connection: the group may be gone, and the retry would report
    /// GROUP_ID_NOT_FOUND for a delete that worked.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        self.with_coordinator(group, false, |c| self.delete_group_once(c, group))
            .await
    }

    async fn delete_group_once(&self, coordinator: BrokerInfo, group: &str) -> Result<()> {
        let mut conn = self.conn(&coordinator.addr()).await?;
        let version = conn.version(ApiKey::DeleteGroups)?;
        let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes(group))]);
        let resp = conn.send(&req, version, Duration::ZERO).await?;
        drop(conn);
        let r = resp
            .results
            .iter()
            .find(|r| r.group_id.0.as_str() == group)
            .ok_or_else(|| Error::MissingResult {
                api: ApiKey::DeleteGroups,
                resource: group_resource(group),
            })?;
        if r.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::DeleteGroups,
                group_resource(group),
                r.error_code,
                None,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTp;
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTp;
    use kafka_protocol::protocol::Encodable;

    fn encoded<M: Encodable>(m: &M, version: i16) -> Vec<u8> {
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        m.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    fn assignment(parts: &[(&str, &[i32])]) -> ConsumerProtocolAssignment {
        ConsumerProtocolAssignment::default().with_assigned_partitions(
            parts
                .iter()
                .map(|(t, ps)| {
                    AssignedTp::default()
                        .with_topic(TopicName(str_bytes(t)))
                        .with_partitions(ps.to_vec())
                })
                .collect(),
        )
    }

    #[test]
    fn assignments_decode_in_every_version() {
        let a = assignment(&[("orders", &[2, 0]), ("audit", &[1]), ("orders", &[1])]);
        for version in 0..=3 {
            let got = decode_assignment(&encoded(&a, version)).unwrap();
            let want: BTreeMap<String, Vec<i32>> = [
                ("audit".to_owned(), vec![1]),
                ("orders".to_owned(), vec![0, 1, 2]),
            ]
            .into();
            assert_eq!(got, want, "v{version}");
        }
    }

    #[test]
    fn newer_assignment_versions_read_as_the_newest_known() {
        // A future version appends fields; the known prefix still decodes.
        let mut bytes = encoded(&assignment(&[("t", &[0])]), 3);
        bytes[..2].copy_from_slice(&7i16.to_be_bytes());
        bytes.extend_from_slice(&[0xAB, 0xCD]);
        let got = decode_assignment(&bytes).unwrap();
        assert_eq!(got["t"], vec![0]);
    }

    #[test]
    fn empty_and_broken_assignments() {
        assert!(decode_assignment(&[]).unwrap().is_empty());
        let short = decode_assignment(&[0]).unwrap_err();
        assert!(short.to_string().contains("too short"), "{short}");
        let negative = decode_assignment(&(-1i16).to_be_bytes()).unwrap_err();
        assert!(
            negative.to_string().contains("negative version"),
            "{negative}"
        );
        // An array that claims more entries than the bytes hold.
        let mut bytes = 0i16.to_be_bytes().to_vec();
        bytes.extend_from_slice(&1000i32.to_be_bytes());
        let truncated = decode_assignment(&bytes).unwrap_err();
        assert!(
            truncated
                .to_string()
                .starts_with("cannot decode a consumer protocol assignment"),
            "{truncated}"
        );
    }

    #[test]
    fn subscription_generations_from_v2_on() {
        let s = ConsumerProtocolSubscription::default()
            .with_topics(vec![str_bytes("t")])
            .with_owned_partitions(vec![OwnedTp::default()
                .with_topic(TopicName(str_bytes("t")))
                .with_partitions(vec![0])])
            .with_generation_id(4);
        assert_eq!(subscription_generation(&encoded(&s, 2)), Some(4));
        assert_eq!(subscription_generation(&encoded(&s, 3)), Some(4));
        assert_eq!(subscription_generation(&encoded(&s, 1)), None);
        assert_eq!(
            subscription_generation(&encoded(&s.clone().with_generation_id(-1), 3)),
            None
        );
        assert_eq!(subscription_generation(&[]), None);
    }

    fn member(generation: Option<i32>) -> GroupMember {
        GroupMember {
            member_id: "m".into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            assignment: BTreeMap::new(),
            assignment_error: None,
            subscription_generation: generation,
        }
    }

    /// A one-broker fake that serves the group APIs from a script: FindCoordinator
    /// answers COORDINATOR_NOT_AVAILABLE `unavailable` times first, OffsetCommit answers
    /// NOT_COORDINATOR once, and every request is recorded.
    mod fake {
        use std::sync::{Arc, Mutex};

        use bytes::{BufMut, Bytes, BytesMut};
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
        use kafka_protocol::messages::describe_groups_response::{
            DescribedGroup, DescribedGroupMember,
        };
        use kafka_protocol::messages::list_groups_response::ListedGroup;
        use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
        use kafka_protocol::messages::offset_commit_response::{
            OffsetCommitResponsePartition, OffsetCommitResponseTopic,
        };
        use kafka_protocol::messages::offset_fetch_response::{
            OffsetFetchResponsePartition, OffsetFetchResponseTopic,
        };
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::{TcpListener, TcpStream};

        use super::super::str_bytes;

        /// (group, generation, member id, [(topic, partition, offset)]).
        pub type Commit = (String, i32, String, Vec<(String, i32, i64)>);

        #[derive(Default)]
        pub struct State {
            pub port: u16,
            pub unavailable: u32,
            pub commit_moved_once: bool,
            pub seen: Vec<ApiKey>,
            /// Every commit accepted.
            pub commits: Vec<Commit>,
            pub assignment: Vec<u8>,
        }

        pub type Shared = Arc<Mutex<State>>;

        pub async fn start(state: State) -> (String, Shared, tokio::task::JoinHandle<()>) {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let state = Arc::new(Mutex::new(State { port, ..state }));
            let st = state.clone();
            let task = tokio::spawn(async move {
                while let Ok((sock, _)) = listener.accept().await {
                    tokio::spawn(serve(sock, st.clone()));
                }
            });
            (format!("127.0.0.1:{port}"), state, task)
        }

        async fn serve(mut sock: TcpStream, state: Shared) {
            loop {
                let mut len = [0u8; 4];
                if sock.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
                if sock.read_exact(&mut buf).await.is_err() {
                    return;
                }
                let mut buf = Bytes::from(buf);
                let header = decode_request_header_from_buffer(&mut buf).unwrap();
                let api = ApiKey::try_from(header.request_api_key).unwrap();
                let v = header.request_api_version;
                let mut out = BytesMut::new();
                out.put_i32(0);
                ResponseHeader::default()
                    .with_correlation_id(header.correlation_id)
                    .encode(&mut out, api.response_header_version(v))
                    .unwrap();
                // The guard must not live across an await (the task has to be Send).
                respond(&mut state.lock().unwrap(), api, v, &mut buf, &mut out);
                let n = (out.len() - 4) as i32;
                out[..4].copy_from_slice(&n.to_be_bytes());
                sock.write_all(&out).await.unwrap();
            }
        }

        fn respond(st: &mut State, api: ApiKey, v: i16, buf: &mut Bytes, out: &mut BytesMut) {
            {
                st.seen.push(api);
                match api {
                    ApiKey::ApiVersions => {
                        let keys = [
                            (ApiKey::ApiVersions, 0, 3),
                            (ApiKey::Metadata, 0, 9),
                            (ApiKey::FindCoordinator, 0, 3),
                            (ApiKey::ListGroups, 0, 4),
                            (ApiKey::DescribeGroups, 0, 5),
                            (ApiKey::OffsetFetch, 1, 7),
                            (ApiKey::OffsetCommit, 2, 8),
                            (ApiKey::DeleteGroups, 0, 2),
                        ]
                        .iter()
                        .map(|(k, lo, hi)| {
                            ApiVersion::default()
                                .with_api_key(*k as i16)
                                .with_min_version(*lo)
                                .with_max_version(*hi)
                        })
                        .collect();
                        ApiVersionsResponse::default()
                            .with_api_keys(keys)
                            .encode(out, v)
                            .unwrap();
                    }
                    ApiKey::Metadata => MetadataResponse::default()
                        .with_controller_id(BrokerId(1))
                        .with_brokers(vec![MetadataResponseBroker::default()
                            .with_node_id(BrokerId(1))
                            .with_host(str_bytes("127.0.0.1"))
                            .with_port(i32::from(st.port))])
                        .encode(out, v)
                        .unwrap(),
                    ApiKey::FindCoordinator => {
                        let req = FindCoordinatorRequest::decode(buf, v).unwrap();
                        assert_eq!(req.key_type, 0);
                        let resp = if st.unavailable > 0 {
                            st.unavailable -= 1;
                            FindCoordinatorResponse::default()
                                .with_error_code(15)
                                .with_node_id(BrokerId(-1))
                                .with_port(-1)
                        } else {
                            FindCoordinatorResponse::default()
                                .with_node_id(BrokerId(1))
                                .with_host(str_bytes("127.0.0.1"))
                                .with_port(i32::from(st.port))
                        };
                        resp.encode(out, v).unwrap();
                    }
                    ApiKey::ListGroups => ListGroupsResponse::default()
                        .with_groups(vec![ListedGroup::default()
                            .with_group_id(GroupId(str_bytes("g")))
                            .with_protocol_type(str_bytes("consumer"))
                            .with_group_state(str_bytes("Stable"))])
                        .encode(out, v)
                        .unwrap(),
                    ApiKey::DescribeGroups => {
                        let req = DescribeGroupsRequest::decode(buf, v).unwrap();
                        let groups = req
                            .groups
                            .into_iter()
                            .map(|g| {
                                DescribedGroup::default()
                                    .with_group_id(g)
                                    .with_group_state(str_bytes("Stable"))
                                    .with_protocol_type(str_bytes("consumer"))
                                    .with_protocol_data(str_bytes("range"))
                                    .with_members(vec![DescribedGroupMember::default()
                                        .with_member_id(str_bytes("m-1"))
                                        .with_client_id(str_bytes("c"))
                                        .with_client_host(str_bytes("/127.0.0.1"))
                                        .with_member_assignment(Bytes::from(
                                            st.assignment.clone(),
                                        ))])
                            })
                            .collect();
                        DescribeGroupsResponse::default()
                            .with_groups(groups)
                            .encode(out, v)
                            .unwrap();
                    }
                    ApiKey::OffsetFetch => {
                        let req = OffsetFetchRequest::decode(buf, v).unwrap();
                        // Everything committed when topics is null; one commit per topic.
                        let topics = st
                            .commits
                            .iter()
                            .filter(|c| c.0 == req.group_id.0.as_str())
                            .flat_map(|c| c.3.clone())
                            .map(|(t, p, o)| {
                                OffsetFetchResponseTopic::default()
                                    .with_name(TopicName(str_bytes(&t)))
                                    .with_partitions(vec![
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(o),
                                        // Asked for but never committed.
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p + 100)
                                            .with_committed_offset(-1),
                                    ])
                            })
                            .collect();
                        OffsetFetchResponse::default()
                            .with_topics(topics)
                            .encode(out, v)
                            .unwrap();
                    }
                    ApiKey::OffsetCommit => {
                        let req = OffsetCommitRequest::decode(buf, v).unwrap();
                        let code = if st.commit_moved_once {
                            st.commit_moved_once = false;
                            16
                        } else {
                            let offsets = req
                                .topics
                                .iter()
                                .flat_map(|t| {
                                    t.partitions.iter().map(|p| {
                                        (
                                            t.name.0.as_str().to_owned(),
                                            p.partition_index,
                                            p.committed_offset,
                                        )
                                    })
                                })
                                .collect();
                            st.commits.push((
                                req.group_id.0.as_str().to_owned(),
                                req.generation_id_or_member_epoch,
                                req.member_id.as_str().to_owned(),
                                offsets,
                            ));
                            0
                        };
                        let topics = req
                            .topics
                            .iter()
                            .map(|t| {
                                OffsetCommitResponseTopic::default()
                                    .with_name(t.name.clone())
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                OffsetCommitResponsePartition::default()
                                                    .with_partition_index(p.partition_index)
                                                    .with_error_code(code)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect();
                        OffsetCommitResponse::default()
                            .with_topics(topics)
                            .encode(out, v)
                            .unwrap();
                    }
                    ApiKey::DeleteGroups => {
                        let req = DeleteGroupsRequest::decode(buf, v).unwrap();
                        let results = req
                            .groups_names
                            .into_iter()
                            .map(|g| {
                                let code = if g.0.as_str() == "busy" { 68 } else { 0 };
                                DeletableGroupResult::default()
                                    .with_group_id(g)
                                    .with_error_code(code)
                            })
                            .collect();
                        DeleteGroupsResponse::default()
                            .with_results(results)
                            .encode(out, v)
                            .unwrap();
                    }
                    other => panic!("fake broker got {other:?}"),
                }
            }
        }
    }

    fn opts(addr: &str) -> super::super::ClientOptions {
        let mut o = super::super::ClientOptions::new(addr);
        o.backoff = Duration::from_millis(5);
        o.retries = 5;
        o
    }

    #[tokio::test]
    async fn group_requests_find_the_coordinator_and_retry() {
        let (addr, state, task) = fake::start(fake::State {
            unavailable: 2,
            commit_moved_once: true,
            assignment: encoded(&assignment(&[("orders", &[1, 0])]), 1),
            ..fake::State::default()
        })
        .await;
        let client = Client::connect(opts(&addr)).await.unwrap();

        // Two COORDINATOR_NOT_AVAILABLE answers, then the coordinator.
        let c = client.find_group_coordinator("g").await.unwrap();
        assert_eq!((c.id, c.addr()), (1, addr.clone()));
        let finds = |st: &fake::State| {
            st.seen
                .iter()
                .filter(|a| **a == ApiKey::FindCoordinator)
                .count()
        };
        assert_eq!(finds(&state.lock().unwrap()), 3);

        // A simple commit, retried after NOT_COORDINATOR.
        let offsets: BTreeMap<TopicPartition, i64> =
            [(("orders".to_owned(), 0), 5), (("orders".to_owned(), 1), 7)].into();
        client.commit_offsets("g", &offsets).await.unwrap();
        {
            let st = state.lock().unwrap();
            assert_eq!(
                st.seen
                    .iter()
                    .filter(|a| **a == ApiKey::OffsetCommit)
                    .count(),
                2
            );
            assert_eq!(
                st.commits,
                vec![(
                    "g".to_owned(),
                    -1,
                    String::new(),
                    vec![("orders".to_owned(), 0, 5), ("orders".to_owned(), 1, 7)]
                )]
            );
        }

        // All committed partitions (null topics); uncommitted ones (-1) are left out.
        let committed = client.fetch_committed_offsets("g", None).await.unwrap();
        let got: Vec<(TopicPartition, i64)> = committed
            .into_iter()
            .map(|(tp, c)| (tp, c.offset))
            .collect();
        assert_eq!(
            got,
            vec![(("orders".to_owned(), 0), 5), (("orders".to_owned(), 1), 7)]
        );

        let d = client.describe_group("g").await.unwrap();
        assert_eq!((d.state.as_str(), d.protocol.as_str()), ("Stable", "range"));
        assert_eq!(d.members[0].assignment["orders"], vec![0, 1]);
        assert_eq!(d.coordinator.id, 1);

        let groups = client.list_groups().await.unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].state.as_deref(), Some("Stable"));

        client.delete_group("g").await.unwrap();
        let busy = client.delete_group("busy").await.unwrap_err();
        assert_eq!(busy.kafka_code(), Some(code::NON_EMPTY_GROUP));
        assert_eq!(
            busy.to_string(),
            "DeleteGroups group busy: NON_EMPTY_GROUP (68)"
        );
        task.abort();
    }

    #[tokio::test]
    async fn a_coordinator_that_never_appears_is_reported() {
        let (addr, state, task) = fake::start(fake::State {
            unavailable: u32::MAX,
            ..fake::State::default()
        })
        .await;
        let client = Client::connect(opts(&addr)).await.unwrap();
        let e = client.describe_group("g").await.unwrap_err();
        assert_eq!(e.kafka_code(), Some(code::COORDINATOR_NOT_AVAILABLE));
        assert!(
            e.to_string()
                .starts_with("FindCoordinator group g: COORDINATOR_NOT_AVAILABLE (15)"),
            "{e}"
        );
        // The first try and 5 retries.
        let st = state.lock().unwrap();
        assert_eq!(
            st.seen
                .iter()
                .filter(|a| **a == ApiKey::FindCoordinator)
                .count(),
            6
        );
        assert!(!st.seen.contains(&ApiKey::DescribeGroups));
        drop(st);
        task.abort();
    }

    #[test]
    fn group_state_helpers() {
        let mut d = GroupDescription {
            group_id: "g".into(),
            state: "Dead".into(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: vec![],
            coordinator: BrokerInfo {
                id: 1,
                host: "h".into(),
                port: 1,
                rack: None,
            },
        };
        assert!(!d.exists() && d.is_inactive());
        d.state = "Empty".into();
        assert!(d.exists() && d.is_inactive());
        d.state = "Stable".into();
        assert!(d.exists() && !d.is_inactive());
        assert_eq!(d.reported_generation(), None);
        d.members = vec![member(Some(3)), member(None), member(Some(5))];
        assert_eq!(d.reported_generation(), Some(5));
    }
}
