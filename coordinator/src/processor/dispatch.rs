//! One request on an established session: reads answered from the tree, writes proposed to
//! the replicated log, and the session, watch and auth operations, in order per connection.

use super::*;

impl Processor {
    pub(super) fn on_request(
        &mut self,
        conn: ConnId,
        xid: i32,
        opcode: i32,
        body: Bytes,
        started: Instant,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.received += 1;
        c.stats.request(opcode, xid);
        inc(&STATS.prep_processor_request_queued);
        let session = c.session;
        // In order per connection: behind anything already queued, and a read behind the
        // connection's pending writes.
        if !c.queue.is_empty() || c.sync.is_some() || (c.pending > 0 && !is_proposal(opcode)) {
            c.queue.push_back(Queued {
                xid,
                op: opcode,
                body,
                started,
            });
            return;
        }
        self.activity.record(conn);
        let now = self.now();
        self.state.sessions.touch(session, now);
        self.serve(conn, xid, opcode, body, started);
    }

    /// Serves what was held back behind a write that has now been applied.
    pub(super) fn drain_queue(&mut self, conn: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let ready = c.sync.is_none()
                && c.queue
                    .front()
                    .is_some_and(|q| c.pending == 0 || is_proposal(q.op));
            if !ready {
                return;
            }
            let Some(q) = c.queue.pop_front() else {
                return;
            };
            self.serve(conn, q.xid, q.op, q.body, q.started);
        }
    }

    fn serve(&mut self, conn: ConnId, xid: i32, opcode: i32, body: Bytes, started: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let session = c.session;
        // --require-auth: only authentication (and pings and closing) until the connection
        // has an authenticated id, as ZooKeeper's enforce.auth does.
        let required = &self.cfg.auth.required_schemes;
        if !required.is_empty()
            && !matches!(opcode, op::AUTH | op::SASL | op::PING | op::CLOSE_SESSION)
            && !c
                .auth
                .iter()
                .any(|i| i.scheme == "super" || required.contains(&i.scheme))
        {
            let last = self.state.last_zxid;
            tracing::info!(
                conn,
                op = opcode,
                "request before authentication; closing the connection"
            );
            let err = ErrorCode::SessionClosedRequireAuth.code();
            self.send(
                conn,
                last,
                reply_frame(xid, last, err, no_body),
                Some(started),
            );
            self.close(conn, last, "authentication is required".to_owned());
            return;
        }
        if is_proposal(opcode) {
            // Writes are decoded and validated when they are applied, the same way on every
            // member; here they only enter the log.
            c.pending += 1;
            c.inflight.push_back(started);
            let op = if opcode == op::CLOSE_SESSION {
                self.state.sessions.set_closing(session);
                Op::CloseSession
            } else {
                Op::Request {
                    opcode,
                    body,
                    auth: c
                        .auth
                        .iter()
                        .map(|i| (i.scheme.clone(), i.id.clone()))
                        .collect(),
                }
            };
            self.propose(Some(self.origin(conn, xid)), session, op);
            return;
        }
        let req = match request::decode(opcode, &body) {
            Ok(r) => r,
            Err(e) => {
                // ZooKeeper answers a body it cannot read with MarshallingError and keeps the
                // connection.
                tracing::warn!(conn, session_id = format_args!("{session:#x}"), op = opcode, xid, error = %e, "malformed request body");
                let last = self.state.last_zxid;
                let err = ErrorCode::MarshallingError.code();
                self.send(
                    conn,
                    last,
                    reply_frame(xid, last, err, no_body),
                    Some(started),
                );
                return;
            }
        };
        let last = self.state.last_zxid;
        let arrived = started;
        let started = Some(started);
        let ids = self
            .conns
            .get(&conn)
            .map(|c| c.auth.clone())
            .unwrap_or_default();
        match req {
            Request::Write(_) | Request::Multi(_) | Request::CloseSession => {
                // Proposals are handled above; a decoder that disagrees with
                // `request::is_write` is a bug, answered rather than panicking.
                tracing::error!(conn, op = opcode, "a write was not proposed");
                let frame = reply_frame(xid, last, ErrorCode::SystemError.code(), no_body);
                self.send(conn, last, frame, started);
            }
            Request::MultiRead(ops) => {
                let tree = &self.state.tree;
                let frame = reply_frame(xid, last, 0, |b| {
                    for r in &ops {
                        let (path, code) = match r {
                            ReadOp::GetChildren(p) => (p, op::GET_CHILDREN),
                            ReadOp::GetData(p) => (p, op::GET_DATA),
                        };
                        let res = tree
                            .get(path)
                            .ok_or(ErrorCode::NoNode)
                            .and_then(|n| acl::check(&n.acl, perms::READ, &ids).map(|_| n));
                        match res {
                            Ok(n) => {
                                MultiHeader {
                                    op: code,
                                    done: false,
                                    err: 0,
                                }
                                .write(b);
                                if code == op::GET_CHILDREN {
                                    GetChildrenResponse {
                                        children: n.child_names(),
                                    }
                                    .write(b);
                                } else {
                                    GetDataResponse {
                                        data: n.data().map(Bytes::copy_from_slice),
                                        stat: n.client_stat(),
                                    }
                                    .write(b);
                                }
                            }
                            Err(e) => {
                                MultiHeader {
                                    op: op::ERROR,
                                    done: false,
                                    err: e.code(),
                                }
                                .write(b);
                                ErrorResponse { err: e.code() }.write(b);
                            }
                        }
                    }
                    MultiHeader {
                        op: -1,
                        done: true,
                        err: -1,
                    }
                    .write(b);
                });
                self.send(conn, last, frame, started);
            }
            Request::Exists(r) => {
                // exists checks no ACL in ZooKeeper, and sets the watch even on a missing node.
                let frame = if r.path.contains('\0') {
                    reply_frame(xid, last, ErrorCode::BadArguments.code(), no_body)
                } else {
                    if r.watch {
                        self.watches.add_data(&r.path, conn);
                    }
                    match self.state.tree.get(&r.path) {
                        Some(n) => {
                            STATS.namespaces.read(&r.path, 0);
                            let stat = n.client_stat();
                            reply_frame(xid, last, 0, |b| StatResponse { stat }.write(b))
                        }
                        None => reply_frame(xid, last, ErrorCode::NoNode.code(), no_body),
                    }
                };
                self.send(conn, last, frame, started);
            }
            Request::GetData(r) => {
                let res = self
                    .readable(&r.path, perms::READ, &ids)
                    .map(|n| (n.data().map(Bytes::copy_from_slice), n.client_stat()));
                // `/zookeeper/config` shows the ensemble's current membership.
                let res = match res {
                    Ok(_) if r.path == "/zookeeper/config" => {
                        let (data, stat) = self.config_node();
                        Ok((Some(data), stat))
                    }
                    other => other,
                };
                let frame = match res {
                    Ok((data, stat)) => {
                        STATS
                            .namespaces
                            .read(&r.path, data.as_ref().map_or(0, |d| d.len()));
                        if r.watch {
                            self.watches.add_data(&r.path, conn);
                        }
                        reply_frame(xid, last, 0, |b| GetDataResponse { data, stat }.write(b))
                    }
                    Err(e) => reply_frame(xid, last, e.code(), no_body),
                };
                self.send(conn, last, frame, started);
            }
            Request::GetChildren(r) | Request::GetChildren2(r) => {
                let two = opcode == op::GET_CHILDREN2;
                let res = self
                    .readable(&r.path, perms::READ, &ids)
                    .map(|n| (n.child_names(), n.client_stat()));
                let frame = match res {
                    Ok((children, stat)) => {
                        STATS
                            .namespaces
                            .read(&r.path, children.iter().map(String::len).sum());
                        if r.watch {
                            self.watches.add_child(&r.path, conn);
                        }
                        reply_frame(xid, last, 0, |b| {
                            if two {
                                GetChildren2Response { children, stat }.write(b)
                            } else {
                                GetChildrenResponse { children }.write(b)
                            }
                        })
                    }
                    Err(e) => reply_frame(xid, last, e.code(), no_body),
                };
                self.send(conn, last, frame, started);
            }
            Request::GetAcl(r) => {
                let res = self
                    .readable(&r.path, perms::READ | perms::ADMIN, &ids)
                    .map(|n| {
                        // Without ADMIN, digest hashes are masked as `user:x`, as ZooKeeper does.
                        let admin = acl::check(&n.acl, perms::ADMIN, &ids).is_ok();
                        let acl = n.acl.iter().cloned().map(|mut a| {
                            if !admin && a.id.scheme == "digest" {
                                let user = a.id.id.split(':').next().unwrap_or("").to_owned();
                                a.id.id = format!("{user}:x");
                            }
                            a
                        });
                        (acl.collect(), n.client_stat())
                    });
                let frame = match res {
                    Ok((acl, stat)) => {
                        reply_frame(xid, last, 0, |b| GetAclResponse { acl, stat }.write(b))
                    }
                    Err(e) => reply_frame(xid, last, e.code(), no_body),
                };
                self.send(conn, last, frame, started);
            }
            Request::Sync(r) => {
                if self.alone() {
                    // A single member has applied everything it committed.
                    self.send(
                        conn,
                        last,
                        reply_frame(xid, last, 0, |b| PathRequest { path: r.path }.write(b)),
                        started,
                    );
                    return;
                }
                // Everything after the sync waits for it; it is answered once this member
                // has applied what the leader had committed (see `answer_syncs`).
                let origin = self.hold(conn, xid, Some(r.path), arrived);
                self.outbound(Outbound::Sync(origin));
            }
            Request::Ping => {
                self.send(conn, last, reply_frame(xid, last, 0, no_body), started);
            }
            Request::SetWatches(s) => {
                for path in &s.data_watches {
                    match self.state.tree.get(path) {
                        None => {
                            self.send(conn, last, notification(event::NODE_DELETED, path), None)
                        }
                        Some(n) if n.stat.mzxid > s.relative_zxid => self.send(
                            conn,
                            last,
                            notification(event::NODE_DATA_CHANGED, path),
                            None,
                        ),
                        Some(_) => self.watches.add_data(path, conn),
                    }
                }
                for path in &s.exist_watches {
                    if self.state.tree.get(path).is_some() {
                        self.send(conn, last, notification(event::NODE_CREATED, path), None);
                    } else {
                        self.watches.add_data(path, conn);
                    }
                }
                for path in &s.child_watches {
                    match self.state.tree.get(path) {
                        None => {
                            self.send(conn, last, notification(event::NODE_DELETED, path), None)
                        }
                        Some(n) if n.stat.pzxid > s.relative_zxid => self.send(
                            conn,
                            last,
                            notification(event::NODE_CHILDREN_CHANGED, path),
                            None,
                        ),
                        Some(_) => self.watches.add_child(path, conn),
                    }
                }
                for path in &s.persistent_watches {
                    self.watches.add_persistent(path, conn, false);
                }
                for path in &s.persistent_recursive_watches {
                    self.watches.add_persistent(path, conn, true);
                }
                self.send(conn, last, reply_frame(xid, last, 0, no_body), started);
            }
            Request::AddWatch(r) => {
                let frame = match r.mode {
                    add_watch_mode::PERSISTENT | add_watch_mode::PERSISTENT_RECURSIVE => {
                        self.watches.add_persistent(
                            &r.path,
                            conn,
                            r.mode == add_watch_mode::PERSISTENT_RECURSIVE,
                        );
                        reply_frame(xid, last, 0, |b| ErrorResponse { err: 0 }.write(b))
                    }
                    _ => reply_frame(xid, last, ErrorCode::BadArguments.code(), no_body),
                };
                self.send(conn, last, frame, started);
            }
            Request::RemoveWatches { req, remove } => {
                let (data, child) = match req.watcher_type {
                    watcher_type::CHILDREN => (false, true),
                    watcher_type::DATA => (true, false),
                    watcher_type::ANY => (true, true),
                    _ => (false, false),
                };
                let found = if remove {
                    self.watches.remove(&req.path, conn, data, child)
                } else {
                    self.watches.contains(&req.path, conn, data, child)
                };
                let err = if found {
                    0
                } else {
                    ErrorCode::NoWatcher.code()
                };
                self.send(conn, last, reply_frame(xid, last, err, no_body), started);
            }
            Request::GetEphemerals(r) => {
                let prefix = r.path.trim();
                let all = self.state.tree.ephemerals_of(session);
                let ephemerals = if prefix.is_empty() || prefix == "/" {
                    all
                } else {
                    all.into_iter().filter(|p| p.starts_with(&r.path)).collect()
                };
                self.send(
                    conn,
                    last,
                    reply_frame(xid, last, 0, |b| {
                        GetEphemeralsResponse { ephemerals }.write(b)
                    }),
                    started,
                );
            }
            Request::GetAllChildrenNumber(r) => {
                let res = self.readable(&r.path, perms::READ, &ids).map(|_| ());
                let frame = match res {
                    Ok(()) => {
                        let total = self.state.tree.all_children_number(&r.path) as i32;
                        reply_frame(xid, last, 0, |b| {
                            GetAllChildrenNumberResponse { total }.write(b)
                        })
                    }
                    Err(e) => reply_frame(xid, last, e.code(), no_body),
                };
                self.send(conn, last, frame, started);
            }
            Request::WhoAmI => {
                let client_info = ids
                    .iter()
                    .map(|i| ClientInfo {
                        auth_scheme: i.scheme.clone(),
                        user: if i.scheme == "digest" {
                            i.id.split(':').next().unwrap_or("").to_owned()
                        } else {
                            i.id.clone()
                        },
                    })
                    .collect();
                self.send(
                    conn,
                    last,
                    reply_frame(xid, last, 0, |b| WhoAmIResponse { client_info }.write(b)),
                    started,
                );
            }
            Request::Auth(a) => {
                match acl::authenticate(&a.scheme, &a.auth, self.cfg.auth.super_digest.as_deref()) {
                    Ok(new_ids) => {
                        self.add_ids(conn, new_ids);
                        self.send(conn, last, reply_frame(xid, 0, 0, no_body), started);
                    }
                    Err(e) => {
                        tracing::info!(conn, scheme = %a.scheme, "authentication failed; closing the connection");
                        inc(&STATS.auth_failed_count);
                        self.send(conn, last, reply_frame(xid, 0, e.code(), no_body), started);
                        self.close(
                            conn,
                            last,
                            format!("authentication failed for scheme {}", a.scheme),
                        );
                    }
                }
            }
            Request::Sasl(token) => self.sasl(conn, xid, &token, started),
            Request::Reconfig(r) => {
                let change = ensemble::membership::Change::parse(
                    &r.joining_servers,
                    &r.leaving_servers,
                    &r.new_members,
                );
                match change {
                    Err(e) => {
                        tracing::info!(conn, error = %e, "bad reconfig request");
                        let frame = reply_frame(xid, last, ErrorCode::BadArguments.code(), no_body);
                        self.send(conn, last, frame, started);
                    }
                    Ok(change) => {
                        // Answered with the new configuration once this member has applied
                        // it; everything after it waits (see `answer_syncs`).
                        let origin = self.hold(conn, xid, None, arrived);
                        self.outbound(Outbound::Reconfig { origin, change });
                    }
                }
            }
            Request::Unknown(code) => {
                // ZooKeeper replies with zxid -1 and then closes the connection; we keep it
                // open, so a client probing for newer operations can carry on.
                tracing::debug!(conn, op = code, "unknown opcode");
                let frame = reply_frame(xid, -1, ErrorCode::Unimplemented.code(), no_body);
                self.send(conn, last, frame, started);
            }
        }
    }

    /// A node the ids may access with `perm`, or the error ZooKeeper gives.
    pub(super) fn readable(
        &self,
        path: &str,
        perm: i32,
        ids: &[Id],
    ) -> Result<&crate::tree::Node, ErrorCode> {
        let n = self.state.tree.get(path).ok_or(ErrorCode::NoNode)?;
        acl::check(&n.acl, perm, ids)?;
        Ok(n)
    }
}

/// Whether a request goes through the replicated log.
fn is_proposal(opcode: i32) -> bool {
    request::is_write(opcode) || opcode == op::CLOSE_SESSION
}

impl Processor {
    /// Adds authenticated ids to a connection (whoAmI lists them by scheme, as ZooKeeper
    /// does: "digest" before "ip").
    fn add_ids(&mut self, conn: ConnId, ids: Vec<Id>) {
        if let Some(c) = self.conns.get_mut(&conn) {
            for id in ids {
                if !c.auth.contains(&id) {
                    c.auth.push(id);
                }
            }
            c.auth.sort_by(|a, b| a.scheme.cmp(&b.scheme));
        }
    }

    /// One SASL (DIGEST-MD5) token: the next server token, `sasl:<user>` once the login
    /// succeeds, AUTHFAILED and a close when it fails.
    fn sasl(&mut self, conn: ConnId, xid: i32, token: &[u8], started: Option<Instant>) {
        // A nonce nobody can predict: the processor's random secret, hashed with this
        // connection and the time.
        let nonce = {
            let mut h = sha1_smol::Sha1::new();
            h.update(&self.secret);
            h.update(&conn.to_be_bytes());
            h.update(&wall_ms().to_be_bytes());
            h.update(&self.now().to_be_bytes());
            fjord_shared::digest_md5::nonce_from(&h.digest().bytes())
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let server = c
            .sasl
            .get_or_insert_with(|| fjord_shared::digest_md5::DigestServer::new(nonce));
        let users = &self.cfg.auth.sasl_users;
        let result = server.step(token, |u| users.get(u).cloned());
        match result {
            Ok((reply, user)) => {
                if let Some(user) = user {
                    tracing::debug!(conn, user, "SASL login");
                    self.add_ids(
                        conn,
                        vec![Id {
                            scheme: "sasl".into(),
                            id: user,
                        }],
                    );
                }
                let frame = reply_frame(xid, 0, 0, |b| {
                    fjord_shared::jute::SetSaslResponse {
                        token: reply.into(),
                    }
                    .write(b)
                });
                self.send(conn, 0, frame, started);
            }
            Err(e) => {
                tracing::info!(conn, error = %e, "SASL authentication failed; closing the connection");
                inc(&STATS.auth_failed_count);
                let last = self.state.last_zxid;
                let err = ErrorCode::AuthFailed.code();
                self.send(conn, last, reply_frame(xid, 0, err, no_body), started);
                self.close(conn, last, "SASL authentication failed".to_owned());
            }
        }
    }
}
