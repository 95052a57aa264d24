//! Kafka's ACL model: resources, pattern types, operations, permissions, bindings and the
//! filters DescribeAcls and DeleteAcls take. Codes are the protocol's.

use std::fmt;

/// A resource type (AclResourceType codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

impl ResourceType {
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
    ];

    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
        }
    }

    pub fn from_code(code: i8) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The name in Kafka's znode layout (`/kafka-acl/Topic/...`).
    pub fn znode_name(self) -> &'static str {
        match self {
            ResourceType::Topic => "Topic",
            ResourceType::Group => "Group",
            ResourceType::Cluster => "Cluster",
            ResourceType::TransactionalId => "TransactionalId",
        }
    }
}

/// How an ACL's resource name matches (PatternType codes 3 and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PatternType {
    /// The exact name, or every resource when the name is `*`.
    Literal,
    /// Every resource whose name starts with it.
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    pub fn from_code(code: i8) -> Option<PatternType> {
        [PatternType::Literal, PatternType::Prefixed]
            .into_iter()
            .find(|p| p.code() == code)
    }
}

/// The protocol's "ANY" code in filters (resource type, pattern, operation, permission).
pub const ANY: i8 = 1;
/// PatternType MATCH in filters.
pub const MATCH: i8 = 2;

/// The name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

impl AclBinding {
    /// A binding from CreateAcls codes; a message for INVALID_REQUEST if it is not one a
    /// client may create.
    #[allow(clippy::too_many_arguments)]
    pub fn from_codes(
        resource_type: i8,
        name: &str,
        pattern: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<AclBinding, String> {
        let resource_type = ResourceType::from_code(resource_type)
            .ok_or_else(|| format!("resource type {resource_type} cannot be used in an ACL"))?;
        let pattern = PatternType::from_code(pattern)
            .ok_or_else(|| format!("pattern type {pattern} must be LITERAL or PREFIXED"))?;
        let operation = Operation::from_code(operation)
            .ok_or_else(|| format!("operation {operation} cannot be used in an ACL"))?;
        let permission = Permission::from_code(permission)
            .ok_or_else(|| format!("permission {permission} must be ALLOW or DENY"))?;
        if name.is_empty() {
            return Err("the resource name is empty".to_owned());
        }
        if resource_type == ResourceType::Cluster && name != CLUSTER_NAME {
            return Err(format!("the cluster resource is named {CLUSTER_NAME}"));
        }
        if pattern == PatternType::Prefixed && name == "*" {
            return Err("a PREFIXED ACL cannot be named '*' (use LITERAL)".to_owned());
        }
        match principal.split_once(':') {
            Some((kind, who)) if !kind.is_empty() && !who.is_empty() => {}
            _ => return Err(format!("principal {principal:?} is not Type:name")),
        }
        if host.is_empty() {
            return Err("the host is empty (use '*' for any)".to_owned());
        }
        Ok(AclBinding {
            resource_type,
            name: name.to_owned(),
            pattern,
            principal: principal.to_owned(),
            host: host.to_owned(),
            operation,
            permission,
        })
    }
}

impl AclFilter {
    /// A filter from DescribeAcls/DeleteAcls codes (ANY = 1; MATCH = 2 for patterns).
    #[allow(clippy::too_many_arguments)]
    pub fn from_codes(
        resource_type: i8,
        name: Option<&str>,
        pattern: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<AclFilter, String> {
        let resource_type = match resource_type {
            ANY => None,
            c => Some(
                ResourceType::from_code(c)
                    .ok_or_else(|| format!("bad resource type filter {c}"))?,
            ),
        };
        let pattern = match pattern {
            ANY => PatternFilter::Any,
            MATCH => PatternFilter::Match,
            c => PatternFilter::Exactly(
                PatternType::from_code(c).ok_or_else(|| format!("bad pattern type filter {c}"))?,
            ),
        };
        let operation = match operation {
            ANY => None,
            c => Some(Operation::from_code(c).ok_or_else(|| format!("bad operation filter {c}"))?),
        };
        let permission = match permission {
            ANY => None,
            c => {
                Some(Permission::from_code(c).ok_or_else(|| format!("bad permission filter {c}"))?)
            }
        };
        Ok(AclFilter {
            resource_type,
            name: name.map(str::to_owned),
            pattern,
            principal: principal.map(str::to_owned),
            host: host.map(str::to_owned),
            operation,
            permission,
        })
    }
}

/// An operation (AclOperation codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
}

impl Operation {
    pub const EVERY: [Operation; 13] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::CreateTokens,
        Operation::DescribeTokens,
    ];

    pub fn code(self) -> i8 {
        match self {
            Operation::All => 2,
            Operation::Read => 3,
            Operation::Write => 4,
            Operation::Create => 5,
            Operation::Delete => 6,
            Operation::Alter => 7,
            Operation::Describe => 8,
            Operation::ClusterAction => 9,
            Operation::DescribeConfigs => 10,
            Operation::AlterConfigs => 11,
            Operation::IdempotentWrite => 12,
            Operation::CreateTokens => 13,
            Operation::DescribeTokens => 14,
        }
    }

    pub fn from_code(code: i8) -> Option<Operation> {
        Operation::EVERY.into_iter().find(|o| o.code() == code)
    }

    /// The name in Kafka's znode JSON (`"operation":"Read"`).
    pub fn znode_name(self) -> &'static str {
        match self {
            Operation::All => "All",
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Create => "Create",
            Operation::Delete => "Delete",
            Operation::Alter => "Alter",
            Operation::Describe => "Describe",
            Operation::ClusterAction => "ClusterAction",
            Operation::DescribeConfigs => "DescribeConfigs",
            Operation::AlterConfigs => "AlterConfigs",
            Operation::IdempotentWrite => "IdempotentWrite",
            Operation::CreateTokens => "CreateTokens",
            Operation::DescribeTokens => "DescribeTokens",
        }
    }

    /// The operations an ALLOW of which permits `self` (Kafka: READ, WRITE, DELETE and
    /// ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS; ALL implies all).
    pub fn allowed_by(self) -> &'static [Operation] {
        match self {
            Operation::Describe => &[
                Operation::All,
                Operation::Describe,
                Operation::Read,
                Operation::Write,
                Operation::Delete,
                Operation::Alter,
            ],
            Operation::DescribeConfigs => &[
                Operation::All,
                Operation::DescribeConfigs,
                Operation::AlterConfigs,
            ],
            Operation::Read => &[Operation::All, Operation::Read],
            Operation::Write => &[Operation::All, Operation::Write],
            Operation::Create => &[Operation::All, Operation::Create],
            Operation::Delete => &[Operation::All, Operation::Delete],
            Operation::Alter => &[Operation::All, Operation::Alter],
            Operation::ClusterAction => &[Operation::All, Operation::ClusterAction],
            Operation::AlterConfigs => &[Operation::All, Operation::AlterConfigs],
            Operation::IdempotentWrite => &[Operation::All, Operation::IdempotentWrite],
            Operation::CreateTokens => &[Operation::All, Operation::CreateTokens],
            Operation::DescribeTokens => &[Operation::All, Operation::DescribeTokens],
            Operation::All => &[Operation::All],
        }
    }
}

/// ALLOW or DENY (AclPermissionType codes 3 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn from_code(code: i8) -> Option<Permission> {
        match code {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }
}

/// One ACL: who may (or may not) do what to which resources, from where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern: PatternType,
    /// `User:<name>`, or `User:*` for every principal.
    pub principal: String,
    /// A client address, or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl fmt::Display for AclBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {} on {:?}:{}:{:?} for {} from {}",
            self.permission,
            self.operation.znode_name(),
            self.resource_type,
            self.name,
            self.pattern,
            self.principal,
            self.host
        )
    }
}

impl AclBinding {
    /// True if this ACL's resource pattern covers the resource `name` of its type.
    pub fn covers(&self, name: &str) -> bool {
        match self.pattern {
            PatternType::Literal => self.name == name || self.name == "*",
            PatternType::Prefixed => name.starts_with(&self.name),
        }
    }
}

impl AclBinding {
    /// True if this ACL's pattern covers every resource `other`'s pattern names (a DENY
    /// that leaves nothing of an ALLOW).
    pub fn covers_pattern(&self, other: &AclBinding) -> bool {
        match (self.pattern, other.pattern) {
            (PatternType::Literal, _) if self.name == "*" => true,
            (PatternType::Literal, PatternType::Literal) => self.name == other.name,
            (PatternType::Prefixed, _) => other.name.starts_with(&self.name),
            (PatternType::Literal, PatternType::Prefixed) => false,
        }
    }
}

/// A pattern filter of DescribeAcls/DeleteAcls: `None` fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

/// PatternType in a filter: ANY (1), MATCH (2), or one type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PatternFilter {
    #[default]
    Any,
    /// ACLs that would apply to the named resource: the literal name, the literal
    /// wildcard and every prefix of it.
    Match,
    Exactly(PatternType),
}

impl AclFilter {
    pub fn matches(&self, acl: &AclBinding) -> bool {
        let name_ok = match (&self.name, self.pattern) {
            (None, _) => true,
            (Some(n), PatternFilter::Match) => {
                (acl.pattern == PatternType::Literal && (acl.name == *n || acl.name == "*"))
                    || (acl.pattern == PatternType::Prefixed && n.starts_with(&acl.name))
            }
            (Some(n), _) => acl.name == *n,
        };
        let pattern_ok = match self.pattern {
            PatternFilter::Any => true,
            // With a name, MATCH was handled above; without one it matches every pattern.
            PatternFilter::Match => true,
            PatternFilter::Exactly(p) => acl.pattern == p,
        };
        name_ok
            && pattern_ok
            && self.resource_type.is_none_or(|r| r == acl.resource_type)
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }
}
