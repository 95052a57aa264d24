//! What the coordinator's stages record as they run: ZooKeeper's `ServerMetrics`, under
//! ZooKeeper's names, kept in relaxed atomics. One coordinator runs per process, so they
//! are process-wide, as ZooKeeper's are.
//!
//! Summaries (ZooKeeper's avg/min/max/cnt/sum sets) are [`Histogram`]s: the AdminServer's
//! `monitor` shows their avg/min/max/cnt/sum (and estimated percentiles), Prometheus their
//! buckets, `_sum` and `_count`.

use fjord_shared::metrics::histogram::{Histogram, Snapshot};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

/// The summaries ZooKeeper 3.8 reports, in its order; see [`Stats::summary`] for the
/// ones Fjord measures. The others time stages of ZooKeeper's Java pipeline (commit
/// processor pools, learner and observer sync, netty buffers, JVM pauses, session
/// queues) that Fjord does not have: they report no observations.
pub const SUMMARIES: &[&str] = &[
    "close_session_prep_time",
    "commit_commit_proc_req_queued",
    "commit_process_time",
    "commit_propagation_latency",
    "concurrent_request_processing_in_commit_processor",
    "connection_token_deficit",
    "dbinittime",
    "dead_watchers_cleaner_latency",
    "election_time",
    "follower_sync_time",
    "fsynctime",
    "inflight_diff_count",
    "inflight_snap_count",
    "jvm_pause_time_ms",
    "leader_unavailable_time",
    "learner_request_processor_queue_size",
    "local_write_committed_time_ms",
    "netty_queued_buffer_capacity",
    "node_changed_watch_count",
    "node_children_watch_count",
    "node_created_watch_count",
    "node_deleted_watch_count",
    "observer_sync_time",
    "om_commit_process_time_ms",
    "om_proposal_process_time_ms",
    "pending_session_queue_size",
    "prep_process_time",
    "prep_processor_queue_size",
    "prep_processor_queue_time_ms",
    "propagation_latency",
    "proposal_ack_creation_latency",
    "proposal_latency",
    "proposal_process_time",
    "quorum_ack_latency",
    "read_commit_proc_issued",
    "read_commit_proc_req_queued",
    "read_commitproc_time_ms",
    "read_final_proc_time_ms",
    "readlatency",
    "reads_after_write_in_session_queue",
    "reads_issued_from_session_queue",
    "request_throttle_queue_time_ms",
    "requests_in_session_queue",
    "server_write_committed_time_ms",
    "session_queues_drained",
    "snapshottime",
    "socket_closing_time",
    "startup_snap_load_time",
    "startup_txns_load_time",
    "startup_txns_loaded",
    "sync_process_time",
    "sync_processor_batch_size",
    "sync_processor_queue_and_flush_time_ms",
    "sync_processor_queue_flush_time_ms",
    "sync_processor_queue_size",
    "sync_processor_queue_time_ms",
    "time_waiting_empty_pool_in_commit_processor_read_ms",
    "unavailable_time",
    "updatelatency",
    "write_batch_time_in_commit_processor",
    "write_commit_proc_issued",
    "write_commit_proc_req_queued",
    "write_commitproc_time_ms",
    "write_final_proc_time_ms",
];

/// Summaries ZooKeeper also shows percentiles (p50, p95, p99, p999) of.
pub const WITH_PERCENTILES: &[&str] = &[
    "close_session_prep_time",
    "commit_propagation_latency",
    "dead_watchers_cleaner_latency",
    "jvm_pause_time_ms",
    "local_write_committed_time_ms",
    "om_commit_process_time_ms",
    "om_proposal_process_time_ms",
    "prep_processor_queue_time_ms",
    "propagation_latency",
    "proposal_ack_creation_latency",
    "proposal_latency",
    "quorum_ack_latency",
    "read_commitproc_time_ms",
    "read_final_proc_time_ms",
    "readlatency",
    "request_throttle_queue_time_ms",
    "server_write_committed_time_ms",
    "sync_processor_queue_and_flush_time_ms",
    "sync_processor_queue_flush_time_ms",
    "sync_processor_queue_time_ms",
    "updatelatency",
    "write_commitproc_time_ms",
    "write_final_proc_time_ms",
];

/// The counters ZooKeeper 3.8's `monitor` shows after its gauges, in its order. Those
/// [`Stats::counter`] knows are counted; the rest count events of ZooKeeper's Java
/// pipeline (response caches, throttles, dead-watcher cleaning, learners and observers,
/// digests) that never happen in Fjord, and stay 0.
pub const COUNTERS: &[&str] = &[
    "proposal_count",
    "watch_bytes",
    "outstanding_changes_removed",
    "throttled_ops",
    "stale_requests_dropped",
    "large_requests_rejected",
    "insecure_admin_count",
    "connection_rejected",
    "cnxn_closed_without_zk_server_running",
    "sessionless_connections_expired",
    "looking_count",
    "dead_watchers_queued",
    "stale_requests",
    "connection_drop_count",
    "learner_proposal_received_count",
    "digest_mismatches_count",
    "dead_watchers_cleared",
    "response_packet_cache_hits",
    "bytes_received_count",
    "add_dead_watcher_stall_time",
    "request_throttle_wait_count",
    "requests_not_forwarded_to_commit_processor",
    "response_packet_cache_misses",
    "ensemble_auth_success",
    "prep_processor_request_queued",
    "learner_commit_received_count",
    "stale_replies",
    "connection_request_count",
    "response_bytes",
    "ensemble_auth_fail",
    "diff_count",
    "response_packet_get_children_cache_misses",
    "connection_revalidate_count",
    "quit_leading_due_to_disloyal_voter",
    "snap_count",
    "unrecoverable_error_count",
    "unsuccessful_handshake",
    "commit_count",
    "stale_sessions_expired",
    "response_packet_get_children_cache_hits",
    "sync_processor_request_queued",
    "outstanding_changes_queued",
    "request_commit_queued",
    "ensemble_auth_skip",
    "skip_learner_request_to_next_processor_count",
    "tls_handshake_exceeded",
    "revalidate_count",
];

/// The coordinator's recorded metrics.
#[derive(Debug)]
pub struct Stats {
    /// Raft log fsyncs, ms.
    pub fsynctime: Histogram,
    /// Log entries per fsynced batch.
    pub sync_processor_batch_size: Histogram,
    /// Writing one snapshot, ms.
    pub snapshottime: Histogram,
    /// Recovery at startup (snapshot load and log checks), ms.
    pub dbinittime: Histogram,
    /// Loading the newest snapshot at startup, ms.
    pub startup_snap_load_time: Histogram,
    /// Reads (and pings) from receipt to reply, ms.
    pub readlatency: Histogram,
    /// Writes from receipt to reply (committed and applied), ms.
    pub updatelatency: Histogram,
    /// How long this member was without a leader before one was elected, ms.
    pub election_time: Histogram,
    /// Watchers fired per event, by event type.
    pub node_created_watch_count: Histogram,
    pub node_deleted_watch_count: Histogram,
    pub node_changed_watch_count: Histogram,
    pub node_children_watch_count: Histogram,

    pub proposal_count: AtomicU64,
    pub connection_rejected: AtomicU64,
    pub looking_count: AtomicU64,
    pub bytes_received_count: AtomicU64,
    pub prep_processor_request_queued: AtomicU64,
    pub connection_request_count: AtomicU64,
    pub response_bytes: AtomicU64,
    pub snap_count: AtomicU64,
    pub unsuccessful_handshake: AtomicU64,
    pub commit_count: AtomicU64,
    pub stale_sessions_expired: AtomicU64,
    pub sync_processor_request_queued: AtomicU64,
    pub auth_failed_count: AtomicU64,

    /// Bytes read and written per top-level znode (ZooKeeper's `*_per_namespace`).
    pub namespaces: Namespaces,
    /// Voting members of the ensemble (ZooKeeper's `quorum_size`).
    pub quorum_size: AtomicU64,
    /// On a leader, per follower: how many log entries it was behind, sampled whenever
    /// replication progress changes (ZooKeeper's `<sid>_learner_handler_qp_size`).
    pub learners: dashmap::DashMap<u64, Histogram>,
    /// TLS handshakes under way.
    pub outstanding_tls_handshake: AtomicU64,
    /// Sizes of log entries written (proposals): last, min, max.
    pub last_proposal_size: AtomicU64,
    pub min_proposal_size: AtomicU64,
    pub max_proposal_size: AtomicU64,

    /// Sizes of responses written to clients: last, min, max.
    pub last_client_response_size: AtomicU64,
    pub min_client_response_size: AtomicU64,
    pub max_client_response_size: AtomicU64,
}

/// Upper bounds for byte counts.
pub const BYTES: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
];

/// What ZooKeeper adds to every read for the stat it returns.
pub const STAT_OVERHEAD_BYTES: usize = 6 * 8 + 5 * 4;

/// Bytes read and written per namespace (the first component of a path), as ZooKeeper's
/// data tree counts them: a write counts its path and data; a read its path, what it
/// returns (data, or children's names) and the stat.
#[derive(Debug, Default)]
pub struct Namespaces {
    reads: dashmap::DashMap<String, Histogram>,
    writes: dashmap::DashMap<String, Histogram>,
}

impl Namespaces {
    /// A read of `path` that returned `payload` bytes besides its stat.
    pub fn read(&self, path: &str, payload: usize) {
        Self::add(
            &self.reads,
            path,
            path.len() + payload + STAT_OVERHEAD_BYTES,
        );
    }

    /// A create, set or delete of `path` with `data` bytes.
    pub fn write(&self, path: &str, data: usize) {
        Self::add(&self.writes, path, path.len() + data);
    }

    fn add(map: &dashmap::DashMap<String, Histogram>, path: &str, bytes: usize) {
        let Some(ns) = namespace(path) else { return };
        if let Some(h) = map.get(ns) {
            return h.observe_ticks(bytes as u64);
        }
        map.entry(ns.to_owned())
            .or_insert_with(|| Histogram::new(BYTES, 1.0, 0.0))
            .observe_ticks(bytes as u64);
    }

    /// (namespace, reads, writes) summaries, sorted by namespace.
    pub fn snapshot(&self) -> Vec<(String, Option<Snapshot>, Option<Snapshot>)> {
        let mut names: Vec<String> = self
            .reads
            .iter()
            .map(|e| e.key().clone())
            .chain(self.writes.iter().map(|e| e.key().clone()))
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|n| {
                let r = self.reads.get(&n).map(|h| h.snapshot());
                let w = self.writes.get(&n).map(|h| h.snapshot());
                (n, r, w)
            })
            .collect()
    }
}

/// The first component of `path` (`/a/b` → `a`); none for the root.
fn namespace(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let ns = rest.split('/').next()?;
    (!ns.is_empty()).then_some(ns)
}

/// The process's coordinator metrics.
pub static STATS: LazyLock<Stats> = LazyLock::new(Stats::new);

/// Adds 1 (relaxed).
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    fn new() -> Stats {
        let zero = || AtomicU64::new(0);
        Stats {
            fsynctime: Histogram::milliseconds(),
            sync_processor_batch_size: Histogram::counts(),
            snapshottime: Histogram::milliseconds(),
            dbinittime: Histogram::milliseconds(),
            startup_snap_load_time: Histogram::milliseconds(),
            readlatency: Histogram::milliseconds(),
            updatelatency: Histogram::milliseconds(),
            election_time: Histogram::milliseconds(),
            node_created_watch_count: Histogram::counts(),
            node_deleted_watch_count: Histogram::counts(),
            node_changed_watch_count: Histogram::counts(),
            node_children_watch_count: Histogram::counts(),
            proposal_count: zero(),
            connection_rejected: zero(),
            looking_count: zero(),
            bytes_received_count: zero(),
            prep_processor_request_queued: zero(),
            connection_request_count: zero(),
            response_bytes: zero(),
            snap_count: zero(),
            unsuccessful_handshake: zero(),
            commit_count: zero(),
            stale_sessions_expired: zero(),
            sync_processor_request_queued: zero(),
            auth_failed_count: zero(),
            namespaces: Namespaces::default(),
            quorum_size: zero(),
            learners: dashmap::DashMap::new(),
            outstanding_tls_handshake: zero(),
            last_proposal_size: zero(),
            min_proposal_size: AtomicU64::new(u64::MAX),
            max_proposal_size: zero(),
            last_client_response_size: zero(),
            min_client_response_size: AtomicU64::new(u64::MAX),
            max_client_response_size: zero(),
        }
    }

    /// The summary named `name`, if Fjord measures it.
    pub fn summary(&self, name: &str) -> Option<&Histogram> {
        Some(match name {
            "fsynctime" => &self.fsynctime,
            "sync_processor_batch_size" => &self.sync_processor_batch_size,
            "snapshottime" => &self.snapshottime,
            "dbinittime" => &self.dbinittime,
            "startup_snap_load_time" => &self.startup_snap_load_time,
            "readlatency" => &self.readlatency,
            "updatelatency" => &self.updatelatency,
            "election_time" => &self.election_time,
            "node_created_watch_count" => &self.node_created_watch_count,
            "node_deleted_watch_count" => &self.node_deleted_watch_count,
            "node_changed_watch_count" => &self.node_changed_watch_count,
            "node_children_watch_count" => &self.node_children_watch_count,
            _ => return None,
        })
    }

    /// The counter named `name`, if Fjord counts it.
    pub fn counter(&self, name: &str) -> Option<u64> {
        let c = match name {
            "proposal_count" => &self.proposal_count,
            "connection_rejected" => &self.connection_rejected,
            "looking_count" => &self.looking_count,
            "bytes_received_count" => &self.bytes_received_count,
            "prep_processor_request_queued" => &self.prep_processor_request_queued,
            "connection_request_count" => &self.connection_request_count,
            "response_bytes" => &self.response_bytes,
            "snap_count" => &self.snap_count,
            "unsuccessful_handshake" => &self.unsuccessful_handshake,
            "commit_count" => &self.commit_count,
            "stale_sessions_expired" => &self.stale_sessions_expired,
            "sync_processor_request_queued" => &self.sync_processor_request_queued,
            _ => return None,
        };
        Some(c.load(Ordering::Relaxed))
    }

    /// A response of `bytes` bytes was written to a client.
    pub fn responded(&self, bytes: u64) {
        self.response_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.last_client_response_size
            .store(bytes, Ordering::Relaxed);
        self.min_client_response_size
            .fetch_min(bytes, Ordering::Relaxed);
        self.max_client_response_size
            .fetch_max(bytes, Ordering::Relaxed);
    }

    /// Follower `id` was `behind` entries behind this leader.
    pub fn learner_behind(&self, id: u64, behind: u64) {
        if let Some(h) = self.learners.get(&id) {
            return h.observe_ticks(behind);
        }
        self.learners
            .entry(id)
            .or_insert_with(Histogram::counts)
            .observe_ticks(behind);
    }

    /// (follower id, its lag summary), sorted.
    pub fn learner_lags(&self) -> Vec<(u64, Snapshot)> {
        let mut v: Vec<(u64, Snapshot)> = self
            .learners
            .iter()
            .map(|e| (*e.key(), e.value().snapshot()))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// A log entry of `bytes` bytes was written.
    pub fn proposed(&self, bytes: u64) {
        self.last_proposal_size.store(bytes, Ordering::Relaxed);
        self.min_proposal_size.fetch_min(bytes, Ordering::Relaxed);
        self.max_proposal_size.fetch_max(bytes, Ordering::Relaxed);
    }

    /// (last, min, max) log entry sizes; -1 each before the first.
    pub fn proposal_sizes(&self) -> (i64, i64, i64) {
        Self::sizes(
            &self.last_proposal_size,
            &self.min_proposal_size,
            &self.max_proposal_size,
        )
    }

    fn sizes(last: &AtomicU64, min: &AtomicU64, max: &AtomicU64) -> (i64, i64, i64) {
        let top = max.load(Ordering::Relaxed);
        if top == 0 {
            return (-1, -1, -1);
        }
        (
            last.load(Ordering::Relaxed) as i64,
            min.load(Ordering::Relaxed) as i64,
            top as i64,
        )
    }

    /// (last, min, max) response sizes; -1 each before the first, as ZooKeeper shows.
    pub fn response_sizes(&self) -> (i64, i64, i64) {
        Self::sizes(
            &self.last_client_response_size,
            &self.min_client_response_size,
            &self.max_client_response_size,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_measured_name_is_one_zookeeper_reports() {
        let s = Stats::new();
        let measured = SUMMARIES.iter().filter(|n| s.summary(n).is_some()).count();
        assert_eq!(measured, 12);
        let counted = COUNTERS.iter().filter(|n| s.counter(n).is_some()).count();
        assert_eq!(counted, 12);
        for p in WITH_PERCENTILES {
            assert!(SUMMARIES.contains(p), "{p}");
        }
        assert_eq!(s.response_sizes(), (-1, -1, -1));
        s.responded(16);
        s.responded(95);
        assert_eq!(s.response_sizes(), (95, 16, 95));
    }

    #[test]
    fn namespaces_count_like_zookeepers_data_tree() {
        let n = Namespaces::default();
        n.write("/top1", 0);
        n.write("/top1/child1", 100);
        n.write("/ttop2", 50);
        n.read("/top1", 0);
        n.read("/top1", "child1".len() + "springishere".len());
        n.write("/", 0);
        let snap = n.snapshot();
        assert_eq!(snap.len(), 2);
        let (name, r, w) = &snap[0];
        assert_eq!(name, "top1");
        let (r, w) = (r.clone().unwrap(), w.clone().unwrap());
        assert_eq!((w.count, w.sum), (2, (5 + 12 + 100) as f64));
        assert_eq!((r.count, r.sum), (2, (5 + 68 + 5 + 18 + 68) as f64));
        assert_eq!(snap[1].0, "ttop2");
        assert!(snap[1].1.is_none());
    }
}
