//! A broker that loses its coordinator: with the coordinator frozen (SIGSTOP) the broker
//! keeps accepting writes for less than its session timeout, refuses them once the timeout
//! has passed (another broker may have taken over its partitions by then), and accepts them
//! again after the coordinator is back (SIGCONT) and the broker has rejoined. Nothing
//! acknowledged is lost, and nothing refused shows up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fjord_tests::{fjord, Output, Process, Spec};
use std::time::{Duration, Instant};

const SESSION_MS: u64 = 2000;
const CLI_TIMEOUT: Duration = Duration::from_secs(20);
const TOPIC: &str = "loss";

/// `fjord produce` that gives up quickly: one attempt, a 1 s request timeout.
fn produce_once(b: &Process, line: &str) -> Output {
    fjord(
        [
            "--bootstrap",
            &b.connect_string(),
            "produce",
            TOPIC,
            "--retries",
            "0",
            "--request-timeout-ms",
            "1000",
            "--connect-timeout-ms",
            "1000",
        ],
        &format!("{line}\n"),
        CLI_TIMEOUT,
    )
    .unwrap()
}

fn acknowledged(out: &Output) -> bool {
    out.success() && out.stderr.contains("acknowledged 1 record(s)")
}

#[test]
fn writes_stop_after_the_session_timeout_and_resume_after_rejoin() {
    let mut coord = Spec::coordinator()
        .args(["--tick-ms", "200"])
        .start()
        .unwrap();
    let b = Spec::broker(1, coord.addr())
        .args(["--session-timeout-ms", &SESSION_MS.to_string()])
        .start()
        .unwrap();
    let create = fjord(
        [
            "--bootstrap",
            &b.connect_string(),
            "topics",
            "create",
            TOPIC,
            "--partitions",
            "1",
        ],
        "",
        CLI_TIMEOUT,
    )
    .unwrap();
    assert!(create.success(), "{create}");

    let mut acked: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for i in 0..3 {
        let line = format!("before-{i}");
        let out = produce_once(&b, &line);
        assert!(acknowledged(&out), "{out}");
        acked.push(line);
    }

    coord.pause().unwrap();
    let paused = Instant::now();

    // Well within the session timeout the broker still takes writes.
    let out = produce_once(&b, "early");
    let early_at = paused.elapsed();
    assert!(
        early_at < Duration::from_millis(SESSION_MS / 2),
        "the early produce took until {early_at:?} after the pause; too late to tell anything\n{out}"
    );
    assert!(
        acknowledged(&out),
        "a produce {early_at:?} after the coordinator froze (session timeout {SESSION_MS} ms) was not acknowledged\n{out}\n{}",
        b.log_tail(20)
    );
    acked.push("early".to_owned());

    // Past the session timeout (plus a margin for the broker's own timer) writes are refused.
    let refuse_at = Duration::from_millis(SESSION_MS + 1000);
    std::thread::sleep(refuse_at.saturating_sub(paused.elapsed()));
    let out = produce_once(&b, "late");
    assert!(
        !out.success(),
        "a produce {:?} after the coordinator froze (session timeout {SESSION_MS} ms) was accepted\n{out}\n{}",
        paused.elapsed(),
        b.log_tail(20)
    );
    assert!(
        out.stderr.contains("not acknowledged"),
        "the refusal is not reported as unacknowledged\n{out}"
    );
    refused.push("late".to_owned());

    let mark = b.log_len();
    coord.resume().unwrap();
    let resumed = Instant::now();

    // Within a bounded time the broker rejoins and takes writes again.
    let bound = Duration::from_secs(15);
    let mut attempt = 0;
    let back_at = loop {
        attempt += 1;
        let line = format!("after-{attempt}");
        let out = produce_once(&b, &line);
        if acknowledged(&out) {
            acked.push(line);
            break resumed.elapsed();
        }
        assert!(!out.success(), "exit 0 without the acknowledgement\n{out}");
        refused.push(line);
        assert!(
            resumed.elapsed() < bound && attempt < 100,
            "no write accepted within {bound:?} of the coordinator's return ({attempt} attempts)\nlast: {out}\n{}",
            b.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("writes accepted again {back_at:?} after SIGCONT ({attempt} attempts)");
    let line = b
        // Either the same session came back (the broker reconnected before the
        // coordinator's next expiry tick) or it rejoined with a new one: both are correct.
        .wait_for_log_line(
            mark,
            Duration::from_secs(5),
            "about accepting writes again",
            |l| l.contains("rejoined") || l.contains("accepting writes again"),
        )
        .unwrap();
    eprintln!("{line}");
    for i in 0..3 {
        let line = format!("final-{i}");
        let out = produce_once(&b, &line);
        assert!(acknowledged(&out), "{out}");
        acked.push(line);
    }

    // Everything acknowledged is there, in order; nothing refused is.
    let out = fjord(
        [
            "--bootstrap",
            &b.connect_string(),
            "consume",
            TOPIC,
            "--from",
            "beginning",
        ],
        "",
        CLI_TIMEOUT,
    )
    .unwrap();
    assert!(out.success(), "{out}");
    let read: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        read, acked,
        "the log does not hold exactly the acknowledged records (refused: {refused:?})"
    );
}
