//! API version negotiation: which version of each API to speak on a connection.
//!
//! Kafka's rule: after ApiVersions, a client uses, per API, the highest version that both it
//! and the broker support. "It" here is the intersection of two ranges: what the codec crate
//! can encode and decode ([`ApiKey::valid_versions`]), and what this client's code fills in
//! and reads correctly ([`client_range`]). The second is narrower on purpose: newer Fetch and
//! Produce versions address topics by id, newer DeleteTopics by a different array, and a
//! field the client leaves at its default is only right for versions it was written for.
//!
//! Pure: no I/O, so the rule is unit-tested.

use std::collections::HashMap;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiKey;

/// The versions this client is written for, per API, before intersecting with the codec's.
/// APIs not listed are not used.
pub fn client_range(api: ApiKey) -> Option<(i16, i16)> {
    let (min, max) = match api {
        // v3 is the first flexible version; v4 adds nothing a client needs.
        ApiKey::ApiVersions => (0, 3),
        // v1 makes a null topic list mean "all topics"; v12 is the last before the
        // top-level error code and topic-id lookups change the request semantics.
        ApiKey::Metadata => (1, 12),
        // v10+ adds leader hints, v13 addresses topics by id only.
        ApiKey::Produce => (3, 9),
        // v13+ addresses topics by id only.
        ApiKey::Fetch => (4, 12),
        ApiKey::ListOffsets => (1, 7),
        ApiKey::CreateTopics => (2, 7),
        // v6 moves the names into a different array.
        ApiKey::DeleteTopics => (1, 5),
        ApiKey::CreatePartitions => (0, 3),
        ApiKey::DescribeConfigs => (1, 4),
        ApiKey::AlterConfigs => (0, 2),
        ApiKey::IncrementalAlterConfigs => (0, 1),
        ApiKey::DescribeCluster => (0, 1),
        ApiKey::DeleteRecords => (0, 2),
        // v3 adds the top-level error code, v4 the volume sizes.
        ApiKey::DescribeLogDirs => (0, 4),
        // v3 adds the replica id that followers send.
        ApiKey::OffsetForLeaderEpoch => (3, 4),
        ApiKey::ElectLeaders => (0, 2),
        // v1 adds allow_replication_factor_change (KIP-860).
        ApiKey::AlterPartitionReassignments => (0, 1),
        ApiKey::ListPartitionReassignments => (0, 0),
        // Consumer groups (groups.rs). FindCoordinator v4+ looks up a batch of keys.
        ApiKey::FindCoordinator => (0, 3),
        // v4 adds each group's state.
        ApiKey::ListGroups => (0, 4),
        // v6 turns an unknown group from Dead into an error and adds a message; v5 is the
        // last that answers as every Fjord and Kafka 2.x+ broker does.
        ApiKey::DescribeGroups => (0, 5),
        // v2 makes a null topic list mean "every partition with a committed offset"; v8+
        // batches several groups in a different shape.
        ApiKey::OffsetFetch => (1, 7),
        // v9 is the KIP-848 shape (member epochs).
        ApiKey::OffsetCommit => (2, 8),
        ApiKey::DeleteGroups => (0, 2),
        // v1 frames the exchange in SaslAuthenticate requests; v0's raw frames are not used.
        ApiKey::SaslHandshake => (1, 1),
        // v1 adds the session lifetime (KIP-368).
        ApiKey::SaslAuthenticate => (0, 2),
        // v0 was removed; v2 is the first flexible version.
        ApiKey::DescribeAcls => (1, 3),
        ApiKey::CreateAcls => (1, 3),
        ApiKey::DeleteAcls => (1, 3),
        ApiKey::DescribeUserScramCredentials => (0, 0),
        ApiKey::AlterUserScramCredentials => (0, 0),
        _ => return None,
    };
    Some((min, max))
}

/// What the client and the codec can both do for `api`.
fn local_range(api: ApiKey) -> Option<(i16, i16)> {
    let (cmin, cmax) = client_range(api)?;
    let codec = api.valid_versions();
    let (min, max) = (cmin.max(codec.min), cmax.min(codec.max));
    (min <= max).then_some((min, max))
}

/// The versions chosen for one connection, from the broker's ApiVersions answer.
#[derive(Debug, Clone, Default)]
pub struct Negotiated {
    /// The broker's advertised range per API key (also for APIs the client does not use).
    broker: HashMap<i16, (i16, i16)>,
    /// The chosen version per API the client uses and the broker supports.
    chosen: HashMap<ApiKey, i16>,
}

/// Why no version could be chosen: the two ranges, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoCommonVersion {
    pub api: ApiKey,
    pub client: (i16, i16),
    pub broker: Option<(i16, i16)>,
}

impl Negotiated {
    /// Negotiates every API the client uses against the broker's list.
    pub fn from_broker(api_keys: &[ApiVersion]) -> Negotiated {
        let broker: HashMap<i16, (i16, i16)> = api_keys
            .iter()
            .map(|a| (a.api_key, (a.min_version, a.max_version)))
            .collect();
        let chosen = ApiKey::iter()
            .filter_map(|api| {
                let (lmin, lmax) = local_range(api)?;
                let &(bmin, bmax) = broker.get(&(api as i16))?;
                choose((lmin, lmax), (bmin, bmax)).map(|v| (api, v))
            })
            .collect();
        Negotiated { broker, chosen }
    }

    /// The version to use for `api`.
    pub fn version(&self, api: ApiKey) -> Result<i16, NoCommonVersion> {
        self.chosen
            .get(&api)
            .copied()
            .ok_or_else(|| NoCommonVersion {
                api,
                client: local_range(api).unwrap_or((0, -1)),
                broker: self.broker.get(&(api as i16)).copied(),
            })
    }

    /// Whether the broker and the client share a version of `api`.
    pub fn supports(&self, api: ApiKey) -> bool {
        self.chosen.contains_key(&api)
    }

    /// Every API key the broker advertised with its range, sorted by key.
    pub fn advertised(&self) -> Vec<(i16, (i16, i16))> {
        let mut v: Vec<(i16, (i16, i16))> = self.broker.iter().map(|(k, r)| (*k, *r)).collect();
        v.sort_unstable();
        v
    }

    /// The broker's advertised range for `api`, if it advertised one.
    pub fn broker_range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.broker.get(&(api as i16)).copied()
    }
}

/// The highest version in both ranges, if they overlap.
pub fn choose(ours: (i16, i16), theirs: (i16, i16)) -> Option<i16> {
    let min = ours.0.max(theirs.0);
    let max = ours.1.min(theirs.1);
    (min <= max).then_some(max)
}

/// The ApiVersions version to retry with after the broker answered UNSUPPORTED_VERSION and
/// listed its own range for ApiVersions (as Kafka brokers do, in a v0 body).
pub fn api_versions_fallback(broker_list: &[ApiVersion]) -> i16 {
    let ours = local_range(ApiKey::ApiVersions).unwrap_or((0, 0));
    broker_list
        .iter()
        .find(|a| a.api_key == ApiKey::ApiVersions as i16)
        .and_then(|a| choose(ours, (a.min_version, a.max_version)))
        .unwrap_or(0)
}

/// The ApiVersions version to try first (the highest the client speaks).
pub fn api_versions_first() -> i16 {
    local_range(ApiKey::ApiVersions).map_or(0, |(_, max)| max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn av(key: ApiKey, min: i16, max: i16) -> ApiVersion {
        ApiVersion::default()
            .with_api_key(key as i16)
            .with_min_version(min)
            .with_max_version(max)
    }

    #[test]
    fn the_highest_common_version_wins() {
        assert_eq!(choose((3, 9), (3, 13)), Some(9));
        assert_eq!(choose((3, 9), (0, 7)), Some(7));
        assert_eq!(choose((4, 12), (0, 3)), None);
        assert_eq!(choose((1, 1), (1, 1)), Some(1));
    }

    #[test]
    fn negotiation_against_fjords_advertised_ranges() {
        // The ranges DESIGN.md says the broker advertises.
        let broker = [
            av(ApiKey::ApiVersions, 0, 4),
            av(ApiKey::Metadata, 0, 9),
            av(ApiKey::Produce, 3, 9),
            av(ApiKey::Fetch, 4, 12),
            av(ApiKey::ListOffsets, 1, 7),
            av(ApiKey::CreateTopics, 0, 7),
            av(ApiKey::DeleteTopics, 0, 6),
            av(ApiKey::JoinGroup, 0, 7),
        ];
        let n = Negotiated::from_broker(&broker);
        assert_eq!(n.version(ApiKey::ApiVersions), Ok(3));
        assert_eq!(n.version(ApiKey::Metadata), Ok(9));
        assert_eq!(n.version(ApiKey::Produce), Ok(9));
        assert_eq!(n.version(ApiKey::Fetch), Ok(12));
        assert_eq!(n.version(ApiKey::ListOffsets), Ok(7));
        assert_eq!(n.version(ApiKey::CreateTopics), Ok(7));
        assert_eq!(n.version(ApiKey::DeleteTopics), Ok(5));
        // Advertised by the broker, but not used by the client.
        assert!(!n.supports(ApiKey::JoinGroup));
        let groups = Negotiated::from_broker(&[
            av(ApiKey::FindCoordinator, 0, 3),
            av(ApiKey::OffsetCommit, 2, 8),
            av(ApiKey::OffsetFetch, 1, 7),
            av(ApiKey::ListGroups, 0, 4),
            av(ApiKey::DescribeGroups, 0, 5),
            av(ApiKey::DeleteGroups, 0, 2),
        ]);
        assert_eq!(groups.version(ApiKey::FindCoordinator), Ok(3));
        assert_eq!(groups.version(ApiKey::OffsetCommit), Ok(8));
        assert_eq!(groups.version(ApiKey::OffsetFetch), Ok(7));
        assert_eq!(groups.version(ApiKey::ListGroups), Ok(4));
        assert_eq!(groups.version(ApiKey::DescribeGroups), Ok(5));
        assert_eq!(groups.version(ApiKey::DeleteGroups), Ok(2));
        // A newer Kafka broker: the client stays within what it was written for.
        let kafka = Negotiated::from_broker(&[
            av(ApiKey::FindCoordinator, 0, 6),
            av(ApiKey::OffsetFetch, 1, 9),
            av(ApiKey::DescribeGroups, 0, 6),
        ]);
        assert_eq!(kafka.version(ApiKey::FindCoordinator), Ok(3));
        assert_eq!(kafka.version(ApiKey::OffsetFetch), Ok(7));
        assert_eq!(kafka.version(ApiKey::DescribeGroups), Ok(5));
        assert_eq!(n.broker_range(ApiKey::JoinGroup), Some((0, 7)));
        // Used by the client, not advertised.
        let err = n.version(ApiKey::IncrementalAlterConfigs).unwrap_err();
        assert_eq!(err.broker, None);
        assert_eq!(err.client, (0, 1));
    }

    #[test]
    fn a_broker_below_the_codecs_minimum_has_no_common_version() {
        // Fetch < 4 cannot be decoded by the codec (Kafka 4.0 removed it).
        let n = Negotiated::from_broker(&[av(ApiKey::Fetch, 0, 3)]);
        let err = n.version(ApiKey::Fetch).unwrap_err();
        assert_eq!(err.client, (4, 12));
        assert_eq!(err.broker, Some((0, 3)));
    }

    #[test]
    fn api_versions_retry_uses_the_brokers_maximum() {
        assert_eq!(api_versions_first(), 3);
        assert_eq!(api_versions_fallback(&[av(ApiKey::ApiVersions, 0, 2)]), 2);
        assert_eq!(api_versions_fallback(&[av(ApiKey::ApiVersions, 0, 9)]), 3);
        assert_eq!(api_versions_fallback(&[]), 0);
    }
}
