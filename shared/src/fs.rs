//! Durable file helpers.
//!
//! A file is only durable once its directory entry is: after creating or renaming a file we
//! fsync the directory too. Records on disk are framed as
//! `[u32 length BE][u32 crc32c BE][payload]`, so a torn or corrupt tail is detected on read.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Bytes in a frame header: length then checksum.
pub const FRAME_HEADER: usize = 8;

/// Fsyncs a directory so that entries created or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, path)?;
    sync_dir(dir)
}

/// Writes `bytes` to `path` through a temp file and a rename, without fsyncs: readers never
/// see a half-written file, but after a machine crash the file may be missing or empty.
/// For files whose loss is recovered from (see the callers).
pub fn write_replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    std::fs::write(tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// Appends one checksummed frame holding `payload` to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
}

/// What reading one frame found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole frame with a matching checksum; `next` is the offset just after it.
    Ok { payload: &'a [u8], next: usize },
    /// A zero length: the end of written data in a preallocated file.
    End,
    /// Too few bytes for the header or the payload: a torn write.
    Torn,
    /// The checksum does not match, or the length is impossible.
    Corrupt,
}

/// Reads the frame at `pos` in `buf`. `max_len` bounds the payload length.
pub fn read_frame(buf: &[u8], pos: usize, max_len: usize) -> Frame<'_> {
    let Some(header) = buf.get(pos..pos + FRAME_HEADER) else {
        return if pos >= buf.len() || buf[pos..].iter().all(|b| *b == 0) {
            Frame::End
        } else {
            Frame::Torn
        };
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 && crc == 0 {
        return Frame::End;
    }
    if len > max_len {
        return Frame::Corrupt;
    }
    let start = pos + FRAME_HEADER;
    let Some(payload) = buf.get(start..start + len) else {
        return Frame::Torn;
    };
    if crc32c::crc32c(payload) != crc {
        return Frame::Corrupt;
    }
    Frame::Ok {
        payload,
        next: start + len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let mut buf = Vec::new();
        frame(b"hello", &mut buf);
        frame(b"world!", &mut buf);
        let Frame::Ok { payload, next } = read_frame(&buf, 0, 1024) else {
            panic!("first")
        };
        assert_eq!(payload, b"hello");
        let Frame::Ok { payload, next: end } = read_frame(&buf, next, 1024) else {
            panic!("second")
        };
        assert_eq!(payload, b"world!");
        assert_eq!(read_frame(&buf, end, 1024), Frame::End);
        // Torn: cut inside the second payload.
        assert_eq!(read_frame(&buf[..end - 2], next, 1024), Frame::Torn);
        // Torn: cut inside the header.
        assert_eq!(read_frame(&buf[..next + 5], next, 1024), Frame::Torn);
        // Corrupt: flip a payload bit.
        let mut bad = buf.clone();
        bad[next + FRAME_HEADER] ^= 1;
        assert_eq!(read_frame(&bad, next, 1024), Frame::Corrupt);
        // Corrupt: impossible length.
        assert_eq!(read_frame(&buf, 0, 2), Frame::Corrupt);
        // Zero padding reads as the end.
        let mut padded = buf.clone();
        padded.extend_from_slice(&[0; 32]);
        assert_eq!(read_frame(&padded, end, 1024), Frame::End);
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = std::env::temp_dir().join(format!("fjord-fs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
