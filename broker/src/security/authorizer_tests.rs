//! The authorizer's truth table: Kafka's rules, one by one. ACLs are written as
//! `"<allow|deny> <user|*> <operation> <topic|group|cluster|txn> <name> [prefixed] [@host]"`.

use super::*;
use crate::security::acl::{AclFilter, PatternFilter, PatternType};

const ALICE: Caller<'static> = Caller {
    principal: "User:alice",
    host: "10.0.0.1",
};
const BOB: Caller<'static> = Caller {
    principal: "User:bob",
    host: "10.0.0.2",
};

fn op(name: &str) -> Operation {
    Operation::EVERY
        .into_iter()
        .find(|o| o.znode_name().eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("no operation {name}"))
}

fn rule(spec: &str) -> AclBinding {
    let w: Vec<&str> = spec.split_whitespace().collect();
    let resource_type = match w[3] {
        "topic" => ResourceType::Topic,
        "group" => ResourceType::Group,
        "cluster" => ResourceType::Cluster,
        _ => ResourceType::TransactionalId,
    };
    AclBinding {
        resource_type,
        name: w[4].to_owned(),
        pattern: if w.contains(&"prefixed") {
            PatternType::Prefixed
        } else {
            PatternType::Literal
        },
        principal: format!("User:{}", w[1]),
        host: w
            .iter()
            .find_map(|x| x.strip_prefix('@'))
            .unwrap_or("*")
            .to_owned(),
        operation: op(w[2]),
        permission: if w[0] == "deny" {
            Permission::Deny
        } else {
            Permission::Allow
        },
    }
}

fn with(rules: &[&str]) -> Authorizer {
    let mut a = Authorizer::new([], false);
    a.add(rules.iter().map(|r| rule(r)));
    a
}

fn may(a: &Authorizer, who: Caller<'_>, what: &str, rt: ResourceType, name: &str) -> bool {
    a.authorize(who, op(what), rt, name)
}

const TOPIC: ResourceType = ResourceType::Topic;
const GROUP: ResourceType = ResourceType::Group;

#[test]
fn nothing_is_allowed_without_acls_unless_configured() {
    let strict = Authorizer::new([], false);
    let mut open = Authorizer::new([], true);
    for o in Operation::EVERY {
        assert!(!strict.authorize(ALICE, o, TOPIC, "t"), "{o:?}");
        assert!(open.authorize(ALICE, o, TOPIC, "t"), "{o:?}");
    }
    // "No ACL found" means none on the resource for anyone: an ACL for bob on the topic
    // takes alice's open access to it away.
    open.add([rule("allow bob read topic t")]);
    assert!(!may(&open, ALICE, "read", TOPIC, "t"));
    assert!(may(&open, ALICE, "read", TOPIC, "other"));
}

#[test]
fn super_users_bypass_everything_even_a_deny() {
    let mut a = Authorizer::new(["User:admin".to_owned()], false);
    a.add([rule("deny * all topic *"), rule("deny * all cluster *")]);
    let admin = Caller {
        principal: "User:admin",
        host: "1.2.3.4",
    };
    for o in Operation::EVERY {
        assert!(a.authorize(admin, o, ResourceType::Cluster, "kafka-cluster"));
        assert!(a.authorize(admin, o, TOPIC, "t"));
    }
}

#[test]
fn implied_operations_follow_kafka() {
    let implied = [
        ("read", "describe"),
        ("write", "describe"),
        ("delete", "describe"),
        ("alter", "describe"),
        ("alterconfigs", "describeconfigs"),
    ];
    for granted in Operation::EVERY {
        let g = granted.znode_name().to_ascii_lowercase();
        let a = with(&[&format!("allow alice {g} topic t")]);
        for asked in Operation::EVERY {
            let k = asked.znode_name().to_ascii_lowercase();
            let want = granted == asked
                || granted == Operation::All
                || implied.contains(&(g.as_str(), k.as_str()));
            assert_eq!(
                a.authorize(ALICE, asked, TOPIC, "t"),
                want,
                "{g} granted, {k} asked"
            );
        }
    }
}

#[test]
fn deny_beats_allow_and_is_not_implied() {
    let mut a = with(&[
        "allow alice all topic orders",
        "deny alice write topic orders",
    ]);
    assert!(!may(&a, ALICE, "write", TOPIC, "orders"));
    assert!(may(&a, ALICE, "read", TOPIC, "orders"));
    // A DENY of READ does not deny DESCRIBE (implication works for ALLOW only).
    a.add([rule("deny alice read topic orders")]);
    assert!(!may(&a, ALICE, "read", TOPIC, "orders"));
    assert!(may(&a, ALICE, "describe", TOPIC, "orders"));
    // A DENY of ALL denies everything; a wildcard DENY reaches everyone.
    a.add([rule("deny * all topic *")]);
    assert!(!may(&a, ALICE, "describe", TOPIC, "orders"));
}

#[test]
fn literal_wildcard_and_prefixed_patterns() {
    let mut a = with(&[
        "allow alice read topic orders",
        "allow alice write topic pay- prefixed",
        "allow bob describe topic *",
    ]);
    assert!(may(&a, ALICE, "read", TOPIC, "orders"));
    assert!(
        !may(&a, ALICE, "read", TOPIC, "orders-2"),
        "literal is exact"
    );
    assert!(may(&a, ALICE, "write", TOPIC, "pay-eu"));
    assert!(may(&a, ALICE, "write", TOPIC, "pay-"));
    assert!(!may(&a, ALICE, "write", TOPIC, "pa"));
    assert!(may(&a, BOB, "describe", TOPIC, "anything"));
    assert!(!may(&a, BOB, "describe", GROUP, "anything"), "types apart");
    // A prefixed DENY covers what a literal or prefixed ALLOW grants.
    a.add([rule("deny alice write topic pay-e prefixed")]);
    assert!(!may(&a, ALICE, "write", TOPIC, "pay-eu"));
    assert!(may(&a, ALICE, "write", TOPIC, "pay-us"));
}

#[test]
fn principals_and_hosts_must_match() {
    let a = with(&["allow alice read group g @10.0.0.1", "allow * read group h"]);
    assert!(may(&a, ALICE, "read", GROUP, "g"));
    let elsewhere = Caller {
        principal: "User:alice",
        host: "10.9.9.9",
    };
    assert!(!may(&a, elsewhere, "read", GROUP, "g"));
    assert!(!may(&a, BOB, "read", GROUP, "g"));
    assert!(may(&a, BOB, "read", GROUP, "h"));
    let anonymous = Caller {
        principal: "User:ANONYMOUS",
        host: "10.0.0.3",
    };
    assert!(
        may(&a, anonymous, "read", GROUP, "h"),
        "User:* includes ANONYMOUS"
    );
}

#[test]
fn filters_describe_and_delete_as_kafka() {
    let mut a = Authorizer::new([], false);
    let literal = rule("allow alice read topic orders");
    let wildcard = rule("allow bob read topic *");
    let prefixed = rule("allow carol write topic ord prefixed");
    let other = rule("allow alice read topic payments");
    assert_eq!(
        a.add([literal.clone(), wildcard.clone(), prefixed.clone(), other]),
        4
    );
    assert_eq!(a.add([literal.clone()]), 0, "duplicates are one ACL");
    let named = |pattern| AclFilter {
        resource_type: Some(TOPIC),
        name: Some("orders".to_owned()),
        pattern,
        ..AclFilter::default()
    };
    let got = a.describe(&named(PatternFilter::Match));
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.contains(&literal) && got.contains(&wildcard) && got.contains(&prefixed));
    assert_eq!(
        a.describe(&named(PatternFilter::Exactly(PatternType::Literal))),
        vec![literal]
    );
    let by_principal = AclFilter {
        principal: Some("User:alice".to_owned()),
        ..AclFilter::default()
    };
    assert_eq!(a.describe(&by_principal).len(), 2);
    assert_eq!(a.remove(&by_principal).len(), 2);
    assert_eq!(a.len(), 2);
    assert_eq!(
        a.remove(&AclFilter::default()).len(),
        2,
        "the empty filter matches all"
    );
    assert!(a.is_empty());
}

#[test]
fn a_resource_is_replaced_as_a_change_notification_brings_it() {
    let mut a = with(&[
        "allow alice read topic t",
        "allow alice write topic t prefixed",
    ]);
    a.replace_resource(
        TOPIC,
        "t",
        PatternType::Literal,
        [rule("allow bob read topic t")],
    );
    assert!(!may(&a, ALICE, "read", TOPIC, "t"));
    assert!(may(&a, BOB, "read", TOPIC, "t"));
    assert!(
        may(&a, ALICE, "write", TOPIC, "t"),
        "the prefixed one stays"
    );
}
