//! The `multi` transaction (op 14): several writes applied all-or-nothing.
//!
//! Wire format (ZooKeeper's `MultiOperationRecord` / `MultiResponse`): each op is a
//! `MultiHeader {type, done = false, err = -1}` followed by its request record, and the list
//! ends with `{-1, true, -1}`. The reply has one header + record per op, then the same end
//! marker. When any op fails nothing is applied and *every* result is an error result
//! (type -1, `ErrorResponse`): `0` for the ops before the failing one, the real code for it,
//! and `-2` (runtime inconsistency) for the ops after it. The reply header's own error may be
//! 0 even then, so the outcome is always read from the results.

use bytes::{Bytes, BytesMut};

use super::error::{Error, MultiError, ProtocolError};
use super::path::{validate_path, Chroot};
use crate::jute::{
    op, Acl, CheckVersionRequest, Create2Response, CreateMode, CreateRequest, CreateResponse,
    DeleteRequest, ErrorCode, ErrorResponse, MultiHeader, Reader, Record, SetDataRequest, Stat,
    StatResponse,
};

/// One operation of a [`Client::multi`](super::Client::multi).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create a node (TTL modes are not supported inside a multi).
    Create {
        path: String,
        data: Bytes,
        acl: Vec<Acl>,
        mode: CreateMode,
    },
    /// Delete a node; `version: None` matches any version.
    Delete { path: String, version: Option<i32> },
    /// Replace a node's data; `version: None` matches any version.
    SetData {
        path: String,
        data: Bytes,
        version: Option<i32>,
    },
    /// Fail the transaction unless the node exists (and, with a version, has that version).
    Check { path: String, version: Option<i32> },
}

impl Op {
    /// [`Op::Create`].
    pub fn create(
        path: impl Into<String>,
        data: impl Into<Bytes>,
        acl: &[Acl],
        mode: CreateMode,
    ) -> Op {
        Op::Create {
            path: path.into(),
            data: data.into(),
            acl: acl.to_vec(),
            mode,
        }
    }

    /// [`Op::Delete`].
    pub fn delete(path: impl Into<String>, version: Option<i32>) -> Op {
        Op::Delete {
            path: path.into(),
            version,
        }
    }

    /// [`Op::SetData`].
    pub fn set_data(path: impl Into<String>, data: impl Into<Bytes>, version: Option<i32>) -> Op {
        Op::SetData {
            path: path.into(),
            data: data.into(),
            version,
        }
    }

    /// [`Op::Check`].
    pub fn check(path: impl Into<String>, version: Option<i32>) -> Op {
        Op::Check {
            path: path.into(),
            version,
        }
    }
}

/// The result of one op of a multi, as ZooKeeper reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The created node's path (with the sequence suffix); `stat` when the server sent one
    /// (container creates do).
    Create {
        path: String,
        stat: Option<Stat>,
    },
    Delete,
    SetData {
        stat: Stat,
    },
    Check,
    /// The transaction failed: `Ok` for ops before the failing one, the real code for it,
    /// `RuntimeInconsistency` for later ones.
    Error {
        code: ErrorCode,
    },
}

/// The wire version of a ZooKeeper "any version".
pub(crate) fn version_or_any(v: Option<i32>) -> i32 {
    v.unwrap_or(-1)
}

/// Writes the request body for `ops`, with server paths.
pub(crate) fn encode(ops: &[Op], chroot: &Chroot, out: &mut BytesMut) -> Result<(), Error> {
    for o in ops {
        match o {
            Op::Create {
                path,
                data,
                acl,
                mode,
            } => {
                validate_path(path, mode.is_sequential())?;
                if mode.is_ttl() {
                    return Err(Error::BadArgument(format!(
                        "{path}: TTL creates are not supported in a multi"
                    )));
                }
                let code = if *mode == CreateMode::Container {
                    op::CREATE_CONTAINER
                } else {
                    op::CREATE
                };
                header(code).write(out);
                CreateRequest {
                    path: chroot.to_server(path),
                    data: Some(data.clone()),
                    acl: acl.clone(),
                    flags: mode.flags(),
                }
                .write(out);
            }
            Op::Delete { path, version } => {
                validate_path(path, false)?;
                header(op::DELETE).write(out);
                DeleteRequest {
                    path: chroot.to_server(path),
                    version: version_or_any(*version),
                }
                .write(out);
            }
            Op::SetData {
                path,
                data,
                version,
            } => {
                validate_path(path, false)?;
                header(op::SET_DATA).write(out);
                SetDataRequest {
                    path: chroot.to_server(path),
                    data: Some(data.clone()),
                    version: version_or_any(*version),
                }
                .write(out);
            }
            Op::Check { path, version } => {
                validate_path(path, false)?;
                header(op::CHECK).write(out);
                CheckVersionRequest {
                    path: chroot.to_server(path),
                    version: version_or_any(*version),
                }
                .write(out);
            }
        }
    }
    MultiHeader {
        op: -1,
        done: true,
        err: -1,
    }
    .write(out);
    Ok(())
}

fn header(code: i32) -> MultiHeader {
    MultiHeader {
        op: code,
        done: false,
        err: -1,
    }
}

/// Reads the results of a multi reply, with client paths.
pub(crate) fn decode(body: &[u8], chroot: &Chroot) -> Result<Vec<OpResult>, ProtocolError> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    loop {
        let h = MultiHeader::read(&mut r)?;
        if h.done {
            break;
        }
        out.push(match h.op {
            op::CREATE => OpResult::Create {
                path: chroot.to_client(&CreateResponse::read(&mut r)?.path),
                stat: None,
            },
            op::CREATE2 | op::CREATE_TTL | op::CREATE_CONTAINER => {
                let c = Create2Response::read(&mut r)?;
                OpResult::Create {
                    path: chroot.to_client(&c.path),
                    stat: Some(c.stat),
                }
            }
            op::DELETE => OpResult::Delete,
            op::SET_DATA => OpResult::SetData {
                stat: StatResponse::read(&mut r)?.stat,
            },
            op::CHECK => OpResult::Check,
            op::ERROR => OpResult::Error {
                code: ErrorCode::from_code(ErrorResponse::read(&mut r)?.err),
            },
            other => return Err(ProtocolError::UnknownMultiResult { op: other }),
        });
    }
    r.finish()?;
    Ok(out)
}

/// Turns the decoded results into the call's outcome. `header_err` is the reply header's
/// error, used only when the results carry no error themselves.
pub(crate) fn outcome(
    sent: usize,
    results: Vec<OpResult>,
    header_err: i32,
) -> Result<Vec<OpResult>, MultiError> {
    let failed = results.iter().enumerate().find_map(|(i, r)| match r {
        OpResult::Error { code } if *code != ErrorCode::Ok => Some((i, *code)),
        _ => None,
    });
    if let Some((index, code)) = failed {
        return Err(MultiError::Failed {
            index,
            code,
            results,
        });
    }
    if header_err != 0 {
        return Err(Error::from_code(header_err).into());
    }
    if results.len() != sent {
        return Err(Error::from(ProtocolError::MultiResultCount {
            sent,
            got: results.len(),
        })
        .into());
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::Writer;
    use bytes::BufMut;

    #[test]
    fn request_layout_matches_zookeeper() {
        let ops = vec![
            Op::create("/a", &b"x"[..], &Acl::open_unsafe(), CreateMode::Persistent),
            Op::check("/b", Some(3)),
            Op::set_data("/c", &b"y"[..], None),
            Op::delete("/d", Some(1)),
        ];
        let mut got = BytesMut::new();
        encode(&ops, &Chroot::new(Some("/r".into())), &mut got).unwrap();

        let mut want = BytesMut::new();
        MultiHeader {
            op: 1,
            done: false,
            err: -1,
        }
        .write(&mut want);
        CreateRequest {
            path: "/r/a".into(),
            data: Some(Bytes::from_static(b"x")),
            acl: Acl::open_unsafe(),
            flags: 0,
        }
        .write(&mut want);
        MultiHeader {
            op: 13,
            done: false,
            err: -1,
        }
        .write(&mut want);
        CheckVersionRequest {
            path: "/r/b".into(),
            version: 3,
        }
        .write(&mut want);
        MultiHeader {
            op: 5,
            done: false,
            err: -1,
        }
        .write(&mut want);
        SetDataRequest {
            path: "/r/c".into(),
            data: Some(Bytes::from_static(b"y")),
            version: -1,
        }
        .write(&mut want);
        MultiHeader {
            op: 2,
            done: false,
            err: -1,
        }
        .write(&mut want);
        DeleteRequest {
            path: "/r/d".into(),
            version: 1,
        }
        .write(&mut want);
        MultiHeader {
            op: -1,
            done: true,
            err: -1,
        }
        .write(&mut want);
        assert_eq!(got, want);

        let bad = [Op::delete("no-slash", None)];
        assert!(matches!(
            encode(&bad, &Chroot::default(), &mut BytesMut::new()),
            Err(Error::BadArgument(_))
        ));
        let ttl = [Op::create(
            "/t",
            Bytes::new(),
            &[],
            CreateMode::PersistentWithTtl,
        )];
        assert!(encode(&ttl, &Chroot::default(), &mut BytesMut::new()).is_err());
    }

    #[test]
    fn success_results_decode() {
        let stat = Stat {
            version: 4,
            ..Default::default()
        };
        let mut b = BytesMut::new();
        MultiHeader {
            op: 1,
            done: false,
            err: 0,
        }
        .write(&mut b);
        b.put_string("/r/a0000000001");
        MultiHeader {
            op: 19,
            done: false,
            err: 0,
        }
        .write(&mut b);
        Create2Response {
            path: "/r/c".into(),
            stat: stat.clone(),
        }
        .write(&mut b);
        MultiHeader {
            op: 5,
            done: false,
            err: 0,
        }
        .write(&mut b);
        stat.write(&mut b);
        MultiHeader {
            op: 2,
            done: false,
            err: 0,
        }
        .write(&mut b);
        MultiHeader {
            op: 13,
            done: false,
            err: 0,
        }
        .write(&mut b);
        MultiHeader {
            op: -1,
            done: true,
            err: -1,
        }
        .write(&mut b);

        let results = decode(&b, &Chroot::new(Some("/r".into()))).unwrap();
        assert_eq!(
            results,
            vec![
                OpResult::Create {
                    path: "/a0000000001".into(),
                    stat: None
                },
                OpResult::Create {
                    path: "/c".into(),
                    stat: Some(stat.clone())
                },
                OpResult::SetData { stat },
                OpResult::Delete,
                OpResult::Check,
            ]
        );
        assert_eq!(outcome(5, results, 0).unwrap().len(), 5);
        // Truncated replies fail cleanly.
        for cut in 0..b.len() {
            assert!(decode(&b[..cut], &Chroot::default()).is_err());
        }
    }

    #[test]
    fn failure_reports_the_first_failing_op() {
        let mut b = BytesMut::new();
        for code in [0, -101, -2] {
            MultiHeader {
                op: -1,
                done: false,
                err: code,
            }
            .write(&mut b);
            b.put_i32(code);
        }
        MultiHeader {
            op: -1,
            done: true,
            err: -1,
        }
        .write(&mut b);
        let results = decode(&b, &Chroot::default()).unwrap();
        match outcome(3, results, 0) {
            Err(MultiError::Failed {
                index,
                code,
                results,
            }) => {
                assert_eq!(index, 1);
                assert_eq!(code, ErrorCode::NoNode);
                assert_eq!(
                    results[0],
                    OpResult::Error {
                        code: ErrorCode::Ok
                    }
                );
                assert_eq!(
                    results[2],
                    OpResult::Error {
                        code: ErrorCode::RuntimeInconsistency
                    }
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        // An error only in the header (no per-op results) is reported as such.
        assert!(matches!(
            outcome(1, vec![], -8),
            Err(MultiError::Client(Error::Zk(ErrorCode::BadArguments)))
        ));
        // Unknown result types are protocol errors.
        let mut b = BytesMut::new();
        MultiHeader {
            op: 4,
            done: false,
            err: 0,
        }
        .write(&mut b);
        assert!(matches!(
            decode(&b, &Chroot::default()),
            Err(ProtocolError::UnknownMultiResult { op: 4 })
        ));
    }
}
