//! DeleteRecords: moves a partition's log start offset forward (records before it are
//! gone). Sent to the partition's leader, as ListOffsets is.

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::time::Duration;

use super::error::Result;
use super::Client;

impl Client {
    /// Deletes the records of `topic`-`partition` before `offset` (-1: before the high
    /// watermark); returns the partition's new log start offset.
    pub async fn delete_records(&self, topic: &str, partition: i32, offset: i64) -> Result<i64> {
        let mut attempt = 0;
        loop {
            match self.delete_records_once(topic, partition, offset).await {
                Err(e) if attempt < self.inner.opts.retries && e.is_retriable(true) => {
                    attempt += 1;
                    self.pause_and_refresh(attempt, &e, Some(topic)).await;
                }
                other => return other,
            }
        }
    }

    async fn delete_records_once(&self, topic: &str, partition: i32, offset: i64) -> Result<i64> {
        let (_, addr) = self.leader_for(topic, partition).await?;
        let mut conn = self.conn(&addr).await?;
        let version = conn.version(ApiKey::DeleteRecords)?;
        let timeout = self.inner.opts.request_timeout;
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX))
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(offset)])]);
        let resp = conn.send(&req, version, Duration::ZERO).await?;
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
            ApiKey::DeleteRecords,
            topic,
            partition,
        )?;
        Ok(p.low_watermark)
    }
}
