//! Bad input against the real `fjord-coordinator` binary, on raw TCP connections: oversized
//! and negative frame lengths, truncated ConnectRequests, garbage, unknown opcodes and
//! malformed bodies. Each may close only its own connection (or be answered with an error);
//! a well-behaved session keeps working throughout, the server stays up, and what is stored
//! is intact, also after a restart. Plus the four-letter words `ruok` and `mntr`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use fjord_shared::jute::{op, ConnectRequest, Record, SetWatches};
use fjord_tests::zk::{create_body, four_letter, path_watch_body, set_data_body, RawConn};
use fjord_tests::{Process, Rng};
use std::time::Duration;
use zookeeper_client as zk;

const MAX_FRAME: usize = 64 * 1024;
const CLOSE: Duration = Duration::from_secs(5);

/// A well-behaved session that checks, after every bad input, that it still works and is
/// still the same session.
struct Bystander {
    c: zk::Client,
    id: zk::SessionId,
    writes: u32,
}

impl Bystander {
    async fn new(p: &Process) -> Bystander {
        let c = client(p).await;
        mk(&c, "/keep", b"precious").await;
        mk(&c, "/keep/counter", b"0").await;
        c.create("/keep/eph", b"", &opts(zk::CreateMode::Ephemeral))
            .await
            .unwrap();
        let id = c.session_id();
        Bystander { c, id, writes: 0 }
    }

    async fn check(&mut self, p: &mut Process, after: &str) {
        assert!(p.is_running(), "the server died after {after}");
        self.writes += 1;
        let value = self.writes.to_string();
        let (_, before) = self.c.get_data("/keep/counter").await.unwrap();
        let stat = self
            .c
            .set_data("/keep/counter", value.as_bytes(), Some(before.version))
            .await
            .unwrap_or_else(|e| panic!("the bystander's write failed after {after}: {e}"));
        assert_eq!(stat.version, before.version + 1, "after {after}");
        let (data, _) = self.c.get_data("/keep/counter").await.unwrap();
        assert_eq!(data, value.as_bytes(), "after {after}");
        assert_eq!(
            self.c.session_id(),
            self.id,
            "the bystander's session changed after {after}"
        );
        let (data, _) = self.c.get_data("/keep").await.unwrap();
        assert_eq!(data, b"precious", "after {after}");
    }

    /// Nothing but the bystander's nodes (and /zookeeper) exists: no bad request created one.
    async fn check_tree(&self) {
        let mut root = self.c.list_children("/").await.unwrap();
        root.sort();
        assert_eq!(root, ["keep", "zookeeper"]);
        let mut keep = self.c.list_children("/keep").await.unwrap();
        keep.sort();
        assert_eq!(keep, ["counter", "eph"]);
    }
}

/// A valid ConnectRequest for a new session.
fn connect_request() -> BytesMut {
    ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout: 10_000,
        session_id: 0,
        passwd: Bytes::from_static(&[0; 16]),
        read_only: Some(false),
    }
    .to_bytes()
}

/// Bad framing and bad handshakes: each connection is closed, nobody else notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_and_handshakes_close_only_their_connection() {
    let max = MAX_FRAME.to_string();
    let mut p = coordinator(&["--max-frame-bytes", &max]);
    let addr = p.addr();
    let mut good = Bystander::new(&p).await;
    let mut rng = Rng::from_env(0xF10D);

    // Oversized length as the first frame: closed before anything is allocated or read.
    let mut c = RawConn::tcp(addr).await.unwrap();
    c.write_raw(&((MAX_FRAME + 1) as i32).to_be_bytes())
        .await
        .unwrap();
    c.expect_closed(CLOSE).await.unwrap();
    good.check(&mut p, "an oversized ConnectRequest length")
        .await;

    let mut c = RawConn::tcp(addr).await.unwrap();
    c.write_raw(&i32::MAX.to_be_bytes()).await.unwrap();
    c.expect_closed(CLOSE).await.unwrap();
    good.check(&mut p, "a 2 GiB ConnectRequest length").await;

    // Negative lengths.
    for len in [-1i32, -2, i32::MIN] {
        let mut c = RawConn::tcp(addr).await.unwrap();
        c.write_raw(&len.to_be_bytes()).await.unwrap();
        c.expect_closed(CLOSE).await.unwrap();
        good.check(&mut p, &format!("a ConnectRequest length of {len}"))
            .await;
    }

    // A ConnectRequest cut short inside its frame (the frame is whole, the record is not).
    let full = connect_request();
    for cut in [0, 4, 12, 20, 27, 30] {
        let mut c = RawConn::tcp(addr).await.unwrap();
        c.send_frame(&full[..cut]).await.unwrap();
        c.expect_closed(CLOSE).await.unwrap();
        good.check(
            &mut p,
            &format!("a ConnectRequest truncated to {cut} bytes"),
        )
        .await;
    }

    // A frame that promises more than arrives before the stream ends.
    let mut c = RawConn::tcp(addr).await.unwrap();
    let mut partial = BytesMut::new();
    partial.put_i32(full.len() as i32);
    partial.put_slice(&full[..20]);
    c.write_raw(&partial).await.unwrap();
    c.shutdown_write().await.unwrap();
    c.expect_closed(CLOSE).await.unwrap();
    good.check(&mut p, "a ConnectRequest frame cut by end of stream")
        .await;

    // A password length far beyond the frame.
    let mut lying = BytesMut::new();
    lying.put_i32(0);
    lying.put_i64(0);
    lying.put_i32(10_000);
    lying.put_i64(0);
    lying.put_i32(i32::MAX);
    lying.put_slice(&[0; 16]);
    let mut c = RawConn::tcp(addr).await.unwrap();
    c.send_frame(&lying).await.unwrap();
    c.expect_closed(CLOSE).await.unwrap();
    good.check(&mut p, "a ConnectRequest with a 2 GiB password length")
        .await;

    // Garbage: an HTTP request, then random bytes; the stream then ends.
    let mut c = RawConn::tcp(addr).await.unwrap();
    c.write_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    c.expect_closed(CLOSE).await.unwrap();
    good.check(&mut p, "an HTTP request").await;
    for round in 0..10 {
        let n = rng.range(1, 300) as usize;
        let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        let mut c = RawConn::tcp(addr).await.unwrap();
        c.write_raw(&junk).await.unwrap();
        c.shutdown_write().await.unwrap();
        c.expect_closed(CLOSE).await.unwrap();
        good.check(&mut p, &format!("garbage round {round} ({n} bytes)"))
            .await;
    }

    // A connection that closes right away, or half-way through the length.
    let c = RawConn::tcp(addr).await.unwrap();
    drop(c);
    let mut c = RawConn::tcp(addr).await.unwrap();
    c.write_raw(&[0, 0]).await.unwrap();
    c.shutdown_write().await.unwrap();
    c.expect_closed(CLOSE).await.unwrap();
    good.check(&mut p, "connections closed early").await;

    good.check_tree().await;
    tokio::task::block_in_place(|| p.restart()).unwrap();
    let c = client(&p).await;
    assert_eq!(c.get_data("/keep").await.unwrap().0, b"precious");
    let counter = good.writes.to_string();
    assert_eq!(
        c.get_data("/keep/counter").await.unwrap().0,
        counter.as_bytes()
    );
}

/// Bad requests inside a session: an unknown opcode is answered with -6 and the connection
/// stays usable; malformed bodies, short headers, oversized frames and absurd vector
/// counts close the connection (or are answered with an error); nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_inside_a_session() {
    let max = MAX_FRAME.to_string();
    let mut p = coordinator(&["--max-frame-bytes", &max]);
    let addr = p.addr();
    let mut good = Bystander::new(&p).await;

    // Unknown opcodes: error -6, then the same connection and session carry on.
    let mut c = RawConn::connect(addr, 10_000).await.unwrap();
    let id = c.session_id();
    for unknown in [999, 50, -77, i32::MAX] {
        let r = c.call(unknown, b"whatever").await.unwrap();
        assert_eq!(r.err(), -6, "opcode {unknown}: expected Unimplemented");
        assert!(r.body.is_empty(), "an error reply has no body");
        let r = c
            .call(op::EXISTS, &path_watch_body("/keep", false))
            .await
            .unwrap();
        assert_eq!(
            r.err(),
            0,
            "the connection is unusable after opcode {unknown}"
        );
        good.check(&mut p, &format!("unknown opcode {unknown}"))
            .await;
    }
    c.ping().await.unwrap();
    c.call(op::CREATE, &create_body("/after-unknown", b"", 1))
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(c.session_id(), id);
    c.close_session().await.unwrap();

    // Malformed bodies of known opcodes: closed, or answered with an error for that xid.
    let mut body = BytesMut::new();
    body.put_i32(1000);
    body.put_slice(b"/abc");
    let mut trailing = set_data_body("/keep", b"x", -1);
    trailing.truncate(trailing.len() - 2);
    let mut huge_acl = BytesMut::new();
    huge_acl.put_i32(4);
    huge_acl.put_slice(b"/bad");
    huge_acl.put_i32(-1);
    huge_acl.put_i32(i32::MAX);
    let cases: Vec<(&str, i32, BytesMut)> = vec![
        ("create with a path longer than the body", op::CREATE, body),
        ("create with an empty body", op::CREATE, BytesMut::new()),
        ("create with a 2^31 ACL count", op::CREATE, huge_acl),
        ("getData with an empty body", op::GET_DATA, BytesMut::new()),
        ("setData cut short", op::SET_DATA, trailing),
        (
            "delete with a negative path length",
            op::DELETE,
            BytesMut::from(&[0xff, 0xff, 0xff, 0xf0][..]),
        ),
        (
            "multi with a garbage header",
            op::MULTI,
            BytesMut::from(&[0, 0, 0, 1, 7][..]),
        ),
        ("setWatches with a 2^31 vector count", op::SET_WATCHES, {
            let mut b = SetWatches::default().to_bytes();
            b[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
            b
        }),
    ];
    for (what, opcode, body) in cases {
        let mut c = RawConn::connect(addr, 10_000).await.unwrap();
        c.send_request(7, opcode, &body).await.unwrap();
        match c.read_frame(CLOSE).await {
            Ok(None) => {}
            Ok(Some(frame)) => {
                let r = fjord_shared::jute::ReplyHeader::read(
                    &mut fjord_shared::jute::Reader::new(&frame),
                )
                .unwrap();
                assert_eq!(r.xid, 7, "{what}: reply to the wrong xid");
                assert_ne!(r.err, 0, "{what}: a malformed request was accepted");
            }
            Err(e) => panic!("{what}: neither an answer nor a close: {e:#}"),
        }
        good.check(&mut p, what).await;
    }

    // Request headers shorter than 8 bytes.
    for n in [0usize, 3, 7] {
        let mut c = RawConn::connect(addr, 10_000).await.unwrap();
        c.send_frame(&[1u8; 7][..n]).await.unwrap();
        c.expect_closed(CLOSE).await.unwrap();
        good.check(&mut p, &format!("a {n}-byte request")).await;
    }

    // Frame lengths out of range inside a session.
    for len in [(MAX_FRAME + 1) as i32, -1, -100_000] {
        let mut c = RawConn::connect(addr, 10_000).await.unwrap();
        c.write_raw(&len.to_be_bytes()).await.unwrap();
        c.expect_closed(CLOSE).await.unwrap();
        good.check(&mut p, &format!("a request length of {len}"))
            .await;
    }

    // A whole request just over the limit is refused; one well inside it is served.
    let mut c = RawConn::connect(addr, 10_000).await.unwrap();
    let big = vec![b'x'; MAX_FRAME - 1024];
    c.call(op::SET_DATA, &set_data_body("/keep/counter", &big, -1))
        .await
        .unwrap()
        .ok()
        .unwrap();
    let r = c
        .call(op::GET_DATA, &path_watch_body("/keep/counter", false))
        .await
        .unwrap();
    assert_eq!(r.ok().unwrap().body.len(), 4 + big.len() + 68);
    let too_big = vec![b'y'; MAX_FRAME];
    // The server may close before the whole frame is written: a failed write is fine here.
    let _ = c
        .send_request(
            99,
            op::SET_DATA,
            &set_data_body("/keep/counter", &too_big, -1),
        )
        .await;
    c.expect_closed(CLOSE).await.unwrap();
    good.check(&mut p, "a request over the frame limit").await;

    // A valid request trickled in one byte at a time is still one request.
    let mut c = RawConn::connect(addr, 10_000).await.unwrap();
    let mut frame = BytesMut::new();
    let req = create_body("/keep/trickled", b"t", 0);
    frame.put_i32((8 + req.len()) as i32);
    frame.put_i32(1);
    frame.put_i32(op::CREATE);
    frame.put_slice(&req);
    for b in frame.iter() {
        c.write_raw(&[*b]).await.unwrap();
    }
    let r = c.read_reply(1, CLOSE).await.unwrap();
    assert_eq!(r.err(), 0);
    c.call(
        op::DELETE,
        &fjord_tests::zk::delete_body("/keep/trickled", -1),
    )
    .await
    .unwrap()
    .ok()
    .unwrap();

    good.check(&mut p, "everything").await;
    good.check_tree().await;
    tokio::task::block_in_place(|| p.restart()).unwrap();
    let c = client(&p).await;
    assert_eq!(c.get_data("/keep").await.unwrap().0, b"precious");
    let mut root = c.list_children("/").await.unwrap();
    root.sort();
    assert_eq!(root, ["keep", "zookeeper"]);
}

/// Framed garbage inside a session (seeded): every frame is answered or closes the
/// connection; the server and the bystander carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_inside_a_session() {
    let mut p = coordinator(&[]);
    let addr = p.addr();
    let mut good = Bystander::new(&p).await;
    let mut rng = Rng::from_env(0xBAD_F00D);
    let mut c = RawConn::connect(addr, 10_000).await.unwrap();
    let mut closed = 0;
    for round in 0..40 {
        let n = rng.range(0, 120) as usize;
        let payload: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        // Half of them with a real opcode, so the body parsers see the garbage.
        let opcode = if round % 2 == 0 {
            [
                op::CREATE,
                op::DELETE,
                op::EXISTS,
                op::GET_DATA,
                op::SET_DATA,
                op::GET_CHILDREN2,
                op::MULTI,
            ][rng.range(0, 7) as usize]
        } else {
            rng.next_u64() as i32
        };
        let xid = 1000 + round;
        let mut frame = BytesMut::new();
        frame.put_i32(xid);
        frame.put_i32(opcode);
        frame.put_slice(&payload);
        c.send_frame(&frame).await.unwrap();
        // Whatever happens must happen within the bound: a reply, or a close.
        match c.read_frame(CLOSE).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                closed += 1;
                c = RawConn::connect(addr, 10_000).await.unwrap();
            }
            Err(e) => panic!("round {round} (op {opcode}): neither an answer nor a close: {e:#}"),
        }
        good.check(&mut p, &format!("random request {round} (op {opcode})"))
            .await;
    }
    eprintln!("{closed} of 40 random requests closed their connection");
    // Some random requests may have been valid (e.g. an exists); none may have changed
    // anything the bystander owns.
    let (data, _) = good.c.get_data("/keep").await.unwrap();
    assert_eq!(data, b"precious");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_letter_words() {
    let p = coordinator(&[]);
    let addr = p.addr();
    assert_eq!(four_letter(addr, "ruok").await.unwrap(), "imok");

    let count = |text: &str| -> i64 {
        let line = text
            .lines()
            .find(|l| l.starts_with("zk_znode_count"))
            .unwrap_or_else(|| panic!("mntr has no zk_znode_count:\n{text}"));
        line.split_whitespace()
            .nth(1)
            .expect("a value")
            .parse()
            .expect("a number")
    };
    let before = count(&four_letter(addr, "mntr").await.unwrap());
    let c = client(&p).await;
    mk(&c, "/a", b"").await;
    mk(&c, "/a/b", b"").await;
    mk(&c, "/c", b"").await;
    let after = count(&four_letter(addr, "mntr").await.unwrap());
    assert_eq!(after - before, 3, "zk_znode_count must follow the tree");

    // A four-letter word does not disturb sessions.
    assert_eq!(c.get_data("/a").await.unwrap().1.version, 0);
}
