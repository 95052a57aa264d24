//! `fjord acls`: Kafka ACLs, as `kafka-acls.sh` lists, adds and removes them, over the
//! Kafka admin APIs (so the brokers' authorizer applies them everywhere within moments).
//!
//! - `list [RESOURCE] [--principal P]`: every ACL, or those of one resource (with
//!   `--resource-pattern-type match`, every ACL that applies to it).
//! - `create (--allow P.. | --deny P..) --operation OP.. RESOURCE [--prefixed] [--host H]`.
//! - `delete [RESOURCE] [--principal P] [--operation OP] ...`: every ACL the filter matches.
//!
//! RESOURCE is `--topic T`, `--group G`, `--transactional-id ID` or `--cluster`.

use std::io::Write;

use clap::{Args, Subcommand, ValueEnum};

use super::error::CliError;
use super::kafka::KafkaArgs;
use super::table::Table;
use crate::security::acl::{
    AclBinding, AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType,
    CLUSTER_NAME,
};

/// `fjord acls <command>`.
#[derive(Debug, Args)]
pub struct AclsArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(subcommand)]
    pub command: AclsCommand,
}

/// One resource, as kafka-acls names them.
#[derive(Debug, Clone, Default, Args)]
pub struct ResourceArgs {
    /// A topic (`*` for every topic).
    #[arg(long, conflicts_with_all = ["group", "transactional_id", "cluster"])]
    pub topic: Option<String>,
    /// A consumer group (`*` for every group).
    #[arg(long, conflicts_with_all = ["transactional_id", "cluster"])]
    pub group: Option<String>,
    /// A transactional id.
    #[arg(long, conflicts_with = "cluster")]
    pub transactional_id: Option<String>,
    /// The cluster.
    #[arg(long)]
    pub cluster: bool,
}

impl ResourceArgs {
    fn resource(&self) -> Option<(ResourceType, String)> {
        if let Some(t) = &self.topic {
            Some((ResourceType::Topic, t.clone()))
        } else if let Some(g) = &self.group {
            Some((ResourceType::Group, g.clone()))
        } else if let Some(x) = &self.transactional_id {
            Some((ResourceType::TransactionalId, x.clone()))
        } else {
            self.cluster
                .then(|| (ResourceType::Cluster, CLUSTER_NAME.to_owned()))
        }
    }
}

/// Pattern types for filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PatternArg {
    Any,
    Match,
    Literal,
    Prefixed,
}

/// An operation as kafka-acls spells it (Read, Write, IdempotentWrite, ...; any case).
fn parse_operation(text: &str) -> Result<Operation, String> {
    let wanted: String = text.chars().filter(|c| *c != '_' && *c != '-').collect();
    Operation::EVERY
        .into_iter()
        .find(|o| o.znode_name().eq_ignore_ascii_case(&wanted))
        .ok_or_else(|| {
            let names: Vec<&str> = Operation::EVERY.iter().map(|o| o.znode_name()).collect();
            format!("unknown operation {text:?} (one of {})", names.join(", "))
        })
}

/// ALLOW or DENY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PermissionArg {
    Allow,
    Deny,
}

/// The `acls` commands.
#[derive(Debug, Subcommand)]
pub enum AclsCommand {
    /// List ACLs (all, or those of one resource).
    List {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Only ACLs of this principal (`User:alice`).
        #[arg(long)]
        principal: Option<String>,
        /// Which patterns: any (default), match (every ACL that applies to the resource),
        /// literal or prefixed.
        #[arg(long, value_enum, default_value = "any")]
        resource_pattern_type: PatternArg,
    },
    /// Add ACLs: each principal gets each operation on the resource.
    Create {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Principals to allow (`User:alice`, `User:*`).
        #[arg(long = "allow", value_name = "PRINCIPAL")]
        allow: Vec<String>,
        /// Principals to deny.
        #[arg(long = "deny", value_name = "PRINCIPAL")]
        deny: Vec<String>,
        /// Operations (Read, Write, Create, Delete, Alter, Describe, ClusterAction,
        /// DescribeConfigs, AlterConfigs, IdempotentWrite, All).
        #[arg(long, required = true, value_parser = parse_operation)]
        operation: Vec<Operation>,
        /// The resource name is a prefix (PREFIXED pattern) rather than a literal name.
        #[arg(long)]
        prefixed: bool,
        /// The client host the ACL applies to (`*`: any).
        #[arg(long, default_value = "*")]
        host: String,
    },
    /// Delete every ACL the filter matches.
    Delete {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Only ACLs of this principal.
        #[arg(long)]
        principal: Option<String>,
        /// Only ACLs of this operation.
        #[arg(long, value_parser = parse_operation)]
        operation: Option<Operation>,
        /// Which patterns (default: literal for a named resource, any without one).
        #[arg(long, value_enum)]
        resource_pattern_type: Option<PatternArg>,
        /// Only ALLOW or only DENY ACLs.
        #[arg(long, value_enum, ignore_case = true)]
        permission: Option<PermissionArg>,
        /// Delete every ACL in the cluster when no resource is named.
        #[arg(long)]
        all: bool,
    },
}

fn pattern_filter(p: PatternArg) -> PatternFilter {
    match p {
        PatternArg::Any => PatternFilter::Any,
        PatternArg::Match => PatternFilter::Match,
        PatternArg::Literal => PatternFilter::Exactly(PatternType::Literal),
        PatternArg::Prefixed => PatternFilter::Exactly(PatternType::Prefixed),
    }
}

fn check_principal(p: &str) -> Result<(), CliError> {
    match p.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(()),
        _ => Err(CliError::Usage(format!(
            "principal {p:?} is not Type:name (for example User:alice)"
        ))),
    }
}

fn print(acls: &[AclBinding], out: &mut dyn Write) -> Result<(), CliError> {
    let mut table = Table::new(&[
        "RESOURCE",
        "NAME",
        "PATTERN",
        "PRINCIPAL",
        "HOST",
        "OPERATION",
        "PERMISSION",
    ]);
    for a in acls {
        table.row(vec![
            a.resource_type.znode_name().to_owned(),
            a.name.clone(),
            format!("{:?}", a.pattern).to_uppercase(),
            a.principal.clone(),
            a.host.clone(),
            a.operation.znode_name().to_owned(),
            format!("{:?}", a.permission).to_uppercase(),
        ]);
    }
    table.write(out, "")?;
    Ok(())
}

pub async fn run(bootstrap: &str, args: AclsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let client = args.kafka.connect(bootstrap).await?;
    match args.command {
        AclsCommand::List {
            resource,
            principal,
            resource_pattern_type,
        } => {
            let (rt, name) = resource.resource().unzip();
            let filter = AclFilter {
                resource_type: rt,
                name,
                pattern: pattern_filter(resource_pattern_type),
                principal,
                ..AclFilter::default()
            };
            let mut acls = client.describe_acls(&filter).await?;
            acls.sort();
            print(&acls, out)
        }
        AclsCommand::Create {
            resource,
            allow,
            deny,
            operation,
            prefixed,
            host,
        } => {
            let (rt, name) = resource.resource().ok_or_else(|| {
                CliError::Usage(
                    "name the resource: --topic, --group, --transactional-id or --cluster".into(),
                )
            })?;
            if allow.is_empty() && deny.is_empty() {
                return Err(CliError::Usage(
                    "name at least one principal with --allow or --deny".into(),
                ));
            }
            let mut acls = Vec::new();
            for (principals, permission) in [(&allow, Permission::Allow), (&deny, Permission::Deny)]
            {
                for p in principals {
                    check_principal(p)?;
                    for op in &operation {
                        acls.push(AclBinding {
                            resource_type: rt,
                            name: name.clone(),
                            pattern: if prefixed {
                                PatternType::Prefixed
                            } else {
                                PatternType::Literal
                            },
                            principal: p.clone(),
                            host: host.clone(),
                            operation: *op,
                            permission,
                        });
                    }
                }
            }
            client.create_acls(&acls).await?;
            super::table::note(out, &format!("created {} ACL(s):", acls.len()))?;
            print(&acls, out)
        }
        AclsCommand::Delete {
            resource,
            principal,
            operation,
            resource_pattern_type,
            permission,
            all,
        } => {
            let (rt, name) = resource.resource().unzip();
            if rt.is_none() && principal.is_none() && operation.is_none() && !all {
                return Err(CliError::Usage(
                    "this would delete every ACL: name a resource, a principal or an operation, or give --all".into(),
                ));
            }
            let pattern = resource_pattern_type.unwrap_or(if name.is_some() {
                PatternArg::Literal
            } else {
                PatternArg::Any
            });
            let filter = AclFilter {
                resource_type: rt,
                name,
                pattern: pattern_filter(pattern),
                principal,
                operation,
                permission: permission.map(|p| match p {
                    PermissionArg::Allow => Permission::Allow,
                    PermissionArg::Deny => Permission::Deny,
                }),
                ..AclFilter::default()
            };
            let mut removed = client.delete_acls(&filter).await?;
            removed.sort();
            super::table::note(out, &format!("deleted {} ACL(s):", removed.len()))?;
            print(&removed, out)
        }
    }
}
