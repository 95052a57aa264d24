//! One Prometheus scrape of the coordinator, under the names ZooKeeper 3.8's Prometheus
//! metrics provider uses, so ZooKeeper dashboards and alert rules work unchanged, plus
//! `fjord_coordinator_*` series of its own.
//!
//! ZooKeeper's counters keep their names (its provider exports them without `_total`), so
//! they are typed `untyped` here; its summaries are histograms of the same name, in
//! ZooKeeper's units (ms), whose `_sum` and `_count` series are the ones alert rules use.

use super::monitor::{max_fds, open_fds};
use super::stats::{COUNTERS, STATS, SUMMARIES};
use crate::four_letter::View;
use fjord_shared::metrics::{Collector, Families};
use prometheus_client::encoding::DescriptorEncoder;
use std::sync::atomic::Ordering;

/// What one scrape shows: the processor's counts (no lists).
#[derive(Debug)]
pub struct Scrape {
    pub view: View,
}

impl Collector for Scrape {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        let v = &self.view;
        let st = &v.stats;
        let (lmin, lavg, lmax) = st.latency_ms();
        let (last_resp, min_resp, max_resp) = STATS.response_sizes();
        let mut f = Families::new(encoder);
        for name in COUNTERS {
            let value = STATS.counter(name).unwrap_or(0);
            f.untyped(name, "ZooKeeper ServerMetrics counter", value as i64)?;
        }
        let gauges: [(&str, &str, f64); 21] = [
            ("znode_count", "Znodes in the tree", v.node_count as f64),
            ("watch_count", "Watches set", v.watch_count as f64),
            ("ephemerals_count", "Ephemeral znodes", v.ephemerals as f64),
            (
                "approximate_data_size",
                "Bytes of znode paths and data",
                v.data_size as f64,
            ),
            ("global_sessions", "Sessions", v.session_count as f64),
            ("local_sessions", "Local sessions (none in Fjord)", 0.0),
            (
                "num_alive_connections",
                "Client connections",
                v.conn_count as f64,
            ),
            (
                "outstanding_requests",
                "Requests received and not yet answered",
                st.outstanding.load(Ordering::Relaxed) as f64,
            ),
            ("avg_latency", "Mean request latency, ms", lavg),
            ("min_latency", "Smallest request latency, ms", lmin),
            ("max_latency", "Largest request latency, ms", lmax),
            (
                "packets_received",
                "Requests received",
                st.received.load(Ordering::Relaxed) as f64,
            ),
            (
                "packets_sent",
                "Packets sent to clients",
                st.sent.load(Ordering::Relaxed) as f64,
            ),
            (
                "uptime",
                "Milliseconds since the server started",
                st.started.elapsed().as_millis() as f64,
            ),
            (
                "open_file_descriptor_count",
                "Open file descriptors",
                open_fds() as f64,
            ),
            (
                "max_file_descriptor_count",
                "File descriptor limit",
                max_fds() as f64,
            ),
            (
                "last_client_response_size",
                "Bytes of the last response",
                last_resp as f64,
            ),
            (
                "min_client_response_size",
                "Bytes of the smallest response",
                min_resp as f64,
            ),
            (
                "max_client_response_size",
                "Bytes of the largest response",
                max_resp as f64,
            ),
            (
                "outstanding_tls_handshake",
                "TLS handshakes under way",
                STATS.outstanding_tls_handshake.load(Ordering::Relaxed) as f64,
            ),
            (
                "auth_failed_count",
                "Failed authentications",
                STATS.auth_failed_count.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, help, value) in gauges {
            f.gauge(name, help, value)?;
        }
        if v.role.mode == Some("leader") {
            let (last, min, max) = STATS.proposal_sizes();
            f.gauge(
                "learners",
                "Members following this leader",
                v.role.followers as i64,
            )?;
            f.gauge(
                "synced_followers",
                "Followers caught up with this leader",
                v.role.synced_followers as i64,
            )?;
            f.gauge(
                "pending_syncs",
                "Syncs waiting",
                v.role.pending_syncs as i64,
            )?;
            f.gauge(
                "leader_uptime",
                "Milliseconds this member has led",
                v.role.leader_uptime_ms as i64,
            )?;
            f.gauge("last_proposal_size", "Bytes of the last log entry", last)?;
            f.gauge("min_proposal_size", "Bytes of the smallest log entry", min)?;
            f.gauge("max_proposal_size", "Bytes of the largest log entry", max)?;
        }
        for name in SUMMARIES {
            if let Some(h) = STATS.summary(name) {
                f.histogram(name, "ZooKeeper ServerMetrics summary", &h.snapshot())?;
            }
        }
        let namespaces = STATS.namespaces.snapshot();
        for (kind, help) in [
            ("read_per_namespace", "Bytes read per top-level znode"),
            ("write_per_namespace", "Bytes written per top-level znode"),
        ] {
            let series = namespaces.iter().filter_map(|(ns, r, w)| {
                let s = if kind.starts_with("read") { r } else { w };
                s.clone().map(|s| ([("key", ns.clone())], s))
            });
            f.histograms(kind, help, series)?;
        }
        let serving = v.role.mode.is_some() && !v.log_failed;
        f.gauge(
            "fjord_coordinator_serving",
            "1 if this member serves clients (it has a leader and a working log)",
            i64::from(serving),
        )?;
        f.gauge(
            "fjord_coordinator_leader",
            "1 if this member leads its ensemble (or runs standalone)",
            i64::from(matches!(v.role.mode, Some("leader" | "standalone"))),
        )?;
        f.gauge(
            "fjord_coordinator_last_zxid",
            "The last zxid applied",
            v.last_zxid,
        )?;
        let counters = [
            ("commits", "Transactions applied", &STATS.commit_count),
            (
                "sessions_expired",
                "Sessions expired by this member as leader",
                &STATS.stale_sessions_expired,
            ),
            (
                "connections_rejected",
                "Connections refused by the connection limits",
                &STATS.connection_rejected,
            ),
            ("snapshots", "Snapshots written", &STATS.snap_count),
            (
                "received_bytes",
                "Bytes of requests received",
                &STATS.bytes_received_count,
            ),
            (
                "sent_bytes",
                "Bytes of responses sent",
                &STATS.response_bytes,
            ),
        ];
        for (name, help, c) in counters {
            f.counter(
                &format!("fjord_coordinator_{name}"),
                help,
                c.load(Ordering::Relaxed),
            )?;
        }
        fjord_shared::metrics::process::write(&mut f)
    }
}
