//! Unit tests of partitions and the replica manager on real logs.

use super::partition::*;
use super::producer_state::ProducerStates;
use super::truncation::{next_truncation, LeaderEpochEnd};
use super::*;
use crate::log::config::LogConfig;
use crate::log::manager::LogManager;
use crate::log::test_util::simple_batch;
use crate::log::topic_partition::TopicPartition;
use fjord_shared::cluster::PartitionState;
use kafka_protocol::ResponseError;
use std::sync::atomic::Ordering;
use tokio::sync::Notify;

fn partition(dir: &std::path::Path, me: i32) -> Arc<Partition> {
    let mut logs = LogManager::open(dir.to_path_buf(), LogConfig::default(), 0).unwrap();
    let tp = TopicPartition::new("t", 0);
    let log = logs
        .get_or_create(tp.clone(), LogConfig::default(), 0)
        .unwrap();
    Partition::new(PartitionInit {
        tp,
        topic_id: String::new(),
        me,
        log,
        producers: ProducerStates::default(),
        min_insync: 1,
        fsync_always: false,
        data_arrived: Arc::new(Notify::new()),
        isr_changes: Default::default(),
    })
}

fn state(leader: i32, epoch: i32, isr: &[i32]) -> PartitionState {
    PartitionState {
        version: 1,
        leader,
        leader_epoch: epoch,
        controller_epoch: 1,
        isr: isr.to_vec(),
    }
}

/// Copies everything the follower lacks from the leader, as one fetch would.
fn replicate(leader: &Partition, follower: &Partition, leader_id: i32) {
    let from = follower.log_end_offset();
    follower.follower_fetched_by(leader, from);
    let r = leader.read(from, 1 << 20, true, true).unwrap();
    follower
        .append_replicated(
            leader_id,
            follower.leader_epoch(),
            r.records,
            r.high_watermark,
            r.log_start_offset,
        )
        .unwrap();
}

impl Partition {
    fn follower_fetched_by(&self, leader: &Partition, offset: i64) {
        leader.follower_fetched(self.me, offset).unwrap();
    }
}

/// Runs OffsetForLeaderEpoch rounds between two partitions, as the fetcher does.
fn truncate_against(follower: &Partition, leader: &Partition) {
    for _ in 0..10 {
        let Some(epoch) = follower.latest_log_epoch() else {
            return;
        };
        let (e, end) = leader.end_offset_for_epoch(epoch).unwrap_or((-1, -1));
        let step = next_truncation(
            LeaderEpochEnd {
                epoch: e,
                end_offset: end,
            },
            follower.log_end_offset(),
            follower.high_watermark(),
            |x| follower.end_offset_for_epoch(x),
        );
        follower
            .truncate_to(leader.me, follower.leader_epoch(), step.offset)
            .unwrap();
        if step.complete {
            return;
        }
    }
    panic!("truncation did not finish");
}

#[test]
fn acks_all_waits_for_the_isr_and_min_insync_refuses_early() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (partition(dirs.0.path(), 1), partition(dirs.1.path(), 2));
    a.min_insync.store(2, Ordering::Release);
    a.apply_state(&state(1, 0, &[1]), 0, &[1, 2]);
    let err = a.append(simple_batch(3, 0, 4), -1).unwrap_err();
    assert_eq!(err.code, ResponseError::NotEnoughReplicas);
    // acks=1 does not care about the ISR size.
    a.append(simple_batch(3, 0, 4), 1).unwrap();
    assert_eq!(
        a.high_watermark(),
        3,
        "alone in the ISR: high watermark = log end"
    );

    a.apply_state(&state(1, 0, &[1, 2]), 1, &[1, 2]);
    assert!(b.apply_state(&state(1, 0, &[1, 2]), 1, &[1, 2]).is_some());
    let w = a.append(simple_batch(2, 0, 4), -1).unwrap();
    assert_eq!((w.base_offset, w.end_offset), (3, 5));
    assert_eq!(a.high_watermark(), 3, "the follower has not fetched yet");
    // Consumers see nothing above the high watermark.
    let r = a.read(3, 1 << 20, true, false).unwrap();
    assert!(r.records.is_empty());
    replicate(&a, &b, 1);
    assert_eq!(a.high_watermark(), 3, "fetched, but not yet confirmed");
    a.follower_fetched(2, b.log_end_offset()).unwrap();
    assert_eq!(a.high_watermark(), 5);
    assert_eq!(a.offset_for(-1, true).unwrap().0, 5);
}

#[test]
fn a_new_leader_answers_offset_not_available_until_its_high_watermark_catches_up() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (partition(dirs.0.path(), 1), partition(dirs.1.path(), 2));
    a.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
    b.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
    a.append(simple_batch(5, 0, 4), 1).unwrap();
    replicate(&a, &b, 1);
    a.follower_fetched(2, b.log_end_offset()).unwrap();
    assert_eq!(a.offset_for(-1, true).unwrap().0, 5);
    // b has all 5 records but learned the high watermark before it moved.
    assert_eq!(b.high_watermark(), 0);
    b.apply_state(&state(2, 1, &[2, 1]), 1, &[1, 2]);
    let err = b.offset_for(-1, true).unwrap_err();
    assert_eq!(err.code, ResponseError::OffsetNotAvailable);
    // A timestamp lookup that would land at or above the high watermark too.
    assert_eq!(
        b.offset_for(0, true).unwrap_err().code,
        ResponseError::OffsetNotAvailable
    );
    // Earliest is always known; old clients (ListOffsets v1) get the plain answer.
    assert_eq!(b.offset_for(-2, true).unwrap().0, 0);
    assert_eq!(b.offset_for(-1, false).unwrap().0, 0);
    // Once the follower fetches from the new leader, latest is monotonic again.
    assert!(a.apply_state(&state(2, 1, &[2, 1]), 1, &[1, 2]).is_some());
    b.follower_fetched(1, a.log_end_offset()).unwrap();
    assert_eq!(b.offset_for(-1, true).unwrap().0, 5);
    assert_eq!(b.offset_for(0, true).unwrap().0, 0);
}

#[test]
fn a_late_fetcher_answer_never_cuts_the_log_of_a_broker_that_now_leads() {
    let dir = tempfile::tempdir().unwrap();
    let a = partition(dir.path(), 1);
    a.apply_state(&state(2, 0, &[2, 1]), 0, &[1, 2]);
    a.apply_state(&state(1, 1, &[1, 2]), 1, &[1, 2]);
    a.append(simple_batch(5, 0, 4), 1).unwrap();
    // Answers meant for the follower of broker 2 in epoch 0.
    a.truncate_to(2, 0, 0).unwrap();
    a.restart_at(2, 0, 100).unwrap();
    assert_eq!((a.log_start_offset(), a.log_end_offset()), (0, 5));
}

#[test]
fn an_empty_epoch_at_the_log_end_is_dropped_by_a_truncation_that_cuts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = partition(dir.path(), 1);
    a.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
    a.append(simple_batch(5, 0, 4), 1).unwrap();
    // Leader in epoch 2 without writing anything, then a follower of broker 2.
    a.apply_state(&state(1, 2, &[1, 2]), 1, &[1, 2]);
    assert_eq!(a.latest_log_epoch(), Some(2));
    a.apply_state(&state(2, 3, &[2, 1]), 2, &[1, 2]);
    a.truncate_to(2, 3, 5).unwrap();
    assert_eq!(a.log_end_offset(), 5);
    assert_eq!(
        a.latest_log_epoch(),
        Some(0),
        "epoch 2 started at the end: gone"
    );
}

#[test]
fn a_diverged_follower_is_cut_back_and_then_matches_the_leader() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (partition(dirs.0.path(), 1), partition(dirs.1.path(), 2));
    // Epoch 0: broker 1 leads; broker 2 copies offsets 0..4.
    a.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
    b.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
    a.append(simple_batch(5, 0, 4), 1).unwrap();
    replicate(&a, &b, 1);
    // Broker 1 appends 5..9 that nobody copies (acks=1), then loses leadership.
    a.append(simple_batch(5, 0, 6), 1).unwrap();
    assert_eq!((a.log_end_offset(), b.log_end_offset()), (10, 5));
    // Epoch 1: broker 2 leads and writes its own 5..7.
    b.apply_state(&state(2, 1, &[2]), 2, &[1, 2]);
    b.append(simple_batch(3, 0, 9), 1).unwrap();
    // Broker 1 follows in epoch 1: it must drop its 5..9 before fetching.
    assert_eq!(
        a.apply_state(&state(2, 1, &[2]), 2, &[1, 2]),
        Some((2, 1, true))
    );
    assert!(!a.is_leader());
    truncate_against(&a, &b);
    assert_eq!(
        a.log_end_offset(),
        5,
        "epoch 0 ended at 5 on the new leader"
    );
    replicate(&b, &a, 2);
    assert_eq!(a.log_end_offset(), 8);
    let (x, y) = (
        a.read(0, 1 << 20, true, true).unwrap().records,
        b.read(0, 1 << 20, true, true).unwrap().records,
    );
    assert_eq!(x, y, "the logs are byte for byte the same");
    assert_eq!(a.end_offset_for_epoch(1), Some((1, 8)));
}

#[test]
fn a_deposed_leader_fails_waiting_produces() {
    let dir = tempfile::tempdir().unwrap();
    let a = partition(dir.path(), 1);
    a.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
    let w = a.append(simple_batch(1, 0, 4), -1).unwrap();
    a.apply_state(&state(2, 1, &[2]), 1, &[1, 2]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let r = rt.block_on(a.wait_replicated(w.end_offset, w.leader_epoch, deadline));
    assert_eq!(r.unwrap_err().code, ResponseError::NotLeaderOrFollower);
    // And a write that nobody copies times out.
    let dir_b = tempfile::tempdir().unwrap();
    let b = partition(dir_b.path(), 1);
    b.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
    let w = b.append(simple_batch(1, 0, 4), -1).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
    let r = rt.block_on(b.wait_replicated(w.end_offset, w.leader_epoch, deadline));
    assert_eq!(r.unwrap_err().code, ResponseError::RequestTimedOut);
}

/// Whether `action` wakes a fetch parked on `part` (checked without waiting).
fn wakes(part: &Partition, action: impl FnOnce()) -> bool {
    let parked = part.data_arrived.notified();
    tokio::pin!(parked);
    parked.as_mut().enable();
    action();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::future::Future::poll(parked, &mut cx).is_ready()
}

#[test]
fn appends_isr_changes_and_role_changes_wake_parked_fetches() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (partition(dirs.0.path(), 1), partition(dirs.1.path(), 2));
    a.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);
    b.apply_state(&state(1, 0, &[1, 2]), 0, &[1, 2]);

    // An acks=all append that cannot move the high watermark yet (the follower has not
    // copied it) must still wake the follower's parked fetch: the broker's own writers
    // (offset commits) wait on exactly this.
    let woke = wakes(&a, || {
        a.append(simple_batch(2, 0, 4), -1).unwrap();
    });
    assert_eq!(a.high_watermark(), 0);
    assert!(woke, "an append did not wake parked fetches");

    // A follower's fetch that moves the high watermark says so; the fetch handler then
    // wakes parked fetches once for its whole request.
    replicate(&a, &b, 1);
    assert!(a.follower_fetched(2, b.log_end_offset()).unwrap());
    assert_eq!(a.high_watermark(), 2);
    assert!(!a.follower_fetched(2, b.log_end_offset()).unwrap());

    // An ISR shrink that moves the high watermark wakes them.
    a.append(simple_batch(1, 0, 4), 1).unwrap();
    assert_eq!(a.high_watermark(), 2);
    let woke = wakes(&a, || {
        assert!(a.adopt_isr(0, vec![1], 1));
    });
    assert_eq!(a.high_watermark(), 3);
    assert!(
        woke,
        "a high watermark move by an ISR change did not wake fetches"
    );
    // ... and counts as an ISR shrink of a partition led here.
    let changes = &a.isr_changes;
    assert_eq!(changes.shrinks.load(Ordering::Relaxed), 1);
    assert_eq!(changes.expands.load(Ordering::Relaxed), 0);

    // A refused append wakes nobody.
    a.min_insync.store(3, Ordering::Release);
    let woke = wakes(&a, || {
        assert!(a.append(simple_batch(1, 0, 4), -1).is_err());
    });
    assert!(!woke, "a refused append woke parked fetches");

    // Losing the leadership wakes them, so they answer NOT_LEADER_OR_FOLLOWER at once.
    let woke = wakes(&a, || {
        a.apply_state(&state(2, 1, &[2]), 2, &[1, 2]);
    });
    assert!(!a.is_leader());
    assert!(woke, "a change of leader did not wake parked fetches");
}
