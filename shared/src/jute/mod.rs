//! The ZooKeeper wire codec ("jute"), as used by ZooKeeper 3.8 clients and servers.
//!
//! Every message on the wire is a 4-byte big-endian length followed by a jute payload.
//! Jute primitives: big-endian integers, a bool is one byte, strings and buffers are an
//! `i32` length plus bytes (`-1` is null), vectors are an `i32` count plus items.
//!
//! This module does no I/O. Every length read from the wire is checked against the bytes
//! that remain before anything is allocated, so truncated or hostile input yields a
//! [`JuteError`], never a panic or a huge allocation.

mod codes;
mod records;

pub use codes::*;
pub use records::*;

use bytes::{BufMut, Bytes, BytesMut};

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JuteError {
    #[error("truncated: needed {needed} bytes at offset {offset}, {remaining} remain")]
    Truncated {
        offset: usize,
        needed: usize,
        remaining: usize,
    },
    #[error("bad length {len} at offset {offset}")]
    BadLength { offset: usize, len: i32 },
    #[error("string at offset {offset} is not UTF-8")]
    BadUtf8 { offset: usize },
    #[error("unexpected null at offset {offset}")]
    UnexpectedNull { offset: usize },
    #[error("{extra} trailing bytes after the record")]
    TrailingBytes { extra: usize },
    #[error("unknown value {value} for {what}")]
    UnknownValue { what: &'static str, value: i32 },
}

/// Result of decoding.
pub type Result<T> = std::result::Result<T, JuteError>;

/// A cursor over a received payload.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The offset of the next byte.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The unread rest of the payload.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(JuteError::TrailingBytes { extra }),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(JuteError::Truncated {
                offset: self.pos,
                needed: n,
                remaining: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i64(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn bool(&mut self) -> Result<bool> {
        Ok(self.take(1)?[0] != 0)
    }

    /// A length-prefixed byte run; `None` for the null marker `-1`.
    pub fn opt_buffer(&mut self) -> Result<Option<&'a [u8]>> {
        let offset = self.pos;
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 {
            return Err(JuteError::BadLength { offset, len });
        }
        // `take` checks the length against what remains before anything is allocated.
        Ok(Some(self.take(len as usize)?))
    }

    /// A buffer, with null read as empty (as ZooKeeper does for data).
    pub fn buffer(&mut self) -> Result<Bytes> {
        Ok(self
            .opt_buffer()?
            .map(Bytes::copy_from_slice)
            .unwrap_or_default())
    }

    /// A buffer where null stays distinct from empty.
    pub fn nullable_buffer(&mut self) -> Result<Option<Bytes>> {
        Ok(self.opt_buffer()?.map(Bytes::copy_from_slice))
    }

    pub fn opt_string(&mut self) -> Result<Option<String>> {
        let offset = self.pos;
        match self.opt_buffer()? {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .map(|s| Some(s.to_owned()))
                .map_err(|_| JuteError::BadUtf8 { offset }),
        }
    }

    /// A non-null string.
    pub fn string(&mut self) -> Result<String> {
        let offset = self.pos;
        self.opt_string()?
            .ok_or(JuteError::UnexpectedNull { offset })
    }

    /// A vector; null reads as empty. Each item must occupy at least `min_item` bytes, which
    /// bounds the count by the bytes that remain before anything is allocated.
    pub fn vec<T>(
        &mut self,
        min_item: usize,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let offset = self.pos;
        let n = self.i32()?;
        if n == -1 {
            return Ok(Vec::new());
        }
        if n < 0 || (n as usize).saturating_mul(min_item.max(1)) > self.remaining() {
            return Err(JuteError::BadLength { offset, len: n });
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// A vector of strings.
    pub fn strings(&mut self) -> Result<Vec<String>> {
        self.vec(4, |r| r.string())
    }
}

/// Writing helpers on top of [`BytesMut`].
pub trait Writer {
    fn put_bool_j(&mut self, v: bool);
    fn put_buffer(&mut self, b: &[u8]);
    fn put_opt_buffer(&mut self, b: Option<&[u8]>);
    fn put_string(&mut self, s: &str);
    fn put_strings(&mut self, v: &[String]);
}

impl Writer for BytesMut {
    fn put_bool_j(&mut self, v: bool) {
        self.put_u8(u8::from(v));
    }
    fn put_buffer(&mut self, b: &[u8]) {
        self.put_i32(b.len() as i32);
        self.put_slice(b);
    }
    fn put_opt_buffer(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.put_buffer(b),
            None => self.put_i32(-1),
        }
    }
    fn put_string(&mut self, s: &str) {
        self.put_buffer(s.as_bytes());
    }
    fn put_strings(&mut self, v: &[String]) {
        self.put_i32(v.len() as i32);
        for s in v {
            self.put_string(s);
        }
    }
}

/// A jute record: something with a fixed wire layout.
pub trait Record: Sized {
    fn read(r: &mut Reader<'_>) -> Result<Self>;
    fn write(&self, w: &mut BytesMut);

    /// Decodes a whole payload, rejecting trailing bytes.
    fn decode(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        let v = Self::read(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    /// Encodes into a fresh buffer.
    fn to_bytes(&self) -> BytesMut {
        let mut b = BytesMut::new();
        self.write(&mut b);
        b
    }
}

/// Builds one wire frame: a 4-byte length placeholder, then whatever `body` writes, then the
/// length is patched in.
pub fn frame_with(out: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_i32(0);
    body(out);
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}
