//! ACLs and SCRAM credentials in the coordinator, in Kafka's own znode layout and format,
//! so that Kafka's tools and ours read and write the same data:
//!
//! - literal ACLs in `/kafka-acl/<Type>/<name>`, prefixed ones in
//!   `/kafka-acl-extended/prefixed/<Type>/<name>`, each holding
//!   `{"version":1,"acls":[{"principal":..,"permissionType":"Allow","operation":"Read","host":"*"}]}`;
//!   a change is announced by a sequential `acl_changes_` node under `/kafka-acl-changes`
//!   (data `Topic:orders`) or `/kafka-acl-extended-changes` (JSON naming the pattern);
//! - credentials in `/config/users/<sanitized user>` as
//!   `{"version":1,"config":{"SCRAM-SHA-256":"salt=..,stored_key=..,server_key=..,iterations=4096"}}`,
//!   announced by a sequential `config_change_` node under `/config/changes`.

use super::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use super::scram::{Credential, Mechanism};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const ACL_CHANGES: &str = "/kafka-acl-changes";
pub const ACL_EXTENDED_CHANGES: &str = "/kafka-acl-extended-changes";
pub const ACL_CHANGE_PREFIX: &str = "acl_changes_";
pub const CONFIG_CHANGES: &str = "/config/changes";
pub const CONFIG_CHANGE_PREFIX: &str = "config_change_";
pub const USERS: &str = "/config/users";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct StoreError {
    pub path: String,
    pub reason: String,
}

fn err(path: &str, reason: impl Into<String>) -> StoreError {
    StoreError {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The znode holding the ACLs of one resource pattern.
pub fn acl_path(rt: ResourceType, pattern: PatternType, name: &str) -> String {
    match pattern {
        PatternType::Literal => format!("/kafka-acl/{}/{name}", rt.znode_name()),
        PatternType::Prefixed => {
            format!("/kafka-acl-extended/prefixed/{}/{name}", rt.znode_name())
        }
    }
}

/// The roots of the literal and prefixed ACL trees.
pub const ACL_ROOT: &str = "/kafka-acl";
pub const ACL_PREFIXED_ROOT: &str = "/kafka-acl-extended/prefixed";

/// The resource pattern an ACL znode path names.
pub fn parse_acl_path(path: &str) -> Option<(ResourceType, PatternType, String)> {
    let (pattern, rest) = if let Some(r) = path.strip_prefix(ACL_PREFIXED_ROOT) {
        (PatternType::Prefixed, r)
    } else {
        (PatternType::Literal, path.strip_prefix(ACL_ROOT)?)
    };
    let (rt, name) = rest.strip_prefix('/')?.split_once('/')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some((resource_type(rt)?, pattern, name.to_owned()))
}

fn resource_type(name: &str) -> Option<ResourceType> {
    ResourceType::ALL
        .into_iter()
        .find(|r| r.znode_name() == name)
}

/// The data of an ACL znode: the entries of every binding (all of one resource pattern).
pub fn encode_acls(acls: &[AclBinding]) -> Vec<u8> {
    let entries: Vec<Value> = acls
        .iter()
        .map(|a| {
            json!({
                "principal": a.principal,
                "permissionType": match a.permission {
                    Permission::Allow => "Allow",
                    Permission::Deny => "Deny",
                },
                "operation": a.operation.znode_name(),
                "host": a.host,
            })
        })
        .collect();
    json!({"version": 1, "acls": entries})
        .to_string()
        .into_bytes()
}

/// The bindings an ACL znode holds.
pub fn decode_acls(
    rt: ResourceType,
    pattern: PatternType,
    name: &str,
    data: &[u8],
) -> Result<Vec<AclBinding>, StoreError> {
    let path = acl_path(rt, pattern, name);
    let v: Value = serde_json::from_slice(data).map_err(|e| err(&path, e.to_string()))?;
    let acls = v
        .get("acls")
        .and_then(Value::as_array)
        .ok_or_else(|| err(&path, "no acls array"))?;
    acls.iter()
        .map(|e| {
            let field = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(&path, format!("entry without {k}")))
            };
            let operation = field("operation")?;
            let operation = Operation::EVERY
                .into_iter()
                .find(|o| o.znode_name() == operation)
                .ok_or_else(|| err(&path, format!("unknown operation {operation}")))?;
            let permission = match field("permissionType")? {
                "Allow" => Permission::Allow,
                "Deny" => Permission::Deny,
                other => return Err(err(&path, format!("unknown permission {other}"))),
            };
            Ok(AclBinding {
                resource_type: rt,
                name: name.to_owned(),
                pattern,
                principal: field("principal")?.to_owned(),
                host: field("host")?.to_owned(),
                operation,
                permission,
            })
        })
        .collect()
}

/// Where and what to announce after changing one resource pattern's ACLs: the parent of
/// the sequential `acl_changes_` node and its data.
pub fn acl_change(rt: ResourceType, pattern: PatternType, name: &str) -> (&'static str, Vec<u8>) {
    match pattern {
        PatternType::Literal => (
            ACL_CHANGES,
            format!("{}:{name}", rt.znode_name()).into_bytes(),
        ),
        PatternType::Prefixed => (
            ACL_EXTENDED_CHANGES,
            json!({
                "version": 1,
                "resourceType": rt.znode_name(),
                "name": name,
                "patternType": "PREFIXED",
            })
            .to_string()
            .into_bytes(),
        ),
    }
}

/// Reads a change notification back: which resource pattern to reload.
pub fn parse_acl_change(
    parent: &str,
    data: &[u8],
) -> Result<(ResourceType, PatternType, String), StoreError> {
    let text = std::str::from_utf8(data).map_err(|_| err(parent, "not UTF-8"))?;
    if parent == ACL_CHANGES {
        let (t, name) = text
            .split_once(':')
            .ok_or_else(|| err(parent, format!("bad change {text:?}")))?;
        let rt = resource_type(t).ok_or_else(|| err(parent, format!("unknown type {t}")))?;
        return Ok((rt, PatternType::Literal, name.to_owned()));
    }
    let v: Value = serde_json::from_str(text).map_err(|e| err(parent, e.to_string()))?;
    let field = |k: &str| v.get(k).and_then(Value::as_str);
    let rt = field("resourceType")
        .and_then(resource_type)
        .ok_or_else(|| err(parent, "bad resourceType"))?;
    let pattern = match field("patternType") {
        Some("PREFIXED") => PatternType::Prefixed,
        Some("LITERAL") => PatternType::Literal,
        _ => return Err(err(parent, "bad patternType")),
    };
    let name = field("name").ok_or_else(|| err(parent, "no name"))?;
    Ok((rt, pattern, name.to_owned()))
}

/// Kafka's `Sanitizer.sanitize` (Java's URLEncoder, then `%20` for space and `%2A` for
/// `*`): letters, digits and `.-_` stay, every other UTF-8 byte becomes `%XX`.
pub fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The inverse of [`sanitize`]; `None` for a malformed escape or non-UTF-8 result.
pub fn desanitize(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn user_path(user: &str) -> String {
    format!("{USERS}/{}", sanitize(user))
}

/// The data of a user's config znode with these credentials.
pub fn encode_user(credentials: &BTreeMap<Mechanism, Credential>) -> Vec<u8> {
    let config: serde_json::Map<String, Value> = credentials
        .iter()
        .map(|(m, c)| (m.name().to_owned(), Value::String(c.to_kafka())))
        .collect();
    json!({"version": 1, "config": config})
        .to_string()
        .into_bytes()
}

/// The SCRAM credentials in a user's config znode (other settings, such as quotas, are
/// left alone).
pub fn decode_user(user: &str, data: &[u8]) -> Result<BTreeMap<Mechanism, Credential>, StoreError> {
    let path = user_path(user);
    let v: Value = serde_json::from_slice(data).map_err(|e| err(&path, e.to_string()))?;
    let config = v
        .get("config")
        .and_then(Value::as_object)
        .ok_or_else(|| err(&path, "no config object"))?;
    let mut out = BTreeMap::new();
    for (k, val) in config {
        if let Some(m) = Mechanism::parse(k) {
            let text = val
                .as_str()
                .ok_or_else(|| err(&path, format!("{k} is not a string")))?;
            let c = Credential::from_kafka(text).map_err(|e| err(&path, e.to_string()))?;
            out.insert(m, c);
        }
    }
    Ok(out)
}

/// The data of the `config_change_` node announcing a change to a user.
pub fn user_change(user: &str) -> Vec<u8> {
    json!({"version": 2, "entity_path": format!("users/{}", sanitize(user))})
        .to_string()
        .into_bytes()
}

/// The user a `config_change_` node names, if it names one.
pub fn parse_user_change(data: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(data).ok()?;
    let path = v.get("entity_path")?.as_str()?;
    desanitize(path.strip_prefix("users/")?)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
