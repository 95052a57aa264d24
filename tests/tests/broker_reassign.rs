//! Partition reassignment end to end with the `fjord` CLI against real processes: a
//! coordinator and three brokers, then a fourth. `topics reassign --plan`, `--execute`,
//! `--verify`, `--list` and `--cancel`; bad plans refused with a clear message and nothing
//! changed; replicas moved off a broker lose their log directory there; replication
//! factor changes 1 → 3 → 2 leave byte-identical logs on every replica; every record
//! produced is read back exactly once after each step.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fjord_tests::{fjord, Output, Process, Spec};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const CLI_TIMEOUT: Duration = Duration::from_secs(30);

struct Cluster {
    coord: Process,
    brokers: Vec<Process>,
}

impl Cluster {
    fn start(brokers: u32) -> Cluster {
        let coord = Spec::coordinator()
            .args(["--tick-ms", "200"])
            .start()
            .unwrap();
        let mut c = Cluster {
            coord,
            brokers: Vec::new(),
        };
        for _ in 0..brokers {
            c.add_broker(6000);
        }
        c
    }

    /// Starts broker `len + 1` with this coordinator session timeout.
    fn add_broker(&mut self, session_timeout_ms: u32) {
        let id = self.brokers.len() as u32 + 1;
        let b = Spec::broker(id, self.coord.addr())
            .args([
                "--session-timeout-ms".to_owned(),
                session_timeout_ms.to_string(),
            ])
            .start()
            .unwrap_or_else(|e| panic!("broker {id}: {e:#}"));
        self.brokers.push(b);
        // Wait until the first broker lists it, so plans may name it.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.run(&["cluster"], "");
            if out.success() && out.stdout.contains(&format!("\n{id} ")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "broker {id} never listed:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut all = vec!["--bootstrap".to_owned(), self.brokers[0].connect_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        fjord(all, stdin, CLI_TIMEOUT).unwrap()
    }

    fn ok(&self, args: &[&str], stdin: &str) -> Output {
        self.run(args, stdin).ok().unwrap()
    }

    /// (replicas, isr) of each partition, from `topics describe`.
    fn partitions(&self, topic: &str) -> Vec<(Vec<i32>, Vec<i32>)> {
        let out = self.ok(&["topics", "describe", topic], "");
        let list = |s: &str| -> Vec<i32> { s.split(',').map(|x| x.parse().unwrap()).collect() };
        out.stdout
            .lines()
            .skip_while(|l| !l.starts_with("PARTITION"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (list(cols[3]), list(cols[4]))
            })
            .collect()
    }

    /// The partition's log directory on broker `id`.
    fn log_dir(&self, id: i32, topic: &str, partition: i32) -> PathBuf {
        self.brokers[id as usize - 1]
            .data_dir()
            .join("logs")
            .join(format!("{topic}-{partition}"))
    }

    /// Runs `--verify FILE` until it succeeds (at most 60 s).
    fn wait_verified(&self, plan: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.run(&["topics", "reassign", "--verify", plan], "");
            if out.success() {
                assert!(out.stdout.contains("done"), "{out}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the reassignment did not finish:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Reads the topic from the beginning and checks it holds exactly `n` records
    /// `0..n` each followed by padding (one each).
    fn assert_records_prefixed(&self, topic: &str, n: usize) {
        let out = self.ok(&["consume", topic, "--from", "beginning"], "");
        let mut got: Vec<usize> = out
            .stdout
            .lines()
            .map(|l| l.trim_end_matches('v').parse().unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..n).collect::<Vec<_>>(), "records of {topic}");
    }

    /// Reads the topic from the beginning and checks it holds exactly `n` records
    /// `0..n` (one each).
    fn assert_records(&self, topic: &str, n: usize) {
        let out = self.ok(&["consume", topic, "--from", "beginning"], "");
        let mut got: Vec<usize> = out.stdout.lines().map(|l| l.parse().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..n).collect::<Vec<_>>(), "records of {topic}");
    }
}

fn produce(c: &Cluster, topic: &str, n: usize) {
    let lines: String = (0..n).map(|i| format!("{i}\n")).collect();
    let out = c.ok(&["produce", topic], &lines);
    assert!(
        out.stderr.contains(&format!("acknowledged {n} record(s)")),
        "{out}"
    );
}

fn write_plan(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn plan_json(topic: &str, moves: &[(i32, Vec<i32>)]) -> String {
    let parts: Vec<String> = moves
        .iter()
        .map(|(p, r)| format!(r#"{{"topic":"{topic}","partition":{p},"replicas":{r:?}}}"#))
        .collect();
    format!(r#"{{"version":1,"partitions":[{}]}}"#, parts.join(","))
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn reassign_plan_execute_verify_cancel_and_bad_plans() {
    let mut c = Cluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    c.ok(
        &[
            "topics",
            "create",
            "moves",
            "--partitions",
            "4",
            "--replication-factor",
            "2",
        ],
        "",
    );
    produce(&c, "moves", 4000);
    // Long enough a session to stay registered while frozen below.
    c.add_broker(60_000);
    let before = c.partitions("moves");

    // Bad plans: refused with the reason, nothing changes.
    for (text, why) in [
        (
            plan_json("moves", &[(0, vec![9, 1])]),
            "no live broker with id 9",
        ),
        (plan_json("moves", &[(0, vec![4, 4])]), "duplicate replicas"),
        (plan_json("moves", &[(0, vec![])]), "empty replica list"),
        (plan_json("nope", &[(0, vec![1])]), "no topic nope"),
        (plan_json("moves", &[(7, vec![1])]), "no partition moves-7"),
        ("{\"version\":1".to_owned(), "not a reassignment plan"),
    ] {
        let path = write_plan(&dir, "bad.json", &text);
        for action in ["--plan", "--execute"] {
            let out = c.run(&["topics", "reassign", action, &path], "");
            assert!(!out.success(), "{action} {text} was accepted:\n{out}");
            assert!(out.stderr.contains(why), "{action} {text}:\n{out}");
        }
    }
    assert_eq!(
        c.partitions("moves"),
        before,
        "a refused plan changed something"
    );

    // Move partitions 0 and 1 onto broker 4, each giving up its first replica.
    let moves: Vec<(i32, Vec<i32>)> = (0..2)
        .map(|p| (p, vec![4, before[p as usize].0[1]]))
        .collect();
    let plan = write_plan(&dir, "plan.json", &plan_json("moves", &moves));
    let shown = c.ok(&["topics", "reassign", "--plan", &plan], "");
    assert!(shown.stdout.contains("nothing was changed"), "{shown}");
    assert_eq!(c.partitions("moves"), before, "--plan changed something");
    let started = c.ok(&["topics", "reassign", "--execute", &plan], "");
    assert!(
        started
            .stdout
            .contains("started the reassignment of 2 partition(s)"),
        "{started}"
    );
    // The rollback plan printed first is the assignment before.
    assert!(
        started.stdout.contains(&format!(
            r#"{{"topic":"moves","partition":0,"replicas":[{}]}}"#,
            before[0]
                .0
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )),
        "{started}"
    );
    c.wait_verified(&plan);
    let after = c.partitions("moves");
    for (p, target) in &moves {
        let (replicas, isr) = &after[*p as usize];
        assert_eq!(replicas, target, "partition {p}");
        let mut isr = isr.clone();
        isr.sort_unstable();
        let mut want = target.clone();
        want.sort_unstable();
        assert_eq!(isr, want, "partition {p} ISR");
        let gone = before[*p as usize].0[0];
        wait_until(&format!("broker {gone} to delete moves-{p}"), || {
            !c.log_dir(gone, "moves", *p).exists()
        });
        assert!(c.log_dir(4, "moves", *p).exists());
    }
    c.assert_records("moves", 4000);
    let idle = c.ok(&["topics", "reassign", "--list"], "");
    assert!(
        idle.stdout.contains("no reassignment is in progress"),
        "{idle}"
    );

    // A reassignment that cannot finish (its new replica is frozen, but still
    // registered): listed, refused a second time, then cancelled.
    let frozen_id = 4;
    let p = 2;
    let original = before[p as usize].0.clone();
    assert!(!original.contains(&frozen_id));
    c.brokers[frozen_id as usize - 1].pause().unwrap();
    let stuck = write_plan(
        &dir,
        "stuck.json",
        &plan_json("moves", &[(p, vec![frozen_id, original[1]])]),
    );
    c.ok(&["topics", "reassign", "--execute", &stuck], "");
    let listed = c.ok(&["topics", "reassign", "--list"], "");
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("moves") && l.contains(&format!("  {p}  "))),
        "{listed}"
    );
    let verify = c.run(&["topics", "reassign", "--verify", &stuck], "");
    assert!(
        !verify.success(),
        "verify of a stuck move succeeded:\n{verify}"
    );
    assert!(verify.stdout.contains("in progress"), "{verify}");
    let again = c.run(&["topics", "reassign", "--execute", &stuck], "");
    assert!(!again.success(), "{again}");
    assert!(again.stderr.contains("already being reassigned"), "{again}");

    // Another stuck move, replaced with --additional by one that can finish: the frozen
    // broker is dropped from it at once, the original replicas stay until the new target
    // is in sync.
    let q = 3;
    let original_q = before[q as usize].0.clone();
    let spare = (1..=3).find(|b| !original_q.contains(b)).unwrap();
    let first = write_plan(
        &dir,
        "first.json",
        &plan_json("moves", &[(q, vec![frozen_id, original_q[1]])]),
    );
    c.ok(&["topics", "reassign", "--execute", &first], "");
    let second = write_plan(
        &dir,
        "second.json",
        &plan_json("moves", &[(q, vec![spare, original_q[1]])]),
    );
    c.ok(
        &["topics", "reassign", "--execute", &second, "--additional"],
        "",
    );
    c.wait_verified(&second);
    let (replicas, isr) = c.partitions("moves")[q as usize].clone();
    assert_eq!(replicas, vec![spare, original_q[1]], "after --additional");
    let mut isr = isr;
    isr.sort_unstable();
    let mut want = vec![spare, original_q[1]];
    want.sort_unstable();
    assert_eq!(isr, want);

    let cancelled = c.ok(&["topics", "reassign", "--cancel", &stuck], "");
    assert!(
        cancelled
            .stdout
            .contains("cancelled the reassignment of 1 partition(s)"),
        "{cancelled}"
    );
    let back = c.partitions("moves");
    let mut got = back[p as usize].0.clone();
    got.sort_unstable();
    let mut want = original.clone();
    want.sort_unstable();
    assert_eq!(got, want, "the cancelled partition's replicas");
    let nothing = c.run(&["topics", "reassign", "--cancel", &stuck], "");
    assert!(
        nothing.stdout.contains("is not being reassigned"),
        "{nothing}"
    );
    c.brokers[frozen_id as usize - 1].resume().unwrap();
    wait_until(
        "the frozen broker to drop its copy of the cancelled move",
        || !c.log_dir(frozen_id, "moves", p).exists(),
    );
    wait_until(
        "the frozen broker to drop its copy of the replaced move",
        || !c.log_dir(frozen_id, "moves", q).exists(),
    );
    let gone = original_q[0];
    wait_until(&format!("broker {gone} to delete moves-{q}"), || {
        !c.log_dir(gone, "moves", q).exists()
    });
    c.assert_records("moves", 4000);
}

/// The concatenated segment files of a partition's log directory, and how many there are.
fn log_bytes(dir: &std::path::Path) -> (usize, Vec<u8>) {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let bytes = segments
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    (segments.len(), bytes)
}

#[test]
fn replication_factor_changes_keep_identical_data_on_every_replica() {
    let c = Cluster::start(3);
    c.ok(
        &[
            "topics",
            "create",
            "rf",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "segment.bytes=16384",
        ],
        "",
    );
    produce(&c, "rf", 6000);
    for (rf, more) in [(3usize, 3000usize), (2, 3000)] {
        let out = c.ok(
            &[
                "topics",
                "alter",
                "rf",
                "--replication-factor",
                &rf.to_string(),
            ],
            "",
        );
        assert!(
            out.stdout
                .contains(&format!("rf now has {rf} replicas per partition")),
            "{out}"
        );
        let parts = c.partitions("rf");
        for (p, (replicas, isr)) in parts.iter().enumerate() {
            assert_eq!(replicas.len(), rf, "partition {p}: {replicas:?}");
            assert_eq!(isr.len(), rf, "partition {p} ISR: {isr:?}");
            let mut copies: Vec<(i32, (usize, Vec<u8>))> = replicas
                .iter()
                .map(|b| (*b, log_bytes(&c.log_dir(*b, "rf", p as i32))))
                .collect();
            let (first, data) = copies.remove(0);
            assert!(data.0 >= 2, "partition {p} spans several segments");
            for (b, other) in copies {
                assert!(
                    other.1 == data.1,
                    "partition {p}: broker {b}'s log ({} bytes) differs from broker {first}'s ({} bytes)",
                    other.1.len(),
                    data.1.len()
                );
            }
            for b in 1..=3 {
                if !replicas.contains(&b) {
                    wait_until(&format!("broker {b} to delete rf-{p}"), || {
                        !c.log_dir(b, "rf", p as i32).exists()
                    });
                }
            }
        }
        let total = 6000 + if rf == 3 { 0 } else { 3000 };
        c.assert_records("rf", total);
        // Writes after the change reach the new replica set.
        let lines: String = (total..total + more).map(|i| format!("{i}\n")).collect();
        c.ok(&["produce", "rf"], &lines);
        c.assert_records("rf", total + more);
    }
    let same = c.ok(&["topics", "alter", "rf", "--replication-factor", "2"], "");
    assert!(same.stdout.contains("already has 2 replicas"), "{same}");
    let too_many = c.run(&["topics", "alter", "rf", "--replication-factor", "4"], "");
    assert!(!too_many.success(), "{too_many}");
    assert!(too_many.stderr.contains("3 are live"), "{too_many}");
}

#[test]
fn a_throttled_move_copies_at_the_throttled_rate() {
    const RATE: f64 = 1024.0 * 1024.0;
    let c = Cluster::start(2);
    let dir = tempfile::tempdir().unwrap();
    c.ok(
        &[
            "topics",
            "create",
            "slow",
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
        "",
    );
    let value = "v".repeat(1000);
    let lines: String = (0..12_000).map(|i| format!("{i}{value}\n")).collect();
    c.ok(&["produce", "slow"], &lines);
    let (from, _) = c.partitions("slow")[0].clone();
    let to = if from[0] == 1 { 2 } else { 1 };
    let (_, data) = log_bytes(&c.log_dir(from[0], "slow", 0));
    let bytes = data.len() as f64;
    assert!(bytes > 10.0 * RATE, "{bytes} bytes to copy");
    let plan = write_plan(
        &dir,
        "slow.json",
        &plan_json("slow", &[(0, vec![from[0], to])]),
    );
    let started = Instant::now();
    c.ok(
        &[
            "topics",
            "reassign",
            "--execute",
            &plan,
            "--throttle",
            &(RATE as u64).to_string(),
        ],
        "",
    );
    let deadline = started + Duration::from_secs(60);
    loop {
        let out = c.run(&["topics", "reassign", "--verify", &plan], "");
        if out.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the throttled move did not finish:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = bytes / elapsed;
    eprintln!("throttled copy: {bytes} bytes in {elapsed:.2} s = {rate:.0} B/s (throttle {RATE})");
    assert!(
        (0.8 * RATE..=1.2 * RATE).contains(&rate),
        "{bytes} bytes in {elapsed:.1} s: {rate:.0} B/s against a throttle of {RATE} B/s"
    );
    // --verify removed the throttle once done: an unthrottled move is fast again.
    let (_, copy) = log_bytes(&c.log_dir(to, "slow", 0));
    assert!(copy == data, "the new replica's log differs");
    let back = write_plan(&dir, "back.json", &plan_json("slow", &[(0, vec![to])]));
    c.ok(&["topics", "reassign", "--execute", &back], "");
    c.wait_verified(&back);
    c.assert_records_prefixed("slow", 12_000);
}

#[test]
fn an_unclean_election_recovers_an_offline_partition() {
    let mut c = Cluster {
        coord: Spec::coordinator()
            .args(["--tick-ms", "200"])
            .start()
            .unwrap(),
        brokers: Vec::new(),
    };
    // Broker 1 drops a silent follower from the ISR after a second; broker 2 keeps its
    // session while frozen.
    for (id, session) in [(1u32, "6000"), (2, "60000")] {
        let b = Spec::broker(id, c.coord.addr())
            .args([
                "--session-timeout-ms",
                session,
                "--replica-lag-time-max-ms",
                "1000",
            ])
            .start()
            .unwrap();
        c.brokers.push(b);
    }
    wait_until("both brokers listed", || {
        let out = c.run(&["cluster"], "");
        out.success() && out.stdout.contains("\n2 ")
    });
    // Replicas [1, 2]: broker 1 leads.
    let dir = tempfile::tempdir().unwrap();
    c.ok(
        &[
            "topics",
            "create",
            "u",
            "--partitions",
            "1",
            "--replication-factor",
            "2",
        ],
        "",
    );
    let (replicas, _) = c.partitions("u")[0].clone();
    if replicas[0] != 1 {
        let plan = write_plan(&dir, "order.json", &plan_json("u", &[(0, vec![1, 2])]));
        c.ok(&["topics", "reassign", "--execute", &plan], "");
        c.ok(&["cluster", "rebalance-leaders"], "");
    }
    produce(&c, "u", 100);
    // Broker 2 freezes and leaves the ISR; more records go to broker 1 alone, which dies.
    c.brokers[1].pause().unwrap();
    wait_until("broker 2 out of the ISR", || {
        c.partitions("u")[0].1 == vec![1]
    });
    let lines: String = (100..150).map(|i| format!("{i}\n")).collect();
    c.ok(&["produce", "u"], &lines);
    c.brokers[0].kill9().unwrap();
    c.brokers[1].resume().unwrap();
    // Ask broker 2 (the only one left) once the controller has marked it offline.
    let via_two = |args: &[&str]| {
        let mut all = vec!["--bootstrap".to_owned(), c.brokers[1].connect_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        fjord(all, "", CLI_TIMEOUT).unwrap()
    };
    wait_until("the partition offline", || {
        let out = via_two(&["topics", "describe", "u"]);
        out.success()
            && out
                .stdout
                .lines()
                .any(|l| l.starts_with("0 ") && l.contains(" none "))
    });
    let elected = via_two(&["cluster", "elect-unclean", "--partition", "u:0"]);
    assert!(elected.success(), "{elected}");
    assert!(elected.stdout.contains("elected"), "{elected}");
    wait_until("broker 2 leads", || {
        let out = via_two(&["topics", "describe", "u"]);
        out.success()
            && out
                .stdout
                .lines()
                .any(|l| l.starts_with("0 ") && l.split_whitespace().nth(1) == Some("2"))
    });
    // What broker 2 had is readable, and it takes writes again.
    let read = via_two(&["consume", "u", "--from", "beginning"]);
    let got: Vec<usize> = read.stdout.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(
        got,
        (0..100).collect::<Vec<_>>(),
        "broker 2's records:\n{read}"
    );
    let mut all = vec!["--bootstrap".to_owned(), c.brokers[1].connect_string()];
    all.extend(["produce", "u"].map(str::to_owned));
    fjord(all, "after\n", CLI_TIMEOUT).unwrap().ok().unwrap();
    let again = via_two(&["cluster", "elect-unclean", "--partition", "u:0"]);
    assert!(again.success(), "{again}");
    assert!(
        again.stdout.contains("already has a live leader"),
        "{again}"
    );
    let unknown = via_two(&["cluster", "elect-unclean", "--partition", "nope:0"]);
    assert!(!unknown.success(), "{unknown}");
    assert!(
        unknown.stdout.contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{unknown}"
    );
}

#[test]
fn balance_spreads_replicas_and_leaders_over_a_new_broker() {
    let mut c = Cluster::start(3);
    c.ok(
        &[
            "topics",
            "create",
            "even",
            "--partitions",
            "6",
            "--replication-factor",
            "2",
        ],
        "",
    );
    produce(&c, "even", 3000);
    c.add_broker(6000);
    let plan = c.ok(&["cluster", "balance"], "");
    assert!(plan.stdout.contains("\"partitions\":["), "{plan}");
    assert!(
        plan.stdout.contains(" 4"),
        "broker 4 gets replicas:\n{plan}"
    );
    let before = c.partitions("even");
    assert!(
        before.iter().all(|(r, _)| !r.contains(&4)),
        "the plan alone moved something"
    );
    let done = c.ok(
        &["cluster", "balance", "--execute", "--throttle", "10000000"],
        "",
    );
    assert!(done.stdout.contains("partitions done"), "{done}");
    assert!(
        done.stdout.contains("replication throttle removed"),
        "{done}"
    );
    let after = c.partitions("even");
    let mut replicas = [0usize; 5];
    let mut preferred = [0usize; 5];
    for (r, isr) in &after {
        assert_eq!(r.len(), 2, "{after:?}");
        assert_eq!(isr.len(), 2, "{after:?}");
        for b in r {
            replicas[*b as usize] += 1;
        }
        preferred[r[0] as usize] += 1;
    }
    assert_eq!(
        &replicas[1..],
        &[3, 3, 3, 3],
        "replicas per broker: {after:?}"
    );
    assert!(
        preferred[1..].iter().all(|n| (1..=2).contains(n)),
        "preferred leaders per broker: {preferred:?}"
    );
    c.assert_records("even", 3000);
    let again = c.ok(&["cluster", "balance"], "");
    assert!(again.stdout.contains("nothing to move"), "{again}");
}
