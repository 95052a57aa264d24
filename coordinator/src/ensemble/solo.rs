//! A standalone member: the only voter of its ensemble, with no Raft round trips.
//!
//! With one voter, Raft's commit rule reduces to "on this member's disk": an entry is
//! committed once its fsync returns. openraft still costs a thread hand-off or two per
//! entry and its own bookkeeping, which on a small machine was about a third of a write's
//! CPU and a tenth of its latency; so a standalone member whose membership names only
//! itself drives the log itself: proposals go into an entry, the entry into the log's
//! group commit, and once it is on disk the I/O thread hands it straight to the processor,
//! which applies it with the same code as every member of an ensemble.
//!
//! What it writes is what openraft would have written: the initial membership entry of a
//! new directory, a committed vote of a new term on each start, that term's blank entry,
//! then entries of proposals, the committed log id, snapshots with Raft's metadata and the
//! purge points after them. The directory can later start as the first member of an
//! ensemble (see `member::grow`), which then runs Raft over the same log.

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::{
    network::Identity, Batch, Entry, LogId, Membership, Origin, Outbound, Proposal, Vote, MAX_BATCH,
};
use crate::metrics::stats::STATS;
use crate::processor::Msg;
use anyhow::Context;
use fjord_shared::jute::ErrorCode;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader, RaftSnapshotBuilder};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use tokio::sync::mpsc::UnboundedReceiver;

/// Entries handed to the processor at once while catching up on start.
const REPLAY_CHUNK: usize = 1024;
/// Proposals that make the processor hand an entry over even if its queue is not empty.
const FLUSH_AT: usize = 1024;

/// The processor's side of a standalone member: the proposals of one round of the
/// processor (everything it handled before its queue ran empty) become one entry. Lives on
/// the processor thread, hence the cells.
pub struct Appender {
    me: u64,
    term: u64,
    /// Index of the last entry handed to the log.
    last: Cell<u64>,
    pending: RefCell<Vec<Proposal>>,
    log: LogStore,
    processor: mpsc::Sender<Msg>,
    identity: Arc<Identity>,
}

/// The rest of a standalone member: snapshots and the requests it refuses.
pub struct Control {
    log: LogStore,
    sm: StateMachine,
    processor: mpsc::Sender<Msg>,
    /// Entries kept in the log behind a snapshot.
    keep: u64,
    snapshotting: Arc<AtomicBool>,
}

/// Prepares a standalone member if its membership names only itself (or the directory is
/// new): writes what a new term starts with, has the processor apply every entry after its
/// snapshot, and gives the processor its [`Appender`]. `None` if the membership names other
/// members: such a directory belongs to an ensemble, and only Raft may decide what in its
/// log is committed.
pub async fn prepare(
    me: u64,
    nodes: BTreeMap<u64, openraft::BasicNode>,
    mut log: LogStore,
    mut sm: StateMachine,
    processor: mpsc::Sender<Msg>,
    identity: Arc<Identity>,
    keep: u64,
) -> anyhow::Result<Option<Control>> {
    let (applied, mut membership) = sm.applied_state().await?;
    let (vote, mut last, _) = log.state();
    let from = applied.map_or(0, |l| l.index + 1);
    let mut pending = if last.is_some_and(|l| l.index >= from) {
        log.try_get_log_entries(from..).await?
    } else {
        Vec::new()
    };
    for e in &pending {
        if let EntryPayload::Membership(m) = &e.payload {
            membership = openraft::StoredMembership::new(Some(e.log_id), m.clone());
        }
    }
    let voters: BTreeSet<u64> = membership.membership().voter_ids().collect();
    let fresh = last.is_none() && applied.is_none();
    if fresh {
        // A new directory: the entry openraft's `initialize` writes.
        let voters: BTreeSet<u64> = [me].into();
        let first = Entry {
            log_id: LogId::default(),
            payload: EntryPayload::Membership(Membership::new(vec![voters], nodes)),
        };
        append_synced(&log, vec![first.clone()]).await?;
        pending.push(first);
        tracing::info!(member = me, "initialized a new standalone member");
        last = Some(LogId::default());
    } else if voters != BTreeSet::from([me]) {
        return Ok(None);
    }
    // A new term, as an election this member alone votes in would give it.
    let term = vote.map_or(0, |v| v.leader_id().get_term()) + 1;
    log.save_vote(&Vote::new_committed(term, me)).await?;
    let next = last.map_or(0, |l| l.index) + 1;
    let blank = Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, me), next),
        payload: EntryPayload::Blank,
    };
    append_synced(&log, vec![blank.clone()]).await?;
    pending.push(blank);
    // Everything in the log is committed: this member is the only voter, and an entry is
    // in the log (past a torn tail, which recovery cut) only once it was written whole.
    let replayed = pending.len();
    while !pending.is_empty() {
        let rest = pending.split_off(pending.len().min(REPLAY_CHUNK));
        sm.apply(std::mem::replace(&mut pending, rest)).await?;
    }
    let last_id = log.state().1;
    log.set_committed(last_id);
    let appender = Appender {
        me,
        term,
        last: Cell::new(next),
        pending: RefCell::new(Vec::new()),
        log: log.clone(),
        processor: processor.clone(),
        identity,
    };
    // Proposing and leading before the first client connects.
    let _ = processor.send(Msg::Solo(Box::new(appender)));
    let _ = processor.send(Msg::Role {
        leader: Some(me),
        term,
        followers: 0,
        synced: 0,
    });
    STATS.quorum_size.store(1, Ordering::Relaxed);
    tracing::info!(
        term,
        replayed,
        last = next,
        "standalone member: the only voter, committing on its own fsync"
    );
    Ok(Some(Control {
        log,
        sm,
        processor,
        keep,
        snapshotting: Arc::new(AtomicBool::new(false)),
    }))
}

/// Appends and waits until the entries are on disk.
async fn append_synced(log: &LogStore, entries: Vec<Entry>) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    log.append_then(
        entries,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )?;
    rx.await
        .context("the log thread stopped")?
        .context("cannot write the log")
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("term", &self.term)
            .field("last", &self.last.get())
            .finish_non_exhaustive()
    }
}

impl Appender {
    /// Queues a proposal for the next entry.
    pub fn push(&self, p: Proposal) {
        let full = {
            let mut pending = self.pending.borrow_mut();
            pending.push(p);
            pending.len() >= FLUSH_AT
        };
        if full {
            self.flush();
        }
    }

    /// A client's sync: everything proposed before it goes to the log, and the processor
    /// answers it once it has applied that far.
    pub fn sync(&self, origin: Origin) {
        self.flush();
        let _ = self.processor.send(Msg::SyncReady {
            origins: vec![origin],
            index: self.last.get(),
        });
    }

    /// Hands the queued proposals to the log as entries; once they are on disk, the I/O
    /// thread passes them to the processor.
    pub fn flush(&self) {
        let mut proposals = std::mem::take(&mut *self.pending.borrow_mut());
        if proposals.is_empty() {
            return;
        }
        let mut entries = Vec::with_capacity(proposals.len().div_ceil(MAX_BATCH));
        while !proposals.is_empty() {
            let rest = proposals.split_off(proposals.len().min(MAX_BATCH));
            let index = self.last.get() + 1;
            self.last.set(index);
            entries.push(Entry {
                log_id: LogId::new(CommittedLeaderId::new(self.term, self.me), index),
                payload: EntryPayload::Normal(Batch(std::mem::replace(&mut proposals, rest))),
            });
        }
        let last_id = entries.last().map(|e| e.log_id);
        let handed = entries.clone();
        let (processor, identity, log) = (
            self.processor.clone(),
            self.identity.clone(),
            self.log.clone(),
        );
        let then = Box::new(move |r: std::io::Result<()>| match r {
            Ok(()) => {
                log.set_committed(last_id);
                let (done, _) = tokio::sync::oneshot::channel();
                let _ = processor.send(Msg::Sm(super::state_machine::SmRequest::Apply {
                    entries: handed,
                    done,
                }));
            }
            Err(e) => {
                let _ = processor.send(Msg::Failed);
                identity.fail(format!("the log cannot be written: {e}"));
            }
        });
        if let Err(e) = self.log.append_then(entries.clone(), then) {
            let origins = entries.iter().filter_map(|e| match &e.payload {
                EntryPayload::Normal(b) => Some(b.0.iter().filter_map(|p| p.origin)),
                _ => None,
            });
            for origin in origins.flatten() {
                let _ = self.processor.send(Msg::Rejected {
                    origin,
                    reason: e.to_string(),
                });
            }
        }
    }
}

impl Control {
    /// Runs until the processor's side of the channel is gone. Proposals and syncs do not
    /// come this way (see [`Appender`]).
    pub async fn run(mut self, mut rx: UnboundedReceiver<Outbound>) {
        while let Some(o) = rx.recv().await {
            match o {
                Outbound::Snapshot => self.snapshot(),
                Outbound::Reconfig { origin, .. } => {
                    // As ZooKeeper's standalone server answers it.
                    let _ = self.processor.send(Msg::ReconfigDone {
                        origin,
                        result: Err((
                            ErrorCode::Unimplemented.code(),
                            "a standalone coordinator cannot change its members; start it \
                             with --peers to run an ensemble"
                                .into(),
                        )),
                    });
                }
                // Keep-alives of sessions on other members: there are none.
                Outbound::Touch(_) => {}
                Outbound::Propose(p) => {
                    if let Some(origin) = p.origin {
                        let _ = self.processor.send(Msg::Rejected {
                            origin,
                            reason: "proposed before the member was ready".into(),
                        });
                    }
                }
                Outbound::Sync(origin) => {
                    let _ = self.processor.send(Msg::SyncFailed {
                        origins: vec![origin],
                        reason: "synced before the member was ready".into(),
                    });
                }
            }
        }
    }

    /// Writes a snapshot in the background (one at a time), then drops the log behind it
    /// but for the last [`Control::keep`] entries.
    fn snapshot(&mut self) {
        if self.snapshotting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (mut sm, mut log, flag, keep) = (
            self.sm.clone(),
            self.log.clone(),
            self.snapshotting.clone(),
            self.keep,
        );
        tokio::spawn(async move {
            match sm.build_snapshot().await {
                Ok(snap) => {
                    let upto = snap
                        .meta
                        .last_log_id
                        .and_then(|l| l.index.checked_sub(keep))
                        .and_then(|i| log.log_id_at(i));
                    if let Some(id) = upto {
                        if let Err(e) = log.purge(id).await {
                            tracing::warn!(error = %e, "cannot purge the log after a snapshot");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot write a snapshot"),
            }
            flag.store(false, Ordering::Release);
        });
    }
}
