//! ListOffsets: a partition's earliest offset, its latest (the high watermark), or the
//! first offset whose timestamp is at or after a given time. Asked of the leader.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::error::Result;
use super::Client;

/// Which offset to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset (timestamp -2 on the wire).
    Earliest,
    /// The high watermark: the offset the next committed record will get (-1).
    Latest,
    /// The first record with a timestamp at or after this many ms since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    /// The wire value of the `timestamp` field.
    pub fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

impl Client {
    /// The offset `spec` names in `topic`/`partition`; `None` for a timestamp later than
    /// every record (the broker answers -1).
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<Option<i64>> {
        let mut attempt = 0;
        loop {
            match self.list_offset_once(topic, partition, spec).await {
                Err(e) if attempt < self.inner.opts.retries && e.is_retriable(true) => {
                    attempt += 1;
                    self.pause_and_refresh(attempt, &e, Some(topic)).await;
                }
                other => return other,
            }
        }
    }

    /// [`Client::list_offset`] for several partitions of one topic.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<i32, Option<i64>>> {
        let mut out = BTreeMap::new();
        for &p in partitions {
            out.insert(p, self.list_offset(topic, p, spec).await?);
        }
        Ok(out)
    }

    async fn list_offset_once(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<Option<i64>> {
        let (_, addr) = self.leader_for(topic, partition).await?;
        let mut conn = self.conn(&addr).await?;
        let version = conn.version(ApiKey::ListOffsets)?;
        let req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(spec.wire())])]);
        let resp = conn.send(&req, version, std::time::Duration::ZERO).await?;
        drop(conn);
        let found = resp
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition);
        let p = super::partition_answer(
            found,
            |p| p.error_code,
            ApiKey::ListOffsets,
            topic,
            partition,
        )?;
        Ok((p.offset >= 0).then_some(p.offset))
    }
}
