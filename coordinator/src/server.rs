//! The network side: accept loop, one reader and one writer task per connection.
//!
//! - The first four bytes of a connection decide what it is: a four-letter word
//!   (`ruok`, `mntr`, …) is answered and the connection closed; anything else is the length
//!   of a ConnectRequest.
//! - Every frame length is checked against the limit before anything is allocated; a bad
//!   frame closes that connection with a logged reason and affects no one else.
//! - The reader forwards requests to the processor; at most `max_outstanding` may be
//!   unanswered per connection, after which the reader waits (backpressure, not an error).
//! - The writer sends queued frames in order, each only once this member has applied the
//!   replicated log (committed by a quorum) up to the zxid it depends on, and coalesces
//!   ready frames into one write.
//! - Connection limits: a total and a per-IP maximum; extra connections are closed at once.
//! - A TLS port (`--secure-listen`) runs the handshake first; a verified client certificate
//!   gives the connection the id `x509:<subject>`. TLS connections end with close_notify.

use crate::direct_reply::DirectReply;
use crate::four_letter::{self, ServerStats};
use crate::metrics::stats::{inc, STATS};
use crate::processor::Durable;
use crate::processor::{Msg, Out, Outbox};
use bytes::Bytes;
use dashmap::DashMap;
use fjord_shared::jute::{ConnectRequest, Record, RequestHeader};
use fjord_shared::stream::Stream;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Network limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest frame accepted from a client (ZooKeeper's `jute.maxbuffer`).
    pub max_frame: usize,
    pub max_connections: usize,
    /// 0 means no per-IP limit.
    pub max_connections_per_ip: usize,
    pub max_outstanding: usize,
    /// How long a new connection may take to send its ConnectRequest.
    pub handshake_timeout: Duration,
}

/// Everything a connection task needs.
#[derive(Clone)]
struct Shared {
    processor: mpsc::Sender<Msg>,
    durable: watch::Receiver<Durable>,
    stats: Arc<ServerStats>,
    limits: Limits,
    per_ip: Arc<DashMap<IpAddr, usize>>,
    next_conn: Arc<AtomicU64>,
}

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("frame length {len} is outside 0..={max}")]
    BadLength { len: i64, max: usize },
    #[error("malformed {what}: {source}")]
    Malformed {
        what: &'static str,
        source: fjord_shared::jute::JuteError,
    },
    #[error("no ConnectRequest within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server is shutting down")]
    Shutdown,
    #[error("TLS: {0}")]
    Tls(String),
}

/// One client port: plain, or TLS with this acceptor.
pub struct Port {
    pub listener: TcpListener,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serves clients on every port until `shutdown` is cancelled, then closes every connection
/// and returns once all connection tasks have ended. The connection limits count the ports
/// together.
pub async fn run(
    ports: Vec<Port>,
    processor: mpsc::Sender<Msg>,
    durable: watch::Receiver<Durable>,
    stats: Arc<ServerStats>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let conn_slots = Arc::new(Semaphore::new(limits.max_connections));
    let shared = Shared {
        processor,
        durable,
        stats,
        limits,
        per_ip: Arc::new(DashMap::new()),
        next_conn: Arc::new(AtomicU64::new(1)),
    };
    let mut loops = JoinSet::new();
    for port in ports {
        loops.spawn(accept_loop(
            port,
            shared.clone(),
            conn_slots.clone(),
            shutdown.clone(),
        ));
    }
    while loops.join_next().await.is_some() {}
}

async fn accept_loop(
    port: Port,
    shared: Shared,
    conn_slots: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    let Port { listener, tls } = port;
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = conn_slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = shared.limits.max_connections, "too many connections; closing the new one");
            inc(&STATS.connection_rejected);
            continue;
        };
        let ip = peer.ip();
        if shared.limits.max_connections_per_ip > 0 {
            let mut n = shared.per_ip.entry(ip).or_insert(0);
            if *n >= shared.limits.max_connections_per_ip {
                tracing::warn!(%peer, max = shared.limits.max_connections_per_ip, "too many connections from this address; closing the new one");
                inc(&STATS.connection_rejected);
                continue;
            }
            *n += 1;
        }
        let shared = shared.clone();
        let token = shutdown.child_token();
        let tls = tls.clone();
        tasks.spawn(async move {
            let _slot = slot;
            shared.stats.connections.fetch_add(1, Ordering::Relaxed);
            serve(stream, peer, tls, &shared, token).await;
            shared.stats.connections.fetch_sub(1, Ordering::Relaxed);
            if shared.limits.max_connections_per_ip > 0 {
                if let Some(mut n) = shared.per_ip.get_mut(&ip) {
                    *n = n.saturating_sub(1);
                }
                shared.per_ip.remove_if(&ip, |_, n| *n == 0);
            }
        });
    }
    // Closing: every connection's token is a child of `shutdown`, so they are all ending.
    while tasks.join_next().await.is_some() {}
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: &Shared,
    token: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let result = match tls {
        None => {
            // The processor writes replies to this socket itself when it can.
            let outstanding = Arc::new(Semaphore::new(shared.limits.max_outstanding));
            let direct = DirectReply::new(&stream, outstanding.clone(), shared.stats.clone())
                .map_err(
                    |e| tracing::info!(conn, error = %e, "replies go through the writer task only"),
                )
                .ok()
                .map(Arc::new);
            let (read, write) = stream.into_split();
            let mut reader = BufReader::with_capacity(64 * 1024, read);
            let conn_io = ConnIo {
                conn,
                peer,
                secure: false,
                cert_subject: None,
                outstanding,
                direct,
            };
            tokio::select! {
                r = handshake_and_serve(conn_io, &mut reader, write, shared, token.clone()) => r,
                _ = token.cancelled() => Err(ConnError::Shutdown),
            }
        }
        Some(acceptor) => {
            let limit = shared.limits.handshake_timeout;
            STATS
                .outstanding_tls_handshake
                .fetch_add(1, Ordering::Relaxed);
            let accepted = tokio::select! {
                r = tokio::time::timeout(limit, acceptor.accept(stream)) => Some(r),
                _ = token.cancelled() => None,
            };
            STATS
                .outstanding_tls_handshake
                .fetch_sub(1, Ordering::Relaxed);
            let Some(accepted) = accepted else { return };
            match accepted {
                Ok(Ok(s)) => {
                    let subject = fjord_shared::tls::peer_subject(s.get_ref().1);
                    let (read, write) = tokio::io::split(Stream::Server(Box::new(s)));
                    let mut reader = BufReader::with_capacity(64 * 1024, read);
                    let conn_io = ConnIo {
                        conn,
                        peer,
                        secure: true,
                        cert_subject: subject,
                        outstanding: Arc::new(Semaphore::new(shared.limits.max_outstanding)),
                        direct: None,
                    };
                    tokio::select! {
                        r = handshake_and_serve(conn_io, &mut reader, write, shared, token.clone()) => r,
                        _ = token.cancelled() => Err(ConnError::Shutdown),
                    }
                }
                Ok(Err(e)) => Err(ConnError::Tls(e.to_string())),
                Err(_) => Err(ConnError::HandshakeTimeout(limit)),
            }
        }
    };
    if matches!(
        result,
        Err(ConnError::Tls(_) | ConnError::HandshakeTimeout(_))
    ) {
        inc(&STATS.unsuccessful_handshake);
    }
    match result {
        Ok(()) | Err(ConnError::Shutdown) => tracing::debug!(conn, %peer, "connection closed"),
        Err(ConnError::Io(e)) => tracing::debug!(conn, %peer, error = %e, "connection ended"),
        Err(e) => tracing::warn!(conn, %peer, reason = %e, "closing the connection"),
    }
}

/// Reads one length-prefixed frame, checking the length before allocating.
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    max: usize,
    len_bytes: Option<[u8; 4]>,
) -> Result<Option<Bytes>, ConnError> {
    let len_bytes = match len_bytes {
        Some(b) => b,
        None => {
            let mut b = [0u8; 4];
            match r.read_exact(&mut b).await {
                Ok(_) => b,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let len = i32::from_be_bytes(len_bytes);
    if len < 0 || len as usize > max {
        return Err(ConnError::BadLength {
            len: len as i64,
            max,
        });
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).await?;
    Ok(Some(Bytes::from(buf)))
}

/// What a connection is, besides its two halves.
struct ConnIo {
    conn: u64,
    peer: SocketAddr,
    /// Over TLS, and the subject of a verified client certificate.
    secure: bool,
    cert_subject: Option<String>,
    /// Request slots: at most `max_outstanding` unanswered requests.
    outstanding: Arc<Semaphore>,
    /// The processor's own descriptor of a plain connection's socket.
    direct: Option<Arc<DirectReply>>,
}

async fn handshake_and_serve<R, W>(
    io: ConnIo,
    reader: &mut BufReader<R>,
    mut write: W,
    shared: &Shared,
    token: CancellationToken,
) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let ConnIo {
        conn,
        peer,
        secure,
        cert_subject,
        outstanding,
        direct,
    } = io;
    let limit = shared.limits.handshake_timeout;
    let first = tokio::time::timeout(limit, async {
        let mut b = [0u8; 4];
        reader.read_exact(&mut b).await.map(|_| b)
    })
    .await
    .map_err(|_| ConnError::HandshakeTimeout(limit))?;
    let first = match first {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if let Some(word) = four_letter::is_word(&first) {
        let (tx, rx) = oneshot::channel();
        if shared
            .processor
            .send(Msg::FourLetter {
                word: word.to_owned(),
                reply: tx,
            })
            .is_err()
        {
            return Err(ConnError::Shutdown);
        }
        let text = rx.await.map_err(|_| ConnError::Shutdown)?;
        write.write_all(text.as_bytes()).await?;
        write.shutdown().await?;
        return Ok(());
    }
    let body = tokio::time::timeout(
        limit,
        read_frame(reader, shared.limits.max_frame, Some(first)),
    )
    .await
    .map_err(|_| ConnError::HandshakeTimeout(limit))??;
    let Some(body) = body else { return Ok(()) };
    let req = ConnectRequest::decode(&body).map_err(|source| ConnError::Malformed {
        what: "ConnectRequest",
        source,
    })?;
    shared.stats.received.fetch_add(1, Ordering::Relaxed);
    inc(&STATS.connection_request_count);
    STATS
        .bytes_received_count
        .fetch_add(body.len() as u64 + 4, Ordering::Relaxed);

    let (out_tx, out_rx) = tokio::sync::mpsc::unbounded_channel();
    if shared
        .processor
        .send(Msg::Connect {
            conn,
            req,
            out: Outbox::new(out_tx, direct.clone()),
            peer,
            secure,
            cert_subject,
        })
        .is_err()
    {
        return Err(ConnError::Shutdown);
    }
    let writer_done = CancellationToken::new();
    let writer = tokio::spawn(write_loop(
        conn,
        write,
        out_rx,
        shared.durable.clone(),
        (shared.stats.clone(), outstanding.clone(), direct),
        writer_done.clone(),
    ));
    let result = tokio::select! {
        r = read_loop(conn, reader, shared, &outstanding) => r,
        _ = writer_done.cancelled() => Ok(()),
        _ = token.cancelled() => Err(ConnError::Shutdown),
    };
    let _ = shared.processor.send(Msg::Disconnected { conn });
    // The processor drops the outbox on Disconnected, which ends the writer.
    let _ = writer.await;
    // Requests that were never answered no longer count as outstanding.
    let unanswered = shared
        .limits
        .max_outstanding
        .saturating_sub(outstanding.available_permits());
    shared
        .stats
        .outstanding
        .fetch_sub(unanswered as u64, Ordering::Relaxed);
    result
}

async fn read_loop<R: AsyncRead + Unpin>(
    conn: u64,
    reader: &mut BufReader<R>,
    shared: &Shared,
    outstanding: &Semaphore,
) -> Result<(), ConnError> {
    loop {
        let Some(frame) = read_frame(reader, shared.limits.max_frame, None).await? else {
            return Ok(());
        };
        let started = Instant::now();
        if frame.len() < 8 {
            return Err(ConnError::Malformed {
                what: "request header",
                source: fjord_shared::jute::JuteError::Truncated {
                    offset: 0,
                    needed: 8,
                    remaining: frame.len(),
                },
            });
        }
        let h = RequestHeader::read(&mut fjord_shared::jute::Reader::new(&frame[..8])).map_err(
            |source| ConnError::Malformed {
                what: "request header",
                source,
            },
        )?;
        // Backpressure: wait for a slot; the writer returns one per reply it sends.
        match outstanding.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(ConnError::Shutdown),
        }
        shared.stats.received.fetch_add(1, Ordering::Relaxed);
        shared.stats.outstanding.fetch_add(1, Ordering::Relaxed);
        STATS
            .bytes_received_count
            .fetch_add(frame.len() as u64 + 4, Ordering::Relaxed);
        let msg = Msg::Request {
            conn,
            xid: h.xid,
            op: h.op,
            body: frame.slice(8..),
            started,
        };
        if shared.processor.send(msg).is_err() {
            return Err(ConnError::Shutdown);
        }
    }
}

/// Writes a connection's queued frames. With a [`DirectReply`], it says how many frames
/// it has flushed, so that the processor knows when it may write to the socket again.
async fn write_loop<W: AsyncWrite + Unpin>(
    conn: u64,
    write: W,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Out>,
    mut durable: watch::Receiver<Durable>,
    (stats, outstanding, direct): (Arc<ServerStats>, Arc<Semaphore>, Option<Arc<DirectReply>>),
    done: CancellationToken,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, write);
    // Frames taken from the queue and not yet flushed.
    let mut taken = 0usize;
    let flushed = |taken: &mut usize| {
        if let Some(d) = &direct {
            d.flushed(std::mem::take(taken));
        }
    };
    let result: std::io::Result<()> = async {
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some(item) = next.take() {
                let after = match &item {
                    Out::Frame { after, .. } | Out::Close { after, .. } => *after,
                };
                if durable.borrow().zxid < after {
                    // Send what is already durable before waiting for the log.
                    w.flush().await?;
                    flushed(&mut taken);
                    let ok = durable
                        .wait_for(|d| d.zxid >= after || d.failed)
                        .await
                        .map(|d| !d.failed)
                        .unwrap_or(false);
                    if !ok {
                        tracing::error!(conn, "the transaction log failed; closing the connection");
                        return Ok(());
                    }
                }
                match item {
                    Out::Frame { bytes, started, .. } => {
                        w.write_all(&bytes).await?;
                        taken += 1;
                        stats.sent.fetch_add(1, Ordering::Relaxed);
                        STATS.responded(bytes.len() as u64);
                        if let Some(t) = started {
                            stats.record_latency(t.elapsed().as_micros() as u64);
                            stats.outstanding.fetch_sub(1, Ordering::Relaxed);
                            outstanding.add_permits(1);
                        }
                    }
                    Out::Close { reason, .. } => {
                        tracing::debug!(conn, %reason, "closing the connection");
                        w.flush().await?;
                        w.shutdown().await?;
                        return Ok(());
                    }
                }
                next = rx.try_recv().ok();
            }
            w.flush().await?;
            flushed(&mut taken);
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(conn, error = %e, "write failed");
    }
    // A TLS connection ends with close_notify (a plain one with FIN), whatever ended it.
    let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
    done.cancel();
}
