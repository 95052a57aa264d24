//! A small async Kafka client: what the `fjord` CLI needs to inspect topics, produce and
//! consume, speaking the Kafka wire protocol to Fjord brokers (or any Kafka broker).
//!
//! Messages are never written by hand: requests and responses are the `kafka-protocol`
//! crate's generated types, and record batches go through its `records` module. This module
//! adds what a client needs around them:
//!
//! - [`Connection`] (`connection.rs`): one TCP connection, Kafka framing with a frame size
//!   cap, correlation ids, and the ApiVersions handshake;
//! - version negotiation (`versions.rs`): per API, the highest version both sides speak;
//! - [`Client`] (this file): bootstrap, a metadata cache, one connection per broker,
//!   routing of partition requests to the partition leader and of admin requests to the
//!   controller, and bounded retries with backoff after errors that mean "metadata is
//!   stale" (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE,
//!   NOT_CONTROLLER) or "the broker could not be reached";
//! - one file per operation: `produce.rs`, `fetch.rs`, `list_offsets.rs`, `admin.rs`
//!   (topics, partitions, configs, cluster), and `groups.rs` (consumer groups: coordinator
//!   lookup, list, describe, offsets, delete);
//! - `records.rs` (building and reading v2 batches), `partitioner.rs` (Kafka's murmur2
//!   key partitioner), `metadata.rs` (the cluster view), `error.rs`.
//!
//! Retries follow Kafka's client rules: reads are retried after a broken connection too,
//! writes only when the broker certainly did not apply them (it refused them, or the
//! connection never opened), so a retried produce does not duplicate records unless the
//! broker said it had not written them.

mod admin;
mod connection;
mod delete_records;
mod error;
mod fetch;
mod groups;
mod list_offsets;
mod log_dirs;
mod metadata;
pub mod partitioner;
mod produce;
mod reassign;
pub mod records;
mod security_admin;
mod versions;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{OwnedMappedMutexGuard, OwnedMutexGuard};

pub use self::admin::{ClusterDescription, ConfigChange, ConfigEntry, ConfigSource, NewTopic};
pub use self::connection::Connection;
pub use self::error::{code, error_name, Error, ProtocolError, Result};
pub use self::fetch::{FetchOptions, FetchPosition, PartitionFetch};
pub use self::groups::{
    CommittedOffset, GroupDescription, GroupListing, GroupMember, TopicPartition,
    CONSUMER_PROTOCOL_TYPE,
};
pub use self::list_offsets::OffsetSpec;
pub use self::log_dirs::LogDir;
pub use self::metadata::{BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo};
pub use self::produce::{Acks, ProduceAck, ProduceOptions};
pub use self::reassign::{OngoingReassignment, ReassignmentOutcome};
pub use self::records::{ConsumedRecord, ProduceRecord};
pub use self::versions::Negotiated;
pub use kafka_protocol::records::Compression;

/// How the client connects and retries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Brokers to bootstrap from, `host:port` each; tried in order.
    pub bootstrap: Vec<String>,
    /// Sent in every request header; brokers log it.
    pub client_id: String,
    /// How long opening one TCP connection may take.
    pub connect_timeout: Duration,
    /// How long a response may take (requests the broker may hold, such as a long-polling
    /// fetch or an acks=all produce, get their own wait on top).
    pub request_timeout: Duration,
    /// The largest response frame accepted.
    pub max_frame: usize,
    /// How many times a retriable failure is retried.
    pub retries: u32,
    /// The pause before the first retry; it doubles up to [`ClientOptions::max_backoff`].
    pub backoff: Duration,
    /// The longest pause between retries.
    pub max_backoff: Duration,
    /// TLS and SASL, as a client property file describes them.
    pub security: crate::security::client_config::ClientSecurity,
}

impl ClientOptions {
    /// Defaults for `bootstrap` (`host:port`, or several separated by commas): 5 s to
    /// connect, 30 s per request, 64 MiB frames, 10 retries with backoff from 100 ms to 1 s
    /// (about 7.5 s in all: long enough to ride out a leader election after a broker died
    /// with the brokers' default 2 s coordinator session).
    pub fn new(bootstrap: &str) -> ClientOptions {
        ClientOptions {
            bootstrap: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            client_id: "fjord".to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_frame: 64 * 1024 * 1024,
            retries: 10,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            security: Default::default(),
        }
    }

    /// The pause before retry number `attempt` (1-based).
    fn backoff_for(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

/// A connection checked out for one request; other tasks wanting the same broker wait.
pub(crate) type ConnGuard = OwnedMappedMutexGuard<Option<Connection>, Connection>;

/// A Kafka client. Cheap to clone (clones share connections and the metadata cache); its
/// methods take `&self` and may run concurrently, one request at a time per broker.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    opts: ClientOptions,
    metadata: Mutex<Arc<ClusterMetadata>>,
    conns: Mutex<HashMap<String, Slot>>,
}

/// Locks a std mutex, ignoring poisoning: the data is a cache that every writer replaces
/// whole, so a panic elsewhere cannot leave it half-updated.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Client {
    /// Connects to the first reachable bootstrap broker (negotiating versions) and loads
    /// the broker list and controller.
    pub async fn connect(opts: ClientOptions) -> Result<Client> {
        if opts.bootstrap.is_empty() {
            return Err(Error::NoBootstrap);
        }
        let client = Client {
            inner: Arc::new(Inner {
                opts,
                metadata: Mutex::new(Arc::new(ClusterMetadata::default())),
                conns: Mutex::new(HashMap::new()),
            }),
        };
        // An empty topic list: brokers, controller and cluster id, no topics. One pass over
        // the bootstrap list, no retries: an unreachable cluster is reported at once.
        client.fetch_metadata_once(Some(&[]), false).await?;
        Ok(client)
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// The most recent cluster view (brokers, controller, and the topics looked up so far).
    pub fn cached_metadata(&self) -> Arc<ClusterMetadata> {
        lock(&self.inner.metadata).clone()
    }

    /// Asks a broker for metadata: all topics (`None`) or the named ones. Brokers may create
    /// missing topics if `allow_auto_create` (Metadata v4+). The cache is updated.
    pub async fn fetch_metadata(
        &self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<ClusterMetadata> {
        let mut attempt = 0;
        loop {
            match self.fetch_metadata_once(topics, allow_auto_create).await {
                Err(e) if attempt < self.inner.opts.retries && e.is_retriable(true) => {
                    attempt += 1;
                    self.pause(attempt, &e).await;
                }
                other => return other,
            }
        }
    }

    async fn fetch_metadata_once(
        &self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<ClusterMetadata> {
        let mut conn = self.any_conn().await?;
        let version = conn.version(ApiKey::Metadata)?;
        let mut req = MetadataRequest::default().with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                })
                .collect()
        }));
        if version >= 4 {
            req.allow_auto_topic_creation = allow_auto_create;
        }
        let resp = conn.send(&req, version, Duration::ZERO).await?;
        drop(conn);
        let fresh = ClusterMetadata::from_response(&resp);
        let mut cache = lock(&self.inner.metadata);
        let updated = match topics {
            None => fresh.clone(),
            Some(_) => {
                let mut merged = (**cache).clone();
                merged.merge(fresh.clone());
                merged
            }
        };
        *cache = Arc::new(updated);
        Ok(fresh)
    }

    /// Refreshes the cache for `topic` (or only brokers and controller); failures are
    /// logged, since the caller is about to retry and will see the real error.
    async fn refresh(&self, topic: Option<&str>) {
        let topics: Vec<String> = topic.into_iter().map(str::to_owned).collect();
        if let Err(e) = self.fetch_metadata_once(Some(&topics), false).await {
            tracing::debug!(error = %e, "metadata refresh failed");
        }
    }

    /// Sleeps before retry number `attempt` after `err`, refreshing metadata if the error
    /// suggests it is stale.
    async fn pause(&self, attempt: u32, err: &Error) {
        let backoff = self.inner.opts.backoff_for(attempt);
        tracing::debug!(attempt, error = %err, backoff_ms = backoff.as_millis() as u64, "retrying");
        tokio::time::sleep(backoff).await;
    }

    /// [`Client::pause`], then a metadata refresh for `topic` when it may be stale.
    async fn pause_and_refresh(&self, attempt: u32, err: &Error, topic: Option<&str>) {
        self.pause(attempt, err).await;
        if err.needs_metadata_refresh() || err.is_connect() || err.is_transport() {
            self.refresh(topic).await;
        }
    }

    /// The leader of `topic`/`partition` and its address, refreshing the cache once if it
    /// does not know.
    async fn leader_for(&self, topic: &str, partition: i32) -> Result<(i32, String)> {
        match locate(&self.cached_metadata(), topic, partition) {
            Ok(found) => Ok(found),
            Err(_) => {
                let topics = [topic.to_owned()];
                self.fetch_metadata_once(Some(&topics), false).await?;
                locate(&self.cached_metadata(), topic, partition)
            }
        }
    }

    /// A connection to the broker at `addr`, opened (or reopened, if the last one broke)
    /// as needed.
    pub(crate) async fn conn(&self, addr: &str) -> Result<ConnGuard> {
        let slot = lock(&self.inner.conns)
            .entry(addr.to_owned())
            .or_default()
            .clone();
        let mut guard: OwnedMutexGuard<Option<Connection>> = slot.lock_owned().await;
        let usable = matches!(guard.as_ref(), Some(c) if !c.is_broken());
        if !usable {
            *guard = None;
            *guard = Some(Connection::connect(addr, &self.inner.opts).await?);
        }
        OwnedMutexGuard::try_map(guard, Option::as_mut).map_err(|_| Error::Closed {
            addr: addr.to_owned(),
        })
    }

    /// A connection to any broker: the bootstrap brokers first, then the known ones.
    pub(crate) async fn any_conn(&self) -> Result<ConnGuard> {
        let mut addrs = self.inner.opts.bootstrap.clone();
        for b in self.cached_metadata().brokers.values() {
            let a = b.addr();
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        let mut first_err = None;
        for addr in &addrs {
            match self.conn(addr).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(addr, error = %e, "broker unreachable");
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(Error::NoBootstrap))
    }

    /// A connection to the controller (where Kafka clients send admin requests), or to any
    /// broker if no controller is known; the broker then answers NOT_CONTROLLER, which is
    /// retried after a refresh.
    pub(crate) async fn controller_conn(&self) -> Result<ConnGuard> {
        let md = self.cached_metadata();
        match md.controller_id.and_then(|id| md.broker_addr(id)) {
            Some(addr) => self.conn(&addr).await,
            None => self.any_conn().await,
        }
    }
}

/// Where a partition's leader is, from a metadata snapshot.
fn locate(md: &ClusterMetadata, topic: &str, partition: i32) -> Result<(i32, String)> {
    let t = md.topic(topic).ok_or_else(|| Error::UnknownTopic {
        topic: topic.to_owned(),
    })?;
    let p = t
        .partitions
        .get(&partition)
        .ok_or_else(|| Error::UnknownPartition {
            topic: topic.to_owned(),
            partition,
            count: t.partitions.len(),
        })?;
    let leader = p.leader.ok_or_else(|| Error::NoLeader {
        topic: topic.to_owned(),
        partition,
    })?;
    let addr = md
        .broker_addr(leader)
        .ok_or(Error::UnknownBroker { id: leader })?;
    Ok((leader, addr))
}

/// The answer for `topic`-`partition` among a response's partitions (`found`), checked:
/// missing is an error, and so is a non-zero error code.
pub(crate) fn partition_answer<'a, P>(
    found: Option<&'a P>,
    error_code: impl Fn(&P) -> i16,
    api: ApiKey,
    topic: &str,
    partition: i32,
) -> Result<&'a P> {
    let resource = format!("{topic}-{partition}");
    let p = found.ok_or_else(|| Error::MissingResult {
        api,
        resource: resource.clone(),
    })?;
    match error_code(p) {
        0 => Ok(p),
        code => Err(Error::kafka(api, resource, code, None)),
    }
}
