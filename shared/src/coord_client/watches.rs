//! The client's record of the watches it holds on the server.
//!
//! A ZooKeeper server forgets a connection's watches when the connection breaks; the
//! client must re-register them on the next connection with `setWatches2`, naming the last
//! zxid it saw so the server fires at once any watch whose node changed in between. To do
//! that the client mirrors the server's bookkeeping (ZooKeeper's `ZKWatchManager` rules):
//!
//! - a one-shot watch is recorded when the reply that set it arrives (`exists` on a missing
//!   node records an *exist* watch, otherwise a *data* watch; `getChildren` a *child* watch)
//!   and dropped when its event fires;
//! - persistent and persistent-recursive watches (`addWatch`) stay until removed;
//! - `removeWatches` drops what its watcher type names.
//!
//! Paths are kept as the application sees them (relative to the chroot). Pure: no I/O.

use std::collections::BTreeSet;

use super::events::EventType;
use super::path::Chroot;
use crate::jute::{add_watch_mode, watcher_type, ErrorCode, SetWatches, SetWatches2};

/// The mode of [`Client::add_watch`](super::Client::add_watch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddWatchMode {
    /// Fires on data changes and deletion of the node and on changes of its children list,
    /// and stays registered.
    Persistent,
    /// Fires on creation, data changes and deletion of the node and of every descendant
    /// (never `NodeChildrenChanged`), and stays registered.
    PersistentRecursive,
}

impl AddWatchMode {
    /// The wire value.
    pub fn code(self) -> i32 {
        match self {
            AddWatchMode::Persistent => add_watch_mode::PERSISTENT,
            AddWatchMode::PersistentRecursive => add_watch_mode::PERSISTENT_RECURSIVE,
        }
    }
}

/// Which watches [`Client::remove_watches`](super::Client::remove_watches) removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherType {
    /// Child watches.
    Children,
    /// Data and exist watches.
    Data,
    /// Every watch on the path, persistent ones included.
    Any,
}

impl WatcherType {
    /// The wire value.
    pub fn code(self) -> i32 {
        match self {
            WatcherType::Children => watcher_type::CHILDREN,
            WatcherType::Data => watcher_type::DATA,
            WatcherType::Any => watcher_type::ANY,
        }
    }
}

/// What a request will do to the registry once its reply arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchIntent {
    /// `exists` with a watch.
    Exists(String),
    /// `getData` with a watch.
    Data(String),
    /// `getChildren`/`getChildren2` with a watch.
    Children(String),
    /// `addWatch`.
    Add(String, AddWatchMode),
    /// `removeWatches`.
    Remove(String, WatcherType),
}

/// Watch paths by kind, sorted so re-registration is deterministic.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct WatchRegistry {
    data: BTreeSet<String>,
    exist: BTreeSet<String>,
    child: BTreeSet<String>,
    persistent: BTreeSet<String>,
    recursive: BTreeSet<String>,
}

/// Picks one of the path lists of a `SetWatches2`.
type ListOf = fn(&mut SetWatches2) -> &mut Vec<String>;

/// Java's client splits re-registration into packets of at most this many path bytes, so a
/// client with very many watches stays under the server's frame limit.
const SET_WATCHES_MAX_BYTES: usize = 128 * 1024;

impl WatchRegistry {
    /// Records the effect of a reply with error code `err` to a request with `intent`.
    pub(crate) fn on_reply(&mut self, intent: WatchIntent, err: i32) {
        let ok = err == ErrorCode::Ok.code();
        match intent {
            WatchIntent::Exists(p) if ok => {
                self.data.insert(p);
            }
            // The server keeps a watch set by `exists` on a missing node, as an exist watch.
            WatchIntent::Exists(p) if err == ErrorCode::NoNode.code() => {
                self.exist.insert(p);
            }
            WatchIntent::Data(p) if ok => {
                self.data.insert(p);
            }
            WatchIntent::Children(p) if ok => {
                self.child.insert(p);
            }
            WatchIntent::Add(p, AddWatchMode::Persistent) if ok => {
                self.persistent.insert(p);
            }
            WatchIntent::Add(p, AddWatchMode::PersistentRecursive) if ok => {
                self.recursive.insert(p);
            }
            // NoWatcher means the server holds none either: forget ours too.
            WatchIntent::Remove(p, t) if ok || err == ErrorCode::NoWatcher.code() => {
                self.remove(&p, t)
            }
            _ => {}
        }
    }

    fn remove(&mut self, path: &str, t: WatcherType) {
        if matches!(t, WatcherType::Children | WatcherType::Any) {
            self.child.remove(path);
        }
        if matches!(t, WatcherType::Data | WatcherType::Any) {
            self.data.remove(path);
            self.exist.remove(path);
        }
        if t == WatcherType::Any {
            self.persistent.remove(path);
            self.recursive.remove(path);
        }
    }

    /// Drops the one-shot watches an event consumed.
    pub(crate) fn on_event(&mut self, event_type: EventType, path: &str) {
        match event_type {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                self.data.remove(path);
                self.exist.remove(path);
            }
            EventType::NodeChildrenChanged => {
                self.child.remove(path);
            }
            EventType::NodeDeleted => {
                self.data.remove(path);
                self.exist.remove(path);
                self.child.remove(path);
            }
            _ => {}
        }
    }

    /// Forgets everything (the session expired).
    pub(crate) fn clear(&mut self) {
        *self = WatchRegistry::default();
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
            && self.exist.is_empty()
            && self.child.is_empty()
            && self.persistent.is_empty()
            && self.recursive.is_empty()
    }

    /// The `setWatches2` requests that re-register every watch, relative to `zxid`, with
    /// server paths. Empty when there is nothing to register.
    pub(crate) fn set_watches(&self, zxid: i64, chroot: &Chroot) -> Vec<SetWatches2> {
        let mut out = Vec::new();
        let mut cur = SetWatches2 {
            relative_zxid: zxid,
            ..Default::default()
        };
        let mut bytes = 0;
        let kinds: [(&BTreeSet<String>, ListOf); 5] = [
            (&self.data, |s| &mut s.data_watches),
            (&self.exist, |s| &mut s.exist_watches),
            (&self.child, |s| &mut s.child_watches),
            (&self.persistent, |s| &mut s.persistent_watches),
            (&self.recursive, |s| &mut s.persistent_recursive_watches),
        ];
        for (set, field) in kinds {
            for path in set {
                let server = chroot.to_server(path);
                if bytes > 0 && bytes + server.len() > SET_WATCHES_MAX_BYTES {
                    out.push(std::mem::replace(
                        &mut cur,
                        SetWatches2 {
                            relative_zxid: zxid,
                            ..Default::default()
                        },
                    ));
                    bytes = 0;
                }
                bytes += server.len();
                field(&mut cur).push(server);
            }
        }
        if bytes > 0 {
            out.push(cur);
        }
        out
    }
}

/// The old `setWatches` (op 101) form of a `setWatches2`, for servers that answer the latter
/// with `Unimplemented`. It cannot carry persistent watches; the second value says whether
/// some had to be left out.
pub(crate) fn downgrade(sw: &SetWatches2) -> (SetWatches, bool) {
    let lost = !sw.persistent_watches.is_empty() || !sw.persistent_recursive_watches.is_empty();
    let old = SetWatches {
        relative_zxid: sw.relative_zxid,
        data_watches: sw.data_watches.clone(),
        exist_watches: sw.exist_watches.clone(),
        child_watches: sw.child_watches.clone(),
    };
    (old, lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn replies_record_watches_by_kind() {
        let mut r = WatchRegistry::default();
        r.on_reply(WatchIntent::Exists("/e".into()), ErrorCode::NoNode.code());
        r.on_reply(WatchIntent::Exists("/d1".into()), 0);
        r.on_reply(WatchIntent::Data("/d2".into()), 0);
        r.on_reply(
            WatchIntent::Data("/missing".into()),
            ErrorCode::NoNode.code(),
        );
        r.on_reply(WatchIntent::Children("/c".into()), 0);
        r.on_reply(
            WatchIntent::Children("/nochild".into()),
            ErrorCode::NoNode.code(),
        );
        r.on_reply(WatchIntent::Add("/p".into(), AddWatchMode::Persistent), 0);
        r.on_reply(
            WatchIntent::Add("/r".into(), AddWatchMode::PersistentRecursive),
            0,
        );
        r.on_reply(
            WatchIntent::Add("/denied".into(), AddWatchMode::Persistent),
            ErrorCode::NoAuth.code(),
        );

        let sw = r.set_watches(7, &Chroot::default());
        assert_eq!(sw.len(), 1);
        assert_eq!(
            sw[0],
            SetWatches2 {
                relative_zxid: 7,
                data_watches: s(&["/d1", "/d2"]),
                exist_watches: s(&["/e"]),
                child_watches: s(&["/c"]),
                persistent_watches: s(&["/p"]),
                persistent_recursive_watches: s(&["/r"]),
            }
        );
    }

    #[test]
    fn events_consume_one_shot_watches_only() {
        let mut r = WatchRegistry::default();
        for p in ["/a", "/b"] {
            r.on_reply(WatchIntent::Data(p.into()), 0);
            r.on_reply(WatchIntent::Children(p.into()), 0);
            r.on_reply(WatchIntent::Add(p.into(), AddWatchMode::Persistent), 0);
        }
        r.on_reply(WatchIntent::Exists("/new".into()), ErrorCode::NoNode.code());

        r.on_event(EventType::NodeDataChanged, "/a");
        r.on_event(EventType::NodeCreated, "/new");
        let sw = &r.set_watches(0, &Chroot::default())[0];
        assert_eq!(sw.data_watches, s(&["/b"]));
        assert!(sw.exist_watches.is_empty());
        assert_eq!(sw.child_watches, s(&["/a", "/b"]));

        r.on_event(EventType::NodeChildrenChanged, "/a");
        r.on_event(EventType::NodeDeleted, "/b");
        let sw = &r.set_watches(0, &Chroot::default())[0];
        assert!(sw.data_watches.is_empty() && sw.child_watches.is_empty());
        // Persistent watches survive their events.
        assert_eq!(sw.persistent_watches, s(&["/a", "/b"]));
    }

    #[test]
    fn remove_watches_follows_the_watcher_type() {
        let mut r = WatchRegistry::default();
        let fill = |r: &mut WatchRegistry| {
            r.on_reply(WatchIntent::Data("/x".into()), 0);
            r.on_reply(WatchIntent::Children("/x".into()), 0);
            r.on_reply(WatchIntent::Add("/x".into(), AddWatchMode::Persistent), 0);
            r.on_reply(
                WatchIntent::Add("/x".into(), AddWatchMode::PersistentRecursive),
                0,
            );
        };
        fill(&mut r);
        r.on_reply(WatchIntent::Remove("/x".into(), WatcherType::Children), 0);
        let sw = &r.set_watches(0, &Chroot::default())[0];
        assert!(sw.child_watches.is_empty());
        assert_eq!(sw.data_watches, s(&["/x"]));

        r.on_reply(WatchIntent::Remove("/x".into(), WatcherType::Data), 0);
        let sw = &r.set_watches(0, &Chroot::default())[0];
        assert!(sw.data_watches.is_empty());
        assert_eq!(sw.persistent_watches, s(&["/x"]));

        // A failed removal changes nothing; NoWatcher means the server has none either.
        r.on_reply(
            WatchIntent::Remove("/x".into(), WatcherType::Any),
            ErrorCode::NoAuth.code(),
        );
        assert!(!r.is_empty());
        r.on_reply(
            WatchIntent::Remove("/x".into(), WatcherType::Any),
            ErrorCode::NoWatcher.code(),
        );
        assert!(r.is_empty());

        fill(&mut r);
        r.on_reply(WatchIntent::Remove("/x".into(), WatcherType::Any), 0);
        assert!(r.is_empty());
        assert!(r.set_watches(0, &Chroot::default()).is_empty());
    }

    #[test]
    fn re_registration_uses_server_paths_and_splits_large_sets() {
        let mut r = WatchRegistry::default();
        r.on_reply(WatchIntent::Data("/".into()), 0);
        r.on_reply(
            WatchIntent::Add("/a".into(), AddWatchMode::PersistentRecursive),
            0,
        );
        let sw = r.set_watches(3, &Chroot::new(Some("/app".into())));
        assert_eq!(sw[0].data_watches, s(&["/app"]));
        assert_eq!(sw[0].persistent_recursive_watches, s(&["/app/a"]));

        let mut r = WatchRegistry::default();
        let n = 3000;
        for i in 0..n {
            r.on_reply(WatchIntent::Data(format!("/node/{i:0100}")), 0);
        }
        let batches = r.set_watches(9, &Chroot::default());
        assert!(batches.len() > 1);
        let total: usize = batches.iter().map(|b| b.data_watches.len()).sum();
        assert_eq!(total, n);
        for b in &batches {
            assert_eq!(b.relative_zxid, 9);
            assert!(b.data_watches.iter().map(String::len).sum::<usize>() <= SET_WATCHES_MAX_BYTES);
        }
    }

    #[test]
    fn downgrade_reports_lost_persistent_watches() {
        let sw = SetWatches2 {
            relative_zxid: 5,
            data_watches: s(&["/d"]),
            ..Default::default()
        };
        let (old, lost) = downgrade(&sw);
        assert_eq!(old.data_watches, s(&["/d"]));
        assert_eq!(old.relative_zxid, 5);
        assert!(!lost);
        let sw = SetWatches2 {
            persistent_watches: s(&["/p"]),
            ..Default::default()
        };
        assert!(downgrade(&sw).1);
    }
}
