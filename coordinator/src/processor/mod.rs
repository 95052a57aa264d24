//! The single ordered request pipeline.
//!
//! One thread owns the tree, the sessions and the watch tables, and takes requests from
//! every connection in arrival order. A write goes prep → log → apply → reply:
//!
//! 1. [`prep`] validates it against the current tree and turns it into a transaction (or an
//!    error transaction, which still consumes a zxid, as in ZooKeeper).
//! 2. The transaction is encoded, in place, into the current log batch. Once the processor
//!    has worked through every request that is queued (or the batch is large), the batch
//!    goes to the log thread in one hand-off, which group-commits and fsyncs it.
//! 3. It is applied to the in-memory state at once, so the next request sees it, and the
//!    watch notifications it causes and its reply are queued.
//!
//! Nothing leaves the server before it is durable: every queued frame carries the zxid it
//! depends on, and the connection writer holds it until the log's durable zxid reaches it.
//! A read is tagged with the last zxid applied, so no client can observe a write that a
//! crash could still undo. Because tags only grow, per-connection order is kept, and a
//! write's notifications always precede its reply.

mod prep;
pub mod request;

pub use prep::WriteOp;

use crate::acl;
use crate::four_letter::{self, ServerStats, View};
use crate::persist::log::{self, Durable, LogCmd};
use crate::persist::snapshot::{self, SnapSession, SnapshotJob, Snapshotter};
use crate::persist::{recovery, PersistError};
use crate::session::negotiate_timeout;
use crate::txn::{self, OpOutcome, State, Txn, TxnRecord};
use crate::watch::{ConnId, WatchManager};
use bytes::{Bytes, BytesMut};
use fjord_shared::jute::{
    add_watch_mode, event, frame_with, op, perms, state as kstate, watcher_type, xid, ClientInfo,
    ConnectRequest, ConnectResponse, Create2Response, CreateResponse, ErrorCode, ErrorResponse,
    GetAclResponse, GetAllChildrenNumberResponse, GetChildren2Response, GetChildrenResponse,
    GetDataResponse, GetEphemeralsResponse, Id, MultiHeader, PathRequest, Record, ReplyHeader,
    StatResponse, WatcherEvent, WhoAmIResponse,
};
use prep::{Ctx, Overlay};
use request::{ReadOp, Request};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch};

/// A frame or a close, queued for one connection.
#[derive(Debug)]
pub enum Out {
    /// Send `bytes` once the log is durable up to `after`. `started` is set on replies, for
    /// latency statistics and to release the request's outstanding slot.
    Frame {
        after: i64,
        bytes: Bytes,
        started: Option<Instant>,
    },
    /// Flush what was queued before, then close.
    Close { after: i64, reason: String },
}

/// Where a connection's frames go.
pub type Outbox = tokio::sync::mpsc::UnboundedSender<Out>;

/// Messages to the processor.
#[derive(Debug)]
pub enum Msg {
    Connect {
        conn: ConnId,
        req: ConnectRequest,
        out: Outbox,
        peer: SocketAddr,
    },
    Request {
        conn: ConnId,
        xid: i32,
        op: i32,
        body: Bytes,
        started: Instant,
    },
    Disconnected {
        conn: ConnId,
    },
    FourLetter {
        word: String,
        reply: oneshot::Sender<String>,
    },
}

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub tick_ms: u64,
    pub min_session_ms: i32,
    pub max_session_ms: i32,
    pub snapshot_txns: u64,
    pub container_check_ms: u64,
    pub max_frame: usize,
}

/// The running processor.
#[derive(Debug)]
pub struct Handle {
    pub tx: mpsc::Sender<Msg>,
    pub durable: watch::Receiver<Durable>,
    pub stats: Arc<ServerStats>,
    thread: JoinHandle<()>,
}

impl Handle {
    /// Waits for the processor (and the log and snapshot threads) to finish. All senders
    /// must be dropped first.
    pub fn join(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// Recovers the state from the data directory and starts the pipeline.
pub fn start(cfg: Config, stats: Arc<ServerStats>) -> Result<Handle, PersistError> {
    let epoch = Instant::now();
    let (state, report) = recovery::recover(&cfg.data_dir, cfg.tick_ms, 0)?;
    tracing::info!(
        zxid = format_args!("{:#x}", state.last_zxid),
        snapshot = ?report.snapshot_zxid.map(|z| format!("{z:#x}")),
        replayed = report.replayed,
        nodes = state.tree.node_count(),
        sessions = state.sessions.len(),
        "recovered"
    );
    let log = log::start(&cfg.data_dir, state.last_zxid + 1, state.last_zxid)?;
    let snapshotter =
        snapshot::start(&cfg.data_dir).map_err(|e| PersistError::io(&cfg.data_dir, e))?;
    let (tx, rx) = mpsc::channel();
    let durable = log.durable.clone();
    let max_session = state.sessions.iter().map(|s| s.id).max().unwrap_or(0);
    let mut p = Processor {
        cfg,
        state,
        watches: WatchManager::new(),
        conns: HashMap::new(),
        session_conn: HashMap::new(),
        log: Some(log),
        batch: LogBatch::default(),
        snapshotter: Some(snapshotter),
        since_snapshot: report.replayed as u64,
        epoch,
        secret: random_secret(),
        next_session: initial_session_id().max(max_session + 1),
        last_container_check: 0,
        activity: Activity::new(),
        stats: stats.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("processor".into())
        .spawn(move || p.run(rx))
        .map_err(|e| PersistError::io(std::path::Path::new("processor thread"), e))?;
    Ok(Handle {
        tx,
        durable,
        stats,
        thread,
    })
}

/// ZooKeeper's scheme: wall-clock milliseconds in the middle bits, server id 1 on top, so
/// ids from before a restart are not handed out again.
fn initial_session_id() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    (((ms << 24) >> 8) | (1u64 << 56)) as i64
}

fn random_secret() -> [u8; 16] {
    use std::io::Read;
    let mut s = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut s));
    if read.is_err() {
        // No /dev/urandom: fall back to the clock, still unique per start.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        s.copy_from_slice(&t.to_be_bytes());
    }
    s
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Conn {
    session: i64,
    out: Outbox,
    auth: Vec<Id>,
    peer: SocketAddr,
    timeout_ms: i32,
    since: Instant,
    received: u64,
}

struct Processor {
    cfg: Config,
    state: State,
    watches: WatchManager,
    conns: HashMap<ConnId, Conn>,
    session_conn: HashMap<i64, ConnId>,
    log: Option<log::LogHandle>,
    /// Records encoded but not yet handed to the log thread.
    batch: LogBatch,
    snapshotter: Option<Snapshotter>,
    since_snapshot: u64,
    epoch: Instant,
    secret: [u8; 16],
    next_session: i64,
    last_container_check: u64,
    activity: Activity,
    stats: Arc<ServerStats>,
}

/// How long the processor polls for the next request before it sleeps; see
/// [`Processor::wait`]. Longer than a one-client round trip including an fsync.
const SPIN: Duration = Duration::from_micros(200);
/// Active connections are counted over windows of this length.
const ACTIVITY_WINDOW: Duration = Duration::from_millis(10);

/// The processor's input channel has no senders left.
struct Disconnected;

/// Which connections sent requests lately, to decide whether polling pays off.
struct Activity {
    /// Connections seen in the current window.
    seen: std::collections::HashSet<ConnId>,
    window_start: Instant,
    /// Connections seen in the last full window.
    last: usize,
    /// Poll only while at most this many connections are active: one per CPU.
    limit: usize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            seen: Default::default(),
            window_start: Instant::now(),
            last: 0,
            limit: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    fn record(&mut self, conn: ConnId) {
        self.seen.insert(conn);
    }

    /// True while some but few connections are active.
    fn should_spin(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= ACTIVITY_WINDOW {
            self.last = self.seen.len();
            self.seen.clear();
            self.window_start = now;
        }
        let active = self.last.max(self.seen.len());
        active > 0 && active <= self.limit
    }
}

/// A batch is handed to the log thread once it holds this many bytes, or once this many
/// requests were handled since it started, even if more requests are queued.
const LOG_BATCH_BYTES: usize = 256 * 1024;
const LOG_BATCH_MESSAGES: u32 = 64;

/// Framed log records for consecutive zxids, encoded in place (no allocation per record).
#[derive(Default)]
struct LogBatch {
    frames: Vec<u8>,
    first: i64,
    last: i64,
    /// Requests handled since the first record went in.
    held: u32,
}

impl LogBatch {
    fn push(&mut self, rec: &TxnRecord) {
        use fjord_shared::fs::FRAME_HEADER;
        let start = self.frames.len();
        self.frames.extend_from_slice(&[0; FRAME_HEADER]);
        if let Err(e) = rmp_serde::encode::write(&mut self.frames, rec) {
            // Our records always encode; if one ever did not, replies would wait forever on a
            // zxid that never becomes durable, which is the safe failure.
            tracing::error!(zxid = rec.zxid, error = %e, "cannot encode a transaction");
            self.frames.truncate(start);
            return;
        }
        let payload = &self.frames[start + FRAME_HEADER..];
        // Frames are bounded by the request size limit, far below 4 GiB.
        let len = payload.len() as u32;
        let crc = crc32c::crc32c(payload);
        self.frames[start..start + 4].copy_from_slice(&len.to_be_bytes());
        self.frames[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_be_bytes());
        if start == 0 {
            self.first = rec.zxid;
        }
        self.last = rec.zxid;
    }

    /// (first zxid, last zxid, frames), leaving the batch empty.
    fn take(&mut self) -> Option<(i64, i64, Vec<u8>)> {
        if self.frames.is_empty() {
            return None;
        }
        let frames = std::mem::replace(&mut self.frames, Vec::with_capacity(4096));
        self.held = 0;
        Some((self.first, self.last, frames))
    }
}

/// Builds one reply frame.
fn reply_frame(xid: i32, zxid: i64, err: i32, body: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    frame_with(&mut b, |b| {
        ReplyHeader { xid, zxid, err }.write(b);
        if err == 0 {
            body(b);
        }
    });
    b.freeze()
}

fn no_body(_: &mut BytesMut) {}

/// The body of a write's reply, by opcode.
fn write_body(opcode: i32, out: &OpOutcome, b: &mut BytesMut) {
    let stat = out.stat.clone().unwrap_or_default();
    match opcode {
        op::CREATE => CreateResponse {
            path: out.path.clone().unwrap_or_default(),
        }
        .write(b),
        op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => Create2Response {
            path: out.path.clone().unwrap_or_default(),
            stat,
        }
        .write(b),
        op::SET_DATA | op::SET_ACL => StatResponse { stat }.write(b),
        _ => {}
    }
}

impl Processor {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        let half_tick = Duration::from_millis((self.cfg.tick_ms / 2).max(1));
        let mut next_tick = Instant::now() + half_tick;
        loop {
            let msg = match rx.try_recv() {
                Ok(msg) => Some(msg),
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {
                    // Everything queued is handled: log it as one batch, then wait.
                    self.flush_log();
                    match self.wait(&rx, next_tick) {
                        Ok(msg) => msg,
                        Err(Disconnected) => break,
                    }
                }
            };
            if let Some(msg) = msg {
                self.handle(msg);
                // Under a steady stream of requests the queue may never run empty: bound how
                // long logged records (and the replies waiting on them) are held back.
                if !self.batch.frames.is_empty() {
                    self.batch.held += 1;
                    if self.batch.held >= LOG_BATCH_MESSAGES {
                        self.flush_log();
                    }
                }
            }
            if Instant::now() >= next_tick {
                self.tick();
                next_tick = Instant::now() + half_tick;
            }
        }
        // Shut down: stop the log (it drains its queue first) and the snapshot writer.
        self.flush_log();
        if let Some(log) = self.log.take() {
            drop(log.tx);
            let _ = log.thread.join();
        }
        if let Some(s) = self.snapshotter.take() {
            drop(s.tx);
            let _ = s.thread.join();
        }
    }

    /// Waits for the next message until `deadline` (`None` when it passes). While few
    /// clients are active it polls for up to [`SPIN`] before sleeping: a request that
    /// finds the thread awake costs its sender no wake-up call and is handled without a
    /// trip through the scheduler, which for one client is about half of a read's round
    /// trip. With more active clients than CPUs, the CPU is better left to the network
    /// threads, and the thread sleeps at once.
    fn wait(
        &mut self,
        rx: &mpsc::Receiver<Msg>,
        deadline: Instant,
    ) -> Result<Option<Msg>, Disconnected> {
        let now = Instant::now();
        if self.activity.should_spin(now) {
            let until = now + SPIN.min(deadline.saturating_duration_since(now));
            loop {
                // Yield rather than burn: a runnable thread on this CPU goes first.
                std::thread::yield_now();
                match rx.try_recv() {
                    Ok(msg) => return Ok(Some(msg)),
                    Err(mpsc::TryRecvError::Disconnected) => return Err(Disconnected),
                    Err(mpsc::TryRecvError::Empty) => {}
                }
                if Instant::now() >= until {
                    break;
                }
            }
        }
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(msg) => Ok(Some(msg)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Disconnected),
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Connect {
                conn,
                req,
                out,
                peer,
            } => self.on_connect(conn, req, out, peer),
            Msg::Request {
                conn,
                xid,
                op,
                body,
                started,
            } => self.on_request(conn, xid, op, &body, started),
            Msg::Disconnected { conn } => self.drop_conn(conn),
            Msg::FourLetter { word, reply } => {
                let _ = reply.send(four_letter::render(&word, &self.view()));
            }
        }
    }

    fn send(&self, conn: ConnId, after: i64, bytes: Bytes, started: Option<Instant>) {
        if let Some(c) = self.conns.get(&conn) {
            let _ = c.out.send(Out::Frame {
                after,
                bytes,
                started,
            });
        }
    }

    fn close(&mut self, conn: ConnId, after: i64, reason: String) {
        if let Some(c) = self.conns.get(&conn) {
            let _ = c.out.send(Out::Close { after, reason });
        }
        self.drop_conn(conn);
    }

    /// Forgets a connection and its watches; its session lives on until it expires.
    fn drop_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            self.watches.remove_conn(conn);
            if self.session_conn.get(&c.session) == Some(&conn) {
                self.session_conn.remove(&c.session);
            }
        }
    }

    /// Logs a transaction, applies it, fires its watches. Returns its zxid and outcomes.
    fn commit(&mut self, session: i64, txn: Txn) -> (i64, Vec<OpOutcome>) {
        let zxid = self.state.last_zxid + 1;
        let rec = TxnRecord {
            zxid,
            time: wall_ms(),
            session,
            txn,
        };
        self.batch.push(&rec);
        if self.batch.frames.len() >= LOG_BATCH_BYTES {
            self.flush_log();
        }
        let now = self.now();
        let (changes, outcomes) = txn::apply(&mut self.state, &rec, now);
        for change in &changes {
            for n in self.watches.trigger(change) {
                let bytes = notification(n.event_type, &n.path);
                self.send(n.conn, zxid, bytes, None);
            }
        }
        self.since_snapshot += 1;
        self.maybe_snapshot();
        (zxid, outcomes)
    }

    fn maybe_snapshot(&mut self) {
        if self.since_snapshot < self.cfg.snapshot_txns {
            return;
        }
        let Some(s) = &self.snapshotter else { return };
        // O(1) for the tree (a shared view, copied on write) plus the session list.
        let job = SnapshotJob {
            last_zxid: self.state.last_zxid,
            tree: self.state.tree.view(),
            sessions: self
                .state
                .sessions
                .iter()
                .map(|s| SnapSession {
                    id: s.id,
                    timeout_ms: s.timeout_ms,
                    passwd: s.passwd,
                })
                .collect(),
        };
        // One snapshot at a time: if the writer is busy, try again after the next write.
        if s.tx.try_send(job).is_ok() {
            self.since_snapshot = 0;
            // The new log file starts right after the snapshot's last zxid.
            self.flush_log();
            if let Some(log) = &self.log {
                let _ = log.tx.send(LogCmd::Roll);
            }
        }
    }

    /// Hands the records logged so far to the log thread. Called before the processor waits
    /// for requests (replies wait for these records to be durable), after a snapshot point,
    /// and when the batch is large.
    fn flush_log(&mut self) {
        let Some((first, last, frames)) = self.batch.take() else {
            return;
        };
        if let Some(log) = &self.log {
            if log
                .tx
                .send(LogCmd::Append {
                    first,
                    last,
                    frames,
                })
                .is_err()
            {
                tracing::error!(
                    zxid = last,
                    "the transaction log thread is gone; nothing more will be acknowledged"
                );
            }
        }
    }

    fn password(&self, id: i64) -> [u8; 16] {
        let mut h = sha1_smol::Sha1::new();
        h.update(&self.secret);
        h.update(&id.to_be_bytes());
        let d = h.digest().bytes();
        let mut p = [0u8; 16];
        p.copy_from_slice(&d[..16]);
        p
    }

    fn on_connect(&mut self, conn: ConnId, req: ConnectRequest, out: Outbox, peer: SocketAddr) {
        let with_ro = req.read_only.map(|_| false);
        if req.last_zxid_seen > self.state.last_zxid {
            let reason = format!(
                "refusing session: the client has seen zxid {:#x}, our last zxid is {:#x}",
                req.last_zxid_seen, self.state.last_zxid
            );
            let _ = out.send(Out::Close { after: 0, reason });
            return;
        }
        let timeout = negotiate_timeout(
            req.timeout,
            self.cfg.min_session_ms,
            self.cfg.max_session_ms,
        );
        let auth = vec![Id {
            scheme: "ip".into(),
            id: peer.ip().to_string(),
        }];
        let new_conn = |session| Conn {
            session,
            out: out.clone(),
            auth,
            peer,
            timeout_ms: timeout,
            since: Instant::now(),
            received: 0,
        };
        if req.session_id == 0 {
            let id = self.next_session;
            self.next_session += 1;
            let passwd = self.password(id);
            self.conns.insert(conn, new_conn(id));
            self.session_conn.insert(id, conn);
            let (zxid, _) = self.commit(
                id,
                Txn::CreateSession {
                    timeout_ms: timeout,
                    passwd,
                },
            );
            tracing::debug!(session_id = format_args!("{id:#x}"), timeout, %peer, "session created");
            let resp = ConnectResponse {
                protocol_version: 0,
                timeout,
                session_id: id,
                passwd: Bytes::copy_from_slice(&passwd),
                read_only: with_ro,
            };
            self.send(conn, zxid, connect_frame(&resp), None);
            return;
        }
        let id = req.session_id;
        let valid = self
            .state
            .sessions
            .get(id)
            .is_some_and(|s| !s.closing && s.passwd[..] == req.passwd[..]);
        if !valid {
            tracing::info!(session_id = format_args!("{id:#x}"), %peer, "reconnect for an expired or unknown session (or a wrong password)");
            let resp = ConnectResponse {
                protocol_version: 0,
                timeout: 0,
                session_id: 0,
                passwd: Bytes::from_static(&[0; 16]),
                read_only: with_ro,
            };
            let after = self.state.last_zxid;
            let _ = out.send(Out::Frame {
                after,
                bytes: connect_frame(&resp),
                started: None,
            });
            let _ = out.send(Out::Close {
                after,
                reason: "session expired".into(),
            });
            return;
        }
        if let Some(old) = self.session_conn.get(&id).copied() {
            if old != conn {
                let after = self.state.last_zxid;
                self.close(old, after, "the session moved to a new connection".into());
            }
        }
        let now = self.now();
        self.state.sessions.set_timeout(id, timeout, now);
        self.conns.insert(conn, new_conn(id));
        self.session_conn.insert(id, conn);
        let passwd = self
            .state
            .sessions
            .get(id)
            .map(|s| s.passwd)
            .unwrap_or_default();
        tracing::debug!(session_id = format_args!("{id:#x}"), timeout, %peer, "session resumed");
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout,
            session_id: id,
            passwd: Bytes::copy_from_slice(&passwd),
            read_only: with_ro,
        };
        self.send(conn, self.state.last_zxid, connect_frame(&resp), None);
    }

    fn on_request(&mut self, conn: ConnId, xid: i32, opcode: i32, body: &[u8], started: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.received += 1;
        let session = c.session;
        self.activity.record(conn);
        let now = self.now();
        self.state.sessions.touch(session, now);
        let req = match request::decode(opcode, body) {
            Ok(r) => r,
            Err(e) => {
                // ZooKeeper answers a body it cannot read with MarshallingError and keeps the
                // connection; a write still consumes a zxid (it logs an error transaction).
                tracing::warn!(conn, session_id = format_args!("{session:#x}"), op = opcode, xid, error = %e, "malformed request body");
                let err = ErrorCode::MarshallingError.code();
                let zxid = if request::is_write(opcode) {
                    self.commit(session, Txn::Error { err }).0
                } else {
                    self.state.last_zxid
                };
                self.send(
                    conn,
                    zxid,
                    reply_frame(xid, zxid, err, no_body),
                    Some(started),
                );
                return;
            }
        };
        let last = self.state.last_zxid;
        let started = Some(started);
        let ids = self
            .conns
            .get(&conn)
            .map(|c| c.auth.clone())
            .unwrap_or_default();
        let ctx = Ctx { session, ids: &ids };
        match req {
            Request::Write(w) => {
                let mut ov = Overlay::new(&self.state.tree);
                let (txn, err) = match prep::prep(&mut ov, ctx, &w) {
                    Ok(t) => (t, 0),
                    Err(e) => (Txn::Error { err: e.code() }, e.code()),
                };
                let (zxid, outcomes) = self.commit(session, txn);
                let out = outcomes.into_iter().next().unwrap_or_default();
                self.send(
                    conn,
                    zxid,
                    reply_frame(xid, zxid, err, |b| write_body(w.opcode(), &out, b)),
                    started,
                );
            }
            Request::Multi(ops) => {
                let txn = prep::prep_multi(&self.state.tree, ctx, &ops);
                let failed = match &txn {
                    Txn::MultiFailed(codes) => Some(codes.clone()),
                    _ => None,
                };
                let (zxid, outcomes) = self.commit(session, txn);
                let frame = reply_frame(xid, zxid, 0, |b| {
                    match failed {
                        Some(codes) => {
                            for err in codes {
                                MultiHeader {
                                    op: op::ERROR,
                                    done: false,
                                    err,
                                }
                                .write(b);
                                ErrorResponse { err }.write(b);
                            }
                        }
                        None => {
                            for (w, out) in ops.iter().zip(outcomes.iter()) {
                                // ZooKeeper answers a create2 inside a multi as a plain
                                // create (type 1, path only); other ops keep their type.
                                let code = match w.opcode() {
                                    op::CREATE2 => op::CREATE,
                                    other => other,
                                };
                                MultiHeader {
                                    op: code,
                                    done: false,
                                    err: 0,
                                }
                                .write(b);
                                write_body(code, out, b);
                            }
                        }
                    }
                    MultiHeader {
                        op: -1,
                        done: true,
                        err: -1,
                    }
                    .write(b);
                });
                self.send(conn, zxid, frame, started);
            }
            Request::MultiRead(ops) => {
                let tree = &self.state.tree;
                let frame = reply_frame(xid, last, 0, |b| {
                    for r in &ops {
                        let (path, code) = match r {
                            ReadOp::GetChildren(p) => (p, op::GET_CHILDREN),
                            ReadOp::GetData(p) => (p, op::GET_DATA),
                        };
                        let res = tree
                            .get(path)
                            .ok_or(ErrorCode::NoNode)
                            .and_then(|n| acl::check(&n.acl, perms::READ, &ids).map(|_| n));
                        match res {
                            Ok(n) => {
                                MultiHeader {
                                    op: code,
                                    done: false,
                                    err: 0,
                                }
                                .write(b);
                                if code == op::GET_CHILDREN {
                                    GetChildrenResponse {
                                        children: n.child_names(),
                                    }
                                    .write(b);
                                } else {
                                    GetDataResponse {
                                        data: n.data().map(Bytes::copy_from_slice),
                                        stat: n.client_stat(),
                                    }
                                    .write(b);
                                }
                            }
                            Err(e) => {
                                MultiHeader {
                                    op: op::ERROR,
                                    done: false,
                                    err: e.code(),
                                }
                                .write(b);
                                ErrorResponse { err: e.code() }.write(b);
                            }
                        }
                    }
                    MultiHeader {
                        op: -1,
                        done: true,
                        err: -1,
                    }
                    .write(b);
                });
                self.send(conn, last, frame, started);
            }
            Request::Exists(r) => {
                // exists checks no ACL in ZooKeeper, and sets the watch even on a missing node.
                let frame = if r.path.contains('\0') {
                    reply_frame(xid, last, ErrorCode::BadArguments.code(), no_body)
                } else {
                    if r.watch {
                        self.watches.add_data(&r.path, conn);
                    }
                    match self.state.tree.get(&r.path) {
                        Some(n) => {
                            let stat = n.client_stat();
                            reply_frame(xid, last, 0, |b| StatResponse { stat }.write(b))
                        }
                        None => reply_frame(xid, last, ErrorCode::NoNode.code(), no_body),
                    }
                };
                self.send(conn, last, frame, started);
            }
            Request::GetData(r) => {
                let res = self
                    .readable(&r.path, perms::READ, &ids)
                    .map(|n| (n.data().map(Bytes::copy_from_slice), n.client_stat()));
                let frame = match res {
                    Ok((data, stat)) => {
                        if r.watch {
                            self.watches.add_data(&r.path, conn);
                        }
                        reply_frame(xid, last, 0, |b| GetDataResponse { data, stat }.write(b))
                    }
                    Err(e) => reply_frame(xid, last, e.code(), no_body),
                };
                self.send(conn, last, frame, started);
            }
            Request::GetChildren(r) | Request::GetChildren2(r) => {
                let two = opcode == op::GET_CHILDREN2;
                let res = self
                    .readable(&r.path, perms::READ, &ids)
                    .map(|n| (n.child_names(), n.client_stat()));
                let frame = match res {
                    Ok((children, stat)) => {
                        if r.watch {
                            self.watches.add_child(&r.path, conn);
                        }
                        reply_frame(xid, last, 0, |b| {
                            if two {
                                GetChildren2Response { children, stat }.write(b)
                            } else {
                                GetChildrenResponse { children }.write(b)
                            }
                        })
                    }
                    Err(e) => reply_frame(xid, last, e.code(), no_body),
                };
                self.send(conn, last, frame, started);
            }
            Request::GetAcl(r) => {
                let res = self
                    .readable(&r.path, perms::READ | perms::ADMIN, &ids)
                    .map(|n| {
                        // Without ADMIN, digest hashes are masked as `user:x`, as ZooKeeper does.
                        let admin = acl::check(&n.acl, perms::ADMIN, &ids).is_ok();
                        let acl = n.acl.iter().cloned().map(|mut a| {
                            if !admin && a.id.scheme == "digest" {
                                let user = a.id.id.split(':').next().unwrap_or("").to_owned();
                                a.id.id = format!("{user}:x");
                            }
                            a
                        });
                        (acl.collect(), n.client_stat())
                    });
                let frame = match res {
                    Ok((acl, stat)) => {
                        reply_frame(xid, last, 0, |b| GetAclResponse { acl, stat }.write(b))
                    }
                    Err(e) => reply_frame(xid, last, e.code(), no_body),
                };
                self.send(conn, last, frame, started);
            }
            Request::Sync(r) => {
                self.send(
                    conn,
                    last,
                    reply_frame(xid, last, 0, |b| PathRequest { path: r.path }.write(b)),
                    started,
                );
            }
            Request::Ping => {
                self.send(conn, last, reply_frame(xid, last, 0, no_body), started);
            }
            Request::SetWatches(s) => {
                for path in &s.data_watches {
                    match self.state.tree.get(path) {
                        None => {
                            self.send(conn, last, notification(event::NODE_DELETED, path), None)
                        }
                        Some(n) if n.stat.mzxid > s.relative_zxid => self.send(
                            conn,
                            last,
                            notification(event::NODE_DATA_CHANGED, path),
                            None,
                        ),
                        Some(_) => self.watches.add_data(path, conn),
                    }
                }
                for path in &s.exist_watches {
                    if self.state.tree.get(path).is_some() {
                        self.send(conn, last, notification(event::NODE_CREATED, path), None);
                    } else {
                        self.watches.add_data(path, conn);
                    }
                }
                for path in &s.child_watches {
                    match self.state.tree.get(path) {
                        None => {
                            self.send(conn, last, notification(event::NODE_DELETED, path), None)
                        }
                        Some(n) if n.stat.pzxid > s.relative_zxid => self.send(
                            conn,
                            last,
                            notification(event::NODE_CHILDREN_CHANGED, path),
                            None,
                        ),
                        Some(_) => self.watches.add_child(path, conn),
                    }
                }
                for path in &s.persistent_watches {
                    self.watches.add_persistent(path, conn, false);
                }
                for path in &s.persistent_recursive_watches {
                    self.watches.add_persistent(path, conn, true);
                }
                self.send(conn, last, reply_frame(xid, last, 0, no_body), started);
            }
            Request::AddWatch(r) => {
                let frame = match r.mode {
                    add_watch_mode::PERSISTENT | add_watch_mode::PERSISTENT_RECURSIVE => {
                        self.watches.add_persistent(
                            &r.path,
                            conn,
                            r.mode == add_watch_mode::PERSISTENT_RECURSIVE,
                        );
                        reply_frame(xid, last, 0, |b| ErrorResponse { err: 0 }.write(b))
                    }
                    _ => reply_frame(xid, last, ErrorCode::BadArguments.code(), no_body),
                };
                self.send(conn, last, frame, started);
            }
            Request::RemoveWatches { req, remove } => {
                let (data, child) = match req.watcher_type {
                    watcher_type::CHILDREN => (false, true),
                    watcher_type::DATA => (true, false),
                    watcher_type::ANY => (true, true),
                    _ => (false, false),
                };
                let found = if remove {
                    self.watches.remove(&req.path, conn, data, child)
                } else {
                    self.watches.contains(&req.path, conn, data, child)
                };
                let err = if found {
                    0
                } else {
                    ErrorCode::NoWatcher.code()
                };
                self.send(conn, last, reply_frame(xid, last, err, no_body), started);
            }
            Request::GetEphemerals(r) => {
                let prefix = r.path.trim();
                let all = self.state.tree.ephemerals_of(session);
                let ephemerals = if prefix.is_empty() || prefix == "/" {
                    all
                } else {
                    all.into_iter().filter(|p| p.starts_with(&r.path)).collect()
                };
                self.send(
                    conn,
                    last,
                    reply_frame(xid, last, 0, |b| {
                        GetEphemeralsResponse { ephemerals }.write(b)
                    }),
                    started,
                );
            }
            Request::GetAllChildrenNumber(r) => {
                let res = self.readable(&r.path, perms::READ, &ids).map(|_| ());
                let frame = match res {
                    Ok(()) => {
                        let total = self.state.tree.all_children_number(&r.path) as i32;
                        reply_frame(xid, last, 0, |b| {
                            GetAllChildrenNumberResponse { total }.write(b)
                        })
                    }
                    Err(e) => reply_frame(xid, last, e.code(), no_body),
                };
                self.send(conn, last, frame, started);
            }
            Request::WhoAmI => {
                let client_info = ids
                    .iter()
                    .map(|i| ClientInfo {
                        auth_scheme: i.scheme.clone(),
                        user: if i.scheme == "digest" {
                            i.id.split(':').next().unwrap_or("").to_owned()
                        } else {
                            i.id.clone()
                        },
                    })
                    .collect();
                self.send(
                    conn,
                    last,
                    reply_frame(xid, last, 0, |b| WhoAmIResponse { client_info }.write(b)),
                    started,
                );
            }
            Request::Auth(a) => match acl::authenticate(&a.scheme, &a.auth) {
                Ok(id) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        if !c.auth.contains(&id) {
                            c.auth.push(id);
                            // whoAmI lists ids by scheme, as ZooKeeper does ("digest" before "ip").
                            c.auth.sort_by(|a, b| a.scheme.cmp(&b.scheme));
                        }
                    }
                    self.send(conn, last, reply_frame(xid, 0, 0, no_body), started);
                }
                Err(e) => {
                    tracing::info!(conn, scheme = %a.scheme, "authentication failed; closing the connection");
                    self.send(conn, last, reply_frame(xid, 0, e.code(), no_body), started);
                    self.close(
                        conn,
                        last,
                        format!("authentication failed for scheme {}", a.scheme),
                    );
                }
            },
            Request::CloseSession => {
                self.session_conn.remove(&session);
                self.state.sessions.set_closing(session);
                let (zxid, _) = self.commit(session, Txn::CloseSession);
                self.send(conn, zxid, reply_frame(xid, zxid, 0, no_body), started);
                self.close(conn, zxid, "session closed by the client".into());
            }
            Request::Unknown(code) => {
                // ZooKeeper replies with zxid -1 and then closes the connection; we keep it
                // open, so a client probing for newer operations can carry on.
                tracing::debug!(conn, op = code, "unknown opcode");
                let frame = reply_frame(xid, -1, ErrorCode::Unimplemented.code(), no_body);
                self.send(conn, last, frame, started);
            }
        }
    }

    /// A node the ids may access with `perm`, or the error ZooKeeper gives.
    fn readable(&self, path: &str, perm: i32, ids: &[Id]) -> Result<&crate::tree::Node, ErrorCode> {
        let n = self.state.tree.get(path).ok_or(ErrorCode::NoNode)?;
        acl::check(&n.acl, perm, ids)?;
        Ok(n)
    }

    fn tick(&mut self) {
        let now = self.now();
        for id in self.state.sessions.expire(now) {
            tracing::info!(session_id = format_args!("{id:#x}"), "session expired");
            let conn = self.session_conn.remove(&id);
            let (zxid, _) = self.commit(id, Txn::CloseSession);
            if let Some(conn) = conn {
                self.close(conn, zxid, "session expired".into());
            }
        }
        if now.saturating_sub(self.last_container_check) >= self.cfg.container_check_ms {
            self.last_container_check = now;
            for path in self.state.tree.empty_containers() {
                tracing::debug!(path, "deleting an empty container");
                self.commit(0, Txn::Delete { path });
            }
        }
    }

    fn view(&self) -> View {
        let durable = self.log.as_ref().map(|l| *l.durable.borrow());
        View {
            last_zxid: self.state.last_zxid,
            node_count: self.state.tree.node_count(),
            data_size: self.state.tree.approximate_data_size(),
            ephemerals: self.state.tree.ephemeral_count(),
            ephemeral_list: self
                .state
                .tree
                .ephemeral_sessions()
                .map(|(s, p)| (*s, p.iter().cloned().collect()))
                .collect(),
            sessions: self
                .state
                .sessions
                .iter()
                .map(|s| (s.id, s.timeout_ms))
                .collect(),
            watch_count: self.watches.count(),
            watches_by_conn: self.watches.paths_by_conn(),
            conns: self
                .conns
                .iter()
                .map(|(id, c)| four_letter::ConnView {
                    id: *id,
                    peer: c.peer,
                    session: c.session,
                    timeout_ms: c.timeout_ms,
                    received: c.received,
                    since_ms: c.since.elapsed().as_millis() as u64,
                })
                .collect(),
            stats: self.stats.clone(),
            log_failed: durable.is_some_and(|d| d.failed),
            tick_ms: self.cfg.tick_ms,
            min_session_ms: self.cfg.min_session_ms,
            max_session_ms: self.cfg.max_session_ms,
            data_dir: self.cfg.data_dir.display().to_string(),
            max_frame: self.cfg.max_frame,
        }
    }
}

/// A watch notification frame: xid -1, zxid -1, as ZooKeeper 3.8 sends it.
fn notification(event_type: i32, path: &str) -> Bytes {
    reply_frame(xid::NOTIFICATION, -1, 0, |b| {
        WatcherEvent {
            event_type,
            state: kstate::SYNC_CONNECTED,
            path: path.to_owned(),
        }
        .write(b)
    })
}

fn connect_frame(resp: &ConnectResponse) -> Bytes {
    let mut b = BytesMut::with_capacity(48);
    frame_with(&mut b, |b| resp.write(b));
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_shared::fs::{read_frame, Frame};

    #[test]
    fn a_log_batch_holds_readable_frames_for_consecutive_zxids() {
        let mut batch = LogBatch::default();
        assert!(batch.take().is_none());
        let recs: Vec<TxnRecord> = (7..10)
            .map(|zxid| TxnRecord {
                zxid,
                time: 1,
                session: 2,
                txn: Txn::Delete {
                    path: format!("/n{zxid}"),
                },
            })
            .collect();
        for r in &recs {
            batch.push(r);
        }
        let (first, last, frames) = batch.take().unwrap();
        assert_eq!((first, last), (7, 9));
        let mut pos = 0;
        for r in &recs {
            let Frame::Ok { payload, next } = read_frame(&frames, pos, usize::MAX) else {
                panic!("no frame at {pos}")
            };
            assert_eq!(&rmp_serde::from_slice::<TxnRecord>(payload).unwrap(), r);
            pos = next;
        }
        assert_eq!(pos, frames.len());
        // Taking empties it; the next batch starts at its own first zxid.
        assert!(batch.take().is_none());
        batch.push(&recs[2]);
        assert_eq!(batch.take().map(|(f, l, _)| (f, l)), Some((9, 9)));
    }
}
