//! Request handlers, one file per Kafka API, and the version ranges we serve.
//!
//! The ranges reach those of a Kafka 3.7+ broker (topic ids in Metadata and Fetch, batched
//! FindCoordinator and OffsetFetch, KIP-848-era OffsetCommit/OffsetFetch v9), because
//! clients gate features on them: kafka-python infers the broker's release from them, and
//! librdkafka turns on record format v2 only if Produce includes v3 and Fetch v4, zstd only
//! with Produce ≥ 7 and Fetch ≥ 10. So each range also starts at the oldest version the
//! codec supports, which librdkafka 2.0.2 still needs. Every version advertised is served
//! in full: a field a version adds is read or answered, never silently dropped.

pub mod acls;
pub mod alter_partition_reassignments;
pub mod api_versions;
pub mod configs;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod elect_leaders;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod scram_credentials;
pub mod sync_group;

use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use std::net::SocketAddr;

/// (api, min version, max version) for every API this broker serves.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeLogDirs, 0, 4),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // Answered by the connection itself (server.rs), which holds the SASL state.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
];

/// Minimums advertised below what we serve, because librdkafka gates features on them:
/// 2.0.2 compresses with gzip, snappy and lz4 only if Produce is advertised from v0
/// (librdkafka issue 4956; Kafka 4.0 advertises v0 for the same reason), and every version
/// enables lz4 only if FindCoordinator starts at v0. A request below the served minimum is
/// still refused (the connection is closed); clients never send one once v3 is offered.
pub const ADVERTISED_MIN: &[(ApiKey, i16)] = &[(ApiKey::Produce, 0)];

/// The minimum version advertised for `api`.
pub fn advertised_min(api: ApiKey, served_min: i16) -> i16 {
    ADVERTISED_MIN
        .iter()
        .find(|(k, _)| *k == api)
        .map_or(served_min, |(_, v)| *v)
}

/// Where `api` sits in [`SUPPORTED`]: its slot in the request counters.
pub fn slot(api: ApiKey) -> Option<usize> {
    SUPPORTED.iter().position(|(k, _, _)| *k == api)
}

/// The version range served for `api`, if any.
pub fn supported(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|(_, lo, hi)| (*lo, *hi))
}

/// What a handler gets.
pub struct Ctx<'a> {
    pub broker: &'a Broker,
    pub header: &'a RequestHeader,
    pub version: i16,
    pub peer: SocketAddr,
    /// The listener the request came in on (Metadata answers with its endpoints).
    pub listener: &'a str,
    /// Who sent it: `User:<name>` (SASL or a client certificate's subject) or
    /// `User:ANONYMOUS`.
    pub principal: &'a str,
    /// The client's address, as ACLs name hosts.
    pub host: &'a str,
}

impl Ctx<'_> {
    /// May the caller perform `op` on the resource? (Always, without an authorizer.)
    pub fn allowed(&self, op: Operation, resource_type: ResourceType, name: &str) -> bool {
        self.broker
            .security
            .allowed(self.principal, self.host, op, resource_type, name)
    }

    /// May the caller perform `op` on the cluster?
    pub fn cluster_allowed(&self, op: Operation) -> bool {
        self.allowed(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// May the caller perform `op` on `topic`?
    pub fn topic_allowed(&self, op: Operation, topic: &str) -> bool {
        self.allowed(op, ResourceType::Topic, topic)
    }

    /// May the caller perform `op` on `group`?
    pub fn group_allowed(&self, op: Operation, group: &str) -> bool {
        self.allowed(op, ResourceType::Group, group)
    }

    /// May the caller create `topic` (CREATE on the cluster or on the topic)?
    pub fn may_create_topic(&self, topic: &str) -> bool {
        self.cluster_allowed(Operation::Create) || self.topic_allowed(Operation::Create, topic)
    }

    /// Is an authorizer checking requests? (Hot paths skip per-resource work without one.)
    pub fn authorizing(&self) -> bool {
        self.broker.security.authorizer.is_some()
    }
}

/// Runs the handler for a decoded request. `None` means no response (acks=0 produce).
pub async fn dispatch(ctx: &Ctx<'_>, request: RequestKind) -> Option<ResponseKind> {
    Some(match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(ctx, r).await),
        RequestKind::Produce(r) => return produce::handle(ctx, r).await.map(ResponseKind::Produce),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, r).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(ctx, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(ctx, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(ctx, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(ctx, r).await)
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(ctx, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(ctx, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(ctx, r))
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(ctx, r))
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(ctx, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(ctx, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(ctx, r))
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(ctx, r).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            alter_partition_reassignments::handle(ctx, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(list_partition_reassignments::handle(ctx, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(ctx, r).await)
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(join_group::handle(ctx, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group::handle(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(ctx, r).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(leave_group::handle(ctx, r).await),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(ctx, r).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(ctx, r).await),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(ctx, r).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(ctx, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(ctx, r).await)
        }
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe(ctx, r)),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(ctx, r).await),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(ctx, r).await),
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(scram_credentials::describe(ctx, r))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(scram_credentials::alter(ctx, r).await)
        }
        // `supported` admits nothing else, so the server never decodes another kind.
        _ => return None,
    })
}
