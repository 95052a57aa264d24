//! Replies the processor writes to a plain TCP connection itself.
//!
//! Every reply used to go from the processor thread to the connection's writer task: one
//! wake-up of a network thread per reply, which on a small machine costs more than the
//! write. Now, when nothing is waiting in the connection's queue and the reply depends on
//! nothing that is not yet applied, the processor writes it to the socket at once with a
//! non-blocking `write` on its own descriptor of the socket. Whatever does not fit (the
//! socket's buffer is full) goes to the writer task as before, and from then on everything
//! goes that way until the writer has flushed it all, so frames never overtake each other.
//! TLS connections always go through the writer task (the TLS state lives there).

use crate::four_letter::ServerStats;
use crate::metrics::stats::STATS;
use bytes::Bytes;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

/// The processor's way to write to one connection's socket.
#[derive(Debug)]
pub struct DirectReply {
    /// A second descriptor of the connection's socket (non-blocking, like the first).
    stream: std::net::TcpStream,
    /// Frames handed to the writer task and not yet flushed to the socket.
    queued: AtomicUsize,
    /// The connection's request slots: a reply gives its slot back.
    outstanding: Arc<Semaphore>,
    stats: Arc<ServerStats>,
}

impl DirectReply {
    pub fn new(
        socket: &tokio::net::TcpStream,
        outstanding: Arc<Semaphore>,
        stats: Arc<ServerStats>,
    ) -> std::io::Result<DirectReply> {
        let fd = socket.as_fd().try_clone_to_owned()?;
        Ok(DirectReply {
            stream: std::net::TcpStream::from(fd),
            queued: AtomicUsize::new(0),
            outstanding,
            stats,
        })
    }

    /// Whether everything handed to the writer task is on the socket.
    pub fn idle(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
    }

    /// One more frame goes to the writer task.
    pub fn queue(&self) {
        self.queued.fetch_add(1, Ordering::AcqRel);
    }

    /// The writer task flushed `n` frames to the socket.
    pub fn flushed(&self, n: usize) {
        if n > 0 {
            self.queued.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Writes as much of `bytes` as the socket takes without waiting; returns the rest, if
    /// any, for the writer task. Only call while [`DirectReply::idle`].
    pub fn write(&self, bytes: Bytes, started: Option<Instant>) -> Option<Bytes> {
        // Full, or broken: the writer task waits for room or meets the error itself.
        let n = (&self.stream).write(&bytes).unwrap_or_default();
        if n < bytes.len() {
            return Some(bytes.slice(n..));
        }
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        STATS.responded(bytes.len() as u64);
        if let Some(t) = started {
            self.stats.record_latency(t.elapsed().as_micros() as u64);
            self.stats.outstanding.fetch_sub(1, Ordering::Relaxed);
            self.outstanding.add_permits(1);
        }
        None
    }
}
