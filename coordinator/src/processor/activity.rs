//! When the processor spins for the next request instead of sleeping, and writes replies
//! itself: while few connections were active in the last few milliseconds.

use super::*;

/// How long the processor polls for the next request before it sleeps; see
/// [`Processor::wait`]. Longer than a one-client round trip including an fsync.
pub(super) const SPIN: Duration = Duration::from_micros(200);
/// Active connections are counted over windows of this length.
pub(super) const ACTIVITY_WINDOW: Duration = Duration::from_millis(10);

/// Which connections sent requests lately, to decide whether polling pays off.
pub(super) struct Activity {
    /// Connections seen in the current window.
    seen: std::collections::HashSet<ConnId>,
    window_start: Instant,
    /// Connections seen in the last full window.
    last: usize,
    /// Poll only while at most this many connections are active: one per CPU.
    limit: usize,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            seen: Default::default(),
            window_start: Instant::now(),
            last: 0,
            limit: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    pub(super) fn record(&mut self, conn: ConnId) {
        self.seen.insert(conn);
    }

    /// Whether at most one connection per CPU was active lately (as of the last check).
    pub(super) fn few_active(&self) -> bool {
        self.last.max(self.seen.len()) <= self.limit
    }

    /// True while some but few connections are active.
    pub(super) fn should_spin(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= ACTIVITY_WINDOW {
            self.last = self.seen.len();
            self.seen.clear();
            self.window_start = now;
        }
        let active = self.last.max(self.seen.len());
        active > 0 && active <= self.limit
    }
}
