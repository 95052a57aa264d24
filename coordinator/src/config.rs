//! Command-line configuration. Every flag has an `FJORD_*` environment fallback.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// fjord-coordinator: a coordination service that speaks the ZooKeeper client protocol.
///
/// Stock ZooKeeper clients (zkCli.sh, kazoo, Curator, the zookeeper crates) work against it
/// unchanged. Every write is fsynced to a transaction log before it is acknowledged.
#[derive(Debug, Clone, Parser)]
#[command(name = "fjord-coordinator", version)]
pub struct Config {
    /// Address to listen on for clients (and four-letter words). Port 0 picks a free port;
    /// the chosen address is printed as `listening on ADDR`.
    #[arg(long, env = "FJORD_LISTEN", default_value = "127.0.0.1:2181")]
    pub listen: SocketAddr,

    /// Directory for the transaction log and snapshots. Created if missing. Only one
    /// coordinator may use a directory at a time.
    #[arg(long, env = "FJORD_DATA_DIR")]
    pub data_dir: PathBuf,

    /// The basic time unit in milliseconds (ZooKeeper's tickTime). Session timeouts are
    /// negotiated within [2, 20] ticks unless set below, and expiry is checked every half tick.
    #[arg(long, env = "FJORD_TICK_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub tick_ms: u64,

    /// Smallest session timeout granted, in ms (default: 2 × tick).
    #[arg(long, env = "FJORD_MIN_SESSION_MS")]
    pub min_session_ms: Option<i32>,

    /// Largest session timeout granted, in ms (default: 20 × tick).
    #[arg(long, env = "FJORD_MAX_SESSION_MS")]
    pub max_session_ms: Option<i32>,

    /// Take a snapshot after this many transactions; the log before it is then removed.
    #[arg(long, env = "FJORD_SNAPSHOT_TXNS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_txns: u64,

    /// Largest request frame accepted, in bytes (ZooKeeper's jute.maxbuffer). Larger frames
    /// close the connection.
    #[arg(long, env = "FJORD_MAX_FRAME_BYTES", default_value_t = 1024 * 1024)]
    pub max_frame_bytes: usize,

    /// Most client connections at once; further ones are closed on arrival.
    #[arg(long, env = "FJORD_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Most connections from one IP address (0: no limit), like ZooKeeper's maxClientCnxns.
    #[arg(long, env = "FJORD_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// Most unanswered requests per connection; the server stops reading from a connection
    /// that reaches it until replies go out.
    #[arg(long, env = "FJORD_MAX_OUTSTANDING", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_outstanding: u64,

    /// How often empty container nodes are looked for and deleted, in ms.
    #[arg(long, env = "FJORD_CONTAINER_CHECK_MS", default_value_t = 60_000)]
    pub container_check_ms: u64,
}

impl Config {
    pub fn min_session(&self) -> i32 {
        self.min_session_ms.unwrap_or((2 * self.tick_ms) as i32)
    }

    pub fn max_session(&self) -> i32 {
        self.max_session_ms.unwrap_or((20 * self.tick_ms) as i32)
    }
}
