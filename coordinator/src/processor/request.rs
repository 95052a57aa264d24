//! Decoding request bodies by opcode.
//!
//! A body that does not decode is a protocol error: the caller closes the connection with a
//! logged reason, as ZooKeeper does. An opcode we do not know is not an error here: it gets
//! `Unimplemented` and the connection stays open.

use super::prep::WriteOp;
use bytes::Bytes;
use fjord_shared::jute::{
    op, AddWatchRequest, AuthPacket, CheckVersionRequest, CreateRequest, CreateTtlRequest,
    DeleteRequest, GetSaslRequest, JuteError, MultiHeader, PathRequest, PathWatchRequest, Reader,
    ReconfigRequest, Record, RemoveWatchesRequest, SetAclRequest, SetDataRequest, SetWatches,
    SetWatches2,
};

/// A read inside a multiRead.
#[derive(Debug, Clone)]
pub enum ReadOp {
    GetChildren(String),
    GetData(String),
}

/// A decoded request.
#[derive(Debug, Clone)]
pub enum Request {
    Write(WriteOp),
    Multi(Vec<WriteOp>),
    MultiRead(Vec<ReadOp>),
    Exists(PathWatchRequest),
    GetData(PathWatchRequest),
    GetChildren(PathWatchRequest),
    GetChildren2(PathWatchRequest),
    GetAcl(PathRequest),
    Sync(PathRequest),
    Ping,
    SetWatches(SetWatches2),
    AddWatch(AddWatchRequest),
    /// removeWatches, or checkWatches when `remove` is false.
    RemoveWatches {
        req: RemoveWatchesRequest,
        remove: bool,
    },
    GetEphemerals(PathRequest),
    GetAllChildrenNumber(PathRequest),
    WhoAmI,
    Reconfig(ReconfigRequest),
    Auth(AuthPacket),
    /// A SASL token (opcode 102).
    Sasl(Bytes),
    CloseSession,
    Unknown(i32),
}

fn create(op_code: i32, r: &mut Reader<'_>) -> Result<WriteOp, JuteError> {
    if op_code == op::CREATE_TTL {
        let t = CreateTtlRequest::read(r)?;
        return Ok(WriteOp::Create {
            op: op_code,
            req: CreateRequest {
                path: t.path,
                data: t.data,
                acl: t.acl,
                flags: t.flags,
            },
            ttl: t.ttl,
        });
    }
    Ok(WriteOp::Create {
        op: op_code,
        req: CreateRequest::read(r)?,
        ttl: 0,
    })
}

fn write_op(op_code: i32, r: &mut Reader<'_>) -> Result<Option<WriteOp>, JuteError> {
    Ok(Some(match op_code {
        op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => create(op_code, r)?,
        op::DELETE => WriteOp::Delete(DeleteRequest::read(r)?),
        op::SET_DATA => WriteOp::SetData(SetDataRequest::read(r)?),
        op::CHECK => WriteOp::Check(CheckVersionRequest::read(r)?),
        _ => return Ok(None),
    }))
}

/// Whether an opcode is a write, which consumes a zxid even when it fails.
pub fn is_write(op_code: i32) -> bool {
    matches!(
        op_code,
        op::CREATE
            | op::CREATE2
            | op::CREATE_CONTAINER
            | op::CREATE_TTL
            | op::DELETE
            | op::SET_DATA
            | op::SET_ACL
            | op::CHECK
            | op::MULTI
    )
}

/// Decodes the body of a request with opcode `op_code`.
pub fn decode(op_code: i32, body: &[u8]) -> Result<Request, JuteError> {
    let mut r = Reader::new(body);
    let req = match op_code {
        op::CREATE
        | op::CREATE2
        | op::CREATE_CONTAINER
        | op::CREATE_TTL
        | op::DELETE
        | op::SET_DATA
        | op::CHECK => match write_op(op_code, &mut r)? {
            Some(w) => Request::Write(w),
            None => Request::Unknown(op_code),
        },
        op::SET_ACL => Request::Write(WriteOp::SetAcl(SetAclRequest::read(&mut r)?)),
        op::MULTI => {
            let mut ops = Vec::new();
            loop {
                let h = MultiHeader::read(&mut r)?;
                if h.done {
                    break;
                }
                match write_op(h.op, &mut r)? {
                    Some(w) => ops.push(w),
                    None => {
                        return Err(JuteError::UnknownValue {
                            what: "multi op",
                            value: h.op,
                        })
                    }
                }
            }
            Request::Multi(ops)
        }
        op::MULTI_READ => {
            let mut ops = Vec::new();
            loop {
                let h = MultiHeader::read(&mut r)?;
                if h.done {
                    break;
                }
                let p = PathWatchRequest::read(&mut r)?;
                ops.push(match h.op {
                    op::GET_CHILDREN => ReadOp::GetChildren(p.path),
                    op::GET_DATA => ReadOp::GetData(p.path),
                    other => {
                        return Err(JuteError::UnknownValue {
                            what: "multiRead op",
                            value: other,
                        })
                    }
                });
            }
            Request::MultiRead(ops)
        }
        op::EXISTS => Request::Exists(PathWatchRequest::read(&mut r)?),
        op::GET_DATA => Request::GetData(PathWatchRequest::read(&mut r)?),
        op::GET_CHILDREN => Request::GetChildren(PathWatchRequest::read(&mut r)?),
        op::GET_CHILDREN2 => Request::GetChildren2(PathWatchRequest::read(&mut r)?),
        op::GET_ACL => Request::GetAcl(PathRequest::read(&mut r)?),
        op::SYNC => Request::Sync(PathRequest::read(&mut r)?),
        op::PING => Request::Ping,
        op::SET_WATCHES => {
            let s = SetWatches::read(&mut r)?;
            Request::SetWatches(SetWatches2 {
                relative_zxid: s.relative_zxid,
                data_watches: s.data_watches,
                exist_watches: s.exist_watches,
                child_watches: s.child_watches,
                persistent_watches: Vec::new(),
                persistent_recursive_watches: Vec::new(),
            })
        }
        op::SET_WATCHES2 => Request::SetWatches(SetWatches2::read(&mut r)?),
        op::ADD_WATCH => Request::AddWatch(AddWatchRequest::read(&mut r)?),
        op::REMOVE_WATCHES => Request::RemoveWatches {
            req: RemoveWatchesRequest::read(&mut r)?,
            remove: true,
        },
        op::CHECK_WATCHES => Request::RemoveWatches {
            req: RemoveWatchesRequest::read(&mut r)?,
            remove: false,
        },
        op::GET_EPHEMERALS => Request::GetEphemerals(PathRequest::read(&mut r)?),
        op::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber(PathRequest::read(&mut r)?),
        op::WHO_AM_I => Request::WhoAmI,
        op::RECONFIG => Request::Reconfig(ReconfigRequest::read(&mut r)?),
        op::AUTH => Request::Auth(AuthPacket::read(&mut r)?),
        op::SASL => Request::Sasl(GetSaslRequest::read(&mut r)?.token),
        op::CLOSE_SESSION => Request::CloseSession,
        other => return Ok(Request::Unknown(other)),
    };
    // Java clients never send trailing bytes; ZooKeeper ignores them, and so do we, except
    // where the record was clearly misread (checked per record by the readers above).
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use fjord_shared::jute::{Acl, Record};

    #[test]
    fn multi_decodes_until_the_done_header() {
        let mut b = BytesMut::new();
        MultiHeader {
            op: op::CREATE,
            done: false,
            err: -1,
        }
        .write(&mut b);
        CreateRequest {
            path: "/a".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: 0,
        }
        .write(&mut b);
        MultiHeader {
            op: op::CHECK,
            done: false,
            err: -1,
        }
        .write(&mut b);
        CheckVersionRequest {
            path: "/a".into(),
            version: 0,
        }
        .write(&mut b);
        MultiHeader {
            op: -1,
            done: true,
            err: -1,
        }
        .write(&mut b);
        let Request::Multi(ops) = decode(op::MULTI, &b).unwrap() else {
            panic!("not a multi")
        };
        assert_eq!(ops.len(), 2);
        // A truncated multi is an error, not a panic.
        for cut in 0..b.len() {
            assert!(decode(op::MULTI, &b[..cut]).is_err());
        }
        // An op that cannot be in a multi is an error.
        let mut bad = BytesMut::new();
        MultiHeader {
            op: op::GET_DATA,
            done: false,
            err: -1,
        }
        .write(&mut bad);
        assert!(decode(op::MULTI, &bad).is_err());
    }

    #[test]
    fn unknown_opcodes_are_not_decode_errors() {
        assert!(matches!(decode(999, b"garbage"), Ok(Request::Unknown(999))));
    }
}
