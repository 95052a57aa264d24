//! Liveness and departures: Heartbeat, LeaveGroup, the group checks of OffsetCommit,
//! removing members, and the timers that [`Group::tick`] fires (session expiry, the
//! initial delay and rebalance timeout of the join phase, the sync timeout, lapsed
//! MEMBER_ID_REQUIRED ids).

use super::messages::{Effect, HeartbeatRequest, LeaveMember, LeaveOutcome, RemoveReason};
use super::state::{Group, GroupState, JoinTimer};
use kafka_protocol::ResponseError;

/// A timer that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Due {
    Join,
    Sync,
    Session(String),
    PendingMember(String),
}

/// Bounds the timer loop of one `tick`. Every firing removes a timer or moves it past
/// `now`, so the loop ends well before this; the bound only guards against a bug.
const MAX_FIRINGS_PER_TICK: usize = 1_000_000;

impl Group {
    // ----- Heartbeat, LeaveGroup, OffsetCommit -----------------------------------------

    /// Handles a Heartbeat request (Kafka's `classicGroupHeartbeat`): it resets the
    /// member's session; REBALANCE_IN_PROGRESS tells the member to rejoin.
    pub fn heartbeat(&mut self, now_ms: i64, req: &HeartbeatRequest) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        self.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty => Err(ResponseError::UnknownMemberId),
            GroupState::Dead => Err(ResponseError::CoordinatorNotAvailable),
            // Clients may heartbeat once they have the join answer.
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.touch(&req.member_id, now_ms);
                Ok(())
            }
            GroupState::PreparingRebalance => {
                self.touch(&req.member_id, now_ms);
                Err(ResponseError::RebalanceInProgress)
            }
        }
    }

    fn touch(&mut self, member_id: &str, now: i64) {
        if let Some(m) = self.member_mut(member_id) {
            m.last_heartbeat_ms = now;
            m.session_deadline_ms = Some(now + i64::from(m.session_timeout_ms));
        }
    }

    /// Handles a LeaveGroup request (Kafka's `classicGroupLeave`). Any member leaving
    /// starts a rebalance; the last one leaving makes the group Empty (through a
    /// rebalance that bumps the generation, as in Kafka).
    pub fn leave(&mut self, now_ms: i64, members: &[LeaveMember]) -> LeaveOutcome {
        let mut fx = Vec::new();
        if self.state == GroupState::Dead {
            return LeaveOutcome {
                result: Err(ResponseError::CoordinatorNotAvailable),
                effects: fx,
            };
        }
        let mut results = Vec::with_capacity(members.len());
        for lm in members {
            let r = if lm.member_id.is_empty() {
                // An administrative removal by group.instance.id.
                let current = lm
                    .group_instance_id
                    .as_deref()
                    .and_then(|i| self.static_members.get(i))
                    .cloned();
                match current {
                    Some(id) => {
                        self.remove_member_and_update(now_ms, &id, RemoveReason::Left, &mut fx);
                        Ok(())
                    }
                    None => Err(ResponseError::UnknownMemberId),
                }
            } else if self.pending_members.contains_key(&lm.member_id) {
                self.remove_pending_member_and_update(now_ms, &lm.member_id, &mut fx);
                Ok(())
            } else {
                self.validate_member(&lm.member_id, lm.group_instance_id.as_deref())
                    .map(|()| {
                        self.remove_member_and_update(
                            now_ms,
                            &lm.member_id,
                            RemoveReason::Left,
                            &mut fx,
                        );
                    })
            };
            results.push(r);
        }
        LeaveOutcome {
            result: Ok(results),
            effects: fx,
        }
    }

    /// Checks an OffsetCommit against the group (Kafka's `validateOffsetCommit`) and, for
    /// a member of an active generation, counts it as a heartbeat. Generation -1 with no
    /// member id commits for groups that do not use group management: allowed only while
    /// the group is Empty.
    pub fn validate_commit(
        &mut self,
        now_ms: i64,
        member_id: &str,
        generation_id: i32,
        group_instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            self.validate_member(member_id, group_instance_id)?;
            if generation_id != self.generation_id {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if self.state != GroupState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        match self.state {
            // The member has the join answer but not its assignment yet.
            GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::Stable | GroupState::PreparingRebalance => {
                self.touch(member_id, now_ms);
                Ok(())
            }
            GroupState::Empty | GroupState::Dead => Ok(()),
        }
    }

    // ----- Removal ---------------------------------------------------------------------

    /// Removes a member; its parked requests are answered UNKNOWN_MEMBER_ID. Returns
    /// false if there was no such member.
    pub(super) fn remove_member_raw(
        &mut self,
        member_id: &str,
        reason: RemoveReason,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let Some(pos) = self.members.iter().position(|m| m.member_id == member_id) else {
            return false;
        };
        let m = self.members.remove(pos);
        if m.awaiting_join {
            fx.push(Effect::join_error(
                member_id,
                ResponseError::UnknownMemberId,
                "",
            ));
        }
        if m.awaiting_sync {
            fx.push(Effect::sync_error(
                member_id,
                ResponseError::UnknownMemberId,
            ));
        }
        if let Some(instance) = &m.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_timer = None;
        }
        if self.leader_id.as_deref() == Some(member_id) {
            self.leader_id = self.members.first().map(|m| m.member_id.clone());
        }
        fx.push(Effect::MemberRemoved {
            member_id: m.member_id,
            group_instance_id: m.group_instance_id,
            reason,
        });
        true
    }

    /// Removes a member and lets the group react (Kafka's
    /// `removeMemberAndUpdateClassicGroup`).
    fn remove_member_and_update(
        &mut self,
        now: i64,
        member_id: &str,
        reason: RemoveReason,
        fx: &mut Vec<Effect>,
    ) {
        let why = format!("member {member_id} removed: {reason:?}");
        self.remove_member_raw(member_id, reason, fx);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance_or_complete_join(now, &why, fx);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join_phase(now, fx),
            _ => {}
        }
    }

    fn remove_pending_member_and_update(
        &mut self,
        now: i64,
        member_id: &str,
        fx: &mut Vec<Effect>,
    ) {
        self.pending_members.remove(member_id);
        self.maybe_complete_join_phase(now, fx);
    }

    // ----- Timers ----------------------------------------------------------------------

    /// Fires every timer due at `now_ms`: session expiry, the initial delay and the
    /// rebalance timeout of the join phase, the sync timeout, and lapsed member ids that
    /// were handed out with MEMBER_ID_REQUIRED.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut fx = Vec::new();
        for _ in 0..MAX_FIRINGS_PER_TICK {
            if self.state == GroupState::Dead {
                break;
            }
            let Some(due) = self.next_due(now_ms) else {
                break;
            };
            self.fire(now_ms, due, &mut fx);
        }
        fx
    }

    /// The earliest timer due at `now` (group timers first on a tie, then members in join
    /// order), so that firing is deterministic.
    fn next_due(&self, now: i64) -> Option<Due> {
        let mut best: Option<(i64, Due)> = None;
        let mut consider = |at: i64, due: Due| {
            if at <= now && best.as_ref().is_none_or(|(b, _)| at < *b) {
                best = Some((at, due));
            }
        };
        if let Some(t) = self.join_timer {
            consider(t.at(), Due::Join);
        }
        if let Some(t) = self.sync_timer {
            consider(t.at, Due::Sync);
        }
        for m in &self.members {
            if let Some(at) = m.session_deadline_ms {
                consider(at, Due::Session(m.member_id.clone()));
            }
        }
        for (id, at) in &self.pending_members {
            consider(*at, Due::PendingMember(id.clone()));
        }
        best.map(|(_, due)| due)
    }

    fn fire(&mut self, now: i64, due: Due, fx: &mut Vec<Effect>) {
        match due {
            Due::Join => match self.join_timer.take() {
                Some(JoinTimer::Initial {
                    delay_ms,
                    remaining_ms,
                    ..
                }) if self.new_member_added && remaining_ms != 0 => {
                    // Members are still arriving: wait once more (Kafka's arithmetic).
                    self.new_member_added = false;
                    let next_delay = self.config.initial_rebalance_delay_ms.min(remaining_ms);
                    self.join_timer = Some(JoinTimer::Initial {
                        at: now + next_delay,
                        delay_ms: next_delay,
                        remaining_ms: (remaining_ms - delay_ms).max(0),
                    });
                }
                Some(_) => self.complete_join(now, fx),
                None => {}
            },
            Due::Sync => {
                let Some(timer) = self.sync_timer.take() else {
                    return;
                };
                let syncing = matches!(
                    self.state,
                    GroupState::CompletingRebalance | GroupState::Stable
                );
                if timer.generation_id != self.generation_id
                    || !syncing
                    || self.pending_sync.is_empty()
                {
                    return;
                }
                let late: Vec<String> = self.pending_sync.iter().cloned().collect();
                for id in &late {
                    self.remove_member_raw(id, RemoveReason::SyncTimeout, fx);
                }
                let reason = format!("members {late:?} did not sync in time");
                self.prepare_rebalance(now, &reason, fx);
            }
            Due::Session(id) => {
                let Some(m) = self.member_mut(&id) else {
                    return;
                };
                m.session_deadline_ms = None;
                if !m.has_satisfied_heartbeat() {
                    self.remove_member_and_update(now, &id, RemoveReason::SessionTimeout, fx);
                }
            }
            Due::PendingMember(id) => self.remove_pending_member_and_update(now, &id, fx),
        }
    }
}
