//! Membership changes in ZooKeeper's terms: the `reconfig` request's server lists, and the
//! text of the `/zookeeper/config` node.
//!
//! A server is written `server.ID=HOST:PORT` (ZooKeeper's form
//! `server.ID=HOST:QUORUMPORT:ELECTIONPORT[:ROLE][;CLIENT]` is accepted; the first
//! `HOST:PORT` is the member's peer address and the rest is ignored). `leavingServers` is a
//! comma-separated list of ids. Learners (members that replicate but do not vote) show as
//! `observer`.

use super::Membership;
use std::collections::BTreeMap;

/// A requested change of the voting members.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub add: BTreeMap<u64, String>,
    pub remove: Vec<u64>,
    /// A whole new member list (ZooKeeper's non-incremental reconfig), instead of add and
    /// remove.
    pub replace: Option<BTreeMap<u64, String>>,
}

/// Parses one `server.ID=HOST:PORT...` entry.
fn server(spec: &str) -> Result<(u64, String), String> {
    let spec = spec.trim();
    let (key, value) = spec
        .split_once('=')
        .ok_or_else(|| format!("{spec:?} is not server.ID=HOST:PORT"))?;
    let id: u64 = key
        .trim()
        .strip_prefix("server.")
        .unwrap_or(key.trim())
        .parse()
        .map_err(|_| format!("{spec:?}: the id is not a number"))?;
    if id == 0 || id > 255 {
        return Err(format!("{spec:?}: member ids are 1..=255"));
    }
    let value = value.split(';').next().unwrap_or("");
    let mut parts = value.split(':');
    let host = parts.next().unwrap_or("").trim();
    let port = parts.next().unwrap_or("").trim();
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("{spec:?}: no HOST:PORT"));
    }
    Ok((id, format!("{host}:{port}")))
}

fn servers(list: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut out = BTreeMap::new();
    for spec in list.split([',', '\n']).filter(|s| !s.trim().is_empty()) {
        let (id, addr) = server(spec)?;
        if out.insert(id, addr).is_some() {
            return Err(format!("member {id} is named twice"));
        }
    }
    Ok(out)
}

impl Change {
    /// From a reconfig request's three lists.
    pub fn parse(joining: &str, leaving: &str, new_members: &str) -> Result<Change, String> {
        let replace = if new_members.trim().is_empty() {
            None
        } else {
            if !joining.trim().is_empty() || !leaving.trim().is_empty() {
                return Err("newMembers cannot be combined with joining or leaving".into());
            }
            Some(servers(new_members)?)
        };
        let mut remove = Vec::new();
        for id in leaving.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let id = id
                .strip_prefix("server.")
                .unwrap_or(id)
                .parse()
                .map_err(|_| format!("leaving server {id:?} is not an id"))?;
            remove.push(id);
        }
        let change = Change {
            add: servers(joining)?,
            remove,
            replace,
        };
        if change.add.is_empty() && change.remove.is_empty() && change.replace.is_none() {
            return Err("the reconfig changes nothing".into());
        }
        Ok(change)
    }

    /// The voters (id → peer address) after the change, given the current members.
    pub fn apply(&self, current: &BTreeMap<u64, String>) -> Result<BTreeMap<u64, String>, String> {
        let next = match &self.replace {
            Some(all) => all.clone(),
            None => {
                let mut next = current.clone();
                for (id, addr) in &self.add {
                    next.insert(*id, addr.clone());
                }
                for id in &self.remove {
                    if next.remove(id).is_none() {
                        return Err(format!("member {id} is not a voter"));
                    }
                }
                next
            }
        };
        if next.is_empty() {
            return Err("an ensemble needs at least one voting member".into());
        }
        Ok(next)
    }
}

/// The voters of a membership, id → peer address.
pub fn voters(m: &Membership) -> BTreeMap<u64, String> {
    m.voter_ids()
        .map(|id| {
            let addr = m.get_node(&id).map(|n| n.addr.clone()).unwrap_or_default();
            (id, addr)
        })
        .collect()
}

/// The `/zookeeper/config` text: one `server.ID=ADDR:ROLE` line per member, then the
/// version (the zxid of the membership entry, in hex, as ZooKeeper writes it).
pub fn config_text(m: &Membership, zxid: i64) -> String {
    let mut out = String::new();
    let voters: Vec<u64> = m.voter_ids().collect();
    for (id, node) in m.nodes() {
        let role = if voters.contains(id) {
            "participant"
        } else {
            "observer"
        };
        out.push_str(&format!("server.{id}={}:{role}\n", node.addr));
    }
    out.push_str(&format!("version={zxid:x}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconfig_lists_parse_like_zookeeper_and_bad_ones_are_refused() {
        let c = Change::parse(
            "server.4=127.0.0.5:2888:3888:participant;127.0.0.5:2181",
            "2, 3",
            "",
        )
        .unwrap();
        assert_eq!(c.add[&4], "127.0.0.5:2888");
        assert_eq!(c.remove, vec![2, 3]);
        let cur: BTreeMap<u64, String> = [(1, "a:1"), (2, "b:1"), (3, "c:1")]
            .into_iter()
            .map(|(i, a)| (i, a.to_owned()))
            .collect();
        let next = c.apply(&cur).unwrap();
        assert_eq!(next.keys().copied().collect::<Vec<_>>(), vec![1, 4]);
        let r = Change::parse("", "", "server.1=a:1,server.2=b:2").unwrap();
        assert_eq!(r.apply(&cur).unwrap().len(), 2);
        for (j, l, n) in [
            ("", "", ""),
            ("server.x=a:1", "", ""),
            ("server.4=a", "", ""),
            ("server.4=a:1,server.4=b:1", "", ""),
            ("", "two", ""),
            ("server.4=a:1", "", "server.1=a:1"),
        ] {
            assert!(
                Change::parse(j, l, n).is_err(),
                "{j:?} {l:?} {n:?} was accepted"
            );
        }
        assert!(Change::parse("", "9", "").unwrap().apply(&cur).is_err());
        assert!(Change::parse("", "1,2,3", "").unwrap().apply(&cur).is_err());
    }

    #[test]
    fn config_text_lists_members_and_version() {
        let m = Membership::new(
            vec![[1, 2].into_iter().collect()],
            [(1, "a:1"), (2, "b:2")]
                .into_iter()
                .map(|(i, a)| (i, openraft::BasicNode::new(a)))
                .collect::<BTreeMap<_, _>>(),
        );
        assert_eq!(
            config_text(&m, 0x1a),
            "server.1=a:1:participant\nserver.2=b:2:participant\nversion=1a"
        );
    }
}
