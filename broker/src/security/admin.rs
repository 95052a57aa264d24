//! Writing ACLs and SCRAM credentials to the coordinator, as Kafka's ZooKeeper-mode brokers
//! and tools do: read-modify-write of one znode with its version (so two brokers adding ACLs
//! to the same resource at once both keep their entries), then a sequential change
//! notification for any Kafka broker that shares the store.

use super::acl::{AclBinding, AclFilter, PatternType, ResourceType};
use super::scram::{Credential, Mechanism};
use super::store::{self, ACL_CHANGE_PREFIX, CONFIG_CHANGES, CONFIG_CHANGE_PREFIX};
use crate::cluster::ensure;
use crate::cluster::view::read;
use fjord_shared::coord_client::{Client, Error as CoordError};
use fjord_shared::jute::{CreateMode, ErrorCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// How often a conflicting read-modify-write is tried again before giving up.
const ATTEMPTS: usize = 20;

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("coordinator: {0}")]
    Coord(#[from] CoordError),
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("{0} kept changing under concurrent updates; try again")]
    Contended(String),
    #[error("{0}")]
    Invalid(String),
}

/// Creates `path` and every missing ancestor (empty, persistent).
async fn ensure_path(client: &Client, path: &str) -> Result<(), CoordError> {
    let mut at = String::new();
    for part in path.trim_start_matches('/').split('/') {
        at.push('/');
        at.push_str(part);
        ensure(client, &at, b"").await?;
    }
    Ok(())
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/')
        .map_or("/", |(p, _)| if p.is_empty() { "/" } else { p })
}

/// Writes `data` at `path` if it still has `version` (None: does not exist yet). False on
/// a conflict.
async fn write_versioned(
    client: &Client,
    path: &str,
    data: Vec<u8>,
    version: Option<i32>,
) -> Result<bool, CoordError> {
    let result = match version {
        Some(v) => client.set_data(path, data, Some(v)).await.map(|_| ()),
        None => {
            ensure_path(client, parent(path)).await?;
            client
                .create(path, data, &client.acl_for(path), CreateMode::Persistent)
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(true),
        Err(CoordError::Zk(ErrorCode::BadVersion | ErrorCode::NodeExists | ErrorCode::NoNode)) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

async fn announce(
    client: &Client,
    parent: &str,
    prefix: &str,
    data: Vec<u8>,
) -> Result<(), CoordError> {
    ensure_path(client, parent).await?;
    let path = format!("{parent}/{prefix}");
    client
        .create(
            &path,
            data,
            &client.acl_for(&path),
            CreateMode::PersistentSequential,
        )
        .await?;
    Ok(())
}

/// Changes the ACLs of one resource pattern with `change`, which gets the stored bindings
/// and returns the new ones. Returns (before, after).
async fn update_acls(
    client: &Client,
    rt: ResourceType,
    pattern: PatternType,
    name: &str,
    change: impl Fn(&BTreeSet<AclBinding>) -> BTreeSet<AclBinding>,
) -> Result<(BTreeSet<AclBinding>, BTreeSet<AclBinding>), AdminError> {
    let path = store::acl_path(rt, pattern, name);
    for _ in 0..ATTEMPTS {
        let stored = read(client, &path).await?;
        let before: BTreeSet<AclBinding> = match &stored {
            Some((data, _)) if !data.is_empty() => store::decode_acls(rt, pattern, name, data)?
                .into_iter()
                .collect(),
            _ => BTreeSet::new(),
        };
        let after = change(&before);
        if after == before {
            return Ok((before, after));
        }
        let version = stored.as_ref().map(|(_, v)| *v);
        let done = if after.is_empty() {
            match client.delete(&path, version).await {
                Ok(()) | Err(CoordError::Zk(ErrorCode::NoNode)) => true,
                Err(CoordError::Zk(ErrorCode::BadVersion)) => false,
                Err(e) => return Err(e.into()),
            }
        } else {
            let list: Vec<AclBinding> = after.iter().cloned().collect();
            write_versioned(client, &path, store::encode_acls(&list), version).await?
        };
        if done {
            let (parent, data) = store::acl_change(rt, pattern, name);
            announce(client, parent, ACL_CHANGE_PREFIX, data).await?;
            return Ok((before, after));
        }
    }
    Err(AdminError::Contended(path))
}

/// Stores one ACL (nothing changes if it exists).
pub async fn add_acl(client: &Client, acl: &AclBinding) -> Result<(), AdminError> {
    update_acls(
        client,
        acl.resource_type,
        acl.pattern,
        &acl.name,
        |before| {
            let mut after = before.clone();
            after.insert(acl.clone());
            after
        },
    )
    .await
    .map(|_| ())
}

/// Removes the ACLs of one resource pattern that `filter` matches; returns them.
pub async fn remove_acls(
    client: &Client,
    rt: ResourceType,
    pattern: PatternType,
    name: &str,
    filter: &AclFilter,
) -> Result<Vec<AclBinding>, AdminError> {
    let (before, after) = update_acls(client, rt, pattern, name, |before| {
        before
            .iter()
            .filter(|a| !filter.matches(a))
            .cloned()
            .collect()
    })
    .await?;
    Ok(before.difference(&after).cloned().collect())
}

/// One change to a user's SCRAM credentials.
#[derive(Debug, Clone)]
pub enum CredentialChange {
    Set(Mechanism, Credential),
    Delete(Mechanism),
}

impl CredentialChange {
    pub fn mechanism(&self) -> Mechanism {
        match self {
            CredentialChange::Set(m, _) | CredentialChange::Delete(m) => *m,
        }
    }
}

/// Applies changes to one user's credentials (other settings in the user's config, such
/// as quotas, are kept). Deleting a mechanism the user does not have is an error, as in
/// Kafka (RESOURCE_NOT_FOUND).
pub async fn alter_credentials(
    client: &Client,
    user: &str,
    changes: &[CredentialChange],
) -> Result<(), AdminError> {
    let path = store::user_path(user);
    for _ in 0..ATTEMPTS {
        let stored = read(client, &path).await?;
        let mut doc: Value = match &stored {
            Some((data, _)) if !data.is_empty() => serde_json::from_slice(data)
                .map_err(|e| AdminError::Invalid(format!("{path}: {e}")))?,
            _ => json!({"version": 1, "config": {}}),
        };
        let Some(config) = doc.get_mut("config").and_then(Value::as_object_mut) else {
            return Err(AdminError::Invalid(format!("{path}: no config object")));
        };
        for change in changes {
            match change {
                CredentialChange::Set(m, c) => {
                    config.insert(m.name().to_owned(), Value::String(c.to_kafka()));
                }
                CredentialChange::Delete(m) => {
                    if config.remove(m.name()).is_none() {
                        return Err(AdminError::Invalid(format!(
                            "user {user} has no {} credential",
                            m.name()
                        )));
                    }
                }
            }
        }
        let empty = config.is_empty();
        let version = stored.as_ref().map(|(_, v)| *v);
        let done = if empty && version.is_some() {
            match client.delete(&path, version).await {
                Ok(()) | Err(CoordError::Zk(ErrorCode::NoNode)) => true,
                Err(CoordError::Zk(ErrorCode::BadVersion)) => false,
                Err(e) => return Err(e.into()),
            }
        } else {
            write_versioned(client, &path, doc.to_string().into_bytes(), version).await?
        };
        if done {
            announce(
                client,
                CONFIG_CHANGES,
                CONFIG_CHANGE_PREFIX,
                store::user_change(user),
            )
            .await?;
            return Ok(());
        }
    }
    Err(AdminError::Contended(path))
}
