//! What the coordinator integration tests share: starting a coordinator and connecting the
//! independent `zookeeper-client` crate to it.

#![allow(dead_code)]

use anyhow::{anyhow, Context};
use fjord_tests::{Process, Spec};
use std::time::Duration;
use zookeeper_client as zk;

/// Starts a coordinator with extra flags.
pub fn coordinator(args: &[&str]) -> Process {
    Spec::coordinator()
        .args(args.iter().copied())
        .start()
        .expect("the coordinator starts")
}

/// A `zookeeper-client` session with the given timeout.
pub async fn client_with(p: &Process, session_timeout: Duration) -> anyhow::Result<zk::Client> {
    connect(
        zk::Client::connector().with_session_timeout(session_timeout),
        p,
    )
    .await
}

/// A `zookeeper-client` session (10 s timeout).
pub async fn client(p: &Process) -> zk::Client {
    client_with(p, Duration::from_secs(10))
        .await
        .expect("a client connects")
}

/// Connects with a prepared connector, bounded in time.
pub async fn connect(connector: zk::Connector, p: &Process) -> anyhow::Result<zk::Client> {
    let addr = p.connect_string();
    tokio::time::timeout(
        Duration::from_secs(15),
        connector.with_fail_eagerly().connect(&addr),
    )
    .await
    .map_err(|_| anyhow!("connecting to {addr} timed out"))?
    .with_context(|| format!("connecting to {addr}"))
}

/// Options for a node of `mode` with open ACLs.
pub fn opts(mode: zk::CreateMode) -> zk::CreateOptions<'static> {
    mode.with_acls(zk::Acls::anyone_all())
}

/// Creates a persistent node with open ACLs.
pub async fn mk(c: &zk::Client, path: &str, data: &[u8]) {
    c.create(path, data, &opts(zk::CreateMode::Persistent))
        .await
        .unwrap_or_else(|e| panic!("create {path}: {e}"));
}

/// The next node event of a persistent watcher within `timeout`, skipping session events
/// (a persistent watcher also reports connection state changes).
pub async fn node_event(
    w: &mut zk::PersistentWatcher,
    timeout: Duration,
) -> anyhow::Result<zk::WatchedEvent> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ev = tokio::time::timeout_at(deadline, w.changed())
            .await
            .map_err(|_| anyhow!("no watch event within {timeout:?}"))?;
        if ev.event_type != zk::EventType::Session {
            return Ok(ev);
        }
    }
}

/// A one-shot watcher's event within `timeout`.
pub async fn oneshot_event(
    w: zk::OneshotWatcher,
    timeout: Duration,
) -> anyhow::Result<zk::WatchedEvent> {
    tokio::time::timeout(timeout, w.changed())
        .await
        .map_err(|_| anyhow!("no watch event within {timeout:?}"))
}

/// `(event type, path)`, for compact assertions.
pub fn ev(e: &zk::WatchedEvent) -> (zk::EventType, &str) {
    (e.event_type, e.path.as_str())
}

/// Waits until the client reports `SyncConnected` again (after a server restart).
pub async fn wait_connected(c: &zk::Client, timeout: Duration) -> anyhow::Result<()> {
    let mut states = c.state_watcher();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match states.peek_state() {
            zk::SessionState::SyncConnected => return Ok(()),
            s if s.is_terminated() => return Err(anyhow!("the session ended: {s}")),
            _ => {}
        }
        tokio::time::timeout_at(deadline, states.changed())
            .await
            .map_err(|_| {
                anyhow!(
                    "not connected again within {timeout:?} (state {})",
                    states.peek_state()
                )
            })?;
    }
}
