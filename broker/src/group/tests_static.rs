//! Unit tests of static membership (`group.instance.id`), of the group record and of
//! rebuilding a group after a coordinator failover.

use super::tests::*;
use super::*;
use bytes::Bytes;
use kafka_protocol::ResponseError;

/// A Stable group of the static member `i1` (client c1, id `i1-s`, the leader) and the
/// dynamic member `c2-s`, the time it became Stable, and the record written then.
fn static_group() -> (Group, i64, GroupMetadata) {
    let mut g = Group::new("g", config(), 0);
    g.join(0, static_req("c1", "i1", "", "s"));
    g.join(0, join_req("c2", ""));
    g.tick(DELAY);
    let t = 2 * DELAY;
    let fx = g.tick(t);
    assert_eq!(join_ok(&fx, "i1-s").leader_id, "i1-s");
    let given = [("i1-s", "A-i1"), ("c2-s", "A-c2")];
    g.sync(t, sync_req("c2-s", 1, &given));
    let fx = g.sync(t, sync_req("i1-s", 1, &given));
    let written = persists(&fx);
    assert_eq!(written.len(), 1);
    ack(&mut g, t, &fx);
    assert_eq!(g.state(), GroupState::Stable);
    (g, t, written[0].metadata.clone())
}

fn static_hb(member_id: &str, instance: &str, generation_id: i32) -> HeartbeatRequest {
    HeartbeatRequest {
        group_instance_id: Some(instance.to_owned()),
        ..hb(member_id, generation_id)
    }
}

fn static_sync(member_id: &str, instance: &str, generation_id: i32) -> SyncRequest {
    SyncRequest {
        group_instance_id: Some(instance.to_owned()),
        ..sync_req(member_id, generation_id, &[])
    }
}

#[test]
fn a_restarted_static_member_takes_over_and_fences_its_old_id_without_a_rebalance() {
    let (mut g, t, _) = static_group();
    let out = g.join(t + 100, static_req("c1", "i1", "", "t"));
    assert_eq!(out.member_id, "i1-t");
    assert_eq!(
        removed(&out.effects),
        vec![(
            "i1-s".to_owned(),
            RemoveReason::Replaced {
                new_member_id: "i1-t".to_owned()
            }
        )]
    );
    assert!(
        join_answers(&out.effects).is_empty(),
        "answered once the new id is written"
    );
    let written = persists(&out.effects);
    assert_eq!(written.len(), 1);
    let md = &written[0].metadata;
    assert_eq!(
        (md.generation_id, md.members[0].member_id.as_str()),
        (1, "i1-t")
    );
    assert_eq!(md.members[0].assignment, Bytes::from_static(b"A-i1"));
    assert_eq!(g.state(), GroupState::Stable);

    let fx = ack(&mut g, t + 110, &out.effects);
    let r = join_ok(&fx, "i1-t");
    assert_eq!(r.generation_id, 1, "no rebalance");
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert!(r.members.is_empty());
    // It led under its old id: the answer names that id, so the new one does not think
    // it must assign (Kafka's behaviour before JoinGroup v9).
    assert_eq!(r.leader_id, "i1-s");
    assert_eq!(g.leader_id(), Some("i1-t"));
    assert_eq!(g.static_member_id("i1"), Some("i1-t"));

    // The new id syncs and gets the assignment the instance had.
    assert_eq!(
        assignments(&g.sync(t + 120, static_sync("i1-t", "i1", 1))),
        vec![("i1-t".to_owned(), "A-i1".to_owned())]
    );
    // The old process, still running somewhere, is fenced.
    assert_eq!(
        g.heartbeat(t + 130, &static_hb("i1-s", "i1", 1)),
        Err(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        sync_answers(&g.sync(t + 130, static_sync("i1-s", "i1", 1))),
        vec![("i1-s".to_owned(), Err(ResponseError::FencedInstanceId))]
    );
    assert_eq!(
        g.validate_commit(t + 130, "i1-s", 1, Some("i1")),
        Err(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        g.heartbeat(t + 130, &hb("i1-s", 1)),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(g.heartbeat(t + 130, &hb("c2-s", 1)), Ok(()));
    assert_eq!((g.state(), g.generation_id()), (GroupState::Stable, 1));
}

#[test]
fn a_static_member_replaced_during_a_rebalance_fences_the_parked_join() {
    let (mut g, t, _) = static_group();
    let rejoin = static_req("c1", "i1", "i1-s", "s");
    assert!(join_answers(&g.join(t + 1, rejoin).effects).is_empty());
    assert_eq!(
        g.state(),
        GroupState::PreparingRebalance,
        "the leader rejoined"
    );
    let out = g.join(t + 2, static_req("c1", "i1", "", "t"));
    let e = join_err(&out.effects, "i1-s");
    assert_eq!(
        (e.error, e.member_id.as_str()),
        (ResponseError::FencedInstanceId, "i1-s")
    );
    let fx = g.join(t + 3, join_req("c2", "c2-s")).effects;
    let leader = join_ok(&fx, "i1-t");
    assert_eq!(
        (leader.generation_id, ids(&leader)),
        (2, vec!["i1-t", "c2-s"])
    );
    assert_eq!(leader.members[0].group_instance_id.as_deref(), Some("i1"));
}

#[test]
fn a_static_member_that_does_not_rejoin_stays_until_its_session_ends() {
    let (mut g, t, _) = static_group();
    let mut changed = join_req("c2", "c2-s");
    changed.protocols = protocols("c2-new", &["range"]);
    g.join(t + 1, changed);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    // i1 keeps heartbeating but does not rejoin before the rebalance timeout.
    let deadline = t + 1 + i64::from(REBALANCE);
    let mut now = t;
    while now + 3_000 < deadline {
        now += 3_000;
        g.tick(now);
        assert_eq!(
            g.heartbeat(now, &static_hb("i1-s", "i1", 1)),
            Err(ResponseError::RebalanceInProgress)
        );
    }
    let fx = g.tick(deadline);
    assert!(
        removed(&fx).is_empty(),
        "static members are not dropped for not rejoining"
    );
    let leader = join_ok(&fx, "c2-s");
    assert_eq!(leader.generation_id, 2);
    assert_eq!(
        ids(&leader),
        vec!["i1-s", "c2-s"],
        "the leader assigns to it too"
    );
    assert_eq!(g.leader_id(), Some("c2-s"), "the old leader did not rejoin");

    // It comes back with its id and unchanged protocols: this generation's answer.
    let fx = g
        .join(deadline + 10, static_req("c1", "i1", "i1-s", "s"))
        .effects;
    let r = join_ok(&fx, "i1-s");
    assert_eq!((r.generation_id, r.leader_id.as_str()), (2, "c2-s"));
    assert_eq!(g.state(), GroupState::CompletingRebalance);

    // Once it stops heartbeating, its session ends like anyone's.
    let fx = g.sync(
        deadline + 20,
        sync_req("c2-s", 2, &[("c2-s", "x"), ("i1-s", "y")]),
    );
    ack(&mut g, deadline + 20, &fx);
    g.sync(deadline + 20, sync_req("i1-s", 2, &[]));
    let expiry = deadline + 20 + i64::from(SESSION);
    g.heartbeat(expiry - 1, &hb("c2-s", 2)).unwrap();
    let fx = g.tick(expiry);
    assert_eq!(
        removed(&fx),
        vec![("i1-s".to_owned(), RemoveReason::SessionTimeout)]
    );
    assert_eq!(g.static_member_id("i1"), None);
}

#[test]
fn a_leader_that_rejoins_keeps_leading_even_if_it_joined_later() {
    let (mut g, t, _) = static_group();
    // i1 (first in join order, the leader) sits out one rebalance, heartbeating all the
    // while: c2 leads generation 2.
    let mut changed = join_req("c2", "c2-s");
    changed.protocols = protocols("c2-new", &["range"]);
    g.join(t + 1, changed.clone());
    let deadline = t + 1 + i64::from(REBALANCE);
    let mut now = t;
    while now + 3_000 < deadline {
        now += 3_000;
        g.tick(now);
        g.heartbeat(now, &static_hb("i1-s", "i1", 1)).unwrap_err();
    }
    let fx = g.tick(deadline);
    assert_eq!(join_ok(&fx, "c2-s").leader_id, "c2-s");
    g.join(deadline, static_req("c1", "i1", "i1-s", "s"));
    let fx = g.sync(
        deadline,
        sync_req("c2-s", 2, &[("i1-s", "a"), ("c2-s", "b")]),
    );
    ack(&mut g, deadline, &fx);
    g.sync(deadline, static_sync("i1-s", "i1", 2));
    assert_eq!(g.state(), GroupState::Stable);

    // The leader starts the next rebalance and i1 follows. The leader is kept; it is
    // not simply the first member in join order that rejoined.
    g.join(deadline + 10, changed);
    let fx = g
        .join(deadline + 20, static_req("c1", "i1", "i1-s", "s"))
        .effects;
    let leader = join_ok(&fx, "c2-s");
    assert_eq!(
        (leader.generation_id, leader.leader_id.as_str()),
        (3, "c2-s")
    );
    assert_eq!(ids(&leader), vec!["i1-s", "c2-s"]);
    assert!(join_ok(&fx, "i1-s").members.is_empty());
}

#[test]
fn a_static_rejoin_that_changes_the_groups_protocol_rebalances() {
    let mut g = Group::new("g", config(), 0);
    let mut first = static_req("c1", "i1", "", "s");
    first.protocols = protocols("c1", &["range", "roundrobin"]);
    g.join(0, first);
    g.tick(DELAY);
    let fx = g.sync(DELAY, sync_req("i1-s", 1, &[("i1-s", "a")]));
    ack(&mut g, DELAY, &fx);
    assert_eq!(g.protocol_name(), Some("range"));
    // Nothing in common with the group as it stands (its own old self included).
    let mut disjoint = static_req("c1", "i1", "", "t");
    disjoint.protocols = protocols("c1", &["sticky"]);
    let fx = g.join(DELAY + 5, disjoint).effects;
    assert_eq!(
        join_err(&fx, "").error,
        ResponseError::InconsistentGroupProtocol
    );
    assert_eq!(g.static_member_id("i1"), Some("i1-s"));
    // A new preference order changes the vote.
    let mut restart = static_req("c1", "i1", "", "t");
    restart.protocols = protocols("c1", &["roundrobin", "range"]);
    let fx = g.join(DELAY + 10, restart).effects;
    // Alone in the group, it has rejoined: the new generation completes at once.
    let r = join_ok(&fx, "i1-t");
    assert_eq!(r.generation_id, 2);
    assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
    assert_eq!((r.leader_id.as_str(), ids(&r)), ("i1-t", vec!["i1-t"]));
    assert!(persists(&fx).is_empty());
}

#[test]
fn a_failed_write_of_a_new_static_id_restores_the_old_one() {
    let (mut g, t, _) = static_group();
    let out = g.join(t + 1, static_req("c1", "i1", "", "t"));
    let seq = persists(&out.effects)[0].seq;
    let fx = g.persisted(t + 2, seq, Err(ResponseError::CoordinatorNotAvailable));
    let e = join_err(&fx, "i1-t");
    assert_eq!(
        (e.error, e.member_id.as_str()),
        (ResponseError::CoordinatorNotAvailable, "")
    );
    assert_eq!(g.static_member_id("i1"), Some("i1-s"));
    assert_eq!(g.leader_id(), Some("i1-s"));
    assert!(g.member("i1-t").is_none());
    assert_eq!(g.heartbeat(t + 3, &static_hb("i1-s", "i1", 1)), Ok(()));
    assert_eq!(g.state(), GroupState::Stable);
}

#[test]
fn static_members_leave_by_instance_id_and_only_with_the_right_member_id() {
    let (mut g, t, _) = static_group();
    let who = |member_id: &str, instance: &str| LeaveMember {
        member_id: member_id.to_owned(),
        group_instance_id: Some(instance.to_owned()),
        reason: Some("shutting down".to_owned()),
    };
    let out = g.leave(t + 1, &[who("someone-else", "i1"), who("", "i9")]);
    assert_eq!(
        out.result,
        Ok(vec![
            Err(ResponseError::FencedInstanceId),
            Err(ResponseError::UnknownMemberId)
        ])
    );
    assert_eq!(g.state(), GroupState::Stable);
    let out = g.leave(t + 2, &[who("", "i1")]);
    assert_eq!(out.result, Ok(vec![Ok(())]));
    assert_eq!(
        removed(&out.effects),
        vec![("i1-s".to_owned(), RemoveReason::Left)]
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.leader_id(), Some("c2-s"));
}

#[test]
fn a_group_is_rebuilt_from_its_record_after_a_failover() {
    let (g, t, written) = static_group();
    assert_eq!(
        g.metadata(),
        written,
        "the record is the group as it stands"
    );
    assert_eq!(written.members[0].group_instance_id.as_deref(), Some("i1"));
    assert_eq!(
        written.members[1].subscription,
        Bytes::from_static(b"c2:range")
    );
    assert_eq!(written.current_state_timestamp_ms, t);

    // The new coordinator loads it much later; members keep their generation.
    let t2 = t + 50_000;
    let mut h = Group::load(written.clone(), config(), t2);
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.generation_id(), 1);
    assert_eq!(h.leader_id(), Some("i1-s"));
    assert_eq!(
        (h.protocol_type(), h.protocol_name()),
        (Some("consumer"), Some("range"))
    );
    assert_eq!(h.static_member_id("i1"), Some("i1-s"));
    assert_eq!(h.metadata(), written);
    assert_eq!(
        h.next_deadline(),
        Some(t2 + i64::from(SESSION)),
        "fresh sessions"
    );
    assert_eq!(h.heartbeat(t2 + 1, &static_hb("i1-s", "i1", 1)), Ok(()));
    assert_eq!(
        assignments(&h.sync(t2 + 2, sync_req("c2-s", 1, &[]))),
        vec![("c2-s".to_owned(), "A-c2".to_owned())]
    );
    let fx = h.join(t2 + 3, join_req("c2", "c2-s")).effects;
    assert_eq!(
        join_ok(&fx, "c2-s").generation_id,
        1,
        "unchanged follower: no rebalance"
    );

    // c2 then goes quiet: it is dropped once its fresh session ends.
    h.heartbeat(t2 + 5_000, &static_hb("i1-s", "i1", 1))
        .unwrap();
    let fx = h.tick(t2 + 2 + i64::from(SESSION));
    assert_eq!(
        removed(&fx),
        vec![("c2-s".to_owned(), RemoveReason::SessionTimeout)]
    );
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn an_empty_group_record_loads_as_empty_and_keeps_counting_generations() {
    let record = GroupMetadata {
        group_id: "g".to_owned(),
        protocol_type: "consumer".to_owned(),
        generation_id: 3,
        protocol_name: None,
        leader_id: None,
        current_state_timestamp_ms: 1_000,
        members: Vec::new(),
    };
    let mut g = Group::load(record, config(), 90_000);
    assert_eq!((g.state(), g.generation_id()), (GroupState::Empty, 3));
    assert_eq!(g.offset_expiry(), Some(OffsetExpiry::Since(1_000)));
    assert_eq!(g.next_deadline(), None);
    g.join(90_000, join_req("c1", ""));
    let fx = g.tick(90_000 + DELAY);
    assert_eq!(join_ok(&fx, "c1-s").generation_id, 4);
}
