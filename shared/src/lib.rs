//! Code that the coordinator, the broker and the `fjord` CLI share.
//!
//! - [`jute`]: the ZooKeeper wire codec (records, opcodes, error codes). Pure: no I/O.
//! - [`coord_client`]: the async ZooKeeper-protocol client (sessions, watches, multi).
//! - [`fs`]: durable file helpers (atomic replace, directory fsync, checksummed frames).
//! - [`telemetry`]: tracing setup, driven by `RUST_LOG`.
//! - [`metrics`] and [`http`]: Prometheus exposition and the servers' HTTP listener.
//! - [`tls`]: TLS configs (rustls, ring provider) from PEM files; [`x509`]: certificate subjects.

// Tests may unwrap: a panic there is a failed assertion with its reason.

pub mod cluster;
pub mod coord_client;
pub mod digest_md5;
pub mod fs;
pub mod http;
pub mod jute;
pub mod metrics;
pub mod random;
pub mod shutdown;
pub mod stream;
pub mod telemetry;
pub mod tls;
pub mod x509;
