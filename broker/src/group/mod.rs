//! Consumer groups: the classic group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, and the group checks of OffsetCommit) as a pure state machine.
//!
//! A [`Group`] holds one group's members, generation, chosen protocol and leader, and
//! its timers as deadlines. Every operation takes the time in milliseconds and returns
//! [`Effect`]s instead of doing I/O, so every rule is tested without a network or a
//! clock. The behaviour is Kafka's (`GroupCoordinator` and `GroupMetadata` in 3.x,
//! `GroupMetadataManager` and `ClassicGroup` in 4.x):
//!
//! - **States.** Empty → PreparingRebalance (members join) → CompletingRebalance (the
//!   leader assigns) → Stable; any membership change goes back to PreparingRebalance.
//!   Dead once deleted or moved to another coordinator.
//! - **Join.** A member without an id gets `<client id>-<suffix>`; JoinGroup v4+ first
//!   answers MEMBER_ID_REQUIRED with that id and waits for the member to come back with
//!   it. Joins are answered together once every known member has rejoined, or when the
//!   rebalance timeout (the largest of the members') passes; members that did not
//!   rejoin are dropped. The first rebalance of an Empty group waits
//!   `group.initial.rebalance.delay.ms`, again each time a new member arrives, up to the
//!   rebalance timeout. Completion bumps the generation, picks the protocol by vote,
//!   keeps the leader if it rejoined (else the first member that did) and sends the
//!   leader every member's metadata.
//! - **Rejoins.** During Stable a follower rejoining with unchanged protocols gets the
//!   current generation back; the leader rejoining, or changed protocols, starts a
//!   rebalance. INCONSISTENT_GROUP_PROTOCOL when the protocol type differs or no
//!   protocol is shared with every member.
//! - **Sync.** The leader's SyncGroup carries the assignment; it is written to the log
//!   ([`Effect::Persist`]) and, once written ([`Group::persisted`]), every parked sync
//!   is answered and the group is Stable. Members that have not synced within the
//!   rebalance timeout are dropped and the group rebalances.
//! - **Liveness.** A member that does not heartbeat (or sync, or commit) within its
//!   session timeout is dropped and the group rebalances. A member parked in a join or
//!   sync is exempt; a member added in the current rebalance is not (it gets
//!   `new_member_join_timeout_ms`).
//! - **Static members** (`group.instance.id`). They are not dropped for failing to
//!   rejoin (only when their session expires). One that restarts and joins without its
//!   member id takes over under a new id and the old id is fenced (FENCED_INSTANCE_ID).
//!   During Stable, if the group's protocol would not change, it gets the current
//!   generation back without a rebalance (once the new id is written).
//! - **Heartbeat answers.** NONE in Stable and in CompletingRebalance (as current Kafka:
//!   clients heartbeat once they have the join answer; old brokers said
//!   REBALANCE_IN_PROGRESS there), REBALANCE_IN_PROGRESS in PreparingRebalance,
//!   ILLEGAL_GENERATION for another
//!   generation, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, COORDINATOR_NOT_AVAILABLE when
//!   Dead.
//!
//! # Driving a group
//!
//! The caller (the group coordinator) owns the groups, serialises the calls to each,
//! and does the I/O:
//!
//! 1. Park delayed requests. [`Group::join`] returns the member id the request is parked
//!    under; [`Group::sync`] parks under the request's member id. Keep one map for joins
//!    and one for syncs, member id → responder, and register before carrying out the
//!    effects (the answer may be among them).
//! 2. Carry out the effects in order: answer [`Effect::JoinResponse`] and
//!    [`Effect::SyncResponse`] through the parked responders; write each
//!    [`Effect::Persist`] to `__consumer_offsets` and report the outcome with
//!    [`Group::persisted`] (which may release more answers); log
//!    [`Effect::MemberRemoved`] and [`Effect::StateChanged`].
//! 3. Call [`Group::tick`] at [`Group::next_deadline`] (and after any call that may have
//!    moved it), and carry out its effects the same way.
//! 4. Commits: check [`Group::validate_commit`], write the offsets, keep them in an
//!    [`OffsetStore`]; expire them with [`Group::offset_expiry`].
//! 5. After a failover, rebuild each group from its last record with [`Group::load`];
//!    when the partition moves away, [`Group::unload`] answers what was parked.
//!
//! [`coordinator`] is that caller: it owns the groups of the `__consumer_offsets`
//! partitions this broker leads, and [`records`] is the topic's record format.
//!
//! Not covered here (the caller's): whether this broker coordinates the group
//! (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS), empty group ids (INVALID_GROUP_ID),
//! creating a group (only for a join with an empty member id, or a commit with
//! generation -1), the record formats of `__consumer_offsets`, and transactional
//! offset commits.

pub mod coordinator;
mod join;
mod member;
mod messages;
mod metadata;
mod offsets;
pub mod records;
mod session;
mod state;
mod sync;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_liveness;
#[cfg(test)]
mod tests_static;

pub use member::{candidate_protocols, select_protocol, Member, Protocol};
pub use messages::{
    Effect, HeartbeatRequest, JoinError, JoinMember, JoinOutcome, JoinRequest, JoinResult,
    LeaveMember, LeaveOutcome, PersistRequest, RemoveReason, SyncRequest, SyncResult,
};
pub use metadata::{
    GroupDescription, GroupMetadata, GroupOverview, MemberDescription, MemberMetadata,
};
pub use offsets::{CommittedOffset, OffsetExpiry, OffsetStore, DEFAULT_OFFSETS_RETENTION_MS};
pub use state::{append_error_to_response, Group, GroupConfig, GroupState};
