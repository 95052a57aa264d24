//! Sessions against the real `fjord-coordinator` binary: expiry of abandoned sessions and
//! their ephemeral nodes, resumption after a `kill -9` and restart on the same data dir and
//! port (with watches re-registered), SIGSTOP/SIGCONT, and a clean SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use fjord_shared::jute::{event, op, xid, PathWatchRequest, Record, SetWatches2, StatResponse};
use fjord_tests::zk::{create_body, delete_body, set_data_body, RawConn};
use std::time::{Duration, Instant};
use zookeeper_client as zk;

/// A client that stops heartbeating (its connection is dropped without closeSession) loses
/// its ephemeral node when the session times out, and watchers see NodeDeleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_node_vanishes_when_abandoned_session_expires() {
    let p = coordinator(&["--tick-ms", "100", "--max-session-ms", "30000"]);
    let observer = client(&p).await;
    mk(&observer, "/svc", b"").await;

    // A detached session is not closed when its last handle is dropped: the connection just
    // goes away, exactly like a crashed client.
    let owner = connect(
        zk::Client::connector()
            .with_session_timeout(Duration::from_millis(2000))
            .with_detached(),
        &p,
    )
    .await
    .unwrap();
    let timeout = owner.session_timeout();
    assert!(
        timeout <= Duration::from_millis(2000),
        "negotiated {timeout:?}"
    );
    let (stat, _) = owner
        .create("/svc/eph", b"me", &opts(zk::CreateMode::Ephemeral))
        .await
        .unwrap();
    assert_eq!(
        stat.ephemeral_owner,
        owner.session_id().0,
        "ephemeralOwner is the creating session"
    );

    let (stat, exists) = observer.check_and_watch_stat("/svc/eph").await.unwrap();
    assert_eq!(
        stat.expect("the ephemeral exists").ephemeral_owner,
        owner.session_id().0
    );
    let (children, _, child_watch) = observer.get_and_watch_children("/svc").await.unwrap();
    assert_eq!(children, vec!["eph".to_owned()]);

    let dropped = Instant::now();
    drop(owner);
    // Not deleted on disconnect: only on expiry (at the earliest a timeout after the owner's
    // last ping, which was at most a few hundred milliseconds before the drop).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        observer.check_stat("/svc/eph").await.unwrap().is_some(),
        "deleted on disconnect, before the session timed out"
    );

    let limit = timeout * 2 + Duration::from_secs(5);
    let e = oneshot_event(exists, limit).await.unwrap();
    assert_eq!(ev(&e), (zk::EventType::NodeDeleted, "/svc/eph"));
    let gone_after = dropped.elapsed();
    assert!(
        gone_after >= timeout / 2,
        "expired after {gone_after:?}, session timeout {timeout:?}"
    );
    let e = oneshot_event(child_watch, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ev(&e), (zk::EventType::NodeChildrenChanged, "/svc"));
    assert_eq!(observer.check_stat("/svc/eph").await.unwrap(), None);
    assert!(observer.list_children("/svc").await.unwrap().is_empty());
}

/// A raw session that keeps its TCP connection open but sends nothing expires too: its
/// ephemeral goes, the server closes the connection, and reconnecting with its id and
/// password gets ZooKeeper's "expired" answer (timeout 0, session 0, zero password).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_session_expires_and_cannot_be_resumed() {
    let p = coordinator(&["--tick-ms", "100", "--max-session-ms", "30000"]);
    let addr = p.addr();
    let mut watcher = RawConn::connect(addr, 10_000).await.unwrap();

    let mut silent = RawConn::connect(addr, 600).await.unwrap();
    let granted = silent.session.as_ref().unwrap().timeout;
    assert!(
        (200..=600).contains(&granted),
        "granted {granted} ms for 600 requested with a 100 ms tick"
    );
    silent
        .call(op::CREATE, &create_body("/quiet", b"x", 1))
        .await
        .unwrap()
        .ok()
        .unwrap();

    let r = watcher
        .call_record(
            op::EXISTS,
            &PathWatchRequest {
                path: "/quiet".into(),
                watch: true,
            },
        )
        .await
        .unwrap();
    let stat = r.ok().unwrap().decode::<StatResponse>().unwrap().stat;
    assert_eq!(stat.ephemeral_owner, silent.session_id());

    let started = Instant::now();
    let limit = Duration::from_millis(granted as u64 * 2) + Duration::from_secs(5);
    let e = watcher.next_event(limit).await.unwrap();
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (event::NODE_DELETED, "/quiet")
    );
    assert!(
        started.elapsed() >= Duration::from_millis(granted as u64 / 2),
        "expired after {:?}",
        started.elapsed()
    );

    // The expired session's connection is closed by the server (as ZooKeeper does).
    silent.expect_closed(Duration::from_secs(5)).await.unwrap();

    let mut again = RawConn::resume(addr, silent.session_id(), silent.passwd(), 600)
        .await
        .unwrap();
    let resp = again.session.clone().unwrap();
    assert_eq!(
        (resp.timeout, resp.session_id),
        (0, 0),
        "an expired session must not be resumed: {resp:?}"
    );
    assert_eq!(
        resp.passwd.as_ref(),
        &[0u8; 16],
        "expired answer carries 16 zero bytes"
    );
    again.expect_closed(Duration::from_secs(5)).await.unwrap();

    // A wrong password for a live session is refused the same way.
    let mut wrong = RawConn::resume(
        addr,
        watcher.session_id(),
        Bytes::from_static(&[7; 16]),
        10_000,
    )
    .await
    .unwrap();
    assert_eq!(
        wrong.session.as_ref().unwrap().session_id,
        0,
        "a wrong password must not resume a session"
    );
    wrong.expect_closed(Duration::from_secs(5)).await.unwrap();
    watcher.ping().await.unwrap();
}

/// `kill -9` and a restart on the same data dir and port: the client's session resumes
/// with the same id, its ephemeral node is still there, and its one-shot watches
/// (re-registered with setWatches on reconnect) fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_session_resumes_after_kill9_and_restart() {
    let mut p = coordinator(&[]);
    let c = client(&p).await;
    let id = c.session_id();
    mk(&c, "/app", b"v0").await;
    c.create("/app/lease", b"mine", &opts(zk::CreateMode::Ephemeral))
        .await
        .unwrap();

    let (_, _, data_watch) = c.get_and_watch_data("/app").await.unwrap();
    let (_, child_watch) = c.list_and_watch_children("/app").await.unwrap();
    let (none, created_watch) = c.check_and_watch_stat("/app/later").await.unwrap();
    assert!(none.is_none());

    tokio::task::block_in_place(|| p.restart()).unwrap();

    // The client reconnects on its own, with its old session.
    let stat = fjord_tests::eventually(
        Duration::from_secs(20),
        "the client to reconnect",
        || async { c.check_stat("/app/lease").await.ok() },
    )
    .await
    .unwrap();
    assert_eq!(c.session_id(), id, "the session id changed");
    let stat = stat.expect("the ephemeral node survived the restart");
    assert_eq!(
        stat.ephemeral_owner, id.0,
        "the ephemeral is still owned by the session"
    );
    assert_eq!(c.state(), zk::SessionState::SyncConnected);

    // Another session changes what the first one watches: every watch fires.
    let other = client(&p).await;
    other.set_data("/app", b"v1", None).await.unwrap();
    other
        .create("/app/later", b"", &opts(zk::CreateMode::Persistent))
        .await
        .unwrap();
    let t = Duration::from_secs(10);
    assert_eq!(
        ev(&oneshot_event(data_watch, t).await.unwrap()),
        (zk::EventType::NodeDataChanged, "/app")
    );
    assert_eq!(
        ev(&oneshot_event(child_watch, t).await.unwrap()),
        (zk::EventType::NodeChildrenChanged, "/app")
    );
    assert_eq!(
        ev(&oneshot_event(created_watch, t).await.unwrap()),
        (zk::EventType::NodeCreated, "/app/later")
    );

    // The resumed session still works, and its ephemeral goes with a clean close.
    c.set_data("/app/lease", b"still mine", None).await.unwrap();
    drop(c);
    fjord_tests::eventually(
        Duration::from_secs(10),
        "the ephemeral to go on close",
        || async { matches!(other.check_stat("/app/lease").await, Ok(None)).then_some(()) },
    )
    .await
    .unwrap();
}

/// The same at the wire level, for what the `zookeeper-client` crate does not re-register
/// (0.11 drops persistent watches on reconnect): after `kill -9` + restart, a raw session
/// resumes with its id and password and re-registers one-shot, persistent and recursive
/// watches with setWatches2. Watches on nodes that changed while it was away fire at once
/// (relative zxid); the others fire on the next change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_session_resumes_and_set_watches2_reregisters_every_kind() {
    let mut p = coordinator(&[]);
    let addr = p.addr();
    let mut s = RawConn::connect(addr, 10_000).await.unwrap();
    for path in ["/w", "/w/data", "/w/gone", "/w/tree", "/w/node"] {
        s.call(op::CREATE, &create_body(path, b"", 0))
            .await
            .unwrap()
            .ok()
            .unwrap();
    }
    let last = s
        .call(op::CREATE, &create_body("/w/eph", b"", 1))
        .await
        .unwrap()
        .ok()
        .unwrap();
    let last_zxid = last.header.zxid;
    let (id, passwd) = (s.session_id(), s.passwd());

    tokio::task::block_in_place(|| p.restart()).unwrap();
    assert_eq!(p.addr(), addr);

    // While the session is away, another session changes /w/data and deletes /w/gone.
    let mut other = RawConn::connect(addr, 10_000).await.unwrap();
    other
        .call(op::SET_DATA, &set_data_body("/w/data", b"new", -1))
        .await
        .unwrap()
        .ok()
        .unwrap();
    other
        .call(op::DELETE, &delete_body("/w/gone", -1))
        .await
        .unwrap()
        .ok()
        .unwrap();

    let mut s = RawConn::resume(addr, id, passwd, 10_000).await.unwrap();
    assert_eq!(
        s.session_id(),
        id,
        "the session was not resumed: {:?}",
        s.session
    );
    assert!(s.session.as_ref().unwrap().timeout > 0);

    let watches = SetWatches2 {
        relative_zxid: last_zxid,
        data_watches: vec!["/w/data".into(), "/w/gone".into()],
        exist_watches: vec!["/w/missing".into()],
        child_watches: vec!["/w".into()],
        persistent_watches: vec!["/w/node".into()],
        persistent_recursive_watches: vec!["/w/tree".into()],
    };
    s.send_request(xid::SET_WATCHES, op::SET_WATCHES2, &watches.to_bytes())
        .await
        .unwrap();
    let r = s
        .read_reply(xid::SET_WATCHES, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.err(), 0, "setWatches2 failed");

    // Changes made while away fire at once (order within the batch is not specified).
    let mut caught_up = Vec::new();
    for _ in 0..3 {
        let e = s.next_event(Duration::from_secs(5)).await.unwrap();
        caught_up.push((e.event_type, e.path));
    }
    caught_up.sort();
    let mut want = vec![
        (event::NODE_DELETED, "/w/gone".to_owned()),
        (event::NODE_DATA_CHANGED, "/w/data".to_owned()),
        // /w lost a child while the session was away.
        (event::NODE_CHILDREN_CHANGED, "/w".to_owned()),
    ];
    want.sort();
    assert_eq!(caught_up, want);

    // The ephemeral survived, still owned by the session.
    let r = s
        .call_record(
            op::EXISTS,
            &PathWatchRequest {
                path: "/w/eph".into(),
                watch: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        r.ok()
            .unwrap()
            .decode::<StatResponse>()
            .unwrap()
            .stat
            .ephemeral_owner,
        id
    );

    // The rest fire on the next change; persistent ones keep firing.
    other
        .call(op::CREATE, &create_body("/w/missing", b"", 0))
        .await
        .unwrap()
        .ok()
        .unwrap();
    other
        .call(op::CREATE, &create_body("/w/tree/a", b"", 0))
        .await
        .unwrap()
        .ok()
        .unwrap();
    for i in 0..2u8 {
        other
            .call(op::SET_DATA, &set_data_body("/w/node", &[i], -1))
            .await
            .unwrap()
            .ok()
            .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        let e = s.next_event(Duration::from_secs(5)).await.unwrap();
        got.push((e.event_type, e.path));
    }
    assert_eq!(
        got,
        vec![
            (event::NODE_CREATED, "/w/missing".to_owned()),
            (event::NODE_CREATED, "/w/tree/a".to_owned()),
            (event::NODE_DATA_CHANGED, "/w/node".to_owned()),
            (event::NODE_DATA_CHANGED, "/w/node".to_owned()),
        ]
    );
    s.ping().await.unwrap();
    assert!(s.events.is_empty(), "unexpected events: {:?}", s.events);
}

/// SIGSTOP for less than the session timeout, then SIGCONT: the client carries on with the
/// same session, and a request sent while the server was frozen is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_coordinator_carries_on_after_sigcont() {
    let mut p = coordinator(&[]);
    let c = client(&p).await;
    let id = c.session_id();
    c.create("/paused", b"", &opts(zk::CreateMode::Ephemeral))
        .await
        .unwrap();

    p.pause().unwrap();
    let pending = {
        let c = c.clone();
        tokio::spawn(async move { c.set_data("/paused", b"during", None).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!pending.is_finished(), "a frozen server answered");
    p.resume().unwrap();

    let stat = tokio::time::timeout(Duration::from_secs(15), pending)
        .await
        .unwrap()
        .unwrap();
    // The request may have been lost with the connection (the client then reports it);
    // either way the session itself must live on.
    if let Err(e) = &stat {
        assert_eq!(*e, zk::Error::ConnectionLoss, "unexpected error: {e}");
    }
    let stat = fjord_tests::eventually(
        Duration::from_secs(15),
        "the client to work again",
        || async { c.check_stat("/paused").await.ok() },
    )
    .await
    .unwrap()
    .expect("the ephemeral survived a short pause");
    assert_eq!(c.session_id(), id);
    assert_eq!(stat.ephemeral_owner, id.0);
}

/// SIGTERM: the coordinator exits 0 in time, and on restart the sessions it had are still
/// there (sessions are durable), so a client with the old session id resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_and_sessions_survive_a_clean_restart() {
    let mut p = coordinator(&[]);
    let c = client(&p).await;
    let id = c.session_id();
    mk(&c, "/kept", b"data").await;
    c.create("/kept/eph", b"", &opts(zk::CreateMode::Ephemeral))
        .await
        .unwrap();

    let status = tokio::task::block_in_place(|| p.terminate(Duration::from_secs(15))).unwrap();
    assert!(status.success(), "SIGTERM exit status {status}");
    assert!(!p.is_running());

    tokio::task::block_in_place(|| p.restart()).unwrap();
    let stat = fjord_tests::eventually(
        Duration::from_secs(20),
        "the client to reconnect",
        || async { c.check_stat("/kept/eph").await.ok() },
    )
    .await
    .unwrap()
    .expect("the ephemeral survived a clean restart");
    assert_eq!(c.session_id(), id);
    assert_eq!(stat.ephemeral_owner, id.0);
    assert_eq!(c.get_data("/kept").await.unwrap().0, b"data");
}

/// Sessions restored by recovery still expire: a session abandoned just before a `kill -9`
/// loses its ephemeral once its timeout passes after the restart, and a session closed
/// before the crash stays closed (its ephemeral does not come back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_sessions_still_expire_and_closed_ones_stay_closed() {
    let mut p = coordinator(&["--tick-ms", "100", "--max-session-ms", "30000"]);
    let addr = p.addr();
    let mut abandoned = RawConn::connect(addr, 1000).await.unwrap();
    abandoned
        .call(op::CREATE, &create_body("/abandoned", b"", 1))
        .await
        .unwrap()
        .ok()
        .unwrap();
    let mut closed = RawConn::connect(addr, 10_000).await.unwrap();
    closed
        .call(op::CREATE, &create_body("/closed", b"", 1))
        .await
        .unwrap()
        .ok()
        .unwrap();
    closed.close_session().await.unwrap();

    tokio::task::block_in_place(|| p.restart()).unwrap();
    let restarted = Instant::now();
    let observer = client(&p).await;
    assert_eq!(
        observer.check_stat("/closed").await.unwrap(),
        None,
        "a closed session's ephemeral came back after a restart"
    );
    let (stat, gone) = observer.check_and_watch_stat("/abandoned").await.unwrap();
    if let Some(stat) = stat {
        assert_eq!(stat.ephemeral_owner, abandoned.session_id());
        let e = oneshot_event(gone, Duration::from_secs(10)).await.unwrap();
        assert_eq!(ev(&e), (zk::EventType::NodeDeleted, "/abandoned"));
    }
    assert!(
        restarted.elapsed() < Duration::from_secs(10),
        "the restored session took {:?} to expire",
        restarted.elapsed()
    );

    // The expiry is durable too: after another crash the ephemeral stays gone, and the
    // expired session cannot be resumed.
    tokio::task::block_in_place(|| p.restart()).unwrap();
    let observer = client(&p).await;
    assert_eq!(observer.check_stat("/abandoned").await.unwrap(), None);
    let mut again = RawConn::resume(addr, abandoned.session_id(), abandoned.passwd(), 1000)
        .await
        .unwrap();
    assert_eq!(again.session.as_ref().unwrap().session_id, 0);
    again.expect_closed(Duration::from_secs(5)).await.unwrap();
}
