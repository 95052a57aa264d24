//! The server side of SASL as the brokers serve it: the mechanisms (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512), the users' credentials they check against, and one exchange's steps.
//!
//! SCRAM credentials come from the coordinator (`/config/users/<user>`, Kafka's format).
//! PLAIN checks a password against the same stored credentials (any of the user's SCRAM
//! mechanisms), so one `fjord users set-scram` (or `kafka-configs --add-config
//! 'SCRAM-SHA-256=[password=..]'`) gives a user both; no password is stored in clear.

use super::scram::{Credential, Mechanism, ScramError, ScramServer, MIN_ITERATIONS};
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

/// A SASL mechanism the brokers serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [
        SaslMechanism::Plain,
        SaslMechanism::Scram(Mechanism::Sha256),
        SaslMechanism::Scram(Mechanism::Sha512),
    ];

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }

    /// Parses a mechanism name (exact, as Kafka compares them).
    pub fn parse(name: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Parses a comma-separated list (`--sasl-enabled-mechanisms`).
    pub fn parse_list(text: &str) -> Result<Vec<SaslMechanism>, String> {
        let mut out = Vec::new();
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let m = SaslMechanism::parse(&name.to_ascii_uppercase()).ok_or_else(|| {
                format!("unknown SASL mechanism {name:?} (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
            })?;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if out.is_empty() {
            return Err("no SASL mechanism enabled".to_owned());
        }
        Ok(out)
    }
}

/// Every user's SCRAM credentials, as last read from the coordinator.
#[derive(Debug, Default)]
pub struct Credentials {
    users: RwLock<HashMap<String, BTreeMap<Mechanism, Credential>>>,
}

impl Credentials {
    /// Sets (or, with no credentials, removes) one user's credentials.
    pub fn set_user(&self, user: &str, credentials: BTreeMap<Mechanism, Credential>) {
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        if credentials.is_empty() {
            users.remove(user);
        } else {
            users.insert(user.to_owned(), credentials);
        }
    }

    /// Replaces everything (after a full reload).
    pub fn replace_all(&self, all: HashMap<String, BTreeMap<Mechanism, Credential>>) {
        *self.users.write().unwrap_or_else(|p| p.into_inner()) = all;
    }

    pub fn scram(&self, user: &str, mech: Mechanism) -> Option<Credential> {
        let users = self.users.read().unwrap_or_else(|p| p.into_inner());
        users.get(user)?.get(&mech).cloned()
    }

    /// Every user and the mechanisms they have credentials for, sorted.
    pub fn list(&self) -> Vec<(String, Vec<(Mechanism, u32)>)> {
        let users = self.users.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = users
            .iter()
            .map(|(u, m)| {
                (
                    u.clone(),
                    m.iter().map(|(k, c)| (*k, c.iterations)).collect(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Whether `password` is `user`'s. An unknown user costs the same work as a known one.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        let stored: Vec<(Mechanism, Credential)> = {
            let users = self.users.read().unwrap_or_else(|p| p.into_inner());
            users
                .get(user)
                .map(|m| m.iter().map(|(k, c)| (*k, c.clone())).collect())
                .unwrap_or_default()
        };
        match stored.first() {
            Some((m, c)) => c.matches_password(*m, password),
            None => {
                if let Ok(fake) = Credential::new(Mechanism::Sha256, "", &[0; 32], MIN_ITERATIONS) {
                    let _ = fake.matches_password(Mechanism::Sha256, password);
                }
                false
            }
        }
    }
}

/// What a step of the exchange produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this token and wait for the client's next.
    Challenge(Vec<u8>),
    /// Authenticated as `user`; send this last token.
    Done { token: Vec<u8>, user: String },
}

/// A failed exchange. The message goes to the client, so it never tells whether the user
/// exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthFailed(pub String);

/// One authentication exchange on one connection.
#[derive(Debug)]
pub struct Authenticator {
    state: Exchange,
}

#[derive(Debug)]
enum Exchange {
    /// PLAIN: one token.
    Plain,
    /// SCRAM: client-first, then client-final.
    Scram(Box<ScramServer>),
    /// Over, whatever the outcome.
    Finished,
}

impl Authenticator {
    pub fn new(mechanism: SaslMechanism) -> Result<Authenticator, AuthFailed> {
        let state = match mechanism {
            SaslMechanism::Plain => Exchange::Plain,
            SaslMechanism::Scram(m) => Exchange::Scram(Box::new(
                ScramServer::new(m).map_err(|e| AuthFailed(e.to_string()))?,
            )),
        };
        Ok(Authenticator { state })
    }

    /// Takes the client's next token.
    pub fn step(&mut self, token: &[u8], credentials: &Credentials) -> Result<Step, AuthFailed> {
        match std::mem::replace(&mut self.state, Exchange::Finished) {
            Exchange::Finished => Err(AuthFailed("the exchange is already over".to_owned())),
            Exchange::Plain => Ok(Step::Done {
                token: Vec::new(),
                user: plain(token, credentials)?,
            }),
            Exchange::Scram(mut server) => {
                let m = server.mechanism();
                let failed = |e: ScramError| {
                    match e {
                    ScramError::Failed(_) => AuthFailed(e.to_string()),
                    other => AuthFailed(format!(
                        "Authentication failed during authentication due to invalid credentials with SASL mechanism {}: {other}",
                        m.name()
                    )),
                }
                };
                if server.is_initial() {
                    let first = server
                        .client_first(token, |user| credentials.scram(user, m))
                        .map_err(failed)?;
                    self.state = Exchange::Scram(server);
                    Ok(Step::Challenge(first))
                } else {
                    let (last, user) = server.client_final(token).map_err(failed)?;
                    Ok(Step::Done { token: last, user })
                }
            }
        }
    }
}

/// PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`; an authorization id, if given, must
/// be the user (Kafka's rule).
fn plain(token: &[u8], credentials: &Credentials) -> Result<String, AuthFailed> {
    let invalid = || AuthFailed("Authentication failed: Invalid username or password".to_owned());
    let text = std::str::from_utf8(token)
        .map_err(|_| AuthFailed("Invalid SASL/PLAIN response: not UTF-8".to_owned()))?;
    let mut parts = text.splitn(3, '\0');
    let (Some(authzid), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthFailed(
            "Invalid SASL/PLAIN response: expected 3 tokens".to_owned(),
        ));
    };
    if user.is_empty() {
        return Err(AuthFailed(
            "Authentication failed: username not specified".to_owned(),
        ));
    }
    if password.is_empty() {
        return Err(AuthFailed(
            "Authentication failed: password not specified".to_owned(),
        ));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(AuthFailed(
            "Authentication failed: Client requested an authorization id that is different from username".to_owned(),
        ));
    }
    if credentials.verify_password(user, password) {
        Ok(user.to_owned())
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::ScramClient;

    fn store(user: &str, password: &str) -> Credentials {
        let c = Credentials::default();
        let mut m = BTreeMap::new();
        for mech in [Mechanism::Sha256, Mechanism::Sha512] {
            m.insert(
                mech,
                Credential::generate(mech, password, MIN_ITERATIONS).unwrap(),
            );
        }
        c.set_user(user, m);
        c
    }

    #[test]
    fn plain_checks_the_stored_scram_credential() {
        let creds = store("alice", "secret");
        let mut a = Authenticator::new(SaslMechanism::Plain).unwrap();
        assert_eq!(
            a.step(b"\0alice\0secret", &creds),
            Ok(Step::Done {
                token: vec![],
                user: "alice".into()
            })
        );
        for (token, why) in [
            (&b"\0alice\0wrong"[..], "Invalid username or password"),
            (b"\0bob\0secret", "Invalid username or password"),
            (b"mallory\0alice\0secret", "authorization id"),
            (b"\0alice", "3 tokens"),
            (b"\0\0secret", "username not specified"),
            (b"\0alice\0", "password not specified"),
        ] {
            let mut a = Authenticator::new(SaslMechanism::Plain).unwrap();
            let e = a.step(token, &creds).unwrap_err();
            assert!(e.0.contains(why), "{token:?}: {e}");
        }
    }

    #[test]
    fn scram_exchange_through_the_authenticator() {
        let creds = store("bob", "pw");
        for mech in [Mechanism::Sha256, Mechanism::Sha512] {
            let mut server = Authenticator::new(SaslMechanism::Scram(mech)).unwrap();
            let mut client = ScramClient::new(mech, "bob", "pw").unwrap();
            let Step::Challenge(first) = server.step(&client.client_first(), &creds).unwrap()
            else {
                panic!("no challenge")
            };
            let fin = client.server_first(&first).unwrap();
            let Step::Done { token, user } = server.step(&fin, &creds).unwrap() else {
                panic!("not done")
            };
            assert_eq!(user, "bob");
            client.server_final(&token).unwrap();
            assert!(
                server.step(b"more", &creds).is_err(),
                "no step after the end"
            );
        }
    }

    #[test]
    fn scram_wrong_password_and_unknown_user_look_the_same() {
        let creds = store("bob", "pw");
        let mut messages = Vec::new();
        for (user, password) in [("bob", "nope"), ("nobody", "pw")] {
            let mut server = Authenticator::new(SaslMechanism::Scram(Mechanism::Sha256)).unwrap();
            let mut client = ScramClient::new(Mechanism::Sha256, user, password).unwrap();
            let Step::Challenge(first) = server.step(&client.client_first(), &creds).unwrap()
            else {
                panic!("no challenge")
            };
            let fin = client.server_first(&first).unwrap();
            messages.push(server.step(&fin, &creds).unwrap_err().0);
        }
        assert_eq!(messages[0], messages[1]);
    }

    #[test]
    fn mechanism_lists() {
        assert_eq!(
            SaslMechanism::parse_list("scram-sha-512, PLAIN").unwrap(),
            vec![
                SaslMechanism::Scram(Mechanism::Sha512),
                SaslMechanism::Plain
            ]
        );
        assert!(SaslMechanism::parse_list("GSSAPI")
            .unwrap_err()
            .contains("unknown"));
        assert!(SaslMechanism::parse_list("").is_err());
    }
}
