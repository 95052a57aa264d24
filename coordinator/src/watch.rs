//! Watch tables: one-shot, persistent and persistent-recursive watches, per connection.
//!
//! Follows ZooKeeper 3.8's `WatchManager` and `DataTree` rules:
//!
//! - Two tables: data watches (getData, exists) and child watches (getChildren); addWatch
//!   registers in both. removeWatches picks the table, so removing a recursive watch takes
//!   a DATA and a CHILDREN removal, as in ZooKeeper 3.8.
//! - A watcher has one mode per path and table, and the last registration wins.
//! - A trigger fires each matching watcher at most once. One-shot watches are removed when
//!   they fire. A recursive watch on an ancestor fires for every event except
//!   `NodeChildrenChanged`.
//! - A create fires `NodeCreated` on the path's data table, then `NodeChildrenChanged` on the
//!   parent's child table. A delete fires `NodeDeleted` on the data table, then on the child
//!   table (skipping watchers that were already told), then `NodeChildrenChanged` on the
//!   parent. A setData fires `NodeDataChanged` on the data table.
//!
//! Watches belong to a connection, not a session: a client re-registers them with setWatches
//! after it reconnects.

use crate::tree::{split_parent, Change};
use fjord_shared::jute::event;
use std::collections::{BTreeSet, HashMap, HashSet};

/// A connection's identity in the watch tables.
pub type ConnId = u64;

/// How a watch behaves once it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fires once, then is removed.
    Standard,
    /// Fires on every event at this path (data and children).
    Persistent,
    /// Fires on every event at this path and below, except `NodeChildrenChanged`.
    Recursive,
}

/// One notification to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub conn: ConnId,
    pub event_type: i32,
    pub path: String,
}

#[derive(Debug, Default)]
struct Table {
    by_path: HashMap<String, HashMap<ConnId, Mode>>,
    by_conn: HashMap<ConnId, HashSet<String>>,
    recursive: usize,
}

impl Table {
    fn add(&mut self, path: &str, conn: ConnId, mode: Mode) {
        let old = self
            .by_path
            .entry(path.to_owned())
            .or_default()
            .insert(conn, mode);
        if old == Some(Mode::Recursive) {
            self.recursive -= 1;
        }
        if mode == Mode::Recursive {
            self.recursive += 1;
        }
        self.by_conn
            .entry(conn)
            .or_default()
            .insert(path.to_owned());
    }

    fn remove(&mut self, path: &str, conn: ConnId) -> bool {
        let Some(set) = self.by_path.get_mut(path) else {
            return false;
        };
        let Some(mode) = set.remove(&conn) else {
            return false;
        };
        if mode == Mode::Recursive {
            self.recursive -= 1;
        }
        if set.is_empty() {
            self.by_path.remove(path);
        }
        if let Some(paths) = self.by_conn.get_mut(&conn) {
            paths.remove(path);
            if paths.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
        true
    }

    fn contains(&self, path: &str, conn: ConnId) -> bool {
        self.by_path
            .get(path)
            .is_some_and(|s| s.contains_key(&conn))
    }

    fn remove_conn(&mut self, conn: ConnId) {
        for path in self.by_conn.remove(&conn).unwrap_or_default() {
            if let Some(set) = self.by_path.get_mut(&path) {
                if set.remove(&conn) == Some(Mode::Recursive) {
                    self.recursive -= 1;
                }
                if set.is_empty() {
                    self.by_path.remove(&path);
                }
            }
        }
    }

    /// Fires the watches for an event at `path`. Returns every matching watcher (sorted, for
    /// deterministic delivery); one-shot watches at `path` are removed.
    fn trigger(&mut self, path: &str, event_type: i32) -> BTreeSet<ConnId> {
        let mut fired = BTreeSet::new();
        if let Some(set) = self.by_path.get_mut(path) {
            let mut spent = Vec::new();
            for (conn, mode) in set.iter() {
                match mode {
                    Mode::Recursive if event_type == event::NODE_CHILDREN_CHANGED => {}
                    Mode::Standard => {
                        fired.insert(*conn);
                        spent.push(*conn);
                    }
                    _ => {
                        fired.insert(*conn);
                    }
                }
            }
            for conn in spent {
                self.remove(path, conn);
            }
        }
        if self.recursive > 0 && event_type != event::NODE_CHILDREN_CHANGED {
            let mut p = path;
            while p != "/" {
                p = split_parent(p).0;
                if let Some(set) = self.by_path.get(p) {
                    fired.extend(
                        set.iter()
                            .filter(|(_, m)| **m == Mode::Recursive)
                            .map(|(c, _)| *c),
                    );
                }
            }
        }
        fired
    }

    fn count(&self) -> usize {
        self.by_path.values().map(HashMap::len).sum()
    }
}

/// Both watch tables.
#[derive(Debug, Default)]
pub struct WatchManager {
    data: Table,
    child: Table,
}

impl WatchManager {
    pub fn new() -> WatchManager {
        WatchManager::default()
    }

    /// A one-shot watch from getData or exists.
    pub fn add_data(&mut self, path: &str, conn: ConnId) {
        self.data.add(path, conn, Mode::Standard);
    }

    /// A one-shot watch from getChildren.
    pub fn add_child(&mut self, path: &str, conn: ConnId) {
        self.child.add(path, conn, Mode::Standard);
    }

    /// addWatch: both tables, with the persistent or recursive mode.
    pub fn add_persistent(&mut self, path: &str, conn: ConnId, recursive: bool) {
        let mode = if recursive {
            Mode::Recursive
        } else {
            Mode::Persistent
        };
        self.data.add(path, conn, mode);
        self.child.add(path, conn, mode);
    }

    /// removeWatches: `data` and `child` select the tables. True if anything was removed.
    pub fn remove(&mut self, path: &str, conn: ConnId, data: bool, child: bool) -> bool {
        let mut removed = false;
        if child {
            removed |= self.child.remove(path, conn);
        }
        if data {
            removed |= self.data.remove(path, conn);
        }
        removed
    }

    /// checkWatches: whether such a watch exists, without removing it.
    pub fn contains(&self, path: &str, conn: ConnId, data: bool, child: bool) -> bool {
        (data && self.data.contains(path, conn)) || (child && self.child.contains(path, conn))
    }

    /// Drops every watch of a connection.
    pub fn remove_conn(&mut self, conn: ConnId) {
        self.data.remove_conn(conn);
        self.child.remove_conn(conn);
    }

    /// Total watches, for `mntr` and `wchs`.
    pub fn count(&self) -> usize {
        self.data.count() + self.child.count()
    }

    /// Watched paths per connection, for `wchc`-style listings.
    pub fn paths_by_conn(&self) -> Vec<(ConnId, Vec<String>)> {
        let mut m: HashMap<ConnId, BTreeSet<String>> = HashMap::new();
        for t in [&self.data, &self.child] {
            for (c, paths) in &t.by_conn {
                m.entry(*c).or_default().extend(paths.iter().cloned());
            }
        }
        let mut v: Vec<_> = m
            .into_iter()
            .map(|(c, p)| (c, p.into_iter().collect()))
            .collect();
        v.sort();
        v
    }

    /// Watched paths with the connections watching them, for `wchp`/`dump`.
    pub fn conns_by_path(&self) -> Vec<(String, Vec<ConnId>)> {
        let mut m: HashMap<String, BTreeSet<ConnId>> = HashMap::new();
        for t in [&self.data, &self.child] {
            for (p, conns) in &t.by_path {
                m.entry(p.clone())
                    .or_default()
                    .extend(conns.keys().copied());
            }
        }
        let mut v: Vec<_> = m
            .into_iter()
            .map(|(p, c)| (p, c.into_iter().collect()))
            .collect();
        v.sort();
        v
    }

    /// The notifications one change causes, in delivery order.
    pub fn trigger(&mut self, change: &Change) -> Vec<Notification> {
        let mut out = Vec::new();
        let mut push =
            |conns: BTreeSet<ConnId>, event_type: i32, path: &str, skip: &BTreeSet<ConnId>| {
                for conn in conns {
                    if !skip.contains(&conn) {
                        out.push(Notification {
                            conn,
                            event_type,
                            path: path.to_owned(),
                        });
                    }
                }
            };
        let none = BTreeSet::new();
        match change {
            Change::Created(path) => {
                let fired = self.data.trigger(path, event::NODE_CREATED);
                push(fired, event::NODE_CREATED, path, &none);
                let parent = split_parent(path).0;
                let fired = self.child.trigger(parent, event::NODE_CHILDREN_CHANGED);
                push(fired, event::NODE_CHILDREN_CHANGED, parent, &none);
            }
            Change::Deleted(path) => {
                let told = self.data.trigger(path, event::NODE_DELETED);
                push(told.clone(), event::NODE_DELETED, path, &none);
                let fired = self.child.trigger(path, event::NODE_DELETED);
                push(fired, event::NODE_DELETED, path, &told);
                let parent = split_parent(path).0;
                let fired = self.child.trigger(parent, event::NODE_CHILDREN_CHANGED);
                push(fired, event::NODE_CHILDREN_CHANGED, parent, &none);
            }
            Change::DataChanged(path) => {
                let fired = self.data.trigger(path, event::NODE_DATA_CHANGED);
                push(fired, event::NODE_DATA_CHANGED, path, &none);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(conn: ConnId, t: i32, p: &str) -> Notification {
        Notification {
            conn,
            event_type: t,
            path: p.into(),
        }
    }

    #[test]
    fn one_shot_watches_fire_once() {
        let mut w = WatchManager::new();
        w.add_data("/a", 1);
        w.add_child("/", 2);
        let out = w.trigger(&Change::Created("/a".into()));
        assert_eq!(
            out,
            vec![
                n(1, event::NODE_CREATED, "/a"),
                n(2, event::NODE_CHILDREN_CHANGED, "/")
            ]
        );
        assert!(w.trigger(&Change::DataChanged("/a".into())).is_empty());
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn delete_tells_each_watcher_once() {
        let mut w = WatchManager::new();
        w.add_data("/a", 1);
        w.add_child("/a", 1);
        w.add_child("/a", 2);
        let out = w.trigger(&Change::Deleted("/a".into()));
        assert_eq!(
            out,
            vec![
                n(1, event::NODE_DELETED, "/a"),
                n(2, event::NODE_DELETED, "/a")
            ]
        );
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn persistent_watches_stay_and_see_children() {
        let mut w = WatchManager::new();
        w.add_persistent("/p", 1, false);
        assert_eq!(
            w.trigger(&Change::DataChanged("/p".into())),
            vec![n(1, event::NODE_DATA_CHANGED, "/p")]
        );
        assert_eq!(
            w.trigger(&Change::Created("/p/c".into())),
            vec![n(1, event::NODE_CHILDREN_CHANGED, "/p")]
        );
        assert_eq!(
            w.trigger(&Change::Deleted("/p".into())),
            vec![n(1, event::NODE_DELETED, "/p")]
        );
        assert_eq!(w.count(), 2, "still registered after firing");
    }

    #[test]
    fn recursive_watches_see_descendants_but_not_child_lists() {
        let mut w = WatchManager::new();
        w.add_persistent("/r", 1, true);
        assert_eq!(
            w.trigger(&Change::Created("/r/a/b".into())),
            vec![n(1, event::NODE_CREATED, "/r/a/b")]
        );
        assert_eq!(
            w.trigger(&Change::Created("/r".into())),
            vec![n(1, event::NODE_CREATED, "/r")]
        );
        assert!(w.trigger(&Change::Created("/rx".into())).is_empty());
        assert!(w.trigger(&Change::Created("/other/x".into())).is_empty());
        assert_eq!(
            w.trigger(&Change::DataChanged("/r/a".into())),
            vec![n(1, event::NODE_DATA_CHANGED, "/r/a")]
        );
    }

    #[test]
    fn last_registration_wins_and_removal_reports() {
        let mut w = WatchManager::new();
        w.add_persistent("/x", 1, false);
        w.add_data("/x", 1); // 3.8: now one-shot in the data table
        assert_eq!(
            w.trigger(&Change::DataChanged("/x".into())),
            vec![n(1, event::NODE_DATA_CHANGED, "/x")]
        );
        assert!(w.trigger(&Change::DataChanged("/x".into())).is_empty());
        assert!(w.contains("/x", 1, false, true));
        assert!(w.remove("/x", 1, false, true));
        assert!(!w.remove("/x", 1, true, true));
    }

    #[test]
    fn closing_a_connection_drops_its_watches() {
        let mut w = WatchManager::new();
        w.add_persistent("/r", 1, true);
        w.add_data("/a", 1);
        w.add_data("/a", 2);
        w.remove_conn(1);
        assert_eq!(
            w.trigger(&Change::DataChanged("/a".into())),
            vec![n(2, event::NODE_DATA_CHANGED, "/a")]
        );
        assert!(w.trigger(&Change::Created("/r/x".into())).is_empty());
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn recursive_watches_live_in_both_tables_like_zookeeper() {
        let mut w = WatchManager::new();
        w.add_persistent("/r", 1, true);
        assert!(
            w.remove("/r", 1, true, false),
            "DATA removes it from the data table"
        );
        assert!(
            w.remove("/r", 1, false, true),
            "CHILDREN then removes it from the child table"
        );
        assert!(!w.remove("/r", 1, true, true), "nothing is left for ANY");
    }
}
