//! Watches against the real `fjord-coordinator` binary: one-shot getData/exists/getChildren
//! watches (fire once), an exists watch on a missing node, and persistent and
//! persistent-recursive watches from addWatch (fire repeatedly; recursive sees descendants
//! but never NodeChildrenChanged).
//!
//! Each kind is checked twice: through the `zookeeper-client` crate (what applications see)
//! and on a raw connection, where every notification the server sends is counted, since a
//! client library silently drops notifications it has no watcher for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use fjord_shared::jute::{event, op, AddWatchRequest, PathWatchRequest};
use fjord_tests::zk::{create_body, delete_body, set_data_body, RawConn};
use std::time::Duration;
use zookeeper_client as zk;

const T: Duration = Duration::from_secs(10);

async fn set(c: &mut RawConn, path: &str, data: &[u8]) {
    c.call(op::SET_DATA, &set_data_body(path, data, -1))
        .await
        .unwrap()
        .ok()
        .unwrap();
}

async fn create(c: &mut RawConn, path: &str) {
    c.call(op::CREATE, &create_body(path, b"", 0))
        .await
        .unwrap()
        .ok()
        .unwrap();
}

async fn delete(c: &mut RawConn, path: &str) {
    c.call(op::DELETE, &delete_body(path, -1))
        .await
        .unwrap()
        .ok()
        .unwrap();
}

/// Reads exactly `n` events, then checks (after a ping round trip, which follows every
/// notification already sent) that no more arrived.
async fn events_exactly(c: &mut RawConn, n: usize) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let e = c
            .next_event(T)
            .await
            .unwrap_or_else(|e| panic!("after {out:?}: {e:#}"));
        out.push((e.event_type, e.path));
    }
    c.ping().await.unwrap();
    let extra: Vec<_> = c.events.drain(..).map(|e| (e.event_type, e.path)).collect();
    assert!(extra.is_empty(), "events beyond {out:?}: {extra:?}");
    out
}

fn evs(v: &[(i32, &str)]) -> Vec<(i32, String)> {
    v.iter().map(|(t, p)| (*t, (*p).to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_watches_through_the_client() {
    let p = coordinator(&[]);
    let c = client(&p).await;
    let other = client(&p).await;
    mk(&c, "/o", b"").await;
    mk(&c, "/o/data", b"a").await;
    mk(&c, "/o/stat", b"").await;
    mk(&c, "/o/kids", b"").await;

    let (data, stat, data_w) = c.get_and_watch_data("/o/data").await.unwrap();
    assert_eq!((data.as_slice(), stat.version), (b"a".as_slice(), 0));
    let (stat, stat_w) = c.check_and_watch_stat("/o/stat").await.unwrap();
    assert!(stat.is_some());
    let (kids, _, kids_w) = c.get_and_watch_children("/o/kids").await.unwrap();
    assert!(kids.is_empty());
    let (missing, missing_w) = c.check_and_watch_stat("/o/missing").await.unwrap();
    assert!(
        missing.is_none(),
        "exists on a missing node returns no stat"
    );

    other.set_data("/o/data", b"b", None).await.unwrap();
    other.set_data("/o/stat", b"x", None).await.unwrap();
    other
        .create("/o/kids/k", b"", &opts(zk::CreateMode::Persistent))
        .await
        .unwrap();
    other
        .create("/o/missing", b"", &opts(zk::CreateMode::Persistent))
        .await
        .unwrap();

    assert_eq!(
        ev(&oneshot_event(data_w, T).await.unwrap()),
        (zk::EventType::NodeDataChanged, "/o/data")
    );
    assert_eq!(
        ev(&oneshot_event(stat_w, T).await.unwrap()),
        (zk::EventType::NodeDataChanged, "/o/stat")
    );
    assert_eq!(
        ev(&oneshot_event(kids_w, T).await.unwrap()),
        (zk::EventType::NodeChildrenChanged, "/o/kids")
    );
    assert_eq!(
        ev(&oneshot_event(missing_w, T).await.unwrap()),
        (zk::EventType::NodeCreated, "/o/missing")
    );

    // Deletion fires data, exists and child watches with NodeDeleted.
    let (_, _, data_w) = c.get_and_watch_data("/o/data").await.unwrap();
    let (_, stat_w) = c.check_and_watch_stat("/o/stat").await.unwrap();
    let (_, _, kids_w) = c.get_and_watch_children("/o/kids/k").await.unwrap();
    other.delete("/o/data", None).await.unwrap();
    other.delete("/o/stat", None).await.unwrap();
    other.delete("/o/kids/k", None).await.unwrap();
    assert_eq!(
        ev(&oneshot_event(data_w, T).await.unwrap()),
        (zk::EventType::NodeDeleted, "/o/data")
    );
    assert_eq!(
        ev(&oneshot_event(stat_w, T).await.unwrap()),
        (zk::EventType::NodeDeleted, "/o/stat")
    );
    assert_eq!(
        ev(&oneshot_event(kids_w, T).await.unwrap()),
        (zk::EventType::NodeDeleted, "/o/kids/k")
    );
}

/// One-shot watches fire exactly once, however many changes follow; the exists watch on a
/// missing node (which answers NoNode) fires NodeCreated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_watches_fire_exactly_once_on_the_wire() {
    let p = coordinator(&[]);
    let mut w = RawConn::connect(p.addr(), 10_000).await.unwrap();
    let mut c = RawConn::connect(p.addr(), 10_000).await.unwrap();
    for path in ["/x", "/x/data", "/x/stat", "/x/kids"] {
        create(&mut c, path).await;
    }

    let watch = |path: &str| PathWatchRequest {
        path: path.into(),
        watch: true,
    };
    assert_eq!(
        w.call_record(op::GET_DATA, &watch("/x/data"))
            .await
            .unwrap()
            .err(),
        0
    );
    assert_eq!(
        w.call_record(op::EXISTS, &watch("/x/stat"))
            .await
            .unwrap()
            .err(),
        0
    );
    assert_eq!(
        w.call_record(op::GET_CHILDREN, &watch("/x/kids"))
            .await
            .unwrap()
            .err(),
        0
    );
    let r = w
        .call_record(op::EXISTS, &watch("/x/missing"))
        .await
        .unwrap();
    assert_eq!(
        r.err(),
        -101,
        "exists on a missing node answers NoNode (and still sets the watch)"
    );
    assert_eq!(
        w.call_record(op::GET_CHILDREN2, &watch("/x"))
            .await
            .unwrap()
            .err(),
        0
    );

    for _ in 0..2 {
        set(&mut c, "/x/data", b"d").await;
        set(&mut c, "/x/stat", b"s").await;
    }
    create(&mut c, "/x/kids/a").await;
    create(&mut c, "/x/kids/b").await;
    create(&mut c, "/x/missing").await;
    set(&mut c, "/x/missing", b"m").await;
    delete(&mut c, "/x/missing").await;

    let got = events_exactly(&mut w, 5).await;
    assert_eq!(
        got,
        evs(&[
            (event::NODE_DATA_CHANGED, "/x/data"),
            (event::NODE_DATA_CHANGED, "/x/stat"),
            (event::NODE_CHILDREN_CHANGED, "/x/kids"),
            (event::NODE_CREATED, "/x/missing"),
            // The getChildren2 watch on /x, from creating /x/missing.
            (event::NODE_CHILDREN_CHANGED, "/x"),
        ])
    );

    // A watch caused by a write on the same connection arrives before that write's reply.
    assert_eq!(
        w.call_record(op::GET_DATA, &watch("/x/data"))
            .await
            .unwrap()
            .err(),
        0
    );
    set(&mut w, "/x/data", b"own").await;
    let queued: Vec<_> = w.events.drain(..).map(|e| (e.event_type, e.path)).collect();
    assert_eq!(
        queued,
        evs(&[(event::NODE_DATA_CHANGED, "/x/data")]),
        "the notification must precede the reply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_watch_fires_repeatedly() {
    let p = coordinator(&[]);
    let c = client(&p).await;
    let other = client(&p).await;
    mk(&c, "/p", b"").await;
    let mut w = c.watch("/p", zk::AddWatchMode::Persistent).await.unwrap();

    for i in 0..3u8 {
        other.set_data("/p", &[i], None).await.unwrap();
    }
    other
        .create("/p/child", b"", &opts(zk::CreateMode::Persistent))
        .await
        .unwrap();
    other
        .create(
            "/p/child/grandchild",
            b"",
            &opts(zk::CreateMode::Persistent),
        )
        .await
        .unwrap();
    other.delete("/p/child/grandchild", None).await.unwrap();
    other.delete("/p/child", None).await.unwrap();
    other.delete("/p", None).await.unwrap();
    other
        .create("/p", b"", &opts(zk::CreateMode::Persistent))
        .await
        .unwrap();

    let mut got = Vec::new();
    for _ in 0..7 {
        let e = node_event(&mut w, T)
            .await
            .unwrap_or_else(|e| panic!("after {got:?}: {e:#}"));
        got.push((e.event_type, e.path));
    }
    use zk::EventType::*;
    let want: Vec<_> = [
        (NodeDataChanged, "/p"),
        (NodeDataChanged, "/p"),
        (NodeDataChanged, "/p"),
        // Children only: the grandchild's create and delete are not reported.
        (NodeChildrenChanged, "/p"),
        (NodeChildrenChanged, "/p"),
        (NodeDeleted, "/p"),
        // Persistent watches outlive the node.
        (NodeCreated, "/p"),
    ]
    .iter()
    .map(|(t, p)| (*t, (*p).to_owned()))
    .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursive_watch_sees_descendants_without_child_events() {
    let p = coordinator(&[]);
    let c = client(&p).await;
    let other = client(&p).await;
    mk(&c, "/r", b"").await;
    mk(&c, "/elsewhere", b"").await;
    let mut w = c
        .watch("/r", zk::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();

    other
        .create("/r/a", b"", &opts(zk::CreateMode::Persistent))
        .await
        .unwrap();
    other
        .create("/r/a/b", b"", &opts(zk::CreateMode::Persistent))
        .await
        .unwrap();
    other.set_data("/r/a/b", b"1", None).await.unwrap();
    other.set_data("/r/a/b", b"2", None).await.unwrap();
    other
        .set_data("/elsewhere", b"not watched", None)
        .await
        .unwrap();
    other.delete("/r/a/b", None).await.unwrap();
    other.set_data("/r", b"root", None).await.unwrap();

    let mut got = Vec::new();
    for _ in 0..6 {
        let e = node_event(&mut w, T)
            .await
            .unwrap_or_else(|e| panic!("after {got:?}: {e:#}"));
        got.push((e.event_type, e.path));
    }
    use zk::EventType::*;
    let want: Vec<_> = [
        (NodeCreated, "/r/a"),
        (NodeCreated, "/r/a/b"),
        (NodeDataChanged, "/r/a/b"),
        (NodeDataChanged, "/r/a/b"),
        (NodeDeleted, "/r/a/b"),
        (NodeDataChanged, "/r"),
    ]
    .iter()
    .map(|(t, p)| (*t, (*p).to_owned()))
    .collect();
    assert_eq!(got, want);
}

/// On the wire: a persistent watch gets NodeChildrenChanged for its own children only; a
/// recursive one gets every descendant's events and no NodeChildrenChanged at all; both keep
/// firing and are not consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_and_recursive_watches_on_the_wire() {
    let p = coordinator(&[]);
    let mut pers = RawConn::connect(p.addr(), 10_000).await.unwrap();
    let mut rec = RawConn::connect(p.addr(), 10_000).await.unwrap();
    let mut c = RawConn::connect(p.addr(), 10_000).await.unwrap();
    create(&mut c, "/t").await;
    let add = |mode| AddWatchRequest {
        path: "/t".into(),
        mode,
    };
    assert_eq!(
        pers.call_record(op::ADD_WATCH, &add(0))
            .await
            .unwrap()
            .err(),
        0
    );
    assert_eq!(
        rec.call_record(op::ADD_WATCH, &add(1)).await.unwrap().err(),
        0
    );

    create(&mut c, "/t/a").await;
    create(&mut c, "/t/a/b").await;
    set(&mut c, "/t/a/b", b"1").await;
    set(&mut c, "/t", b"1").await;
    set(&mut c, "/t", b"2").await;
    delete(&mut c, "/t/a/b").await;
    delete(&mut c, "/t/a").await;

    let got = events_exactly(&mut pers, 4).await;
    assert_eq!(
        got,
        evs(&[
            (event::NODE_CHILDREN_CHANGED, "/t"),
            (event::NODE_DATA_CHANGED, "/t"),
            (event::NODE_DATA_CHANGED, "/t"),
            (event::NODE_CHILDREN_CHANGED, "/t"),
        ])
    );
    let got = events_exactly(&mut rec, 7).await;
    assert_eq!(
        got,
        evs(&[
            (event::NODE_CREATED, "/t/a"),
            (event::NODE_CREATED, "/t/a/b"),
            (event::NODE_DATA_CHANGED, "/t/a/b"),
            (event::NODE_DATA_CHANGED, "/t"),
            (event::NODE_DATA_CHANGED, "/t"),
            (event::NODE_DELETED, "/t/a/b"),
            (event::NODE_DELETED, "/t/a"),
        ])
    );
}
