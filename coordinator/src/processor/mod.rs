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
//!
//! Files: this one holds the processor's state and its loop (wait, handle, tick, the
//! four-letter-word view); `connect.rs` sessions; `dispatch.rs` every request on a
//! session; [`prep`] validation into transactions; `commit.rs` log, apply and snapshots;
//! `log_batch.rs` the group-commit batch; `reply.rs` frames; `activity.rs` when to spin.

mod activity;
mod commit;
mod connect;
mod dispatch;
mod log_batch;
mod prep;
mod reply;
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

use activity::{Activity, SPIN};
use log_batch::{LogBatch, LOG_BATCH_BYTES, LOG_BATCH_MESSAGES};
use reply::*;

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

/// The processor's input channel has no senders left.
struct Disconnected;

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
