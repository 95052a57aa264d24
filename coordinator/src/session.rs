//! The session table: which sessions are alive and when each one expires.
//!
//! Pure, with the clock passed in (milliseconds on any monotonic scale), so expiry is tested
//! without sleeping. Like ZooKeeper's `SessionTrackerImpl`, deadlines are rounded up to the
//! next tick so that expiry work is batched per tick rather than per session.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: i64,
    /// Negotiated timeout in milliseconds.
    pub timeout_ms: i32,
    pub passwd: [u8; 16],
    /// When it expires unless touched.
    deadline: u64,
    /// Set once a close or expiry is under way, so it is not expired twice.
    pub closing: bool,
    /// The ensemble member the session's client is connected through (0: unknown, as for
    /// sessions from before ensembles). Replicated: set by the session's creation and by
    /// every reconnect.
    pub owner: u64,
}

/// The table of sessions and their deadlines.
#[derive(Debug)]
pub struct SessionTracker {
    tick_ms: u64,
    sessions: HashMap<i64, Session>,
    /// deadline → sessions expiring then.
    wheel: BTreeMap<u64, BTreeSet<i64>>,
}

impl Session {
    /// When it expires unless touched (ms on the processor's clock).
    pub fn deadline(&self) -> u64 {
        self.deadline
    }
}

impl SessionTracker {
    pub fn new(tick_ms: u64) -> SessionTracker {
        SessionTracker {
            tick_ms: tick_ms.max(1),
            sessions: HashMap::new(),
            wheel: BTreeMap::new(),
        }
    }

    fn round_up(&self, t: u64) -> u64 {
        t.div_ceil(self.tick_ms) * self.tick_ms
    }

    /// Adds (or replaces) a session that expires `timeout_ms` after `now`.
    pub fn add(&mut self, id: i64, timeout_ms: i32, passwd: [u8; 16], now: u64) {
        self.remove(id);
        let deadline = self.round_up(now + timeout_ms.max(0) as u64);
        self.sessions.insert(
            id,
            Session {
                id,
                timeout_ms,
                passwd,
                deadline,
                closing: false,
                owner: 0,
            },
        );
        self.wheel.entry(deadline).or_default().insert(id);
    }

    pub fn get(&self, id: i64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.sessions.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// Pushes a live session's deadline out by its timeout. Returns false if the session is
    /// unknown or closing.
    pub fn touch(&mut self, id: i64, now: u64) -> bool {
        let Some(s) = self.sessions.get(&id) else {
            return false;
        };
        if s.closing {
            return false;
        }
        let deadline = self.round_up(now + s.timeout_ms.max(0) as u64);
        self.move_deadline(id, deadline);
        true
    }

    /// Changes a session's timeout (a resumed session renegotiates) and touches it.
    pub fn set_timeout(&mut self, id: i64, timeout_ms: i32, now: u64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.timeout_ms = timeout_ms;
        }
        self.touch(id, now);
    }

    fn move_deadline(&mut self, id: i64, deadline: u64) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.deadline == deadline {
            return;
        }
        let old = std::mem::replace(&mut s.deadline, deadline);
        if let Some(set) = self.wheel.get_mut(&old) {
            set.remove(&id);
            if set.is_empty() {
                self.wheel.remove(&old);
            }
        }
        self.wheel.entry(deadline).or_default().insert(id);
    }

    /// Records which member the session's client is connected through.
    pub fn set_owner(&mut self, id: i64, owner: u64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.owner = owner;
        }
    }

    /// Marks a session as closing; it stays in the table until [`remove`](Self::remove).
    pub fn set_closing(&mut self, id: i64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.closing = true;
        }
    }

    pub fn remove(&mut self, id: i64) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        if let Some(set) = self.wheel.get_mut(&s.deadline) {
            set.remove(&id);
            if set.is_empty() {
                self.wheel.remove(&s.deadline);
            }
        }
        Some(s)
    }

    /// Sessions whose deadline has passed and that are not already closing, marked closing.
    pub fn expire(&mut self, now: u64) -> Vec<i64> {
        let due: Vec<u64> = self.wheel.range(..=now).map(|(t, _)| *t).collect();
        let mut out = Vec::new();
        for t in due {
            if let Some(ids) = self.wheel.remove(&t) {
                for id in ids {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        if !s.closing {
                            s.closing = true;
                            out.push(id);
                        }
                    }
                }
            }
        }
        out
    }

    /// Restarts every session's clock: used after recovery, since time spent down must not
    /// count against clients (ZooKeeper does the same when it loads sessions).
    pub fn restart_clocks(&mut self, now: u64) {
        let ids: Vec<i64> = self.sessions.keys().copied().collect();
        for id in ids {
            if let Some(s) = self.sessions.get_mut(&id) {
                s.closing = false;
            }
            self.touch(id, now);
        }
    }
}

/// Clamps a requested timeout to `[min, max]`, as ZooKeeper does with `2 × tick` and `20 × tick`.
pub fn negotiate_timeout(requested: i32, min_ms: i32, max_ms: i32) -> i32 {
    requested.clamp(min_ms, max_ms.max(min_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_after_their_timeout_unless_touched() {
        let mut t = SessionTracker::new(100);
        t.add(1, 1000, [0; 16], 0);
        t.add(2, 1000, [0; 16], 0);
        assert!(t.expire(999).is_empty());
        assert!(t.touch(2, 500));
        assert_eq!(t.expire(1000), vec![1]);
        // Expired once only, and it stays until removed.
        assert!(t.expire(1000).is_empty());
        assert!(t.get(1).unwrap().closing);
        assert!(!t.touch(1, 1000), "a closing session cannot be revived");
        assert_eq!(t.expire(1499), Vec::<i64>::new());
        assert_eq!(t.expire(1500), vec![2]);
        t.remove(1);
        t.remove(2);
        assert!(t.is_empty());
    }

    #[test]
    fn deadlines_round_up_to_the_tick() {
        let mut t = SessionTracker::new(100);
        t.add(1, 1000, [0; 16], 50);
        assert!(t.expire(1050).is_empty());
        assert_eq!(t.expire(1100), vec![1]);
    }

    #[test]
    fn restart_clocks_gives_recovered_sessions_a_full_timeout() {
        let mut t = SessionTracker::new(10);
        t.add(7, 200, [1; 16], 0);
        t.set_closing(7);
        t.restart_clocks(10_000);
        assert!(t.expire(10_199).is_empty());
        assert_eq!(t.expire(10_200), vec![7]);
    }

    #[test]
    fn set_timeout_renegotiates() {
        let mut t = SessionTracker::new(10);
        t.add(3, 100, [0; 16], 0);
        t.set_timeout(3, 1000, 50);
        assert!(t.expire(500).is_empty());
        assert_eq!(t.expire(1050), vec![3]);
    }

    #[test]
    fn timeout_is_clamped() {
        assert_eq!(negotiate_timeout(100, 400, 4000), 400);
        assert_eq!(negotiate_timeout(30000, 400, 4000), 4000);
        assert_eq!(negotiate_timeout(1000, 400, 4000), 1000);
    }
}
