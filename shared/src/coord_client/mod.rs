//! An async client for the ZooKeeper 3.8 client protocol, used by the broker and by the
//! `fjord coord` CLI against `fjord-coordinator` (or a real ZooKeeper ensemble).
//!
//! Why our own client: the broker needs exactly ZooKeeper's session semantics (ephemeral
//! nodes that vanish when a broker dies, watches that survive reconnects, multi with
//! fencing) on top of tokio, built on the same [`jute`](crate::jute) codec the coordinator
//! uses, so both sides of the wire are tested against each other and against real ZooKeeper.
//!
//! Layout:
//! - this file: [`Client`] and its operations, [`ConnectOptions`];
//! - `session.rs`: the supervisor task (connect, reconnect with session resumption,
//!   watch re-registration, expiry);
//! - `conn.rs`: one connection's writer and reader tasks (pipelining, pings);
//! - `watches.rs`: the client-side watch registry;
//! - `events.rs`: watch and session events and their subscribers;
//! - `multi.rs`: multi ops and results; `path.rs`: connect strings, chroot, path
//!   validation; `error.rs`: errors.
//!
//! Semantics follow ZooKeeper's Java client: requests are pipelined and answered in order;
//! a request in flight when the connection breaks fails with [`Error::ConnectionLoss`] (it
//! may or may not have been applied); the client reconnects on its own and resumes the
//! session; if the session expired, everything fails with [`Error::SessionExpired`] and the
//! caller builds a new client. Versions are `Option<i32>`, `None` meaning "any version"
//! (ZooKeeper's -1).

mod conn;
mod error;
mod events;
mod multi;
mod path;
mod session;
mod watches;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

pub use self::error::{Error, MultiError, ProtocolError, Result};
pub use self::events::{Event, EventType, Events, SessionEvent, WatchedEvent};
pub use self::multi::{Op, OpResult};
pub use self::path::{ConnectString, DEFAULT_PORT};
pub use self::session::SessionState;
pub use self::watches::{AddWatchMode, WatcherType};
pub use crate::jute::{Acl, ClientInfo, CreateMode, ErrorCode, Id, Stat};

use self::conn::{Kind, Reply, Request};
use self::multi::version_or_any;
use self::path::{validate_path, Chroot};
use self::session::{lock, Shared, Supervisor};
use self::watches::WatchIntent;
use crate::jute::{
    op, AddWatchRequest, AuthPacket, Create2Response, CreateRequest, CreateResponse,
    CreateTtlRequest, DeleteRequest, GetAclResponse, GetAllChildrenNumberResponse,
    GetChildren2Response, GetChildrenResponse, GetDataResponse, GetEphemeralsResponse, PathRequest,
    PathWatchRequest, ReconfigRequest, Record, RemoveWatchesRequest, SetAclRequest, SetDataRequest,
    StatResponse, WhoAmIResponse,
};

/// How to connect. Build with [`ConnectOptions::new`] and adjust the public fields or the
/// builder methods.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `HOST:PORT[,HOST:PORT..][/chroot]`.
    pub connect_string: String,
    /// The session timeout to ask for; the server clamps it (ZooKeeper: 2–20 ticks).
    pub session_timeout: Duration,
    /// How long [`Client::connect`] may take overall, and each later reconnection attempt.
    pub connect_timeout: Duration,
    /// The largest reply frame accepted (ZooKeeper's `jute.maxbuffer` plays this role).
    pub max_frame: usize,
    /// TLS to the server's secure port (ZooKeeper's secureClientPort).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// A SASL (DIGEST-MD5) login, (user, password), done on every connection.
    pub sasl: Option<(String, String)>,
    /// `digest` credentials (`user:password`) added on every connection (`addauth`).
    pub digest: Option<String>,
    /// Create znodes with Kafka's secure ACL policy ([`Client::acl_for`]) instead of
    /// world-writable ones (Kafka's zookeeper.set.acl).
    pub secure_acls: bool,
}

impl ConnectOptions {
    /// Defaults: 10 s session timeout, 5 s connect timeout, 4 MiB frames.
    pub fn new(connect_string: impl Into<String>) -> Self {
        ConnectOptions {
            connect_string: connect_string.into(),
            session_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_frame: 4 * 1024 * 1024,
            tls: None,
            sasl: None,
            digest: None,
            secure_acls: false,
        }
    }

    /// Sets [`ConnectOptions::tls`].
    pub fn tls(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Sets [`ConnectOptions::sasl`].
    pub fn sasl(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.sasl = Some((user.into(), password.into()));
        self
    }

    /// Sets [`ConnectOptions::session_timeout`].
    pub fn session_timeout(mut self, d: Duration) -> Self {
        self.session_timeout = d;
        self
    }

    /// Sets [`ConnectOptions::connect_timeout`].
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
}

/// A ZooKeeper session. Methods take `&self` and may be called concurrently (share the
/// client with an `Arc`); requests are pipelined on one connection.
///
/// Dropping the client stops its tasks without closing the session (the server expires it
/// after the timeout, like a crashed process); call [`Client::close`] to end it at once.
#[derive(Debug)]
pub struct Client {
    shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<Request>,
    supervisor: JoinHandle<()>,
    close_timeout: Duration,
    secure_acls: bool,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

impl Client {
    /// Connects and establishes a new session, trying the hosts in turn until one answers or
    /// `connect_timeout` passes (then the last failure, e.g. connection refused, or
    /// [`Error::Timeout`]). Must be called within a tokio runtime.
    pub async fn connect(opts: ConnectOptions) -> Result<Client> {
        let cs = ConnectString::parse(&opts.connect_string)?;
        let shared = Arc::new(Shared::new(Chroot::new(cs.chroot)));
        let mut supervisor = Supervisor::new(shared.clone(), cs.hosts, &opts);
        let stream = supervisor
            .connect_first(Instant::now() + opts.connect_timeout)
            .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let supervisor = tokio::spawn(supervisor.run(stream, rx));
        let client = Client {
            shared,
            requests: tx,
            supervisor,
            close_timeout: opts.connect_timeout,
            secure_acls: opts.secure_acls,
        };
        if let Some(d) = &opts.digest {
            client.add_auth("digest", d.clone().into_bytes()).await?;
        }
        Ok(client)
    }

    /// The ACL for a znode this client creates at `path`: world-writable, or with
    /// [`ConnectOptions::secure_acls`] Kafka's policy: everything for the creator's
    /// authenticated identity, and read for everyone except under `/config/users` (SCRAM
    /// credentials), which only the creator may read.
    pub fn acl_for(&self, path: &str) -> Vec<Acl> {
        if !self.secure_acls {
            return Acl::open_unsafe();
        }
        let mut acl = vec![Acl {
            perms: crate::jute::perms::ALL,
            id: Id {
                scheme: "auth".into(),
                id: String::new(),
            },
        }];
        let sensitive = ["/config/users", "/config/clients"]
            .iter()
            .any(|p| path == *p || path.starts_with(&format!("{p}/")));
        if !sensitive {
            acl.push(Acl {
                perms: crate::jute::perms::READ,
                id: Id {
                    scheme: "world".into(),
                    id: "anyone".into(),
                },
            });
        }
        acl
    }

    /// The session id (as the server's logs and four-letter words print it, in hex).
    pub fn session_id(&self) -> i64 {
        lock(&self.shared.session).session_id
    }

    /// The session timeout the server granted.
    pub fn session_timeout(&self) -> Duration {
        lock(&self.shared.session).negotiated
    }

    /// The current session state.
    pub fn state(&self) -> SessionState {
        self.shared.state()
    }

    /// Subscribes to watch notifications and session state changes from now on. Every
    /// subscriber gets every event, in the order the server sent them. The stream ends after
    /// [`SessionEvent::Expired`] or [`SessionEvent::Closed`], or when the client is dropped.
    pub fn events(&self) -> Events {
        self.shared.events.subscribe()
    }

    /// Creates a node and returns its path (with the sequence suffix for sequential modes).
    /// Container nodes use ZooKeeper's `createContainer`; TTL modes need [`Client::create_ttl`].
    pub async fn create(
        &self,
        path: &str,
        data: impl Into<Bytes>,
        acl: &[Acl],
        mode: CreateMode,
    ) -> Result<String> {
        if mode == CreateMode::Container {
            return Ok(self.create2(path, data, acl, mode).await?.0);
        }
        let req = self.create_request(path, data, acl, mode)?;
        let reply = self.call(op::CREATE, req.to_bytes(), None).await?;
        let resp: CreateResponse = decode_ok(&reply)?;
        Ok(self.shared.chroot.to_client(&resp.path))
    }

    /// Creates a node and returns its path and stat.
    pub async fn create2(
        &self,
        path: &str,
        data: impl Into<Bytes>,
        acl: &[Acl],
        mode: CreateMode,
    ) -> Result<(String, Stat)> {
        let req = self.create_request(path, data, acl, mode)?;
        let code = if mode == CreateMode::Container {
            op::CREATE_CONTAINER
        } else {
            op::CREATE2
        };
        let reply = self.call(code, req.to_bytes(), None).await?;
        let resp: Create2Response = decode_ok(&reply)?;
        Ok((self.shared.chroot.to_client(&resp.path), resp.stat))
    }

    /// Creates a node with a time-to-live (`PersistentWithTtl` or
    /// `PersistentSequentialWithTtl`); the server must have extended types enabled.
    pub async fn create_ttl(
        &self,
        path: &str,
        data: impl Into<Bytes>,
        acl: &[Acl],
        mode: CreateMode,
        ttl: Duration,
    ) -> Result<(String, Stat)> {
        if !mode.is_ttl() {
            return Err(Error::BadArgument(format!(
                "{path}: create_ttl needs a TTL create mode"
            )));
        }
        validate_path(path, mode.is_sequential())?;
        let req = CreateTtlRequest {
            path: self.shared.chroot.to_server(path),
            data: Some(data.into()),
            acl: acl.to_vec(),
            flags: mode.flags(),
            ttl: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
        };
        let reply = self.call(op::CREATE_TTL, req.to_bytes(), None).await?;
        let resp: Create2Response = decode_ok(&reply)?;
        Ok((self.shared.chroot.to_client(&resp.path), resp.stat))
    }

    fn create_request(
        &self,
        path: &str,
        data: impl Into<Bytes>,
        acl: &[Acl],
        mode: CreateMode,
    ) -> Result<CreateRequest> {
        validate_path(path, mode.is_sequential())?;
        if mode.is_ttl() {
            return Err(Error::BadArgument(format!(
                "{path}: TTL modes need create_ttl"
            )));
        }
        Ok(CreateRequest {
            path: self.shared.chroot.to_server(path),
            data: Some(data.into()),
            acl: acl.to_vec(),
            flags: mode.flags(),
        })
    }

    /// Deletes a node; `version: None` deletes whatever the version.
    pub async fn delete(&self, path: &str, version: Option<i32>) -> Result<()> {
        validate_path(path, false)?;
        let req = DeleteRequest {
            path: self.shared.chroot.to_server(path),
            version: version_or_any(version),
        };
        let reply = self.call(op::DELETE, req.to_bytes(), None).await?;
        check(&reply)
    }

    /// The node's stat, or `None` if it does not exist. With `watch`, a one-shot watch is
    /// set either way (it fires on creation if the node is missing).
    pub async fn exists(&self, path: &str, watch: bool) -> Result<Option<Stat>> {
        let intent = watch.then(|| WatchIntent::Exists(path.to_owned()));
        let reply = self.path_watch(op::EXISTS, path, watch, intent).await?;
        if reply.header.err == ErrorCode::NoNode.code() {
            return Ok(None);
        }
        Ok(Some(decode_ok::<StatResponse>(&reply)?.stat))
    }

    /// The node's data and stat; with `watch`, a one-shot data watch.
    pub async fn get_data(&self, path: &str, watch: bool) -> Result<(Bytes, Stat)> {
        let intent = watch.then(|| WatchIntent::Data(path.to_owned()));
        let reply = self.path_watch(op::GET_DATA, path, watch, intent).await?;
        let resp: GetDataResponse = decode_ok(&reply)?;
        Ok((resp.data.unwrap_or_default(), resp.stat))
    }

    /// Replaces the node's data if its version matches (`None`: any); returns the new stat.
    pub async fn set_data(
        &self,
        path: &str,
        data: impl Into<Bytes>,
        version: Option<i32>,
    ) -> Result<Stat> {
        validate_path(path, false)?;
        let req = SetDataRequest {
            path: self.shared.chroot.to_server(path),
            data: Some(data.into()),
            version: version_or_any(version),
        };
        let reply = self.call(op::SET_DATA, req.to_bytes(), None).await?;
        Ok(decode_ok::<StatResponse>(&reply)?.stat)
    }

    /// The node's children (names, not paths, in the server's order); with `watch`, a
    /// one-shot child watch.
    pub async fn get_children(&self, path: &str, watch: bool) -> Result<Vec<String>> {
        let intent = watch.then(|| WatchIntent::Children(path.to_owned()));
        let reply = self
            .path_watch(op::GET_CHILDREN, path, watch, intent)
            .await?;
        Ok(decode_ok::<GetChildrenResponse>(&reply)?.children)
    }

    /// The node's children and its stat; with `watch`, a one-shot child watch.
    pub async fn get_children2(&self, path: &str, watch: bool) -> Result<(Vec<String>, Stat)> {
        let intent = watch.then(|| WatchIntent::Children(path.to_owned()));
        let reply = self
            .path_watch(op::GET_CHILDREN2, path, watch, intent)
            .await?;
        let resp: GetChildren2Response = decode_ok(&reply)?;
        Ok((resp.children, resp.stat))
    }

    /// The node's ACL and stat.
    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat)> {
        let reply = self.path_only(op::GET_ACL, path).await?;
        let resp: GetAclResponse = decode_ok(&reply)?;
        Ok((resp.acl, resp.stat))
    }

    /// Replaces the node's ACL if its ACL version matches (`None`: any); returns the stat.
    pub async fn set_acl(&self, path: &str, acl: &[Acl], version: Option<i32>) -> Result<Stat> {
        validate_path(path, false)?;
        let req = SetAclRequest {
            path: self.shared.chroot.to_server(path),
            acl: acl.to_vec(),
            version: version_or_any(version),
        };
        let reply = self.call(op::SET_ACL, req.to_bytes(), None).await?;
        Ok(decode_ok::<StatResponse>(&reply)?.stat)
    }

    /// Applies `ops` atomically. On failure nothing was applied and
    /// [`MultiError::Failed`] names the first failing op and carries every op's result.
    pub async fn multi(&self, ops: Vec<Op>) -> std::result::Result<Vec<OpResult>, MultiError> {
        let mut body = BytesMut::new();
        multi::encode(&ops, &self.shared.chroot, &mut body)?;
        let reply = self.call(op::MULTI, body, None).await?;
        if reply.header.err != 0 && reply.body.is_empty() {
            return Err(Error::from_code(reply.header.err).into());
        }
        let results = multi::decode(&reply.body, &self.shared.chroot).map_err(Error::from)?;
        multi::outcome(ops.len(), results, reply.header.err)
    }

    /// Waits until the server this client is connected to has caught up with the leader for
    /// `path` (a no-op on a single server); returns the path.
    pub async fn sync(&self, path: &str) -> Result<String> {
        let reply = self.path_only(op::SYNC, path).await?;
        Ok(self
            .shared
            .chroot
            .to_client(&decode_ok::<PathRequest>(&reply)?.path))
    }

    /// Changes the ensemble's voting members (ZooKeeper's `reconfig`): servers joining
    /// (`server.ID=HOST:PORT,...`) and leaving (`ID,...`), or a whole new list. Returns the
    /// new configuration, as `/zookeeper/config` shows it.
    pub async fn reconfig(
        &self,
        joining: &str,
        leaving: &str,
        new_members: &str,
    ) -> Result<(Bytes, Stat)> {
        let req = ReconfigRequest {
            joining_servers: joining.to_owned(),
            leaving_servers: leaving.to_owned(),
            new_members: new_members.to_owned(),
            cur_config_id: -1,
        };
        let reply = self.call(op::RECONFIG, req.to_bytes(), None).await?;
        let resp: GetDataResponse = decode_ok(&reply)?;
        Ok((resp.data.unwrap_or_default(), resp.stat))
    }

    /// Adds a persistent (or persistent-recursive) watch on `path`; it stays until removed
    /// and is re-registered after reconnects. The node need not exist.
    pub async fn add_watch(&self, path: &str, mode: AddWatchMode) -> Result<()> {
        validate_path(path, false)?;
        let req = AddWatchRequest {
            path: self.shared.chroot.to_server(path),
            mode: mode.code(),
        };
        let intent = WatchIntent::Add(path.to_owned(), mode);
        let reply = self
            .call(op::ADD_WATCH, req.to_bytes(), Some(intent))
            .await?;
        check(&reply)
    }

    /// Removes this session's watches of `kind` on `path` (`NoWatcher` if there were none).
    pub async fn remove_watches(&self, path: &str, kind: WatcherType) -> Result<()> {
        validate_path(path, false)?;
        let req = RemoveWatchesRequest {
            path: self.shared.chroot.to_server(path),
            watcher_type: kind.code(),
        };
        let intent = WatchIntent::Remove(path.to_owned(), kind);
        let reply = self
            .call(op::REMOVE_WATCHES, req.to_bytes(), Some(intent))
            .await?;
        check(&reply)
    }

    /// The paths of this session's ephemeral nodes that start with `prefix` (`/` for all).
    pub async fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>> {
        let reply = self.path_only(op::GET_EPHEMERALS, prefix).await?;
        let resp: GetEphemeralsResponse = decode_ok(&reply)?;
        Ok(resp
            .ephemerals
            .iter()
            .map(|p| self.shared.chroot.to_client(p))
            .collect())
    }

    /// The number of descendants of `path` (not counting itself).
    pub async fn get_all_children_number(&self, path: &str) -> Result<i32> {
        let reply = self.path_only(op::GET_ALL_CHILDREN_NUMBER, path).await?;
        Ok(decode_ok::<GetAllChildrenNumberResponse>(&reply)?.total)
    }

    /// The identities this session is authenticated as.
    pub async fn who_am_i(&self) -> Result<Vec<ClientInfo>> {
        let reply = self.call(op::WHO_AM_I, BytesMut::new(), None).await?;
        Ok(decode_ok::<WhoAmIResponse>(&reply)?.client_info)
    }

    /// Adds a credential (for example scheme `digest`, auth `user:password`). Accepted
    /// credentials are replayed on every reconnect. On rejection the server closes the
    /// connection; this returns `Zk(AuthFailed)` and the client reconnects without it.
    pub async fn add_auth(&self, scheme: &str, auth: impl Into<Bytes>) -> Result<()> {
        let auth = auth.into();
        let body = AuthPacket {
            auth_type: 0,
            scheme: scheme.to_owned(),
            auth: auth.clone(),
        }
        .to_bytes();
        let (tx, rx) = oneshot::channel();
        let kind = Kind::Auth {
            tx: Some(tx),
            scheme: scheme.to_owned(),
            auth,
        };
        let reply = self.submit(op::AUTH, body, kind, rx).await?;
        check(&reply)
    }

    /// Closes the session (its ephemeral nodes go at once) and stops the client's tasks.
    /// Waits for the server's reply, at most the connect timeout. Afterwards every operation
    /// fails with [`Error::Closed`]. An error means the server could not be told (it was
    /// unreachable or did not answer): the client is closed all the same, and the server
    /// expires the session after its timeout.
    pub async fn close(&self) -> Result<()> {
        if matches!(self.state(), SessionState::Expired | SessionState::Closed) {
            return Ok(());
        }
        self.shared
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let result = match timeout(
            self.close_timeout,
            self.call(op::CLOSE_SESSION, BytesMut::new(), None),
        )
        .await
        {
            Err(_) => Err(Error::Timeout),
            Ok(Ok(reply)) => check(&reply),
            Ok(Err(e)) => Err(e),
        };
        self.shared.close_requested.notify_one();
        self.supervisor.abort();
        {
            let mut s = lock(&self.shared.session);
            if s.state != SessionState::Expired {
                s.state = SessionState::Closed;
            }
        }
        self.shared
            .events
            .finish(Event::Session(SessionEvent::Closed));
        result
    }

    async fn path_watch(
        &self,
        code: i32,
        path: &str,
        watch: bool,
        intent: Option<WatchIntent>,
    ) -> Result<Reply> {
        validate_path(path, false)?;
        let req = PathWatchRequest {
            path: self.shared.chroot.to_server(path),
            watch,
        };
        self.call(code, req.to_bytes(), intent).await
    }

    async fn path_only(&self, code: i32, path: &str) -> Result<Reply> {
        validate_path(path, false)?;
        let req = PathRequest {
            path: self.shared.chroot.to_server(path),
        };
        self.call(code, req.to_bytes(), None).await
    }

    /// Queues a request and waits for its reply (whatever its error code).
    async fn call(&self, code: i32, body: BytesMut, watch: Option<WatchIntent>) -> Result<Reply> {
        let (tx, rx) = oneshot::channel();
        self.submit(code, body, Kind::User { tx, watch }, rx).await
    }

    async fn submit(
        &self,
        code: i32,
        body: BytesMut,
        kind: Kind,
        rx: oneshot::Receiver<Result<Reply>>,
    ) -> Result<Reply> {
        match self.state() {
            SessionState::Expired => return Err(Error::SessionExpired),
            SessionState::Closed => return Err(Error::Closed),
            _ => {}
        }
        if self
            .requests
            .send(Request {
                op: code,
                body,
                kind,
            })
            .is_err()
        {
            return Err(self.ended());
        }
        rx.await.unwrap_or_else(|_| Err(self.ended()))
    }

    /// The error for a request that can no longer be answered.
    fn ended(&self) -> Error {
        match self.state() {
            SessionState::Expired => Error::SessionExpired,
            SessionState::Closed => Error::Closed,
            _ => Error::ConnectionLoss,
        }
    }
}

/// Fails on a non-zero reply error.
fn check(reply: &Reply) -> Result<()> {
    match reply.header.err {
        0 => Ok(()),
        e => Err(Error::from_code(e)),
    }
}

/// Fails on a non-zero reply error, otherwise decodes the body.
fn decode_ok<T: Record>(reply: &Reply) -> Result<T> {
    check(reply)?;
    Ok(T::decode(&reply.body)?)
}
