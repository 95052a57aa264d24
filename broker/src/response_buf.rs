//! Encoded responses that carry record sets without copying them.
//!
//! A Fetch response is mostly record batches, read from a segment into `Bytes`. Encoding
//! it into one buffer would copy every batch once more; [`ChunkedBuf`] is the buffer the
//! `kafka-protocol` encoder writes into instead: small fields go into a growing head, and
//! a slice that lies inside one of the response's own record sets becomes a slice of that
//! `Bytes` (a reference count, no copy). The connection then hands the pieces to the
//! socket with vectored writes.
//!
//! `BufMut` is an unsafe trait; the one implementation here forwards every call to a
//! `BytesMut`, so the module allows `unsafe` for that alone.
#![allow(unsafe_code)]

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;
use std::io::IoSlice;
use std::ops::Range;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Slices shorter than this are copied: a reference is not worth a separate write.
const SHARE_MIN: usize = 4096;

/// At most this many pieces go to the socket in one `writev`.
const MAX_IOV: usize = 64;

/// An encoded response frame (length prefix included).
#[derive(Debug)]
pub enum Encoded {
    /// One buffer.
    Flat(BytesMut),
    /// Pieces to write in order: encoded fields and shared record sets.
    Chunks(Vec<Bytes>),
}

impl Encoded {
    /// Bytes on the wire, length prefix included.
    pub fn len(&self) -> usize {
        match self {
            Encoded::Flat(b) => b.len(),
            Encoded::Chunks(c) => c.iter().map(Bytes::len).sum(),
        }
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole frame in one buffer (copies the shared pieces).
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Encoded::Flat(b) => Bytes::copy_from_slice(b),
            Encoded::Chunks(c) => {
                let mut out = BytesMut::with_capacity(self.len());
                for piece in c {
                    out.extend_from_slice(piece);
                }
                out.freeze()
            }
        }
    }

    /// Writes the frame; with `vectored`, several pieces per system call.
    pub async fn write_to<W: AsyncWrite + Unpin>(
        &self,
        out: &mut W,
        vectored: bool,
    ) -> std::io::Result<()> {
        match self {
            Encoded::Flat(b) => out.write_all(b).await,
            Encoded::Chunks(pieces) if !vectored => {
                for piece in pieces {
                    out.write_all(piece).await?;
                }
                Ok(())
            }
            Encoded::Chunks(pieces) => write_all_vectored(out, pieces).await,
        }
    }
}

/// Writes `pieces` in order with `writev`, resuming after partial writes.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    out: &mut W,
    pieces: &[Bytes],
) -> std::io::Result<()> {
    // (index of the first unwritten piece, bytes of it already written)
    let (mut first, mut skip) = (0usize, 0usize);
    loop {
        // Past finished (and empty) pieces.
        while first < pieces.len() && pieces[first].len() == skip {
            first += 1;
            skip = 0;
        }
        if first == pieces.len() {
            break;
        }
        let n = {
            let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(MAX_IOV.min(pieces.len() - first));
            for (i, piece) in pieces[first..].iter().take(MAX_IOV).enumerate() {
                let from = if i == 0 { skip } else { 0 };
                if from < piece.len() {
                    iov.push(IoSlice::new(&piece[from..]));
                }
            }
            out.write_vectored(&iov).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut left = n;
        while left > 0 && first < pieces.len() {
            let rest = pieces[first].len() - skip;
            if left >= rest {
                left -= rest;
                first += 1;
                skip = 0;
            } else {
                skip += left;
                left = 0;
            }
        }
    }
    Ok(())
}

/// The encoder's buffer: see the module docs.
pub struct ChunkedBuf<'a> {
    /// Record sets whose slices are kept by reference.
    shared: &'a [Bytes],
    /// Where the next search of `shared` starts.
    next: usize,
    done: Vec<Bytes>,
    done_len: usize,
    head: BytesMut,
    /// The encoder went back before the current head (a gap in an earlier piece): the
    /// result is unusable and the caller encodes into one buffer instead.
    spoiled: bool,
    scratch: [u8; 16],
}

impl<'a> ChunkedBuf<'a> {
    pub fn new(shared: &'a [Bytes], head_capacity: usize) -> ChunkedBuf<'a> {
        ChunkedBuf {
            shared,
            next: 0,
            done: Vec::new(),
            done_len: 0,
            head: BytesMut::with_capacity(head_capacity),
            spoiled: false,
            scratch: [0; 16],
        }
    }

    /// The pieces, or None if the encoder needed to revisit an earlier piece.
    pub fn finish(mut self) -> Option<Vec<Bytes>> {
        if self.spoiled {
            return None;
        }
        if !self.head.is_empty() {
            self.done.push(self.head.freeze());
        }
        Some(self.done)
    }

    /// The slice of a shared record set that `src` is, if any. The encoder writes record
    /// sets in the order they were collected, so the search starts after the last match.
    fn shared_slice(&mut self, src: &[u8]) -> Option<Bytes> {
        let (p, n) = (src.as_ptr() as usize, src.len());
        let holds = |b: &Bytes| {
            let s = b.as_ptr() as usize;
            p >= s && p + n <= s + b.len()
        };
        let count = self.shared.len();
        let i = (0..count)
            .map(|k| (self.next + k) % count)
            .find(|&i| holds(&self.shared[i]))?;
        self.next = i + 1;
        Some(self.shared[i].slice_ref(src))
    }
}

// SAFETY: every method forwards to `head`, a `BytesMut`, whose own `BufMut` contract holds;
// `put_slice` only adds a finished piece before it.
unsafe impl BufMut for ChunkedBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut()`, which is `head`'s.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SHARE_MIN {
            if let Some(piece) = self.shared_slice(src) {
                if !self.head.is_empty() {
                    let head = self.head.split().freeze();
                    self.done_len += head.len();
                    self.done.push(head);
                }
                self.done_len += piece.len();
                self.done.push(piece);
                return;
            }
        }
        self.head.extend_from_slice(src);
    }
}

impl ByteBufMut for ChunkedBuf<'_> {
    fn offset(&self) -> usize {
        self.done_len + self.head.len()
    }

    fn seek(&mut self, offset: usize) {
        match offset.checked_sub(self.done_len) {
            Some(at) => self.head.resize(at, 0),
            None => self.spoiled = true,
        }
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let inside = r.start >= self.done_len && r.end <= self.offset() && r.start <= r.end;
        if inside {
            let (s, e) = (r.start - self.done_len, r.end - self.done_len);
            return &mut self.head[s..e];
        }
        // Writes into an earlier piece cannot be honoured: remember, and give the encoder
        // somewhere harmless to write.
        self.spoiled = true;
        let len = r.end.saturating_sub(r.start).min(self.scratch.len());
        &mut self.scratch[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_slices_are_kept_by_reference_and_the_rest_is_copied() {
        let records = Bytes::from(vec![7u8; 10_000]);
        let shared = [records.clone()];
        let mut buf = ChunkedBuf::new(&shared, 64);
        buf.put_i32(42);
        buf.put_slice(&records[100..9_000]);
        buf.put_slice(&[1, 2, 3]);
        // Large, but not part of a shared record set: copied.
        buf.put_slice(&vec![9u8; 5_000]);
        assert_eq!(buf.offset(), 4 + 8_900 + 3 + 5_000);
        let pieces = buf.finish().unwrap();
        assert_eq!(pieces.len(), 3);
        assert_eq!(&pieces[0][..], &42i32.to_be_bytes());
        assert_eq!(pieces[1].as_ptr(), records[100..].as_ptr());
        assert_eq!(pieces[1].len(), 8_900);
        assert_eq!(pieces[2].len(), 5_003);
    }

    #[test]
    fn going_back_into_an_earlier_piece_spoils_the_result() {
        let records = Bytes::from(vec![7u8; 10_000]);
        let shared = [records.clone()];
        let mut buf = ChunkedBuf::new(&shared, 64);
        buf.put_i32(0);
        buf.put_slice(&records[..]);
        let _ = buf.range(0..4);
        assert!(buf.finish().is_none());
        // Gaps inside the current head are fine.
        let mut buf = ChunkedBuf::new(&shared, 64);
        buf.put_slice(&records[..]);
        let gap = buf.put_gap(4);
        buf.gap_buf(gap).copy_from_slice(&[1, 2, 3, 4]);
        let pieces = buf.finish().unwrap();
        assert_eq!(&pieces[1][..], &[1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn vectored_writes_resume_after_partial_writes() {
        let pieces: Vec<Bytes> = (0..200u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; (i as usize * 37) % 5000]))
            .collect();
        let expected: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        // A duplex pipe with a small buffer forces partial writes.
        let (mut a, mut b) = tokio::io::duplex(1000);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
                .await
                .unwrap();
            got
        });
        Encoded::Chunks(pieces)
            .write_to(&mut a, true)
            .await
            .unwrap();
        drop(a);
        assert_eq!(reader.await.unwrap(), expected);
    }
}
