//! The Overview: the cluster's health at a glance, as tiles coloured green, amber or red.
//! Computed by the hub from metadata, topic configs, groups and the coordinator's words;
//! pure, so the colouring rules are unit-tested.

use super::html::Level;
use crate::client::ClusterMetadata;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// One group as the hub last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupRow {
    pub group: String,
    pub state: String,
    pub members: usize,
    /// Sum over its committed partitions of latest offset minus committed offset;
    /// `None` while not known.
    pub lag: Option<i64>,
    pub coordinator: i32,
}

/// The coordinator as its members' four-letter words describe it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CoordinatorRow {
    pub address: String,
    /// `leader`, `follower`, `standalone`, `not serving` or `unreachable`.
    pub mode: String,
    pub sessions: u64,
    pub connections: u64,
    pub avg_latency_ms: f64,
    pub znodes: u64,
}

/// One tile of the Overview.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tile {
    pub key: &'static str,
    pub label: &'static str,
    pub value: String,
    pub level: Level,
    pub detail: String,
}

/// What the Overview shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Overview {
    pub at_ms: i64,
    /// Why the cluster could not be read, if it could not.
    pub error: Option<String>,
    pub cluster_id: String,
    pub live_brokers: Vec<i32>,
    /// Brokers seen earlier, or named in replica sets, that are not live now.
    pub missing_brokers: Vec<i32>,
    pub controller: Option<i32>,
    pub topics: usize,
    pub partitions: usize,
    pub offline: usize,
    pub under_replicated: usize,
    pub under_min_isr: usize,
    pub groups: usize,
    pub groups_not_stable: usize,
    pub total_lag: i64,
    pub coordinator: Vec<CoordinatorRow>,
    pub tiles: Vec<Tile>,
}

/// Partition health counts of one metadata snapshot: (offline, under-replicated,
/// under-min-ISR), given each topic's `min.insync.replicas`.
pub fn partition_health(
    md: &ClusterMetadata,
    min_isr: &HashMap<String, usize>,
) -> (usize, usize, usize) {
    let (mut offline, mut under, mut under_min) = (0, 0, 0);
    for t in md.topics.values() {
        let min = min_isr.get(&t.name).copied().unwrap_or(1);
        for p in t.partitions.values() {
            if p.leader.is_none() {
                offline += 1;
                continue;
            }
            if p.isr.len() < p.replicas.len() {
                under += 1;
            }
            if p.isr.len() < min {
                under_min += 1;
            }
        }
    }
    (offline, under, under_min)
}

/// The Overview of a metadata snapshot, the groups and the coordinator; `seen` are the
/// brokers seen live since the console started, `registered` those registered with the
/// coordinator now, when known (brokers keep listing a departed broker in Metadata for a
/// few seconds; the coordinator knows at once).
pub fn overview(
    md: &ClusterMetadata,
    min_isr: &HashMap<String, usize>,
    seen: &BTreeSet<i32>,
    registered: Option<&BTreeSet<i32>>,
    groups: &[GroupRow],
    coordinator: &[CoordinatorRow],
    at_ms: i64,
) -> Overview {
    let live: Vec<i32> = match registered {
        Some(r) => r.iter().copied().collect(),
        None => md.brokers.keys().copied().collect(),
    };
    let mut expected: BTreeSet<i32> = seen.clone();
    for t in md.topics.values() {
        for p in t.partitions.values() {
            expected.extend(p.replicas.iter().copied());
        }
    }
    let missing: Vec<i32> = expected
        .into_iter()
        .filter(|id| !live.contains(id))
        .collect();
    let (offline, under, under_min) = partition_health(md, min_isr);
    let not_stable = groups
        .iter()
        .filter(|g| {
            matches!(
                g.state.as_str(),
                "PreparingRebalance" | "CompletingRebalance"
            )
        })
        .count();
    let total_lag: i64 = groups.iter().filter_map(|g| g.lag).sum();
    let mut o = Overview {
        at_ms,
        error: None,
        cluster_id: md.cluster_id.clone().unwrap_or_default(),
        live_brokers: live,
        missing_brokers: missing,
        controller: md.controller_id,
        topics: md.topics.len(),
        partitions: md.topics.values().map(|t| t.partitions.len()).sum(),
        offline,
        under_replicated: under,
        under_min_isr: under_min,
        groups: groups.len(),
        groups_not_stable: not_stable,
        total_lag,
        coordinator: coordinator.to_vec(),
        tiles: Vec::new(),
    };
    o.tiles = tiles(&o);
    o
}

fn ids(v: &[i32]) -> String {
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
}

fn count_tile(key: &'static str, label: &'static str, n: usize, bad: Level, detail: &str) -> Tile {
    Tile {
        key,
        label,
        value: n.to_string(),
        level: if n == 0 { Level::Ok } else { bad },
        detail: detail.to_owned(),
    }
}

/// The tiles, in the order the page shows them.
pub fn tiles(o: &Overview) -> Vec<Tile> {
    let brokers = Tile {
        key: "brokers",
        label: "Brokers",
        value: format!("{} live", o.live_brokers.len()),
        level: if o.live_brokers.is_empty() {
            Level::Bad
        } else if o.missing_brokers.is_empty() {
            Level::Ok
        } else {
            Level::Bad
        },
        detail: if o.missing_brokers.is_empty() {
            format!("ids {}", ids(&o.live_brokers))
        } else {
            format!(
                "down: {} · live: {}",
                ids(&o.missing_brokers),
                ids(&o.live_brokers)
            )
        },
    };
    let controller = Tile {
        key: "controller",
        label: "Controller",
        value: o
            .controller
            .map_or_else(|| "none".to_owned(), |c| format!("broker {c}")),
        level: if o.controller.is_some() {
            Level::Ok
        } else {
            Level::Bad
        },
        detail: format!("{} topics, {} partitions", o.topics, o.partitions),
    };
    let serving: Vec<&CoordinatorRow> = o
        .coordinator
        .iter()
        .filter(|c| !matches!(c.mode.as_str(), "unreachable" | "not serving"))
        .collect();
    let coord_level = if serving.is_empty() {
        Level::Bad
    } else if serving.len() < o.coordinator.len() {
        Level::Warn
    } else {
        Level::Ok
    };
    let modes: Vec<String> = o.coordinator.iter().map(|c| c.mode.clone()).collect();
    let coordinator = Tile {
        key: "coordinator",
        label: "Coordinator",
        value: if o.coordinator.len() > 1 {
            format!("{}/{} serving", serving.len(), o.coordinator.len())
        } else {
            modes.first().cloned().unwrap_or_else(|| "unknown".into())
        },
        level: coord_level,
        detail: if o.coordinator.len() > 1 {
            modes.join(", ")
        } else {
            String::new()
        },
    };
    let sessions: u64 = serving.iter().map(|c| c.sessions).max().unwrap_or(0);
    let connections: u64 = o.coordinator.iter().map(|c| c.connections).sum();
    let latency = serving
        .iter()
        .map(|c| c.avg_latency_ms)
        .fold(0.0_f64, f64::max);
    vec![
        brokers,
        controller,
        count_tile(
            "offline",
            "Offline partitions",
            o.offline,
            Level::Bad,
            "without a live leader",
        ),
        count_tile(
            "under_min_isr",
            "Under min ISR",
            o.under_min_isr,
            Level::Bad,
            "acks=all writes refused",
        ),
        count_tile(
            "under_replicated",
            "Under-replicated",
            o.under_replicated,
            Level::Warn,
            "ISR smaller than replicas",
        ),
        count_tile(
            "groups_not_stable",
            "Groups rebalancing",
            o.groups_not_stable,
            Level::Warn,
            &format!("of {} groups", o.groups),
        ),
        Tile {
            key: "lag",
            label: "Total lag",
            value: o.total_lag.to_string(),
            level: Level::Info,
            detail: "records behind, all groups".into(),
        },
        coordinator,
        Tile {
            key: "sessions",
            label: "Sessions",
            value: sessions.to_string(),
            level: Level::Info,
            detail: format!("{connections} connections"),
        },
        Tile {
            key: "latency",
            label: "Coordinator latency",
            value: format!("{latency:.1} ms"),
            level: if latency > 100.0 {
                Level::Warn
            } else {
                Level::Ok
            },
            detail: "average, slowest member".into(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{BrokerInfo, PartitionInfo, TopicInfo};

    fn md(live: &[i32], parts: &[(Option<i32>, &[i32], &[i32])]) -> ClusterMetadata {
        let mut m = ClusterMetadata {
            controller_id: live.first().copied(),
            ..Default::default()
        };
        for id in live {
            m.brokers.insert(
                *id,
                BrokerInfo {
                    id: *id,
                    host: "h".into(),
                    port: 1,
                    rack: None,
                },
            );
        }
        let mut t = TopicInfo {
            name: "orders".into(),
            topic_id: None,
            is_internal: false,
            error_code: 0,
            partitions: Default::default(),
        };
        for (i, (leader, replicas, isr)) in parts.iter().enumerate() {
            t.partitions.insert(
                i as i32,
                PartitionInfo {
                    partition: i as i32,
                    leader: *leader,
                    leader_epoch: 0,
                    replicas: replicas.to_vec(),
                    isr: isr.to_vec(),
                    offline_replicas: vec![],
                    error_code: 0,
                },
            );
        }
        m.topics.insert("orders".into(), t);
        m
    }

    #[test]
    fn a_dead_broker_turns_the_overview_red() {
        let healthy = md(&[1, 2, 3], &[(Some(1), &[1, 2, 3], &[1, 2, 3])]);
        let min: HashMap<String, usize> = [("orders".to_owned(), 2)].into();
        let seen: BTreeSet<i32> = [1, 2, 3].into();
        let coord = vec![CoordinatorRow {
            mode: "standalone".into(),
            ..Default::default()
        }];
        let o = overview(&healthy, &min, &seen, None, &[], &coord, 0);
        assert!(
            o.tiles
                .iter()
                .all(|t| t.level != Level::Bad && t.level != Level::Warn),
            "{:?}",
            o.tiles
        );
        let sick = md(
            &[1, 3],
            &[
                (Some(1), &[1, 2, 3], &[1, 3]),
                (None, &[2], &[2]),
                (Some(3), &[3, 2], &[3]),
            ],
        );
        let o = overview(&sick, &min, &seen, None, &[], &coord, 0);
        // The coordinator knows before the brokers' metadata does.
        let registered: BTreeSet<i32> = [1].into();
        let o2 = overview(&healthy, &min, &seen, Some(&registered), &[], &coord, 0);
        assert_eq!(o2.missing_brokers, vec![2, 3]);
        assert_eq!(o.missing_brokers, vec![2]);
        assert_eq!((o.offline, o.under_replicated, o.under_min_isr), (1, 2, 1));
        let tile = |k: &str| o.tiles.iter().find(|t| t.key == k).unwrap();
        assert_eq!(tile("brokers").level, Level::Bad);
        assert_eq!(tile("brokers").detail, "down: 2 · live: 1, 3");
        assert_eq!(tile("offline").level, Level::Bad);
        assert_eq!(tile("under_replicated").level, Level::Warn);
    }
}
