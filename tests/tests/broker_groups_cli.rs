//! `fjord groups` end to end against one coordinator and two brokers.
//!
//! - An inactive group: offsets committed from outside (the client's simple OffsetCommit,
//!   through `reset-offsets --execute`), then `list`, `describe` (offsets, log ends, lag,
//!   `-` for consumer columns), every kind of `reset-offsets` with and without
//!   `--execute` (clamped to the log), and `delete`; plus clear errors for a group that
//!   does not exist, an unknown topic or partition, and a shift without a committed offset.
//! - An active group (kcat's balanced consumer, librdkafka): `describe` shows the member
//!   and its partitions, `delete` is refused with NON_EMPTY_GROUP and `reset-offsets
//!   --execute` is refused, both with a non-zero exit; once the member leaves, both work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fjord_tests::{fjord, Output, Process, Spec};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// Records produced to each partition of `orders`.
const PER_PARTITION: i64 = 10;

struct Cluster {
    _coord: Process,
    brokers: Vec<Process>,
}

impl Cluster {
    /// One coordinator and brokers 1 and 2, with a small `__consumer_offsets` and no
    /// initial rebalance delay, then `orders` with 3 partitions of 10 records each.
    fn start() -> Cluster {
        let coord = Spec::coordinator()
            .args(["--tick-ms", "200"])
            .start()
            .unwrap();
        let brokers = (1..=2)
            .map(|id| {
                Spec::broker(id, coord.addr())
                    .args([
                        "--offsets-topic-partitions",
                        "4",
                        "--group-initial-rebalance-delay-ms",
                        "0",
                    ])
                    .start()
                    .unwrap_or_else(|e| panic!("broker {id}: {e:#}"))
            })
            .collect();
        let c = Cluster {
            _coord: coord,
            brokers,
        };
        c.ok(&["topics", "create", "orders", "--partitions", "3"]);
        for p in 0..3 {
            let lines: String = (0..PER_PARTITION)
                .map(|i| format!("order {p}-{i}\n"))
                .collect();
            let out = c.run_with(&["produce", "orders", "-p", &p.to_string()], &lines);
            assert!(
                out.success()
                    && out
                        .stderr
                        .contains(&format!("acknowledged {PER_PARTITION} record(s)")),
                "produce to partition {p}\n{out}"
            );
        }
        c
    }

    fn bootstrap(&self) -> String {
        self.brokers[0].connect_string()
    }

    /// `fjord --bootstrap <broker 1> ARGS.. --retries 30` with `stdin` (not checked). The
    /// extra retries give a slow machine time to create `__consumer_offsets` and elect
    /// its leaders on the first group request.
    fn run_with(&self, args: &[&str], stdin: &str) -> Output {
        let mut all = vec!["--bootstrap".to_owned(), self.bootstrap()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all.extend(["--retries".to_owned(), "30".to_owned()]);
        fjord(all, stdin, CLI_TIMEOUT).unwrap()
    }

    /// Runs `fjord ARGS..`; must succeed.
    fn ok(&self, args: &[&str]) -> Output {
        self.run_with(args, "").ok().unwrap()
    }

    /// Runs `fjord ARGS..`; must fail with one `error: ..` line containing `want`.
    fn fails(&self, args: &[&str], want: &str) -> Output {
        let out = self.run_with(args, "");
        assert!(!out.success(), "expected a failure\n{out}");
        assert!(
            out.stderr
                .lines()
                .any(|l| l.starts_with("error: ") && l.contains(want)),
            "expected an error line with {want:?}\n{out}"
        );
        out
    }

    fn groups(&self, args: &[&str]) -> Output {
        let mut all = vec!["groups"];
        all.extend_from_slice(args);
        self.ok(&all)
    }
}

/// One table row: column → cell.
type Row = BTreeMap<String, String>;

/// The rows of the table whose header line starts with `first`.
fn table(out: &Output, first: &str) -> Vec<Row> {
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines
        .by_ref()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no table headed {first}\n{out}"))
        .split_whitespace()
        .collect();
    lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(
                cells.len(),
                header.len(),
                "row {l:?} under {header:?}\n{out}"
            );
            header
                .iter()
                .zip(cells)
                .map(|(h, c)| ((*h).to_owned(), c.to_owned()))
                .collect()
        })
        .collect()
}

/// The value of a `key: value` header line.
fn header(out: &Output, key: &str) -> String {
    let prefix = format!("{key}: ");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key:?} line\n{out}"))
        .to_owned()
}

/// `describe GROUP` as (topic, partition) → row.
fn describe(c: &Cluster, group: &str) -> (Output, BTreeMap<(String, i32), Row>) {
    let out = c.groups(&["describe", group]);
    let rows = table(&out, "TOPIC")
        .into_iter()
        .filter(|r| r["PARTITION"] != "-")
        .map(|r| ((r["TOPIC"].clone(), r["PARTITION"].parse().unwrap()), r))
        .collect();
    (out, rows)
}

/// The committed offset per partition of `orders`, from `describe`.
fn committed(c: &Cluster, group: &str) -> BTreeMap<i32, String> {
    describe(c, group)
        .1
        .into_iter()
        .filter(|((t, _), _)| t == "orders")
        .map(|((_, p), r)| (p, r["CURRENT-OFFSET"].clone()))
        .collect()
}

/// The plan `reset-offsets` printed, partition of `orders` → new offset.
fn plan(out: &Output) -> BTreeMap<i32, i64> {
    table(out, "TOPIC")
        .into_iter()
        .map(|r| {
            assert_eq!(r["TOPIC"], "orders", "{out}");
            (
                r["PARTITION"].parse().unwrap(),
                r["NEW-OFFSET"].parse().unwrap(),
            )
        })
        .collect()
}

fn offsets(pairs: &[(i32, i64)]) -> BTreeMap<i32, i64> {
    pairs.iter().copied().collect()
}

fn strings(pairs: &[(i32, &str)]) -> BTreeMap<i32, String> {
    pairs.iter().map(|(p, s)| (*p, (*s).to_owned())).collect()
}

/// An inactive group from its first commit to its deletion.
#[test]
fn offsets_of_an_inactive_group() {
    let c = Cluster::start();

    // Nothing there yet: describe and delete say so.
    c.fails(
        &["groups", "describe", "billing"],
        "group billing: does not exist",
    );
    c.fails(&["groups", "delete", "billing"], "GROUP_ID_NOT_FOUND");

    // A dry run prints the plan and commits nothing.
    let out = c.groups(&[
        "reset-offsets",
        "billing",
        "--topic",
        "orders:0,1",
        "--to-offset",
        "4",
    ]);
    assert_eq!(plan(&out), offsets(&[(0, 4), (1, 4)]));
    assert!(out.stderr.contains("dry run"), "{out}");
    c.fails(&["groups", "describe", "billing"], "does not exist");

    // A simple commit (generation -1, no member) from outside the group.
    let out = c.groups(&[
        "reset-offsets",
        "billing",
        "--topic",
        "orders:0,1",
        "--to-offset",
        "4",
        "--execute",
    ]);
    assert_eq!(plan(&out), offsets(&[(0, 4), (1, 4)]));
    assert!(
        out.stderr
            .contains("committed 2 offset(s) for group billing"),
        "{out}"
    );

    let out = c.groups(&["list"]);
    let listed: Vec<_> = table(&out, "GROUP")
        .into_iter()
        .filter(|r| r["GROUP"] == "billing")
        .collect();
    assert_eq!(listed.len(), 1, "{out}");
    assert_eq!(listed[0]["STATE"], "Empty", "{out}");
    assert_eq!(listed[0]["PROTOCOL-TYPE"], "-", "{out}");

    let (out, rows) = describe(&c, "billing");
    assert_eq!(header(&out, "state"), "Empty");
    assert_eq!(header(&out, "members"), "0");
    let coordinator = header(&out, "coordinator");
    let brokers: Vec<String> = c
        .brokers
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{} ({})", i + 1, b.connect_string()))
        .collect();
    assert!(
        brokers.contains(&coordinator),
        "coordinator {coordinator:?}\n{out}"
    );
    assert_eq!(rows.len(), 2, "only the committed partitions\n{out}");
    for p in [0, 1] {
        let r = &rows[&("orders".to_owned(), p)];
        let cells: Vec<&str> = [
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ]
        .iter()
        .map(|k| r[*k].as_str())
        .collect();
        assert_eq!(
            cells,
            ["4", "10", "6", "-", "-", "-"],
            "partition {p}\n{out}"
        );
    }
    let out = c.groups(&["describe", "billing", "--members"]);
    assert!(
        out.stdout.contains("group billing has no active members"),
        "{out}"
    );

    // Every partition of the topic to the log start.
    let out = c.groups(&[
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-earliest",
        "--execute",
    ]);
    assert_eq!(plan(&out), offsets(&[(0, 0), (1, 0), (2, 0)]));
    let (out, rows) = describe(&c, "billing");
    for p in 0..3 {
        let r = &rows[&("orders".to_owned(), p)];
        assert_eq!(
            (r["CURRENT-OFFSET"].as_str(), r["LAG"].as_str()),
            ("0", "10"),
            "partition {p}\n{out}"
        );
    }

    // Shifts move from the committed offset and stop at the log's ends.
    c.groups(&[
        "reset-offsets",
        "billing",
        "--all-topics",
        "--shift-by",
        "3",
        "--execute",
    ]);
    assert_eq!(
        committed(&c, "billing"),
        strings(&[(0, "3"), (1, "3"), (2, "3")])
    );
    let out = c.groups(&[
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--shift-by",
        "-100",
    ]);
    assert_eq!(plan(&out), offsets(&[(0, 0), (1, 0), (2, 0)]));
    // (a dry run: nothing moved)
    assert_eq!(
        committed(&c, "billing"),
        strings(&[(0, "3"), (1, "3"), (2, "3")])
    );
    let out = c.groups(&[
        "reset-offsets",
        "billing",
        "--topic",
        "orders:1",
        "--shift-by",
        "100",
        "--execute",
    ]);
    assert_eq!(plan(&out), offsets(&[(1, 10)]));
    let out = c.groups(&[
        "reset-offsets",
        "billing",
        "--topic",
        "orders:2",
        "--to-latest",
        "--execute",
    ]);
    assert_eq!(plan(&out), offsets(&[(2, 10)]));
    let (out, rows) = describe(&c, "billing");
    let lags: Vec<&str> = (0..3)
        .map(|p| rows[&("orders".to_owned(), p)]["LAG"].as_str())
        .collect();
    assert_eq!(lags, ["7", "0", "0"], "{out}");

    // Offsets and times are clamped to the log.
    let out = c.groups(&[
        "reset-offsets",
        "billing",
        "--topic",
        "orders:0",
        "--to-offset",
        "999",
    ]);
    assert_eq!(plan(&out), offsets(&[(0, 10)]));
    let out = c.groups(&[
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-datetime",
        "2999-01-01T00:00:00Z",
    ]);
    assert_eq!(plan(&out), offsets(&[(0, 10), (1, 10), (2, 10)]));
    let out = c.groups(&[
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-datetime",
        "1970-01-01T00:00:00Z",
        "--execute",
    ]);
    assert_eq!(plan(&out), offsets(&[(0, 0), (1, 0), (2, 0)]));
    assert_eq!(
        committed(&c, "billing"),
        strings(&[(0, "0"), (1, "0"), (2, "0")])
    );

    // Mistakes are refused with a reason.
    c.fails(
        &[
            "groups",
            "reset-offsets",
            "billing",
            "--topic",
            "nope",
            "--to-latest",
        ],
        "unknown topic nope",
    );
    c.fails(
        &[
            "groups",
            "reset-offsets",
            "billing",
            "--topic",
            "orders:7",
            "--to-latest",
        ],
        "topic orders has no partition 7",
    );
    c.fails(
        &[
            "groups",
            "reset-offsets",
            "fresh",
            "--topic",
            "orders",
            "--shift-by",
            "1",
        ],
        "no committed offset",
    );
    let out = c.run_with(
        &["groups", "reset-offsets", "billing", "--topic", "orders"],
        "",
    );
    assert!(
        !out.success() && out.stderr.contains("--to-earliest"),
        "{out}"
    );

    // Delete: gone from the list, from describe, and a second delete says so.
    let out = c.groups(&["delete", "billing"]);
    assert_eq!(out.stdout.trim(), "deleted group billing");
    let out = c.groups(&["list"]);
    assert!(
        table(&out, "GROUP").iter().all(|r| r["GROUP"] != "billing"),
        "{out}"
    );
    c.fails(&["groups", "describe", "billing"], "does not exist");
    c.fails(
        &["groups", "delete", "billing"],
        "group billing: does not exist (GROUP_ID_NOT_FOUND)",
    );
}

/// A running kcat balanced consumer, stopped (it leaves the group) when dropped.
struct Kcat {
    child: Child,
}

impl Kcat {
    fn start(bootstrap: &str, group: &str, topic: &str) -> Kcat {
        let child = Command::new("kcat")
            .args([
                "-b",
                bootstrap,
                "-G",
                group,
                "-q",
                "-X",
                "auto.offset.reset=earliest",
                "-X",
                "session.timeout.ms=6000",
                "-X",
                "client.id=kcat-groups-test",
                topic,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kcat runs (scripts/test installs it; `apt-get install kcat`)");
        Kcat { child }
    }

    /// SIGTERM: kcat closes its consumer, which leaves the group, and exits.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Kcat {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `describe` until `done` accepts it (at most `timeout`).
fn wait_for_describe(
    c: &Cluster,
    group: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Output) -> bool,
) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        let out = c.run_with(&["groups", "describe", group], "");
        if out.success() && done(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {timeout:?}\n{out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A group with a live member cannot be deleted or reset; after it leaves, it can.
#[test]
fn an_active_group_is_protected() {
    let c = Cluster::start();
    let mut kcat = Kcat::start(&c.bootstrap(), "live", "orders");

    let out = wait_for_describe(
        &c,
        "live",
        Duration::from_secs(45),
        "stable member with all partitions",
        |out| {
            header(out, "state") == "Stable"
                && table(out, "TOPIC")
                    .iter()
                    .filter(|r| r["TOPIC"] == "orders" && r["CONSUMER-ID"] != "-")
                    .count()
                    == 3
        },
    );
    assert_eq!(header(&out, "members"), "1", "{out}");
    assert_eq!(header(&out, "protocol type"), "consumer", "{out}");
    for r in table(&out, "TOPIC") {
        assert_eq!(r["CLIENT-ID"], "kcat-groups-test", "{out}");
        assert_ne!(r["HOST"], "-", "{out}");
    }
    let out = c.groups(&["describe", "live", "--members"]);
    let members = table(&out, "CONSUMER-ID");
    assert_eq!(members.len(), 1, "{out}");
    assert_eq!(members[0]["#PARTITIONS"], "3", "{out}");
    assert_eq!(members[0]["ASSIGNMENT"], "orders(0,1,2)", "{out}");
    let out = c.groups(&["list"]);
    let live: Vec<_> = table(&out, "GROUP")
        .into_iter()
        .filter(|r| r["GROUP"] == "live")
        .collect();
    assert_eq!(live.len(), 1, "{out}");
    assert_eq!(
        (live[0]["STATE"].as_str(), live[0]["PROTOCOL-TYPE"].as_str()),
        ("Stable", "consumer"),
        "{out}"
    );

    // Refused while the member is there, with the reason and a non-zero exit.
    c.fails(&["groups", "delete", "live"], "NON_EMPTY_GROUP");
    c.fails(
        &[
            "groups",
            "reset-offsets",
            "live",
            "--topic",
            "orders",
            "--to-earliest",
            "--execute",
        ],
        "stop its consumers first",
    );
    // Deleting several groups reports each failure and fails as a whole.
    let out = c.fails(
        &["groups", "delete", "live", "ghost"],
        "2 of 2 groups could not be deleted",
    );
    assert!(out.stderr.contains("group live: cannot delete it"), "{out}");
    assert!(out.stderr.contains("group ghost: does not exist"), "{out}");
    // A dry run still shows the plan, with a warning.
    let out = c.groups(&[
        "reset-offsets",
        "live",
        "--topic",
        "orders",
        "--to-earliest",
    ]);
    assert_eq!(plan(&out), offsets(&[(0, 0), (1, 0), (2, 0)]));
    assert!(out.stderr.contains("warning: group live"), "{out}");

    // Once kcat has left, the group is Empty and can be reset and deleted.
    kcat.stop();
    wait_for_describe(&c, "live", Duration::from_secs(30), "empty group", |out| {
        header(out, "state") == "Empty"
    });
    let out = c.groups(&[
        "reset-offsets",
        "live",
        "--topic",
        "orders",
        "--to-earliest",
        "--execute",
    ]);
    assert_eq!(plan(&out), offsets(&[(0, 0), (1, 0), (2, 0)]));
    let (out, rows) = describe(&c, "live");
    assert_eq!(rows.len(), 3, "{out}");
    for r in rows.values() {
        assert_eq!(
            (r["CURRENT-OFFSET"].as_str(), r["CONSUMER-ID"].as_str()),
            ("0", "-"),
            "{out}"
        );
    }
    c.groups(&["delete", "live"]);
    c.fails(&["groups", "describe", "live"], "does not exist");
}
