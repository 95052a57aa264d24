//! TLS settings for the servers and their clients: rustls with the ring provider, chosen
//! explicitly (never the process default, so a second provider linked into the same binary
//! cannot make a config builder panic), PEM certificate, key and CA files.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Whether a TLS server asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never asks.
    None,
    /// Asks, and verifies one if given; a client without one is still served.
    Requested,
    /// A client without a certificate signed by the CA is refused.
    Required,
}

impl ClientAuth {
    pub fn parse(text: &str) -> Option<ClientAuth> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Some(ClientAuth::None),
            "requested" | "want" => Some(ClientAuth::Requested),
            "required" | "need" => Some(ClientAuth::Required),
            _ => None,
        }
    }
}

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no {what}")]
    Empty { path: PathBuf, what: &'static str },
    #[error("client certificates are {0:?} but no CA file is given to check them")]
    NoClientCa(ClientAuth),
    #[error("{0}")]
    Rustls(String),
}

/// The one crypto provider every config uses: ring, which also serves SCRAM, and builds
/// with no C toolchain beyond cc. rustls 0.23.48 marks it deprecated because ring has no
/// post-quantum key exchange (X25519MLKEM768); classic X25519/P-256 key exchange is what
/// every Kafka and ZooKeeper client offers today.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Every certificate in a PEM file, in order (the leaf first for a chain).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_owned(),
            what: "PEM certificate",
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            path: path.to_owned(),
            what: "PEM private key",
        },
        e => read_err(path, e),
    })
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in load_certs(ca)? {
        store
            .add(cert)
            .map_err(|e| read_err(ca, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(store)
}

fn rustls_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls(e.to_string())
}

/// A server's TLS settings.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// The CA that signs client certificates.
    pub ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl ServerTls {
    /// Loads the files and builds the rustls config.
    pub fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let certs = load_certs(&self.certificate)?;
        let key = load_key(&self.key)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?;
        let builder = match (self.client_auth, &self.ca) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (mode, None) => return Err(TlsError::NoClientCa(mode)),
            (mode, Some(ca)) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider);
                let verifier = if mode == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(verifier.build().map_err(rustls_err)?)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Rustls(format!("{}: {e}", self.key.display())))?;
        Ok(Arc::new(config))
    }
}

/// A client's TLS settings.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// The CA that signed the server's certificate.
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM chain) and its key, for servers that ask.
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// Loads the files and builds the rustls config. Without a CA, no server can be
    /// verified: refused, rather than trusting anything.
    pub fn config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let ca = self.ca.as_ref().ok_or_else(|| {
            TlsError::Rustls("a CA file is needed to verify the server's certificate".to_owned())
        })?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_root_certificates(roots(ca)?);
        let config = match (&self.certificate, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|e| TlsError::Rustls(format!("{}: {e}", key.display())))?,
            (Some(cert), None) => {
                // A PEM "keystore": the key and the chain in one file.
                builder
                    .with_client_auth_cert(load_certs(cert)?, load_key(cert)?)
                    .map_err(|e| TlsError::Rustls(format!("{}: {e}", cert.display())))?
            }
            (None, Some(key)) => {
                return Err(TlsError::Read {
                    path: key.clone(),
                    reason: "a client key needs its certificate".to_owned(),
                })
            }
            (None, None) => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// The name a client checks the server's certificate against: an IP address or a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| TlsError::Rustls(format!("{host:?} is not a host name: {e}")))
}

/// The RFC 2253 subject of the client's certificate on a server connection, if it sent one.
pub fn peer_subject(conn: &rustls::ServerConnection) -> Option<String> {
    let certs = conn.peer_certificates()?;
    crate::x509::subject_rfc2253(certs.first()?.as_ref())
}
