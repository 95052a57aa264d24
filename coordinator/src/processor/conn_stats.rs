//! Per-connection statistics, as ZooKeeper's `cons` and AdminServer `connections` show
//! them: the last operation, its xid and zxid, replies sent and their latencies.

use std::time::Instant;

/// What one connection has done.
#[derive(Debug, Clone)]
pub struct ConnStats {
    pub last_op: &'static str,
    pub last_cxid: i32,
    pub last_zxid: i64,
    pub sent: u64,
    pub last_response: Option<Instant>,
    /// Milliseconds: last, min, max, sum, and the number of replies timed.
    pub last_latency: u64,
    pub min_latency: u64,
    pub max_latency: u64,
    pub sum_latency: u64,
    pub timed: u64,
}

impl Default for ConnStats {
    fn default() -> Self {
        ConnStats {
            last_op: "NA",
            last_cxid: -1,
            last_zxid: -1,
            sent: 0,
            last_response: None,
            last_latency: 0,
            min_latency: 0,
            max_latency: 0,
            sum_latency: 0,
            timed: 0,
        }
    }
}

impl ConnStats {
    /// A request arrived.
    pub fn request(&mut self, opcode: i32, xid: i32) {
        self.last_op = op_name(opcode);
        self.last_cxid = xid;
    }

    /// A reply went out: `zxid` is the last zxid it reflects; `started` when its request
    /// arrived (none for notifications).
    pub fn replied(&mut self, zxid: i64, started: Option<Instant>) {
        self.sent += 1;
        let Some(t) = started else { return };
        let now = Instant::now();
        let ms = now.duration_since(t).as_millis() as u64;
        self.last_zxid = zxid;
        self.last_response = Some(now);
        self.last_latency = ms;
        self.min_latency = if self.timed == 0 {
            ms
        } else {
            self.min_latency.min(ms)
        };
        self.max_latency = self.max_latency.max(ms);
        self.sum_latency += ms;
        self.timed += 1;
    }

    /// The mean latency in ms (0 before the first reply).
    pub fn avg_latency(&self) -> u64 {
        self.sum_latency.checked_div(self.timed).unwrap_or(0)
    }
}

/// ZooKeeper's four-letter names of operations, as `cons` shows the last one.
pub fn op_name(opcode: i32) -> &'static str {
    use fjord_shared::jute::op;
    match opcode {
        op::PING => "PING",
        op::CREATE_SESSION => "SESS",
        op::CLOSE_SESSION => "CLOS",
        op::MULTI => "MULT",
        op::MULTI_READ => "MLTR",
        op::CREATE | op::CREATE2 | op::CREATE_TTL | op::CREATE_CONTAINER => "CREA",
        op::DELETE | op::DELETE_CONTAINER => "DELE",
        op::SET_DATA => "SETD",
        op::RECONFIG => "RECO",
        op::SET_ACL => "SETA",
        op::CHECK => "CHEC",
        op::SYNC => "SYNC",
        op::EXISTS => "EXIS",
        op::GET_DATA => "GETD",
        op::SET_WATCHES | op::SET_WATCHES2 => "SETW",
        op::ADD_WATCH => "ADDW",
        op::GET_ACL => "GETA",
        op::GET_CHILDREN | op::GET_CHILDREN2 => "GETC",
        op::GET_ALL_CHILDREN_NUMBER => "GETN",
        op::GET_EPHEMERALS => "GETE",
        op::CHECK_WATCHES | op::REMOVE_WATCHES => "REMW",
        op::WHO_AM_I => "HOMI",
        op::AUTH | op::SASL => "AUTH",
        _ => "NA",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_timed_and_notifications_only_counted() {
        let mut s = ConnStats::default();
        s.request(fjord_shared::jute::op::GET_DATA, 7);
        s.replied(42, Some(Instant::now()));
        s.replied(43, None);
        assert_eq!((s.last_op, s.last_cxid, s.last_zxid), ("GETD", 7, 42));
        assert_eq!((s.sent, s.timed), (2, 1));
        assert_eq!(op_name(fjord_shared::jute::op::PING), "PING");
    }
}
