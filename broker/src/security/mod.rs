//! Authentication and authorization: SASL mechanisms the brokers serve and the CLI speaks,
//! and Kafka's ACL model and authorizer.

pub mod acl;
pub mod authorizer;
pub mod scram;
