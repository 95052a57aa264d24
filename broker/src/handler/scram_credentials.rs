//! DescribeUserScramCredentials and AlterUserScramCredentials (kafka-configs --entity-type
//! users, Admin.alterUserScramCredentials, `fjord users`): SCRAM credentials in the
//! coordinator, in Kafka's format. Describing needs DESCRIBE on the cluster, changing
//! needs ALTER (with an authorizer on). Kafka's rules: iterations within 4096..=16384, one
//! change per user and mechanism in a request, RESOURCE_NOT_FOUND for a user (or a
//! mechanism to delete) that has none.

use super::Ctx;
use crate::security::acl::Operation;
use crate::security::admin::{self, AdminError, CredentialChange};
use crate::security::scram::{Credential, Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, HashMap};

fn message(text: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(text.into()))
}

pub fn describe(
    ctx: &Ctx<'_>,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !ctx.cluster_allowed(Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(message(format!(
                "{} may not describe the cluster",
                ctx.principal
            )));
    }
    let all = ctx.broker.security.credentials.list();
    let info = |mechs: &[(Mechanism, u32)]| -> Vec<CredentialInfo> {
        mechs
            .iter()
            .map(|(m, i)| {
                CredentialInfo::default()
                    .with_mechanism(m.code())
                    .with_iterations(*i as i32)
            })
            .collect()
    };
    let results = match &req.users {
        // Null or empty: every user.
        users if users.as_ref().is_none_or(Vec::is_empty) => all
            .iter()
            .map(|(u, m)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(u.clone()))
                    .with_credential_infos(info(m))
            })
            .collect(),
        None => Vec::new(),
        Some(users) => {
            let known: HashMap<&str, &Vec<(Mechanism, u32)>> =
                all.iter().map(|(u, m)| (u.as_str(), m)).collect();
            let mut count: HashMap<&str, usize> = HashMap::new();
            for u in users {
                *count.entry(u.name.as_str()).or_default() += 1;
            }
            users
                .iter()
                .map(|u| {
                    let name = u.name.as_str();
                    let r = DescribeUserScramCredentialsResult::default().with_user(u.name.clone());
                    if count[name] > 1 {
                        return r
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(message(format!("user {name} is named twice")));
                    }
                    match known.get(name) {
                        Some(m) => r.with_credential_infos(info(m)),
                        None => r
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(message(format!(
                                "Attempt to describe a user credential that does not exist: {name}"
                            ))),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

pub async fn alter(
    ctx: &Ctx<'_>,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Users in request order, each with its changes or the error that refuses them all.
    let mut order: Vec<String> = Vec::new();
    let mut changes: BTreeMap<String, Result<Vec<CredentialChange>, (ResponseError, String)>> =
        BTreeMap::new();
    let mut seen: HashMap<(String, Mechanism), usize> = HashMap::new();
    let mut add = |user: &str, change: Result<CredentialChange, (ResponseError, String)>| {
        if !changes.contains_key(user) {
            order.push(user.to_owned());
        }
        let entry = changes
            .entry(user.to_owned())
            .or_insert_with(|| Ok(Vec::new()));
        if let (Ok(list), Ok(c)) = (&mut *entry, &change) {
            let mech = match c {
                CredentialChange::Set(m, _) | CredentialChange::Delete(m) => *m,
            };
            let n = seen.entry((user.to_owned(), mech)).or_default();
            *n += 1;
            if *n > 1 {
                *entry = Err((
                    ResponseError::DuplicateResource,
                    format!("more than one change to {user}'s {}", mech.name()),
                ));
            } else {
                list.push(c.clone());
            }
        } else if let Err(e) = change {
            if entry.is_ok() {
                *entry = Err(e);
            }
        }
    };
    let unknown = |code: i8| {
        (
            ResponseError::UnsupportedSaslMechanism,
            format!("unknown SCRAM mechanism {code}"),
        )
    };
    for d in &req.deletions {
        let c = Mechanism::from_code(d.mechanism)
            .map(CredentialChange::Delete)
            .ok_or_else(|| unknown(d.mechanism));
        add(d.name.as_str(), c);
    }
    for u in &req.upsertions {
        let c = match Mechanism::from_code(u.mechanism) {
            None => Err(unknown(u.mechanism)),
            Some(m) => {
                let iterations = u32::try_from(u.iterations).unwrap_or(0);
                if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                    Err((
                        ResponseError::UnacceptableCredential,
                        format!(
                            "iterations {} out of range {MIN_ITERATIONS}..={MAX_ITERATIONS}",
                            u.iterations
                        ),
                    ))
                } else {
                    Credential::from_salted_password(m, &u.salt, &u.salted_password, iterations)
                        .map(|c| CredentialChange::Set(m, c))
                        .map_err(|e| (ResponseError::UnacceptableCredential, e.to_string()))
                }
            }
        };
        add(u.name.as_str(), c);
    }
    let allowed = ctx.cluster_allowed(Operation::Alter);
    let client = ctx.broker.cluster.client();
    let mut results = Vec::with_capacity(order.len());
    for user in order {
        let r = AlterUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user.clone()));
        let outcome = match changes.remove(&user) {
            _ if !allowed => Err((
                ResponseError::ClusterAuthorizationFailed,
                format!("{} may not alter the cluster", ctx.principal),
            )),
            _ if user.is_empty() => Err((
                ResponseError::UnacceptableCredential,
                "the user name is empty".to_owned(),
            )),
            Some(Ok(list)) => match admin::alter_credentials(&client, &user, &list).await {
                Ok(()) => {
                    tracing::info!(principal = ctx.principal, user, "SCRAM credentials altered");
                    // This broker serves the new credentials at once; the others follow
                    // their watch.
                    let path = crate::security::store::user_path(&user);
                    let credentials = &ctx.broker.security.credentials;
                    if let Err(e) =
                        crate::security::sync::reload_user(&client, &path, credentials).await
                    {
                        tracing::debug!(error = %e, "re-reading the credentials failed");
                    }
                    Ok(())
                }
                Err(AdminError::Invalid(m)) => Err((ResponseError::ResourceNotFound, m)),
                Err(e) => Err((ResponseError::UnknownServerError, e.to_string())),
            },
            Some(Err(e)) => Err(e),
            None => Ok(()),
        };
        results.push(match outcome {
            Ok(()) => r,
            Err((code, text)) => r
                .with_error_code(code.code())
                .with_error_message(message(text)),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}
