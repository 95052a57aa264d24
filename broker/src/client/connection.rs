//! One TCP connection to one broker: Kafka's framing (a 4-byte big-endian length, then the
//! request or response header, then the body), correlation ids, and the ApiVersions
//! handshake that decides which version of each API this connection speaks.
//!
//! Requests go out one at a time and each waits for its response, so responses arrive in
//! request order by construction; the correlation id is still checked, because a mismatch
//! means the stream is out of step and nothing on it can be trusted any more. A connection
//! that timed out, broke, got out of step, or whose exchange was abandoned half-way (the
//! caller dropped the future) is marked broken and refuses further requests; the
//! [`Client`](super::Client) then opens a new one.
//!
//! Frame lengths are checked against [`ClientOptions::max_frame`] before anything is
//! allocated for the frame, so a broken or hostile peer cannot make the client allocate
//! gigabytes.

use std::time::Duration;

use crate::security::client_config::SaslLogin;
use crate::security::sasl::SaslMechanism;
use crate::security::scram::ScramClient;
use bytes::{BufMut, Bytes, BytesMut};
use fjord_shared::stream::Stream;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::{code, Error, ProtocolError, Result};
use super::versions::{self, Negotiated};
use super::ClientOptions;

/// An open, negotiated connection to one broker.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    stream: Stream,
    client_id: StrBytes,
    next_correlation_id: i32,
    max_frame: usize,
    request_timeout: Duration,
    versions: Negotiated,
    broken: bool,
}

impl Connection {
    /// Opens a connection to `addr` (`host:port`) and negotiates API versions.
    pub async fn connect(addr: &str, opts: &ClientOptions) -> Result<Connection> {
        let stream =
            match tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(source)) => {
                    return Err(Error::Connect {
                        addr: addr.to_owned(),
                        source,
                    })
                }
                Err(_) => {
                    return Err(Error::ConnectTimeout {
                        addr: addr.to_owned(),
                        timeout: opts.connect_timeout,
                    })
                }
            };
        // Requests are small and latency-bound; Nagle would only delay them.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(addr, error = %e, "cannot set TCP_NODELAY");
        }
        let stream = match &opts.security.tls {
            None => Stream::Plain(stream),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let name = fjord_shared::tls::server_name(host).map_err(|e| Error::Tls {
                    addr: addr.to_owned(),
                    reason: e.to_string(),
                })?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                match tokio::time::timeout(opts.connect_timeout, connector.connect(name, stream))
                    .await
                {
                    Ok(Ok(s)) => Stream::Client(Box::new(s)),
                    Ok(Err(e)) => {
                        return Err(Error::Tls {
                            addr: addr.to_owned(),
                            reason: e.to_string(),
                        })
                    }
                    Err(_) => {
                        return Err(Error::ConnectTimeout {
                            addr: addr.to_owned(),
                            timeout: opts.connect_timeout,
                        })
                    }
                }
            }
        };
        let mut conn = Connection {
            addr: addr.to_owned(),
            stream,
            client_id: StrBytes::from_string(opts.client_id.clone()),
            next_correlation_id: 0,
            max_frame: opts.max_frame,
            request_timeout: opts.request_timeout,
            versions: Negotiated::default(),
            broken: false,
        };
        conn.versions = conn.handshake().await?;
        if let Some(login) = &opts.security.sasl {
            if let Err(e) = conn.authenticate(login).await {
                conn.stream.close().await;
                return Err(e);
            }
        }
        tracing::debug!(addr, "connected");
        Ok(conn)
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection can no longer be used (see the module docs).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The versions negotiated with this broker.
    pub fn versions(&self) -> &Negotiated {
        &self.versions
    }

    /// The version to use for `api` on this connection.
    pub fn version(&self, api: ApiKey) -> Result<i16> {
        self.versions
            .version(api)
            .map_err(|e| Error::UnsupportedApi {
                addr: self.addr.clone(),
                api,
                client_min: e.client.0,
                client_max: e.client.1,
                broker: e.broker,
            })
    }

    /// Sends `req` as `version` and waits for its response (at most the request timeout
    /// plus `extra_wait`, for requests the broker may hold, such as a long-polling fetch).
    pub async fn send<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        extra_wait: Duration,
    ) -> Result<R::Response> {
        let api = api_key(R::KEY).map_err(|e| self.protocol(e))?;
        let body = self.roundtrip(api, version, req, true, extra_wait).await?;
        let mut body = body.unwrap_or_default();
        R::Response::decode(&mut body, version).map_err(|e| {
            self.protocol(ProtocolError::Decode {
                api,
                version,
                reason: format!("{e:#}"),
            })
        })
    }

    /// Sends `req` and does not wait for an answer: for a produce request with acks=0,
    /// which gets no response at all.
    pub async fn send_without_response<R: Request>(&mut self, req: &R, version: i16) -> Result<()> {
        let api = api_key(R::KEY).map_err(|e| self.protocol(e))?;
        self.roundtrip(api, version, req, false, Duration::ZERO)
            .await
            .map(|_| ())
    }

    /// SaslHandshake v1, then SaslAuthenticate rounds until the mechanism is done.
    async fn authenticate(&mut self, login: &SaslLogin) -> Result<()> {
        let mech = login.mechanism.name();
        let req = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mech));
        let version = self.version(ApiKey::SaslHandshake)?;
        let resp = self.send(&req, version, Duration::ZERO).await?;
        if resp.error_code != 0 {
            let enabled: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(Error::kafka(
                ApiKey::SaslHandshake,
                "",
                resp.error_code,
                Some(format!(
                    "{mech} is not enabled; the broker offers {enabled:?}"
                )),
            ));
        }
        let version = self.version(ApiKey::SaslAuthenticate)?;
        match login.mechanism {
            SaslMechanism::Plain => {
                let token = format!("\0{}\0{}", login.username, login.password);
                self.sasl_round(version, token.into_bytes()).await.map(drop)
            }
            SaslMechanism::Scram(m) => {
                let mut client = ScramClient::new(m, &login.username, &login.password)
                    .map_err(|e| self.auth_error(e.to_string()))?;
                let first = self.sasl_round(version, client.client_first()).await?;
                let last = client
                    .server_first(&first)
                    .map_err(|e| self.auth_error(e.to_string()))?;
                let server_final = self.sasl_round(version, last).await?;
                client
                    .server_final(&server_final)
                    .map_err(|e| self.auth_error(e.to_string()))
            }
        }
    }

    /// One SaslAuthenticate exchange: our token out, the broker's back.
    async fn sasl_round(&mut self, version: i16, token: Vec<u8>) -> Result<Bytes> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(token.into());
        let resp = self.send(&req, version, Duration::ZERO).await?;
        if resp.error_code != 0 {
            return Err(Error::kafka(
                ApiKey::SaslAuthenticate,
                "",
                resp.error_code,
                resp.error_message.map(|m| m.to_string()),
            ));
        }
        Ok(resp.auth_bytes)
    }

    fn auth_error(&self, reason: String) -> Error {
        Error::kafka(
            ApiKey::SaslAuthenticate,
            "",
            code::SASL_AUTHENTICATION_FAILED,
            Some(reason),
        )
    }

    /// ApiVersions, highest version first; on UNSUPPORTED_VERSION the broker lists its own
    /// range in a v0 body, and the request is repeated once at the best common version.
    async fn handshake(&mut self) -> Result<Negotiated> {
        let mut version = versions::api_versions_first();
        for _ in 0..2 {
            let mut req = ApiVersionsRequest::default();
            if version >= 3 {
                req.client_software_name = StrBytes::from_static_str("fjord");
                req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            }
            let mut body = self
                .roundtrip(ApiKey::ApiVersions, version, &req, true, Duration::ZERO)
                .await?
                .unwrap_or_default();
            // The error code is the first field of every version, and an UNSUPPORTED_VERSION
            // answer is encoded as v0 whatever was asked.
            let error_code = body.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]));
            let decode_as = if error_code == Some(code::UNSUPPORTED_VERSION) {
                0
            } else {
                version
            };
            let resp = ApiVersionsResponse::decode(&mut body, decode_as).map_err(|e| {
                self.protocol(ProtocolError::Decode {
                    api: ApiKey::ApiVersions,
                    version: decode_as,
                    reason: format!("{e:#}"),
                })
            })?;
            match resp.error_code {
                0 => return Ok(Negotiated::from_broker(&resp.api_keys)),
                code::UNSUPPORTED_VERSION if version > 0 => {
                    let next = versions::api_versions_fallback(&resp.api_keys);
                    tracing::debug!(addr = %self.addr, from = version, to = next, "ApiVersions downgrade");
                    if next >= version {
                        version = 0;
                    } else {
                        version = next;
                    }
                }
                code => return Err(Error::kafka(ApiKey::ApiVersions, "", code, None)),
            }
        }
        Err(Error::kafka(
            ApiKey::ApiVersions,
            "",
            code::UNSUPPORTED_VERSION,
            None,
        ))
    }

    /// Writes one request and, if `expect_response`, reads its response and returns the
    /// body after the response header.
    async fn roundtrip<E: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &E,
        expect_response: bool,
        extra_wait: Duration,
    ) -> Result<Option<Bytes>> {
        if self.broken {
            return Err(Error::Closed {
                addr: self.addr.clone(),
            });
        }
        let correlation_id = self.next_correlation_id;
        // Correlation ids are non-negative and wrap; only the outstanding one matters.
        self.next_correlation_id = correlation_id.wrapping_add(1) & i32::MAX;
        let frame =
            encode_request(api, version, correlation_id, &self.client_id, body).map_err(|e| {
                Error::Protocol {
                    addr: self.addr.clone(),
                    source: e,
                }
            })?;
        let timeout = self.request_timeout + extra_wait;
        // Broken until the exchange completes: if the caller drops this future half-way
        // (a timeout or Ctrl-C around it), a request may be outstanding and the next
        // response on the stream would answer it, so the connection must not be reused.
        self.broken = true;
        let exchange = async {
            self.write_all(&frame).await?;
            if !expect_response {
                return Ok(None);
            }
            let frame = self.read_frame().await?;
            split_response(api, version, correlation_id, frame)
                .map(Some)
                .map_err(|e| self.protocol(e))
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                api,
                addr: self.addr.clone(),
                timeout,
            }),
        };
        self.broken = match &result {
            Ok(_) => false,
            Err(e) => e.is_transport() || matches!(e, Error::Protocol { .. }),
        };
        result
    }

    async fn write_all(&mut self, frame: &[u8]) -> Result<()> {
        self.stream
            .write_all(frame)
            .await
            .map_err(|source| Error::Io {
                addr: self.addr.clone(),
                source,
            })
    }

    /// Reads one length-prefixed frame; a clean EOF before it is [`Error::Closed`].
    async fn read_frame(&mut self) -> Result<Bytes> {
        let mut len = [0u8; 4];
        if let Err(e) = self.stream.read_exact(&mut len).await {
            return Err(self.read_error(e));
        }
        let len = check_frame_len(i32::from_be_bytes(len), self.max_frame)
            .map_err(|e| self.protocol(e))?;
        let mut buf = BytesMut::zeroed(len);
        if let Err(e) = self.stream.read_exact(&mut buf).await {
            return Err(self.read_error(e));
        }
        Ok(buf.freeze())
    }

    fn read_error(&self, source: std::io::Error) -> Error {
        if source.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Closed {
                addr: self.addr.clone(),
            }
        } else {
            Error::Io {
                addr: self.addr.clone(),
                source,
            }
        }
    }

    fn protocol(&self, source: ProtocolError) -> Error {
        Error::Protocol {
            addr: self.addr.clone(),
            source,
        }
    }
}

/// The codec's [`ApiKey`] for a request type's key.
pub(crate) fn api_key(key: i16) -> Result<ApiKey, ProtocolError> {
    ApiKey::try_from(key).map_err(|()| ProtocolError::UnknownApiKey(key))
}

/// A complete request frame: length, header (in the version `api` and `version` call for),
/// body. No I/O.
pub(crate) fn encode_request<E: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    body: &E,
) -> Result<BytesMut, ProtocolError> {
    let encode_err = |e: anyhow::Error| ProtocolError::Encode {
        api,
        version,
        reason: format!("{e:#}"),
    };
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0); // the length, filled in below
    header
        .encode(&mut buf, api.request_header_version(version))
        .map_err(encode_err)?;
    body.encode(&mut buf, version).map_err(encode_err)?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| ProtocolError::Encode {
        api,
        version,
        reason: format!("request of {} bytes is too large", buf.len()),
    })?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Checks a frame length read from the wire before anything is allocated for it.
pub(crate) fn check_frame_len(len: i32, max_frame: usize) -> Result<usize, ProtocolError> {
    match usize::try_from(len) {
        Ok(n) if n <= max_frame => Ok(n),
        _ => Err(ProtocolError::FrameTooLarge {
            limit: max_frame,
            actual: i64::from(len),
        }),
    }
}

/// Strips the response header from a frame, checking that it answers `correlation_id`.
pub(crate) fn split_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    mut frame: Bytes,
) -> Result<Bytes, ProtocolError> {
    let header =
        ResponseHeader::decode(&mut frame, api.response_header_version(version)).map_err(|e| {
            ProtocolError::Decode {
                api,
                version,
                reason: format!("response header: {e:#}"),
            }
        })?;
    if header.correlation_id != correlation_id {
        return Err(ProtocolError::CorrelationMismatch {
            expected: correlation_id,
            actual: header.correlation_id,
        });
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::protocol::decode_request_header_from_buffer;

    #[test]
    fn request_frames_carry_length_header_and_body() {
        let req = MetadataRequest::default();
        let cid = StrBytes::from_static_str("fjord");
        let frame = encode_request(ApiKey::Metadata, 9, 42, &cid, &req).unwrap();
        let len = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(len as usize, frame.len() - 4);
        let mut rest = frame.freeze().slice(4..);
        let header = decode_request_header_from_buffer(&mut rest).unwrap();
        assert_eq!(header.request_api_key, ApiKey::Metadata as i16);
        assert_eq!(header.request_api_version, 9);
        assert_eq!(header.correlation_id, 42);
        assert_eq!(header.client_id.as_deref(), Some("fjord"));
        let decoded = MetadataRequest::decode(&mut rest, 9).unwrap();
        assert_eq!(decoded, req);
        assert!(rest.is_empty());
    }

    #[test]
    fn a_field_the_version_lacks_fails_to_encode() {
        // Topic ids in Metadata only exist from v10 on.
        let mut req = MetadataRequest::default();
        req.include_cluster_authorized_operations = true; // v8-10 only
        let cid = StrBytes::from_static_str("fjord");
        let err = encode_request(ApiKey::Metadata, 4, 1, &cid, &req).unwrap_err();
        assert!(
            matches!(err, ProtocolError::Encode { version: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn frame_lengths_are_checked_before_allocation() {
        assert_eq!(check_frame_len(0, 10).unwrap(), 0);
        assert_eq!(check_frame_len(10, 10).unwrap(), 10);
        assert!(matches!(
            check_frame_len(11, 10),
            Err(ProtocolError::FrameTooLarge {
                limit: 10,
                actual: 11
            })
        ));
        assert!(check_frame_len(-1, 10).is_err());
    }

    #[test]
    fn responses_must_answer_the_outstanding_request() {
        // Metadata v9 is flexible: response header v1 (correlation id + tagged fields).
        let mut frame = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(7)
            .encode(&mut frame, ApiKey::Metadata.response_header_version(9))
            .unwrap();
        frame.put_slice(b"body");
        let body = split_response(ApiKey::Metadata, 9, 7, frame.clone().freeze()).unwrap();
        assert_eq!(&body[..], b"body");
        let err = split_response(ApiKey::Metadata, 9, 8, frame.freeze()).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::CorrelationMismatch {
                expected: 8,
                actual: 7
            }
        ));
    }
}
