//! The peer transport: members talk over TCP on their `--peer-listen` port.
//!
//! Every message is a frame `[u32 length][msgpack]`. A connection starts with a
//! [`Hello`] carrying the protocol version, the cluster id and both member ids; the
//! listener closes a connection whose hello does not match (another ensemble, another
//! version, or not meant for this member) with a log line, and closes a connection on any
//! frame it cannot read. After the hello, the connecting side sends requests and waits for
//! each response: openraft drives one connection per target and kind of traffic, one call
//! at a time.
//!
//! Outgoing connections bind to the host of this member's own peer address, so that
//! firewall rules on per-member addresses can cut one member off.

use super::durable::DurableGate;
use super::{Raft, SnapshotFile, SnapshotMeta, TypeConfig, Vote};
use crate::processor::Msg;
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Snapshot};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// Version of the peer protocol.
pub const VERSION: u32 = 1;
/// Largest peer frame accepted: a batch of entries or a snapshot chunk.
const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Snapshot files travel in chunks of this size.
const CHUNK: usize = 1024 * 1024;
/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// The first frame on a peer connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub cluster: String,
    pub from: u64,
    pub to: u64,
    /// Which data directory the sender runs on (random, made when it was first used).
    pub incarnation: u64,
}

/// The listener's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    Welcome {
        incarnation: u64,
    },
    /// `fatal`: the sender must not run as this member at all (its data directory is not
    /// the one the ensemble knows under its id).
    Refused {
        reason: String,
        fatal: bool,
    },
}

/// A request from one member to another.
#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum PeerRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    /// Part of a snapshot file, from `offset`; the last part has `done` set.
    SnapshotChunk {
        vote: Vote,
        meta: SnapshotMeta,
        offset: u64,
        data: bytes::Bytes,
        done: bool,
    },
    /// A follower's proposals for the leader to put in the log, in order, and the sessions
    /// connected to that follower.
    Forward {
        proposals: Vec<super::Proposal>,
        touches: Vec<i64>,
    },
    /// A follower asks for the leader's commit index, confirmed by a quorum (for sync).
    ReadIndex,
    /// A client's reconfig, passed to the leader.
    Reconfig(super::membership::Change),
    /// The connecting member refuses to talk to this one, and says why; with `fatal`, this
    /// member must stop.
    Goodbye {
        reason: String,
        fatal: bool,
    },
}

/// The answer to a [`PeerRequest`], or why it failed on the remote side.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// `None` while chunks are still coming.
    Snapshot(Result<Option<SnapshotResponse<u64>>, String>),
    /// The proposals were handed to Raft (an error: this member does not lead).
    Forwarded(Result<(), String>),
    ReadIndex(Result<u64, String>),
    Reconfigured(Result<super::Reconfigured, (i32, String)>),
}

async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &impl Serialize,
) -> std::io::Result<()> {
    let body = rmp_serde::to_vec(msg).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(&body).await?;
    w.flush().await
}

async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> std::io::Result<T> {
    let len = r.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("peer frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    rmp_serde::from_slice(&body)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Who this member is on the peer network.
///
/// Besides its id and cluster, a member has an incarnation: a random number made when its
/// data directory is first used. Members remember each other's incarnations (`peers.json`),
/// and refuse to talk to a member that comes back under a known id with another one: its
/// data was lost, and a Raft member that forgot its log and votes can help elect a leader
/// that lacks acknowledged writes. The refused member is told, and stops.
#[derive(Debug)]
pub struct Identity {
    pub id: u64,
    cluster: std::sync::Mutex<String>,
    /// Where to store the cluster id once adopted; `None` once it is settled.
    unsettled: std::sync::Mutex<Option<PathBuf>>,
    /// This member's peer address; outgoing connections bind to its host.
    pub peer_addr: SocketAddr,
    pub incarnation: u64,
    /// Member id → the incarnation it had when first seen.
    seen: std::sync::Mutex<std::collections::BTreeMap<u64, u64>>,
    seen_path: PathBuf,
    /// Set when this member must stop (see [`HelloReply::Refused`]).
    fatal: tokio::sync::watch::Sender<Option<String>>,
}

fn random_u64() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        b = (t ^ u64::from(std::process::id())).to_be_bytes();
    }
    u64::from_be_bytes(b).max(1)
}

impl Identity {
    /// `unsettled`: the cluster id is a guess (a new member that did not initialize the
    /// ensemble), to be replaced by the id of the first member that contacts this one and
    /// stored at this path. Reads (or makes) the incarnation and the peers seen in `dir`.
    pub fn new(
        id: u64,
        cluster: String,
        unsettled: Option<PathBuf>,
        peer_addr: SocketAddr,
        dir: &std::path::Path,
    ) -> std::io::Result<Self> {
        let inc_path = dir.join("incarnation");
        let incarnation = match std::fs::read_to_string(&inc_path) {
            Ok(s) => s
                .trim()
                .parse()
                .map_err(|_| std::io::Error::other(format!("{} is damaged", inc_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let n = random_u64();
                fjord_shared::fs::write_atomic(&inc_path, format!("{n}\n").as_bytes())?;
                n
            }
            Err(e) => return Err(e),
        };
        let seen_path = dir.join("peers.json");
        let seen = match std::fs::read(&seen_path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", seen_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(e),
        };
        Ok(Identity {
            id,
            cluster: std::sync::Mutex::new(cluster),
            unsettled: std::sync::Mutex::new(unsettled),
            peer_addr,
            incarnation,
            seen: std::sync::Mutex::new(seen),
            seen_path,
            fatal: tokio::sync::watch::channel(None).0,
        })
    }

    /// Resolves once this member must stop, with why.
    pub async fn fatal(&self) -> String {
        let mut rx = self.fatal.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return "the peer network stopped".into();
            }
        }
    }

    /// This member must stop: `run` shuts it down and exits with `reason`.
    pub fn fail(&self, reason: String) {
        tracing::error!(%reason, "this member must stop");
        self.fatal.send_replace(Some(reason));
    }

    /// Whether member `id` runs on the data it had when this member first saw it.
    fn check_incarnation(&self, id: u64, incarnation: u64) -> Result<(), String> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get(&id) {
            Some(known) if *known == incarnation => Ok(()),
            Some(_) => Err(format!(
                "member {id} came back with a new data directory; a member whose data was \
                 lost must not rejoin under its old id (it could help elect a leader without \
                 acknowledged writes): remove it (`fjord coord members remove {id}`) and add \
                 the machine back under a new id"
            )),
            None => {
                seen.insert(id, incarnation);
                let json = serde_json::to_vec(&*seen).unwrap_or_default();
                fjord_shared::fs::write_atomic(&self.seen_path, &json)
                    .map_err(|e| format!("cannot store {}: {e}", self.seen_path.display()))
            }
        }
    }

    pub fn cluster(&self) -> String {
        self.cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether a peer of cluster `theirs` may talk to this member. A new member adopts the
    /// first cluster id it hears, and keeps it from then on.
    fn admit(&self, theirs: &str, from: u64) -> Result<(), String> {
        let mut cluster = self.cluster.lock().unwrap_or_else(|e| e.into_inner());
        if *cluster == theirs {
            return Ok(());
        }
        let mut unsettled = self.unsettled.lock().unwrap_or_else(|e| e.into_inner());
        match unsettled.as_ref() {
            Some(path) => {
                fjord_shared::fs::write_atomic(path, format!("{theirs}\n").as_bytes())
                    .map_err(|e| format!("cannot store the cluster id: {e}"))?;
                tracing::info!(cluster = theirs, from, "joined the ensemble's cluster");
                *cluster = theirs.to_owned();
                *unsettled = None;
                Ok(())
            }
            None => Err(format!(
                "member {from} belongs to cluster {theirs:?}, not ours ({:?})",
                *cluster
            )),
        }
    }
}

/// A follower applies what an AppendEntries says is committed before it appends the new
/// entries the request carries. openraft 0.9 handles both in one step, and its core waits
/// for the new entries' fsync before it moves on to applying; under load, that put a
/// whole fsync between the leader's commit and the followers' answers to their clients.
/// The split is an AppendEntries from the same leader with the same `prev_log_id` and no
/// entries: it commits `min(leader_commit, prev_log_id)`, exactly what this member may.
async fn commit_first(raft: &Raft, rpc: &AppendEntriesRequest<TypeConfig>) {
    let Some(commit) = rpc.leader_commit else {
        return;
    };
    if rpc.entries.is_empty() || rpc.prev_log_id.is_none() {
        return;
    }
    let applied = raft.metrics().borrow().last_applied;
    if applied.is_some_and(|a| a.index >= commit.index) {
        return;
    }
    let early = AppendEntriesRequest {
        vote: rpc.vote,
        prev_log_id: rpc.prev_log_id,
        entries: Vec::new(),
        leader_commit: rpc.leader_commit,
    };
    // A failure here is the same as the full request's, which reports it.
    let _ = raft.append_entries(early).await;
}

/// Makes one [`PeerClient`] per target for openraft.
#[derive(Debug, Clone)]
pub struct PeerNetwork {
    pub me: Arc<Identity>,
    /// Holds back the commit index followers are told (see `super::durable`).
    pub durable: DurableGate,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        let mut c = PeerClient::new(self.me.clone(), target, node.addr.clone());
        c.durable = Some(self.durable.clone());
        c
    }
}

type Conn = (
    BufReader<tokio::net::tcp::OwnedReadHalf>,
    BufWriter<tokio::net::tcp::OwnedWriteHalf>,
);

/// A connection to one member, opened on first use and again after any failure.
pub struct PeerClient {
    me: Arc<Identity>,
    target: u64,
    addr: String,
    conn: Option<Conn>,
    /// Set on the clients openraft replicates through.
    durable: Option<DurableGate>,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("target", &self.target)
            .field("addr", &self.addr)
            .finish()
    }
}

/// Connects to `addr` from this member's own peer host.
pub async fn connect_from(me: &Identity, addr: &str) -> std::io::Result<TcpStream> {
    let target: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host(addr)
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("cannot resolve {addr}")))?,
    };
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if me.peer_addr.is_ipv4() == target.is_ipv4() {
        socket.bind(SocketAddr::new(me.peer_addr.ip(), 0))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl PeerClient {
    async fn open(&mut self) -> std::io::Result<&mut Conn> {
        if self.conn.is_none() {
            let stream = connect_from(&self.me, &self.addr).await?;
            let (r, w) = stream.into_split();
            let mut conn = (BufReader::new(r), BufWriter::new(w));
            let hello = Hello {
                version: VERSION,
                cluster: self.me.cluster(),
                from: self.me.id,
                to: self.target,
                incarnation: self.me.incarnation,
            };
            write_frame(&mut conn.1, &hello).await?;
            match read_frame::<_, HelloReply>(&mut conn.0).await? {
                HelloReply::Welcome { incarnation } => {
                    if let Err(reason) = self.me.check_incarnation(self.target, incarnation) {
                        tracing::error!(peer = self.target, %reason, "refusing a peer");
                        let bye = PeerRequest::Goodbye {
                            reason,
                            fatal: true,
                        };
                        let _ = write_frame(&mut conn.1, &bye).await;
                        return Err(std::io::Error::other(format!(
                            "member {} runs on lost data",
                            self.target
                        )));
                    }
                }
                HelloReply::Refused { reason, fatal } => {
                    if fatal {
                        self.me.fail(reason.clone());
                    }
                    return Err(std::io::Error::other(format!(
                        "member {} refused this member: {reason}",
                        self.target
                    )));
                }
            }
            tracing::debug!(peer = self.target, addr = %self.addr, "peer connection opened");
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no connection"))
    }

    /// A client for member `target` at `addr`.
    pub fn new(me: Arc<Identity>, target: u64, addr: String) -> PeerClient {
        PeerClient {
            me,
            target,
            addr,
            conn: None,
            durable: None,
        }
    }

    pub fn target(&self) -> u64 {
        self.target
    }

    /// Sends one request and reads its response within `ttl`. Any failure drops the
    /// connection, so the next call starts clean.
    pub async fn call(
        &mut self,
        req: &PeerRequest,
        ttl: Duration,
    ) -> std::io::Result<PeerResponse> {
        let result = tokio::time::timeout(ttl, async {
            let conn = self.open().await?;
            write_frame(&mut conn.1, req).await?;
            read_frame::<_, PeerResponse>(&mut conn.0).await
        })
        .await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from member {} within {ttl:?}", self.target),
            )),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn rpc_error<E: std::error::Error>(&self, e: std::io::Error) -> RPCError<u64, BasicNode, E> {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::HostUnreachable
            | std::io::ErrorKind::NetworkUnreachable
            | std::io::ErrorKind::TimedOut => RPCError::Unreachable(Unreachable::new(&e)),
            _ => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

fn unexpected(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("unexpected peer response to {what}"),
    )
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        if let Some(gate) = &self.durable {
            rpc.leader_commit = gate.clamp(rpc.leader_commit);
        }
        match self
            .call(&PeerRequest::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(PeerResponse::AppendEntries(Ok(r))) => Ok(r),
            Ok(PeerResponse::AppendEntries(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.rpc_error(unexpected("append_entries"))),
            Err(e) => Err(self.rpc_error(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.call(&PeerRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(PeerResponse::Vote(Ok(r))) => Ok(r),
            Ok(PeerResponse::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.rpc_error(unexpected("vote"))),
            Err(e) => Err(self.rpc_error(e)),
        }
    }

    /// Retry an unreachable member soon: a member that was restarted should hear from the
    /// leader well within its election timeout, or it starts an election of its own.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let path = snapshot.snapshot.path.clone();
        let meta = snapshot.meta.clone();
        let send = async {
            let mut file = tokio::fs::File::open(&path).await?;
            let size = file.metadata().await?.len();
            tracing::info!(peer = self.target, bytes = size, log_id = %super::show(&meta.last_log_id), "sending a snapshot");
            let mut offset = 0u64;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let mut filled = 0;
                while filled < CHUNK {
                    let n = file.read(&mut buf[filled..]).await?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                buf.truncate(filled);
                let done = offset + filled as u64 >= size;
                let req = PeerRequest::SnapshotChunk {
                    vote,
                    meta: meta.clone(),
                    offset,
                    data: buf.into(),
                    done,
                };
                match self.call(&req, option.hard_ttl()).await? {
                    PeerResponse::Snapshot(Ok(Some(r))) if done => return Ok(r),
                    PeerResponse::Snapshot(Ok(None)) if !done => {}
                    PeerResponse::Snapshot(Err(e)) => return Err(std::io::Error::other(e)),
                    _ => return Err(unexpected("a snapshot chunk")),
                }
                offset += filled as u64;
            }
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = send => r.map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::ConnectionRefused => {
                    StreamingError::Unreachable(Unreachable::new(&e))
                }
                _ => StreamingError::Network(NetworkError::new(&e)),
            }),
        }
    }
}

/// Serves the peer port until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    me: Arc<Identity>,
    raft: Raft,
    processor: std::sync::mpsc::Sender<Msg>,
    outbound: tokio::sync::mpsc::UnboundedSender<super::Outbound>,
    dir: PathBuf,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "peer accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (me, raft, dir, shutdown) = (me.clone(), raft.clone(), dir.clone(), shutdown.clone());
        let processor = processor.clone();
        let outbound = outbound.clone();
        tokio::spawn(async move {
            let mut from = None;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = serve_conn(stream, &me, &raft, &processor, &outbound, &dir, &mut from) => {
                    if let Err(e) = r {
                        tracing::info!(%peer, reason = %e, "peer connection closed");
                    }
                }
            }
            if let Some(from) = from {
                leader_gone(&me, &raft, from).await;
            }
        });
    }
}

async fn serve_conn(
    stream: TcpStream,
    me: &Identity,
    raft: &Raft,
    processor: &std::sync::mpsc::Sender<Msg>,
    outbound: &tokio::sync::mpsc::UnboundedSender<super::Outbound>,
    dir: &std::path::Path,
    peer_id: &mut Option<u64>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut w = BufWriter::new(w);
    let hello: Hello = tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut r))
        .await
        .map_err(|_| std::io::Error::other("no hello in time"))??;
    if hello.version != VERSION {
        return Err(std::io::Error::other(format!(
            "peer protocol version {} (ours is {VERSION})",
            hello.version
        )));
    }
    if hello.to != me.id {
        return Err(std::io::Error::other(format!(
            "member {} wants member {}, but this is member {}",
            hello.from, hello.to, me.id
        )));
    }
    if let Err(reason) = me.admit(&hello.cluster, hello.from) {
        let refused = HelloReply::Refused {
            reason: reason.clone(),
            fatal: false,
        };
        let _ = write_frame(&mut w, &refused).await;
        return Err(std::io::Error::other(reason));
    }
    // A member removed from the ensemble does not know it (it never gets the entry that
    // removes it) and would keep calling elections: it is turned away. A member with no
    // membership yet (new, not initialized) accepts whoever contacts it.
    let outsider = {
        let m = raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        membership.nodes().next().is_some() && membership.get_node(&hello.from).is_none()
    };
    if outsider {
        let reason = format!("member {} is not in this ensemble", hello.from);
        let refused = HelloReply::Refused {
            reason: reason.clone(),
            fatal: false,
        };
        let _ = write_frame(&mut w, &refused).await;
        return Err(std::io::Error::other(reason));
    }
    if let Err(reason) = me.check_incarnation(hello.from, hello.incarnation) {
        let refused = HelloReply::Refused {
            reason: reason.clone(),
            fatal: true,
        };
        let _ = write_frame(&mut w, &refused).await;
        return Err(std::io::Error::other(reason));
    }
    write_frame(
        &mut w,
        &HelloReply::Welcome {
            incarnation: me.incarnation,
        },
    )
    .await?;
    let from = hello.from;
    *peer_id = Some(from);
    // A snapshot being received on this connection: (file, path, bytes so far).
    let mut incoming: Option<(tokio::fs::File, PathBuf, u64)> = None;
    loop {
        let req: PeerRequest = match read_frame(&mut r).await {
            Ok(req) => req,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let resp = match req {
            PeerRequest::AppendEntries(rpc) => {
                commit_first(raft, &rpc).await;
                PeerResponse::AppendEntries(raft.append_entries(rpc).await)
            }
            PeerRequest::Vote(rpc) => PeerResponse::Vote(raft.vote(rpc).await),
            PeerRequest::SnapshotChunk {
                vote,
                meta,
                offset,
                data,
                done,
            } => PeerResponse::Snapshot(
                receive_chunk(
                    raft,
                    dir,
                    from,
                    &mut incoming,
                    vote,
                    meta,
                    offset,
                    &data,
                    done,
                )
                .await,
            ),
            PeerRequest::Forward { proposals, touches } => PeerResponse::Forwarded(
                super::forward::accept(raft, me.id, processor, outbound, proposals, touches).await,
            ),
            PeerRequest::ReadIndex => {
                PeerResponse::ReadIndex(super::forward::read_index(raft).await)
            }
            PeerRequest::Reconfig(change) => {
                PeerResponse::Reconfigured(super::forward::reconfig(raft, &change).await)
            }
            PeerRequest::Goodbye { reason, fatal } => {
                if fatal {
                    me.fail(reason.clone());
                }
                return Err(std::io::Error::other(format!(
                    "member {from} refuses this member: {reason}"
                )));
            }
        };
        write_frame(&mut w, &resp).await?;
    }
}

/// How far apart the surviving voters start their elections after the leader's process
/// is gone: longer than an election takes on a healthy network, so that they do not
/// split the vote.
const ELECTION_STAGGER: Duration = Duration::from_millis(150);

/// A connection from member `from` ended. If `from` leads and its peer port now refuses
/// connections, its process is gone (a crash, kill -9): start an election without
/// waiting out a randomized election timeout.
///
/// Not at once, though. openraft's voters refuse to vote while their leader lease runs
/// (the longest election timeout after they last heard from the leader), and every
/// surviving voter notices the death at the same moment. So each waits until the leases
/// have run out (the leader was talking to all of them until it died), and they go in
/// turn, lowest id first, each only if no leader has come up meanwhile. Going at once, the
/// first votes were refused, the candidates split the next term's votes, and the ensemble
/// waited out another timeout. A leader that is only slow or frozen keeps its port, and
/// is left to the timeout.
async fn leader_gone(me: &Identity, raft: &Raft, from: u64) {
    let gone = tokio::time::Instant::now();
    let (addr, rank) = {
        let m = raft.metrics();
        let m = m.borrow();
        if m.current_leader != Some(from) || from == me.id {
            return;
        }
        let membership = m.membership_config.membership();
        let Some(addr) = membership.get_node(&from).map(|n| n.addr.clone()) else {
            return;
        };
        let Some(rank) = membership
            .voter_ids()
            .filter(|id| *id != from)
            .position(|id| id == me.id)
        else {
            return; // not a voter
        };
        (addr, rank as u32)
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let probe = tokio::time::timeout(Duration::from_millis(300), connect_from(me, &addr)).await;
    if let Ok(Err(e)) = probe {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            let lease = Duration::from_millis(raft.config().election_timeout_max);
            tokio::time::sleep_until(
                gone + lease + Duration::from_millis(10) + ELECTION_STAGGER * rank,
            )
            .await;
            let led = raft
                .metrics()
                .borrow()
                .current_leader
                .is_some_and(|l| l != from);
            if led {
                return;
            }
            tracing::info!(leader = from, %addr, rank, "the leader's peer port refuses connections; starting an election");
            let _ = raft.trigger().elect().await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn receive_chunk(
    raft: &Raft,
    dir: &std::path::Path,
    from: u64,
    incoming: &mut Option<(tokio::fs::File, PathBuf, u64)>,
    vote: Vote,
    meta: SnapshotMeta,
    offset: u64,
    data: &[u8],
    done: bool,
) -> Result<Option<SnapshotResponse<u64>>, String> {
    if offset == 0 {
        let path = dir.join(format!("snapshot.from-{from}.tmp"));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        *incoming = Some((file, path, 0));
    }
    let Some((file, path, written)) = incoming.as_mut() else {
        return Err("a snapshot chunk out of order".into());
    };
    if *written != offset {
        let msg = format!("snapshot chunk at {offset}, expected {written}");
        *incoming = None;
        return Err(msg);
    }
    file.write_all(data)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    *written += data.len() as u64;
    if !done {
        return Ok(None);
    }
    let Some((file, path, _)) = incoming.take() else {
        return Err("no snapshot in progress".into());
    };
    file.sync_all()
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    drop(file);
    let snapshot = Snapshot {
        meta,
        snapshot: Box::new(SnapshotFile { path: path.clone() }),
    };
    match raft.install_full_snapshot(vote, snapshot).await {
        Ok(r) => {
            // Installed snapshots are renamed; one refused for an old vote is left behind.
            let _ = tokio::fs::remove_file(&path).await;
            Ok(Some(r))
        }
        Err(e) => Err(e.to_string()),
    }
}
