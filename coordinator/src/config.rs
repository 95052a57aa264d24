//! Command-line configuration. Every flag has an `FJORD_*` environment fallback.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// fjord-coordinator: a coordination service that speaks the ZooKeeper client protocol.
///
/// Stock ZooKeeper clients (zkCli.sh, kazoo, Curator, the zookeeper crates) work against it
/// unchanged. Standalone, every write is fsynced to the log before it is acknowledged; as a
/// member of an ensemble (`--id`, `--peer-listen`, `--peers`), once a majority of the
/// members has it fsynced.
#[derive(Debug, Clone, Parser)]
#[command(name = "fjord-coordinator", version)]
pub struct Config {
    /// Address to listen on for clients (and four-letter words). Port 0 picks a free port;
    /// the chosen address is printed as `listening on ADDR`.
    #[arg(long, env = "FJORD_LISTEN", default_value = "127.0.0.1:2181")]
    pub listen: SocketAddr,

    /// This member's id in an ensemble (1..=255); 1 when standalone.
    #[arg(long, env = "FJORD_ID", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=255))]
    pub id: u64,

    /// Where this member listens for the other members (ensemble mode).
    #[arg(long, env = "FJORD_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,

    /// Every voting member's peer address, this one included: `1=HOST:PORT,2=HOST:PORT,...`.
    /// Without it the coordinator runs standalone.
    #[arg(long, env = "FJORD_PEERS")]
    pub peers: Option<String>,

    /// Names the ensemble; members of different ensembles refuse to talk. By default it is
    /// derived from `--peers` when the data directory is first used.
    #[arg(long, env = "FJORD_CLUSTER_ID")]
    pub cluster_id: Option<String>,

    /// A follower that hears nothing from the leader for this long (up to twice this)
    /// starts an election; the leader sends heartbeats five times as often. A follower
    /// whose leader's process is gone (its peer port refuses connections) starts one as
    /// soon as the others will vote (twice this after the leader's last word).
    #[arg(long, env = "FJORD_ELECTION_TIMEOUT_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub election_timeout_ms: u64,

    /// Directory for the transaction log and snapshots. Created if missing. Only one
    /// coordinator may use a directory at a time.
    #[arg(long, env = "FJORD_DATA_DIR")]
    pub data_dir: PathBuf,

    /// The basic time unit in milliseconds (ZooKeeper's tickTime). Session timeouts are
    /// negotiated within [2, 20] ticks unless set below, and expiry is checked every half tick.
    #[arg(long, env = "FJORD_TICK_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub tick_ms: u64,

    /// Smallest session timeout granted, in ms (default: 2 × tick).
    #[arg(long, env = "FJORD_MIN_SESSION_MS")]
    pub min_session_ms: Option<i32>,

    /// Largest session timeout granted, in ms (default: 20 × tick).
    #[arg(long, env = "FJORD_MAX_SESSION_MS")]
    pub max_session_ms: Option<i32>,

    /// Take a snapshot after this many transactions; the log before it is then removed.
    #[arg(long, env = "FJORD_SNAPSHOT_TXNS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_txns: u64,

    /// Largest request frame accepted, in bytes (ZooKeeper's jute.maxbuffer). Larger frames
    /// close the connection.
    #[arg(long, env = "FJORD_MAX_FRAME_BYTES", default_value_t = 1024 * 1024)]
    pub max_frame_bytes: usize,

    /// Most client connections at once; further ones are closed on arrival.
    #[arg(long, env = "FJORD_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Most connections from one IP address (0: no limit), like ZooKeeper's maxClientCnxns.
    #[arg(long, env = "FJORD_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// Most unanswered requests per connection; the server stops reading from a connection
    /// that reaches it until replies go out.
    #[arg(long, env = "FJORD_MAX_OUTSTANDING", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_outstanding: u64,

    /// How often empty container nodes are looked for and deleted, in ms.
    #[arg(long, env = "FJORD_CONTAINER_CHECK_MS", default_value_t = 60_000)]
    pub container_check_ms: u64,

    /// Serve Prometheus metrics (/metrics), /healthz, /readyz and ZooKeeper's AdminServer
    /// commands (/commands) over HTTP on HOST:PORT. Off unless given; port 0 picks a free
    /// port, printed as `http listening on ADDR`.
    #[arg(long, env = "FJORD_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,

    /// A TLS client port (ZooKeeper's secureClientPort), beside the plain one. Port 0 picks
    /// a free port, printed as `secure listening on ADDR`.
    #[arg(long, env = "FJORD_SECURE_LISTEN", requires_all = ["ssl_certificate", "ssl_key"])]
    pub secure_listen: Option<SocketAddr>,

    /// Serve clients on the TLS port only: no plain client port (`--listen` is then only
    /// this member's name in a standalone configuration). `listening on` prints the TLS
    /// address.
    #[arg(long, env = "FJORD_SECURE_ONLY", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", requires = "secure_listen")]
    pub secure_only: bool,

    /// PEM certificate chain of the TLS port.
    #[arg(long, env = "FJORD_SSL_CERTIFICATE")]
    pub ssl_certificate: Option<PathBuf>,

    /// PEM private key of --ssl-certificate.
    #[arg(long, env = "FJORD_SSL_KEY")]
    pub ssl_key: Option<PathBuf>,

    /// PEM CA certificate(s) that sign client certificates.
    #[arg(long, env = "FJORD_SSL_CA")]
    pub ssl_ca: Option<PathBuf>,

    /// Client certificates on the TLS port: required (ZooKeeper's default, "need"),
    /// requested ("want") or none. A verified certificate gives the id `x509:<subject>`.
    #[arg(long, env = "FJORD_SSL_CLIENT_AUTH", default_value = "required", value_parser = ["none", "requested", "required"])]
    pub ssl_client_auth: String,

    /// SASL (DIGEST-MD5) users: a JAAS file with a `Server` section of
    /// `user_<name>="<password>"` entries (as ZooKeeper's), or `name=password` lines. A
    /// login gives the id `sasl:<name>`.
    #[arg(long, env = "FJORD_SASL_USERS")]
    pub sasl_users: Option<PathBuf>,

    /// ZooKeeper's superDigest, `user:base64(sha1(user:password))`: `addauth digest
    /// user:password` then passes every ACL.
    #[arg(long, env = "FJORD_SUPER_DIGEST")]
    pub super_digest: Option<String>,

    /// Refuse every request of a connection that has not authenticated with one of
    /// --require-auth-schemes with SESSIONCLOSEDREQUIRESASLAUTH, and close it (ZooKeeper's
    /// enforce.auth.enabled).
    #[arg(long, env = "FJORD_REQUIRE_AUTH", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub require_auth: bool,

    /// The authentication schemes --require-auth accepts, comma-separated: sasl, digest,
    /// x509 (ZooKeeper's enforce.auth.schemes).
    #[arg(long, env = "FJORD_REQUIRE_AUTH_SCHEMES", default_value = "sasl")]
    pub require_auth_schemes: String,
}

/// `user_<name>="<password>"` entries of a JAAS file, or `name=password` lines.
pub fn parse_sasl_users(text: &str) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let mut users = std::collections::HashMap::new();
    if text.contains("user_") {
        let mut rest = text;
        while let Some(i) = rest.find("user_") {
            rest = &rest[i + 5..];
            let Some((name, after)) = rest.split_once('=') else {
                break;
            };
            let after = after.trim_start();
            let Some(quoted) = after.strip_prefix('"') else {
                anyhow::bail!("user_{name}: the password must be quoted");
            };
            let Some(end) = quoted.find('"') else {
                anyhow::bail!("user_{name}: unterminated password");
            };
            users.insert(name.trim().to_owned(), quoted[..end].to_owned());
            rest = &quoted[end + 1..];
        }
    } else {
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, password)) = line.split_once('=') else {
                anyhow::bail!("{line:?} is not name=password");
            };
            users.insert(name.trim().to_owned(), password.to_owned());
        }
    }
    Ok(users)
}

impl Config {
    /// The authentication settings.
    pub fn auth(&self) -> anyhow::Result<crate::processor::AuthConfig> {
        use anyhow::Context;
        let sasl_users = match &self.sasl_users {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --sasl-users {}", path.display()))?;
                parse_sasl_users(&text)
                    .with_context(|| format!("--sasl-users {}", path.display()))?
            }
            None => Default::default(),
        };
        if let Some(d) = &self.super_digest {
            if !d.contains(':') {
                anyhow::bail!("--super-digest must be user:base64(sha1(user:password))");
            }
        }
        let mut schemes = Vec::new();
        for s in self
            .require_auth_schemes
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if !["sasl", "digest", "x509"].contains(&s) {
                anyhow::bail!("--require-auth-schemes: {s:?} is not sasl, digest or x509");
            }
            schemes.push(s.to_owned());
        }
        if self.require_auth && schemes.is_empty() {
            anyhow::bail!("--require-auth needs at least one scheme in --require-auth-schemes");
        }
        Ok(crate::processor::AuthConfig {
            sasl_users,
            super_digest: self.super_digest.clone(),
            required_schemes: if self.require_auth {
                schemes
            } else {
                Vec::new()
            },
        })
    }

    /// The TLS port's rustls config, if there is one.
    pub fn server_tls(&self) -> anyhow::Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
        use anyhow::Context;
        let (Some(certificate), Some(key)) = (&self.ssl_certificate, &self.ssl_key) else {
            return Ok(None);
        };
        let client_auth = fjord_shared::tls::ClientAuth::parse(&self.ssl_client_auth)
            .context("--ssl-client-auth must be none, requested or required")?;
        let tls = fjord_shared::tls::ServerTls {
            certificate: certificate.clone(),
            key: key.clone(),
            ca: self.ssl_ca.clone(),
            client_auth,
        };
        Ok(Some(tls.config().context("TLS settings")?))
    }
    /// The member settings: validates `--id`, `--peers` and `--peer-listen` together.
    pub fn member(&self) -> anyhow::Result<crate::ensemble::member::MemberConfig> {
        use anyhow::bail;
        let peers = match (&self.peers, self.peer_listen) {
            (None, None) => std::iter::once((self.id, self.listen.to_string())).collect(),
            (Some(p), Some(_)) => {
                let peers = crate::ensemble::member::parse_peers(p)?;
                if !peers.contains_key(&self.id) {
                    bail!("--peers does not list this member (--id {})", self.id);
                }
                peers
            }
            (Some(_), None) => bail!("--peers needs --peer-listen (this member's peer address)"),
            (None, Some(_)) => bail!("--peer-listen needs --peers (every member's peer address)"),
        };
        Ok(crate::ensemble::member::MemberConfig {
            id: self.id,
            peers,
            peer_listen: self.peer_listen,
            cluster_id: self.cluster_id.clone(),
            election_timeout_ms: self.election_timeout_ms,
            snapshot_txns: self.snapshot_txns,
        })
    }

    pub fn min_session(&self) -> i32 {
        self.min_session_ms.unwrap_or((2 * self.tick_ms) as i32)
    }

    pub fn max_session(&self) -> i32 {
        self.max_session_ms.unwrap_or((20 * self.tick_ms) as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_sasl_users;

    #[test]
    fn sasl_users_from_jaas_or_lines() {
        let jaas = "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  user_kafka=\"k p\"\n  user_alice=\"a=b\";\n};\n";
        let users = parse_sasl_users(jaas).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users["kafka"], "k p");
        assert_eq!(users["alice"], "a=b");
        let users = parse_sasl_users("# users\nbob=secret=1\n").unwrap();
        assert_eq!(users["bob"], "secret=1");
        assert!(parse_sasl_users("user_x=unquoted;").is_err());
        assert!(parse_sasl_users("no separator").is_err());
    }
}
