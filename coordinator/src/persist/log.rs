//! The transaction log writer: one thread, group commit.
//!
//! The processor hands it encoded records in zxid order, in batches (everything it logged
//! while working through the requests that were queued). The thread takes every batch that
//! has queued up, writes them with one `write`, calls `fdatasync` once, and only then
//! publishes the highest durable zxid. Replies wait for that number, so a write is never
//! acknowledged before it is on disk, and many clients share each fsync.
//!
//! Files are preallocated in chunks so that most `fdatasync` calls need no metadata update.
//! If a write or fsync fails, the log stops: the durable zxid never moves again and the
//! failure is published, so the server refuses further work instead of acknowledging
//! writes it may have lost.

use super::{file_name, PersistError, LOG_MAGIC};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::watch;

/// Preallocation step for log files.
const PREALLOC: u64 = 64 * 1024 * 1024;
/// Upper bound on bytes written per group commit, so one batch does not starve the next.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// What the log thread is asked to do.
#[derive(Debug)]
pub enum LogCmd {
    /// Append framed records for zxids `first..=last`, in order and back to back.
    Append {
        first: i64,
        last: i64,
        frames: Vec<u8>,
    },
    /// Start a new file; the next record's zxid names it. Sent right after a snapshot point.
    Roll,
}

/// How far the log is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    /// Every record up to this zxid is fsynced.
    pub zxid: i64,
    /// The log failed and accepts nothing more.
    pub failed: bool,
}

/// The owner's handle: dropping the sender stops the thread after it drains the queue.
#[derive(Debug)]
pub struct LogHandle {
    pub tx: mpsc::Sender<LogCmd>,
    pub durable: watch::Receiver<Durable>,
    pub thread: JoinHandle<()>,
}

struct LogFile {
    file: File,
    path: PathBuf,
    pos: u64,
    allocated: u64,
}

impl LogFile {
    fn create(dir: &Path, first_zxid: i64) -> Result<LogFile, PersistError> {
        let path = dir.join(file_name("log", first_zxid));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| PersistError::io(&path, e))?;
        file.write_all(LOG_MAGIC)
            .map_err(|e| PersistError::io(&path, e))?;
        file.set_len(PREALLOC)
            .map_err(|e| PersistError::io(&path, e))?;
        file.sync_all().map_err(|e| PersistError::io(&path, e))?;
        fjord_shared::fs::sync_dir(dir).map_err(|e| PersistError::io(dir, e))?;
        Ok(LogFile {
            file,
            path,
            pos: LOG_MAGIC.len() as u64,
            allocated: PREALLOC,
        })
    }

    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let end = self.pos + buf.len() as u64;
        if end > self.allocated {
            self.allocated = end.div_ceil(PREALLOC) * PREALLOC;
            self.file.set_len(self.allocated)?;
        }
        self.file.seek(SeekFrom::Start(self.pos))?;
        self.file.write_all(buf)?;
        self.pos = end;
        Ok(())
    }

    fn sync(&mut self, metadata: bool) -> std::io::Result<()> {
        if metadata {
            self.file.sync_all()
        } else {
            self.file.sync_data()
        }
    }
}

/// Starts the log thread. `next_zxid` names the first file; `durable_zxid` is what is
/// already on disk (from recovery).
pub fn start(dir: &Path, next_zxid: i64, durable_zxid: i64) -> Result<LogHandle, PersistError> {
    let current = LogFile::create(dir, next_zxid)?;
    let (tx, rx) = mpsc::channel();
    let (durable_tx, durable_rx) = watch::channel(Durable {
        zxid: durable_zxid,
        failed: false,
    });
    let dir = dir.to_owned();
    let thread = std::thread::Builder::new()
        .name("txn-log".into())
        .spawn(move || run(dir, current, rx, durable_tx))
        .map_err(|e| PersistError::io(Path::new("txn-log thread"), e))?;
    Ok(LogHandle {
        tx,
        durable: durable_rx,
        thread,
    })
}

fn run(
    dir: PathBuf,
    mut current: LogFile,
    rx: mpsc::Receiver<LogCmd>,
    durable: watch::Sender<Durable>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut pending_roll = false;
    let mut last_zxid = durable.borrow().zxid;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut grew = false;
        // Take everything queued (up to the batch cap) into one write.
        while let Some(cmd) = next.take() {
            match cmd {
                LogCmd::Append {
                    first,
                    last,
                    frames,
                } => {
                    if pending_roll {
                        // Flush what belongs to the old file before switching.
                        if let Err(e) = flush(&mut current, &mut buf, grew) {
                            fail(&durable, &current.path, e);
                            return;
                        }
                        if last_zxid > durable.borrow().zxid {
                            durable.send_modify(|d| d.zxid = last_zxid);
                        }
                        match LogFile::create(&dir, first) {
                            Ok(f) => current = f,
                            Err(e) => {
                                tracing::error!(error = %e, "cannot start a new transaction log file; the log is stopped");
                                durable.send_modify(|d| d.failed = true);
                                return;
                            }
                        }
                        pending_roll = false;
                        grew = false;
                    }
                    grew |= current.pos + (buf.len() + frames.len()) as u64 > current.allocated;
                    if buf.is_empty() {
                        // Usually the only batch: write it as it is instead of copying it.
                        buf = frames;
                    } else {
                        buf.extend_from_slice(&frames);
                    }
                    last_zxid = last;
                }
                LogCmd::Roll => pending_roll = true,
            }
            if buf.len() < MAX_BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = flush(&mut current, &mut buf, grew) {
            fail(&durable, &current.path, e);
            return;
        }
        if last_zxid > durable.borrow().zxid {
            durable.send_modify(|d| d.zxid = last_zxid);
        }
    }
}

fn flush(current: &mut LogFile, buf: &mut Vec<u8>, grew: bool) -> std::io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    current.append(buf)?;
    current.sync(grew)?;
    buf.clear();
    Ok(())
}

fn fail(durable: &watch::Sender<Durable>, path: &Path, e: std::io::Error) {
    tracing::error!(path = %path.display(), error = %e, "transaction log write or fsync failed; the log is stopped and no further writes will be acknowledged");
    durable.send_modify(|d| d.failed = true);
}
