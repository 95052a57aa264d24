//! The replicated log under the coordinator: Raft through openraft.
//!
//! A member is the standalone coordinator with its commit point moved from "fsynced to my
//! log" to "committed by a Raft quorum"; a standalone coordinator is an ensemble of one.
//! What goes into the log is a [`Batch`] of [`Proposal`]s: each a client's write request as
//! it arrived (opcode and body), plus everything about it that is not deterministic (wall
//! time, the connection's authenticated ids, a new session's id and password, and where
//! the request came from). Every member validates and applies each committed proposal with
//! the same code (`processor::prep` then `txn::apply`), so replicas cannot disagree.
//!
//! Proposals travel in batches because openraft 0.9 waits for each log append to be on
//! disk before it takes the next: one entry per batch gives group commit back (one fsync
//! for everything the leader received meanwhile).
//!
//! The zxid of the `i`th proposal of the entry at log index `n` is `n << 16 | i` (see
//! [`zxid`]): zxids increase across leader changes, and an entry that holds a leader's
//! blank entry or a membership change consumes one too.
//!
//! Files: [`member`] configuration, start-up and the tasks between the processor and Raft;
//! [`solo`] a standalone member, which commits on its own fsync without Raft round trips;
//! [`log_store`] the durable Raft log (group commit); [`state_machine`] the bridge to the
//! processor thread and snapshots; [`network`] the peer transport.

// openraft's `StorageError` is large, and its traits return it by value.
#![allow(clippy::result_large_err)]

pub mod durable;
pub mod forward;
pub mod log_store;
pub mod member;
pub mod membership;
pub mod network;
pub mod solo;
pub mod state_machine;
pub mod thread;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// Types of the coordinator's Raft group.
    pub TypeConfig:
        D = Batch,
        R = (),
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Membership = openraft::Membership<u64, openraft::BasicNode>;
pub type StoredMembership = openraft::StoredMembership<u64, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<u64>;

/// A snapshot as openraft passes it around: a complete file in the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: std::path::PathBuf,
}

/// Where a proposal came from, so that the member holding the client's connection answers
/// it when it applies the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The member's id.
    pub member: u64,
    /// Which run of that member (random per start): connection ids restart at 1 on every
    /// start, and entries from an earlier run must not answer a new connection.
    pub run: u64,
    pub conn: u64,
    pub xid: i32,
}

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// `None` for the leader's own housekeeping (expiry, container sweeps).
    pub origin: Option<Origin>,
    pub session: i64,
    /// Wall-clock milliseconds on the proposing member: ctime and mtime.
    pub time: i64,
    pub op: Op,
}

/// The proposals of one log entry, applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch(pub Vec<Proposal>);

/// The most proposals in one entry (they share its index; the position takes 16 bits).
pub const MAX_BATCH: usize = 4096;

/// The zxid of the proposal at `position` in the entry at log `index`.
pub fn zxid(index: u64, position: usize) -> i64 {
    ((index << 16) | (position as u64 & 0xffff)) as i64
}

/// What a proposal asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A new session with this id (the proposal's `session`).
    CreateSession { timeout_ms: i32, passwd: [u8; 16] },
    /// A client's closeSession, or the leader expiring the session.
    CloseSession,
    /// A client's write request, undecoded: every member decodes it the same way, and a body
    /// that does not decode becomes a MarshallingError on every member.
    Request {
        opcode: i32,
        body: Bytes,
        /// The connection's authenticated ids, (scheme, id).
        auth: Vec<(String, String)>,
    },
    /// The leader's container sweep: delete `path` if it is still an empty container.
    DeleteContainer { path: String },
    /// A client resumed its session (the proposal's `session`) through the origin member:
    /// valid if the session lives and the password matches. Any other member holding a
    /// connection for it drops that connection (the session moved).
    Reconnect { timeout_ms: i32, passwd: [u8; 16] },
}

/// A committed membership change: the index of its entry, the new `/zookeeper/config`
/// text, and the voters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconfigured {
    pub index: u64,
    pub config: String,
    pub voters: Vec<u64>,
}

/// What the processor sends towards the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Propose(Proposal),
    /// Sessions with a live connection on this member (a follower's keep-alive for them).
    Touch(Vec<i64>),
    /// A client's sync: answer once this member has applied what the leader had committed
    /// when it received the sync (read index).
    Sync(Origin),
    /// Enough proposals were applied since the last snapshot (`--snapshot-txns`): take
    /// one. Raft's own policy counts log entries, and an entry holds a batch.
    Snapshot,
    /// A client's reconfig: the leader changes the membership (adding new members as
    /// learners first, until they have caught up).
    Reconfig {
        origin: Origin,
        change: membership::Change,
    },
}

/// A log id as this crate writes it in logs.
pub fn show(log_id: &Option<LogId>) -> String {
    match log_id {
        Some(l) => format!("{}-{}", l.leader_id.term, l.index),
        None => "none".into(),
    }
}

/// The zxid of a log position's first proposal.
pub fn zxid_of(log_id: &Option<LogId>) -> i64 {
    log_id.map(|l| zxid(l.index, 0)).unwrap_or(0)
}

/// A storage error from whatever failed, for openraft.
pub fn storage_error(
    make: fn(openraft::AnyError) -> openraft::StorageIOError<u64>,
    e: impl std::fmt::Display,
) -> StorageError {
    StorageError::from(make(openraft::AnyError::error(e)))
}
