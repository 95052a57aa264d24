//! `fjord topics list --under-replicated | --under-min-isr | --unavailable`: the
//! partitions in trouble, as `kafka-topics --describe --under-replicated-partitions`
//! (and its siblings) list them, with a non-zero exit when there are any, so scripts and
//! health checks can act on it.

use std::collections::BTreeMap;
use std::io::Write;

use super::error::CliError;
use super::kafka::{ids, partition_status};
use super::table::Table;
use crate::client::{Client, ClusterMetadata, PartitionInfo};

/// Which partitions to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    pub under_replicated: bool,
    pub under_min_isr: bool,
    pub unavailable: bool,
}

impl Filter {
    pub fn any(&self) -> bool {
        self.under_replicated || self.under_min_isr || self.unavailable
    }

    /// Whether `p` (of a topic with `min_isr`) is one to list.
    pub fn matches(&self, p: &PartitionInfo, min_isr: usize) -> bool {
        let offline = p.leader.is_none();
        (self.unavailable && offline)
            || (self.under_replicated && !offline && p.isr.len() < p.replicas.len())
            || (self.under_min_isr && !offline && p.isr.len() < min_isr)
    }
}

/// Lists the matching partitions; an error (non-zero exit) if there are any.
pub async fn list(
    client: &Client,
    filter: Filter,
    exclude_internal: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let md = client.fetch_metadata(None, false).await?;
    let min_isr = if filter.under_min_isr {
        min_isr_of(client, &md).await?
    } else {
        BTreeMap::new()
    };
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "LEADER",
        "REPLICAS",
        "ISR",
        "MIN-ISR",
        "STATUS",
    ]);
    let mut found = 0;
    for t in md.topics.values() {
        if exclude_internal && t.is_internal {
            continue;
        }
        let min = min_isr.get(&t.name).copied().unwrap_or(1);
        for p in t.partitions.values().filter(|p| filter.matches(p, min)) {
            found += 1;
            let status = if p.leader.is_some() && p.isr.len() < min {
                "under-min-isr"
            } else {
                partition_status(p)
            };
            table.row(vec![
                t.name.clone(),
                p.partition.to_string(),
                p.leader.map_or_else(|| "none".into(), |l| l.to_string()),
                ids(&p.replicas),
                ids(&p.isr),
                min.to_string(),
                status.to_owned(),
            ]);
        }
    }
    if found == 0 {
        return Ok(());
    }
    table.write(out, "")?;
    let mut what = Vec::new();
    if filter.unavailable {
        what.push("unavailable");
    }
    if filter.under_min_isr {
        what.push("under min ISR");
    }
    if filter.under_replicated {
        what.push("under-replicated");
    }
    Err(CliError::Unhealthy(format!(
        "{found} partition(s) {}",
        what.join(" or ")
    )))
}

/// `min.insync.replicas` of every topic.
async fn min_isr_of(
    client: &Client,
    md: &ClusterMetadata,
) -> Result<BTreeMap<String, usize>, CliError> {
    let mut out = BTreeMap::new();
    for name in md.topics.keys() {
        if let Some(v) = client.min_insync_replicas(name).await? {
            out.insert(name.clone(), v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(leader: Option<i32>, replicas: &[i32], isr: &[i32]) -> PartitionInfo {
        PartitionInfo {
            partition: 0,
            leader,
            leader_epoch: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            offline_replicas: vec![],
            error_code: 0,
        }
    }

    #[test]
    fn filters_pick_their_partitions() {
        let healthy = p(Some(1), &[1, 2, 3], &[1, 2, 3]);
        let under = p(Some(1), &[1, 2, 3], &[1, 2]);
        let lonely = p(Some(1), &[1, 2, 3], &[1]);
        let offline = p(None, &[1, 2, 3], &[1]);
        let ur = Filter {
            under_replicated: true,
            ..Default::default()
        };
        let umi = Filter {
            under_min_isr: true,
            ..Default::default()
        };
        let un = Filter {
            unavailable: true,
            ..Default::default()
        };
        assert!(!ur.matches(&healthy, 2) && ur.matches(&under, 2) && !ur.matches(&offline, 2));
        assert!(!umi.matches(&under, 2) && umi.matches(&lonely, 2));
        assert!(un.matches(&offline, 2) && !un.matches(&lonely, 2));
        assert!(!Filter::default().any() && ur.any());
    }
}
