//! Kafka record batches (message format v2): a zero-copy header view, the validator used
//! on append and on recovery, the two header patches a leader makes, and splitting a
//! produce payload (the `records` field: concatenated batches) into batches.
//!
//! The broker never decodes records on the produce, replicate or fetch paths: batches are
//! stored exactly as the producer sent them. Layout (big-endian, Kafka's
//! `DefaultRecordBatch`):
//!
//! | bytes  | field                  | notes                                        |
//! |--------|------------------------|----------------------------------------------|
//! | 0..8   | base offset            | assigned by the leader (patched)             |
//! | 8..12  | batch length           | bytes after this field                       |
//! | 12..16 | partition leader epoch | stamped by the leader (patched)              |
//! | 16     | magic                  | 2                                            |
//! | 17..21 | CRC-32C                | over bytes 21..end                           |
//! | 21..23 | attributes             | compression (bits 0-2), timestamp type (3), transactional (4), control (5), delete horizon (6) |
//! | 23..27 | last offset delta      |                                              |
//! | 27..35 | base timestamp         |                                              |
//! | 35..43 | max timestamp          |                                              |
//! | 43..51 | producer id            |                                              |
//! | 51..53 | producer epoch         |                                              |
//! | 53..57 | base sequence          |                                              |
//! | 57..61 | record count           |                                              |
//! | 61..   | records                | varint-framed, possibly compressed           |
//!
//! Because the CRC starts at the attributes, the leader can rewrite the base offset and
//! the partition leader epoch without recomputing it.
//!
//! The one writer of new batches is the log cleaner ([`encode_batch`]), which rewrites
//! batches it removed records from. Kafka's delete-horizon attribute (bit 6, KIP-534)
//! marks a batch whose base timestamp holds the time after which its tombstones may be
//! removed; record timestamps stay correct because their deltas are relative to it.

use bytes::Bytes;

/// Bytes before the batch length field ends: base offset (8) + batch length (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed v2 batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// The only message format stored: v2 (Kafka 0.11+).
pub const MAGIC_V2: u8 = 2;
/// The timestamp of a batch without one (Kafka's `RecordBatch.NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;
/// Bytes of the prefix the leader patches: base offset, batch length, leader epoch.
pub const PATCHED_PREFIX_LEN: usize = 16;

const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;
/// The smallest legal value of the batch length field (a batch with no records).
const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - LOG_OVERHEAD) as i32;
/// The smallest encoded record: length, attributes, timestamp delta, offset delta, key
/// length, value length and header count, one byte each.
const MIN_RECORD_LEN: usize = 7;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_MASK: i16 = 0x08;
const TRANSACTIONAL_MASK: i16 = 0x10;
const CONTROL_MASK: i16 = 0x20;
/// Attribute bit: the base timestamp is the delete horizon (KIP-534).
pub(crate) const DELETE_HORIZON_MASK: i16 = 0x40;
/// Attribute bits a batch without records keeps (Kafka's `writeEmptyHeader`).
pub(crate) const EMPTY_BATCH_ATTRIBUTES_MASK: i16 =
    TIMESTAMP_TYPE_MASK | TRANSACTIONAL_MASK | CONTROL_MASK;

/// Why bytes are not a valid v2 record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the header or the length field promise.
    #[error("truncated batch: needed {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    /// Message formats v0 and v1 (and garbage) are refused.
    #[error("unsupported message format magic {0} (only v2 is accepted)")]
    UnsupportedMagic(u8),
    /// The length field is smaller than a v2 header.
    #[error("batch length field {length} is below the v2 minimum of {MIN_BATCH_LENGTH}")]
    InvalidBatchLength { length: i32 },
    /// The length field and the bytes given disagree.
    #[error("batch length field says {expected} bytes but the batch has {actual}")]
    LengthMismatch { expected: usize, actual: usize },
    /// The stored CRC-32C does not match the bytes.
    #[error("corrupt batch: stored CRC {expected:#010x}, computed {actual:#010x}")]
    CorruptCrc { expected: u32, actual: u32 },
    /// The record count is negative, zero where records are required, or more records
    /// than the bytes can hold.
    #[error("invalid record count {count}")]
    InvalidRecordCount { count: i32 },
    /// The last offset delta disagrees with the record count.
    #[error("last offset delta {last_offset_delta} does not match record count {count}")]
    InvalidLastOffsetDelta { last_offset_delta: i32, count: i32 },
    /// The records of an uncompressed batch are not `count` length-prefixed records.
    #[error("records do not match the header: {reason}")]
    InvalidRecords { reason: &'static str },
    /// A record without a key sent to a compacted topic (Kafka answers INVALID_RECORD).
    #[error("compacted topics accept only records with a key")]
    MissingKey,
}

/// A zero-copy view of a v2 batch header: fields are read from the bytes on demand.
///
/// Parsing checks only that the header is there, the magic is 2 and the length field is
/// plausible; use [`validate`] for the CRC and the counts.
#[derive(Clone, Copy, Debug)]
pub struct BatchHeader<'a> {
    buf: &'a [u8],
}

impl<'a> BatchHeader<'a> {
    /// Views the header at the start of `buf` (which may hold more than the header).
    pub fn parse(buf: &'a [u8]) -> Result<BatchHeader<'a>, BatchError> {
        if let Some(&magic) = buf.get(MAGIC) {
            if magic != MAGIC_V2 {
                return Err(BatchError::UnsupportedMagic(magic));
            }
        }
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let header = BatchHeader { buf };
        let length = header.batch_length();
        if length < MIN_BATCH_LENGTH {
            return Err(BatchError::InvalidBatchLength { length });
        }
        Ok(header)
    }

    fn i16_at(&self, at: usize) -> i16 {
        i16::from_be_bytes([self.buf[at], self.buf[at + 1]])
    }

    fn i32_at(&self, at: usize) -> i32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.buf[at..at + 4]);
        i32::from_be_bytes(b)
    }

    fn i64_at(&self, at: usize) -> i64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buf[at..at + 8]);
        i64::from_be_bytes(b)
    }

    /// Offset of the first record.
    pub fn base_offset(&self) -> i64 {
        self.i64_at(0)
    }

    /// The length field: bytes after it.
    pub fn batch_length(&self) -> i32 {
        self.i32_at(BATCH_LENGTH)
    }

    /// Size of the whole batch in bytes, length field included.
    pub fn size_in_bytes(&self) -> usize {
        // `parse` checked the length is at least the minimum, so it is positive.
        LOG_OVERHEAD + self.batch_length().max(0) as usize
    }

    /// The leader epoch stamped by the partition leader (-1 if none).
    pub fn partition_leader_epoch(&self) -> i32 {
        self.i32_at(PARTITION_LEADER_EPOCH)
    }

    /// The format version; always 2 for a parsed header.
    pub fn magic(&self) -> u8 {
        self.buf[MAGIC]
    }

    /// The stored CRC-32C.
    pub fn crc(&self) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.buf[CRC..CRC + 4]);
        u32::from_be_bytes(b)
    }

    /// The raw attributes.
    pub fn attributes(&self) -> i16 {
        self.i16_at(ATTRIBUTES)
    }

    /// Compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes() & COMPRESSION_MASK) as u8
    }

    /// True if the records are compressed.
    pub fn is_compressed(&self) -> bool {
        self.compression() != 0
    }

    /// True if timestamps are the broker's append time rather than the producer's.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & TIMESTAMP_TYPE_MASK != 0
    }

    /// True for a transactional batch.
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_MASK != 0
    }

    /// True for a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_MASK != 0
    }

    /// The delete horizon the log cleaner set (KIP-534): once the clock passes it, the
    /// batch's tombstones may be removed. Stored in the base timestamp field.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes() & DELETE_HORIZON_MASK != 0).then(|| self.base_timestamp())
    }

    /// Offset of the last record relative to the base offset.
    pub fn last_offset_delta(&self) -> i32 {
        self.i32_at(LAST_OFFSET_DELTA)
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }

    /// Timestamp of the first record.
    pub fn base_timestamp(&self) -> i64 {
        self.i64_at(BASE_TIMESTAMP)
    }

    /// Largest timestamp in the batch.
    pub fn max_timestamp(&self) -> i64 {
        self.i64_at(MAX_TIMESTAMP)
    }

    /// Idempotent/transactional producer id (-1 if none).
    pub fn producer_id(&self) -> i64 {
        self.i64_at(PRODUCER_ID)
    }

    /// Producer epoch (-1 if none).
    pub fn producer_epoch(&self) -> i16 {
        self.i16_at(PRODUCER_EPOCH)
    }

    /// Sequence number of the first record (-1 if none).
    pub fn base_sequence(&self) -> i32 {
        self.i32_at(BASE_SEQUENCE)
    }

    /// Number of records.
    pub fn record_count(&self) -> i32 {
        self.i32_at(RECORDS_COUNT)
    }
}

/// Validates one whole batch (exactly its bytes): magic, length, CRC-32C, record count,
/// last offset delta, and for uncompressed batches that the records section is exactly
/// `count` length-prefixed records. This is what recovery checks and what a follower's
/// append checks.
pub fn validate(batch: &[u8]) -> Result<BatchHeader<'_>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let size = header.size_in_bytes();
    if batch.len() < size {
        return Err(BatchError::Truncated {
            needed: size,
            available: batch.len(),
        });
    }
    if batch.len() != size {
        return Err(BatchError::LengthMismatch {
            expected: size,
            actual: batch.len(),
        });
    }
    let actual = crc32c::crc32c(&batch[ATTRIBUTES..]);
    if actual != header.crc() {
        return Err(BatchError::CorruptCrc {
            expected: header.crc(),
            actual,
        });
    }
    let count = header.record_count();
    let records = &batch[HEADER_LEN..];
    if count < 0 {
        return Err(BatchError::InvalidRecordCount { count });
    }
    let delta = header.last_offset_delta();
    // A batch never holds more records than offsets (compaction may leave fewer).
    if delta < 0 || i64::from(delta) < i64::from(count) - 1 {
        return Err(BatchError::InvalidLastOffsetDelta {
            last_offset_delta: delta,
            count,
        });
    }
    if !header.is_compressed() {
        if (count as usize).saturating_mul(MIN_RECORD_LEN) > records.len() {
            return Err(BatchError::InvalidRecordCount { count });
        }
        check_record_framing(records, count)?;
    }
    Ok(header)
}

/// [`validate`] plus what a leader requires of a producer's batch: at least one record,
/// and `last offset delta = count - 1` (producers number records densely; this is what
/// lets the leader assign offsets from the header alone).
pub fn validate_producer_batch(batch: &[u8]) -> Result<BatchHeader<'_>, BatchError> {
    let header = validate(batch)?;
    let count = header.record_count();
    if count < 1 {
        return Err(BatchError::InvalidRecordCount { count });
    }
    if i64::from(header.last_offset_delta()) != i64::from(count) - 1 {
        return Err(BatchError::InvalidLastOffsetDelta {
            last_offset_delta: header.last_offset_delta(),
            count,
        });
    }
    Ok(header)
}

/// Walks the length prefixes of `count` records and checks they tile `records` exactly.
/// No allocation: one varint read per record.
fn check_record_framing(records: &[u8], count: i32) -> Result<(), BatchError> {
    let mut pos = 0usize;
    for _ in 0..count {
        let (len, n) = read_varint(&records[pos..]).ok_or(BatchError::InvalidRecords {
            reason: "bad record length varint",
        })?;
        if len < 0 {
            return Err(BatchError::InvalidRecords {
                reason: "negative record length",
            });
        }
        pos = pos.saturating_add(n).saturating_add(len as usize);
        if pos > records.len() {
            return Err(BatchError::InvalidRecords {
                reason: "record runs past the end of the batch",
            });
        }
    }
    if pos != records.len() {
        return Err(BatchError::InvalidRecords {
            reason: "bytes left after the last record",
        });
    }
    Ok(())
}

/// Rewrites the base offset and the partition leader epoch in place. Both lie outside
/// the CRC, so the batch stays valid.
pub fn patch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) -> Result<(), BatchError> {
    if batch.len() < PATCHED_PREFIX_LEN {
        return Err(BatchError::Truncated {
            needed: PATCHED_PREFIX_LEN,
            available: batch.len(),
        });
    }
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
    Ok(())
}

/// The first [`PATCHED_PREFIX_LEN`] bytes of `header`'s batch with the base offset and the
/// leader epoch replaced: written in front of the untouched rest of the batch, this
/// stores a patched batch without copying it (a vectored write).
pub fn patched_prefix(
    header: &BatchHeader<'_>,
    base_offset: i64,
    leader_epoch: i32,
) -> [u8; PATCHED_PREFIX_LEN] {
    let mut prefix = [0u8; PATCHED_PREFIX_LEN];
    prefix[..8].copy_from_slice(&base_offset.to_be_bytes());
    prefix[8..12].copy_from_slice(&header.buf[BATCH_LENGTH..BATCH_LENGTH + 4]);
    prefix[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    prefix
}

/// Splits a produce payload into its batches (zero-copy `Bytes` slices). Checks framing
/// only (magic and length fields); validate each batch separately.
pub fn batches(records: &Bytes) -> Batches {
    Batches {
        records: records.clone(),
        pos: 0,
    }
}

/// Collects [`batches`] into a vector, failing on the first framing error.
pub fn split_batches(records: &Bytes) -> Result<Vec<Bytes>, BatchError> {
    batches(records).collect()
}

/// Iterator over the batches of a payload; see [`batches`]. After an error it ends.
#[derive(Debug, Clone)]
pub struct Batches {
    records: Bytes,
    pos: usize,
}

impl Iterator for Batches {
    type Item = Result<Bytes, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.records.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let result = match BatchHeader::parse(rest) {
            Ok(header) => {
                let size = header.size_in_bytes();
                if size > rest.len() {
                    Err(BatchError::Truncated {
                        needed: size,
                        available: rest.len(),
                    })
                } else {
                    let batch = self.records.slice(self.pos..self.pos + size);
                    self.pos += size;
                    return Some(Ok(batch));
                }
            }
            Err(e) => Err(e),
        };
        self.pos = self.records.len();
        Some(result)
    }
}

/// The header fields of a batch the broker writes itself (the log cleaner's rewrites).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NewBatch {
    pub base_offset: i64,
    pub leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

/// Appends a v2 batch with header `h` and the (already encoded, possibly compressed)
/// records section `records` to `out`, computing the length and the CRC-32C.
pub(crate) fn encode_batch(h: &NewBatch, records: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let length = i32::try_from(HEADER_LEN - LOG_OVERHEAD + records.len()).unwrap_or(i32::MAX);
    out.reserve(HEADER_LEN + records.len());
    out.extend_from_slice(&h.base_offset.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&h.leader_epoch.to_be_bytes());
    out.push(MAGIC_V2);
    out.extend_from_slice(&[0; 4]); // the CRC, filled in below
    out.extend_from_slice(&h.attributes.to_be_bytes());
    out.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&h.base_timestamp.to_be_bytes());
    out.extend_from_slice(&h.max_timestamp.to_be_bytes());
    out.extend_from_slice(&h.producer_id.to_be_bytes());
    out.extend_from_slice(&h.producer_epoch.to_be_bytes());
    out.extend_from_slice(&h.base_sequence.to_be_bytes());
    out.extend_from_slice(&h.record_count.to_be_bytes());
    out.extend_from_slice(records);
    let crc = crc32c::crc32c(&out[start + ATTRIBUTES..]);
    out[start + CRC..start + CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Appends a zigzag varlong.
pub(crate) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut z = ((value << 1) ^ (value >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Appends a zigzag varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_varlong(out, i64::from(value));
}

/// Reads a zigzag varlong; returns the value and the bytes used.
pub(crate) fn read_varlong(buf: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(i)?;
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let value = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            return Some((value, i + 1));
        }
    }
    None
}

/// Reads a zigzag varint (at most 5 bytes, must fit an i32).
pub(crate) fn read_varint(buf: &[u8]) -> Option<(i32, usize)> {
    let (value, n) = read_varlong(buf.get(..buf.len().min(5))?)?;
    Some((i32::try_from(value).ok()?, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::records::RecordPosition;
    use crate::log::test_util::{encode_batch, simple_batch, TestBatch};

    #[test]
    fn header_fields_read_back() {
        let b = encode_batch(&TestBatch {
            base_offset: 42,
            leader_epoch: 7,
            producer_id: 1234,
            producer_epoch: 3,
            base_sequence: 9,
            records: vec![(1000, b"a".to_vec()), (1500, b"bb".to_vec())],
            ..TestBatch::default()
        });
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset(), 42);
        assert_eq!(h.size_in_bytes(), b.len());
        assert_eq!(h.batch_length() as usize, b.len() - LOG_OVERHEAD);
        assert_eq!(h.partition_leader_epoch(), 7);
        assert_eq!(h.magic(), 2);
        assert_eq!(h.attributes(), 0);
        assert!(!h.is_compressed() && !h.is_transactional() && !h.is_control());
        assert_eq!(h.last_offset_delta(), 1);
        assert_eq!(h.last_offset(), 43);
        assert_eq!(h.base_timestamp(), 1000);
        assert_eq!(h.max_timestamp(), 1500);
        assert_eq!(h.producer_id(), 1234);
        assert_eq!(h.producer_epoch(), 3);
        assert_eq!(h.base_sequence(), 9);
        assert_eq!(h.record_count(), 2);
        let positions = crate::log::records::record_times(&b);
        assert_eq!(
            positions,
            vec![
                RecordPosition {
                    offset: 42,
                    timestamp: 1000
                },
                RecordPosition {
                    offset: 43,
                    timestamp: 1500
                }
            ]
        );
    }

    #[test]
    fn corrupt_crc_is_detected() {
        let mut b = simple_batch(3, 100, 10).to_vec();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(
            validate(&b),
            Err(BatchError::CorruptCrc { expected, actual }) if expected != actual
        ));
        // A flipped attribute bit is inside the CRC too.
        let mut b = simple_batch(3, 100, 10).to_vec();
        b[ATTRIBUTES + 1] ^= 0x10;
        assert!(matches!(validate(&b), Err(BatchError::CorruptCrc { .. })));
    }

    #[test]
    fn wrong_magic_is_refused() {
        for magic in [0u8, 1, 3, 0xff] {
            let mut b = simple_batch(1, 100, 10).to_vec();
            b[MAGIC] = magic;
            assert_eq!(
                validate(&b).unwrap_err(),
                BatchError::UnsupportedMagic(magic)
            );
            let payload = Bytes::from(b);
            assert_eq!(
                split_batches(&payload).unwrap_err(),
                BatchError::UnsupportedMagic(magic)
            );
        }
    }

    #[test]
    fn truncated_batches_are_refused() {
        let b = simple_batch(2, 100, 10);
        for cut in [0, 5, 16, 17, 40, HEADER_LEN, b.len() - 1] {
            let err = validate(&b[..cut]).unwrap_err();
            assert!(
                matches!(err, BatchError::Truncated { available, .. } if available == cut),
                "cut {cut}: {err:?}"
            );
        }
        // In a payload, a whole batch followed by a torn one fails on the second.
        let mut two = b.to_vec();
        two.extend_from_slice(&b[..b.len() - 3]);
        let mut it = batches(&Bytes::from(two));
        assert_eq!(it.next().unwrap().unwrap(), b);
        assert_eq!(
            it.next().unwrap().unwrap_err(),
            BatchError::Truncated {
                needed: b.len(),
                available: b.len() - 3
            }
        );
        assert!(it.next().is_none());
    }

    #[test]
    fn lengths_and_counts_are_checked() {
        // Length field too small.
        let mut b = simple_batch(1, 100, 10).to_vec();
        b[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(
            validate(&b).unwrap_err(),
            BatchError::InvalidBatchLength { length: 10 }
        );
        // Extra bytes after the batch.
        let mut b = simple_batch(1, 100, 10).to_vec();
        b.push(0);
        assert!(matches!(
            validate(&b).unwrap_err(),
            BatchError::LengthMismatch { .. }
        ));
        // Negative and impossible counts (re-CRC'd so the count check is what fails).
        for count in [-1i32, 1000] {
            let mut b = simple_batch(2, 100, 10).to_vec();
            b[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&count.to_be_bytes());
            fix_crc(&mut b);
            let err = validate(&b).unwrap_err();
            assert!(
                matches!(
                    err,
                    BatchError::InvalidRecordCount { .. }
                        | BatchError::InvalidLastOffsetDelta { .. }
                ),
                "{err:?}"
            );
        }
        // A count that does not match the record framing.
        let mut b = simple_batch(3, 100, 10).to_vec();
        b[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&2i32.to_be_bytes());
        fix_crc(&mut b);
        assert!(matches!(
            validate(&b).unwrap_err(),
            BatchError::InvalidRecords { .. }
        ));
        // Producer batches need delta = count - 1 and at least one record.
        let mut b = simple_batch(3, 100, 10).to_vec();
        b[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&5i32.to_be_bytes());
        fix_crc(&mut b);
        assert!(validate(&b).is_ok(), "a follower accepts gaps");
        assert_eq!(
            validate_producer_batch(&b).unwrap_err(),
            BatchError::InvalidLastOffsetDelta {
                last_offset_delta: 5,
                count: 3
            }
        );
        let empty = encode_batch(&TestBatch::default());
        assert!(validate(&empty).is_ok());
        assert_eq!(
            validate_producer_batch(&empty).unwrap_err(),
            BatchError::InvalidRecordCount { count: 0 }
        );
    }

    #[test]
    fn compressed_batches_are_not_parsed() {
        let b = encode_batch(&TestBatch {
            attributes: 1, // gzip: the records section is opaque to the broker
            opaque_records: Some((4, vec![0xAB; 30])),
            ..TestBatch::default()
        });
        let h = validate_producer_batch(&b).unwrap();
        assert!(h.is_compressed());
        assert_eq!(h.record_count(), 4);
        assert!(crate::log::records::record_times(&b).is_empty());
    }

    #[test]
    fn patching_keeps_the_crc_valid() {
        let original = simple_batch(5, 100, 20);
        let mut b = original.to_vec();
        patch(&mut b, 1_000_000_007, 42).unwrap();
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset(), 1_000_000_007);
        assert_eq!(h.partition_leader_epoch(), 42);
        assert_eq!(h.last_offset(), 1_000_000_011);
        assert_eq!(h.crc(), BatchHeader::parse(&original).unwrap().crc());
        assert_eq!(&b[PATCHED_PREFIX_LEN..], &original[PATCHED_PREFIX_LEN..]);
        // The vectored form produces the same bytes.
        let prefix = patched_prefix(&BatchHeader::parse(&original).unwrap(), 1_000_000_007, 42);
        assert_eq!(&prefix[..], &b[..PATCHED_PREFIX_LEN]);
        assert!(patch(&mut [0u8; 4], 0, 0).is_err());
    }

    #[test]
    fn split_yields_zero_copy_slices() {
        let a = simple_batch(2, 100, 10);
        let b = simple_batch(3, 200, 5);
        let mut payload = a.to_vec();
        payload.extend_from_slice(&b);
        let payload = Bytes::from(payload);
        let parts = split_batches(&payload).unwrap();
        assert_eq!(parts, vec![a.clone(), b]);
        assert_eq!(parts[0].as_ptr(), payload.as_ptr());
        assert!(split_batches(&Bytes::new()).unwrap().is_empty());
    }

    #[test]
    fn varints_decode() {
        assert_eq!(read_varlong(&[0x00]), Some((0, 1)));
        assert_eq!(read_varlong(&[0x01]), Some((-1, 1)));
        assert_eq!(read_varlong(&[0x02]), Some((1, 1)));
        assert_eq!(read_varlong(&[0xac, 0x02]), Some((150, 2)));
        assert_eq!(read_varlong(&[0x80]), None);
        assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f]), None);
        for v in [
            0i64,
            -1,
            1,
            63,
            -64,
            64,
            150,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(read_varlong(&out), Some((v, out.len())), "{v}");
        }
        let mut out = Vec::new();
        put_varint(&mut out, i32::MIN);
        assert_eq!(read_varint(&out), Some((i32::MIN, out.len())));
    }

    #[test]
    fn encoded_batches_validate_and_read_back() {
        let original = simple_batch(3, 1000, 4);
        let h = validate(&original).unwrap();
        let new = NewBatch {
            base_offset: 77,
            leader_epoch: 5,
            attributes: DELETE_HORIZON_MASK,
            last_offset_delta: 9,
            base_timestamp: 5000,
            max_timestamp: 1002,
            producer_id: 3,
            producer_epoch: 1,
            base_sequence: 11,
            record_count: 3,
        };
        let mut out = vec![0xEE]; // appends after what is there
        super::encode_batch(&new, &original[HEADER_LEN..], &mut out);
        let b = validate(&out[1..]).unwrap();
        assert_eq!(b.base_offset(), 77);
        assert_eq!(b.last_offset(), 86);
        assert_eq!(b.record_count(), h.record_count());
        assert_eq!(b.delete_horizon_ms(), Some(5000));
        assert_eq!(h.delete_horizon_ms(), None);
        assert_eq!(
            (b.producer_id(), b.producer_epoch(), b.base_sequence()),
            (3, 1, 11)
        );
        assert_eq!(b.partition_leader_epoch(), 5);
    }

    fn fix_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
}
