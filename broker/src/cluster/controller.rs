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
//! - a partition being reassigned whose target replicas are all in sync gets them as its
//!   replicas, with its state, in one multi ([`super::reassignment`]);
//! - a topic marked for deletion has its znodes removed, then its deletion mark.
//!
//! The decisions are the pure functions [`initial_state`], [`next_state`] and
//! [`reassignment::completion`].

use super::reassignment;
use super::view::{children, read, ClusterView, TopicView};
use fjord_shared::cluster::{self, ControllerInfo, PartitionState};
use fjord_shared::coord_client::{Client, Error as CoordError, MultiError, Op};
use fjord_shared::jute::{CreateMode, ErrorCode};
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};

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
            &client.acl_for(cluster::CONTROLLER),
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
                    &client.acl_for(cluster::CONTROLLER_EPOCH),
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
///
/// Brokers in `shutting_down` are in a controlled shutdown: they should neither lead nor
/// hold up acks=all, so they lose leadership to another live ISR member and leave the ISR,
/// unless nobody else is there to take over (then they keep it until they are gone).
/// Dead brokers leave the ISR at once (the leader epoch stays: only the ISR changed).
/// Brokers that are no longer `replicas` (a reassignment replaced them) are treated like
/// brokers shutting down: they leave the ISR, and a leader among them hands over to an
/// in-sync replica as soon as there is one.
pub fn next_state(
    current: &PartitionState,
    replicas: &[i32],
    live: &BTreeSet<i32>,
    shutting_down: &BTreeSet<i32>,
    unclean: bool,
    controller_epoch: i32,
) -> Option<PartitionState> {
    let leaving = |r: &i32| shutting_down.contains(r) || !replicas.contains(r);
    let eligible = |r: &i32| live.contains(r) && !leaving(r);
    let live_isr: Vec<i32> = current
        .isr
        .iter()
        .copied()
        .filter(|r| live.contains(r))
        .collect();
    let state = |leader: i32, leader_epoch: i32, isr: Vec<i32>| PartitionState {
        version: 1,
        leader,
        leader_epoch,
        controller_epoch,
        isr,
    };
    if current.leader >= 0 && eligible(&current.leader) {
        let isr: Vec<i32> = live_isr
            .iter()
            .copied()
            .filter(|r| *r == current.leader || !leaving(r))
            .collect();
        if isr == current.isr || isr.is_empty() {
            return None;
        }
        return Some(state(current.leader, current.leader_epoch, isr));
    }
    if let Some(&leader) = live_isr.iter().find(|r| eligible(r)) {
        let isr: Vec<i32> = live_isr.iter().copied().filter(|r| !leaving(r)).collect();
        return Some(state(leader, current.leader_epoch + 1, isr));
    }
    if current.leader >= 0 && live.contains(&current.leader) {
        // Shutting down, and no other in-sync replica can take over: it keeps leading.
        return None;
    }
    let (leader, isr) = if unclean {
        match replicas.iter().copied().find(|r| eligible(r)) {
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
    Some(state(leader, current.leader_epoch + 1, isr))
}

/// A preferred-leader election for one partition: the first replica leads again if it is
/// alive, in the ISR and not shutting down. `None` if that is already so, or impossible.
pub fn preferred_state(
    current: &PartitionState,
    replicas: &[i32],
    live: &BTreeSet<i32>,
    shutting_down: &BTreeSet<i32>,
    controller_epoch: i32,
) -> Option<PartitionState> {
    let preferred = *replicas.first()?;
    if current.leader == preferred
        || !live.contains(&preferred)
        || shutting_down.contains(&preferred)
        || !current.isr.contains(&preferred)
    {
        return None;
    }
    Some(PartitionState {
        version: 1,
        leader: preferred,
        leader_epoch: current.leader_epoch + 1,
        controller_epoch,
        isr: current.isr.clone(),
    })
}

/// An unclean election for one partition (ElectLeaders with the unclean type): a
/// partition without a live leader is led by its first live replica that is not shutting
/// down, alone in the ISR, in a new epoch, even if that replica was out of sync: records
/// only the lost replicas had are gone. Kafka's errors otherwise.
pub fn unclean_state(
    current: &PartitionState,
    replicas: &[i32],
    live: &BTreeSet<i32>,
    shutting_down: &BTreeSet<i32>,
    controller_epoch: i32,
) -> Result<PartitionState, ResponseError> {
    if current.leader >= 0 && live.contains(&current.leader) {
        return Err(ResponseError::ElectionNotNeeded);
    }
    let leader = replicas
        .iter()
        .copied()
        .find(|r| live.contains(r) && !shutting_down.contains(r))
        .ok_or(ResponseError::EligibleLeadersNotAvailable)?;
    Ok(PartitionState {
        version: 1,
        leader,
        leader_epoch: current.leader_epoch + 1,
        controller_epoch,
        isr: vec![leader],
    })
}

/// Per partition: its new leader, or why it got none.
pub type Elected = BTreeMap<(String, i32), Result<i32, ResponseError>>;

/// Carries out unclean elections (see [`unclean_state`]) for `which`.
pub async fn elect_unclean(
    client: &Client,
    epoch: Epoch,
    view: &ClusterView,
    which: &[(String, i32)],
) -> Result<Elected, CoordError> {
    let live: BTreeSet<i32> = view.brokers.keys().copied().collect();
    let mut out = BTreeMap::new();
    for (topic, p) in which {
        let found = view
            .topics
            .get(topic)
            .filter(|_| !view.deleting.contains(topic))
            .and_then(|t| Some((t.assignment.get(p)?, t.states.get(p)?)));
        let Some((replicas, (current, version))) = found else {
            out.insert(
                (topic.clone(), *p),
                Err(ResponseError::UnknownTopicOrPartition),
            );
            continue;
        };
        let next = match unclean_state(current, replicas, &live, &view.shutting_down, epoch.epoch) {
            Ok(next) => next,
            Err(e) => {
                out.insert((topic.clone(), *p), Err(e));
                continue;
            }
        };
        let op = state_op(topic, *p, &next, *version);
        match fenced_multi(client, epoch, vec![op]).await {
            Ok(()) => {
                tracing::warn!(
                    topic,
                    partition = p,
                    leader = next.leader,
                    leader_epoch = next.leader_epoch,
                    "unclean leader election: records only the lost replicas had are gone"
                );
                out.insert((topic.clone(), *p), Ok(next.leader));
            }
            // The state changed meanwhile (a replica came back): report it as not needed
            // only if it now has a leader; the caller can ask again.
            Err(CoordError::Zk(ErrorCode::BadVersion)) => {
                out.insert((topic.clone(), *p), Err(ResponseError::NotController));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Partitions to hand back to their preferred leader, as Kafka's auto rebalance: for each
/// live broker, if more than `percent` of the partitions it prefers are led elsewhere,
/// all of those.
pub fn imbalanced(view: &ClusterView, percent: u32) -> BTreeSet<(String, i32)> {
    let mut preferred: BTreeMap<i32, Vec<(String, i32, bool)>> = BTreeMap::new();
    for (topic, t) in &view.topics {
        if view.deleting.contains(topic) {
            continue;
        }
        for (p, replicas) in &t.assignment {
            let (Some(&first), Some((s, _))) = (replicas.first(), t.states.get(p)) else {
                continue;
            };
            preferred
                .entry(first)
                .or_default()
                .push((topic.clone(), *p, s.leader == first));
        }
    }
    let mut out = BTreeSet::new();
    for (broker, parts) in preferred {
        if !view.brokers.contains_key(&broker) || view.shutting_down.contains(&broker) {
            continue;
        }
        let elsewhere: Vec<&(String, i32, bool)> = parts.iter().filter(|x| !x.2).collect();
        if !elsewhere.is_empty() && elsewhere.len() * 100 > parts.len() * percent as usize {
            out.extend(elsewhere.into_iter().map(|(t, p, _)| (t.clone(), *p)));
        }
    }
    out
}

/// Moves leadership of `which` (every partition if empty) to the preferred replicas that
/// can take it. Returns how many moved.
pub async fn elect_preferred(
    client: &Client,
    epoch: Epoch,
    view: &ClusterView,
    which: &BTreeSet<(String, i32)>,
) -> Result<usize, CoordError> {
    let live: BTreeSet<i32> = view.brokers.keys().copied().collect();
    let mut moved = 0;
    for (topic, t) in &view.topics {
        if view.deleting.contains(topic) {
            continue;
        }
        for (p, replicas) in &t.assignment {
            if !which.is_empty() && !which.contains(&(topic.clone(), *p)) {
                continue;
            }
            let Some((current, version)) = t.states.get(p) else {
                continue;
            };
            let Some(next) =
                preferred_state(current, replicas, &live, &view.shutting_down, epoch.epoch)
            else {
                continue;
            };
            let op = state_op(topic, *p, &next, *version);
            match fenced_multi(client, epoch, vec![op]).await {
                Ok(()) => {
                    moved += 1;
                    tracing::info!(
                        topic,
                        partition = p,
                        leader = next.leader,
                        leader_epoch = next.leader_epoch,
                        "preferred leader elected"
                    );
                }
                Err(CoordError::Zk(ErrorCode::BadVersion)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(moved)
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

/// At most this many partitions get their first state in one multi (about 150 bytes of
/// request per partition, far below the coordinator's 1 MiB request limit).
const CREATE_BATCH: usize = 500;

/// Creates the first state of the topic's partitions in `new`, in multis of
/// [`CREATE_BATCH`] partitions, so that a topic of a thousand partitions costs a few
/// coordinator writes instead of a thousand. A multi that finds one of its znodes already
/// there (an older view) is redone one partition at a time, skipping what exists.
async fn create_states(
    client: &Client,
    epoch: Epoch,
    topic: &str,
    assignment: &BTreeMap<i32, Vec<i32>>,
    new: &[i32],
    live: &BTreeSet<i32>,
) -> Result<(), CoordError> {
    let partitions = cluster::partitions_path(topic);
    let existing = match client.get_children(&partitions, false).await {
        Ok(c) => Some(c.into_iter().collect::<BTreeSet<String>>()),
        Err(CoordError::Zk(ErrorCode::NoNode)) => None,
        Err(e) => return Err(e),
    };
    let state_of = |p: i32| {
        let replicas = assignment.get(&p).map(Vec::as_slice).unwrap_or_default();
        initial_state(replicas, live, epoch.epoch)
    };
    for (i, chunk) in new.chunks(CREATE_BATCH).enumerate() {
        let mut ops = Vec::with_capacity(chunk.len() * 2 + 1);
        if i == 0 && existing.is_none() {
            ops.push(create_op(client, partitions.clone(), Vec::new()));
        }
        for &p in chunk {
            if !existing
                .as_ref()
                .is_some_and(|e| e.contains(&p.to_string()))
            {
                ops.push(create_op(
                    client,
                    cluster::partition_path(topic, p),
                    Vec::new(),
                ));
            }
            let state = serde_json::to_vec(&state_of(p)).unwrap_or_default();
            ops.push(create_op(
                client,
                cluster::partition_state_path(topic, p),
                state,
            ));
        }
        match fenced_multi(client, epoch, ops).await {
            Ok(()) => {
                tracing::info!(
                    topic,
                    partitions = chunk.len(),
                    first = chunk.first().copied().unwrap_or_default(),
                    last = chunk.last().copied().unwrap_or_default(),
                    "partition states created"
                );
            }
            Err(CoordError::Zk(ErrorCode::NodeExists)) => {
                for &p in chunk {
                    create_state(client, epoch, topic, p, &state_of(p)).await?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One partition's first state, creating its parents where missing (see [`create_states`]).
async fn create_state(
    client: &Client,
    epoch: Epoch,
    topic: &str,
    p: i32,
    state: &PartitionState,
) -> Result<(), CoordError> {
    let mut ops = Vec::new();
    for path in [
        cluster::partitions_path(topic),
        cluster::partition_path(topic, p),
    ] {
        if read(client, &path).await?.is_none() {
            ops.push(create_op(client, path, Vec::new()));
        }
    }
    ops.push(create_op(
        client,
        cluster::partition_state_path(topic, p),
        serde_json::to_vec(state).unwrap_or_default(),
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
    Ok(())
}

/// A multi op writing a partition's state over the version it was read at.
fn state_op(topic: &str, partition: i32, state: &PartitionState, version: i32) -> Op {
    Op::set_data(
        cluster::partition_state_path(topic, partition),
        serde_json::to_vec(state).unwrap_or_default(),
        Some(version),
    )
}

/// A multi op creating the persistent znode `path` with the ACL the client gives it.
fn create_op(client: &Client, path: String, data: Vec<u8>) -> Op {
    let acl = client.acl_for(&path);
    Op::create(path, data, &acl, CreateMode::Persistent)
}

/// Completes the reassignments of `topic` whose target replicas are all in sync (see
/// [`reassignment::completion`]): one fenced multi writes their new states and the topic
/// znode with their target replicas alone, so no broker ever sees one without the other.
/// Returns the partitions completed; none if the topic or a state changed meanwhile (the
/// event that brings the change retries).
async fn complete_reassignments(
    client: &Client,
    epoch: Epoch,
    view: &ClusterView,
    topic: &str,
    t: &TopicView,
) -> Result<BTreeSet<i32>, CoordError> {
    if !t.reassigning() {
        return Ok(BTreeSet::new());
    }
    let live: BTreeSet<i32> = view.brokers.keys().copied().collect();
    let mut done = t.clone();
    let mut ops = Vec::new();
    let mut completed = Vec::new();
    for p in t.assignment.keys() {
        let replicas = t.replicas(*p);
        let Some((current, version)) = t.states.get(p) else {
            continue;
        };
        let Some(next) =
            reassignment::completion(current, &replicas, &live, &view.shutting_down, epoch.epoch)
        else {
            continue;
        };
        ops.push(state_op(topic, *p, &next, *version));
        done.assignment.insert(*p, replicas.target());
        done.adding.remove(p);
        done.removing.remove(p);
        completed.push((*p, replicas, next));
    }
    if completed.is_empty() {
        return Ok(BTreeSet::new());
    }
    ops.push(Op::set_data(
        cluster::topic_path(topic),
        serde_json::to_vec(&done.znode()).unwrap_or_default(),
        Some(t.znode_version),
    ));
    match fenced_multi(client, epoch, ops).await {
        Ok(()) => {}
        Err(CoordError::Zk(ErrorCode::BadVersion)) => return Ok(BTreeSet::new()),
        Err(e) => return Err(e),
    }
    for (p, replicas, next) in &completed {
        tracing::info!(topic, partition = p, replicas = ?replicas.target(), removed = ?replicas.removing,
            leader = next.leader, leader_epoch = next.leader_epoch, isr = ?next.isr, "partition reassignment completed");
    }
    Ok(completed.into_iter().map(|(p, _, _)| p).collect())
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
        let new: Vec<i32> = t
            .assignment
            .keys()
            .copied()
            .filter(|p| !t.states.contains_key(p))
            .collect();
        if !new.is_empty() {
            create_states(client, epoch, topic, &t.assignment, &new, &live).await?;
        }
        let completed = complete_reassignments(client, epoch, view, topic, t).await?;
        for (p, replicas) in &t.assignment {
            let Some((current, version)) = t.states.get(p) else {
                continue;
            };
            if completed.contains(p) {
                continue;
            }
            if let Some(next) = next_state(
                current,
                replicas,
                &live,
                &view.shutting_down,
                unclean,
                epoch.epoch,
            ) {
                let op = state_op(topic, *p, &next, *version);
                match fenced_multi(client, epoch, vec![op]).await {
                    // A leader changed the ISR meanwhile: the next event retries.
                    Ok(()) | Err(CoordError::Zk(ErrorCode::BadVersion)) => {}
                    Err(e) => return Err(e),
                }
                tracing::info!(topic, partition = p, leader = next.leader, leader_epoch = next.leader_epoch, isr = ?next.isr, "partition state changed");
            }
        }
    }
    if let Some(which) = &view.preferred_election {
        elect_preferred(client, epoch, view, which).await?;
        match fenced_multi(
            client,
            epoch,
            vec![Op::delete(cluster::PREFERRED_REPLICA_ELECTION, None)],
        )
        .await
        {
            Ok(()) | Err(CoordError::Zk(ErrorCode::NoNode)) => {}
            Err(e) => return Err(e),
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

    fn none() -> BTreeSet<i32> {
        BTreeSet::new()
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
            &none(),
            false,
            2,
        )
        .unwrap();
        assert_eq!((s.leader, s.leader_epoch, s.isr), (2, 4, vec![2, 3]));
        assert_eq!(
            next_state(
                &state(2, 4, &[2, 3]),
                &[1, 2, 3],
                &live(&[2, 3]),
                &none(),
                false,
                2
            ),
            None
        );
    }

    #[test]
    fn no_live_isr_means_offline_unless_unclean() {
        let s = next_state(&state(1, 3, &[1]), &[1, 2], &live(&[2]), &none(), false, 2).unwrap();
        assert_eq!((s.leader, s.isr.clone()), (-1, vec![1]));
        // Offline and still no ISR member: nothing changes.
        assert_eq!(
            next_state(&s, &[1, 2], &live(&[2]), &none(), false, 2),
            None
        );
        // The ISR member returns: it leads again.
        let back = next_state(&s, &[1, 2], &live(&[1, 2]), &none(), false, 2).unwrap();
        assert_eq!((back.leader, back.leader_epoch), (1, 5));
        // Unclean election picks a live out-of-sync replica.
        let u = next_state(&state(1, 3, &[1]), &[1, 2], &live(&[2]), &none(), true, 2).unwrap();
        assert_eq!((u.leader, u.isr), (2, vec![2]));
    }

    #[test]
    fn dead_followers_leave_the_isr_without_a_new_epoch() {
        let s = next_state(
            &state(1, 3, &[1, 2, 3]),
            &[1, 2, 3],
            &live(&[1, 2]),
            &none(),
            false,
            2,
        )
        .unwrap();
        assert_eq!((s.leader, s.leader_epoch, s.isr), (1, 3, vec![1, 2]));
    }

    #[test]
    fn a_broker_in_controlled_shutdown_hands_over_and_leaves_the_isr() {
        let shutting = live(&[1]);
        let all = live(&[1, 2, 3]);
        // It leads: the next live ISR member takes over, in a new epoch.
        let s = next_state(
            &state(1, 3, &[1, 2, 3]),
            &[1, 2, 3],
            &all,
            &shutting,
            false,
            2,
        )
        .unwrap();
        assert_eq!((s.leader, s.leader_epoch, s.isr), (2, 4, vec![2, 3]));
        // It follows: it leaves the ISR, the leader stays.
        let s = next_state(
            &state(2, 3, &[1, 2, 3]),
            &[2, 1, 3],
            &all,
            &shutting,
            false,
            2,
        )
        .unwrap();
        assert_eq!((s.leader, s.leader_epoch, s.isr), (2, 3, vec![2, 3]));
        // Nobody else is in sync: it keeps leading until it is gone.
        assert_eq!(
            next_state(&state(1, 3, &[1]), &[1, 2], &all, &shutting, false, 2),
            None
        );
    }

    #[test]
    fn replicas_a_reassignment_dropped_leave_the_isr_and_hand_over_leadership() {
        let all = live(&[1, 2, 3, 4]);
        // 4 was being added, then a new target dropped it: it leaves the ISR.
        let s = next_state(&state(1, 3, &[1, 2, 4]), &[1, 2], &all, &none(), false, 2).unwrap();
        assert_eq!((s.leader, s.leader_epoch, s.isr), (1, 3, vec![1, 2]));
        // It led: an in-sync replica still listed takes over, in a new epoch.
        let s = next_state(&state(4, 3, &[4, 2]), &[1, 2], &all, &none(), false, 2).unwrap();
        assert_eq!((s.leader, s.leader_epoch, s.isr), (2, 4, vec![2]));
        // Nobody listed is in sync: it keeps leading until one is.
        assert_eq!(
            next_state(&state(4, 3, &[4]), &[1, 2], &all, &none(), false, 2),
            None
        );
    }

    #[test]
    fn an_unclean_election_takes_the_first_live_replica_of_an_offline_partition() {
        let offline = state(-1, 4, &[1]);
        let s = unclean_state(&offline, &[1, 2, 3], &live(&[2, 3]), &none(), 7).unwrap();
        assert_eq!(
            (s.leader, s.leader_epoch, s.isr, s.controller_epoch),
            (2, 5, vec![2], 7)
        );
        assert_eq!(
            unclean_state(&offline, &[1, 2, 3], &live(&[2, 3]), &live(&[2]), 7).map(|s| s.leader),
            Ok(3),
            "not a broker shutting down"
        );
        assert_eq!(
            unclean_state(&state(2, 4, &[2]), &[1, 2], &live(&[2]), &none(), 7),
            Err(ResponseError::ElectionNotNeeded)
        );
        assert_eq!(
            unclean_state(&offline, &[1], &live(&[2]), &none(), 7),
            Err(ResponseError::EligibleLeadersNotAvailable)
        );
    }

    #[test]
    fn the_preferred_replica_leads_again_only_when_alive_and_in_sync() {
        let all = live(&[1, 2, 3]);
        let s = preferred_state(&state(2, 4, &[2, 3, 1]), &[1, 2, 3], &all, &none(), 5).unwrap();
        assert_eq!((s.leader, s.leader_epoch, s.controller_epoch), (1, 5, 5));
        assert_eq!(
            preferred_state(&state(2, 4, &[2, 3]), &[1, 2, 3], &all, &none(), 5),
            None,
            "not in the ISR yet"
        );
        assert_eq!(
            preferred_state(
                &state(2, 4, &[2, 3, 1]),
                &[1, 2, 3],
                &live(&[2, 3]),
                &none(),
                5
            ),
            None,
            "not alive"
        );
        assert_eq!(
            preferred_state(&state(1, 4, &[1, 2]), &[1, 2, 3], &all, &none(), 5),
            None,
            "already leads"
        );
    }

    #[test]
    fn auto_rebalance_picks_brokers_past_the_imbalance_threshold() {
        use super::super::view::TopicView;
        use fjord_shared::cluster::BrokerRegistration;
        let mut view = ClusterView::default();
        for id in [1, 2] {
            view.brokers
                .insert(id, BrokerRegistration::new("127.0.0.1", 9092, None, 0));
        }
        let mut t = TopicView::default();
        for p in 0..10 {
            let replicas = if p % 2 == 0 { vec![1, 2] } else { vec![2, 1] };
            // Broker 2 leads everything: broker 1's five preferred partitions are elsewhere.
            t.states.insert(p, (state(2, 1, &[1, 2]), 0));
            t.assignment.insert(p, replicas);
        }
        view.topics.insert("t".into(), t);
        let moved = imbalanced(&view, 10);
        assert_eq!(
            moved,
            [0, 2, 4, 6, 8]
                .iter()
                .map(|p| ("t".to_owned(), *p))
                .collect()
        );
        // One partition of ten elsewhere is 10%: not more than the threshold.
        let t = view.topics.get_mut("t").unwrap();
        for p in [0, 2, 4, 6] {
            t.states.insert(p, (state(1, 1, &[1, 2]), 0));
        }
        t.assignment.insert(1, vec![1, 2]);
        t.assignment.insert(3, vec![1, 2]);
        t.assignment.insert(5, vec![1, 2]);
        t.assignment.insert(7, vec![1, 2]);
        t.assignment.insert(9, vec![1, 2]);
        for p in [1, 3, 5, 7, 9] {
            t.states.insert(p, (state(1, 1, &[1, 2]), 0));
        }
        assert!(imbalanced(&view, 10).is_empty());
    }
}
