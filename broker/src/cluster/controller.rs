//! The controller: one broker at a time decides partition leadership.
//!
//! Election: the first broker to create the ephemeral `/controller` wins, then increments
//! `/controller_epoch`. Every write the controller makes is a multi that starts with a
//! version check of `/controller_epoch`, so a deposed controller (one whose session
//! expired, or that was paused while another took over) cannot write: its check fails.
//!
//! Reconciliation ([`reconcile`]) is level-triggered: after any change it compares the
//! view with what it should be, and writes the difference:
//!
//! - a partition with no state gets one: the first live replica leads, the live replicas
//!   form the ISR, leader epoch 0;
//! - a partition whose leader is gone gets the first live ISR member as leader, the dead
//!   brokers leave the ISR, and the leader epoch goes up. With no live ISR member it goes
//!   offline (leader -1, ISR kept) unless the topic sets `unclean.leader.election.enable`;
//!   when an ISR member returns it leads again;
//! - a topic marked for deletion has its znodes removed, then its deletion mark.
//!
//! The decisions are the pure functions [`initial_state`] and [`next_state`].

use super::view::{children, read, ClusterView};
use fjord_shared::cluster::{self, ControllerInfo, PartitionState};
use fjord_shared::coord_client::{Client, Error as CoordError, MultiError, Op};
use fjord_shared::jute::{Acl, CreateMode, ErrorCode};
use std::collections::BTreeSet;

/// This controller's epoch and the version of `/controller_epoch` that fences its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    pub epoch: i32,
    pub zk_version: i32,
}

/// Tries to become the controller. `None` if another broker holds `/controller`.
pub async fn elect(client: &Client, broker_id: i32) -> Result<Option<Epoch>, CoordError> {
    let info = ControllerInfo {
        version: 1,
        brokerid: broker_id,
        timestamp: super::now_ms().to_string(),
    };
    let data = serde_json::to_vec(&info).unwrap_or_default();
    match client
        .create(
            cluster::CONTROLLER,
            data,
            &Acl::open_unsafe(),
            CreateMode::Ephemeral,
        )
        .await
    {
        Ok(_) => {}
        Err(CoordError::Zk(ErrorCode::NodeExists)) => return Ok(None),
        Err(e) => return Err(e),
    }
    // Bump the epoch; a concurrent (deposed) writer makes us retry with the new version.
    for _ in 0..100 {
        match read(client, cluster::CONTROLLER_EPOCH).await? {
            None => match client
                .create(
                    cluster::CONTROLLER_EPOCH,
                    b"1".to_vec(),
                    &Acl::open_unsafe(),
                    CreateMode::Persistent,
                )
                .await
            {
                Ok(_) => {
                    return Ok(Some(Epoch {
                        epoch: 1,
                        zk_version: 0,
                    }))
                }
                Err(CoordError::Zk(ErrorCode::NodeExists)) => continue,
                Err(e) => return Err(e),
            },
            Some((data, version)) => {
                let current: i32 = std::str::from_utf8(&data)
                    .ok()
                    .and_then(|s| s.trim().trim_matches('"').parse().ok())
                    .unwrap_or(0);
                let next = current + 1;
                match client
                    .set_data(
                        cluster::CONTROLLER_EPOCH,
                        next.to_string().into_bytes(),
                        Some(version),
                    )
                    .await
                {
                    Ok(stat) => {
                        return Ok(Some(Epoch {
                            epoch: next,
                            zk_version: stat.version,
                        }))
                    }
                    Err(CoordError::Zk(ErrorCode::BadVersion)) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(CoordError::Zk(ErrorCode::BadVersion))
}

/// The state of a partition that has none yet.
pub fn initial_state(
    replicas: &[i32],
    live: &BTreeSet<i32>,
    controller_epoch: i32,
) -> PartitionState {
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|r| live.contains(r))
        .collect();
    let leader = isr.first().copied().unwrap_or(-1);
    let isr = if isr.is_empty() {
        replicas.to_vec()
    } else {
        isr
    };
    PartitionState {
        version: 1,
        leader,
        leader_epoch: 0,
        controller_epoch,
        isr,
    }
}

/// The state after a broker change, or `None` if nothing needs to change.
pub fn next_state(
    current: &PartitionState,
    replicas: &[i32],
    live: &BTreeSet<i32>,
    unclean: bool,
    controller_epoch: i32,
) -> Option<PartitionState> {
    if current.leader >= 0 && live.contains(&current.leader) {
        return None;
    }
    let live_isr: Vec<i32> = current
        .isr
        .iter()
        .copied()
        .filter(|r| live.contains(r))
        .collect();
    let (leader, isr) = if let Some(first) = live_isr.first() {
        (*first, live_isr.clone())
    } else if unclean {
        match replicas.iter().copied().find(|r| live.contains(r)) {
            Some(r) => (r, vec![r]),
            None => (-1, current.isr.clone()),
        }
    } else {
        // Offline: keep the ISR so that its members, and only they, may lead again.
        (-1, current.isr.clone())
    };
    if leader == current.leader && isr == current.isr {
        return None;
    }
    Some(PartitionState {
        version: 1,
        leader,
        leader_epoch: current.leader_epoch + 1,
        controller_epoch,
        isr,
    })
}

async fn fenced_multi(client: &Client, epoch: Epoch, ops: Vec<Op>) -> Result<(), CoordError> {
    let mut all = vec![Op::check(cluster::CONTROLLER_EPOCH, Some(epoch.zk_version))];
    all.extend(ops);
    match client.multi(all).await {
        Ok(_) => Ok(()),
        Err(MultiError::Failed { index: 0, .. }) => {
            tracing::warn!(
                epoch = epoch.epoch,
                "controller epoch moved on: this broker is no longer the controller"
            );
            Err(CoordError::Zk(ErrorCode::BadVersion))
        }
        Err(MultiError::Failed { code, .. }) => Err(CoordError::Zk(code)),
        Err(MultiError::Client(e)) => Err(e),
    }
}

async fn delete_topic(client: &Client, epoch: Epoch, topic: &str) -> Result<(), CoordError> {
    let mut ops = Vec::new();
    for p in children(client, &cluster::partitions_path(topic)).await? {
        for c in children(client, &format!("{}/{p}", cluster::partitions_path(topic))).await? {
            ops.push(Op::delete(
                format!("{}/{p}/{c}", cluster::partitions_path(topic)),
                None,
            ));
        }
        ops.push(Op::delete(
            format!("{}/{p}", cluster::partitions_path(topic)),
            None,
        ));
    }
    if read(client, &cluster::partitions_path(topic))
        .await?
        .is_some()
    {
        ops.push(Op::delete(cluster::partitions_path(topic), None));
    }
    if read(client, &cluster::topic_path(topic)).await?.is_some() {
        ops.push(Op::delete(cluster::topic_path(topic), None));
    }
    if read(client, &cluster::topic_config_path(topic))
        .await?
        .is_some()
    {
        ops.push(Op::delete(cluster::topic_config_path(topic), None));
    }
    ops.push(Op::delete(cluster::delete_topic_path(topic), None));
    fenced_multi(client, epoch, ops).await?;
    tracing::info!(topic, "topic deleted");
    Ok(())
}

/// Brings the partition states in line with the view (see the module docs).
pub async fn reconcile(
    client: &Client,
    epoch: Epoch,
    view: &ClusterView,
) -> Result<(), CoordError> {
    let live: BTreeSet<i32> = view.brokers.keys().copied().collect();
    for topic in &view.deleting {
        delete_topic(client, epoch, topic).await?;
    }
    for (topic, t) in &view.topics {
        if view.deleting.contains(topic) {
            continue;
        }
        let unclean = t
            .config
            .get("unclean.leader.election.enable")
            .is_some_and(|v| v == "true");
        for (p, replicas) in &t.assignment {
            match t.states.get(p) {
                None => {
                    let state = initial_state(replicas, &live, epoch.epoch);
                    let mut ops = Vec::new();
                    if read(client, &cluster::partitions_path(topic))
                        .await?
                        .is_none()
                    {
                        ops.push(Op::create(
                            cluster::partitions_path(topic),
                            Vec::new(),
                            &Acl::open_unsafe(),
                            CreateMode::Persistent,
                        ));
                    }
                    if read(client, &cluster::partition_path(topic, *p))
                        .await?
                        .is_none()
                    {
                        ops.push(Op::create(
                            cluster::partition_path(topic, *p),
                            Vec::new(),
                            &Acl::open_unsafe(),
                            CreateMode::Persistent,
                        ));
                    }
                    ops.push(Op::create(
                        cluster::partition_state_path(topic, *p),
                        serde_json::to_vec(&state).unwrap_or_default(),
                        &Acl::open_unsafe(),
                        CreateMode::Persistent,
                    ));
                    match fenced_multi(client, epoch, ops).await {
                        Ok(()) | Err(CoordError::Zk(ErrorCode::NodeExists)) => {}
                        Err(e) => return Err(e),
                    }
                    tracing::info!(
                        topic,
                        partition = p,
                        leader = state.leader,
                        "partition state created"
                    );
                }
                Some((current, version)) => {
                    if let Some(next) = next_state(current, replicas, &live, unclean, epoch.epoch) {
                        let op = Op::set_data(
                            cluster::partition_state_path(topic, *p),
                            serde_json::to_vec(&next).unwrap_or_default(),
                            Some(*version),
                        );
                        match fenced_multi(client, epoch, vec![op]).await {
                            // A leader changed the ISR meanwhile: the next event retries.
                            Ok(()) | Err(CoordError::Zk(ErrorCode::BadVersion)) => {}
                            Err(e) => return Err(e),
                        }
                        tracing::info!(topic, partition = p, leader = next.leader, leader_epoch = next.leader_epoch, isr = ?next.isr, "partition leader changed");
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(ids: &[i32]) -> BTreeSet<i32> {
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
    fn new_partitions_are_led_by_the_first_live_replica() {
        let s = initial_state(&[2, 1, 3], &live(&[1, 3]), 4);
        assert_eq!(
            (s.leader, s.isr.clone(), s.leader_epoch, s.controller_epoch),
            (1, vec![1, 3], 0, 4)
        );
        let s = initial_state(&[2], &live(&[]), 1);
        assert_eq!((s.leader, s.isr), (-1, vec![2]));
    }

    #[test]
    fn a_dead_leader_is_replaced_from_the_isr() {
        let s = next_state(
            &state(1, 3, &[1, 2, 3]),
            &[1, 2, 3],
            &live(&[2, 3]),
            false,
            2,
        )
        .unwrap();
        assert_eq!((s.leader, s.leader_epoch, s.isr), (2, 4, vec![2, 3]));
        assert_eq!(
            next_state(&state(2, 4, &[2, 3]), &[1, 2, 3], &live(&[2, 3]), false, 2),
            None
        );
    }

    #[test]
    fn no_live_isr_means_offline_unless_unclean() {
        let s = next_state(&state(1, 3, &[1]), &[1, 2], &live(&[2]), false, 2).unwrap();
        assert_eq!((s.leader, s.isr.clone()), (-1, vec![1]));
        // Offline and still no ISR member: nothing changes.
        assert_eq!(next_state(&s, &[1, 2], &live(&[2]), false, 2), None);
        // The ISR member returns: it leads again.
        let back = next_state(&s, &[1, 2], &live(&[1, 2]), false, 2).unwrap();
        assert_eq!((back.leader, back.leader_epoch), (1, 5));
        // Unclean election picks a live out-of-sync replica.
        let u = next_state(&state(1, 3, &[1]), &[1, 2], &live(&[2]), true, 2).unwrap();
        assert_eq!((u.leader, u.isr), (2, vec![2]));
    }
}
