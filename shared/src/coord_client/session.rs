//! The session supervisor: one task per [`Client`](super::Client) that owns the session
//! across connections.
//!
//! A ZooKeeper session outlives its TCP connections. The supervisor connects (rotating over
//! the connect string's hosts), runs one connection (a writer and a reader task, see
//! [`conn`](super::conn)), and when that connection ends fails whatever was in flight with
//! `ConnectionLoss`, then reconnects with the session id and password. On the new
//! connection it first replays the credentials added with `add_auth` and re-registers every
//! watch with `setWatches2` relative to the last zxid seen, before any queued application
//! request is written. If the server answers the reconnect with the zero ConnectResponse the
//! session has expired: the supervisor reports it, fails everything with `SessionExpired`,
//! and stops — a new session would silently lose ephemeral nodes and watches, so starting
//! one is the caller's decision.
//!
//! Ownership: the [`Client`](super::Client) owns the supervisor (aborted when the client is
//! dropped or closed); the supervisor owns the connection tasks through [`TaskGuard`]s, so
//! stopping it stops them.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::stream::Stream;
use bytes::Bytes;
use tokio::io::BufReader;
use tokio::net::{lookup_host, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::conn::{
    fail, handshake, sasl_login, ConnReader, Kind, Pending, ReaderEnd, Request, Writer, WriterEnd,
};
use super::error::Error;
use super::events::{Event, SessionEvent, Subscribers};
use super::path::Chroot;
use super::watches::WatchRegistry;
use super::ConnectOptions;
use crate::jute::{op, AuthPacket, ConnectRequest, Record};

/// Locks a mutex, ignoring poisoning: every critical section in this client leaves its data
/// consistent at each step, so a panic elsewhere does not make it unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Connected; requests are being served.
    Connected,
    /// The connection broke and the client is reconnecting.
    Disconnected,
    /// The session expired; the client is finished.
    Expired,
    /// The client was closed.
    Closed,
}

/// Session facts shared by the supervisor, the connection tasks and the client handle.
#[derive(Debug)]
pub(crate) struct SessionInfo {
    pub state: SessionState,
    pub session_id: i64,
    pub passwd: Bytes,
    /// The timeout the server granted.
    pub negotiated: Duration,
    /// The highest zxid seen in a reply; sent on reconnect and with `setWatches2`.
    pub last_zxid: i64,
    /// Credentials the server accepted, replayed on every new connection.
    pub auths: Vec<(String, Bytes)>,
}

/// State shared by every task of one client.
#[derive(Debug)]
pub(crate) struct Shared {
    pub chroot: Chroot,
    pub session: Mutex<SessionInfo>,
    pub watches: Mutex<WatchRegistry>,
    pub events: Subscribers,
    /// Set by `close()` so that the end of the connection is not taken for a failure.
    pub closing: AtomicBool,
    /// Wakes a supervisor that is between connections when `close()` is called.
    pub close_requested: Notify,
    next_xid: AtomicI32,
}

impl Shared {
    pub(crate) fn new(chroot: Chroot) -> Self {
        Shared {
            chroot,
            session: Mutex::new(SessionInfo {
                state: SessionState::Disconnected,
                session_id: 0,
                passwd: Bytes::from_static(&[0; 16]),
                negotiated: Duration::ZERO,
                last_zxid: 0,
                auths: Vec::new(),
            }),
            watches: Mutex::new(WatchRegistry::default()),
            events: Subscribers::new(),
            closing: AtomicBool::new(false),
            close_requested: Notify::new(),
            next_xid: AtomicI32::new(1),
        }
    }

    /// The next request xid: positive, increasing, wrapping back to 1 (negative xids are
    /// reserved for pings, notifications and auth).
    pub(crate) fn next_xid(&self) -> i32 {
        let step = |x: i32| Some(if x == i32::MAX { 1 } else { x + 1 });
        // `fetch_update` only fails when the closure returns `None`, which `step` never does.
        self.next_xid
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, step)
            .unwrap_or_else(|x| x)
    }

    pub(crate) fn state(&self) -> SessionState {
        lock(&self.session).state
    }

    fn set_state(&self, state: SessionState) {
        lock(&self.session).state = state;
    }
}

/// Aborts the task when dropped, so a task never outlives its owner.
#[derive(Debug)]
pub(crate) struct TaskGuard<T>(pub JoinHandle<T>);

impl<T> Drop for TaskGuard<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Backoff between rounds of connection attempts over every host.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Floor for the derived ping interval and read timeout, whatever the server negotiates.
const MIN_TICK: Duration = Duration::from_millis(10);

/// The session supervisor (see the module docs).
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    hosts: Vec<String>,
    next_host: usize,
    requested_timeout: Duration,
    connect_timeout: Duration,
    max_frame: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<(String, String)>,
}

impl Supervisor {
    pub(crate) fn new(shared: Arc<Shared>, hosts: Vec<String>, opts: &ConnectOptions) -> Self {
        // Start at a varying host so that many clients spread over an ensemble; no need for a
        // random number generator, the clock's sub-second part is varied enough.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as usize)
            .unwrap_or(0);
        let next_host = if hosts.is_empty() {
            0
        } else {
            nanos % hosts.len()
        };
        Supervisor {
            shared,
            hosts,
            next_host,
            requested_timeout: opts.session_timeout,
            connect_timeout: opts.connect_timeout,
            max_frame: opts.max_frame,
            tls: opts.tls.clone(),
            sasl: opts.sasl.clone(),
        }
    }

    /// Establishes the session, trying hosts in turn until `deadline`. Returns the last
    /// failure (or `Timeout`) if none answered.
    pub(crate) async fn connect_first(&mut self, deadline: Instant) -> Result<Stream, Error> {
        let mut backoff = FIRST_BACKOFF;
        let mut last: Option<Error> = None;
        let mut tried = 0;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(last.unwrap_or(Error::Timeout));
            }
            match self.attempt(deadline - now).await {
                Ok(stream) => return Ok(stream),
                Err(e) => {
                    tracing::debug!(error = %e, "connection attempt failed");
                    last = Some(e);
                }
            }
            tried += 1;
            if tried % self.hosts.len().max(1) == 0 {
                let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                sleep(pause).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// One attempt on the next host, bounded by `budget` and the connect timeout.
    async fn attempt(&mut self, budget: Duration) -> Result<Stream, Error> {
        let host = self.hosts.get(self.next_host).cloned().unwrap_or_default();
        self.next_host = (self.next_host + 1) % self.hosts.len().max(1);
        match timeout(budget.min(self.connect_timeout), self.try_host(&host)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout),
        }
    }

    async fn try_host(&self, host: &str) -> Result<Stream, Error> {
        let mut last = None;
        let mut stream = None;
        for addr in lookup_host(host).await? {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(stream) = stream else {
            return Err(last
                .unwrap_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "host has no address")
                })
                .into());
        };
        stream.set_nodelay(true)?;
        let mut stream = match &self.tls {
            None => Stream::Plain(stream),
            Some(config) => {
                let name_host = host.rsplit_once(':').map_or(host, |(h, _)| h);
                let name = crate::tls::server_name(name_host)
                    .map_err(|e| Error::BadArgument(e.to_string()))?;
                let s = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, stream)
                    .await?;
                Stream::Client(Box::new(s))
            }
        };

        let req = {
            let s = lock(&self.shared.session);
            ConnectRequest {
                protocol_version: 0,
                last_zxid_seen: s.last_zxid,
                timeout: i32::try_from(self.requested_timeout.as_millis()).unwrap_or(i32::MAX),
                session_id: s.session_id,
                passwd: s.passwd.clone(),
                read_only: Some(false),
            }
        };
        let resp = handshake(&mut stream, &req, self.max_frame).await?;
        // The zero response (timeout 0, session 0) means the session is gone. A different
        // session id would be a new session in disguise: treat it the same way, since our
        // ephemeral nodes and watches did not carry over.
        let resumed_elsewhere = req.session_id != 0 && resp.session_id != req.session_id;
        if resp.timeout <= 0 || resp.session_id == 0 || resumed_elsewhere {
            return Err(Error::SessionExpired);
        }
        if let Some((user, password)) = &self.sasl {
            sasl_login(&mut stream, user, password, self.max_frame).await?;
        }
        let mut s = lock(&self.shared.session);
        s.session_id = resp.session_id;
        s.passwd = resp.passwd;
        s.negotiated = Duration::from_millis(resp.timeout as u64);
        s.state = SessionState::Connected;
        tracing::debug!(
            host,
            session_id = %format!("{:#x}", s.session_id),
            timeout_ms = resp.timeout,
            resumed = req.session_id != 0,
            "session established"
        );
        Ok(stream)
    }

    /// Runs the session until it expires, is closed, or the client is dropped.
    pub(crate) async fn run(
        mut self,
        first: Stream,
        mut requests: mpsc::UnboundedReceiver<Request>,
    ) {
        let mut next = Some(first);
        loop {
            let stream = match next.take() {
                // The first connection is reported by `Client::connect` returning.
                Some(s) => s,
                None => match self.reconnect(&mut requests).await {
                    Ok(s) => {
                        self.shared
                            .events
                            .send(Event::Session(SessionEvent::Connected));
                        s
                    }
                    Err(Error::SessionExpired) => return self.expire(requests),
                    Err(_) => return self.finish_closed(requests),
                },
            };
            let (back, end) = self.serve(stream, requests).await;
            let Some(back) = back else {
                return; // Every client handle is gone.
            };
            requests = back;
            if self.shared.closing.load(Ordering::SeqCst) {
                return self.finish_closed(requests);
            }
            tracing::warn!(reason = %end, "connection to the coordinator lost; reconnecting");
            self.shared.set_state(SessionState::Disconnected);
            self.shared
                .events
                .send(Event::Session(SessionEvent::Disconnected));
            drain(&mut requests, || Error::ConnectionLoss);
        }
    }

    /// Runs one connection to its end. Returns the request queue (unless the client is gone)
    /// and why the connection ended.
    async fn serve(
        &mut self,
        stream: Stream,
        requests: mpsc::UnboundedReceiver<Request>,
    ) -> (Option<mpsc::UnboundedReceiver<Request>>, String) {
        let (negotiated, zxid, auths) = {
            let s = lock(&self.shared.session);
            (s.negotiated, s.last_zxid, s.auths.clone())
        };
        let (rd, wr) = super::conn::split(stream);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (priority_tx, priority_rx) = mpsc::unbounded_channel();
        // Credentials first (later requests may need them), then the watches.
        for (scheme, auth) in auths {
            let body = AuthPacket {
                auth_type: 0,
                scheme: scheme.clone(),
                auth: auth.clone(),
            }
            .to_bytes();
            let _ = priority_tx.send(Request {
                op: op::AUTH,
                body,
                kind: Kind::Auth {
                    tx: None,
                    scheme,
                    auth,
                },
            });
        }
        let batches = lock(&self.shared.watches).set_watches(zxid, &self.shared.chroot);
        for sw in batches {
            let body = sw.to_bytes();
            let _ = priority_tx.send(Request {
                op: op::SET_WATCHES2,
                body,
                kind: Kind::SetWatches2(sw),
            });
        }

        let (stop_tx, stop_rx) = oneshot::channel();
        let writer = Writer {
            wr,
            shared: self.shared.clone(),
            pending: pending.clone(),
            ping_every: (negotiated / 3).max(MIN_TICK),
        };
        let mut writer_task = TaskGuard(tokio::spawn(writer.run(requests, priority_rx, stop_rx)));
        let reader = ConnReader {
            rd: BufReader::new(rd),
            shared: self.shared.clone(),
            pending: pending.clone(),
            priority: priority_tx,
            read_timeout: (negotiated * 2 / 3).max(MIN_TICK),
            max_frame: self.max_frame,
        };
        let mut reader_task = TaskGuard(tokio::spawn(reader.run()));

        let (back, end) = tokio::select! {
            r = &mut reader_task.0 => {
                let _ = stop_tx.send(());
                let back = (&mut writer_task.0).await.ok().map(|(rx, _)| rx);
                let end = match r {
                    Ok(ReaderEnd::Eof) => "server closed the connection".to_owned(),
                    Ok(ReaderEnd::Silent) => "no reply within two thirds of the session timeout".to_owned(),
                    Ok(ReaderEnd::SessionClosed) => "session closed".to_owned(),
                    Ok(ReaderEnd::Failed(e)) => e.to_string(),
                    Err(e) => format!("reader task failed: {e}"),
                };
                (back, end)
            }
            w = &mut writer_task.0 => match w {
                Ok((_, WriterEnd::ClientGone)) => (None, "client dropped".to_owned()),
                Ok((rx, WriterEnd::Io(e))) => (Some(rx), format!("write failed: {e}")),
                Ok((rx, WriterEnd::Stopped)) => (Some(rx), "stopped".to_owned()),
                Err(e) => (None, format!("writer task failed: {e}")),
            },
        };
        // Stop the reader before failing what is pending, so no reply races the failure.
        drop(reader_task);
        let closing = self.shared.closing.load(Ordering::SeqCst);
        lock(&pending).fail_all(|| {
            if closing {
                Error::Closed
            } else {
                Error::ConnectionLoss
            }
        });
        (back, end)
    }

    /// Reconnects with the current session, trying hosts in turn until one answers, the
    /// session turns out to be expired (`Err(SessionExpired)`), or `close()` is called
    /// (`Err(Closed)`). Requests queued meanwhile fail with `ConnectionLoss` after each
    /// failed attempt, as ZooKeeper's own client does, so callers are not stuck while the
    /// servers are unreachable.
    async fn reconnect(
        &mut self,
        requests: &mut mpsc::UnboundedReceiver<Request>,
    ) -> Result<Stream, Error> {
        let shared = self.shared.clone();
        let mut backoff = FIRST_BACKOFF;
        let mut tried = 0;
        loop {
            if shared.closing.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            let budget = self.connect_timeout;
            let result = tokio::select! {
                r = self.attempt(budget) => r,
                _ = shared.close_requested.notified() => return Err(Error::Closed),
            };
            match result {
                Ok(stream) => return Ok(stream),
                Err(Error::SessionExpired) => return Err(Error::SessionExpired),
                Err(e) => {
                    tracing::warn!(error = %e, "reconnection attempt failed");
                    drain(requests, || Error::ConnectionLoss);
                }
            }
            tried += 1;
            if tried % self.hosts.len().max(1) == 0 {
                tokio::select! {
                    _ = sleep(backoff) => {}
                    _ = shared.close_requested.notified() => return Err(Error::Closed),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    fn expire(&self, mut requests: mpsc::UnboundedReceiver<Request>) {
        let session_id = {
            let mut s = lock(&self.shared.session);
            s.state = SessionState::Expired;
            s.session_id
        };
        tracing::warn!(session_id = %format!("{session_id:#x}"), "coordinator session expired");
        lock(&self.shared.watches).clear();
        requests.close();
        drain(&mut requests, || Error::SessionExpired);
        self.shared
            .events
            .finish(Event::Session(SessionEvent::Expired));
    }

    fn finish_closed(&self, mut requests: mpsc::UnboundedReceiver<Request>) {
        self.shared.set_state(SessionState::Closed);
        requests.close();
        drain(&mut requests, || Error::Closed);
        self.shared
            .events
            .finish(Event::Session(SessionEvent::Closed));
    }
}

/// Fails every request already queued.
fn drain(requests: &mut mpsc::UnboundedReceiver<Request>, err: impl Fn() -> Error) {
    while let Ok(r) = requests.try_recv() {
        fail(r.kind, err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xids_stay_positive_and_wrap() {
        let shared = Shared::new(Chroot::default());
        assert_eq!(shared.next_xid(), 1);
        assert_eq!(shared.next_xid(), 2);
        shared.next_xid.store(i32::MAX, Ordering::Relaxed);
        assert_eq!(shared.next_xid(), i32::MAX);
        assert_eq!(shared.next_xid(), 1);
    }
}
