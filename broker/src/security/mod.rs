//! Authentication and authorization: SASL mechanisms the brokers serve and the CLI speaks,
//! Kafka's ACL model and authorizer, and where both keep their data in the coordinator.

pub mod acl;
pub mod authorizer;
pub mod scram;
pub mod store;
