//! A raw ZooKeeper-protocol connection for tests, built on `fjord_shared::jute`.
//!
//! Tests use it where a full client would hide what matters: sending malformed or oversized
//! frames, abandoning a session without closing it, re-registering watches with an exact
//! `setWatches2`, or reading every per-op result of a `multi`. Replies and watch
//! notifications are read from one buffer, so waiting for a reply keeps the notifications
//! that arrive before it (in order) for [`RawConn::next_event`].
//!
//! Reads are cancel-safe (bytes go into an internal buffer first), so a read that times out
//! leaves the connection usable.

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_shared::jute::{
    self, op, xid, Acl, ConnectRequest, ConnectResponse, CreateRequest, DeleteRequest,
    ErrorResponse, MultiHeader, PathWatchRequest, Record, ReplyHeader, RequestHeader,
    SetDataRequest, Stat, WatcherEvent,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The default bound on every network wait.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Frames larger than this from the server are treated as a protocol error by the test.
const MAX_REPLY: usize = 16 * 1024 * 1024;

/// One reply: its header and body (without the header).
#[derive(Debug, Clone)]
pub struct Reply {
    pub header: ReplyHeader,
    pub body: Bytes,
}

impl Reply {
    /// The error code of the reply header.
    pub fn err(&self) -> i32 {
        self.header.err
    }

    /// Decodes the body as `T`, rejecting trailing bytes.
    pub fn decode<T: Record>(&self) -> anyhow::Result<T> {
        T::decode(&self.body).map_err(|e| anyhow!("reply body does not decode: {e}"))
    }

    /// Fails unless the reply is OK.
    pub fn ok(self) -> anyhow::Result<Reply> {
        if self.header.err != 0 {
            bail!(
                "request xid {} failed: {}",
                self.header.xid,
                jute::ErrorCode::from_code(self.header.err)
            );
        }
        Ok(self)
    }
}

/// What one op of a `multi` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiResult {
    /// The op type of the result (`-1` for an error result).
    pub op: i32,
    /// The error code: 0 for a successful op.
    pub err: i32,
    /// The created path, for create results.
    pub path: Option<String>,
    /// The stat, for create2 and setData results.
    pub stat: Option<Stat>,
}

/// A raw connection to a ZooKeeper-protocol server.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    rbuf: BytesMut,
    next_xid: i32,
    /// Watch notifications received while waiting for replies, oldest first.
    pub events: VecDeque<WatcherEvent>,
    /// The server's answer to the handshake, once done.
    pub session: Option<ConnectResponse>,
}

impl RawConn {
    /// A TCP connection with no handshake yet.
    pub async fn tcp(addr: SocketAddr) -> anyhow::Result<RawConn> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connect to {addr} timed out"))?
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            next_xid: 1,
            events: VecDeque::new(),
            session: None,
        })
    }

    /// A new session with the requested timeout.
    pub async fn connect(addr: SocketAddr, timeout_ms: i32) -> anyhow::Result<RawConn> {
        Self::resume(addr, 0, Bytes::from_static(&[0; 16]), timeout_ms).await
    }

    /// A connection for an existing session (`session_id` 0 asks for a new one). The
    /// response is in [`RawConn::session`]; an expired session gets session id 0.
    pub async fn resume(
        addr: SocketAddr,
        session_id: i64,
        passwd: Bytes,
        timeout_ms: i32,
    ) -> anyhow::Result<RawConn> {
        let mut c = Self::tcp(addr).await?;
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout: timeout_ms,
            session_id,
            passwd,
            read_only: Some(false),
        };
        c.handshake(&req).await?;
        Ok(c)
    }

    /// Sends a ConnectRequest and reads the ConnectResponse.
    pub async fn handshake(&mut self, req: &ConnectRequest) -> anyhow::Result<ConnectResponse> {
        self.send_frame(&req.to_bytes()).await?;
        let frame = self
            .read_frame(IO_TIMEOUT)
            .await?
            .context("connection closed before the ConnectResponse")?;
        let resp =
            ConnectResponse::decode(&frame).map_err(|e| anyhow!("bad ConnectResponse: {e}"))?;
        self.session = Some(resp.clone());
        Ok(resp)
    }

    /// The session id from the handshake.
    pub fn session_id(&self) -> i64 {
        self.session.as_ref().map(|s| s.session_id).unwrap_or(0)
    }

    /// The session password from the handshake.
    pub fn passwd(&self) -> Bytes {
        self.session
            .as_ref()
            .map(|s| s.passwd.clone())
            .unwrap_or_default()
    }

    /// Writes bytes as they are: no framing.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        tokio::time::timeout(IO_TIMEOUT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| anyhow!("write timed out"))??;
        Ok(())
    }

    /// Writes one frame: a 4-byte length, then `payload`.
    pub async fn send_frame(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let mut out = BytesMut::with_capacity(payload.len() + 4);
        out.put_i32(payload.len() as i32);
        out.put_slice(payload);
        self.write_raw(&out).await
    }

    /// Writes one request frame with an explicit xid.
    pub async fn send_request(&mut self, xid: i32, op: i32, body: &[u8]) -> anyhow::Result<()> {
        let mut payload = RequestHeader { xid, op }.to_bytes();
        payload.put_slice(body);
        self.send_frame(&payload).await
    }

    /// Reads one whole frame; `Ok(None)` on a clean end of stream (or a reset by the peer).
    pub async fn read_frame(&mut self, timeout: Duration) -> anyhow::Result<Option<Bytes>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.rbuf.len() >= 4 {
                let len =
                    i32::from_be_bytes([self.rbuf[0], self.rbuf[1], self.rbuf[2], self.rbuf[3]]);
                if len < 0 || len as usize > MAX_REPLY {
                    bail!("server sent a frame length of {len}");
                }
                if self.rbuf.len() >= 4 + len as usize {
                    self.rbuf.advance(4);
                    return Ok(Some(self.rbuf.split_to(len as usize).freeze()));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // `read_buf` is cancel-safe: on timeout nothing read is lost.
            match tokio::time::timeout(left, self.stream.read_buf(&mut self.rbuf)).await {
                Err(_) => bail!("no frame within {timeout:?}"),
                Ok(Ok(0)) => {
                    if self.rbuf.is_empty() {
                        return Ok(None);
                    }
                    bail!(
                        "connection closed in the middle of a frame ({} bytes buffered)",
                        self.rbuf.len()
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Reads until the reply to `want_xid` arrives; notifications are queued in
    /// [`RawConn::events`] and ping replies skipped.
    pub async fn read_reply(&mut self, want_xid: i32, timeout: Duration) -> anyhow::Result<Reply> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self
                .read_frame(left)
                .await
                .with_context(|| format!("waiting for the reply to xid {want_xid}"))?
                .with_context(|| {
                    format!("connection closed while waiting for the reply to xid {want_xid}")
                })?;
            let mut r = jute::Reader::new(&frame);
            let header = ReplyHeader::read(&mut r).map_err(|e| anyhow!("bad reply header: {e}"))?;
            let body = frame.slice(r.position()..);
            if header.xid == xid::NOTIFICATION {
                let ev =
                    WatcherEvent::decode(&body).map_err(|e| anyhow!("bad notification: {e}"))?;
                self.events.push_back(ev);
                continue;
            }
            if header.xid == want_xid {
                return Ok(Reply { header, body });
            }
            if header.xid == xid::PING {
                continue;
            }
            bail!(
                "reply for xid {} while waiting for xid {want_xid} (out of order)",
                header.xid
            );
        }
    }

    /// Sends a request with the next xid and waits for its reply.
    pub async fn call(&mut self, op: i32, body: &[u8]) -> anyhow::Result<Reply> {
        let xid = self.next_xid;
        self.next_xid += 1;
        self.send_request(xid, op, body).await?;
        self.read_reply(xid, IO_TIMEOUT).await
    }

    /// Sends a request built from a record.
    pub async fn call_record(&mut self, op: i32, body: &impl Record) -> anyhow::Result<Reply> {
        self.call(op, &body.to_bytes()).await
    }

    /// A ping round trip.
    pub async fn ping(&mut self) -> anyhow::Result<()> {
        self.send_request(xid::PING, op::PING, &[]).await?;
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self
                .read_frame(left)
                .await?
                .context("connection closed while waiting for the ping reply")?;
            let mut r = jute::Reader::new(&frame);
            let header = ReplyHeader::read(&mut r).map_err(|e| anyhow!("bad reply header: {e}"))?;
            match header.xid {
                xid::PING => return Ok(()),
                xid::NOTIFICATION => {
                    let ev = WatcherEvent::decode(r.rest())
                        .map_err(|e| anyhow!("bad notification: {e}"))?;
                    self.events.push_back(ev);
                }
                other => bail!("unexpected reply xid {other} while waiting for a ping"),
            }
        }
    }

    /// The next watch notification (queued or newly read) within `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> anyhow::Result<WatcherEvent> {
        if let Some(ev) = self.events.pop_front() {
            return Ok(ev);
        }
        let frame = self
            .read_frame(timeout)
            .await?
            .context("connection closed while waiting for an event")?;
        let mut r = jute::Reader::new(&frame);
        let header = ReplyHeader::read(&mut r).map_err(|e| anyhow!("bad reply header: {e}"))?;
        if header.xid != xid::NOTIFICATION {
            bail!(
                "expected a notification, got a reply with xid {}",
                header.xid
            );
        }
        WatcherEvent::decode(r.rest()).map_err(|e| anyhow!("bad notification: {e}"))
    }

    /// Succeeds once the server closes the connection (frames that arrive first are
    /// skipped); fails if it is still open after `timeout`.
    pub async fn expect_closed(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut skipped = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("the server did not close the connection within {timeout:?} ({skipped} frames arrived)");
            }
            match self.read_frame(left).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) => skipped += 1,
                // A half frame then a close also counts as closed.
                Err(e) if e.to_string().contains("closed in the middle") => return Ok(()),
                Err(e) => return Err(e.context("waiting for the server to close the connection")),
            }
        }
    }

    /// Closes the sending side (TCP FIN): the server sees the end of the stream.
    pub async fn shutdown_write(&mut self) -> anyhow::Result<()> {
        tokio::time::timeout(IO_TIMEOUT, self.stream.shutdown())
            .await
            .map_err(|_| anyhow!("shutdown timed out"))??;
        Ok(())
    }

    /// Sends closeSession and waits for its reply.
    pub async fn close_session(&mut self) -> anyhow::Result<()> {
        self.call(op::CLOSE_SESSION, &[]).await?.ok()?;
        Ok(())
    }
}

/// The body of a create request with open ACLs.
pub fn create_body(path: &str, data: &[u8], flags: i32) -> BytesMut {
    CreateRequest {
        path: path.to_owned(),
        data: Some(Bytes::copy_from_slice(data)),
        acl: Acl::open_unsafe(),
        flags,
    }
    .to_bytes()
}

/// The body of a setData request (`version` -1: any version).
pub fn set_data_body(path: &str, data: &[u8], version: i32) -> BytesMut {
    SetDataRequest {
        path: path.to_owned(),
        data: Some(Bytes::copy_from_slice(data)),
        version,
    }
    .to_bytes()
}

/// The body of a delete request (`version` -1: any version).
pub fn delete_body(path: &str, version: i32) -> BytesMut {
    DeleteRequest {
        path: path.to_owned(),
        version,
    }
    .to_bytes()
}

/// The body of exists, getData and getChildren requests.
pub fn path_watch_body(path: &str, watch: bool) -> BytesMut {
    PathWatchRequest {
        path: path.to_owned(),
        watch,
    }
    .to_bytes()
}

/// The body of a `multi` request: each op's header then its body, then the end marker.
pub fn multi_body(ops: &[(i32, BytesMut)]) -> BytesMut {
    let mut out = BytesMut::new();
    for (op, body) in ops {
        MultiHeader {
            op: *op,
            done: false,
            err: -1,
        }
        .write(&mut out);
        out.put_slice(body);
    }
    MultiHeader {
        op: -1,
        done: true,
        err: -1,
    }
    .write(&mut out);
    out
}

/// Parses a `multi` response into one result per op.
pub fn parse_multi(body: &[u8]) -> anyhow::Result<Vec<MultiResult>> {
    let mut r = jute::Reader::new(body);
    let mut out = Vec::new();
    // Bounded: every result consumes at least the 9-byte header.
    for _ in 0..=body.len() / 9 {
        let h = MultiHeader::read(&mut r).map_err(|e| anyhow!("bad multi header: {e}"))?;
        if h.done {
            r.finish()
                .map_err(|e| anyhow!("bytes after the multi end marker: {e}"))?;
            return Ok(out);
        }
        let jerr = |e: jute::JuteError| anyhow!("bad multi result for op {}: {e}", h.op);
        let mut res = MultiResult {
            op: h.op,
            err: h.err,
            path: None,
            stat: None,
        };
        match h.op {
            op::ERROR => res.err = ErrorResponse::read(&mut r).map_err(jerr)?.err,
            op::CREATE => res.path = Some(r.string().map_err(jerr)?),
            op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                res.path = Some(r.string().map_err(jerr)?);
                res.stat = Some(Stat::read(&mut r).map_err(jerr)?);
            }
            op::SET_DATA => res.stat = Some(Stat::read(&mut r).map_err(jerr)?),
            op::DELETE | op::CHECK => {}
            other => bail!("unexpected op {other} in a multi response"),
        }
        out.push(res);
    }
    bail!("multi response without an end marker")
}

/// Sends a four-letter word and returns the whole answer (the server closes after it).
pub async fn four_letter(addr: SocketAddr, word: &str) -> anyhow::Result<String> {
    let mut c = RawConn::tcp(addr).await?;
    c.write_raw(word.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, c.stream.read_to_end(&mut out))
        .await
        .map_err(|_| anyhow!("no end of the `{word}` answer within {IO_TIMEOUT:?}"))??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
