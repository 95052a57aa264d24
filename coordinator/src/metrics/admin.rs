//! ZooKeeper's AdminServer commands (`GET /commands/<name>`), answered with the JSON
//! ZooKeeper 3.8 gives: the same keys, with `command` and `error` in every answer. Each
//! command also answers to its four-letter alias (`mntr`, `srvr`, `cons`, ...).

use super::monitor;
use super::stats::STATS;
use crate::four_letter::{View, ZK_VERSION};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

/// What the commands need beyond the processor's view.
#[derive(Debug, Clone)]
pub struct Info {
    pub client_port: u16,
    pub secure_client_port: Option<u16>,
    pub max_client_cnxns: usize,
}

/// (name, four-letter alias, whether it needs the full view).
pub const COMMANDS: &[(&str, &str, bool)] = &[
    ("configuration", "conf", false),
    ("connections", "cons", true),
    ("dirs", "dirs", false),
    ("dump", "dump", true),
    ("environment", "envi", false),
    ("is_read_only", "isro", false),
    ("monitor", "mntr", false),
    ("ruok", "ruok", false),
    ("server_stats", "srvr", false),
    ("stats", "stat", true),
    ("watch_summary", "wchs", true),
    ("watches", "wchc", true),
    ("watches_by_path", "wchp", true),
];

/// The command `name` stands for (its own name, or the name of its alias), and whether
/// it needs the full view.
pub fn lookup(name: &str) -> Option<(&'static str, bool)> {
    COMMANDS
        .iter()
        .find(|(n, alias, _)| *n == name || *alias == name)
        .map(|(n, _, full)| (*n, *full))
}

/// The answer to an unknown command, as ZooKeeper gives it (with status 200).
pub fn unknown(name: &str) -> Value {
    json!({ "command": name, "error": format!("Unknown command: {name}") })
}

/// The answer to `command` (a name from [`COMMANDS`]).
pub fn run(command: &str, v: &View, info: &Info) -> Value {
    let mut m = match command {
        "monitor" => monitor::rows(v).into_iter().collect(),
        "server_stats" => server_stats(v),
        "stats" => {
            let mut m = server_stats(v);
            let (plain, secure) = connections(v, false);
            m.insert("connections".into(), plain);
            m.insert("secure_connections".into(), secure);
            m
        }
        "connections" => {
            let (plain, secure) = connections(v, true);
            let mut m = Map::new();
            m.insert("connections".into(), plain);
            m.insert("secure_connections".into(), secure);
            m
        }
        "dump" => dump(v),
        "watches_by_path" => {
            let mut by_path: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
            for (conn, paths) in &v.watches_by_conn {
                let sid = session_of(v, *conn);
                for p in paths {
                    by_path.entry(p).or_default().push(sid);
                }
            }
            obj([("path_to_session_ids", json!(by_path))])
        }
        "watches" => {
            let by_session: BTreeMap<String, &Vec<String>> = v
                .watches_by_conn
                .iter()
                .map(|(conn, paths)| (session_of(v, *conn).to_string(), paths))
                .collect();
            obj([("session_id_to_watched_paths", json!(by_session))])
        }
        "watch_summary" => {
            let paths: std::collections::BTreeSet<&String> =
                v.watches_by_conn.iter().flat_map(|(_, p)| p).collect();
            obj([
                ("num_connections", json!(v.watches_by_conn.len())),
                ("num_paths", json!(paths.len())),
                ("num_total_watches", json!(v.watch_count)),
            ])
        }
        "environment" => environment(),
        "configuration" => {
            let mut m = obj([
                ("client_port", json!(info.client_port)),
                ("data_dir", json!(v.data_dir)),
                ("data_log_dir", json!(v.data_dir)),
                ("tick_time", json!(v.tick_ms)),
                ("max_client_cnxns", json!(info.max_client_cnxns)),
                ("min_session_timeout", json!(v.min_session_ms)),
                ("max_session_timeout", json!(v.max_session_ms)),
                ("server_id", json!(v.member)),
                ("client_port_listen_backlog", json!(-1)),
            ]);
            if let Some(p) = info.secure_client_port {
                m.insert("secure_client_port".into(), json!(p));
            }
            m
        }
        "dirs" => {
            let size = dir_size(Path::new(&v.data_dir));
            obj([("datadir_size", json!(size)), ("logdir_size", json!(size))])
        }
        "is_read_only" => obj([("read_only", json!(false))]),
        // `ruok` has no fields: its answer without error says the server runs.
        _ => Map::new(),
    };
    m.insert("command".into(), json!(command));
    let error = match (command, v.role.mode, v.log_failed) {
        (_, _, true) => json!("the transaction log failed; this server does not serve"),
        ("ruok", None, _) => json!("This ZooKeeper instance is not currently serving requests"),
        _ => Value::Null,
    };
    m.insert("error".into(), error);
    Value::Object(m)
}

fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn session_of(v: &View, conn: u64) -> i64 {
    v.conns
        .iter()
        .find(|c| c.id == conn)
        .map(|c| c.session)
        .unwrap_or(0)
}

fn server_stats(v: &View) -> Map<String, Value> {
    let st = &v.stats;
    let (lmin, lavg, lmax) = st.latency_ms();
    let (last, min, max) = STATS.response_sizes();
    let buffers = json!({
        "last_buffer_size": last,
        "min_buffer_size": min,
        "max_buffer_size": max,
    });
    let fsync = STATS.fsynctime.snapshot();
    // ZooKeeper counts fsyncs over fsync.warningthresholdms (1 s by default).
    let slow_fsyncs = fsync.count
        - fsync
            .buckets
            .iter()
            .find(|(b, _)| *b >= 1000.0)
            .map_or(fsync.count, |(_, c)| *c);
    let size = dir_size(Path::new(&v.data_dir));
    let stats = json!({
        "packets_sent": st.sent.load(Ordering::Relaxed),
        "packets_received": st.received.load(Ordering::Relaxed),
        "fsync_threshold_exceed_count": slow_fsyncs,
        "client_response_stats": buffers,
        "data_dir_size": size,
        "log_dir_size": size,
        "provider_null": false,
        "server_state": v.role.mode.unwrap_or("not serving"),
        "last_processed_zxid": v.last_zxid,
        "outstanding_requests": st.outstanding.load(Ordering::Relaxed),
        "avg_latency": (lavg * 10_000.0).round() / 10_000.0,
        "max_latency": lmax.round() as u64,
        "min_latency": lmin.round() as u64,
        "num_alive_client_connections": v.conn_count,
        "uptime": st.started.elapsed().as_millis() as u64,
        "auth_failed_count": STATS.auth_failed_count.load(Ordering::Relaxed),
        "non_mtlsremote_conn_count": 0,
        "non_mtlslocal_conn_count": 0,
    });
    let mut m = obj([
        ("version", json!(ZK_VERSION)),
        ("read_only", json!(false)),
        ("server_stats", stats),
        ("client_response", buffers),
        ("node_count", json!(v.node_count)),
    ]);
    if v.role.mode == Some("leader") {
        let (last, min, max) = STATS.proposal_sizes();
        m.insert(
            "proposal_stats".into(),
            json!({ "last_buffer_size": last, "min_buffer_size": min, "max_buffer_size": max }),
        );
    }
    m
}

/// (plain, TLS) connections; `full` adds the session and latency fields of `cons`.
fn connections(v: &View, full: bool) -> (Value, Value) {
    let mut plain = Vec::new();
    let mut secure = Vec::new();
    for c in &v.conns {
        let s = &c.stats;
        let mut m = obj([
            ("remote_socket_address", json!(c.peer.to_string())),
            ("interest_ops", json!(1)),
            ("outstanding_requests", json!(c.outstanding)),
            ("packets_received", json!(c.received)),
            ("packets_sent", json!(s.sent)),
        ]);
        if full {
            let last_response = s.last_response.map_or(0, |t| {
                v.now_ms.saturating_sub(t.elapsed().as_millis() as u64)
            });
            m.extend(obj([
                ("session_id", json!(c.session)),
                ("last_operation", json!(s.last_op)),
                ("established", json!(c.established_ms)),
                ("session_timeout", json!(c.timeout_ms)),
                ("last_cxid", json!(s.last_cxid)),
                ("last_zxid", json!(s.last_zxid)),
                ("last_response_time", json!(last_response)),
                ("last_latency", json!(s.last_latency)),
                ("min_latency", json!(s.min_latency)),
                ("avg_latency", json!(s.avg_latency())),
                ("max_latency", json!(s.max_latency)),
            ]));
        }
        if c.secure {
            secure.push(Value::Object(m));
        } else {
            plain.push(Value::Object(m));
        }
    }
    (Value::Array(plain), Value::Array(secure))
}

fn dump(v: &View) -> Map<String, Value> {
    let mut expiry: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    // Only the member that expires sessions (the leader, or a standalone server) has
    // their deadlines; a follower shows none, as ZooKeeper's followers do.
    let tracks_expiry = v.role.mode != Some("follower");
    for (id, _, deadline) in v.sessions.iter().filter(|_| tracks_expiry) {
        expiry.entry(*deadline).or_default().push(*id);
    }
    for ids in expiry.values_mut() {
        ids.sort();
    }
    let expiry: Map<String, Value> = expiry
        .into_iter()
        .map(|(t, ids)| (t.to_string(), json!(ids)))
        .collect();
    let ephemerals: Map<String, Value> = v
        .ephemeral_list
        .iter()
        .map(|(id, paths)| (id.to_string(), json!(paths)))
        .collect();
    obj([
        ("expiry_time_to_session_ids", Value::Object(expiry)),
        ("session_id_to_ephemeral_paths", Value::Object(ephemerals)),
    ])
}

/// The `java.*` keys of ZooKeeper's `environment`, without the prefix.
const JAVA_PROPERTIES: &[&str] = &[
    "version",
    "vendor",
    "home",
    "class.path",
    "library.path",
    "io.tmpdir",
    "compiler",
];

/// ZooKeeper's `environment` keys. The `java.*` ones describe the JVM ZooKeeper runs in;
/// Fjord has none, and says `<NA>` as ZooKeeper does for a property it lacks.
fn environment() -> Map<String, Value> {
    let na = || json!("<NA>");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let os_version = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or_else(na, |kb| json!(format!("{}MB", kb / 1024)))
    };
    let rss = fjord_shared::metrics::process::status_bytes("VmRSS:")
        .map_or_else(na, |b| json!(format!("{}MB", b as u64 / (1024 * 1024))));
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    let mut m = obj([
        ("zookeeper.version", json!(ZK_VERSION)),
        ("host.name", json!(host)),
    ]);
    // The JVM's properties: none but the temporary directory has a meaning here.
    for key in JAVA_PROPERTIES {
        let value = if *key == "io.tmpdir" {
            json!(std::env::temp_dir().display().to_string())
        } else {
            na()
        };
        m.insert(format!("java.{key}"), value);
    }
    m.extend(obj([
        ("os.name", json!(os_name())),
        ("os.arch", json!(os_arch())),
        ("os.version", json!(os_version)),
        ("user.name", json!(user)),
        (
            "user.home",
            json!(std::env::var("HOME").unwrap_or_default()),
        ),
        (
            "user.dir",
            json!(std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default()),
        ),
        ("os.memory.free", mem("MemAvailable:")),
        ("os.memory.max", mem("MemTotal:")),
        ("os.memory.total", rss),
    ]));
    m
}

/// The OS name as Java spells it.
fn os_name() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Mac OS X",
        other => other,
    }
}

/// The architecture as Java spells it.
fn os_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        other => other,
    }
}

/// Bytes of the files under `dir` (not following links).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
