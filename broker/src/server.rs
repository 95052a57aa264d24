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

use crate::broker::Broker;
use crate::handler;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
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
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves Kafka clients until `shutdown` is cancelled; then closes every connection and
/// returns when all connection tasks have ended.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
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
            tracing::warn!(%peer, max = max_connections, "too many connections; closing the new one");
            continue;
        };
        let broker = broker.clone();
        let token = shutdown.child_token();
        tasks.spawn(async move {
            let _slot = slot;
            tokio::select! {
                r = serve(stream, peer, &broker) => match r {
                    Ok(()) => tracing::debug!(%peer, "connection closed"),
                    Err(ConnError::Io(e)) => tracing::debug!(%peer, error = %e, "connection ended"),
                    Err(e) => tracing::warn!(%peer, reason = %e, "closing the connection"),
                },
                _ = token.cancelled() => {}
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn serve(stream: TcpStream, peer: SocketAddr, broker: &Broker) -> Result<(), ConnError> {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let max = broker.config.max_request_bytes;
    loop {
        let size = match reader.read_i32().await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if size < 8 || size as usize > max {
            return Err(ConnError::BadSize {
                size: i64::from(size),
                max,
            });
        }
        let mut frame = vec![0u8; size as usize];
        reader.read_exact(&mut frame).await?;
        if let Some(response) = handle_frame(broker, peer, Bytes::from(frame)).await? {
            write.write_all(&response).await?;
        }
    }
}

/// Decodes one request, runs it, and encodes the framed response (`None` for acks=0).
async fn handle_frame(
    broker: &Broker,
    peer: SocketAddr,
    mut frame: Bytes,
) -> Result<Option<BytesMut>, ConnError> {
    let key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let correlation_id = (&frame[4..8]).get_i32();
    let api = ApiKey::try_from(key).map_err(|_| ConnError::UnknownApi(key))?;
    let Some((min, max)) = handler::supported(api) else {
        return Err(ConnError::UnknownApi(key));
    };
    if version < min || version > max {
        if api == ApiKey::ApiVersions {
            // librdkafka retries at our maximum after this answer, encoded as v0.
            let body = handler::api_versions::unsupported();
            return encode(
                api,
                0,
                correlation_id,
                &kafka_protocol::messages::ResponseKind::ApiVersions(body),
            )
            .map(Some);
        }
        return Err(ConnError::UnsupportedVersion {
            api,
            version,
            min,
            max,
        });
    }
    let header =
        RequestHeader::decode(&mut frame, api.request_header_version(version)).map_err(|e| {
            ConnError::Decode {
                api,
                version,
                reason: e.to_string(),
            }
        })?;
    let request = RequestKind::decode(api, &mut frame, version).map_err(|e| ConnError::Decode {
        api,
        version,
        reason: e.to_string(),
    })?;
    tracing::trace!(
        %peer,
        api = ?api,
        version,
        client_id = header.client_id.as_ref().map_or("", |c| c.as_str()),
        "request"
    );
    let ctx = handler::Ctx {
        broker,
        header: &header,
        version,
        peer,
    };
    let Some(response) = handler::dispatch(&ctx, request).await else {
        return Ok(None);
    };
    encode(api, version, correlation_id, &response).map(Some)
}

fn encode(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &kafka_protocol::messages::ResponseKind,
) -> Result<BytesMut, ConnError> {
    let err = |e: anyhow::Error| ConnError::Encode {
        api,
        version,
        reason: e.to_string(),
    };
    // A fetch response carries up to megabytes of records: size the buffer once, instead
    // of letting it double (and copy everything again) as the records go in.
    let body = match response {
        kafka_protocol::messages::ResponseKind::Fetch(r) => r.compute_size(version).unwrap_or(0),
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
