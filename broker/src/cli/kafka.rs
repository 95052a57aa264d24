//! What the Kafka-side commands (`cluster`, `topics`, `produce`, `consume`) share: the
//! connection flags, opening a [`Client`], and parsers for flag values.

use std::time::Duration;

use clap::Args;

use super::error::CliError;
use crate::client::{code, Client, ClientOptions, Error as ClientError, TopicInfo};
use crate::security::client_config::ClientSecurity;

/// Flags for talking to brokers; accepted after any Kafka subcommand.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// How long opening a TCP connection to a broker may take, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "FJORD_CONNECT_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 5000
    )]
    pub connect_timeout_ms: u64,

    /// How long a broker may take to answer one request, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "FJORD_REQUEST_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 30_000
    )]
    pub request_timeout_ms: u64,

    /// How many times a request is retried after the partition leader moved or a broker
    /// could not be reached (with backoff from 100 ms to 1 s).
    #[arg(
        long,
        global = true,
        env = "FJORD_RETRIES",
        value_name = "N",
        default_value_t = 10
    )]
    pub retries: u32,

    /// A Kafka client property file for secured listeners: security.protocol,
    /// sasl.mechanism, sasl.username, sasl.password, ssl.ca.location,
    /// ssl.certificate.location, ssl.key.location (kcat's and Kafka's tools' files work).
    #[arg(
        long,
        global = true,
        env = "FJORD_COMMAND_CONFIG",
        value_name = "FILE",
        visible_alias = "config-file"
    )]
    pub command_config: Option<std::path::PathBuf>,
}

impl KafkaArgs {
    /// Client options for `bootstrap` with these timeouts and security settings.
    pub fn options(&self, bootstrap: &str) -> Result<ClientOptions, CliError> {
        let mut opts = ClientOptions::new(bootstrap);
        opts.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        opts.request_timeout = Duration::from_millis(self.request_timeout_ms);
        opts.retries = self.retries;
        if let Some(path) = &self.command_config {
            opts.security = ClientSecurity::from_file(path)
                .map_err(|e| CliError::Usage(format!("--command-config {e}")))?;
        }
        Ok(opts)
    }

    /// Connects to the cluster through `bootstrap`.
    pub async fn connect(&self, bootstrap: &str) -> Result<Client, CliError> {
        Ok(Client::connect(self.options(bootstrap)?).await?)
    }
}

/// The topic's metadata, waiting briefly while it has no partitions yet (just created, or
/// being auto-created when `auto_create`), and failing at once if the cluster does not know
/// it.
pub(crate) async fn topic_info(
    client: &Client,
    topic: &str,
    auto_create: bool,
) -> Result<TopicInfo, CliError> {
    check_topic_name(topic)?;
    let names = [topic.to_owned()];
    let mut waited = 0;
    loop {
        let md = client.fetch_metadata(Some(&names), auto_create).await?;
        let entry = md.topics.get(topic);
        match entry {
            Some(t) if !t.partitions.is_empty() => return Ok(t.clone()),
            Some(t) if t.error_code == code::UNKNOWN_TOPIC_OR_PARTITION || waited >= 10 => {
                return Err(ClientError::UnknownTopic {
                    topic: topic.to_owned(),
                }
                .into())
            }
            None if waited >= 10 => {
                return Err(ClientError::UnknownTopic {
                    topic: topic.to_owned(),
                }
                .into())
            }
            _ => {
                waited += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Parses `KEY=VALUE` (the value may contain `=`; the key may not be empty).
pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Broker ids for a table cell: `1,2,3`, or `-` for none.
pub(crate) fn ids(list: &[i32]) -> String {
    if list.is_empty() {
        "-".to_owned()
    } else {
        list.iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A partition's health at a glance: `offline` (no leader), `under-replicated` (ISR smaller
/// than the replica set), or `ok`.
pub(crate) fn partition_status(p: &crate::client::PartitionInfo) -> &'static str {
    if p.leader.is_none() {
        "offline"
    } else if p.isr.len() < p.replicas.len() {
        "under-replicated"
    } else {
        "ok"
    }
}

/// Checks a topic name against Kafka's rule before sending it anywhere.
pub(crate) fn check_topic_name(name: &str) -> Result<(), CliError> {
    if fjord_shared::cluster::valid_topic_name(name) {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "invalid topic name {name:?}: use 1-249 characters of a-z, A-Z, 0-9, '.', '_' and '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert_eq!(parse_key_value("a=").unwrap(), ("a".into(), String::new()));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
    }

    #[test]
    fn id_lists() {
        assert_eq!(ids(&[]), "-");
        assert_eq!(ids(&[3, 1, 2]), "3,1,2");
    }

    #[test]
    fn topic_names_are_checked() {
        assert!(check_topic_name("orders.v1").is_ok());
        assert!(check_topic_name("a b").is_err());
    }
}
