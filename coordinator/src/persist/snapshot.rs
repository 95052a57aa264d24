//! Snapshots: the whole tree and session table at one zxid.
//!
//! At a snapshot point the processor takes a [`TreeView`] of the tree, which is O(1) (one
//! reference count on the root; the live tree copies a node before changing it while the
//! view shares it, see [`crate::tree`]), copies the session table, tells the log to start
//! a new file, and hands the job to a background thread. That thread walks the view and
//! streams it to the file in frames of about [`CHUNK_BYTES`], so no encoded copy of the
//! whole tree is ever held in memory, on either side. After a snapshot is durable, older
//! snapshots beyond the two newest, and log files that only hold transactions the older
//! kept snapshot covers, are removed.
//!
//! Reading streams as well: one frame at a time into a [`TreeBuilder`]. The file layout is
//! described in [`crate::persist`].

use super::{file_name, list, PersistError, SNAP_MAGIC, SNAP_MAGIC_V2};
use crate::tree::{DataTree, StatPersisted, TreeBuilder, TreeView};
use bytes::Bytes;
use fjord_shared::fs::FRAME_HEADER;
use fjord_shared::jute::{Acl, Id};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How many snapshots are kept.
const KEEP: usize = 2;
/// A node frame is closed once its payload reaches this size.
pub const CHUNK_BYTES: usize = 1 << 20;
/// I/O buffer of the writer and the reader.
const IO_BUFFER: usize = 256 * 1024;
/// The writer fsyncs after about this many bytes, see [`FrameWriter::frame`].
const SYNC_EVERY: usize = 16 << 20;
/// msgpack `array 32`: a marker byte, then the element count (big-endian u32).
const ARRAY32: u8 = 0xdd;

/// A session as a snapshot stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapSession {
    pub id: i64,
    pub timeout_ms: i32,
    pub passwd: [u8; 16],
    /// The member the session is connected through (absent in older snapshots: 0).
    #[serde(default)]
    pub owner: u64,
}

/// The first frame of a snapshot file.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    last_zxid: i64,
    /// How many nodes the node frames hold in all.
    nodes: u64,
    sessions: Vec<SnapSession>,
    /// The replicated log's view of this snapshot (its Raft metadata), opaque here. Absent in
    /// `FJSNAP02` files, written before the coordinator ran on Raft.
    #[serde(default)]
    meta: Option<Bytes>,
}

/// One node as written: borrowed from the tree.
#[derive(Serialize)]
struct NodeOut<'a> {
    path: &'a str,
    data: Option<Bin<'a>>,
    acl: AclList<'a>,
    stat: &'a StatPersisted,
}

/// One node as read: borrowed from the frame.
#[derive(Deserialize)]
struct NodeIn<'a> {
    path: &'a str,
    #[serde(borrow)]
    data: Option<&'a [u8]>,
    #[serde(borrow)]
    acl: Vec<AclIn<'a>>,
    stat: StatPersisted,
}

/// An ACL entry, (perms, scheme, id): the layout of [`crate::txn::AclRec`].
#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct AclIn<'a>(i32, &'a str, &'a str);

/// Bytes as a msgpack `bin`, not as an array of numbers.
struct Bin<'a>(&'a [u8]);

impl Serialize for Bin<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct AclList<'a>(&'a [Acl]);

impl Serialize for AclList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for a in self.0 {
            seq.serialize_element(&AclIn(a.perms, &a.id.scheme, &a.id.id))?;
        }
        seq.end()
    }
}

/// A consistent copy of the state, taken by the processor.
#[derive(Debug)]
pub struct SnapshotJob {
    pub last_zxid: i64,
    pub tree: TreeView,
    pub sessions: Vec<SnapSession>,
    pub meta: Option<Bytes>,
}

impl SnapshotJob {
    /// A view of `state`: O(1) for the tree (shared, copied on write) plus the session list.
    pub fn of(state: &crate::txn::State, meta: Option<Bytes>) -> SnapshotJob {
        SnapshotJob {
            last_zxid: state.last_zxid,
            tree: state.tree.view(),
            sessions: state
                .sessions
                .iter()
                .map(|s| SnapSession {
                    id: s.id,
                    timeout_ms: s.timeout_ms,
                    passwd: s.passwd,
                    owner: s.owner,
                })
                .collect(),
            meta,
        }
    }
}

/// What a snapshot file holds.
#[derive(Debug)]
pub struct Loaded {
    pub last_zxid: i64,
    pub tree: DataTree,
    pub sessions: Vec<SnapSession>,
    pub meta: Option<Bytes>,
}

fn encode_err(e: impl std::fmt::Display) -> PersistError {
    PersistError::Encode(e.to_string())
}

/// Writes checksummed frames to a file.
struct FrameWriter {
    out: BufWriter<File>,
    path: PathBuf,
    /// Bytes written since the last `fdatasync`.
    unsynced: usize,
}

impl FrameWriter {
    fn frame(&mut self, payload: &[u8]) -> Result<(), PersistError> {
        let len = u32::try_from(payload.len())
            .map_err(|_| encode_err(format!("a frame of {} bytes", payload.len())))?;
        let mut header = [0u8; FRAME_HEADER];
        header[..4].copy_from_slice(&len.to_be_bytes());
        header[4..].copy_from_slice(&crc32c::crc32c(payload).to_be_bytes());
        self.out
            .write_all(&header)
            .and_then(|()| self.out.write_all(payload))
            .map_err(|e| PersistError::io(&self.path, e))?;
        self.unsynced += FRAME_HEADER + payload.len();
        if self.unsynced >= SYNC_EVERY {
            // Flush to disk as we go: the log's fdatasync calls queue behind a snapshot's
            // fsync, and one fsync of the whole file at the end stalled every write by up
            // to 35 ms at 500,000 nodes; steps of this size halve that and leave p99 as is.
            self.out
                .flush()
                .and_then(|()| self.out.get_ref().sync_data())
                .map_err(|e| PersistError::io(&self.path, e))?;
            self.unsynced = 0;
        }
        Ok(())
    }
}

/// Node frames being filled: a msgpack array of nodes whose count is patched in when the
/// frame is closed.
struct Chunk {
    payload: Vec<u8>,
    count: u32,
    total: u64,
}

impl Chunk {
    fn new() -> Chunk {
        let mut c = Chunk {
            payload: Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4),
            count: 0,
            total: 0,
        };
        c.reset();
        c
    }

    fn reset(&mut self) {
        self.payload.clear();
        self.payload.extend_from_slice(&[ARRAY32, 0, 0, 0, 0]);
        self.count = 0;
    }

    fn push(&mut self, node: &NodeOut<'_>) -> Result<(), PersistError> {
        rmp_serde::encode::write(&mut self.payload, node).map_err(encode_err)?;
        self.count += 1;
        self.total += 1;
        Ok(())
    }

    fn flush(&mut self, w: &mut FrameWriter) -> Result<(), PersistError> {
        if self.count == 0 {
            return Ok(());
        }
        self.payload[1..5].copy_from_slice(&self.count.to_be_bytes());
        w.frame(&self.payload)?;
        self.reset();
        Ok(())
    }
}

/// Writes one snapshot file durably (temp file, fsync, rename, directory fsync) and returns
/// its path.
pub fn write(dir: &Path, job: &SnapshotJob) -> Result<PathBuf, PersistError> {
    let name = file_name("snapshot", job.last_zxid);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| PersistError::io(&tmp, e))?;
    let mut w = FrameWriter {
        out: BufWriter::with_capacity(IO_BUFFER, file),
        path: tmp.clone(),
        unsynced: 0,
    };
    w.out
        .write_all(SNAP_MAGIC)
        .map_err(|e| PersistError::io(&tmp, e))?;
    let header = Header {
        last_zxid: job.last_zxid,
        nodes: job.tree.node_count() as u64,
        sessions: job.sessions.clone(),
        meta: job.meta.clone(),
    };
    w.frame(&rmp_serde::to_vec(&header).map_err(encode_err)?)?;
    let mut chunk = Chunk::new();
    job.tree.walk(|path, n| {
        chunk.push(&NodeOut {
            path,
            data: n.data().map(Bin),
            acl: AclList(&n.acl),
            stat: &n.stat,
        })?;
        if chunk.payload.len() >= CHUNK_BYTES {
            chunk.flush(&mut w)?;
        }
        Ok::<(), PersistError>(())
    })?;
    chunk.flush(&mut w)?;
    if chunk.total != header.nodes {
        // The view is immutable, so this would be a bug in the tree's bookkeeping.
        return Err(encode_err(format!(
            "the tree counts {} nodes but {} were walked",
            header.nodes, chunk.total
        )));
    }
    let file = w
        .out
        .into_inner()
        .map_err(|e| PersistError::io(&tmp, e.into_error()))?;
    file.sync_all().map_err(|e| PersistError::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| PersistError::io(&path, e))?;
    fjord_shared::fs::sync_dir(dir).map_err(|e| PersistError::io(dir, e))?;
    Ok(path)
}

/// Reads the next frame into `buf`: `false` if it is torn or corrupt. `remaining` is what
/// is left of the file, so a damaged length is caught before anything is allocated.
fn next_frame(r: &mut impl Read, remaining: &mut u64, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    if *remaining < FRAME_HEADER as u64 {
        return Ok(false);
    }
    let mut header = [0u8; FRAME_HEADER];
    r.read_exact(&mut header)?;
    *remaining -= FRAME_HEADER as u64;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if u64::from(len) > *remaining {
        return Ok(false);
    }
    buf.clear();
    buf.resize(len as usize, 0);
    r.read_exact(buf)?;
    *remaining -= u64::from(len);
    Ok(crc32c::crc32c(buf) == crc)
}

/// Reads a snapshot file; `None` if it is damaged (the caller falls back to an older one).
pub fn read(path: &Path) -> Result<Option<Loaded>, PersistError> {
    let io = |e| PersistError::io(path, e);
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut r = BufReader::with_capacity(IO_BUFFER, file);
    let mut magic = [0u8; SNAP_MAGIC.len()];
    if size < magic.len() as u64 {
        return Ok(None);
    }
    r.read_exact(&mut magic).map_err(io)?;
    if &magic != SNAP_MAGIC && &magic != SNAP_MAGIC_V2 {
        return Ok(None);
    }
    let mut remaining = size - magic.len() as u64;
    match read_body(&mut r, &mut remaining) {
        Ok(loaded) => Ok(loaded),
        // The file is shorter than its metadata said: it is being cut, treat it as torn.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(io(e)),
    }
}

fn read_body(r: &mut impl Read, remaining: &mut u64) -> std::io::Result<Option<Loaded>> {
    let mut buf = Vec::new();
    if !next_frame(r, remaining, &mut buf)? {
        return Ok(None);
    }
    let Ok(header) = rmp_serde::from_slice::<Header>(&buf) else {
        return Ok(None);
    };
    let mut builder = TreeBuilder::new();
    let mut read = 0u64;
    // Consecutive nodes mostly have the same ACL: decode it once.
    let mut last_acl: Option<Arc<Vec<Acl>>> = None;
    while read < header.nodes {
        if !next_frame(r, remaining, &mut buf)? {
            return Ok(None);
        }
        let Ok(nodes) = rmp_serde::from_slice::<Vec<NodeIn<'_>>>(&buf) else {
            return Ok(None);
        };
        read += nodes.len() as u64;
        if read > header.nodes {
            return Ok(None);
        }
        for n in nodes {
            let same = last_acl.as_ref().is_some_and(|acl| {
                acl.len() == n.acl.len()
                    && acl
                        .iter()
                        .zip(&n.acl)
                        .all(|(a, b)| a.perms == b.0 && a.id.scheme == b.1 && a.id.id == b.2)
            });
            if !same {
                let acl = n
                    .acl
                    .iter()
                    .map(|a| Acl {
                        perms: a.0,
                        id: Id {
                            scheme: a.1.to_owned(),
                            id: a.2.to_owned(),
                        },
                    })
                    .collect();
                last_acl = Some(Arc::new(acl));
            }
            let Some(acl) = &last_acl else {
                return Ok(None);
            };
            if builder.add(n.path, n.data, acl.clone(), n.stat).is_err() {
                return Ok(None);
            }
        }
    }
    if *remaining != 0 {
        return Ok(None);
    }
    let Ok(tree) = builder.finish() else {
        return Ok(None);
    };
    Ok(Some(Loaded {
        last_zxid: header.last_zxid,
        tree,
        sessions: header.sessions,
        meta: header.meta,
    }))
}

/// At start-up, when nothing is being written: removes temp files of snapshots that were
/// being written or received when the process stopped, then what [`purge_old`] removes.
pub fn purge(dir: &Path) -> Result<(), PersistError> {
    let rd = std::fs::read_dir(dir).map_err(|e| PersistError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| PersistError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snapshot.") && name.ends_with(".tmp") {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|e| PersistError::io(&p, e))?;
        }
    }
    purge_old(dir)
}

/// Removes snapshots beyond the newest [`KEEP`], and transaction log files (from before the
/// Raft log) wholly covered by the oldest kept snapshot. Safe while a snapshot is being
/// written or received: it touches only finished files.
pub fn purge_old(dir: &Path) -> Result<(), PersistError> {
    let snaps = list(dir, "snapshot")?;
    if snaps.len() > KEEP {
        for (_, p) in &snaps[..snaps.len() - KEEP] {
            std::fs::remove_file(p).map_err(|e| PersistError::io(p, e))?;
        }
    }
    let snaps = list(dir, "snapshot")?;
    let Some((oldest_kept, _)) = snaps.first() else {
        return Ok(());
    };
    let logs = list(dir, "log")?;
    // A log file is covered when the next file starts at or before oldest_kept + 1.
    for pair in logs.windows(2) {
        let (_, path) = &pair[0];
        let (next_start, _) = pair[1];
        if next_start <= oldest_kept + 1 {
            std::fs::remove_file(path).map_err(|e| PersistError::io(path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use fjord_shared::jute::perms;

    fn sample_tree() -> DataTree {
        let mut t = DataTree::new();
        let open = t.intern_acl(Acl::open_unsafe());
        let digest = Arc::new(vec![
            Acl {
                perms: perms::ALL,
                id: Id {
                    scheme: "digest".into(),
                    id: "u:hash".into(),
                },
            },
            Acl {
                perms: perms::READ,
                id: Id {
                    scheme: "world".into(),
                    id: "anyone".into(),
                },
            },
        ]);
        t.create("/a", Some(&b"alpha"[..]), open.clone(), 0, 1, 10)
            .unwrap();
        t.create("/a/secret", Some(&b""[..]), digest.clone(), 0, 2, 11)
            .unwrap();
        t.create("/a/secret/x", None, digest, 0, 3, 12).unwrap();
        t.create("/e", None, open.clone(), 77, 4, 13).unwrap();
        t.create(
            "/c",
            None,
            open.clone(),
            crate::tree::CONTAINER_OWNER,
            5,
            14,
        )
        .unwrap();
        t
    }

    fn job(tree: &DataTree, last_zxid: i64) -> SnapshotJob {
        SnapshotJob {
            last_zxid,
            tree: tree.view(),
            sessions: vec![SnapSession {
                id: 77,
                timeout_ms: 4000,
                passwd: [9; 16],
                owner: 2,
            }],
            meta: Some(Bytes::from_static(b"raft")),
        }
    }

    fn same_nodes(a: &DataTree, b: &DataTree) {
        let nodes = |t: &DataTree| {
            let mut all = Vec::new();
            t.view()
                .walk::<()>(|p, n| {
                    all.push((
                        p.to_owned(),
                        n.data().map(<[u8]>::to_vec),
                        n.stat,
                        n.acl.clone(),
                    ));
                    Ok(())
                })
                .unwrap();
            all.sort_by(|x, y| x.0.cmp(&y.0));
            all
        };
        assert_eq!(nodes(a), nodes(b));
    }

    #[test]
    fn a_snapshot_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let t = sample_tree();
        let path = write(dir.path(), &job(&t, 5)).unwrap();
        assert_eq!(path, dir.path().join("snapshot.0000000000000005"));
        let back = read(&path).unwrap().expect("readable");
        assert_eq!(back.last_zxid, 5);
        assert_eq!(back.sessions, job(&t, 5).sessions);
        same_nodes(&back.tree, &t);
        assert_eq!(back.tree.ephemerals_of(77), vec!["/e".to_string()]);
        assert_eq!(back.tree.node_count(), t.node_count());
        assert_eq!(back.tree.approximate_data_size(), t.approximate_data_size());
        assert!(back.tree.get("/a/secret").unwrap().data().is_some());
        assert!(back.tree.get("/a/secret/x").unwrap().data().is_none());
    }

    #[test]
    fn large_trees_span_many_frames() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = DataTree::new();
        let open = t.intern_acl(Acl::open_unsafe());
        let value = vec![7u8; 1000];
        let mut zxid = 0;
        for p in 0..20 {
            zxid += 1;
            t.create(&format!("/p{p}"), None, open.clone(), 0, zxid, 0)
                .unwrap();
            for c in 0..200 {
                zxid += 1;
                t.create(
                    &format!("/p{p}/c{c}"),
                    Some(&value[..]),
                    open.clone(),
                    0,
                    zxid,
                    0,
                )
                .unwrap();
            }
        }
        let path = write(dir.path(), &job(&t, zxid)).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size > 3 * CHUNK_BYTES as u64, "{size}");
        let back = read(&path).unwrap().expect("readable");
        same_nodes(&back.tree, &t);
        // Every node with the open ACL shares one allocation after loading.
        assert!(Arc::ptr_eq(
            &back.tree.get("/p3/c7").unwrap().acl,
            &back.tree.get("/p19").unwrap().acl
        ));
    }

    #[test]
    fn a_snapshot_holds_the_tree_as_it_was_when_taken() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = sample_tree();
        let frozen = job(&t, 5);
        // Writes after the snapshot point, before the writer runs.
        t.set_data("/a", Some(&b"changed"[..]), 6, 20).unwrap();
        t.delete("/a/secret/x", 7).unwrap();
        t.create("/late", None, t.intern_acl(Acl::open_unsafe()), 0, 8, 21)
            .unwrap();
        let path = write(dir.path(), &frozen).unwrap();
        drop(frozen);
        let back = read(&path).unwrap().expect("readable").tree;
        same_nodes(&back, &sample_tree());
        assert_eq!(back.get("/a").unwrap().data(), Some(&b"alpha"[..]));
        assert!(back.get("/a/secret/x").is_some());
        assert!(back.get("/late").is_none());
        assert_eq!(t.get("/a").unwrap().data(), Some(&b"changed"[..]));
    }

    #[test]
    fn damaged_snapshots_read_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let t = sample_tree();
        let path = write(dir.path(), &job(&t, 5)).unwrap();
        let good = std::fs::read(&path).unwrap();
        let damaged = dir.path().join("snapshot.0000000000000006");
        let check = |bytes: &[u8]| {
            std::fs::write(&damaged, bytes).unwrap();
            read(&damaged).unwrap().is_none()
        };
        // Torn anywhere, a flipped bit anywhere, trailing bytes, an old magic.
        for cut in [0, 4, 8, 12, 20, good.len() / 2, good.len() - 1] {
            assert!(check(&good[..cut]), "cut at {cut}");
        }
        for i in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert!(check(&bad), "bit flipped at {i}");
        }
        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(check(&longer));
        let mut old = good.clone();
        old[..8].copy_from_slice(b"FJSNAP01");
        assert!(check(&old));
        assert!(check(b"FJSNAP02garbage"));
        assert!(read(&path).unwrap().is_some());
    }

    #[test]
    fn data_is_written_as_msgpack_bin() {
        // The layout the docs promise: rmp-serde's own encoding of these fields.
        let out = NodeOut {
            path: "/x",
            data: Some(Bin(b"hi")),
            acl: AclList(&Acl::open_unsafe()),
            stat: &StatPersisted::default(),
        };
        #[derive(Deserialize)]
        struct Owned {
            path: String,
            data: Option<Bytes>,
            acl: Vec<crate::txn::AclRec>,
            stat: StatPersisted,
        }
        let bytes = rmp_serde::to_vec(&out).unwrap();
        let back: Owned = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back.path, "/x");
        assert_eq!(back.data.as_deref(), Some(&b"hi"[..]));
        assert_eq!(back.acl, crate::txn::acl_to_rec(&Acl::open_unsafe()));
        assert_eq!(back.stat, StatPersisted::default());
    }

    #[test]
    fn purge_removes_unfinished_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("snapshot.0000000000000009.tmp");
        std::fs::write(&tmp, b"half").unwrap();
        let receiving = dir.path().join("snapshot.from-2.tmp");
        std::fs::write(&receiving, b"part").unwrap();
        write(dir.path(), &job(&sample_tree(), 5)).unwrap();
        // While snapshots may be in flight, only finished files go.
        purge_old(dir.path()).unwrap();
        assert!(tmp.exists() && receiving.exists());
        purge(dir.path()).unwrap();
        assert!(!tmp.exists() && !receiving.exists());
        assert_eq!(list(dir.path(), "snapshot").unwrap().len(), 1);
    }
}
