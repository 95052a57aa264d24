//! Errors of the coordinator client, one enum per layer.
//!
//! [`Error`] separates what the server said ([`Error::Zk`], a ZooKeeper error code) from what
//! happened to the session ([`Error::ConnectionLoss`], [`Error::SessionExpired`]) because the
//! caller reacts differently: a server error is an answer; a connection loss means the request
//! may or may not have been applied and the client is reconnecting; an expired session means
//! this client is finished and a new one must be built. [`ProtocolError`] holds the values
//! that explain a malformed exchange; [`MultiError`] adds the per-op results of a failed multi.

use super::multi::OpResult;
use crate::jute::{ErrorCode, JuteError};

/// Result of a client operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with this error code (for example `NoNode`, `BadVersion`).
    #[error("{0}")]
    Zk(ErrorCode),
    /// The connection broke before the reply arrived. The request may or may not have been
    /// applied; the client reconnects and resumes the session on its own.
    #[error("connection lost")]
    ConnectionLoss,
    /// The session expired (its ephemeral nodes and watches are gone). This client is
    /// finished; build a new one.
    #[error("session expired")]
    SessionExpired,
    /// No server answered in time.
    #[error("timed out")]
    Timeout,
    /// [`Client::close`](super::Client::close) was called.
    #[error("client closed")]
    Closed,
    /// A path, connect string or argument was rejected before anything was sent.
    #[error("{0}")]
    BadArgument(String),
    /// The server sent something this client cannot make sense of; the connection is dropped.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// A socket error (connection refused, reset, ...).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Maps a reply header's error code: the two session-level codes become their own
    /// variants so callers match one thing whichever way the condition was detected.
    pub(crate) fn from_code(code: i32) -> Error {
        match ErrorCode::from_code(code) {
            ErrorCode::SessionExpired => Error::SessionExpired,
            ErrorCode::ConnectionLoss => Error::ConnectionLoss,
            c => Error::Zk(c),
        }
    }

    /// The ZooKeeper error code this error corresponds to, if any.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Zk(c) => Some(*c),
            Error::ConnectionLoss => Some(ErrorCode::ConnectionLoss),
            Error::SessionExpired => Some(ErrorCode::SessionExpired),
            Error::Timeout => Some(ErrorCode::OperationTimeout),
            Error::BadArgument(_) => Some(ErrorCode::BadArguments),
            _ => None,
        }
    }
}

impl From<JuteError> for Error {
    fn from(e: JuteError) -> Self {
        Error::Protocol(ProtocolError::Decode(e))
    }
}

/// A malformed or out-of-order exchange with the server.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A reply did not decode.
    #[error("malformed reply: {0}")]
    Decode(#[from] JuteError),
    /// Replies must come in request order; this one did not.
    #[error("reply xid {got} does not match the oldest pending request (xid {expected})")]
    XidOutOfOrder { expected: i32, got: i32 },
    /// A reply arrived with nothing pending.
    #[error("reply xid {xid} with no request pending")]
    Unsolicited { xid: i32 },
    /// A frame longer than the configured limit (or negative).
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    FrameTooLarge { len: i64, limit: usize },
    /// A multi result of a type that is not create, delete, setData, check or error.
    #[error("unexpected multi result type {op}")]
    UnknownMultiResult { op: i32 },
    /// A multi reply with a different number of results than ops sent.
    #[error("multi sent {sent} ops but got {got} results")]
    MultiResultCount { sent: usize, got: usize },
    /// The server closed the connection during the handshake.
    #[error("server closed the connection during the handshake")]
    HandshakeClosed,
}

/// Why a multi failed.
#[derive(Debug, thiserror::Error)]
pub enum MultiError {
    /// The server rejected the transaction and applied none of it. `index` is the first op
    /// that failed and `code` its error; `results` has one entry per op, as ZooKeeper sends
    /// them (`Ok` before the failing op, `RuntimeInconsistency` after it).
    #[error("op {index} failed: {code}")]
    Failed {
        index: usize,
        code: ErrorCode,
        results: Vec<OpResult>,
    },
    /// The multi did not get an answer (or was rejected as a whole).
    #[error(transparent)]
    Client(#[from] Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_codes_get_their_own_variants() {
        assert!(matches!(Error::from_code(-112), Error::SessionExpired));
        assert!(matches!(Error::from_code(-4), Error::ConnectionLoss));
        assert!(matches!(
            Error::from_code(-101),
            Error::Zk(ErrorCode::NoNode)
        ));
        assert_eq!(Error::from_code(-101).to_string(), "NONODE (-101)");
        assert_eq!(
            Error::Zk(ErrorCode::BadVersion).code(),
            Some(ErrorCode::BadVersion)
        );
    }
}
