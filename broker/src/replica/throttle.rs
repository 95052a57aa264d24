//! Replication throttles (Kafka's KIP-73), so that replicas catching up after a
//! reassignment cannot starve clients:
//!
//! - the dynamic broker configs `leader.replication.throttled.rate` and
//!   `follower.replication.throttled.rate` (bytes per second, stored under
//!   `/config/brokers/<id>` or `/config/brokers/<default>`) cap this broker's throttled
//!   replication traffic as a leader and as a follower;
//! - the topic configs `leader.replication.throttled.replicas` and
//!   `follower.replication.throttled.replicas` (`*`, or `partition:broker,...`) say which
//!   replicas are throttled: on the leader side the entry names the leader's broker, on
//!   the follower side the follower's.
//!
//! As in Kafka, only replicas outside the ISR are throttled (catch-up traffic, never the
//! replication that acks=all writes wait for). A leader leaves a throttled partition out
//! of a follower's fetch answer while its quota is exceeded; a follower leaves it out of
//! its fetch request.
//!
//! A [`Quota`] is a token bucket that may go into debt: traffic passes while the balance
//! is not negative, every byte sent is taken from it, and it refills at the rate up to one
//! second's worth. So over any long period the throttled traffic is the rate plus at most
//! one fetch answer. Time is passed in, so the rules are tested without waiting.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The dynamic broker config of the leader-side rate.
pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
/// The dynamic broker config of the follower-side rate.
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
/// The topic config naming leader-side throttled replicas.
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
/// The topic config naming follower-side throttled replicas.
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// No limit.
const UNLIMITED: u64 = u64::MAX;

/// A byte-rate limit for throttled replication traffic.
#[derive(Debug)]
pub struct Quota {
    rate: AtomicU64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Bytes that may still pass; negative while in debt.
    balance: f64,
    at: Option<Instant>,
}

impl Default for Quota {
    fn default() -> Quota {
        Quota {
            rate: AtomicU64::new(UNLIMITED),
            bucket: Mutex::new(Bucket {
                balance: 0.0,
                at: None,
            }),
        }
    }
}

impl Quota {
    /// Sets the rate in bytes per second (`None`: unlimited). A new rate starts from an
    /// empty bucket.
    pub fn set_rate(&self, rate: Option<u64>) {
        let rate = rate.unwrap_or(UNLIMITED);
        if self.rate.swap(rate, Ordering::AcqRel) != rate {
            if let Ok(mut b) = self.bucket.lock() {
                *b = Bucket {
                    balance: 0.0,
                    at: None,
                };
            }
        }
    }

    /// The rate, if limited.
    pub fn rate(&self) -> Option<u64> {
        let r = self.rate.load(Ordering::Acquire);
        (r != UNLIMITED).then_some(r)
    }

    fn refill(b: &mut Bucket, rate: u64, now: Instant) {
        if let Some(at) = b.at {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            b.balance = (b.balance + elapsed * rate as f64).min(rate as f64);
        }
        b.at = Some(now);
    }

    /// Whether throttled traffic must wait now.
    pub fn exceeded(&self, now: Instant) -> bool {
        let Some(rate) = self.rate() else {
            return false;
        };
        let Ok(mut b) = self.bucket.lock() else {
            return false;
        };
        Self::refill(&mut b, rate, now);
        b.balance < 0.0
    }

    /// How long throttled traffic must still wait at `now` (zero if it may pass).
    pub fn wait_time(&self, now: Instant) -> std::time::Duration {
        let Some(rate) = self.rate() else {
            return std::time::Duration::ZERO;
        };
        let Ok(mut b) = self.bucket.lock() else {
            return std::time::Duration::ZERO;
        };
        Self::refill(&mut b, rate, now);
        if b.balance >= 0.0 {
            return std::time::Duration::ZERO;
        }
        if rate == 0 {
            // Nothing refills a zero rate: look again in a second (the rate may change).
            return std::time::Duration::from_secs(1);
        }
        std::time::Duration::from_secs_f64(-b.balance / rate as f64)
    }

    /// Counts `bytes` of throttled traffic sent or received at `now`.
    pub fn record(&self, bytes: usize, now: Instant) {
        let Some(rate) = self.rate() else {
            return;
        };
        if let Ok(mut b) = self.bucket.lock() {
            Self::refill(&mut b, rate, now);
            b.balance -= bytes as f64;
        }
    }
}

/// This broker's two quotas.
#[derive(Debug, Default)]
pub struct Throttles {
    pub leader: Quota,
    pub follower: Quota,
}

/// A `*.replication.throttled.replicas` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThrottledReplicas {
    All,
    Some(BTreeSet<(i32, i32)>),
}

impl ThrottledReplicas {
    /// Parses `*`, an empty string, or `partition:broker` pairs separated by commas.
    pub fn parse(value: &str) -> Result<ThrottledReplicas, String> {
        let value = value.trim();
        if value == "*" {
            return Ok(ThrottledReplicas::All);
        }
        let mut set = BTreeSet::new();
        for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let pair = item.split_once(':').and_then(|(p, b)| {
                Some((p.trim().parse::<i32>().ok()?, b.trim().parse::<i32>().ok()?))
            });
            match pair {
                Some((p, b)) if p >= 0 && b >= 0 => {
                    set.insert((p, b));
                }
                _ => {
                    return Err(format!(
                        "{item:?} is not partition:broker; the value must be '*' or a list \
                         like 0:1,1:2"
                    ))
                }
            }
        }
        Ok(ThrottledReplicas::Some(set))
    }

    /// Whether the replica of `partition` on `broker` is throttled.
    pub fn contains(&self, partition: i32, broker: i32) -> bool {
        match self {
            ThrottledReplicas::All => true,
            ThrottledReplicas::Some(set) => set.contains(&(partition, broker)),
        }
    }
}

/// Whether a topic config throttles the replica of `partition` on `broker` under `key`.
pub fn throttled(
    config: &std::collections::BTreeMap<String, String>,
    key: &str,
    partition: i32,
    broker: i32,
) -> bool {
    config
        .get(key)
        .and_then(|v| ThrottledReplicas::parse(v).ok())
        .is_some_and(|t| t.contains(partition, broker))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_unlimited_quota_never_holds_traffic_back() {
        let q = Quota::default();
        let t = Instant::now();
        q.record(1 << 30, t);
        assert!(!q.exceeded(t));
        assert_eq!(q.rate(), None);
    }

    #[test]
    fn a_quota_lets_the_rate_through_over_time_plus_one_answer() {
        let q = Quota::default();
        q.set_rate(Some(1000));
        let t0 = Instant::now();
        // Answers of 400 bytes, offered every 10 ms for 10 s: what passes?
        let mut passed = 0usize;
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(10 * i);
            if !q.exceeded(now) {
                q.record(400, now);
                passed += 400;
            }
        }
        // 10 s at 1000 B/s, plus at most one answer of debt.
        assert!((10_000..=10_400).contains(&passed), "{passed}");
    }

    #[test]
    fn a_quota_goes_into_debt_and_waits_it_out() {
        let q = Quota::default();
        q.set_rate(Some(1000));
        let t0 = Instant::now();
        assert!(!q.exceeded(t0));
        q.record(3000, t0);
        assert_eq!(q.wait_time(t0), Duration::from_secs(3));
        assert!(q.exceeded(t0 + Duration::from_millis(2900)));
        assert_eq!(
            q.wait_time(t0 + Duration::from_millis(3000)),
            Duration::ZERO
        );
        assert!(!q.exceeded(t0 + Duration::from_millis(3000)));
        // An idle period banks at most one second's worth.
        let later = t0 + Duration::from_secs(60);
        assert!(!q.exceeded(later));
        q.record(1000, later);
        assert!(!q.exceeded(later));
        q.record(1, later);
        assert!(q.exceeded(later));
        // Lifting the limit lets everything through at once.
        q.set_rate(None);
        assert!(!q.exceeded(later));
        assert_eq!(q.wait_time(later), Duration::ZERO);
        // A zero rate lets one answer through, then holds throttled traffic back.
        q.set_rate(Some(0));
        assert_eq!(q.wait_time(later), Duration::ZERO);
        q.record(1, later);
        assert!(q.exceeded(later + Duration::from_secs(60)));
        assert!(!q.wait_time(later + Duration::from_secs(60)).is_zero());
    }

    #[test]
    fn throttled_replica_lists_parse_and_match() {
        let t = ThrottledReplicas::parse("0:1, 1:2,2:3").unwrap();
        assert!(t.contains(1, 2) && !t.contains(1, 1));
        assert!(ThrottledReplicas::parse("*").unwrap().contains(9, 9));
        assert_eq!(
            ThrottledReplicas::parse("").unwrap(),
            ThrottledReplicas::Some(BTreeSet::new())
        );
        for bad in ["1", "a:b", "1:2:3", "-1:2", "0:1;1:2"] {
            assert!(ThrottledReplicas::parse(bad).is_err(), "{bad}");
        }
        let config = [(LEADER_REPLICAS.to_owned(), "0:1".to_owned())].into();
        assert!(throttled(&config, LEADER_REPLICAS, 0, 1));
        assert!(!throttled(&config, FOLLOWER_REPLICAS, 0, 1));
    }
}
