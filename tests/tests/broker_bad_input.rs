//! Bad input on the broker's Kafka port, over raw TCP: frames over `--max-request-bytes`,
//! negative and too-short lengths, garbage, an unknown API key, unsupported versions, a
//! frame cut off mid-way and an array count far larger than its frame. Each closes only the
//! connection it came on (with a log line saying why); meanwhile another raw connection
//! and the `fjord` CLI keep working, and everything stored stays intact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Context};
use fjord_tests::{fjord, Output, Process, Spec};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const MAX_REQUEST: usize = 4096;
const CLI_TIMEOUT: Duration = Duration::from_secs(20);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

const API_PRODUCE: i16 = 0;
const API_FETCH: i16 = 1;
const API_METADATA: i16 = 3;
const API_API_VERSIONS: i16 = 18;
const UNSUPPORTED_VERSION: i16 = 35;

/// A request frame: length, then a v1 request header (api key, version, correlation id,
/// client id) and `body`.
fn frame(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let client_id = b"bad-input-test";
    let mut payload = Vec::new();
    payload.extend_from_slice(&api_key.to_be_bytes());
    payload.extend_from_slice(&version.to_be_bytes());
    payload.extend_from_slice(&correlation_id.to_be_bytes());
    payload.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    payload.extend_from_slice(client_id);
    payload.extend_from_slice(body);
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    out
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Reads one response frame (bounded in size and time).
fn read_response(s: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .context("reading a response length")?;
    let len = i32::from_be_bytes(len);
    if !(4..=1 << 20).contains(&len) {
        bail!("response length {len}");
    }
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).context("reading a response body")?;
    Ok(body)
}

/// An ApiVersions v0 round trip: the answer has our correlation id, no error, and lists
/// Produce and Fetch.
fn api_versions(s: &mut TcpStream, correlation_id: i32) -> anyhow::Result<()> {
    s.write_all(&frame(API_API_VERSIONS, 0, correlation_id, &[]))?;
    let r = read_response(s)?;
    if r.len() < 10 {
        bail!("short ApiVersions response {r:?}");
    }
    let corr = i32::from_be_bytes(r[0..4].try_into()?);
    let error = i16::from_be_bytes(r[4..6].try_into()?);
    let n = i32::from_be_bytes(r[6..10].try_into()?);
    if corr != correlation_id || error != 0 {
        bail!("ApiVersions answered correlation id {corr} error {error}");
    }
    let keys: Vec<i16> = r[10..]
        .chunks_exact(6)
        .take(n.max(0) as usize)
        .map(|c| i16::from_be_bytes([c[0], c[1]]))
        .collect();
    if !keys.contains(&API_PRODUCE) || !keys.contains(&API_FETCH) {
        bail!("ApiVersions lists {keys:?}");
    }
    Ok(())
}

/// Waits for the server to close the connection: EOF or a reset, with no bytes before it.
fn expect_closed(s: &mut TcpStream, what: &str) {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => panic!(
                "{what}: expected the connection to be closed, got {n} bytes: {:?}",
                &buf[..n]
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: the connection is still open after {IO_TIMEOUT:?}")
            }
            Err(e) if e.kind() == ErrorKind::Interrupted && Instant::now() < deadline => {}
            Err(e) => panic!("{what}: unexpected read error {e}"),
        }
    }
}

/// Sends `bytes` on a new connection and expects the broker to close it, log a line naming
/// that connection (containing `also`, if given), and stay up.
fn bad_connection(b: &mut Process, what: &str, bytes: &[u8], also: Option<&str>) {
    let mark = b.log_len();
    let mut s = connect(b.addr());
    let peer = s.local_addr().unwrap().to_string();
    // The broker may close before reading everything; a failed write is fine.
    let _ = s.write_all(bytes);
    expect_closed(&mut s, what);
    let line = b
        .wait_for_log_line(
            mark,
            IO_TIMEOUT,
            &format!("about {what} from {peer}"),
            |l| l.contains(&peer) && also.is_none_or(|a| l.contains(a)),
        )
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    eprintln!("{what}: {line}");
    assert!(b.is_running(), "the broker died after {what}");
    // Paced, so the bad input overlaps the other clients' traffic.
    std::thread::sleep(Duration::from_millis(40));
}

fn broker_with_limit() -> (Process, Process) {
    let coord = Spec::coordinator()
        .args(["--tick-ms", "200"])
        .start()
        .unwrap();
    let b = Spec::broker(1, coord.addr())
        .args(["--max-request-bytes", &MAX_REQUEST.to_string()])
        .start()
        .unwrap();
    (coord, b)
}

fn cli(b: &Process, args: &[&str], stdin: &str) -> Output {
    let mut all = vec!["--bootstrap".to_owned(), b.connect_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    fjord(all, stdin, CLI_TIMEOUT).unwrap()
}

fn produce_ok(b: &Process, topic: &str, lines: &[String]) {
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let out = cli(b, &["produce", topic], &input);
    assert!(
        out.success()
            && out
                .stderr
                .contains(&format!("acknowledged {} record(s)", lines.len())),
        "{out}"
    );
}

fn consume_all(b: &Process, topic: &str) -> Vec<String> {
    let out = cli(b, &["consume", topic, "--from", "beginning"], "");
    assert!(out.success(), "{out}");
    out.stdout.lines().map(str::to_owned).collect()
}

/// The log lines since `mark`, without backtrace frames (which start with spaces).
fn log_lines(b: &Process, mark: u64) -> String {
    let log = b.log_since(mark);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with(' '))
        .take(20)
        .collect();
    lines.join("\n")
}

fn assert_no_panic(b: &Process) {
    let log = b.log_since(0);
    assert!(
        !log.contains("panicked") && !log.contains("memory allocation"),
        "the broker panicked or aborted\n{}",
        log_lines(b, 0)
    );
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let (_coord, mut b) = broker_with_limit();
    let topic = "intact";
    let out = cli(&b, &["topics", "create", topic, "--partitions", "1"], "");
    assert!(out.success(), "{out}");
    let mut expected: Vec<String> = (0..50).map(|i| format!("initial-{i}")).collect();
    produce_ok(&b, topic, &expected);

    // A well-behaved raw client that stays connected throughout.
    let mut keeper = connect(b.addr());
    api_versions(&mut keeper, 1).unwrap();

    // Another client (the CLI) produces while the bad input arrives.
    let addr = b.connect_string();
    let producer = std::thread::spawn(move || {
        let mut sent = Vec::new();
        for i in 0..8 {
            let batch: Vec<String> = (0..5).map(|j| format!("during-{i}-{j}")).collect();
            let input: String = batch.iter().map(|l| format!("{l}\n")).collect();
            let out = fjord(
                ["--bootstrap", &addr, "produce", "intact"],
                &input,
                CLI_TIMEOUT,
            )
            .unwrap();
            if !out.success() || !out.stderr.contains("acknowledged 5 record(s)") {
                return Err(out);
            }
            sent.extend(batch);
            std::thread::sleep(Duration::from_millis(30));
        }
        Ok(sent)
    });

    // Larger than --max-request-bytes: the length alone decides, whatever follows.
    let mut big = frame(API_API_VERSIONS, 0, 2, &vec![0u8; 5000]);
    let size = (big.len() - 4) as i32;
    assert!(size as usize > MAX_REQUEST);
    big[0..4].copy_from_slice(&size.to_be_bytes());
    bad_connection(
        &mut b,
        "a frame over --max-request-bytes",
        &big,
        Some(&size.to_string()),
    );
    bad_connection(
        &mut b,
        "a 2 GiB length",
        &i32::MAX.to_be_bytes(),
        Some(&i32::MAX.to_string()),
    );
    // An HTTP request read as a Kafka length is about 1.2 GB.
    bad_connection(
        &mut b,
        "an HTTP request",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        None,
    );
    let mut negative = (-5i32).to_be_bytes().to_vec();
    negative.extend_from_slice(b"abcdefgh");
    bad_connection(&mut b, "a negative length", &negative, Some("-5"));
    let mut short = 3i32.to_be_bytes().to_vec();
    short.extend_from_slice(&[0, 18, 0]);
    bad_connection(&mut b, "a frame shorter than a header", &short, None);

    let mut garbage = 64i32.to_be_bytes().to_vec();
    garbage.extend((0..64u32).map(|i| (i.wrapping_mul(0x9d) ^ 0xa5) as u8 | 0x80));
    bad_connection(&mut b, "garbage", &garbage, None);
    bad_connection(
        &mut b,
        "a Produce v9 with a garbage body",
        &frame(
            API_PRODUCE,
            9,
            3,
            &[0xff, 0x13, 0x77, 0x00, 0x42, 0xfe, 0x01],
        ),
        None,
    );
    bad_connection(
        &mut b,
        "an unknown API key",
        &frame(9999, 0, 4, &[]),
        Some("9999"),
    );
    bad_connection(
        &mut b,
        "an unsupported Metadata version",
        &frame(API_METADATA, 99, 5, &[0, 0, 0, 0]),
        None,
    );

    // A frame cut off mid-way: the client goes away; the broker just drops the connection.
    {
        let mut s = connect(b.addr());
        let f = frame(API_API_VERSIONS, 0, 6, &[]);
        s.write_all(&100i32.to_be_bytes()).unwrap();
        s.write_all(&f[4..]).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        expect_closed(&mut s, "a truncated frame");
    }

    // An unsupported ApiVersions version gets UNSUPPORTED_VERSION (KIP-511) and the
    // connection stays usable.
    {
        let mut s = connect(b.addr());
        s.write_all(&frame(API_API_VERSIONS, 99, 7, &[])).unwrap();
        let r = read_response(&mut s).unwrap();
        assert_eq!(i32::from_be_bytes(r[0..4].try_into().unwrap()), 7);
        assert_eq!(
            i16::from_be_bytes(r[4..6].try_into().unwrap()),
            UNSUPPORTED_VERSION,
            "ApiVersions v99: {r:?}"
        );
        api_versions(&mut s, 8).unwrap();
    }

    // The other clients never noticed.
    api_versions(&mut keeper, 9).expect("the long-lived connection still works");
    let during = producer
        .join()
        .unwrap()
        .unwrap_or_else(|out| panic!("the CLI producer failed during the bad input:\n{out}"));
    expected.extend(during);

    // A produce over the limit through the CLI: its connection is closed and the CLI says
    // the record was not acknowledged; a normal produce right after is fine.
    let huge_line = "x".repeat(MAX_REQUEST + 100);
    let out = cli(
        &b,
        &[
            "produce",
            topic,
            "--retries",
            "0",
            "--request-timeout-ms",
            "3000",
        ],
        &format!("{huge_line}\n"),
    );
    assert!(
        !out.success(),
        "a {} byte record was acknowledged with --max-request-bytes {MAX_REQUEST}\n{out}",
        huge_line.len()
    );
    assert!(
        out.stderr.contains("not acknowledged"),
        "the CLI does not say the record was not acknowledged\n{out}"
    );
    eprintln!("over the limit: {}", out.stderr.trim());
    let tail: Vec<String> = (0..3).map(|i| format!("after-{i}")).collect();
    produce_ok(&b, topic, &tail);
    expected.extend(tail);

    assert_eq!(
        consume_all(&b, topic),
        expected,
        "stored data changed under bad input"
    );
    api_versions(&mut keeper, 10).unwrap();
    assert!(b.is_running());
    assert_no_panic(&b);
}

/// A tiny frame that declares an array of i32::MAX elements (Metadata v1, topics): the count
/// is checked against the bytes that remain, the connection is closed, and the broker and
/// its other clients carry on. (Allocating for the declared count first would abort the
/// whole process.)
#[test]
fn an_array_count_larger_than_its_frame_closes_only_that_connection() {
    let (_coord, mut b) = broker_with_limit();
    let topic = "survives";
    let lines: Vec<String> = (0..10).map(|i| format!("kept-{i}")).collect();
    produce_ok(&b, topic, &lines);
    let mut keeper = connect(b.addr());
    api_versions(&mut keeper, 1).unwrap();

    let mark = b.log_len();
    let mut s = connect(b.addr());
    s.write_all(&frame(API_METADATA, 1, 2, &i32::MAX.to_be_bytes()))
        .unwrap();
    let mut buf = [0u8; 64];
    let read = s.read(&mut buf);
    // Give a dying process a moment to be reaped before asking whether it runs.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        b.is_running(),
        "the broker died on a 32-byte Metadata v1 request declaring {} topics (read on that connection: {read:?})\n{}",
        i32::MAX,
        log_lines(&b, mark)
    );
    assert!(
        matches!(read, Ok(0)) || matches!(&read, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "expected the connection to be closed, got {read:?} {buf:?}"
    );
    api_versions(&mut keeper, 3).expect("the other connection still works");
    assert_eq!(consume_all(&b, topic), lines);
    assert_no_panic(&b);
}
