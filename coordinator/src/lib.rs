//! `fjord-coordinator`: a coordination service that speaks the ZooKeeper 3.8 client protocol.
//!
//! Layers, from the wire inwards:
//!
//! - [`server`]: accepts connections, frames jute messages, enforces limits, answers the
//!   four-letter words, and writes replies in request order once they are durable.
//! - [`processor`]: the single ordered pipeline. Requests are validated against the tree,
//!   turned into transactions, logged, applied, and answered; watch notifications for a write
//!   are queued before its reply.
//! - [`persist`]: the transaction log (group commit) and snapshots, and recovery.
//! - [`tree`], [`session`], [`watch`], [`acl`]: pure state, tested without I/O.

pub mod acl;
pub mod config;
pub mod direct_reply;
pub mod ensemble;
pub mod four_letter;
pub mod metrics;
pub mod persist;
pub mod processor;
pub mod server;
pub mod session;
pub mod tree;
pub mod txn;
pub mod watch;

use anyhow::Context;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs a coordinator with `cfg` until SIGTERM or SIGINT: bind, recover, print
/// `listening on ADDR`, serve, then shut down cleanly (sessions are kept, since they are
/// durable and survive a restart).
pub async fn run(cfg: config::Config) -> anyhow::Result<()> {
    let member_cfg = cfg.member()?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    let lock_path = cfg.data_dir.join("LOCK");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        return Err(persist::PersistError::Locked(cfg.data_dir.clone()).into());
    }
    let mut ports = Vec::new();
    let mut plain_addr = None;
    if !cfg.secure_only {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        plain_addr = Some(listener.local_addr()?);
        ports.push(server::Port {
            listener,
            tls: None,
        });
    }
    let mut secure_addr = None;
    if let Some(secure) = cfg.secure_listen {
        let Some(tls) = cfg.server_tls()? else {
            anyhow::bail!("--secure-listen needs --ssl-certificate and --ssl-key");
        };
        let l = tokio::net::TcpListener::bind(secure)
            .await
            .with_context(|| format!("cannot listen on {secure}"))?;
        secure_addr = Some(l.local_addr()?);
        ports.push(server::Port {
            listener: l,
            tls: Some(tokio_rustls::TlsAcceptor::from(tls)),
        });
    }
    // With --secure-only the TLS port is the client port.
    let Some(addr) = plain_addr.or(secure_addr) else {
        anyhow::bail!("--secure-only needs --secure-listen");
    };
    let http = fjord_shared::http::bind(cfg.http_listen)
        .await
        .context("cannot listen for HTTP (--http-listen)")?;
    let stats = Arc::new(four_letter::ServerStats::default());
    let recovering = std::time::Instant::now();
    let recovered = ensemble::member::recover(&cfg.data_dir, cfg.tick_ms, &member_cfg)
        .context("recovery failed")?;
    // The newest snapshot is the database: loading it is all of the initialisation (the
    // log after it is replayed through Raft once the member starts).
    metrics::stats::STATS
        .dbinittime
        .observe(recovering.elapsed());
    metrics::stats::STATS
        .startup_snap_load_time
        .observe(recovering.elapsed());
    tracing::info!(
        zxid = format_args!("{:#x}", recovered.state.last_zxid),
        applied = %ensemble::show(&recovered.applied),
        nodes = recovered.state.tree.node_count(),
        sessions = recovered.state.sessions.len(),
        "recovered the newest snapshot"
    );
    let (proposer, proposals) = tokio::sync::mpsc::unbounded_channel();
    let fresh = recovered.fresh;
    let snapshot = recovered.snapshot;
    let handle = processor::start(
        processor::Config {
            data_dir: cfg.data_dir.clone(),
            tick_ms: cfg.tick_ms,
            min_session_ms: cfg.min_session(),
            max_session_ms: cfg.max_session(),
            snapshot_txns: cfg.snapshot_txns,
            container_check_ms: cfg.container_check_ms,
            max_frame: cfg.max_frame_bytes,
            auth: cfg.auth()?,
        },
        stats.clone(),
        processor::Start {
            state: recovered.state,
            applied: recovered.applied,
            membership: recovered.membership,
            member: member_cfg.id,
            proposer: processor::Proposer::new(proposer.clone()),
        },
    )
    .context("cannot start the processor")?;
    let shutdown = CancellationToken::new();
    let raft_thread =
        ensemble::thread::RaftThread::start().context("cannot start the Raft thread")?;
    let member = {
        let (dir, member_cfg, tx, stop) = (
            cfg.data_dir.clone(),
            member_cfg.clone(),
            handle.tx.clone(),
            shutdown.clone(),
        );
        raft_thread
            .run(async move {
                ensemble::member::start(
                    &dir,
                    &member_cfg,
                    fresh,
                    snapshot,
                    tx,
                    (proposer, proposals),
                    stop,
                )
                .await
            })
            .await??
    };
    let limits = server::Limits {
        max_frame: cfg.max_frame_bytes,
        max_connections: cfg.max_connections,
        max_connections_per_ip: cfg.max_connections_per_ip,
        max_outstanding: cfg.max_outstanding as usize,
        handshake_timeout: std::time::Duration::from_secs(30),
    };
    let signal = shutdown.clone();
    tokio::spawn(async move {
        fjord_shared::shutdown::wait_for_signal().await;
        signal.cancel();
    });
    tracing::info!(%addr, secure = ?secure_addr, data_dir = %cfg.data_dir.display(), "coordinator started");
    if let Some(a) = secure_addr {
        println!("secure listening on {a}");
    }
    if let Some((listener, bound)) = http {
        let endpoint = Arc::new(metrics::Endpoint {
            processor: std::sync::Mutex::new(handle.tx.clone()),
            info: metrics::admin::Info {
                client_port: addr.port(),
                secure_client_port: secure_addr.map(|a| a.port()),
                max_client_cnxns: cfg.max_connections_per_ip,
            },
        });
        fjord_shared::http::spawn(listener, metrics::router(endpoint), shutdown.child_token());
        tracing::info!(%bound, "metrics, health and AdminServer commands over HTTP");
        println!("http listening on {bound}");
    }
    println!("listening on {addr}");
    let identity = member.identity.clone();
    let stop = shutdown.clone();
    let fatal = tokio::spawn(async move {
        let reason = identity.fatal().await;
        stop.cancel();
        reason
    });
    server::run(
        ports,
        handle.tx.clone(),
        handle.durable.clone(),
        stats,
        limits,
        shutdown,
    )
    .await;
    tracing::info!("shutting down");
    if let Some(raft) = &member.raft {
        if let Err(e) = raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
    }
    tokio::task::spawn_blocking(move || raft_thread.stop()).await?;
    // Blocking join of the processor, which drains the log and stops the snapshot writer.
    tokio::task::spawn_blocking(move || handle.join()).await?;
    drop(lock);
    if fatal.is_finished() {
        if let Ok(reason) = fatal.await {
            anyhow::bail!("stopped: {reason}");
        }
        return Ok(());
    }
    fatal.abort();
    Ok(())
}
