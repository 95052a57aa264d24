//! Idempotent producer state of one partition: per producer id, its epoch and the last
//! batches it wrote, so that a retried batch is acknowledged once and stored once.
//!
//! Rules (Kafka's `ProducerStateManager`, simplified to what idempotence needs):
//! - a batch whose sequence range matches one of the producer's last [`KEEP`] batches is a
//!   duplicate: it is answered with the offset it got the first time, and not stored;
//! - otherwise the first sequence must follow the last one stored (`last + 1`, wrapping
//!   at `i32::MAX`), else OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - an older epoch than the one seen is fenced (INVALID_PRODUCER_EPOCH); a newer epoch
//!   starts over, and must start at sequence 0;
//! - a producer we know nothing of (first batch, or state lost) is accepted as it comes.

use crate::log::batch;
use crate::log::manager::SharedPartitionLog;
use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer (Kafka keeps 5, the most a producer has in flight).
pub const KEEP: usize = 5;

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Store it.
    Append,
    /// Already stored at this base offset: acknowledge without storing.
    Duplicate {
        base_offset: i64,
    },
    OutOfOrder {
        expected: i32,
        got: i32,
    },
    Fenced {
        current_epoch: i16,
        got: i16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug, Default)]
struct Producer {
    epoch: i16,
    batches: VecDeque<Written>,
}

/// The table for one partition.
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, Producer>,
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX {
        0
    } else {
        s + 1
    }
}

impl ProducerStates {
    /// Decides what to do with a batch of `count` records from `(producer_id, epoch)`
    /// starting at `first_seq`.
    pub fn check(&self, producer_id: i64, epoch: i16, first_seq: i32, count: i32) -> Check {
        let Some(p) = self.producers.get(&producer_id) else {
            return Check::Append;
        };
        if epoch < p.epoch {
            return Check::Fenced {
                current_epoch: p.epoch,
                got: epoch,
            };
        }
        if epoch > p.epoch {
            return if first_seq == 0 {
                Check::Append
            } else {
                Check::OutOfOrder {
                    expected: 0,
                    got: first_seq,
                }
            };
        }
        let last_seq = first_seq.wrapping_add(count.max(1) - 1);
        if let Some(w) = p
            .batches
            .iter()
            .find(|w| w.first_seq == first_seq && w.last_seq == last_seq)
        {
            return Check::Duplicate {
                base_offset: w.base_offset,
            };
        }
        match p.batches.back() {
            Some(last) if first_seq != next_seq(last.last_seq) => Check::OutOfOrder {
                expected: next_seq(last.last_seq),
                got: first_seq,
            },
            _ => Check::Append,
        }
    }

    /// Records a stored batch.
    pub fn record(
        &mut self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        count: i32,
        base_offset: i64,
    ) {
        let p = self.producers.entry(producer_id).or_default();
        if epoch != p.epoch {
            p.epoch = epoch;
            p.batches.clear();
        }
        p.batches.push_back(Written {
            first_seq,
            last_seq: first_seq.wrapping_add(count.max(1) - 1),
            base_offset,
        });
        while p.batches.len() > KEEP {
            p.batches.pop_front();
        }
    }
}

/// How much of the newest log a restarted broker scans for idempotent producer state.
const PRODUCER_SCAN_BYTES: usize = 256 << 20;

/// Rebuilds idempotent producer state from the batch headers of the newest two segments
/// (at most [`PRODUCER_SCAN_BYTES`]), so that a producer retrying a batch that was stored
/// just before a crash is recognised after the restart instead of being stored twice.
pub fn rebuild_from_log(log: &SharedPartitionLog) -> ProducerStates {
    let mut states = ProducerStates::default();
    let Ok(log) = log.read() else { return states };
    let bases = log.segment_base_offsets();
    let start = log.log_start_offset();
    let from = bases
        .len()
        .checked_sub(2)
        .map_or(start, |i| bases[i])
        .max(start);
    let end = log.log_end_offset();
    let (mut offset, mut scanned) = (from, 0usize);
    while offset < end && scanned < PRODUCER_SCAN_BYTES {
        let Ok(fetched) = log.read(offset, 1 << 20, end) else {
            break;
        };
        if fetched.records.is_empty() || fetched.next_offset <= offset {
            break;
        }
        for b in batch::batches(&fetched.records) {
            let Ok(b) = b else { break };
            let Ok(h) = batch::BatchHeader::parse(&b) else {
                break;
            };
            if h.producer_id() >= 0 && h.base_offset() >= offset {
                states.record(
                    h.producer_id(),
                    h.producer_epoch(),
                    h.base_sequence(),
                    // The last offset delta, not the count: compaction may have
                    // removed records, but the sequence range stays (Kafka's rule).
                    h.last_offset_delta() + 1,
                    h.base_offset(),
                );
            }
        }
        scanned += fetched.records.len();
        offset = fetched.next_offset;
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_duplicates_and_gaps_are_out_of_order() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 3), Check::Append);
        s.record(7, 0, 0, 3, 100);
        assert_eq!(s.check(7, 0, 3, 2), Check::Append);
        s.record(7, 0, 3, 2, 103);
        // The first batch again: a retry.
        assert_eq!(s.check(7, 0, 0, 3), Check::Duplicate { base_offset: 100 });
        assert_eq!(s.check(7, 0, 3, 2), Check::Duplicate { base_offset: 103 });
        // A gap.
        assert_eq!(
            s.check(7, 0, 9, 1),
            Check::OutOfOrder {
                expected: 5,
                got: 9
            }
        );
        // Unknown producers are accepted.
        assert_eq!(s.check(8, 0, 42, 1), Check::Append);
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut s = ProducerStates::default();
        s.record(1, 2, 0, 1, 0);
        assert_eq!(
            s.check(1, 1, 1, 1),
            Check::Fenced {
                current_epoch: 2,
                got: 1
            }
        );
        assert_eq!(
            s.check(1, 3, 5, 1),
            Check::OutOfOrder {
                expected: 0,
                got: 5
            }
        );
        assert_eq!(s.check(1, 3, 0, 1), Check::Append);
        s.record(1, 3, 0, 1, 1);
        assert_eq!(s.check(1, 3, 0, 1), Check::Duplicate { base_offset: 1 });
    }

    #[test]
    fn only_the_last_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerStates::default();
        for i in 0..10 {
            s.record(1, 0, i, 1, i64::from(i));
        }
        assert_eq!(
            s.check(1, 0, 2, 1),
            Check::OutOfOrder {
                expected: 10,
                got: 2
            }
        );
        assert_eq!(s.check(1, 0, 9, 1), Check::Duplicate { base_offset: 9 });
        let mut w = ProducerStates::default();
        w.record(2, 0, i32::MAX, 1, 0);
        assert_eq!(w.check(2, 0, 0, 1), Check::Append);
    }
}
