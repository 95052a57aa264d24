//! Raft runs on a thread of its own.
//!
//! openraft's core, its replication streams, the state machine worker, the peer transport
//! and the proposer all run on one single-threaded runtime, apart from the runtime that
//! serves clients. Handing work between them is then a task switch on one thread rather
//! than a wake-up of another, and replication never waits in a run queue behind client
//! connections: on a busy member that wait was the larger part of a follower's answer time.

use std::future::Future;
use tokio::sync::oneshot;

pub struct RaftThread {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RaftThread {
    pub fn start() -> std::io::Result<RaftThread> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping the runtime cancels whatever is still running on it.
            })?;
        Ok(RaftThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the Raft thread and waits for its result.
    pub async fn run<F>(&self, f: F) -> anyhow::Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle
            .spawn(f)
            .await
            .map_err(|e| anyhow::anyhow!("the Raft thread failed: {e}"))
    }

    /// Stops the runtime and waits for the thread (blocking).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for RaftThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
