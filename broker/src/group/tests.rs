//! Unit tests of the group state machine with an injected clock: joins and syncs,
//! rebalances, protocol selection and generations, and the helpers all group tests use.
//! Timeouts, leaving and heartbeats are in `tests_liveness.rs`; static membership,
//! persistence and failover in `tests_static.rs`.

use super::*;
use bytes::Bytes;
use kafka_protocol::ResponseError;

pub(super) const SESSION: i32 = 10_000;
pub(super) const REBALANCE: i32 = 30_000;
pub(super) const DELAY: i64 = 3_000;

pub(super) fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: DELAY,
        ..GroupConfig::default()
    }
}

/// Protocols whose metadata names their owner: `<owner>:<protocol>`.
pub(super) fn protocols(owner: &str, names: &[&str]) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol::new(*n, format!("{owner}:{n}").into_bytes()))
        .collect()
}

/// A dynamic member's join; a new member gets the id `<client>-s`.
pub(super) fn join_req(client: &str, member_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_owned(),
        group_instance_id: None,
        client_id: client.to_owned(),
        client_host: "/10.0.0.1".to_owned(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".to_owned(),
        protocols: protocols(client, &["range"]),
        require_known_member_id: false,
        reason: None,
        new_member_id_suffix: "s".to_owned(),
    }
}

/// A static member's join: instance `i<n>` for client `c<n>`.
pub(super) fn static_req(
    client: &str,
    instance: &str,
    member_id: &str,
    suffix: &str,
) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.to_owned()),
        new_member_id_suffix: suffix.to_owned(),
        ..join_req(client, member_id)
    }
}

pub(super) fn sync_req(
    member_id: &str,
    generation_id: i32,
    assignments: &[(&str, &str)],
) -> SyncRequest {
    SyncRequest {
        member_id: member_id.to_owned(),
        generation_id,
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| ((*m).to_owned(), Bytes::copy_from_slice(a.as_bytes())))
            .collect(),
    }
}

pub(super) fn hb(member_id: &str, generation_id: i32) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: member_id.to_owned(),
        generation_id,
        group_instance_id: None,
    }
}

pub(super) fn leaving(member_id: &str) -> LeaveMember {
    LeaveMember {
        member_id: member_id.to_owned(),
        group_instance_id: None,
        reason: None,
    }
}

pub(super) fn join_answers(fx: &[Effect]) -> Vec<(String, Result<JoinResult, JoinError>)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::JoinResponse { member_id, result } => Some((member_id.clone(), result.clone())),
            _ => None,
        })
        .collect()
}

/// The one successful join answer for `member_id` among the effects.
pub(super) fn join_ok(fx: &[Effect], member_id: &str) -> JoinResult {
    let mut found: Vec<JoinResult> = join_answers(fx)
        .into_iter()
        .filter(|(m, _)| m == member_id)
        .map(|(_, r)| r.expect("a successful join answer"))
        .collect();
    assert_eq!(found.len(), 1, "one join answer for {member_id} in {fx:?}");
    found.remove(0)
}

pub(super) fn join_err(fx: &[Effect], member_id: &str) -> JoinError {
    let mut found: Vec<JoinError> = join_answers(fx)
        .into_iter()
        .filter(|(m, _)| m == member_id)
        .map(|(_, r)| r.expect_err("a failed join answer"))
        .collect();
    assert_eq!(found.len(), 1, "one join answer for {member_id} in {fx:?}");
    found.remove(0)
}

pub(super) fn sync_answers(fx: &[Effect]) -> Vec<(String, Result<SyncResult, ResponseError>)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::SyncResponse { member_id, result } => Some((member_id.clone(), result.clone())),
            _ => None,
        })
        .collect()
}

/// The assignment each successful sync answer carries, by member id.
pub(super) fn assignments(fx: &[Effect]) -> Vec<(String, String)> {
    sync_answers(fx)
        .into_iter()
        .map(|(m, r)| {
            let a = r.expect("a successful sync answer").assignment;
            (m, String::from_utf8_lossy(&a).into_owned())
        })
        .collect()
}

pub(super) fn persists(fx: &[Effect]) -> Vec<PersistRequest> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Persist(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn removed(fx: &[Effect]) -> Vec<(String, RemoveReason)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::MemberRemoved {
                member_id, reason, ..
            } => Some((member_id.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

/// Reports every write among `fx` as done, as a caller would once they are in the log.
pub(super) fn ack(g: &mut Group, now: i64, fx: &[Effect]) -> Vec<Effect> {
    persists(fx)
        .into_iter()
        .flat_map(|p| g.persisted(now, p.seq, Ok(())))
        .collect()
}

pub(super) fn ids(result: &JoinResult) -> Vec<&str> {
    result
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect()
}

/// A Stable group of the dynamic members `clients` (ids `<client>-s`, the first leads,
/// each assigned `A-<client>`), and the time it became Stable.
pub(super) fn stable_group(clients: &[&str]) -> (Group, i64) {
    let mut g = Group::new("g", config(), 0);
    for c in clients {
        g.join(0, join_req(c, ""));
    }
    let mut now = 0;
    while g.state() == GroupState::PreparingRebalance {
        now = g.next_deadline().expect("a join timer");
        g.tick(now);
    }
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    let gen = g.generation_id();
    let given: Vec<(String, String)> = clients
        .iter()
        .map(|c| (format!("{c}-s"), format!("A-{c}")))
        .collect();
    let given: Vec<(&str, &str)> = given
        .iter()
        .map(|(m, a)| (m.as_str(), a.as_str()))
        .collect();
    let mut fx = Vec::new();
    for c in clients.iter().rev() {
        fx.extend(g.sync(now, sync_req(&format!("{c}-s"), gen, &given)));
    }
    let fx = ack(&mut g, now, &fx);
    assert_eq!(sync_answers(&fx).len(), clients.len());
    assert_eq!(g.state(), GroupState::Stable);
    (g, now)
}

#[test]
fn one_member_joins_after_the_initial_delay_and_syncs_its_own_assignment() {
    let mut g = Group::new("g", config(), 0);
    let out = g.join(0, join_req("c1", ""));
    assert_eq!(out.member_id, "c1-s");
    assert!(
        join_answers(&out.effects).is_empty(),
        "parked for the initial delay"
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.next_deadline(), Some(DELAY));
    assert!(g.tick(DELAY - 1).is_empty());

    let fx = g.tick(DELAY);
    let r = join_ok(&fx, "c1-s");
    assert_eq!((r.generation_id, r.leader_id.as_str()), (1, "c1-s"));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(r.members[0].metadata, Bytes::from_static(b"c1:range"));
    assert_eq!(g.state(), GroupState::CompletingRebalance);

    let fx = g.sync(DELAY + 5, sync_req("c1-s", 1, &[("c1-s", "mine")]));
    assert!(
        sync_answers(&fx).is_empty(),
        "answered once the assignment is written"
    );
    let written = persists(&fx);
    assert_eq!(written.len(), 1);
    let md = &written[0].metadata;
    assert_eq!(
        (md.generation_id, md.leader_id.as_deref()),
        (1, Some("c1-s"))
    );
    assert_eq!(md.members[0].assignment, Bytes::from_static(b"mine"));
    assert_eq!(md.members[0].subscription, Bytes::from_static(b"c1:range"));
    assert_eq!(g.state(), GroupState::CompletingRebalance);

    let fx = g.persisted(DELAY + 7, written[0].seq, Ok(()));
    assert_eq!(
        assignments(&fx),
        vec![("c1-s".to_owned(), "mine".to_owned())]
    );
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.heartbeat(DELAY + 8, &hb("c1-s", 1)), Ok(()));
    // A second sync in Stable gets the same assignment at once.
    let fx = g.sync(DELAY + 9, sync_req("c1-s", 1, &[]));
    assert_eq!(
        assignments(&fx),
        vec![("c1-s".to_owned(), "mine".to_owned())]
    );
}

#[test]
fn three_members_join_in_one_generation_and_the_leader_assigns_for_all() {
    let mut g = Group::new("g", config(), 0);
    g.join(0, join_req("c1", ""));
    g.join(1_000, join_req("c2", ""));
    g.join(2_500, join_req("c3", ""));
    // Members kept arriving: the initial delay is extended once more.
    assert!(join_answers(&g.tick(DELAY)).is_empty());
    assert_eq!(g.next_deadline(), Some(2 * DELAY));
    let fx = g.tick(2 * DELAY);
    let leader = join_ok(&fx, "c1-s");
    assert_eq!(ids(&leader), vec!["c1-s", "c2-s", "c3-s"]);
    assert_eq!(leader.members[1].metadata, Bytes::from_static(b"c2:range"));
    for follower in ["c2-s", "c3-s"] {
        let r = join_ok(&fx, follower);
        assert_eq!((r.generation_id, r.leader_id.as_str()), (1, "c1-s"));
        assert!(r.members.is_empty(), "only the leader gets the members");
    }

    // Followers sync first and wait; the leader's assignment leaves c3 out.
    assert!(g.sync(6_100, sync_req("c2-s", 1, &[])).is_empty());
    assert!(g.sync(6_200, sync_req("c3-s", 1, &[])).is_empty());
    let fx = g.sync(
        6_300,
        sync_req("c1-s", 1, &[("c1-s", "p0"), ("c2-s", "p1")]),
    );
    let fx = ack(&mut g, 6_400, &fx);
    let mut got = assignments(&fx);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("c1-s".to_owned(), "p0".to_owned()),
            ("c2-s".to_owned(), "p1".to_owned()),
            ("c3-s".to_owned(), String::new()),
        ]
    );
    assert_eq!(g.state(), GroupState::Stable);
}

#[test]
fn the_initial_delay_stops_at_the_rebalance_timeout() {
    let mut g = Group::new("g", config(), 0);
    let short = |c: &str| JoinRequest {
        rebalance_timeout_ms: 5_000,
        ..join_req(c, "")
    };
    g.join(0, short("c1"));
    g.join(1_000, short("c2"));
    assert!(g.tick(3_000).is_empty());
    assert_eq!(
        g.next_deadline(),
        Some(5_000),
        "only 2s of the rebalance timeout are left"
    );
    g.join(4_000, short("c3"));
    let fx = g.tick(5_000);
    assert_eq!(ids(&join_ok(&fx, "c1-s")), vec!["c1-s", "c2-s", "c3-s"]);
}

#[test]
fn a_new_member_must_come_back_with_the_id_it_is_given() {
    let mut g = Group::new("g", config(), 0);
    let mut req = JoinRequest {
        require_known_member_id: true,
        new_member_id_suffix: "8f2c".to_owned(),
        ..join_req("c1", "")
    };
    let out = g.join(0, req.clone());
    assert_eq!(out.member_id, "c1-8f2c");
    let e = join_err(&out.effects, "c1-8f2c");
    assert_eq!(
        (e.error, e.member_id.as_str()),
        (ResponseError::MemberIdRequired, "c1-8f2c")
    );
    assert_eq!(
        g.state(),
        GroupState::Empty,
        "a pending id is not a member yet"
    );
    assert!(g.is_pending_member("c1-8f2c"));

    req.member_id = out.member_id;
    let out = g.join(50, req);
    assert!(join_answers(&out.effects).is_empty());
    assert!(!g.is_pending_member("c1-8f2c"));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let fx = g.tick(50 + DELAY);
    assert_eq!(join_ok(&fx, "c1-8f2c").generation_id, 1);
}

#[test]
fn a_new_member_during_stable_makes_everyone_rejoin_into_a_new_generation() {
    let (mut g, t) = stable_group(&["c1", "c2"]);
    let out = g.join(t + 100, join_req("c3", ""));
    assert_eq!(out.member_id, "c3-s");
    assert!(join_answers(&out.effects).is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    // Heartbeats tell the others to rejoin; commits of the old generation still work.
    assert_eq!(
        g.heartbeat(t + 200, &hb("c1-s", 1)),
        Err(ResponseError::RebalanceInProgress)
    );
    assert_eq!(
        g.heartbeat(t + 200, &hb("c2-s", 1)),
        Err(ResponseError::RebalanceInProgress)
    );
    assert_eq!(g.validate_commit(t + 250, "c2-s", 1, None), Ok(()));

    assert!(join_answers(&g.join(t + 300, join_req("c1", "c1-s")).effects).is_empty());
    // The last one in completes the join at once (no initial delay: not an Empty group).
    let fx = g.join(t + 400, join_req("c2", "c2-s")).effects;
    let leader = join_ok(&fx, "c1-s");
    assert_eq!(leader.generation_id, 2);
    assert_eq!(ids(&leader), vec!["c1-s", "c2-s", "c3-s"]);
    assert_eq!(join_ok(&fx, "c3-s").leader_id, "c1-s");
    assert_eq!(join_answers(&fx).len(), 3);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
}

#[test]
fn a_rejoin_during_stable_rebalances_only_for_the_leader_or_changed_protocols() {
    let (mut g, t) = stable_group(&["c1", "c2"]);
    // A follower with the same protocols gets the current generation back.
    let fx = g.join(t + 10, join_req("c2", "c2-s")).effects;
    let r = join_ok(&fx, "c2-s");
    assert_eq!((r.generation_id, r.leader_id.as_str()), (1, "c1-s"));
    assert!(r.members.is_empty());
    assert_eq!(g.state(), GroupState::Stable);

    // Changed metadata (a new subscription): rebalance.
    let mut changed = join_req("c2", "c2-s");
    changed.protocols = protocols("c2-with-more-topics", &["range"]);
    let fx = g.join(t + 20, changed).effects;
    assert!(join_answers(&fx).is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let fx = g.join(t + 30, join_req("c1", "c1-s")).effects;
    let leader = join_ok(&fx, "c1-s");
    assert_eq!(
        leader.members[1].metadata,
        Bytes::from_static(b"c2-with-more-topics:range")
    );

    // The leader rejoining with unchanged protocols also rebalances.
    let fx = g.sync(t + 40, sync_req("c1-s", 2, &[]));
    ack(&mut g, t + 40, &fx);
    g.sync(t + 40, sync_req("c2-s", 2, &[]));
    assert_eq!(g.state(), GroupState::Stable);
    let mut same = join_req("c2", "c2-s");
    same.protocols = protocols("c2-with-more-topics", &["range"]);
    assert!(join_ok(&g.join(t + 50, same).effects, "c2-s")
        .members
        .is_empty());
    assert_eq!(g.state(), GroupState::Stable);
    g.join(t + 60, join_req("c1", "c1-s"));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn requests_from_an_old_generation_get_illegal_generation() {
    let (mut g, t) = stable_group(&["c1", "c2"]);
    g.join(t + 1, join_req("c1", "c1-s"));
    g.join(t + 2, join_req("c2", "c2-s"));
    assert_eq!(g.generation_id(), 2);
    assert_eq!(
        g.heartbeat(t + 3, &hb("c2-s", 1)),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        sync_answers(&g.sync(t + 3, sync_req("c2-s", 1, &[]))),
        vec![("c2-s".to_owned(), Err(ResponseError::IllegalGeneration))]
    );
    assert_eq!(
        g.validate_commit(t + 3, "c2-s", 1, None),
        Err(ResponseError::IllegalGeneration)
    );
    // A newer one than the group has is just as wrong.
    assert_eq!(
        g.heartbeat(t + 3, &hb("c2-s", 3)),
        Err(ResponseError::IllegalGeneration)
    );
    // Unknown members hear so before anything else.
    assert_eq!(
        g.heartbeat(t + 3, &hb("c9-s", 2)),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        join_err(&g.join(t + 3, join_req("c9", "c9-s")).effects, "c9-s").error,
        ResponseError::UnknownMemberId
    );
}

#[test]
fn the_protocol_is_chosen_by_vote_among_those_everyone_supports() {
    let mut g = Group::new("g", config(), 0);
    let with = |c: &str, ps: &[&str]| JoinRequest {
        protocols: protocols(c, ps),
        ..join_req(c, "")
    };
    g.join(0, with("c1", &["range", "roundrobin", "sticky"]));
    g.join(0, with("c2", &["sticky", "roundrobin"]));
    g.join(0, with("c3", &["roundrobin", "sticky"]));
    // range is not shared by all: c1 votes roundrobin, c2 sticky, c3 roundrobin.
    g.tick(DELAY);
    let fx = g.tick(2 * DELAY);
    let leader = join_ok(&fx, "c1-s");
    assert_eq!(leader.protocol_name.as_deref(), Some("roundrobin"));
    assert_eq!(
        leader.members[1].metadata,
        Bytes::from_static(b"c2:roundrobin")
    );
    assert_eq!(g.protocol_name(), Some("roundrobin"));

    // Nothing in common with everyone, or another protocol type: refused at once.
    let out = g.join(7_000, with("c4", &["range"]));
    assert_eq!(out.member_id, "");
    let e = join_err(&out.effects, "");
    assert_eq!(
        (e.error, e.member_id.as_str()),
        (ResponseError::InconsistentGroupProtocol, "")
    );
    let other_type = JoinRequest {
        protocol_type: "connect".to_owned(),
        ..join_req("c5", "")
    };
    assert_eq!(
        join_err(&g.join(7_000, other_type).effects, "").error,
        ResponseError::InconsistentGroupProtocol
    );
    let known_member_changing_to_nothing_shared = JoinRequest {
        protocols: protocols("c2", &["cooperative-sticky"]),
        ..join_req("c2", "c2-s")
    };
    assert_eq!(
        join_err(
            &g.join(7_000, known_member_changing_to_nothing_shared)
                .effects,
            "c2-s"
        )
        .error,
        ResponseError::InconsistentGroupProtocol
    );
    assert_eq!(
        g.state(),
        GroupState::CompletingRebalance,
        "refusals change nothing"
    );
}

#[test]
fn the_first_member_needs_a_protocol_type_and_at_least_one_protocol() {
    let mut g = Group::new("g", config(), 0);
    let no_protocols = JoinRequest {
        protocols: Vec::new(),
        ..join_req("c1", "")
    };
    let no_type = JoinRequest {
        protocol_type: String::new(),
        ..join_req("c1", "")
    };
    for req in [no_protocols, no_type] {
        assert_eq!(
            join_err(&g.join(0, req).effects, "").error,
            ResponseError::InconsistentGroupProtocol
        );
    }
    assert_eq!(g.state(), GroupState::Empty);
}

#[test]
fn a_rebalance_during_completing_rebalance_sends_parked_syncs_back_to_join() {
    let mut g = Group::new("g", config(), 0);
    g.join(0, join_req("c1", ""));
    g.join(0, join_req("c2", ""));
    g.tick(DELAY);
    g.tick(2 * DELAY);
    assert!(g.sync(6_001, sync_req("c2-s", 1, &[])).is_empty());
    // A commit now is refused: the member has its generation but not its assignment.
    assert_eq!(
        g.validate_commit(6_002, "c2-s", 1, None),
        Err(ResponseError::RebalanceInProgress)
    );
    let fx = g.join(6_003, join_req("c3", "")).effects;
    assert_eq!(
        sync_answers(&fx),
        vec![("c2-s".to_owned(), Err(ResponseError::RebalanceInProgress))]
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        sync_answers(&g.sync(6_004, sync_req("c1-s", 1, &[]))),
        vec![("c1-s".to_owned(), Err(ResponseError::RebalanceInProgress))]
    );
}

#[test]
fn a_failed_assignment_write_fails_the_syncs_and_starts_over() {
    let mut g = Group::new("g", config(), 0);
    g.join(0, join_req("c1", ""));
    g.join(0, join_req("c2", ""));
    g.tick(DELAY);
    g.tick(2 * DELAY);
    g.sync(6_001, sync_req("c2-s", 1, &[]));
    let fx = g.sync(6_002, sync_req("c1-s", 1, &[("c1-s", "a"), ("c2-s", "b")]));
    let seq = persists(&fx)[0].seq;
    // A duplicate leader sync does not write again.
    assert!(persists(&g.sync(6_003, sync_req("c1-s", 1, &[]))).is_empty());
    let err = append_error_to_response(ResponseError::NotLeaderOrFollower);
    assert_eq!(err, ResponseError::NotCoordinator);
    let fx = g.persisted(6_010, seq, Err(err));
    let mut answers = sync_answers(&fx);
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        answers,
        vec![
            ("c1-s".to_owned(), Err(ResponseError::NotCoordinator)),
            ("c2-s".to_owned(), Err(ResponseError::NotCoordinator)),
        ]
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert!(g.members().iter().all(|m| m.assignment.is_empty()));
    // The same write reported twice, or an unknown one, changes nothing.
    assert!(g.persisted(6_011, seq, Ok(())).is_empty());
}

#[test]
fn describe_and_list_show_kafkas_names_and_stable_details() {
    for (s, name) in [
        (GroupState::Empty, "Empty"),
        (GroupState::PreparingRebalance, "PreparingRebalance"),
        (GroupState::CompletingRebalance, "CompletingRebalance"),
        (GroupState::Stable, "Stable"),
        (GroupState::Dead, "Dead"),
    ] {
        assert_eq!(s.as_str(), name);
        assert_eq!(s.to_string(), name);
        assert_eq!(GroupState::parse(&name.to_lowercase()), Some(s));
    }
    assert_eq!(GroupState::parse("rebalancing"), None);

    let (mut g, t) = stable_group(&["c1", "c2"]);
    let d = g.describe();
    assert_eq!(
        (d.state, d.protocol_type.as_str(), d.protocol_data.as_str()),
        (GroupState::Stable, "consumer", "range")
    );
    assert_eq!(d.members.len(), 2);
    assert_eq!(d.members[1].metadata, Bytes::from_static(b"c2:range"));
    assert_eq!(d.members[1].assignment, Bytes::from_static(b"A-c2"));
    assert_eq!(d.members[1].client_host, "/10.0.0.1");
    let o = g.overview();
    assert_eq!(
        (o.group_id.as_str(), o.protocol_type.as_str(), o.state),
        ("g", "consumer", GroupState::Stable)
    );

    g.join(t, join_req("c3", ""));
    let d = g.describe();
    assert_eq!(
        (d.state, d.protocol_data.as_str()),
        (GroupState::PreparingRebalance, "")
    );
    assert!(d
        .members
        .iter()
        .all(|m| m.metadata.is_empty() && m.assignment.is_empty()));
    assert_eq!(d.members.len(), 3);
}

#[test]
fn session_timeouts_outside_the_broker_limits_are_refused() {
    let mut g = Group::new("g", config(), 0);
    for session in [5_999, 1_800_001] {
        let req = JoinRequest {
            session_timeout_ms: session,
            ..join_req("c1", "")
        };
        assert_eq!(
            join_err(&g.join(0, req).effects, "").error,
            ResponseError::InvalidSessionTimeout
        );
    }
    assert_eq!(g.state(), GroupState::Empty);
}

#[test]
fn a_full_group_refuses_new_members() {
    let mut g = Group::new(
        "g",
        GroupConfig {
            max_size: 2,
            ..config()
        },
        0,
    );
    g.join(0, join_req("c1", ""));
    g.join(0, join_req("c2", ""));
    let out = g.join(0, join_req("c3", ""));
    assert_eq!(
        join_err(&out.effects, "").error,
        ResponseError::GroupMaxSizeReached
    );
    assert_eq!(g.members().len(), 2);
}

#[test]
fn generated_member_ids_never_clash() {
    let mut g = Group::new("g", config(), 0);
    let a = g.join(0, join_req("c", "")).member_id;
    let b = g.join(0, join_req("c", "")).member_id;
    let c = g
        .join(
            0,
            JoinRequest {
                new_member_id_suffix: String::new(),
                ..join_req("c", "")
            },
        )
        .member_id;
    assert_eq!(a, "c-s");
    assert_ne!(a, b);
    assert_ne!(b, c);
    assert_eq!(g.members().len(), 3);
}

#[test]
fn state_changes_are_reported_in_order() {
    let mut g = Group::new("g", config(), 0);
    let mut fx = g.join(0, join_req("c1", "")).effects;
    fx.extend(g.tick(DELAY));
    fx.extend(g.sync(DELAY + 1, sync_req("c1-s", 1, &[])));
    let acked = ack(&mut g, DELAY + 2, &fx);
    fx.extend(acked);
    let changes: Vec<(GroupState, GroupState, i32)> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::StateChanged {
                from,
                to,
                generation_id,
                ..
            } => Some((*from, *to, *generation_id)),
            _ => None,
        })
        .collect();
    use GroupState::*;
    assert_eq!(
        changes,
        vec![
            (Empty, PreparingRebalance, 0),
            (PreparingRebalance, CompletingRebalance, 1),
            (CompletingRebalance, Stable, 1),
        ]
    );
    assert_eq!(g.state_timestamp_ms(), DELAY + 2);
}

#[test]
fn a_sync_naming_another_protocol_is_inconsistent() {
    let (mut g, t) = stable_group(&["c1"]);
    let wrong_name = SyncRequest {
        protocol_name: Some("roundrobin".to_owned()),
        ..sync_req("c1-s", 1, &[])
    };
    let wrong_type = SyncRequest {
        protocol_type: Some("connect".to_owned()),
        ..sync_req("c1-s", 1, &[])
    };
    for req in [wrong_name, wrong_type] {
        assert_eq!(
            sync_answers(&g.sync(t, req)),
            vec![(
                "c1-s".to_owned(),
                Err(ResponseError::InconsistentGroupProtocol)
            )]
        );
    }
    let right = SyncRequest {
        protocol_type: Some("consumer".to_owned()),
        protocol_name: Some("range".to_owned()),
        ..sync_req("c1-s", 1, &[])
    };
    assert_eq!(
        assignments(&g.sync(t, right)),
        vec![("c1-s".to_owned(), "A-c1".to_owned())]
    );
}

/// A consumer's subscription as the Java client writes it: version, then
/// ConsumerProtocolSubscription at that version.
fn subscription(version: i16, topics: &[&str]) -> Bytes {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let sub = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string((*t).to_owned()))
            .collect(),
    );
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&version.to_be_bytes());
    sub.encode(&mut buf, version).unwrap();
    buf.freeze()
}

#[test]
fn subscribed_topics_come_from_the_members_consumer_subscriptions() {
    let mut g = Group::new("g", config(), 0);
    assert_eq!(
        g.subscribed_topics(),
        Some(Default::default()),
        "empty group"
    );
    for (client, version, topics) in [("c1", 1, &["a", "b"][..]), ("c2", 3, &["c"][..])] {
        g.join(
            0,
            JoinRequest {
                protocols: vec![Protocol::new("range", subscription(version, topics))],
                ..join_req(client, "")
            },
        );
    }
    assert_eq!(g.subscribed_topics(), None, "no protocol chosen yet");
    while g.state() == GroupState::PreparingRebalance {
        let now = g.next_deadline().expect("a join timer");
        g.tick(now);
    }
    let topics: Vec<String> = g.subscribed_topics().unwrap().into_iter().collect();
    assert_eq!(topics, ["a", "b", "c"]);

    // Metadata that is not a subscription (five topics announced, none there): unknown,
    // so every topic counts as subscribed.
    let mut garbled = Group::new("x", config(), 0);
    garbled.join(
        0,
        JoinRequest {
            protocols: vec![Protocol::new("range", vec![0, 1, 0, 0, 0, 5])],
            ..join_req("c3", "")
        },
    );
    while garbled.state() == GroupState::PreparingRebalance {
        let now = garbled.next_deadline().expect("a join timer");
        garbled.tick(now);
    }
    assert_eq!(garbled.subscribed_topics(), None);
    let mut other = Group::new("o", config(), 0);
    other.join(
        0,
        JoinRequest {
            protocol_type: "connect".to_owned(),
            protocols: vec![Protocol::new("range", subscription(1, &["a"]))],
            ..join_req("c4", "")
        },
    );
    assert_eq!(other.subscribed_topics(), None, "not a consumer group");
}
