//! The single ordered request pipeline.
//!
//! One thread owns the tree, the sessions, the watch tables and the client connections, and
//! takes requests from every connection in arrival order.
//!
//! - A read is answered at once from the tree, which holds only committed writes.
//! - A write (and a session's creation and closing) becomes a [`Proposal`] for the
//!   replicated log. When Raft has committed it (a quorum has it fsynced; in a standalone
//!   coordinator, this member's fsync), openraft hands it back through
//!   [`crate::ensemble::state_machine`] (a standalone member's log thread hands it over
//!   itself, see [`crate::ensemble::solo`]) and every member applies it the same way: [`prep`]
//!   validates it against the tree into a transaction (or an error transaction, which still
//!   consumes a zxid, as in ZooKeeper), [`crate::txn::apply`] applies it, the watches it
//!   triggers fire, and the member holding the client's connection queues the reply.
//! - Per session, requests are answered in order: a read that arrives after a write of the
//!   same connection waits until that write is applied (sequential consistency).
//!
//! Files: this one holds the processor's state and its loop (wait, handle, tick, the
//! four-letter-word view); `connect.rs` sessions; `dispatch.rs` every request on a
//! session; [`prep`] validation into transactions; `apply.rs` committed entries and
//! snapshots; `reply.rs` frames; `activity.rs` when to spin.

mod activity;
mod apply;
mod conn_stats;
pub use conn_stats::ConnStats;
mod connect;
mod dispatch;
mod inspect;
mod prep;
mod reply;
pub mod request;
pub use prep::WriteOp;

use crate::acl;
use crate::ensemble::state_machine::SmRequest;
use crate::ensemble::{self, LogId, Op, Origin, Outbound, Proposal, StoredMembership};
use crate::four_letter::{self, ServerStats, View};
use crate::metrics::stats::{inc, STATS};
use crate::persist::snapshot::SnapshotJob;
use crate::persist::PersistError;
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
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch};

use activity::{Activity, SPIN};
use reply::*;

/// How far this member has applied the replicated log. Every frame waits for the zxid it
/// depends on; since only committed entries are applied, that means nothing reaches a
/// client before a quorum has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    /// Every entry up to this zxid is committed and applied.
    pub zxid: i64,
    /// The member stopped applying and accepts nothing more.
    pub failed: bool,
}

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

/// Where a connection's frames go: its writer task, or straight to its socket (see
/// [`crate::direct_reply`]).
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: tokio::sync::mpsc::UnboundedSender<Out>,
    direct: Option<Arc<crate::direct_reply::DirectReply>>,
}

impl Outbox {
    pub fn new(
        tx: tokio::sync::mpsc::UnboundedSender<Out>,
        direct: Option<Arc<crate::direct_reply::DirectReply>>,
    ) -> Outbox {
        Outbox { tx, direct }
    }

    /// Queues for the writer task; false if the connection's writer is gone.
    pub fn send(&self, out: Out) -> bool {
        if let Some(d) = &self.direct {
            d.queue();
        }
        self.tx.send(out).is_ok()
    }

    /// A frame: written at once if the processor asks for it (`direct`: how far the log is
    /// applied), the connection allows it, nothing is queued before it, and everything it
    /// depends on is applied; else queued.
    fn send_frame(&self, after: i64, bytes: Bytes, started: Option<Instant>, direct: Option<i64>) {
        let bytes = match (&self.direct, direct) {
            (Some(d), Some(durable)) if after <= durable && d.idle() => {
                match d.write(bytes, started) {
                    None => return,
                    Some(rest) => rest,
                }
            }
            _ => bytes,
        };
        let _ = self.send(Out::Frame {
            after,
            bytes,
            started,
        });
    }
}

/// Messages to the processor.
#[derive(Debug)]
pub enum Msg {
    Connect {
        conn: ConnId,
        req: ConnectRequest,
        out: Outbox,
        peer: SocketAddr,
        /// Whether it came over TLS.
        secure: bool,
        /// The subject of a verified client certificate (TLS), the `x509` id.
        cert_subject: Option<String>,
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
    /// The processor's state for the AdminServer and the metrics; without the per-session,
    /// per-watch and per-connection lists unless `full`.
    View {
        full: bool,
        reply: oneshot::Sender<View>,
    },
    /// From the replicated log's state machine.
    Sm(SmRequest),
    /// Raft's view changed: who leads, in which term; on a leader, how many members follow
    /// it and how many of those are caught up.
    Role {
        leader: Option<u64>,
        term: u64,
        followers: usize,
        synced: usize,
    },
    /// A proposal of ours was not accepted (no leader, or leadership lost); its outcome is
    /// unknown, so its connection is closed and the client retries elsewhere.
    Rejected {
        origin: Origin,
        reason: String,
    },
    /// A follower's report of the sessions connected to it (the leader keeps them alive).
    Touch {
        sessions: Vec<i64>,
    },
    /// The leader's commit index for these syncs.
    SyncReady {
        origins: Vec<Origin>,
        index: u64,
    },
    /// These syncs could not be answered (no leader): their connections are closed.
    SyncFailed {
        origins: Vec<Origin>,
        reason: String,
    },
    /// A reconfig's outcome: the index of the new membership's entry, or an error code and
    /// why.
    ReconfigDone {
        origin: Origin,
        result: Result<ensemble::Reconfigured, (i32, String)>,
    },
    /// This member is standalone: proposals go to its log through this.
    Solo(Box<ensemble::solo::Appender>),
    /// The replicated log failed on this member: stop serving.
    Failed,
    /// Shut down (other tasks hold senders, so the channel never disconnects by itself).
    Stop,
}

/// Where proposals, keep-alives and syncs go: the task that hands them to Raft, or to the
/// leader; on a standalone member, proposals and syncs go straight to the log.
pub struct Proposer {
    tx: tokio::sync::mpsc::UnboundedSender<Outbound>,
    solo: Option<Box<ensemble::solo::Appender>>,
}

impl std::fmt::Debug for Proposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposer")
            .field("solo", &self.solo.is_some())
            .finish_non_exhaustive()
    }
}

impl Proposer {
    pub fn new(tx: tokio::sync::mpsc::UnboundedSender<Outbound>) -> Proposer {
        Proposer { tx, solo: None }
    }

    fn send(&self, o: Outbound) -> Result<(), ()> {
        match (&self.solo, o) {
            (Some(solo), Outbound::Propose(p)) => solo.push(p),
            (Some(solo), Outbound::Sync(origin)) => solo.sync(origin),
            (_, o) => return self.tx.send(o).map_err(|_| ()),
        }
        Ok(())
    }

    /// The processor's queue ran empty: what it proposed meanwhile goes to the log.
    fn flush(&self) {
        if let Some(solo) = &self.solo {
            solo.flush();
        }
    }
}

/// What the processor starts from: the newest snapshot's state, as of `applied`.
#[derive(Debug)]
pub struct Start {
    pub state: State,
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    /// This member's id.
    pub member: u64,
    pub proposer: Proposer,
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
    pub auth: AuthConfig,
}

/// Authentication settings.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// DIGEST-MD5 users (user → password).
    pub sasl_users: HashMap<String, String>,
    /// ZooKeeper's superDigest: `user:base64(sha1(user:password))`.
    pub super_digest: Option<String>,
    /// When not empty: refuse requests of connections that have not authenticated with one
    /// of these schemes (ZooKeeper's enforce.auth), with SESSIONCLOSEDREQUIRESASLAUTH and a
    /// close. The super user always passes.
    pub required_schemes: Vec<String>,
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
    /// Stops the processor and waits for its thread. Raft should be stopped first, so
    /// that nothing is applied half-way.
    pub fn join(self) {
        let _ = self.tx.send(Msg::Stop);
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// Starts the pipeline on a recovered state.
pub fn start(cfg: Config, stats: Arc<ServerStats>, start: Start) -> Result<Handle, PersistError> {
    let epoch = Instant::now();
    let (tx, rx) = mpsc::channel();
    let (durable_tx, durable) = watch::channel(Durable {
        zxid: start.state.last_zxid,
        failed: false,
    });
    let max_session = start
        .state
        .sessions
        .iter()
        .filter(|s| (s.id >> 56) as u64 == start.member)
        .map(|s| s.id)
        .max()
        .unwrap_or(0);
    let secret = random_secret();
    let mut run = [0u8; 8];
    run.copy_from_slice(&secret[..8]);
    let mut p = Processor {
        cfg,
        state: start.state,
        watches: WatchManager::new(),
        conns: HashMap::new(),
        session_conn: HashMap::new(),
        epoch,
        secret,
        member: start.member,
        run: u64::from_be_bytes(run),
        next_session: initial_session_id(start.member).max(max_session + 1),
        last_container_check: 0,
        activity: Activity::new(),
        stats: stats.clone(),
        proposer: start.proposer,
        applied: start.applied,
        membership: start.membership,
        leader: None,
        term: 0,
        durable: durable_tx,
        syncing: Default::default(),
        followers: (0, 0),
        leaderless_since: Some(Instant::now()),
        leading_since: None,
        since_snapshot: 0,
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

/// ZooKeeper's scheme: wall-clock milliseconds in the middle bits, the member id on top, so
/// ids from before a restart, or from another member, are not handed out again.
fn initial_session_id(member: u64) -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    (((ms << 24) >> 8) | ((member & 0xff) << 56)) as i64
}

fn random_secret() -> [u8; 16] {
    let mut s = [0u8; 16];
    if fjord_shared::random::fill(&mut s).is_err() {
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
    /// Over TLS.
    secure: bool,
    timeout_ms: i32,
    since: Instant,
    received: u64,
    /// Proposals from this connection not yet applied.
    pending: u32,
    /// Requests held back behind a pending write, in arrival order.
    queue: VecDeque<Queued>,
    /// When each pending proposal's request arrived, oldest first.
    inflight: VecDeque<Instant>,
    /// Whether the client's ConnectRequest had the readOnly field (the response mirrors it).
    read_only: Option<bool>,
    /// A sync waiting for the leader's commit index and then for this member to apply that
    /// far. Everything after it waits.
    sync: Option<PendingSync>,
    /// A DIGEST-MD5 exchange under way (opcode 102).
    sasl: Option<fjord_shared::digest_md5::DigestServer>,
    /// What `cons` shows of it.
    stats: conn_stats::ConnStats,
}

struct PendingSync {
    xid: i32,
    /// The sync's path; `None` for a reconfig, answered with the new configuration.
    path: Option<String>,
    started: Instant,
    /// The index to reach, once the leader has said.
    index: Option<u64>,
}

/// A request waiting for an earlier write of its connection.
struct Queued {
    xid: i32,
    op: i32,
    body: Bytes,
    started: Instant,
}

struct Processor {
    cfg: Config,
    state: State,
    watches: WatchManager,
    conns: HashMap<ConnId, Conn>,
    session_conn: HashMap<i64, ConnId>,
    epoch: Instant,
    secret: [u8; 16],
    /// This member's id, and this run of it (see [`Origin::run`]).
    member: u64,
    run: u64,
    next_session: i64,
    last_container_check: u64,
    activity: Activity,
    stats: Arc<ServerStats>,
    proposer: Proposer,
    /// The last entry applied, and the membership as of it.
    applied: Option<LogId>,
    membership: StoredMembership,
    leader: Option<u64>,
    term: u64,
    durable: watch::Sender<Durable>,
    /// Connections whose sync has its index and waits for apply to reach it.
    syncing: std::collections::BTreeSet<ConnId>,
    /// On a leader: (followers, synced followers).
    followers: (usize, usize),
    /// Proposals applied since the last snapshot was asked for.
    since_snapshot: u64,
    /// Since when this member has had no leader (for `election_time`).
    leaderless_since: Option<Instant>,
    /// Since when this member has led (for `leader_uptime`).
    leading_since: Option<Instant>,
}

/// The processor's input channel has no senders left.
struct Disconnected;

/// Messages the processor handles at most before it hands what it proposed to the log,
/// even if more are queued (a standalone member; see [`Proposer::flush`]).
const FLUSH_EVERY: usize = 256;

impl Processor {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        let half_tick = Duration::from_millis((self.cfg.tick_ms / 2).max(1));
        let mut next_tick = Instant::now() + half_tick;
        // Messages handled since proposals last went to the log.
        let mut since_flush = 0usize;
        loop {
            let msg = match rx.try_recv() {
                Ok(msg) => Some(msg),
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {
                    // Everything proposed since the queue was last empty goes to the log
                    // as one entry.
                    self.proposer.flush();
                    since_flush = 0;
                    match self.wait(&rx, next_tick) {
                        Ok(msg) => msg,
                        Err(Disconnected) => break,
                    }
                }
            };
            match msg {
                Some(Msg::Stop) => break,
                Some(msg) => self.handle(msg),
                None => {}
            }
            // A queue that never runs empty (more requests than this thread can take) must
            // not hold writes back.
            since_flush += 1;
            if since_flush >= FLUSH_EVERY {
                self.proposer.flush();
                since_flush = 0;
            }
            if Instant::now() >= next_tick {
                self.tick();
                next_tick = Instant::now() + half_tick;
            }
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
                secure,
                cert_subject,
            } => self.on_connect(conn, req, out, (peer, secure), cert_subject),
            Msg::Request {
                conn,
                xid,
                op,
                body,
                started,
            } => self.on_request(conn, xid, op, body, started),
            Msg::Disconnected { conn } => self.drop_conn(conn),
            Msg::FourLetter { word, reply } => {
                let _ = reply.send(four_letter::render(&word, &self.view(true)));
            }
            Msg::View { full, reply } => {
                let _ = reply.send(self.view(full));
            }
            Msg::Sm(req) => self.on_state_machine(req),
            Msg::Touch { sessions } => {
                if self.is_leader() {
                    let now = self.now();
                    for id in sessions {
                        self.state.sessions.touch(id, now);
                    }
                }
            }
            Msg::SyncReady { origins, index } => {
                for o in origins {
                    if !self.ours(&o) {
                        continue;
                    }
                    if let Some(s) = self.conns.get_mut(&o.conn).and_then(|c| c.sync.as_mut()) {
                        if s.xid == o.xid {
                            s.index = Some(index);
                            self.syncing.insert(o.conn);
                        }
                    }
                }
                self.answer_syncs();
            }
            Msg::ReconfigDone { origin, result } => {
                if !self.ours(&origin) {
                    return;
                }
                let conn = origin.conn;
                match result {
                    Ok(done) if !done.voters.contains(&self.member) => {
                        // This member is no longer in the ensemble and will not apply the
                        // change: answer with what the leader committed.
                        if let Some(s) = self.conns.get_mut(&conn).and_then(|c| c.sync.take()) {
                            let last = self.state.last_zxid;
                            let mut stat = self.config_node().1;
                            stat.mzxid = ensemble::zxid(done.index, 0);
                            stat.data_length = done.config.len() as i32;
                            let frame = reply_frame(s.xid, last, 0, |b| {
                                GetDataResponse {
                                    data: Some(Bytes::from(done.config)),
                                    stat,
                                }
                                .write(b)
                            });
                            self.send(conn, last, frame, Some(s.started));
                            self.drain_queue(conn);
                        }
                    }
                    Ok(done) => {
                        if let Some(s) = self.conns.get_mut(&conn).and_then(|c| c.sync.as_mut()) {
                            s.index = Some(done.index);
                            self.syncing.insert(conn);
                        }
                        self.answer_syncs();
                    }
                    Err((code, reason)) => {
                        tracing::info!(conn, %reason, "reconfig refused");
                        if let Some(s) = self.conns.get_mut(&conn).and_then(|c| c.sync.take()) {
                            let last = self.state.last_zxid;
                            let frame = reply_frame(s.xid, last, code, no_body);
                            self.send(conn, last, frame, Some(s.started));
                            self.drain_queue(conn);
                        }
                    }
                }
            }
            Msg::SyncFailed { origins, reason } => {
                for o in origins {
                    if self.ours(&o) {
                        let after = self.state.last_zxid;
                        self.close(o.conn, after, format!("sync failed: {reason}"));
                    }
                }
            }
            Msg::Failed => {
                self.durable.send_modify(|d| d.failed = true);
                self.leader = None;
                let conns: Vec<ConnId> = self.conns.keys().copied().collect();
                for conn in conns {
                    let after = self.state.last_zxid;
                    self.close(conn, after, "this member's log failed".into());
                }
            }
            Msg::Stop => {}
            Msg::Solo(appender) => self.proposer.solo = Some(appender),
            Msg::Role {
                leader,
                term,
                followers,
                synced,
            } => {
                self.followers = (followers, synced);
                self.on_role(leader, term)
            }
            Msg::Rejected { origin, reason } => {
                if self.ours(&origin) {
                    let conn = origin.conn;
                    tracing::info!(conn, %reason, "a write could not be proposed; closing its connection");
                    let after = self.state.last_zxid;
                    self.close(conn, after, format!("write not accepted: {reason}"));
                }
            }
        }
    }

    /// Queues a frame: a reply to a read (or ping) when `started` is set, a notification
    /// or connect answer otherwise.
    fn send(&mut self, conn: ConnId, after: i64, bytes: Bytes, started: Option<Instant>) {
        if let Some(t) = started {
            STATS.readlatency.observe(t.elapsed());
        }
        self.queue_frame(conn, after, bytes, started);
    }

    /// Queues the reply to a write once it is applied.
    fn send_write_reply(
        &mut self,
        conn: ConnId,
        after: i64,
        bytes: Bytes,
        started: Option<Instant>,
    ) {
        if let Some(t) = started {
            STATS.updatelatency.observe(t.elapsed());
        }
        self.queue_frame(conn, after, bytes, started);
    }

    fn queue_frame(&mut self, conn: ConnId, after: i64, bytes: Bytes, started: Option<Instant>) {
        // With few active connections the processor writes replies itself (one wake-up
        // less per reply); with more, the sends are better spread over the network
        // threads than serialized on this one.
        let direct = self
            .activity
            .few_active()
            .then(|| self.durable.borrow().zxid);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.stats.replied(after, started);
            c.out.send_frame(after, bytes, started, direct);
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
        self.syncing.remove(&conn);
        if let Some(c) = self.conns.remove(&conn) {
            self.watches.remove_conn(conn);
            if self.session_conn.get(&c.session) == Some(&conn) {
                self.session_conn.remove(&c.session);
            }
        }
    }

    /// The data and stat of `/zookeeper/config`: the current membership, rendered.
    fn config_node(&self) -> (Bytes, fjord_shared::jute::Stat) {
        let zxid = ensemble::zxid_of(self.membership.log_id());
        let text = ensemble::membership::config_text(self.membership.membership(), zxid);
        let mut stat = self
            .state
            .tree
            .get("/zookeeper/config")
            .map(|n| n.client_stat())
            .unwrap_or_default();
        stat.mzxid = zxid;
        stat.data_length = text.len() as i32;
        (Bytes::from(text), stat)
    }

    fn is_leader(&self) -> bool {
        self.leader == Some(self.member)
    }

    /// A single voter is its own quorum: it needs no leader round trips.
    fn alone(&self) -> bool {
        let m = self.membership.membership();
        m.voter_ids().count() <= 1 && m.learner_ids().count() == 0
    }

    /// Hands a proposal to Raft.
    fn propose(&self, origin: Option<Origin>, session: i64, op: Op) {
        inc(&STATS.proposal_count);
        let p = Proposal {
            origin,
            session,
            time: wall_ms(),
            op,
        };
        self.outbound(Outbound::Propose(p));
    }

    fn outbound(&self, o: Outbound) {
        if self.proposer.send(o).is_err() {
            tracing::error!("the proposer is gone; nothing more will be acknowledged");
        }
    }

    /// Answers the syncs whose index this member has applied.
    fn answer_syncs(&mut self) {
        let applied = self.applied.map(|l| l.index);
        let ready: Vec<ConnId> = self
            .syncing
            .iter()
            .copied()
            .filter(|conn| {
                self.conns
                    .get(conn)
                    .and_then(|c| c.sync.as_ref())
                    .and_then(|s| s.index)
                    .is_none_or(|i| Some(i) <= applied)
            })
            .collect();
        for conn in ready {
            self.syncing.remove(&conn);
            let Some(s) = self.conns.get_mut(&conn).and_then(|c| c.sync.take()) else {
                continue;
            };
            let last = self.state.last_zxid;
            let frame = match s.path {
                Some(path) => reply_frame(s.xid, last, 0, |b| PathRequest { path }.write(b)),
                None => {
                    let (data, stat) = self.config_node();
                    reply_frame(s.xid, last, 0, |b| {
                        GetDataResponse {
                            data: Some(data),
                            stat,
                        }
                        .write(b)
                    })
                }
            };
            self.send(conn, last, frame, Some(s.started));
            self.drain_queue(conn);
        }
    }

    fn origin(&self, conn: ConnId, xid: i32) -> Origin {
        Origin {
            member: self.member,
            run: self.run,
            conn,
            xid,
        }
    }

    /// Whether a request came through this run of this member.
    fn ours(&self, o: &Origin) -> bool {
        o.member == self.member && o.run == self.run
    }

    /// Holds everything after request `xid` of `conn` until a sync (`path`) or a reconfig
    /// (`None`) is answered (see `answer_syncs`); returns where it came from.
    fn hold(&mut self, conn: ConnId, xid: i32, path: Option<String>, started: Instant) -> Origin {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.sync = Some(PendingSync {
                xid,
                path,
                started,
                index: None,
            });
        }
        self.origin(conn, xid)
    }

    /// Only the leader expires sessions and sweeps containers; the expiry or deletion is a
    /// proposal like any write, applied everywhere once committed.
    fn tick(&mut self) {
        if !self.is_leader() {
            // Keep the sessions connected here alive on the leader.
            if self.leader.is_some() && !self.conns.is_empty() {
                let mut sessions: Vec<i64> = self.conns.values().map(|c| c.session).collect();
                sessions.sort_unstable();
                sessions.dedup();
                self.outbound(Outbound::Touch(sessions));
            }
            return;
        }
        let now = self.now();
        for id in self.state.sessions.expire(now) {
            tracing::info!(session_id = format_args!("{id:#x}"), "session expired");
            inc(&STATS.stale_sessions_expired);
            self.propose(None, id, Op::CloseSession);
        }
        if now.saturating_sub(self.last_container_check) >= self.cfg.container_check_ms {
            self.last_container_check = now;
            for path in self.state.tree.empty_containers() {
                tracing::debug!(path, "deleting an empty container");
                self.propose(None, 0, Op::DeleteContainer { path });
            }
        }
    }

    /// Raft's leader or term changed. A new leader gives every session a full timeout
    /// before it expires any, since it has not seen their recent pings.
    ///
    /// Without a leader, this member closes its clients (and refuses new ones), so that they
    /// move to the side that has one. When the leader changes, requests this member has
    /// proposed but not seen applied may or may not be committed: their connections are
    /// closed (the client sees ConnectionLoss, as ZooKeeper gives it) rather than guessed at.
    fn on_role(&mut self, leader: Option<u64>, term: u64) {
        let was_leader = self.is_leader();
        let changed = leader != self.leader || term != self.term;
        if changed {
            tracing::info!(leader = ?leader, term, member = self.member, "ensemble leader");
        }
        let had_leader = self.leader.is_some();
        match (had_leader, leader.is_some()) {
            (true, false) => {
                inc(&STATS.looking_count);
                self.leaderless_since = Some(Instant::now());
            }
            (false, true) => {
                if let Some(t) = self.leaderless_since.take() {
                    STATS.election_time.observe(t.elapsed());
                }
            }
            _ => {}
        }
        self.leader = leader;
        self.term = term;
        if changed && had_leader {
            let doomed: Vec<(ConnId, &'static str)> = self
                .conns
                .iter()
                .filter_map(|(id, c)| {
                    if leader.is_none() {
                        Some((*id, "this member lost its leader"))
                    } else if c.pending > 0 || c.sync.is_some() {
                        Some((
                            *id,
                            "the leader changed with requests of this connection in flight",
                        ))
                    } else {
                        None
                    }
                })
                .collect();
            for (conn, why) in doomed {
                let after = self.state.last_zxid;
                self.close(conn, after, why.into());
            }
        }
        if !self.is_leader() {
            self.leading_since = None;
        } else if !was_leader {
            self.leading_since = Some(Instant::now());
        }
        if self.is_leader() && !was_leader {
            let now = self.now();
            self.state.sessions.restart_clocks(now);
            self.last_container_check = now;
        }
    }
}
