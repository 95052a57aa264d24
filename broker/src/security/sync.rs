//! Keeps the broker's copy of the users' SCRAM credentials current with the coordinator.
//!
//! Kafka's brokers learn of a change through the `/config/changes` notifications; ours
//! watch the data itself with a persistent recursive watch on `/config/users`, so a change
//! written by Kafka's tools (which write both) or by ours reaches every broker at once,
//! and a broker that was disconnected re-reads everything when its session is back.

use super::sasl::Credentials;
use super::store::{self, USERS};
use crate::cluster::view::{children, read};
use crate::cluster::{ensure, Cluster};
use fjord_shared::coord_client::{AddWatchMode, Client, Error as CoordError, Event, SessionEvent};
use std::collections::HashMap;
use std::sync::Arc;
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

async fn reload_user(
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

/// Follows `/config/users` until shutdown, across coordinator sessions.
pub async fn follow_users(
    cluster: Arc<Cluster>,
    credentials: Arc<Credentials>,
    shutdown: CancellationToken,
) {
    loop {
        let client = cluster.client();
        let result = tokio::select! {
            r = follow_session(&client, &credentials) => r,
            _ = shutdown.cancelled() => return,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "credential watch ended; following the next session");
        }
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

async fn follow_session(client: &Arc<Client>, credentials: &Credentials) -> Result<(), CoordError> {
    let mut events = client.events();
    ensure(client, "/config", b"").await?;
    ensure(client, USERS, b"").await?;
    client
        .add_watch(USERS, AddWatchMode::PersistentRecursive)
        .await?;
    load_users(client, credentials).await?;
    loop {
        let Some(ev) = events.recv().await else {
            return Err(CoordError::SessionExpired);
        };
        match ev {
            Event::Watch(w) if w.path.starts_with(USERS) => {
                reload_user(client, &w.path, credentials).await?;
            }
            Event::Session(SessionEvent::Expired) | Event::Session(SessionEvent::Closed) => {
                return Err(CoordError::SessionExpired);
            }
            Event::Session(SessionEvent::Connected) => {
                // Changes made while disconnected are not replayed: read everything.
                load_users(client, credentials).await?;
            }
            _ => {}
        }
    }
}
