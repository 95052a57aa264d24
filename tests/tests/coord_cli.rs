//! The operator commands of `fjord coord` against a real coordinator with a broker
//! registered: `4lw`, `ephemerals`, `count`, `sync` and `whoami`, and their errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fjord_tests::{fjord, Output, Process, Spec};
use std::time::Duration;

const CLI_TIMEOUT: Duration = Duration::from_secs(20);

fn coord(c: &Process, args: &[&str]) -> Output {
    let mut all = vec![
        "--coordinator".to_owned(),
        c.connect_string(),
        "coord".to_owned(),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    fjord(all, "", CLI_TIMEOUT).unwrap()
}

#[test]
fn operator_commands_read_the_coordinator() {
    let c = Spec::coordinator()
        .args(["--tick-ms", "200"])
        .start()
        .unwrap();
    let _broker = Spec::broker(1, c.addr()).start().unwrap();

    // Four-letter words, straight to the first address.
    let ruok = coord(&c, &["4lw", "ruok"]).ok().unwrap();
    assert_eq!(ruok.stdout.trim(), "imok");
    let mntr = coord(&c, &["4lw", "mntr"]).ok().unwrap();
    assert!(mntr.stdout.contains("zk_znode_count\t"), "{mntr}");
    let srvr = coord(&c, &["4lw", "srvr"]).ok().unwrap();
    assert!(srvr.stdout.contains("Mode: standalone"), "{srvr}");
    // A word the server does not know gets no answer: a clear error, not an empty success.
    let unknown = coord(&c, &["4lw", "zzzz"]);
    assert!(!unknown.success(), "{unknown}");
    assert!(
        unknown.stderr.contains("answered zzzz with nothing"),
        "{unknown}"
    );
    let bad = coord(&c, &["4lw", "monitor"]);
    assert!(
        !bad.success() && bad.stderr.contains("not a four-letter word"),
        "{bad}"
    );

    // The broker's registration and the controller znode are ephemeral, owned by the
    // broker's session.
    let eph = coord(&c, &["ephemerals", "/"]).ok().unwrap();
    let lines = eph.stdout_lines();
    let paths: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(paths.contains(&"/brokers/ids/1"), "{eph}");
    assert!(paths.contains(&"/controller"), "{eph}");
    let owners: std::collections::BTreeSet<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(owners.len(), 1, "one session owns both: {eph}");
    assert!(owners.iter().all(|o| o.starts_with("0x")), "{eph}");
    let under = coord(&c, &["ephemerals", "/brokers"]).ok().unwrap();
    assert_eq!(under.stdout_lines().len(), 1, "{under}");

    // count: every node below, as getAllChildrenNumber counts them.
    let tree = coord(&c, &["tree", "/brokers"]).ok().unwrap();
    let count = coord(&c, &["count", "/brokers"]).ok().unwrap();
    assert_eq!(
        count.stdout.trim().parse::<usize>().unwrap(),
        tree.stdout_lines().len() - 1,
        "{tree}"
    );
    let missing = coord(&c, &["count", "/nope"]);
    assert!(
        !missing.success() && missing.stderr.contains("NONODE"),
        "{missing}"
    );

    let sync = coord(&c, &["sync", "/brokers"]).ok().unwrap();
    assert_eq!(sync.stdout.trim(), "/brokers");
    let who = coord(&c, &["whoami"]).ok().unwrap();
    assert!(who.stdout.contains("ip:127.0.0.1"), "{who}");
}
