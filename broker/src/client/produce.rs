//! Produce: one record batch to one partition, sent to the partition's leader.
//!
//! The batch is encoded once and resent unchanged on retries. With acks=0 the broker sends
//! no response at all, so nothing is known about the outcome and no offset is returned.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use super::error::{Error, Result};
use super::records::{self, ProduceRecord};
use super::{now_ms, Client};

/// How many replicas must have a batch before the leader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No answer at all (fire and forget).
    None,
    /// The leader has written it.
    Leader,
    /// Every in-sync replica has it (Kafka's `acks=all`, -1 on the wire).
    All,
}

impl Acks {
    /// The wire value: 0, 1 or -1.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }

    /// Parses `0`, `1`, `all` or `-1`.
    pub fn parse(s: &str) -> Option<Acks> {
        match s {
            "0" => Some(Acks::None),
            "1" => Some(Acks::Leader),
            "all" | "-1" => Some(Acks::All),
            _ => None,
        }
    }
}

/// Options for [`Client::produce`].
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub acks: Acks,
    /// How long the leader may wait for replicas (acks=all).
    pub timeout: Duration,
    pub compression: Compression,
}

impl Default for ProduceOptions {
    /// acks=all, 30 s, uncompressed.
    fn default() -> Self {
        ProduceOptions {
            acks: Acks::All,
            timeout: Duration::from_secs(30),
            compression: Compression::None,
        }
    }
}

/// The leader's answer to a produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceAck {
    /// The offset of the batch's first record; `None` with acks=0.
    pub base_offset: Option<i64>,
    /// The broker's append time, if the topic uses log-append time.
    pub log_append_time: Option<i64>,
    /// The partition's log start offset (Produce v5+).
    pub log_start_offset: Option<i64>,
}

impl Client {
    /// Writes `records` as one batch to `topic`/`partition`.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
        opts: &ProduceOptions,
    ) -> Result<ProduceAck> {
        let batch =
            records::encode_batch(records, opts.compression, now_ms()).map_err(Error::Records)?;
        self.produce_batch(topic, partition, batch, opts).await
    }

    /// Writes an already encoded batch (v2) to `topic`/`partition`, retrying while the
    /// leader moves.
    pub async fn produce_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        opts: &ProduceOptions,
    ) -> Result<ProduceAck> {
        let mut attempt = 0;
        loop {
            match self
                .produce_once(topic, partition, batch.clone(), opts)
                .await
            {
                Err(e) if attempt < self.inner.opts.retries && e.is_retriable(false) => {
                    attempt += 1;
                    self.pause_and_refresh(attempt, &e, Some(topic)).await;
                }
                other => return other,
            }
        }
    }

    async fn produce_once(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        opts: &ProduceOptions,
    ) -> Result<ProduceAck> {
        let (_, addr) = self.leader_for(topic, partition).await?;
        let mut conn = self.conn(&addr).await?;
        let version = conn.version(ApiKey::Produce)?;
        let timeout_ms = i32::try_from(opts.timeout.as_millis()).unwrap_or(i32::MAX);
        let req = ProduceRequest::default()
            .with_acks(opts.acks.wire())
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        if opts.acks == Acks::None {
            conn.send_without_response(&req, version).await?;
            return Ok(ProduceAck {
                base_offset: None,
                log_append_time: None,
                log_start_offset: None,
            });
        }
        let resp = conn.send(&req, version, opts.timeout).await?;
        drop(conn);
        let resource = format!("{topic}-{partition}");
        let p = resp
            .responses
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .ok_or_else(|| Error::MissingResult {
                api: ApiKey::Produce,
                resource: resource.clone(),
            })?;
        if p.error_code != 0 {
            let message = p.error_message.as_ref().map(|m| m.as_str().to_owned());
            return Err(Error::kafka(
                ApiKey::Produce,
                resource,
                p.error_code,
                message,
            ));
        }
        Ok(ProduceAck {
            base_offset: Some(p.base_offset),
            log_append_time: (p.log_append_time_ms >= 0).then_some(p.log_append_time_ms),
            log_start_offset: (version >= 5 && p.log_start_offset >= 0)
                .then_some(p.log_start_offset),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_parse_like_kafka() {
        assert_eq!(Acks::parse("all"), Some(Acks::All));
        assert_eq!(Acks::parse("-1").map(Acks::wire), Some(-1));
        assert_eq!(Acks::parse("1").map(Acks::wire), Some(1));
        assert_eq!(Acks::parse("0").map(Acks::wire), Some(0));
        assert_eq!(Acks::parse("2"), None);
    }
}
