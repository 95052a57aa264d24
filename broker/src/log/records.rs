//! The records inside a batch: the records section (decompressed when it is compressed),
//! split into records without copying them. The log cleaner rewrites batches from these,
//! produce checks compacted topics' keys with them, and timestamp lookups find records.

use super::batch::{self, BatchHeader, HEADER_LEN};
use std::borrow::Cow;

/// The records of a compacted topic's batch must all have a key (checked on produce, as
/// Kafka's `LogValidator` does for compacted topics). Compressed batches are decompressed
/// for the check.
pub(crate) fn check_keys(batch: &[u8]) -> Result<(), batch::BatchError> {
    let h = BatchHeader::parse(batch)?;
    if h.is_control() {
        return Ok(());
    }
    let section = records_section(&h, batch).map_err(|_| batch::BatchError::InvalidRecords {
        reason: "the records cannot be decompressed",
    })?;
    let records = parse_records(&section, h.record_count())
        .map_err(|reason| batch::BatchError::InvalidRecords { reason })?;
    if records.iter().any(|r| r.key.is_none()) {
        return Err(batch::BatchError::MissingKey);
    }
    Ok(())
}

/// One record of a batch's (uncompressed) records section, not copied.
#[derive(Debug)]
pub(crate) struct RawRecord<'a> {
    /// The whole record, length prefix included.
    pub(crate) bytes: &'a [u8],
    /// Where the body (after the length prefix) starts in `bytes`.
    pub(crate) body_start: usize,
    /// Where the field after the timestamp delta starts in `bytes`.
    pub(crate) after_timestamp: usize,
    pub(crate) timestamp_delta: i64,
    pub(crate) offset_delta: i32,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) has_value: bool,
}

/// The records section of `batch`, decompressed if it is compressed.
pub(crate) fn records_section<'b>(
    h: &BatchHeader<'_>,
    batch: &'b [u8],
) -> Result<Cow<'b, [u8]>, String> {
    let section = batch.get(HEADER_LEN..).unwrap_or(&[]);
    match h.compression() {
        0 => Ok(Cow::Borrowed(section)),
        codec => decompress(codec, section).map(Cow::Owned),
    }
}

/// Splits a records section into `count` records (Kafka's `DefaultRecord` layout: length,
/// attributes, timestamp delta, offset delta, key, value, headers).
pub(crate) fn parse_records(
    section: &[u8],
    count: i32,
) -> Result<Vec<RawRecord<'_>>, &'static str> {
    fn varint(buf: &[u8], at: &mut usize) -> Result<i32, &'static str> {
        let (v, n) = buf
            .get(*at..)
            .and_then(batch::read_varint)
            .ok_or("bad varint")?;
        *at += n;
        Ok(v)
    }
    fn bytes<'a>(buf: &'a [u8], at: &mut usize) -> Result<Option<&'a [u8]>, &'static str> {
        let len = varint(buf, at)?;
        if len < 0 {
            return Ok(None);
        }
        let end = at.saturating_add(len as usize);
        let b = buf.get(*at..end).ok_or("field runs past the record")?;
        *at = end;
        Ok(Some(b))
    }
    let count = usize::try_from(count).map_err(|_| "negative record count")?;
    let mut records = Vec::with_capacity(count.min(section.len()));
    let mut pos = 0usize;
    for _ in 0..count {
        let mut at = pos;
        let len = varint(section, &mut at)?;
        let len = usize::try_from(len).map_err(|_| "negative record length")?;
        let end = at.saturating_add(len);
        let record = section.get(pos..end).ok_or("record runs past the batch")?;
        let body_start = at - pos;
        let mut p = body_start + 1; // attributes
        if p > record.len() {
            return Err("empty record");
        }
        let (timestamp_delta, n) = record
            .get(p..)
            .and_then(batch::read_varlong)
            .ok_or("bad timestamp delta")?;
        p += n;
        let after_timestamp = p;
        let offset_delta = varint(record, &mut p)?;
        let key = bytes(record, &mut p)?;
        let value = bytes(record, &mut p)?;
        records.push(RawRecord {
            bytes: record,
            body_start,
            after_timestamp,
            timestamp_delta,
            offset_delta,
            key,
            has_value: value.is_some(),
        });
        pos = end;
    }
    if pos != section.len() {
        return Err("bytes after the last record");
    }
    Ok(records)
}

/// Compresses a records section with Kafka codec `codec`.
pub(crate) fn compress(codec: u8, raw: &[u8]) -> Result<Vec<u8>, String> {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let mut out: Vec<u8> = Vec::new();
    let fill = |tmp: &mut bytes::BytesMut| {
        tmp.extend_from_slice(raw);
        Ok(())
    };
    let result = match codec {
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        other => return Err(format!("unknown compression codec {other}")),
    };
    result.map_err(|e| format!("{e:#}"))?;
    Ok(out)
}

/// Decompresses a records section with Kafka codec `codec` (1 gzip, 2 snappy, 3 lz4,
/// 4 zstd).
pub(crate) fn decompress(codec: u8, data: &[u8]) -> Result<Vec<u8>, String> {
    use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
    let mut input = data;
    let result = match codec {
        1 => Gzip::decompress(&mut input, |b| Ok(b.to_vec())),
        2 => Snappy::decompress(&mut input, |b| Ok(b.to_vec())),
        3 => Lz4::decompress(&mut input, |b| Ok(b.to_vec())),
        4 => Zstd::decompress(&mut input, |b| Ok(b.to_vec())),
        other => return Err(format!("unknown compression codec {other}")),
    };
    result.map_err(|e| format!("{e:#}"))
}

/// One record's offset and timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPosition {
    /// Absolute offset of the record.
    pub offset: i64,
    /// Its timestamp (the batch's max timestamp under log-append time).
    pub timestamp: i64,
}

/// Offsets and timestamps of the records of any batch (timestamp lookups): decompressed
/// first if need be. A batch that does not decode yields nothing and the caller falls
/// back to the batch's own fields. Nothing here trusts a length it reads.
pub fn record_times(batch: &[u8]) -> Vec<RecordPosition> {
    let Ok(h) = BatchHeader::parse(batch) else {
        return Vec::new();
    };
    let Ok(section) = records_section(&h, batch) else {
        return Vec::new();
    };
    let log_append = h.is_log_append_time().then(|| h.max_timestamp());
    parse_records(&section, h.record_count())
        .unwrap_or_default()
        .iter()
        .map(|r| RecordPosition {
            offset: h.base_offset().saturating_add(i64::from(r.offset_delta)),
            timestamp: log_append
                .unwrap_or_else(|| h.base_timestamp().saturating_add(r.timestamp_delta)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::test_util::{codec_batch, encode_batch, TestBatch};
    use kafka_protocol::records::Compression;

    #[test]
    fn record_times_decompress_compressed_batches() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let b = codec_batch(
                &[
                    (10, 1_000, "a", "v"),
                    (11, 3_000, "b", "v"),
                    (12, 2_000, "c", "v"),
                ],
                compression,
            );
            let times: Vec<(i64, i64)> = record_times(&b)
                .into_iter()
                .map(|r| (r.offset, r.timestamp))
                .collect();
            assert_eq!(
                times,
                [(10, 1_000), (11, 3_000), (12, 2_000)],
                "{compression:?}"
            );
        }
        // Garbage inside a compressed batch yields nothing (the caller falls back).
        let b = encode_batch(&TestBatch {
            attributes: 1,
            opaque_records: Some((4, vec![0xAB; 30])),
            ..TestBatch::default()
        });
        assert!(record_times(&b).is_empty());
    }
}
