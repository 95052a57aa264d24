//! How a client (the `fjord` CLI, or a broker reaching another broker) connects: a Kafka
//! client property file, read the way librdkafka and the Java client read theirs.
//!
//! Understood: `security.protocol`; `sasl.mechanism` (or librdkafka's `sasl.mechanisms`),
//! `sasl.username` and `sasl.password` (or the Java client's `sasl.jaas.config` with
//! `username="..." password="..."`); `ssl.ca.location` (or `ssl.truststore.location` with
//! `ssl.truststore.type=PEM`); `ssl.certificate.location` and `ssl.key.location` (or
//! `ssl.keystore.location` with `ssl.keystore.type=PEM`: key and chain in one file). Other
//! Kafka properties are ignored, so one file can serve several clients.

use super::listener::SecurityProtocol;
use super::sasl::SaslMechanism;
use fjord_shared::tls::ClientTls;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A SASL login.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslLogin {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SaslLogin({} as {})",
            self.mechanism.name(),
            self.username
        )
    }
}

/// A client's security settings, ready to connect with.
#[derive(Clone)]
pub struct ClientSecurity {
    pub protocol: SecurityProtocol,
    pub sasl: Option<SaslLogin>,
    /// Built when the protocol uses TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ClientSecurity {
    fn default() -> Self {
        ClientSecurity {
            protocol: SecurityProtocol::Plaintext,
            sasl: None,
            tls: None,
        }
    }
}

impl fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("protocol", &self.protocol)
            .field("sasl", &self.sasl)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Java-style `key=value` (or `key: value`) lines; `#` and `!` start comments.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let split = line.find(['=', ':']).map(|i| (&line[..i], &line[i + 1..]));
        if let Some((k, v)) = split {
            out.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    out
}

/// `name="value"` from a JAAS config line.
fn jaas_option(jaas: &str, name: &str) -> Option<String> {
    let mut rest = jaas;
    while let Some(i) = rest.find(name) {
        let after = rest[i + name.len()..].trim_start();
        let before_ok = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        if before_ok {
            if let Some(v) = after.strip_prefix('=') {
                let v = v.trim_start().strip_prefix('"')?;
                return v.find('"').map(|end| v[..end].to_owned());
            }
        }
        rest = &rest[i + name.len()..];
    }
    None
}

impl ClientSecurity {
    /// Reads a property file; relative paths in it are taken from the file's directory.
    pub fn from_file(path: &Path) -> Result<ClientSecurity, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        ClientSecurity::from_properties(&parse_properties(&text), base)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// From parsed properties.
    pub fn from_properties(
        props: &BTreeMap<String, String>,
        base: &Path,
    ) -> Result<ClientSecurity, String> {
        let get = |k: &str| props.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let protocol = match get("security.protocol") {
            Some(p) => SecurityProtocol::parse(p).ok_or_else(|| {
                format!("security.protocol {p:?} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
            })?,
            None => SecurityProtocol::Plaintext,
        };
        let file = |k: &str| -> Option<PathBuf> {
            get(k).map(|v| {
                let p = PathBuf::from(v);
                if p.is_absolute() {
                    p
                } else {
                    base.join(p)
                }
            })
        };
        let pem_typed = |k: &str| get(k).is_none_or(|t| t.eq_ignore_ascii_case("PEM"));
        let sasl = if protocol.uses_sasl() {
            let mechanism = get("sasl.mechanism")
                .or_else(|| get("sasl.mechanisms"))
                .unwrap_or("PLAIN");
            let mechanism =
                SaslMechanism::parse(&mechanism.to_ascii_uppercase()).ok_or_else(|| {
                    format!(
                        "SASL mechanism {mechanism:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                    )
                })?;
            let jaas = get("sasl.jaas.config").unwrap_or("");
            let username = get("sasl.username")
                .map(str::to_owned)
                .or_else(|| jaas_option(jaas, "username"))
                .ok_or("SASL needs sasl.username (or sasl.jaas.config)")?;
            let password = get("sasl.password")
                .map(str::to_owned)
                .or_else(|| jaas_option(jaas, "password"))
                .ok_or("SASL needs sasl.password (or sasl.jaas.config)")?;
            Some(SaslLogin {
                mechanism,
                username,
                password,
            })
        } else {
            None
        };
        let tls = if protocol.uses_tls() {
            let ca = file("ssl.ca.location").or_else(|| {
                pem_typed("ssl.truststore.type")
                    .then(|| file("ssl.truststore.location"))
                    .flatten()
            });
            let keystore = pem_typed("ssl.keystore.type")
                .then(|| file("ssl.keystore.location"))
                .flatten();
            let settings = ClientTls {
                ca,
                certificate: file("ssl.certificate.location").or_else(|| keystore.clone()),
                key: file("ssl.key.location").or(keystore),
            };
            Some(settings.config().map_err(|e| e.to_string())?)
        } else {
            None
        };
        Ok(ClientSecurity {
            protocol,
            sasl,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_and_java_spellings() {
        let props = parse_properties(
            "# admin\nsecurity.protocol=sasl_plaintext\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username=admin\nsasl.password=p=w:d\n",
        );
        let s = ClientSecurity::from_properties(&props, Path::new("/")).unwrap();
        assert_eq!(s.protocol, SecurityProtocol::SaslPlaintext);
        let login = s.sasl.unwrap();
        assert_eq!(login.mechanism.name(), "SCRAM-SHA-512");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("admin", "p=w:d")
        );

        let props = parse_properties(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"bob\" password=\"s3cret\";\n",
        );
        let login = ClientSecurity::from_properties(&props, Path::new("/"))
            .unwrap()
            .sasl
            .unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("bob", "s3cret")
        );
    }

    #[test]
    fn mistakes_are_named() {
        let e = |text: &str| {
            ClientSecurity::from_properties(&parse_properties(text), Path::new("/")).unwrap_err()
        };
        assert!(e("security.protocol=TLS").contains("security.protocol"));
        assert!(e("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\nsasl.username=a\nsasl.password=b").contains("GSSAPI"));
        assert!(e("security.protocol=SASL_PLAINTEXT\nsasl.username=a").contains("sasl.password"));
        assert!(e("security.protocol=SSL").contains("CA file"));
        assert!(
            e("security.protocol=SSL\nssl.ca.location=/nonexistent/ca.pem")
                .contains("/nonexistent/ca.pem")
        );
    }

    #[test]
    fn plaintext_by_default() {
        let s = ClientSecurity::from_properties(&BTreeMap::new(), Path::new("/")).unwrap();
        assert_eq!(s.protocol, SecurityProtocol::Plaintext);
        assert!(s.sasl.is_none() && s.tls.is_none());
    }
}
