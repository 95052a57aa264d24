//! Kafka's znode layout and formats for ACLs and SCRAM credentials.

use super::*;

fn binding(principal: &str, op: Operation, permission: Permission) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::Topic,
        name: "orders".to_owned(),
        pattern: PatternType::Literal,
        principal: principal.to_owned(),
        host: "*".to_owned(),
        operation: op,
        permission,
    }
}

#[test]
fn acl_znodes_are_in_kafkas_layout_and_format() {
    assert_eq!(
        acl_path(ResourceType::Topic, PatternType::Literal, "orders"),
        "/kafka-acl/Topic/orders"
    );
    assert_eq!(
        acl_path(ResourceType::TransactionalId, PatternType::Prefixed, "tx-"),
        "/kafka-acl-extended/prefixed/TransactionalId/tx-"
    );
    let acls = vec![
        binding("User:alice", Operation::Read, Permission::Allow),
        binding("User:*", Operation::IdempotentWrite, Permission::Deny),
    ];
    let data = encode_acls(&acls);
    let v: Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(
        v,
        json!({"version":1,"acls":[
            {"principal":"User:alice","permissionType":"Allow","operation":"Read","host":"*"},
            {"principal":"User:*","permissionType":"Deny","operation":"IdempotentWrite","host":"*"}
        ]})
    );
    assert_eq!(
        decode_acls(ResourceType::Topic, PatternType::Literal, "orders", &data).unwrap(),
        acls
    );
    // What Kafka writes decodes too (its field order, its spacing).
    let kafka = br#"{"version":1,"acls":[{"principal":"User:bob","permissionType":"Allow","operation":"Describe","host":"10.0.0.1"}]}"#;
    let got = decode_acls(ResourceType::Group, PatternType::Literal, "g", kafka).unwrap();
    assert_eq!(got[0].host, "10.0.0.1");
    assert_eq!(got[0].operation, Operation::Describe);
    for bad in [
        &b"not json"[..],
        br#"{"version":1}"#,
        br#"{"version":1,"acls":[{"principal":"User:a","permissionType":"Maybe","operation":"Read","host":"*"}]}"#,
        br#"{"version":1,"acls":[{"principal":"User:a","permissionType":"Allow","operation":"Fly","host":"*"}]}"#,
        br#"{"version":1,"acls":[{"permissionType":"Allow","operation":"Read","host":"*"}]}"#,
    ] {
        assert!(decode_acls(ResourceType::Topic, PatternType::Literal, "t", bad).is_err());
    }
}

#[test]
fn acl_change_notifications_round_trip() {
    for (rt, pattern, name) in [
        (ResourceType::Topic, PatternType::Literal, "orders"),
        (ResourceType::Group, PatternType::Prefixed, "team-"),
        (ResourceType::Cluster, PatternType::Literal, "kafka-cluster"),
    ] {
        let (parent, data) = acl_change(rt, pattern, name);
        assert_eq!(
            parse_acl_change(parent, &data).unwrap(),
            (rt, pattern, name.to_owned())
        );
    }
    assert_eq!(
        acl_change(ResourceType::Topic, PatternType::Literal, "o").1,
        b"Topic:o"
    );
    assert!(parse_acl_change(ACL_CHANGES, b"Nonsense").is_err());
    assert!(parse_acl_change(ACL_CHANGES, b"Planet:earth").is_err());
    assert!(parse_acl_change(ACL_EXTENDED_CHANGES, b"{}").is_err());
}

#[test]
fn user_names_are_sanitized_as_kafka_does() {
    assert_eq!(sanitize("alice"), "alice");
    assert_eq!(sanitize("a b*c/d@e~f.g-h_i"), "a%20b%2Ac%2Fd%40e%7Ef.g-h_i");
    assert_eq!(sanitize("é"), "%C3%A9");
    for name in ["alice", "a b*c/d@e~", "é, =x"] {
        assert_eq!(desanitize(&sanitize(name)).as_deref(), Some(name));
    }
    assert_eq!(desanitize("%4"), None);
    assert_eq!(desanitize("%zz"), None);
    assert_eq!(user_path("a b"), "/config/users/a%20b");
}

#[test]
fn credentials_are_stored_in_kafkas_user_config() {
    let mut creds = BTreeMap::new();
    creds.insert(
        Mechanism::Sha256,
        Credential::new(Mechanism::Sha256, "pw", b"salt", 4096).unwrap(),
    );
    creds.insert(
        Mechanism::Sha512,
        Credential::new(Mechanism::Sha512, "pw", b"salt", 8192).unwrap(),
    );
    let data = encode_user(&creds);
    let v: Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(v["version"], 1);
    assert!(v["config"]["SCRAM-SHA-512"]
        .as_str()
        .unwrap()
        .ends_with("iterations=8192"));
    assert_eq!(decode_user("u", &data).unwrap(), creds);
    // Other user settings (quotas) are not credentials.
    let quota = br#"{"version":1,"config":{"producer_byte_rate":"1024"}}"#;
    assert!(decode_user("u", quota).unwrap().is_empty());
    assert!(decode_user("u", br#"{"version":1,"config":{"SCRAM-SHA-256":"junk"}}"#).is_err());
    assert!(decode_user("u", b"[]").is_err());

    let change = user_change("a b");
    let v: Value = serde_json::from_slice(&change).unwrap();
    assert_eq!(v, json!({"version":2,"entity_path":"users/a%20b"}));
    assert_eq!(parse_user_change(&change).as_deref(), Some("a b"));
    assert_eq!(
        parse_user_change(br#"{"version":2,"entity_path":"topics/t"}"#),
        None
    );
}

#[test]
fn acl_paths_parse_back() {
    for (rt, pattern, name) in [
        (ResourceType::Topic, PatternType::Literal, "orders"),
        (ResourceType::Group, PatternType::Prefixed, "app-"),
        (ResourceType::Cluster, PatternType::Literal, "kafka-cluster"),
    ] {
        let path = acl_path(rt, pattern, name);
        assert_eq!(
            parse_acl_path(&path),
            Some((rt, pattern, name.to_owned())),
            "{path}"
        );
    }
    assert_eq!(parse_acl_path("/kafka-acl/Topic"), None);
    assert_eq!(parse_acl_path("/kafka-acl/Nope/x"), None);
    assert_eq!(
        parse_acl_path("/kafka-acl-changes/acl_changes_0000000001"),
        None
    );
    assert_eq!(
        parse_acl_path("/kafka-acl-extended/prefixed/Topic/a/b"),
        None
    );
}
