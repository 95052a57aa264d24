//! Starting a member: what it is (id, peers, cluster id), what it recovers from disk, and
//! the tasks that connect the processor to Raft.

use super::durable::DurableGate;
use super::log_store::{self, LogStore};
use super::network::{self, Identity, PeerNetwork};
use super::state_machine::{self, decode_meta, encode_meta, StateMachine};
use super::{LogId, Membership, Outbound, Raft, SnapshotMeta, StoredMembership};
use crate::metrics::stats::STATS;
use crate::persist::snapshot::{self, SnapSession, SnapshotJob};
use crate::persist::{list, recovery, PersistError};
use crate::processor::Msg;
use crate::session::SessionTracker;
use crate::txn::State;
use anyhow::{bail, Context};
use openraft::{BasicNode, CommittedLeaderId, SnapshotPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How a member is configured.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub id: u64,
    /// Every voting member's peer address, this one included. One entry (this member) when
    /// running standalone.
    pub peers: BTreeMap<u64, String>,
    /// Where this member listens for peers; `None` standalone.
    pub peer_listen: Option<SocketAddr>,
    pub cluster_id: Option<String>,
    pub election_timeout_ms: u64,
    pub snapshot_txns: u64,
}

impl MemberConfig {
    pub fn standalone(&self) -> bool {
        self.peer_listen.is_none()
    }
}

/// Parses `1=HOST:PORT,2=HOST:PORT,...`.
pub fn parse_peers(s: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((id, addr)) = part.split_once('=') else {
            bail!("--peers entry {part:?} is not ID=HOST:PORT");
        };
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("--peers entry {part:?}: the id is not a number"))?;
        if id == 0 || id > 255 {
            bail!("--peers entry {part:?}: member ids are 1..=255");
        }
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        {
            bail!("--peers entry {part:?}: {addr:?} is not HOST:PORT");
        }
        if out.insert(id, addr.to_owned()).is_some() {
            bail!("--peers names member {id} twice");
        }
    }
    if out.is_empty() {
        bail!("--peers is empty");
    }
    Ok(out)
}

/// The cluster id this data directory belongs to, and whether it is settled. It is stored
/// in `cluster-id`: from `--cluster-id`, or derived from the peer list by the member that
/// initializes a new ensemble (or has data already). A new member without either adopts
/// the id of the first member that contacts it (see [`Identity::admit`]).
fn cluster_id(dir: &Path, cfg: &MemberConfig, settle: bool) -> anyhow::Result<(String, bool)> {
    let path = dir.join("cluster-id");
    let wanted = cfg.cluster_id.clone().unwrap_or_else(|| {
        let list: Vec<String> = cfg.peers.iter().map(|(i, a)| format!("{i}={a}")).collect();
        format!("fjord-{:08x}", crc32c::crc32c(list.join(",").as_bytes()))
    });
    match std::fs::read_to_string(&path) {
        Ok(stored) => {
            let stored = stored.trim().to_owned();
            if let Some(flag) = &cfg.cluster_id {
                if *flag != stored {
                    bail!(
                        "{} belongs to cluster {stored:?}, not {flag:?}",
                        dir.display()
                    );
                }
            }
            Ok((stored, true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !settle && cfg.cluster_id.is_none() {
                return Ok((wanted, false));
            }
            fjord_shared::fs::write_atomic(&path, format!("{wanted}\n").as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok((wanted, true))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// What a member starts from.
#[derive(Debug)]
pub struct Recovered {
    pub state: State,
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    /// The snapshot it came from, if any, and its file.
    pub snapshot: Option<(SnapshotMeta, std::path::PathBuf)>,
    /// Nothing on disk: a new member.
    pub fresh: bool,
}

fn nodes(peers: &BTreeMap<u64, String>) -> BTreeMap<u64, BasicNode> {
    peers
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect()
}

fn state_from(loaded: snapshot::Loaded, tick_ms: u64) -> State {
    let mut sessions = SessionTracker::new(tick_ms);
    for SnapSession {
        id,
        timeout_ms,
        passwd,
        owner,
    } in loaded.sessions
    {
        sessions.add(id, timeout_ms, passwd, 0);
        sessions.set_owner(id, owner);
    }
    State {
        tree: loaded.tree,
        sessions,
        last_zxid: loaded.last_zxid,
    }
}

/// Loads the newest snapshot. A data directory from before the Raft log (transaction log
/// files, or a snapshot without Raft metadata) is imported first: its state becomes a
/// snapshot at log index = its last zxid, with this member (or the configured peers) as the
/// membership, and the old files are removed once that snapshot is durable.
pub fn recover(dir: &Path, tick_ms: u64, cfg: &MemberConfig) -> anyhow::Result<Recovered> {
    // Nothing is being written yet: leftovers of an interrupted snapshot can go.
    snapshot::purge(dir)?;
    let has_raft_log = log_store::exists(dir)?;
    let newest = state_machine::newest(dir)?;
    let legacy_logs = list(dir, "log")?;
    let newest_has_meta = newest
        .as_ref()
        .is_some_and(|(l, _)| l.meta.as_deref().and_then(decode_meta).is_some());
    if !has_raft_log && !newest_has_meta && (newest.is_some() || !legacy_logs.is_empty()) {
        drop(newest);
        import(dir, tick_ms, cfg)?;
        return recover(dir, tick_ms, cfg);
    }
    match newest {
        Some((loaded, path)) => {
            let meta = loaded
                .meta
                .as_deref()
                .and_then(decode_meta)
                .with_context(|| {
                    format!(
                        "{} has no Raft metadata but a Raft log exists",
                        path.display()
                    )
                })?;
            let state = state_from(loaded, tick_ms);
            Ok(Recovered {
                state,
                applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
                snapshot: Some((meta, path)),
                fresh: false,
            })
        }
        None => Ok(Recovered {
            state: State {
                tree: crate::tree::DataTree::new(),
                sessions: SessionTracker::new(tick_ms),
                last_zxid: 0,
            },
            applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            fresh: !has_raft_log,
        }),
    }
}

fn import(dir: &Path, tick_ms: u64, cfg: &MemberConfig) -> anyhow::Result<()> {
    let (state, report) = recovery::recover(dir, tick_ms, 0).context("reading the old data")?;
    let zxid = state.last_zxid.max(0) as u64;
    let log_id = LogId::new(CommittedLeaderId::new(0, cfg.id), zxid);
    let voters: BTreeSet<u64> = cfg.peers.keys().copied().collect();
    let membership = Membership::new(vec![voters], nodes(&cfg.peers));
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(Some(log_id), membership),
        snapshot_id: format!("import-{zxid}"),
    };
    let job = SnapshotJob::of(&state, encode_meta(&meta));
    let old: Vec<_> = list(dir, "snapshot")?
        .into_iter()
        .chain(list(dir, "log")?)
        .collect();
    let path = snapshot::write(dir, &job)?;
    for (_, p) in old {
        if p != path {
            std::fs::remove_file(&p).map_err(|e| PersistError::io(&p, e))?;
        }
    }
    fjord_shared::fs::sync_dir(dir).map_err(|e| PersistError::io(dir, e))?;
    tracing::info!(
        zxid = format_args!("{zxid:#x}"),
        replayed = report.replayed,
        nodes = state.tree.node_count(),
        sessions = state.sessions.len(),
        "imported a data directory from before the Raft log"
    );
    Ok(())
}

/// A running member's Raft side.
#[derive(Clone)]
pub struct Member {
    /// `None` for a standalone member that drives its log itself (see [`super::solo`]).
    pub raft: Option<Raft>,
    pub identity: Arc<Identity>,
}

/// Raft's settings for a member.
fn raft_config(cfg: &MemberConfig, cluster: &str) -> anyhow::Result<openraft::Config> {
    let election = cfg.election_timeout_ms.max(10);
    let c = openraft::Config {
        cluster_name: cluster.to_owned(),
        election_timeout_min: election,
        // Also openraft's leader lease: how long a follower refuses to vote after it last
        // heard from the leader. Each member draws its timeout once, and checks it on a
        // tick of 1.5 heartbeats; a range narrower than a few ticks puts every member on
        // the same period, and candidates that time out together split the vote again and
        // again.
        election_timeout_max: election * 2,
        heartbeat_interval: (election / 5).max(5),
        install_snapshot_timeout: 30_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_txns),
        max_in_snapshot_log_to_keep: cfg.snapshot_txns.min(1000),
        max_payload_entries: 1000,
        ..Default::default()
    };
    c.validate().context("Raft settings")
}

/// Starts Raft on top of a started processor, and the tasks around it: the proposer, the
/// role watcher and the peer listener.
pub async fn start(
    dir: &Path,
    cfg: &MemberConfig,
    recovered_fresh: bool,
    snapshot: Option<(SnapshotMeta, std::path::PathBuf)>,
    processor: mpsc::Sender<Msg>,
    proposals: (
        tokio::sync::mpsc::UnboundedSender<Outbound>,
        tokio::sync::mpsc::UnboundedReceiver<Outbound>,
    ),
    shutdown: CancellationToken,
) -> anyhow::Result<Member> {
    let (outbound, proposals) = proposals;
    // A standalone coordinator has no peers to tell apart, and keeps no cluster id, so that
    // its data directory can later become the first member of any ensemble.
    let lowest = cfg.peers.keys().next().copied() == Some(cfg.id);
    let (cluster, settled) = if cfg.standalone() {
        ("standalone".to_owned(), true)
    } else {
        cluster_id(dir, cfg, !recovered_fresh || lowest)?
    };
    let peer_addr = match cfg.peer_listen {
        Some(a) => a,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let listener = match cfg.peer_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for peers on {addr}"))?,
        ),
        None => None,
    };
    let identity = Arc::new(
        Identity::new(
            cfg.id,
            cluster.clone(),
            (!settled).then(|| dir.join("cluster-id")),
            listener
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .unwrap_or(peer_addr),
            dir,
        )
        .context("reading this member's identity")?,
    );
    let log = LogStore::open(dir, cfg.id)?;
    let gate = DurableGate::new(&log);
    let sm = StateMachine::new(processor.clone(), dir, snapshot, gate.clone());
    if cfg.standalone() {
        let solo = super::solo::prepare(
            cfg.id,
            nodes(&cfg.peers),
            log.clone(),
            sm.clone(),
            processor.clone(),
            identity.clone(),
            cfg.snapshot_txns.min(1000),
        )
        .await
        .context("starting the standalone member")?;
        if let Some(control) = solo {
            tokio::spawn(control.run(proposals));
            return Ok(Member {
                raft: None,
                identity,
            });
        }
        tracing::info!("this data directory's membership names other members: running Raft");
    }
    let net = PeerNetwork {
        me: identity.clone(),
        durable: gate.clone(),
    };
    let raft = Raft::new(cfg.id, Arc::new(raft_config(cfg, &cluster)?), net, log, sm)
        .await
        .context("starting Raft")?;
    tokio::spawn(gate.announce(raft.clone()));
    if let Some(l) = listener {
        tracing::info!(addr = %identity.peer_addr, member = cfg.id, cluster = %cluster, "listening for peers");
        tokio::spawn(network::serve(
            l,
            identity.clone(),
            raft.clone(),
            processor.clone(),
            outbound,
            dir.to_owned(),
            shutdown.clone(),
        ));
    }
    // A new ensemble is initialized by its lowest-numbered member alone, so that members
    // added to an existing ensemble (or started next to a member with data) never form a
    // quorum of their own without that data.
    if recovered_fresh && lowest {
        tracing::info!(members = ?cfg.peers.keys().collect::<Vec<_>>(), "initializing a new ensemble");
        if let Err(e) = raft.initialize(nodes(&cfg.peers)).await {
            tracing::info!(error = %e, "not initializing: already initialized");
        }
    }
    tokio::spawn(super::forward::run(
        proposals,
        raft.clone(),
        identity.clone(),
        processor.clone(),
    ));
    tokio::spawn(watch_role(
        raft.clone(),
        processor,
        identity.clone(),
        cfg.election_timeout_ms,
    ));
    if !cfg.standalone() {
        tokio::spawn(grow(raft.clone(), cfg.clone()));
    }
    if cfg.standalone() {
        // One voter: no need to wait out an election timeout.
        let _ = raft.trigger().elect().await;
        wait_ready(&raft, cfg.id).await;
    }
    Ok(Member {
        raft: Some(raft),
        identity,
    })
}

/// A standalone coordinator's data directory started as member 1 of an ensemble: its
/// membership names only itself. Once it leads, it adds the other members of `--peers`
/// (each catches up as a learner first).
async fn grow(raft: Raft, cfg: MemberConfig) {
    let alone = {
        let m = raft.metrics();
        let m = m.borrow();
        let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
        voters == [cfg.id]
    };
    if !alone || cfg.peers.len() < 2 {
        return;
    }
    let led = raft
        .wait(Some(Duration::from_secs(60)))
        .current_leader(cfg.id, "leading alone")
        .await;
    if led.is_err() {
        return;
    }
    let add = cfg
        .peers
        .iter()
        .filter(|(id, _)| **id != cfg.id)
        .map(|(id, a)| (*id, a.clone()))
        .collect();
    let change = super::membership::Change {
        add,
        remove: Vec::new(),
        replace: None,
    };
    tracing::info!(peers = ?cfg.peers, "this member's data names it alone: adding the other members of --peers");
    // Standalone, it recorded its client address; the others need its peer address.
    if let Some(addr) = cfg.peers.get(&cfg.id) {
        let nodes = [(cfg.id, BasicNode::new(addr))].into_iter().collect();
        if let Err(e) = raft
            .change_membership(openraft::ChangeMembers::SetNodes(nodes), false)
            .await
        {
            tracing::warn!(error = %e, "could not record this member's peer address");
            return;
        }
    }
    match super::forward::reconfig(&raft, &change).await {
        Ok(done) => tracing::info!(index = done.index, "the ensemble has all its members"),
        Err((_, e)) => {
            tracing::warn!(error = %e, "could not add the other members; add them with `fjord coord members add`")
        }
    }
}

/// Waits (bounded) until this single member leads and has applied its whole log, so that
/// the first client sees every acknowledged write.
async fn wait_ready(raft: &Raft, id: u64) {
    let r = raft
        .wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| m.current_leader == Some(id) && m.last_applied.map(|l| l.index) >= m.last_log_index,
            "standalone member ready",
        )
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "not ready in time; serving anyway");
    }
}

/// Tells the processor who leads, whenever that changes. A leader that has not heard from
/// a quorum for an election timeout is reported as no leader: it is probably cut off (or
/// was paused), and its clients are better served by the majority side.
///
/// Raft stops for good when this member's log cannot be written (a full disk, a failed
/// fsync): the member then closes its clients, answers nothing more, and exits with the
/// reason, so that a supervisor sees it. What it acknowledged is on a quorum's disks; on
/// restart it recovers its log up to the last good record and catches up.
async fn watch_role(
    raft: Raft,
    processor: mpsc::Sender<Msg>,
    identity: Arc<Identity>,
    election_timeout_ms: u64,
) {
    let mut metrics = raft.metrics();
    let mut last = None;
    let recheck = Duration::from_millis((election_timeout_ms / 4).max(10));
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            match &m.running_state {
                Ok(()) => {}
                // A clean shutdown.
                Err(openraft::error::Fatal::Stopped) => return,
                Err(e) => {
                    let _ = processor.send(Msg::Failed);
                    identity.fail(format!("Raft stopped: {e}"));
                    return;
                }
            }
            let voters = m.membership_config.membership().voter_ids().count();
            let cut_off = m.current_leader == Some(m.id)
                && voters > 1
                && m.millis_since_quorum_ack
                    .is_none_or(|ms| ms > election_timeout_ms);
            // A member removed from the ensemble serves no one.
            let removed = m.membership_config.membership().get_node(&m.id).is_none();
            let leader = if cut_off || removed {
                None
            } else {
                m.current_leader
            };
            STATS.quorum_size.store(voters as u64, Ordering::Relaxed);
            let (followers, synced) = match &m.replication {
                Some(r) => {
                    let last = m.last_log_index.unwrap_or(0);
                    for (id, matched) in r.iter().filter(|(id, _)| **id != m.id) {
                        let behind = last.saturating_sub(matched.map_or(0, |l| l.index));
                        STATS.learner_behind(*id, behind);
                    }
                    let applied = m.last_applied.map(|l| l.index);
                    let others = r.iter().filter(|(id, _)| **id != m.id);
                    let synced = others
                        .clone()
                        .filter(|(_, matched)| matched.map(|l| l.index) >= applied)
                        .count();
                    (others.count(), synced)
                }
                None => (0, 0),
            };
            (leader, m.current_term, followers, synced)
        };
        if last != Some(now) {
            last = Some(now);
            if processor
                .send(Msg::Role {
                    leader: now.0,
                    term: now.1,
                    followers: now.2,
                    synced: now.3,
                })
                .is_err()
            {
                return;
            }
        }
        tokio::select! {
            r = metrics.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(recheck) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standalone(id: u64) -> MemberConfig {
        MemberConfig {
            id,
            peers: [(id, "127.0.0.1:2181".to_owned())].into_iter().collect(),
            peer_listen: None,
            cluster_id: None,
            election_timeout_ms: 1000,
            snapshot_txns: 1000,
        }
    }

    /// A data directory from before the Raft log: a transaction log of TxnRecords.
    fn write_legacy_log(dir: &Path) {
        use crate::txn::{acl_to_rec, Txn, TxnRecord};
        let recs = [
            TxnRecord {
                zxid: 1,
                time: 5,
                session: 0x77,
                txn: Txn::CreateSession {
                    timeout_ms: 4000,
                    passwd: [3; 16],
                },
            },
            TxnRecord {
                zxid: 2,
                time: 6,
                session: 0x77,
                txn: Txn::Create {
                    path: "/kept".into(),
                    data: Some(bytes::Bytes::from_static(b"old")),
                    acl: acl_to_rec(&fjord_shared::jute::Acl::open_unsafe()),
                    owner: 0,
                },
            },
        ];
        let mut bytes = crate::persist::LOG_MAGIC.to_vec();
        for r in &recs {
            fjord_shared::fs::frame(&rmp_serde::to_vec(r).unwrap(), &mut bytes);
        }
        bytes.resize(bytes.len() + 1024, 0);
        std::fs::write(dir.join(crate::persist::file_name("log", 1)), bytes).unwrap();
    }

    #[test]
    fn an_old_data_directory_is_imported_once_and_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        write_legacy_log(dir.path());
        for _ in 0..2 {
            let r = recover(dir.path(), 100, &standalone(1)).unwrap();
            assert!(!r.fresh);
            assert_eq!(r.state.last_zxid, 2);
            assert_eq!(r.applied.map(|l| l.index), Some(2));
            assert_eq!(
                r.state
                    .tree
                    .get("/kept")
                    .and_then(|n| n.data().map(<[u8]>::to_vec)),
                Some(b"old".to_vec())
            );
            assert!(r.state.sessions.get(0x77).is_some());
            let voters: Vec<u64> = r.membership.membership().voter_ids().collect();
            assert_eq!(voters, vec![1]);
            assert!(list(dir.path(), "log").unwrap().is_empty());
            assert_eq!(list(dir.path(), "snapshot").unwrap().len(), 1);
        }
        // A new directory is fresh; one with only a Raft log is not.
        let empty = tempfile::tempdir().unwrap();
        assert!(recover(empty.path(), 100, &standalone(1)).unwrap().fresh);
    }

    #[test]
    fn peers_parse_and_bad_ones_are_refused() {
        let p = parse_peers("1=127.0.0.2:2888, 2=127.0.0.3:2888,3=localhost:2890").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&3], "localhost:2890");
        for bad in [
            "",
            "1",
            "x=127.0.0.1:1",
            "1=127.0.0.1",
            "1=127.0.0.1:99999",
            "1=a:1,1=b:2",
            "0=a:1",
            "256=a:1",
        ] {
            assert!(parse_peers(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
