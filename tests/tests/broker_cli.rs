//! The `fjord` CLI end to end against one coordinator and two brokers: topics create, list,
//! describe, alter and delete (checked against the znodes too), `cluster`, produce with keys
//! and headers, consume back exactly, from a timestamp and from an offset, and clear
//! errors for an unknown topic and a bad bootstrap address.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fjord_tests::{fjord, json, Output, Process, Spec};
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CLI_TIMEOUT: Duration = Duration::from_secs(20);

struct Cluster {
    coord: Process,
    brokers: Vec<Process>,
}

impl Cluster {
    /// One coordinator and brokers 1 and 2.
    fn start() -> Cluster {
        let coord = Spec::coordinator()
            .args(["--tick-ms", "200"])
            .start()
            .unwrap();
        let brokers = (1..=2)
            .map(|id| {
                Spec::broker(id, coord.addr())
                    .start()
                    .unwrap_or_else(|e| panic!("broker {id}: {e:#}"))
            })
            .collect();
        Cluster { coord, brokers }
    }

    /// `fjord --bootstrap <broker i> ARGS..` with `stdin` (not checked).
    fn run_via(&self, i: usize, args: &[&str], stdin: &str) -> Output {
        let mut all = vec!["--bootstrap".to_owned(), self.brokers[i].connect_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        fjord(all, stdin, CLI_TIMEOUT).unwrap()
    }

    /// The same through broker 1; must succeed.
    fn ok(&self, args: &[&str], stdin: &str) -> Output {
        self.run_via(0, args, stdin).ok().unwrap()
    }

    /// `fjord --coordinator ADDR coord ARGS..`; must succeed.
    fn coord(&self, args: &[&str]) -> Output {
        let mut all = vec![
            "--coordinator".to_owned(),
            self.coord.connect_string(),
            "coord".to_owned(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        fjord(all, "", CLI_TIMEOUT).unwrap().ok().unwrap()
    }

    fn topics(&self) -> Vec<String> {
        let out = self.ok(&["topics", "list"], "");
        out.stdout_lines()
            .iter()
            .map(|l| l.trim().to_owned())
            .collect()
    }
}

/// One row of the partition table of `topics describe`.
#[derive(Debug, Clone, PartialEq)]
struct PartitionRow {
    partition: i32,
    leader: String,
    replicas: String,
    isr: String,
    status: String,
}

/// A parsed `topics describe`.
#[derive(Debug)]
struct Description {
    partitions: Vec<PartitionRow>,
    configs: BTreeMap<String, String>,
}

fn describe(c: &Cluster, topic: &str) -> Description {
    let out = c.ok(&["topics", "describe", topic], "");
    let text = out.stdout.clone();
    let mut lines = text.lines().map(str::trim_end);
    let mut header: Option<Vec<&str>> = None;
    let mut partitions = Vec::new();
    for line in lines.by_ref() {
        if header.is_none() {
            if line.starts_with("PARTITION") {
                header = Some(line.split_whitespace().collect());
            }
            continue;
        }
        if line.trim().is_empty() {
            break;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        let h = header.as_ref().unwrap();
        assert_eq!(cols.len(), h.len(), "row {line:?} under {h:?}\n{out}");
        let col = |name: &str| {
            let i = h
                .iter()
                .position(|c| *c == name)
                .unwrap_or_else(|| panic!("no {name} column in {h:?}\n{out}"));
            cols[i].to_owned()
        };
        partitions.push(PartitionRow {
            partition: col("PARTITION").parse().unwrap(),
            leader: col("LEADER"),
            replicas: col("REPLICAS"),
            isr: col("ISR"),
            status: col("STATUS"),
        });
    }
    assert!(header.is_some(), "no partition table\n{out}");
    let mut configs = BTreeMap::new();
    let mut in_configs = false;
    for line in lines {
        if line.starts_with("configs") {
            in_configs = true;
            continue;
        }
        if in_configs {
            if let Some((k, v)) = line.trim().split_once('=') {
                configs.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    let count_line = format!("partitions: {}", partitions.len());
    assert!(
        text.lines().any(|l| l.trim() == count_line),
        "no {count_line:?} line\n{out}"
    );
    Description {
        partitions,
        configs,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn stdin_of(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn assert_acknowledged(out: &Output, n: usize) {
    assert!(
        out.success() && out.stderr.contains(&format!("acknowledged {n} record(s)")),
        "expected {n} acknowledged records\n{out}"
    );
}

/// Create (with partitions and config overrides), list, describe, alter partitions and
/// config, `cluster`, delete — each checked in the CLI's output and in the coordinator.
#[test]
fn topics_lifecycle_and_cluster() {
    let c = Cluster::start();

    let out = c.ok(
        &[
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=86400000",
            "--config",
            "max.message.bytes=65536",
        ],
        "",
    );
    assert!(out.stdout.contains("orders"), "{out}");
    c.ok(&["topics", "create", "events", "--partitions", "1"], "");
    assert_eq!(c.topics(), ["events", "orders"]);

    let d = describe(&c, "orders");
    assert_eq!(
        d.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    for p in &d.partitions {
        assert!(["1", "2"].contains(&p.leader.as_str()), "{p:?}");
        assert_eq!(
            (p.replicas.as_str(), p.isr.as_str(), p.status.as_str()),
            (p.leader.as_str(), p.leader.as_str(), "ok"),
            "{p:?}"
        );
    }
    let leaders: BTreeSet<&str> = d.partitions.iter().map(|p| p.leader.as_str()).collect();
    assert_eq!(
        leaders.len(),
        2,
        "3 partitions on 2 brokers all led by one: {d:?}"
    );
    assert_eq!(
        d.configs.get("retention.ms").map(String::as_str),
        Some("86400000"),
        "{d:?}"
    );
    assert_eq!(
        d.configs.get("max.message.bytes").map(String::as_str),
        Some("65536"),
        "{d:?}"
    );

    // The same facts in the coordinator, in Kafka's layout.
    let stored = json::parse(c.coord(&["get", "/config/topics/orders"]).stdout.trim()).unwrap();
    let config = stored.get("config").expect("a config object");
    assert_eq!(
        config.get("retention.ms").and_then(json::Value::as_str),
        Some("86400000"),
        "{stored:?}"
    );
    let assignment =
        json::parse(c.coord(&["get", "/brokers/topics/orders"]).stdout.trim()).unwrap();
    assert_eq!(
        assignment
            .get("partitions")
            .and_then(json::Value::as_object)
            .map(<[_]>::len),
        Some(3),
        "{assignment:?}"
    );

    // Alter: more partitions, one override changed, one removed. Like CreateTopics,
    // CreatePartitions answers once the new partitions have leaders (it waits up to the
    // request's timeout), so they are usable right away.
    c.ok(&["topics", "alter", "orders", "--partitions", "5"], "");
    let d = describe(&c, "orders");
    assert_eq!(
        d.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4],
        "{d:?}"
    );
    assert!(
        d.partitions
            .iter()
            .all(|p| ["1", "2"].contains(&p.leader.as_str()) && p.status == "ok"),
        "`topics alter --partitions 5` returned before the new partitions had leaders: {d:?}"
    );
    c.ok(
        &[
            "topics",
            "alter",
            "orders",
            "--config",
            "retention.ms=3600000",
        ],
        "",
    );
    let d = describe(&c, "orders");
    assert_eq!(
        d.configs.get("retention.ms").map(String::as_str),
        Some("3600000"),
        "{d:?}"
    );
    assert_eq!(
        d.configs.get("max.message.bytes").map(String::as_str),
        Some("65536"),
        "changing one override dropped another: {d:?}"
    );
    c.ok(
        &[
            "topics",
            "alter",
            "orders",
            "--delete-config",
            "max.message.bytes",
        ],
        "",
    );
    let d = describe(&c, "orders");
    assert!(!d.configs.contains_key("max.message.bytes"), "{d:?}");
    assert_eq!(
        d.configs.get("retention.ms").map(String::as_str),
        Some("3600000")
    );
    // Shrinking is refused.
    let out = c.run_via(0, &["topics", "alter", "orders", "--partitions", "2"], "");
    assert!(!out.success(), "shrinking a topic succeeded\n{out}");
    assert_eq!(describe(&c, "orders").partitions.len(), 5);

    // `cluster`: both brokers with their addresses, and the controller.
    let out = c.ok(&["cluster"], "");
    let controller: String = out
        .stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("controller:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no controller line\n{out}"));
    let mut rows = BTreeMap::new();
    let mut in_brokers = false;
    for line in out.stdout.lines() {
        if line.starts_with("BROKER") {
            in_brokers = true;
            continue;
        }
        if in_brokers {
            if line.trim().is_empty() {
                break;
            }
            let cols: Vec<&str> = line.split_whitespace().collect();
            let is_controller = cols.contains(&"(controller)");
            let addr = cols
                .iter()
                .find(|c| c.contains(':'))
                .unwrap_or_else(|| panic!("no address in {line:?}"));
            rows.insert(cols[0].to_owned(), (addr.to_string(), is_controller));
        }
    }
    let expected: BTreeMap<String, (String, bool)> = c
        .brokers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let id = (i + 1).to_string();
            let is_controller = id == controller;
            (id, (b.connect_string(), is_controller))
        })
        .collect();
    assert_eq!(rows, expected, "broker table\n{out}");
    let stored = json::parse(c.coord(&["get", "/controller"]).stdout.trim()).unwrap();
    assert_eq!(
        stored
            .get("brokerid")
            .and_then(json::Value::as_i64)
            .map(|i| i.to_string()),
        Some(controller.clone()),
        "`cluster` and /controller disagree\n{out}"
    );
    assert!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("orders"))
            .count()
            == 5,
        "`cluster` does not list orders' 5 partitions\n{out}"
    );

    // Delete: gone from the list (deletion may finish asynchronously, so poll, bounded).
    let out = c.ok(&["topics", "delete", "orders"], "");
    assert!(out.stdout.contains("orders"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let topics = c.topics();
        if topics == ["events"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after delete, topics list shows {topics:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = c.run_via(1, &["topics", "describe", "orders"], "");
    assert!(!out.success(), "describe of a deleted topic\n{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = c.coord(&["ls", "/brokers/topics"]);
        if !stored.stdout_lines().contains(&"orders") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/brokers/topics/orders still exists\n{stored}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Keys and headers survive a round trip; a one-partition topic reads back byte for byte;
/// `--from @MS` and `--from OFFSET` start where they say.
#[test]
fn produce_and_consume_round_trip() {
    let c = Cluster::start();
    c.ok(&["topics", "create", "kv", "--partitions", "4"], "");

    // Keyed records with headers, through broker 2.
    let produced: Vec<(String, String)> = (0..40)
        .map(|i| {
            (
                format!("key-{}", i % 7),
                format!("value {i}: with spaces, ü"),
            )
        })
        .collect();
    let input: String = produced.iter().map(|(k, v)| format!("{k}|{v}\n")).collect();
    let out = c.run_via(
        1,
        &[
            "produce",
            "kv",
            "-K",
            "|",
            "-H",
            "source=cli-test",
            "-H",
            "trace=abc",
        ],
        &input,
    );
    assert_acknowledged(&out, produced.len());

    let out = c.ok(
        &[
            "consume",
            "kv",
            "--from",
            "beginning",
            "--print-key",
            "--print-headers",
            "--print-offset",
        ],
        "",
    );
    let mut per_partition: BTreeMap<i32, Vec<(i64, String, String)>> = BTreeMap::new();
    for line in out.stdout.lines() {
        let cols: Vec<&str> = line.splitn(4, '\t').collect();
        assert_eq!(cols.len(), 4, "line {line:?}\n{out}");
        let (p, o) = cols[0]
            .split_once(':')
            .unwrap_or_else(|| panic!("no partition:offset in {line:?}"));
        assert_eq!(cols[2], "source=cli-test,trace=abc", "headers of {line:?}");
        per_partition.entry(p.parse().unwrap()).or_default().push((
            o.parse().unwrap(),
            cols[1].to_owned(),
            cols[3].to_owned(),
        ));
    }
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut key_partition: BTreeMap<String, i32> = BTreeMap::new();
    for (p, records) in &per_partition {
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert_eq!(
            offsets,
            (0..records.len() as i64).collect::<Vec<_>>(),
            "partition {p} offsets"
        );
        // Within a partition, produce order.
        let in_order: Vec<(String, String)> =
            records.iter().map(|r| (r.1.clone(), r.2.clone())).collect();
        let expected: Vec<(String, String)> = produced
            .iter()
            .filter(|kv| in_order.contains(kv))
            .cloned()
            .collect();
        assert_eq!(in_order, expected, "partition {p} is out of produce order");
        for (k, _) in &in_order {
            let first = *key_partition.entry(k.clone()).or_insert(*p);
            assert_eq!(first, *p, "key {k} in partitions {first} and {p}");
        }
        seen.extend(in_order);
    }
    let mut want = produced.clone();
    want.sort();
    seen.sort();
    assert_eq!(seen, want, "consumed records differ from produced ones");

    // A one-partition topic reads back exactly as written.
    c.ok(&["topics", "create", "lines", "--partitions", "1"], "");
    let first: Vec<String> = (0..12)
        .map(|i| {
            format!(
                "line {i}\twith a tab, \"quotes\" and ✓ {}",
                "x".repeat(i * 7)
            )
        })
        .collect();
    assert_acknowledged(&c.ok(&["produce", "lines"], &stdin_of(&first)), first.len());
    std::thread::sleep(Duration::from_millis(50));
    let cut = now_ms();
    std::thread::sleep(Duration::from_millis(50));
    let second: Vec<String> = (0..5).map(|i| format!("later {i}")).collect();
    assert_acknowledged(
        &c.ok(&["produce", "lines"], &stdin_of(&second)),
        second.len(),
    );
    let mut all = first.clone();
    all.extend(second.iter().cloned());

    let out = c.ok(&["consume", "lines", "--from", "beginning"], "");
    assert_eq!(out.stdout, stdin_of(&all), "byte-for-byte round trip");
    let out = c.run_via(1, &["consume", "lines", "--from", "beginning"], "");
    assert_eq!(
        out.stdout,
        stdin_of(&all),
        "through the other broker\n{out}"
    );

    let at = format!("@{cut}");
    let out = c.ok(&["consume", "lines", "--from", &at], "");
    assert_eq!(out.stdout, stdin_of(&second), "--from {at}");

    let out = c.ok(
        &[
            "consume",
            "lines",
            "--from",
            "10",
            "-p",
            "0",
            "--print-offset",
        ],
        "",
    );
    let expected: String = all
        .iter()
        .enumerate()
        .skip(10)
        .map(|(i, l)| format!("0:{i}\t{l}\n"))
        .collect();
    assert_eq!(out.stdout, expected, "--from 10");
    let out = c.ok(
        &[
            "consume",
            "lines",
            "--from",
            "3",
            "-n",
            "2",
            "--print-offset",
        ],
        "",
    );
    assert_eq!(
        out.stdout,
        format!("0:3\t{}\n0:4\t{}\n", all[3], all[4]),
        "--from 3 -n 2"
    );
}

/// An unknown topic and a bad bootstrap address give a non-zero exit and an error naming
/// the problem, quickly.
#[test]
fn unknown_topic_and_bad_bootstrap_are_clear_errors() {
    let c = Cluster::start();
    c.ok(&["topics", "create", "present", "--partitions", "1"], "");

    let out = c.ok(&["topics", "list"], "");
    assert!(!out.stdout.contains("absent-topic"));
    let out = c.run_via(0, &["consume", "absent-topic", "--from", "beginning"], "");
    assert!(
        !out.success(),
        "consume of an unknown topic succeeded\n{out}"
    );
    assert!(
        out.stderr.to_lowercase().contains("unknown") && out.stderr.contains("absent-topic"),
        "the error does not say the topic is unknown\n{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
    assert!(out.elapsed < Duration::from_secs(10), "{out}");

    // A port nobody listens on, an address without a port, and the coordinator's port
    // (a server that is not Kafka).
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let not_kafka = c.coord.connect_string();
    for (addr, cmd) in [
        (refused.as_str(), vec!["topics", "list"]),
        (refused.as_str(), vec!["consume", "present"]),
        (refused.as_str(), vec!["produce", "present"]),
        (refused.as_str(), vec!["cluster"]),
        ("not-an-address", vec!["topics", "list"]),
        (not_kafka.as_str(), vec!["topics", "list"]),
    ] {
        let mut args = vec!["--bootstrap", addr];
        args.extend(cmd.iter().copied());
        let out = fjord(&args, "x\n", CLI_TIMEOUT).unwrap();
        assert!(!out.success(), "{args:?} succeeded\n{out}");
        assert!(
            out.stderr.contains(addr),
            "the error does not name the bootstrap address {addr}\n{out}"
        );
        assert!(out.elapsed < Duration::from_secs(10), "{out}");
        assert!(
            out.stderr.lines().filter(|l| !l.trim().is_empty()).count() <= 2,
            "not a short error\n{out}"
        );
    }

    // A server that accepts and never answers: the request timeout bounds the wait.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let out = fjord(
        [
            "--bootstrap",
            &silent_addr,
            "topics",
            "list",
            "--request-timeout-ms",
            "1000",
            "--retries",
            "0",
        ],
        "",
        CLI_TIMEOUT,
    )
    .unwrap();
    drop(silent);
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains(&silent_addr), "{out}");
    assert!(
        out.elapsed < Duration::from_secs(8),
        "a 1 s request timeout took {:?}\n{out}",
        out.elapsed
    );
}

/// A topic of more partitions than the controller writes in one coordinator multi (500)
/// gets every state (three multis), and adding partitions to it writes only the new ones
/// beside the partition znodes that already exist.
#[test]
fn a_topic_of_a_thousand_partitions_gets_every_state() {
    let c = Cluster::start();
    c.ok(&["topics", "create", "wide", "--partitions", "1001"], "");
    let d = describe(&c, "wide");
    assert_eq!(
        d.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(),
        (0..1001).collect::<Vec<i32>>()
    );
    let not_ok: Vec<_> = d.partitions.iter().filter(|p| p.status != "ok").collect();
    assert!(not_ok.is_empty(), "partitions without a leader: {not_ok:?}");
    c.ok(&["topics", "alter", "wide", "--partitions", "1003"], "");
    let d = describe(&c, "wide");
    assert_eq!(d.partitions.len(), 1003);
    assert!(
        d.partitions.iter().all(|p| p.status == "ok"),
        "{:?}",
        &d.partitions[1000..]
    );
    let children = c.coord(&["ls", "/brokers/topics/wide/partitions"]);
    assert_eq!(
        children.stdout.split_whitespace().count(),
        1003,
        "{children}"
    );
    let state = json::parse(
        c.coord(&["get", "/brokers/topics/wide/partitions/1002/state"])
            .stdout
            .trim(),
    )
    .unwrap();
    assert_eq!(
        state.get("leader_epoch").and_then(json::Value::as_i64),
        Some(0),
        "{state:?}"
    );
}
