//! The four-letter words (`ruok`, `srvr`, `stat`, `mntr`, `cons`, `wchs`, `wchc`, `wchp`,
//! `dump`, `envi`, `conf`, `isro`), answered on the client port like ZooKeeper 3.8 does.
//!
//! A connection whose first four bytes spell a known word gets the text and is closed.
//! Output formats follow ZooKeeper's so that monitoring scripts parse them unchanged.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The ZooKeeper version we speak, as tools expect to find it.
pub const ZK_VERSION: &str = concat!("3.8.0-fjord-", env!("CARGO_PKG_VERSION"));

/// The words we answer.
pub const WORDS: [&str; 12] = [
    "ruok", "srvr", "stat", "mntr", "cons", "wchs", "wchc", "wchp", "dump", "envi", "conf", "isro",
];

/// Whether the first bytes of a connection are a four-letter word.
pub fn is_word(first: &[u8]) -> Option<&'static str> {
    WORDS.iter().copied().find(|w| w.as_bytes() == first)
}

/// Counters shared by the connection tasks and the processor.
#[derive(Debug)]
pub struct ServerStats {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub outstanding: AtomicU64,
    pub connections: AtomicU64,
    lat_min: AtomicU64,
    lat_max: AtomicU64,
    lat_sum: AtomicU64,
    lat_count: AtomicU64,
    pub started: std::time::Instant,
}

impl Default for ServerStats {
    fn default() -> Self {
        ServerStats {
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            outstanding: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            lat_min: AtomicU64::new(u64::MAX),
            lat_max: AtomicU64::new(0),
            lat_sum: AtomicU64::new(0),
            lat_count: AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }
}

impl ServerStats {
    /// Records one request's latency (receipt to reply written), in microseconds.
    pub fn record_latency(&self, micros: u64) {
        self.lat_min.fetch_min(micros, Ordering::Relaxed);
        self.lat_max.fetch_max(micros, Ordering::Relaxed);
        self.lat_sum.fetch_add(micros, Ordering::Relaxed);
        self.lat_count.fetch_add(1, Ordering::Relaxed);
    }

    /// (min, avg, max) in milliseconds.
    pub fn latency_ms(&self) -> (f64, f64, f64) {
        let n = self.lat_count.load(Ordering::Relaxed);
        if n == 0 {
            return (0.0, 0.0, 0.0);
        }
        let min = self.lat_min.load(Ordering::Relaxed) as f64 / 1000.0;
        let max = self.lat_max.load(Ordering::Relaxed) as f64 / 1000.0;
        let avg = self.lat_sum.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0;
        (min, avg, max)
    }
}

/// One connection, for `cons`.
#[derive(Debug, Clone)]
pub struct ConnView {
    pub id: u64,
    pub peer: SocketAddr,
    /// Over TLS.
    pub secure: bool,
    pub session: i64,
    pub timeout_ms: i32,
    pub received: u64,
    pub since_ms: u64,
    /// When it was established, ms since the epoch.
    pub established_ms: i64,
    /// Requests received and not yet answered.
    pub outstanding: usize,
    pub stats: crate::processor::ConnStats,
}

/// What the processor shows of its state.
#[derive(Debug, Clone)]
pub struct View {
    pub last_zxid: i64,
    pub node_count: usize,
    pub data_size: usize,
    pub ephemerals: usize,
    pub ephemeral_list: Vec<(i64, Vec<String>)>,
    pub session_count: usize,
    /// (id, timeout ms, deadline on the processor's clock)
    pub sessions: Vec<(i64, i32, u64)>,
    pub watch_count: usize,
    pub watches_by_conn: Vec<(u64, Vec<String>)>,
    pub conn_count: usize,
    pub conns: Vec<ConnView>,
    pub stats: Arc<ServerStats>,
    pub log_failed: bool,
    pub tick_ms: u64,
    pub min_session_ms: i32,
    pub max_session_ms: i32,
    pub data_dir: String,
    pub max_frame: usize,
    /// The processor's clock (ms since it started), which session deadlines use.
    pub now_ms: u64,
    /// This member's id in its ensemble.
    pub member: u64,
    pub role: RoleView,
}

/// This member's place in its ensemble.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleView {
    /// `standalone`, `leader` or `follower`; `None` while the member has no leader (it does
    /// not serve then, and says so as ZooKeeper does).
    pub mode: Option<&'static str>,
    /// On a leader: members replicating from it, and those caught up.
    pub followers: usize,
    pub synced_followers: usize,
    pub pending_syncs: usize,
    /// How long this member has led, ms (0 unless it leads).
    pub leader_uptime_ms: u64,
}

/// The text answer to `word`.
pub fn render(word: &str, v: &View) -> String {
    let mut s = String::new();
    let st = &v.stats;
    let (lmin, lavg, lmax) = st.latency_ms();
    let received = st.received.load(Ordering::Relaxed);
    let sent = st.sent.load(Ordering::Relaxed);
    let outstanding = st.outstanding.load(Ordering::Relaxed);
    let _ = match word {
        "ruok" => {
            if v.log_failed {
                // ZooKeeper answers nothing when it is not serving.
                return String::new();
            }
            write!(s, "imok")
        }
        "isro" => write!(s, "rw"),
        "srvr" | "stat" => {
            let Some(mode) = v.role.mode else {
                return "This ZooKeeper instance is not currently serving requests\n".into();
            };
            let _ = writeln!(s, "Zookeeper version: {ZK_VERSION}");
            if word == "stat" {
                let _ = writeln!(s, "Clients:");
                for c in &v.conns {
                    let _ = writeln!(
                        s,
                        " /{}[1](queued=0,recved={},sent={})",
                        c.peer, c.received, c.received
                    );
                }
                let _ = writeln!(s);
            }
            let _ = writeln!(s, "Latency min/avg/max: {lmin:.0}/{lavg:.4}/{lmax:.0}");
            let _ = writeln!(s, "Received: {received}");
            let _ = writeln!(s, "Sent: {sent}");
            let _ = writeln!(s, "Connections: {}", v.conn_count);
            let _ = writeln!(s, "Outstanding: {outstanding}");
            let _ = writeln!(s, "Zxid: {:#x}", v.last_zxid);
            let _ = writeln!(s, "Mode: {mode}");
            writeln!(s, "Node count: {}", v.node_count)
        }
        "mntr" => {
            s = crate::metrics::monitor::mntr(v);
            Ok(())
        }
        "cons" => {
            for c in &v.conns {
                let _ = writeln!(
                    s,
                    " /{}[1](queued=0,recved={},sent={},sid={:#x},est={},to={})",
                    c.peer, c.received, c.received, c.session, c.since_ms, c.timeout_ms
                );
            }
            writeln!(s)
        }
        "wchs" => {
            let paths: std::collections::BTreeSet<&String> =
                v.watches_by_conn.iter().flat_map(|(_, p)| p).collect();
            let _ = writeln!(
                s,
                "{} connections watching {} paths",
                v.watches_by_conn.len(),
                paths.len()
            );
            writeln!(s, "Total watches:{}", v.watch_count)
        }
        "wchc" => {
            for (conn, paths) in &v.watches_by_conn {
                let sid = v
                    .conns
                    .iter()
                    .find(|c| c.id == *conn)
                    .map(|c| c.session)
                    .unwrap_or(0);
                let _ = writeln!(s, "{sid:#x}");
                for p in paths {
                    let _ = writeln!(s, "\t{p}");
                }
            }
            Ok(())
        }
        "wchp" => {
            let mut by_path: std::collections::BTreeMap<&String, Vec<i64>> = Default::default();
            for (conn, paths) in &v.watches_by_conn {
                let sid = v
                    .conns
                    .iter()
                    .find(|c| c.id == *conn)
                    .map(|c| c.session)
                    .unwrap_or(0);
                for p in paths {
                    by_path.entry(p).or_default().push(sid);
                }
            }
            for (p, sids) in by_path {
                let _ = writeln!(s, "{p}");
                for sid in sids {
                    let _ = writeln!(s, "\t{sid:#x}");
                }
            }
            Ok(())
        }
        "dump" => {
            let _ = writeln!(s, "SessionTracker dump:");
            let _ = writeln!(s, "Global Sessions({}):", v.session_count);
            let mut sessions = v.sessions.clone();
            sessions.sort();
            for (id, to, _) in sessions {
                let _ = writeln!(s, "{id:#x}\t{to}ms");
            }
            let _ = writeln!(s, "ephemeral nodes dump:");
            let _ = writeln!(s, "Sessions with Ephemerals ({}):", v.ephemeral_list.len());
            let mut eph = v.ephemeral_list.clone();
            eph.sort();
            for (id, paths) in eph {
                let _ = writeln!(s, "{id:#x}:");
                for p in paths {
                    let _ = writeln!(s, "\t{p}");
                }
            }
            writeln!(s, "Connections with Ephemerals ({}):", v.conn_count)
        }
        "envi" => {
            let _ = writeln!(s, "Environment:");
            let _ = writeln!(s, "zookeeper.version={ZK_VERSION}");
            let _ = writeln!(
                s,
                "host.name={}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into())
            );
            let _ = writeln!(s, "server.name=fjord-coordinator");
            let _ = writeln!(s, "os.name={}", std::env::consts::OS);
            let _ = writeln!(s, "os.arch={}", std::env::consts::ARCH);
            writeln!(
                s,
                "user.dir={}",
                std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            )
        }
        "conf" => {
            let _ = writeln!(s, "dataDir={}", v.data_dir);
            let _ = writeln!(s, "tickTime={}", v.tick_ms);
            let _ = writeln!(s, "minSessionTimeout={}", v.min_session_ms);
            let _ = writeln!(s, "maxSessionTimeout={}", v.max_session_ms);
            let _ = writeln!(s, "jute.maxbuffer={}", v.max_frame);
            writeln!(s, "serverId=0")
        }
        _ => Ok(()),
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        View {
            last_zxid: 0x2a,
            node_count: 5,
            data_size: 10,
            ephemerals: 1,
            ephemeral_list: vec![(7, vec!["/e".into()])],
            session_count: 1,
            sessions: vec![(7, 4000, 5000)],
            conn_count: 0,
            watch_count: 2,
            watches_by_conn: vec![(1, vec!["/a".into(), "/b".into()])],
            conns: vec![],
            stats: Arc::new(ServerStats::default()),
            log_failed: false,
            tick_ms: 500,
            min_session_ms: 1000,
            max_session_ms: 10000,
            data_dir: "/d".into(),
            max_frame: 1 << 20,
            now_ms: 1000,
            member: 1,
            role: RoleView {
                mode: Some("standalone"),
                ..Default::default()
            },
        }
    }

    #[test]
    fn words_render_like_zookeeper() {
        let v = view();
        assert_eq!(render("ruok", &v), "imok");
        assert!(render("srvr", &v).contains("Zxid: 0x2a\nMode: standalone\nNode count: 5\n"));
        assert!(render("mntr", &v).contains("zk_znode_count\t5\n"));
        assert_eq!(
            render("wchs", &v),
            "1 connections watching 2 paths\nTotal watches:2\n"
        );
        assert!(render("dump", &v).contains("0x7:\n\t/e\n"));
        assert!(render("envi", &v).contains("zookeeper.version=3.8.0-"));
        assert!(!render("mntr", &v).contains("zk_learners"));
        assert!(render("mntr", &v).contains("zk_cnt_fsynctime\t"));
        let leader = View {
            role: RoleView {
                mode: Some("leader"),
                followers: 2,
                synced_followers: 1,
                pending_syncs: 0,
                leader_uptime_ms: 10,
            },
            ..v.clone()
        };
        assert!(render("srvr", &leader).contains("Mode: leader\n"));
        assert!(render("mntr", &leader).contains("zk_server_state\tleader\nzk_"));
        assert!(render("mntr", &leader).contains("zk_learners\t2\nzk_synced_followers\t1\n"));
        let lost = View {
            role: RoleView::default(),
            ..v.clone()
        };
        assert_eq!(
            render("srvr", &lost),
            "This ZooKeeper instance is not currently serving requests\n"
        );
        assert_eq!(is_word(b"ruok"), Some("ruok"));
        assert_eq!(is_word(b"\0\0\0\x2d"), None);
    }
}
