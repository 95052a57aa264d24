//! One member of a classic group, and the protocol vote.
//!
//! Kafka's rules (`ClassicGroupMember`, `ClassicGroup.selectProtocol`):
//!
//! - A member lists the protocols it supports (for consumers: the partition assignors) in
//!   its order of preference, each with its own metadata (the subscription).
//! - A rejoin *matches* the member's current protocols only if the lists are equal, names
//!   and metadata, in the same order.
//! - The candidates for the group's protocol are those every member supports. Each member
//!   votes for its most preferred candidate and the protocol with the most votes wins.
//!   Kafka breaks ties by hash-map order (arbitrary); here the tied protocol that received
//!   its first vote earliest, in member join order, wins, so the choice is deterministic.

use bytes::Bytes;

/// A protocol a member supports: its name and the member's metadata for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

impl Protocol {
    pub fn new(name: impl Into<String>, metadata: impl Into<Bytes>) -> Protocol {
        Protocol {
            name: name.into(),
            metadata: metadata.into(),
        }
    }
}

/// A member of a group, as the coordinator knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    /// `group.instance.id`: set for static members.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// Supported protocols in the member's order of preference.
    pub protocols: Vec<Protocol>,
    /// The assignment the leader gave it for the current generation.
    pub assignment: Bytes,
    /// The last time the member proved it is alive (heartbeat, sync, commit, join
    /// completion).
    pub last_heartbeat_ms: i64,
    /// It has a JoinGroup parked: it has (re)joined the current round.
    pub awaiting_join: bool,
    /// It has a SyncGroup parked, waiting for the leader's assignment.
    pub awaiting_sync: bool,
    /// Added in the current rebalance and not yet through a join completion. New members
    /// expire after `new_member_join_timeout_ms` even while their join is parked.
    pub is_new: bool,
    /// When the member expires unless something resets it; `None` while no timer runs
    /// (a member parked in a join or sync is not expected to heartbeat).
    pub session_deadline_ms: Option<i64>,
}

impl Member {
    pub fn is_static(&self) -> bool {
        self.group_instance_id.is_some()
    }

    /// The member's metadata for `protocol`, if it supports it.
    pub fn metadata_for(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| &p.metadata)
    }

    pub fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    /// True if `protocols` are exactly the member's current ones (names, metadata, order).
    pub fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// Kafka's `hasSatisfiedHeartbeat`: a member parked in a join or sync is not expected
    /// to heartbeat (its connection is busy waiting), unless it is new.
    pub(super) fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join || self.awaiting_sync)
    }

    /// The member's vote: its most preferred protocol among `candidates`.
    fn vote<'a>(&'a self, candidates: &[&str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|name| candidates.contains(name))
    }
}

/// The protocols every member supports, in the first member's order of preference.
pub fn candidate_protocols(members: &[Member]) -> Vec<&str> {
    let Some(first) = members.first() else {
        return Vec::new();
    };
    let mut out: Vec<&str> = Vec::new();
    for p in &first.protocols {
        if !out.contains(&p.name.as_str()) && members.iter().all(|m| m.supports(&p.name)) {
            out.push(&p.name);
        }
    }
    out
}

/// True if a member with these protocols could join `members`: it shares at least one
/// protocol that every current member supports. Anything goes when there are no members
/// (the caller checks the protocol type and that the list is not empty).
pub fn supports_any(members: &[Member], protocols: &[Protocol]) -> bool {
    protocols
        .iter()
        .any(|p| members.iter().all(|m| m.supports(&p.name)))
}

/// The group's protocol by vote (see the module docs); `None` if there are no members or
/// no protocol they all support.
pub fn select_protocol(members: &[Member]) -> Option<String> {
    let candidates = candidate_protocols(members);
    // (protocol, votes) in the order of each protocol's first vote.
    let mut votes: Vec<(&str, usize)> = Vec::new();
    for m in members {
        let Some(choice) = m.vote(&candidates) else {
            continue;
        };
        match votes.iter_mut().find(|(name, _)| *name == choice) {
            Some((_, n)) => *n += 1,
            None => votes.push((choice, 1)),
        }
    }
    let mut best: Option<(&str, usize)> = None;
    for (name, n) in votes {
        if best.is_none_or(|(_, most)| n > most) {
            best = Some((name, n));
        }
    }
    best.map(|(name, _)| name.to_owned())
}

/// The topics of a consumer's subscription (the `consumer` protocol type's member
/// metadata: a version, then ConsumerProtocolSubscription). `None` if it does not parse.
pub fn subscribed_topics(metadata: &Bytes) -> Option<Vec<String>> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    // Newer versions only add fields at the end: read them as the newest we know.
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)).ok()?;
    Some(
        sub.topics
            .into_iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
            member_id: id.to_owned(),
            group_instance_id: None,
            client_id: "c".to_owned(),
            client_host: "/127.0.0.1".to_owned(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".to_owned(),
            protocols: protocols
                .iter()
                .map(|p| Protocol::new(*p, format!("{id}:{p}").into_bytes()))
                .collect(),
            assignment: Bytes::new(),
            last_heartbeat_ms: 0,
            awaiting_join: false,
            awaiting_sync: false,
            is_new: false,
            session_deadline_ms: None,
        }
    }

    #[test]
    fn candidates_are_the_protocols_everyone_supports() {
        let ms = [
            member("a", &["range", "roundrobin", "sticky"]),
            member("b", &["sticky", "range"]),
            member("c", &["range", "sticky", "cooperative"]),
        ];
        assert_eq!(candidate_protocols(&ms), vec!["range", "sticky"]);
        assert!(supports_any(&ms, &[Protocol::new("sticky", "")]));
        assert!(!supports_any(&ms, &[Protocol::new("roundrobin", "")]));
        assert!(supports_any(&[], &[Protocol::new("anything", "")]));
        assert!(candidate_protocols(&[]).is_empty());
    }

    #[test]
    fn each_member_votes_for_its_favourite_candidate_and_the_most_votes_win() {
        // roundrobin is not a candidate (c lacks it): a votes range, b and c vote sticky.
        let ms = [
            member("a", &["roundrobin", "range", "sticky"]),
            member("b", &["sticky", "range", "roundrobin"]),
            member("c", &["sticky", "range"]),
        ];
        assert_eq!(select_protocol(&ms).as_deref(), Some("sticky"));
        // The leader's preference does not decide on its own.
        let ms = [
            member("a", &["range", "sticky"]),
            member("b", &["sticky", "range"]),
            member("c", &["sticky", "range"]),
        ];
        assert_eq!(select_protocol(&ms).as_deref(), Some("sticky"));
    }

    #[test]
    fn a_tie_goes_to_the_protocol_voted_for_first_in_join_order() {
        let ms = [member("a", &["x", "y"]), member("b", &["y", "x"])];
        assert_eq!(select_protocol(&ms).as_deref(), Some("x"));
        let ms = [member("b", &["y", "x"]), member("a", &["x", "y"])];
        assert_eq!(select_protocol(&ms).as_deref(), Some("y"));
        assert_eq!(select_protocol(&[]), None);
    }

    #[test]
    fn matching_compares_names_metadata_and_order() {
        let m = member("a", &["range", "sticky"]);
        let same = m.protocols.clone();
        assert!(m.matches(&same));
        let mut reordered = same.clone();
        reordered.reverse();
        assert!(!m.matches(&reordered));
        let mut changed = same.clone();
        changed[0].metadata = Bytes::from_static(b"other topics");
        assert!(!m.matches(&changed));
        assert!(!m.matches(&same[..1]));
    }

    #[test]
    fn only_established_members_parked_in_a_join_or_sync_skip_heartbeats() {
        let mut m = member("a", &["range"]);
        assert!(!m.has_satisfied_heartbeat());
        m.awaiting_join = true;
        assert!(m.has_satisfied_heartbeat());
        m.is_new = true;
        assert!(!m.has_satisfied_heartbeat(), "new members can still expire");
        m.is_new = false;
        m.awaiting_join = false;
        m.awaiting_sync = true;
        assert!(m.has_satisfied_heartbeat());
    }
}
