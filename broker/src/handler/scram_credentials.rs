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
use std::collections::{BTreeSet, HashMap};

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
    // Each user's changes in request order, each read or refused.
    let mut per_user: Vec<(String, Vec<Result<CredentialChange, Refusal>>)> = Vec::new();
    let mut push = |user: &str, change: Result<CredentialChange, Refusal>| match per_user
        .iter_mut()
        .find(|(u, _)| u == user)
    {
        Some((_, list)) => list.push(change),
        None => per_user.push((user.to_owned(), vec![change])),
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
        push(d.name.as_str(), c);
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
        push(u.name.as_str(), c);
    }
    let allowed = ctx.cluster_allowed(Operation::Alter);
    let client = ctx.broker.cluster.client();
    let mut results = Vec::with_capacity(per_user.len());
    for (user, changes) in per_user {
        let r = AlterUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user.clone()));
        let outcome = match validate(&user, changes) {
            _ if !allowed => Err((
                ResponseError::ClusterAuthorizationFailed,
                format!("{} may not alter the cluster", ctx.principal),
            )),
            _ if user.is_empty() => Err((
                ResponseError::UnacceptableCredential,
                "the user name is empty".to_owned(),
            )),
            Ok(list) => match admin::alter_credentials(&client, &user, &list).await {
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
            Err(e) => Err(e),
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

/// Why a change is refused: Kafka's error code and a message.
type Refusal = (ResponseError, String);

/// One user's changes, or the refusal of them all: two changes to one mechanism first
/// (DUPLICATE_RESOURCE, as Kafka checks), then the first change that could not be read.
fn validate(
    user: &str,
    changes: Vec<Result<CredentialChange, Refusal>>,
) -> Result<Vec<CredentialChange>, Refusal> {
    let mut mechanisms = BTreeSet::new();
    for m in changes.iter().flatten().map(CredentialChange::mechanism) {
        if !mechanisms.insert(m) {
            return Err((
                ResponseError::DuplicateResource,
                format!("more than one change to {user}'s {}", m.name()),
            ));
        }
    }
    changes.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(m: Mechanism) -> Result<CredentialChange, Refusal> {
        Ok(CredentialChange::Set(
            m,
            Credential::new(m, "pw", b"salt", MIN_ITERATIONS).unwrap(),
        ))
    }

    #[test]
    fn duplicates_first_then_the_first_unreadable_change() {
        let ok = validate(
            "u",
            vec![
                set(Mechanism::Sha256),
                Ok(CredentialChange::Delete(Mechanism::Sha512)),
            ],
        );
        assert_eq!(ok.unwrap().len(), 2);
        let bad = (
            ResponseError::UnacceptableCredential,
            "iterations".to_owned(),
        );
        let dup = validate(
            "u",
            vec![
                Err(bad.clone()),
                set(Mechanism::Sha256),
                Ok(CredentialChange::Delete(Mechanism::Sha256)),
            ],
        );
        assert_eq!(dup.unwrap_err().0, ResponseError::DuplicateResource);
        let first_error = validate("u", vec![set(Mechanism::Sha256), Err(bad.clone())]);
        assert_eq!(first_error.unwrap_err(), bad);
    }
}
