//! The write pipeline's back half: committed entries from the replicated log, applied in
//! order on every member; snapshots out of and into the processor's state.

use super::*;
use crate::ensemble::SnapshotMeta;
use crate::persist::snapshot::Loaded;
use crate::session::SessionTracker;
use openraft::EntryPayload;

impl Processor {
    pub(super) fn on_state_machine(&mut self, req: SmRequest) {
        match req {
            SmRequest::Apply { entries, done } => {
                // Everything handed over is committed: frames that depend on these entries
                // may go out as soon as they are queued.
                if let Some(last) = entries.last() {
                    let zxid = ensemble::zxid(last.log_id.index, 0xffff);
                    self.durable.send_modify(|d| d.zxid = d.zxid.max(zxid));
                }
                for e in entries {
                    self.apply_entry(e);
                }
                if !self.syncing.is_empty() {
                    self.answer_syncs();
                }
                let _ = done.send(());
            }
            SmRequest::Snapshot { reply } => {
                let job = SnapshotJob::of(&self.state, None);
                let _ = reply.send((job, self.applied, self.membership.clone()));
            }
            SmRequest::Install { loaded, meta, done } => {
                self.install(*loaded, meta);
                let _ = done.send(());
            }
            SmRequest::Applied { reply } => {
                let _ = reply.send((self.applied, self.membership.clone()));
            }
        }
    }

    fn apply_entry(&mut self, e: ensemble::Entry) {
        let index = e.log_id.index;
        let zxid = ensemble::zxid(index, 0);
        match e.payload {
            EntryPayload::Blank => self.advance(zxid),
            EntryPayload::Membership(m) => {
                tracing::info!(zxid, membership = %m, "membership applied");
                self.membership = StoredMembership::new(Some(e.log_id), m);
                self.advance(zxid);
            }
            EntryPayload::Normal(batch) => {
                self.since_snapshot += batch.0.len() as u64;
                if self.since_snapshot >= self.cfg.snapshot_txns {
                    self.since_snapshot = 0;
                    self.outbound(Outbound::Snapshot);
                }
                for (i, p) in batch.0.into_iter().enumerate() {
                    let zxid = ensemble::zxid(index, i);
                    self.apply_proposal(zxid, p);
                    self.advance(zxid);
                }
            }
        }
        self.applied = Some(e.log_id);
    }

    /// Every log position consumes a zxid, also one that changes no node.
    fn advance(&mut self, zxid: i64) {
        if zxid > self.state.last_zxid {
            self.state.last_zxid = zxid;
        }
    }

    fn apply_proposal(&mut self, zxid: i64, p: Proposal) {
        // The connection this member answers, if the request came through it.
        let local = p
            .origin
            .filter(|o| self.ours(o))
            .filter(|o| {
                self.conns
                    .get(&o.conn)
                    .is_some_and(|c| c.session == p.session)
            })
            .map(|o| (o.conn, o.xid));
        let started = local.and_then(|(conn, _)| {
            let c = self.conns.get_mut(&conn)?;
            c.pending = c.pending.saturating_sub(1);
            // A session's creation or resumption has no request slot of its own.
            if matches!(p.op, Op::CreateSession { .. } | Op::Reconnect { .. }) {
                return None;
            }
            c.inflight.pop_front()
        });
        match p.op {
            Op::CreateSession { timeout_ms, passwd } => {
                self.commit_txn(
                    zxid,
                    p.time,
                    p.session,
                    Txn::CreateSession { timeout_ms, passwd },
                );
                if let Some(o) = p.origin {
                    self.state.sessions.set_owner(p.session, o.member);
                }
                if let Some((conn, _)) = local {
                    let read_only = self.conns.get(&conn).and_then(|c| c.read_only);
                    tracing::debug!(
                        session_id = format_args!("{:#x}", p.session),
                        timeout_ms,
                        "session created"
                    );
                    let resp = ConnectResponse {
                        protocol_version: 0,
                        timeout: timeout_ms,
                        session_id: p.session,
                        passwd: Bytes::copy_from_slice(&passwd),
                        read_only,
                    };
                    self.send(conn, zxid, connect_frame(&resp), None);
                }
            }
            Op::CloseSession => {
                if self.state.sessions.contains(p.session) {
                    self.commit_txn(zxid, p.time, p.session, Txn::CloseSession);
                }
                if let Some((conn, xid)) = local {
                    self.send_write_reply(conn, zxid, reply_frame(xid, zxid, 0, no_body), started);
                    self.session_conn.remove(&p.session);
                    self.close(conn, zxid, "session closed by the client".into());
                } else if let Some(conn) = self.session_conn.remove(&p.session) {
                    self.close(conn, zxid, "session expired".into());
                }
            }
            Op::Request { opcode, body, auth } => {
                let ids: Vec<Id> = auth
                    .into_iter()
                    .map(|(scheme, id)| Id { scheme, id })
                    .collect();
                let from = p.origin.map(|o| o.member);
                let reply = self.apply_request(zxid, p.time, p.session, from, opcode, &body, &ids);
                if let Some((conn, xid)) = local {
                    let (err, body) = reply;
                    let frame = reply_frame(xid, zxid, err, |b| b.extend_from_slice(&body));
                    self.send_write_reply(conn, zxid, frame, started);
                }
            }
            Op::Reconnect { timeout_ms, passwd } => {
                let valid = self
                    .state
                    .sessions
                    .get(p.session)
                    .is_some_and(|s| s.passwd == passwd);
                if valid {
                    let now = self.now();
                    self.state.sessions.set_timeout(p.session, timeout_ms, now);
                    if let Some(o) = p.origin {
                        self.state.sessions.set_owner(p.session, o.member);
                    }
                }
                match local {
                    Some((conn, _)) => {
                        let read_only = self.conns.get(&conn).and_then(|c| c.read_only);
                        let resp = if valid {
                            tracing::debug!(
                                session_id = format_args!("{:#x}", p.session),
                                "session resumed"
                            );
                            ConnectResponse {
                                protocol_version: 0,
                                timeout: timeout_ms,
                                session_id: p.session,
                                passwd: Bytes::copy_from_slice(&passwd),
                                read_only,
                            }
                        } else {
                            tracing::info!(
                                session_id = format_args!("{:#x}", p.session),
                                "reconnect for an expired or unknown session (or a wrong password)"
                            );
                            ConnectResponse {
                                protocol_version: 0,
                                timeout: 0,
                                session_id: 0,
                                passwd: Bytes::from_static(&[0; 16]),
                                read_only,
                            }
                        };
                        self.send(conn, zxid, connect_frame(&resp), None);
                        if !valid {
                            self.session_conn.remove(&p.session);
                            self.close(conn, zxid, "session expired".into());
                        }
                    }
                    None if valid => {
                        // The session moved to another member.
                        if let Some(conn) = self.session_conn.remove(&p.session) {
                            let to = p.origin.map(|o| o.member).unwrap_or(0);
                            self.close(conn, zxid, format!("the session moved to member {to}"));
                        }
                    }
                    None => {}
                }
            }
            Op::DeleteContainer { path } => {
                let still_empty = self.state.tree.get(&path).is_some_and(|n| {
                    n.is_container() && n.num_children() == 0 && n.stat.cversion > 0
                });
                if still_empty {
                    self.commit_txn(zxid, p.time, 0, Txn::Delete { path });
                }
            }
        }
        if let Some((conn, _)) = local {
            self.drain_queue(conn);
        }
    }

    /// Validates and applies one client write; returns the reply's error code and body.
    #[allow(clippy::too_many_arguments)]
    fn apply_request(
        &mut self,
        zxid: i64,
        time: i64,
        session: i64,
        from: Option<u64>,
        opcode: i32,
        body: &[u8],
        ids: &[Id],
    ) -> (i32, BytesMut) {
        let mut out = BytesMut::new();
        let Some(owner) = self.state.sessions.get(session).map(|s| s.owner) else {
            // The session ended between the proposal and now (expired, or closed through
            // another member): ZooKeeper refuses the write the same way.
            let err = ErrorCode::SessionExpired.code();
            self.commit_txn(zxid, time, session, Txn::Error { err });
            return (err, out);
        };
        if let Some(from) = from.filter(|f| owner != 0 && *f != owner) {
            // Sent through a member the session has since moved away from.
            tracing::debug!(
                session_id = format_args!("{session:#x}"),
                from,
                owner,
                "write from a member the session moved away from"
            );
            let err = ErrorCode::SessionMoved.code();
            self.commit_txn(zxid, time, session, Txn::Error { err });
            return (err, out);
        }
        let req = match request::decode(opcode, body) {
            Ok(r) => r,
            Err(e) => {
                // ZooKeeper answers a body it cannot read with MarshallingError and keeps the
                // connection; the write still consumes a zxid (it logs an error transaction).
                tracing::warn!(session_id = format_args!("{session:#x}"), op = opcode, error = %e, "malformed request body");
                let err = ErrorCode::MarshallingError.code();
                self.commit_txn(zxid, time, session, Txn::Error { err });
                return (err, out);
            }
        };
        let ctx = Ctx { session, ids };
        match req {
            Request::Write(w) => {
                let mut ov = Overlay::new(&self.state.tree);
                let (txn, err) = match prep::prep(&mut ov, ctx, &w) {
                    Ok(t) => (t, 0),
                    Err(e) => (Txn::Error { err: e.code() }, e.code()),
                };
                let outcomes = self.commit_txn(zxid, time, session, txn);
                let o = outcomes.into_iter().next().unwrap_or_default();
                if err == 0 {
                    write_body(w.opcode(), &o, &mut out);
                }
                (err, out)
            }
            Request::Multi(ops) => {
                let txn = prep::prep_multi(&self.state.tree, ctx, &ops);
                let failed = match &txn {
                    Txn::MultiFailed(codes) => Some(codes.clone()),
                    _ => None,
                };
                let outcomes = self.commit_txn(zxid, time, session, txn);
                multi_body(&ops, failed, &outcomes, &mut out);
                (0, out)
            }
            other => {
                // Only writes are proposed; anything else here would be a bug on the
                // proposing member. Consume the zxid deterministically and say so.
                tracing::error!(op = opcode, request = ?other, "a non-write request was proposed");
                let err = ErrorCode::Unimplemented.code();
                self.commit_txn(zxid, time, session, Txn::Error { err });
                (err, out)
            }
        }
    }

    /// Applies a transaction and fires its watches. Returns one outcome per operation.
    pub(super) fn commit_txn(
        &mut self,
        zxid: i64,
        time: i64,
        session: i64,
        txn: Txn,
    ) -> Vec<OpOutcome> {
        let rec = TxnRecord {
            zxid,
            time,
            session,
            txn,
        };
        let now = self.now();
        let (changes, outcomes) = txn::apply(&mut self.state, &rec, now);
        inc(&STATS.commit_count);
        for change in &changes {
            let (path, data) = match change {
                crate::tree::Change::Created(p) | crate::tree::Change::DataChanged(p) => (
                    p,
                    self.state
                        .tree
                        .get(p)
                        .and_then(|n| n.data())
                        .map_or(0, |d| d.len()),
                ),
                crate::tree::Change::Deleted(p) => (p, 0),
            };
            STATS.namespaces.write(path, data);
            let fired = self.watches.trigger(change);
            record_fired(&fired);
            for n in fired {
                let bytes = notification(n.event_type, &n.path);
                self.send(n.conn, zxid, bytes, None);
            }
        }
        outcomes
    }

    /// Replaces the state with a snapshot from the leader. This member was far behind, so
    /// the watches its clients set cannot be brought up to date event by event: their
    /// connections are closed, and they reconnect and re-register them (setWatches fires
    /// what changed meanwhile).
    fn install(&mut self, loaded: Loaded, meta: SnapshotMeta) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            let after = self.state.last_zxid;
            self.close(
                conn,
                after,
                "this member is catching up from a snapshot".into(),
            );
        }
        let now = self.now();
        let mut sessions = SessionTracker::new(self.cfg.tick_ms);
        for s in loaded.sessions {
            sessions.add(s.id, s.timeout_ms, s.passwd, now);
            sessions.set_owner(s.id, s.owner);
        }
        self.state = State {
            tree: loaded.tree,
            sessions,
            last_zxid: loaded.last_zxid,
        };
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership;
        let zxid = self.state.last_zxid;
        self.durable.send_modify(|d| d.zxid = d.zxid.max(zxid));
    }
}

/// ZooKeeper's per-event watcher counts: how many watchers one change fired, by type.
fn record_fired(fired: &[crate::watch::Notification]) {
    let mut counts = [0u64; 4];
    for n in fired {
        let i = match n.event_type {
            event::NODE_CREATED => 0,
            event::NODE_DELETED => 1,
            event::NODE_DATA_CHANGED => 2,
            event::NODE_CHILDREN_CHANGED => 3,
            _ => continue,
        };
        counts[i] += 1;
    }
    let summaries = [
        &STATS.node_created_watch_count,
        &STATS.node_deleted_watch_count,
        &STATS.node_changed_watch_count,
        &STATS.node_children_watch_count,
    ];
    for (n, h) in counts.into_iter().zip(summaries) {
        if n > 0 {
            h.observe_ticks(n);
        }
    }
}
