//! The Events page's timeline: readable lines derived from what changes in the
//! coordinator's tree (Kafka's znode layout): brokers joining and leaving, the controller
//! moving, partition leaders and ISRs changing, topics created and deleted.

use super::html::Level;
use fjord_shared::cluster::{ControllerInfo, PartitionState};
use serde::Serialize;

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    pub level: Level,
    /// `broker`, `controller`, `partition` or `topic`.
    pub kind: &'static str,
    pub text: String,
}

/// What a changed path is, in Kafka's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Znode {
    Broker(i32),
    Controller,
    Topic(String),
    PartitionState(String, i32),
    Other,
}

pub fn classify(path: &str) -> Znode {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["brokers", "ids", id] => id.parse().map_or(Znode::Other, Znode::Broker),
        ["controller"] => Znode::Controller,
        ["brokers", "topics", t] => Znode::Topic((*t).to_owned()),
        ["brokers", "topics", t, "partitions", p, "state"] => p
            .parse()
            .map_or(Znode::Other, |p| Znode::PartitionState((*t).to_owned(), p)),
        _ => Znode::Other,
    }
}

/// The controller's broker id from `/controller`'s data.
pub fn controller_of(data: &[u8]) -> Option<i32> {
    serde_json::from_slice::<ControllerInfo>(data)
        .ok()
        .map(|c| c.brokerid)
}

/// The partition state in a state znode's data.
pub fn state_of(data: &[u8]) -> Option<PartitionState> {
    serde_json::from_slice(data).ok()
}

fn list(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// What changed between two states of `topic`-`partition`: leader and ISR lines.
pub fn partition_change(
    topic: &str,
    partition: i32,
    old: Option<&PartitionState>,
    new: &PartitionState,
) -> Vec<(Level, String)> {
    let name = format!("{topic}-{partition}");
    let Some(old) = old else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if old.leader != new.leader {
        let show = |l: i32| {
            if l < 0 {
                "none (offline)".to_owned()
            } else {
                l.to_string()
            }
        };
        let level = if new.leader < 0 {
            Level::Bad
        } else {
            Level::Warn
        };
        out.push((
            level,
            format!(
                "{name}: leader {} → {} (epoch {})",
                show(old.leader),
                show(new.leader),
                new.leader_epoch
            ),
        ));
    }
    if old.isr != new.isr {
        let level = if new.isr.len() < old.isr.len() {
            Level::Warn
        } else {
            Level::Ok
        };
        out.push((
            level,
            format!("{name}: ISR {} → {}", list(&old.isr), list(&new.isr)),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(leader: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            version: 1,
            leader,
            leader_epoch: 3,
            controller_epoch: 1,
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn paths_are_classified() {
        assert_eq!(classify("/brokers/ids/2"), Znode::Broker(2));
        assert_eq!(classify("/controller"), Znode::Controller);
        assert_eq!(
            classify("/brokers/topics/orders"),
            Znode::Topic("orders".into())
        );
        assert_eq!(
            classify("/brokers/topics/orders/partitions/3/state"),
            Znode::PartitionState("orders".into(), 3)
        );
        assert_eq!(
            classify("/brokers/topics/orders/partitions/3"),
            Znode::Other
        );
        assert_eq!(classify("/brokers/ids/x"), Znode::Other);
        assert_eq!(
            controller_of(br#"{"version":1,"brokerid":2,"timestamp":"1"}"#),
            Some(2)
        );
    }

    #[test]
    fn isr_and_leader_changes_read_well() {
        let lines = partition_change("orders", 3, Some(&state(1, &[1, 2, 3])), &state(1, &[1, 3]));
        assert_eq!(
            lines,
            vec![(Level::Warn, "orders-3: ISR 1,2,3 → 1,3".to_owned())]
        );
        let lines = partition_change("orders", 3, Some(&state(2, &[2, 1])), &state(1, &[1]));
        assert_eq!(lines[0].1, "orders-3: leader 2 → 1 (epoch 3)");
        assert_eq!(lines[1].1, "orders-3: ISR 2,1 → 1");
        let lines = partition_change("t", 0, Some(&state(1, &[1])), &state(-1, &[1]));
        assert_eq!(
            lines,
            vec![(
                Level::Bad,
                "t-0: leader 1 → none (offline) (epoch 3)".to_owned()
            )]
        );
        assert!(partition_change("t", 0, None, &state(1, &[1])).is_empty());
    }
}
