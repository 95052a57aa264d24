//! One TCP connection to a server: the handshake, then one writer task and one reader task.
//!
//! Requests are pipelined. The writer alone owns the socket's write half: it takes requests
//! in order, gives each an xid, appends it to the [`Pending`] queue and writes it (batching
//! whatever is already queued into one write), and sends a ping (xid -2) whenever nothing was
//! written for a third of the session timeout. The reader alone owns the read half: since the
//! server answers in request order, each reply belongs to the oldest pending request, and
//! anything else is a protocol error that ends the connection. Notifications (xid -1) update
//! the watch registry and go to subscribers; ping replies are only proof of life; auth
//! replies (xid -4) are answered by the server outside the request pipeline, so they have
//! their own queue. If nothing at all arrives for two thirds of the session timeout the
//! connection is considered dead (the server would expire the session soon after).
//!
//! Both tasks are owned by the session supervisor, which stops them and fails whatever is
//! still pending when either ends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::stream::Stream;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};

use super::error::{Error, ProtocolError};
use super::events::{Event, EventType, SessionEvent, WatchedEvent};
use super::session::{lock, Shared};
use super::watches::{downgrade, WatchIntent};
use crate::jute::{
    frame_with, op, xid, ConnectRequest, ConnectResponse, ErrorCode, Reader, Record, ReplyHeader,
    RequestHeader, SetWatches2, WatcherEvent,
};

/// A reply as received: its header and the undecoded body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub header: ReplyHeader,
    pub body: Bytes,
}

/// A request waiting to be written: opcode, encoded body, and who wants the reply.
#[derive(Debug)]
pub(crate) struct Request {
    pub op: i32,
    pub body: BytesMut,
    pub kind: Kind,
}

/// Who a reply goes to, and what else it changes.
#[derive(Debug)]
pub(crate) enum Kind {
    /// An application call: the reply goes back through `tx`, and `watch` is recorded in the
    /// registry first so that a watch is known before its caller sees the result.
    User {
        tx: oneshot::Sender<Result<Reply, Error>>,
        watch: Option<WatchIntent>,
    },
    /// An `auth` packet (xid -4). `tx` is `None` when replaying credentials on reconnect.
    Auth {
        tx: Option<oneshot::Sender<Result<Reply, Error>>>,
        scheme: String,
        auth: Bytes,
    },
    /// Watch re-registration after a reconnect; kept so it can be downgraded to `setWatches`
    /// if the server does not know op 105.
    SetWatches2(SetWatches2),
    /// The downgraded form.
    SetWatches,
}

#[derive(Debug)]
struct InFlight {
    xid: i32,
    op: i32,
    kind: Kind,
}

/// Requests written and not yet answered, in write order.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    queue: VecDeque<InFlight>,
    auth: VecDeque<Kind>,
}

impl Pending {
    /// Fails every waiting caller with `err()`.
    pub(crate) fn fail_all(&mut self, err: impl Fn() -> Error) {
        let kinds = self
            .queue
            .drain(..)
            .map(|p| p.kind)
            .chain(self.auth.drain(..));
        for kind in kinds {
            fail(kind, err());
        }
    }
}

/// Answers a request that will never get a reply.
pub(crate) fn fail(kind: Kind, err: Error) {
    match kind {
        Kind::User { tx, .. } | Kind::Auth { tx: Some(tx), .. } => {
            let _ = tx.send(Err(err));
        }
        _ => {}
    }
}

/// Reads one length-prefixed frame. `Ok(None)` on a clean end of stream at a frame boundary.
/// The length is checked against `max` before anything is allocated.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Bytes>, Error> {
    let mut len = [0u8; 4];
    // Only an end of stream before the first byte is clean; inside a frame it is an error.
    if r.read(&mut len[..1]).await? == 0 {
        return Ok(None);
    }
    r.read_exact(&mut len[1..]).await?;
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > max {
        return Err(ProtocolError::FrameTooLarge {
            len: len.into(),
            limit: max,
        }
        .into());
    }
    let mut buf = BytesMut::zeroed(len as usize);
    r.read_exact(&mut buf).await?;
    Ok(Some(buf.freeze()))
}

/// The halves of a connection: a plain one's own halves, or a TLS one's split halves.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type WriteHalf = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// Splits a connection for the reader and writer tasks.
pub(crate) fn split(stream: Stream) -> (ReadHalf, WriteHalf) {
    match stream {
        Stream::Plain(s) => {
            let (r, w) = s.into_split();
            (Box::new(r), Box::new(w))
        }
        tls => {
            let (r, w) = tokio::io::split(tls);
            (Box::new(r), Box::new(w))
        }
    }
}

/// The xid of the SASL exchange's requests, done before the reader and writer start.
const SASL_XID: i32 = 0x7fff_0000;

/// Logs in with DIGEST-MD5 (opcode 102 requests) on a fresh session connection.
pub(crate) async fn sasl_login(
    stream: &mut Stream,
    user: &str,
    password: &str,
    max_frame: usize,
) -> Result<(), Error> {
    let mut cnonce = [0u8; 18];
    crate::random::fill(&mut cnonce)
        .map_err(|e| Error::BadArgument(format!("no random source for the SASL login: {e}")))?;
    let mut client = crate::digest_md5::DigestClient::new(
        user,
        password,
        crate::digest_md5::nonce_from(&cnonce),
    );
    let mut token = client.first();
    for _ in 0..4 {
        let mut buf = BytesMut::new();
        frame_with(&mut buf, |b| {
            RequestHeader {
                xid: SASL_XID,
                op: op::SASL,
            }
            .write(b);
            crate::jute::GetSaslRequest {
                token: Bytes::from(token.clone()),
            }
            .write(b);
        });
        stream.write_all(&buf).await?;
        let Some(frame) = read_frame(stream, max_frame).await? else {
            return Err(ProtocolError::HandshakeClosed.into());
        };
        let mut r = crate::jute::Reader::new(&frame);
        let header = crate::jute::ReplyHeader::read(&mut r)?;
        if header.err != 0 {
            return Err(Error::from_code(header.err));
        }
        let reply = crate::jute::SetSaslResponse::read(&mut r)?;
        match client.step(&reply.token) {
            Ok(Some(next)) => token = next,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "SASL login failed");
                return Err(Error::Zk(crate::jute::ErrorCode::AuthFailed));
            }
        }
    }
    Err(Error::Zk(crate::jute::ErrorCode::AuthFailed))
}

/// Sends the ConnectRequest and reads the ConnectResponse.
pub(crate) async fn handshake(
    stream: &mut Stream,
    req: &ConnectRequest,
    max_frame: usize,
) -> Result<ConnectResponse, Error> {
    let mut buf = BytesMut::new();
    frame_with(&mut buf, |b| req.write(b));
    stream.write_all(&buf).await?;
    match read_frame(stream, max_frame).await? {
        Some(frame) => Ok(ConnectResponse::decode(&frame)?),
        None => Err(ProtocolError::HandshakeClosed.into()),
    }
}

/// Why the writer stopped.
#[derive(Debug)]
pub(crate) enum WriterEnd {
    /// The supervisor asked it to.
    Stopped,
    /// Every [`Client`](super::Client) handle is gone.
    ClientGone,
    /// Writing failed.
    Io(std::io::Error),
}

/// The writer task's state.
pub(crate) struct Writer {
    pub wr: WriteHalf,
    pub shared: Arc<Shared>,
    pub pending: Arc<std::sync::Mutex<Pending>>,
    pub ping_every: Duration,
}

/// Stop writing once a batch reaches this size, so one huge burst does not hold every
/// request's memory twice.
const MAX_BATCH: usize = 256 * 1024;

impl Writer {
    /// Runs until stopped, and gives back the application's request queue so the next
    /// connection can continue from it.
    pub(crate) async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        mut priority: mpsc::UnboundedReceiver<Request>,
        mut stop: oneshot::Receiver<()>,
    ) -> (mpsc::UnboundedReceiver<Request>, WriterEnd) {
        let mut buf = BytesMut::new();
        let mut last_write = Instant::now();
        loop {
            buf.clear();
            tokio::select! {
                biased;
                _ = &mut stop => return (requests, WriterEnd::Stopped),
                // Re-registration and auth replays go before anything the application queued.
                Some(r) = priority.recv() => self.encode(r, &mut buf),
                r = requests.recv() => match r {
                    Some(r) => self.encode(r, &mut buf),
                    None => return (requests, WriterEnd::ClientGone),
                },
                _ = sleep_until(last_write + self.ping_every) => {
                    frame_with(&mut buf, |b| RequestHeader { xid: xid::PING, op: op::PING }.write(b));
                }
            }
            while buf.len() < MAX_BATCH {
                match priority.try_recv().or_else(|_| requests.try_recv()) {
                    Ok(r) => self.encode(r, &mut buf),
                    Err(_) => break,
                }
            }
            tokio::select! {
                biased;
                _ = &mut stop => return (requests, WriterEnd::Stopped),
                r = self.wr.write_all(&buf) => {
                    if let Err(e) = r {
                        return (requests, WriterEnd::Io(e));
                    }
                }
            }
            last_write = Instant::now();
        }
    }

    /// Frames `r` into `buf` and records it as pending (before it is written, so the reply
    /// can never arrive first).
    fn encode(&self, r: Request, buf: &mut BytesMut) {
        let is_auth = matches!(r.kind, Kind::Auth { .. });
        let xid = if is_auth {
            xid::AUTH
        } else {
            self.shared.next_xid()
        };
        frame_with(buf, |b| {
            RequestHeader { xid, op: r.op }.write(b);
            b.extend_from_slice(&r.body);
        });
        let mut pending = lock(&self.pending);
        if is_auth {
            pending.auth.push_back(r.kind);
        } else {
            pending.queue.push_back(InFlight {
                xid,
                op: r.op,
                kind: r.kind,
            });
        }
    }
}

/// Why the reader stopped.
#[derive(Debug)]
pub(crate) enum ReaderEnd {
    /// The server closed the connection.
    Eof,
    /// Nothing arrived within the read timeout.
    Silent,
    /// The closeSession reply arrived.
    SessionClosed,
    /// A socket or protocol error.
    Failed(Error),
}

/// The reader task's state.
pub(crate) struct ConnReader {
    pub rd: BufReader<ReadHalf>,
    pub shared: Arc<Shared>,
    pub pending: Arc<std::sync::Mutex<Pending>>,
    /// To send the `setWatches` fallback ahead of application requests.
    pub priority: mpsc::UnboundedSender<Request>,
    pub read_timeout: Duration,
    pub max_frame: usize,
}

impl ConnReader {
    pub(crate) async fn run(mut self) -> ReaderEnd {
        loop {
            let frame =
                match timeout(self.read_timeout, read_frame(&mut self.rd, self.max_frame)).await {
                    Err(_) => return ReaderEnd::Silent,
                    Ok(Err(e)) => return ReaderEnd::Failed(e),
                    Ok(Ok(None)) => return ReaderEnd::Eof,
                    Ok(Ok(Some(f))) => f,
                };
            match self.handle(frame) {
                Ok(false) => {}
                Ok(true) => return ReaderEnd::SessionClosed,
                Err(e) => return ReaderEnd::Failed(e),
            }
        }
    }

    /// Dispatches one frame; `Ok(true)` once the closeSession reply was handled.
    fn handle(&mut self, frame: Bytes) -> Result<bool, Error> {
        let mut r = Reader::new(&frame);
        let header = ReplyHeader::read(&mut r)?;
        let body = frame.slice(r.position()..);
        if header.zxid > 0 {
            lock(&self.shared.session).last_zxid = header.zxid;
        }
        match header.xid {
            xid::NOTIFICATION => {
                let ev = WatcherEvent::decode(&body)?;
                let event = WatchedEvent {
                    event_type: EventType::from_code(ev.event_type),
                    path: self.shared.chroot.to_client(&ev.path),
                };
                lock(&self.shared.watches).on_event(event.event_type, &event.path);
                tracing::debug!(event = %event.event_type, path = %event.path, "watch event");
                self.shared.events.send(Event::Watch(event));
                Ok(false)
            }
            xid::PING => Ok(false),
            xid::AUTH => {
                let kind = lock(&self.pending).auth.pop_front();
                match kind {
                    Some(Kind::Auth { tx, scheme, auth }) => {
                        self.auth_reply(header, body, tx, scheme, auth)
                    }
                    _ => return Err(ProtocolError::Unsolicited { xid: header.xid }.into()),
                }
                Ok(false)
            }
            got => {
                let in_flight = {
                    let mut pending = lock(&self.pending);
                    match pending.queue.front().map(|p| p.xid) {
                        Some(expected) if expected != got => {
                            return Err(ProtocolError::XidOutOfOrder { expected, got }.into())
                        }
                        _ => pending.queue.pop_front(),
                    }
                };
                let Some(InFlight {
                    op: opcode, kind, ..
                }) = in_flight
                else {
                    return Err(ProtocolError::Unsolicited { xid: got }.into());
                };
                self.reply(kind, header, body);
                Ok(opcode == op::CLOSE_SESSION)
            }
        }
    }

    fn reply(&mut self, kind: Kind, header: ReplyHeader, body: Bytes) {
        match kind {
            Kind::User { tx, watch } => {
                if let Some(intent) = watch {
                    lock(&self.shared.watches).on_reply(intent, header.err);
                }
                let _ = tx.send(Ok(Reply { header, body }));
            }
            Kind::SetWatches2(sw) if header.err == ErrorCode::Unimplemented.code() => {
                let (old, lost) = downgrade(&sw);
                if lost {
                    tracing::warn!(
                        "server does not support setWatches2; persistent watches could not be re-registered"
                    );
                }
                let req = Request {
                    op: op::SET_WATCHES,
                    body: old.to_bytes(),
                    kind: Kind::SetWatches,
                };
                // The writer outlives the reader's use of this channel; if it is gone the
                // connection is ending anyway and the next one re-registers.
                let _ = self.priority.send(req);
            }
            Kind::SetWatches2(_) | Kind::SetWatches if header.err != 0 => {
                tracing::warn!(err = header.err, "re-registering watches failed");
            }
            _ => {}
        }
    }

    fn auth_reply(
        &mut self,
        header: ReplyHeader,
        body: Bytes,
        tx: Option<oneshot::Sender<Result<Reply, Error>>>,
        scheme: String,
        auth: Bytes,
    ) {
        if header.err == 0 {
            let mut session = lock(&self.shared.session);
            if tx.is_some()
                && !session
                    .auths
                    .iter()
                    .any(|(s, a)| *s == scheme && *a == auth)
            {
                session.auths.push((scheme, auth));
            }
        } else {
            tracing::warn!(scheme = %scheme, err = header.err, "authentication failed");
            if tx.is_none() {
                // A replayed credential is no longer accepted: stop replaying it.
                lock(&self.shared.session)
                    .auths
                    .retain(|(s, a)| !(*s == scheme && *a == auth));
            }
            self.shared
                .events
                .send(Event::Session(SessionEvent::AuthFailed));
        }
        if let Some(tx) = tx {
            let _ = tx.send(Ok(Reply { header, body }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_checked_before_allocation() {
        let mut ok: &[u8] = &[0, 0, 0, 2, 7, 8];
        assert_eq!(
            read_frame(&mut ok, 16).await.unwrap().unwrap().as_ref(),
            &[7, 8]
        );
        assert!(read_frame(&mut ok, 16).await.unwrap().is_none());

        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut huge, 1024).await,
            Err(Error::Protocol(ProtocolError::FrameTooLarge {
                limit: 1024,
                ..
            }))
        ));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xfe];
        assert!(read_frame(&mut negative, 1024).await.is_err());
        let mut torn: &[u8] = &[0, 0, 0, 9, 1];
        assert!(matches!(
            read_frame(&mut torn, 1024).await,
            Err(Error::Io(_))
        ));
        let mut torn_length: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut torn_length, 1024).await,
            Err(Error::Io(_))
        ));
    }
}
