//! Authentication: SASL mechanisms the brokers serve and the CLI speaks.

pub mod scram;
