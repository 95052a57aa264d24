//! Durable file helpers.
//!
//! A file is only durable once its directory entry is: after creating or renaming a file we
//! fsync the directory too. Records on disk are framed as
//! `[u32 length BE][u32 crc32c BE][payload]`, so a torn or corrupt tail is detected on read.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
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

/// Bytes a [`FrameFile`] reads at a time (more when one frame is larger).
const WINDOW: usize = 1 << 20;

/// The frames of one file, read through a window of it rather than whole: a preallocated
/// log file is mostly zeros, and reading it into one buffer costs its full size in memory
/// (an allocator may keep that memory after the buffer is freed). [`FrameFile::frame_at`]
/// answers exactly what [`read_frame`] answers over the whole file's bytes.
#[derive(Debug)]
pub struct FrameFile {
    file: File,
    len: usize,
    /// The file's bytes from `start` on.
    window: Vec<u8>,
    start: usize,
}

impl FrameFile {
    pub fn open(path: &Path) -> io::Result<FrameFile> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        Ok(FrameFile {
            file,
            len,
            window: Vec::new(),
            start: 0,
        })
    }

    /// The file's length when it was opened.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Up to `n` bytes at `pos` (fewer at the end of the file).
    pub fn bytes_at(&mut self, pos: usize, n: usize) -> io::Result<&[u8]> {
        self.cover(pos, n)?;
        let from = pos - self.start;
        let to = (from + n).min(self.window.len());
        Ok(&self.window[from.min(to)..to])
    }

    /// The frame at `pos`; an `Ok` frame's `next` is an offset in the file.
    pub fn frame_at(&mut self, pos: usize, max_len: usize) -> io::Result<Frame<'_>> {
        self.cover(pos, FRAME_HEADER)?;
        // The header says how much more the frame needs.
        let rel = pos - self.start;
        if let Some(h) = self.window.get(rel..rel + FRAME_HEADER) {
            let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
            if len <= max_len {
                self.cover(pos, FRAME_HEADER + len)?;
            }
        }
        let start = self.start;
        Ok(match read_frame(&self.window, pos - start, max_len) {
            Frame::Ok { payload, next } => Frame::Ok {
                payload,
                next: next + start,
            },
            other => other,
        })
    }

    /// Makes the window hold the file's bytes from `pos` to `pos + need`, or to the end of
    /// the file if that comes first.
    fn cover(&mut self, pos: usize, need: usize) -> io::Result<()> {
        let end = pos.saturating_add(need).min(self.len);
        if pos >= self.start && end <= self.start + self.window.len() {
            return Ok(());
        }
        let take = need.max(WINDOW).min(self.len.saturating_sub(pos));
        self.window.clear();
        self.window.resize(take, 0);
        self.file.read_exact_at(&mut self.window, pos as u64)?;
        self.start = pos;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame of `bytes` through a FrameFile, against read_frame over the whole.
    fn same_answers(bytes: &[u8], max_len: usize) {
        let dir = tempfile_dir();
        let path = dir.join("frames");
        std::fs::write(&path, bytes).unwrap();
        let mut ff = FrameFile::open(&path).unwrap();
        assert_eq!(ff.len(), bytes.len());
        let mut pos = 0;
        loop {
            let whole = read_frame(bytes, pos, max_len);
            let windowed = ff.frame_at(pos, max_len).unwrap();
            assert_eq!(windowed, whole, "at {pos}");
            match whole {
                Frame::Ok { next, .. } => pos = next,
                _ => break,
            }
        }
        // Past the end, and from a position before the window.
        assert_eq!(ff.frame_at(bytes.len() + 10, max_len).unwrap(), Frame::End);
        assert_eq!(
            ff.frame_at(0, max_len).unwrap(),
            read_frame(bytes, 0, max_len)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fjord-frames-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_frame_file_reads_what_read_frame_reads_across_windows() {
        // Frames of every size up to beyond the window, so that some cross its edge and
        // one is larger than it; then zero padding, as in a preallocated file.
        let mut bytes = Vec::new();
        for i in 0..300usize {
            let len = (i * 7919) % 20_000;
            frame(&vec![(i % 251) as u8; len], &mut bytes);
        }
        frame(&vec![3u8; WINDOW + 12_345], &mut bytes);
        frame(b"last", &mut bytes);
        let written = bytes.len();
        bytes.extend_from_slice(&vec![0u8; 3 * WINDOW / 2]);
        same_answers(&bytes, 4 * WINDOW);
        // Torn inside a payload and inside a header, at the end of the file.
        same_answers(&bytes[..written - 2], 4 * WINDOW);
        same_answers(&bytes[..written - 4 - FRAME_HEADER + 3], 4 * WINDOW);
        // A corrupt frame in the middle, and a length over the bound.
        let mut bad = bytes.clone();
        bad[WINDOW + 100] ^= 1;
        same_answers(&bad, 4 * WINDOW);
        same_answers(&bytes, 10_000);
        // An empty file.
        same_answers(&[], 100);
    }

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
