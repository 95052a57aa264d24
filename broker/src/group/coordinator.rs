//! The group coordinator: drives the [`Group`] state machines of the groups this broker
//! coordinates, and keeps their records in `__consumer_offsets`.
//!
//! A group's coordinator is the leader of `__consumer_offsets` partition
//! `partition_for(group)`. Each such partition this broker leads is a [`Shard`]: the
//! groups and committed offsets rebuilt from that partition's log. A shard is loaded the
//! first time a request needs it after this broker became leader (in that leader epoch);
//! until it is loaded, requests get COORDINATOR_LOAD_IN_PROGRESS, and a broker that does
//! not lead the partition answers NOT_COORDINATOR. When leadership moves away the shard is
//! unloaded: parked JoinGroup/SyncGroup requests are answered NOT_COORDINATOR, so clients
//! look for the new coordinator, which rebuilds the groups from the replicated log.
//!
//! Every record (group metadata, offset commits, tombstones) is written like an acks=all
//! produce: appended by the leader, answered once the ISR has it. Timers (session and
//! rebalance timeouts, the initial rebalance delay) are fired by [`run`], which also expires
//! offsets of groups that stayed empty for the offset retention.

use super::records::{self, GroupValue, MemberValue, OffsetValue, RecordKey};
use super::{
    append_error_to_response, CommittedOffset, Effect, Group, GroupConfig, GroupDescription,
    GroupMetadata, GroupOverview, GroupState, HeartbeatRequest, JoinError, JoinRequest, JoinResult,
    LeaveMember, MemberMetadata, OffsetStore, SyncRequest, SyncResult,
};
use crate::broker::Broker;
use crate::client::records::{decode_batches, encode_batch, ProduceRecord};
use crate::log::TopicPartition;
use crate::replica::{now_ms, Partition};
use bytes::Bytes;
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// The internal topic that holds group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How long a record write may wait for the ISR.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Coordinator settings.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub group: GroupConfig,
    /// `offsets.topic.num.partitions`.
    pub partitions: i32,
    /// `offsets.topic.replication.factor` (capped at the live brokers when created).
    pub replication_factor: i16,
    /// `offsets.retention.minutes`, in ms.
    pub retention_ms: i64,
    /// `offsets.topic.segment.bytes`.
    pub segment_bytes: u64,
}

type JoinReply = oneshot::Sender<Result<JoinResult, JoinError>>;
type SyncReply = oneshot::Sender<Result<SyncResult, ResponseError>>;

/// One group with its offsets and parked requests.
struct Entry {
    group: Group,
    offsets: OffsetStore,
    joins: HashMap<String, JoinReply>,
    syncs: HashMap<String, SyncReply>,
}

impl Entry {
    fn new(group: Group) -> Entry {
        Entry {
            group,
            offsets: OffsetStore::new(),
            joins: HashMap::new(),
            syncs: HashMap::new(),
        }
    }
}

/// The groups of one `__consumer_offsets` partition this broker leads.
struct Shard {
    partition: i32,
    leader_epoch: i32,
    loaded: AtomicBool,
    /// The load stopped before the log end (a read or decode error): this shard must not
    /// serve, and the next request starts a new load.
    failed: AtomicBool,
    groups: tokio::sync::Mutex<BTreeMap<String, Entry>>,
}

/// One group's committed offsets.
#[derive(Debug, Clone)]
pub struct GroupOffsets {
    pub group: String,
    pub state: GroupState,
    pub members: usize,
    pub offsets: Vec<(TopicPartition, i64)>,
}

/// All shards of this broker.
pub struct GroupCoordinator {
    config: CoordinatorConfig,
    shards: Mutex<HashMap<i32, Arc<Shard>>>,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator").finish()
    }
}

fn to_metadata(key: &str, v: GroupValue) -> GroupMetadata {
    GroupMetadata {
        group_id: key.to_owned(),
        protocol_type: v.protocol_type,
        generation_id: v.generation,
        protocol_name: v.protocol,
        leader_id: v.leader,
        current_state_timestamp_ms: v.current_state_timestamp,
        members: v
            .members
            .into_iter()
            .map(|m| MemberMetadata {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: m.subscription,
                assignment: m.assignment,
            })
            .collect(),
    }
}

fn to_value(m: &GroupMetadata) -> GroupValue {
    GroupValue {
        protocol_type: m.protocol_type.clone(),
        generation: m.generation_id,
        protocol: m.protocol_name.clone(),
        leader: m.leader_id.clone(),
        current_state_timestamp: m.current_state_timestamp_ms,
        members: m
            .members
            .iter()
            .map(|m| MemberValue {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: m.subscription.clone(),
                assignment: m.assignment.clone(),
            })
            .collect(),
    }
}

/// Appends `records` (key, value; `None` is a tombstone) to the partition as its leader
/// and waits until the ISR has them.
async fn write(
    part: &Partition,
    records: Vec<(Bytes, Option<Bytes>)>,
) -> Result<(), ResponseError> {
    if records.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let batch: Vec<ProduceRecord> = records
        .into_iter()
        .map(|(k, v)| ProduceRecord {
            key: Some(k),
            value: v,
            headers: Vec::new(),
            timestamp: Some(now),
        })
        .collect();
    let bytes = encode_batch(&batch, Compression::None, now)
        .map_err(|_| ResponseError::UnknownServerError)?;
    let appended = part
        .append(bytes, -1)
        .map_err(|e| append_error_to_response(e.code))?;
    let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
    part.wait_replicated(appended.end_offset, appended.leader_epoch, deadline)
        .await
        .map_err(|e| append_error_to_response(e.code))
}

impl GroupCoordinator {
    pub fn new(config: CoordinatorConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            shards: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The `__consumer_offsets` partition of `group`.
    pub fn partition_for(&self, group: &str) -> i32 {
        records::partition_for(group, self.config.partitions)
    }

    /// Creates `__consumer_offsets` if it does not exist yet (on the first FindCoordinator,
    /// as Kafka does). True if it exists now.
    pub async fn ensure_topic(&self, broker: &Broker) -> bool {
        if broker.cluster.view().topics.contains_key(OFFSETS_TOPIC) {
            return true;
        }
        let live = broker.cluster.view().brokers.len().max(1) as i16;
        let configs: BTreeMap<String, String> = [
            ("cleanup.policy", "compact".to_owned()),
            ("segment.bytes", self.config.segment_bytes.to_string()),
            ("compression.type", "producer".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        match crate::cluster::admin::create_topic(
            &broker.cluster,
            OFFSETS_TOPIC,
            self.config.partitions,
            self.config.replication_factor.min(live).max(1),
            None,
            configs,
            false,
        )
        .await
        {
            Ok(_) => {
                tracing::info!(
                    partitions = self.config.partitions,
                    "created the group offsets topic"
                );
                true
            }
            Err(e) if e.code == ResponseError::TopicAlreadyExists => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the group offsets topic");
                false
            }
        }
    }

    /// The shard that coordinates `group`, loaded; or the error a client should get.
    async fn shard(
        &self,
        broker: &Broker,
        group: &str,
    ) -> Result<(Arc<Shard>, Arc<Partition>), ResponseError> {
        // Group ids are stored with an INT16 length in `__consumer_offsets`.
        if group.is_empty() || group.len() > i16::MAX as usize {
            return Err(ResponseError::InvalidGroupId);
        }
        self.shard_of(broker, self.partition_for(group)).await
    }

    /// The loaded shard of offsets partition `p`. A partition this broker has just come to
    /// lead starts loading (COORDINATOR_LOAD_IN_PROGRESS until done).
    async fn shard_of(
        &self,
        broker: &Broker,
        p: i32,
    ) -> Result<(Arc<Shard>, Arc<Partition>), ResponseError> {
        let part = match broker.replicas.leader(&broker.cluster, OFFSETS_TOPIC, p) {
            Ok(part) => part,
            Err(e) if e.code == ResponseError::UnknownTopicOrPartition => {
                return Err(ResponseError::CoordinatorNotAvailable)
            }
            Err(_) => return Err(ResponseError::NotCoordinator),
        };
        let epoch = part.leader_epoch();
        let (shard, fresh) = {
            let Ok(mut shards) = self.shards.lock() else {
                return Err(ResponseError::CoordinatorNotAvailable);
            };
            match shards.get(&p) {
                Some(s) if s.leader_epoch == epoch && !s.failed.load(Ordering::Acquire) => {
                    (s.clone(), None)
                }
                old => {
                    let old = old.cloned();
                    let s = Arc::new(Shard {
                        partition: p,
                        leader_epoch: epoch,
                        loaded: AtomicBool::new(false),
                        failed: AtomicBool::new(false),
                        groups: tokio::sync::Mutex::new(BTreeMap::new()),
                    });
                    shards.insert(p, s.clone());
                    (s, Some(old))
                }
            }
        };
        if let Some(old) = fresh {
            if let Some(old) = old {
                unload(&old).await;
            }
            let (s, part, config) = (shard.clone(), part.clone(), self.config.group);
            tokio::spawn(async move { load(&s, &part, config).await });
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        if !shard.loaded.load(Ordering::Acquire) {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        Ok((shard, part))
    }

    /// FindCoordinator: the broker that leads the group's partition.
    pub async fn find(&self, broker: &Broker, group: &str) -> Result<i32, ResponseError> {
        if !self.ensure_topic(broker).await {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let p = self.partition_for(group);
        let view = broker.cluster.view();
        match view.leader(OFFSETS_TOPIC, p) {
            Some(l) if view.brokers.contains_key(&l) => Ok(l),
            _ => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// JoinGroup; waits for the join to complete.
    pub async fn join(
        &self,
        broker: &Broker,
        group_id: &str,
        req: JoinRequest,
    ) -> Result<JoinResult, JoinError> {
        let fail = |error| JoinError {
            error,
            member_id: req.member_id.clone(),
        };
        let (shard, part) = self.shard(broker, group_id).await.map_err(fail)?;
        let rx = {
            let mut groups = shard.groups.lock().await;
            if !groups.contains_key(group_id) && !req.member_id.is_empty() {
                return Err(fail(ResponseError::UnknownMemberId));
            }
            let e = groups
                .entry(group_id.to_owned())
                .or_insert_with(|| Entry::new(Group::new(group_id, self.config.group, now_ms())));
            let out = e.group.join(now_ms(), req);
            let (tx, rx) = oneshot::channel();
            e.joins.insert(out.member_id.clone(), tx);
            run_effects(&part, e, out.effects).await;
            rx
        };
        rx.await.unwrap_or_else(|_| {
            Err(JoinError {
                error: ResponseError::NotCoordinator,
                member_id: String::new(),
            })
        })
    }

    /// SyncGroup; waits for the leader's assignment.
    pub async fn sync(
        &self,
        broker: &Broker,
        group_id: &str,
        req: SyncRequest,
    ) -> Result<SyncResult, ResponseError> {
        let (shard, part) = self.shard(broker, group_id).await?;
        let rx = {
            let mut groups = shard.groups.lock().await;
            let Some(e) = groups.get_mut(group_id) else {
                return Err(ResponseError::UnknownMemberId);
            };
            let (tx, rx) = oneshot::channel();
            e.syncs.insert(req.member_id.clone(), tx);
            let fx = e.group.sync(now_ms(), req);
            run_effects(&part, e, fx).await;
            rx
        };
        rx.await.unwrap_or(Err(ResponseError::NotCoordinator))
    }

    pub async fn heartbeat(
        &self,
        broker: &Broker,
        group_id: &str,
        req: HeartbeatRequest,
    ) -> Result<(), ResponseError> {
        let (shard, _) = self.shard(broker, group_id).await?;
        let mut groups = shard.groups.lock().await;
        match groups.get_mut(group_id) {
            Some(e) => e.group.heartbeat(now_ms(), &req),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    /// LeaveGroup: a request-level error, or one result per member.
    pub async fn leave(
        &self,
        broker: &Broker,
        group_id: &str,
        members: Vec<LeaveMember>,
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        let (shard, part) = self.shard(broker, group_id).await?;
        let mut groups = shard.groups.lock().await;
        let Some(e) = groups.get_mut(group_id) else {
            return Ok(members
                .iter()
                .map(|_| Err(ResponseError::UnknownMemberId))
                .collect());
        };
        let out = e.group.leave(now_ms(), &members);
        run_effects(&part, e, out.effects).await;
        out.result
    }

    /// OffsetCommit: checks the group, writes every offset in one batch, then keeps them.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        broker: &Broker,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
        group_instance_id: Option<&str>,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<(), ResponseError> {
        let (shard, part) = self.shard(broker, group_id).await?;
        let mut groups = shard.groups.lock().await;
        if !groups.contains_key(group_id) && (generation_id >= 0 || !member_id.is_empty()) {
            return Err(ResponseError::IllegalGeneration);
        }
        let e = groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Entry::new(Group::new(group_id, self.config.group, now_ms())));
        e.group
            .validate_commit(now_ms(), member_id, generation_id, group_instance_id)?;
        let records = offsets
            .iter()
            .map(|(tp, o)| {
                let key = RecordKey::Offset {
                    group: group_id.to_owned(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                };
                let value = OffsetValue {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch.unwrap_or(-1),
                    metadata: o.metadata.clone(),
                    commit_timestamp: o.commit_timestamp_ms,
                };
                (key.encode(), Some(value.encode()))
            })
            .collect();
        write(&part, records).await?;
        for (tp, o) in offsets {
            e.offsets.commit(tp, o);
        }
        Ok(())
    }

    /// OffsetFetch: the committed offsets of `partitions` (all if `None`).
    pub async fn fetch_offsets(
        &self,
        broker: &Broker,
        group_id: &str,
        partitions: Option<Vec<TopicPartition>>,
    ) -> Result<Vec<(TopicPartition, Option<CommittedOffset>)>, ResponseError> {
        let (shard, _) = self.shard(broker, group_id).await?;
        let groups = shard.groups.lock().await;
        let store = groups.get(group_id).map(|e| &e.offsets);
        Ok(match partitions {
            Some(list) => list
                .into_iter()
                .map(|tp| {
                    let o = store.and_then(|s| s.get(&tp).cloned());
                    (tp, o)
                })
                .collect(),
            None => store
                .map(|s| {
                    s.iter()
                        .map(|(tp, o)| (tp.clone(), Some(o.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// DescribeGroups for one group (Dead with no members if unknown).
    pub async fn describe(
        &self,
        broker: &Broker,
        group_id: &str,
    ) -> Result<Option<GroupDescription>, ResponseError> {
        let (shard, _) = self.shard(broker, group_id).await?;
        let groups = shard.groups.lock().await;
        Ok(groups.get(group_id).map(|e| e.group.describe()))
    }

    /// ListGroups: every loaded group this broker coordinates.
    pub async fn list(&self) -> Vec<GroupOverview> {
        self.each_live_group(|_, e| e.group.overview()).await
    }

    /// Every loaded group's committed offsets, for the lag metrics and the console.
    pub async fn committed(&self) -> Vec<GroupOffsets> {
        self.each_live_group(|id, e| GroupOffsets {
            group: id.to_owned(),
            state: e.group.state(),
            members: e.group.members().len(),
            offsets: e
                .offsets
                .iter()
                .map(|(tp, c)| (tp.clone(), c.offset))
                .collect(),
        })
        .await
    }

    /// `f` of every group that is not dead, in the shards that are loaded.
    async fn each_live_group<T>(&self, f: impl Fn(&str, &Entry) -> T) -> Vec<T> {
        let shards: Vec<Arc<Shard>> = self
            .shards
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for s in shards {
            if !s.loaded.load(Ordering::Acquire) {
                continue;
            }
            let groups = s.groups.lock().await;
            out.extend(
                groups
                    .iter()
                    .filter(|(_, e)| e.group.state() != GroupState::Dead)
                    .map(|(id, e)| f(id, e)),
            );
        }
        out
    }

    /// True while some shard is still loading (ListGroups answers
    /// COORDINATOR_LOAD_IN_PROGRESS then).
    pub fn loading(&self) -> bool {
        self.shards
            .lock()
            .map(|s| s.values().any(|s| !s.loaded.load(Ordering::Acquire)))
            .unwrap_or(false)
    }

    /// DeleteGroups for one group: only an empty group; writes tombstones for the group
    /// and its offsets.
    pub async fn delete(&self, broker: &Broker, group_id: &str) -> Result<(), ResponseError> {
        let (shard, part) = self.shard(broker, group_id).await?;
        let mut groups = shard.groups.lock().await;
        let Some(e) = groups.get(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        // The tombstones go first: if they cannot be written the group stays as it was.
        // The shard lock keeps members out meanwhile.
        match e.group.state() {
            GroupState::Empty => {}
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            _ => return Err(ResponseError::NonEmptyGroup),
        }
        let records = tombstones(group_id, e.offsets.iter().map(|(tp, _)| tp), true);
        write(&part, records).await?;
        if let Some(mut e) = groups.remove(group_id) {
            e.group.delete(now_ms())?;
        }
        tracing::info!(group = group_id, "group deleted");
        Ok(())
    }

    /// OffsetDelete: removes committed offsets of topics the group does not subscribe to
    /// (tombstones first). Partitions of subscribed topics get GROUP_SUBSCRIBED_TO_TOPIC;
    /// a group with members that is not a consumer group gets NON_EMPTY_GROUP, as Kafka.
    pub async fn delete_offsets(
        &self,
        broker: &Broker,
        group_id: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<(TopicPartition, Option<ResponseError>)>, ResponseError> {
        let (shard, part) = self.shard(broker, group_id).await?;
        let mut groups = shard.groups.lock().await;
        let Some(e) = groups.get_mut(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        match e.group.state() {
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => {}
            _ if e.group.protocol_type() != Some("consumer") => {
                return Err(ResponseError::NonEmptyGroup)
            }
            _ => {}
        }
        let subscribed = e.group.subscribed_topics();
        let is_subscribed = |topic: &str| subscribed.as_ref().is_none_or(|s| s.contains(topic));
        let doomed: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| !is_subscribed(&tp.topic) && e.offsets.get(tp).is_some())
            .cloned()
            .collect();
        if !doomed.is_empty() {
            write(&part, tombstones(group_id, doomed.iter(), false)).await?;
            for tp in &doomed {
                e.offsets.remove(tp);
            }
            tracing::info!(
                group = group_id,
                partitions = doomed.len(),
                "offsets deleted"
            );
        }
        Ok(partitions
            .into_iter()
            .map(|tp| {
                let error =
                    is_subscribed(&tp.topic).then_some(ResponseError::GroupSubscribedToTopic);
                (tp, error)
            })
            .collect())
    }

    /// Fires timers, unloads shards whose partition moved away, expires offsets.
    async fn maintain(&self, broker: &Broker, expire: bool) {
        // Start loading the partitions this broker has come to lead, before any client
        // asks: a failover then costs clients no more than the load.
        let view = broker.cluster.view();
        if let Some(t) = view.topics.get(OFFSETS_TOPIC) {
            for (p, (state, _)) in &t.states {
                if state.leader == broker.id {
                    let _ = self.shard_of(broker, *p).await;
                }
            }
        }
        let shards: Vec<Arc<Shard>> = self
            .shards
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        for shard in shards {
            let current = broker
                .replicas
                .leader(&broker.cluster, OFFSETS_TOPIC, shard.partition)
                .ok()
                .filter(|p| p.leader_epoch() == shard.leader_epoch);
            let Some(part) = current else {
                let removed = self
                    .shards
                    .lock()
                    .map(|mut s| {
                        let same = s
                            .get(&shard.partition)
                            .is_some_and(|x| Arc::ptr_eq(x, &shard));
                        if same {
                            s.remove(&shard.partition);
                        }
                        same
                    })
                    .unwrap_or(false);
                if removed {
                    unload(&shard).await;
                }
                continue;
            };
            if !shard.loaded.load(Ordering::Acquire) {
                continue;
            }
            let mut groups = shard.groups.lock().await;
            let now = now_ms();
            let mut gone = Vec::new();
            for (id, e) in groups.iter_mut() {
                if e.group.next_deadline().is_some_and(|d| d <= now) {
                    let fx = e.group.tick(now);
                    run_effects(&part, e, fx).await;
                }
                if expire {
                    let expired = e.offsets.remove_expired(
                        e.group.offset_expiry(),
                        now,
                        self.config.retention_ms,
                    );
                    // An empty group with no offsets left is forgotten, as Kafka does.
                    let forget = e.group.state() == GroupState::Empty && e.offsets.is_empty();
                    let records = tombstones(id, expired.iter(), forget);
                    if !records.is_empty() {
                        match write(&part, records).await {
                            Ok(()) => {
                                if !expired.is_empty() {
                                    tracing::info!(group = %id, offsets = expired.len(), "expired committed offsets");
                                }
                                if forget {
                                    gone.push(id.clone());
                                }
                            }
                            Err(err) => {
                                tracing::warn!(group = %id, error = ?err, "cannot write offset expiry")
                            }
                        }
                    }
                }
            }
            for id in gone {
                groups.remove(&id);
            }
        }
    }
}

/// Carries out a group's effects in order; writes may release more.
async fn run_effects(part: &Partition, e: &mut Entry, effects: Vec<Effect>) {
    let mut queue: std::collections::VecDeque<Effect> = effects.into();
    while let Some(fx) = queue.pop_front() {
        match fx {
            Effect::JoinResponse { member_id, result } => {
                if let Some(tx) = e.joins.remove(&member_id) {
                    let _ = tx.send(result);
                }
            }
            Effect::SyncResponse { member_id, result } => {
                if let Some(tx) = e.syncs.remove(&member_id) {
                    let _ = tx.send(result);
                }
            }
            Effect::Persist(req) => {
                let key = RecordKey::Group {
                    group: req.metadata.group_id.clone(),
                }
                .encode();
                let value = to_value(&req.metadata).encode();
                let result = write(part, vec![(key, Some(value))]).await;
                if let Err(err) = &result {
                    tracing::warn!(group = %req.metadata.group_id, error = ?err, "cannot write the group record");
                }
                queue.extend(e.group.persisted(now_ms(), req.seq, result));
            }
            Effect::MemberRemoved {
                member_id, reason, ..
            } => {
                tracing::info!(group = %e.group.group_id(), member = %member_id, ?reason, "member left the group");
            }
            Effect::StateChanged {
                from,
                to,
                generation_id,
                reason,
            } => {
                tracing::info!(group = %e.group.group_id(), %from, %to, generation = generation_id, %reason, "group state changed");
            }
        }
    }
}

/// Answers everything parked in a shard that this broker no longer coordinates.
/// Tombstones for a group's offsets of `partitions`, and for the group itself if `group`.
fn tombstones<'a>(
    group_id: &str,
    partitions: impl Iterator<Item = &'a TopicPartition>,
    group: bool,
) -> Vec<(Bytes, Option<Bytes>)> {
    let mut records: Vec<(Bytes, Option<Bytes>)> = partitions
        .map(|tp| {
            let key = RecordKey::Offset {
                group: group_id.to_owned(),
                topic: tp.topic.clone(),
                partition: tp.partition,
            };
            (key.encode(), None)
        })
        .collect();
    if group {
        let key = RecordKey::Group {
            group: group_id.to_owned(),
        };
        records.push((key.encode(), None));
    }
    records
}

async fn unload(shard: &Shard) {
    let mut groups = shard.groups.lock().await;
    let now = now_ms();
    for e in groups.values_mut() {
        for fx in e.group.unload(now) {
            match fx {
                Effect::JoinResponse { member_id, result } => {
                    if let Some(tx) = e.joins.remove(&member_id) {
                        let _ = tx.send(result);
                    }
                }
                Effect::SyncResponse { member_id, result } => {
                    if let Some(tx) = e.syncs.remove(&member_id) {
                        let _ = tx.send(result);
                    }
                }
                _ => {}
            }
        }
    }
    groups.clear();
    tracing::info!(
        partition = shard.partition,
        "no longer coordinating the groups of this offsets partition"
    );
}

/// Rebuilds a shard from its partition's log (up to the log end: a new leader has every
/// acknowledged record).
async fn load(shard: &Shard, part: &Partition, config: GroupConfig) {
    let started = std::time::Instant::now();
    let mut metadata: BTreeMap<String, Option<GroupMetadata>> = BTreeMap::new();
    let mut offsets: BTreeMap<String, BTreeMap<TopicPartition, Option<CommittedOffset>>> =
        BTreeMap::new();
    let mut offset = part.log_start_offset();
    let end = part.log_end_offset();
    let mut records = 0usize;
    while offset < end {
        let read = match part.read(offset, 1 << 20, true, true) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(partition = shard.partition, error = %e.message, "cannot read the offsets partition; the load is retried on the next request");
                shard.failed.store(true, Ordering::Release);
                return;
            }
        };
        if read.records.is_empty() {
            // Compaction may have removed everything up to the log end.
            break;
        }
        let decoded = match decode_batches(read.records, offset) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(partition = shard.partition, offset, error = %e, "undecodable offsets batch; the load is retried on the next request");
                shard.failed.store(true, Ordering::Release);
                return;
            }
        };
        if decoded.next_offset <= offset {
            tracing::error!(partition = shard.partition, offset, "the offsets partition's log does not advance; the load is retried on the next request");
            shard.failed.store(true, Ordering::Release);
            return;
        }
        for r in decoded.records {
            records += 1;
            let Some(k) = r.key else { continue };
            let key = match RecordKey::decode(k) {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(partition = shard.partition, offset = r.offset, error = %e, "skipping an unreadable offsets record");
                    continue;
                }
            };
            match key {
                RecordKey::Group { group } => {
                    let v = match r.value {
                        None => None,
                        Some(v) => match GroupValue::decode(v) {
                            Ok(v) => Some(to_metadata(&group, v)),
                            Err(e) => {
                                tracing::warn!(%group, error = %e, "skipping an unreadable group record");
                                continue;
                            }
                        },
                    };
                    if v.is_none() {
                        // A tombstone for the group also ends its offsets written before.
                        offsets.remove(&group);
                    }
                    metadata.insert(group, v);
                }
                RecordKey::Offset {
                    group,
                    topic,
                    partition,
                } => {
                    let v = match r.value {
                        None => None,
                        Some(v) => match OffsetValue::decode(v) {
                            Ok(v) => Some(CommittedOffset {
                                offset: v.offset,
                                leader_epoch: (v.leader_epoch >= 0).then_some(v.leader_epoch),
                                metadata: v.metadata,
                                commit_timestamp_ms: v.commit_timestamp,
                                expire_timestamp_ms: None,
                            }),
                            Err(e) => {
                                tracing::warn!(%group, error = %e, "skipping an unreadable offset record");
                                continue;
                            }
                        },
                    };
                    offsets
                        .entry(group)
                        .or_default()
                        .insert(TopicPartition::new(topic.as_str(), partition), v);
                }
            }
        }
        offset = decoded.next_offset;
    }
    let now = now_ms();
    let mut groups = shard.groups.lock().await;
    let mut names: Vec<String> = metadata.keys().cloned().collect();
    names.extend(offsets.keys().cloned());
    names.sort();
    names.dedup();
    for name in names {
        let group = match metadata.remove(&name).flatten() {
            Some(m) => Group::load(m, config, now),
            None => Group::new(name.as_str(), config, now),
        };
        let mut e = Entry::new(group);
        for (tp, o) in offsets.remove(&name).unwrap_or_default() {
            if let Some(o) = o {
                e.offsets.commit(tp, o);
            }
        }
        if e.group.state() == GroupState::Empty
            && e.offsets.is_empty()
            && e.group.generation_id() <= 0
        {
            continue;
        }
        groups.insert(name, e);
    }
    shard.loaded.store(true, Ordering::Release);
    tracing::info!(
        partition = shard.partition,
        groups = groups.len(),
        records,
        ms = started.elapsed().as_millis() as u64,
        "loaded the groups of an offsets partition"
    );
}

/// Fires group timers every 100 ms and expires offsets every
/// `offsets.retention.check.interval` (10 minutes).
pub async fn run(broker: Arc<Broker>, shutdown: CancellationToken) {
    let expire_every = Duration::from_secs(600);
    let mut last_expiry = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.cancelled() => return,
        }
        let expire = last_expiry.elapsed() >= expire_every;
        if expire {
            last_expiry = tokio::time::Instant::now();
        }
        broker.groups.maintain(&broker, expire).await;
    }
}
