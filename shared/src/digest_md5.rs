//! SASL DIGEST-MD5 (RFC 2831) as ZooKeeper uses it: authentication only (qop "auth"),
//! realm `zk-sasl-md5`, digest-uri `zookeeper/zk-sasl-md5`. The coordinator runs the server
//! side; the brokers' coordinator client runs the client side.
//!
//! The exchange: the client's first token is empty; the server answers with a challenge
//! (realm, nonce, qop, charset, algorithm); the client answers with its response (user,
//! cnonce, nc, digest-uri and the proof); the server checks the proof and answers
//! `rspauth=...`, which proves to the client that the server knows the password too.

use md5::{Digest, Md5};
use std::collections::BTreeMap;

/// ZooKeeper's realm and digest-uri.
pub const REALM: &str = "zk-sasl-md5";
pub const DIGEST_URI: &str = "zookeeper/zk-sasl-md5";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("malformed DIGEST-MD5 message: {0}")]
    Malformed(String),
    /// Wrong password or unknown user (one answer for both).
    #[error("DIGEST-MD5 authentication failed")]
    Failed,
    #[error("the server's rspauth does not match: it does not know the password")]
    BadServer,
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The response value (RFC 2831 2.1.2.1): `a2_prefix` is "AUTHENTICATE" for the client's
/// proof and "" for the server's rspauth.
#[allow(clippy::too_many_arguments)]
fn response_value(
    user: &str,
    realm: &str,
    password: &str,
    nonce: &str,
    cnonce: &str,
    nc: &str,
    qop: &str,
    digest_uri: &str,
    authzid: Option<&str>,
    a2_prefix: &str,
) -> String {
    let inner = md5(&[
        user.as_bytes(),
        b":",
        realm.as_bytes(),
        b":",
        password.as_bytes(),
    ]);
    let mut a1: Vec<u8> = inner.to_vec();
    a1.extend_from_slice(format!(":{nonce}:{cnonce}").as_bytes());
    if let Some(a) = authzid {
        a1.extend_from_slice(format!(":{a}").as_bytes());
    }
    let ha1 = hex(&md5(&[&a1]));
    let ha2 = hex(&md5(&[format!("{a2_prefix}:{digest_uri}").as_bytes()]));
    hex(&md5(&[
        format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}").as_bytes()
    ]))
}

/// Parses `k=v,k="v, with comma",...`.
pub fn directives(text: &str) -> Result<BTreeMap<String, String>, DigestError> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(DigestError::Malformed(format!(
                "directive {key:?} has no value"
            )));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => {
                        if let Some(c) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err(DigestError::Malformed("unterminated quoted value".into())),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        let key = key.trim().to_ascii_lowercase();
        if out.insert(key.clone(), value.trim().to_owned()).is_some() {
            return Err(DigestError::Malformed(format!(
                "directive {key} given twice"
            )));
        }
    }
}

/// A random nonce, from the caller's random bytes.
pub fn nonce_from(random: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(random)
}

#[derive(Debug)]
enum ServerState {
    Initial,
    Challenged { nonce: String },
    Done,
}

/// The server side of one exchange.
#[derive(Debug)]
pub struct DigestServer {
    state: ServerState,
    nonce: String,
}

impl DigestServer {
    /// `nonce`: fresh random text for this exchange.
    pub fn new(nonce: String) -> DigestServer {
        DigestServer {
            state: ServerState::Initial,
            nonce,
        }
    }

    pub fn is_complete(&self) -> bool {
        matches!(self.state, ServerState::Done)
    }

    /// Takes the client's token. `password` looks a user up. Returns the token to send
    /// and, once authenticated, the user.
    pub fn step(
        &mut self,
        token: &[u8],
        password: impl Fn(&str) -> Option<String>,
    ) -> Result<(Vec<u8>, Option<String>), DigestError> {
        match std::mem::replace(&mut self.state, ServerState::Done) {
            ServerState::Initial => {
                let challenge = format!(
                    "realm=\"{REALM}\",nonce=\"{}\",qop=\"auth\",charset=utf-8,algorithm=md5-sess",
                    self.nonce
                );
                self.state = ServerState::Challenged {
                    nonce: self.nonce.clone(),
                };
                Ok((challenge.into_bytes(), None))
            }
            ServerState::Challenged { nonce } => {
                let text = std::str::from_utf8(token)
                    .map_err(|_| DigestError::Malformed("not UTF-8".into()))?;
                let d = directives(text)?;
                let get = |k: &str| {
                    d.get(k)
                        .map(String::as_str)
                        .ok_or_else(|| DigestError::Malformed(format!("no {k}")))
                };
                let user = get("username")?;
                let realm = d.get("realm").map_or(REALM, String::as_str);
                if realm != REALM {
                    return Err(DigestError::Malformed(format!("realm {realm:?}")));
                }
                if get("nonce")? != nonce {
                    return Err(DigestError::Malformed("the nonce is not ours".into()));
                }
                let nc = get("nc")?;
                if nc != "00000001" {
                    return Err(DigestError::Malformed(format!("nonce count {nc}")));
                }
                let qop = d.get("qop").map_or("auth", String::as_str);
                if qop != "auth" {
                    return Err(DigestError::Malformed(format!("qop {qop} (only auth)")));
                }
                let cnonce = get("cnonce")?;
                let uri = get("digest-uri")?;
                let authzid = d.get("authzid").map(String::as_str);
                if authzid.is_some_and(|a| a != user) {
                    return Err(DigestError::Failed);
                }
                let proof = get("response")?;
                // An unknown user costs the same work, and fails the same way.
                let known = password(user);
                let pw = known.clone().unwrap_or_default();
                let expected = response_value(
                    user,
                    realm,
                    &pw,
                    &nonce,
                    cnonce,
                    nc,
                    qop,
                    uri,
                    authzid,
                    "AUTHENTICATE",
                );
                let same = expected.len() == proof.len()
                    && expected
                        .bytes()
                        .zip(proof.to_ascii_lowercase().bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0;
                if known.is_none() || !same {
                    return Err(DigestError::Failed);
                }
                let rspauth =
                    response_value(user, realm, &pw, &nonce, cnonce, nc, qop, uri, authzid, "");
                Ok((
                    format!("rspauth={rspauth}").into_bytes(),
                    Some(user.to_owned()),
                ))
            }
            // The exchange is over; a client may still send an empty token.
            ServerState::Done => Ok((Vec::new(), None)),
        }
    }
}

/// The client side of one exchange.
#[derive(Debug)]
pub struct DigestClient {
    user: String,
    password: String,
    cnonce: String,
    expected_rspauth: Option<String>,
    complete: bool,
}

impl DigestClient {
    pub fn new(user: &str, password: &str, cnonce: String) -> DigestClient {
        DigestClient {
            user: user.to_owned(),
            password: password.to_owned(),
            cnonce,
            expected_rspauth: None,
            complete: false,
        }
    }

    /// The first token: empty (DIGEST-MD5 has no initial response).
    pub fn first(&self) -> Vec<u8> {
        Vec::new()
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Takes a server token; returns the next token to send, if any.
    pub fn step(&mut self, token: &[u8]) -> Result<Option<Vec<u8>>, DigestError> {
        let text =
            std::str::from_utf8(token).map_err(|_| DigestError::Malformed("not UTF-8".into()))?;
        let d = directives(text)?;
        if let Some(expected) = &self.expected_rspauth {
            if d.get("rspauth") != Some(expected) {
                return Err(DigestError::BadServer);
            }
            self.complete = true;
            return Ok(None);
        }
        let nonce = d
            .get("nonce")
            .ok_or_else(|| DigestError::Malformed("challenge without a nonce".into()))?;
        let realm = d.get("realm").map_or(REALM, String::as_str);
        let (nc, qop) = ("00000001", "auth");
        let [response, rspauth] = ["AUTHENTICATE", ""].map(|a2| {
            let (user, password, cnonce) = (&self.user, &self.password, &self.cnonce);
            response_value(
                user, realm, password, nonce, cnonce, nc, qop, DIGEST_URI, None, a2,
            )
        });
        self.expected_rspauth = Some(rspauth);
        let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        Ok(Some(
            format!(
                "charset=utf-8,username=\"{}\",realm=\"{}\",nonce=\"{}\",nc={nc},cnonce=\"{}\",digest-uri=\"{DIGEST_URI}\",maxbuf=65536,response={response},qop={qop}",
                quote(&self.user),
                quote(realm),
                quote(nonce),
                quote(&self.cnonce),
            )
            .into_bytes(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2831_example() {
        let [r, rspauth] = ["AUTHENTICATE", ""].map(|a2| {
            let (nonce, cnonce) = ("OA6MG9tEQGm2hh", "OA6MHXh6VqTrRk");
            let uri = "imap/elwood.innosoft.com";
            response_value(
                "chris",
                "elwood.innosoft.com",
                "secret",
                nonce,
                cnonce,
                "00000001",
                "auth",
                uri,
                None,
                a2,
            )
        });
        assert_eq!(r, "d388dad90d4bbd760a152321f2143af7");
        assert_eq!(rspauth, "ea40f60335c427b5527b84dbabcdfffd");
    }

    fn users(u: &str) -> Option<String> {
        (u == "kafka").then(|| "kafka-secret".to_owned())
    }

    #[test]
    fn exchange_both_sides() {
        let mut server = DigestServer::new("srvnonce".into());
        let mut client = DigestClient::new("kafka", "kafka-secret", "clinonce".into());
        let (challenge, who) = server.step(&client.first(), users).unwrap();
        assert!(who.is_none());
        let response = client.step(&challenge).unwrap().unwrap();
        let (rspauth, who) = server.step(&response, users).unwrap();
        assert_eq!(who.as_deref(), Some("kafka"));
        assert!(server.is_complete());
        assert_eq!(client.step(&rspauth).unwrap(), None);
        assert!(client.is_complete());
        // A trailing empty token after the end is answered with an empty one.
        assert_eq!(server.step(b"", users).unwrap(), (Vec::new(), None));
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        for (user, pw) in [("kafka", "nope"), ("nobody", "kafka-secret")] {
            let mut server = DigestServer::new("n".into());
            let mut client = DigestClient::new(user, pw, "c".into());
            let (challenge, _) = server.step(&[], users).unwrap();
            let response = client.step(&challenge).unwrap().unwrap();
            assert_eq!(server.step(&response, users), Err(DigestError::Failed));
        }
    }

    #[test]
    fn malformed_responses() {
        for bad in [
            &b"username=\"kafka\""[..],
            b"\xff\xfe",
            b"username=\"unterminated",
            b"username=a,username=b",
            b"novalue",
        ] {
            let mut server = DigestServer::new("n".into());
            server.step(&[], users).unwrap();
            assert!(server.step(bad, users).is_err(), "{bad:?}");
        }
        let mut client = DigestClient::new("kafka", "pw", "c".into());
        assert!(
            client.step(b"realm=\"x\"").is_err(),
            "a challenge without a nonce"
        );
    }

    #[test]
    fn directive_parsing() {
        let d = directives("a=1, b=\"x, \\\"y\\\"\",C=tok").unwrap();
        assert_eq!(d["a"], "1");
        assert_eq!(d["b"], "x, \"y\"");
        assert_eq!(d["c"], "tok");
    }
}
