//! Snapshots: the whole tree and session table at one zxid.
//!
//! The processor clones its state at a snapshot point (cheap: node data is shared
//! `Bytes`), tells the log to start a new file, and hands the clone to a background thread
//! that encodes and writes it. After a snapshot is durable, older snapshots beyond the two
//! newest, and log files that only hold transactions the older kept snapshot covers, are
//! removed.

use super::{file_name, list, PersistError, SNAP_MAGIC};
use crate::tree::{DataTree, Node, StatPersisted};
use crate::txn::{acl_from_rec, acl_to_rec, AclRec};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

/// How many snapshots are kept.
const KEEP: usize = 2;

#[derive(Debug, Serialize, Deserialize)]
pub struct SnapNode {
    pub path: String,
    pub data: Option<Bytes>,
    pub acl: Vec<AclRec>,
    pub stat: StatPersisted,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SnapSession {
    pub id: i64,
    pub timeout_ms: i32,
    pub passwd: [u8; 16],
}

/// The decoded contents of a snapshot file.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotData {
    pub last_zxid: i64,
    pub nodes: Vec<SnapNode>,
    pub sessions: Vec<SnapSession>,
}

/// A consistent copy of the state, taken by the processor.
#[derive(Debug)]
pub struct SnapshotJob {
    pub last_zxid: i64,
    pub tree: DataTree,
    pub sessions: Vec<SnapSession>,
}

impl SnapshotJob {
    fn encode(&self) -> Result<Vec<u8>, PersistError> {
        let mut nodes: Vec<SnapNode> = self
            .tree
            .nodes()
            .map(|(p, n)| SnapNode {
                path: p.clone(),
                data: n.data.clone(),
                acl: acl_to_rec(&n.acl),
                stat: n.stat,
            })
            .collect();
        nodes.sort_by(|a, b| a.path.cmp(&b.path));
        let data = SnapshotDataRef {
            last_zxid: self.last_zxid,
            nodes: &nodes,
            sessions: &self.sessions,
        };
        let payload = rmp_serde::to_vec(&data).map_err(|e| PersistError::Encode(e.to_string()))?;
        let mut out = Vec::with_capacity(payload.len() + 16);
        out.extend_from_slice(SNAP_MAGIC);
        fjord_shared::fs::frame(&payload, &mut out);
        Ok(out)
    }
}

#[derive(Serialize)]
struct SnapshotDataRef<'a> {
    last_zxid: i64,
    nodes: &'a [SnapNode],
    sessions: &'a [SnapSession],
}

/// Writes one snapshot file durably and returns its path.
pub fn write(dir: &Path, job: &SnapshotJob) -> Result<PathBuf, PersistError> {
    let bytes = job.encode()?;
    let path = dir.join(file_name("snapshot", job.last_zxid));
    fjord_shared::fs::write_atomic(&path, &bytes).map_err(|e| PersistError::io(&path, e))?;
    Ok(path)
}

/// Reads a snapshot file; `None` if it is damaged (the caller falls back to an older one).
pub fn read(path: &Path) -> Result<Option<SnapshotData>, PersistError> {
    let bytes = std::fs::read(path).map_err(|e| PersistError::io(path, e))?;
    if bytes.len() < SNAP_MAGIC.len() || &bytes[..SNAP_MAGIC.len()] != SNAP_MAGIC {
        return Ok(None);
    }
    match fjord_shared::fs::read_frame(&bytes, SNAP_MAGIC.len(), usize::MAX) {
        fjord_shared::fs::Frame::Ok { payload, .. } => Ok(rmp_serde::from_slice(payload).ok()),
        _ => Ok(None),
    }
}

/// Turns snapshot contents back into a tree.
pub fn into_tree(nodes: Vec<SnapNode>) -> DataTree {
    DataTree::from_nodes(
        nodes
            .into_iter()
            .map(|n| {
                (
                    n.path,
                    Node {
                        data: n.data,
                        acl: Arc::new(acl_from_rec(&n.acl)),
                        stat: n.stat,
                        children: BTreeSet::new(),
                    },
                )
            })
            .collect(),
    )
}

/// Removes snapshots beyond the newest [`KEEP`], and log files wholly covered by the oldest
/// kept snapshot.
pub fn purge(dir: &Path) -> Result<(), PersistError> {
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

/// The background snapshot writer. Dropping the sender stops it.
#[derive(Debug)]
pub struct Snapshotter {
    pub tx: mpsc::SyncSender<SnapshotJob>,
    pub thread: JoinHandle<()>,
}

/// Starts the writer thread. At most one job waits: the processor skips a snapshot point
/// while the previous one is still being written.
pub fn start(dir: &Path) -> std::io::Result<Snapshotter> {
    let (tx, rx) = mpsc::sync_channel::<SnapshotJob>(1);
    let dir = dir.to_owned();
    let thread = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
        while let Ok(job) = rx.recv() {
            let started = std::time::Instant::now();
            match write(&dir, &job) {
                Ok(path) => {
                    tracing::info!(path = %path.display(), zxid = job.last_zxid, nodes = job.tree.node_count(), ms = started.elapsed().as_millis() as u64, "snapshot written");
                    if let Err(e) = purge(&dir) {
                        tracing::warn!(error = %e, "could not remove old snapshots and logs");
                    }
                }
                Err(e) => tracing::error!(error = %e, "snapshot failed; the transaction log is kept"),
            }
        }
    })?;
    Ok(Snapshotter { tx, thread })
}
