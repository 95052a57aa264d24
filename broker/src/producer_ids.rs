//! Producer ids for idempotent producers, handed out from blocks reserved in the
//! coordinator (`/latest_producer_id_block`), so no two brokers ever give out the same id.
//! Each block holds [`BLOCK_SIZE`] ids; a broker reserves the next block with a
//! conditional setData and retries if another broker got there first.

use crate::cluster::view::read;
use crate::cluster::Cluster;
use fjord_shared::cluster::{ProducerIdBlock, PRODUCER_ID_BLOCK};
use fjord_shared::coord_client::Error as CoordError;
use fjord_shared::jute::{CreateMode, ErrorCode};
use tokio::sync::Mutex;

/// Ids per block, as in Kafka.
pub const BLOCK_SIZE: i64 = 1000;

/// The ids this broker may still hand out: `next..=end`.
#[derive(Debug, Default)]
pub struct ProducerIds {
    range: Mutex<Option<(i64, i64)>>,
}

impl ProducerIds {
    /// The next unused producer id, reserving a new block when this one is used up.
    pub async fn next(&self, cluster: &Cluster) -> Result<i64, CoordError> {
        let mut range = self.range.lock().await;
        if let Some((next, end)) = *range {
            if next <= end {
                *range = Some((next + 1, end));
                return Ok(next);
            }
        }
        let (start, end) = reserve(cluster).await?;
        *range = Some((start + 1, end));
        Ok(start)
    }
}

async fn reserve(cluster: &Cluster) -> Result<(i64, i64), CoordError> {
    let client = cluster.client();
    for _ in 0..100 {
        let current = read(&client, PRODUCER_ID_BLOCK).await?;
        let (start, version) = match &current {
            Some((data, v)) => {
                let end = serde_json::from_slice::<ProducerIdBlock>(data)
                    .ok()
                    .and_then(|b| b.block_end.parse::<i64>().ok())
                    .unwrap_or(-1);
                (end + 1, Some(*v))
            }
            None => (0, None),
        };
        let block = ProducerIdBlock {
            version: 1,
            broker: cluster.broker_id,
            block_start: start.to_string(),
            block_end: (start + BLOCK_SIZE - 1).to_string(),
        };
        let data = serde_json::to_vec(&block).unwrap_or_default();
        let written = match version {
            Some(v) => client
                .set_data(PRODUCER_ID_BLOCK, data, Some(v))
                .await
                .map(|_| ()),
            None => client
                .create(
                    PRODUCER_ID_BLOCK,
                    data,
                    &client.acl_for(PRODUCER_ID_BLOCK),
                    CreateMode::Persistent,
                )
                .await
                .map(|_| ()),
        };
        match written {
            Ok(()) => {
                tracing::info!(
                    start,
                    end = start + BLOCK_SIZE - 1,
                    "reserved a producer id block"
                );
                return Ok((start, start + BLOCK_SIZE - 1));
            }
            Err(CoordError::Zk(ErrorCode::BadVersion | ErrorCode::NodeExists)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(CoordError::Zk(ErrorCode::BadVersion))
}
