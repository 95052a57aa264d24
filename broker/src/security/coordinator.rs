//! How brokers and the `fjord` CLI reach a secured coordinator: TLS to its secure port
//! (optionally with a client certificate, the `x509` identity), a SASL DIGEST-MD5 login
//! (the `sasl` identity), or `digest` credentials.

use clap::Args;
use fjord_shared::coord_client::ConnectOptions;
use fjord_shared::tls::ClientTls;
use std::path::{Path, PathBuf};

/// Coordinator security flags (all optional; none means a plain, anonymous connection).
#[derive(Debug, Clone, Default, Args)]
pub struct CoordinatorSecurity {
    /// PEM CA that signed the coordinator's certificate: connect with TLS (to its
    /// --secure-listen port).
    #[arg(
        long,
        global = true,
        env = "FJORD_COORDINATOR_TLS_CA",
        value_name = "FILE"
    )]
    pub coordinator_tls_ca: Option<PathBuf>,

    /// PEM client certificate for the coordinator (its `x509:<subject>` identity).
    #[arg(
        long,
        global = true,
        env = "FJORD_COORDINATOR_TLS_CERTIFICATE",
        value_name = "FILE"
    )]
    pub coordinator_tls_certificate: Option<PathBuf>,

    /// PEM key of --coordinator-tls-certificate.
    #[arg(
        long,
        global = true,
        env = "FJORD_COORDINATOR_TLS_KEY",
        value_name = "FILE"
    )]
    pub coordinator_tls_key: Option<PathBuf>,

    /// Log in to the coordinator with SASL DIGEST-MD5 as this user (its `sasl:<user>`
    /// identity).
    #[arg(
        long,
        global = true,
        env = "FJORD_COORDINATOR_SASL_USER",
        value_name = "USER"
    )]
    pub coordinator_sasl_user: Option<String>,

    /// File whose first line is the SASL password (or set
    /// FJORD_COORDINATOR_SASL_PASSWORD).
    #[arg(
        long,
        global = true,
        env = "FJORD_COORDINATOR_SASL_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub coordinator_sasl_password_file: Option<PathBuf>,

    /// File whose first line is `user:password`, added as `digest` credentials (ZooKeeper's
    /// `addauth digest`), for example the super user's.
    #[arg(
        long,
        global = true,
        env = "FJORD_COORDINATOR_DIGEST_FILE",
        value_name = "FILE"
    )]
    pub coordinator_digest_file: Option<PathBuf>,
}

fn first_line(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the {what} file {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        anyhow::bail!("the {what} file {} is empty", path.display());
    }
    Ok(line)
}

impl CoordinatorSecurity {
    /// Whether these settings authenticate the client (a certificate, a SASL login or
    /// digest credentials), so that it can own znodes under Kafka's ACL policy.
    pub fn authenticates(&self) -> bool {
        self.coordinator_tls_certificate.is_some()
            || self.coordinator_sasl_user.is_some()
            || self.coordinator_digest_file.is_some()
    }

    /// `opts` with these settings applied.
    pub fn apply(&self, mut opts: ConnectOptions) -> anyhow::Result<ConnectOptions> {
        if let Some(ca) = &self.coordinator_tls_ca {
            let tls = ClientTls {
                ca: Some(ca.clone()),
                certificate: self.coordinator_tls_certificate.clone(),
                key: self.coordinator_tls_key.clone(),
            };
            opts = opts.tls(
                tls.config()
                    .map_err(|e| anyhow::anyhow!("coordinator TLS: {e}"))?,
            );
        } else if self.coordinator_tls_certificate.is_some() {
            anyhow::bail!("--coordinator-tls-certificate needs --coordinator-tls-ca");
        }
        if let Some(user) = &self.coordinator_sasl_user {
            let password = match (&self.coordinator_sasl_password_file, std::env::var("FJORD_COORDINATOR_SASL_PASSWORD")) {
                (Some(path), _) => first_line(path, "SASL password")?,
                (None, Ok(p)) if !p.is_empty() => p,
                _ => anyhow::bail!(
                    "--coordinator-sasl-user needs --coordinator-sasl-password-file or FJORD_COORDINATOR_SASL_PASSWORD"
                ),
            };
            opts = opts.sasl(user.clone(), password);
        }
        if let Some(path) = &self.coordinator_digest_file {
            let d = first_line(path, "digest")?;
            if !d.contains(':') {
                anyhow::bail!("the digest file {} must hold user:password", path.display());
            }
            opts.digest = Some(d);
        }
        Ok(opts)
    }
}
