//! The batch of encoded log records that the processor hands to the log thread in one go
//! (group commit).

use super::*;

/// A batch is handed to the log thread once it holds this many bytes, or once this many
/// requests were handled since it started, even if more requests are queued.
pub(super) const LOG_BATCH_BYTES: usize = 256 * 1024;
pub(super) const LOG_BATCH_MESSAGES: u32 = 64;

/// Framed log records for consecutive zxids, encoded in place (no allocation per record).
#[derive(Default)]
pub(super) struct LogBatch {
    pub(super) frames: Vec<u8>,
    pub(super) first: i64,
    pub(super) last: i64,
    /// Requests handled since the first record went in.
    pub(super) held: u32,
}

impl LogBatch {
    pub(super) fn push(&mut self, rec: &TxnRecord) {
        use fjord_shared::fs::FRAME_HEADER;
        let start = self.frames.len();
        self.frames.extend_from_slice(&[0; FRAME_HEADER]);
        if let Err(e) = rmp_serde::encode::write(&mut self.frames, rec) {
            // Our records always encode; if one ever did not, replies would wait forever on a
            // zxid that never becomes durable, which is the safe failure.
            tracing::error!(zxid = rec.zxid, error = %e, "cannot encode a transaction");
            self.frames.truncate(start);
            return;
        }
        let payload = &self.frames[start + FRAME_HEADER..];
        // Frames are bounded by the request size limit, far below 4 GiB.
        let len = payload.len() as u32;
        let crc = crc32c::crc32c(payload);
        self.frames[start..start + 4].copy_from_slice(&len.to_be_bytes());
        self.frames[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_be_bytes());
        if start == 0 {
            self.first = rec.zxid;
        }
        self.last = rec.zxid;
    }

    /// (first zxid, last zxid, frames), leaving the batch empty.
    pub(super) fn take(&mut self) -> Option<(i64, i64, Vec<u8>)> {
        if self.frames.is_empty() {
            return None;
        }
        let frames = std::mem::replace(&mut self.frames, Vec::with_capacity(4096));
        self.held = 0;
        Some((self.first, self.last, frames))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::{Txn, TxnRecord};
    use fjord_shared::fs::{read_frame, Frame};

    #[test]
    fn a_log_batch_holds_readable_frames_for_consecutive_zxids() {
        let mut batch = LogBatch::default();
        assert!(batch.take().is_none());
        let recs: Vec<TxnRecord> = (7..10)
            .map(|zxid| TxnRecord {
                zxid,
                time: 1,
                session: 2,
                txn: Txn::Delete {
                    path: format!("/n{zxid}"),
                },
            })
            .collect();
        for r in &recs {
            batch.push(r);
        }
        let (first, last, frames) = batch.take().unwrap();
        assert_eq!((first, last), (7, 9));
        let mut pos = 0;
        for r in &recs {
            let Frame::Ok { payload, next } = read_frame(&frames, pos, usize::MAX) else {
                panic!("no frame at {pos}")
            };
            assert_eq!(&rmp_serde::from_slice::<TxnRecord>(payload).unwrap(), r);
            pos = next;
        }
        assert_eq!(pos, frames.len());
        // Taking empties it; the next batch starts at its own first zxid.
        assert!(batch.take().is_none());
        batch.push(&recs[2]);
        assert_eq!(batch.take().map(|(f, l, _)| (f, l)), Some((9, 9)));
    }
}
