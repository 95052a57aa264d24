//! Fetch: read records from partitions, one request per leader covering all the partitions
//! it leads (requests to different leaders run concurrently, so a long poll on one broker
//! does not delay the others).
//!
//! No incremental fetch session is used (`session_id` 0, epoch -1: a full fetch every
//! time), and isolation is read-uncommitted, as a plain Kafka consumer does. Partitions
//! that answer with a stale-metadata error are retried after a refresh; any other error
//! fails the call, naming the partition.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinSet;

use super::error::{Error, Result};
use super::records::{decode_batches, ConsumedRecord};
use super::Client;

/// Options for [`Client::fetch`] and [`Client::fetch_many`].
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    /// How long the broker may hold the request waiting for `min_bytes`.
    pub max_wait: Duration,
    /// The broker answers as soon as it has this much (0: at once).
    pub min_bytes: i32,
    /// The most bytes per response.
    pub max_bytes: i32,
    /// The most bytes per partition (the first batch is returned whole even if larger).
    pub partition_max_bytes: i32,
}

impl Default for FetchOptions {
    /// No waiting, 16 MiB per response, 1 MiB per partition.
    fn default() -> Self {
        FetchOptions {
            max_wait: Duration::ZERO,
            min_bytes: 0,
            max_bytes: 16 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
        }
    }
}

/// Where to read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What one partition returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFetch {
    pub topic: String,
    pub partition: i32,
    /// Records at or after the requested offset, in order.
    pub records: Vec<ConsumedRecord>,
    /// Where to fetch next.
    pub next_offset: i64,
    /// The offset after the last committed record: consumers read below it.
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// The response ended in a partial batch and nothing complete came before it: the
    /// partition size limit is smaller than the next batch.
    pub stalled: bool,
}

/// What one request (or one failed leader lookup) produced.
enum Outcome {
    /// The request was answered: a result per partition index.
    Partitions(Vec<(usize, Result<PartitionFetch>)>),
    /// The request (or the lookup of its leader) failed for all these indexes.
    Failed(Vec<usize>, Error),
}

impl Client {
    /// Reads from one partition starting at `offset`.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        opts: &FetchOptions,
    ) -> Result<PartitionFetch> {
        let pos = FetchPosition {
            topic: topic.to_owned(),
            partition,
            offset,
        };
        let mut all = self.fetch_many(std::slice::from_ref(&pos), opts).await?;
        all.pop().ok_or_else(|| Error::MissingResult {
            api: ApiKey::Fetch,
            resource: format!("{topic}-{partition}"),
        })
    }

    /// Splits `positions` into groups that share a leader (as far as the cached metadata
    /// knows; positions without a known leader form one more group), so a caller can keep
    /// one fetch in flight per broker and handle each answer as it comes, instead of
    /// waiting for the slowest long poll.
    pub fn group_by_leader(&self, positions: Vec<FetchPosition>) -> Vec<Vec<FetchPosition>> {
        let md = self.cached_metadata();
        let mut groups: BTreeMap<Option<i32>, Vec<FetchPosition>> = BTreeMap::new();
        for pos in positions {
            let leader = super::locate(&md, &pos.topic, pos.partition)
                .ok()
                .map(|(id, _)| id);
            groups.entry(leader).or_default().push(pos);
        }
        groups.into_values().collect()
    }

    /// Reads from several partitions; the results are in the order of `positions`.
    pub async fn fetch_many(
        &self,
        positions: &[FetchPosition],
        opts: &FetchOptions,
    ) -> Result<Vec<PartitionFetch>> {
        let mut results: Vec<Option<PartitionFetch>> = vec![None; positions.len()];
        let mut pending: Vec<usize> = (0..positions.len()).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            let mut retry = Vec::new();
            let mut last_err = None;
            let mut give_up = |indexes: Vec<usize>, e: Error| {
                if attempt < self.inner.opts.retries && e.is_retriable(true) {
                    retry.extend(indexes);
                    last_err = Some(e);
                    Ok(())
                } else {
                    Err(e)
                }
            };
            for outcome in self.fetch_round(positions, &pending, opts).await {
                match outcome {
                    Outcome::Partitions(parts) => {
                        for (idx, r) in parts {
                            match r {
                                Ok(r) => results[idx] = Some(r),
                                Err(e) => give_up(vec![idx], e)?,
                            }
                        }
                    }
                    Outcome::Failed(indexes, e) => give_up(indexes, e)?,
                }
            }
            pending = retry;
            if let Some(e) = last_err {
                attempt += 1;
                let topic = pending.first().map(|&i| positions[i].topic.as_str());
                self.pause_and_refresh(attempt, &e, topic).await;
            }
        }
        results
            .into_iter()
            .zip(positions)
            .map(|(r, p)| {
                r.ok_or_else(|| Error::MissingResult {
                    api: ApiKey::Fetch,
                    resource: format!("{}-{}", p.topic, p.partition),
                })
            })
            .collect()
    }

    /// One request per leader for the positions at `indexes`.
    async fn fetch_round(
        &self,
        positions: &[FetchPosition],
        indexes: &[usize],
        opts: &FetchOptions,
    ) -> Vec<Outcome> {
        let mut out = Vec::new();
        let mut by_leader: BTreeMap<String, Vec<(usize, FetchPosition)>> = BTreeMap::new();
        for &idx in indexes {
            let pos = &positions[idx];
            match self.leader_for(&pos.topic, pos.partition).await {
                Ok((_, addr)) => by_leader.entry(addr).or_default().push((idx, pos.clone())),
                Err(e) => out.push(Outcome::Failed(vec![idx], e)),
            }
        }
        if by_leader.len() == 1 {
            if let Some((addr, group)) = by_leader.pop_first() {
                out.push(self.fetch_from(&addr, group, *opts).await);
            }
        } else {
            let mut tasks = JoinSet::new();
            for (addr, group) in by_leader {
                let client = self.clone();
                let opts = *opts;
                tasks.spawn(async move { client.fetch_from(&addr, group, opts).await });
            }
            while let Some(done) = tasks.join_next().await {
                match done {
                    Ok(outcome) => out.push(outcome),
                    // Only a bug can get here; its partitions stay without a result and the
                    // call fails with MissingResult.
                    Err(e) => tracing::error!(error = %e, "fetch task failed"),
                }
            }
        }
        out
    }

    /// One Fetch request to the broker at `addr` for `group`.
    async fn fetch_from(
        &self,
        addr: &str,
        group: Vec<(usize, FetchPosition)>,
        opts: FetchOptions,
    ) -> Outcome {
        match self.fetch_request(addr, &group, opts).await {
            Ok(parts) => Outcome::Partitions(parts),
            Err(e) => Outcome::Failed(group.into_iter().map(|(idx, _)| idx).collect(), e),
        }
    }

    async fn fetch_request(
        &self,
        addr: &str,
        group: &[(usize, FetchPosition)],
        opts: FetchOptions,
    ) -> Result<Vec<(usize, Result<PartitionFetch>)>> {
        let mut conn = self.conn(addr).await?;
        let version = conn.version(ApiKey::Fetch)?;
        // Topics in first-seen order, each with its partitions.
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (_, pos) in group {
            let part = FetchPartition::default()
                .with_partition(pos.partition)
                .with_fetch_offset(pos.offset)
                .with_partition_max_bytes(opts.partition_max_bytes);
            match topics.iter_mut().find(|t| t.topic.0.as_str() == pos.topic) {
                Some(t) => t.partitions.push(part),
                None => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(pos.topic.clone())))
                        .with_partitions(vec![part]),
                ),
            }
        }
        let max_wait_ms = i32::try_from(opts.max_wait.as_millis()).unwrap_or(i32::MAX);
        let req = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(opts.min_bytes)
            .with_max_bytes(opts.max_bytes)
            .with_isolation_level(0)
            .with_topics(topics);
        let resp = conn.send(&req, version, opts.max_wait).await?;
        drop(conn);
        if resp.error_code != 0 {
            return Err(Error::kafka(ApiKey::Fetch, "", resp.error_code, None));
        }
        let mut out = Vec::with_capacity(group.len());
        for (idx, pos) in group {
            let resource = format!("{}-{}", pos.topic, pos.partition);
            let data = resp
                .responses
                .iter()
                .filter(|t| t.topic.0.as_str() == pos.topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == pos.partition);
            let outcome = match data {
                None => Err(Error::MissingResult {
                    api: ApiKey::Fetch,
                    resource,
                }),
                Some(p) if p.error_code != 0 => {
                    Err(Error::kafka(ApiKey::Fetch, resource, p.error_code, None))
                }
                Some(p) => {
                    let bytes = p.records.clone().unwrap_or_default();
                    decode_batches(bytes, pos.offset)
                        .map_err(Error::Records)
                        .map(|d| PartitionFetch {
                            topic: pos.topic.clone(),
                            partition: pos.partition,
                            stalled: d.truncated && d.next_offset == pos.offset,
                            records: d.records,
                            next_offset: d.next_offset,
                            high_watermark: p.high_watermark,
                            last_stable_offset: p.last_stable_offset,
                            log_start_offset: p.log_start_offset,
                        })
                }
            };
            out.push((*idx, outcome));
        }
        Ok(out)
    }
}
