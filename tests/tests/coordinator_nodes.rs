//! Znodes against the real `fjord-coordinator` binary: sequential names, version conflicts,
//! and `multi` (all or nothing, with ZooKeeper's per-op result codes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::BytesMut;
use common::*;
use fjord_shared::jute::{op, CheckVersionRequest, Record};
use fjord_tests::zk::{
    create_body, delete_body, multi_body, parse_multi, path_watch_body, set_data_body, MultiResult,
    RawConn,
};
use zookeeper_client as zk;

/// Sequential names end in the parent's create counter as `%010d`; the counter increases
/// with every sequential or plain create under the parent and deletes do not reset it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_names_have_ten_digit_increasing_suffixes() {
    let p = coordinator(&[]);
    let c = client(&p).await;
    mk(&c, "/q", b"").await;

    let seq = opts(zk::CreateMode::PersistentSequential);
    let mut names = Vec::new();
    for _ in 0..3 {
        let (stat, n) = c.create("/q/item-", b"x", &seq).await.unwrap();
        assert_eq!(stat.ephemeral_owner, 0);
        names.push(format!("item-{n}"));
    }
    assert_eq!(
        names,
        ["item-0000000000", "item-0000000001", "item-0000000002"]
    );
    let mut listed = c.list_children("/q").await.unwrap();
    listed.sort();
    assert_eq!(listed, names);

    for n in &names {
        c.delete(&format!("/q/{n}"), None).await.unwrap();
    }
    // Deletes do not reset the counter; ephemeral-sequential and other prefixes share it,
    // and a plain create counts too.
    let (_, n) = c.create("/q/item-", b"", &seq).await.unwrap();
    assert_eq!(n.to_string(), "0000000003");
    let (stat, n) = c
        .create("/q/lock-", b"", &opts(zk::CreateMode::EphemeralSequential))
        .await
        .unwrap();
    assert_eq!(n.to_string(), "0000000004");
    assert_eq!(stat.ephemeral_owner, c.session_id().0);
    mk(&c, "/q/plain", b"").await;
    let (_, n) = c.create("/q/item-", b"", &seq).await.unwrap();
    assert_eq!(n.to_string(), "0000000006");
    assert!(c.check_stat("/q/item-0000000006").await.unwrap().is_some());

    // Stat of the parent: cversion counts child creates and deletes.
    let (_, stat) = c.get_children("/q").await.unwrap();
    assert_eq!((stat.num_children, stat.cversion), (4, 7 + 3));

    // Counters are per parent.
    mk(&c, "/q2", b"").await;
    let (_, n) = c.create("/q2/item-", b"", &seq).await.unwrap();
    assert_eq!(n.to_string(), "0000000000");

    // The counter survives a restart.
    let mut p = p;
    drop(c);
    tokio::task::block_in_place(|| p.restart()).unwrap();
    let c = client(&p).await;
    let (_, n) = c.create("/q/item-", b"", &seq).await.unwrap();
    assert_eq!(n.to_string(), "0000000007");
}

/// setData, delete and check with a wrong expected version fail with BadVersion and
/// change nothing; the right version succeeds and bumps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_versions_are_rejected() {
    let p = coordinator(&[]);
    let c = client(&p).await;
    mk(&c, "/v", b"v0").await;

    assert_eq!(
        c.set_data("/v", b"nope", Some(1)).await.unwrap_err(),
        zk::Error::BadVersion
    );
    let stat = c.set_data("/v", b"v1", Some(0)).await.unwrap();
    assert_eq!((stat.version, stat.data_length), (1, 2));
    assert!(stat.mzxid > stat.czxid);
    assert_eq!(
        c.set_data("/v", b"nope", Some(0)).await.unwrap_err(),
        zk::Error::BadVersion
    );
    assert_eq!(
        c.delete("/v", Some(0)).await.unwrap_err(),
        zk::Error::BadVersion
    );
    assert_eq!(
        c.delete("/v", Some(7)).await.unwrap_err(),
        zk::Error::BadVersion
    );

    let (data, stat) = c.get_data("/v").await.unwrap();
    assert_eq!(
        (data.as_slice(), stat.version),
        (b"v1".as_slice(), 1),
        "a rejected write changed the node"
    );

    // Unconditional set (-1) ignores the version.
    assert_eq!(c.set_data("/v", b"v2", None).await.unwrap().version, 2);
    assert_eq!(
        c.delete("/v", Some(1)).await.unwrap_err(),
        zk::Error::BadVersion
    );
    c.delete("/v", Some(2)).await.unwrap();
    assert_eq!(c.check_stat("/v").await.unwrap(), None);

    // And the neighbours of BadVersion.
    assert_eq!(
        c.set_data("/v", b"", Some(0)).await.unwrap_err(),
        zk::Error::NoNode
    );
    assert_eq!(c.delete("/v", None).await.unwrap_err(), zk::Error::NoNode);
    mk(&c, "/v", b"").await;
    let dup = c
        .create("/v", b"", &opts(zk::CreateMode::Persistent))
        .await
        .unwrap_err();
    assert_eq!(dup, zk::Error::NodeExists);
    mk(&c, "/v/child", b"").await;
    assert_eq!(c.delete("/v", None).await.unwrap_err(), zk::Error::NotEmpty);
    let eph = c
        .create("/v/e", b"", &opts(zk::CreateMode::Ephemeral))
        .await
        .unwrap();
    assert!(eph.0.ephemeral_owner != 0);
    let under = c
        .create("/v/e/x", b"", &opts(zk::CreateMode::Persistent))
        .await
        .unwrap_err();
    assert_eq!(under, zk::Error::NoChildrenForEphemerals);
    let orphan = c
        .create("/nowhere/x", b"", &opts(zk::CreateMode::Persistent))
        .await
        .unwrap_err();
    assert_eq!(orphan, zk::Error::NoNode);

    // A version check inside a multi.
    let mut m = c.new_multi_writer();
    m.add_check_version("/v/child", 3).unwrap();
    m.add_set_data("/v/child", b"x", None).unwrap();
    let err = m.commit().await.unwrap_err();
    assert_eq!(
        err,
        zk::MultiWriteError::OperationFailed {
            index: 0,
            source: zk::Error::BadVersion
        }
    );
    assert_eq!(c.get_data("/v/child").await.unwrap().1.version, 0);
}

/// A successful multi applies every op in order (later ops see earlier ones) and returns one
/// result per op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_success_applies_everything() {
    let p = coordinator(&[]);
    let c = client(&p).await;
    mk(&c, "/m", b"").await;

    let mut m = c.new_multi_writer();
    m.add_create("/m/a", b"a0", &opts(zk::CreateMode::Persistent))
        .unwrap();
    m.add_create("/m/a/b", b"b0", &opts(zk::CreateMode::Persistent))
        .unwrap();
    m.add_set_data("/m/a", b"a1", Some(0)).unwrap();
    m.add_check_version("/m/a", 1).unwrap();
    m.add_create("/m/seq-", b"", &opts(zk::CreateMode::PersistentSequential))
        .unwrap();
    m.add_create("/m/eph", b"", &opts(zk::CreateMode::Ephemeral))
        .unwrap();
    m.add_delete("/m/a/b", Some(0)).unwrap();
    let results = m.commit().await.unwrap();
    assert_eq!(results.len(), 7);
    match &results[0] {
        zk::MultiWriteResult::Create { path, .. } => assert_eq!(path, "/m/a"),
        other => panic!("result 0: {other:?}"),
    }
    match &results[2] {
        zk::MultiWriteResult::SetData { stat } => assert_eq!(stat.version, 1),
        other => panic!("result 2: {other:?}"),
    }
    assert_eq!(results[3], zk::MultiWriteResult::Check);
    match &results[4] {
        zk::MultiWriteResult::Create { path, .. } => assert_eq!(path, "/m/seq-0000000001"),
        other => panic!("result 4: {other:?}"),
    }
    assert_eq!(results[6], zk::MultiWriteResult::Delete);

    let (data, stat) = c.get_data("/m/a").await.unwrap();
    assert_eq!(
        (data.as_slice(), stat.version, stat.num_children),
        (b"a1".as_slice(), 1, 0)
    );
    assert_eq!(
        c.check_stat("/m/eph")
            .await
            .unwrap()
            .unwrap()
            .ephemeral_owner,
        c.session_id().0
    );
    assert_eq!(c.check_stat("/m/a/b").await.unwrap(), None);
    // Every op of the multi got the same zxid.
    let (_, eph) = c.get_data("/m/eph").await.unwrap();
    assert_eq!(eph.czxid, stat.mzxid);
}

/// A failing multi applies nothing: the client sees the first failing op; on the wire every
/// op gets a result: 0 before the failure, the real code at it, -2 (runtime inconsistency)
/// after it. Nothing is created, no version moves, no sequence number is used up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_failure_applies_nothing() {
    let p = coordinator(&[]);
    let c = client(&p).await;
    mk(&c, "/f", b"f0").await;

    let mut m = c.new_multi_writer();
    m.add_create("/f/a", b"", &opts(zk::CreateMode::Persistent))
        .unwrap();
    m.add_set_data("/f", b"f1", None).unwrap();
    m.add_create("/f/seq-", b"", &opts(zk::CreateMode::PersistentSequential))
        .unwrap();
    m.add_set_data("/f", b"f2", Some(5)).unwrap();
    m.add_create("/f/b", b"", &opts(zk::CreateMode::Persistent))
        .unwrap();
    let err = m.commit().await.unwrap_err();
    assert_eq!(
        err,
        zk::MultiWriteError::OperationFailed {
            index: 3,
            source: zk::Error::BadVersion
        }
    );
    assert!(
        c.list_children("/f").await.unwrap().is_empty(),
        "a failed multi left children behind"
    );
    let (data, stat) = c.get_data("/f").await.unwrap();
    assert_eq!(
        (data.as_slice(), stat.version, stat.cversion),
        (b"f0".as_slice(), 0, 0)
    );

    // Per-op results on the wire.
    let mut raw = RawConn::connect(p.addr(), 10_000).await.unwrap();
    let ops: Vec<(i32, BytesMut)> = vec![
        (op::CREATE, create_body("/f/a", b"", 0)),
        (op::CREATE2, create_body("/f/seq-", b"", 2)),
        (op::SET_DATA, set_data_body("/f", b"z", 0)),
        (
            op::CHECK,
            CheckVersionRequest {
                path: "/f".into(),
                version: 0,
            }
            .to_bytes(),
        ),
        (op::DELETE, delete_body("/f/missing", -1)),
        (op::CREATE, create_body("/f/b", b"", 0)),
        (op::SET_DATA, set_data_body("/f", b"z", -1)),
    ];
    let r = raw.call(op::MULTI, &multi_body(&ops)).await.unwrap();
    assert_eq!(
        r.err(),
        0,
        "ZooKeeper answers a failed multi with header err 0 and per-op errors"
    );
    let results = parse_multi(&r.body).unwrap();
    let codes: Vec<(i32, i32)> = results
        .iter()
        .map(|MultiResult { op, err, .. }| (*op, *err))
        .collect();
    // The check sees the version the setData before it produced (1), so it fails first.
    assert_eq!(
        codes,
        vec![
            (-1, 0),
            (-1, 0),
            (-1, 0),
            (-1, -103),
            (-1, -2),
            (-1, -2),
            (-1, -2)
        ]
    );

    // A failure at the first op.
    let ops: Vec<(i32, BytesMut)> = vec![
        (op::CREATE, create_body("/f", b"", 0)),
        (op::CREATE, create_body("/f/c", b"", 0)),
    ];
    let r = raw.call(op::MULTI, &multi_body(&ops)).await.unwrap();
    let codes: Vec<(i32, i32)> = parse_multi(&r.body)
        .unwrap()
        .iter()
        .map(|m| (m.op, m.err))
        .collect();
    assert_eq!(codes, vec![(-1, -110), (-1, -2)]);

    assert!(c.list_children("/f").await.unwrap().is_empty());
    let (data, stat) = c.get_data("/f").await.unwrap();
    assert_eq!(
        (data.as_slice(), stat.version, stat.cversion),
        (b"f0".as_slice(), 0, 0)
    );
    // No sequence number was used up by the failed multis.
    let (_, n) = c
        .create("/f/seq-", b"", &opts(zk::CreateMode::PersistentSequential))
        .await
        .unwrap();
    assert_eq!(n.to_string(), "0000000000");

    // The failed multis survive nothing after a restart either: the log holds no trace.
    let mut p = p;
    drop((c, raw));
    tokio::task::block_in_place(|| p.restart()).unwrap();
    let c = client(&p).await;
    assert_eq!(
        c.list_children("/f").await.unwrap(),
        vec!["seq-0000000000".to_owned()]
    );
    assert_eq!(c.get_data("/f").await.unwrap().1.version, 0);
}

/// Container nodes: deleted by the server once their last child is gone; a container that
/// never had a child is left alone (ZooKeeper's default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_go_when_their_last_child_goes() {
    let p = coordinator(&["--container-check-ms", "100"]);
    let c = client(&p).await;
    let container = opts(zk::CreateMode::Container);
    c.create("/box", b"", &container).await.unwrap();
    c.create("/never-used", b"", &container).await.unwrap();
    mk(&c, "/box/item", b"").await;
    mk(&c, "/box/item2", b"").await;

    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        c.check_stat("/box").await.unwrap().is_some(),
        "a container with children was deleted"
    );
    let (_, gone) = c.check_and_watch_stat("/box").await.unwrap();
    c.delete("/box/item", None).await.unwrap();
    c.delete("/box/item2", None).await.unwrap();
    let e = oneshot_event(gone, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(ev(&e), (zk::EventType::NodeDeleted, "/box"));
    assert!(
        c.check_stat("/never-used").await.unwrap().is_some(),
        "a never-used container was deleted"
    );
}

/// Digest auth and ACLs: `creator_all` locks a node to sessions with the same identity; a
/// wrong password is a different identity; `anyone_read` lets others read but not write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_acls_guard_nodes() {
    let p = coordinator(&[]);
    let alice = client(&p).await;
    let creator_all = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
    // Without an identity there is no creator to grant anything to.
    let err = alice
        .create("/secret", b"s", &creator_all)
        .await
        .unwrap_err();
    assert_eq!(err, zk::Error::InvalidAcl);

    alice.auth("digest", b"alice:secret").await.unwrap();
    alice.create("/secret", b"s", &creator_all).await.unwrap();
    let (acl, _) = alice.get_acl("/secret").await.unwrap();
    assert_eq!(acl.len(), 1, "{acl:?}");
    assert_eq!(acl[0].scheme(), "digest");
    assert!(acl[0].id().starts_with("alice:"), "{acl:?}");
    assert_eq!(acl[0].permission(), zk::Permission::ALL);
    let public = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_read());
    alice.create("/public", b"p", &public).await.unwrap();

    let bob = client(&p).await;
    assert_eq!(
        bob.get_data("/secret").await.unwrap_err(),
        zk::Error::NoAuth
    );
    assert_eq!(
        bob.set_data("/secret", b"x", None).await.unwrap_err(),
        zk::Error::NoAuth
    );
    // Exists needs no permission.
    assert!(bob.check_stat("/secret").await.unwrap().is_some());
    assert_eq!(bob.get_data("/public").await.unwrap().0, b"p");
    assert_eq!(
        bob.set_data("/public", b"x", None).await.unwrap_err(),
        zk::Error::NoAuth
    );

    bob.auth("digest", b"alice:wrong").await.unwrap();
    assert_eq!(
        bob.get_data("/secret").await.unwrap_err(),
        zk::Error::NoAuth
    );

    let carol = client(&p).await;
    carol.auth("digest", b"alice:secret").await.unwrap();
    assert_eq!(carol.get_data("/secret").await.unwrap().0, b"s");
    carol.set_data("/secret", b"t", None).await.unwrap();
    assert_eq!(alice.get_data("/secret").await.unwrap().0, b"t");
}

/// Replies that do not fit the socket's buffer: a client that sends many requests for a
/// large node before it reads anything gets every reply whole, in request order, with
/// the replies to its writes in between (the processor writes replies itself while few
/// clients are active, and hands the rest to the connection's writer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_larger_than_the_socket_buffer_arrive_whole_and_in_order() {
    use fjord_shared::jute::{GetDataResponse, StatResponse};
    let p = coordinator(&[]);
    let mut c = RawConn::connect(p.addr(), 10_000).await.unwrap();
    let big = vec![7u8; 600_000];
    c.call(op::CREATE, &create_body("/big", &big, 0))
        .await
        .unwrap()
        .ok()
        .unwrap();
    c.call(op::CREATE, &create_body("/small", b"0", 0))
        .await
        .unwrap()
        .ok()
        .unwrap();
    // 40 reads of 600 KB (24 MB, far more than the socket buffers) and a write after
    // every tenth, all sent before reading anything.
    let first = 1000;
    let mut expected = Vec::new();
    for i in 0..44 {
        let xid = first + i;
        if i % 11 == 10 {
            let body = set_data_body("/small", format!("{i}").as_bytes(), -1);
            c.send_request(xid, op::SET_DATA, &body).await.unwrap();
            expected.push((xid, false));
        } else {
            let body = path_watch_body("/big", false);
            c.send_request(xid, op::GET_DATA, &body).await.unwrap();
            expected.push((xid, true));
        }
    }
    for (xid, read) in expected {
        let reply = c
            .read_reply(xid, std::time::Duration::from_secs(30))
            .await
            .unwrap()
            .ok()
            .unwrap();
        if read {
            let r: GetDataResponse = reply.decode().unwrap();
            assert_eq!(r.data.as_deref(), Some(&big[..]), "xid {xid}");
        } else {
            let r: StatResponse = reply.decode().unwrap();
            assert!(r.stat.version > 0, "xid {xid}");
        }
    }
    // And the connection carries on.
    c.call(op::SET_DATA, &set_data_body("/small", b"end", -1))
        .await
        .unwrap()
        .ok()
        .unwrap();
}
