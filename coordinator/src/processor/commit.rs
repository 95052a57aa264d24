//! The write pipeline's back half: log a transaction (into the current batch), apply it,
//! fire its watches; hand batches to the log thread; take snapshots in the background.

use super::*;

impl Processor {
    /// Logs a transaction, applies it, fires its watches. Returns its zxid and outcomes.
    pub(super) fn commit(&mut self, session: i64, txn: Txn) -> (i64, Vec<OpOutcome>) {
        let zxid = self.state.last_zxid + 1;
        let rec = TxnRecord {
            zxid,
            time: wall_ms(),
            session,
            txn,
        };
        self.batch.push(&rec);
        if self.batch.frames.len() >= LOG_BATCH_BYTES {
            self.flush_log();
        }
        let now = self.now();
        let (changes, outcomes) = txn::apply(&mut self.state, &rec, now);
        for change in &changes {
            for n in self.watches.trigger(change) {
                let bytes = notification(n.event_type, &n.path);
                self.send(n.conn, zxid, bytes, None);
            }
        }
        self.since_snapshot += 1;
        self.maybe_snapshot();
        (zxid, outcomes)
    }

    pub(super) fn maybe_snapshot(&mut self) {
        if self.since_snapshot < self.cfg.snapshot_txns {
            return;
        }
        let Some(s) = &self.snapshotter else { return };
        // O(1) for the tree (a shared view, copied on write) plus the session list.
        let job = SnapshotJob {
            last_zxid: self.state.last_zxid,
            tree: self.state.tree.view(),
            sessions: self
                .state
                .sessions
                .iter()
                .map(|s| SnapSession {
                    id: s.id,
                    timeout_ms: s.timeout_ms,
                    passwd: s.passwd,
                })
                .collect(),
        };
        // One snapshot at a time: if the writer is busy, try again after the next write.
        if s.tx.try_send(job).is_ok() {
            self.since_snapshot = 0;
            // The new log file starts right after the snapshot's last zxid.
            self.flush_log();
            if let Some(log) = &self.log {
                let _ = log.tx.send(LogCmd::Roll);
            }
        }
    }

    /// Hands the records logged so far to the log thread. Called before the processor waits
    /// for requests (replies wait for these records to be durable), after a snapshot point,
    /// and when the batch is large.
    pub(super) fn flush_log(&mut self) {
        let Some((first, last, frames)) = self.batch.take() else {
            return;
        };
        if let Some(log) = &self.log {
            if log
                .tx
                .send(LogCmd::Append {
                    first,
                    last,
                    frames,
                })
                .is_err()
            {
                tracing::error!(
                    zxid = last,
                    "the transaction log thread is gone; nothing more will be acknowledged"
                );
            }
        }
    }
}
