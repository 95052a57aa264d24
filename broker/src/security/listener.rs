//! Listeners as Kafka names them: `--listeners NAME://HOST:PORT,...`, the security protocol
//! of each name (`--listener-security-protocol-map NAME:PROTOCOL,...`), the addresses
//! clients are told (`--advertised-listeners`) and the listener brokers use among themselves
//! (`--inter-broker-listener`).

use fjord_shared::cluster::Endpoint;
use std::collections::BTreeMap;
use std::fmt;

/// How a listener protects its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Parses Kafka's name (case-insensitive, as Kafka's `security.protocol`).
    pub fn parse(text: &str) -> Option<SecurityProtocol> {
        SecurityProtocol::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(text.trim()))
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A bad listener setting, with the flag it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {reason}")]
pub struct ListenerError {
    pub flag: &'static str,
    pub reason: String,
}

fn bad(flag: &'static str, reason: impl Into<String>) -> ListenerError {
    ListenerError {
        flag,
        reason: reason.into(),
    }
}

/// One listener: its name, where it binds, what it speaks and what clients are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    /// `HOST:PORT` to bind; an empty host means every interface.
    pub bind: String,
    pub protocol: SecurityProtocol,
    /// The advertised host and port, if given (otherwise the bound address).
    pub advertised: Option<(String, u16)>,
}

/// Every listener of a broker and which one brokers use to reach each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    pub listeners: Vec<Listener>,
    pub inter_broker: String,
}

/// Kafka's default map: each protocol's name maps to itself.
fn default_map() -> BTreeMap<String, SecurityProtocol> {
    SecurityProtocol::ALL
        .into_iter()
        .map(|p| (p.name().to_owned(), p))
        .collect()
}

/// Parses `NAME:PROTOCOL,...`.
pub fn parse_protocol_map(text: &str) -> Result<BTreeMap<String, SecurityProtocol>, ListenerError> {
    const FLAG: &str = "--listener-security-protocol-map";
    let mut map = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, proto) = item
            .split_once(':')
            .ok_or_else(|| bad(FLAG, format!("{item:?} is not NAME:PROTOCOL")))?;
        let name = listener_name(FLAG, name)?;
        let proto = SecurityProtocol::parse(proto).ok_or_else(|| {
            bad(
                FLAG,
                format!("unknown security protocol {proto:?} (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"),
            )
        })?;
        if map.insert(name.clone(), proto).is_some() {
            return Err(bad(FLAG, format!("listener {name} appears twice")));
        }
    }
    Ok(map)
}

fn listener_name(flag: &'static str, name: &str) -> Result<String, ListenerError> {
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(bad(flag, format!("bad listener name {name:?}")));
    }
    Ok(name.to_ascii_uppercase())
}

/// Parses `NAME://HOST:PORT,...` into (name, host, port) in order.
fn parse_endpoints(
    flag: &'static str,
    text: &str,
) -> Result<Vec<(String, String, u16)>, ListenerError> {
    let mut out: Vec<(String, String, u16)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, rest) = item
            .split_once("://")
            .ok_or_else(|| bad(flag, format!("{item:?} is not NAME://HOST:PORT")))?;
        let name = listener_name(flag, name)?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad(flag, format!("{item:?} has no port")))?;
        let port: u16 = port
            .parse()
            .map_err(|_| bad(flag, format!("{item:?}: {port:?} is not a port")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if out.iter().any(|(n, _, _)| *n == name) {
            return Err(bad(flag, format!("listener {name} appears twice")));
        }
        out.push((name, host, port));
    }
    if out.is_empty() {
        return Err(bad(flag, "no listener given"));
    }
    Ok(out)
}

fn bind_address(host: &str, port: u16) -> String {
    if host.is_empty() {
        format!("0.0.0.0:{port}")
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Listeners {
    /// One PLAINTEXT listener, for `--listen ADDR [--advertised HOST:PORT]`.
    pub fn single(bind: String, advertised: Option<(String, u16)>) -> Listeners {
        Listeners {
            listeners: vec![Listener {
                name: "PLAINTEXT".to_owned(),
                bind,
                protocol: SecurityProtocol::Plaintext,
                advertised,
            }],
            inter_broker: "PLAINTEXT".to_owned(),
        }
    }

    /// From Kafka-style settings. `inter_broker` defaults to the first listener (Kafka
    /// defaults to PLAINTEXT, which need not exist here).
    pub fn parse(
        listeners: &str,
        protocol_map: Option<&str>,
        advertised: Option<&str>,
        inter_broker: Option<&str>,
    ) -> Result<Listeners, ListenerError> {
        let map = match protocol_map {
            Some(m) => parse_protocol_map(m)?,
            None => default_map(),
        };
        let mut out = Vec::new();
        for (name, host, port) in parse_endpoints("--listeners", listeners)? {
            let protocol = *map.get(&name).ok_or_else(|| {
                bad(
                    "--listener-security-protocol-map",
                    format!("listener {name} has no security protocol"),
                )
            })?;
            out.push(Listener {
                name,
                bind: bind_address(&host, port),
                protocol,
                advertised: None,
            });
        }
        if let Some(adv) = advertised {
            for (name, host, port) in parse_endpoints("--advertised-listeners", adv)? {
                let l = out.iter_mut().find(|l| l.name == name).ok_or_else(|| {
                    bad(
                        "--advertised-listeners",
                        format!("{name} is not one of --listeners"),
                    )
                })?;
                if host.is_empty() || port == 0 {
                    return Err(bad(
                        "--advertised-listeners",
                        format!("{name} must name a host and a port"),
                    ));
                }
                l.advertised = Some((host, port));
            }
        }
        let inter_broker = match inter_broker {
            Some(n) => {
                let n = listener_name("--inter-broker-listener", n)?;
                if !out.iter().any(|l| l.name == n) {
                    return Err(bad(
                        "--inter-broker-listener",
                        format!("{n} is not one of --listeners"),
                    ));
                }
                n
            }
            None => out[0].name.clone(),
        };
        Ok(Listeners {
            listeners: out,
            inter_broker,
        })
    }

    /// The inter-broker listener's security protocol.
    pub fn inter_broker_protocol(&self) -> SecurityProtocol {
        self.listeners
            .iter()
            .find(|l| l.name == self.inter_broker)
            .map_or(SecurityProtocol::Plaintext, |l| l.protocol)
    }
}

/// The endpoint registered for a bound listener: its advertised address, or the bound one.
pub fn registered_endpoint(l: &Listener, bound: std::net::SocketAddr) -> Endpoint {
    let (host, port) = match &l.advertised {
        Some((h, p)) => (h.clone(), *p),
        None => (bound.ip().to_string(), bound.port()),
    };
    Endpoint {
        listener: l.name.clone(),
        host,
        port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_style_listeners() {
        let l = Listeners::parse(
            "PLAINTEXT://127.0.0.1:0,secure://:9093, INTERNAL://[::1]:9094",
            Some("PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL,INTERNAL:ssl"),
            Some("SECURE://broker1.example:19093"),
            Some("internal"),
        )
        .unwrap();
        assert_eq!(l.inter_broker, "INTERNAL");
        assert_eq!(l.inter_broker_protocol(), SecurityProtocol::Ssl);
        let got: Vec<_> = l
            .listeners
            .iter()
            .map(|x| {
                (
                    x.name.as_str(),
                    x.bind.as_str(),
                    x.protocol,
                    x.advertised.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "PLAINTEXT",
                    "127.0.0.1:0",
                    SecurityProtocol::Plaintext,
                    None
                ),
                (
                    "SECURE",
                    "0.0.0.0:9093",
                    SecurityProtocol::SaslSsl,
                    Some(("broker1.example".to_owned(), 19093))
                ),
                ("INTERNAL", "[::1]:9094", SecurityProtocol::Ssl, None),
            ]
        );
    }

    #[test]
    fn default_map_and_first_listener_for_brokers() {
        let l =
            Listeners::parse("SASL_SSL://127.0.0.1:0,SSL://127.0.0.1:0", None, None, None).unwrap();
        assert_eq!(l.inter_broker, "SASL_SSL");
        assert_eq!(l.listeners[1].protocol, SecurityProtocol::Ssl);
    }

    #[test]
    fn mistakes_are_named() {
        let e = |r: Result<Listeners, ListenerError>| r.unwrap_err().to_string();
        assert!(e(Listeners::parse("CLIENT://h:1", None, None, None))
            .contains("CLIENT has no security protocol"));
        assert!(e(Listeners::parse("PLAINTEXT://h", None, None, None)).contains("no port"));
        assert!(e(Listeners::parse("PLAINTEXT://h:99999", None, None, None)).contains("not a port"));
        assert!(e(Listeners::parse(
            "PLAINTEXT://h:1,PLAINTEXT://h:2",
            None,
            None,
            None
        ))
        .contains("twice"));
        assert!(e(Listeners::parse("", None, None, None)).contains("no listener"));
        assert!(e(Listeners::parse("A://h:1", Some("A:TLS"), None, None))
            .contains("unknown security protocol"));
        assert!(e(Listeners::parse(
            "SSL://h:1",
            None,
            Some("PLAINTEXT://x:1"),
            None
        ))
        .contains("not one of --listeners"));
        assert!(
            e(Listeners::parse("SSL://h:1", None, None, Some("SASL_SSL")))
                .contains("not one of --listeners")
        );
        assert!(
            e(Listeners::parse("SSL://h:1", None, Some("SSL://:1"), None))
                .contains("host and a port")
        );
    }

    #[test]
    fn registered_endpoints_use_the_advertised_or_bound_address() {
        let l = Listeners::parse("SSL://127.0.0.1:0", None, None, None).unwrap();
        let bound: std::net::SocketAddr = "127.0.0.1:4242".parse().unwrap();
        assert_eq!(
            registered_endpoint(&l.listeners[0], bound).to_string(),
            "SSL://127.0.0.1:4242"
        );
    }
}
