//! Errors of the Kafka client, one enum per layer: [`ProtocolError`] for bytes that do not
//! make a valid message (ours or the broker's), [`Error`] for everything a caller sees.
//!
//! Kafka error codes stay numbers on the wire; here they become [`Error::Kafka`] with the
//! name Kafka's own tools print (`UNKNOWN_TOPIC_OR_PARTITION`), taken from the codec crate's
//! [`ResponseError`] table, so messages read the same as in Kafka's logs.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;

/// A result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Kafka error codes the client reacts to (names as in Kafka's `Errors.java`).
pub mod code {
    /// The partition moved, or its topic was just created: refresh metadata and retry.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    /// A leader election is under way: refresh metadata and retry.
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    /// The request went to a broker that no longer leads the partition.
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    /// The fetch or list-offsets position is outside the log.
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    /// The broker does not speak the version we sent.
    pub const UNSUPPORTED_VERSION: i16 = 35;
    /// CreateTopics for a topic that exists.
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    /// An admin request reached a broker that is not the controller.
    pub const NOT_CONTROLLER: i16 = 41;
    /// A new leader's high watermark has not caught up yet (KIP-207): retry.
    pub const OFFSET_NOT_AVAILABLE: i16 = 78;
    /// A leader election found the partition already led as asked.
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    /// The group coordinator is still loading the group's state: retry.
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    /// No coordinator for the group yet (e.g. `__consumer_offsets` is being created): retry.
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// The request went to a broker that does not coordinate the group: find it again.
    pub const NOT_COORDINATOR: i16 = 16;
    /// A commit carried a generation the group is not at.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// A commit named a member the group does not have (a simple commit to an active group).
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// The group is rebalancing.
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    /// DeleteGroups of a group that still has members.
    pub const NON_EMPTY_GROUP: i16 = 68;
    /// DeleteGroups of a group the coordinator does not know.
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    /// A SASL login failed: wrong password, unknown user, or a broken exchange.
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
}

/// Why an exchange with a broker failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No bootstrap address was given.
    #[error("no bootstrap broker given")]
    NoBootstrap,
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// The TCP connection did not open in time.
    #[error("cannot connect to {addr}: no answer within {} ms", timeout.as_millis())]
    ConnectTimeout { addr: String, timeout: Duration },
    /// The TLS handshake failed (untrusted or mismatched certificate, plaintext peer, ...).
    #[error("TLS with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    /// Reading or writing an open connection failed.
    #[error("connection to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    /// The broker closed the connection before answering.
    #[error("{addr} closed the connection")]
    Closed { addr: String },
    /// No response arrived in time; the connection is dropped, since a late answer would
    /// arrive out of step with the next request.
    #[error("{api:?} request to {addr} timed out after {} ms", timeout.as_millis())]
    Timeout {
        api: ApiKey,
        addr: String,
        timeout: Duration,
    },
    /// A message could not be encoded or decoded.
    #[error("{addr}: {source}")]
    Protocol { addr: String, source: ProtocolError },
    /// Records that cannot be built or read (before or after the wire).
    #[error("{0}")]
    Records(ProtocolError),
    /// The broker and this client share no version of an API.
    #[error("{addr} does not support {api:?} in any version this client speaks (client v{client_min}-{client_max}, broker {})", broker.map_or("none".to_owned(), |(lo, hi)| format!("v{lo}-{hi}")))]
    UnsupportedApi {
        addr: String,
        api: ApiKey,
        client_min: i16,
        client_max: i16,
        broker: Option<(i16, i16)>,
    },
    /// The broker answered with a Kafka error code.
    #[error("{}", kafka_message(.api, .resource, .code, .name, .message.as_deref()))]
    Kafka {
        /// The request that failed.
        api: ApiKey,
        /// What it failed on: `topic`, `topic-partition`, or empty.
        resource: String,
        code: i16,
        /// Kafka's name for the code, e.g. `NOT_LEADER_OR_FOLLOWER`.
        name: String,
        /// The broker's own explanation, when it sent one.
        message: Option<String>,
    },
    /// The topic is not in the cluster's metadata.
    #[error("unknown topic {topic}")]
    UnknownTopic { topic: String },
    /// The topic exists but has no such partition.
    #[error("topic {topic} has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: i32,
        count: usize,
    },
    /// The partition has no live leader right now.
    #[error("{topic}-{partition} has no leader")]
    NoLeader { topic: String, partition: i32 },
    /// Metadata names a broker id that it does not list.
    #[error("broker {id} is not in the cluster metadata")]
    UnknownBroker { id: i32 },
    /// The broker's answer is missing the part that was asked for.
    #[error("{api:?} response has no result for {resource}")]
    MissingResult { api: ApiKey, resource: String },
}

fn kafka_message(
    api: &ApiKey,
    resource: &str,
    code: &i16,
    name: &str,
    message: Option<&str>,
) -> String {
    let mut s = format!("{api:?}");
    if !resource.is_empty() {
        s.push(' ');
        s.push_str(resource);
    }
    s.push_str(&format!(": {name} ({code})"));
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        s.push_str(": ");
        s.push_str(m);
    }
    s
}

impl Error {
    /// An [`Error::Kafka`] for `code` (which must not be 0).
    pub fn kafka(
        api: ApiKey,
        resource: impl Into<String>,
        code: i16,
        message: Option<String>,
    ) -> Error {
        Error::Kafka {
            api,
            resource: resource.into(),
            code,
            name: error_name(code),
            message,
        }
    }

    /// The Kafka error code, if the broker sent one.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether metadata may be stale: the right move is to refresh it and try again.
    pub fn needs_metadata_refresh(&self) -> bool {
        matches!(
            self.kafka_code(),
            Some(
                code::UNKNOWN_TOPIC_OR_PARTITION
                    | code::LEADER_NOT_AVAILABLE
                    | code::NOT_LEADER_OR_FOLLOWER
                    | code::NOT_CONTROLLER
                    | code::OFFSET_NOT_AVAILABLE
            )
        ) || matches!(self, Error::NoLeader { .. } | Error::UnknownBroker { .. })
    }

    /// Whether the group coordinator moved, is not known yet or is still loading: the right
    /// move is to find the coordinator again and retry (the broker did not act on the
    /// request).
    pub fn needs_coordinator_refresh(&self) -> bool {
        matches!(
            self.kafka_code(),
            Some(
                code::COORDINATOR_LOAD_IN_PROGRESS
                    | code::COORDINATOR_NOT_AVAILABLE
                    | code::NOT_COORDINATOR
            )
        )
    }

    /// Whether nothing can have reached the broker: the connection never opened.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. } | Error::ConnectTimeout { .. } | Error::Tls { .. }
        )
    }

    /// Whether the connection broke (or went silent) with a request outstanding: the request
    /// may or may not have been applied.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            Error::Io { .. } | Error::Closed { .. } | Error::Timeout { .. }
        )
    }

    /// Whether retrying can help. Requests that change state (`idempotent == false`) are
    /// retried only when the broker certainly did not apply them; reads are also retried
    /// after a broken connection.
    pub fn is_retriable(&self, idempotent: bool) -> bool {
        self.needs_metadata_refresh() || self.is_connect() || (idempotent && self.is_transport())
    }
}

/// Kafka's name for an error code, e.g. 6 → `NOT_LEADER_OR_FOLLOWER`; `UNKNOWN_ERROR_CODE_n`
/// for codes newer than the codec crate, `NONE` for 0.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        // The crate names variants in CamelCase after Kafka's SCREAMING_SNAKE names
        // (`UnknownTopicOrPartition`), so converting back gives Kafka's spelling.
        Some(e) => screaming_snake(&format!("{e:?}")),
    }
}

/// `UnknownTopicOrPartition` → `UNKNOWN_TOPIC_OR_PARTITION`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Bytes that are not the message they should be.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Our request could not be encoded (a field the chosen version lacks, for example).
    #[error("cannot encode {api:?} v{version} request: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    /// The broker's response does not decode as the version we asked for.
    #[error("cannot decode {api:?} v{version} response: {reason}")]
    Decode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    /// A response frame is larger than the configured limit; nothing was allocated for it.
    #[error("response frame of {actual} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { limit: usize, actual: i64 },
    /// The response answers a different request: the connection is out of step.
    #[error("response correlation id {actual} does not match the request's {expected}")]
    CorrelationMismatch { expected: i32, actual: i32 },
    /// The request type has an API key the codec does not know.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// Record batches that cannot be built or read.
    #[error("record batch: {reason}")]
    Records { reason: String },
    /// Bytes embedded in a group response (a member's subscription or assignment, encoded
    /// by the consumer protocol) that do not decode.
    #[error("cannot decode a consumer protocol {what}: {reason}")]
    ConsumerProtocol { what: &'static str, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_get_kafkas_names() {
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(1), "OFFSET_OUT_OF_RANGE");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(17), "INVALID_TOPIC_EXCEPTION");
        assert_eq!(error_name(20), "NOT_ENOUGH_REPLICAS_AFTER_APPEND");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
    }

    #[test]
    fn kafka_errors_print_api_resource_name_and_code() {
        let e = Error::kafka(ApiKey::Produce, "orders-3", 6, None);
        assert_eq!(
            e.to_string(),
            "Produce orders-3: NOT_LEADER_OR_FOLLOWER (6)"
        );
        let e = Error::kafka(
            ApiKey::CreateTopics,
            "orders",
            36,
            Some("Topic 'orders' already exists.".into()),
        );
        assert_eq!(
            e.to_string(),
            "CreateTopics orders: TOPIC_ALREADY_EXISTS (36): Topic 'orders' already exists."
        );
        let e = Error::kafka(ApiKey::Metadata, "", 5, Some(String::new()));
        assert_eq!(e.to_string(), "Metadata: LEADER_NOT_AVAILABLE (5)");
    }

    #[test]
    fn retry_classification() {
        let stale = Error::kafka(ApiKey::Produce, "t-0", code::NOT_LEADER_OR_FOLLOWER, None);
        assert!(stale.needs_metadata_refresh() && stale.is_retriable(false));
        let fatal = Error::kafka(ApiKey::Produce, "t-0", 10, None);
        assert!(!fatal.is_retriable(true));
        let broken = Error::Closed { addr: "b:1".into() };
        assert!(broken.is_retriable(true) && !broken.is_retriable(false));
        let refused = Error::Connect {
            addr: "b:1".into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(refused.is_retriable(false));
        assert!(Error::NoLeader {
            topic: "t".into(),
            partition: 0
        }
        .is_retriable(false));
        for c in [
            code::COORDINATOR_LOAD_IN_PROGRESS,
            code::COORDINATOR_NOT_AVAILABLE,
            code::NOT_COORDINATOR,
        ] {
            let moved = Error::kafka(ApiKey::OffsetFetch, "group g", c, None);
            assert!(moved.needs_coordinator_refresh(), "{moved}");
        }
        assert!(
            !Error::kafka(ApiKey::DeleteGroups, "group g", code::NON_EMPTY_GROUP, None)
                .needs_coordinator_refresh()
        );
        assert_eq!(error_name(code::NON_EMPTY_GROUP), "NON_EMPTY_GROUP");
        assert_eq!(error_name(code::NOT_COORDINATOR), "NOT_COORDINATOR");
    }
}
