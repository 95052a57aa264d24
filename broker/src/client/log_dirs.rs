//! DescribeLogDirs: each broker's log directory and the size of every replica in it.

use kafka_protocol::messages::{ApiKey, DescribeLogDirsRequest};
use std::collections::BTreeMap;
use std::time::Duration;

use super::error::{Error, Result};
use super::Client;

/// One broker's log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDir {
    pub broker: i32,
    pub path: String,
    /// (topic, partition) → (bytes, offset lag behind the leader).
    pub replicas: BTreeMap<(String, i32), (i64, i64)>,
    /// The size of the directory's file system and the bytes still usable on it (-1:
    /// unknown, or a broker older than DescribeLogDirs v4).
    pub volume: (i64, i64),
}

impl Client {
    /// Every live broker's log directories, asked of each broker.
    pub async fn describe_log_dirs(&self) -> Result<Vec<LogDir>> {
        let md = self.fetch_metadata(Some(&[]), false).await?;
        let mut out = Vec::new();
        for (id, b) in &md.brokers {
            out.extend(self.broker_log_dirs(*id, &b.addr()).await?);
        }
        Ok(out)
    }

    /// The log directories of the brokers that answer within `per_broker` each; a broker
    /// that does not is left out. For progress reports, which must not hang on a frozen
    /// broker.
    pub async fn describe_log_dirs_within(&self, per_broker: Duration) -> Vec<LogDir> {
        let Ok(md) = self.fetch_metadata(Some(&[]), false).await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (id, b) in &md.brokers {
            let addr = b.addr();
            let asked = tokio::time::timeout(per_broker, self.broker_log_dirs(*id, &addr));
            if let Ok(Ok(dirs)) = asked.await {
                out.extend(dirs);
            }
        }
        out
    }

    async fn broker_log_dirs(&self, id: i32, addr: &str) -> Result<Vec<LogDir>> {
        let mut out = Vec::new();
        let mut conn = self.conn(addr).await?;
        {
            let version = conn.version(ApiKey::DescribeLogDirs)?;
            let resp = conn
                .send(
                    &DescribeLogDirsRequest::default().with_topics(None),
                    version,
                    Duration::ZERO,
                )
                .await?;
            if resp.error_code != 0 {
                return Err(Error::kafka(
                    ApiKey::DescribeLogDirs,
                    format!("broker {id}"),
                    resp.error_code,
                    None,
                ));
            }
            for r in resp.results {
                if r.error_code != 0 {
                    return Err(Error::kafka(
                        ApiKey::DescribeLogDirs,
                        format!("broker {id} {}", r.log_dir.as_str()),
                        r.error_code,
                        None,
                    ));
                }
                let replicas = r
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(move |p| {
                            (
                                (t.name.0.as_str().to_owned(), p.partition_index),
                                (p.partition_size, p.offset_lag),
                            )
                        })
                    })
                    .collect();
                out.push(LogDir {
                    broker: id,
                    path: r.log_dir.as_str().to_owned(),
                    replicas,
                    volume: (r.total_bytes, r.usable_bytes),
                });
            }
        }
        Ok(out)
    }
}
