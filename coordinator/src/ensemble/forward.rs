//! Getting proposals, keep-alives and syncs to the leader.
//!
//! The processor sends everything that needs the leader down one channel, in order. On the
//! leader it goes straight to Raft. On a follower it is forwarded over one peer
//! connection, in batches (everything queued while the previous batch was in flight), so
//! that a session's writes reach the log in the order the client sent them. Syncs go on
//! their own connection, also batched: one read-index round trip answers every sync that
//! was waiting when it started.
//!
//! A proposal that cannot be handed to the leader (there is none, or the hand-off fails)
//! is reported to the processor, which closes its connection: the client retries, as it
//! would after ConnectionLoss from ZooKeeper. One that was handed over but is lost with a
//! leader change is caught by the processor when it sees the leader change.

use super::membership::{self, Change};
use super::network::{Identity, PeerClient, PeerRequest, PeerResponse};
use super::{Batch, Origin, Outbound, Proposal, Raft, MAX_BATCH};
use crate::processor::Msg;
use fjord_shared::jute::ErrorCode;
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// How many queued items go in one forwarded batch.
const BATCH: usize = 1024;
/// Entries of this member's proposals that may be in Raft at once, on the leader.
const IN_FLIGHT: usize = 4;
/// How long a forwarded batch or a read index may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a membership change may take, including a new member's catching up.
pub const RECONFIG_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the leader is, as this member sees it.
fn leader(raft: &Raft) -> Option<(u64, String)> {
    let m = raft.metrics();
    let m = m.borrow();
    let id = m.current_leader?;
    let addr = m
        .membership_config
        .membership()
        .get_node(&id)
        .map(|n| n.addr.clone())?;
    Some((id, addr))
}

/// A connection to the current leader, replaced when the leader changes.
struct LeaderLink {
    me: Arc<Identity>,
    client: Option<PeerClient>,
}

impl LeaderLink {
    fn to(&mut self, id: u64, addr: &str) -> &mut PeerClient {
        let current = self.client.take().filter(|c| c.target() == id);
        self.client.insert(
            current.unwrap_or_else(|| PeerClient::new(self.me.clone(), id, addr.to_owned())),
        )
    }
}

/// Runs until the processor's side of the channel is gone.
pub async fn run(
    mut rx: UnboundedReceiver<Outbound>,
    raft: Raft,
    me: Arc<Identity>,
    processor: mpsc::Sender<Msg>,
) {
    let (sync_tx, sync_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(syncs(sync_rx, raft.clone(), me.clone(), processor.clone()));
    let mut link = LeaderLink {
        me: me.clone(),
        client: None,
    };
    let inflight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        // On the leader, at most IN_FLIGHT entries of ours are on their way through Raft:
        // while the next one waits for room, proposals queue up and go in one entry.
        let permit = match leader(&raft) {
            Some((id, _)) if id == me.id => inflight.clone().acquire_owned().await.ok(),
            _ => None,
        };
        let mut proposals = Vec::new();
        let mut touches = Vec::new();
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        for o in batch.drain(..) {
            match o {
                Outbound::Propose(p) => proposals.push(p),
                Outbound::Touch(t) => touches = t,
                Outbound::Snapshot => {
                    let raft = raft.clone();
                    tokio::spawn(async move {
                        if let Err(e) = raft.trigger().snapshot().await {
                            tracing::warn!(error = %e, "cannot start a snapshot");
                        }
                    });
                }
                Outbound::Sync(origin) => {
                    let _ = sync_tx.send(origin);
                }
                Outbound::Reconfig { origin, change } => {
                    // Rare and slow (a new member first catches up): a task of its own.
                    let (raft, me, processor) = (raft.clone(), me.clone(), processor.clone());
                    tokio::spawn(async move {
                        let result = match leader(&raft) {
                            None => Err((ErrorCode::NewConfigNoQuorum.code(), "no leader".into())),
                            Some((id, _)) if id == me.id => reconfig(&raft, &change).await,
                            Some((id, addr)) => {
                                let mut client = PeerClient::new(me.clone(), id, addr);
                                match client
                                    .call(&PeerRequest::Reconfig(change), RECONFIG_TIMEOUT)
                                    .await
                                {
                                    Ok(PeerResponse::Reconfigured(r)) => r,
                                    Ok(_) => Err((
                                        ErrorCode::NewConfigNoQuorum.code(),
                                        "unexpected answer from the leader".into(),
                                    )),
                                    Err(e) => {
                                        Err((ErrorCode::NewConfigNoQuorum.code(), e.to_string()))
                                    }
                                }
                            }
                        };
                        let _ = processor.send(Msg::ReconfigDone { origin, result });
                    });
                }
            }
        }
        let origins = |ps: &[Proposal]| ps.iter().filter_map(|p| p.origin).collect::<Vec<_>>();
        match leader(&raft) {
            None => reject(&processor, origins(&proposals), "no leader"),
            Some((id, _)) if id == me.id => submit(&raft, &processor, proposals, permit).await,
            Some((id, addr)) => {
                if proposals.is_empty() && touches.is_empty() {
                    continue;
                }
                let lost = origins(&proposals);
                let req = PeerRequest::Forward { proposals, touches };
                match link.to(id, &addr).call(&req, TIMEOUT).await {
                    Ok(PeerResponse::Forwarded(Ok(()))) => {}
                    Ok(PeerResponse::Forwarded(Err(e))) => reject(&processor, lost, &e),
                    Ok(_) => reject(&processor, lost, "unexpected answer from the leader"),
                    Err(e) => {
                        tracing::info!(leader = id, error = %e, "cannot forward to the leader");
                        reject(&processor, lost, &e.to_string())
                    }
                }
            }
        }
    }
}

fn reject(processor: &mpsc::Sender<Msg>, origins: Vec<Origin>, reason: &str) {
    for origin in origins {
        let _ = processor.send(Msg::Rejected {
            origin,
            reason: reason.to_owned(),
        });
    }
}

/// Hands proposals to Raft on the leader, in order, as one entry per [`MAX_BATCH`]. Those
/// whose entry turns out not to be committed are reported back so that their connections
/// are closed.
async fn submit(
    raft: &Raft,
    processor: &mpsc::Sender<Msg>,
    proposals: Vec<Proposal>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let mut permit = permit;
    for chunk in chunks(proposals) {
        let origins: Vec<Origin> = chunk.iter().filter_map(|p| p.origin).collect();
        // This only queues the entry with Raft; the outcome arrives on `done`, and the
        // permit is given back then.
        match raft.client_write_ff(Batch(chunk)).await {
            Ok(done) => {
                let processor = processor.clone();
                let permit = permit.take();
                tokio::spawn(async move {
                    let outcome = done.await;
                    drop(permit);
                    let reason = match outcome {
                        Ok(Ok(_)) => return,
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "Raft stopped".to_owned(),
                    };
                    reject(&processor, origins, &reason);
                });
            }
            Err(e) => reject(processor, origins, &e.to_string()),
        }
    }
}

/// Proposals in entries of at most [`MAX_BATCH`].
fn chunks(mut proposals: Vec<Proposal>) -> Vec<Vec<Proposal>> {
    let mut out = Vec::new();
    while proposals.len() > MAX_BATCH {
        let rest = proposals.split_off(MAX_BATCH);
        out.push(std::mem::replace(&mut proposals, rest));
    }
    if !proposals.is_empty() {
        out.push(proposals);
    }
    out
}

/// Answers syncs: one read index per batch of waiting syncs.
async fn syncs(
    mut rx: UnboundedReceiver<Origin>,
    raft: Raft,
    me: Arc<Identity>,
    processor: mpsc::Sender<Msg>,
) {
    let mut link = LeaderLink {
        me: me.clone(),
        client: None,
    };
    while let Some(first) = rx.recv().await {
        let mut origins = vec![first];
        while let Ok(o) = rx.try_recv() {
            origins.push(o);
        }
        let index = match leader(&raft) {
            None => Err("no leader".to_owned()),
            Some((id, _)) if id == me.id => read_index(&raft).await,
            Some((id, addr)) => match link
                .to(id, &addr)
                .call(&PeerRequest::ReadIndex, TIMEOUT)
                .await
            {
                Ok(PeerResponse::ReadIndex(r)) => r,
                Ok(_) => Err("unexpected answer from the leader".to_owned()),
                Err(e) => Err(e.to_string()),
            },
        };
        let _ = processor.send(match index {
            Ok(index) => Msg::SyncReady { origins, index },
            Err(reason) => Msg::SyncFailed { origins, reason },
        });
    }
}

/// On the leader: the commit index, once a quorum has confirmed this member still leads
/// (no leases: a paused leader must not answer from its own clock).
pub async fn read_index(raft: &Raft) -> Result<u64, String> {
    match tokio::time::timeout(TIMEOUT, raft.get_read_log_id()).await {
        Ok(Ok((read, _applied))) => Ok(read.map(|l| l.index).unwrap_or(0)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no quorum confirmed the leader in time".to_owned()),
    }
}

/// On the leader: proposals forwarded by a follower, and its keep-alives. The proposals
/// join this member's own queue (`outbound`), so that they share entries with everything
/// else the leader is proposing.
pub async fn accept(
    raft: &Raft,
    me: u64,
    processor: &mpsc::Sender<Msg>,
    outbound: &tokio::sync::mpsc::UnboundedSender<Outbound>,
    proposals: Vec<Proposal>,
    touches: Vec<i64>,
) -> Result<(), String> {
    if leader(raft).map(|(id, _)| id) != Some(me) {
        return Err(format!("member {me} is not the leader"));
    }
    if !touches.is_empty() {
        let _ = processor.send(Msg::Touch { sessions: touches });
    }
    // Failures after this point are the follower's to notice (the leader changes).
    for p in proposals {
        if outbound.send(Outbound::Propose(p)).is_err() {
            return Err("the leader is shutting down".into());
        }
    }
    Ok(())
}

/// On the leader: changes the voting members. New members join as learners first and
/// become voters once they have caught up; openraft goes through joint consensus. Returns
/// the index of the entry with the final membership.
pub async fn reconfig(raft: &Raft, change: &Change) -> Result<super::Reconfigured, (i32, String)> {
    let refused = |e: String| (ErrorCode::NewConfigNoQuorum.code(), e);
    let current = {
        let m = raft.metrics();
        let m = m.borrow();
        membership::voters(m.membership_config.membership())
    };
    let next = change
        .apply(&current)
        .map_err(|e| (ErrorCode::BadArguments.code(), e))?;
    let work = async {
        for (id, addr) in &next {
            if !current.contains_key(id) {
                tracing::info!(member = id, %addr, "adding a member: catching it up as a learner");
                raft.add_learner(*id, openraft::BasicNode::new(addr), true)
                    .await
                    .map_err(|e| refused(e.to_string()))?;
            }
        }
        let voters: std::collections::BTreeSet<u64> = next.keys().copied().collect();
        tracing::info!(voters = ?voters, "changing the voting members");
        let resp =
            raft.change_membership(voters, false)
                .await
                .map_err(|e| match e.to_string() {
                    s if s.contains("in progress") || s.contains("InProgress") => {
                        (ErrorCode::ReconfigInProgress.code(), s)
                    }
                    s => refused(s),
                })?;
        let index = resp.log_id.index;
        let config = match &resp.membership {
            Some(m) => membership::config_text(m, super::zxid(index, 0)),
            None => String::new(),
        };
        Ok(super::Reconfigured {
            index,
            config,
            voters: next.keys().copied().collect(),
        })
    };
    match tokio::time::timeout(RECONFIG_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(refused(
            "the membership change did not finish in time".into(),
        )),
    }
}
