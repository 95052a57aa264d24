//! The leader fsyncs its own log while it replicates, and nothing acts on an entry before
//! the leader has it on disk.
//!
//! openraft 0.9 waits for each append of the leader's to be flushed before it sends the
//! entries to followers, so a write would cost two fsyncs one after the other (the
//! leader's, then a follower's). ZooKeeper's leader writes its log and sends the proposal
//! at the same time; so does ours: the log store reports the leader's own entries flushed
//! at once and fsyncs them in the background (`Done::Leader`), and openraft may then count
//! the leader in a quorum before its fsync is done.
//!
//! That is only safe if no one acts on such a commit early. Two gates see to it:
//! - [`DurableGate::wait`]: the state machine applies an entry (and so answers its client)
//!   only once this member's log has it on disk;
//! - [`DurableGate::clamp`]: the commit index sent to followers is never beyond what the
//!   leader has on disk, so followers apply nothing the leader could still lose.
//!
//! An entry is therefore applied anywhere only once the leader and the followers that
//! acknowledged it all have it on disk: a quorum, as before. If the leader dies before its
//! fsync, nobody applied or acknowledged the entry, and a new leader may drop it.
//!
//! When a commit was clamped, the followers learn the rest with a heartbeat as soon as the
//! leader's fsync finishes ([`DurableGate::announce`]).

use super::log_store::{Durable, LogStore};
use super::{LogId, Raft};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct DurableGate {
    log: LogStore,
    durable: watch::Receiver<Durable>,
    /// The highest commit index held back from followers since the last heartbeat.
    clamped: Arc<AtomicU64>,
}

impl std::fmt::Debug for DurableGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableGate")
            .field("durable", &*self.durable.borrow())
            .finish_non_exhaustive()
    }
}

impl DurableGate {
    pub fn new(log: &LogStore) -> DurableGate {
        DurableGate {
            log: log.clone(),
            durable: log.durable(),
            clamped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Waits until this member's log has every entry up to `index` on disk. Fails if the
    /// log can no longer be written.
    pub async fn wait(&self, index: u64) -> Result<(), &'static str> {
        let mut rx = self.durable.clone();
        let ok = match rx.wait_for(|d| d.failed || d.index >= index).await {
            Ok(d) => !d.failed,
            Err(_) => false,
        };
        if ok {
            Ok(())
        } else {
            Err("the Raft log cannot be written")
        }
    }

    /// The commit index to tell a follower: `commit`, or less if this member does not have
    /// that much on disk yet.
    pub fn clamp(&self, commit: Option<LogId>) -> Option<LogId> {
        let c = commit?;
        let d = *self.durable.borrow();
        if c.index <= d.index && !d.failed {
            return Some(c);
        }
        // Recorded before looking again: an fsync that lands after the second look finds
        // it in `announce`; one that landed before is seen here.
        self.clamped.fetch_max(c.index, Ordering::AcqRel);
        let d = *self.durable.borrow();
        if d.failed {
            return None;
        }
        if c.index <= d.index {
            return Some(c);
        }
        // Below `c`, so an entry this member has (or its purge point); if not, tell nothing.
        self.log.log_id_at(d.index)
    }

    /// Runs until Raft stops: after each fsync that covers a commit index held back from
    /// followers, a heartbeat tells them.
    pub async fn announce(self, raft: Raft) {
        let mut rx = self.durable.clone();
        while rx.changed().await.is_ok() {
            let d = *rx.borrow_and_update();
            let held = self.clamped.load(Ordering::Acquire);
            if held == 0 || d.index < held || d.failed {
                continue;
            }
            // Clears only what was seen: a larger commit held back meanwhile stays for the
            // next fsync.
            let _ = self
                .clamped
                .compare_exchange(held, 0, Ordering::AcqRel, Ordering::Acquire);
            if raft.trigger().heartbeat().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    #[tokio::test]
    async fn clamp_holds_the_commit_index_at_what_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open(dir.path(), 1).unwrap();
        let gate = DurableGate::new(&log);
        // An empty log: nothing on disk, so no commit index at all goes out.
        assert_eq!(gate.clamp(Some(id(3))), None);
        assert_eq!(gate.clamped.load(Ordering::Acquire), 3);
        assert_eq!(gate.clamp(None), None);
        gate.wait(0).await.unwrap();
    }
}
