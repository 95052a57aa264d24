//! The partitions this broker hosts, and their role.
//!
//! [`ReplicaManager`] follows the cluster view: for every partition assigned to this
//! broker it opens (or creates) the log and takes the role the partition's state znode
//! gives it.
//!
//! - **Leader**: accepts produce and serves fetches. It tracks its followers' progress
//!   ([`isr::LeaderState`]), keeps the high watermark (the smallest log end offset in the
//!   ISR; consumers read only below it), answers acks=all produces once the high watermark
//!   passes them, and shrinks or expands the ISR with a conditional write of the state
//!   znode ([`isr_maintenance`]).
//! - **Follower**: a [`fetcher`] copies the leader's batches byte for byte, after cutting
//!   any tail that diverged from the leader ([`truncation`]).
//!
//! Anything else answers NOT_LEADER_OR_FOLLOWER so clients refresh their metadata. Logs of
//! topics that no longer exist are deleted.

pub mod fetcher;
pub mod isr;
mod manager;
mod partition;
pub mod producer_state;
pub mod throttle;
pub mod truncation;

#[cfg(test)]
mod tests;

pub use manager::ReplicaManager;
pub(crate) use partition::now_ms;
pub use partition::{check_epoch, Appended, Partition, PartitionError, ReadResult};

use crate::broker::Broker;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Applies every new cluster view to the hosted partitions.
pub async fn follow_view(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut rx = broker.cluster.subscribe();
    loop {
        rx.borrow_and_update();
        let b = broker.clone();
        // Opening logs does file I/O: keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || b.replicas.apply_view(&b.cluster)).await;
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
    }
}

/// How often the log cleaner looks for dirty compacted logs (log.cleaner.backoff.ms).
const CLEANER_BACKOFF: Duration = Duration::from_secs(15);

/// Periodic log maintenance: interval fsyncs and checkpoints every second, retention every
/// `--retention-check-ms`, compaction every 15 s.
pub async fn housekeeping(broker: Arc<Broker>, shutdown: CancellationToken) {
    let retention_every = Duration::from_millis(broker.config.retention_check_ms.max(1000));
    let mut last_retention = tokio::time::Instant::now();
    let mut last_clean = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
        let retention = last_retention.elapsed() >= retention_every;
        if retention {
            last_retention = tokio::time::Instant::now();
        }
        let clean = last_clean.elapsed() >= CLEANER_BACKOFF;
        if clean {
            last_clean = tokio::time::Instant::now();
        }
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || {
            b.replicas.maintain(retention);
            if clean {
                b.replicas.clean();
            }
        })
        .await;
    }
}

/// The leader's ISR upkeep: every 250 ms each led partition is checked, and a follower
/// that lagged for `--replica-lag-time-max-ms` is dropped, or one that caught up is added,
/// with a setData on the state znode conditional on the version the leader knows. If the
/// controller changed the state meanwhile the write fails, and the next view decides.
pub async fn isr_maintenance(broker: Arc<Broker>, shutdown: CancellationToken) {
    let lag_max_ms = broker.replicas.defaults.lag_max_ms;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.cancelled() => return,
        }
        if broker.cluster.is_fenced() {
            continue;
        }
        let view = broker.cluster.view();
        for part in broker.replicas.leading() {
            let tp = &part.tp;
            let Some((current, _)) = view
                .topics
                .get(&tp.topic)
                .and_then(|t| t.states.get(&tp.partition))
            else {
                continue;
            };
            let alive = |r: i32| view.brokers.contains_key(&r) && !view.shutting_down.contains(&r);
            let Some((next, version)) =
                part.isr_change(lag_max_ms, current.controller_epoch, alive)
            else {
                continue;
            };
            let path = fjord_shared::cluster::partition_state_path(&tp.topic, tp.partition);
            let data = serde_json::to_vec(&next).unwrap_or_default();
            match broker
                .cluster
                .client()
                .set_data(&path, data, Some(version))
                .await
            {
                Ok(stat) => {
                    part.adopt_isr(next.leader_epoch, next.isr, stat.version);
                }
                Err(fjord_shared::coord_client::Error::Zk(
                    fjord_shared::jute::ErrorCode::BadVersion,
                )) => {
                    tracing::debug!(topic = %tp.topic, partition = tp.partition, "the partition state changed meanwhile; the ISR change waits for the new view");
                }
                Err(e) => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e, "cannot write the ISR change");
                }
            }
        }
    }
}
