//! ACLs and SCRAM users through the Kafka admin APIs (DescribeAcls, CreateAcls, DeleteAcls,
//! DescribeUserScramCredentials, AlterUserScramCredentials), as Kafka's `kafka-acls` and
//! `kafka-configs --entity-type users` use them.

use std::time::Duration;

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, CreateAclsRequest, DeleteAclsRequest,
    DescribeAclsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};

use super::error::{Error, Result};
use super::Client;
use crate::security::acl::{AclBinding, AclFilter, PatternFilter, ANY, MATCH};
use crate::security::scram::{random_bytes, Credential, Mechanism};

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn opt(s: &Option<String>) -> Option<StrBytes> {
    s.as_deref().map(text)
}

fn pattern_code(p: PatternFilter) -> i8 {
    match p {
        PatternFilter::Any => ANY,
        PatternFilter::Match => MATCH,
        PatternFilter::Exactly(p) => p.code(),
    }
}

/// Sets an ACL filter's fields, which DescribeAclsRequest and DeleteAclsFilter name alike.
macro_rules! with_filter {
    ($message:expr, $filter:expr) => {
        $message
            .with_resource_type_filter($filter.resource_type.map_or(ANY, |r| r.code()))
            .with_resource_name_filter(opt(&$filter.name))
            .with_pattern_type_filter(pattern_code($filter.pattern))
            .with_principal_filter(opt(&$filter.principal))
            .with_host_filter(opt(&$filter.host))
            .with_operation($filter.operation.map_or(ANY, |o| o.code()))
            .with_permission_type($filter.permission.map_or(ANY, |p| p.code()))
    };
}

/// A binding from the codes a broker answered with.
#[allow(clippy::too_many_arguments)]
fn binding(
    rt: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    host: &str,
    op: i8,
    perm: i8,
) -> Result<AclBinding> {
    AclBinding::from_codes(rt, name, pattern, principal, host, op, perm).map_err(|e| {
        Error::kafka(
            ApiKey::DescribeAcls,
            name,
            -1,
            Some(format!("the broker sent an ACL we cannot read: {e}")),
        )
    })
}

/// The broker's error, if it sent one.
fn check(api: ApiKey, resource: &str, code: i16, message: &Option<StrBytes>) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    Err(Error::kafka(
        api,
        resource,
        code,
        message.as_ref().map(|m| m.to_string()),
    ))
}

impl Client {
    /// Sends `req` to any broker.
    async fn send_any<R: Request>(&self, api: ApiKey, req: &R) -> Result<R::Response> {
        let mut conn = self.any_conn().await?;
        let version = conn.version(api)?;
        conn.send(req, version, Duration::ZERO).await
    }

    /// The ACLs `filter` matches.
    pub async fn describe_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>> {
        let req = with_filter!(DescribeAclsRequest::default(), filter);
        let resp = self.send_any(ApiKey::DescribeAcls, &req).await?;
        check(
            ApiKey::DescribeAcls,
            "",
            resp.error_code,
            &resp.error_message,
        )?;
        let mut out = Vec::new();
        for r in &resp.resources {
            for a in &r.acls {
                out.push(binding(
                    r.resource_type,
                    r.resource_name.as_str(),
                    r.pattern_type,
                    a.principal.as_str(),
                    a.host.as_str(),
                    a.operation,
                    a.permission_type,
                )?);
            }
        }
        Ok(out)
    }

    /// Creates ACLs; the first refusal is the error.
    pub async fn create_acls(&self, acls: &[AclBinding]) -> Result<()> {
        let req = CreateAclsRequest::default().with_creations(
            acls.iter()
                .map(|a| {
                    AclCreation::default()
                        .with_resource_type(a.resource_type.code())
                        .with_resource_name(text(&a.name))
                        .with_resource_pattern_type(a.pattern.code())
                        .with_principal(text(&a.principal))
                        .with_host(text(&a.host))
                        .with_operation(a.operation.code())
                        .with_permission_type(a.permission.code())
                })
                .collect(),
        );
        let resp = self.send_any(ApiKey::CreateAcls, &req).await?;
        for (r, a) in resp.results.iter().zip(acls) {
            check(ApiKey::CreateAcls, &a.name, r.error_code, &r.error_message)?;
        }
        Ok(())
    }

    /// Deletes the ACLs `filter` matches; returns them.
    pub async fn delete_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>> {
        let req = DeleteAclsRequest::default()
            .with_filters(vec![with_filter!(DeleteAclsFilter::default(), filter)]);
        let resp = self.send_any(ApiKey::DeleteAcls, &req).await?;
        let mut out = Vec::new();
        for r in &resp.filter_results {
            check(ApiKey::DeleteAcls, "", r.error_code, &r.error_message)?;
            for a in &r.matching_acls {
                out.push(binding(
                    a.resource_type,
                    a.resource_name.as_str(),
                    a.pattern_type,
                    a.principal.as_str(),
                    a.host.as_str(),
                    a.operation,
                    a.permission_type,
                )?);
            }
        }
        Ok(out)
    }

    /// Users and their SCRAM mechanisms with iterations (all users, or those named).
    pub async fn describe_scram_users(
        &self,
        users: Option<&[String]>,
    ) -> Result<Vec<(String, Vec<(Mechanism, i32)>)>> {
        let req = DescribeUserScramCredentialsRequest::default().with_users(users.map(|u| {
            u.iter()
                .map(|n| UserName::default().with_name(text(n)))
                .collect()
        }));
        let resp = self
            .send_any(ApiKey::DescribeUserScramCredentials, &req)
            .await?;
        check(
            ApiKey::DescribeUserScramCredentials,
            "",
            resp.error_code,
            &resp.error_message,
        )?;
        let mut out = Vec::new();
        for r in &resp.results {
            check(
                ApiKey::DescribeUserScramCredentials,
                r.user.as_str(),
                r.error_code,
                &r.error_message,
            )?;
            out.push((
                r.user.as_str().to_owned(),
                r.credential_infos
                    .iter()
                    .filter_map(|c| Some((Mechanism::from_code(c.mechanism)?, c.iterations)))
                    .collect(),
            ));
        }
        Ok(out)
    }

    /// Sets `user`'s password for `mechanism` (the salted password is computed here; the
    /// password never leaves this process), or deletes that credential (`password` None).
    pub async fn alter_scram_user(
        &self,
        user: &str,
        mechanism: Mechanism,
        password: Option<&str>,
        iterations: u32,
    ) -> Result<()> {
        let mut req = AlterUserScramCredentialsRequest::default();
        match password {
            Some(p) => {
                let salt = random_bytes(32).map_err(|e| {
                    Error::kafka(
                        ApiKey::AlterUserScramCredentials,
                        user,
                        -1,
                        Some(e.to_string()),
                    )
                })?;
                let salted = Credential::salted_password(mechanism, p, &salt, iterations);
                req.upsertions.push(
                    ScramCredentialUpsertion::default()
                        .with_name(text(user))
                        .with_mechanism(mechanism.code())
                        .with_iterations(iterations as i32)
                        .with_salt(salt.into())
                        .with_salted_password(salted.into()),
                );
            }
            None => req.deletions.push(
                ScramCredentialDeletion::default()
                    .with_name(text(user))
                    .with_mechanism(mechanism.code()),
            ),
        }
        let resp = self
            .send_any(ApiKey::AlterUserScramCredentials, &req)
            .await?;
        for r in &resp.results {
            check(
                ApiKey::AlterUserScramCredentials,
                r.user.as_str(),
                r.error_code,
                &r.error_message,
            )?;
        }
        Ok(())
    }
}
