//! SyncGroup and the group record writes (Kafka's `classicGroupSync` and the
//! `storeGroup` callbacks): the leader's assignment is written before anyone gets it.

use super::messages::{Effect, JoinError, JoinResult, PersistRequest, SyncRequest, SyncResult};
use super::metadata::{GroupMetadata, MemberMetadata};
use super::state::{Group, GroupState, PendingWrite};
use bytes::Bytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;

impl Group {
    // ----- SyncGroup -------------------------------------------------------------------

    /// Handles a SyncGroup request (Kafka's `classicGroupSync`). A follower's sync, and
    /// the leader's, stay parked until the leader's assignment is written
    /// ([`Group::persisted`]).
    pub fn sync(&mut self, now_ms: i64, req: SyncRequest) -> Vec<Effect> {
        let mut fx = Vec::new();
        let id = req.member_id.clone();
        if let Err(e) = self.validate_sync(&req) {
            fx.push(Effect::sync_error(&id, e));
            return fx;
        }
        match self.state {
            GroupState::Empty => fx.push(Effect::sync_error(&id, ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                fx.push(Effect::sync_error(&id, ResponseError::RebalanceInProgress));
            }
            GroupState::Dead => {
                fx.push(Effect::sync_error(
                    &id,
                    ResponseError::CoordinatorNotAvailable,
                ));
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = self.member_mut(&id) {
                    m.awaiting_sync = true;
                }
                self.remove_pending_sync(&id);
                let generation_id = self.generation_id;
                let in_flight = self.pending_writes.values().any(|w| {
                    matches!(w, PendingWrite::Assignment { generation_id: g, .. } if *g == generation_id)
                });
                if self.is_leader(&id) && !in_flight {
                    // Members the leader left out get an empty assignment.
                    let given: BTreeMap<String, Bytes> = req.assignments.into_iter().collect();
                    let assignments: BTreeMap<String, Bytes> = self
                        .members
                        .iter()
                        .map(|m| {
                            let a = given.get(&m.member_id).cloned().unwrap_or_default();
                            (m.member_id.clone(), a)
                        })
                        .collect();
                    let metadata = self.metadata_with(Some(&assignments));
                    let write = PendingWrite::Assignment {
                        generation_id,
                        assignments,
                    };
                    self.persist(metadata, Some(write), &mut fx);
                }
            }
            GroupState::Stable => {
                self.remove_pending_sync(&id);
                let protocol_type = self.protocol_type.clone();
                let protocol_name = self.protocol_name.clone();
                if let Some(m) = self.member_mut(&id) {
                    m.last_heartbeat_ms = now_ms;
                    m.session_deadline_ms = Some(now_ms + i64::from(m.session_timeout_ms));
                    fx.push(Effect::SyncResponse {
                        member_id: id,
                        result: Ok(SyncResult {
                            protocol_type,
                            protocol_name,
                            assignment: m.assignment.clone(),
                        }),
                    });
                }
            }
        }
        fx
    }

    fn validate_sync(&self, req: &SyncRequest) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        self.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| self.protocol_type.as_ref() != Some(t))
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| self.protocol_name.as_ref() != Some(n))
        {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        Ok(())
    }

    fn remove_pending_sync(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_timer = None;
        }
    }

    // ----- Persistence -----------------------------------------------------------------

    pub(super) fn persist(
        &mut self,
        metadata: GroupMetadata,
        write: Option<PendingWrite>,
        fx: &mut Vec<Effect>,
    ) {
        let seq = self.next_write_seq;
        self.next_write_seq += 1;
        if let Some(w) = write {
            self.pending_writes.insert(seq, w);
        }
        fx.push(Effect::Persist(PersistRequest { seq, metadata }));
    }

    /// Reports how the write of [`Effect::Persist`] `seq` ended. On success the answers
    /// it held are released: the syncs of a new generation (the group becomes Stable),
    /// or a replaced static member's join. On failure (pass the append error mapped to a
    /// group error, see [`append_error_to_response`]) those requests get the error; a
    /// failed assignment starts a new rebalance and a failed static replacement is undone.
    /// Writes the group no longer cares about (it moved on meanwhile) are ignored.
    pub fn persisted(
        &mut self,
        now_ms: i64,
        seq: u64,
        result: Result<(), ResponseError>,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(write) = self.pending_writes.remove(&seq) else {
            return fx;
        };
        match write {
            PendingWrite::Assignment {
                generation_id,
                assignments,
            } => {
                if self.state != GroupState::CompletingRebalance
                    || self.generation_id != generation_id
                {
                    return fx;
                }
                match result {
                    Ok(()) => {
                        for m in &mut self.members {
                            m.assignment =
                                assignments.get(&m.member_id).cloned().unwrap_or_default();
                        }
                        self.propagate_assignment(now_ms, None, &mut fx);
                        self.transition(GroupState::Stable, now_ms, "assignment stored", &mut fx);
                    }
                    Err(e) => {
                        self.reset_and_propagate_assignment_error(now_ms, e, &mut fx);
                        let reason = format!("storing the assignment failed: {e}");
                        self.maybe_prepare_rebalance_or_complete_join(now_ms, &reason, &mut fx);
                    }
                }
            }
            PendingWrite::StaticReplacement {
                generation_id,
                group_instance_id,
                old_member_id,
                new_member_id,
                old_protocols,
                old_rebalance_timeout_ms,
                old_session_timeout_ms,
                leader_before,
            } => {
                let still_waiting = self.state == GroupState::Stable
                    && self.generation_id == generation_id
                    && self.member(&new_member_id).is_some_and(|m| m.awaiting_join);
                if !still_waiting {
                    return fx;
                }
                let response = match result {
                    Ok(()) => Ok(JoinResult {
                        member_id: new_member_id.clone(),
                        generation_id: self.generation_id,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        // The leader as it was before the replacement: a replaced leader
                        // must not believe it leads and reassign a Stable group.
                        leader_id: leader_before.unwrap_or_default(),
                        members: Vec::new(),
                    }),
                    Err(e) => Err(JoinError {
                        error: e,
                        member_id: String::new(),
                    }),
                };
                if let Some(m) = self.member_mut(&new_member_id) {
                    m.awaiting_join = false;
                    m.last_heartbeat_ms = now_ms;
                    m.session_deadline_ms = Some(now_ms + i64::from(m.session_timeout_ms));
                    if response.is_err() {
                        m.protocols = old_protocols;
                        m.rebalance_timeout_ms = old_rebalance_timeout_ms;
                        m.session_timeout_ms = old_session_timeout_ms;
                    }
                }
                if response.is_err() {
                    self.replace_static_member(
                        &group_instance_id,
                        &new_member_id,
                        &old_member_id,
                        &mut fx,
                    );
                }
                fx.push(Effect::JoinResponse {
                    member_id: new_member_id,
                    result: response,
                });
            }
        }
        fx
    }

    pub(super) fn metadata_with(
        &self,
        assignments: Option<&BTreeMap<String, Bytes>>,
    ) -> GroupMetadata {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        GroupMetadata {
            group_id: self.group_id.clone(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .iter()
                .map(|m| MemberMetadata {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(protocol).cloned().unwrap_or_default(),
                    assignment: match assignments {
                        Some(a) => a.get(&m.member_id).cloned().unwrap_or_default(),
                        None => m.assignment.clone(),
                    },
                })
                .collect(),
        }
    }
}
