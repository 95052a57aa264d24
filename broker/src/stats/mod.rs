//! Hot-path counters: what request handling records as it goes, with relaxed atomics only.
//! The scrape (`crate::metrics`) reads them, together with state it computes then.
//!
//! Requests, errors and durations are kept per served API (a slot in
//! `handler::SUPPORTED`); message and byte counts per topic, as Kafka's
//! `BrokerTopicMetrics` keeps them, plus the broker-wide totals.

pub mod errors;

use dashmap::DashMap;
use fjord_shared::metrics::histogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Request versions counted separately (higher ones share the last slot).
pub const VERSIONS: usize = 18;

/// Error codes counted separately: -1 (UNKNOWN_SERVER_ERROR) up to this, exclusive.
pub const ERROR_CODES: usize = 160;

/// Log flushes (fsyncs of partition logs), broker-wide as Kafka's `LogFlushStats`.
pub static LOG_FLUSH: LazyLock<Histogram> = LazyLock::new(Histogram::seconds);

/// Adds `n` (relaxed).
fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Per-API request counters.
#[derive(Debug)]
pub struct RequestStats {
    /// [api slot][version]
    requests: Box<[AtomicU64]>,
    /// [api slot][error code + 1]
    errors: Box<[AtomicU64]>,
    /// Per api slot: receipt to response encoded.
    durations: Box<[Histogram]>,
    apis: usize,
}

impl RequestStats {
    pub fn new(apis: usize) -> RequestStats {
        RequestStats {
            requests: (0..apis * VERSIONS).map(|_| AtomicU64::new(0)).collect(),
            errors: (0..apis * ERROR_CODES).map(|_| AtomicU64::new(0)).collect(),
            durations: (0..apis).map(|_| Histogram::seconds()).collect(),
            apis,
        }
    }

    /// One request of the API in `slot` at `version`, which took `took`.
    pub fn request(&self, slot: usize, version: i16, took: Duration) {
        if slot >= self.apis {
            return;
        }
        let v = (version.max(0) as usize).min(VERSIONS - 1);
        add(&self.requests[slot * VERSIONS + v], 1);
        self.durations[slot].observe(took);
    }

    /// `n` occurrences of error `code` (0: none) in answers of the API in `slot`.
    pub fn errors(&self, slot: usize, code: i16, n: u64) {
        let i = code as i32 + 1;
        if slot >= self.apis || i < 0 || i as usize >= ERROR_CODES {
            return;
        }
        add(&self.errors[slot * ERROR_CODES + i as usize], n);
    }

    /// Non-zero request counts of `slot`: (version, count).
    pub fn requests_of(&self, slot: usize) -> impl Iterator<Item = (i16, u64)> + '_ {
        (0..VERSIONS).filter_map(move |v| {
            let n = self.requests[slot * VERSIONS + v].load(Ordering::Relaxed);
            (n > 0).then_some((v as i16, n))
        })
    }

    /// Non-zero error counts of `slot`: (code, count).
    pub fn errors_of(&self, slot: usize) -> impl Iterator<Item = (i16, u64)> + '_ {
        (0..ERROR_CODES).filter_map(move |i| {
            let n = self.errors[slot * ERROR_CODES + i].load(Ordering::Relaxed);
            (n > 0).then_some((i as i16 - 1, n))
        })
    }

    /// The duration histogram of `slot`, if it has seen a request.
    pub fn duration_of(&self, slot: usize) -> Option<&Histogram> {
        self.durations.get(slot)
    }
}

/// ISR changes of the partitions a broker leads, whoever wrote them (the leader itself,
/// or the controller when a replica's broker died).
#[derive(Debug, Default)]
pub struct IsrChanges {
    pub shrinks: AtomicU64,
    pub expands: AtomicU64,
}

impl IsrChanges {
    /// The ISR of a partition led here went from `before` to `after` replicas.
    pub fn changed(&self, before: usize, after: usize) {
        if after < before {
            add(&self.shrinks, 1);
        } else if after > before {
            add(&self.expands, 1);
        }
    }
}

/// Kafka's `BrokerTopicMetrics` for one topic (or for all of them).
#[derive(Debug, Default)]
pub struct TopicStats {
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub failed_produce: AtomicU64,
    pub failed_fetch: AtomicU64,
    pub total_produce: AtomicU64,
    pub total_fetch: AtomicU64,
}

impl TopicStats {
    /// The counters in the order of [`TOPIC_COUNTERS`].
    pub fn values(&self) -> [u64; 7] {
        [
            &self.messages_in,
            &self.bytes_in,
            &self.bytes_out,
            &self.failed_produce,
            &self.failed_fetch,
            &self.total_produce,
            &self.total_fetch,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// (JMX exporter name without `_total`, help) of each topic counter.
pub const TOPIC_COUNTERS: [(&str, &str); 7] = [
    (
        "kafka_server_brokertopicmetrics_messagesin",
        "Records appended by producers (MessagesInPerSec)",
    ),
    (
        "kafka_server_brokertopicmetrics_bytesin",
        "Bytes of record batches appended by producers (BytesInPerSec)",
    ),
    (
        "kafka_server_brokertopicmetrics_bytesout",
        "Bytes of records sent to consumers (BytesOutPerSec; followers not counted)",
    ),
    (
        "kafka_server_brokertopicmetrics_failedproducerequests",
        "Partition produce requests that failed (FailedProduceRequestsPerSec)",
    ),
    (
        "kafka_server_brokertopicmetrics_failedfetchrequests",
        "Partition fetch requests that failed (FailedFetchRequestsPerSec)",
    ),
    (
        "kafka_server_brokertopicmetrics_totalproducerequests",
        "Partition produce requests (TotalProduceRequestsPerSec)",
    ),
    (
        "kafka_server_brokertopicmetrics_totalfetchrequests",
        "Partition fetch requests (TotalFetchRequestsPerSec)",
    ),
];

/// Everything the hot paths record.
#[derive(Debug)]
pub struct BrokerStats {
    pub requests: RequestStats,
    topics: DashMap<String, Arc<TopicStats>>,
    /// All topics together (Kafka's unlabelled series).
    pub all: TopicStats,
    /// acks=all produce requests: from the append to the ISR having it (or the timeout).
    pub acks_all_wait: Histogram,
}

impl BrokerStats {
    pub fn new(apis: usize) -> BrokerStats {
        BrokerStats {
            requests: RequestStats::new(apis),
            topics: DashMap::new(),
            all: TopicStats::default(),
            acks_all_wait: Histogram::seconds(),
        }
    }

    /// Runs `f` on the counters of `topic` and on the totals.
    fn on_topic(&self, topic: &str, f: impl Fn(&TopicStats)) {
        f(&self.all);
        if let Some(t) = self.topics.get(topic) {
            return f(&t);
        }
        let t = self.topics.entry(topic.to_owned()).or_default().clone();
        f(&t);
    }

    /// A produce to one partition of `topic`: `records` records in `bytes` bytes were
    /// appended, or it failed (`None`).
    pub fn produced(&self, topic: &str, appended: Option<(u64, u64)>) {
        self.on_topic(topic, |t| {
            add(&t.total_produce, 1);
            match appended {
                Some((records, bytes)) => {
                    add(&t.messages_in, records);
                    add(&t.bytes_in, bytes);
                }
                None => add(&t.failed_produce, 1),
            }
        });
    }

    /// A fetch from one partition of `topic`: `bytes` sent to a consumer (0 for
    /// followers), or it failed (`None`).
    pub fn fetched(&self, topic: &str, bytes: Option<u64>) {
        self.on_topic(topic, |t| {
            add(&t.total_fetch, 1);
            match bytes {
                Some(b) => add(&t.bytes_out, b),
                None => add(&t.failed_fetch, 1),
            }
        });
    }

    /// The per-topic counters, for a scrape: (topic, counters).
    pub fn topics(&self) -> Vec<(String, [u64; 7])> {
        let mut v: Vec<(String, [u64; 7])> = self
            .topics
            .iter()
            .map(|e| (e.key().clone(), e.value().values()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Forgets a deleted topic's counters (Kafka removes its metrics then).
    pub fn forget_topic(&self, topic: &str) {
        self.topics.remove(topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_errors_and_topics_count() {
        let s = BrokerStats::new(3);
        s.requests.request(1, 9, Duration::from_millis(1));
        s.requests.request(1, 9, Duration::from_millis(1));
        s.requests.request(1, 40, Duration::from_millis(1));
        s.requests.request(7, 0, Duration::from_millis(1));
        assert_eq!(
            s.requests.requests_of(1).collect::<Vec<_>>(),
            vec![(9, 2), ((VERSIONS - 1) as i16, 1)]
        );
        s.requests.errors(1, 0, 5);
        s.requests.errors(1, -1, 1);
        s.requests.errors(1, 3, 2);
        s.requests.errors(1, 999, 2);
        assert_eq!(
            s.requests.errors_of(1).collect::<Vec<_>>(),
            vec![(-1, 1), (0, 5), (3, 2)]
        );
        assert_eq!(
            s.requests.duration_of(1).map(|h| h.snapshot().count),
            Some(3)
        );
        s.produced("a", Some((10, 1000)));
        s.produced("a", None);
        s.fetched("b", Some(300));
        s.fetched("b", None);
        let topics = s.topics();
        assert_eq!(topics[0], ("a".to_owned(), [10, 1000, 0, 1, 0, 2, 0]));
        assert_eq!(topics[1], ("b".to_owned(), [0, 0, 300, 0, 1, 0, 2]));
        assert_eq!(s.all.values(), [10, 1000, 300, 1, 1, 2, 2]);
        s.forget_topic("a");
        assert_eq!(s.topics().len(), 1);
    }
}
