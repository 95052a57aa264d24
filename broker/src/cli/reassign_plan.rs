//! Reassignment plans in Kafka's JSON format, as `kafka-reassign-partitions.sh` reads and
//! writes them:
//!
//! ```json
//! {"version":1,"partitions":[{"topic":"orders","partition":0,"replicas":[1,2,3]}]}
//! ```
//!
//! `log_dirs`, if present, must say `"any"` for every replica: a Fjord broker has one log
//! directory. Parsing and checking against the cluster's metadata are pure, so every
//! refusal is unit-tested.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::client::ClusterMetadata;

/// A plan: the replicas each listed partition should end with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub version: i32,
    pub partitions: Vec<PlanPartition>,
}

/// One partition of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanPartition {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dirs: Option<Vec<String>>,
}

impl Plan {
    /// A plan of `(topic, partition) → replicas`.
    pub fn new(entries: impl IntoIterator<Item = ((String, i32), Vec<i32>)>) -> Plan {
        Plan {
            version: 1,
            partitions: entries
                .into_iter()
                .map(|((topic, partition), replicas)| PlanPartition {
                    topic,
                    partition,
                    replicas,
                    log_dirs: None,
                })
                .collect(),
        }
    }

    /// The plan as one line of JSON, Kafka's tool's way.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a plan file and checks what needs no cluster: the version, no partition
    /// listed twice, non-empty replica lists without duplicates, `log_dirs`.
    pub fn parse(text: &str) -> Result<Plan, String> {
        let plan: Plan =
            serde_json::from_str(text).map_err(|e| format!("not a reassignment plan: {e}"))?;
        if plan.version != 1 {
            return Err(format!(
                "unsupported plan version {} (expected 1)",
                plan.version
            ));
        }
        if plan.partitions.is_empty() {
            return Err("the plan lists no partitions".to_owned());
        }
        let mut seen = BTreeSet::new();
        for p in &plan.partitions {
            let name = format!("{}-{}", p.topic, p.partition);
            if !seen.insert((p.topic.as_str(), p.partition)) {
                return Err(format!("{name} is listed more than once"));
            }
            if p.replicas.is_empty() {
                return Err(format!("{name}: empty replica list"));
            }
            let distinct: BTreeSet<i32> = p.replicas.iter().copied().collect();
            if distinct.len() != p.replicas.len() {
                return Err(format!("{name}: duplicate replicas in {:?}", p.replicas));
            }
            if let Some(dirs) = &p.log_dirs {
                if dirs.len() != p.replicas.len() {
                    return Err(format!(
                        "{name}: {} log_dirs for {} replicas",
                        dirs.len(),
                        p.replicas.len()
                    ));
                }
                if let Some(d) = dirs.iter().find(|d| d.as_str() != "any") {
                    return Err(format!(
                        "{name}: log dir {d:?}: a Fjord broker has one log directory; use \"any\""
                    ));
                }
            }
        }
        Ok(plan)
    }

    /// Checks the plan against the cluster: every partition exists and every replica is
    /// a live broker.
    pub fn check(&self, md: &ClusterMetadata) -> Result<(), String> {
        for p in &self.partitions {
            let Some(t) = md.topics.get(&p.topic) else {
                return Err(format!("no topic {}", p.topic));
            };
            if !t.partitions.contains_key(&p.partition) {
                return Err(format!("no partition {}-{}", p.topic, p.partition));
            }
            let unknown: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| !md.brokers.contains_key(r))
                .collect();
            if !unknown.is_empty() {
                return Err(format!(
                    "{}-{}: no live broker with id {}",
                    p.topic,
                    p.partition,
                    super::kafka::ids(&unknown)
                ));
            }
        }
        Ok(())
    }

    /// The plan's partitions with their target replicas.
    pub fn targets(&self) -> BTreeMap<(String, i32), Vec<i32>> {
        self.partitions
            .iter()
            .map(|p| ((p.topic.clone(), p.partition), p.replicas.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{BrokerInfo, PartitionInfo, TopicInfo};

    fn cluster() -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        for id in [1, 2, 3] {
            md.brokers.insert(
                id,
                BrokerInfo {
                    id,
                    host: "127.0.0.1".into(),
                    port: 9090 + id,
                    rack: None,
                },
            );
        }
        let mut t = TopicInfo {
            name: "orders".into(),
            ..Default::default()
        };
        t.partitions.insert(
            0,
            PartitionInfo {
                partition: 0,
                leader: Some(1),
                replicas: vec![1, 2],
                isr: vec![1, 2],
                ..Default::default()
            },
        );
        md.topics.insert("orders".into(), t);
        md
    }

    #[test]
    fn kafkas_plan_files_parse_and_round_trip() {
        let text = r#"{"version":1,"partitions":[{"topic":"orders","partition":0,"replicas":[3,2],"log_dirs":["any","any"]}]}"#;
        let plan = Plan::parse(text).unwrap();
        assert_eq!(plan.targets()[&("orders".to_owned(), 0)], vec![3, 2]);
        assert!(plan.check(&cluster()).is_ok());
        let again = Plan::new(plan.targets());
        assert_eq!(
            again.to_json(),
            r#"{"version":1,"partitions":[{"topic":"orders","partition":0,"replicas":[3,2]}]}"#
        );
    }

    #[test]
    fn bad_plans_are_refused_with_the_reason() {
        let refused = |text: &str| Plan::parse(text).unwrap_err();
        assert!(refused("{").contains("not a reassignment plan"));
        assert!(refused(r#"{"version":2,"partitions":[]}"#).contains("version 2"));
        assert!(refused(r#"{"version":1,"partitions":[]}"#).contains("no partitions"));
        let p = |replicas: &str| {
            format!(
                r#"{{"version":1,"partitions":[{{"topic":"orders","partition":0,"replicas":{replicas}}}]}}"#
            )
        };
        assert!(refused(&p("[]")).contains("empty replica list"));
        assert!(refused(&p("[1,1]")).contains("duplicate replicas"));
        let twice = r#"{"version":1,"partitions":[{"topic":"o","partition":0,"replicas":[1]},{"topic":"o","partition":0,"replicas":[2]}]}"#;
        assert!(refused(twice).contains("more than once"));
        let dirs = r#"{"version":1,"partitions":[{"topic":"o","partition":0,"replicas":[1],"log_dirs":["/d"]}]}"#;
        assert!(refused(dirs).contains("one log directory"));
    }

    #[test]
    fn plans_naming_unknown_topics_partitions_or_brokers_are_refused() {
        let md = cluster();
        let check = |topic: &str, partition: i32, replicas: Vec<i32>| {
            Plan::new([((topic.to_owned(), partition), replicas)]).check(&md)
        };
        assert!(check("nope", 0, vec![1])
            .unwrap_err()
            .contains("no topic nope"));
        assert!(check("orders", 5, vec![1])
            .unwrap_err()
            .contains("no partition orders-5"));
        assert!(check("orders", 0, vec![1, 7])
            .unwrap_err()
            .contains("no live broker with id 7"));
        assert!(check("orders", 0, vec![3]).is_ok());
    }
}
