//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them: credentials in
//! Kafka's format (`salt=..,stored_key=..,server_key=..,iterations=..`), the server side of
//! the exchange for the brokers and the client side for the CLI.
//!
//! Kafka's rules, and one quirk: librdkafka before 2.6.1 (Debian's kcat) repeats its client
//! nonce in the client-final message (`r=<cnonce><cnonce><snonce>`), so a final nonce is
//! accepted when it *ends with* the nonce the server sent and starts with the client's, as
//! Kafka 3.8.1-3.9 do; the AuthMessage is computed over the client-final bytes exactly as
//! received. An unknown user gets a made-up salt and fails at the proof, with the same
//! message as a wrong password, so the exchange does not tell who exists.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};
use std::fmt;
use std::num::NonZeroU32;

/// Kafka's minimum (and default) iteration count.
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's maximum.
pub const MAX_ITERATIONS: u32 = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The code AlterUserScramCredentials and DescribeUserScramCredentials use.
    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Mechanism> {
        match code {
            1 => Some(Mechanism::Sha256),
            2 => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    pub fn parse(name: &str) -> Option<Mechanism> {
        match name {
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            "SCRAM-SHA-512" => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Mechanism::Sha256 => hmac::HMAC_SHA256,
            Mechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::Sha256 => &digest::SHA256,
            Mechanism::Sha512 => &digest::SHA512,
        }
    }

    fn len(self) -> usize {
        self.digest().output_len()
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data)
            .as_ref()
            .to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    /// SaltedPassword = Hi(password, salt, i).
    fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        let rounds = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
        pbkdf2::derive(self.pbkdf2(), rounds, salt, password.as_bytes(), &mut out);
        out
    }
}

/// A user's stored SCRAM credential for one mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys stay out of logs.
        write!(f, "Credential {{ iterations: {} }}", self.iterations)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message that does not follow RFC 5802 (or comes out of turn).
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// Wrong password or unknown user: one answer for both.
    #[error("Authentication failed during authentication due to invalid credentials with SASL mechanism {0}")]
    Failed(&'static str),
    #[error("iterations {0} out of range {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations(u32),
    #[error("the server's signature does not match: it does not know the password")]
    BadServer,
    #[error("the system's random source failed")]
    Random,
}

impl Credential {
    /// Derives a credential from a password, as `kafka-configs --add-config
    /// 'SCRAM-SHA-256=[password=..]'` does.
    pub fn new(
        mech: Mechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Credential, ScramError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let salted = mech.salted_password(password, salt, iterations);
        Credential::from_salted_password(mech, salt, &salted, iterations)
    }

    /// From a salted password the client computed (AlterUserScramCredentials sends
    /// `SaltedPassword` and the salt, never the password).
    pub fn from_salted_password(
        mech: Mechanism,
        salt: &[u8],
        salted_password: &[u8],
        iterations: u32,
    ) -> Result<Credential, ScramError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        if salt.is_empty() || salted_password.len() != mech.len() {
            return Err(ScramError::Malformed("salted password of the wrong length"));
        }
        let client_key = mech.mac(salted_password, b"Client Key");
        Ok(Credential {
            salt: salt.to_vec(),
            stored_key: mech.hash(&client_key),
            server_key: mech.mac(salted_password, b"Server Key"),
            iterations,
        })
    }

    /// The salted password for `password` (what a client sends to set a credential).
    pub fn salted_password(
        mech: Mechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Vec<u8> {
        mech.salted_password(password, salt, iterations)
    }

    /// Whether `password` is the one this credential was derived from (for SASL/PLAIN,
    /// which checks passwords against the stored SCRAM credentials).
    pub fn matches_password(&self, mech: Mechanism, password: &str) -> bool {
        let salted = mech.salted_password(password, &self.salt, self.iterations);
        let client_key = mech.mac(&salted, b"Client Key");
        ct_eq(&mech.hash(&client_key), &self.stored_key)
    }

    /// With a fresh random salt.
    pub fn generate(
        mech: Mechanism,
        password: &str,
        iterations: u32,
    ) -> Result<Credential, ScramError> {
        Credential::new(mech, password, &random_bytes(32)?, iterations)
    }

    /// Kafka's stored form: `salt=<b64>,stored_key=<b64>,server_key=<b64>,iterations=<n>`.
    pub fn to_kafka(&self) -> String {
        format!(
            "salt={},stored_key={},server_key={},iterations={}",
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key),
            self.iterations
        )
    }

    pub fn from_kafka(text: &str) -> Result<Credential, ScramError> {
        let mut salt = None;
        let mut stored = None;
        let mut server = None;
        let mut iterations = None;
        for part in text.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or(ScramError::Malformed("credential field without '='"))?;
            let b64 = || {
                B64.decode(v)
                    .map_err(|_| ScramError::Malformed("credential field is not base64"))
            };
            match k {
                "salt" => salt = Some(b64()?),
                "stored_key" => stored = Some(b64()?),
                "server_key" => server = Some(b64()?),
                "iterations" => {
                    iterations = Some(
                        v.parse::<u32>()
                            .map_err(|_| ScramError::Malformed("iterations is not a number"))?,
                    )
                }
                _ => {}
            }
        }
        match (salt, stored, server, iterations) {
            (Some(salt), Some(stored_key), Some(server_key), Some(iterations)) => Ok(Credential {
                salt,
                stored_key,
                server_key,
                iterations,
            }),
            _ => Err(ScramError::Malformed("credential lacks a field")),
        }
    }
}

/// Bytes from the system's random source; an error (never seen on Linux) refuses the
/// exchange rather than weakening it.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, ScramError> {
    let mut out = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| ScramError::Random)?;
    Ok(out)
}

/// A printable nonce (RFC 5802: any printable ASCII but ','), from 18 random bytes.
pub fn nonce() -> Result<String, ScramError> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(18)?))
}

/// Equal, in time that does not depend on where the inputs differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// RFC 5802 `saslname`: `=2C` is ',' and `=3D` is '='; any other '=' is malformed.
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// The attributes of a message, `k=v` separated by ','.
fn attribute(msg: &str, key: char) -> Option<&str> {
    msg.split(',')
        .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
}

#[derive(Debug)]
enum ServerState {
    Initial,
    SentFirst {
        user: String,
        credential: Option<Credential>,
        client_first_bare: String,
        server_first: String,
        client_nonce: String,
        full_nonce: String,
    },
    Done,
}

/// The server side of one exchange.
#[derive(Debug)]
pub struct ScramServer {
    mech: Mechanism,
    server_nonce: String,
    state: ServerState,
}

impl ScramServer {
    pub fn new(mech: Mechanism) -> Result<ScramServer, ScramError> {
        Ok(ScramServer::with_nonce(mech, nonce()?))
    }

    /// With a chosen server nonce (tests).
    pub fn with_nonce(mech: Mechanism, server_nonce: String) -> ScramServer {
        ScramServer {
            mech,
            server_nonce,
            state: ServerState::Initial,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// True until the client-first message has been taken.
    pub fn is_initial(&self) -> bool {
        matches!(self.state, ServerState::Initial)
    }

    /// Takes the client-first message; `lookup` gives the user's credential. Returns the
    /// server-first message.
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, ServerState::Initial) {
            return Err(ScramError::Malformed("client-first out of turn"));
        }
        self.state = ServerState::Done;
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: "n,," or "y,," (no channel binding), an optional "a=authzid".
        let (gs2, bare) = split_gs2(text)?;
        if gs2.starts_with('p') {
            return Err(ScramError::Malformed("channel binding is not supported"));
        }
        let user = decode_saslname(
            attribute(bare, 'n').ok_or(ScramError::Malformed("client-first without n="))?,
        )?;
        let authzid = gs2.split(',').nth(1).and_then(|a| a.strip_prefix("a="));
        if let Some(a) = authzid {
            if !a.is_empty() && decode_saslname(a)? != user {
                return Err(ScramError::Malformed(
                    "authorization id differs from the user",
                ));
            }
        }
        let client_nonce = attribute(bare, 'r')
            .filter(|r| !r.is_empty())
            .ok_or(ScramError::Malformed("client-first without r="))?
            .to_owned();
        if bare.split(',').any(|p| p.starts_with("m=")) {
            return Err(ScramError::Malformed("mandatory extension not supported"));
        }
        let credential = lookup(&user);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            // Made-up, so an unknown user looks like any other until the proof fails.
            None => (random_bytes(32)?, MIN_ITERATIONS),
        };
        let full_nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!("r={full_nonce},s={},i={iterations}", B64.encode(salt));
        self.state = ServerState::SentFirst {
            user,
            credential,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            client_nonce,
            full_nonce,
        };
        Ok(server_first.into_bytes())
    }

    /// Takes the client-final message. Returns the server-final message and the
    /// authenticated user.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let state = std::mem::replace(&mut self.state, ServerState::Done);
        let ServerState::SentFirst {
            user,
            credential,
            client_first_bare,
            server_first,
            client_nonce,
            full_nonce,
        } = state
        else {
            return Err(ScramError::Malformed("client-final out of turn"));
        };
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let proof_at = text
            .rfind(",p=")
            .ok_or(ScramError::Malformed("client-final without p="))?;
        let without_proof = &text[..proof_at];
        let proof = B64
            .decode(&text[proof_at + 3..])
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let channel = attribute(without_proof, 'c')
            .ok_or(ScramError::Malformed("client-final without c="))?;
        if !matches!(channel, "biws" | "eSws") {
            // base64 of "n,," or "y,,": no channel binding data.
            return Err(ScramError::Malformed("unexpected channel binding"));
        }
        let nonce = attribute(without_proof, 'r')
            .ok_or(ScramError::Malformed("client-final without r="))?;
        // Equal, or (librdkafka < 2.6.1) the client nonce repeated in front.
        let nonce_ok = nonce == full_nonce
            || (nonce.ends_with(&full_nonce) && nonce.starts_with(&client_nonce));
        if !nonce_ok {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let failed = ScramError::Failed(self.mech.name());
        let credential = credential.ok_or(failed.clone())?;
        if proof.len() != self.mech.len() {
            return Err(failed);
        }
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = self
            .mech
            .mac(&credential.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        if !ct_eq(&self.mech.hash(&client_key), &credential.stored_key) {
            return Err(failed);
        }
        let server_signature = self
            .mech
            .mac(&credential.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", B64.encode(server_signature));
        Ok((server_final.into_bytes(), user))
    }
}

/// Splits "gs2-header,client-first-bare": the header is the first two ','-separated parts.
fn split_gs2(text: &str) -> Result<(&str, &str), ScramError> {
    let first = text
        .find(',')
        .ok_or(ScramError::Malformed("no gs2 header"))?;
    let second = text[first + 1..]
        .find(',')
        .map(|i| first + 1 + i)
        .ok_or(ScramError::Malformed("no gs2 header"))?;
    let gs2 = &text[..second];
    if !matches!(gs2.as_bytes().first(), Some(b'n' | b'y' | b'p')) {
        return Err(ScramError::Malformed("bad gs2 header"));
    }
    Ok((gs2, &text[second + 1..]))
}

/// The client side of one exchange (the CLI, and tests).
#[derive(Debug)]
pub struct ScramClient {
    mech: Mechanism,
    user: String,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    pub fn new(mech: Mechanism, user: &str, password: &str) -> Result<ScramClient, ScramError> {
        Ok(ScramClient::with_nonce(mech, user, password, nonce()?))
    }

    pub fn with_nonce(mech: Mechanism, user: &str, password: &str, nonce: String) -> ScramClient {
        let client_first_bare = format!("n={},r={nonce}", encode_saslname(user));
        ScramClient {
            mech,
            user: user.to_owned(),
            password: password.to_owned(),
            client_nonce: nonce,
            client_first_bare,
            server_signature: None,
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Takes the server-first message and returns the client-final one.
    pub fn server_first(&mut self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let nonce = attribute(text, 'r').ok_or(ScramError::Malformed("server-first without r="))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() <= self.client_nonce.len() {
            return Err(ScramError::Malformed("server nonce does not extend ours"));
        }
        let salt = B64
            .decode(attribute(text, 's').ok_or(ScramError::Malformed("server-first without s="))?)
            .map_err(|_| ScramError::Malformed("salt is not base64"))?;
        let iterations: u32 = attribute(text, 'i')
            .and_then(|i| i.parse().ok())
            .ok_or(ScramError::Malformed("server-first without i="))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let salted = self.mech.salted_password(&self.password, &salt, iterations);
        let client_key = self.mech.mac(&salted, b"Client Key");
        let stored_key = self.mech.hash(&client_key);
        let client_signature = self.mech.mac(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        let server_key = self.mech.mac(&salted, b"Server Key");
        self.server_signature = Some(self.mech.mac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server proves it knows the password too.
    pub fn server_final(&self, message: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if attribute(text, 'e').is_some() {
            return Err(ScramError::Failed(self.mech.name()));
        }
        let v = B64
            .decode(attribute(text, 'v').ok_or(ScramError::Malformed("server-final without v="))?)
            .map_err(|_| ScramError::Malformed("signature is not base64"))?;
        match &self.server_signature {
            Some(expected) if ct_eq(expected, &v) => Ok(()),
            _ => Err(ScramError::BadServer),
        }
    }
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
