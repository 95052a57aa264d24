//! Session behaviour tested against a scripted in-process server: pipelining, watch events,
//! reconnect with session resumption and watch re-registration, the `setWatches` fallback,
//! expiry, pings, close, and task shutdown. Each test plays the server side by hand over
//! loopback, so it can do what a real server cannot be made to do on demand (drop a
//! connection mid-request, answer with the zero ConnectResponse).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::conn::read_frame;
use super::*;
use crate::jute::{
    frame_with, xid, ConnectRequest, ConnectResponse, Reader, ReplyHeader, RequestHeader,
    SetWatches, SetWatches2, WatcherEvent,
};

/// Every wait in these tests is bounded.
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("timed out")
}

const SESSION: i64 = 0x5eed;

struct FakeServer {
    listener: TcpListener,
}

impl FakeServer {
    async fn start() -> FakeServer {
        FakeServer {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn addr(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }

    async fn accept(&self) -> FakeConn {
        let (stream, _) = within(self.listener.accept()).await.unwrap();
        FakeConn { stream }
    }

    /// Accepts and completes the handshake, granting `timeout_ms`.
    async fn accept_session(&self, timeout_ms: i32) -> (FakeConn, ConnectRequest) {
        let mut c = self.accept().await;
        let req = c.read_connect().await;
        c.send_connect(ConnectResponse {
            protocol_version: 0,
            timeout: timeout_ms,
            session_id: SESSION,
            passwd: Bytes::from_static(&[9; 16]),
            read_only: Some(false),
        })
        .await;
        (c, req)
    }
}

struct FakeConn {
    stream: TcpStream,
}

impl FakeConn {
    async fn frame(&mut self) -> Option<Bytes> {
        within(read_frame(&mut self.stream, 1 << 20)).await.unwrap()
    }

    async fn read_connect(&mut self) -> ConnectRequest {
        ConnectRequest::decode(&self.frame().await.unwrap()).unwrap()
    }

    async fn send_connect(&mut self, resp: ConnectResponse) {
        let mut b = BytesMut::new();
        frame_with(&mut b, |b| resp.write(b));
        self.stream.write_all(&b).await.unwrap();
    }

    /// The next request that is not a ping.
    async fn request(&mut self) -> (RequestHeader, Bytes) {
        loop {
            let f = self.frame().await.expect("client closed the connection");
            let mut r = Reader::new(&f);
            let h = RequestHeader::read(&mut r).unwrap();
            if h.xid != xid::PING {
                return (h, f.slice(r.position()..));
            }
        }
    }

    async fn reply(&mut self, xid: i32, zxid: i64, err: i32, body: &[u8]) {
        let mut b = BytesMut::new();
        frame_with(&mut b, |b| {
            ReplyHeader { xid, zxid, err }.write(b);
            b.extend_from_slice(body);
        });
        self.stream.write_all(&b).await.unwrap();
    }

    async fn notify(&mut self, event_type: i32, path: &str) {
        let ev = WatcherEvent {
            event_type,
            state: 3,
            path: path.into(),
        };
        self.reply(xid::NOTIFICATION, -1, 0, &ev.to_bytes()).await;
    }
}

async fn connect(addr: &str) -> Client {
    Client::connect(ConnectOptions::new(addr).connect_timeout(Duration::from_secs(5)))
        .await
        .unwrap()
}

fn stat(version: i32) -> Stat {
    Stat {
        version,
        ..Default::default()
    }
}

/// The next session event, skipping watch events.
async fn next_session_event(events: &mut Events) -> Option<SessionEvent> {
    loop {
        match within(events.recv()).await? {
            Event::Session(s) => return Some(s),
            Event::Watch(_) => {}
        }
    }
}

/// The client is shared between tasks (`Arc<Client>`), so its futures must be `Send`.
#[allow(dead_code)]
fn futures_are_send(c: &Client) {
    fn send<T: Send>(_: T) {}
    send(Client::connect(ConnectOptions::new("h:1")));
    send(c.create("/a", Bytes::new(), &[], CreateMode::Persistent));
    send(c.get_data("/a", true));
    send(c.multi(vec![]));
    send(c.add_auth("digest", Bytes::new()));
    send(c.close());
    send(c.events());
}

#[tokio::test]
async fn pipelines_delivers_events_and_resumes_the_session_after_a_lost_connection() {
    let server = FakeServer::start().await;
    let addr = format!("{}/app", server.addr());
    let (client, (mut c1, req)) = tokio::join!(connect(&addr), server.accept_session(3000));
    assert_eq!(
        (req.session_id, req.last_zxid_seen, req.read_only),
        (0, 0, Some(false))
    );
    assert_eq!(client.session_id(), SESSION);
    assert_eq!(client.session_timeout(), Duration::from_millis(3000));
    let mut events = client.events();

    // Three requests in flight at once, answered in order.
    let calls = async {
        tokio::join!(
            client.get_data("/a", true),
            client.add_watch("/p", AddWatchMode::PersistentRecursive),
            client.exists("/e", true),
        )
    };
    let server_side = async {
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(c1.request().await);
        }
        let ops: Vec<i32> = seen.iter().map(|(h, _)| h.op).collect();
        assert_eq!(ops, vec![op::GET_DATA, op::ADD_WATCH, op::EXISTS]);
        assert_eq!(PathWatchRequest::decode(&seen[0].1).unwrap().path, "/app/a");
        assert_eq!(
            AddWatchRequest::decode(&seen[1].1).unwrap(),
            AddWatchRequest {
                path: "/app/p".into(),
                mode: 1
            }
        );
        let data = GetDataResponse {
            data: Some(Bytes::from_static(b"hello")),
            stat: stat(1),
        };
        c1.reply(seen[0].0.xid, 10, 0, &data.to_bytes()).await;
        c1.reply(seen[1].0.xid, 11, 0, &0i32.to_be_bytes()).await;
        c1.reply(seen[2].0.xid, 12, ErrorCode::NoNode.code(), &[])
            .await;
    };
    let ((data, added, exists), ()) = within(async { tokio::join!(calls, server_side) }).await;
    assert_eq!(data.unwrap(), (Bytes::from_static(b"hello"), stat(1)));
    added.unwrap();
    assert_eq!(exists.unwrap(), None);

    // A notification, with the chroot stripped; it consumes the one-shot data watch.
    c1.notify(3, "/app/a").await;
    assert_eq!(
        within(events.recv()).await,
        Some(Event::Watch(WatchedEvent {
            event_type: EventType::NodeDataChanged,
            path: "/a".into()
        }))
    );

    // The server drops the connection with a request in flight.
    let lost = async {
        let (h, _) = c1.request().await;
        assert_eq!(h.op, op::GET_CHILDREN);
        drop(c1);
    };
    let (r, ()) = within(async { tokio::join!(client.get_children("/x", false), lost) }).await;
    assert!(matches!(r, Err(Error::ConnectionLoss)), "{r:?}");
    assert_eq!(
        next_session_event(&mut events).await,
        Some(SessionEvent::Disconnected)
    );

    // The client comes back with the same session, password and last zxid, and
    // re-registers the watches that are still set before anything else.
    let (mut c2, req) = server.accept_session(3000).await;
    assert_eq!(
        (req.session_id, req.passwd.as_ref(), req.last_zxid_seen),
        (SESSION, &[9u8; 16][..], 12)
    );
    assert_eq!(
        next_session_event(&mut events).await,
        Some(SessionEvent::Connected)
    );
    let (h, body) = c2.request().await;
    assert_eq!(h.op, op::SET_WATCHES2);
    assert!(h.xid > 0);
    let sw = SetWatches2::decode(&body).unwrap();
    assert_eq!(
        sw,
        SetWatches2 {
            relative_zxid: 12,
            exist_watches: vec!["/app/e".into()],
            persistent_recursive_watches: vec!["/app/p".into()],
            ..Default::default()
        }
    );
    c2.reply(h.xid, 12, 0, &[]).await;

    // Requests work on the new connection.
    let serve = async {
        let (h, _) = c2.request().await;
        assert_eq!(h.op, op::SET_DATA);
        c2.reply(h.xid, 13, 0, &stat(2).to_bytes()).await;
    };
    let (r, ()) =
        within(async { tokio::join!(client.set_data("/a", &b"x"[..], Some(1)), serve) }).await;
    assert_eq!(r.unwrap(), stat(2));
    assert_eq!(client.state(), SessionState::Connected);

    // Dropping the client stops its tasks: the server sees the connection close.
    drop(client);
    assert!(c2.frame().await.is_none());
    assert_eq!(within(events.recv()).await, None);
}

#[tokio::test]
async fn expired_session_fails_everything_and_ends_the_event_stream() {
    let server = FakeServer::start().await;
    let addr = server.addr();
    let (client, (c1, _)) = tokio::join!(connect(&addr), server.accept_session(3000));
    let mut events = client.events();
    drop(c1);
    assert_eq!(
        next_session_event(&mut events).await,
        Some(SessionEvent::Disconnected)
    );

    let mut c2 = server.accept().await;
    assert_eq!(c2.read_connect().await.session_id, SESSION);
    c2.send_connect(ConnectResponse {
        passwd: Bytes::from_static(&[0; 16]),
        ..Default::default()
    })
    .await;
    assert_eq!(
        next_session_event(&mut events).await,
        Some(SessionEvent::Expired)
    );
    assert_eq!(within(events.recv()).await, None);
    assert_eq!(client.state(), SessionState::Expired);
    assert!(matches!(
        client.get_data("/a", false).await,
        Err(Error::SessionExpired)
    ));
    assert!(matches!(
        client.multi(vec![Op::check("/a", None)]).await,
        Err(MultiError::Client(Error::SessionExpired))
    ));
    // A late subscriber sees an ended stream.
    assert_eq!(within(client.events().recv()).await, None);
    client.close().await.unwrap();
}

#[tokio::test]
async fn falls_back_to_set_watches_when_set_watches2_is_unimplemented() {
    let server = FakeServer::start().await;
    let addr = server.addr();
    let (client, (mut c1, _)) = tokio::join!(connect(&addr), server.accept_session(3000));
    let serve = async {
        let (h, _) = c1.request().await;
        c1.reply(
            h.xid,
            5,
            0,
            &GetChildrenResponse {
                children: vec!["x".into()],
            }
            .to_bytes(),
        )
        .await;
    };
    let (r, ()) = within(async { tokio::join!(client.get_children("/c", true), serve) }).await;
    assert_eq!(r.unwrap(), vec!["x".to_string()]);
    drop(c1);

    let (mut c2, _) = server.accept_session(3000).await;
    let (h, _) = c2.request().await;
    assert_eq!(h.op, op::SET_WATCHES2);
    c2.reply(h.xid, 5, ErrorCode::Unimplemented.code(), &[])
        .await;
    let (h, body) = c2.request().await;
    assert_eq!(h.op, op::SET_WATCHES);
    let sw = SetWatches::decode(&body).unwrap();
    assert_eq!(
        (sw.relative_zxid, sw.child_watches),
        (5, vec!["/c".to_string()])
    );
    c2.reply(h.xid, 5, 0, &[]).await;
    drop(client);
}

#[tokio::test]
async fn pings_when_idle_and_close_ends_the_session() {
    let server = FakeServer::start().await;
    let addr = server.addr();
    let (client, (mut c1, _)) = tokio::join!(connect(&addr), server.accept_session(300));
    let mut events = client.events();

    // With a 300 ms session, an idle client pings about every 100 ms; answer two pings.
    for _ in 0..2 {
        let f = c1.frame().await.unwrap();
        let h = RequestHeader::decode(&f).unwrap();
        assert_eq!((h.xid, h.op), (xid::PING, op::PING));
        c1.reply(xid::PING, 0, 0, &[]).await;
    }
    assert_eq!(client.state(), SessionState::Connected);

    let serve = async {
        let (h, _) = c1.request().await;
        assert_eq!(h.op, op::CLOSE_SESSION);
        c1.reply(h.xid, 20, 0, &[]).await;
        drop(c1);
    };
    let (r, ()) = within(async { tokio::join!(client.close(), serve) }).await;
    r.unwrap();
    assert_eq!(client.state(), SessionState::Closed);
    assert_eq!(
        next_session_event(&mut events).await,
        Some(SessionEvent::Closed)
    );
    assert_eq!(within(events.recv()).await, None);
    assert!(matches!(
        client.exists("/a", false).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn an_out_of_order_reply_drops_the_connection() {
    let server = FakeServer::start().await;
    let addr = server.addr();
    let (client, (mut c1, _)) = tokio::join!(connect(&addr), server.accept_session(3000));
    let serve = async {
        let (h, _) = c1.request().await;
        c1.reply(h.xid + 7, 1, 0, &[]).await;
        c1
    };
    let (r, _c1) = within(async { tokio::join!(client.sync("/"), serve) }).await;
    assert!(matches!(r, Err(Error::ConnectionLoss)), "{r:?}");
    // It reconnects and resumes.
    let (_c2, req) = server.accept_session(3000).await;
    assert_eq!(req.session_id, SESSION);
}

#[tokio::test]
async fn auth_is_answered_outside_the_request_order_and_replayed_on_reconnect() {
    let server = FakeServer::start().await;
    let addr = server.addr();
    let (client, (mut c1, _)) = tokio::join!(connect(&addr), server.accept_session(3000));
    let serve = async {
        let (h, body) = c1.request().await;
        assert_eq!((h.xid, h.op), (xid::AUTH, op::AUTH));
        let p = AuthPacket::decode(&body).unwrap();
        assert_eq!(
            (p.scheme.as_str(), p.auth.as_ref()),
            ("digest", &b"u:p"[..])
        );
        c1.reply(xid::AUTH, 0, 0, &[]).await;
        c1
    };
    let (r, c1) =
        within(async { tokio::join!(client.add_auth("digest", &b"u:p"[..]), serve) }).await;
    r.unwrap();
    drop(c1);
    let (mut c2, _) = server.accept_session(3000).await;
    let (h, body) = c2.request().await;
    assert_eq!(
        (h.xid, AuthPacket::decode(&body).unwrap().scheme.as_str()),
        (xid::AUTH, "digest")
    );
}

#[tokio::test]
async fn connect_reports_refusal_and_silence_within_the_timeout() {
    // A port nobody listens on: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = ConnectOptions::new(format!("127.0.0.1:{port}"))
        .connect_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let r = within(Client::connect(opts)).await;
    assert!(
        matches!(&r, Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // A server that accepts but never answers the handshake.
    let server = FakeServer::start().await;
    let opts = ConnectOptions::new(server.addr()).connect_timeout(Duration::from_millis(300));
    let (r, _conn) = within(async { tokio::join!(Client::connect(opts), server.accept()) }).await;
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");

    assert!(matches!(
        Client::connect(ConnectOptions::new("nohost:")).await,
        Err(Error::BadArgument(_))
    ));
}

#[tokio::test]
async fn bad_paths_fail_before_anything_is_sent() {
    let server = FakeServer::start().await;
    let addr = server.addr();
    let (client, (_c1, _)) = tokio::join!(connect(&addr), server.accept_session(3000));
    assert!(matches!(
        client.get_data("a", false).await,
        Err(Error::BadArgument(_))
    ));
    assert!(matches!(
        client
            .create(
                "/a/",
                Bytes::new(),
                &Acl::open_unsafe(),
                CreateMode::Persistent
            )
            .await,
        Err(Error::BadArgument(_))
    ));
    assert!(matches!(
        client
            .create(
                "/a",
                Bytes::new(),
                &Acl::open_unsafe(),
                CreateMode::PersistentWithTtl
            )
            .await,
        Err(Error::BadArgument(_))
    ));
}

/// End-to-end checks against a live server (ZooKeeper 3.8 or `fjord-coordinator`), run on
/// demand: `FJORD_TEST_COORDINATOR=127.0.0.1:2181 cargo test -p fjord-shared coord_client --
/// --ignored`. Each test works under its own fresh root node and removes it afterwards.
mod live {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::Mutex;
    use tokio::task::JoinHandle;

    use super::{next_session_event, within};
    use crate::coord_client::*;
    use crate::jute::perms;

    fn server() -> String {
        std::env::var("FJORD_TEST_COORDINATOR")
            .expect("set FJORD_TEST_COORDINATOR=HOST:PORT to run live tests")
    }

    async fn client(connect: &str) -> Client {
        let opts = ConnectOptions::new(connect).session_timeout(Duration::from_millis(4000));
        within(Client::connect(opts)).await.unwrap()
    }

    /// A fresh root for one test, and a client chrooted to it.
    async fn rooted(name: &str) -> (Client, String, Client) {
        let admin = client(&server()).await;
        let root = format!("/fjord-test-{name}-{}", std::process::id());
        delete_all(&admin, &root).await;
        admin
            .create(
                &root,
                Bytes::new(),
                &Acl::open_unsafe(),
                CreateMode::Persistent,
            )
            .await
            .unwrap();
        let c = client(&format!("{}{root}", server())).await;
        (admin, root, c)
    }

    async fn delete_all(c: &Client, path: &str) {
        let mut order = vec![path.to_owned()];
        let mut i = 0;
        while i < order.len() {
            if let Ok(children) = c.get_children(&order[i], false).await {
                let base = order[i].clone();
                order.extend(children.into_iter().map(|ch| format!("{base}/{ch}")));
            }
            i += 1;
        }
        for p in order.iter().rev() {
            let _ = c.delete(p, None).await;
        }
    }

    async fn next_watch(events: &mut Events) -> WatchedEvent {
        loop {
            match within(events.recv()).await.expect("event stream ended") {
                Event::Watch(w) => return w,
                Event::Session(_) => {}
            }
        }
    }

    fn ev(t: EventType, p: &str) -> WatchedEvent {
        WatchedEvent {
            event_type: t,
            path: p.into(),
        }
    }

    #[tokio::test]
    #[ignore]
    async fn operations_under_a_chroot() {
        let (admin, root, c) = rooted("ops").await;
        let open = Acl::open_unsafe();
        assert_eq!(
            c.create("/a", &b"one"[..], &open, CreateMode::Persistent)
                .await
                .unwrap(),
            "/a"
        );
        let (p, st) = c
            .create2("/a/b", &b""[..], &open, CreateMode::Persistent)
            .await
            .unwrap();
        assert_eq!((p.as_str(), st.version, st.data_length), ("/a/b", 0, 0));
        let seq = c
            .create(
                "/a/s-",
                Bytes::new(),
                &open,
                CreateMode::PersistentSequential,
            )
            .await
            .unwrap();
        assert_eq!(seq, "/a/s-0000000001");
        let eph = c
            .create("/e", Bytes::new(), &open, CreateMode::Ephemeral)
            .await
            .unwrap();
        assert_eq!(
            c.create("/k", Bytes::new(), &open, CreateMode::Container)
                .await
                .unwrap(),
            "/k"
        );
        assert!(matches!(
            c.create("/a", Bytes::new(), &open, CreateMode::Persistent)
                .await,
            Err(Error::Zk(ErrorCode::NodeExists))
        ));
        assert!(matches!(
            c.create("/x/y", Bytes::new(), &open, CreateMode::Persistent)
                .await,
            Err(Error::Zk(ErrorCode::NoNode))
        ));

        let (data, st) = c.get_data("/a", false).await.unwrap();
        assert_eq!(
            (data.as_ref(), st.version, st.num_children),
            (&b"one"[..], 0, 2)
        );
        let st = c.set_data("/a", &b"two"[..], Some(0)).await.unwrap();
        assert_eq!(st.version, 1);
        assert!(matches!(
            c.set_data("/a", &b"x"[..], Some(0)).await,
            Err(Error::Zk(ErrorCode::BadVersion))
        ));
        assert_eq!(
            c.exists("/a", false).await.unwrap().map(|s| s.version),
            Some(1)
        );
        assert_eq!(c.exists("/nope", false).await.unwrap(), None);
        // The chroot is invisible: the admin client sees the same node under the root.
        assert_eq!(
            admin
                .get_data(&format!("{root}/a"), false)
                .await
                .unwrap()
                .0
                .as_ref(),
            b"two"
        );

        let mut kids = c.get_children("/a", false).await.unwrap();
        kids.sort();
        assert_eq!(kids, vec!["b", "s-0000000001"]);
        let (kids, st) = c.get_children2("/", false).await.unwrap();
        assert_eq!((kids.len(), st.num_children), (3, 3));
        assert_eq!(c.get_all_children_number("/").await.unwrap(), 5);
        assert_eq!(c.get_ephemerals("/").await.unwrap(), vec![eph]);
        assert_eq!(c.sync("/a").await.unwrap(), "/a");
        assert!(matches!(
            c.delete("/a", None).await,
            Err(Error::Zk(ErrorCode::NotEmpty))
        ));
        c.delete("/a/b", Some(0)).await.unwrap();

        let (acl, _) = c.get_acl("/a").await.unwrap();
        assert_eq!(acl, open);
        c.add_auth("digest", &b"alice:secret"[..]).await.unwrap();
        let who = c.who_am_i().await.unwrap();
        assert!(
            who.iter()
                .any(|i| i.auth_scheme == "digest" && i.user == "alice"),
            "{who:?}"
        );
        let mine = vec![Acl {
            perms: perms::ALL,
            id: Id {
                scheme: "auth".into(),
                id: String::new(),
            },
        }];
        c.set_acl("/a", &mine, Some(0)).await.unwrap();
        assert!(matches!(
            admin.get_data(&format!("{root}/a"), false).await,
            Err(Error::Zk(ErrorCode::NoAuth))
        ));
        c.set_acl("/a", &open, None).await.unwrap();
        let mut events = c.events();
        assert!(matches!(
            c.add_auth("nosuchscheme", &b"x"[..]).await,
            Err(Error::Zk(ErrorCode::AuthFailed))
        ));
        // After the rejected auth the server closes the connection; the client resumes.
        assert_eq!(
            next_session_event(&mut events).await,
            Some(SessionEvent::AuthFailed)
        );
        assert_eq!(
            next_session_event(&mut events).await,
            Some(SessionEvent::Disconnected)
        );
        assert_eq!(
            next_session_event(&mut events).await,
            Some(SessionEvent::Connected)
        );
        assert_eq!(c.get_data("/a", false).await.unwrap().0.as_ref(), b"two");
        // The accepted credential was replayed on the new connection.
        assert!(c
            .who_am_i()
            .await
            .unwrap()
            .iter()
            .any(|i| i.user == "alice"));

        // Multi: success, then a failure that applies nothing.
        let results = c
            .multi(vec![
                Op::create("/m", &b"m"[..], &open, CreateMode::Persistent),
                Op::check("/m", Some(0)),
                Op::set_data("/m", &b"n"[..], Some(0)),
                Op::create(
                    "/m/c-",
                    Bytes::new(),
                    &open,
                    CreateMode::PersistentSequential,
                ),
                Op::delete("/a/s-0000000001", None),
            ])
            .await
            .unwrap();
        assert_eq!(
            results[0],
            OpResult::Create {
                path: "/m".into(),
                stat: None
            }
        );
        assert_eq!(results[1], OpResult::Check);
        assert!(matches!(&results[2], OpResult::SetData { stat } if stat.version == 1));
        assert_eq!(
            results[3],
            OpResult::Create {
                path: "/m/c-0000000000".into(),
                stat: None
            }
        );
        assert_eq!(results[4], OpResult::Delete);
        let failed = c
            .multi(vec![
                Op::create("/n", Bytes::new(), &open, CreateMode::Persistent),
                Op::check("/m", Some(0)),
                Op::delete("/m", None),
            ])
            .await;
        match failed {
            Err(MultiError::Failed {
                index,
                code,
                results,
            }) => {
                assert_eq!((index, code), (1, ErrorCode::BadVersion));
                assert_eq!(
                    results,
                    vec![
                        OpResult::Error {
                            code: ErrorCode::Ok
                        },
                        OpResult::Error {
                            code: ErrorCode::BadVersion
                        },
                        OpResult::Error {
                            code: ErrorCode::RuntimeInconsistency
                        },
                    ]
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(c.exists("/n", false).await.unwrap(), None);

        // Closing removes the session's ephemeral node at once.
        c.close().await.unwrap();
        assert!(matches!(c.exists("/a", false).await, Err(Error::Closed)));
        assert_eq!(
            admin.exists(&format!("{root}/e"), false).await.unwrap(),
            None
        );
        delete_all(&admin, &root).await;
        admin.close().await.unwrap();
    }

    #[tokio::test]
    #[ignore]
    async fn one_shot_and_persistent_watches() {
        let (admin, root, c) = rooted("watch").await;
        let open = Acl::open_unsafe();
        let mut events = c.events();

        // exists on a missing node, then creation.
        assert_eq!(c.exists("/w", true).await.unwrap(), None);
        c.create("/w", Bytes::new(), &open, CreateMode::Persistent)
            .await
            .unwrap();
        assert_eq!(
            next_watch(&mut events).await,
            ev(EventType::NodeCreated, "/w")
        );
        // getData, then a change by another session; the watch fires once.
        c.get_data("/w", true).await.unwrap();
        admin
            .set_data(&format!("{root}/w"), &b"1"[..], None)
            .await
            .unwrap();
        assert_eq!(
            next_watch(&mut events).await,
            ev(EventType::NodeDataChanged, "/w")
        );
        admin
            .set_data(&format!("{root}/w"), &b"2"[..], None)
            .await
            .unwrap();
        // getChildren, then a child.
        c.get_children("/w", true).await.unwrap();
        c.create("/w/k", Bytes::new(), &open, CreateMode::Persistent)
            .await
            .unwrap();
        assert_eq!(
            next_watch(&mut events).await,
            ev(EventType::NodeChildrenChanged, "/w")
        );

        // Persistent recursive: every descendant, repeatedly, never NodeChildrenChanged.
        c.add_watch("/w", AddWatchMode::PersistentRecursive)
            .await
            .unwrap();
        c.create("/w/k/deep", Bytes::new(), &open, CreateMode::Persistent)
            .await
            .unwrap();
        assert_eq!(
            next_watch(&mut events).await,
            ev(EventType::NodeCreated, "/w/k/deep")
        );
        c.set_data("/w/k/deep", &b"x"[..], None).await.unwrap();
        assert_eq!(
            next_watch(&mut events).await,
            ev(EventType::NodeDataChanged, "/w/k/deep")
        );
        c.delete("/w/k/deep", None).await.unwrap();
        assert_eq!(
            next_watch(&mut events).await,
            ev(EventType::NodeDeleted, "/w/k/deep")
        );
        c.remove_watches("/w", WatcherType::Any).await.unwrap();
        assert!(matches!(
            c.remove_watches("/w", WatcherType::Any).await,
            Err(Error::Zk(ErrorCode::NoWatcher))
        ));

        // Persistent (not recursive) on the node itself.
        c.add_watch("/w", AddWatchMode::Persistent).await.unwrap();
        c.set_data("/w", &b"a"[..], None).await.unwrap();
        assert_eq!(
            next_watch(&mut events).await,
            ev(EventType::NodeDataChanged, "/w")
        );
        c.create("/w/k2", Bytes::new(), &open, CreateMode::Persistent)
            .await
            .unwrap();
        assert_eq!(
            next_watch(&mut events).await,
            ev(EventType::NodeChildrenChanged, "/w")
        );
        c.set_data("/w", &b"b"[..], None).await.unwrap();
        assert_eq!(
            next_watch(&mut events).await,
            ev(EventType::NodeDataChanged, "/w")
        );
        c.remove_watches("/w", WatcherType::Any).await.unwrap();
        c.set_data("/w", &b"c"[..], None).await.unwrap();
        // The removed watch no longer fires: the next event is the one below.
        c.get_data("/w", true).await.unwrap();
        c.delete("/w/k2", None).await.unwrap();
        c.delete("/w/k", None).await.unwrap();
        c.delete("/w", None).await.unwrap();
        assert_eq!(
            next_watch(&mut events).await,
            ev(EventType::NodeDeleted, "/w")
        );

        c.close().await.unwrap();
        assert_eq!(
            next_session_event(&mut events).await,
            Some(SessionEvent::Closed)
        );
        delete_all(&admin, &root).await;
        admin.close().await.unwrap();
    }

    /// A loopback TCP proxy whose connections can be cut, to break a client's connection
    /// without touching the server.
    struct Proxy {
        addr: String,
        conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
        refuse: Arc<std::sync::atomic::AtomicBool>,
        _accept: JoinHandle<()>,
    }

    impl Proxy {
        async fn start(upstream: String) -> Proxy {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
            let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (c2, r2) = (conns.clone(), refuse.clone());
            let accept = tokio::spawn(async move {
                while let Ok((mut down, _)) = listener.accept().await {
                    if r2.load(std::sync::atomic::Ordering::SeqCst) {
                        continue; // Dropped at once: the client sees the connection close.
                    }
                    let Ok(mut up) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    c2.lock().await.push(tokio::spawn(async move {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }));
                }
            });
            Proxy {
                addr,
                conns,
                refuse,
                _accept: accept,
            }
        }

        async fn cut(&self) {
            for h in self.conns.lock().await.drain(..) {
                h.abort();
            }
        }
    }

    #[tokio::test]
    #[ignore]
    async fn reconnect_resumes_the_session_and_re_registers_watches() {
        let (admin, root, direct) = rooted("reconnect").await;
        direct.close().await.unwrap();
        let open = Acl::open_unsafe();
        let proxy = Proxy::start(server()).await;
        let c = client(&format!("{}{root}", proxy.addr)).await;
        let mut events = c.events();
        let session = c.session_id();
        c.create("/eph", Bytes::new(), &open, CreateMode::Ephemeral)
            .await
            .unwrap();
        c.create("/d", Bytes::new(), &open, CreateMode::Persistent)
            .await
            .unwrap();
        c.get_data("/d", true).await.unwrap();
        assert_eq!(c.exists("/later", true).await.unwrap(), None);
        c.add_watch("/r", AddWatchMode::PersistentRecursive)
            .await
            .unwrap();

        // Cut the connection and keep the client out while another session makes changes.
        proxy
            .refuse
            .store(true, std::sync::atomic::Ordering::SeqCst);
        proxy.cut().await;
        assert_eq!(
            next_session_event(&mut events).await,
            Some(SessionEvent::Disconnected)
        );
        admin
            .set_data(&format!("{root}/d"), &b"changed"[..], None)
            .await
            .unwrap();
        admin
            .create(
                &format!("{root}/later"),
                Bytes::new(),
                &open,
                CreateMode::Persistent,
            )
            .await
            .unwrap();
        proxy
            .refuse
            .store(false, std::sync::atomic::Ordering::SeqCst);

        // Back on the same session; watches whose nodes changed meanwhile fire at once.
        assert_eq!(
            next_session_event(&mut events).await,
            Some(SessionEvent::Connected)
        );
        assert_eq!(c.session_id(), session);
        let mut got = vec![next_watch(&mut events).await, next_watch(&mut events).await];
        got.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            got,
            vec![
                ev(EventType::NodeDataChanged, "/d"),
                ev(EventType::NodeCreated, "/later")
            ]
        );
        // The persistent recursive watch came back too.
        admin
            .create(
                &format!("{root}/r"),
                Bytes::new(),
                &open,
                CreateMode::Persistent,
            )
            .await
            .unwrap();
        assert_eq!(
            next_watch(&mut events).await,
            ev(EventType::NodeCreated, "/r")
        );
        // The ephemeral node survived: the session never ended.
        assert!(admin
            .exists(&format!("{root}/eph"), false)
            .await
            .unwrap()
            .is_some());

        // Now keep the client out past the session timeout: it must report expiry.
        proxy
            .refuse
            .store(true, std::sync::atomic::Ordering::SeqCst);
        proxy.cut().await;
        assert_eq!(
            next_session_event(&mut events).await,
            Some(SessionEvent::Disconnected)
        );
        tokio::time::sleep(c.session_timeout() + Duration::from_millis(1500)).await;
        assert_eq!(
            admin.exists(&format!("{root}/eph"), false).await.unwrap(),
            None
        );
        proxy
            .refuse
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            next_session_event(&mut events).await,
            Some(SessionEvent::Expired)
        );
        assert!(matches!(
            c.get_data("/d", false).await,
            Err(Error::SessionExpired)
        ));

        delete_all(&admin, &root).await;
        admin.close().await.unwrap();
    }
}
