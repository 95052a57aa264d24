//! The cluster's znode layout in the coordinator, and the JSON stored there.
//!
//! It is Kafka's own ZooKeeper layout (Kafka 2.x/3.x in ZooKeeper mode), so anyone who ran
//! Kafka on ZooKeeper knows where to look, and stock ZooKeeper tools can inspect it:
//!
//! ```text
//! /cluster/id                               {"version":"1","id":"<base64 uuid>"}
//! /brokers/ids/<id>            (ephemeral)  {"version":5,"host":..,"port":..,"endpoints":[..],..}
//! /controller                  (ephemeral)  {"version":1,"brokerid":<id>,"timestamp":"<ms>"}
//! /controller_epoch                         "<n>"
//! /brokers/topics/<t>                       {"version":3,"partitions":{"0":[1,2,3]},"topic_id":".."}
//! /brokers/topics/<t>/partitions/<p>/state  {"version":1,"leader":1,"leader_epoch":0,..}
//! /config/topics/<t>                        {"version":1,"config":{"retention.ms":".."}}
//! /admin/delete_topics/<t>
//! /admin/preferred_replica_election        {"version":1,"partitions":[{"topic":..,"partition":..}]}
//! /admin/controlled_shutdown/<id> (ephemeral)  a broker asking to have its leaderships moved
//! /latest_producer_id_block                 {"version":1,"broker":..,"block_start":..,"block_end":..}
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const CLUSTER_ID: &str = "/cluster/id";
pub const BROKER_IDS: &str = "/brokers/ids";
pub const TOPICS: &str = "/brokers/topics";
pub const CONTROLLER: &str = "/controller";
pub const CONTROLLER_EPOCH: &str = "/controller_epoch";
pub const TOPIC_CONFIGS: &str = "/config/topics";
/// Dynamic broker configs: `/config/brokers/<id>`, and `/config/brokers/<default>` for
/// every broker.
pub const BROKER_CONFIGS: &str = "/config/brokers";
/// The config entity that applies to every broker (Kafka's `<default>`).
pub const DEFAULT_ENTITY: &str = "<default>";
pub const ADMIN: &str = "/admin";
pub const DELETE_TOPICS: &str = "/admin/delete_topics";
/// Kafka's request for a preferred-leader election: `{"version":1,"partitions":[..]}`, or
/// an empty list for every partition. The controller carries it out and deletes it.
pub const PREFERRED_REPLICA_ELECTION: &str = "/admin/preferred_replica_election";
/// Fjord's controlled shutdown: a broker about to stop creates the ephemeral
/// `/admin/controlled_shutdown/<id>`, and the controller moves its leaderships away and
/// takes it out of every ISR it can. (Kafka asks the controller over its own RPC.)
pub const CONTROLLED_SHUTDOWN: &str = "/admin/controlled_shutdown";
pub const PRODUCER_ID_BLOCK: &str = "/latest_producer_id_block";

/// Paths that must exist before brokers use the layout (persistent, empty).
pub const BASE_PATHS: [&str; 10] = [
    "/cluster",
    "/brokers",
    BROKER_IDS,
    TOPICS,
    "/config",
    TOPIC_CONFIGS,
    BROKER_CONFIGS,
    ADMIN,
    DELETE_TOPICS,
    CONTROLLED_SHUTDOWN,
];

pub fn controlled_shutdown_path(id: i32) -> String {
    format!("{CONTROLLED_SHUTDOWN}/{id}")
}

/// One partition in `/admin/preferred_replica_election`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ElectionPartition {
    pub topic: String,
    pub partition: i32,
}

/// `/admin/preferred_replica_election`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferredReplicaElection {
    pub version: i32,
    pub partitions: Vec<ElectionPartition>,
}

pub fn broker_path(id: i32) -> String {
    format!("{BROKER_IDS}/{id}")
}

pub fn topic_path(topic: &str) -> String {
    format!("{TOPICS}/{topic}")
}

pub fn partitions_path(topic: &str) -> String {
    format!("{TOPICS}/{topic}/partitions")
}

pub fn partition_path(topic: &str, partition: i32) -> String {
    format!("{TOPICS}/{topic}/partitions/{partition}")
}

pub fn partition_state_path(topic: &str, partition: i32) -> String {
    format!("{TOPICS}/{topic}/partitions/{partition}/state")
}

pub fn topic_config_path(topic: &str) -> String {
    format!("{TOPIC_CONFIGS}/{topic}")
}

/// `/config/brokers/<entity>`: a broker id or [`DEFAULT_ENTITY`].
pub fn broker_config_path(entity: &str) -> String {
    format!("{BROKER_CONFIGS}/{entity}")
}

pub fn delete_topic_path(topic: &str) -> String {
    format!("{DELETE_TOPICS}/{topic}")
}

/// `/cluster/id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterId {
    pub version: String,
    pub id: String,
}

/// `/brokers/ids/<id>`, Kafka's version 5 registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub version: i32,
    /// The PLAINTEXT listener's host (null without one, as in Kafka).
    pub host: Option<String>,
    pub port: i32,
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub listener_security_protocol_map: BTreeMap<String, String>,
    #[serde(default)]
    pub jmx_port: i32,
    /// Milliseconds since the epoch, as a string (Kafka's format).
    pub timestamp: String,
    #[serde(default)]
    pub rack: Option<String>,
    #[serde(default)]
    pub features: BTreeMap<String, serde_json::Value>,
}

/// One listener of a registered broker: `NAME://HOST:PORT` in `endpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `NAME://HOST:PORT` (HOST may be a bracketed IPv6 address or empty).
    pub fn parse(text: &str) -> Option<Endpoint> {
        let (listener, rest) = text.split_once("://")?;
        let (host, port) = rest.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(Endpoint {
            listener: listener.to_owned(),
            host: host.to_owned(),
            port: port.parse().ok()?,
        })
    }

    /// `HOST:PORT`, bracketing an IPv6 host.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.listener, self.address())
    }
}

impl BrokerRegistration {
    /// A registration with one PLAINTEXT listener.
    pub fn new(host: &str, port: u16, rack: Option<String>, now_ms: u64) -> BrokerRegistration {
        let endpoint = Endpoint {
            listener: "PLAINTEXT".to_owned(),
            host: host.to_owned(),
            port,
        };
        BrokerRegistration::with_listeners(&[(endpoint, "PLAINTEXT".to_owned())], rack, now_ms)
    }

    /// A registration with these (endpoint, security protocol) listeners. As in Kafka,
    /// `host` and `port` name the PLAINTEXT listener if there is one (null and -1 if not).
    pub fn with_listeners(
        listeners: &[(Endpoint, String)],
        rack: Option<String>,
        now_ms: u64,
    ) -> BrokerRegistration {
        let plain = listeners
            .iter()
            .find(|(e, p)| p == "PLAINTEXT" && e.listener == "PLAINTEXT");
        BrokerRegistration {
            version: 5,
            host: plain.map(|(e, _)| e.host.clone()),
            port: plain.map_or(-1, |(e, _)| i32::from(e.port)),
            endpoints: listeners.iter().map(|(e, _)| e.to_string()).collect(),
            listener_security_protocol_map: listeners
                .iter()
                .map(|(e, p)| (e.listener.clone(), p.clone()))
                .collect(),
            jmx_port: -1,
            timestamp: now_ms.to_string(),
            rack,
            features: BTreeMap::new(),
        }
    }

    /// The endpoint of `listener`, if this broker has it.
    pub fn endpoint(&self, listener: &str) -> Option<Endpoint> {
        self.endpoints
            .iter()
            .filter_map(|e| Endpoint::parse(e))
            .find(|e| e.listener == listener)
    }
}

/// `/controller`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerInfo {
    pub version: i32,
    pub brokerid: i32,
    pub timestamp: String,
}

/// `/brokers/topics/<t>`: the replica assignment of every partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicAssignment {
    pub version: i32,
    /// partition (as a decimal string) → replica broker ids, preferred leader first.
    pub partitions: BTreeMap<String, Vec<i32>>,
    #[serde(default)]
    pub topic_id: Option<String>,
    #[serde(default)]
    pub adding_replicas: BTreeMap<String, Vec<i32>>,
    #[serde(default)]
    pub removing_replicas: BTreeMap<String, Vec<i32>>,
}

impl TopicAssignment {
    pub fn new(assignment: &BTreeMap<i32, Vec<i32>>, topic_id: String) -> TopicAssignment {
        TopicAssignment {
            version: 3,
            partitions: assignment
                .iter()
                .map(|(p, r)| (p.to_string(), r.clone()))
                .collect(),
            topic_id: Some(topic_id),
            adding_replicas: BTreeMap::new(),
            removing_replicas: BTreeMap::new(),
        }
    }

    /// The assignment keyed by partition number; entries that are not numbers are skipped.
    pub fn by_partition(&self) -> BTreeMap<i32, Vec<i32>> {
        self.partitions
            .iter()
            .filter_map(|(p, r)| Some((p.parse().ok()?, r.clone())))
            .collect()
    }
}

/// `/brokers/topics/<t>/partitions/<p>/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub version: i32,
    /// The leader's broker id, or -1 when the partition is offline.
    pub leader: i32,
    pub leader_epoch: i32,
    pub controller_epoch: i32,
    pub isr: Vec<i32>,
}

/// `/config/topics/<t>`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopicConfig {
    pub version: i32,
    pub config: BTreeMap<String, String>,
}

/// `/latest_producer_id_block`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    pub version: i32,
    pub broker: i32,
    pub block_start: String,
    pub block_end: String,
}

/// Kafka's topic name rule: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_kafkas_layout() {
        let reg = BrokerRegistration::new("127.0.0.1", 9092, None, 1_700_000_000_000);
        let v: serde_json::Value = serde_json::to_value(&reg).unwrap();
        assert_eq!(v["version"], 5);
        assert_eq!(v["endpoints"][0], "PLAINTEXT://127.0.0.1:9092");
        assert_eq!(v["timestamp"], "1700000000000");
        let state: PartitionState = serde_json::from_str(
            r#"{"controller_epoch":1,"leader":2,"version":1,"leader_epoch":0,"isr":[2,3]}"#,
        )
        .unwrap();
        assert_eq!(state.isr, vec![2, 3]);
        let t: TopicAssignment =
            serde_json::from_str(r#"{"version":3,"partitions":{"0":[1,2],"1":[2,1]}}"#).unwrap();
        assert_eq!(t.by_partition()[&1], vec![2, 1]);
    }

    #[test]
    fn topic_names() {
        assert!(valid_topic_name("oms-events.v1_x"));
        for bad in ["", ".", "..", "a b", "a/b", &"x".repeat(250)] {
            assert!(!valid_topic_name(bad), "{bad}");
        }
    }
}
