//! Walking the batches of a segment file with positional reads (`pread`), for recovery,
//! index rebuilds, truncation and timestamp lookups. The file is read in chunks into one
//! reusable buffer, so a scan makes one system call per chunk, not per batch.
//!
//! A scan never trusts a length field further than the bytes that exist: a batch that
//! claims more bytes than remain is reported as torn, not read.

use super::batch::{self, BatchHeader, HEADER_LEN};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Chunk size for scans that look at headers only.
pub(crate) const HEADER_SCAN_CHUNK: usize = 16 * 1024;
/// Chunk size for scans that read every byte (recovery).
pub(crate) const FULL_SCAN_CHUNK: usize = 1024 * 1024;

/// Where a batch is and what its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchInfo {
    /// Byte position in the file.
    pub position: u64,
    /// Size of the whole batch.
    pub size: u64,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub leader_epoch: i32,
}

impl BatchInfo {
    /// The facts of a parsed header at `position`.
    pub(crate) fn from_header(position: u64, header: &BatchHeader<'_>) -> BatchInfo {
        BatchInfo {
            position,
            size: header.size_in_bytes() as u64,
            base_offset: header.base_offset(),
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp(),
            leader_epoch: header.partition_leader_epoch(),
        }
    }
}

/// One step of a scan.
#[derive(Debug)]
pub(crate) enum Step {
    /// A batch (whole, and valid as far as the scan checks).
    Batch(BatchInfo),
    /// The end of the range, exactly at a batch boundary.
    End,
    /// A torn or corrupt batch at `position`; the scan stops there.
    Invalid { position: u64, reason: String },
}

/// A forward scan over `[start, end)` of a segment file.
#[derive(Debug)]
pub(crate) struct FileScanner<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    buf_start: u64,
    chunk: usize,
}

impl<'f> FileScanner<'f> {
    /// Scans from `start` (a batch boundary) to `end`, reading `chunk` bytes at a time.
    pub(crate) fn new(file: &'f File, start: u64, end: u64, chunk: usize) -> FileScanner<'f> {
        FileScanner {
            file,
            pos: start,
            end,
            buf: Vec::new(),
            buf_start: 0,
            chunk,
        }
    }

    /// Bytes `[at, at + len)`, which must lie before `end`.
    fn window(&mut self, at: u64, len: usize) -> io::Result<&[u8]> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        if at < self.buf_start || at + len as u64 > buf_end {
            let want = (len.max(self.chunk) as u64).min(self.end.saturating_sub(at)) as usize;
            let want = want.max(len);
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, at)?;
            self.buf_start = at;
        }
        let off = (at - self.buf_start) as usize;
        Ok(&self.buf[off..off + len])
    }

    /// The next batch, checking its header and that it fits (not its CRC).
    pub(crate) fn next_header(&mut self) -> io::Result<Step> {
        let pos = self.pos;
        if pos >= self.end {
            return Ok(Step::End);
        }
        let remaining = self.end - pos;
        let peek = remaining.min(HEADER_LEN as u64) as usize;
        let bytes = self.window(pos, peek)?;
        let header = match BatchHeader::parse(bytes) {
            Ok(header) => header,
            Err(e) => {
                return Ok(Step::Invalid {
                    position: pos,
                    reason: e.to_string(),
                })
            }
        };
        let info = BatchInfo::from_header(pos, &header);
        if info.size > remaining {
            return Ok(Step::Invalid {
                position: pos,
                reason: format!(
                    "torn batch: length says {} bytes, {remaining} remain",
                    info.size
                ),
            });
        }
        self.pos = pos + info.size;
        Ok(Step::Batch(info))
    }

    /// The next batch, fully validated (CRC-32C, counts, record framing).
    pub(crate) fn next_validated(&mut self) -> io::Result<Step> {
        let step = self.next_header()?;
        if let Step::Batch(info) = &step {
            let info = *info;
            let bytes = self.window(info.position, info.size as usize)?;
            if let Err(e) = batch::validate(bytes) {
                self.pos = info.position;
                return Ok(Step::Invalid {
                    position: info.position,
                    reason: e.to_string(),
                });
            }
        }
        Ok(step)
    }

    /// The bytes of a batch this scan returned.
    pub(crate) fn batch_bytes(&mut self, info: &BatchInfo) -> io::Result<&[u8]> {
        self.window(info.position, info.size as usize)
    }
}
