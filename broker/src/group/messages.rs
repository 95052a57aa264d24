//! What the group state machine takes (requests, already decoded by the handlers) and
//! what it returns (effects for the caller to carry out).
//!
//! JoinGroup and SyncGroup answers are often delayed: a join waits for the other members,
//! a sync waits for the leader's assignment and for the group record to be written. The
//! caller parks each such request under its member id, one map for joins and one for
//! syncs, and sends an answer when an [`Effect::JoinResponse`] or [`Effect::SyncResponse`]
//! names that member id. Immediate answers come the same way, in the effects of the call
//! that made the request.

use super::metadata::GroupMetadata;
use super::state::GroupState;
use super::Protocol;
use bytes::Bytes;
use kafka_protocol::ResponseError;

/// A JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Empty for a member that has no id yet.
    pub member_id: String,
    /// `group.instance.id` (JoinGroup v5+): set for static members.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    /// JoinGroup v0 has no rebalance timeout: pass the session timeout, as Kafka does.
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: a new dynamic member first gets an id with MEMBER_ID_REQUIRED and
    /// must join again with it.
    pub require_known_member_id: bool,
    /// JoinGroup v8+: why the client joins (for the logs).
    pub reason: Option<String>,
    /// Used only if this request is given a new member id: `<client id>-<suffix>`, or
    /// `<group instance id>-<suffix>` for a static member. Kafka uses a random UUID; pass
    /// one. If empty, or if the id would clash with a known one, a counter is used.
    pub new_member_id_suffix: String,
}

/// A SyncGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub member_id: String,
    pub generation_id: i32,
    pub group_instance_id: Option<String>,
    /// SyncGroup v5+: checked against the group's when present.
    pub protocol_type: Option<String>,
    /// SyncGroup v5+: checked against the group's when present.
    pub protocol_name: Option<String>,
    /// The leader's assignment, member id → assignment bytes; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// A Heartbeat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub member_id: String,
    pub generation_id: i32,
    pub group_instance_id: Option<String>,
}

/// One member of a LeaveGroup request (v0–2 carry one member id; v3+ a list of
/// identities, where an empty member id with an instance id removes that static member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub reason: Option<String>,
}

/// A member's entry in the leader's JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// The member's metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A successful JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub member_id: String,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's member id ("" if none).
    pub leader_id: String,
    /// Every member with its metadata for the leader; empty for everyone else.
    pub members: Vec<JoinMember>,
}

/// A failed JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinError {
    pub error: ResponseError,
    /// The member id to put in the response, as Kafka does: the new id with
    /// MEMBER_ID_REQUIRED, otherwise the request's id or "".
    pub member_id: String,
}

/// A successful SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// The answer to `Group::join`.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinOutcome {
    /// The member id the request is parked under: the request's own id, or the one the
    /// coordinator generated for it. Register the responder under this id (replacing an
    /// older one: as in Kafka, a second join from the same member supersedes the first),
    /// then carry out `effects`; the answer may already be among them.
    pub member_id: String,
    pub effects: Vec<Effect>,
}

/// The answer to `Group::leave`.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaveOutcome {
    /// A request-level error, or one result per member in request order.
    pub result: Result<Vec<Result<(), ResponseError>>, ResponseError>,
    pub effects: Vec<Effect>,
}

/// Why a member left the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveReason {
    /// No heartbeat within the session timeout (or, for a member added in the current
    /// rebalance, no join completion within `new_member_join_timeout_ms`).
    SessionTimeout,
    /// It did not rejoin before the rebalance timeout.
    RebalanceTimeout,
    /// It did not send SyncGroup within the rebalance timeout after the join completed.
    SyncTimeout,
    /// LeaveGroup.
    Left,
    /// The group is over `max_size` and it had not rejoined.
    GroupFull,
    /// A static member came back with a new member id; this id is fenced.
    Replaced { new_member_id: String },
}

/// A request to write the group's record to `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq)]
pub struct PersistRequest {
    /// Pass it back to `Group::persisted` once the write has completed or failed.
    pub seq: u64,
    pub metadata: GroupMetadata,
}

/// What the caller must do after a call, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Answer the JoinGroup parked under `member_id`.
    JoinResponse {
        member_id: String,
        result: Result<JoinResult, JoinError>,
    },
    /// Answer the SyncGroup parked under `member_id`.
    SyncResponse {
        member_id: String,
        result: Result<SyncResult, ResponseError>,
    },
    /// Write the group record, then call `Group::persisted(now, seq, result)`. Some
    /// answers (the SyncGroup answers of a new generation, the JoinGroup answer of a
    /// replaced static member) wait for that call, as Kafka answers only once the record
    /// is in the log.
    Persist(PersistRequest),
    /// A member left the group (for the logs; any parked request of it has already been
    /// answered by an earlier effect).
    MemberRemoved {
        member_id: String,
        group_instance_id: Option<String>,
        reason: RemoveReason,
    },
    /// The group changed state (for the logs and metrics).
    StateChanged {
        from: GroupState,
        to: GroupState,
        generation_id: i32,
        reason: String,
    },
}

impl Effect {
    pub(super) fn join_error(key: &str, error: ResponseError, member_id: &str) -> Effect {
        Effect::JoinResponse {
            member_id: key.to_owned(),
            result: Err(JoinError {
                error,
                member_id: member_id.to_owned(),
            }),
        }
    }

    pub(super) fn sync_error(member_id: &str, error: ResponseError) -> Effect {
        Effect::SyncResponse {
            member_id: member_id.to_owned(),
            result: Err(error),
        }
    }
}
