//! Membership, metadata and the controller, all through the coordinator.
//!
//! - [`view`]: the cluster as the coordinator describes it, kept current by watches.
//! - [`controller`]: the broker that holds `/controller` assigns partition states and
//!   carries out topic deletions; every write it makes is fenced by `/controller_epoch`.
//! - [`admin`]: topic creation, deletion requests, new partitions and config changes, as
//!   any broker writes them for CreateTopics and friends.
//! - [`reassignment`]: moving partition replicas between brokers (KIP-455).
//!
//! A [`Cluster`] owns the coordinator session. If the session expires (the coordinator
//! was unreachable for longer than the session timeout), the broker is *fenced*: another
//! broker may have taken over its partitions, so it refuses writes until it has a new
//! session, has registered again and has reloaded the view.

pub mod admin;
pub mod controller;
pub mod reassignment;
pub mod view;

use fjord_shared::cluster::{self, BrokerRegistration, ClusterId};
use fjord_shared::coord_client::{
    AddWatchMode, Client, ConnectOptions, Error as CoordError, Event, SessionEvent,
};
use fjord_shared::jute::{CreateMode, ErrorCode};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
pub use view::{parse_topic_id, ClusterView};

/// Why the broker could not join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot reach the coordinator at {addr}: {source}")]
    Connect { addr: String, source: CoordError },
    #[error("broker id {0} is already registered by a live broker")]
    DuplicateId(i32),
    #[error("coordinator error: {0}")]
    Coord(#[from] CoordError),
}

/// The coordinator subtrees watched for changes.
const WATCHED: [&str; 5] = [
    cluster::TOPICS,
    cluster::BROKER_IDS,
    cluster::TOPIC_CONFIGS,
    cluster::BROKER_CONFIGS,
    cluster::ADMIN,
];

/// TLS, login and ACL policy for the coordinator connection.
#[derive(Debug, Clone, Default)]
pub struct CoordinatorAccess {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<(String, String)>,
    pub digest: Option<String>,
    /// Create znodes with Kafka's secure ACLs (zookeeper.set.acl).
    pub set_acl: bool,
}

impl CoordinatorAccess {
    /// From the connect options the security flags built.
    pub fn from_options(opts: &ConnectOptions, set_acl: bool) -> CoordinatorAccess {
        CoordinatorAccess {
            tls: opts.tls.clone(),
            sasl: opts.sasl.clone(),
            digest: opts.digest.clone(),
            set_acl,
        }
    }
}

/// The broker's membership in the cluster.
pub struct Cluster {
    pub broker_id: i32,
    connect_string: String,
    /// How to authenticate to the coordinator, for every (re)connection.
    access: CoordinatorAccess,
    session_timeout: Duration,
    registration: BrokerRegistration,
    client: RwLock<Arc<Client>>,
    view_tx: watch::Sender<Arc<ClusterView>>,
    fenced: AtomicBool,
    controller: Mutex<Option<controller::Epoch>>,
    /// Automatic preferred-leader rebalance: (check interval, imbalance percent).
    rebalance: Mutex<Option<(Duration, u32)>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("broker_id", &self.broker_id)
            .finish()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Creates a persistent znode unless it exists.
pub async fn ensure(client: &Client, path: &str, data: &[u8]) -> Result<(), CoordError> {
    match client
        .create(
            path,
            data.to_vec(),
            &client.acl_for(path),
            CreateMode::Persistent,
        )
        .await
    {
        Ok(_) | Err(CoordError::Zk(ErrorCode::NodeExists)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A random RFC 4122 version-4 UUID.
pub fn random_uuid() -> [u8; 16] {
    use std::io::Read;
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b.copy_from_slice(&t.to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// Kafka's cluster/topic id text form: URL-safe base64 without padding.
pub fn uuid_text(b: &[u8; 16]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    let mut bits = 0u32;
    let mut n = 0;
    for &byte in b {
        bits = (bits << 8) | u32::from(byte);
        n += 8;
        while n >= 6 {
            n -= 6;
            out.push(A[((bits >> n) & 63) as usize] as char);
        }
    }
    if n > 0 {
        out.push(A[((bits << (6 - n)) & 63) as usize] as char);
    }
    out
}

impl Cluster {
    /// Connects, creates the base layout, registers this broker and loads the view.
    pub async fn join(
        broker_id: i32,
        connect_string: &str,
        session_timeout: Duration,
        registration: BrokerRegistration,
        access: CoordinatorAccess,
    ) -> Result<Arc<Cluster>, JoinError> {
        let client = connect(connect_string, session_timeout, &access).await?;
        let (view_tx, _) = watch::channel(Arc::new(ClusterView::default()));
        let c = Arc::new(Cluster {
            broker_id,
            connect_string: connect_string.to_owned(),
            access,
            session_timeout,
            registration,
            client: RwLock::new(client.clone()),
            view_tx,
            fenced: AtomicBool::new(false),
            controller: Mutex::new(None),
            rebalance: Mutex::new(None),
        });
        c.setup(&client).await?;
        Ok(c)
    }

    /// Base paths, cluster id, watches, registration, first load.
    async fn setup(&self, client: &Client) -> Result<(), JoinError> {
        for p in cluster::BASE_PATHS {
            ensure(client, p, b"").await?;
        }
        let id = ClusterId {
            version: "1".into(),
            id: uuid_text(&random_uuid()),
        };
        ensure(
            client,
            cluster::CLUSTER_ID,
            &serde_json::to_vec(&id).unwrap_or_default(),
        )
        .await?;
        for p in WATCHED {
            client
                .add_watch(p, AddWatchMode::PersistentRecursive)
                .await?;
        }
        client
            .add_watch(cluster::CONTROLLER, AddWatchMode::Persistent)
            .await?;
        self.register(client).await?;
        let view = ClusterView::load(client).await?;
        self.view_tx.send_replace(Arc::new(view));
        Ok(())
    }

    /// Registers `/brokers/ids/<id>` as an ephemeral node. If it exists, it may belong to
    /// our own previous process (killed, its session not yet expired): wait up to a session
    /// timeout for it to go. If it is still there, another live broker has our id.
    async fn register(&self, client: &Client) -> Result<(), JoinError> {
        let path = cluster::broker_path(self.broker_id);
        let mut reg = self.registration.clone();
        reg.timestamp = now_ms().to_string();
        let data = serde_json::to_vec(&reg).unwrap_or_default();
        let deadline = Instant::now() + self.session_timeout + Duration::from_secs(2);
        let mut warned = false;
        loop {
            match client
                .create(
                    &path,
                    data.clone(),
                    &client.acl_for(&path),
                    CreateMode::Ephemeral,
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(
                        broker_id = self.broker_id,
                        "registered with the coordinator"
                    );
                    return Ok(());
                }
                Err(CoordError::Zk(ErrorCode::NodeExists)) => {
                    if let Ok(Some(stat)) = client.exists(&path, false).await {
                        if stat.ephemeral_owner == client.session_id() {
                            return Ok(());
                        }
                    }
                    if Instant::now() >= deadline {
                        return Err(JoinError::DuplicateId(self.broker_id));
                    }
                    if !warned {
                        tracing::info!(broker_id = self.broker_id, "an earlier registration of this id exists; waiting for its session to expire");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Turns on the controller's automatic preferred-leader rebalance: every `interval`,
    /// if this broker is the controller, partitions of brokers with more than `percent` of
    /// their preferred partitions led elsewhere move back.
    pub fn set_leader_rebalance(&self, interval: Duration, percent: u32) {
        if let Ok(mut r) = self.rebalance.lock() {
            *r = Some((interval, percent));
        }
    }

    /// Controlled shutdown: asks the controller to move this broker's leaderships to other
    /// in-sync replicas and to take it out of the ISRs, then waits (at most `timeout`)
    /// until no partition it leads has another live in-sync replica to go to. True if
    /// everything moved.
    pub async fn controlled_shutdown(&self, timeout: Duration) -> bool {
        let client = self.client();
        let path = cluster::controlled_shutdown_path(self.broker_id);
        match client
            .create(
                &path,
                Vec::new(),
                &client.acl_for(&path),
                CreateMode::Ephemeral,
            )
            .await
        {
            Ok(_) | Err(CoordError::Zk(ErrorCode::NodeExists)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask for a controlled shutdown");
                return false;
            }
        }
        let me = self.broker_id;
        let settled = |v: &ClusterView| {
            v.topics.values().all(|t| {
                t.states.values().all(|(s, _)| {
                    s.leader != me
                        || !s.isr.iter().any(|r| {
                            *r != me && v.brokers.contains_key(r) && !v.shutting_down.contains(r)
                        })
                })
            })
        };
        let mut rx = self.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if settled(&rx.borrow_and_update()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        waited.is_ok() && settled(&self.view())
    }

    /// Unclean leader elections (ElectLeaders with the unclean type), carried out here
    /// only if this broker is the controller: `None` otherwise (the caller answers
    /// NOT_CONTROLLER and the client asks the controller).
    pub async fn elect_unclean(
        &self,
        which: &[(String, i32)],
    ) -> Option<Result<controller::Elected, CoordError>> {
        let view = self.view();
        if view.controller != Some(self.broker_id) || self.is_fenced() {
            return None;
        }
        let epoch = self.controller.lock().ok().and_then(|c| *c)?;
        Some(controller::elect_unclean(&self.client(), epoch, &view, which).await)
    }

    /// The current coordinator session.
    pub fn client(&self) -> Arc<Client> {
        self.client
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The latest view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view_tx.borrow().clone()
    }

    /// A receiver that sees every new view.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view_tx.subscribe()
    }

    /// True while the broker has no valid session: it must not accept writes.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Follows coordinator events until shutdown: reloads what changed, publishes the view,
    /// runs the controller when we hold `/controller`, and rejoins after a session loss.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let client = self.client();
            let result = tokio::select! {
                r = self.follow(&client) => r,
                _ = shutdown.cancelled() => {
                    // Deregister now so the controller moves leadership without waiting
                    // for the session to expire.
                    let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
                    return;
                }
            };
            let reason = match result {
                Ok(()) => "the session ended".to_owned(),
                Err(e) => e.to_string(),
            };
            self.fenced.store(true, Ordering::Release);
            if let Ok(mut c) = self.controller.lock() {
                *c = None;
            }
            tracing::error!(broker_id = self.broker_id, %reason, "lost the coordinator session; refusing writes until the broker rejoins");
            // Rejoin with a new session, retrying until the coordinator is back.
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                match self.rejoin().await {
                    Ok(()) => {
                        self.fenced.store(false, Ordering::Release);
                        tracing::info!(broker_id = self.broker_id, "rejoined the cluster");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot rejoin yet");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.cancelled() => return,
                        }
                    }
                }
            }
        }
    }

    async fn rejoin(&self) -> Result<(), JoinError> {
        let client = connect(&self.connect_string, self.session_timeout, &self.access).await?;
        if let Ok(mut c) = self.client.write() {
            *c = client.clone();
        }
        self.setup(&client).await
    }

    /// Handles events of one session until it expires.
    ///
    /// The client learns that its session expired only when it reaches the coordinator
    /// again. A broker cut off from the coordinator must not wait for that: once it has had
    /// no contact for a whole session timeout, the coordinator has expired the session and
    /// the controller may have moved its partitions, so it refuses writes from then on. It
    /// serves again if the same session reconnects, or after it has rejoined.
    async fn follow(&self, client: &Arc<Client>) -> Result<(), CoordError> {
        let mut events = client.events();
        // Changes between setup's load and this subscription are caught by a reload.
        let mut view = ClusterView::load(client).await?;
        self.publish(client, &mut view).await;
        let mut disconnected_since: Option<Instant> = None;
        let rebalance = self.rebalance.lock().ok().and_then(|r| *r);
        let mut next_rebalance =
            tokio::time::Instant::now() + rebalance.map_or(Duration::from_secs(3600), |r| r.0);
        loop {
            let rebalance_due = tokio::time::sleep_until(next_rebalance);
            let expiry = async {
                match disconnected_since {
                    Some(t) => tokio::time::sleep_until((t + self.session_timeout).into()).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let ev = tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => ev,
                    None => return Err(CoordError::SessionExpired),
                },
                _ = rebalance_due => {
                    if let Some((interval, percent)) = rebalance {
                        next_rebalance = tokio::time::Instant::now() + interval;
                        self.auto_rebalance(client, &view, percent).await;
                    } else {
                        next_rebalance = tokio::time::Instant::now() + Duration::from_secs(3600);
                    }
                    continue;
                }
                _ = expiry => {
                    if !self.fenced.swap(true, Ordering::AcqRel) {
                        tracing::error!(broker_id = self.broker_id, timeout_ms = self.session_timeout.as_millis() as u64,
                            "no contact with the coordinator for the session timeout; refusing writes until it is back");
                    }
                    disconnected_since = None;
                    continue;
                }
            };
            let mut paths = BTreeSet::new();
            let mut handle = |ev: Event| -> Result<(), CoordError> {
                match ev {
                    Event::Watch(w) => {
                        paths.insert(w.path);
                    }
                    Event::Session(SessionEvent::Expired)
                    | Event::Session(SessionEvent::Closed) => {
                        return Err(CoordError::SessionExpired);
                    }
                    Event::Session(SessionEvent::Disconnected) => {
                        // The client gives up on a silent connection after two thirds of
                        // the session timeout: date the last contact back by that much, so
                        // the broker stops writing no later than the coordinator expires it.
                        let last_contact = Instant::now()
                            .checked_sub(self.session_timeout * 2 / 3)
                            .unwrap_or_else(Instant::now);
                        disconnected_since.get_or_insert(last_contact);
                    }
                    Event::Session(SessionEvent::Connected) => {
                        // The same session is back: it never expired. Watches are
                        // re-registered by the client; re-read everything in case events
                        // were lost while disconnected.
                        disconnected_since = None;
                        if self.fenced.swap(false, Ordering::AcqRel) {
                            tracing::info!(
                                broker_id = self.broker_id,
                                "the coordinator session is back; accepting writes again"
                            );
                        }
                        paths.insert(String::new());
                    }
                    Event::Session(_) => {}
                }
                Ok(())
            };
            handle(ev)?;
            while let Some(ev) = events.try_recv() {
                handle(ev)?;
            }
            if paths.contains("") {
                view = ClusterView::load(client).await?;
            } else {
                for p in &paths {
                    view.reload(client, p).await?;
                }
            }
            self.publish(client, &mut view).await;
        }
    }

    /// The controller's periodic preferred-leader rebalance.
    async fn auto_rebalance(&self, client: &Arc<Client>, view: &ClusterView, percent: u32) {
        if view.controller != Some(self.broker_id) || self.is_fenced() {
            return;
        }
        let Some(epoch) = self.controller.lock().ok().and_then(|c| *c) else {
            return;
        };
        let which = controller::imbalanced(view, percent);
        if which.is_empty() {
            return;
        }
        match controller::elect_preferred(client, epoch, view, &which).await {
            Ok(n) if n > 0 => tracing::info!(
                partitions = n,
                "leadership rebalanced to preferred replicas"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "leader rebalance failed"),
        }
    }

    /// Publishes the view, then does the controller's work if we are (or can become) it.
    async fn publish(&self, client: &Arc<Client>, view: &mut ClusterView) {
        if self.view_tx.borrow().as_ref() != view {
            self.view_tx.send_replace(Arc::new(view.clone()));
        }
        if view.controller.is_none() {
            match controller::elect(client, self.broker_id).await {
                Ok(Some(epoch)) => {
                    tracing::info!(
                        broker_id = self.broker_id,
                        epoch = epoch.epoch,
                        "became the controller"
                    );
                    if let Ok(mut c) = self.controller.lock() {
                        *c = Some(epoch);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "controller election failed"),
            }
            let _ = view.reload(client, cluster::CONTROLLER).await;
            self.view_tx.send_replace(Arc::new(view.clone()));
        }
        if view.controller != Some(self.broker_id) {
            if let Ok(mut c) = self.controller.lock() {
                *c = None;
            }
            return;
        }
        let epoch = self.controller.lock().ok().and_then(|c| *c);
        let Some(epoch) = epoch else {
            // We hold /controller from a previous session of this process: resign so a
            // proper election (with a new epoch) happens.
            let _ = client.delete(cluster::CONTROLLER, None).await;
            return;
        };
        if let Err(e) = controller::reconcile(client, epoch, view).await {
            tracing::warn!(error = %e, "controller work failed; it is retried on the next change");
        }
    }
}

async fn connect(
    connect_string: &str,
    session_timeout: Duration,
    security: &CoordinatorAccess,
) -> Result<Arc<Client>, JoinError> {
    let mut opts = ConnectOptions::new(connect_string)
        .session_timeout(session_timeout)
        .connect_timeout(Duration::from_secs(5));
    opts.tls = security.tls.clone();
    opts.sasl = security.sasl.clone();
    opts.digest = security.digest.clone();
    opts.secure_acls = security.set_acl;
    Client::connect(opts)
        .await
        .map(Arc::new)
        .map_err(|source| JoinError::Connect {
            addr: connect_string.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_is_22_url_safe_chars() {
        let t = uuid_text(&random_uuid());
        assert_eq!(t.len(), 22);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(uuid_text(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
    }
}
