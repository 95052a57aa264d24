//! The data tree: znodes, their stats, children and the ephemeral index.
//!
//! Pure state with no I/O and no clock, so it can be driven identically by live requests and
//! by log replay. Its rules are ZooKeeper 3.8's `DataTree`:
//!
//! - Each node keeps an internal `cversion` that counts the creates of its children. It is
//!   also the sequence number of the next sequential child. Clients see
//!   `2 × cversion − numChildren` (ZooKeeper's "v3 semantics": every create is matched by a
//!   delete, except for the children still present), which is why `/` shows `cversion = -1`.
//! - A create bumps the parent's cversion and pzxid; a delete sets only the parent's pzxid.
//! - Containers are marked by the ephemeral owner `i64::MIN`, as ZooKeeper does.
//! - The built-in `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config` nodes exist, as
//!   in a standalone ZooKeeper, so stock tools see the tree they expect.

use bytes::Bytes;
use fjord_shared::jute::{perms, Acl, Id, Stat};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The ephemeral owner that marks a container node (`EphemeralType.CONTAINER`).
pub const CONTAINER_OWNER: i64 = i64::MIN;

/// The persisted part of a node's status. `dataLength` and `numChildren` are derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatPersisted {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    /// Internal: the number of children ever created (see the module docs).
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
}

/// One znode.
#[derive(Debug, Clone)]
pub struct Node {
    /// `None` for null data, which ZooKeeper keeps apart from empty data.
    pub data: Option<Bytes>,
    pub acl: Arc<Vec<Acl>>,
    pub stat: StatPersisted,
    pub children: BTreeSet<String>,
}

impl Node {
    /// The stat a client sees.
    pub fn client_stat(&self) -> Stat {
        let s = &self.stat;
        let n = self.children.len() as i32;
        Stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(n),
            aversion: s.aversion,
            // Containers show owner 0 to clients, as in ZooKeeper.
            ephemeral_owner: if self.is_container() {
                0
            } else {
                s.ephemeral_owner
            },
            data_length: self.data.as_ref().map_or(0, |d| d.len() as i32),
            num_children: n,
            pzxid: s.pzxid,
        }
    }

    pub fn is_container(&self) -> bool {
        self.stat.ephemeral_owner == CONTAINER_OWNER
    }

    /// The owning session of an ephemeral node, if it is one.
    pub fn ephemeral_session(&self) -> Option<i64> {
        let o = self.stat.ephemeral_owner;
        (o != 0 && o != CONTAINER_OWNER).then_some(o)
    }
}

/// What a write changed, in the order watches must fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Created(String),
    Deleted(String),
    DataChanged(String),
}

/// Splits `/a/b` into (`/a`, `b`) and `/a` into (`/`, `a`).
pub fn split_parent(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

/// ZooKeeper's `PathUtils.validatePath`: absolute, no empty, `.` or `..` components, no
/// trailing slash (except `/` itself), and no control or reserved characters.
pub fn validate_path(path: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    if path == "/" {
        return true;
    }
    if path.ends_with('/') {
        return false;
    }
    for comp in path[1..].split('/') {
        if comp.is_empty() || comp == "." || comp == ".." {
            return false;
        }
    }
    !path.chars().any(|c| {
        c == '\0'
            || ('\u{1}'..='\u{1f}').contains(&c)
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{e000}'..='\u{f8ff}').contains(&c)
            || ('\u{fff0}'..='\u{ffff}').contains(&c)
    })
}

/// The tree itself.
#[derive(Debug, Clone)]
pub struct DataTree {
    nodes: HashMap<String, Node>,
    /// session id → paths of its ephemeral nodes.
    ephemerals: HashMap<i64, BTreeSet<String>>,
    containers: BTreeSet<String>,
    open_acl: Arc<Vec<Acl>>,
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

impl DataTree {
    /// A fresh tree with `/` and the built-in `/zookeeper` nodes.
    pub fn new() -> DataTree {
        let open_acl = Arc::new(Acl::open_unsafe());
        let mut t = DataTree {
            nodes: HashMap::new(),
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            open_acl: open_acl.clone(),
        };
        let empty = |acl: Arc<Vec<Acl>>| Node {
            data: None,
            acl,
            stat: StatPersisted::default(),
            children: BTreeSet::new(),
        };
        let read_only = Arc::new(vec![Acl {
            perms: perms::READ,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }]);
        t.nodes.insert("/".into(), empty(open_acl.clone()));
        t.nodes.insert("/zookeeper".into(), empty(open_acl.clone()));
        t.nodes.insert("/zookeeper/quota".into(), empty(open_acl));
        t.nodes.insert("/zookeeper/config".into(), empty(read_only));
        t.link("/zookeeper");
        t.link("/zookeeper/quota");
        t.link("/zookeeper/config");
        t
    }

    fn link(&mut self, path: &str) {
        let (parent, name) = split_parent(path);
        if let Some(p) = self.nodes.get_mut(parent) {
            p.children.insert(name.to_owned());
        }
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Every node, for snapshots.
    pub fn nodes(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Ephemeral paths of a session, sorted.
    pub fn ephemerals_of(&self, session: i64) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of ephemeral nodes in the tree.
    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(BTreeSet::len).sum()
    }

    /// Sessions that own ephemeral nodes.
    pub fn ephemeral_sessions(&self) -> impl Iterator<Item = (&i64, &BTreeSet<String>)> {
        self.ephemerals.iter()
    }

    /// Container nodes that had children and have none left: due for deletion.
    pub fn empty_containers(&self) -> Vec<String> {
        self.containers
            .iter()
            .filter(|p| {
                self.nodes
                    .get(p.as_str())
                    .is_some_and(|n| n.children.is_empty() && n.stat.cversion > 0)
            })
            .cloned()
            .collect()
    }

    /// Total bytes of node data, for `mntr`.
    pub fn approximate_data_size(&self) -> usize {
        self.nodes
            .iter()
            .map(|(k, n)| k.len() + n.data.as_ref().map_or(0, Bytes::len))
            .sum()
    }

    /// Number of descendants of `path` (not counting `path`).
    pub fn all_children_number(&self, path: &str) -> usize {
        if path == "/" {
            return self.nodes.len() - 1;
        }
        let prefix = format!("{path}/");
        self.nodes.keys().filter(|k| k.starts_with(&prefix)).count()
    }

    /// Shares one allocation among nodes with the same ACL.
    pub fn intern_acl(&self, acl: Vec<Acl>) -> Arc<Vec<Acl>> {
        if *self.open_acl == acl {
            self.open_acl.clone()
        } else {
            Arc::new(acl)
        }
    }

    /// Creates a node. The caller has checked that the parent exists and the node does not;
    /// if that does not hold (a corrupt log), nothing changes and `None` is returned.
    pub fn create(
        &mut self,
        path: &str,
        data: Option<Bytes>,
        acl: Arc<Vec<Acl>>,
        ephemeral_owner: i64,
        zxid: i64,
        time: i64,
    ) -> Option<Vec<Change>> {
        if self.nodes.contains_key(path) {
            return None;
        }
        let (parent_path, name) = split_parent(path);
        let parent = self.nodes.get_mut(parent_path)?;
        parent.children.insert(name.to_owned());
        parent.stat.cversion += 1;
        parent.stat.pzxid = zxid;
        let stat = StatPersisted {
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            ephemeral_owner,
            pzxid: zxid,
            ..StatPersisted::default()
        };
        self.nodes.insert(
            path.to_owned(),
            Node {
                data,
                acl,
                stat,
                children: BTreeSet::new(),
            },
        );
        if ephemeral_owner == CONTAINER_OWNER {
            self.containers.insert(path.to_owned());
        } else if ephemeral_owner != 0 {
            self.ephemerals
                .entry(ephemeral_owner)
                .or_default()
                .insert(path.to_owned());
        }
        Some(vec![Change::Created(path.to_owned())])
    }

    /// Deletes a node (which must have no children).
    pub fn delete(&mut self, path: &str, zxid: i64) -> Option<Vec<Change>> {
        if path == "/" || self.nodes.get(path).is_none_or(|n| !n.children.is_empty()) {
            return None;
        }
        let node = self.nodes.remove(path)?;
        let (parent_path, name) = split_parent(path);
        if let Some(parent) = self.nodes.get_mut(parent_path) {
            parent.children.remove(name);
            if zxid > parent.stat.pzxid {
                parent.stat.pzxid = zxid;
            }
        }
        if node.is_container() {
            self.containers.remove(path);
        } else if let Some(owner) = node.ephemeral_session() {
            if let Some(set) = self.ephemerals.get_mut(&owner) {
                set.remove(path);
                if set.is_empty() {
                    self.ephemerals.remove(&owner);
                }
            }
        }
        Some(vec![Change::Deleted(path.to_owned())])
    }

    pub fn set_data(
        &mut self,
        path: &str,
        data: Option<Bytes>,
        zxid: i64,
        time: i64,
    ) -> Option<Vec<Change>> {
        let node = self.nodes.get_mut(path)?;
        node.data = data;
        node.stat.mzxid = zxid;
        node.stat.mtime = time;
        node.stat.version = node.stat.version.wrapping_add(1);
        Some(vec![Change::DataChanged(path.to_owned())])
    }

    pub fn set_acl(&mut self, path: &str, acl: Arc<Vec<Acl>>) -> Option<Vec<Change>> {
        let node = self.nodes.get_mut(path)?;
        node.acl = acl;
        node.stat.aversion = node.stat.aversion.wrapping_add(1);
        Some(Vec::new())
    }

    /// Deletes every ephemeral node of a session, in path order.
    pub fn kill_session(&mut self, session: i64, zxid: i64) -> Vec<Change> {
        let paths = self.ephemerals_of(session);
        let mut changes = Vec::new();
        for p in paths {
            if let Some(c) = self.delete(&p, zxid) {
                changes.extend(c);
            }
        }
        self.ephemerals.remove(&session);
        changes
    }

    /// Rebuilds a tree from snapshot records; parents are linked after all nodes load.
    pub fn from_nodes(nodes: Vec<(String, Node)>) -> DataTree {
        let mut t = DataTree::new();
        t.nodes.clear();
        for (path, mut node) in nodes {
            node.children.clear();
            if *node.acl == *t.open_acl {
                node.acl = t.open_acl.clone();
            }
            if node.is_container() {
                t.containers.insert(path.clone());
            } else if let Some(owner) = node.ephemeral_session() {
                t.ephemerals.entry(owner).or_default().insert(path.clone());
            }
            t.nodes.insert(path, node);
        }
        let paths: Vec<String> = t
            .nodes
            .keys()
            .filter(|p| p.as_str() != "/")
            .cloned()
            .collect();
        for p in paths {
            t.link(&p);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(t: &DataTree) -> Arc<Vec<Acl>> {
        t.intern_acl(Acl::open_unsafe())
    }

    #[test]
    fn root_and_builtins_look_like_zookeeper() {
        let t = DataTree::new();
        let root = t.get("/").unwrap().client_stat();
        assert_eq!(root.cversion, -1);
        assert_eq!(root.num_children, 1);
        assert_eq!(t.get("/zookeeper").unwrap().client_stat().cversion, -2);
        assert_eq!(t.all_children_number("/"), 3);
    }

    #[test]
    fn create_and_delete_update_parent_like_zookeeper() {
        let mut t = DataTree::new();
        let acl = open(&t);
        t.create("/a", Some(Bytes::from_static(b"x")), acl.clone(), 0, 5, 100)
            .unwrap();
        t.create("/a/b", None, acl.clone(), 0, 6, 101).unwrap();
        t.create("/a/c", None, acl.clone(), 0, 7, 102).unwrap();
        let a = t.get("/a").unwrap().client_stat();
        assert_eq!((a.cversion, a.num_children, a.pzxid, a.mzxid), (2, 2, 7, 5));
        t.delete("/a/b", 8).unwrap();
        let a = t.get("/a").unwrap().client_stat();
        // 2 creates, 1 child left: 2*2-1.
        assert_eq!((a.cversion, a.num_children, a.pzxid), (3, 1, 8));
        // The sequence counter is not reset by deletes.
        assert_eq!(t.get("/a").unwrap().stat.cversion, 2);
        // Non-empty or missing nodes are not deleted.
        assert!(t.delete("/a", 9).is_none());
        assert!(t.delete("/nope", 9).is_none());
        assert!(t.create("/a/c", None, acl.clone(), 0, 9, 1).is_none());
        assert!(t.create("/x/y", None, acl, 0, 9, 1).is_none());
    }

    #[test]
    fn set_data_bumps_version_and_mzxid() {
        let mut t = DataTree::new();
        let acl = open(&t);
        t.create("/a", None, acl, 0, 1, 10).unwrap();
        t.set_data("/a", Some(Bytes::from_static(b"hello")), 2, 20)
            .unwrap();
        let s = t.get("/a").unwrap().client_stat();
        assert_eq!(
            (s.version, s.mzxid, s.mtime, s.data_length, s.czxid),
            (1, 2, 20, 5, 1)
        );
    }

    #[test]
    fn ephemerals_are_indexed_and_killed_with_their_session() {
        let mut t = DataTree::new();
        let acl = open(&t);
        t.create("/e1", None, acl.clone(), 42, 1, 0).unwrap();
        t.create("/e2", None, acl.clone(), 42, 2, 0).unwrap();
        t.create("/other", None, acl, 43, 3, 0).unwrap();
        assert_eq!(
            t.ephemerals_of(42),
            vec!["/e1".to_string(), "/e2".to_string()]
        );
        let changes = t.kill_session(42, 4);
        assert_eq!(
            changes,
            vec![Change::Deleted("/e1".into()), Change::Deleted("/e2".into())]
        );
        assert!(t.get("/e1").is_none());
        assert!(t.get("/other").is_some());
        assert_eq!(t.ephemeral_count(), 1);
    }

    #[test]
    fn containers_become_due_once_emptied() {
        let mut t = DataTree::new();
        let acl = open(&t);
        t.create("/c", None, acl.clone(), CONTAINER_OWNER, 1, 0)
            .unwrap();
        assert!(
            t.empty_containers().is_empty(),
            "a never-used container is kept"
        );
        t.create("/c/x", None, acl, 0, 2, 0).unwrap();
        assert!(t.empty_containers().is_empty());
        t.delete("/c/x", 3).unwrap();
        assert_eq!(t.empty_containers(), vec!["/c".to_string()]);
    }

    #[test]
    fn paths_are_validated_like_zookeeper() {
        for ok in ["/", "/a", "/a/b", "/a-b_c.d", "/zookeeper/quota", "/a/.b"] {
            assert!(validate_path(ok), "{ok}");
        }
        for bad in [
            "", "a", "/a/", "//", "/a//b", "/a/./b", "/a/..", "/a\0b", "/a\u{1}",
        ] {
            assert!(!validate_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn rebuild_from_nodes_restores_links_and_indexes() {
        let mut t = DataTree::new();
        let acl = open(&t);
        t.create("/a", None, acl.clone(), 0, 1, 0).unwrap();
        t.create("/a/e", None, acl.clone(), 7, 2, 0).unwrap();
        t.create("/c", None, acl, CONTAINER_OWNER, 3, 0).unwrap();
        let nodes: Vec<(String, Node)> = t.nodes().map(|(k, v)| (k.clone(), v.clone())).collect();
        let r = DataTree::from_nodes(nodes);
        assert_eq!(
            r.get("/a").unwrap().client_stat(),
            t.get("/a").unwrap().client_stat()
        );
        assert_eq!(
            r.get("/").unwrap().client_stat(),
            t.get("/").unwrap().client_stat()
        );
        assert_eq!(r.ephemerals_of(7), vec!["/a/e".to_string()]);
        assert_eq!(r.node_count(), t.node_count());
    }

    #[test]
    fn containers_show_owner_zero_and_null_data_stays_null() {
        let mut t = DataTree::new();
        let acl = open(&t);
        t.create("/c", None, acl.clone(), CONTAINER_OWNER, 1, 0)
            .unwrap();
        assert_eq!(t.get("/c").unwrap().client_stat().ephemeral_owner, 0);
        assert!(t.get("/c").unwrap().data.is_none());
        t.create("/e", Some(Bytes::new()), acl, 0, 2, 0).unwrap();
        assert_eq!(t.get("/e").unwrap().data.as_deref(), Some(&b""[..]));
        assert_eq!(t.get("/e").unwrap().client_stat().data_length, 0);
    }
}
