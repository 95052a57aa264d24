//! The classic group state machine: one [`Group`], its members, generation and timers,
//! and its states with Kafka's transitions.
//!
//! It follows Kafka's `GroupCoordinator` / `GroupMetadataManager` for classic groups
//! (the rules are listed in the [module docs](super)). Operations take the time in
//! milliseconds and return [`Effect`]s; timers are deadlines that [`Group::tick`] fires.
//! There is no I/O, no clock and no lock here: the caller serialises calls per group.
//!
//! This file holds the group's data, its constructors and views, and the helpers the
//! operations share; the operations are in `join.rs` (JoinGroup and the rebalance),
//! `sync.rs` (SyncGroup and record writes) and `session.rs` (Heartbeat, LeaveGroup,
//! commits, removals and timers).

use super::member::{Member, Protocol};
use super::messages::Effect;
use super::metadata::{GroupDescription, GroupMetadata, GroupOverview, MemberDescription};
use super::offsets::OffsetExpiry;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A classic group's state, with Kafka's names (DescribeGroups, ListGroups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members. Offsets may still be committed (generation -1) and fetched.
    Empty,
    /// Waiting for the members to (re)join.
    PreparingRebalance,
    /// The join completed; waiting for the leader's assignment (SyncGroup).
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Removed or moved to another coordinator; the caller drops it.
    Dead,
}

impl GroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Parses a state name, ignoring case (ListGroups v4+ filters are case-insensitive).
    pub fn parse(name: &str) -> Option<GroupState> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }

    /// Kafka's valid transitions (`ClassicGroupState.validPreviousStates`).
    pub(super) fn can_follow(self, from: GroupState) -> bool {
        use GroupState::*;
        match self {
            Dead => true,
            CompletingRebalance => from == PreparingRebalance,
            Stable => from == CompletingRebalance,
            PreparingRebalance => matches!(from, Stable | CompletingRebalance | Empty),
            Empty => from == PreparingRebalance,
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The broker settings that shape a group's behaviour (Kafka's names in the docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an Empty group
    /// waits for more members, extended by the same amount while new members keep
    /// arriving, up to the rebalance timeout.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.max.size`.
    pub max_size: usize,
    /// `group.classic.new.member.join.timeout.ms`: how long a new member's parked join
    /// may wait (it cannot heartbeat yet).
    pub new_member_join_timeout_ms: i64,
}

impl Default for GroupConfig {
    fn default() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: usize::MAX,
            new_member_join_timeout_ms: 300_000,
        }
    }
}

/// The pending completion of the join phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JoinTimer {
    /// The first rebalance of an Empty group (Kafka's `InitialDelayedJoin`).
    Initial {
        at: i64,
        delay_ms: i64,
        remaining_ms: i64,
    },
    /// Any other rebalance: the rebalance timeout.
    Rebalance { at: i64 },
}

impl JoinTimer {
    pub(super) fn at(self) -> i64 {
        match self {
            JoinTimer::Initial { at, .. } | JoinTimer::Rebalance { at } => at,
        }
    }
}

/// Members must send SyncGroup by `at` after the join of `generation_id` completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SyncTimer {
    pub(super) at: i64,
    pub(super) generation_id: i32,
}

/// A group record write whose completion releases answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PendingWrite {
    /// The leader's assignment for `generation_id`.
    Assignment {
        generation_id: i32,
        assignments: BTreeMap<String, Bytes>,
    },
    /// A static member's new member id, given while Stable without a rebalance.
    StaticReplacement {
        generation_id: i32,
        group_instance_id: String,
        old_member_id: String,
        new_member_id: String,
        old_protocols: Vec<Protocol>,
        old_rebalance_timeout_ms: i32,
        old_session_timeout_ms: i32,
        leader_before: Option<String>,
    },
}

/// One classic consumer group (see the [module docs](super)).
#[derive(Debug, Clone)]
pub struct Group {
    pub(super) group_id: String,
    pub(super) config: GroupConfig,
    pub(super) state: GroupState,
    pub(super) previous_state: GroupState,
    pub(super) state_timestamp_ms: i64,
    pub(super) generation_id: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol_name: Option<String>,
    pub(super) leader_id: Option<String>,
    /// In join order: the first is the default leader.
    pub(super) members: Vec<Member>,
    /// group.instance.id → member id.
    pub(super) static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED → when they lapse.
    pub(super) pending_members: BTreeMap<String, i64>,
    /// Members that have not sent SyncGroup since the join completed.
    pub(super) pending_sync: BTreeSet<String>,
    /// A member joined during the initial delay: extend it.
    pub(super) new_member_added: bool,
    pub(super) join_timer: Option<JoinTimer>,
    pub(super) sync_timer: Option<SyncTimer>,
    pub(super) pending_writes: BTreeMap<u64, PendingWrite>,
    pub(super) next_write_seq: u64,
    pub(super) generated_ids: u64,
}

impl Group {
    /// A new, Empty group (Kafka creates one on the first JoinGroup with an empty member
    /// id, or on the first commit with generation -1).
    pub fn new(group_id: impl Into<String>, config: GroupConfig, now_ms: i64) -> Group {
        Group {
            group_id: group_id.into(),
            config,
            state: GroupState::Empty,
            previous_state: GroupState::Dead,
            state_timestamp_ms: now_ms,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: Vec::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            join_timer: None,
            sync_timer: None,
            pending_writes: BTreeMap::new(),
            next_write_seq: 1,
            generated_ids: 0,
        }
    }

    /// Rebuilds a group from its record after a coordinator failover: Stable with the
    /// recorded generation, leader, protocol and assignments if it has members (each
    /// gets a full session timeout from `now_ms` to heartbeat), otherwise Empty.
    pub fn load(metadata: GroupMetadata, config: GroupConfig, now_ms: i64) -> Group {
        let mut g = Group::new(metadata.group_id, config, now_ms);
        g.generation_id = metadata.generation_id;
        g.protocol_type = Some(metadata.protocol_type).filter(|t| !t.is_empty());
        g.protocol_name = metadata.protocol_name;
        if metadata.current_state_timestamp_ms >= 0 {
            g.state_timestamp_ms = metadata.current_state_timestamp_ms;
        }
        for m in metadata.members {
            let protocols = g
                .protocol_name
                .iter()
                .map(|name| Protocol::new(name.clone(), m.subscription.clone()))
                .collect();
            if let Some(instance) = &m.group_instance_id {
                g.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            g.members.push(Member {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocols,
                assignment: m.assignment,
                last_heartbeat_ms: now_ms,
                awaiting_join: false,
                awaiting_sync: false,
                is_new: false,
                session_deadline_ms: Some(now_ms + i64::from(m.session_timeout_ms)),
            });
        }
        g.leader_id = metadata
            .leader_id
            .filter(|l| g.members.iter().any(|m| &m.member_id == l))
            .or_else(|| g.members.first().map(|m| m.member_id.clone()));
        if !g.members.is_empty() {
            g.state = GroupState::Stable;
            g.previous_state = GroupState::CompletingRebalance;
        }
        g
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    /// When the group entered its current state.
    pub fn state_timestamp_ms(&self) -> i64 {
        self.state_timestamp_ms
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The protocol chosen for the current generation.
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader_id(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }

    /// The members in join order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.member_id == member_id)
    }

    /// The member id a static member currently has.
    pub fn static_member_id(&self, group_instance_id: &str) -> Option<&str> {
        self.static_members
            .get(group_instance_id)
            .map(String::as_str)
    }

    /// True for an id handed out with MEMBER_ID_REQUIRED that has not joined yet.
    pub fn is_pending_member(&self, member_id: &str) -> bool {
        self.pending_members.contains_key(member_id)
    }

    /// The topics the members subscribe to, as Kafka's `ClassicGroup.subscribedTopics`:
    /// none for an empty group, `None` (unknown: every topic counts as subscribed) when
    /// the group is not a consumer group or a subscription does not parse.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in &self.members {
            topics.extend(super::member::subscribed_topics(m.metadata_for(protocol)?)?);
        }
        Some(topics)
    }

    /// The group record as it stands (assignments of the current generation).
    pub fn metadata(&self) -> GroupMetadata {
        self.metadata_with(None)
    }

    /// DescribeGroups data.
    pub fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        let members = if self.state == GroupState::Dead {
            Vec::new()
        } else {
            self.members
                .iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(protocol).cloned().unwrap_or_default()
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect()
        };
        GroupDescription {
            group_id: self.group_id.clone(),
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable {
                protocol.to_owned()
            } else {
                String::new()
            },
            members,
        }
    }

    /// ListGroups data.
    pub fn overview(&self) -> GroupOverview {
        GroupOverview {
            group_id: self.group_id.clone(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            state: self.state,
        }
    }

    /// How this group's committed offsets expire; `None` while they do not.
    pub fn offset_expiry(&self) -> Option<OffsetExpiry> {
        match (&self.protocol_type, self.state) {
            (_, GroupState::Dead) => None,
            (None, _) => Some(OffsetExpiry::SinceCommit),
            (Some(_), GroupState::Empty) => Some(OffsetExpiry::Since(self.state_timestamp_ms)),
            (Some(_), _) => None,
        }
    }

    /// The earliest timer deadline: call [`Group::tick`] at that time.
    pub fn next_deadline(&self) -> Option<i64> {
        if self.state == GroupState::Dead {
            return None;
        }
        let members = self.members.iter().filter_map(|m| m.session_deadline_ms);
        let pending = self.pending_members.values().copied();
        let join = self.join_timer.map(JoinTimer::at);
        let sync = self.sync_timer.map(|s| s.at);
        members.chain(pending).chain(join).chain(sync).min()
    }

    // ----- Coordinator changes, deletion -----------------------------------------------

    /// This broker no longer coordinates the group (it lost leadership of the
    /// `__consumer_offsets` partition): the group is Dead here and every parked request
    /// is answered NOT_COORDINATOR, so clients look for the new coordinator.
    pub fn unload(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut fx = Vec::new();
        for m in &mut self.members {
            if m.awaiting_join {
                m.awaiting_join = false;
                fx.push(Effect::join_error(
                    &m.member_id,
                    ResponseError::NotCoordinator,
                    &m.member_id,
                ));
            }
            if m.awaiting_sync {
                m.awaiting_sync = false;
                fx.push(Effect::sync_error(
                    &m.member_id,
                    ResponseError::NotCoordinator,
                ));
            }
        }
        self.clear_timers();
        if self.state != GroupState::Dead {
            self.transition(GroupState::Dead, now_ms, "unloaded", &mut fx);
        }
        fx
    }

    /// DeleteGroups: only an Empty group can go (the caller then writes tombstones for
    /// its record and offsets and drops it).
    pub fn delete(&mut self, now_ms: i64) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => {
                self.clear_timers();
                let mut fx = Vec::new();
                self.transition(GroupState::Dead, now_ms, "deleted", &mut fx);
                Ok(())
            }
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }

    fn clear_timers(&mut self) {
        self.join_timer = None;
        self.sync_timer = None;
        self.pending_members.clear();
        self.pending_sync.clear();
        self.pending_writes.clear();
        for m in &mut self.members {
            m.session_deadline_ms = None;
        }
    }

    // ----- Helpers ---------------------------------------------------------------------

    /// Kafka's `validateMember`: a given instance id must map to this member id.
    pub(super) fn validate_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance {
            match self.static_members.get(instance) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(current) if current != member_id => {
                    return Err(ResponseError::FencedInstanceId)
                }
                Some(_) => {}
            }
        }
        if self.member(member_id).is_none() {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    pub(super) fn transition(
        &mut self,
        to: GroupState,
        now: i64,
        reason: &str,
        fx: &mut Vec<Effect>,
    ) {
        debug_assert!(
            to.can_follow(self.state),
            "invalid transition {} -> {to}",
            self.state
        );
        let from = self.state;
        self.previous_state = from;
        self.state = to;
        self.state_timestamp_ms = now;
        fx.push(Effect::StateChanged {
            from,
            to,
            generation_id: self.generation_id,
            reason: reason.to_owned(),
        });
    }

    pub(super) fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub(super) fn member_mut(&mut self, member_id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.member_id == member_id)
    }
}

/// Kafka's mapping of a failed group-record append to the error members see
/// (`appendGroupMetadataErrorToResponseError`).
pub fn append_error_to_response(error: ResponseError) -> ResponseError {
    use ResponseError::*;
    match error {
        UnknownTopicOrPartition | NotEnoughReplicas | RequestTimedOut => CoordinatorNotAvailable,
        NotLeaderOrFollower | KafkaStorageError => NotCoordinator,
        MessageTooLarge | RecordListTooLarge | InvalidFetchSize => UnknownServerError,
        other => other,
    }
}
