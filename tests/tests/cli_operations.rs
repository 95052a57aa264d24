//! The operator commands of `fjord` against one coordinator and three brokers:
//! `topics list --under-replicated | --under-min-isr | --unavailable` (with their
//! non-zero exits once a broker is killed), `topics offsets`, `topics delete-records`,
//! `groups list` with lag, `groups describe --all`, `cluster log-dirs` and
//! `cluster api-versions`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fjord_tests::{fjord, Output, Process, Spec};
use std::time::{Duration, Instant};

const CLI_TIMEOUT: Duration = Duration::from_secs(30);

fn run(broker: &Process, args: &[&str], stdin: &str) -> Output {
    let mut all = vec!["--bootstrap".to_owned(), broker.connect_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    fjord(all, stdin, CLI_TIMEOUT).unwrap()
}

/// Retries `f` until it returns `Some`, for at most `limit`.
fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not {what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn operator_commands_on_a_real_cluster() {
    let coord = Spec::coordinator()
        .args(["--tick-ms", "200"])
        .start()
        .unwrap();
    let mut brokers: Vec<Process> = (1..=3)
        .map(|id| {
            Spec::broker(id, coord.addr())
                .args(["--session-timeout-ms", "2000"])
                .start()
                .unwrap()
        })
        .collect();
    run(
        &brokers[0],
        &[
            "topics",
            "create",
            "ops",
            "--partitions",
            "2",
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=3",
        ],
        "",
    )
    .ok()
    .unwrap();
    let lines: String = (0..40).map(|i| format!("record {i}\n")).collect();
    run(&brokers[0], &["produce", "ops"], &lines).ok().unwrap();

    // Healthy: every filter finds nothing and exits 0.
    for filter in ["--under-replicated", "--under-min-isr", "--unavailable"] {
        let out = eventually(Duration::from_secs(20), "a healthy cluster", || {
            let o = run(&brokers[0], &["topics", "list", filter], "");
            o.success().then_some(o)
        });
        assert!(out.stdout.trim().is_empty(), "{filter}: {out}");
    }

    // Offsets, then records deleted before 5 in the partition that got the most records
    // (the partitioner decides which).
    let offsets = run(&brokers[0], &["topics", "offsets", "ops"], "")
        .ok()
        .unwrap();
    let latest: Vec<i64> = offsets.stdout_lines()[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
        .collect();
    assert_eq!(latest.iter().sum::<i64>(), 40, "{offsets}");
    let fullest = (0..latest.len()).max_by_key(|p| latest[*p]).unwrap();
    assert!(latest[fullest] >= 20, "{offsets}");
    let target = format!("ops:{fullest}");
    let deleted = run(
        &brokers[0],
        &["topics", "delete-records", &target, "--before", "5"],
        "",
    )
    .ok()
    .unwrap();
    assert!(
        deleted.stdout.contains("the log now starts at 5"),
        "{deleted}"
    );
    let earliest = run(
        &brokers[0],
        &["topics", "offsets", "ops", "--time", "earliest"],
        "",
    )
    .ok()
    .unwrap();
    assert!(
        earliest.stdout_lines()[1 + fullest].ends_with(" 5"),
        "{earliest}"
    );
    let bad = run(
        &brokers[0],
        &["topics", "delete-records", "ops", "--before", "1"],
        "",
    );
    assert!(
        !bad.success() && bad.stderr.contains("TOPIC:PARTITION"),
        "{bad}"
    );
    let beyond = run(
        &brokers[0],
        &["topics", "delete-records", &target, "--before", "1000"],
        "",
    );
    assert!(
        !beyond.success() && beyond.stderr.contains("OFFSET_OUT_OF_RANGE"),
        "{beyond}"
    );

    // A group with committed offsets: its lag in `groups list`, and `describe --all`.
    run(
        &brokers[0],
        &[
            "groups",
            "reset-offsets",
            "ops-readers",
            "--topic",
            "ops",
            "--to-latest",
            "--execute",
        ],
        "",
    )
    .ok()
    .unwrap();
    run(&brokers[0], &["produce", "ops"], "one\ntwo\nthree\n")
        .ok()
        .unwrap();
    let list = run(&brokers[0], &["groups", "list"], "").ok().unwrap();
    let row = list
        .stdout_lines()
        .into_iter()
        .find(|l| l.starts_with("ops-readers"))
        .unwrap_or_else(|| panic!("{list}"))
        .to_owned();
    assert!(list.stdout.starts_with("GROUP"), "{list}");
    assert_eq!(row.split_whitespace().last(), Some("3"), "{list}");
    let all = run(&brokers[0], &["groups", "describe", "--all"], "")
        .ok()
        .unwrap();
    assert!(all.stdout.contains("group: ops-readers"), "{all}");
    let neither = run(&brokers[0], &["groups", "describe"], "");
    assert!(!neither.success(), "{neither}");

    // Log directories: every broker holds both partitions.
    let dirs = run(&brokers[0], &["cluster", "log-dirs"], "").ok().unwrap();
    let replicas = dirs
        .stdout_lines()
        .iter()
        .filter(|l| l.split_whitespace().nth(2) == Some("ops"))
        .count();
    assert_eq!(replicas, 6, "{dirs}");
    let versions = run(&brokers[0], &["cluster", "api-versions"], "")
        .ok()
        .unwrap();
    assert_eq!(versions.stdout.matches(" -> (").count(), 3, "{versions}");
    assert!(
        versions.stdout.contains("Produce(0): 0 to 11 [usable: "),
        "{versions}"
    );
    assert!(
        versions.stdout.contains("DescribeLogDirs(35): 0 to 4"),
        "{versions}"
    );

    // kill -9 of a broker: under-replicated and under min ISR (3), not unavailable.
    brokers[2].kill9().unwrap();
    let under = eventually(
        Duration::from_secs(20),
        "under-replicated partitions",
        || {
            let o = run(
                &brokers[0],
                &["topics", "list", "--under-replicated", "--exclude-internal"],
                "",
            );
            (!o.success()).then_some(o)
        },
    );
    assert!(
        under.stderr.contains("2 partition(s) under-replicated"),
        "{under}"
    );
    assert_eq!(under.stdout_lines().len(), 3, "{under}");
    let min = run(
        &brokers[0],
        &["topics", "list", "--under-min-isr", "--exclude-internal"],
        "",
    );
    assert!(
        !min.success() && min.stderr.contains("under min ISR"),
        "{min}"
    );
    assert!(min.stdout.contains("under-min-isr"), "{min}");
    let unavailable = run(&brokers[0], &["topics", "list", "--unavailable"], "");
    assert!(unavailable.success(), "{unavailable}");
}

#[test]
fn json_output_and_progress_lines() {
    let coord = Spec::coordinator()
        .args(["--tick-ms", "200"])
        .start()
        .unwrap();
    let broker = Spec::broker(1, coord.addr()).start().unwrap();
    run(
        &broker,
        &["topics", "create", "progress", "--partitions", "2"],
        "",
    )
    .ok()
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("lines.txt");
    let lines: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&input, &lines).unwrap();
    let fjord = fjord_tests::binary("fjord").unwrap();
    let bootstrap = broker.connect_string();

    // On a terminal (a pty from `script`): a progress line with the share of the file.
    let on_tty = std::process::Command::new("script")
        .args([
            "-qec",
            &format!(
                "{} --bootstrap {bootstrap} produce progress < {}",
                fjord.display(),
                input.display()
            ),
            "/dev/null",
        ])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&on_tty.stdout);
    assert!(on_tty.status.success(), "{shown}");
    assert!(
        shown.contains("/") && shown.contains("bytes (") && shown.contains("records/s"),
        "{shown}"
    );
    assert!(shown.contains("acknowledged 50000 record(s)"), "{shown}");
    // Piped: only the summary.
    let piped = run(&broker, &["produce", "progress"], &lines).ok().unwrap();
    assert!(!piped.stderr.contains("records/s"), "{piped}");
    assert!(!piped.stderr.contains('\r'), "{piped}");
    let consumed_file = dir.path().join("out.txt");
    let consumed = std::process::Command::new("script")
        .args([
            "-qec",
            &format!(
                "{} --bootstrap {bootstrap} consume progress --from beginning --count 60000 > {}",
                fjord.display(),
                consumed_file.display()
            ),
            "/dev/null",
        ])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&consumed.stdout);
    assert!(consumed.status.success(), "{shown}");
    assert!(shown.contains("/60000 records ("), "{shown}");
    assert_eq!(
        std::fs::read_to_string(&consumed_file)
            .unwrap()
            .lines()
            .count(),
        60_000
    );

    // --output json: each table one JSON line, keys from the column names.
    let json = |args: &[&str]| {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = run(&broker, &all, "").ok().unwrap();
        out.stdout
            .lines()
            .map(|l| fjord_tests::json::parse(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect::<Vec<_>>()
    };
    let offsets = json(&["topics", "offsets", "progress"]);
    assert_eq!(offsets.len(), 1);
    let rows = offsets[0].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let total: i64 = rows
        .iter()
        .map(|r| {
            r.get("offset")
                .unwrap()
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, 100_000);
    let describe = json(&["topics", "describe", "progress"]);
    assert_eq!(
        describe[0].get("topic").and_then(|v| v.as_str()),
        Some("progress")
    );
    assert_eq!(describe[1].as_array().unwrap().len(), 2);
    let cluster = json(&["cluster"]);
    assert!(cluster[0].get("controller").is_some());
    let dirs = json(&["cluster", "log-dirs"]);
    assert_eq!(dirs.len(), 2, "replicas, then totals");
    let free = |key: &str| -> i64 {
        dirs[1].as_array().unwrap()[0]
            .get(key)
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    };
    assert!(
        free("volume_size") > 0 && (0..=free("volume_size")).contains(&free("volume_free")),
        "{:?}",
        dirs[1]
    );
    let versions = json(&["cluster", "api-versions"]);
    assert!(versions[0].get("apis").unwrap().as_array().unwrap().len() > 20);
    // Nothing found: no JSON line on stdout, the note on stderr.
    let groups = run(&broker, &["--output", "json", "groups", "list"], "")
        .ok()
        .unwrap();
    assert_eq!(groups.stdout.trim(), "[]", "{groups}");
}
