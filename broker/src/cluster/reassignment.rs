//! Partition reassignment (KIP-455) as Kafka keeps it in ZooKeeper mode: the topic znode
//! lists every replica of a partition being moved, and `adding_replicas` /
//! `removing_replicas` say which of them are joining and which are leaving.
//!
//! - Starting: the replicas become the target followed by the original replicas that are
//!   leaving (Kafka's `(target ++ original).distinct`); the adding replicas start as
//!   followers because the assignment names them. A new reassignment of a partition already
//!   being moved keeps its original replicas; adding replicas the new target does not name
//!   leave at once, as in Kafka.
//! - Completing ([`completion`], decided by the controller): once every target replica is
//!   in the ISR, one fenced multi writes the partition state (the leader moves into the
//!   target if it is leaving; the ISR keeps only target replicas) and the topic znode (the
//!   target alone). Until then the leaving replicas stay in the ISR, so an acks=all write
//!   acknowledged meanwhile is on every in-sync target replica before any leaving replica
//!   is dropped.
//! - Cancelling: a reassignment back to the original replicas.
//!
//! The decisions are pure functions; [`alter`] writes a start, change or cancel as any
//! broker may (AlterPartitionReassignments), and the controller writes completions
//! ([`crate::cluster::controller`]).

use super::admin::AdminError;
use super::view::read;
use super::Cluster;
use fjord_shared::cluster::{self, PartitionState, TopicAssignment};
use fjord_shared::coord_client::Error as CoordError;
use fjord_shared::jute::ErrorCode;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A partition's replicas as the topic znode records them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replicas {
    /// Every replica: the target (preferred leader first), then original replicas leaving.
    pub all: Vec<i32>,
    /// Target replicas that were not original replicas.
    pub adding: Vec<i32>,
    /// Original replicas that are not target replicas.
    pub removing: Vec<i32>,
}

/// Why a requested target cannot be used: the Kafka error and its message.
pub type Refusal = (ResponseError, String);

impl Replicas {
    /// A partition that is not being reassigned.
    pub fn settled(all: Vec<i32>) -> Replicas {
        Replicas {
            all,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas the partition will have once the reassignment completes.
    pub fn target(&self) -> Vec<i32> {
        without(&self.all, &self.removing)
    }

    /// The replicas the partition had before the reassignment started.
    pub fn original(&self) -> Vec<i32> {
        without(&self.all, &self.adding)
    }

    /// The replicas after asking for `target` (Kafka's `reassignTo`). Asking for the
    /// original replicas cancels; asking for the same set in another order only reorders.
    pub fn reassign_to(&self, target: &[i32]) -> Replicas {
        let original = self.original();
        let mut all: Vec<i32> = target.to_vec();
        for r in &original {
            if !all.contains(r) {
                all.push(*r);
            }
        }
        let adding = without(target, &original);
        let removing = without(&original, target);
        if adding.is_empty() && removing.is_empty() {
            return Replicas::settled(target.to_vec());
        }
        Replicas {
            all,
            adding,
            removing,
        }
    }
}

fn without(list: &[i32], drop: &[i32]) -> Vec<i32> {
    list.iter().copied().filter(|r| !drop.contains(r)).collect()
}

/// Checks a requested target: not empty, no duplicates, only registered brokers, and the
/// same replication factor unless a change is allowed (AlterPartitionReassignments v1).
pub fn validate_target(
    target: &[i32],
    current: &Replicas,
    live: &BTreeSet<i32>,
    allow_rf_change: bool,
) -> Result<(), Refusal> {
    if target.is_empty() {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            "empty replica list in the reassignment".to_owned(),
        ));
    }
    let distinct: BTreeSet<i32> = target.iter().copied().collect();
    if distinct.len() != target.len() {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            format!("duplicate replica ids in {target:?}"),
        ));
    }
    let unknown: Vec<i32> = target
        .iter()
        .copied()
        .filter(|r| !live.contains(r))
        .collect();
    if !unknown.is_empty() {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            format!("the reassignment names brokers that are not registered: {unknown:?}"),
        ));
    }
    let rf = current.original().len();
    if !allow_rf_change && target.len() != rf {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "the reassignment changes the replication factor from {rf} to {}, which the \
                 request does not allow",
                target.len()
            ),
        ));
    }
    Ok(())
}

/// The state that completes a reassignment, or `None` while it must wait: every target
/// replica must be in the ISR, and one of them, live and not shutting down, must be able
/// to lead. The leader stays if it is a target replica (same epoch: only the ISR
/// changes); otherwise the first eligible target replica in the ISR leads, in a new epoch.
pub fn completion(
    current: &PartitionState,
    replicas: &Replicas,
    live: &BTreeSet<i32>,
    shutting_down: &BTreeSet<i32>,
    controller_epoch: i32,
) -> Option<PartitionState> {
    if !replicas.is_reassigning() {
        return None;
    }
    let target = replicas.target();
    if !target.iter().all(|r| current.isr.contains(r)) {
        return None;
    }
    let eligible = |r: &i32| live.contains(r) && !shutting_down.contains(r);
    let isr: Vec<i32> = current
        .isr
        .iter()
        .copied()
        .filter(|r| target.contains(r))
        .collect();
    let (leader, leader_epoch) = if current.leader >= 0
        && target.contains(&current.leader)
        && live.contains(&current.leader)
    {
        (current.leader, current.leader_epoch)
    } else {
        let leader = target
            .iter()
            .copied()
            .find(|r| eligible(r) && isr.contains(r))?;
        (leader, current.leader_epoch + 1)
    };
    Some(PartitionState {
        version: 1,
        leader,
        leader_epoch,
        controller_epoch,
        isr,
    })
}

/// Starts, replaces or cancels (`None`) reassignments of partitions of `topic`, in one
/// conditional write of its topic znode (retried if the znode changed meanwhile). Each
/// partition gets its own outcome; a refused one is left as it was. Returns once this
/// broker's view shows the write, so that what it answers next reflects it.
pub async fn alter(
    c: &Cluster,
    topic: &str,
    changes: &[(i32, Option<Vec<i32>>)],
    allow_rf_change: bool,
) -> Result<Vec<(i32, Result<(), Refusal>)>, AdminError> {
    let client = c.client();
    let path = cluster::topic_path(topic);
    for _ in 0..20 {
        let view = c.view();
        let found = match read(&client, &path).await? {
            Some(_) if view.deleting.contains(topic) => None,
            other => other,
        };
        let Some((data, version)) = found else {
            return Err(AdminError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("no topic {topic}"),
            ));
        };
        let mut znode: TopicAssignment = serde_json::from_slice(&data).map_err(|e| {
            AdminError::new(
                ResponseError::UnknownServerError,
                format!("bad topic znode: {e}"),
            )
        })?;
        let live: BTreeSet<i32> = view.brokers.keys().copied().collect();
        let mut outcomes = Vec::with_capacity(changes.len());
        let mut changed = false;
        for (p, target) in changes {
            let outcome = match replicas_in(&znode, *p) {
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("no partition {topic}-{p}"),
                )),
                Some(current) => match target {
                    None if !current.is_reassigning() => Err((
                        ResponseError::NoReassignmentInProgress,
                        format!("{topic}-{p} is not being reassigned"),
                    )),
                    None => Ok(current.reassign_to(&current.original())),
                    Some(t) => validate_target(t, &current, &live, allow_rf_change)
                        .map(|()| current.reassign_to(t)),
                },
            };
            outcomes.push((
                *p,
                outcome.map(|next| {
                    set_replicas(&mut znode, *p, &next);
                    changed = true;
                }),
            ));
        }
        if !changed {
            return Ok(outcomes);
        }
        let written = client
            .set_data(
                &path,
                serde_json::to_vec(&znode).unwrap_or_default(),
                Some(version),
            )
            .await;
        match written {
            Ok(stat) => {
                wait_for_topic_version(c, topic, stat.version).await;
                return Ok(outcomes);
            }
            Err(CoordError::Zk(ErrorCode::BadVersion)) => continue,
            Err(CoordError::Zk(ErrorCode::NoNode)) => {
                return Err(AdminError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("no topic {topic}"),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(AdminError::new(
        ResponseError::ConcurrentTransactions,
        format!("the topic {topic} kept changing; retry"),
    ))
}

/// A partition's replicas as a topic znode records them; `None` if it has no such
/// partition.
fn replicas_in(znode: &TopicAssignment, partition: i32) -> Option<Replicas> {
    let key = partition.to_string();
    let list = |m: &BTreeMap<String, Vec<i32>>| m.get(&key).cloned().unwrap_or_default();
    Some(Replicas {
        all: znode.partitions.get(&key)?.clone(),
        adding: list(&znode.adding_replicas),
        removing: list(&znode.removing_replicas),
    })
}

fn set_replicas(znode: &mut TopicAssignment, partition: i32, r: &Replicas) {
    let key = partition.to_string();
    znode.partitions.insert(key.clone(), r.all.clone());
    for (map, list) in [
        (&mut znode.adding_replicas, &r.adding),
        (&mut znode.removing_replicas, &r.removing),
    ] {
        if list.is_empty() {
            map.remove(&key);
        } else {
            map.insert(key.clone(), list.clone());
        }
    }
}

/// Waits (at most two seconds) until this broker's view has read the topic znode at
/// `version` or later.
async fn wait_for_topic_version(c: &Cluster, topic: &str, version: i32) {
    let mut rx = c.subscribe();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let seen = rx
            .borrow_and_update()
            .topics
            .get(topic)
            .is_none_or(|t| t.znode_version >= version);
        if seen {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    fn state(leader: i32, epoch: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            version: 1,
            leader,
            leader_epoch: epoch,
            controller_epoch: 1,
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn a_move_lists_the_target_first_then_the_leaving_replicas() {
        let r = Replicas::settled(vec![1, 2, 3]).reassign_to(&[4, 2, 3]);
        assert_eq!(r.all, vec![4, 2, 3, 1]);
        assert_eq!((r.adding.clone(), r.removing.clone()), (vec![4], vec![1]));
        assert_eq!(r.target(), vec![4, 2, 3]);
        assert_eq!(r.original(), vec![2, 3, 1]);
        assert!(r.is_reassigning());
    }

    #[test]
    fn replication_factor_changes_only_add_or_only_remove() {
        let up = Replicas::settled(vec![1]).reassign_to(&[1, 2, 3]);
        assert_eq!(
            (up.all.clone(), up.adding.clone(), up.removing.clone()),
            (vec![1, 2, 3], vec![2, 3], vec![])
        );
        let down = Replicas::settled(vec![1, 2, 3]).reassign_to(&[1, 2]);
        assert_eq!(
            (down.all.clone(), down.adding.clone(), down.removing.clone()),
            (vec![1, 2, 3], vec![], vec![3])
        );
    }

    #[test]
    fn the_same_replicas_in_another_order_only_reorder() {
        let r = Replicas::settled(vec![1, 2, 3]).reassign_to(&[3, 1, 2]);
        assert_eq!(r, Replicas::settled(vec![3, 1, 2]));
    }

    #[test]
    fn cancelling_returns_to_the_original_replicas() {
        let moving = Replicas::settled(vec![1, 2, 3]).reassign_to(&[4, 5, 3]);
        assert_eq!(moving.original(), vec![3, 1, 2]);
        let back = moving.reassign_to(&moving.original());
        // The original replicas come back, in the order the reassignment listed them
        // (Kafka's too): the preferred leader may be another of them.
        assert_eq!(back, Replicas::settled(vec![3, 1, 2]));
    }

    #[test]
    fn a_new_target_keeps_the_original_replicas_and_drops_unneeded_adding_ones() {
        let first = Replicas::settled(vec![1, 2]).reassign_to(&[3, 4]);
        assert_eq!(first.all, vec![3, 4, 1, 2]);
        let second = first.reassign_to(&[5, 2]);
        assert_eq!(second.all, vec![5, 2, 1]);
        assert_eq!(
            (second.adding, second.removing),
            (vec![5], vec![1]),
            "3 and 4 leave at once; the original replicas stay until the end"
        );
    }

    #[test]
    fn targets_must_be_registered_distinct_and_not_empty() {
        let cur = Replicas::settled(vec![1, 2, 3]);
        let live = set(&[1, 2, 3, 4]);
        let code = |t: &[i32], allow: bool| validate_target(t, &cur, &live, allow).map_err(|e| e.0);
        assert_eq!(code(&[4, 2, 3], true), Ok(()));
        assert_eq!(
            code(&[], true),
            Err(ResponseError::InvalidReplicaAssignment)
        );
        assert_eq!(
            code(&[4, 4, 3], true),
            Err(ResponseError::InvalidReplicaAssignment)
        );
        assert_eq!(
            code(&[9, 2, 3], true),
            Err(ResponseError::InvalidReplicaAssignment)
        );
        assert_eq!(code(&[1, 2], true), Ok(()));
        assert_eq!(
            code(&[1, 2], false),
            Err(ResponseError::InvalidReplicationFactor)
        );
    }

    #[test]
    fn completion_waits_for_every_target_replica_in_the_isr() {
        let r = Replicas::settled(vec![1, 2, 3]).reassign_to(&[4, 2, 3]);
        let live = set(&[1, 2, 3, 4]);
        let none = set(&[]);
        assert_eq!(
            completion(&state(1, 5, &[1, 2, 3]), &r, &live, &none, 2),
            None,
            "4 is not in sync yet"
        );
        // 4 caught up; the leader (1) leaves: 4 is the first target replica in sync.
        let s = completion(&state(1, 5, &[1, 2, 3, 4]), &r, &live, &none, 2).unwrap();
        assert_eq!((s.leader, s.leader_epoch, s.isr), (4, 6, vec![2, 3, 4]));
        // A leader that stays keeps its epoch; only the ISR changes.
        let s = completion(&state(2, 5, &[1, 2, 3, 4]), &r, &live, &none, 2).unwrap();
        assert_eq!((s.leader, s.leader_epoch, s.isr), (2, 5, vec![2, 3, 4]));
    }

    #[test]
    fn completion_needs_a_target_replica_able_to_lead() {
        let r = Replicas::settled(vec![1]).reassign_to(&[2]);
        let s = state(1, 3, &[1, 2]);
        assert_eq!(completion(&s, &r, &set(&[1]), &set(&[]), 2), None, "2 died");
        assert_eq!(
            completion(&s, &r, &set(&[1, 2]), &set(&[2]), 2),
            None,
            "2 is shutting down"
        );
        let done = completion(&s, &r, &set(&[1, 2]), &set(&[]), 2).unwrap();
        assert_eq!((done.leader, done.leader_epoch, done.isr), (2, 4, vec![2]));
        assert_eq!(
            completion(&s, &Replicas::settled(vec![1]), &set(&[1, 2]), &set(&[]), 2),
            None,
            "nothing to complete"
        );
    }
}
