//! Keeps the broker's copy of the users' SCRAM credentials and of the ACLs current with
//! the coordinator.
//!
//! Kafka's brokers learn of a change through the `/config/changes` and
//! `/kafka-acl-changes` notifications; ours watch the data itself with persistent
//! recursive watches on `/config/users`, `/kafka-acl` and `/kafka-acl-extended`, so a
//! change written by Kafka's tools (which write both) or by ours reaches every broker at
//! once, and a broker that was disconnected re-reads everything when its session is back.

use super::acl::ResourceType;
use super::authorizer::Authorizer;
use super::sasl::Credentials;
use super::store::{self, ACL_PREFIXED_ROOT, ACL_ROOT, USERS};
use crate::cluster::view::{children, read};
use crate::cluster::{ensure, Cluster};
use fjord_shared::coord_client::{
    AddWatchMode, Client, Error as CoordError, Event, Events, SessionEvent,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Reads every user's credentials.
pub async fn load_users(client: &Client, credentials: &Credentials) -> Result<(), CoordError> {
    let mut all = HashMap::new();
    for name in children(client, USERS).await? {
        let Some(user) = store::desanitize(&name) else {
            continue;
        };
        if let Some((data, _)) = read(client, &format!("{USERS}/{name}")).await? {
            match store::decode_user(&user, &data) {
                Ok(c) if !c.is_empty() => {
                    all.insert(user, c);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "ignoring unreadable SCRAM credentials"),
            }
        }
    }
    credentials.replace_all(all);
    Ok(())
}

/// Re-reads one user's credentials (`path` is the user's znode).
pub async fn reload_user(
    client: &Client,
    path: &str,
    credentials: &Credentials,
) -> Result<(), CoordError> {
    let Some(name) = path.strip_prefix(USERS).and_then(|p| p.strip_prefix('/')) else {
        return Ok(());
    };
    if name.contains('/') {
        return Ok(());
    }
    let Some(user) = store::desanitize(name) else {
        return Ok(());
    };
    let creds = match read(client, path).await? {
        Some((data, _)) => store::decode_user(&user, &data).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring unreadable SCRAM credentials");
            Default::default()
        }),
        None => Default::default(),
    };
    tracing::info!(user, mechanisms = creds.len(), "SCRAM credentials changed");
    credentials.set_user(&user, creds);
    Ok(())
}

/// Every ACL in the coordinator.
pub async fn load_acls(client: &Client, authorizer: &RwLock<Authorizer>) -> Result<(), CoordError> {
    let mut all = Vec::new();
    for root in [ACL_ROOT, ACL_PREFIXED_ROOT] {
        for rt in ResourceType::ALL {
            let dir = format!("{root}/{}", rt.znode_name());
            for name in children(client, &dir).await? {
                let path = format!("{dir}/{name}");
                if let Some((rt, pattern, name)) = store::parse_acl_path(&path) {
                    if let Some((data, _)) = read(client, &path).await? {
                        match store::decode_acls(rt, pattern, &name, &data) {
                            Ok(acls) => all.extend(acls),
                            Err(e) => tracing::warn!(error = %e, "ignoring unreadable ACLs"),
                        }
                    }
                }
            }
        }
    }
    let mut a = authorizer.write().unwrap_or_else(|p| p.into_inner());
    a.replace_all(all);
    Ok(())
}

/// Re-reads the ACLs of one resource pattern (`path` is its znode).
pub async fn reload_acl(
    client: &Client,
    path: &str,
    authorizer: &RwLock<Authorizer>,
) -> Result<(), CoordError> {
    let Some((rt, pattern, name)) = store::parse_acl_path(path) else {
        return Ok(());
    };
    let acls = match read(client, path).await? {
        Some((data, _)) if !data.is_empty() => store::decode_acls(rt, pattern, &name, &data)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "ignoring unreadable ACLs");
                Vec::new()
            }),
        _ => Vec::new(),
    };
    tracing::info!(resource = ?rt, name, pattern = ?pattern, acls = acls.len(), "ACLs changed");
    let mut a = authorizer.write().unwrap_or_else(|p| p.into_inner());
    a.replace_resource(rt, &name, pattern, acls);
    Ok(())
}

/// What the broker keeps in step with the coordinator.
#[derive(Clone)]
pub struct Followed {
    pub credentials: Arc<Credentials>,
    /// None when no authorizer is configured.
    pub authorizer: Option<Arc<RwLock<Authorizer>>>,
}

/// A session's watch, set up and with everything read once.
pub struct Watching {
    client: Arc<Client>,
    events: Events,
}

/// Sets the persistent recursive watches on this session, then reads everything (in that
/// order, so no change falls between the read and the watch).
pub async fn watch_and_load(
    client: Arc<Client>,
    followed: &Followed,
) -> Result<Watching, CoordError> {
    let events = client.events();
    let mut roots = vec![USERS];
    if followed.authorizer.is_some() {
        roots.extend([ACL_ROOT, "/kafka-acl-extended"]);
    }
    ensure(&client, "/config", b"").await?;
    for root in roots {
        ensure(&client, root, b"").await?;
        client
            .add_watch(root, AddWatchMode::PersistentRecursive)
            .await?;
    }
    load(&client, followed).await?;
    Ok(Watching { client, events })
}

/// Follows users and ACLs until shutdown, from `first` (the session the broker started
/// with, already read) and then across later coordinator sessions.
pub async fn follow(
    cluster: Arc<Cluster>,
    followed: Followed,
    first: Watching,
    shutdown: CancellationToken,
) {
    let mut next = Some(first);
    loop {
        let watching = match next.take() {
            Some(w) => Ok(w),
            None => watch_and_load(cluster.client(), &followed).await,
        };
        let client = match watching {
            Ok(w) => {
                let client = w.client.clone();
                let result = tokio::select! {
                    r = follow_session(w, &followed) => r,
                    _ = shutdown.cancelled() => return,
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "security watch ended; following the next session");
                }
                client
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot watch users and ACLs yet");
                cluster.client()
            }
        };
        // Wait for the cluster task to open a new session (or for this one to recover).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = shutdown.cancelled() => return,
            }
            if !Arc::ptr_eq(&cluster.client(), &client) || tokio::time::Instant::now() >= deadline {
                break;
            }
        }
    }
}

/// Reads everything followed.
pub async fn load(client: &Client, followed: &Followed) -> Result<(), CoordError> {
    load_users(client, &followed.credentials).await?;
    if let Some(a) = &followed.authorizer {
        load_acls(client, a).await?;
    }
    Ok(())
}

async fn follow_session(watching: Watching, followed: &Followed) -> Result<(), CoordError> {
    let Watching { client, mut events } = watching;
    loop {
        let Some(ev) = events.recv().await else {
            return Err(CoordError::SessionExpired);
        };
        match ev {
            Event::Watch(w) if w.path.starts_with(USERS) => {
                reload_user(&client, &w.path, &followed.credentials).await?;
            }
            Event::Watch(w) if w.path.starts_with(ACL_ROOT) => {
                if let Some(a) = &followed.authorizer {
                    reload_acl(&client, &w.path, a).await?;
                }
            }
            Event::Session(SessionEvent::Expired) | Event::Session(SessionEvent::Closed) => {
                return Err(CoordError::SessionExpired);
            }
            Event::Session(SessionEvent::Connected) => {
                // Changes made while disconnected are not replayed: read everything.
                load(&client, followed).await?;
            }
            _ => {}
        }
    }
}
