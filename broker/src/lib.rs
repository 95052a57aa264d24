//! The Fjord broker library (the Kafka side lands in a later change) and the `fjord` CLI.
pub mod cli;
