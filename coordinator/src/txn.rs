//! Transactions: what the write pipeline logs, and how one is applied.
//!
//! A transaction holds only resolved facts (the sequential name already chosen, the ACL
//! already expanded), so applying it is deterministic: the live path and log replay run the
//! same [`apply`]. Failed writes are logged too ([`Txn::Error`], [`Txn::MultiFailed`]): like
//! ZooKeeper they consume a zxid, which keeps zxids identical to a ZooKeeper server's.

use crate::session::SessionTracker;
use crate::tree::{Change, DataTree};
use bytes::Bytes;
use fjord_shared::jute::{Acl, Id, Stat};
use serde::{Deserialize, Serialize};

/// An ACL entry as stored: (perms, scheme, id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRec(pub i32, pub String, pub String);

pub fn acl_to_rec(acl: &[Acl]) -> Vec<AclRec> {
    acl.iter()
        .map(|a| AclRec(a.perms, a.id.scheme.clone(), a.id.id.clone()))
        .collect()
}

pub fn acl_from_rec(rec: &[AclRec]) -> Vec<Acl> {
    rec.iter()
        .map(|r| Acl {
            perms: r.0,
            id: Id {
                scheme: r.1.clone(),
                id: r.2.clone(),
            },
        })
        .collect()
}

/// One logged change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Txn {
    CreateSession {
        timeout_ms: i32,
        passwd: [u8; 16],
    },
    /// Close or expiry: deletes the session's ephemeral nodes.
    CloseSession,
    Create {
        path: String,
        data: Option<Bytes>,
        acl: Vec<AclRec>,
        owner: i64,
    },
    Delete {
        path: String,
    },
    SetData {
        path: String,
        data: Option<Bytes>,
    },
    SetAcl {
        path: String,
        acl: Vec<AclRec>,
    },
    /// A version check that passed; changes nothing.
    Check {
        path: String,
    },
    /// A write that failed validation.
    Error {
        err: i32,
    },
    Multi(Vec<Txn>),
    /// A multi that failed: the per-op error codes (0 before the failure, the code, then -2).
    MultiFailed(Vec<i32>),
}

/// A transaction with its header, as it sits in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub zxid: i64,
    /// Wall-clock milliseconds, used for ctime and mtime.
    pub time: i64,
    pub session: i64,
    pub txn: Txn,
}

/// What applying one operation produced, for building its reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpOutcome {
    pub path: Option<String>,
    pub stat: Option<Stat>,
}

/// The state transactions change.
#[derive(Debug)]
pub struct State {
    pub tree: DataTree,
    pub sessions: SessionTracker,
    pub last_zxid: i64,
}

/// Applies one transaction at clock `now` (ms, for session deadlines). Returns the watch
/// triggers in firing order and one outcome per operation.
pub fn apply(state: &mut State, rec: &TxnRecord, now: u64) -> (Vec<Change>, Vec<OpOutcome>) {
    let mut changes = Vec::new();
    let mut outcomes = Vec::new();
    apply_one(state, rec, &rec.txn, now, &mut changes, &mut outcomes);
    if rec.zxid > state.last_zxid {
        state.last_zxid = rec.zxid;
    }
    (changes, outcomes)
}

fn stat_of(tree: &DataTree, path: &str) -> Option<Stat> {
    tree.get(path).map(|n| n.client_stat())
}

fn apply_one(
    state: &mut State,
    rec: &TxnRecord,
    txn: &Txn,
    now: u64,
    changes: &mut Vec<Change>,
    outcomes: &mut Vec<OpOutcome>,
) {
    let tree = &mut state.tree;
    let out = match txn {
        Txn::CreateSession { timeout_ms, passwd } => {
            state.sessions.add(rec.session, *timeout_ms, *passwd, now);
            OpOutcome::default()
        }
        Txn::CloseSession => {
            changes.extend(tree.kill_session(rec.session, rec.zxid));
            state.sessions.remove(rec.session);
            OpOutcome::default()
        }
        Txn::Create {
            path,
            data,
            acl,
            owner,
        } => {
            let acl = tree.intern_acl(acl_from_rec(acl));
            if let Some(c) = tree.create(path, data.as_deref(), acl, *owner, rec.zxid, rec.time) {
                changes.extend(c);
            }
            OpOutcome {
                path: Some(path.clone()),
                stat: stat_of(tree, path),
            }
        }
        Txn::Delete { path } => {
            if let Some(c) = tree.delete(path, rec.zxid) {
                changes.extend(c);
            }
            OpOutcome::default()
        }
        Txn::SetData { path, data } => {
            if let Some(c) = tree.set_data(path, data.as_deref(), rec.zxid, rec.time) {
                changes.extend(c);
            }
            OpOutcome {
                path: None,
                stat: stat_of(tree, path),
            }
        }
        Txn::SetAcl { path, acl } => {
            let acl = tree.intern_acl(acl_from_rec(acl));
            tree.set_acl(path, acl);
            OpOutcome {
                path: None,
                stat: stat_of(tree, path),
            }
        }
        Txn::Check { .. } | Txn::Error { .. } | Txn::MultiFailed(_) => OpOutcome::default(),
        Txn::Multi(ops) => {
            for op in ops {
                apply_one(state, rec, op, now, changes, outcomes);
            }
            return;
        }
    };
    outcomes.push(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(zxid: i64, session: i64, txn: Txn) -> TxnRecord {
        TxnRecord {
            zxid,
            time: 1000 + zxid,
            session,
            txn,
        }
    }

    fn create(path: &str, owner: i64) -> Txn {
        Txn::Create {
            path: path.into(),
            data: None,
            acl: acl_to_rec(&Acl::open_unsafe()),
            owner,
        }
    }

    #[test]
    fn replaying_the_same_records_gives_the_same_state() {
        let log = vec![
            rec(
                1,
                9,
                Txn::CreateSession {
                    timeout_ms: 4000,
                    passwd: [3; 16],
                },
            ),
            rec(2, 9, create("/a", 0)),
            rec(
                3,
                9,
                Txn::Multi(vec![
                    create("/a/e", 9),
                    Txn::SetData {
                        path: "/a".into(),
                        data: Some(Bytes::from_static(b"v")),
                    },
                ]),
            ),
            rec(4, 9, Txn::Error { err: -110 }),
            rec(5, 9, Txn::CloseSession),
        ];
        let run = || {
            let mut s = State {
                tree: DataTree::new(),
                sessions: SessionTracker::new(100),
                last_zxid: 0,
            };
            let mut all = Vec::new();
            for r in &log {
                all.push(apply(&mut s, r, 0));
            }
            (s, all)
        };
        let (a, outs) = run();
        let (b, _) = run();
        assert_eq!(a.last_zxid, 5);
        assert!(
            a.tree.get("/a/e").is_none(),
            "the ephemeral died with its session"
        );
        assert!(!a.sessions.contains(9));
        assert_eq!(
            a.tree.get("/a").unwrap().client_stat(),
            b.tree.get("/a").unwrap().client_stat()
        );
        // The multi reported one outcome per op, with the create's stat.
        let (changes, outcomes) = &outs[2];
        assert_eq!(outcomes.len(), 2);
        assert_eq!(outcomes[0].path.as_deref(), Some("/a/e"));
        assert_eq!(outcomes[0].stat.as_ref().unwrap().ephemeral_owner, 9);
        assert_eq!(
            changes,
            &vec![
                Change::Created("/a/e".into()),
                Change::DataChanged("/a".into())
            ]
        );
        let (changes, _) = &outs[4];
        assert_eq!(changes, &vec![Change::Deleted("/a/e".into())]);
    }

    #[test]
    fn records_round_trip_through_msgpack() {
        let r = rec(
            7,
            1,
            Txn::Multi(vec![create("/x", 0), Txn::MultiFailed(vec![0, -101, -2])]),
        );
        let bytes = rmp_serde::to_vec(&r).unwrap();
        let back: TxnRecord = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, r);
    }
}
