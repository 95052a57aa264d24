//! Crash recovery of one segment (Kafka's `LogSegment.recover`).
//!
//! After a crash (kill -9, power loss) the end of the active segment may hold a torn
//! batch, garbage, or zeros, and its indexes may lag the `.log` or be damaged. Recovery
//! reads the `.log` from the start and fully validates every batch (header, CRC-32C,
//! counts, offsets increasing and within the segment); at the first batch that fails it
//! truncates the file there and fsyncs the cut. It then rebuilds both indexes from what
//! it read, with the same rule appends use, and rewrites the index files if they differ.
//! The partition log decides which segments to recover (everything from the recovery
//! point on, and always the active segment) and deletes segments after a cut.
//!
//! Before any of that, [`complete_swaps`] settles what an interrupted log cleaner swap
//! left: uncommitted `*.cleaned` files are deleted, committed `<base>.<last>.log.swap`
//! files replace the segments they were cleaned from (see [`cleaner`](super::cleaner)).

use super::cleaner::{self, CLEANED_SUFFIX, SWAP_SUFFIX};
use super::epoch_cache::EpochEntry;
use super::error::LogError;
use super::index::{IndexEntry, OffsetIndex};
use super::partition::parse_base_offset;
use super::scan::{FileScanner, Step, FULL_SCAN_CHUNK};
use super::segment::{self, IndexState, Segment, MAX_RELATIVE_OFFSET};
use super::time_index::{TimeIndex, TimeIndexEntry};
use super::topic_partition::TopicPartition;
use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use tracing::{debug, warn};

/// What recovery cut off the end of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Truncation {
    /// Byte position of the cut (the end of the last valid batch).
    pub position: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// The segment's next offset after the cut.
    pub next_offset: i64,
    /// Why the batch at `position` was rejected.
    pub reason: String,
}

/// A recovered segment and what recovery found.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub segment: Segment,
    /// Set if the tail was cut.
    pub truncation: Option<Truncation>,
    /// Each leader epoch seen for the first time in the segment, with the offset where it
    /// starts (to refill the leader epoch cache).
    pub epochs: Vec<EpochEntry>,
    /// True if an index file was missing or differed from the rebuilt one.
    pub indexes_rebuilt: bool,
}

/// Scans, truncates and re-indexes the segment `base_offset` in `dir`. `min_offset` is the
/// previous segment's next offset: batches below it are invalid.
pub(crate) fn recover_segment(
    dir: &Path,
    base_offset: i64,
    min_offset: i64,
    index_interval: u64,
    now_ms: i64,
) -> Result<Recovered, LogError> {
    let log_path = segment::log_file(dir, base_offset);
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&log_path)
        .map_err(LogError::io("open", &log_path))?;
    let file_len = file
        .metadata()
        .map_err(LogError::io("stat", &log_path))?
        .len();

    let mut state = IndexState::new(base_offset);
    let mut index_entries: Vec<IndexEntry> = Vec::new();
    let mut time_entries: Vec<TimeIndexEntry> = Vec::new();
    let mut epochs: Vec<EpochEntry> = Vec::new();
    let mut first_max_timestamp = None;
    let mut next_offset = base_offset;
    let mut min_next = base_offset.max(min_offset);
    let mut valid_end = 0u64;
    let mut rejected: Option<(u64, String)> = None;

    let mut scan = FileScanner::new(&file, 0, file_len, FULL_SCAN_CHUNK);
    loop {
        let info = match scan
            .next_validated()
            .map_err(LogError::io("read", &log_path))?
        {
            Step::Batch(info) => info,
            Step::End => break,
            Step::Invalid { position, reason } => {
                rejected = Some((position, reason));
                break;
            }
        };
        let problem = if info.base_offset < min_next {
            Some(format!(
                "batch offset {} is below the expected {min_next}",
                info.base_offset
            ))
        } else if info.last_offset - base_offset > MAX_RELATIVE_OFFSET {
            Some(format!(
                "batch offset {} is too far from the segment base",
                info.last_offset
            ))
        } else if info.position + info.size > u64::from(u32::MAX) {
            Some("segment larger than 4 GiB".to_string())
        } else {
            None
        };
        if let Some(reason) = problem {
            rejected = Some((info.position, reason));
            break;
        }
        if let Some((entry, time_entry)) = state.step(base_offset, &info, index_interval) {
            index_entries.push(entry);
            push_time_entry(&mut time_entries, time_entry);
        }
        if info.leader_epoch > epochs.last().map_or(-1, |e| e.epoch) {
            epochs.push(EpochEntry {
                epoch: info.leader_epoch,
                start_offset: info.base_offset,
            });
        }
        first_max_timestamp.get_or_insert(info.max_timestamp);
        next_offset = info.last_offset + 1;
        min_next = next_offset;
        valid_end = info.position + info.size;
    }

    let truncation = match rejected {
        Some((position, reason)) => {
            file.set_len(valid_end)
                .map_err(LogError::io("truncate", &log_path))?;
            file.sync_data().map_err(LogError::io("fsync", &log_path))?;
            Some(Truncation {
                position,
                bytes: file_len - valid_end,
                next_offset,
                reason,
            })
        }
        None => None,
    };

    // A recovered segment is sealed as far as its time index goes: it ends with the
    // largest timestamp, as a rolled or closed segment's does.
    push_time_entry(&mut time_entries, state.time_entry(base_offset));
    let index_path = segment::index_file(dir, base_offset);
    let (index, index_changed) = OffsetIndex::rebuild(index_path.clone(), index_entries)
        .map_err(LogError::io("write", &index_path))?;
    let time_path = segment::time_index_file(dir, base_offset);
    let (time_index, time_changed) = TimeIndex::rebuild(time_path.clone(), time_entries)
        .map_err(LogError::io("write", &time_path))?;

    let segment = Segment::from_recovery(
        base_offset,
        log_path,
        file,
        valid_end,
        next_offset,
        index,
        time_index,
        state,
        first_max_timestamp,
        now_ms,
    );
    Ok(Recovered {
        segment,
        truncation,
        epochs,
        indexes_rebuilt: index_changed || time_changed,
    })
}

/// Settles the files an interrupted log cleaner swap left in `dir` (see
/// [`cleaner`](super::cleaner)): deletes every `*.cleaned` file (a pass that had not
/// committed: the segments it read are intact), and finishes every
/// `<base>.<last>.log.swap` (a committed pass): the segments with base offsets in
/// `(base, last]` are deleted, as are `base`'s index files, and the swap file becomes
/// `<base>.log`. The swapped segments have no indexes afterwards, so opening the log
/// rebuilds them from the `.log`. Safe to run again after a crash midway.
pub(crate) fn complete_swaps(dir: &Path, tp: &TopicPartition) -> Result<(), LogError> {
    let mut swaps = Vec::new();
    let mut logs = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(LogError::io("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(LogError::io("list", dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.ends_with(CLEANED_SUFFIX) {
            debug!(topic = %tp.topic, partition = tp.partition, file = %path.display(),
                "removing a file of an unfinished log cleaner pass");
            remove_if_present(&path)?;
        } else if let Some(stem) = name
            .strip_suffix(SWAP_SUFFIX)
            .and_then(|n| n.strip_suffix(".log"))
        {
            let range = stem
                .split_once('.')
                .and_then(|(b, l)| Some((parse_base_offset(b)?, parse_base_offset(l)?)));
            match range {
                Some((base, last)) if last >= base => swaps.push((base, last)),
                _ => {
                    warn!(topic = %tp.topic, partition = tp.partition, file = %path.display(),
                        "removing a swap file of unknown form");
                    remove_if_present(&path)?;
                }
            }
        } else if let Some(base) = name.strip_suffix(".log").and_then(parse_base_offset) {
            logs.push(base);
        }
    }
    if swaps.is_empty() {
        return Ok(());
    }
    swaps.sort_unstable();
    for (base, last) in swaps {
        for &old in logs.iter().filter(|&&b| b > base && b <= last) {
            segment::delete_files(dir, old)?;
        }
        remove_if_present(&segment::index_file(dir, base))?;
        remove_if_present(&segment::time_index_file(dir, base))?;
        let swap = cleaner::swap_file(dir, base, last);
        let log = segment::log_file(dir, base);
        std::fs::rename(&swap, &log).map_err(LogError::io("rename", &swap))?;
        warn!(topic = %tp.topic, partition = tp.partition, file = %log.display(),
            replaced_up_to = last, "finished a log cleaner swap a crash interrupted");
    }
    fjord_shared::fs::sync_dir(dir).map_err(LogError::io("fsync", dir))
}

fn remove_if_present(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io("delete", path)(e)),
    }
}

/// The time index's append rule: only a larger timestamp makes an entry.
pub(crate) fn push_time_entry(entries: &mut Vec<TimeIndexEntry>, entry: TimeIndexEntry) {
    if entry.timestamp > entries.last().map_or(-1, |e| e.timestamp) {
        entries.push(entry);
    }
}

#[cfg(test)]
mod tests {
    use crate::log::batch::{split_batches, validate};
    use crate::log::checkpoint::LEADER_EPOCH_CHECKPOINT;
    use crate::log::test_util::{batch_at, simple_batch};
    use crate::log::{FsyncPolicy, LogConfig, PartitionLog, TopicPartition};
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::path::{Path, PathBuf};

    const NOW: i64 = 1_700_000_000_000;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 2048,
            segment_ms: 60_000,
            retention_ms: None,
            retention_bytes: None,
            max_message_bytes: 1 << 20,
            index_interval_bytes: 150,
            fsync: FsyncPolicy::Never,
            ..LogConfig::default()
        }
    }

    fn open_at(dir: &Path, recovery_point: i64) -> PartitionLog {
        PartitionLog::open(
            dir,
            TopicPartition::new("t", 0),
            config(),
            recovery_point,
            None,
            NOW,
        )
        .unwrap()
    }

    fn file(dir: &Path, base: i64, ext: &str) -> PathBuf {
        dir.join(format!("{base:020}.{ext}"))
    }

    fn len(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    /// Everything observable about a log: start, end, segments, epochs, all its batches.
    type State = (i64, i64, Vec<i64>, Vec<(i32, i64)>, Vec<u8>);

    fn state(log: &PartitionLog) -> State {
        let mut data = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let r = log.read(offset, 1 << 20, i64::MAX).unwrap();
            assert!(!r.records.is_empty());
            data.extend_from_slice(&r.records);
            offset = r.next_offset;
        }
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_base_offsets(),
            log.leader_epochs()
                .iter()
                .map(|e| (e.epoch, e.start_offset))
                .collect(),
            data,
        )
    }

    /// Five batches of 4 records in one segment; returns the batch sizes.
    fn five_batches(log: &mut PartitionLog) -> Vec<u64> {
        (0..5)
            .map(|i| {
                let b = simple_batch(4, 1000 + 10 * i, 20);
                log.append_as_leader(b.clone(), 1, NOW).unwrap();
                b.len() as u64
            })
            .collect()
    }

    #[test]
    fn a_torn_last_batch_is_cut() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let mut log = open_at(&dir, 0);
        let sizes = five_batches(&mut log);
        drop(log); // no close: as after kill -9
        let path = file(&dir, 0, "log");
        let whole: u64 = sizes.iter().sum();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(whole - 7)
            .unwrap();

        let mut log = open_at(&dir, 0);
        assert_eq!(log.log_end_offset(), 16);
        assert_eq!(len(&path), whole - sizes[4]);
        assert_eq!(log.recovery_point(), 16);
        let info = log
            .append_as_leader(simple_batch(2, 5000, 5), 1, NOW)
            .unwrap();
        assert_eq!(info.first_offset, 16);
        let before = state(&log);
        drop(log);
        assert_eq!(state(&open_at(&dir, 0)), before);
    }

    #[test]
    fn garbage_and_zeros_at_the_tail_are_cut() {
        for tail in [vec![0xA5u8; 300], vec![0u8; 4096], b"not a batch".to_vec()] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("t-0");
            let mut log = open_at(&dir, 0);
            let sizes = five_batches(&mut log);
            let before = state(&log);
            drop(log);
            let path = file(&dir, 0, "log");
            OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap()
                .write_all(&tail)
                .unwrap();

            let log = open_at(&dir, 0);
            assert_eq!(state(&log), before);
            assert_eq!(len(&path), sizes.iter().sum::<u64>());
        }
    }

    #[test]
    fn a_corrupt_batch_cuts_the_log_there() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let mut log = open_at(&dir, 0);
        let sizes = five_batches(&mut log);
        drop(log);
        let path = file(&dir, 0, "log");
        let mut bytes = std::fs::read(&path).unwrap();
        let third = (sizes[0] + sizes[1]) as usize;
        bytes[third + 70] ^= 0x40; // inside batch 3's records: the CRC no longer matches
        std::fs::write(&path, &bytes).unwrap();

        let log = open_at(&dir, 0);
        assert_eq!(log.log_end_offset(), 8);
        assert_eq!(len(&path), sizes[0] + sizes[1]);
        for part in split_batches(&log.read(0, 1 << 20, i64::MAX).unwrap().records).unwrap() {
            validate(&part).unwrap();
        }
    }

    #[test]
    fn corruption_in_an_earlier_segment_deletes_the_later_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let mut log = open_at(&dir, 0);
        for i in 0..30 {
            log.append_as_leader(batch_at(3, 1000 + i, 100), 1, NOW)
                .unwrap();
        }
        let segments = log.segment_base_offsets();
        assert!(segments.len() >= 4, "{segments:?}");
        log.close().unwrap();
        drop(log);
        // Damage the second batch of the second segment. With the recovery point lost
        // (0), every segment is scanned.
        let second = segments[1];
        let path = file(&dir, second, "log");
        let mut bytes = std::fs::read(&path).unwrap();
        let first_size = crate::log::BatchHeader::parse(&bytes)
            .unwrap()
            .size_in_bytes();
        bytes[first_size + 30] ^= 1;
        std::fs::write(&path, &bytes).unwrap();

        let log = open_at(&dir, 0);
        assert_eq!(log.segment_base_offsets(), vec![0, second]);
        assert_eq!(log.log_end_offset(), second + 3);
        for later in &segments[2..] {
            assert!(!file(&dir, *later, "log").exists());
            assert!(!file(&dir, *later, "index").exists());
        }
    }

    #[test]
    fn damage_below_the_recovery_point_is_found_by_the_tail_check() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let mut log = open_at(&dir, 0);
        for i in 0..30 {
            log.append_as_leader(batch_at(3, 1000 + i, 100), 1, NOW)
                .unwrap();
        }
        let end = log.log_end_offset();
        let before = state(&log);
        log.close().unwrap();
        drop(log);
        // A torn tail in an old segment is found even without a full scan: the header
        // walk after the last index entry does not reach the end exactly.
        let path = file(&dir, 0, "log");
        let size = len(&path);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(size - 1)
            .unwrap();
        let log = open_at(&dir, end);
        assert_eq!(log.segment_base_offsets(), vec![0]);
        assert!(log.log_end_offset() < end);
        assert_ne!(state(&log), before);
    }

    #[test]
    fn missing_indexes_are_rebuilt_identically() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let mut log = open_at(&dir, 0);
        for i in 0..40 {
            log.append_as_leader(batch_at(1 + i % 4, 1000 + i as i64, 30), 1, NOW)
                .unwrap();
        }
        let segments = log.segment_base_offsets();
        assert!(segments.len() >= 3);
        let end = log.log_end_offset();
        let before = state(&log);
        log.close().unwrap();
        drop(log);
        let snapshot = |ext: &str| -> Vec<Vec<u8>> {
            segments
                .iter()
                .map(|&b| std::fs::read(file(&dir, b, ext)).unwrap())
                .collect()
        };
        let (index, time_index) = (snapshot("index"), snapshot("timeindex"));
        assert!(
            index.iter().any(|i| i.len() >= 16),
            "the test needs real index entries"
        );
        for &b in &segments {
            std::fs::remove_file(file(&dir, b, "index")).unwrap();
            std::fs::remove_file(file(&dir, b, "timeindex")).unwrap();
        }
        let log = open_at(&dir, end);
        assert_eq!(state(&log), before);
        drop(log);
        assert_eq!(snapshot("index"), index);
        assert_eq!(snapshot("timeindex"), time_index);
    }

    #[test]
    fn corrupt_indexes_are_rebuilt() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let mut log = open_at(&dir, 0);
        for i in 0..40 {
            log.append_as_leader(batch_at(2, 1000 + i, 30), 1, NOW)
                .unwrap();
        }
        let end = log.log_end_offset();
        let before = state(&log);
        log.close().unwrap();
        drop(log);
        let index = file(&dir, 0, "index");
        let good = std::fs::read(&index).unwrap();
        assert!(good.len() >= 16);
        let mut shifted = good.clone();
        let last = shifted.len() - 1;
        shifted[last] = shifted[last].wrapping_add(1); // last entry's position off by one
        let mut swapped = good.clone();
        swapped.copy_within(0..8, 8); // two equal entries: not monotonic
        let damaged: Vec<Vec<u8>> = vec![good[..good.len() - 3].to_vec(), swapped, shifted];
        for bad in damaged {
            std::fs::write(&index, &bad).unwrap();
            let log = open_at(&dir, end);
            assert_eq!(state(&log), before);
            drop(log);
            assert_eq!(std::fs::read(&index).unwrap(), good);
        }
        // A damaged time index is rebuilt too.
        let time_index = file(&dir, 0, "timeindex");
        let good = std::fs::read(&time_index).unwrap();
        std::fs::write(&time_index, &good[..good.len() - 1]).unwrap();
        let log = open_at(&dir, end);
        assert_eq!(state(&log), before);
        assert_eq!(std::fs::read(&time_index).unwrap(), good);
    }

    #[test]
    fn the_epoch_cache_is_refilled_when_its_checkpoint_is_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let mut log = open_at(&dir, 0);
        for epoch in [0, 0, 2, 2, 5] {
            log.append_as_leader(batch_at(2, 1000, 10), epoch, NOW)
                .unwrap();
        }
        let epochs = log.leader_epochs().to_vec();
        drop(log);
        std::fs::write(dir.join(LEADER_EPOCH_CHECKPOINT), "garbage").unwrap();
        let log = open_at(&dir, 0);
        assert_eq!(log.leader_epochs(), &epochs[..]);
        std::fs::remove_file(dir.join(LEADER_EPOCH_CHECKPOINT)).unwrap();
        drop(log);
        assert_eq!(open_at(&dir, 0).leader_epochs(), &epochs[..]);
    }

    #[test]
    fn reopening_many_times_yields_the_same_state() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let mut recovery_point = 0;
        let mut expected = None;
        for round in 0..12i64 {
            let mut log = open_at(&dir, recovery_point);
            if let Some(expected) = &expected {
                assert_eq!(&state(&log), expected, "round {round}");
            }
            for i in 0..(round % 5 + 1) {
                log.append_as_leader(
                    batch_at(1 + (i % 3) as usize, 1000 + round, 40),
                    (round / 3) as i32,
                    NOW,
                )
                .unwrap();
            }
            if round % 4 == 3 {
                log.truncate_to(log.log_end_offset() - 2).unwrap();
            }
            if round % 2 == 0 {
                log.close().unwrap();
            }
            // Odd rounds: dropped without a close, like a crash.
            recovery_point = log.recovery_point();
            expected = Some(state(&log));
        }
    }
}
