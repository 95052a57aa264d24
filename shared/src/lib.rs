//! Code that the coordinator, the broker and the `fjord` CLI share.
//!
//! - [`jute`]: the ZooKeeper wire codec (records, opcodes, error codes). Pure: no I/O.
//! - [`fs`]: durable file helpers (atomic replace, directory fsync, checksummed frames).
//! - [`telemetry`]: tracing setup, driven by `RUST_LOG`.

pub mod fs;
pub mod jute;
pub mod telemetry;
