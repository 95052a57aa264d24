//! DescribeAcls, CreateAcls and DeleteAcls (kafka-acls, Admin.createAcls, `fjord acls`):
//! the ACLs in the coordinator, in Kafka's layout. Without an authorizer they answer
//! SECURITY_DISABLED, as Kafka does; describing needs DESCRIBE on the cluster, changing
//! needs ALTER.

use super::Ctx;
use crate::security::acl::{AclBinding, AclFilter, Operation, PatternFilter, ResourceType};
use crate::security::admin;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};

/// Refuses when no authorizer is on, or the caller may not `op` the cluster.
fn gate(ctx: &Ctx<'_>, op: Operation) -> Result<(), (ResponseError, String)> {
    if ctx.broker.security.authorizer.is_none() {
        return Err((
            ResponseError::SecurityDisabled,
            "no authorizer is configured on the broker (--authorizer acl)".to_owned(),
        ));
    }
    if !ctx.cluster_allowed(op) {
        return Err((
            ResponseError::ClusterAuthorizationFailed,
            format!("{} may not {} the cluster", ctx.principal, op.znode_name()),
        ));
    }
    Ok(())
}

/// This broker applies a change at once; the others follow their watch. It re-reads the
/// znode rather than applying what it wrote: another broker may have written since, and a
/// stale set applied after the watch's newer read would stay until the next change.
async fn refresh(
    ctx: &Ctx<'_>,
    client: &fjord_shared::coord_client::Client,
    rt: ResourceType,
    pattern: crate::security::acl::PatternType,
    name: &str,
) {
    if let Some(a) = &ctx.broker.security.authorizer {
        let path = crate::security::store::acl_path(rt, pattern, name);
        if let Err(e) = crate::security::sync::reload_acl(client, &path, a).await {
            tracing::debug!(error = %e, "re-reading the ACLs failed");
        }
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

pub fn describe(ctx: &Ctx<'_>, req: DescribeAclsRequest) -> DescribeAclsResponse {
    if let Err((code, message)) = gate(ctx, Operation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message)));
    }
    let filter = AclFilter::from_codes(
        req.resource_type_filter,
        req.resource_name_filter.as_ref().map(|s| s.as_str()),
        req.pattern_type_filter,
        req.principal_filter.as_ref().map(|s| s.as_str()),
        req.host_filter.as_ref().map(|s| s.as_str()),
        req.operation,
        req.permission_type,
    );
    let filter = match filter {
        Ok(f) => f,
        Err(message) => {
            return DescribeAclsResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(StrBytes::from_string(message)))
        }
    };
    let found = ctx
        .broker
        .security
        .authorizer
        .as_ref()
        .map(|a| {
            a.read()
                .unwrap_or_else(|p| p.into_inner())
                .describe(&filter)
        })
        .unwrap_or_default();
    // One entry per resource pattern, its ACLs inside.
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for a in found {
        by_resource
            .entry((a.resource_type.code(), a.name.clone(), a.pattern.code()))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(text(&a.principal))
                    .with_host(text(&a.host))
                    .with_operation(a.operation.code())
                    .with_permission_type(a.permission.code()),
            );
    }
    DescribeAclsResponse::default().with_resources(
        by_resource
            .into_iter()
            .map(|((rt, name, pattern), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(rt)
                    .with_resource_name(StrBytes::from_string(name))
                    .with_pattern_type(pattern)
                    .with_acls(acls)
            })
            .collect(),
    )
}

pub async fn create(ctx: &Ctx<'_>, req: CreateAclsRequest) -> CreateAclsResponse {
    let fail = |code: ResponseError, message: String| {
        AclCreationResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if let Err((code, message)) = gate(ctx, Operation::Alter) {
        return CreateAclsResponse::default().with_results(
            req.creations
                .iter()
                .map(|_| fail(code, message.clone()))
                .collect(),
        );
    }
    let client = ctx.broker.cluster.client();
    let mut results = Vec::with_capacity(req.creations.len());
    for c in &req.creations {
        let binding = AclBinding::from_codes(
            c.resource_type,
            c.resource_name.as_str(),
            c.resource_pattern_type,
            c.principal.as_str(),
            c.host.as_str(),
            c.operation,
            c.permission_type,
        );
        let result = match binding {
            Err(message) => fail(ResponseError::InvalidRequest, message),
            Ok(b) => match admin::add_acl(&client, &b).await {
                Ok(()) => {
                    refresh(ctx, &client, b.resource_type, b.pattern, &b.name).await;
                    tracing::info!(principal = ctx.principal, acl = %b, "ACL created");
                    AclCreationResult::default()
                }
                Err(e) => fail(ResponseError::UnknownServerError, e.to_string()),
            },
        };
        results.push(result);
    }
    CreateAclsResponse::default().with_results(results)
}

pub async fn delete(ctx: &Ctx<'_>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let fail = |code: ResponseError, message: String| {
        DeleteAclsFilterResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if let Err((code, message)) = gate(ctx, Operation::Alter) {
        return DeleteAclsResponse::default().with_filter_results(
            req.filters
                .iter()
                .map(|_| fail(code, message.clone()))
                .collect(),
        );
    }
    let client = ctx.broker.cluster.client();
    let mut results = Vec::with_capacity(req.filters.len());
    for f in &req.filters {
        let filter = AclFilter::from_codes(
            f.resource_type_filter,
            f.resource_name_filter.as_ref().map(|s| s.as_str()),
            f.pattern_type_filter,
            f.principal_filter.as_ref().map(|s| s.as_str()),
            f.host_filter.as_ref().map(|s| s.as_str()),
            f.operation,
            f.permission_type,
        );
        let filter = match filter {
            Ok(f) => f,
            Err(message) => {
                results.push(fail(ResponseError::InvalidRequest, message));
                continue;
            }
        };
        // The resource patterns with matching ACLs, from the cache; each is then changed
        // with a fresh read of its znode.
        let resources: BTreeSet<(ResourceType, crate::security::acl::PatternType, String)> = ctx
            .broker
            .security
            .authorizer
            .as_ref()
            .map(|a| {
                a.read()
                    .unwrap_or_else(|p| p.into_inner())
                    .describe(&filter)
            })
            .unwrap_or_default()
            .into_iter()
            .map(|a| (a.resource_type, a.pattern, a.name))
            .collect();
        let mut matching = Vec::new();
        let mut error = None;
        for (rt, pattern, name) in resources {
            // MATCH finds resources; the ACLs removed from each are those the filter
            // matches there (by its other fields).
            let exact = AclFilter {
                name: None,
                pattern: PatternFilter::Any,
                ..filter.clone()
            };
            match admin::remove_acls(&client, rt, pattern, &name, &exact).await {
                Ok(removed) => {
                    refresh(ctx, &client, rt, pattern, &name).await;
                    matching.extend(removed)
                }
                Err(e) => error = Some(e.to_string()),
            }
        }
        for a in &matching {
            tracing::info!(principal = ctx.principal, acl = %a, "ACL deleted");
        }
        let mut result = DeleteAclsFilterResult::default().with_matching_acls(
            matching
                .iter()
                .map(|a| {
                    DeleteAclsMatchingAcl::default()
                        .with_resource_type(a.resource_type.code())
                        .with_resource_name(text(&a.name))
                        .with_pattern_type(a.pattern.code())
                        .with_principal(text(&a.principal))
                        .with_host(text(&a.host))
                        .with_operation(a.operation.code())
                        .with_permission_type(a.permission.code())
                })
                .collect(),
        );
        if let Some(message) = error {
            result = result
                .with_error_code(ResponseError::UnknownServerError.code())
                .with_error_message(Some(StrBytes::from_string(message)));
        }
        results.push(result);
    }
    DeleteAclsResponse::default().with_filter_results(results)
}
