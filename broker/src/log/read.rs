//! Fetch reads: whole batches from one segment, as `Bytes` slices of a single buffer.
//!
//! A read happens in two steps so that a fetch need not hold the partition's lock during
//! file I/O: [`PartitionLog::prepare_read`](super::PartitionLog::prepare_read) (under
//! the lock, no I/O) checks the offset range, picks the segment, and turns the offset
//! index into a byte range; [`ReadPlan::read`] (lock released) does the `pread`s. The
//! plan holds the segment's file open, so a segment deleted by retention meanwhile is
//! still readable, and it never reads past the bytes that existed when it was made.
//!
//! Rules (Kafka's, minus partial batches): a read starting inside a batch returns that
//! whole batch; the first batch is returned even if it is larger than `max_bytes` (so a
//! consumer can always make progress); later batches only while the total stays within
//! `max_bytes`; only batches entirely below the offset limit (high watermark or log end);
//! never a partial batch. Like Kafka, one read serves one segment: a fetch at the end of a
//! segment returns what that segment has and the next fetch moves on.

use super::batch::{BatchHeader, HEADER_LEN};
use super::error::LogError;
use bytes::Bytes;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecords {
    /// Whole batches, exactly as stored (empty if there is nothing to return).
    pub records: Bytes,
    /// Base offset of the first batch returned.
    pub first_offset: Option<i64>,
    /// The offset after the last batch returned (the requested offset if none).
    pub next_offset: i64,
    /// The log start offset when the read was planned.
    pub log_start_offset: i64,
    /// The log end offset when the read was planned.
    pub log_end_offset: i64,
}

/// A planned read; see the module docs. Cheap to make, does I/O only in [`ReadPlan::read`].
#[derive(Debug, Clone)]
pub struct ReadPlan {
    source: Option<Source>,
    from_offset: i64,
    log_start_offset: i64,
    log_end_offset: i64,
}

#[derive(Debug, Clone)]
struct Source {
    file: Arc<File>,
    path: Arc<Path>,
    /// A batch boundary at or before the batch holding `from_offset`.
    start: u64,
    /// No batch starting at or after this position is below the offset limit.
    end: u64,
    /// Batches must end below this offset.
    limit_offset: i64,
    max_bytes: usize,
    /// Bytes of headers the first read may need to skip (the index granularity).
    scan_slack: usize,
}

impl ReadPlan {
    /// A plan that returns nothing.
    pub(crate) fn empty(from_offset: i64, log_start_offset: i64, log_end_offset: i64) -> ReadPlan {
        ReadPlan {
            source: None,
            from_offset,
            log_start_offset,
            log_end_offset,
        }
    }

    /// A plan reading from `file` between byte positions `start` and `end`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        file: Arc<File>,
        path: Arc<Path>,
        start: u64,
        end: u64,
        from_offset: i64,
        limit_offset: i64,
        max_bytes: usize,
        scan_slack: usize,
        log_start_offset: i64,
        log_end_offset: i64,
    ) -> ReadPlan {
        ReadPlan {
            source: Some(Source {
                file,
                path,
                start,
                end,
                limit_offset,
                max_bytes,
                scan_slack,
            }),
            from_offset,
            log_start_offset,
            log_end_offset,
        }
    }

    /// Performs the read: at most two `pread`s in the common case (one to find the first
    /// batch, which usually also holds the data), never a per-record allocation.
    pub fn read(&self) -> Result<FetchedRecords, LogError> {
        let mut out = FetchedRecords {
            records: Bytes::new(),
            first_offset: None,
            next_offset: self.from_offset,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset,
        };
        let Some(src) = &self.source else {
            return Ok(out);
        };
        let io_err = |source| LogError::Io {
            op: "read",
            path: src.path.to_path_buf(),
            source,
        };
        let corrupt = |position: u64, reason: String| LogError::Corrupt {
            path: src.path.to_path_buf(),
            position,
            reason,
        };

        // Step 1: find the first batch whose last offset is at or above from_offset.
        let chunk = src
            .max_bytes
            .saturating_add(src.scan_slack)
            .saturating_add(HEADER_LEN)
            .max(HEADER_LEN * 4);
        let mut pos = src.start;
        let (buf, at, first_size) = loop {
            if pos >= src.end {
                return Ok(out);
            }
            let len = usize::try_from(src.end - pos)
                .unwrap_or(usize::MAX)
                .min(chunk);
            let buf = read_up_to(&src.file, pos, len).map_err(io_err)?;
            let mut o = 0usize;
            let mut found = None;
            while o + HEADER_LEN <= buf.len() {
                let header = BatchHeader::parse(&buf[o..])
                    .map_err(|e| corrupt(pos + o as u64, e.to_string()))?;
                if header.last_offset() >= self.from_offset {
                    found = Some(header.size_in_bytes());
                    break;
                }
                o += header.size_in_bytes();
            }
            match found {
                Some(size) => break (buf, o, size),
                // Short read: the file shrank under us (truncation); nothing to return.
                None if buf.len() < len || o == 0 => return Ok(out),
                None => pos += o as u64,
            }
        };

        // Step 2: take whole batches from there, reusing the first buffer if it holds
        // enough, else reading exactly the range needed.
        let first_pos = pos + at as u64;
        let available = usize::try_from(src.end - first_pos).unwrap_or(usize::MAX);
        let want = first_size.max(src.max_bytes).min(available);
        let data = if at + want <= buf.len() {
            Bytes::from(buf).slice(at..at + want)
        } else {
            Bytes::from(read_up_to(&src.file, first_pos, want).map_err(io_err)?)
        };
        let mut taken = 0usize;
        while taken + HEADER_LEN <= data.len() {
            let header = BatchHeader::parse(&data[taken..])
                .map_err(|e| corrupt(first_pos + taken as u64, e.to_string()))?;
            let size = header.size_in_bytes();
            if taken + size > data.len()
                || header.last_offset() >= src.limit_offset
                || (taken > 0 && taken + size > src.max_bytes)
            {
                break;
            }
            out.first_offset.get_or_insert(header.base_offset());
            out.next_offset = header.last_offset() + 1;
            taken += size;
        }
        out.records = data.slice(..taken);
        Ok(out)
    }
}

/// Reads up to `len` bytes at `pos`; fewer only at the end of the file.
#[allow(unsafe_code)]
fn read_up_to(file: &File, pos: u64, len: usize) -> io::Result<Vec<u8>> {
    // Not zeroed first: `pread` fills the buffer straight from the page cache (zeroing a
    // megabyte per fetch was a visible share of a consumer-bound broker's CPU).
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    let fd = file.as_raw_fd();
    while buf.len() < len {
        let filled = buf.len();
        let at = libc::off_t::try_from(pos + filled as u64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: the destination is the vector's spare capacity, which starts `filled`
        // bytes in and is `len - filled` bytes long; `pread` writes at most that many.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().add(filled).cast(), len - filled, at) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        // SAFETY: `pread` initialised the next `n` bytes, and `n <= len - filled`.
        unsafe { buf.set_len(filled + n as usize) };
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use crate::log::batch::{split_batches, validate};
    use crate::log::test_util::batch_at;
    use crate::log::{LogConfig, PartitionLog, TopicPartition};

    const NOW: i64 = 1_700_000_000_000;

    fn bases(log: &PartitionLog, from: i64, max_bytes: usize) -> Vec<i64> {
        let r = log.read(from, max_bytes, i64::MAX).unwrap();
        split_batches(&r.records)
            .unwrap()
            .iter()
            .map(|b| validate(b).unwrap().base_offset())
            .collect()
    }

    #[test]
    fn a_batch_larger_than_max_bytes_and_the_first_buffer_is_returned_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(
            dir.path().join("t-0"),
            TopicPartition::new("t", 0),
            LogConfig::default(),
            0,
            None,
            NOW,
        )
        .unwrap();
        log.append_as_leader(batch_at(1, 1000, 10), 0, NOW).unwrap();
        let big = batch_at(3, 1000, 100_000);
        log.append_as_leader(big.clone(), 0, NOW).unwrap();
        log.append_as_leader(batch_at(1, 1000, 10), 0, NOW).unwrap();
        let r = log.read(2, 1, i64::MAX).unwrap();
        assert_eq!(r.records.len(), big.len());
        assert_eq!(&r.records[16..], &big[16..]);
        assert_eq!((r.first_offset, r.next_offset), (Some(1), 4));
        assert_eq!(bases(&log, 0, 100), vec![0]);
        assert_eq!(bases(&log, 0, 1 << 20), vec![0, 1, 4]);
    }

    #[test]
    fn a_sparse_index_is_scanned_across_several_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            index_interval_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(
            dir.path().join("t-0"),
            TopicPartition::new("t", 0),
            config.clone(),
            0,
            None,
            NOW,
        )
        .unwrap();
        for _ in 0..200 {
            log.append_as_leader(batch_at(2, 1000, 40), 0, NOW).unwrap();
        }
        // Written with no index entries; now read with a small scan window.
        log.set_config(LogConfig {
            index_interval_bytes: 10,
            ..config
        })
        .unwrap();
        assert_eq!(bases(&log, 399, 1), vec![398]);
        assert_eq!(bases(&log, 250, 1), vec![250]);
    }
}
