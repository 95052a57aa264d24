//! Tests of `partition.rs`.

use super::*;
use crate::log::batch::{split_batches, validate};
use crate::log::test_util::{batch_at, batch_from, simple_batch};
use std::time::Duration;

const NOW: i64 = 1_700_000_000_000;

fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        segment_ms: 60_000,
        retention_ms: None,
        retention_bytes: None,
        max_message_bytes: 1 << 20,
        index_interval_bytes: 100,
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir.join("t-0"), tp(), config, 0, None, NOW).unwrap()
}

fn patched(batch: &Bytes, base_offset: i64, epoch: i32) -> Vec<u8> {
    let mut b = batch.to_vec();
    batch::patch(&mut b, base_offset, epoch).unwrap();
    b
}

/// Base offsets of the batches in a read.
fn bases(records: &Bytes) -> Vec<i64> {
    split_batches(records)
        .unwrap()
        .iter()
        .map(|b| validate(b).unwrap().base_offset())
        .collect()
}

/// Base offsets of every batch, reading segment by segment as consumers do.
fn all_bases(log: &PartitionLog) -> Vec<i64> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log.read(offset, 1 << 20, i64::MAX).unwrap();
        assert!(!r.records.is_empty(), "empty read at {offset}");
        out.extend(bases(&r.records));
        offset = r.next_offset;
    }
    out
}

#[test]
fn leader_append_assigns_offsets_and_reads_back_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let a = simple_batch(3, 1000, 10);
    let b = simple_batch(2, 2000, 10);
    let info = log.append_as_leader(a.clone(), 4, NOW).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 2));
    assert_eq!((info.batch_count, info.record_count), (1, 3));
    assert_eq!(info.max_timestamp, 1002);
    let info = log.append_as_leader(b.clone(), 4, NOW).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (3, 4));
    assert_eq!(log.log_end_offset(), 5);

    let read = log.read(0, 1 << 20, i64::MAX).unwrap();
    let mut expected = patched(&a, 0, 4);
    expected.extend_from_slice(&patched(&b, 3, 4));
    assert_eq!(&read.records[..], &expected[..]);
    assert_eq!(read.first_offset, Some(0));
    assert_eq!(read.next_offset, 5);
    assert_eq!((read.log_start_offset, read.log_end_offset), (0, 5));
    for part in split_batches(&read.records).unwrap() {
        validate(&part).unwrap();
    }

    // A payload with several batches is one append.
    let mut payload = simple_batch(1, 3000, 5).to_vec();
    payload.extend_from_slice(&simple_batch(4, 3001, 5));
    let info = log.append_as_leader(Bytes::from(payload), 5, NOW).unwrap();
    assert_eq!(
        (info.first_offset, info.last_offset, info.batch_count),
        (5, 9, 2)
    );
    assert_eq!(
        bases(&log.read(5, 1 << 20, i64::MAX).unwrap().records),
        vec![5, 6]
    );
}

#[test]
fn read_rules_whole_batches_at_least_one_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let mut sizes = Vec::new();
    for i in 0..5 {
        let b = simple_batch(10, 1000 + i, 20);
        sizes.push(b.len());
        log.append_as_leader(b, 0, NOW).unwrap();
    }
    // Offsets: batch i holds 10i..10i+9.
    // From the middle of a batch: that whole batch.
    let r = log.read(15, 1 << 20, i64::MAX).unwrap();
    assert_eq!(bases(&r.records), vec![10, 20, 30, 40]);
    // At least one batch even if max_bytes is tiny.
    let r = log.read(23, 1, i64::MAX).unwrap();
    assert_eq!(bases(&r.records), vec![20]);
    assert_eq!(r.records.len(), sizes[2]);
    assert_eq!(r.next_offset, 30);
    // max_bytes: whole batches only, never a partial one.
    let r = log.read(0, sizes[0] + sizes[1] / 2, i64::MAX).unwrap();
    assert_eq!(bases(&r.records), vec![0]);
    let r = log.read(0, sizes[0] + sizes[1], i64::MAX).unwrap();
    assert_eq!(bases(&r.records), vec![0, 10]);
    // The offset limit (high watermark) cuts at batch boundaries.
    let r = log.read(0, 1 << 20, 30).unwrap();
    assert_eq!(bases(&r.records), vec![0, 10, 20]);
    let r = log.read(0, 1 << 20, 25).unwrap();
    assert_eq!(
        bases(&r.records),
        vec![0, 10],
        "a batch straddling the limit is held back"
    );
    let r = log.read(30, 1 << 20, 30).unwrap();
    assert!(r.records.is_empty());
    assert_eq!(r.next_offset, 30);
    // At the log end: empty. Past it or below the start: out of range.
    assert!(log.read(50, 100, i64::MAX).unwrap().records.is_empty());
    match log.read(51, 100, i64::MAX) {
        Err(LogError::OffsetOutOfRange {
            offset: 51,
            log_start_offset: 0,
            log_end_offset: 50,
        }) => {}
        other => panic!("{other:?}"),
    }
    log.delete_records_before(20).unwrap();
    assert!(matches!(
        log.read(19, 100, i64::MAX),
        Err(LogError::OffsetOutOfRange {
            log_start_offset: 20,
            ..
        })
    ));
    assert_eq!(bases(&log.read(20, 1, i64::MAX).unwrap().records), vec![20]);
}

#[test]
fn reads_use_the_index_for_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..60 {
        log.append_as_leader(batch_at(1 + i % 3, 1000 + i as i64, 7), 0, NOW)
            .unwrap();
    }
    assert!(log.segment_count() > 3);
    assert!(log.segments.iter().any(|s| s.index().entries().len() > 2));
    let end = log.log_end_offset();
    for offset in 0..end {
        let r = log.read(offset, 1, i64::MAX).unwrap();
        let parts = split_batches(&r.records).unwrap();
        assert_eq!(parts.len(), 1, "offset {offset}");
        let h = validate(&parts[0]).unwrap();
        assert!(h.base_offset() <= offset && offset <= h.last_offset());
    }
}

#[test]
fn a_planned_read_survives_retention_and_runs_without_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for _ in 0..20 {
        log.append_as_leader(batch_at(2, 1000, 50), 0, NOW).unwrap();
    }
    let first = log.read(0, 1, i64::MAX).unwrap();
    let plan = log.prepare_read(0, 1, i64::MAX).unwrap();
    log.delete_records_before(log.log_end_offset()).unwrap();
    assert!(!log.segment_base_offsets().contains(&0));
    assert_eq!(plan.read().unwrap(), first);
}

#[test]
fn segments_roll_by_size_with_20_digit_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let b = batch_at(5, 1000, 100); // ~ 600 bytes: one per 1024-byte segment
    for _ in 0..4 {
        log.append_as_leader(b.clone(), 0, NOW).unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 5, 10, 15]);
    // A roll fsyncs the sealed segment, so the recovery point follows.
    assert_eq!(log.recovery_point(), 15);
    // The active segment's index files appear with its first flush.
    assert!(!log.dir().join(format!("{:020}.index", 15)).exists());
    log.flush().unwrap();
    for base in [0, 5, 10, 15] {
        let name = format!("{base:020}");
        for ext in ["log", "index", "timeindex"] {
            assert!(
                log.dir().join(format!("{name}.{ext}")).exists(),
                "{name}.{ext}"
            );
        }
    }
    assert!(log.size_bytes() <= 4 * 1024);
    // An append larger than a segment is refused.
    let huge = batch_at(1, 1000, 2000);
    assert!(matches!(
        log.append_as_leader(huge, 0, NOW),
        Err(LogError::RecordBatchTooLarge { .. })
    ));
    assert_eq!(log.log_end_offset(), 20);
}

#[test]
fn segments_roll_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let b = batch_at(1, 1000, 1);
    log.append_as_leader(b.clone(), 0, NOW).unwrap();
    log.append_as_leader(b.clone(), 0, NOW + 59_999).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append_as_leader(b.clone(), 0, NOW + 60_000).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
    // The new segment's clock starts at its first append.
    log.append_as_leader(b.clone(), 0, NOW + 119_999).unwrap();
    assert_eq!(log.segment_count(), 2);
    log.append_as_leader(b, 0, NOW + 120_000).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 4]);
}

#[test]
fn retention_by_time_deletes_old_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: Some(10_000),
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    // Three segments with max timestamps NOW-30s, NOW-20s, NOW-5s, then the active one.
    for ts in [NOW - 30_000, NOW - 20_000, NOW - 5_000, NOW - 50_000] {
        log.append_as_leader(batch_at(3, ts, 10), 0, NOW).unwrap();
        log.roll().unwrap();
    }
    log.append_as_leader(batch_at(3, NOW - 90_000, 10), 0, NOW)
        .unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 3, 6, 9, 12]);
    let outcome = log.enforce_retention(NOW, None).unwrap();
    // Oldest first, stopping at the first segment that is not expired.
    assert_eq!(outcome.deleted_segments, 2);
    assert_eq!(outcome.log_start_offset, 6);
    assert_eq!(log.log_start_offset(), 6);
    assert_eq!(log.segment_base_offsets(), vec![6, 9, 12]);
    assert!(!log.dir().join(format!("{:020}.log", 0)).exists());
    // Later, everything but the active segment expires.
    let outcome = log.enforce_retention(NOW + 100_000, None).unwrap();
    assert_eq!(outcome.deleted_segments, 2);
    assert_eq!(log.segment_base_offsets(), vec![12]);
    assert_eq!(bases(&log.read(12, 1, i64::MAX).unwrap().records), vec![12]);
}

#[test]
fn retention_by_time_and_size_applies_only_with_the_delete_policy() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: Some(10_000),
        retention_bytes: Some(1),
        cleanup_policy: crate::log::CleanupPolicy::Compact,
        ..small_config()
    };
    let mut log = open(dir.path(), config.clone());
    for _ in 0..3 {
        log.append_as_leader(
            crate::log::test_util::kv_batch(&[("k", Some("v"))], NOW - 60_000),
            0,
            NOW,
        )
        .unwrap();
        log.roll().unwrap();
    }
    assert_eq!(
        log.enforce_retention(NOW, None).unwrap().deleted_segments,
        0
    );
    // The log start still drops whole segments below it (DeleteRecords).
    log.delete_records_before(1).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![1, 2, 3]);
    log.set_config(LogConfig {
        cleanup_policy: crate::log::CleanupPolicy::CompactDelete,
        ..config
    })
    .unwrap();
    assert_eq!(
        log.enforce_retention(NOW, None).unwrap().deleted_segments,
        2
    );
    assert_eq!(log.segment_base_offsets(), vec![3]);
}

#[test]
fn retention_by_size_and_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for _ in 0..6 {
        log.append_as_leader(batch_at(2, 1000, 100), 0, NOW)
            .unwrap();
        log.roll().unwrap();
    }
    log.append_as_leader(batch_at(2, 1000, 100), 0, NOW)
        .unwrap();
    let seg_size = log.segments[0].size();
    assert_eq!(log.segment_count(), 7);
    log.set_config(LogConfig {
        retention_bytes: Some(3 * seg_size),
        ..small_config()
    })
    .unwrap();
    // The high watermark at 6 protects segments holding offsets at or above it.
    let outcome = log.enforce_retention(NOW, Some(6)).unwrap();
    assert_eq!(outcome.deleted_segments, 3);
    assert_eq!(log.log_start_offset(), 6);
    let outcome = log.enforce_retention(NOW, None).unwrap();
    assert_eq!(outcome.deleted_segments, 1);
    assert_eq!(outcome.deleted_bytes, seg_size);
    assert_eq!(log.size_bytes(), 3 * seg_size);
    assert_eq!(log.segment_base_offsets(), vec![8, 10, 12]);
    assert_eq!(
        log.enforce_retention(NOW, None).unwrap().deleted_segments,
        0
    );
}

#[test]
fn delete_records_moves_the_start_and_drops_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for _ in 0..3 {
        log.append_as_leader(batch_at(4, 1000, 10), 0, NOW).unwrap();
        log.roll().unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8, 12]);
    assert_eq!(log.delete_records_before(6).unwrap(), 6);
    assert_eq!(log.segment_base_offsets(), vec![4, 8, 12]);
    // Reading at the new start returns the batch holding it.
    assert_eq!(bases(&log.read(6, 1, i64::MAX).unwrap().records), vec![4]);
    assert_eq!(log.delete_records_before(2).unwrap(), 6, "never backwards");
    assert!(matches!(
        log.delete_records_before(13),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Up to the log end: the active segment stays, empty of readable data.
    assert_eq!(log.delete_records_before(12).unwrap(), 12);
    assert_eq!(log.segment_base_offsets(), vec![12]);
    assert!(log.read(12, 100, i64::MAX).unwrap().records.is_empty());
    let dir_path = log.dir().to_owned();
    drop(log);
    let log = PartitionLog::open(dir_path, tp(), small_config(), 12, Some(12), NOW).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (12, 12));
}

#[test]
fn truncate_in_the_middle_of_a_segment_and_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..12 {
        log.append_as_leader(batch_at(2, 1000 + i, 60), i as i32 / 4, NOW)
            .unwrap();
    }
    // Offsets 0..24 in batches of 2; epochs 0 (0..8), 1 (8..16), 2 (16..24).
    let segments_before = log.segment_base_offsets();
    assert!(segments_before.len() >= 3, "{segments_before:?}");
    let epochs = |log: &PartitionLog| {
        log.leader_epochs()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect::<Vec<_>>()
    };
    assert_eq!(epochs(&log), vec![(0, 0), (1, 8), (2, 16)]);

    // Across segments, into the middle of a batch: the whole batch 12..=13 goes, the
    // segment holding it is cut after its first batch, later segments are deleted.
    assert_eq!(segments_before[..3], [0, 10, 20]);
    log.truncate_to(13).unwrap();
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(log.segment_base_offsets(), vec![0, 10]);
    assert!(log.segments[1].size() > 0);
    assert_eq!(epochs(&log), vec![(0, 0), (1, 8)]);
    assert_eq!(all_bases(&log), (0..12).step_by(2).collect::<Vec<_>>());
    assert_eq!(log.offset_for_timestamp(1006).unwrap(), None);
    assert_eq!(
        log.offset_for_timestamp(1005).unwrap().map(|r| r.offset),
        Some(10)
    );

    // Appends continue from the new end; the new epoch is recorded.
    let info = log.append_as_leader(batch_at(3, 2000, 5), 7, NOW).unwrap();
    assert_eq!(info.first_offset, 12);
    assert_eq!(epochs(&log), vec![(0, 0), (1, 8), (7, 12)]);

    // At a batch boundary inside the active segment.
    log.truncate_to(4).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(epochs(&log), vec![(0, 0)]);
    let end = log.log_end_offset();
    let dir_path = log.dir().to_owned();
    let segments = log.segment_base_offsets();
    drop(log);
    // The files agree: reopening (which checks and recovers) finds the same log.
    let log = PartitionLog::open(dir_path, tp(), small_config(), 0, None, NOW).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.segment_base_offsets(), segments);
    assert_eq!(epochs(&log), vec![(0, 0)]);
    assert_eq!(
        bases(&log.read(0, 1 << 20, i64::MAX).unwrap().records),
        vec![0, 2]
    );
}

#[test]
fn truncate_fully_restarts_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for _ in 0..5 {
        log.append_as_leader(batch_at(3, 1000, 100), 3, NOW)
            .unwrap();
    }
    log.truncate_fully_and_start_at(500).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![500]);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
    assert!(log.leader_epochs().is_empty());
    assert!(matches!(
        log.read(0, 10, i64::MAX),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let info = log
        .append_as_follower(batch_from(500, 2, 1000, 4), NOW)
        .unwrap();
    assert_eq!(info.last_offset, 501);
    // Truncating at or below the first segment is a full truncation too.
    log.truncate_to(500).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
    let names: Vec<_> = std::fs::read_dir(log.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    assert_eq!(names, vec![format!("{:020}.log", 500)]);
}

#[test]
fn epoch_cache_answers_offset_for_leader_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for (epoch, count) in [(1, 3), (1, 2), (3, 4), (6, 1)] {
        log.append_as_leader(batch_at(count, 1000, 5), epoch, NOW)
            .unwrap();
    }
    // Epoch 1: 0..5, epoch 3: 5..9, epoch 6: 9..10.
    let eo = |log: &PartitionLog, e| {
        log.end_offset_for_epoch(e)
            .map(|r| (r.leader_epoch, r.end_offset))
    };
    assert_eq!(eo(&log, 6), Some((6, 10)));
    assert_eq!(eo(&log, 5), Some((3, 9)));
    assert_eq!(eo(&log, 3), Some((3, 9)));
    assert_eq!(eo(&log, 2), Some((1, 5)));
    assert_eq!(eo(&log, 0), Some((0, 0)));
    assert_eq!(eo(&log, 7), None);
    // A new leader records its epoch before writing.
    log.assign_epoch_start(8).unwrap();
    assert_eq!(eo(&log, 6), Some((6, 10)));
    assert_eq!(eo(&log, 8), Some((8, 10)));
    let text = std::fs::read_to_string(log.dir().join(LEADER_EPOCH_CHECKPOINT)).unwrap();
    assert_eq!(text, "0\n4\n1 0\n3 5\n6 9\n8 10\n");
    log.truncate_to(7).unwrap();
    assert_eq!(log.log_end_offset(), 5, "the batch 5..=8 is removed whole");
    assert_eq!(eo(&log, 3), None);
    assert_eq!(eo(&log, 1), Some((1, 5)));
    let text = std::fs::read_to_string(log.dir().join(LEADER_EPOCH_CHECKPOINT)).unwrap();
    assert_eq!(text, "0\n1\n1 0\n");
}

#[test]
fn timestamp_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    // Batches of 5 records with timestamps t, t+1, ..., t+4; rolls along the way.
    for i in 0..20 {
        log.append_as_leader(simple_batch(5, 10_000 + 100 * i, 30), 2, NOW)
            .unwrap();
    }
    assert!(log.segment_count() > 2);
    let at = |log: &PartitionLog, ts| {
        log.offset_for_timestamp(ts)
            .unwrap()
            .map(|r| (r.offset, r.timestamp))
    };
    assert_eq!(at(&log, 0), Some((0, 10_000)));
    assert_eq!(at(&log, 10_000), Some((0, 10_000)));
    assert_eq!(
        at(&log, 10_003),
        Some((3, 10_003)),
        "record-level inside a batch"
    );
    assert_eq!(at(&log, 10_050), Some((5, 10_100)));
    assert_eq!(at(&log, 11_204), Some((64, 11_204)));
    assert_eq!(at(&log, 11_904), Some((99, 11_904)));
    assert_eq!(at(&log, 11_905), None);
    let found = log.offset_for_timestamp(10_700).unwrap().unwrap();
    assert_eq!(found.leader_epoch, Some(2));
    // Only offsets at or after the log start count.
    log.delete_records_before(7).unwrap();
    assert_eq!(at(&log, 0), Some((7, 10_102)));
    // The record carrying the largest timestamp, not its batch (Kafka since 3.8).
    let max = log.offset_of_max_timestamp().unwrap().unwrap();
    assert_eq!((max.timestamp, max.offset), (11_904, 99));
    // Each segment's time index ends with its largest timestamp.
    for seg in &log.segments[..log.segments.len() - 1] {
        assert_eq!(
            seg.time_index().last().map(|e| e.timestamp),
            Some(seg.max_timestamp())
        );
    }
}

#[test]
fn follower_appends_store_the_leaders_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let a = batch_from(0, 3, 1000, 2);
    let b = batch_from(3, 2, 1001, 3);
    let mut payload = a.to_vec();
    payload.extend_from_slice(&b);
    let info = log
        .append_as_follower(Bytes::from(payload.clone()), NOW)
        .unwrap();
    assert_eq!(
        (info.first_offset, info.last_offset, info.batch_count),
        (0, 4, 2)
    );
    assert_eq!(
        &log.read(0, 1 << 20, i64::MAX).unwrap().records[..],
        &payload[..]
    );
    assert_eq!(log.latest_epoch(), Some(3));
    assert!(matches!(
        log.append_as_follower(batch_from(4, 1, 1000, 3), NOW),
        Err(LogError::UnexpectedAppendOffset {
            first_offset: 4,
            log_end_offset: 5
        })
    ));
    let mut unordered = batch_from(5, 2, 1000, 3).to_vec();
    unordered.extend_from_slice(&batch_from(6, 1, 1000, 3));
    assert!(matches!(
        log.append_as_follower(Bytes::from(unordered), NOW),
        Err(LogError::OffsetsOutOfOrder { .. })
    ));
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn invalid_appends_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    log.append_as_leader(batch_at(1, 1000, 5), 0, NOW).unwrap();
    let good = batch_at(1, 1000, 5);
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let mut payload = good.to_vec();
    payload.extend_from_slice(&bad);
    match log.append_as_leader(Bytes::from(payload), 0, NOW) {
        Err(LogError::InvalidBatch {
            index: 1,
            source: batch::BatchError::CorruptCrc { .. },
        }) => {}
        other => panic!("{other:?}"),
    }
    let mut v1 = good.to_vec();
    v1[16] = 1;
    assert!(matches!(
        log.append_as_leader(Bytes::from(v1), 0, NOW),
        Err(LogError::InvalidBatch {
            source: batch::BatchError::UnsupportedMagic(1),
            ..
        })
    ));
    assert!(matches!(
        log.append_as_leader(good.slice(..good.len() - 1), 0, NOW),
        Err(LogError::InvalidBatch {
            source: batch::BatchError::Truncated { .. },
            ..
        })
    ));
    log.set_config(LogConfig {
        max_message_bytes: 100,
        ..small_config()
    })
    .unwrap();
    assert!(matches!(
        log.append_as_leader(batch_at(1, 1000, 200), 0, NOW),
        Err(LogError::RecordTooLarge { limit: 100, .. })
    ));
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(log.size_bytes(), good.len() as u64);
    let empty = log.append_as_leader(Bytes::new(), 0, NOW).unwrap();
    assert_eq!((empty.batch_count, empty.first_offset), (0, 1));
    assert!(!log.is_failed());
}

#[test]
fn fsync_policies_move_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(
        dir.path(),
        LogConfig {
            fsync: FsyncPolicy::Always,
            ..small_config()
        },
    );
    log.append_as_leader(batch_at(2, 1000, 5), 0, NOW).unwrap();
    assert_eq!(log.recovery_point(), 2);

    let mut config = small_config();
    config.fsync = FsyncPolicy::Interval(Duration::from_secs(1));
    log.set_config(config).unwrap();
    log.append_as_leader(batch_at(2, 1000, 5), 0, NOW + 10)
        .unwrap();
    assert_eq!(log.recovery_point(), 2, "interval not yet passed");
    assert!(!log.flush_if_due(NOW + 500).unwrap());
    assert!(log.flush_if_due(NOW + 1000).unwrap());
    assert_eq!(log.recovery_point(), 4);
    log.append_as_leader(batch_at(2, 1000, 5), 0, NOW + 2500)
        .unwrap();
    assert_eq!(log.recovery_point(), 6, "the append itself was due");

    log.set_config(small_config()).unwrap();
    log.append_as_leader(batch_at(2, 1000, 5), 0, NOW).unwrap();
    assert_eq!(log.recovery_point(), 6);
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), 8);
}

#[test]
fn a_deleted_log_refuses_writes_but_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    log.append_as_leader(batch_at(2, 1000, 5), 0, NOW).unwrap();
    log.mark_deleted();
    assert!(matches!(
        log.append_as_leader(batch_at(2, 1000, 5), 0, NOW),
        Err(LogError::Failed { .. })
    ));
    assert!(matches!(log.truncate_to(0), Err(LogError::Failed { .. })));
    assert_eq!(bases(&log.read(0, 10, i64::MAX).unwrap().records), vec![0]);
}

/// A new partition is created without fsyncs; its first flush makes its directories and
/// metadata durable. Losing its metadata files before that (a machine crash) leaves a
/// partition that opens as empty and new again.
#[test]
fn a_new_partition_syncs_its_directories_at_its_first_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::create(&path, tp(), small_config(), NOW).unwrap();
    assert!(log.dirs_unsynced());
    log.assign_epoch_start(3).unwrap();
    assert!(path.join(LEADER_EPOCH_CHECKPOINT).exists());
    drop(log);

    // What a crash before the first flush may leave: the files, but not their contents.
    std::fs::write(path.join(LEADER_EPOCH_CHECKPOINT), b"").unwrap();
    let log = PartitionLog::open(&path, tp(), small_config(), 0, None, NOW).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    // Its segment survived, so it is not new: reopened logs count as synced.
    assert!(!log.dirs_unsynced());
    drop(log);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::create(&path, tp(), small_config(), NOW).unwrap();
    log.assign_epoch_start(5).unwrap();
    log.append_as_leader(simple_batch(3, NOW, 10), 5, NOW)
        .unwrap();
    log.flush().unwrap();
    assert!(!log.dirs_unsynced());
    drop(log);
    let log = PartitionLog::open(&path, tp(), small_config(), 0, None, NOW).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(
        checkpoint::read_epochs(&path.join(LEADER_EPOCH_CHECKPOINT)).unwrap(),
        vec![EpochEntry {
            epoch: 5,
            start_offset: 0
        }]
    );
}

#[test]
fn an_unflushed_segment_has_no_index_files_and_gets_them_back_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::create(&path, tp(), config.clone(), NOW).unwrap();
    for i in 0..12 {
        log.append_as_leader(batch_at(1 + i % 3, 1000 + i as i64, 7), 0, NOW)
            .unwrap();
    }
    let entries = log.segments[0].index().entries().to_vec();
    assert!(entries.len() > 2, "{entries:?}");
    let (index, time_index) = (
        path.join(format!("{:020}.index", 0)),
        path.join(format!("{:020}.timeindex", 0)),
    );
    assert!(!index.exists() && !time_index.exists());
    let end = log.log_end_offset();
    // A process killed now (no flush, no close) leaves only the .log behind.
    drop(log);
    let log = PartitionLog::open(&path, tp(), config, 0, None, NOW).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.segments[0].index().entries(), &entries[..]);
    assert!(index.exists() && time_index.exists());
    for offset in 0..end {
        let r = log.read(offset, 1, i64::MAX).unwrap();
        let parts = split_batches(&r.records).unwrap();
        let h = validate(&parts[0]).unwrap();
        assert!(h.base_offset() <= offset && offset <= h.last_offset());
    }
}
