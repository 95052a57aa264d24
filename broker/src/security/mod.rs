//! Authentication and authorization: SASL mechanisms the brokers serve and the CLI speaks,
//! Kafka's ACL model and authorizer, and where both keep their data in the coordinator.

pub mod acl;
pub mod admin;
pub mod authorizer;
pub mod client_config;
pub mod coordinator;
pub mod fuzz;
pub mod listener;
pub mod sasl;
pub mod scram;
pub mod store;
pub mod sync;

use client_config::ClientSecurity;
use fjord_shared::cluster::BrokerRegistration;
use sasl::{Credentials, SaslMechanism};

/// How this broker reaches the others: their inter-broker listener, with its own client
/// security settings.
#[derive(Debug, Clone)]
pub struct InterBroker {
    pub listener: String,
    pub client: ClientSecurity,
}

impl InterBroker {
    /// `HOST:PORT` of `broker`'s inter-broker listener.
    pub fn address(&self, broker: &BrokerRegistration) -> Option<String> {
        broker.endpoint(&self.listener).map(|e| e.address())
    }

    /// Client options for connections to other brokers.
    pub fn options(&self, client_id: String) -> crate::client::ClientOptions {
        let mut opts = crate::client::ClientOptions::new("");
        opts.client_id = client_id;
        opts.security = self.client.clone();
        opts
    }
}

/// What the brokers' connections need for authentication.
#[derive(Debug)]
pub struct Security {
    /// SCRAM credentials, kept current from the coordinator.
    pub credentials: std::sync::Arc<Credentials>,
    /// Mechanisms served on SASL listeners.
    pub mechanisms: Vec<SaslMechanism>,
    /// KIP-368 session lifetime (0: sessions never end).
    pub reauth_ms: u64,
    /// The ACL authorizer, when one is configured (`--authorizer acl`).
    pub authorizer: Option<std::sync::Arc<std::sync::RwLock<authorizer::Authorizer>>>,
}

impl Security {
    /// What the coordinator watch keeps current.
    pub fn followed(&self) -> sync::Followed {
        sync::Followed {
            credentials: self.credentials.clone(),
            authorizer: self.authorizer.clone(),
        }
    }

    /// May `principal` (from `host`) perform `op` on the resource? Always, without an
    /// authorizer.
    pub fn allowed(
        &self,
        principal: &str,
        host: &str,
        op: acl::Operation,
        resource_type: acl::ResourceType,
        name: &str,
    ) -> bool {
        let Some(a) = &self.authorizer else {
            return true;
        };
        let a = a.read().unwrap_or_else(|p| p.into_inner());
        a.authorize(
            authorizer::Caller { principal, host },
            op,
            resource_type,
            name,
        )
    }

    /// May `principal` perform `op` on some resource of `resource_type`?
    pub fn allowed_any(
        &self,
        principal: &str,
        host: &str,
        op: acl::Operation,
        resource_type: acl::ResourceType,
    ) -> bool {
        let Some(a) = &self.authorizer else {
            return true;
        };
        let a = a.read().unwrap_or_else(|p| p.into_inner());
        a.authorize_any(authorizer::Caller { principal, host }, op, resource_type)
    }
}
