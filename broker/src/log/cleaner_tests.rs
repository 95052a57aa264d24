//! Tests of `cleaner.rs`.

use super::*;
use crate::log::batch::{split_batches, validate};
use crate::log::test_util::{
    codec_batch, encode_batch, kv_batch, simple_batch, TestBatch, TestRecord,
};
use crate::log::{CleanupPolicy, LogConfig, PartitionLog};
use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use std::collections::BTreeMap;

const NOW: i64 = 1_700_000_000_000;
const DAY: i64 = 86_400_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        retention_ms: None,
        index_interval_bytes: 100,
        cleanup_policy: CleanupPolicy::Compact,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: DAY as u64,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open(dir, TopicPartition::new("c", 0), config(), 0, None, NOW).unwrap()
}

fn reopen(log: PartitionLog) -> PartitionLog {
    let (dir, config, cleaner_offset) = (
        log.dir().to_owned(),
        log.config().clone(),
        log.cleaner_offset(),
    );
    let recovery_point = log.recovery_point();
    drop(log);
    let mut log = PartitionLog::open(
        dir,
        TopicPartition::new("c", 0),
        config,
        recovery_point,
        None,
        NOW,
    )
    .unwrap();
    log.set_cleaner_offset(cleaner_offset);
    log
}

fn clean(log: &mut PartitionLog, now: i64) -> Option<CleanStats> {
    let end = log.log_end_offset();
    log.clean(now, end, &CleanerConfig::default()).unwrap()
}

/// Every batch from the log start on, read as a consumer reads (segment by segment).
fn read_all(log: &PartitionLog) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log.read(offset, 1 << 20, i64::MAX).unwrap();
        assert!(r.next_offset > offset, "no progress reading at {offset}");
        out.extend(split_batches(&r.records).unwrap());
        offset = r.next_offset;
    }
    out
}

/// A record as a client sees it: offset, key, value, timestamp.
type Rec = (i64, Option<String>, Option<String>, i64);

/// Decodes batches with the kafka-protocol crate (an independent decoder, which checks
/// each CRC-32C); every batch must also pass the log's own validation.
fn decode(batches: &[Bytes]) -> Vec<Rec> {
    let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
    let mut out = Vec::new();
    for b in batches {
        validate(b).unwrap();
        let mut buf = b.clone();
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        for r in set.records {
            out.push((r.offset, text(r.key), text(r.value), r.timestamp));
        }
    }
    out
}

fn records(log: &PartitionLog) -> Vec<Rec> {
    decode(&read_all(log))
}

/// The latest record of every key (and every record without one) of `recs`.
fn compacted(recs: &[Rec]) -> Vec<Rec> {
    let mut latest: BTreeMap<Option<String>, i64> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.1.is_some()) {
        latest.insert(r.1.clone(), r.0);
    }
    recs.iter()
        .filter(|r| r.1.is_none() || latest[&r.1] == r.0)
        .cloned()
        .collect()
}

fn files_with(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// Appends `rounds` batches of 3 records over 8 keys (picked pseudo-randomly), with
/// leader epoch `epoch_of(round)`.
fn overwrite(log: &mut PartitionLog, rounds: usize, seed: u64, epoch_of: impl Fn(usize) -> i32) {
    let mut x = seed;
    for round in 0..rounds {
        let recs: Vec<(String, String)> = (0..3)
            .map(|j| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (
                    format!("k{}", (x >> 33) % 8),
                    format!("v{seed}-{round}-{j}"),
                )
            })
            .collect();
        let refs: Vec<(&str, Option<&str>)> = recs
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str())))
            .collect();
        log.append_as_leader(
            kv_batch(&refs, NOW - 1000 + round as i64),
            epoch_of(round),
            NOW,
        )
        .unwrap();
    }
}

#[test]
fn overwritten_keys_keep_only_their_last_value_at_its_original_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(&tmp.path().join("c-0"));
    overwrite(&mut log, 30, 1, |round| (round / 10) as i32);
    log.roll().unwrap();
    assert!(log.segment_count() >= 4, "{:?}", log.segment_base_offsets());
    let before = records(&log);
    assert_eq!(before.len(), 90);
    let epochs = log.leader_epochs().to_vec();
    assert_eq!(epochs.len(), 3);
    let epoch_ends: Vec<_> = (0..4).map(|e| log.end_offset_for_epoch(e)).collect();

    let stats = clean(&mut log, NOW).unwrap();
    let after = records(&log);
    let expected = compacted(&before);
    assert_eq!(after, expected);
    assert_eq!(after.len(), 8, "one record per key");
    assert_eq!(stats.records_removed, 90 - 8);
    assert_eq!(stats.records_read, 90);
    assert_eq!(stats.cleaned_up_to, 90);
    assert_eq!(log.cleaner_offset(), Some(90));
    // Offsets are the originals: increasing, with gaps where records went.
    assert!(after.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(after.last().unwrap().0 - after[0].0 > 8);
    // Every kept batch keeps its base offset (a multiple of 3 here), its last offset
    // delta and its partition leader epoch.
    for b in read_all(&log) {
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset() % 3, 0);
        assert_eq!(h.last_offset_delta(), 2);
        assert_eq!(h.partition_leader_epoch() as i64, h.base_offset() / 30);
    }
    // The leader epoch cache is untouched and answers as before.
    assert_eq!(log.leader_epochs(), &epochs[..]);
    let ends: Vec<_> = (0..4).map(|e| log.end_offset_for_epoch(e)).collect();
    assert_eq!(ends, epoch_ends);
    // Every offset is readable: a fetch from a removed offset gets the next batch.
    for offset in 0..log.log_end_offset() {
        let r = log.read(offset, 1, i64::MAX).unwrap();
        let first = decode(&split_batches(&r.records).unwrap());
        assert!(first
            .iter()
            .all(|rec| rec.0 >= offset || r.first_offset < Some(offset)));
    }
    // Nothing more to do until new data arrives.
    assert_eq!(clean(&mut log, NOW), None);
    // The files agree with memory: reopening (indexes checked) reads the same.
    let segments = log.segment_base_offsets();
    let log = reopen(log);
    assert_eq!(records(&log), expected);
    assert_eq!(log.segment_base_offsets(), segments);
    assert!(files_with(log.dir(), CLEANED_SUFFIX).is_empty());
    assert!(files_with(log.dir(), SWAP_SUFFIX).is_empty());
}

#[test]
fn small_cleaned_segments_are_merged_and_new_data_supersedes_old() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(&tmp.path().join("c-0"));
    overwrite(&mut log, 30, 2, |_| 0);
    log.roll().unwrap();
    clean(&mut log, NOW).unwrap();
    let first_pass = log.segment_count();
    overwrite(&mut log, 30, 3, |_| 1);
    log.roll().unwrap();
    let before = records(&log);
    let stats = clean(&mut log, NOW).unwrap();
    assert!(stats.segments_written >= 1);
    assert_eq!(records(&log), compacted(&before));
    assert_eq!(records(&log).len(), 8);
    // The small segments of the first pass and the new ones merged.
    assert!(
        log.segment_count() < first_pass + 4,
        "{} segments after merging, {first_pass} after the first pass",
        log.segment_count()
    );
    let segments = log.segment_base_offsets();
    let expected = records(&log);
    let log = reopen(log);
    assert_eq!(log.segment_base_offsets(), segments);
    assert_eq!(records(&log), expected);
}

#[test]
fn tombstones_stay_for_delete_retention_then_go() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(&tmp.path().join("c-0"));
    log.append_as_leader(
        kv_batch(&[("a", Some("1")), ("b", Some("1"))], NOW - 50),
        0,
        NOW,
    )
    .unwrap();
    log.append_as_leader(kv_batch(&[("a", None)], NOW - 40), 0, NOW)
        .unwrap();
    log.append_as_leader(kv_batch(&[("c", Some("1"))], NOW - 30), 0, NOW)
        .unwrap();
    log.roll().unwrap();
    let rec = |o: i64, k: &str, v: Option<&str>, ts: i64| {
        (o, Some(k.to_owned()), v.map(str::to_owned), ts)
    };

    clean(&mut log, NOW).unwrap();
    assert_eq!(
        records(&log),
        vec![
            rec(1, "b", Some("1"), NOW - 50),
            rec(2, "a", None, NOW - 40),
            rec(3, "c", Some("1"), NOW - 30)
        ],
        "the tombstone stays, with its timestamp"
    );
    let batches = read_all(&log);
    let h = validate(&batches[1]).unwrap();
    assert_eq!(h.delete_horizon_ms(), Some(NOW + DAY));
    assert_eq!(h.max_timestamp(), NOW - 40);
    assert_eq!(log.delete_horizon(), Some(NOW + DAY));

    // Before the horizon nothing is due; a forced pass keeps it too.
    assert_eq!(clean(&mut log, NOW + DAY - 1), None);
    log.set_cleaner_offset(None);
    clean(&mut log, NOW + DAY - 1).unwrap();
    assert_eq!(records(&log).len(), 3);

    // At the horizon the pass is due by itself, and removes it.
    let stats = clean(&mut log, NOW + DAY).unwrap();
    assert_eq!(stats.records_removed, 1);
    assert_eq!(
        records(&log),
        vec![
            rec(1, "b", Some("1"), NOW - 50),
            rec(3, "c", Some("1"), NOW - 30)
        ]
    );
    assert_eq!(log.delete_horizon(), None);
    assert_eq!(clean(&mut log, NOW + 2 * DAY), None);
}

#[test]
fn a_tombstone_superseded_by_a_new_value_goes_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(&tmp.path().join("c-0"));
    log.append_as_leader(
        kv_batch(&[("a", Some("1")), ("a", None), ("a", Some("2"))], NOW),
        0,
        NOW,
    )
    .unwrap();
    log.roll().unwrap();
    clean(&mut log, NOW).unwrap();
    assert_eq!(
        records(&log),
        vec![(2, Some("a".into()), Some("2".into()), NOW)]
    );
    assert_eq!(log.delete_horizon(), None);
}

#[test]
fn the_active_segment_and_everything_at_or_above_max_offset_are_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(&tmp.path().join("c-0"));
    overwrite(&mut log, 40, 4, |_| 0);
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 4, "{bases:?}");
    // The active segment has data too (it is never cleaned).
    let active = *bases.last().unwrap();
    assert!(log.log_end_offset() > active);
    // The high watermark inside the third segment.
    let max_offset = bases[2] + 4;
    let before = records(&log);
    let snapshot = |log: &PartitionLog| -> Vec<Vec<u8>> {
        log.segment_base_offsets()
            .iter()
            .filter(|&&b| b >= bases[2])
            .map(|&b| std::fs::read(segment::log_file(log.dir(), b)).unwrap())
            .collect()
    };
    let untouched = snapshot(&log);

    log.clean(NOW, max_offset, &CleanerConfig::default())
        .unwrap()
        .unwrap();
    assert_eq!(snapshot(&log), untouched);
    assert_eq!(log.cleaner_offset(), Some(bases[2]));
    let after = records(&log);
    // Below the cleaned end only what later records (below it) supersede is gone;
    // from there on, everything is as it was.
    let cleaned_part: Vec<Rec> = before.iter().filter(|r| r.0 < bases[2]).cloned().collect();
    let expected: Vec<Rec> = compacted(&cleaned_part)
        .into_iter()
        .chain(before.iter().filter(|r| r.0 >= bases[2]).cloned())
        .collect();
    assert_eq!(after, expected);
    assert!(after.len() < before.len());
    // The uncommitted tail superseded nothing: keys rewritten above max_offset keep
    // their last value below it.
    assert!(cleaned_part
        .iter()
        .filter(|r| compacted(&cleaned_part).contains(r))
        .all(|r| after.contains(r)));
    // A high watermark in the first segment leaves nothing to clean.
    assert_eq!(log.clean(NOW, 3, &CleanerConfig::default()).unwrap(), None);
}

/// Three segments of overwrites, cleaned; then more overwrites and a roll, so the next
/// pass merges small segments.
fn log_to_clean_twice(dir: &Path) -> PartitionLog {
    let mut log = open(dir);
    overwrite(&mut log, 25, 5, |_| 0);
    log.roll().unwrap();
    clean(&mut log, NOW).unwrap();
    overwrite(&mut log, 12, 6, |_| 1);
    log.roll().unwrap();
    log
}

fn bytes_of(log: &PartitionLog) -> Vec<u8> {
    read_all(log).iter().flat_map(|b| b.to_vec()).collect()
}

#[test]
fn a_crash_at_any_step_of_the_swap_keeps_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    // The outcome of an uninterrupted pass.
    let mut reference = log_to_clean_twice(&tmp.path().join("ref-0"));
    let uncleaned = bytes_of(&reference);
    let uncleaned_records = records(&reference);
    clean(&mut reference, NOW).unwrap();
    let cleaned = bytes_of(&reference);
    assert_eq!(records(&reference), compacted(&uncleaned_records));
    assert_ne!(cleaned, uncleaned);

    // Steps: 0 = cleaned files written, 1 = committed (.log.swap), 2 = later members
    // deleted, 3 = indexes renamed, 4 = the .log renamed too (indexes of the new
    // segment missing, as if the rename of the indexes was lost).
    for step in 0..5 {
        let dir = tmp.path().join(format!("s{step}-0"));
        let log = log_to_clean_twice(&dir);
        let end = log.log_end_offset();
        let cleaned_files = plan(&log, NOW, end)
            .unwrap()
            .execute(&CleanerConfig::default())
            .unwrap();
        assert!(
            cleaned_files.groups.iter().any(|g| g.members.len() > 1),
            "the test wants a merge"
        );
        drop(log); // a crash: nothing more happens in memory
        for g in &cleaned_files.groups {
            let base = g.base_offset;
            if step >= 1 {
                std::fs::rename(
                    cleaned_file(&dir, base, "log"),
                    swap_file(&dir, base, g.last_base_offset()),
                )
                .unwrap();
            }
            if step >= 2 {
                for m in &g.members[1..] {
                    segment::delete_files(&dir, m.base_offset).unwrap();
                }
            }
            if step >= 3 {
                std::fs::rename(
                    cleaned_file(&dir, base, "index"),
                    segment::index_file(&dir, base),
                )
                .unwrap();
                std::fs::rename(
                    cleaned_file(&dir, base, "timeindex"),
                    segment::time_index_file(&dir, base),
                )
                .unwrap();
            }
            if step >= 4 {
                std::fs::rename(
                    swap_file(&dir, base, g.last_base_offset()),
                    segment::log_file(&dir, base),
                )
                .unwrap();
                std::fs::remove_file(segment::index_file(&dir, base)).unwrap();
            }
        }
        let log =
            PartitionLog::open(&dir, TopicPartition::new("c", 0), config(), 0, None, NOW).unwrap();
        let expected = if step == 0 { &uncleaned } else { &cleaned };
        assert!(bytes_of(&log) == *expected, "step {step}");
        assert!(files_with(&dir, CLEANED_SUFFIX).is_empty(), "step {step}");
        assert!(files_with(&dir, SWAP_SUFFIX).is_empty(), "step {step}");
        if step > 0 {
            assert_eq!(log.segment_base_offsets(), reference.segment_base_offsets());
        }
        // And it reopens the same again.
        let segments = log.segment_base_offsets();
        let log = reopen(log);
        assert_eq!(log.segment_base_offsets(), segments);
        assert!(bytes_of(&log) == *expected, "step {step}, reopened");
    }
}

#[test]
fn a_swap_is_dropped_if_the_log_changed_meanwhile() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = log_to_clean_twice(&tmp.path().join("c-0"));
    let end = log.log_end_offset();
    let cleaned = plan(&log, NOW, end)
        .unwrap()
        .execute(&CleanerConfig::default())
        .unwrap();
    // One pass at a time per log.
    assert!(plan(&log, NOW, end).is_none());
    log.truncate_to(end - 4).unwrap();
    let before = bytes_of(&log);
    assert_eq!(log.install_cleaned(cleaned, NOW).unwrap(), None);
    assert_eq!(bytes_of(&log), before);
    assert!(files_with(log.dir(), CLEANED_SUFFIX).is_empty());
    // Truncation also pulls the cleaner offset back.
    assert!(log.cleaner_offset().unwrap() <= log.log_end_offset());
    // Retention deleting a planned segment aborts too.
    let end = log.log_end_offset();
    let cleaned = plan(&log, NOW, end)
        .unwrap()
        .execute(&CleanerConfig::default())
        .unwrap();
    assert!(plan(&log, NOW, end).is_none());
    let second = log.segment_base_offsets()[1];
    log.delete_records_before(second).unwrap();
    assert_eq!(log.install_cleaned(cleaned, NOW).unwrap(), None);
    assert!(files_with(log.dir(), CLEANED_SUFFIX).is_empty());
}

#[test]
fn the_last_batch_of_each_live_producer_is_kept_even_when_emptied() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(&tmp.path().join("c-0"));
    let producer = |pid: i64, epoch: i16, seq: i32, ts: i64, kv: &[(&str, &str)]| {
        encode_batch(&TestBatch {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            keyed: kv
                .iter()
                .map(|(k, v)| TestRecord::kv(ts, k, Some(v)))
                .collect(),
            ..TestBatch::default()
        })
    };
    // Offsets 0..=1: producer 7's only batch. 2: producer 8's first, 3: its last.
    // 4: producer 9's only batch, written two days ago. 5..=7: without a producer.
    for b in [
        producer(7, 0, 0, NOW - 10, &[("a", "1"), ("b", "1")]),
        producer(8, 2, 0, NOW - 9, &[("a", "2")]),
        producer(8, 2, 1, NOW - 8, &[("b", "2")]),
        producer(9, 0, 0, NOW - 2 * DAY, &[("c", "1")]),
        kv_batch(
            &[("a", Some("3")), ("b", Some("3")), ("c", Some("3"))],
            NOW - 1,
        ),
    ] {
        log.append_as_leader(b, 4, NOW).unwrap();
    }
    log.roll().unwrap();
    clean(&mut log, NOW).unwrap();
    let batches = read_all(&log);
    let headers: Vec<_> = batches
        .iter()
        .map(|b| {
            let h = validate(b).unwrap();
            (
                h.base_offset(),
                h.last_offset(),
                h.record_count(),
                h.producer_id(),
                h.producer_epoch(),
                h.base_sequence(),
                h.partition_leader_epoch(),
            )
        })
        .collect();
    assert_eq!(
        headers,
        vec![
            (0, 1, 0, 7, 0, 0, 4),
            (3, 3, 0, 8, 2, 1, 4),
            (5, 7, 3, -1, -1, -1, 4)
        ]
    );
    assert_eq!(decode(&batches).len(), 3);
    // Empty batches read like Kafka's: no records, the original last offset.
    let h = validate(&batches[0]).unwrap();
    assert_eq!(
        (h.max_timestamp(), h.base_timestamp()),
        (NOW - 10, NOW - 10)
    );
    assert!(!h.is_compressed());
    // Once producer 7 wrote again later, its emptied batch is no longer needed.
    log.append_as_leader(producer(7, 0, 2, NOW, &[("d", "1")]), 4, NOW)
        .unwrap();
    log.roll().unwrap();
    clean(&mut log, NOW).unwrap();
    let bases: Vec<i64> = read_all(&log)
        .iter()
        .map(|b| validate(b).unwrap().base_offset())
        .collect();
    assert_eq!(bases, vec![3, 5, 8]);
}

#[test]
fn compressed_batches_are_recompressed_with_their_codec() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(&tmp.path().join("c-0"));
    for (i, compression) in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("x{i}");
        let batch = codec_batch(
            &[
                (0, NOW, &key, "old"),
                (1, NOW + 1, "y", "kept-if-last"),
                (2, NOW + 2, &key, "new"),
            ],
            compression,
        );
        let info = log.append_as_leader(batch, 0, NOW).unwrap();
        assert_eq!(info.record_count, 3);
    }
    log.roll().unwrap();
    clean(&mut log, NOW).unwrap();
    let batches = read_all(&log);
    assert_eq!(batches.len(), 4);
    for (i, b) in batches.iter().enumerate() {
        let h = validate(b).unwrap();
        assert_eq!(h.compression(), i as u8 + 1, "same codec");
        assert_eq!((h.base_offset(), h.last_offset_delta()), (3 * i as i64, 2));
        assert_eq!((h.producer_id(), h.base_sequence()), (5, 0));
        let mut buf = b.clone();
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        let got: Vec<_> = set
            .records
            .iter()
            .map(|r| (r.offset, r.key.clone().unwrap(), r.timestamp))
            .collect();
        let base = 3 * i as i64;
        let mut want = vec![(base + 2, Bytes::from(format!("x{i}")), NOW + 2)];
        if i == 3 {
            // The last "y" stays; the earlier ones are superseded.
            want.insert(0, (base + 1, Bytes::from("y"), NOW + 1));
        }
        assert_eq!(got, want, "batch {i}");
    }
}

#[test]
fn kept_records_are_copied_byte_for_byte_headers_included() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(&tmp.path().join("c-0"));
    let mut kept = TestRecord::kv(NOW + 5, "k", Some("v"));
    kept.headers = vec![
        (b"h".to_vec(), Some(b"1".to_vec())),
        (b"h".to_vec(), Some(b"2".to_vec())),
        (b"n".to_vec(), None),
    ];
    let batch = encode_batch(&TestBatch {
        keyed: vec![TestRecord::kv(NOW, "k", Some("old")), kept],
        ..TestBatch::default()
    });
    log.append_as_leader(batch.clone(), 0, NOW).unwrap();
    log.roll().unwrap();
    clean(&mut log, NOW).unwrap();
    let out = read_all(&log);
    let h = validate(&out[0]).unwrap();
    assert_eq!(h.record_count(), 1);
    assert_eq!(h.max_timestamp(), NOW + 5);
    let original = parse_records(&batch[HEADER_LEN..], 2).unwrap();
    let cleaned = parse_records(&out[0][HEADER_LEN..], 1).unwrap();
    assert_eq!(cleaned[0].bytes, original[1].bytes);
}

#[test]
fn records_without_keys_are_kept_and_refused_on_produce() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(&tmp.path().join("c-0"));
    match log.append_as_leader(simple_batch(2, NOW, 5), 0, NOW) {
        Err(LogError::InvalidBatch {
            source: batch::BatchError::MissingKey,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(log.log_end_offset(), 0);
    // Written while the topic was not compacted.
    log.set_config(LogConfig {
        cleanup_policy: CleanupPolicy::Delete,
        ..config()
    })
    .unwrap();
    log.append_as_leader(simple_batch(2, NOW, 5), 0, NOW)
        .unwrap();
    log.set_config(config()).unwrap();
    log.append_as_leader(kv_batch(&[("a", Some("1")), ("a", Some("2"))], NOW), 0, NOW)
        .unwrap();
    log.roll().unwrap();
    clean(&mut log, NOW).unwrap();
    let recs = records(&log);
    assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 1, 3]);
    assert_eq!(recs[0].1, None);
}

#[test]
fn the_dirty_ratio_and_the_compaction_lag_decide_when_to_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(&tmp.path().join("c-0"));
    log.set_config(LogConfig {
        min_cleanable_dirty_ratio: 0.5,
        ..config()
    })
    .unwrap();
    overwrite(&mut log, 30, 7, |_| 0);
    log.roll().unwrap();
    clean(&mut log, NOW).unwrap();
    let cleaned_bytes = log.size_bytes();
    // A little new data: not dirty enough.
    log.append_as_leader(kv_batch(&[("k1", Some("x"))], NOW), 0, NOW)
        .unwrap();
    log.roll().unwrap();
    assert!(log.size_bytes() - cleaned_bytes < cleaned_bytes);
    assert_eq!(clean(&mut log, NOW), None);
    // Enough of it: due.
    overwrite(&mut log, 10, 8, |_| 0);
    log.roll().unwrap();
    assert!(clean(&mut log, NOW).is_some());

    // min.compaction.lag.ms: segments younger than the lag wait.
    log.set_config(LogConfig {
        min_compaction_lag_ms: 10_000,
        ..config()
    })
    .unwrap();
    overwrite(&mut log, 10, 9, |_| 0); // timestamps around NOW - 1000
    log.roll().unwrap();
    assert_eq!(clean(&mut log, NOW), None);
    assert!(clean(&mut log, NOW + 10_000).is_some());
}

#[test]
fn codecs_round_trip() {
    let raw: Vec<u8> = (0..5000u32).flat_map(|i| (i % 251).to_be_bytes()).collect();
    for codec in 1..=4 {
        let packed = compress(codec, &raw).unwrap();
        assert_eq!(
            crate::log::records::decompress(codec, &packed).unwrap(),
            raw,
            "codec {codec}"
        );
    }
    assert!(compress(7, &raw).is_err());
    assert!(crate::log::records::decompress(1, b"not gzip").is_err());
}
