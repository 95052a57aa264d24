//! The Kafka network layer: accept loop and one task per connection.
//!
//! Each connection reads one length-prefixed request at a time, checks the length against
//! `socket.request.max.bytes` before allocating, decodes the header and body with the
//! `kafka-protocol` crate, runs the handler, and writes the response. Handling one request
//! at a time keeps responses in request order, which Kafka clients rely on. A produce with
//! `acks=0` gets no response at all.
//!
//! Bad input closes that connection with a logged reason: an impossible length, an unknown
//! API key, a version we do not serve (except ApiVersions, which answers
//! UNSUPPORTED_VERSION with the list so clients can retry), or a body that does not decode.
//!
//! Each listener has a security protocol. TLS listeners run the handshake first (a
//! verified client certificate names the principal). SASL listeners follow Kafka's states:
//! before authentication only ApiVersions and SaslHandshake are accepted, in frames of at
//! most 512 KiB; after SaslHandshake v1 only SaslAuthenticate (v0: raw SASL tokens); a
//! failed login is answered, then closed after 100 ms. With connections.max.reauth.ms the
//! session ends after that long unless the client re-authenticates (KIP-368).

use crate::broker::Broker;
use crate::handler;
use crate::response_buf::{ChunkedBuf, Encoded};
use crate::security::listener::SecurityProtocol;
use crate::security::sasl::{Authenticator, SaslMechanism, Step};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_shared::stream::Stream;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why a connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("request size {size} is outside 8..={max} (socket.request.max.bytes)")]
    BadSize { size: i64, max: usize },
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("{api:?} v{version} is not supported (we serve v{min}..=v{max})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("cannot decode {api:?} v{version}: {reason}")]
    Decode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode the {api:?} v{version} response: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0:?} before SASL authentication")]
    NotAuthenticated(ApiKey),
    #[error("{0:?} while a SASL exchange is under way (ILLEGAL_SASL_STATE)")]
    IllegalSaslState(ApiKey),
    #[error("SASL mechanism {0:?} is not enabled")]
    UnsupportedMechanism(String),
    #[error("SASL authentication failed: {0}")]
    AuthFailed(String),
    #[error("the SASL session ended (connections.max.reauth.ms) without re-authentication")]
    SessionExpired,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// One bound listener: its name, protocol and TLS acceptor.
pub struct ListenerRuntime {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serves one listener's clients until `shutdown` is cancelled; then closes every
/// connection and returns when all connection tasks have ended. `slots` caps the
/// connections of every listener together.
pub async fn run(
    listener: TcpListener,
    runtime: Arc<ListenerRuntime>,
    broker: Arc<Broker>,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = broker.config.max_connections, "too many connections; closing the new one");
            continue;
        };
        let broker = broker.clone();
        let runtime = runtime.clone();
        let token = shutdown.child_token();
        tasks.spawn(async move {
            let _slot = slot;
            match connection(stream, peer, &broker, &runtime, &token).await {
                Ok(()) => tracing::debug!(%peer, "connection closed"),
                Err(ConnError::Io(e)) => tracing::debug!(%peer, error = %e, "connection ended"),
                Err(e) => tracing::warn!(%peer, listener = %runtime.name, reason = %e, "closing the connection"),
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// The TLS handshake, then requests until the client leaves, the broker stops, or the
/// connection breaks a rule; a TLS connection always ends with close_notify.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    broker: &Broker,
    listener: &ListenerRuntime,
    token: &CancellationToken,
) -> Result<(), ConnError> {
    let _ = tcp.set_nodelay(true);
    let stream = match &listener.tls {
        None => Stream::Plain(tcp),
        Some(acceptor) => {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
            tokio::select! {
                r = handshake => match r {
                    Ok(Ok(s)) => Stream::Server(Box::new(s)),
                    Ok(Err(e)) => return Err(ConnError::Tls(e.to_string())),
                    Err(_) => return Err(ConnError::Tls(format!(
                        "no TLS handshake within {} s", TLS_HANDSHAKE_TIMEOUT.as_secs()
                    ))),
                },
                _ = token.cancelled() => return Ok(()),
            }
        }
    };
    // A verified client certificate names the principal (SASL, if any, replaces it).
    let principal = match &stream {
        Stream::Server(s) => {
            fjord_shared::tls::peer_subject(s.get_ref().1).map(|dn| format!("User:{dn}"))
        }
        _ => None,
    }
    .unwrap_or_else(|| ANONYMOUS.to_owned());
    let mut conn = Conn {
        reader: BufReader::with_capacity(64 * 1024, stream),
        peer,
        host: peer.ip().to_string(),
        broker,
        listener,
        principal,
        auth: if listener.protocol.uses_sasl() {
            Auth::Handshake
        } else {
            Auth::Open
        },
        expires: None,
    };
    let result = conn.serve(token).await;
    conn.reader.get_mut().close().await;
    result
}

/// The principal of a connection nobody has authenticated.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest frame accepted before a SASL client has authenticated (Kafka's
/// sasl.server.max.receive.size).
const PRE_AUTH_MAX_FRAME: usize = 512 * 1024;

/// How long a failed login waits before its connection is closed, to slow down guessing
/// (Kafka's connection.failed.authentication.delay.ms).
const FAILED_AUTH_DELAY: Duration = Duration::from_millis(100);

/// Where a connection is in authentication.
enum Auth {
    /// A listener without SASL: nothing to do.
    Open,
    /// Waiting for the first SaslHandshake.
    Handshake,
    /// After SaslHandshake v1: SaslAuthenticate requests carry the exchange.
    Framed { auth: Authenticator, reauth: bool },
    /// After SaslHandshake v0: raw length-prefixed tokens, no Kafka header.
    Raw { auth: Authenticator },
    /// Authenticated.
    Done,
}

struct Conn<'a> {
    reader: BufReader<Stream>,
    peer: SocketAddr,
    /// The peer's address as ACLs name hosts.
    host: String,
    broker: &'a Broker,
    listener: &'a ListenerRuntime,
    principal: String,
    auth: Auth,
    /// When the SASL session ends (KIP-368), if it does.
    expires: Option<tokio::time::Instant>,
}

impl Conn<'_> {
    fn authenticated(&self) -> bool {
        matches!(self.auth, Auth::Open | Auth::Done)
            || matches!(self.auth, Auth::Framed { reauth: true, .. })
    }

    async fn serve(&mut self, token: &CancellationToken) -> Result<(), ConnError> {
        loop {
            let (min, max) = match self.auth {
                Auth::Raw { .. } => (0, PRE_AUTH_MAX_FRAME),
                _ if !self.authenticated() => (8, PRE_AUTH_MAX_FRAME),
                _ => (8, self.broker.config.max_request_bytes),
            };
            let expiry = async {
                match self.expires {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let frame = tokio::select! {
                f = read_frame(&mut self.reader, min, max) => f?,
                _ = token.cancelled() => return Ok(()),
                _ = expiry => return Err(ConnError::SessionExpired),
            };
            let Some(frame) = frame else { return Ok(()) };
            let response = tokio::select! {
                r = self.handle(frame) => r?,
                _ = token.cancelled() => return Ok(()),
            };
            if let Some(response) = response {
                let out = self.reader.get_mut();
                let vectored = out.is_write_vectored();
                response.write_to(out, vectored).await?;
            }
        }
    }

    /// One frame: a raw SASL token, a SASL request, or a Kafka request for the handlers.
    async fn handle(&mut self, frame: Bytes) -> Result<Option<Encoded>, ConnError> {
        if let Auth::Raw { auth } = &mut self.auth {
            let step = auth.step(&frame, &self.broker.security.credentials);
            return match step {
                Ok(Step::Challenge(t)) => Ok(Some(Encoded::Flat(raw_token(&t)))),
                Ok(Step::Done { token, user }) => {
                    self.logged_in(&user, false);
                    Ok(Some(Encoded::Flat(raw_token(&token))))
                }
                Err(e) => {
                    tokio::time::sleep(FAILED_AUTH_DELAY).await;
                    Err(ConnError::AuthFailed(e.0))
                }
            };
        }
        let key = (&frame[0..2]).get_i16();
        let api = ApiKey::try_from(key).map_err(|_| ConnError::UnknownApi(key))?;
        match &self.auth {
            Auth::Handshake if !matches!(api, ApiKey::ApiVersions | ApiKey::SaslHandshake) => {
                return Err(ConnError::NotAuthenticated(api));
            }
            Auth::Framed { .. } if api != ApiKey::SaslAuthenticate => {
                return Err(ConnError::IllegalSaslState(api));
            }
            _ => {}
        }
        match api {
            ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => {
                let started = std::time::Instant::now();
                let (version, correlation_id, request) = decode(frame)?;
                let (response, close) = match request {
                    RequestKind::SaslHandshake(r) => self.handshake(version, r),
                    RequestKind::SaslAuthenticate(r) => self.authenticate(version, r),
                    _ => return Err(ConnError::UnknownApi(key)),
                };
                if let Some(slot) = handler::slot(api) {
                    let stats = &self.broker.stats.requests;
                    stats.request(slot, version, started.elapsed());
                    for (code, n) in crate::stats::errors::error_counts(&response).iter() {
                        stats.errors(slot, code, n);
                    }
                }
                let bytes = encode(api, version, correlation_id, &response)?;
                if let Some(reason) = close {
                    self.reader.get_mut().write_all(&bytes).await?;
                    self.reader.get_mut().flush().await?;
                    if matches!(reason, ConnError::AuthFailed(_)) {
                        tokio::time::sleep(FAILED_AUTH_DELAY).await;
                    }
                    return Err(reason);
                }
                Ok(Some(Encoded::Flat(bytes)))
            }
            _ => {
                let who = Who {
                    peer: self.peer,
                    host: &self.host,
                    listener: &self.listener.name,
                    principal: &self.principal,
                };
                handle_frame(self.broker, who, frame).await
            }
        }
    }

    /// SaslHandshake: picks the mechanism. Returns the response and, if the connection
    /// must close after it, why.
    fn handshake(
        &mut self,
        version: i16,
        req: SaslHandshakeRequest,
    ) -> (ResponseKind, Option<ConnError>) {
        let enabled: Vec<StrBytes> = self
            .broker
            .security
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let answer = |code: ResponseError| {
            ResponseKind::SaslHandshake(
                SaslHandshakeResponse::default()
                    .with_error_code(code.code())
                    .with_mechanisms(enabled.clone()),
            )
        };
        let ok = || {
            ResponseKind::SaslHandshake(
                SaslHandshakeResponse::default().with_mechanisms(enabled.clone()),
            )
        };
        // A handshake on an authenticated connection starts a re-authentication (KIP-368,
        // v1 only); on a listener without SASL it is out of place.
        let reauth = match self.auth {
            Auth::Handshake => false,
            Auth::Done if version >= 1 && self.listener.protocol.uses_sasl() => true,
            _ => return (answer(ResponseError::IllegalSaslState), None),
        };
        let mechanism = SaslMechanism::parse(req.mechanism.as_str())
            .filter(|m| self.broker.security.mechanisms.contains(m));
        let Some(mechanism) = mechanism else {
            let reason = ConnError::UnsupportedMechanism(req.mechanism.to_string());
            return (
                answer(ResponseError::UnsupportedSaslMechanism),
                Some(reason),
            );
        };
        match Authenticator::new(mechanism) {
            Ok(auth) => {
                self.auth = if version == 0 {
                    Auth::Raw { auth }
                } else {
                    Auth::Framed { auth, reauth }
                };
                (ok(), None)
            }
            Err(e) => (
                answer(ResponseError::SaslAuthenticationFailed),
                Some(ConnError::AuthFailed(e.0)),
            ),
        }
    }

    /// SaslAuthenticate: one step of the exchange.
    fn authenticate(
        &mut self,
        version: i16,
        req: SaslAuthenticateRequest,
    ) -> (ResponseKind, Option<ConnError>) {
        let failed = |message: String| {
            (
                ResponseKind::SaslAuthenticate(
                    SaslAuthenticateResponse::default()
                        .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                        .with_error_message(Some(StrBytes::from_string(message.clone()))),
                ),
                Some(ConnError::AuthFailed(message)),
            )
        };
        let Auth::Framed { auth, reauth } = &mut self.auth else {
            return (
                ResponseKind::SaslAuthenticate(
                    SaslAuthenticateResponse::default()
                        .with_error_code(ResponseError::IllegalSaslState.code())
                        .with_error_message(Some(StrBytes::from_static_str(
                            "SaslAuthenticate without a SaslHandshake first",
                        ))),
                ),
                None,
            );
        };
        let reauth = *reauth;
        match auth.step(&req.auth_bytes, &self.broker.security.credentials) {
            Ok(Step::Challenge(t)) => (
                ResponseKind::SaslAuthenticate(
                    SaslAuthenticateResponse::default().with_auth_bytes(t.into()),
                ),
                None,
            ),
            Ok(Step::Done { token, user }) => {
                if reauth && format!("User:{user}") != self.principal {
                    return failed(format!(
                        "re-authentication as User:{user} on a connection of {}",
                        self.principal
                    ));
                }
                let lifetime = self.logged_in(&user, reauth);
                let mut resp = SaslAuthenticateResponse::default().with_auth_bytes(token.into());
                if version >= 1 {
                    resp = resp.with_session_lifetime_ms(lifetime);
                }
                (ResponseKind::SaslAuthenticate(resp), None)
            }
            Err(e) => failed(e.0),
        }
    }

    /// Marks the connection authenticated as `user`; returns the session lifetime (ms,
    /// 0 for none).
    fn logged_in(&mut self, user: &str, reauth: bool) -> i64 {
        self.principal = format!("User:{user}");
        self.auth = Auth::Done;
        let lifetime = self.broker.security.reauth_ms;
        self.expires =
            (lifetime > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(lifetime));
        if reauth {
            tracing::debug!(peer = %self.peer, principal = %self.principal, "re-authenticated");
        } else {
            tracing::debug!(peer = %self.peer, principal = %self.principal, "authenticated");
        }
        lifetime as i64
    }
}

/// A raw SASL token frame (after SaslHandshake v0).
fn raw_token(token: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(4 + token.len());
    out.put_i32(token.len() as i32);
    out.extend_from_slice(token);
    out
}

/// Reads one length-prefixed frame; `None` at a clean end of stream.
async fn read_frame(
    reader: &mut BufReader<Stream>,
    min: usize,
    max: usize,
) -> Result<Option<Bytes>, ConnError> {
    let size = match reader.read_i32().await {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if size < min as i32 || size as usize > max {
        return Err(ConnError::BadSize {
            size: i64::from(size),
            max,
        });
    }
    let mut frame = vec![0u8; size as usize];
    reader.read_exact(&mut frame).await?;
    Ok(Some(Bytes::from(frame)))
}

/// A decoded request frame.
struct Request {
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    header: RequestHeader,
    body: RequestKind,
}

/// Decodes a frame. `Ok(Err(correlation id))`: an ApiVersions request at a version we do
/// not serve, which gets the UNSUPPORTED_VERSION answer instead of a close.
fn parse(mut frame: Bytes) -> Result<Result<Request, i32>, ConnError> {
    let key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let correlation_id = (&frame[4..8]).get_i32();
    let api = ApiKey::try_from(key).map_err(|_| ConnError::UnknownApi(key))?;
    let Some((min, max)) = handler::supported(api) else {
        return Err(ConnError::UnknownApi(key));
    };
    if version < min || version > max {
        if api == ApiKey::ApiVersions {
            return Ok(Err(correlation_id));
        }
        return Err(ConnError::UnsupportedVersion {
            api,
            version,
            min,
            max,
        });
    }
    let decode_err = |e: anyhow::Error| ConnError::Decode {
        api,
        version,
        reason: e.to_string(),
    };
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(decode_err)?;
    let body = RequestKind::decode(api, &mut frame, version).map_err(decode_err)?;
    Ok(Ok(Request {
        api,
        version,
        correlation_id,
        header,
        body,
    }))
}

/// Decodes a request the connection itself answers: (version, correlation id, request).
fn decode(frame: Bytes) -> Result<(i16, i32, RequestKind), ConnError> {
    let key = (&frame[0..2]).get_i16();
    match parse(frame)? {
        Ok(r) => Ok((r.version, r.correlation_id, r.body)),
        Err(_) => Err(ConnError::UnknownApi(key)),
    }
}

/// Decodes one request, runs it, and encodes the framed response (`None` for acks=0).
/// Who sent a request, over which listener.
struct Who<'a> {
    peer: SocketAddr,
    host: &'a str,
    listener: &'a str,
    principal: &'a str,
}

async fn handle_frame(
    broker: &Broker,
    who: Who<'_>,
    frame: Bytes,
) -> Result<Option<Encoded>, ConnError> {
    let peer = who.peer;
    let req = match parse(frame)? {
        Ok(r) => r,
        Err(correlation_id) => {
            // librdkafka retries at our maximum after this answer, encoded as v0.
            let body = handler::api_versions::unsupported();
            return encode(
                ApiKey::ApiVersions,
                0,
                correlation_id,
                &ResponseKind::ApiVersions(body),
            )
            .map(|b| Some(Encoded::Flat(b)));
        }
    };
    tracing::trace!(
        %peer,
        api = ?req.api,
        version = req.version,
        client_id = req.header.client_id.as_ref().map_or("", |c| c.as_str()),
        "request"
    );
    let ctx = handler::Ctx {
        broker,
        header: &req.header,
        version: req.version,
        peer,
        listener: who.listener,
        principal: who.principal,
        host: who.host,
    };
    let started = std::time::Instant::now();
    let slot = handler::slot(req.api).unwrap_or(usize::MAX);
    let stats = &broker.stats.requests;
    let Some(response) = handler::dispatch(&ctx, req.body).await else {
        stats.request(slot, req.version, started.elapsed());
        return Ok(None);
    };
    for (code, n) in crate::stats::errors::error_counts(&response).iter() {
        stats.errors(slot, code, n);
    }
    let encoded = encode_response(req.api, req.version, req.correlation_id, &response).map(Some);
    stats.request(slot, req.version, started.elapsed());
    encoded
}

fn encode(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<BytesMut, ConnError> {
    let err = |e: anyhow::Error| encode_error(api, version, e);
    // A Fetch response that could not keep its records by reference: size the buffer
    // once instead of letting it double (and copy the records again) as they go in.
    let body = match response {
        ResponseKind::Fetch(r) => r.compute_size(version).unwrap_or(0),
        _ => 0,
    };
    let mut buf = BytesMut::with_capacity(256 + body);
    buf.put_i32(0);
    // The ApiVersions response header is always v0, whatever the request version.
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .map_err(err)?;
    response.encode(&mut buf, version).map_err(err)?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

fn encode_error(api: ApiKey, version: i16, e: anyhow::Error) -> ConnError {
    ConnError::Encode {
        api,
        version,
        reason: e.to_string(),
    }
}

/// Encodes a response. A Fetch response keeps its record sets by reference (see
/// [`ChunkedBuf`]), so megabytes of batches are not copied once more on the way out.
fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Encoded, ConnError> {
    let ResponseKind::Fetch(fetch) = response else {
        return encode(api, version, correlation_id, response).map(Encoded::Flat);
    };
    let records: Vec<Bytes> = fetch
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.records.clone())
        .filter(|r| !r.is_empty())
        .collect();
    if records.is_empty() {
        return encode(api, version, correlation_id, response).map(Encoded::Flat);
    }
    let err = |e: anyhow::Error| encode_error(api, version, e);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api.response_header_version(version);
    let size = header.compute_size(header_version).map_err(err)?
        + fetch.compute_size(version).map_err(err)?;
    let mut buf = ChunkedBuf::new(&records, 1024);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version).map_err(err)?;
    fetch.encode(&mut buf, version).map_err(err)?;
    let written = buf.offset() - 4;
    match buf.finish() {
        Some(pieces) if written == size => Ok(Encoded::Chunks(pieces)),
        // The encoder revisited an earlier piece, or the size was off: one buffer.
        _ => encode(api, version, correlation_id, response).map(Encoded::Flat),
    }
}
