//! The group record the coordinator keeps in `__consumer_offsets`, and the views that
//! DescribeGroups and ListGroups answer with.
//!
//! [`GroupMetadata`] has the fields of Kafka's `GroupMetadataValue` (version 3): protocol
//! type, generation, protocol, leader, current state timestamp, and per member its id,
//! instance id, client id, host, rebalance and session timeouts, subscription (its
//! metadata for the chosen protocol) and assignment. It is what a new coordinator needs
//! to rebuild the group after a failover (`Group::load`).

use super::state::GroupState;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A group's durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMetadata {
    /// The record key.
    pub group_id: String,
    /// "" while the group has never had a member.
    pub protocol_type: String,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    /// When the group entered its current state (Kafka expires an empty group's offsets
    /// relative to it).
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadata>,
}

/// A member in the group record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMetadata {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// DescribeGroups data for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    /// The chosen protocol while Stable, "" otherwise (as Kafka).
    pub protocol_data: String,
    pub members: Vec<MemberDescription>,
}

/// DescribeGroups data for one member. Metadata and assignment are only filled in while
/// the group is Stable (as Kafka).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// ListGroups data for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOverview {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}
