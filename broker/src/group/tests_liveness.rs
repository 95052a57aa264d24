//! Unit tests of liveness and departures with an injected clock: session, rebalance,
//! sync and new-member timeouts, lapsed member ids, LeaveGroup, heartbeat answers in
//! each state, commit checks, unloading and deletion.

use super::tests::*;
use super::*;
use kafka_protocol::ResponseError;

#[test]
fn a_member_id_that_is_never_used_lapses_and_stops_holding_up_the_join() {
    let (mut g, t) = stable_group(&["c1", "c2"]);
    let out = g.join(
        t,
        JoinRequest {
            require_known_member_id: true,
            ..join_req("c3", "")
        },
    );
    assert_eq!(
        join_err(&out.effects, "c3-s").error,
        ResponseError::MemberIdRequired
    );
    assert_eq!(
        g.state(),
        GroupState::Stable,
        "no rebalance for a pending id"
    );

    // The leader rejoins; c2 too. The pending id holds the join until it lapses.
    g.join(t + 100, join_req("c1", "c1-s"));
    let fx = g.join(t + 200, join_req("c2", "c2-s")).effects;
    assert!(join_answers(&fx).is_empty());
    assert_eq!(g.next_deadline(), Some(t + i64::from(SESSION)));
    let fx = g.tick(t + i64::from(SESSION));
    assert!(!g.is_pending_member("c3-s"));
    assert_eq!(ids(&join_ok(&fx, "c1-s")), vec!["c1-s", "c2-s"]);
    assert_eq!(g.generation_id(), 2);
}

#[test]
fn a_member_that_stops_heartbeating_is_dropped_and_the_rest_rebalance_without_it() {
    let (mut g, t) = stable_group(&["c1", "c2", "c3"]);
    let mut now = t;
    // c1 and c3 heartbeat every 3s; c2 has gone quiet.
    while now + 3_000 < t + i64::from(SESSION) {
        now += 3_000;
        assert!(g.tick(now).is_empty());
        assert_eq!(g.heartbeat(now, &hb("c1-s", 1)), Ok(()));
        assert_eq!(g.heartbeat(now, &hb("c3-s", 1)), Ok(()));
    }
    assert_eq!(g.next_deadline(), Some(t + i64::from(SESSION)));
    let fx = g.tick(t + i64::from(SESSION));
    assert_eq!(
        removed(&fx),
        vec![("c2-s".to_owned(), RemoveReason::SessionTimeout)]
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(t + 10_100, &hb("c2-s", 1)),
        Err(ResponseError::UnknownMemberId)
    );

    assert_eq!(
        g.heartbeat(t + 10_500, &hb("c3-s", 1)),
        Err(ResponseError::RebalanceInProgress)
    );
    g.join(t + 10_600, join_req("c3", "c3-s"));
    let fx = g.join(t + 10_700, join_req("c1", "c1-s")).effects;
    let leader = join_ok(&fx, "c1-s");
    assert_eq!(
        (leader.generation_id, ids(&leader)),
        (2, vec!["c1-s", "c3-s"])
    );
}

#[test]
fn the_rebalance_timeout_drops_a_member_that_never_rejoins() {
    let (mut g, t) = stable_group(&["c1", "c2", "c3"]);
    g.join(t + 1_000, join_req("c1", "c1-s"));
    g.join(t + 2_000, join_req("c2", "c2-s"));
    let deadline = t + 1_000 + i64::from(REBALANCE);
    // c3 keeps heartbeating (and hears REBALANCE_IN_PROGRESS) but never rejoins; c1 and
    // c2 are parked and do not need to heartbeat meanwhile.
    let mut now = t + 2_000;
    while now + 3_000 < deadline {
        now += 3_000;
        assert!(
            removed(&g.tick(now)).is_empty(),
            "nobody goes before the timeout"
        );
        assert_eq!(
            g.heartbeat(now, &hb("c3-s", 1)),
            Err(ResponseError::RebalanceInProgress)
        );
    }
    assert_eq!(g.next_deadline(), Some(deadline));
    let fx = g.tick(deadline);
    assert_eq!(
        removed(&fx),
        vec![("c3-s".to_owned(), RemoveReason::RebalanceTimeout)]
    );
    let leader = join_ok(&fx, "c1-s");
    assert_eq!(
        (leader.generation_id, ids(&leader)),
        (2, vec!["c1-s", "c2-s"])
    );
    assert_eq!(join_ok(&fx, "c2-s").generation_id, 2);
    assert_eq!(
        g.heartbeat(deadline + 1, &hb("c3-s", 1)),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_new_member_parked_too_long_is_dropped_with_unknown_member_id() {
    let mut g = Group::new(
        "g",
        GroupConfig {
            new_member_join_timeout_ms: 5_000,
            ..config()
        },
        0,
    );
    g.join(0, join_req("c1", ""));
    g.tick(DELAY);
    let fx = g.sync(DELAY, sync_req("c1-s", 1, &[]));
    ack(&mut g, DELAY, &fx);
    // c2 joins; c1 keeps heartbeating but does not rejoin within 5s.
    g.join(4_000, join_req("c2", ""));
    assert_eq!(
        g.heartbeat(8_000, &hb("c1-s", 1)),
        Err(ResponseError::RebalanceInProgress)
    );
    let fx = g.tick(9_000);
    let e = join_err(&fx, "c2-s");
    assert_eq!(
        (e.error, e.member_id.as_str()),
        (ResponseError::UnknownMemberId, "")
    );
    assert_eq!(
        removed(&fx),
        vec![("c2-s".to_owned(), RemoveReason::SessionTimeout)]
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn the_leader_leaving_hands_leadership_on_and_the_last_one_out_empties_the_group() {
    let (mut g, t) = stable_group(&["c1", "c2", "c3"]);
    let out = g.leave(t + 10, &[leaving("c1-s")]);
    assert_eq!(out.result, Ok(vec![Ok(())]));
    assert_eq!(
        removed(&out.effects),
        vec![("c1-s".to_owned(), RemoveReason::Left)]
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.leader_id(), Some("c2-s"));
    assert_eq!(
        g.leave(t + 11, &[leaving("c1-s"), leaving("nobody")])
            .result,
        Ok(vec![
            Err(ResponseError::UnknownMemberId),
            Err(ResponseError::UnknownMemberId)
        ])
    );

    g.join(t + 20, join_req("c3", "c3-s"));
    let fx = g.join(t + 30, join_req("c2", "c2-s")).effects;
    let leader = join_ok(&fx, "c2-s");
    assert_eq!(
        (leader.generation_id, ids(&leader)),
        (2, vec!["c2-s", "c3-s"])
    );

    // Both leave before syncing: a parked sync is answered, the group ends up Empty.
    assert!(g.sync(t + 40, sync_req("c3-s", 2, &[])).is_empty());
    let fx = g.leave(t + 50, &[leaving("c2-s")]).effects;
    assert_eq!(
        sync_answers(&fx),
        vec![("c3-s".to_owned(), Err(ResponseError::RebalanceInProgress))]
    );
    let fx = g.leave(t + 60, &[leaving("c3-s")]).effects;
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(
        g.generation_id(),
        3,
        "emptying goes through a rebalance, as in Kafka"
    );
    let written = persists(&fx);
    assert_eq!(written.len(), 1);
    assert!(written[0].metadata.members.is_empty());
    assert_eq!(written[0].metadata.protocol_name, None);
    assert_eq!(g.next_deadline(), None);
}

#[test]
fn heartbeats_are_answered_according_to_the_state() {
    let mut g = Group::new("g", config(), 0);
    assert_eq!(
        g.heartbeat(0, &hb("c1-s", 0)),
        Err(ResponseError::UnknownMemberId),
        "Empty"
    );
    g.join(0, join_req("c1", ""));
    assert_eq!(
        g.heartbeat(10, &hb("c1-s", 0)),
        Err(ResponseError::RebalanceInProgress),
        "PreparingRebalance"
    );
    g.tick(DELAY);
    assert_eq!(
        g.heartbeat(DELAY + 1, &hb("c1-s", 1)),
        Ok(()),
        "CompletingRebalance"
    );
    let fx = g.sync(DELAY + 2, sync_req("c1-s", 1, &[]));
    ack(&mut g, DELAY + 2, &fx);
    assert_eq!(g.heartbeat(DELAY + 3, &hb("c1-s", 1)), Ok(()), "Stable");
    assert_eq!(
        g.heartbeat(DELAY + 3, &hb("c2-s", 1)),
        Err(ResponseError::UnknownMemberId)
    );
    let with_instance = HeartbeatRequest {
        group_instance_id: Some("i1".to_owned()),
        ..hb("c1-s", 1)
    };
    assert_eq!(
        g.heartbeat(DELAY + 3, &with_instance),
        Err(ResponseError::UnknownMemberId),
        "an instance id the group does not know"
    );
    g.unload(DELAY + 4);
    assert_eq!(
        g.heartbeat(DELAY + 5, &hb("c1-s", 1)),
        Err(ResponseError::CoordinatorNotAvailable),
        "Dead"
    );
}

#[test]
fn a_heartbeat_resets_the_session_deadline() {
    let (mut g, t) = stable_group(&["c1"]);
    assert_eq!(g.next_deadline(), Some(t + i64::from(SESSION)));
    g.heartbeat(t + 4_000, &hb("c1-s", 1)).unwrap();
    assert_eq!(g.next_deadline(), Some(t + 4_000 + i64::from(SESSION)));
    assert!(g.tick(t + i64::from(SESSION)).is_empty());
    assert_eq!(
        g.member("c1-s").map(|m| m.last_heartbeat_ms),
        Some(t + 4_000)
    );
    // A commit of the member counts too.
    g.validate_commit(t + 6_000, "c1-s", 1, None).unwrap();
    assert_eq!(g.next_deadline(), Some(t + 6_000 + i64::from(SESSION)));
}

#[test]
fn members_that_do_not_sync_in_time_are_dropped_and_the_group_rebalances() {
    let mut g = Group::new("g", config(), 0);
    g.join(0, join_req("c1", ""));
    g.join(0, join_req("c2", ""));
    g.tick(DELAY);
    g.tick(2 * DELAY);
    let completed = 2 * DELAY;
    let fx = g.sync(
        completed + 10,
        sync_req("c1-s", 1, &[("c1-s", "a"), ("c2-s", "b")]),
    );
    ack(&mut g, completed + 10, &fx);
    assert_eq!(g.state(), GroupState::Stable);
    // c2 never syncs (but heartbeats, so its session holds).
    let deadline = completed + i64::from(REBALANCE);
    let mut now = completed;
    while now + 3_000 < deadline {
        now += 3_000;
        g.tick(now);
        g.heartbeat(now, &hb("c1-s", 1)).unwrap();
        g.heartbeat(now, &hb("c2-s", 1)).unwrap();
    }
    let fx = g.tick(deadline);
    assert_eq!(
        removed(&fx),
        vec![("c2-s".to_owned(), RemoveReason::SyncTimeout)]
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let fx = g.join(deadline + 1, join_req("c1", "c1-s")).effects;
    assert_eq!(ids(&join_ok(&fx, "c1-s")), vec!["c1-s"]);
}

#[test]
fn offset_commits_follow_kafkas_group_checks() {
    let mut g = Group::new("g", config(), 0);
    // No group management: generation -1 and no member id, while Empty.
    assert_eq!(g.validate_commit(0, "", -1, None), Ok(()));
    assert_eq!(g.offset_expiry(), Some(OffsetExpiry::SinceCommit));
    assert_eq!(
        g.validate_commit(0, "c1-s", 1, None),
        Err(ResponseError::UnknownMemberId)
    );

    let (mut g, t) = stable_group(&["c1"]);
    assert_eq!(g.validate_commit(t, "c1-s", 1, None), Ok(()));
    assert_eq!(
        g.validate_commit(t, "", -1, None),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.validate_commit(t, "c1-s", 0, None),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.validate_commit(t, "c2-s", 1, None),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.offset_expiry(),
        None,
        "a group with members keeps its offsets"
    );

    g.leave(t + 1, &[leaving("c1-s")]);
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.offset_expiry(), Some(OffsetExpiry::Since(t + 1)));
    assert_eq!(g.validate_commit(t + 2, "", -1, None), Ok(()));
    g.delete(t + 3).unwrap();
    assert_eq!(
        g.validate_commit(t + 4, "", -1, None),
        Err(ResponseError::CoordinatorNotAvailable)
    );
}

#[test]
fn unloading_answers_parked_requests_with_not_coordinator() {
    let (mut g, t) = stable_group(&["c1", "c2"]);
    g.join(t + 1, join_req("c1", "c1-s"));
    let fx = g.unload(t + 2);
    let e = join_err(&fx, "c1-s");
    assert_eq!(e.error, ResponseError::NotCoordinator);
    assert_eq!(g.state(), GroupState::Dead);
    assert_eq!(g.next_deadline(), None);
    assert!(g.tick(t + 1_000_000).is_empty());
    assert_eq!(
        join_err(&g.join(t + 3, join_req("c3", "")).effects, "").error,
        ResponseError::CoordinatorNotAvailable
    );
    assert_eq!(
        g.leave(t + 3, &[leaving("c2-s")]).result,
        Err(ResponseError::CoordinatorNotAvailable)
    );
    assert_eq!(g.delete(t + 3), Err(ResponseError::GroupIdNotFound));
}

#[test]
fn only_an_empty_group_can_be_deleted() {
    let (mut g, t) = stable_group(&["c1"]);
    assert_eq!(g.delete(t), Err(ResponseError::NonEmptyGroup));
    g.leave(t, &[leaving("c1-s")]);
    assert_eq!(g.delete(t + 1), Ok(()));
    assert_eq!(g.state(), GroupState::Dead);
}

#[test]
fn a_pending_member_id_can_leave_and_so_release_the_join() {
    let (mut g, t) = stable_group(&["c1", "c2"]);
    let pending = g
        .join(
            t,
            JoinRequest {
                require_known_member_id: true,
                ..join_req("c3", "")
            },
        )
        .member_id;
    g.join(t + 100, join_req("c1", "c1-s"));
    assert!(join_answers(&g.join(t + 200, join_req("c2", "c2-s")).effects).is_empty());
    let out = g.leave(t + 300, &[leaving(&pending)]);
    assert_eq!(out.result, Ok(vec![Ok(())]));
    assert!(!g.is_pending_member(&pending));
    assert_eq!(join_ok(&out.effects, "c1-s").generation_id, 2);
}

#[test]
fn a_member_leaving_during_the_initial_delay_does_not_end_it_early() {
    let mut g = Group::new("g", config(), 0);
    g.join(0, join_req("c1", ""));
    g.join(100, join_req("c2", ""));
    // Everyone left has joined, but the group was Empty: only the delay's timer ends
    // the join, so late joiners still make the first generation.
    let fx = g.leave(200, &[leaving("c2-s")]).effects;
    let answered: Vec<String> = join_answers(&fx).into_iter().map(|(m, _)| m).collect();
    assert_eq!(
        answered,
        ["c2-s"],
        "only the leaver's own join is answered: {fx:?}"
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    g.join(300, join_req("c3", ""));
    // The delay is extended for the late joiner; tick until it ends (a few rounds).
    let mut fx = Vec::new();
    for _ in 0..5 {
        fx = g.tick(g.next_deadline().unwrap());
        if !join_answers(&fx).is_empty() {
            break;
        }
    }
    let r = join_ok(&fx, "c1-s");
    assert_eq!(r.generation_id, 1);
    assert_eq!(join_ok(&fx, "c3-s").generation_id, 1);
}
