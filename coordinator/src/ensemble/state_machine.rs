//! The state machine openraft drives: a bridge to the processor thread, which owns the tree,
//! the sessions and the connections; plus the snapshot files.
//!
//! `apply` hands committed entries to the processor, once this member's log has them on
//! disk (see `super::durable`), and waits until it has applied them (and queued the
//! replies of the requests that came through this member). A snapshot is
//! built from the processor's copy-on-write view of the tree, written by a blocking task
//! while the processor carries on. A snapshot received from the leader is read into a tree
//! off the processor thread, then swapped in.

use super::durable::DurableGate;
use super::{
    storage_error, LogId, SnapshotFile, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::persist::snapshot::{self, Loaded, SnapshotJob};
use crate::persist::{list, PersistError};
use crate::processor::Msg;
use bytes::Bytes;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{RaftSnapshotBuilder, StorageIOError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::oneshot;

/// What the state machine asks of the processor thread.
#[derive(Debug)]
pub enum SmRequest {
    /// Apply committed entries, in order.
    Apply {
        entries: Vec<super::Entry>,
        done: oneshot::Sender<()>,
    },
    /// A consistent view of the state as of the last applied entry.
    Snapshot {
        reply: oneshot::Sender<(SnapshotJob, Option<LogId>, StoredMembership)>,
    },
    /// Replace the state with a snapshot from the leader.
    Install {
        loaded: Box<Loaded>,
        meta: SnapshotMeta,
        done: oneshot::Sender<()>,
    },
    /// The last applied log id and membership.
    Applied {
        reply: oneshot::Sender<(Option<LogId>, StoredMembership)>,
    },
}

/// Encodes Raft's snapshot metadata for a snapshot file's header.
pub fn encode_meta(meta: &SnapshotMeta) -> Option<Bytes> {
    rmp_serde::to_vec(meta).ok().map(Bytes::from)
}

/// Decodes what [`encode_meta`] wrote.
pub fn decode_meta(bytes: &[u8]) -> Option<SnapshotMeta> {
    rmp_serde::from_slice(bytes).ok()
}

/// The newest snapshot in `dir` that reads back whole and carries Raft metadata, or the
/// newest that reads back at all (one written before the Raft log) if none does.
pub fn newest(dir: &Path) -> Result<Option<(Loaded, PathBuf)>, PersistError> {
    for (_, path) in list(dir, "snapshot")?.into_iter().rev() {
        match snapshot::read(&path)? {
            Some(loaded) => return Ok(Some((loaded, path))),
            None => {
                tracing::warn!(path = %path.display(), "snapshot is damaged; trying an older one")
            }
        }
    }
    Ok(None)
}

/// Shared between the state machine and its snapshot builders.
#[derive(Debug)]
struct Shared {
    processor: mpsc::Sender<Msg>,
    /// Entries are applied only once this member's log has them on disk.
    durable: DurableGate,
    dir: PathBuf,
    /// The newest snapshot on disk, and its file.
    current: Mutex<Option<(SnapshotMeta, PathBuf)>>,
    builds: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

impl StateMachine {
    /// `current` is the snapshot the processor started from, if it has Raft metadata.
    pub fn new(
        processor: mpsc::Sender<Msg>,
        dir: &Path,
        current: Option<(SnapshotMeta, PathBuf)>,
        durable: DurableGate,
    ) -> Self {
        StateMachine {
            shared: Arc::new(Shared {
                processor,
                durable,
                dir: dir.to_owned(),
                current: Mutex::new(current),
                builds: AtomicU64::new(0),
            }),
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> SmRequest,
    ) -> Result<T, StorageError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .processor
            .send(Msg::Sm(make(tx)))
            .map_err(|_| storage_error(StorageIOError::write_state_machine, "processor stopped"))?;
        rx.await
            .map_err(|_| storage_error(StorageIOError::write_state_machine, "processor stopped"))
    }

    fn set_current(&self, meta: SnapshotMeta, path: PathBuf) {
        let mut cur = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let newer = cur
            .as_ref()
            .is_none_or(|(c, _)| c.last_log_id <= meta.last_log_id);
        if newer {
            *cur = Some((meta, path));
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (mut job, last, membership) = self.ask(|reply| SmRequest::Snapshot { reply }).await?;
        let n = self.shared.builds.fetch_add(1, Ordering::Relaxed);
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id: format!("{}-{n}", super::show(&last)),
        };
        job.meta = encode_meta(&meta);
        let dir = self.shared.dir.clone();
        let started = std::time::Instant::now();
        let nodes = job.tree.node_count();
        let path = tokio::task::spawn_blocking(move || {
            let r = snapshot::write(&dir, &job);
            // Old snapshots beyond the newest two; a failure leaves files, not harm.
            if let Err(e) = snapshot::purge_old(&dir) {
                tracing::warn!(error = %e, "cannot remove old snapshots");
            }
            r
        })
        .await
        .map_err(|e| storage_error(|e| StorageIOError::write_snapshot(None, e), e))?
        .map_err(|e| storage_error(|e| StorageIOError::write_snapshot(None, e), e))?;
        let stats = &crate::metrics::stats::STATS;
        stats.snapshottime.observe(started.elapsed());
        crate::metrics::stats::inc(&stats.snap_count);
        tracing::info!(path = %path.display(), log_id = %super::show(&last), nodes, ms = started.elapsed().as_millis() as u64, "snapshot written");
        self.set_current(meta.clone(), path.clone());
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile { path }),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.ask(|reply| SmRequest::Applied { reply }).await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = super::Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let n = entries.len();
        let last = entries.last().map(|e| e.log_id.index).unwrap_or(0);
        self.shared
            .durable
            .wait(last)
            .await
            .map_err(|e| storage_error(StorageIOError::write_state_machine, e))?;
        self.ask(|done| SmRequest::Apply { entries, done }).await?;
        Ok(vec![(); n])
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let n = self.shared.builds.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(SnapshotFile {
            path: self.shared.dir.join(format!("snapshot.incoming-{n}.tmp")),
        }))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let err = |e: String| storage_error(|e| StorageIOError::read_snapshot(None, e), e);
        let dir = self.shared.dir.clone();
        let source = snapshot.path.clone();
        let want = meta.last_log_id;
        let installed =
            tokio::task::spawn_blocking(move || -> Result<(Loaded, PathBuf), String> {
                let loaded = snapshot::read(&source)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("{} is damaged", source.display()))?;
                let got = loaded.meta.as_deref().and_then(decode_meta);
                if got.as_ref().map(|m| m.last_log_id) != Some(want) {
                    return Err(
                        "the snapshot's metadata does not match what the leader sent".into(),
                    );
                }
                let target = dir.join(crate::persist::file_name("snapshot", loaded.last_zxid));
                if source != target {
                    std::fs::rename(&source, &target).map_err(|e| e.to_string())?;
                    fjord_shared::fs::sync_dir(&dir).map_err(|e| e.to_string())?;
                }
                // Old snapshots beyond the newest two; a failure leaves files, not harm.
                if let Err(e) = snapshot::purge_old(&dir) {
                    tracing::warn!(error = %e, "cannot remove old snapshots");
                }
                Ok((loaded, target))
            })
            .await
            .map_err(|e| err(e.to_string()))?
            .map_err(err)?;
        let (loaded, target) = installed;
        tracing::info!(log_id = %super::show(&meta.last_log_id), nodes = loaded.tree.node_count(), "installing a snapshot from the leader");
        let meta2 = meta.clone();
        self.ask(|done| SmRequest::Install {
            loaded: Box::new(loaded),
            meta: meta2,
            done,
        })
        .await?;
        self.set_current(meta.clone(), target);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let cur = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(cur.map(|(meta, path)| Snapshot {
            snapshot: Box::new(SnapshotFile { path }),
            meta,
        }))
    }
}
