//! The Fjord broker library (the Kafka side lands in a later change) and the `fjord` CLI.

// Tests may unwrap: a panic there is a failed assertion with its reason.

pub mod cli;
