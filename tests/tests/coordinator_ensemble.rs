//! A 3-member `fjord-coordinator` ensemble with the `zookeeper-client` crate as the client:
//! writers on sessions of their own, given the multi-host connect string, create nodes
//! while the leader is killed with `kill -9` and later restarted. Every acknowledged create
//! must then be on every member, each writer keeps its session and its ephemeral node, and
//! the members' trees agree. (The same scenario with kazoo, and against a ZooKeeper 3.8
//! ensemble as the reference, is in tests/interop/test_coordinator_ensemble_faults.py.)
//!
//! Members listen on 127.0.0.2, 127.0.0.3 and 127.0.0.4 (Linux routes all of 127/8 to
//! loopback).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fjord_tests::zk::four_letter;
use fjord_tests::{Process, Spec};
use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zookeeper_client as zk;

const MEMBERS: u64 = 3;
const WRITERS: usize = 2;

/// A port on `host` that was free a moment ago.
fn free_port(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Ensemble {
    members: Vec<Process>,
}

/// The members' hosts, their peer addresses, and the `--peers` list.
fn layout() -> (Vec<String>, Vec<String>, String) {
    let hosts: Vec<String> = (1..=MEMBERS)
        .map(|i| format!("127.0.0.{}", i + 1))
        .collect();
    let peers: Vec<String> = hosts
        .iter()
        .map(|h| format!("{h}:{}", free_port(h)))
        .collect();
    let list = peers
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}={p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    (hosts, peers, list)
}

/// Member `i` (from 0) of the ensemble `layout` describes.
fn member(hosts: &[String], peers: &[String], list: &str, i: usize) -> Process {
    Spec::coordinator()
        .args(["--id", &(i + 1).to_string(), "--peer-listen", &peers[i]])
        .args(["--peers", list, "--tick-ms", "500"])
        .start_on(&format!("{}:{}", hosts[i], free_port(&hosts[i])))
        .unwrap()
}

impl Ensemble {
    fn start() -> Ensemble {
        let (hosts, peers, list) = layout();
        let members = (0..hosts.len())
            .map(|i| member(&hosts, &peers, &list, i))
            .collect();
        Ensemble { members }
    }

    fn connect_string(&self) -> String {
        self.members
            .iter()
            .map(|m| m.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The member that says `Mode: leader`, once exactly one of the running ones does and
    /// the others follow.
    async fn leader(&mut self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut modes = Vec::new();
            for m in self.members.iter_mut() {
                let mode = if m.is_running() {
                    mode(m.addr()).await
                } else {
                    Some("down".to_owned())
                };
                modes.push(mode);
            }
            let leaders: Vec<usize> = (0..modes.len())
                .filter(|i| modes[*i].as_deref() == Some("leader"))
                .collect();
            let settled = modes
                .iter()
                .all(|m| matches!(m.as_deref(), Some("leader" | "follower" | "down")));
            if leaders.len() == 1 && settled {
                return leaders[0];
            }
            assert!(
                Instant::now() < deadline,
                "no leader within 30 s: {modes:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn mode(addr: SocketAddr) -> Option<String> {
    let srvr = four_letter(addr, "srvr").await.ok()?;
    srvr.lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(str::to_owned)
}

async fn connect(connect: &str) -> zk::Client {
    tokio::time::timeout(
        Duration::from_secs(15),
        zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(connect),
    )
    .await
    .expect("connected in time")
    .expect("a session")
}

/// Creates `/ens/W-N` nodes until `stop`, recording the acknowledged ones.
async fn write_loop(
    c: zk::Client,
    w: usize,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    for n in 0..100_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let path = format!("/ens/{w}-{n}");
        match tokio::time::timeout(Duration::from_secs(10), c.create(&path, b"v", &opts)).await {
            Ok(Ok(_)) => acked.lock().unwrap().push(path),
            // Unknown outcome (connection loss, a retry that finds the node): not recorded.
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn wait_acks(acked: &Mutex<Vec<String>>, more_than: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < more_than {
        assert!(Instant::now() < deadline, "writes stalled {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The children of `/ens` and a digest of the whole `/ens` subtree as one member sees it,
/// after a sync.
async fn view(addr: SocketAddr) -> (BTreeSet<String>, Vec<(String, i64, i64)>) {
    let c = connect(&addr.to_string()).await;
    c.sync("/ens").await.unwrap();
    let (children, _) = c.get_children("/ens").await.unwrap();
    let mut digest = Vec::new();
    for child in &children {
        let (_, stat) = c.get_data(&format!("/ens/{child}")).await.unwrap();
        digest.push((child.clone(), stat.czxid, stat.mzxid));
    }
    digest.sort();
    (children.into_iter().collect(), digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_client_writes_survive_a_leader_kill() {
    let mut ens = Ensemble::start();
    let leader = ens.leader().await;
    let connect_string = ens.connect_string();
    let setup = connect(&connect_string).await;
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    setup.create("/ens", b"", &opts).await.unwrap();

    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    let mut sessions = Vec::new();
    for w in 0..WRITERS {
        let c = connect(&connect_string).await;
        let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        c.create(&format!("/ens-eph-{w}"), b"", &eph).await.unwrap();
        sessions.push((c.session_id(), c.clone()));
        writers.push(tokio::spawn(write_loop(c, w, acked.clone(), stop.clone())));
    }
    wait_acks(&acked, 200, "before the kill").await;

    ens.members[leader].kill9().unwrap();
    let before = acked.lock().unwrap().len();
    let new_leader = ens.leader().await;
    assert_ne!(new_leader, leader);
    wait_acks(&acked, before + 200, "after the leader's kill").await;
    ens.members[leader].restart().unwrap();
    let before = acked.lock().unwrap().len();
    wait_acks(&acked, before + 100, "after the restart").await;
    ens.leader().await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("writers stop")
            .unwrap();
    }

    // Sessions lived through it all, with their ephemerals.
    for (w, (id, c)) in sessions.iter().enumerate() {
        assert_eq!(c.session_id(), *id, "writer {w} lost its session");
        let stat = c.check_stat(&format!("/ens-eph-{w}")).await.unwrap();
        assert_eq!(stat.map(|s| s.ephemeral_owner), Some(id.0));
    }
    let acked: BTreeSet<String> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.trim_start_matches("/ens/").to_owned())
        .collect();
    let mut digests = Vec::new();
    for m in &ens.members {
        let (children, digest) = view(m.addr()).await;
        let missing: Vec<_> = acked.difference(&children).take(5).collect();
        assert!(missing.is_empty(), "member {} lacks {missing:?}", m.addr());
        digests.push(digest);
    }
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "the members' trees differ"
    );
}

/// A standalone coordinator commits on its own fsync without Raft round trips, but writes
/// the log Raft would have written: its directory, also after a `kill -9` and a restart,
/// starts as member 1 of a new ensemble, and the two new members catch up from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_directory_becomes_member_one_of_an_ensemble() {
    let (hosts, peers, list) = layout();
    let mut first = Spec::coordinator()
        .args(["--tick-ms", "500"])
        .start_on(&format!("{}:{}", hosts[0], free_port(&hosts[0])))
        .unwrap();
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let c = connect(&first.addr().to_string()).await;
    c.create("/ens", b"", &opts).await.unwrap();
    for n in 0..100 {
        c.create(&format!("/ens/s-{n}"), b"v", &opts).await.unwrap();
    }
    drop(c);
    // The log after the snapshot is replayed on start.
    first.kill9().unwrap();
    first.restart().unwrap();
    let c = connect(&first.addr().to_string()).await;
    for n in 100..200 {
        c.create(&format!("/ens/s-{n}"), b"v", &opts).await.unwrap();
    }
    let (children, _) = c.get_children("/ens").await.unwrap();
    assert_eq!(children.len(), 200, "the standalone member lost writes");
    drop(c);

    first.terminate(Duration::from_secs(10)).unwrap();
    let spec = first.spec_mut();
    spec.set_flag("--id", "1");
    spec.set_flag("--peer-listen", peers[0].as_str());
    spec.set_flag("--peers", list.as_str());
    first.restart().unwrap();
    let mut members = vec![first];
    for i in 1..hosts.len() {
        members.push(member(&hosts, &peers, &list, i));
    }
    let mut ens = Ensemble { members };
    ens.leader().await;
    let c = connect(&ens.connect_string()).await;
    // Growing takes a membership change once member 1 leads; writes work throughout.
    c.create("/ens/e-0", b"v", &opts).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut complete = true;
        for m in &ens.members {
            let (children, _) = view(m.addr()).await;
            complete &= children.len() == 201;
        }
        if complete {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new members did not catch up from the standalone directory"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut digests = Vec::new();
    for m in &ens.members {
        digests.push(view(m.addr()).await.1);
    }
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "the members' trees differ"
    );
}
