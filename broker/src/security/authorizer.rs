//! The ACL authorizer, with Kafka's semantics (`AclAuthorizer` / `StandardAuthorizer`):
//!
//! - super users may do everything;
//! - an ACL applies to a request when its resource pattern covers the resource (literal
//!   name, literal `*`, or a prefix), its principal is the caller's or `User:*`, and its
//!   host is the caller's or `*`;
//! - a DENY for the operation (or for ALL) wins over any ALLOW;
//! - an ALLOW of the operation, of ALL, or of an operation that implies it (READ, WRITE,
//!   DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS) permits it;
//! - with no ACL at all on the resource, `allow_everyone_if_no_acl_found` decides
//!   (false by default, as in Kafka).
//!
//! Pure: the caller keeps it in step with the stored ACLs.

use super::acl::{AclBinding, AclFilter, Operation, Permission, ResourceType};
use std::collections::{BTreeSet, HashSet};

#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    acls: BTreeSet<AclBinding>,
    super_users: HashSet<String>,
    allow_everyone_if_no_acl_found: bool,
}

/// Who is asking, from where.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// `User:<name>` (`User:ANONYMOUS` without authentication).
    pub principal: &'a str,
    pub host: &'a str,
}

impl Authorizer {
    pub fn new(super_users: impl IntoIterator<Item = String>, allow_if_no_acl: bool) -> Authorizer {
        Authorizer {
            acls: BTreeSet::new(),
            super_users: super_users.into_iter().collect(),
            allow_everyone_if_no_acl_found: allow_if_no_acl,
        }
    }

    /// Adds ACLs; returns how many were new.
    pub fn add(&mut self, acls: impl IntoIterator<Item = AclBinding>) -> usize {
        acls.into_iter()
            .filter(|a| self.acls.insert(a.clone()))
            .count()
    }

    /// Replaces every ACL (after a full reload).
    pub fn replace_all(&mut self, acls: impl IntoIterator<Item = AclBinding>) {
        self.acls = acls.into_iter().collect();
    }

    /// Removes and returns the ACLs `filter` matches.
    pub fn remove(&mut self, filter: &AclFilter) -> Vec<AclBinding> {
        let doomed: Vec<AclBinding> = self
            .acls
            .iter()
            .filter(|a| filter.matches(a))
            .cloned()
            .collect();
        for a in &doomed {
            self.acls.remove(a);
        }
        doomed
    }

    /// The ACLs `filter` matches, in a stable order.
    pub fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.acls
            .iter()
            .filter(|a| filter.matches(a))
            .cloned()
            .collect()
    }

    /// Replaces every ACL of one stored resource pattern (what a change notification
    /// brings: the new contents of one znode).
    pub fn replace_resource(
        &mut self,
        resource_type: ResourceType,
        name: &str,
        pattern: super::acl::PatternType,
        acls: impl IntoIterator<Item = AclBinding>,
    ) {
        self.acls.retain(|a| {
            !(a.resource_type == resource_type && a.name == name && a.pattern == pattern)
        });
        self.acls.extend(acls);
    }

    pub fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.contains(principal)
    }

    /// May `caller` perform `op` on the resource?
    pub fn authorize(
        &self,
        caller: Caller<'_>,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if self.is_super_user(caller.principal) {
            return true;
        }
        let mut any_on_resource = false;
        let mut allowed = false;
        for acl in self
            .acls
            .iter()
            .filter(|a| a.resource_type == resource_type && a.covers(name))
        {
            any_on_resource = true;
            let applies = (acl.principal == caller.principal || acl.principal == "User:*")
                && (acl.host == caller.host || acl.host == "*");
            if !applies {
                continue;
            }
            match acl.permission {
                Permission::Deny if acl.operation == op || acl.operation == Operation::All => {
                    return false;
                }
                Permission::Allow if op.allowed_by().contains(&acl.operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!any_on_resource && self.allow_everyone_if_no_acl_found)
    }

    /// May `caller` perform `op` on at least one resource of `resource_type` (Kafka's
    /// authorizeByResourceType, which lets WRITE on any topic permit an idempotent
    /// producer)? True if some ALLOW names a resource that no DENY covers.
    pub fn authorize_any(
        &self,
        caller: Caller<'_>,
        op: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if self.is_super_user(caller.principal) {
            return true;
        }
        let applies = |acl: &AclBinding| {
            acl.resource_type == resource_type
                && (acl.principal == caller.principal || acl.principal == "User:*")
                && (acl.host == caller.host || acl.host == "*")
        };
        let denies: Vec<&AclBinding> = self
            .acls
            .iter()
            .filter(|a| {
                applies(a)
                    && a.permission == Permission::Deny
                    && (a.operation == op || a.operation == Operation::All)
            })
            .collect();
        let any_on_type = self.acls.iter().any(|a| a.resource_type == resource_type);
        if !any_on_type {
            return self.allow_everyone_if_no_acl_found;
        }
        self.acls.iter().any(|a| {
            applies(a)
                && a.permission == Permission::Allow
                && op.allowed_by().contains(&a.operation)
                && !denies.iter().any(|d| d.covers_pattern(a))
        })
    }

    pub fn len(&self) -> usize {
        self.acls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.acls.is_empty()
    }
}

#[cfg(test)]
#[path = "authorizer_tests.rs"]
mod tests;
