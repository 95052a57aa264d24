//! What the processor shows of itself: the four-letter words, the AdminServer commands
//! and the metrics read this [`View`].

use super::*;

impl Processor {
    /// The processor's state. Without `full`, the lists (sessions, ephemerals, watches,
    /// connections) are left empty and only their sizes are filled in, so a metrics
    /// scrape copies nothing large.
    pub(super) fn view(&self, full: bool) -> View {
        let durable = Some(*self.durable.borrow());
        View {
            last_zxid: self.state.last_zxid,
            node_count: self.state.tree.node_count(),
            data_size: self.state.tree.approximate_data_size(),
            ephemerals: self.state.tree.ephemeral_count(),
            ephemeral_list: if full {
                self.state
                    .tree
                    .ephemeral_sessions()
                    .map(|(s, p)| (*s, p.iter().cloned().collect()))
                    .collect()
            } else {
                Vec::new()
            },
            session_count: self.state.sessions.len(),
            sessions: if full {
                self.state
                    .sessions
                    .iter()
                    .map(|s| (s.id, s.timeout_ms, s.deadline()))
                    .collect()
            } else {
                Vec::new()
            },
            watch_count: self.watches.count(),
            watches_by_conn: if full {
                self.watches.paths_by_conn()
            } else {
                Vec::new()
            },
            conn_count: self.conns.len(),
            conns: if full {
                self.conns
                    .iter()
                    .map(|(id, c)| four_letter::ConnView {
                        id: *id,
                        peer: c.peer,
                        secure: c.secure,
                        session: c.session,
                        timeout_ms: c.timeout_ms,
                        received: c.received,
                        since_ms: c.since.elapsed().as_millis() as u64,
                        established_ms: wall_ms()
                            .saturating_sub(c.since.elapsed().as_millis() as i64),
                        outstanding: c.pending as usize + c.queue.len(),
                        stats: c.stats.clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            stats: self.stats.clone(),
            log_failed: durable.is_some_and(|d| d.failed),
            tick_ms: self.cfg.tick_ms,
            min_session_ms: self.cfg.min_session_ms,
            max_session_ms: self.cfg.max_session_ms,
            data_dir: self.cfg.data_dir.display().to_string(),
            max_frame: self.cfg.max_frame,
            now_ms: self.now(),
            member: self.member,
            role: four_letter::RoleView {
                mode: match self.leader {
                    None => None,
                    Some(_) if self.alone() => Some("standalone"),
                    Some(l) if l == self.member => Some("leader"),
                    Some(_) => Some("follower"),
                },
                followers: self.followers.0,
                synced_followers: self.followers.1,
                pending_syncs: self.conns.values().filter(|c| c.sync.is_some()).count(),
                leader_uptime_ms: self
                    .leading_since
                    .map_or(0, |t| t.elapsed().as_millis() as u64),
            },
        }
    }
}
