//! `fjord-broker`: a Kafka-protocol broker, plus the `fjord` CLI.
//!
//! - [`server`]: the Kafka network layer; [`handler`]: one file per API.
//! - [`cluster`]: membership, metadata and the controller, through the coordinator.
//! - [`replica`]: partitions this broker hosts (leader role, producer state).
//! - [`group`]: the consumer group state machine (classic protocol) and committed offsets.
//! - [`log`]: the on-disk partition log.
//! - [`stats`]: hot-path counters; [`metrics`]: the HTTP endpoint that shows them.
//! - [`client`] and [`cli`]: the `fjord` tool.

pub mod alloc;
pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod fd_limit;
pub mod group;
pub mod handler;
pub mod log;
pub mod metrics;
pub mod producer_ids;
pub mod readiness;
pub mod replica;
pub mod response_buf;
pub mod run;
pub mod security;
pub mod server;
pub mod stats;
