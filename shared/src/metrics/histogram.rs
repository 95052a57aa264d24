//! A histogram updated with relaxed atomics only: one bucket counter and the sum, no lock,
//! so hot paths (every request, every fsync) can record into it.
//!
//! Values are recorded as integer ticks (nanoseconds for durations, items for sizes) and
//! shown divided by a scale: a duration histogram in seconds records nanoseconds with a
//! scale of 1e9; ZooKeeper's millisecond summaries record microseconds with a scale of 1e3.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in seconds, for request-sized durations: 0.5 ms to 10 s.
pub const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds, in milliseconds, for ZooKeeper's latency summaries shown as histograms.
pub const MILLISECONDS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0,
];

/// Upper bounds for counts (batch sizes).
pub const COUNTS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// A fixed-bucket histogram.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Bounds in ticks, for the hot path.
    tick_bounds: Box<[u64]>,
    /// Per bucket (not cumulative), plus one for values above the last bound.
    counts: Box<[AtomicU64]>,
    sum_ticks: AtomicU64,
    min_ticks: AtomicU64,
    max_ticks: AtomicU64,
    /// Ticks per display unit.
    scale: f64,
    /// Display units per second of duration (0 for histograms of counts).
    per_second: f64,
}

/// What a scrape shows: sum and count in display units, cumulative buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub sum: f64,
    pub count: u64,
    /// (upper bound, cumulative count), the last bound being +Inf.
    pub buckets: Vec<(f64, u64)>,
    /// The smallest and largest values seen (0 before the first).
    pub min: f64,
    pub max: f64,
}

impl Snapshot {
    /// (upper bound, count) of each bucket alone, not cumulative: what the encoder takes.
    pub fn per_bucket(&self) -> Vec<(f64, u64)> {
        let mut below = 0;
        self.buckets
            .iter()
            .map(|(b, c)| {
                let n = c - below;
                below = *c;
                (*b, n)
            })
            .collect()
    }

    /// The mean (0 before the first value).
    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// An estimate of quantile `q` (0..=1): the upper bound of the bucket it falls in,
    /// capped at the largest value seen.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        let bound = self
            .buckets
            .iter()
            .find(|(_, c)| *c >= rank)
            .map_or(self.max, |(b, _)| *b);
        bound.min(self.max)
    }
}

impl Histogram {
    /// A histogram over `bounds` (display units) recording ticks of `1/scale` units; a
    /// duration shows as `per_second` units a second.
    pub fn new(bounds: &'static [f64], scale: f64, per_second: f64) -> Histogram {
        Histogram {
            per_second,
            bounds,
            tick_bounds: bounds.iter().map(|b| (b * scale).round() as u64).collect(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ticks: AtomicU64::new(0),
            min_ticks: AtomicU64::new(u64::MAX),
            max_ticks: AtomicU64::new(0),
            scale,
        }
    }

    /// Durations in seconds (ticks of a nanosecond).
    pub fn seconds() -> Histogram {
        Histogram::new(SECONDS, 1e9, 1.0)
    }

    /// Durations in milliseconds (ticks of a microsecond), as ZooKeeper reports them.
    pub fn milliseconds() -> Histogram {
        Histogram::new(MILLISECONDS, 1e3, 1e3)
    }

    /// Plain counts.
    pub fn counts() -> Histogram {
        Histogram::new(COUNTS, 1.0, 0.0)
    }

    /// Records a value in ticks.
    pub fn observe_ticks(&self, ticks: u64) {
        let i = self
            .tick_bounds
            .iter()
            .position(|b| ticks <= *b)
            .unwrap_or(self.tick_bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ticks.fetch_add(ticks, Ordering::Relaxed);
        self.min_ticks.fetch_min(ticks, Ordering::Relaxed);
        self.max_ticks.fetch_max(ticks, Ordering::Relaxed);
    }

    /// Records a duration (for the duration histograms).
    pub fn observe(&self, d: Duration) {
        let ticks = d.as_secs_f64() * self.per_second * self.scale;
        self.observe_ticks(ticks.max(0.0) as u64);
    }

    /// The current state, for a scrape.
    pub fn snapshot(&self) -> Snapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        let (min, max) = match cumulative {
            0 => (0.0, 0.0),
            _ => (
                self.min_ticks.load(Ordering::Relaxed) as f64 / self.scale,
                self.max_ticks.load(Ordering::Relaxed) as f64 / self.scale,
            ),
        };
        Snapshot {
            sum: self.sum_ticks.load(Ordering::Relaxed) as f64 / self.scale,
            count: cumulative,
            buckets,
            min,
            max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_fall_in_their_buckets() {
        let h = Histogram::seconds();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(20));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert!((s.sum - 20.0033).abs() < 1e-9, "{}", s.sum);
        assert_eq!(s.buckets[0], (0.0005, 1));
        assert_eq!(s.buckets[3], (0.005, 2));
        assert_eq!(s.buckets[SECONDS.len() - 1], (10.0, 2));
        assert_eq!(s.buckets[SECONDS.len()], (f64::INFINITY, 3));
        assert!((s.min - 0.0003).abs() < 1e-12 && (s.max - 20.0).abs() < 1e-12);
        assert_eq!(s.quantile(0.5), 0.005);
        assert_eq!(s.quantile(0.99), 20.0);
        assert!((s.avg() - 20.0033 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn milliseconds_and_counts() {
        let h = Histogram::milliseconds();
        h.observe(Duration::from_micros(2_000));
        let s = h.snapshot();
        assert_eq!((s.sum, s.count), (2.0, 1));
        assert_eq!(s.buckets[2], (2.5, 1));
        assert_eq!(s.buckets[1], (1.0, 0));
        let c = Histogram::counts();
        c.observe_ticks(7);
        c.observe_ticks(1);
        let s = c.snapshot();
        assert_eq!((s.sum, s.count), (8.0, 2));
        assert_eq!(s.buckets[0], (1.0, 1));
        assert_eq!(s.buckets[3], (10.0, 2));
    }
}
