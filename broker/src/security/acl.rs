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
