//! Errors of the `fjord` tool. Each prints as the single line shown after `error: `, naming
//! what failed (the coordinator or broker address, the node path, the topic) and why, e.g.
//! `/x: NONODE (-101)` or `CreateTopics orders: TOPIC_ALREADY_EXISTS (36)`.

use fjord_shared::coord_client;

use crate::client;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No session could be established.
    #[error("cannot connect to the coordinator at {addr}: {source}")]
    Connect {
        addr: String,
        source: coord_client::Error,
    },
    /// An operation on a node failed.
    #[error("{path}: {source}")]
    Node {
        path: String,
        source: coord_client::Error,
    },
    /// The coordinator refused or did not answer something that needs no node (a
    /// four-letter word, whoami).
    #[error("coordinator: {0}")]
    Coordinator(String),
    /// The session ended under a long-running command (for example `watch`).
    #[error("coordinator session: {0}")]
    Session(coord_client::Error),
    /// A Kafka request failed (the client's message names the broker, API and topic).
    #[error("{0}")]
    Kafka(#[from] client::Error),
    /// The command line asks for something impossible (checked after parsing, e.g. a
    /// partition the topic does not have).
    #[error("{0}")]
    Usage(String),
    /// Reading the records to produce from stdin failed.
    #[error("cannot read stdin: {0}")]
    Input(std::io::Error),
    /// The request was carried out, but not everywhere (e.g. some partitions could not
    /// move to their preferred leader).
    #[error("{0}")]
    Incomplete(String),
    /// Some records were not acknowledged by the brokers.
    #[error("{unacked} record(s) not acknowledged: {reason}")]
    NotAcknowledged { unacked: u64, reason: String },
    /// A consumer group cannot do what was asked in its current state (it does not exist,
    /// or it still has active members).
    #[error("group {group}: {reason}")]
    Group { group: String, reason: String },
    /// The command found what it checks for (under-replicated partitions, ...): the
    /// exit is non-zero so scripts can act on it.
    #[error("{0}")]
    Unhealthy(String),
    /// A bug: a task the command started failed.
    #[error("internal error: {0}")]
    Internal(String),
    /// The interrupt handler could not be installed.
    #[error("cannot listen for Ctrl-C: {0}")]
    Signal(std::io::Error),
    /// Writing to stdout failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// A closure that attaches `path` to a client error (for `map_err`).
    pub(crate) fn at(path: &str) -> impl Fn(coord_client::Error) -> CliError + '_ {
        move |source| CliError::Node {
            path: path.to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_shared::jute::ErrorCode;

    #[test]
    fn messages_name_the_node_and_the_code() {
        let e = CliError::at("/x")(coord_client::Error::Zk(ErrorCode::NoNode));
        assert_eq!(e.to_string(), "/x: NONODE (-101)");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = CliError::Connect {
            addr: "127.0.0.1:1".into(),
            source: refused.into(),
        };
        assert!(e
            .to_string()
            .starts_with("cannot connect to the coordinator at 127.0.0.1:1: "));
    }
}
