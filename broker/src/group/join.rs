//! JoinGroup and the rebalance it drives (Kafka's `classicGroupJoin`,
//! `prepareRebalance` and `completeClassicGroupJoin`): new, returning and static
//! members, the initial delay, and the end of the join phase, where the generation goes
//! up, the protocol is voted on, the leader is kept or replaced and the parked joins are
//! answered.

use super::member::{self, Member, Protocol};
use super::messages::{
    Effect, JoinMember, JoinOutcome, JoinRequest, JoinResult, RemoveReason, SyncResult,
};
use super::state::{Group, GroupState, JoinTimer, PendingWrite, SyncTimer};
use bytes::Bytes;
use kafka_protocol::ResponseError;

/// The most bytes of a client id or instance id a generated member id starts with.
const MEMBER_ID_PREFIX_MAX: usize = 255;

impl Group {
    // ----- JoinGroup -------------------------------------------------------------------

    /// Handles a JoinGroup request (Kafka's `classicGroupJoin`).
    pub fn join(&mut self, now_ms: i64, req: JoinRequest) -> JoinOutcome {
        let mut fx = Vec::new();
        let member_id = self.join_inner(now_ms, req, &mut fx);
        JoinOutcome {
            member_id,
            effects: fx,
        }
    }

    fn join_inner(&mut self, now: i64, req: JoinRequest, fx: &mut Vec<Effect>) -> String {
        let key = req.member_id.clone();
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            fx.push(Effect::join_error(
                &key,
                ResponseError::InvalidSessionTimeout,
                &key,
            ));
            return key;
        }
        if !self.accepts_joining_member(&key) {
            if self.remove_member_raw(&key, RemoveReason::GroupFull, fx) {
                self.maybe_complete_join_phase(now, fx);
            }
            fx.push(Effect::join_error(
                &key,
                ResponseError::GroupMaxSizeReached,
                "",
            ));
            return key;
        }
        if key.is_empty() {
            self.join_new_member(now, req, fx)
        } else {
            self.join_existing_member(now, req, fx);
            key
        }
    }

    /// Kafka's `acceptJoiningMember`: enforces `group.max.size`.
    fn accepts_joining_member(&self, member_id: &str) -> bool {
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                self.member(member_id).is_some_and(|m| m.awaiting_join)
                    || self.members.iter().filter(|m| m.awaiting_join).count()
                        < self.config.max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.member(member_id).is_some() || self.members.len() < self.config.max_size
            }
        }
    }

    /// Kafka's `supportsProtocols`: an Empty group takes any non-empty protocol type and
    /// list; otherwise the type must match and one protocol must be supported by all.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == GroupState::Empty {
            !protocol_type.is_empty() && !protocols.is_empty()
        } else {
            self.protocol_type.as_deref() == Some(protocol_type)
                && member::supports_any(&self.members, protocols)
        }
    }

    fn join_new_member(&mut self, now: i64, req: JoinRequest, fx: &mut Vec<Effect>) -> String {
        if self.state == GroupState::Dead {
            fx.push(Effect::join_error(
                "",
                ResponseError::CoordinatorNotAvailable,
                "",
            ));
            return String::new();
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            fx.push(Effect::join_error(
                "",
                ResponseError::InconsistentGroupProtocol,
                "",
            ));
            return String::new();
        }
        let new_id = self.generate_member_id(&req);
        match req.group_instance_id.clone() {
            Some(instance) => match self.static_members.get(&instance).cloned() {
                Some(old_id) => {
                    self.update_static_member(now, req, &instance, &old_id, &new_id, fx);
                }
                None => self.add_member_and_rebalance(now, req, &new_id, fx),
            },
            None if req.require_known_member_id => {
                self.pending_members
                    .insert(new_id.clone(), now + i64::from(req.session_timeout_ms));
                fx.push(Effect::join_error(
                    &new_id,
                    ResponseError::MemberIdRequired,
                    &new_id,
                ));
            }
            None => self.add_member_and_rebalance(now, req, &new_id, fx),
        }
        new_id
    }

    fn join_existing_member(&mut self, now: i64, req: JoinRequest, fx: &mut Vec<Effect>) {
        let id = req.member_id.clone();
        if self.state == GroupState::Dead {
            fx.push(Effect::join_error(
                &id,
                ResponseError::CoordinatorNotAvailable,
                &id,
            ));
            return;
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            fx.push(Effect::join_error(
                &id,
                ResponseError::InconsistentGroupProtocol,
                &id,
            ));
            return;
        }
        if self.pending_members.contains_key(&id) {
            if req.group_instance_id.is_some() {
                // Pending ids are only handed to dynamic members (Kafka throws here).
                fx.push(Effect::join_error(
                    &id,
                    ResponseError::UnknownServerError,
                    &id,
                ));
                return;
            }
            self.add_member_and_rebalance(now, req, &id, fx);
            return;
        }
        if let Err(e) = self.validate_member(&id, req.group_instance_id.as_deref()) {
            fx.push(Effect::join_error(&id, e, &id));
            return;
        }
        let is_leader = self.is_leader(&id);
        let matches = self.member(&id).is_some_and(|m| m.matches(&req.protocols));
        match self.state {
            GroupState::PreparingRebalance => {
                let reason = format!("member {id} joining during PreparingRebalance");
                self.update_member_and_rebalance(now, &req, &reason, fx);
            }
            GroupState::CompletingRebalance if matches => {
                // It probably missed the join answer: send this generation's again.
                fx.push(self.current_join_response(&id, is_leader));
            }
            GroupState::Stable if matches && !is_leader => {
                // A follower with unchanged metadata: nothing to rebalance for.
                fx.push(self.current_join_response(&id, false));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                // The leader rejoining (it saw a metadata change that affects the
                // assignment), or a member whose protocols changed.
                let reason = if matches {
                    format!("leader {id} rejoining during {}", self.state)
                } else {
                    format!("member {id} changed its protocols during {}", self.state)
                };
                self.update_member_and_rebalance(now, &req, &reason, fx);
            }
            GroupState::Empty | GroupState::Dead => {
                fx.push(Effect::join_error(&id, ResponseError::UnknownMemberId, &id));
            }
        }
    }

    /// The join answer for the current generation, outside a rebalance.
    fn current_join_response(&self, member_id: &str, with_members: bool) -> Effect {
        Effect::JoinResponse {
            member_id: member_id.to_owned(),
            result: Ok(JoinResult {
                member_id: member_id.to_owned(),
                generation_id: self.generation_id,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol_name.clone(),
                leader_id: self.leader_id.clone().unwrap_or_default(),
                members: if with_members {
                    self.join_members()
                } else {
                    Vec::new()
                },
            }),
        }
    }

    fn generate_member_id(&mut self, req: &JoinRequest) -> String {
        let mut prefix = req
            .group_instance_id
            .as_deref()
            .unwrap_or(req.client_id.as_str());
        // Member ids are stored with an INT16 length: keep the client's part short.
        let mut cut = prefix.len().min(MEMBER_ID_PREFIX_MAX);
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix = &prefix[..cut];
        let base = if req.new_member_id_suffix.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}-{}", req.new_member_id_suffix)
        };
        let mut id = base.clone();
        if req.new_member_id_suffix.is_empty() {
            self.generated_ids += 1;
            id = format!("{base}-{}", self.generated_ids);
        }
        while self.member(&id).is_some() || self.pending_members.contains_key(&id) {
            self.generated_ids += 1;
            id = format!("{base}-{}", self.generated_ids);
        }
        id
    }

    fn add_member_and_rebalance(
        &mut self,
        now: i64,
        req: JoinRequest,
        member_id: &str,
        fx: &mut Vec<Effect>,
    ) {
        let reason = format!(
            "adding member {member_id}{}",
            req.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        let member = Member {
            member_id: member_id.to_owned(),
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            last_heartbeat_ms: now,
            awaiting_join: true,
            awaiting_sync: false,
            is_new: true,
            // It cannot heartbeat before its join completes: bound how long it may wait.
            session_deadline_ms: Some(now + self.config.new_member_join_timeout_ms.max(1)),
        };
        if self.state == GroupState::PreparingRebalance && self.previous_state == GroupState::Empty
        {
            self.new_member_added = true;
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        self.pending_members.remove(&member.member_id);
        self.members.push(member);
        self.maybe_prepare_rebalance_or_complete_join(now, &reason, fx);
    }

    fn update_member_and_rebalance(
        &mut self,
        now: i64,
        req: &JoinRequest,
        reason: &str,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(m) = self.member_mut(&req.member_id) {
            m.protocols = req.protocols.clone();
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.awaiting_join = true;
        }
        self.maybe_prepare_rebalance_or_complete_join(now, reason, fx);
    }

    /// A static member came back without its member id: it takes over under `new_id`
    /// and the old id is fenced (Kafka's `updateStaticMemberThenRebalanceOrCompleteJoin`).
    fn update_static_member(
        &mut self,
        now: i64,
        req: JoinRequest,
        instance: &str,
        old_id: &str,
        new_id: &str,
        fx: &mut Vec<Effect>,
    ) {
        let leader_before = self.leader_id.clone();
        self.replace_static_member(instance, old_id, new_id, fx);
        let Some(m) = self.member_mut(new_id) else {
            return;
        };
        let old_protocols = std::mem::replace(&mut m.protocols, req.protocols);
        let old_rebalance_timeout_ms =
            std::mem::replace(&mut m.rebalance_timeout_ms, req.rebalance_timeout_ms);
        let old_session_timeout_ms =
            std::mem::replace(&mut m.session_timeout_ms, req.session_timeout_ms);
        m.awaiting_join = true;
        m.last_heartbeat_ms = now;
        m.session_deadline_ms = Some(now + i64::from(m.session_timeout_ms));
        let reason = format!("static member {instance} rejoined as {new_id}");
        match self.state {
            GroupState::Stable => {
                if member::select_protocol(&self.members) == self.protocol_name {
                    // The assignment still holds: record the new id, answer once written.
                    let write = PendingWrite::StaticReplacement {
                        generation_id: self.generation_id,
                        group_instance_id: instance.to_owned(),
                        old_member_id: old_id.to_owned(),
                        new_member_id: new_id.to_owned(),
                        old_protocols,
                        old_rebalance_timeout_ms,
                        old_session_timeout_ms,
                        leader_before,
                    };
                    let metadata = self.metadata();
                    self.persist(metadata, Some(write), fx);
                } else {
                    let reason = format!("{reason}, changing the group's protocol");
                    self.maybe_prepare_rebalance_or_complete_join(now, &reason, fx);
                }
            }
            // The leader may already be assigning to the old id: assign again.
            GroupState::CompletingRebalance => self.prepare_rebalance(now, &reason, fx),
            GroupState::PreparingRebalance => self.maybe_complete_join_phase(now, fx),
            GroupState::Empty | GroupState::Dead => {
                // Unreachable: a group with a static member has members and is alive.
                if let Some(m) = self.member_mut(new_id) {
                    m.awaiting_join = false;
                }
                fx.push(Effect::join_error(
                    new_id,
                    ResponseError::UnknownServerError,
                    "",
                ));
            }
        }
    }

    /// Moves a static member from `old_id` to `new_id`, keeping its place, assignment and
    /// leadership; whatever `old_id` has parked is answered FENCED_INSTANCE_ID.
    pub(super) fn replace_static_member(
        &mut self,
        instance: &str,
        old_id: &str,
        new_id: &str,
        fx: &mut Vec<Effect>,
    ) {
        let Some(m) = self.member_mut(old_id) else {
            return;
        };
        if m.awaiting_join {
            fx.push(Effect::join_error(
                old_id,
                ResponseError::FencedInstanceId,
                old_id,
            ));
        }
        if m.awaiting_sync {
            fx.push(Effect::sync_error(old_id, ResponseError::FencedInstanceId));
        }
        m.member_id = new_id.to_owned();
        m.awaiting_join = false;
        m.awaiting_sync = false;
        if self.leader_id.as_deref() == Some(old_id) {
            self.leader_id = Some(new_id.to_owned());
        }
        self.static_members
            .insert(instance.to_owned(), new_id.to_owned());
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.to_owned());
        }
        fx.push(Effect::MemberRemoved {
            member_id: old_id.to_owned(),
            group_instance_id: Some(instance.to_owned()),
            reason: RemoveReason::Replaced {
                new_member_id: new_id.to_owned(),
            },
        });
    }

    // ----- Rebalance -------------------------------------------------------------------

    fn can_rebalance(&self) -> bool {
        GroupState::PreparingRebalance.can_follow(self.state)
    }

    pub(super) fn maybe_prepare_rebalance_or_complete_join(
        &mut self,
        now: i64,
        reason: &str,
        fx: &mut Vec<Effect>,
    ) {
        if self.can_rebalance() {
            self.prepare_rebalance(now, reason, fx);
        } else {
            self.maybe_complete_join_phase(now, fx);
        }
    }

    pub(super) fn prepare_rebalance(&mut self, now: i64, reason: &str, fx: &mut Vec<Effect>) {
        if self.state == GroupState::CompletingRebalance {
            // Parked syncs are for a generation that will not happen: rejoin.
            self.reset_and_propagate_assignment_error(now, ResponseError::RebalanceInProgress, fx);
        }
        self.pending_sync.clear();
        self.sync_timer = None;
        let initial = self.state == GroupState::Empty;
        if initial {
            self.new_member_added = false;
            let delay_ms = self.config.initial_rebalance_delay_ms.max(0);
            self.join_timer = Some(JoinTimer::Initial {
                at: now + delay_ms,
                delay_ms,
                remaining_ms: (self.rebalance_timeout_ms() - delay_ms).max(0),
            });
        }
        self.transition(GroupState::PreparingRebalance, now, reason, fx);
        if !initial {
            if self.has_all_members_joined() {
                self.complete_join(now, fx);
            } else {
                self.join_timer = Some(JoinTimer::Rebalance {
                    at: now + self.rebalance_timeout_ms(),
                });
            }
        }
    }

    /// Completes the join phase if everybody is in, except during the initial delay.
    /// Completes the join once every member has rejoined, except during the initial
    /// delay of a group that was Empty (only its timer ends that, as in Kafka).
    pub(super) fn maybe_complete_join_phase(&mut self, now: i64, fx: &mut Vec<Effect>) {
        if self.state == GroupState::PreparingRebalance
            && self.previous_state != GroupState::Empty
            && self.has_all_members_joined()
        {
            self.complete_join(now, fx);
        }
    }

    pub(super) fn has_all_members_joined(&self) -> bool {
        self.members.iter().all(|m| m.awaiting_join) && self.pending_members.is_empty()
    }

    /// The group's rebalance timeout: the largest of its members'.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .iter()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Ends the join phase (Kafka's `completeClassicGroupJoin`): dynamic members that did
    /// not rejoin are dropped, the generation goes up, the protocol is chosen and every
    /// parked join is answered; or the group becomes Empty.
    pub(super) fn complete_join(&mut self, now: i64, fx: &mut Vec<Effect>) {
        self.join_timer = None;
        let missing: Vec<String> = self
            .members
            .iter()
            .filter(|m| !m.awaiting_join && !m.is_static())
            .map(|m| m.member_id.clone())
            .collect();
        for id in missing {
            self.remove_member_raw(&id, RemoveReason::RebalanceTimeout, fx);
        }
        if self.state == GroupState::Dead {
            return;
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Only static members that have not rejoined are left: wait for them (or
            // for their sessions to expire).
            self.join_timer = Some(JoinTimer::Rebalance {
                at: now + self.rebalance_timeout_ms().max(1),
            });
            return;
        }
        self.generation_id += 1;
        self.pending_sync.clear();
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty, now, "no members left", fx);
            let metadata = self.metadata();
            self.persist(metadata, None, fx);
            return;
        }
        self.protocol_name = member::select_protocol(&self.members);
        self.transition(
            GroupState::CompletingRebalance,
            now,
            "all members joined or the rebalance timed out",
            fx,
        );
        let all = self.join_members();
        let leader = self.leader_id.clone().unwrap_or_default();
        for i in 0..self.members.len() {
            let m = &mut self.members[i];
            if m.awaiting_join {
                m.awaiting_join = false;
                fx.push(Effect::JoinResponse {
                    member_id: m.member_id.clone(),
                    result: Ok(JoinResult {
                        member_id: m.member_id.clone(),
                        generation_id: self.generation_id,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        leader_id: leader.clone(),
                        members: if m.member_id == leader {
                            all.clone()
                        } else {
                            Vec::new()
                        },
                    }),
                });
            }
            m.is_new = false;
            m.last_heartbeat_ms = now;
            m.session_deadline_ms = Some(now + i64::from(m.session_timeout_ms));
            self.pending_sync.insert(m.member_id.clone());
        }
        self.sync_timer = Some(SyncTimer {
            at: now + self.rebalance_timeout_ms(),
            generation_id: self.generation_id,
        });
    }

    /// Keeps the leader if it rejoined, else picks the first member that did. False if
    /// there is no leader or nobody rejoined.
    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = &self.leader_id else {
            return false;
        };
        if self.member(leader).is_some_and(|m| m.awaiting_join) {
            return true;
        }
        match self.members.iter().find(|m| m.awaiting_join) {
            Some(m) => {
                self.leader_id = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    /// Every member with its metadata for the chosen protocol (the leader's join answer).
    fn join_members(&self) -> Vec<JoinMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .iter()
            .map(|m| JoinMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata_for(protocol).cloned().unwrap_or_default(),
            })
            .collect()
    }

    pub(super) fn reset_and_propagate_assignment_error(
        &mut self,
        now: i64,
        error: ResponseError,
        fx: &mut Vec<Effect>,
    ) {
        for m in &mut self.members {
            m.assignment = Bytes::new();
        }
        self.propagate_assignment(now, Some(error), fx);
    }

    /// Answers every parked sync with its member's assignment, or with `error`.
    pub(super) fn propagate_assignment(
        &mut self,
        now: i64,
        error: Option<ResponseError>,
        fx: &mut Vec<Effect>,
    ) {
        for m in &mut self.members {
            if !m.awaiting_sync {
                continue;
            }
            m.awaiting_sync = false;
            let result = match error {
                Some(e) => Err(e),
                None => Ok(SyncResult {
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: m.assignment.clone(),
                }),
            };
            fx.push(Effect::SyncResponse {
                member_id: m.member_id.clone(),
                result,
            });
            // Its session may have lapsed while it waited: give it a full one.
            m.last_heartbeat_ms = now;
            m.session_deadline_ms = Some(now + i64::from(m.session_timeout_ms));
        }
    }
}
