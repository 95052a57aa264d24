//! Crash safety of the real `fjord-coordinator` binary: concurrent writers (each its own
//! session) create nodes, set data and run multis while the coordinator is killed with
//! `kill -9` at random moments (seeded) and restarted on the same data dir and port.
//! Afterwards every acknowledged write must be there, and sessions created before the
//! crashes must still own their ephemeral nodes under the same session id.
//!
//! One run keeps the default snapshot interval (recovery replays the log); the other takes a
//! snapshot every 50 transactions, so recovery starts from a snapshot after the log behind
//! it was purged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use fjord_shared::jute::{op, PathWatchRequest, StatResponse};
use fjord_tests::zk::{create_body, RawConn};
use fjord_tests::{Process, Rng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zookeeper_client as zk;

const WRITERS: usize = 4;
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// What one writer got acknowledged.
#[derive(Debug, Default)]
struct Ledger {
    /// Created paths and their data.
    created: BTreeMap<String, Vec<u8>>,
    /// The highest acknowledged (version, sequence) of the writer's counter node. Data is
    /// the decimal sequence, which only grows.
    counter: Option<(i32, u64)>,
    /// Acknowledgements in total.
    acks: u64,
}

struct Writer {
    ledger: Arc<Mutex<Ledger>>,
    task: tokio::task::JoinHandle<()>,
}

fn base(i: usize) -> String {
    format!("/crash/w{i}")
}

/// Creates, sets and multis in a loop until `stop`, recording every acknowledged write.
/// Failed or timed-out operations have an unknown outcome and are not recorded.
async fn write_loop(
    c: zk::Client,
    i: usize,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    total: Arc<AtomicU64>,
) {
    let dir = base(i);
    let counter = format!("{dir}/counter");
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let data = format!("{seq}").into_bytes();
        let ok = match seq % 3 {
            0 => {
                let path = format!("{dir}/n{seq}");
                let r = tokio::time::timeout(
                    OP_TIMEOUT,
                    c.create(&path, &data, &opts(zk::CreateMode::Persistent)),
                )
                .await;
                match r {
                    Ok(Ok(_)) => {
                        ledger.lock().unwrap().created.insert(path, data);
                        true
                    }
                    _ => false,
                }
            }
            1 => {
                let r = tokio::time::timeout(OP_TIMEOUT, c.set_data(&counter, &data, None)).await;
                match r {
                    Ok(Ok(stat)) => {
                        let mut l = ledger.lock().unwrap();
                        l.counter = Some((stat.version, seq));
                        true
                    }
                    _ => false,
                }
            }
            _ => {
                let path = format!("{dir}/m{seq}");
                let mut m = c.new_multi_writer();
                m.add_create(&path, &data, &opts(zk::CreateMode::Persistent))
                    .unwrap();
                m.add_set_data(&counter, &data, None).unwrap();
                match tokio::time::timeout(OP_TIMEOUT, m.commit()).await {
                    Ok(Ok(results)) => {
                        let version = match results.get(1) {
                            Some(zk::MultiWriteResult::SetData { stat }) => stat.version,
                            other => panic!("writer {i}: multi result {other:?}"),
                        };
                        let mut l = ledger.lock().unwrap();
                        l.created.insert(path, data);
                        l.counter = Some((version, seq));
                        true
                    }
                    _ => false,
                }
            }
        };
        if ok {
            ledger.lock().unwrap().acks += 1;
            total.fetch_add(1, Ordering::Relaxed);
        } else {
            // The coordinator is down or restarting: the client reconnects on its own.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Run {
    p: Process,
    holder: zk::Client,
    raw_holder: RawConn,
    writers: Vec<Writer>,
    writer_clients: Vec<zk::Client>,
    stop: Arc<AtomicBool>,
    total: Arc<AtomicU64>,
}

async fn setup(args: &[&str]) -> Run {
    let p = coordinator(args);
    let admin = client(&p).await;
    mk(&admin, "/crash", b"").await;
    for i in 0..WRITERS {
        mk(&admin, &base(i), b"").await;
        mk(&admin, &format!("{}/counter", base(i)), b"0").await;
    }
    drop(admin);

    // Sessions created before any crash, each owning an ephemeral node: one through the
    // client library (which reconnects by itself), one raw and idle (resumed by hand).
    let holder = client(&p).await;
    holder
        .create("/crash/holder", b"", &opts(zk::CreateMode::Ephemeral))
        .await
        .unwrap();
    let mut raw_holder = RawConn::connect(p.addr(), 30_000).await.unwrap();
    assert_eq!(raw_holder.session.as_ref().unwrap().timeout, 30_000);
    raw_holder
        .call(op::CREATE, &create_body("/crash/raw-holder", b"", 1))
        .await
        .unwrap()
        .ok()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    let mut writer_clients = Vec::new();
    for i in 0..WRITERS {
        let c = client(&p).await;
        writer_clients.push(c.clone());
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let task = tokio::spawn(write_loop(
            c,
            i,
            ledger.clone(),
            stop.clone(),
            total.clone(),
        ));
        writers.push(Writer { ledger, task });
    }
    Run {
        p,
        holder,
        raw_holder,
        writers,
        writer_clients,
        stop,
        total,
    }
}

/// Kills and restarts the coordinator `rounds` times at random moments.
async fn crash_rounds(run: &mut Run, rng: &mut Rng, rounds: usize, min_total: u64) {
    for round in 0..rounds {
        let up = Duration::from_millis(rng.range(300, 1500));
        tokio::time::sleep(up).await;
        let before = run.total.load(Ordering::Relaxed);
        tokio::task::block_in_place(|| run.p.kill9()).unwrap();
        let down = Duration::from_millis(rng.range(0, 300));
        tokio::time::sleep(down).await;
        tokio::task::block_in_place(|| run.p.restart()).unwrap();
        eprintln!("round {round}: up {up:?}, {before} acks so far, down {down:?}");
    }
    // Progress after the last restart: every writer is acknowledged again, and enough writes
    // happened in total.
    let marks: Vec<u64> = run
        .writers
        .iter()
        .map(|w| w.ledger.lock().unwrap().acks)
        .collect();
    let writers = &run.writers;
    let total = &run.total;
    fjord_tests::eventually(
        Duration::from_secs(25),
        "every writer to make progress after the last restart",
        || async {
            let moved = writers
                .iter()
                .zip(&marks)
                .all(|(w, m)| w.ledger.lock().unwrap().acks >= m + 3);
            (moved && total.load(Ordering::Relaxed) >= min_total).then_some(())
        },
    )
    .await
    .unwrap();
}

/// Stops the writers, crashes once more, and checks every acknowledged write and session.
async fn stop_and_verify(mut run: Run) -> Process {
    run.stop.store(true, Ordering::Relaxed);
    let mut ledgers = Vec::new();
    for w in run.writers {
        tokio::time::timeout(Duration::from_secs(20), w.task)
            .await
            .expect("a writer stops")
            .expect("a writer ran");
        ledgers.push(
            Arc::try_unwrap(w.ledger)
                .expect("the writer is done")
                .into_inner()
                .unwrap(),
        );
    }
    let total: u64 = ledgers.iter().map(|l| l.acks).sum();
    eprintln!("{total} acknowledged writes");

    // The last writes were acknowledged after the last crash; crash once more so that they
    // too are checked after a recovery.
    tokio::task::block_in_place(|| run.p.restart()).unwrap();

    let check = client(&run.p).await;
    for (i, l) in ledgers.iter().enumerate() {
        for (path, data) in &l.created {
            let got = check.get_data(path).await;
            match got {
                Ok((d, _)) => assert_eq!(&d, data, "{path}: acknowledged data changed"),
                Err(e) => panic!("writer {i}: acknowledged create of {path} lost: {e}"),
            }
        }
        let (data, stat) = check
            .get_data(&format!("{}/counter", base(i)))
            .await
            .unwrap();
        let seq: u64 = String::from_utf8(data).unwrap().parse().unwrap();
        if let Some((version, acked)) = l.counter {
            assert!(
                stat.version >= version,
                "writer {i}: counter version {} < acknowledged {version}",
                stat.version
            );
            assert!(
                seq >= acked,
                "writer {i}: counter {seq} older than the acknowledged {acked}"
            );
            if stat.version == version {
                assert_eq!(seq, acked, "writer {i}: same version, different data");
            }
        }
        // Nothing appeared that no writer attempted (names are the writer's own sequence).
        for child in check.list_children(&base(i)).await.unwrap() {
            assert!(
                child == "counter" || child.starts_with('n') || child.starts_with('m'),
                "stray node {child}"
            );
        }
    }

    // The library session resumed with its id and still owns its ephemeral.
    let holder_id = run.holder.session_id();
    let stat = fjord_tests::eventually(
        Duration::from_secs(20),
        "the holder to reconnect",
        || async { run.holder.check_stat("/crash/holder").await.ok() },
    )
    .await
    .unwrap()
    .expect("the holder's ephemeral survived every crash");
    assert_eq!(run.holder.session_id(), holder_id);
    assert_eq!(stat.ephemeral_owner, holder_id.0);
    run.holder
        .set_data("/crash/holder", b"alive", None)
        .await
        .unwrap();
    for c in &run.writer_clients {
        assert_eq!(
            c.state(),
            zk::SessionState::SyncConnected,
            "a writer's session did not survive"
        );
    }

    // The raw session, idle through all of it, resumes with its id and password.
    let (id, passwd) = (run.raw_holder.session_id(), run.raw_holder.passwd());
    let mut raw = RawConn::resume(run.p.addr(), id, passwd, 30_000)
        .await
        .unwrap();
    assert_eq!(
        raw.session_id(),
        id,
        "the raw session was not resumed: {:?}",
        raw.session
    );
    let r = raw
        .call_record(
            op::EXISTS,
            &PathWatchRequest {
                path: "/crash/raw-holder".into(),
                watch: false,
            },
        )
        .await
        .unwrap();
    let stat = r
        .ok()
        .expect("the raw holder's ephemeral survived")
        .decode::<StatResponse>()
        .unwrap()
        .stat;
    assert_eq!(stat.ephemeral_owner, id);
    raw.close_session().await.unwrap();
    assert_eq!(
        check.check_stat("/crash/raw-holder").await.unwrap(),
        None,
        "closeSession removes the ephemeral"
    );
    run.p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill9() {
    let started = Instant::now();
    let mut rng = Rng::from_env(0x5EED_0001);
    let mut run = setup(&["--max-session-ms", "60000"]).await;
    crash_rounds(&mut run, &mut rng, 6, 0).await;
    stop_and_verify(run).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill9_with_snapshots() {
    let started = Instant::now();
    let mut rng = Rng::from_env(0x5EED_0002);
    let mut run = setup(&["--max-session-ms", "60000", "--snapshot-txns", "50"]).await;
    crash_rounds(&mut run, &mut rng, 5, 400).await;
    let p = stop_and_verify(run).await;

    let names: Vec<String> = std::fs::read_dir(p.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("snapshot.")),
        "no snapshot in {names:?}"
    );
    // The log behind the snapshots was purged: the first log file is gone, so the last
    // recovery started from a snapshot.
    assert!(
        !names.iter().any(|n| n == "log.0000000000000001"),
        "the first log file is still there after many snapshots: {names:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
