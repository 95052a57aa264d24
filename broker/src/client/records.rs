//! Record batches (format v2) for producing and consuming, built and read with the codec
//! crate's `records` module, which checks CRC-32C and handles every compression codec.
//!
//! Two details the crate leaves to its caller:
//! - Building: the crate starts a new batch whenever `offset - sequence` changes between
//!   consecutive records, so each record gets `sequence = offset - 1`, which keeps one batch
//!   and gives it base sequence -1 (no idempotence, as a plain Kafka producer sends).
//! - Reading: a fetch response may end with a partial batch (the broker cuts at
//!   `max_bytes`), and a fetch from the middle of a batch returns the whole batch. So batches
//!   are split by their length field first, a partial tail is left for the next fetch,
//!   records below the requested offset are dropped, and control batches (transaction
//!   markers) are skipped but still advance the position.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};

use super::error::ProtocolError;

/// Bytes before a batch's length field ends: base offset (8) + batch length (4).
const LOG_OVERHEAD: usize = 12;
/// Offset of `lastOffsetDelta` in a v2 batch: base offset (8), length (4), partition leader
/// epoch (4), magic (1), CRC (4), attributes (2).
const LAST_OFFSET_DELTA_AT: usize = 23;
/// Offset of the magic byte.
const MAGIC_AT: usize = 16;
/// The smallest v2 batch header (61 bytes).
const BATCH_HEADER_LEN: usize = 61;

/// One record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Header names and values, in order. Duplicate names collapse to the last value (the
    /// codec stores headers in a map).
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

/// One record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Whether `timestamp` is the producer's (create time) or the broker's (log append).
    pub log_append_time: bool,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Encodes `records` as a single v2 batch (base offset 0; the leader assigns offsets).
/// `now_ms` stamps records without a timestamp.
pub fn encode_batch(
    records: &[ProduceRecord],
    compression: Compression,
    now_ms: i64,
) -> Result<Bytes, ProtocolError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let offset = i as i64;
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                timestamp_type: TimestampType::Creation,
                offset,
                // See the module docs: constant `offset - sequence` keeps one batch.
                sequence: (offset as i32).wrapping_sub(1),
                timestamp: r.timestamp.unwrap_or(now_ms),
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                    .collect::<IndexMap<_, _>>(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).map_err(|e| {
        ProtocolError::Records {
            reason: format!("{e:#}"),
        }
    })?;
    Ok(buf.freeze())
}

/// What a fetch response's record bytes hold, from `fetch_offset` on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodedRecords {
    /// Records at or after the fetch offset, in offset order, control records removed.
    pub records: Vec<ConsumedRecord>,
    /// Where the next fetch should start: one past the last complete batch, and never
    /// before the fetch offset.
    pub next_offset: i64,
    /// Whether a partial batch was left at the end (it is fetched again next time).
    pub truncated: bool,
}

/// Decodes the complete batches in `data` (see the module docs).
pub fn decode_batches(mut data: Bytes, fetch_offset: i64) -> Result<DecodedRecords, ProtocolError> {
    let mut out = DecodedRecords {
        next_offset: fetch_offset,
        ..DecodedRecords::default()
    };
    let bad = |reason: String| ProtocolError::Records { reason };
    while !data.is_empty() {
        if data.len() < LOG_OVERHEAD {
            out.truncated = true;
            break;
        }
        let base_offset = i64::from_be_bytes(read_array(&data, 0));
        let batch_len = i32::from_be_bytes(read_array(&data, 8));
        let Ok(batch_len) = usize::try_from(batch_len) else {
            return Err(bad(format!(
                "negative batch length {batch_len} at offset {base_offset}"
            )));
        };
        let total = LOG_OVERHEAD + batch_len;
        if data.len() < total {
            out.truncated = true;
            break;
        }
        let mut batch = data.split_to(total);
        if total < BATCH_HEADER_LEN {
            // Old message formats (v0/v1) have shorter headers; the broker never sends them
            // to a client that fetched with v4+, so anything here is corrupt.
            return Err(bad(format!(
                "batch at offset {base_offset} is only {total} bytes"
            )));
        }
        let magic = batch[MAGIC_AT] as i8;
        if magic != 2 {
            return Err(bad(format!(
                "batch at offset {base_offset} has magic {magic}; only v2 is supported"
            )));
        }
        let last_delta = i32::from_be_bytes(read_array(&batch, LAST_OFFSET_DELTA_AT));
        let batch_end = base_offset + i64::from(last_delta) + 1;
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| bad(format!("batch at offset {base_offset}: {e:#}")))?;
        for r in set.records {
            if r.control || r.offset < fetch_offset {
                continue;
            }
            out.records.push(ConsumedRecord {
                offset: r.offset,
                timestamp: r.timestamp,
                log_append_time: r.timestamp_type == TimestampType::LogAppend,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v))
                    .collect(),
            });
        }
        out.next_offset = out.next_offset.max(batch_end);
    }
    Ok(out)
}

/// `N` bytes at `at`; the caller has checked that they are there.
fn read_array<const N: usize>(data: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    let mut src = &data[at..at + N];
    src.copy_to_slice(&mut a);
    a
}

/// Parses a compression name as Kafka spells it (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
pub fn parse_compression(name: &str) -> Option<Compression> {
    match name.to_ascii_lowercase().as_str() {
        "none" => Some(Compression::None),
        "gzip" => Some(Compression::Gzip),
        "snappy" => Some(Compression::Snappy),
        "lz4" => Some(Compression::Lz4),
        "zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: Option<&str>, value: &str, headers: &[(&str, &str)]) -> ProduceRecord {
        ProduceRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Some(Bytes::copy_from_slice(v.as_bytes()))))
                .collect(),
            timestamp: None,
        }
    }

    /// Sets a batch's base offset as a leader does (bytes 0-7, outside the CRC).
    fn at_offset(batch: &Bytes, base: i64) -> Bytes {
        let mut b = BytesMut::from(&batch[..]);
        b[..8].copy_from_slice(&base.to_be_bytes());
        b.freeze()
    }

    fn sample() -> Vec<ProduceRecord> {
        vec![
            rec(None, "first", &[]),
            rec(Some("k"), "second", &[("trace", "abc"), ("n", "1")]),
            ProduceRecord {
                key: Some(Bytes::from_static(b"\x00\xff")),
                value: None,
                headers: vec![("empty".into(), None)],
                timestamp: Some(5),
            },
        ]
    }

    #[test]
    fn round_trip_with_every_codec() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = encode_batch(&sample(), compression, 1_000).unwrap();
            // One batch, whose header says how many records and which codec.
            let info = RecordBatchDecoder::decode_batch_info(&mut batch.clone()).unwrap();
            assert_eq!(info.len(), 1, "{compression:?}");
            assert_eq!(info[0].record_count, 3);
            assert_eq!(info[0].compression, compression);
            assert_eq!(info[0].base_sequence, -1);
            assert_eq!(info[0].producer_id, -1);

            let decoded = decode_batches(at_offset(&batch, 100), 100).unwrap();
            assert_eq!(decoded.next_offset, 103, "{compression:?}");
            assert!(!decoded.truncated);
            let r = &decoded.records;
            assert_eq!(r.len(), 3);
            assert_eq!(r[0].offset, 100);
            assert_eq!(r[0].key, None);
            assert_eq!(r[0].value.as_deref(), Some(&b"first"[..]));
            assert_eq!(r[0].timestamp, 1_000);
            assert!(!r[0].log_append_time);
            assert_eq!(r[1].key.as_deref(), Some(&b"k"[..]));
            assert_eq!(
                r[1].headers,
                vec![
                    ("trace".to_owned(), Some(Bytes::from_static(b"abc"))),
                    ("n".to_owned(), Some(Bytes::from_static(b"1")))
                ]
            );
            assert_eq!(r[2].offset, 102);
            assert_eq!(r[2].key.as_deref(), Some(&b"\x00\xff"[..]));
            assert_eq!(r[2].value, None);
            assert_eq!(r[2].timestamp, 5);
            assert_eq!(r[2].headers, vec![("empty".to_owned(), None)]);
        }
    }

    #[test]
    fn compression_shrinks_repetitive_batches() {
        let big: Vec<ProduceRecord> = (0..100).map(|_| rec(None, &"x".repeat(100), &[])).collect();
        let plain = encode_batch(&big, Compression::None, 0).unwrap();
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = encode_batch(&big, c, 0).unwrap();
            assert!(
                packed.len() * 4 < plain.len(),
                "{c:?}: {} vs {}",
                packed.len(),
                plain.len()
            );
        }
    }

    #[test]
    fn records_before_the_fetch_offset_are_dropped() {
        let batch = at_offset(&encode_batch(&sample(), Compression::None, 0).unwrap(), 10);
        let decoded = decode_batches(batch, 11).unwrap();
        let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![11, 12]);
        assert_eq!(decoded.next_offset, 13);
    }

    #[test]
    fn a_partial_trailing_batch_is_left_for_the_next_fetch() {
        let one = at_offset(&encode_batch(&sample(), Compression::None, 0).unwrap(), 0);
        let two = at_offset(&encode_batch(&sample(), Compression::Lz4, 0).unwrap(), 3);
        let mut data = BytesMut::from(&one[..]);
        data.extend_from_slice(&two[..two.len() - 5]);
        let decoded = decode_batches(data.freeze(), 0).unwrap();
        assert_eq!(decoded.records.len(), 3);
        assert_eq!(decoded.next_offset, 3);
        assert!(decoded.truncated);
        // Less than a length field.
        let decoded = decode_batches(Bytes::from_static(&[0; 7]), 4).unwrap();
        assert!(decoded.truncated && decoded.records.is_empty());
        assert_eq!(decoded.next_offset, 4);
        // Nothing at all.
        let decoded = decode_batches(Bytes::new(), 9).unwrap();
        assert!(!decoded.truncated && decoded.records.is_empty());
        assert_eq!(decoded.next_offset, 9);
    }

    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let batch = encode_batch(&sample(), Compression::None, 0).unwrap();
        let mut bad = BytesMut::from(&batch[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff; // inside the CRC-covered part
        assert!(decode_batches(bad.freeze(), 0).is_err());
        let mut old = BytesMut::from(&batch[..]);
        old[MAGIC_AT] = 1;
        assert!(decode_batches(old.freeze(), 0).is_err());
        let mut neg = BytesMut::from(&batch[..]);
        neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(decode_batches(neg.freeze(), 0).is_err());
        // Every truncation of a valid batch is either "partial" or an error, never a panic.
        for cut in 0..batch.len() {
            let _ = decode_batches(batch.slice(..cut), 0);
        }
    }

    #[test]
    fn control_batches_are_skipped_but_advance_the_position() {
        let mut marker = Record {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 7,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: 3,
            sequence: -1,
            timestamp: 0,
            key: Some(Bytes::from_static(&[0, 0, 0, 0])),
            value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
            headers: IndexMap::new(),
        };
        marker.offset = 3;
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            [&marker],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        let decoded = decode_batches(buf.freeze(), 3).unwrap();
        assert!(decoded.records.is_empty());
        assert_eq!(decoded.next_offset, 4);
    }

    #[test]
    fn compression_names() {
        assert_eq!(parse_compression("ZSTD"), Some(Compression::Zstd));
        assert_eq!(parse_compression("none"), Some(Compression::None));
        assert_eq!(parse_compression("brotli"), None);
    }
}
