//! Recovery: newest valid snapshot, then log replay, cutting a torn tail.

use super::snapshot::{self, SnapSession};
use super::{list, PersistError, LOG_MAGIC};
use crate::session::SessionTracker;
use crate::tree::DataTree;
use crate::txn::{self, State, TxnRecord};
use fjord_shared::fs::{Frame, FrameFile};
use std::fs::OpenOptions;
use std::path::Path;

/// Largest record accepted from a log file.
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

/// What recovery found, for the log line at start-up.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub snapshot_zxid: Option<i64>,
    pub replayed: usize,
    /// (file, offset, bytes cut) for a torn or corrupt tail.
    pub cut: Option<(String, usize, usize)>,
}

/// Rebuilds the state from `dir`. Session clocks start at `now`.
pub fn recover(dir: &Path, tick_ms: u64, now: u64) -> Result<(State, Report), PersistError> {
    let mut report = Report::default();
    let mut state = State {
        tree: DataTree::new(),
        sessions: SessionTracker::new(tick_ms),
        last_zxid: 0,
    };
    for (zxid, path) in list(dir, "snapshot")?.into_iter().rev() {
        match snapshot::read(&path)? {
            Some(data) => {
                state.tree = data.tree;
                for SnapSession {
                    id,
                    timeout_ms,
                    passwd,
                    owner,
                } in data.sessions
                {
                    state.sessions.add(id, timeout_ms, passwd, now);
                    state.sessions.set_owner(id, owner);
                }
                state.last_zxid = data.last_zxid;
                report.snapshot_zxid = Some(zxid);
                break;
            }
            None => {
                tracing::warn!(path = %path.display(), "snapshot is damaged; trying an older one")
            }
        }
    }
    let logs = list(dir, "log")?;
    let n = logs.len();
    for (i, (_, path)) in logs.iter().enumerate() {
        // Skip files wholly covered by the snapshot.
        if let Some((next_start, _)) = logs.get(i + 1) {
            if *next_start <= state.last_zxid + 1 {
                continue;
            }
        }
        let last_file = i + 1 == n;
        // Through a window, not whole: log files are preallocated.
        let io = |e| PersistError::io(path, e);
        let mut file = FrameFile::open(path).map_err(io)?;
        if file.bytes_at(0, LOG_MAGIC.len()).map_err(io)? != LOG_MAGIC {
            if last_file {
                tracing::warn!(path = %path.display(), "log file has no header (torn at creation); ignoring it");
                continue;
            }
            return Err(PersistError::Corrupt {
                path: path.clone(),
                offset: 0,
            });
        }
        let mut pos = LOG_MAGIC.len();
        loop {
            match file.frame_at(pos, MAX_RECORD).map_err(io)? {
                Frame::Ok { payload, next } => {
                    let rec: TxnRecord =
                        rmp_serde::from_slice(payload).map_err(|e| PersistError::Undecodable {
                            path: path.clone(),
                            offset: pos,
                            reason: e.to_string(),
                        })?;
                    if rec.zxid > state.last_zxid {
                        if rec.zxid != state.last_zxid + 1 {
                            return Err(PersistError::Gap {
                                path: path.clone(),
                                expected: state.last_zxid + 1,
                                found: rec.zxid,
                            });
                        }
                        txn::apply(&mut state, &rec, now);
                        report.replayed += 1;
                    }
                    pos = next;
                }
                Frame::End => break,
                Frame::Torn | Frame::Corrupt if last_file => {
                    let cut = file.len() - pos;
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| PersistError::io(path, e))?;
                    f.set_len(pos as u64)
                        .map_err(|e| PersistError::io(path, e))?;
                    f.sync_all().map_err(|e| PersistError::io(path, e))?;
                    tracing::warn!(path = %path.display(), offset = pos, bytes = cut, "cut a torn or corrupt tail off the transaction log");
                    report.cut = Some((path.display().to_string(), pos, cut));
                    break;
                }
                Frame::Torn | Frame::Corrupt => {
                    return Err(PersistError::Corrupt {
                        path: path.clone(),
                        offset: pos,
                    });
                }
            }
        }
    }
    state.sessions.restart_clocks(now);
    Ok((state, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::snapshot::SnapshotJob;
    use crate::txn::{acl_to_rec, Txn};
    use bytes::Bytes;
    use fjord_shared::fs::read_frame;
    use fjord_shared::jute::Acl;
    use std::io::Write;

    fn create(zxid: i64, path: &str) -> TxnRecord {
        TxnRecord {
            zxid,
            time: zxid,
            session: 1,
            txn: Txn::Create {
                path: path.into(),
                data: Some(Bytes::from(path.to_owned())),
                acl: acl_to_rec(&Acl::open_unsafe()),
                owner: 0,
            },
        }
    }

    fn frame(rec: &TxnRecord) -> Vec<u8> {
        let mut out = Vec::new();
        fjord_shared::fs::frame(&rmp_serde::to_vec(rec).unwrap(), &mut out);
        out
    }

    /// A log file as the standalone coordinator wrote them before the Raft log: magic,
    /// frames, then zeros (preallocation).
    fn write_log(dir: &Path, first: i64, recs: &[TxnRecord]) {
        let mut bytes = LOG_MAGIC.to_vec();
        for r in recs {
            bytes.extend_from_slice(&frame(r));
        }
        bytes.resize(bytes.len() + 4096, 0);
        std::fs::write(dir.join(crate::persist::file_name("log", first)), bytes).unwrap();
    }

    #[test]
    fn replays_the_log_and_survives_reopening_many_times() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<_> = (1..=50).map(|z| create(z, &format!("/n{z}"))).collect();
        write_log(dir.path(), 1, &recs);
        for _ in 0..5 {
            let (state, report) = recover(dir.path(), 100, 0).unwrap();
            assert_eq!(state.last_zxid, 50);
            assert_eq!(report.replayed, 50);
            assert_eq!(report.cut, None);
            assert_eq!(state.tree.get("/n17").unwrap().data(), Some(&b"/n17"[..]));
        }
    }

    #[test]
    fn a_torn_tail_is_cut_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<_> = (1..=10).map(|z| create(z, &format!("/n{z}"))).collect();
        write_log(dir.path(), 1, &recs);
        // Append half a record after the last one, past the preallocated zeros' start.
        let path = list(dir.path(), "log").unwrap()[0].1.clone();
        let bytes = std::fs::read(&path).unwrap();
        let end = {
            let mut pos = LOG_MAGIC.len();
            while let Frame::Ok { next, .. } = read_frame(&bytes, pos, MAX_RECORD) {
                pos = next;
            }
            pos
        };
        let torn = frame(&create(11, "/n11"));
        let mut f = OpenOptions::new().write(true).open(&path).unwrap();
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start(end as u64)).unwrap();
        f.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(f);
        let (state, report) = recover(dir.path(), 100, 0).unwrap();
        assert_eq!(state.last_zxid, 10);
        assert!(state.tree.get("/n11").is_none());
        let (_, offset, _) = report.cut.expect("the tail was cut");
        assert_eq!(offset, end);
        // Reopening again finds a clean log.
        let (state, report) = recover(dir.path(), 100, 0).unwrap();
        assert_eq!((state.last_zxid, report.cut), (10, None));
    }

    #[test]
    fn garbage_in_an_older_log_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        write_log(
            dir.path(),
            1,
            &(1..=3)
                .map(|z| create(z, &format!("/a{z}")))
                .collect::<Vec<_>>(),
        );
        write_log(
            dir.path(),
            4,
            &(4..=6)
                .map(|z| create(z, &format!("/b{z}")))
                .collect::<Vec<_>>(),
        );
        let first = list(dir.path(), "log").unwrap()[0].1.clone();
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[LOG_MAGIC.len() + 10] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        assert!(matches!(
            recover(dir.path(), 100, 0),
            Err(PersistError::Corrupt { .. })
        ));
    }

    #[test]
    fn snapshot_plus_log_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        write_log(
            dir.path(),
            1,
            &(1..=5)
                .map(|z| create(z, &format!("/a{z}")))
                .collect::<Vec<_>>(),
        );
        let (state, _) = recover(dir.path(), 100, 0).unwrap();
        let job = SnapshotJob {
            last_zxid: 5,
            tree: state.tree.view(),
            sessions: vec![],
            meta: None,
        };
        snapshot::write(dir.path(), &job).unwrap();
        write_log(
            dir.path(),
            6,
            &(6..=8)
                .map(|z| create(z, &format!("/b{z}")))
                .collect::<Vec<_>>(),
        );
        let job2 = SnapshotJob {
            last_zxid: 8,
            tree: recover(dir.path(), 100, 0).unwrap().0.tree.view(),
            sessions: vec![],
            meta: None,
        };
        snapshot::write(dir.path(), &job2).unwrap();
        write_log(dir.path(), 9, &[create(9, "/c9")]);
        snapshot::purge(dir.path()).unwrap();
        // The first log (1..=5) is covered by the oldest kept snapshot (5).
        let logs: Vec<i64> = list(dir.path(), "log")
            .unwrap()
            .into_iter()
            .map(|(z, _)| z)
            .collect();
        assert_eq!(logs, vec![6, 9]);
        let (state, report) = recover(dir.path(), 100, 0).unwrap();
        assert_eq!(report.snapshot_zxid, Some(8));
        assert_eq!(state.last_zxid, 9);
        assert!(
            state.tree.get("/a1").is_some()
                && state.tree.get("/b7").is_some()
                && state.tree.get("/c9").is_some()
        );
        // A damaged newest snapshot falls back to the older one plus the logs.
        let newest = list(dir.path(), "snapshot")
            .unwrap()
            .last()
            .unwrap()
            .1
            .clone();
        std::fs::write(&newest, b"FJSNAP02garbage").unwrap();
        let (state, report) = recover(dir.path(), 100, 0).unwrap();
        assert_eq!(report.snapshot_zxid, Some(5));
        assert_eq!(state.last_zxid, 9);
        assert!(state.tree.get("/b8").is_some());
    }
}
