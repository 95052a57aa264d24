//! Errors of the `fjord` tool. Each prints as the single line shown after `error: `, naming
//! what failed (the coordinator address or the node path) and why, e.g.
//! `/x: NONODE (-101)`.

use fjord_shared::coord_client;

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
    /// The session ended under a long-running command (for example `watch`).
    #[error("coordinator session: {0}")]
    Session(coord_client::Error),
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
