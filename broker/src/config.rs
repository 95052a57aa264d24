//! Broker configuration: command-line flags with `FJORD_*` environment fallbacks.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// fjord-broker: a Kafka-protocol broker. Unmodified Kafka clients produce to it and
/// consume from it. Brokers register with a fjord-coordinator (or a ZooKeeper ensemble) and
/// keep every partition in a durable segmented log.
#[derive(Debug, Clone, Parser)]
#[command(name = "fjord-broker", version)]
pub struct BrokerConfig {
    /// This broker's id; unique in the cluster.
    #[arg(long, env = "FJORD_BROKER_ID", value_parser = clap::value_parser!(i32).range(0..))]
    pub id: i32,

    /// Address of a single PLAINTEXT listener for Kafka clients (the default, on
    /// 127.0.0.1:9092, when --listeners is not given). Port 0 picks a free port; the chosen
    /// address is printed as `listening on ADDR`.
    #[arg(long, env = "FJORD_LISTEN", conflicts_with = "listeners")]
    pub listen: Option<SocketAddr>,

    /// Address clients are told to use (HOST:PORT) with --listen. Defaults to the bound
    /// address.
    #[arg(long, env = "FJORD_ADVERTISED", conflicts_with = "listeners")]
    pub advertised: Option<String>,

    /// Listeners as Kafka names them: NAME://HOST:PORT,... (an empty HOST binds every
    /// interface; port 0 picks a free port). Each bound listener is printed as `listener
    /// NAME on ADDR`, then `listening on ADDR` (the first listener) once the broker serves.
    #[arg(long, env = "FJORD_LISTENERS")]
    pub listeners: Option<String>,

    /// The security protocol of each listener name: NAME:PROTOCOL,... with PROTOCOL one of
    /// PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL. By default each protocol's name maps to
    /// itself (listener.security.protocol.map).
    #[arg(long, env = "FJORD_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,

    /// Addresses clients are told for each listener: NAME://HOST:PORT,... Listeners not
    /// named advertise their bound address.
    #[arg(long, env = "FJORD_ADVERTISED_LISTENERS", requires = "listeners")]
    pub advertised_listeners: Option<String>,

    /// The listener brokers use to reach each other (inter.broker.listener.name); the
    /// first of --listeners by default.
    #[arg(long, env = "FJORD_INTER_BROKER_LISTENER", requires = "listeners")]
    pub inter_broker_listener: Option<String>,

    /// How this broker connects to other brokers' inter-broker listener: a Kafka client
    /// property file (security.protocol, sasl.mechanism, sasl.username, sasl.password,
    /// ssl.ca.location, ssl.certificate.location, ssl.key.location). Needed when that
    /// listener uses SASL; its principal needs ClusterAction on the cluster (or to be a
    /// super user) once an authorizer is on.
    #[arg(long, env = "FJORD_INTER_BROKER_CLIENT_CONFIG")]
    pub inter_broker_client_config: Option<PathBuf>,

    /// PEM certificate chain (leaf first) for SSL and SASL_SSL listeners.
    #[arg(long, env = "FJORD_SSL_CERTIFICATE", requires = "ssl_key")]
    pub ssl_certificate: Option<PathBuf>,

    /// PEM private key of --ssl-certificate.
    #[arg(long, env = "FJORD_SSL_KEY", requires = "ssl_certificate")]
    pub ssl_key: Option<PathBuf>,

    /// PEM CA certificate(s) that sign client certificates (and, for the inter-broker
    /// client, the other brokers' certificates unless its config names a CA).
    #[arg(long, env = "FJORD_SSL_CA")]
    pub ssl_ca: Option<PathBuf>,

    /// Client certificates on TLS listeners: none, requested or required
    /// (ssl.client.auth). A verified certificate makes the principal `User:<subject DN>`
    /// unless SASL names one.
    #[arg(long, env = "FJORD_SSL_CLIENT_AUTH", default_value = "none", value_parser = ["none", "requested", "required"])]
    pub ssl_client_auth: String,

    /// SASL mechanisms served on SASL listeners (sasl.enabled.mechanisms).
    #[arg(
        long,
        env = "FJORD_SASL_ENABLED_MECHANISMS",
        default_value = "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"
    )]
    pub sasl_enabled_mechanisms: String,

    /// The authorizer: `acl` checks every request against Kafka ACLs stored in the
    /// coordinator (authorizer.class.name); `none` allows everything.
    #[arg(long, env = "FJORD_AUTHORIZER", default_value = "none", value_parser = ["none", "acl"])]
    pub authorizer: String,

    /// Principals allowed everything, separated by ';' (super.users), e.g.
    /// `User:admin;User:CN=broker1`.
    #[arg(long, env = "FJORD_SUPER_USERS", default_value = "")]
    pub super_users: String,

    /// Allow a request on a resource that has no ACL at all
    /// (allow.everyone.if.no.acl.found).
    #[arg(long, env = "FJORD_ALLOW_EVERYONE_IF_NO_ACL_FOUND", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_everyone_if_no_acl_found: bool,

    /// Longest SASL session (connections.max.reauth.ms, KIP-368): clients re-authenticate
    /// before it ends, or are disconnected when it does. 0: sessions never end.
    #[arg(long, env = "FJORD_CONNECTIONS_MAX_REAUTH_MS", default_value_t = 0)]
    pub connections_max_reauth_ms: u64,

    /// Serve Prometheus metrics (/metrics), /healthz and /readyz over HTTP on HOST:PORT.
    /// Off unless given; port 0 picks a free port, printed as `http listening on ADDR`.
    #[arg(long, env = "FJORD_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,

    /// The coordinator: HOST:PORT[,HOST:PORT..][/chroot].
    #[arg(long, env = "FJORD_COORDINATOR", default_value = "127.0.0.1:2181")]
    pub coordinator: String,

    #[command(flatten)]
    pub coordinator_security: crate::security::coordinator::CoordinatorSecurity,

    /// Create znodes with Kafka's secure ACL policy (zookeeper.set.acl): everything for the
    /// broker's own coordinator identity (SASL user or certificate), read for everyone,
    /// and SCRAM credentials readable by the brokers only. Needs an authenticated
    /// coordinator connection.
    #[arg(long, env = "FJORD_COORDINATOR_SET_ACL", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub coordinator_set_acl: bool,

    /// Directory for partition logs and checkpoints. Created if missing.
    #[arg(long, env = "FJORD_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Rack of this broker, used to spread replicas.
    #[arg(long, visible_alias = "broker-rack", env = "FJORD_RACK")]
    pub rack: Option<String>,

    /// Coordinator session timeout in ms. A broker that dies loses its partitions'
    /// leadership this long after its last heartbeat (plus up to one coordinator tick). If
    /// the coordinator is unreachable for this long, the broker stops accepting writes
    /// until it rejoins.
    #[arg(
        long,
        visible_alias = "zookeeper-session-timeout-ms",
        env = "FJORD_SESSION_TIMEOUT_MS",
        default_value_t = 2000
    )]
    pub session_timeout_ms: u64,

    /// A follower that has not caught up with its leader for this long (ms) leaves the ISR
    /// (replica.lag.time.max.ms).
    #[arg(long, env = "FJORD_REPLICA_LAG_TIME_MAX_MS", default_value_t = 30_000)]
    pub replica_lag_time_max_ms: u64,

    /// How long a leader holds a follower's fetch when it has nothing new (ms)
    /// (replica.fetch.wait.max.ms).
    #[arg(long, env = "FJORD_REPLICA_FETCH_WAIT_MAX_MS", default_value_t = 500)]
    pub replica_fetch_wait_max_ms: u64,

    /// Default min.insync.replicas: acks=all produces are refused with
    /// NOT_ENOUGH_REPLICAS while the ISR is smaller. Topics may override it.
    #[arg(long, env = "FJORD_MIN_INSYNC_REPLICAS", default_value_t = 1)]
    pub min_insync_replicas: usize,

    /// Let the controller move leadership back to each partition's preferred replica (the
    /// first in its replica list) when that broker is alive and in sync
    /// (auto.leader.rebalance.enable).
    #[arg(long, visible_alias = "auto-leader-rebalance-enable", env = "FJORD_AUTO_LEADER_REBALANCE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_leader_rebalance: bool,

    /// How often the controller checks for partitions led by a broker other than their
    /// preferred replica (ms) (leader.imbalance.check.interval.seconds).
    #[arg(
        long,
        env = "FJORD_LEADER_IMBALANCE_CHECK_INTERVAL_MS",
        default_value_t = 300_000
    )]
    pub leader_imbalance_check_interval_ms: u64,

    /// The share of a broker's preferred partitions (percent) that may be led elsewhere
    /// before the controller moves them back (leader.imbalance.per.broker.percentage).
    #[arg(
        long,
        env = "FJORD_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE",
        default_value_t = 10
    )]
    pub leader_imbalance_per_broker_percentage: u32,

    /// On SIGTERM, move this broker's leaderships to other in-sync replicas before
    /// leaving, so that clients see no errors (controlled.shutdown.enable).
    #[arg(long, visible_alias = "controlled-shutdown-enable", env = "FJORD_CONTROLLED_SHUTDOWN", default_value_t = true, action = clap::ArgAction::Set)]
    pub controlled_shutdown: bool,

    /// The longest a controlled shutdown waits for leadership to move (ms).
    #[arg(
        long,
        env = "FJORD_CONTROLLED_SHUTDOWN_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub controlled_shutdown_timeout_ms: u64,

    /// When to fsync partition logs: `always` (before acknowledging a produce), `interval`
    /// (every --fsync-interval-ms) or `never` (leave it to the OS and rely on replication,
    /// like Kafka's default).
    #[arg(long, env = "FJORD_FSYNC", default_value = "never", value_parser = ["always", "interval", "never"])]
    pub fsync: String,

    /// Flush interval for `--fsync interval`, in ms.
    #[arg(long, env = "FJORD_FSYNC_INTERVAL_MS", default_value_t = 1000)]
    pub fsync_interval_ms: u64,

    /// Create topics on first use by Metadata or Produce requests.
    #[arg(long, visible_alias = "auto-create-topics-enable", env = "FJORD_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,

    /// Partitions of a topic created without a count: auto-created, or by CreateTopics with
    /// -1 (num.partitions).
    #[arg(long, env = "FJORD_NUM_PARTITIONS", default_value_t = 1)]
    pub num_partitions: i32,

    /// Replication factor of a topic created without one: auto-created, or by CreateTopics
    /// with -1 (default.replication.factor; capped at the live brokers).
    #[arg(long, env = "FJORD_DEFAULT_REPLICATION_FACTOR", default_value_t = 1)]
    pub default_replication_factor: i16,

    /// Largest request accepted (socket.request.max.bytes); larger frames close the
    /// connection.
    #[arg(long, visible_alias = "socket-request-max-bytes", env = "FJORD_MAX_REQUEST_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_request_bytes: usize,

    /// Default segment size (segment.bytes) for topics that do not set it.
    #[arg(long, visible_alias = "log-segment-bytes", env = "FJORD_SEGMENT_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub segment_bytes: u64,

    /// Default largest record batch (max.message.bytes).
    #[arg(long, visible_alias = "message-max-bytes", env = "FJORD_MAX_MESSAGE_BYTES", default_value_t = 1024 * 1024 + 12)]
    pub max_message_bytes: usize,

    /// Default retention in ms (retention.ms); -1 keeps data forever.
    #[arg(long, visible_alias = "log-retention-ms", env = "FJORD_RETENTION_MS", default_value_t = 7 * 24 * 3600 * 1000)]
    pub retention_ms: i64,

    /// How often retention is enforced, in ms.
    #[arg(
        long,
        visible_alias = "log-retention-check-interval-ms",
        env = "FJORD_RETENTION_CHECK_MS",
        default_value_t = 300_000
    )]
    pub retention_check_ms: u64,

    /// Partitions of the internal `__consumer_offsets` topic, which holds consumer groups
    /// and their committed offsets (offsets.topic.num.partitions). Fixed once the topic
    /// exists.
    #[arg(
        long,
        visible_alias = "offsets-topic-num-partitions",
        env = "FJORD_OFFSETS_TOPIC_PARTITIONS",
        default_value_t = 50
    )]
    pub offsets_topic_partitions: i32,

    /// Replication factor of `__consumer_offsets`, capped at the live brokers when it is
    /// created (offsets.topic.replication.factor).
    #[arg(
        long,
        env = "FJORD_OFFSETS_TOPIC_REPLICATION_FACTOR",
        default_value_t = 3
    )]
    pub offsets_topic_replication_factor: i16,

    /// How long the committed offsets of an empty group are kept, in minutes
    /// (offsets.retention.minutes).
    #[arg(
        long,
        env = "FJORD_OFFSETS_RETENTION_MINUTES",
        default_value_t = 10_080
    )]
    pub offsets_retention_minutes: i64,

    /// How long the first rebalance of a new group waits for more members to join (ms)
    /// (group.initial.rebalance.delay.ms).
    #[arg(
        long,
        env = "FJORD_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 3000
    )]
    pub group_initial_rebalance_delay_ms: i64,

    /// The shortest consumer session timeout a group member may ask for (ms)
    /// (group.min.session.timeout.ms).
    #[arg(
        long,
        env = "FJORD_GROUP_MIN_SESSION_TIMEOUT_MS",
        default_value_t = 6000
    )]
    pub group_min_session_timeout_ms: i32,

    /// The longest consumer session timeout a group member may ask for (ms)
    /// (group.max.session.timeout.ms).
    #[arg(
        long,
        env = "FJORD_GROUP_MAX_SESSION_TIMEOUT_MS",
        default_value_t = 1_800_000
    )]
    pub group_max_session_timeout_ms: i32,

    /// Most client connections at once.
    #[arg(long, env = "FJORD_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
}
