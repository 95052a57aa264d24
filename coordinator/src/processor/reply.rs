//! Reply, notification and connect frames as the wire carries them.

use super::*;

/// Builds one reply frame.
pub(super) fn reply_frame(
    xid: i32,
    zxid: i64,
    err: i32,
    body: impl FnOnce(&mut BytesMut),
) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    frame_with(&mut b, |b| {
        ReplyHeader { xid, zxid, err }.write(b);
        if err == 0 {
            body(b);
        }
    });
    b.freeze()
}

pub(super) fn no_body(_: &mut BytesMut) {}

/// The body of a write's reply, by opcode.
pub(super) fn write_body(opcode: i32, out: &OpOutcome, b: &mut BytesMut) {
    let stat = out.stat.clone().unwrap_or_default();
    match opcode {
        op::CREATE => CreateResponse {
            path: out.path.clone().unwrap_or_default(),
        }
        .write(b),
        op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => Create2Response {
            path: out.path.clone().unwrap_or_default(),
            stat,
        }
        .write(b),
        op::SET_DATA | op::SET_ACL => StatResponse { stat }.write(b),
        _ => {}
    }
}

/// A watch notification frame: xid -1, zxid -1, as ZooKeeper 3.8 sends it.
pub(super) fn notification(event_type: i32, path: &str) -> Bytes {
    reply_frame(xid::NOTIFICATION, -1, 0, |b| {
        WatcherEvent {
            event_type,
            state: kstate::SYNC_CONNECTED,
            path: path.to_owned(),
        }
        .write(b)
    })
}

pub(super) fn connect_frame(resp: &ConnectResponse) -> Bytes {
    let mut b = BytesMut::with_capacity(48);
    frame_with(&mut b, |b| resp.write(b));
    b.freeze()
}

/// The body of a multi's reply: one result per op, or the error codes of a failed multi.
pub(super) fn multi_body(
    ops: &[WriteOp],
    failed: Option<Vec<i32>>,
    outcomes: &[OpOutcome],
    b: &mut BytesMut,
) {
    match failed {
        Some(codes) => {
            for err in codes {
                MultiHeader {
                    op: op::ERROR,
                    done: false,
                    err,
                }
                .write(b);
                ErrorResponse { err }.write(b);
            }
        }
        None => {
            for (w, out) in ops.iter().zip(outcomes.iter()) {
                // ZooKeeper answers a create2 inside a multi as a plain create (type 1, path
                // only); other ops keep their type.
                let code = match w.opcode() {
                    op::CREATE2 => op::CREATE,
                    other => other,
                };
                MultiHeader {
                    op: code,
                    done: false,
                    err: 0,
                }
                .write(b);
                write_body(code, out, b);
            }
        }
    }
    MultiHeader {
        op: -1,
        done: true,
        err: -1,
    }
    .write(b);
}
