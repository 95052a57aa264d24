//! Validation of writes: request → transaction, or the error ZooKeeper would give.
//!
//! The checks and their order follow ZooKeeper 3.8's `PrepRequestProcessor`, because the
//! order decides which error a client sees when several apply (a create under a missing
//! parent with a bad ACL is `InvalidACL`, not `NoNode`). A multi is validated op by op
//! against an [`Overlay`] that records the effect of the earlier ops, so that
//! "create /a then create /a/b" validates without touching the tree.

use crate::acl;
use crate::tree::{validate_path, DataTree, CONTAINER_OWNER};
use crate::txn::{acl_to_rec, Txn};
use fjord_shared::jute::{
    op, perms, Acl, CheckVersionRequest, CreateMode, CreateRequest, DeleteRequest, ErrorCode, Id,
    SetAclRequest, SetDataRequest,
};
use std::collections::HashMap;
use std::sync::Arc;

/// A write operation, decoded.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// `op` is create, create2, createContainer or createTTL.
    Create {
        op: i32,
        req: CreateRequest,
        ttl: i64,
    },
    Delete(DeleteRequest),
    SetData(SetDataRequest),
    SetAcl(SetAclRequest),
    Check(CheckVersionRequest),
}

impl WriteOp {
    /// The opcode, which decides the shape of the reply.
    pub fn opcode(&self) -> i32 {
        match self {
            WriteOp::Create { op, .. } => *op,
            WriteOp::Delete(_) => op::DELETE,
            WriteOp::SetData(_) => op::SET_DATA,
            WriteOp::SetAcl(_) => op::SET_ACL,
            WriteOp::Check(_) => op::CHECK,
        }
    }
}

/// What validation needs to know of a node.
#[derive(Debug, Clone)]
struct PrepNode {
    version: i32,
    aversion: i32,
    cversion: i32,
    children: i32,
    owner: i64,
    acl: Arc<Vec<Acl>>,
}

/// The tree plus the pending effects of earlier ops in the same multi.
#[derive(Debug)]
pub struct Overlay<'a> {
    tree: &'a DataTree,
    changes: HashMap<String, Option<PrepNode>>,
}

impl<'a> Overlay<'a> {
    pub fn new(tree: &'a DataTree) -> Overlay<'a> {
        Overlay {
            tree,
            changes: HashMap::new(),
        }
    }

    fn get(&self, path: &str) -> Option<PrepNode> {
        if let Some(c) = self.changes.get(path) {
            return c.clone();
        }
        self.tree.get(path).map(|n| PrepNode {
            version: n.stat.version,
            aversion: n.stat.aversion,
            cversion: n.stat.cversion,
            children: n.num_children() as i32,
            owner: n.stat.ephemeral_owner,
            acl: n.acl.clone(),
        })
    }

    fn record(&self, path: &str) -> Result<PrepNode, ErrorCode> {
        self.get(path).ok_or(ErrorCode::NoNode)
    }
}

/// Who is writing.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub session: i64,
    pub ids: &'a [Id],
}

fn check_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(current.wrapping_add(1))
}

/// The parent of a path for create/delete: everything before the last `/`, with ZooKeeper's
/// checks (a slash must exist, no NUL).
fn parent_for(path: &str) -> Result<&str, ErrorCode> {
    let Some(i) = path.rfind('/') else {
        return Err(ErrorCode::BadArguments);
    };
    if path.contains('\0') {
        return Err(ErrorCode::BadArguments);
    }
    Ok(if i == 0 { "/" } else { &path[..i] })
}

fn is_special(path: &str) -> bool {
    matches!(
        path,
        "/" | "/zookeeper" | "/zookeeper/quota" | "/zookeeper/config"
    )
}

/// Validates one write op and records its effect in the overlay.
pub fn prep(ov: &mut Overlay<'_>, ctx: Ctx<'_>, w: &WriteOp) -> Result<Txn, ErrorCode> {
    match w {
        WriteOp::Create {
            op: code,
            req,
            ttl: _,
        } => {
            let mode = CreateMode::from_flags(req.flags).ok_or(ErrorCode::BadArguments)?;
            if mode.is_ttl() || *code == op::CREATE_TTL {
                // TTL nodes are off, as in a default ZooKeeper (extendedTypesEnabled=false).
                return Err(ErrorCode::Unimplemented);
            }
            let parent_path = parent_for(&req.path)?.to_owned();
            let acl = acl::fixup(&req.acl, ctx.ids)?;
            // The parent is the text before the last slash, so `/a/` has parent `/a`; a bad
            // name is only rejected after the parent checks, as ZooKeeper does.
            let parent = ov.record(&parent_path)?;
            acl::check(&parent.acl, perms::CREATE, ctx.ids)?;
            let path = if mode.is_sequential() {
                format!("{}{:010}", req.path, parent.cversion)
            } else {
                req.path.clone()
            };
            if !validate_path(&path) {
                return Err(ErrorCode::BadArguments);
            }
            if ov.get(&path).is_some() {
                return Err(ErrorCode::NodeExists);
            }
            if parent.owner != 0 && parent.owner != CONTAINER_OWNER {
                return Err(ErrorCode::NoChildrenForEphemerals);
            }
            let owner = if *code == op::CREATE_CONTAINER || mode == CreateMode::Container {
                CONTAINER_OWNER
            } else if mode.is_ephemeral() {
                ctx.session
            } else {
                0
            };
            let mut p = parent;
            p.cversion += 1;
            p.children += 1;
            ov.changes.insert(parent_path, Some(p));
            ov.changes.insert(
                path.clone(),
                Some(PrepNode {
                    version: 0,
                    aversion: 0,
                    cversion: 0,
                    children: 0,
                    owner,
                    acl: Arc::new(acl.clone()),
                }),
            );
            Ok(Txn::Create {
                path,
                data: req.data.clone(),
                acl: acl_to_rec(&acl),
                owner,
            })
        }
        WriteOp::Delete(req) => {
            let parent_path = parent_for(&req.path)?;
            if is_special(&req.path) {
                return Err(ErrorCode::BadArguments);
            }
            let parent_path = parent_path.to_owned();
            let parent = ov.record(&parent_path)?;
            acl::check(&parent.acl, perms::DELETE, ctx.ids)?;
            let node = ov.record(&req.path)?;
            check_version(node.version, req.version)?;
            if node.children > 0 {
                return Err(ErrorCode::NotEmpty);
            }
            let mut p = parent;
            p.children -= 1;
            ov.changes.insert(parent_path, Some(p));
            ov.changes.insert(req.path.clone(), None);
            Ok(Txn::Delete {
                path: req.path.clone(),
            })
        }
        WriteOp::SetData(req) => {
            if !validate_path(&req.path) {
                return Err(ErrorCode::BadArguments);
            }
            let mut node = ov.record(&req.path)?;
            acl::check(&node.acl, perms::WRITE, ctx.ids)?;
            node.version = check_version(node.version, req.version)?;
            ov.changes.insert(req.path.clone(), Some(node));
            Ok(Txn::SetData {
                path: req.path.clone(),
                data: req.data.clone(),
            })
        }
        WriteOp::SetAcl(req) => {
            if !validate_path(&req.path) {
                return Err(ErrorCode::BadArguments);
            }
            let acl = acl::fixup(&req.acl, ctx.ids)?;
            let mut node = ov.record(&req.path)?;
            acl::check(&node.acl, perms::ADMIN, ctx.ids)?;
            node.aversion = check_version(node.aversion, req.version)?;
            node.acl = Arc::new(acl.clone());
            ov.changes.insert(req.path.clone(), Some(node));
            Ok(Txn::SetAcl {
                path: req.path.clone(),
                acl: acl_to_rec(&acl),
            })
        }
        WriteOp::Check(req) => {
            if !validate_path(&req.path) {
                return Err(ErrorCode::BadArguments);
            }
            let node = ov.record(&req.path)?;
            acl::check(&node.acl, perms::READ, ctx.ids)?;
            check_version(node.version, req.version)?;
            Ok(Txn::Check {
                path: req.path.clone(),
            })
        }
    }
}

/// Validates a multi. On the first failure the result is ZooKeeper's per-op codes: 0 for
/// the ops before it, its code, and `RuntimeInconsistency` for the rest.
pub fn prep_multi(tree: &DataTree, ctx: Ctx<'_>, ops: &[WriteOp]) -> Txn {
    let mut ov = Overlay::new(tree);
    let mut txns = Vec::with_capacity(ops.len());
    for (i, w) in ops.iter().enumerate() {
        match prep(&mut ov, ctx, w) {
            Ok(t) => txns.push(t),
            Err(e) => {
                let mut codes = vec![0; i];
                codes.push(e.code());
                codes.resize(ops.len(), ErrorCode::RuntimeInconsistency.code());
                return Txn::MultiFailed(codes);
            }
        }
    }
    Txn::Multi(txns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(path: &str, flags: i32) -> WriteOp {
        WriteOp::Create {
            op: op::CREATE,
            req: CreateRequest {
                path: path.into(),
                data: None,
                acl: Acl::open_unsafe(),
                flags,
            },
            ttl: 0,
        }
    }

    fn ctx() -> Ctx<'static> {
        Ctx {
            session: 5,
            ids: &[],
        }
    }

    #[test]
    fn create_errors_follow_zookeeper_order() {
        let t = DataTree::new();
        let mut ov = Overlay::new(&t);
        assert_eq!(
            prep(&mut ov, ctx(), &create("/a/b", 0)),
            Err(ErrorCode::NoNode)
        );
        assert_eq!(
            prep(&mut ov, ctx(), &create("a", 0)),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            prep(&mut ov, ctx(), &create("/a/", 0)),
            Err(ErrorCode::NoNode)
        );
        assert_eq!(
            prep(&mut ov, ctx(), &create("/zookeeper", 0)),
            Err(ErrorCode::NodeExists)
        );
        assert_eq!(
            prep(&mut ov, ctx(), &create("/x", 9)),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            prep(&mut ov, ctx(), &create("/x", 5)),
            Err(ErrorCode::Unimplemented)
        );
        let bad_acl = WriteOp::Create {
            op: op::CREATE,
            req: CreateRequest {
                path: "/a/b".into(),
                data: None,
                acl: vec![],
                flags: 0,
            },
            ttl: 0,
        };
        assert_eq!(prep(&mut ov, ctx(), &bad_acl), Err(ErrorCode::InvalidAcl));
    }

    #[test]
    fn sequential_names_use_the_parent_counter() {
        let t = DataTree::new();
        let mut ov = Overlay::new(&t);
        let Txn::Create { path, .. } = prep(&mut ov, ctx(), &create("/q-", 2)).unwrap() else {
            panic!()
        };
        assert_eq!(path, "/q-0000000000");
        let Txn::Create { path, .. } = prep(&mut ov, ctx(), &create("/q-", 2)).unwrap() else {
            panic!()
        };
        assert_eq!(path, "/q-0000000001");
    }

    #[test]
    fn ephemeral_parents_refuse_children_within_a_multi() {
        let t = DataTree::new();
        let txn = prep_multi(
            &t,
            ctx(),
            &[create("/e", 1), create("/e/c", 0), create("/z", 0)],
        );
        assert_eq!(
            txn,
            Txn::MultiFailed(vec![0, ErrorCode::NoChildrenForEphemerals.code(), -2])
        );
        let txn = prep_multi(&t, ctx(), &[create("/p", 0), create("/p/c", 0)]);
        assert!(matches!(txn, Txn::Multi(ref v) if v.len() == 2));
    }

    #[test]
    fn delete_checks_version_and_children() {
        let mut t = DataTree::new();
        let acl = t.intern_acl(Acl::open_unsafe());
        t.create("/a", None, acl.clone(), 0, 1, 0);
        t.create("/a/b", None, acl, 0, 2, 0);
        let del = |p: &str, v: i32| {
            WriteOp::Delete(DeleteRequest {
                path: p.into(),
                version: v,
            })
        };
        let mut ov = Overlay::new(&t);
        assert_eq!(
            prep(&mut ov, ctx(), &del("/a", -1)),
            Err(ErrorCode::NotEmpty)
        );
        assert_eq!(
            prep(&mut ov, ctx(), &del("/a/b", 3)),
            Err(ErrorCode::BadVersion)
        );
        assert_eq!(
            prep(&mut ov, ctx(), &del("/zookeeper", -1)),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            prep(&mut ov, ctx(), &del("/nope", -1)),
            Err(ErrorCode::NoNode)
        );
        assert!(prep(&mut ov, ctx(), &del("/a/b", 0)).is_ok());
        // Within the same overlay, /a is now empty.
        assert!(prep(&mut ov, ctx(), &del("/a", -1)).is_ok());
    }

    #[test]
    fn set_data_versions_advance_within_a_multi() {
        let mut t = DataTree::new();
        let acl = t.intern_acl(Acl::open_unsafe());
        t.create("/a", None, acl, 0, 1, 0);
        let set = |v: i32| {
            WriteOp::SetData(SetDataRequest {
                path: "/a".into(),
                data: None,
                version: v,
            })
        };
        let check = |v: i32| {
            WriteOp::Check(CheckVersionRequest {
                path: "/a".into(),
                version: v,
            })
        };
        assert!(matches!(
            prep_multi(&t, ctx(), &[set(0), set(1), check(2)]),
            Txn::Multi(_)
        ));
        assert_eq!(
            prep_multi(&t, ctx(), &[set(0), check(0)]),
            Txn::MultiFailed(vec![0, -103])
        );
    }
}
