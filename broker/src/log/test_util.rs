//! Test-only: hand-encoded Kafka v2 record batches (header, varint records, CRC-32C), so
//! the log's tests need no Kafka client library.

use super::batch::NO_TIMESTAMP;
use bytes::Bytes;

/// A batch to encode. Defaults: offset 0, no epoch, no producer, no records.
#[derive(Debug, Clone)]
pub(crate) struct TestBatch {
    pub base_offset: i64,
    pub leader_epoch: i32,
    pub attributes: i16,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// `(timestamp, value)` per record; keys are null, no headers.
    pub records: Vec<(i64, Vec<u8>)>,
    /// For a "compressed" batch: `(record count, opaque bytes)` replaces `records`.
    pub opaque_records: Option<(i32, Vec<u8>)>,
    /// Records with keys, null values and headers; when not empty, replaces `records`.
    pub keyed: Vec<TestRecord>,
}

/// A record with everything a record can have.
#[derive(Debug, Clone, Default)]
pub(crate) struct TestRecord {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl TestRecord {
    /// A record `key = value` (`None`: a tombstone) at `timestamp`.
    pub(crate) fn kv(timestamp: i64, key: &str, value: Option<&str>) -> TestRecord {
        TestRecord {
            timestamp,
            key: Some(key.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: Vec::new(),
        }
    }
}

impl Default for TestBatch {
    fn default() -> Self {
        TestBatch {
            base_offset: 0,
            leader_epoch: -1,
            attributes: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: Vec::new(),
            opaque_records: None,
            keyed: Vec::new(),
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varlong(out, -1),
    }
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// Encodes `b` as Kafka message format v2.
pub(crate) fn encode_batch(b: &TestBatch) -> Bytes {
    let mut base_ts = b.records.first().map_or(NO_TIMESTAMP, |r| r.0);
    let mut max_ts = b.records.iter().map(|r| r.0).max().unwrap_or(NO_TIMESTAMP);
    if !b.keyed.is_empty() {
        base_ts = b.keyed[0].timestamp;
        max_ts = b
            .keyed
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(NO_TIMESTAMP);
    }
    let (count, records) = match &b.opaque_records {
        Some((count, bytes)) => (*count, bytes.clone()),
        None if !b.keyed.is_empty() => {
            let mut out = Vec::new();
            for (i, r) in b.keyed.iter().enumerate() {
                let mut body = vec![0u8]; // attributes
                put_varlong(&mut body, r.timestamp - base_ts);
                put_varlong(&mut body, i as i64);
                put_bytes(&mut body, r.key.as_deref());
                put_bytes(&mut body, r.value.as_deref());
                put_varlong(&mut body, r.headers.len() as i64);
                for (k, v) in &r.headers {
                    put_bytes(&mut body, Some(k));
                    put_bytes(&mut body, v.as_deref());
                }
                put_varlong(&mut out, body.len() as i64);
                out.extend_from_slice(&body);
            }
            (b.keyed.len() as i32, out)
        }
        None => {
            let mut out = Vec::new();
            for (i, (ts, value)) in b.records.iter().enumerate() {
                let mut body = vec![0u8]; // attributes
                put_varlong(&mut body, ts - base_ts);
                put_varlong(&mut body, i as i64);
                put_varlong(&mut body, -1); // null key
                put_varlong(&mut body, value.len() as i64);
                body.extend_from_slice(value);
                put_varlong(&mut body, 0); // no headers
                put_varlong(&mut out, body.len() as i64);
                out.extend_from_slice(&body);
            }
            (b.records.len() as i32, out)
        }
    };
    if b.opaque_records.is_some() {
        base_ts = 0;
        max_ts = 0;
    }
    let mut out = Vec::with_capacity(61 + records.len());
    out.extend_from_slice(&b.base_offset.to_be_bytes());
    out.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    out.extend_from_slice(&b.leader_epoch.to_be_bytes());
    out.push(2);
    out.extend_from_slice(&[0; 4]); // CRC, filled below
    out.extend_from_slice(&b.attributes.to_be_bytes());
    out.extend_from_slice(&(count - 1).max(0).to_be_bytes());
    out.extend_from_slice(&base_ts.to_be_bytes());
    out.extend_from_slice(&max_ts.to_be_bytes());
    out.extend_from_slice(&b.producer_id.to_be_bytes());
    out.extend_from_slice(&b.producer_epoch.to_be_bytes());
    out.extend_from_slice(&b.base_sequence.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&records);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

/// A batch of `count` records with timestamps `first_ts, first_ts + 1, ...` and values of
/// `value_len` bytes.
pub(crate) fn simple_batch(count: usize, first_ts: i64, value_len: usize) -> Bytes {
    encode_batch(&TestBatch {
        records: (0..count)
            .map(|i| (first_ts + i as i64, vec![b'v'; value_len]))
            .collect(),
        ..TestBatch::default()
    })
}

/// A batch whose records all carry the same timestamp.
pub(crate) fn batch_at(count: usize, ts: i64, value_len: usize) -> Bytes {
    encode_batch(&TestBatch {
        records: (0..count).map(|_| (ts, vec![b'v'; value_len])).collect(),
        ..TestBatch::default()
    })
}

/// A follower-style batch: offsets and epoch already assigned.
pub(crate) fn batch_from(base_offset: i64, count: usize, ts: i64, epoch: i32) -> Bytes {
    encode_batch(&TestBatch {
        base_offset,
        leader_epoch: epoch,
        records: (0..count).map(|_| (ts, vec![b'f'; 8])).collect(),
        ..TestBatch::default()
    })
}

/// A batch of keyed records `(key, value)` (value `None`: a tombstone), all at `ts`.
pub(crate) fn kv_batch(records: &[(&str, Option<&str>)], ts: i64) -> Bytes {
    encode_batch(&TestBatch {
        keyed: records
            .iter()
            .map(|(k, v)| TestRecord::kv(ts, k, *v))
            .collect(),
        ..TestBatch::default()
    })
}

/// One batch encoded by the Kafka codec itself (`kafka-protocol`), with `compression`:
/// `(offset, timestamp, key, value)` per record, producer 5 at epoch 1, each record's
/// sequence its offset (the encoder starts a new batch where sequences break).
pub(crate) fn codec_batch(
    records: &[(i64, i64, &str, &str)],
    compression: kafka_protocol::records::Compression,
) -> Bytes {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = records
        .iter()
        .map(|&(offset, timestamp, key, value)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: 5,
            producer_epoch: 1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: i32::try_from(offset).unwrap_or(i32::MAX),
            timestamp,
            key: Some(Bytes::from(key.to_owned())),
            value: Some(Bytes::from(value.to_owned())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encodable records");
    buf.freeze()
}
