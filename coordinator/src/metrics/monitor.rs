//! ZooKeeper 3.8's `monitor` (the `mntr` four-letter word and the AdminServer command):
//! every key ZooKeeper shows, in its order, from the processor's [`View`] and the
//! recorded [`STATS`].

use super::stats::{COUNTERS, STATS, SUMMARIES, WITH_PERCENTILES};
use crate::four_letter::{View, ZK_VERSION};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// `monitor`, as (key, value) in ZooKeeper's order.
pub fn rows(v: &View) -> Vec<(String, Value)> {
    let st = &v.stats;
    let (lmin, lavg, lmax) = st.latency_ms();
    let (last_resp, min_resp, max_resp) = STATS.response_sizes();
    let mut rows: Vec<(String, Value)> = Vec::with_capacity(520);
    let mut put = |k: &str, v: Value| rows.push((k.to_owned(), v));
    put("version", json!(ZK_VERSION));
    put("server_state", json!(v.role.mode.unwrap_or("not serving")));
    put("ephemerals_count", json!(v.ephemerals));
    put("num_alive_connections", json!(v.conn_count));
    put("avg_latency", json!(round4(lavg)));
    put(
        "outstanding_requests",
        json!(st.outstanding.load(Ordering::Relaxed)),
    );
    put("znode_count", json!(v.node_count));
    put("global_sessions", json!(v.session_count));
    // Counted by ZooKeeper only for x509 logins over connections without client
    // certificates, which Fjord refuses at the TLS handshake.
    put("non_mtls_remote_conn_count", json!(0));
    put("last_client_response_size", json!(last_resp));
    put("packets_sent", json!(st.sent.load(Ordering::Relaxed)));
    put(
        "packets_received",
        json!(st.received.load(Ordering::Relaxed)),
    );
    put("max_client_response_size", json!(max_resp));
    // Fjord sheds no connections at random (ZooKeeper's connection throttle).
    put("connection_drop_probability", json!(0.0));
    put("watch_count", json!(v.watch_count));
    put(
        "auth_failed_count",
        json!(STATS.auth_failed_count.load(Ordering::Relaxed)),
    );
    put("min_latency", json!(lmin.round() as u64));
    put("max_file_descriptor_count", json!(max_fds()));
    put("approximate_data_size", json!(v.data_size));
    put("open_file_descriptor_count", json!(open_fds()));
    // Every Fjord session is global (replicated); there are no local sessions.
    put("local_sessions", json!(0));
    put("uptime", json!(st.started.elapsed().as_millis() as u64));
    put("max_latency", json!(lmax.round() as u64));
    put(
        "outstanding_tls_handshake",
        json!(STATS.outstanding_tls_handshake.load(Ordering::Relaxed)),
    );
    put("min_client_response_size", json!(min_resp));
    put("non_mtls_local_conn_count", json!(0));
    if matches!(v.role.mode, Some("leader" | "follower")) {
        put(
            "quorum_size",
            json!(STATS.quorum_size.load(Ordering::Relaxed)),
        );
        let state = if v.role.mode == Some("leader") {
            "leading - broadcast"
        } else {
            "following - broadcast"
        };
        put("peer_state", json!(state));
    }
    if v.role.mode == Some("leader") {
        let (last, min, max) = STATS.proposal_sizes();
        put("learners", json!(v.role.followers));
        put("synced_followers", json!(v.role.synced_followers));
        // Every Fjord member votes; there are no observers.
        put("synced_non_voting_followers", json!(0));
        put("synced_observers", json!(0));
        put("pending_syncs", json!(v.role.pending_syncs));
        put("leader_uptime", json!(v.role.leader_uptime_ms));
        put("last_proposal_size", json!(last));
        put("max_proposal_size", json!(max));
        put("min_proposal_size", json!(min));
    }
    for name in COUNTERS {
        put(name, json!(STATS.counter(name).unwrap_or(0)));
    }
    for name in SUMMARIES {
        let s = STATS
            .summary(name)
            .map(|h| h.snapshot())
            .unwrap_or_else(empty);
        put(&format!("avg_{name}"), json!(round4(s.avg())));
        put(&format!("min_{name}"), json!(s.min.round() as i64));
        put(&format!("max_{name}"), json!(s.max.round() as i64));
        put(&format!("cnt_{name}"), json!(s.count));
        put(&format!("sum_{name}"), json!(s.sum.round() as i64));
        if WITH_PERCENTILES.contains(name) {
            for (p, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999)] {
                put(&format!("{p}_{name}"), json!(s.quantile(q).round() as i64));
            }
        }
    }
    if v.role.mode == Some("leader") {
        // Per follower: how far behind it was, and (a stage of ZooKeeper's learner
        // handler queue that Fjord's replication has not) no queue times.
        for (id, s) in STATS.learner_lags() {
            let name = format!("{id}_learner_handler_qp_size");
            put(&format!("avg_{name}"), json!(round4(s.avg())));
            put(&format!("min_{name}"), json!(s.min.round() as i64));
            put(&format!("max_{name}"), json!(s.max.round() as i64));
            put(&format!("cnt_{name}"), json!(s.count));
            put(&format!("sum_{name}"), json!(s.sum.round() as i64));
            let name = format!("{id}_learner_handler_qp_time_ms");
            for k in [
                "avg", "min", "max", "cnt", "sum", "p50", "p95", "p99", "p999",
            ] {
                put(&format!("{k}_{name}"), json!(0));
            }
        }
    }
    for (ns, reads, writes) in STATS.namespaces.snapshot() {
        for (kind, s) in [("read", reads), ("write", writes)] {
            let s = s.unwrap_or_else(empty);
            let name = format!("{ns}_{kind}_per_namespace");
            put(&format!("avg_{name}"), json!(round4(s.avg())));
            put(&format!("min_{name}"), json!(s.min.round() as i64));
            put(&format!("max_{name}"), json!(s.max.round() as i64));
            put(&format!("cnt_{name}"), json!(s.count));
            put(&format!("sum_{name}"), json!(s.sum.round() as i64));
        }
    }
    rows
}

/// The `mntr` text: `zk_<key>\t<value>` lines.
pub fn mntr(v: &View) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for (k, val) in rows(v) {
        let text = match val {
            Value::String(s) => s,
            other => other.to_string(),
        };
        out.push_str("zk_");
        out.push_str(&k);
        out.push('\t');
        out.push_str(&text);
        out.push('\n');
    }
    out
}

fn empty() -> fjord_shared::metrics::histogram::Snapshot {
    fjord_shared::metrics::histogram::Snapshot {
        sum: 0.0,
        count: 0,
        buckets: Vec::new(),
        min: 0.0,
        max: 0.0,
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    fjord_shared::metrics::process::open_fds().unwrap_or(0)
}

/// The process's limit on open file descriptors.
pub fn max_fds() -> u64 {
    fjord_shared::metrics::process::max_fds()
        .unwrap_or(0)
        .max(0) as u64
}
