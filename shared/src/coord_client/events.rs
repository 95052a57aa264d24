//! What the client tells the application without being asked: watch notifications and
//! session state changes.
//!
//! ZooKeeper delivers every event of a connection in one order (a write's watch events come
//! before that write's reply). The client keeps that order by handing each event to every
//! subscriber from the reader task, before it completes the replies that follow. Each
//! subscriber gets its own unbounded queue: a watch event must never be dropped because a
//! consumer was slow (a missed `NodeDeleted` can leave a broker believing in a dead
//! controller), and the rate of events is bounded by the server's write rate anyway.

use std::sync::Mutex;

use tokio::sync::mpsc;

use super::session::lock;
use crate::jute::event;

/// The type of a watch notification (`Watcher.Event.EventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Carries no node change (session-level notifications).
    None,
    NodeCreated,
    NodeDeleted,
    NodeDataChanged,
    NodeChildrenChanged,
    DataWatchRemoved,
    ChildWatchRemoved,
    PersistentWatchRemoved,
    /// A type this client does not know, with its wire value.
    Unknown(i32),
}

impl EventType {
    /// Maps the wire value.
    pub fn from_code(code: i32) -> EventType {
        match code {
            event::NONE => EventType::None,
            event::NODE_CREATED => EventType::NodeCreated,
            event::NODE_DELETED => EventType::NodeDeleted,
            event::NODE_DATA_CHANGED => EventType::NodeDataChanged,
            event::NODE_CHILDREN_CHANGED => EventType::NodeChildrenChanged,
            event::DATA_WATCH_REMOVED => EventType::DataWatchRemoved,
            event::CHILD_WATCH_REMOVED => EventType::ChildWatchRemoved,
            event::PERSISTENT_WATCH_REMOVED => EventType::PersistentWatchRemoved,
            other => EventType::Unknown(other),
        }
    }

    /// The wire value.
    pub fn code(self) -> i32 {
        match self {
            EventType::None => event::NONE,
            EventType::NodeCreated => event::NODE_CREATED,
            EventType::NodeDeleted => event::NODE_DELETED,
            EventType::NodeDataChanged => event::NODE_DATA_CHANGED,
            EventType::NodeChildrenChanged => event::NODE_CHILDREN_CHANGED,
            EventType::DataWatchRemoved => event::DATA_WATCH_REMOVED,
            EventType::ChildWatchRemoved => event::CHILD_WATCH_REMOVED,
            EventType::PersistentWatchRemoved => event::PERSISTENT_WATCH_REMOVED,
            EventType::Unknown(c) => c,
        }
    }
}

/// Prints the name ZooKeeper's tools print (`NodeDataChanged`).
impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventType::Unknown(c) => write!(f, "Unknown({c})"),
            t => f.write_str(event::name(t.code())),
        }
    }
}

/// A watch notification: what happened, and to which node (relative to the chroot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    pub event_type: EventType,
    pub path: String,
}

/// A change of the session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// The client reconnected and resumed the session. Re-registration of its watches (and
    /// replay of its credentials) goes out ahead of any other request. Not sent for the
    /// first connection: [`Client::connect`](super::Client::connect) returning reports that.
    Connected,
    /// The connection broke; the client is reconnecting. Requests in flight failed with
    /// [`Error::ConnectionLoss`](super::Error::ConnectionLoss).
    Disconnected,
    /// The server declared the session expired. The client is finished: every operation now
    /// fails with [`Error::SessionExpired`](super::Error::SessionExpired).
    Expired,
    /// The server rejected an `add_auth`; it closes the connection, and the client reconnects
    /// without that credential.
    AuthFailed,
    /// [`Client::close`](super::Client::close) finished.
    Closed,
}

/// One item of the event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Watch(WatchedEvent),
    Session(SessionEvent),
}

/// A subscription to a client's events, from [`Client::events`](super::Client::events).
/// Yields `None` once the client has finished (closed, expired or dropped).
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event, or `None` once the client has finished and everything was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is already queued.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

/// The set of live subscriptions. `None` once the client has finished, so later subscribers
/// see an ended stream instead of waiting forever.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    list: Mutex<Option<Vec<mpsc::UnboundedSender<Event>>>>,
}

impl Subscribers {
    pub(crate) fn new() -> Self {
        Subscribers {
            list: Mutex::new(Some(Vec::new())),
        }
    }

    pub(crate) fn subscribe(&self) -> Events {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(list) = lock(&self.list).as_mut() {
            list.push(tx);
        }
        // Otherwise `tx` is dropped here and the stream is already at its end.
        Events { rx }
    }

    /// Delivers to every subscriber, forgetting those that were dropped.
    pub(crate) fn send(&self, event: Event) {
        if let Some(list) = lock(&self.list).as_mut() {
            list.retain(|tx| tx.send(event.clone()).is_ok());
        }
    }

    /// Sends a last event and ends every stream.
    pub(crate) fn finish(&self, last: Event) {
        let mut guard = lock(&self.list);
        if let Some(list) = guard.take() {
            for tx in list {
                let _ = tx.send(last.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_and_print_zookeeper_names() {
        for code in -1..=9 {
            assert_eq!(EventType::from_code(code).code(), code);
        }
        assert_eq!(EventType::NodeDataChanged.to_string(), "NodeDataChanged");
        assert_eq!(EventType::from_code(4), EventType::NodeChildrenChanged);
        assert_eq!(EventType::from_code(42).to_string(), "Unknown(42)");
    }

    #[test]
    fn subscribers_fan_out_prune_and_finish() {
        let subs = Subscribers::new();
        let mut a = subs.subscribe();
        let b = subs.subscribe();
        drop(b);
        subs.send(Event::Session(SessionEvent::Disconnected));
        assert_eq!(
            a.try_recv(),
            Some(Event::Session(SessionEvent::Disconnected))
        );
        assert_eq!(lock(&subs.list).as_ref().map(Vec::len), Some(1));

        subs.finish(Event::Session(SessionEvent::Expired));
        assert_eq!(a.try_recv(), Some(Event::Session(SessionEvent::Expired)));
        assert_eq!(a.try_recv(), None);
        // A late subscriber sees an ended stream rather than waiting forever.
        let mut late = subs.subscribe();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(late.recv()), None);
        assert_eq!(rt.block_on(a.recv()), None);
    }
}
