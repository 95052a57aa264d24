//! The durable Raft log: one append-only stream of records, group-committed by one thread.
//!
//! Everything openraft asks to persist is a record in the same stream: entries, a
//! truncation point, the purge point, the vote and the committed log id. One stream keeps
//! every write in the order it was asked for (openraft requires vote and log writes to be
//! serialized), and a record is durable only if every record before it is.
//!
//! On disk: `raftlog.<sequence, 16 hex digits>` files in the data directory, each starting
//! with the magic `FJRAFT01` and then frames `[u32 length][u32 crc32c][msgpack Record]`.
//! Files are preallocated (a zero length marks the end of what was written). A new file
//! starts with the current vote, purge point and committed id, so older files can be
//! deleted once every entry they hold is purged.
//!
//! Entries are also kept in memory from the purge point on, for replication and apply;
//! snapshots bound how many that is.
//!
//! The I/O thread takes everything queued, writes it with one `write`, calls `fdatasync`
//! once, and only then reports the entries flushed; so many proposals share each fsync.
//! Where the file system allows it, the file is written with `O_DIRECT | O_DSYNC` instead
//! (see [`Direct`]): one `pwrite` that is durable when it returns, without the page cache's
//! write-back, which on small machines is most of an fsync's CPU and a fifth of its time.
//! Records that nobody waits for (the committed id, a truncation) are written without an
//! fsync of their own; the next one covers them.
//! If a write or fsync fails the thread stops and reports the failure, and openraft stops
//! this member: it never acknowledges a write it may have lost.

use super::{storage_error, Entry, LogId, StorageError, TypeConfig, Vote};
use crate::persist::PersistError;
use fjord_shared::fs::{read_frame, sync_dir, Frame, FrameFile, FRAME_HEADER};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use tokio::sync::{oneshot, watch};

pub const MAGIC: &[u8; 8] = b"FJRAFT01";
/// Preallocation step, and the size after which a new file is started.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest record accepted when reading.
const MAX_RECORD: usize = 256 * 1024 * 1024;
/// Upper bound on bytes written per group commit.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Alignment of direct writes (offset, length and memory).
const BLOCK: usize = 4096;
/// Direct writes keep this much of the file zeroed ahead of the end of the log: writing
/// into blocks that exist needs no allocation, so a write's sync carries no metadata.
const ZERO_AHEAD: u64 = 1024 * 1024;

/// One record of the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Record {
    Entry(Entry),
    /// Entries from this index on are gone.
    Truncate(u64),
    /// Entries up to this log id are gone (covered by a snapshot).
    Purge(LogId),
    Vote(Vote),
    Committed(Option<LogId>),
}

/// Entries kept in memory: the newest this many. Older ones are read back from their file
/// when a lagging follower needs them.
const KEEP_IN_MEMORY: usize = 1024;

/// Where an entry's frame is on disk.
#[derive(Debug, Clone, Copy)]
struct Loc {
    seq: u64,
    offset: u64,
    len: u32,
    log_id: LogId,
}

/// What the in-memory side knows.
#[derive(Debug, Default)]
struct Mem {
    /// The newest entries (all of them until they are written).
    entries: BTreeMap<u64, Entry>,
    /// Where every written entry is; those not in `entries` are only on disk, and always
    /// older than every entry in `entries`.
    locs: BTreeMap<u64, Loc>,
    purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

impl Mem {
    fn apply(&mut self, rec: Record) {
        match rec {
            Record::Entry(e) => {
                let index = e.log_id.index;
                // An entry replaces whatever was at its index and after it.
                let _ = self.entries.split_off(&index);
                let _ = self.locs.split_off(&index);
                self.entries.insert(index, e);
            }
            Record::Truncate(index) => {
                let _ = self.entries.split_off(&index);
                let _ = self.locs.split_off(&index);
            }
            Record::Purge(id) => {
                self.entries = self.entries.split_off(&(id.index + 1));
                self.locs = self.locs.split_off(&(id.index + 1));
                if self.purged.is_none_or(|p| p.index < id.index) {
                    self.purged = Some(id);
                }
            }
            Record::Vote(v) => self.vote = Some(v),
            Record::Committed(c) => self.committed = c,
        }
    }

    /// Records where entries were written (unless they were replaced meanwhile), then
    /// drops the oldest written entries from memory beyond [`KEEP_IN_MEMORY`].
    fn written(&mut self, locs: impl IntoIterator<Item = Loc>) {
        for loc in locs {
            let index = loc.log_id.index;
            if self.entries.get(&index).map(|e| e.log_id) == Some(loc.log_id) {
                self.locs.insert(index, loc);
            }
        }
        while self.entries.len() > KEEP_IN_MEMORY {
            let Some((&index, e)) = self.entries.first_key_value() else {
                break;
            };
            if self.locs.get(&index).map(|l| l.log_id) != Some(e.log_id) {
                break;
            }
            self.entries.pop_first();
        }
    }

    fn last(&self) -> Option<LogId> {
        self.entries.values().next_back().map(|e| e.log_id).or(self
            .locs
            .values()
            .next_back()
            .map(|l| l.log_id))
    }
}

/// When a batch is on disk, who to tell.
enum Done {
    Flushed(LogFlushed<TypeConfig>),
    Synced(oneshot::Sender<std::io::Result<()>>),
    /// The leader's own entries, already reported flushed (see [`super::durable`]): fsync
    /// them and advance the durable index; nobody else to tell.
    Leader,
    /// Called on the I/O thread with the outcome (a standalone member, see `super::solo`).
    Then(Box<dyn FnOnce(std::io::Result<()>) + Send>),
}

/// How far this member's log is on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durable {
    /// Every entry at or below this index is fsynced.
    pub index: u64,
    /// A write or fsync failed: nothing more becomes durable.
    pub failed: bool,
}

enum IoCmd {
    Write {
        recs: Vec<Record>,
        done: Option<Done>,
    },
    /// Delete files whose entries are all at or below this index.
    DropFiles(u64),
}

/// The log store openraft writes through. Cheap to clone: readers share the memory side.
#[derive(Clone)]
pub struct LogStore {
    /// This member's id: it tells the leader's own appends apart.
    me: u64,
    dir: Arc<Path>,
    mem: Arc<Mutex<Mem>>,
    io: mpsc::Sender<IoCmd>,
    durable: watch::Receiver<Durable>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

/// One file of the stream.
struct Segment {
    seq: u64,
    path: PathBuf,
    /// Highest entry index written to it.
    max_index: Option<u64>,
}

struct Writer {
    dir: PathBuf,
    file: File,
    pos: u64,
    allocated: u64,
    segments: Vec<Segment>,
    /// What a new file starts with.
    vote: Option<Vote>,
    purged: Option<LogId>,
    committed: Option<LogId>,
    /// Index of the last entry written to the stream (lowered by a truncation).
    written: u64,
    durable: watch::Sender<Durable>,
    mem: Arc<Mutex<Mem>>,
    /// Entries in the batch being written: their offset in it, length and id.
    placed: Vec<(u64, u32, LogId)>,
    /// Set while the current file is written directly.
    direct: Option<Direct>,
    /// Whether to try direct writes for new files (false once the file system refused).
    try_direct: bool,
}

/// Writing a file opened with `O_DIRECT | O_DSYNC`: every write covers whole aligned
/// blocks from aligned memory, so the last, partly filled block is kept here and written
/// again with what follows it (the bytes already on disk are rewritten unchanged).
struct Direct {
    /// The bytes of the current partial block, from its start to the end of the log.
    tail: Vec<u8>,
    /// Over-allocated scratch space; writes use its aligned part.
    scratch: Vec<u8>,
    /// The file holds written (zeroed) blocks up to here.
    zeroed: u64,
}

impl Direct {
    /// `len` bytes of the scratch space, starting at an aligned address.
    fn aligned(&mut self, len: usize) -> &mut [u8] {
        if self.scratch.len() < len + BLOCK {
            self.scratch = vec![0; len + BLOCK];
        }
        let off = self.scratch.as_ptr().align_offset(BLOCK);
        &mut self.scratch[off..off + len]
    }
}

/// Opens a log file for direct, synchronous writes; `None` where the file system does not
/// support them (tmpfs, some network file systems).
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(path)
        .ok()
}

fn segment_name(seq: u64) -> String {
    format!("raftlog.{seq:016x}")
}

/// Whether `dir` holds a Raft log.
pub fn exists(dir: &Path) -> Result<bool, PersistError> {
    Ok(!crate::persist::list(dir, "raftlog")?.is_empty())
}

impl LogStore {
    /// Reads the log in `dir` (cutting a torn tail off the newest file) and starts the I/O
    /// thread.
    pub fn open(dir: &Path, me: u64) -> Result<LogStore, PersistError> {
        Self::open_with(dir, me, true)
    }

    /// [`LogStore::open`], with or without trying direct writes.
    fn open_with(dir: &Path, me: u64, direct: bool) -> Result<LogStore, PersistError> {
        let files = crate::persist::list(dir, "raftlog")?;
        let mut mem = Mem::default();
        let mut segments = Vec::new();
        let n = files.len();
        for (i, (seq, path)) in files.into_iter().enumerate() {
            let last = i + 1 == n;
            // Through a window: a file is preallocated (mostly zeros) and reading it whole
            // would cost its full size in memory.
            let io = |e| PersistError::io(&path, e);
            let mut file = FrameFile::open(&path).map_err(io)?;
            let file_len = file.len();
            if file.bytes_at(0, MAGIC.len()).map_err(io)? != MAGIC {
                if last {
                    tracing::warn!(path = %path.display(), "Raft log file has no header (torn at creation); removing it");
                    std::fs::remove_file(&path).map_err(|e| PersistError::io(&path, e))?;
                    continue;
                }
                return Err(PersistError::Corrupt { path, offset: 0 });
            }
            let mut pos = MAGIC.len();
            let mut max_index = None;
            loop {
                match file.frame_at(pos, MAX_RECORD).map_err(io)? {
                    Frame::Ok { payload, next } => {
                        let rec: Record = rmp_serde::from_slice(payload).map_err(|e| {
                            PersistError::Undecodable {
                                path: path.clone(),
                                offset: pos,
                                reason: e.to_string(),
                            }
                        })?;
                        let loc = match &rec {
                            Record::Entry(e) => {
                                max_index = Some(e.log_id.index);
                                Some(Loc {
                                    seq: seq as u64,
                                    offset: pos as u64,
                                    len: (next - pos) as u32,
                                    log_id: e.log_id,
                                })
                            }
                            _ => None,
                        };
                        mem.apply(rec);
                        mem.written(loc);
                        pos = next;
                    }
                    Frame::End => break,
                    Frame::Torn | Frame::Corrupt if last => {
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(|e| PersistError::io(&path, e))?;
                        // Zero the tail rather than shrinking: the file stays preallocated
                        // and the next record goes where the torn one was.
                        f.set_len(pos as u64)
                            .and_then(|_| f.set_len(file_len.max(pos) as u64))
                            .and_then(|_| f.sync_all())
                            .map_err(|e| PersistError::io(&path, e))?;
                        tracing::warn!(path = %path.display(), offset = pos, bytes = file_len - pos, "cut a torn or corrupt tail off the Raft log");
                        break;
                    }
                    Frame::Torn | Frame::Corrupt => {
                        return Err(PersistError::Corrupt { path, offset: pos })
                    }
                }
            }
            segments.push(Segment {
                seq: seq as u64,
                path,
                max_index,
            });
        }
        let next_seq = segments.last().map(|s| s.seq + 1).unwrap_or(1);
        let written = mem.last().or(mem.purged).map(|l| l.index).unwrap_or(0);
        let m = &mem;
        let (vote, purged, committed) = (m.vote, m.purged, m.committed);
        let mem = Arc::new(Mutex::new(mem));
        let (durable_tx, durable_rx) = watch::channel(Durable {
            index: written,
            failed: false,
        });
        let mut writer = Writer {
            dir: dir.to_owned(),
            file: File::open(dir).map_err(|e| PersistError::io(dir, e))?,
            pos: 0,
            allocated: 0,
            segments,
            vote,
            purged,
            committed,
            written,
            durable: durable_tx,
            mem: mem.clone(),
            placed: Vec::new(),
            direct: None,
            try_direct: direct,
        };
        // Always start a fresh file: the tail of the old one may have been cut.
        writer
            .start_segment(next_seq)
            .map_err(|e| PersistError::io(dir, e))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("raft-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| PersistError::io(Path::new("raft-log thread"), e))?;
        Ok(LogStore {
            me,
            dir: dir.into(),
            mem,
            io: tx,
            durable: durable_rx,
        })
    }

    /// How far the log is on disk, as the I/O thread reports it.
    pub fn durable(&self) -> watch::Receiver<Durable> {
        self.durable.clone()
    }

    /// The id of the entry at `index`, if this member still has it (or it is the purge point).
    pub fn log_id_at(&self, index: u64) -> Option<LogId> {
        let mem = self.mem();
        match mem.entries.get(&index) {
            Some(e) => Some(e.log_id),
            None => mem
                .locs
                .get(&index)
                .map(|l| l.log_id)
                .or(mem.purged.filter(|p| p.index == index)),
        }
    }

    /// The stored vote, the last entry's id and the purge point.
    pub fn state(&self) -> (Option<Vote>, Option<LogId>, Option<LogId>) {
        let mem = self.mem();
        (mem.vote, mem.last().or(mem.purged), mem.purged)
    }

    /// Appends entries without openraft: `then` runs on the I/O thread once they are on
    /// disk (or with the error that stopped the log). For a member that is the only voter
    /// (`super::solo`).
    pub fn append_then(
        &self,
        entries: Vec<Entry>,
        then: Box<dyn FnOnce(std::io::Result<()>) + Send>,
    ) -> Result<(), StorageError> {
        let recs = {
            let mut mem = self.mem();
            entries
                .into_iter()
                .map(|e| {
                    mem.apply(Record::Entry(e.clone()));
                    Record::Entry(e)
                })
                .collect()
        };
        self.send(recs, Some(Done::Then(then)))
    }

    /// Records the committed log id; the I/O thread writes it with its next batch.
    pub fn set_committed(&self, committed: Option<LogId>) {
        self.mem().committed = committed;
    }

    fn mem(&self) -> MutexGuard<'_, Mem> {
        // A panic while holding the lock cannot leave `Mem` half-changed in a way that
        // matters more than losing the member, so a poisoned lock is still used.
        self.mem.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, recs: Vec<Record>, done: Option<Done>) -> Result<(), StorageError> {
        self.io
            .send(IoCmd::Write { recs, done })
            .map_err(|_| storage_error(StorageIOError::write_logs, "the Raft log thread stopped"))
    }

    /// Sends records and waits until they are on disk.
    async fn write_synced(
        &self,
        recs: Vec<Record>,
        make: fn(openraft::AnyError) -> StorageIOError<u64>,
    ) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.send(recs, Some(Done::Synced(tx)))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(storage_error(make, e)),
            Err(_) => Err(storage_error(make, "the Raft log thread stopped")),
        }
    }
}

impl Writer {
    fn start_segment(&mut self, seq: u64) -> std::io::Result<()> {
        let path = self.dir.join(segment_name(seq));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.write_all(MAGIC)?;
        file.set_len(SEGMENT_BYTES)?;
        self.file = file;
        self.direct = None;
        self.pos = MAGIC.len() as u64;
        self.allocated = SEGMENT_BYTES;
        self.segments.push(Segment {
            seq,
            path,
            max_index: None,
        });
        let mut head = Vec::new();
        if let Some(v) = self.vote {
            encode(&Record::Vote(v), &mut head);
        }
        if let Some(p) = self.purged {
            encode(&Record::Purge(p), &mut head);
        }
        encode(&Record::Committed(self.committed), &mut head);
        self.file.write_all_at(&head, self.pos)?;
        self.pos += head.len() as u64;
        self.file.sync_all()?;
        sync_dir(&self.dir)?;
        if self.try_direct {
            match open_direct(&self.dir.join(segment_name(seq))) {
                Some(f) => {
                    // The header is on disk; the block it ends in is the first tail.
                    let start = self.pos - self.pos % BLOCK as u64;
                    let mut tail = MAGIC.to_vec();
                    tail.extend_from_slice(&head);
                    let tail = tail.split_off(start as usize);
                    self.file = f;
                    self.direct = Some(Direct {
                        tail,
                        scratch: Vec::new(),
                        zeroed: self.pos.next_multiple_of(BLOCK as u64),
                    });
                }
                None => {
                    tracing::info!(dir = %self.dir.display(), "the file system does not take direct writes; the Raft log uses fdatasync");
                    self.try_direct = false;
                }
            }
        }
        Ok(())
    }

    /// Writes `buf` at the end of the log through [`Direct`]; durable when it returns.
    fn write_direct(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let Some(d) = self.direct.as_mut() else {
            return Err(std::io::Error::other("not writing directly"));
        };
        let end = self.pos + buf.len() as u64;
        // Zero the blocks this write and the next ones will use first.
        let want = (end + ZERO_AHEAD).min(self.allocated);
        while d.zeroed < want {
            let n = (want - d.zeroed)
                .next_multiple_of(ZERO_AHEAD)
                .min(self.allocated - d.zeroed);
            let at = d.zeroed;
            let zeros = d.aligned(n as usize);
            zeros.fill(0);
            self.file.write_all_at(zeros, at)?;
            d.zeroed += n;
        }
        let start = self.pos - d.tail.len() as u64;
        let len = d.tail.len() + buf.len();
        let tail = std::mem::take(&mut d.tail);
        let region = d.aligned(len.next_multiple_of(BLOCK));
        region[..tail.len()].copy_from_slice(&tail);
        region[tail.len()..len].copy_from_slice(buf);
        region[len..].fill(0);
        self.file.write_all_at(region, start)?;
        let last_block = (end - end % BLOCK as u64 - start) as usize;
        let mut tail = tail;
        tail.clear();
        tail.extend_from_slice(&region[last_block..len]);
        d.tail = tail;
        self.pos = end;
        Ok(())
    }

    fn run(mut self, rx: mpsc::Receiver<IoCmd>) {
        let mut buf = Vec::new();
        let mut dones: Vec<Done> = Vec::new();
        let mut drops: Vec<u64> = Vec::new();
        while let Ok(first) = rx.recv() {
            // Read before this batch is taken from the queue: every entry it covers was
            // queued before it was set, so it is in this batch or an earlier one (or, if
            // the batch stops at its size limit, a later one: then it waits).
            let committed = self.mem.lock().unwrap_or_else(|e| e.into_inner()).committed;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    IoCmd::Write { recs, done } => {
                        for r in &recs {
                            self.note(r);
                            let start = buf.len();
                            encode(r, &mut buf);
                            match r {
                                Record::Entry(e) if buf.len() > start => {
                                    let len = (buf.len() - start) as u32;
                                    crate::metrics::stats::STATS.proposed(len as u64);
                                    self.placed.push((start as u64, len, e.log_id));
                                }
                                _ => {}
                            }
                        }
                        dones.extend(done);
                    }
                    IoCmd::DropFiles(upto) => drops.push(upto),
                }
                if buf.len() < MAX_BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            if committed != self.committed && committed.is_some_and(|c| c.index <= self.written) {
                let r = Record::Committed(committed);
                self.note(&r);
                encode(&r, &mut buf);
            }
            // Records nobody waits for (the committed id, a truncation) are written but not
            // fsynced on their own: the next fsync covers them, since the stream is ordered.
            // Files are only deleted once the purge record saying so is on disk.
            let sync = !dones.is_empty() || !drops.is_empty();
            // The whole batch goes to the current file (a new one is started after it).
            let (seq, base) = (self.segments.last().map_or(0, |s| s.seq), self.pos);
            let entries = self.placed.len() as u64;
            let started = std::time::Instant::now();
            let result = self.flush(&buf, sync);
            if sync && !buf.is_empty() {
                let stats = &crate::metrics::stats::STATS;
                stats.fsynctime.observe(started.elapsed());
                stats.sync_processor_batch_size.observe_ticks(entries);
                stats
                    .sync_processor_request_queued
                    .fetch_add(entries, std::sync::atomic::Ordering::Relaxed);
            }
            if result.is_ok() {
                let placed = self.placed.drain(..).map(|(offset, len, log_id)| Loc {
                    seq,
                    offset: base + offset,
                    len,
                    log_id,
                });
                self.mem
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .written(placed);
            }
            self.placed.clear();
            buf.clear();
            let failed = result.as_ref().err().map(|e| e.to_string());
            let written = self.written;
            self.durable.send_if_modified(|d| {
                let index = match (&failed, sync) {
                    (None, true) => written,
                    _ => d.index.min(written),
                };
                let next = Durable {
                    index,
                    failed: d.failed || failed.is_some(),
                };
                std::mem::replace(d, next) != next
            });
            for d in dones.drain(..) {
                let r = match &failed {
                    None => Ok(()),
                    Some(msg) => Err(std::io::Error::other(msg.clone())),
                };
                match d {
                    Done::Flushed(cb) => cb.log_io_completed(r),
                    Done::Synced(tx) => {
                        let _ = tx.send(r);
                    }
                    Done::Leader => {}
                    Done::Then(f) => f(r),
                }
            }
            if let Some(msg) = failed {
                tracing::error!(error = %msg, "Raft log write or fsync failed; this member stops and acknowledges nothing more");
                // Fail everything still queued too, then stop.
                while let Ok(cmd) = rx.recv() {
                    if let IoCmd::Write { done: Some(d), .. } = cmd {
                        let e = std::io::Error::other("the Raft log failed earlier");
                        match d {
                            Done::Flushed(cb) => cb.log_io_completed(Err(e)),
                            Done::Synced(tx) => {
                                let _ = tx.send(Err(e));
                            }
                            Done::Leader => {}
                            Done::Then(f) => f(Err(e)),
                        }
                    }
                }
                return;
            }
            for upto in drops.drain(..) {
                self.drop_files(upto);
            }
        }
    }

    /// Tracks what a new file must start with, and which file holds which entries.
    fn note(&mut self, r: &Record) {
        match r {
            Record::Entry(e) => {
                if let Some(s) = self.segments.last_mut() {
                    s.max_index = Some(e.log_id.index);
                }
                self.written = e.log_id.index;
            }
            Record::Vote(v) => self.vote = Some(*v),
            Record::Purge(p) => self.purged = Some(*p),
            Record::Committed(c) => self.committed = *c,
            Record::Truncate(from) => self.written = self.written.min(from.saturating_sub(1)),
        }
    }

    fn flush(&mut self, buf: &[u8], sync: bool) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = self.pos + buf.len() as u64;
        let grew = end > self.allocated;
        if grew {
            self.allocated = end.div_ceil(SEGMENT_BYTES) * SEGMENT_BYTES;
            self.file.set_len(self.allocated)?;
        }
        if self.direct.is_some() {
            // Synchronous: nothing more to do unless the file's size changed.
            self.write_direct(buf)?;
        } else {
            self.file.write_all_at(buf, self.pos)?;
            self.pos = end;
        }
        if grew {
            self.file.sync_all()?;
        } else if sync && self.direct.is_none() {
            self.file.sync_data()?;
        }
        if self.pos >= SEGMENT_BYTES {
            let seq = self.segments.last().map(|s| s.seq + 1).unwrap_or(1);
            self.start_segment(seq)?;
        }
        Ok(())
    }

    /// Deletes every file but the current one whose entries are all at or below `upto`.
    /// The purge record that makes them unneeded is already on disk.
    fn drop_files(&mut self, upto: u64) {
        let current = self.segments.len().saturating_sub(1);
        let mut keep = Vec::new();
        for (i, s) in std::mem::take(&mut self.segments).into_iter().enumerate() {
            if i < current && s.max_index.is_none_or(|m| m <= upto) {
                if let Err(e) = std::fs::remove_file(&s.path) {
                    tracing::warn!(path = %s.path.display(), error = %e, "cannot remove a purged Raft log file");
                    keep.push(s);
                }
            } else {
                keep.push(s);
            }
        }
        self.segments = keep;
    }
}

/// Reads back an entry that is no longer kept in memory.
fn read_entry(dir: &Path, loc: Loc) -> Result<Entry, StorageError> {
    let path = dir.join(segment_name(loc.seq));
    let err = |e: String| {
        StorageError::from(StorageIOError::read_log_at_index(
            loc.log_id.index,
            openraft::AnyError::error(format!("{}: {e}", path.display())),
        ))
    };
    let file = File::open(&path).map_err(|e| err(e.to_string()))?;
    let mut bytes = vec![0u8; loc.len as usize];
    file.read_exact_at(&mut bytes, loc.offset)
        .map_err(|e| err(e.to_string()))?;
    let Frame::Ok { payload, .. } = read_frame(&bytes, 0, MAX_RECORD) else {
        return Err(err(format!("no whole entry at offset {}", loc.offset)));
    };
    match rmp_serde::from_slice::<Record>(payload) {
        Ok(Record::Entry(e)) if e.log_id == loc.log_id => Ok(e),
        Ok(_) => Err(err(format!("another record at offset {}", loc.offset))),
        Err(e) => Err(err(e.to_string())),
    }
}

fn encode(r: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    if let Err(e) = rmp_serde::encode::write(out, r) {
        // Our records always encode; if one did not, its entry would never be reported
        // flushed and openraft would wait for it, which is the safe failure.
        tracing::error!(error = %e, "cannot encode a Raft log record");
        out.truncate(start);
        return;
    }
    let payload = &out[start + FRAME_HEADER..];
    let len = payload.len() as u32;
    let crc = crc32c::crc32c(payload);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_be_bytes());
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (cold, hot): (Vec<Loc>, Vec<Entry>) = {
            let mem = self.mem();
            let first_hot = mem.entries.keys().next().copied().unwrap_or(u64::MAX);
            let cold = mem
                .locs
                .range(range.clone())
                .filter(|(i, _)| **i < first_hot)
                .map(|(_, l)| *l)
                .collect();
            (
                cold,
                mem.entries.range(range).map(|(_, e)| e.clone()).collect(),
            )
        };
        let mut out = Vec::with_capacity(cold.len() + hot.len());
        for loc in cold {
            out.push(read_entry(&self.dir, loc)?);
        }
        out.extend(hot);
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let mem = self.mem();
        let last = mem.last();
        Ok(LogState {
            last_purged_log_id: mem.purged,
            last_log_id: last.or(mem.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.mem().vote = Some(*vote);
        self.write_synced(vec![Record::Vote(*vote)], StorageIOError::write_vote)
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.mem().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not waited for, nor even written at once: it only lets a restarted member apply
        // what it already knows was committed without waiting for the leader. The I/O
        // thread adds it to the next batch it writes (see `Writer::run`).
        self.set_committed(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.mem().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let (recs, leading) = {
            let mut mem = self.mem();
            let entries: Vec<Entry> = entries.into_iter().collect();
            // The leader's own new entries: the current vote is this member's, committed,
            // and they carry its term.
            let leading = mem.vote.is_some_and(|v| {
                v.is_committed()
                    && v.leader_id().voted_for() == Some(self.me)
                    && entries
                        .iter()
                        .all(|e| e.log_id.leader_id.term == v.leader_id().get_term())
            });
            let recs = entries
                .into_iter()
                .map(|e| {
                    mem.apply(Record::Entry(e.clone()));
                    Record::Entry(e)
                })
                .collect::<Vec<_>>();
            (recs, leading)
        };
        if leading {
            // Reported flushed now, so that openraft replicates them while they are being
            // fsynced here; nothing they carry is applied or acknowledged until they are on
            // disk (see `super::durable`).
            self.send(recs, Some(Done::Leader))?;
            callback.log_io_completed(Ok(()));
            Ok(())
        } else {
            self.send(recs, Some(Done::Flushed(callback)))
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::info!(from = log_id.index, "truncating the Raft log");
        self.mem().apply(Record::Truncate(log_id.index));
        self.send(vec![Record::Truncate(log_id.index)], None)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.mem().apply(Record::Purge(log_id));
        self.send(vec![Record::Purge(log_id)], None)?;
        self.io
            .send(IoCmd::DropFiles(log_id.index))
            .map_err(|_| storage_error(StorageIOError::write_logs, "the Raft log thread stopped"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::{Batch, Op, Proposal};
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Batch(vec![Proposal {
                origin: None,
                session: 7,
                time: 1,
                op: Op::DeleteContainer {
                    path: format!("/c{index}"),
                },
            }])),
        }
    }

    async fn flushed(store: &mut LogStore, entries: Vec<Entry>) {
        let (tx, rx) = oneshot::channel();
        store
            .send(
                entries.into_iter().map(Record::Entry).collect(),
                Some(Done::Synced(tx)),
            )
            .unwrap();
        rx.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn old_entries_are_read_back_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let n = KEEP_IN_MEMORY as u64 + 100;
        let all: Vec<Entry> = (1..=n).map(|i| entry(1, i)).collect();
        let ids = |es: &[Entry]| es.iter().map(|e| e.log_id).collect::<Vec<_>>();
        {
            let mut s = LogStore::open(dir.path(), 1).unwrap();
            for chunk in all.chunks(50) {
                {
                    let mut mem = s.mem();
                    for e in chunk {
                        mem.apply(Record::Entry(e.clone()));
                    }
                }
                flushed(&mut s, chunk.to_vec()).await;
            }
            assert_eq!(s.mem().entries.len(), KEEP_IN_MEMORY);
            let got = s.try_get_log_entries(1..=n).await.unwrap();
            assert_eq!(ids(&got), ids(&all));
            let got = s.try_get_log_entries(3..7).await.unwrap();
            assert_eq!(ids(&got), ids(&all[2..6]));
            assert_eq!(s.log_id_at(5), Some(all[4].log_id));
            let state = s.get_log_state().await.unwrap();
            assert_eq!(state.last_log_id, Some(all[all.len() - 1].log_id));
            // A truncation reaches into what is only on disk: those entries are gone.
            s.truncate(LogId::new(CommittedLeaderId::new(1, 1), 10))
                .await
                .unwrap();
            let got = s.try_get_log_entries(1..=n).await.unwrap();
            assert_eq!(ids(&got), ids(&all[..9]));
            // Nothing waits for a truncation: a synced write after it makes it durable.
            flushed(&mut s, Vec::new()).await;
        }
        let mut s = LogStore::open(dir.path(), 1).unwrap();
        let got = s.try_get_log_entries(1..=n).await.unwrap();
        assert_eq!(ids(&got), ids(&all[..9]));
    }

    #[tokio::test]
    async fn the_committed_id_goes_out_with_the_next_batch_and_never_ahead_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let id = |i| LogId::new(CommittedLeaderId::new(1, 1), i);
        {
            let mut s = LogStore::open(dir.path(), 1).unwrap();
            flushed(&mut s, (1..=5).map(|i| entry(1, i)).collect()).await;
            s.save_committed(Some(id(3))).await.unwrap();
            flushed(&mut s, Vec::new()).await;
        }
        {
            let mut s = LogStore::open(dir.path(), 1).unwrap();
            assert_eq!(s.read_committed().await.unwrap(), Some(id(3)));
            // Beyond the last entry written: not recorded.
            s.save_committed(Some(id(9))).await.unwrap();
            flushed(&mut s, Vec::new()).await;
        }
        let mut s = LogStore::open(dir.path(), 1).unwrap();
        assert_eq!(s.read_committed().await.unwrap(), Some(id(3)));
    }

    #[tokio::test]
    async fn the_durable_index_follows_fsyncs_and_truncations() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = LogStore::open(dir.path(), 1).unwrap();
        assert_eq!(*s.durable().borrow(), Durable::default());
        flushed(&mut s, (1..=5).map(|i| entry(1, i)).collect()).await;
        assert_eq!(s.durable().borrow().index, 5);
        s.truncate(LogId::new(CommittedLeaderId::new(1, 1), 4))
            .await
            .unwrap();
        let mut rx = s.durable();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            rx.wait_for(|d| d.index == 3),
        )
        .await
        .expect("the truncation lowers the durable index")
        .unwrap();
        flushed(&mut s, vec![entry(2, 4)]).await;
        assert_eq!(s.durable().borrow().index, 4);
        assert!(!s.durable().borrow().failed);
        drop(s);
        let s = LogStore::open(dir.path(), 1).unwrap();
        assert_eq!(s.durable().borrow().index, 4);
        assert_eq!(
            s.log_id_at(4),
            Some(LogId::new(CommittedLeaderId::new(2, 1), 4))
        );
        assert_eq!(s.log_id_at(5), None);
    }

    #[tokio::test]
    async fn entries_vote_truncation_and_purge_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(dir.path(), 1).unwrap();
            for e in (1..=10).map(|i| entry(1, i)) {
                s.mem().apply(Record::Entry(e));
            }
            flushed(&mut s, (1..=10).map(|i| entry(1, i)).collect()).await;
            s.save_vote(&Vote::new(2, 3)).await.unwrap();
            s.truncate(LogId::new(CommittedLeaderId::new(1, 1), 8))
                .await
                .unwrap();
            s.purge(LogId::new(CommittedLeaderId::new(1, 1), 3))
                .await
                .unwrap();
            // A synced write after them makes them durable too.
            s.save_vote(&Vote::new(2, 3)).await.unwrap();
        }
        let mut s = LogStore::open(dir.path(), 1).unwrap();
        assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(2, 3)));
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(3));
        assert_eq!(st.last_log_id.map(|l| l.index), Some(7));
        let got = s.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(
            got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![4, 5, 6, 7]
        );
        assert_eq!(got[0], entry(1, 4));
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(dir.path(), 1).unwrap();
            flushed(&mut s, (1..=3).map(|i| entry(1, i)).collect()).await;
        }
        let files = crate::persist::list(dir.path(), "raftlog").unwrap();
        let (_, path) = files.last().unwrap();
        // Tear the last record: clear its final bytes.
        let mut bytes = std::fs::read(path).unwrap();
        let end = {
            let mut pos = MAGIC.len();
            let mut last_start = pos;
            while let Frame::Ok { next, .. } = read_frame(&bytes, pos, MAX_RECORD) {
                last_start = pos;
                pos = next;
            }
            (last_start, pos)
        };
        for b in &mut bytes[end.1 - 3..end.1] {
            *b = 0;
        }
        std::fs::write(path, &bytes).unwrap();
        let mut s = LogStore::open(dir.path(), 1).unwrap();
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id.map(|l| l.index), Some(2));
        // And the log carries on after the cut.
        flushed(&mut s, vec![entry(2, 3)]).await;
        drop(s);
        let mut s = LogStore::open(dir.path(), 1).unwrap();
        let got = s.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(got.last(), Some(&entry(2, 3)));
    }

    /// An entry whose encoding is about `size` bytes.
    fn sized(term: u64, index: u64, size: usize) -> Entry {
        let mut e = entry(term, index);
        if let EntryPayload::Normal(b) = &mut e.payload {
            b.0[0].op = Op::DeleteContainer {
                path: format!("/{index}-{}", "x".repeat(size)),
            };
        }
        e
    }

    #[tokio::test]
    async fn batches_of_every_size_read_back_whole_with_and_without_direct_writes() {
        for direct in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut all = Vec::new();
            {
                let s = LogStore::open_with(dir.path(), 1, direct).unwrap();
                let mut index = 0;
                // Sizes around the block size, and enough in all to pass the zeroed
                // region ahead of the log (ZERO_AHEAD) more than once.
                let mut written = 0;
                let mut round = 0usize;
                while written < 3 * ZERO_AHEAD as usize {
                    let n = 1 + round % 5;
                    let mut batch = Vec::new();
                    for k in 0..n {
                        index += 1;
                        let size = [1, 100, 4000, 4096, 9000, 20_000][(round + k) % 6];
                        written += size;
                        batch.push(sized(1, index, size));
                    }
                    all.extend(batch.clone());
                    let (tx, rx) = oneshot::channel();
                    s.append_then(batch, Box::new(move |r| tx.send(r).unwrap()))
                        .unwrap();
                    rx.await.unwrap().unwrap();
                    round += 1;
                }
            }
            let mut s = LogStore::open_with(dir.path(), 1, direct).unwrap();
            let got = s.try_get_log_entries(0..u64::MAX).await.unwrap();
            assert_eq!(got.len(), all.len(), "direct={direct}");
            assert!(
                got == all,
                "direct={direct}: entries differ after reopening"
            );
            // And the log carries on in the new file.
            flushed(&mut s, vec![sized(2, all.len() as u64 + 1, 5000)]).await;
            drop(s);
            let mut s = LogStore::open_with(dir.path(), 1, !direct).unwrap();
            let got = s.try_get_log_entries(0..u64::MAX).await.unwrap();
            assert_eq!(got.len(), all.len() + 1);
            assert_eq!(got.last(), Some(&sized(2, all.len() as u64 + 1, 5000)));
        }
    }

    #[tokio::test]
    async fn garbage_in_an_older_file_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(dir.path(), 1).unwrap();
            flushed(&mut s, (1..=3).map(|i| entry(1, i)).collect()).await;
        }
        drop(LogStore::open(dir.path(), 1).unwrap());
        let files = crate::persist::list(dir.path(), "raftlog").unwrap();
        assert!(files.len() >= 2);
        let (_, path) = &files[0];
        let mut bytes = std::fs::read(path).unwrap();
        bytes[MAGIC.len() + FRAME_HEADER + 2] ^= 0xff;
        std::fs::write(path, &bytes).unwrap();
        assert!(matches!(
            LogStore::open(dir.path(), 1),
            Err(PersistError::Corrupt { .. })
        ));
    }
}
