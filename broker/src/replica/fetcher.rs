//! Followers: one fetcher per leader broker, carrying every partition this broker follows
//! on that leader, as Kafka's `ReplicaFetcherThread`.
//!
//! A fetcher loops: partitions that are new to it (or whose leader epoch changed) first
//! agree with the leader on where their logs diverge (OffsetForLeaderEpoch, see
//! [`super::truncation`]) and cut their tails; then one Fetch request (`replica_id` set)
//! asks for everything after each log end. The leader holds the request until it has new
//! data or `--replica-fetch-wait-max-ms` passes, and its answer tells the follower the
//! high watermark. Batches are appended byte for byte.
//!
//! Errors are per partition: a leader that does not (yet) know the follower's epoch, or no
//! longer leads, makes the partition wait for the next cluster view, which moves it to the
//! right fetcher. A connection failure makes the whole fetcher reconnect with a backoff.

use super::truncation::{next_truncation, LeaderEpochEnd};
use super::Partition;
use crate::client::Connection;
use crate::cluster::Cluster;
use crate::log::topic_partition::TopicPartition;
use crate::security::InterBroker;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One followed partition.
#[derive(Debug, Clone)]
struct Followed {
    partition: Arc<Partition>,
    /// The leader epoch this follower was told to follow.
    epoch: i32,
    /// True until the log has been cut to where it agrees with the leader.
    truncating: bool,
    /// Set after a partition-level error: skip it until then.
    retry_at: Option<tokio::time::Instant>,
}

#[derive(Debug)]
struct Fetcher {
    partitions: Arc<Mutex<BTreeMap<TopicPartition, Followed>>>,
    cancel: CancellationToken,
}

/// Fetcher settings.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    pub max_wait: Duration,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    /// Where and how to reach the leaders.
    pub inter_broker: Arc<InterBroker>,
    /// The follower-side replication throttle.
    pub throttles: Arc<super::throttle::Throttles>,
}

/// Every fetcher of this broker, by leader id.
#[derive(Debug)]
pub struct Fetchers {
    config: FetcherConfig,
    runtime: tokio::runtime::Handle,
    by_leader: Mutex<HashMap<i32, Fetcher>>,
}

const BACKOFF: Duration = Duration::from_millis(200);

impl Fetchers {
    pub fn new(config: FetcherConfig, runtime: tokio::runtime::Handle) -> Fetchers {
        Fetchers {
            config,
            runtime,
            by_leader: Mutex::new(HashMap::new()),
        }
    }

    /// Follows `partition` on `leader` from `epoch` on; it truncates first.
    pub fn follow(
        &self,
        cluster: &Arc<Cluster>,
        leader: i32,
        epoch: i32,
        partition: Arc<Partition>,
    ) {
        let tp = partition.tp.clone();
        let Ok(mut all) = self.by_leader.lock() else {
            return;
        };
        for (l, f) in all.iter() {
            if *l != leader {
                if let Ok(mut p) = f.partitions.lock() {
                    p.remove(&tp);
                }
            }
        }
        let fetcher = all.entry(leader).or_insert_with(|| {
            let f = Fetcher {
                partitions: Arc::new(Mutex::new(BTreeMap::new())),
                cancel: CancellationToken::new(),
            };
            self.runtime.spawn(run(
                cluster.clone(),
                leader,
                self.config.clone(),
                f.partitions.clone(),
                f.cancel.clone(),
            ));
            f
        });
        if let Ok(mut p) = fetcher.partitions.lock() {
            p.insert(
                tp,
                Followed {
                    partition,
                    epoch,
                    truncating: true,
                    retry_at: None,
                },
            );
        }
        all.retain(|_, f| {
            let keep = f.partitions.lock().map(|p| !p.is_empty()).unwrap_or(false);
            if !keep {
                f.cancel.cancel();
            }
            keep
        });
    }

    /// Stops following `tp` (it is led here now, has no leader, or was deleted).
    pub fn remove(&self, tp: &TopicPartition) {
        let Ok(mut all) = self.by_leader.lock() else {
            return;
        };
        for f in all.values() {
            if let Ok(mut p) = f.partitions.lock() {
                p.remove(tp);
            }
        }
        all.retain(|_, f| {
            let keep = f.partitions.lock().map(|p| !p.is_empty()).unwrap_or(false);
            if !keep {
                f.cancel.cancel();
            }
            keep
        });
    }

    /// Stops every fetcher.
    pub fn shutdown(&self) {
        if let Ok(mut all) = self.by_leader.lock() {
            for f in all.values() {
                f.cancel.cancel();
            }
            all.clear();
        }
    }
}

fn leader_address(cluster: &Cluster, inter_broker: &InterBroker, leader: i32) -> Option<String> {
    let view = cluster.view();
    inter_broker.address(view.brokers.get(&leader)?)
}

async fn run(
    cluster: Arc<Cluster>,
    leader: i32,
    config: FetcherConfig,
    partitions: Arc<Mutex<BTreeMap<TopicPartition, Followed>>>,
    cancel: CancellationToken,
) {
    let mut opts = config
        .inter_broker
        .options(format!("fjord-replica-fetcher-{}", cluster.broker_id));
    opts.connect_timeout = Duration::from_secs(3);
    opts.request_timeout = Duration::from_secs(10);
    let mut conn: Option<Connection> = None;
    let mut failures = 0u32;
    while !cancel.is_cancelled() {
        if conn.as_ref().is_none_or(Connection::is_broken) {
            conn = None;
            let Some(addr) = leader_address(&cluster, &config.inter_broker, leader) else {
                pause(&cancel, BACKOFF).await;
                continue;
            };
            match Connection::connect(&addr, &opts).await {
                Ok(c) => {
                    tracing::debug!(leader, %addr, "replica fetcher connected");
                    failures = 0;
                    conn = Some(c);
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(50) {
                        tracing::info!(leader, %addr, error = %e, "replica fetcher cannot reach the leader");
                    }
                    pause(&cancel, BACKOFF).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let step = tokio::select! {
            r = fetch_once(&cluster, leader, &config, &partitions, c) => r,
            _ = cancel.cancelled() => return,
        };
        match step {
            Ok(Progress::Idle) => pause(&cancel, BACKOFF).await,
            Ok(Progress::Throttled(wait)) => pause(&cancel, wait.min(BACKOFF)).await,
            Ok(Progress::Busy) => {}
            Err(e) => {
                tracing::info!(leader, error = %e, "replica fetch failed; reconnecting");
                conn = None;
                pause(&cancel, BACKOFF).await;
            }
        }
    }
}

async fn pause(cancel: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = cancel.cancelled() => {}
    }
}

enum Progress {
    /// Nothing could be fetched (every partition waits): back off.
    Idle,
    /// Only throttled partitions are left, and the quota is spent for this long.
    Throttled(Duration),
    Busy,
}

type FetchResult<T> = Result<T, crate::client::Error>;

/// Truncates what needs it, then one fetch round.
async fn fetch_once(
    cluster: &Cluster,
    leader: i32,
    config: &FetcherConfig,
    partitions: &Mutex<BTreeMap<TopicPartition, Followed>>,
    conn: &mut Connection,
) -> FetchResult<Progress> {
    let now = tokio::time::Instant::now();
    let ready: Vec<(TopicPartition, Followed)> = partitions
        .lock()
        .map(|mut p| {
            for f in p.values_mut() {
                if f.retry_at.is_some_and(|t| t <= now) {
                    f.retry_at = None;
                }
            }
            p.iter()
                .filter(|(_, f)| f.retry_at.is_none())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    if ready.is_empty() {
        return Ok(Progress::Idle);
    }
    let truncating: Vec<&(TopicPartition, Followed)> =
        ready.iter().filter(|(_, f)| f.truncating).collect();
    if !truncating.is_empty() {
        truncate(cluster, leader, partitions, conn, &truncating).await?;
    }
    let fetching: Vec<&(TopicPartition, Followed)> = ready
        .iter()
        .filter(|(tp, _)| {
            partitions
                .lock()
                .map(|p| {
                    p.get(tp)
                        .is_some_and(|f| !f.truncating && f.retry_at.is_none())
                })
                .unwrap_or(false)
        })
        .collect();
    // Throttled catch-up (a replica outside the ISR, named by the topic's
    // follower.replication.throttled.replicas) waits while the follower quota is spent.
    let view = cluster.view();
    let catching_up = |tp: &TopicPartition, f: &Followed| {
        f.partition.follower_throttled()
            && !view
                .topics
                .get(&tp.topic)
                .and_then(|t| t.states.get(&tp.partition))
                .is_some_and(|(s, _)| s.isr.contains(&cluster.broker_id))
    };
    let throttled: Vec<TopicPartition> = fetching
        .iter()
        .filter(|(tp, f)| catching_up(tp, f))
        .map(|(tp, _)| tp.clone())
        .collect();
    let quota = &config.throttles.follower;
    let wait = if throttled.is_empty() {
        Duration::ZERO
    } else {
        quota.wait_time(std::time::Instant::now())
    };
    let fetching: Vec<&(TopicPartition, Followed)> = if wait.is_zero() {
        fetching
    } else {
        fetching
            .into_iter()
            .filter(|(tp, _)| !throttled.contains(tp))
            .collect()
    };
    if fetching.is_empty() {
        return Ok(Progress::Throttled(wait));
    }
    let mut by_topic: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for (tp, f) in &fetching {
        by_topic.entry(tp.topic.as_str()).or_default().push(
            FetchPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(f.epoch)
                .with_fetch_offset(f.partition.log_end_offset())
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(f.partition.log_start_offset())
                .with_partition_max_bytes(config.partition_max_bytes),
        );
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(cluster.broker_id))
        .with_max_wait_ms(config.max_wait.as_millis() as i32)
        .with_min_bytes(1)
        .with_max_bytes(config.max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_owned())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let version = conn.version(ApiKey::Fetch)?;
    let resp = conn.send(&req, version, config.max_wait).await?;
    let mut progressed = false;
    for t in resp.responses {
        let topic = t.topic.0.as_str();
        for p in t.partitions {
            let tp = TopicPartition::new(topic, p.partition_index);
            let Some(f) = fetching
                .iter()
                .find(|(k, _)| *k == tp)
                .map(|(_, f)| f.clone())
            else {
                continue;
            };
            match ResponseError::try_from_code(p.error_code) {
                None => {
                    let records = p.records.unwrap_or_default();
                    if throttled.contains(&tp) {
                        quota.record(records.len(), std::time::Instant::now());
                    }
                    match f.partition.append_replicated(
                        leader,
                        f.epoch,
                        records,
                        p.high_watermark,
                        p.log_start_offset,
                    ) {
                        Ok(appended) => progressed |= appended,
                        Err(e) => {
                            tracing::warn!(topic, partition = p.partition_index, error = %e.message, "cannot append replicated batches; truncating again");
                            set(partitions, &tp, |x| {
                                x.truncating = true;
                                x.retry_at = Some(tokio::time::Instant::now() + BACKOFF);
                            });
                        }
                    }
                }
                Some(ResponseError::OffsetOutOfRange) => {
                    // The leader's log starts after ours ends (retention or DeleteRecords
                    // removed what we miss): start over at the leader's log start.
                    let start = p.log_start_offset;
                    if start > f.partition.log_end_offset() {
                        if let Err(e) = f.partition.restart_at(leader, f.epoch, start) {
                            tracing::warn!(topic, partition = p.partition_index, error = %e.message, "cannot restart the log at the leader's start");
                        }
                    } else {
                        set(partitions, &tp, |x| x.truncating = true);
                    }
                }
                Some(code) => {
                    tracing::debug!(
                        topic,
                        partition = p.partition_index,
                        ?code,
                        "replica fetch refused; waiting for the next view"
                    );
                    set(partitions, &tp, |x| {
                        x.retry_at = Some(tokio::time::Instant::now() + BACKOFF);
                    });
                }
            }
        }
    }
    Ok(if progressed {
        Progress::Busy
    } else {
        // An empty answer already waited `max_wait` at the leader, unless every partition
        // erred: then back off.
        let all_waiting = partitions
            .lock()
            .map(|p| p.values().all(|f| f.retry_at.is_some()))
            .unwrap_or(true);
        if all_waiting {
            Progress::Idle
        } else {
            Progress::Busy
        }
    })
}

fn set(
    partitions: &Mutex<BTreeMap<TopicPartition, Followed>>,
    tp: &TopicPartition,
    f: impl FnOnce(&mut Followed),
) {
    if let Ok(mut p) = partitions.lock() {
        if let Some(x) = p.get_mut(tp) {
            f(x);
        }
    }
}

/// Marks the truncation for `epoch` done, unless the partition moved to a newer epoch
/// meanwhile (that one truncates again).
fn finish_truncation(
    partitions: &Mutex<BTreeMap<TopicPartition, Followed>>,
    tp: &TopicPartition,
    epoch: i32,
) {
    set(partitions, tp, |x| {
        if x.epoch == epoch {
            x.truncating = false;
        }
    });
}

/// Up to this many OffsetForLeaderEpoch rounds per partition; each removes an epoch.
const TRUNCATION_ROUNDS: usize = 16;

async fn truncate(
    cluster: &Cluster,
    leader: i32,
    partitions: &Mutex<BTreeMap<TopicPartition, Followed>>,
    conn: &mut Connection,
    list: &[&(TopicPartition, Followed)],
) -> FetchResult<()> {
    let version = conn.version(ApiKey::OffsetForLeaderEpoch)?;
    let mut pending: Vec<(TopicPartition, Followed)> =
        list.iter().map(|(tp, f)| (tp.clone(), f.clone())).collect();
    for _ in 0..TRUNCATION_ROUNDS {
        // Partitions with no epoch in their log (empty) need no truncation.
        let mut asks: BTreeMap<String, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        let mut done = Vec::new();
        for (tp, f) in &pending {
            match f.partition.latest_log_epoch() {
                None => done.push(tp.clone()),
                Some(epoch) => asks.entry(tp.topic.clone()).or_default().push(
                    OffsetForLeaderPartition::default()
                        .with_partition(tp.partition)
                        .with_current_leader_epoch(f.epoch)
                        .with_leader_epoch(epoch),
                ),
            }
        }
        for tp in &done {
            if let Some((_, f)) = pending.iter().find(|(k, _)| k == tp) {
                finish_truncation(partitions, tp, f.epoch);
            }
        }
        pending.retain(|(tp, _)| !done.contains(tp));
        if asks.is_empty() {
            return Ok(());
        }
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(cluster.broker_id))
            .with_topics(
                asks.into_iter()
                    .map(|(t, ps)| {
                        OffsetForLeaderTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let resp = conn.send(&req, version, Duration::ZERO).await?;
        let mut again = Vec::new();
        for t in resp.topics {
            for p in t.partitions {
                let tp = TopicPartition::new(t.topic.0.as_str(), p.partition);
                let Some((_, f)) = pending.iter().find(|(k, _)| *k == tp) else {
                    continue;
                };
                if p.error_code != 0 {
                    tracing::debug!(topic = %tp.topic, partition = tp.partition, leader, code = p.error_code, "OffsetForLeaderEpoch refused; retrying later");
                    set(partitions, &tp, |x| {
                        x.retry_at = Some(tokio::time::Instant::now() + BACKOFF);
                    });
                    continue;
                }
                let answer = LeaderEpochEnd {
                    epoch: p.leader_epoch,
                    end_offset: p.end_offset,
                };
                let part = &f.partition;
                let step =
                    next_truncation(answer, part.log_end_offset(), part.high_watermark(), |e| {
                        part.end_offset_for_epoch(e)
                    });
                if let Err(e) = part.truncate_to(leader, f.epoch, step.offset) {
                    tracing::error!(topic = %tp.topic, partition = tp.partition, error = %e.message, "cannot truncate the follower log");
                    set(partitions, &tp, |x| {
                        x.retry_at = Some(tokio::time::Instant::now() + BACKOFF);
                    });
                    continue;
                }
                if step.complete {
                    finish_truncation(partitions, &tp, f.epoch);
                } else {
                    again.push((tp.clone(), f.clone()));
                }
            }
        }
        if again.is_empty() {
            return Ok(());
        }
        pending = again;
    }
    Ok(())
}
