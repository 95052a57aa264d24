//! ConnectRequest: new sessions, session resumption and refusal, as ZooKeeper 3.8 does.

use super::*;

impl Processor {
    pub(super) fn password(&self, id: i64) -> [u8; 16] {
        let mut h = sha1_smol::Sha1::new();
        h.update(&self.secret);
        h.update(&id.to_be_bytes());
        let d = h.digest().bytes();
        let mut p = [0u8; 16];
        p.copy_from_slice(&d[..16]);
        p
    }

    pub(super) fn on_connect(
        &mut self,
        conn: ConnId,
        req: ConnectRequest,
        out: Outbox,
        (peer, secure): (SocketAddr, bool),
        cert_subject: Option<String>,
    ) {
        let with_ro = req.read_only.map(|_| false);
        if self.leader.is_none() {
            // As a ZooKeeper follower without a leader: refuse, so the client tries another
            // member.
            let _ = out.send(Out::Close {
                after: 0,
                reason: "refusing session: this member has no leader".into(),
            });
            return;
        }
        if req.last_zxid_seen > self.state.last_zxid {
            let reason = format!(
                "refusing session: the client has seen zxid {:#x}, our last zxid is {:#x}",
                req.last_zxid_seen, self.state.last_zxid
            );
            let _ = out.send(Out::Close { after: 0, reason });
            return;
        }
        let timeout = negotiate_timeout(
            req.timeout,
            self.cfg.min_session_ms,
            self.cfg.max_session_ms,
        );
        let mut auth = vec![Id {
            scheme: "ip".into(),
            id: peer.ip().to_string(),
        }];
        if let Some(dn) = cert_subject {
            auth.push(Id {
                scheme: "x509".into(),
                id: dn,
            });
            auth.sort_by(|a, b| a.scheme.cmp(&b.scheme));
        }
        let new_conn = |session| Conn {
            session,
            out: out.clone(),
            auth,
            peer,
            secure,
            timeout_ms: timeout,
            since: Instant::now(),
            received: 0,
            pending: 0,
            queue: VecDeque::new(),
            inflight: VecDeque::new(),
            read_only: with_ro,
            sync: None,
            sasl: None,
            stats: Default::default(),
        };
        if req.session_id == 0 {
            // The session exists once its creation is committed; the connection answers
            // then, and holds any request that comes before that.
            let id = self.next_session;
            self.next_session += 1;
            let passwd = self.password(id);
            let mut c = new_conn(id);
            c.pending = 1;
            self.conns.insert(conn, c);
            self.session_conn.insert(id, conn);
            tracing::debug!(session_id = format_args!("{id:#x}"), timeout, %peer, "creating a session");
            self.propose(
                Some(self.origin(conn, 0)),
                id,
                Op::CreateSession {
                    timeout_ms: timeout,
                    passwd,
                },
            );
            return;
        }
        let id = req.session_id;
        if !self.alone() {
            // In an ensemble the session may be connected to another member: resuming goes
            // through the log, which validates it against the replicated session table and
            // tells the other members to drop their connection (see `Op::Reconnect`).
            let mut passwd = [0u8; 16];
            let n = req.passwd.len().min(16);
            passwd[..n].copy_from_slice(&req.passwd[..n]);
            let mut c = new_conn(id);
            c.pending = 1;
            if let Some(old) = self.session_conn.insert(id, conn) {
                let after = self.state.last_zxid;
                self.close(old, after, "the session moved to a new connection".into());
            }
            self.conns.insert(conn, c);
            self.propose(
                Some(self.origin(conn, 0)),
                id,
                Op::Reconnect {
                    timeout_ms: timeout,
                    passwd,
                },
            );
            return;
        }
        let valid = self
            .state
            .sessions
            .get(id)
            .is_some_and(|s| !s.closing && s.passwd[..] == req.passwd[..]);
        if !valid {
            tracing::info!(session_id = format_args!("{id:#x}"), %peer, "reconnect for an expired or unknown session (or a wrong password)");
            let resp = ConnectResponse {
                protocol_version: 0,
                timeout: 0,
                session_id: 0,
                passwd: Bytes::from_static(&[0; 16]),
                read_only: with_ro,
            };
            let after = self.state.last_zxid;
            let _ = out.send(Out::Frame {
                after,
                bytes: connect_frame(&resp),
                started: None,
            });
            let _ = out.send(Out::Close {
                after,
                reason: "session expired".into(),
            });
            return;
        }
        if let Some(old) = self.session_conn.get(&id).copied() {
            if old != conn {
                let after = self.state.last_zxid;
                self.close(old, after, "the session moved to a new connection".into());
            }
        }
        let now = self.now();
        self.state.sessions.set_timeout(id, timeout, now);
        self.conns.insert(conn, new_conn(id));
        self.session_conn.insert(id, conn);
        let passwd = self
            .state
            .sessions
            .get(id)
            .map(|s| s.passwd)
            .unwrap_or_default();
        tracing::debug!(session_id = format_args!("{id:#x}"), timeout, %peer, "session resumed");
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout,
            session_id: id,
            passwd: Bytes::copy_from_slice(&passwd),
            read_only: with_ro,
        };
        self.send(conn, self.state.last_zxid, connect_frame(&resp), None);
    }
}
