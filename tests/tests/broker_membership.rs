//! Broker membership against the real binaries: a broker registers under
//! `/brokers/ids/<id>` with an ephemeral node holding Kafka's JSON; a second broker with an id
//! that a live broker holds gives up with a one-line reason; a broker killed with `kill -9`
//! comes back with the same id and data dir (after its old session has gone) and serves its
//! partitions again; a clean SIGTERM removes the registration at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fjord_tests::{fjord, json, Output, Process, Spec};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The brokers' coordinator session timeout.
const SESSION_MS: u64 = 2000;
/// The bound on one CLI run.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

fn coordinator() -> Process {
    Spec::coordinator()
        .args(["--tick-ms", "200"])
        .start()
        .expect("the coordinator starts")
}

fn broker_spec(id: u32, coord: &Process) -> Spec {
    Spec::broker(id, coord.addr()).args(["--session-timeout-ms", &SESSION_MS.to_string()])
}

fn broker(id: u32, coord: &Process) -> Process {
    broker_spec(id, coord)
        .start()
        .unwrap_or_else(|e| panic!("broker {id} starts: {e:#}"))
}

/// `fjord --coordinator ADDR coord ARGS..`.
fn coord_cli(coord: &Process, args: &[&str]) -> Output {
    let mut all = vec!["--coordinator".to_owned(), coord.connect_string()];
    all.push("coord".to_owned());
    all.extend(args.iter().map(|a| (*a).to_owned()));
    fjord(all, "", CLI_TIMEOUT).unwrap()
}

/// `fjord --bootstrap ADDR ARGS..` with `stdin`; must succeed.
fn cli_ok(b: &Process, args: &[&str], stdin: &str) -> Output {
    let mut all = vec!["--bootstrap".to_owned(), b.connect_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    fjord(all, stdin, CLI_TIMEOUT).unwrap().ok().unwrap()
}

/// The ids under `/brokers/ids`.
fn registered_ids(coord: &Process) -> Vec<String> {
    let out = coord_cli(coord, &["ls", "/brokers/ids"]);
    assert!(out.success(), "{out}");
    out.stdout_lines()
        .iter()
        .map(|l| l.trim().to_owned())
        .collect()
}

/// The data of `/brokers/ids/<id>`, parsed.
fn registration(coord: &Process, id: u32) -> json::Value {
    let out = coord_cli(coord, &["get", &format!("/brokers/ids/{id}")]);
    assert!(out.success(), "{out}");
    json::parse(out.stdout.trim()).unwrap()
}

/// The `ephemeralOwner` of a node, from `fjord coord stat`.
fn ephemeral_owner(coord: &Process, path: &str) -> i64 {
    let out = coord_cli(coord, &["stat", path]);
    assert!(out.success(), "{out}");
    let value = out
        .stdout
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "ephemeralOwner").then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no ephemeralOwner in the stat:\n{out}"));
    let hex = value.strip_prefix("0x").unwrap_or(&value);
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("ephemeralOwner {value:?}: {e}")) as i64
}

/// Produces `lines` to `topic` through broker `b`, checking the acknowledged count.
fn produce(b: &Process, topic: &str, lines: &[String]) {
    let mut input = lines.join("\n");
    input.push('\n');
    let out = cli_ok(b, &["produce", topic], &input);
    assert!(
        out.stderr
            .contains(&format!("acknowledged {} record(s)", lines.len())),
        "{out}"
    );
}

/// Every value of a one-partition `topic`, in offset order.
fn consume_all(b: &Process, topic: &str) -> Vec<String> {
    let out = cli_ok(b, &["consume", topic, "--from", "beginning"], "");
    out.stdout.lines().map(str::to_owned).collect()
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// A second broker with an id that a live broker holds waits (up to its session timeout,
/// in case the holder is a dead incarnation of itself), then exits non-zero with a one-line
/// reason naming the id. The live broker's registration and service are untouched.
#[test]
fn duplicate_id_is_refused_with_a_one_line_reason() {
    let coord = coordinator();
    let first = broker(7, &coord);
    let owner = ephemeral_owner(&coord, "/brokers/ids/7");
    assert_ne!(owner, 0, "/brokers/ids/7 is not ephemeral");

    let bound = Duration::from_millis(SESSION_MS) * 2 + Duration::from_secs(8);
    let out = broker_spec(7, &coord)
        .run_to_exit(bound)
        .expect("the duplicate broker exits by itself");
    assert!(
        !out.success() && out.status.code().is_some(),
        "a duplicate id must exit non-zero (not by a signal):\n{out}"
    );
    let last = out
        .stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let words: Vec<&str> = last
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    assert!(
        words.contains(&"7") && last.to_ascii_lowercase().contains("id"),
        "the last stderr line must name the duplicate id 7: {last:?}\n{out}"
    );
    assert!(
        out.elapsed >= Duration::from_millis(SESSION_MS * 3 / 4),
        "gave up after {:?}, without waiting out a possibly stale registration (session timeout {SESSION_MS} ms)\n{out}",
        out.elapsed
    );

    // The live broker keeps its registration and keeps serving.
    assert_eq!(
        ephemeral_owner(&coord, "/brokers/ids/7"),
        owner,
        "the duplicate touched the live broker's registration"
    );
    assert_eq!(registered_ids(&coord), ["7"]);
    let data = lines("still-serving", 3);
    produce(&first, "dup-check", &data);
    assert_eq!(consume_all(&first, "dup-check"), data);
}

/// `kill -9`, then a restart with the same id, data dir and port: the broker waits for its
/// old session to go, registers with a new one, and serves its partitions again with all
/// the data acknowledged before the kill.
#[test]
fn restart_after_kill9_rejoins_and_serves_its_partitions() {
    let coord = coordinator();
    let mut b = broker(1, &coord);
    cli_ok(&b, &["topics", "create", "kept", "--partitions", "1"], "");
    let before = lines("before", 20);
    produce(&b, "kept", &before);
    assert_eq!(consume_all(&b, "kept"), before);
    let old_owner = ephemeral_owner(&coord, "/brokers/ids/1");

    b.kill9().unwrap();
    // Right away: the old registration still stands (its session has not expired yet), so
    // the new process has to wait it out.
    assert_eq!(
        ephemeral_owner(&coord, "/brokers/ids/1"),
        old_owner,
        "the registration went at once on kill -9"
    );
    let started = Instant::now();
    b.restart()
        .unwrap_or_else(|e| panic!("the broker did not come back with its own id: {e:#}"));
    eprintln!("restarted after {:?}", started.elapsed());

    let new_owner = ephemeral_owner(&coord, "/brokers/ids/1");
    assert_ne!(new_owner, 0);
    assert_ne!(
        new_owner, old_owner,
        "the registration still belongs to the killed process's session"
    );
    assert_eq!(
        registration(&coord, 1)
            .get("port")
            .and_then(json::Value::as_i64),
        Some(i64::from(b.addr().port()))
    );

    // Its partition is served again: old data readable, new writes acknowledged. Leadership
    // may take a moment to settle after the rejoin, so the first produce is retried.
    let after = lines("after", 5);
    let mut input = after.join("\n");
    input.push('\n');
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    for _ in 0..60 {
        let out = fjord(
            [
                "--bootstrap",
                &b.connect_string(),
                "produce",
                "kept",
                "--retries",
                "2",
                "--request-timeout-ms",
                "2000",
            ],
            &input,
            CLI_TIMEOUT,
        )
        .unwrap();
        if out.success() {
            last = None;
            break;
        }
        last = Some(out);
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(out) = last {
        panic!("the restarted broker does not accept writes:\n{out}");
    }
    let mut all = before.clone();
    all.extend(after);
    assert_eq!(consume_all(&b, "kept"), all);
}

/// `/brokers/ids/<id>` is an ephemeral node with Kafka's registration JSON (version 5, host,
/// port, endpoints, timestamp, rack). It disappears when the broker's session expires after
/// `kill -9`, and at once after a clean SIGTERM (which exits 0).
#[test]
fn registration_is_ephemeral_kafka_json() {
    let coord = coordinator();
    let mut b2 = broker_spec(2, &coord)
        .args(["--rack", "rack-a"])
        .start()
        .unwrap();
    let mut b3 = broker(3, &coord);
    assert_eq!(registered_ids(&coord), ["2", "3"]);

    let reg = registration(&coord, 2);
    let port = b2.addr().port();
    assert_eq!(
        reg.get("version").and_then(json::Value::as_i64),
        Some(5),
        "{reg:?}"
    );
    assert_eq!(
        reg.get("host").and_then(json::Value::as_str),
        Some("127.0.0.1"),
        "{reg:?}"
    );
    assert_eq!(
        reg.get("port").and_then(json::Value::as_i64),
        Some(i64::from(port)),
        "{reg:?}"
    );
    let endpoints: Vec<&str> = reg
        .get("endpoints")
        .and_then(json::Value::as_array)
        .unwrap_or_else(|| panic!("no endpoints array: {reg:?}"))
        .iter()
        .map(|e| e.as_str().expect("endpoints are strings"))
        .collect();
    assert_eq!(endpoints, [format!("PLAINTEXT://127.0.0.1:{port}")]);
    let ts: i64 = reg
        .get("timestamp")
        .and_then(json::Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("timestamp is not a string of milliseconds: {reg:?}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (now - 120_000..=now + 5_000).contains(&ts),
        "registration timestamp {ts} is not about now ({now})"
    );
    assert_eq!(
        reg.get("rack").and_then(json::Value::as_str),
        Some("rack-a"),
        "{reg:?}"
    );
    let rack3 = registration(&coord, 3);
    assert!(
        matches!(rack3.get("rack"), None | Some(json::Value::Null)),
        "a broker without --rack has no rack: {rack3:?}"
    );

    let owner = ephemeral_owner(&coord, "/brokers/ids/2");
    assert_ne!(owner, 0, "/brokers/ids/2 is not ephemeral");
    assert_ne!(
        owner,
        ephemeral_owner(&coord, "/brokers/ids/3"),
        "two brokers share one session"
    );

    // kill -9: nobody closes the session, so the node goes when the session expires.
    b2.kill9().unwrap();
    let killed = Instant::now();
    let bound = Duration::from_millis(SESSION_MS) * 2 + Duration::from_secs(5);
    loop {
        if !registered_ids(&coord).contains(&"2".to_owned()) {
            break;
        }
        assert!(
            killed.elapsed() < bound,
            "/brokers/ids/2 still exists {:?} after kill -9 (session timeout {SESSION_MS} ms)",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("/brokers/ids/2 gone {:?} after kill -9", killed.elapsed());

    // SIGTERM: a clean shutdown closes the session, so the node goes well before a
    // session timeout could have expired it.
    let status = b3.terminate(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "SIGTERM exit status {status}");
    let exited = Instant::now();
    let limit = Duration::from_millis(SESSION_MS / 2);
    loop {
        let ids = registered_ids(&coord);
        if ids.is_empty() {
            break;
        }
        assert!(
            exited.elapsed() < limit,
            "{ids:?} still registered {:?} after a clean shutdown; the session was not closed",
            exited.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
