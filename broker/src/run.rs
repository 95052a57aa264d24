//! Starting and stopping a broker: bind, join the cluster, open the logs, serve.

use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::group::coordinator::{CoordinatorConfig, GroupCoordinator};
use crate::group::GroupConfig;
use crate::producer_ids::ProducerIds;
use crate::replica::ReplicaManager;
use anyhow::Context;
use fjord_shared::cluster::BrokerRegistration;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs a broker until SIGTERM or SIGINT. Prints `listening on ADDR` once it is bound and
/// registered.
pub async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let lock_path = config.data_dir.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "data dir {} is in use by another broker",
            config.data_dir.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (host, port) = match &config.advertised {
        Some(a) => {
            let (h, p) = a
                .rsplit_once(':')
                .context("--advertised must be HOST:PORT")?;
            (
                h.to_owned(),
                p.parse::<u16>()
                    .context("--advertised port is not a number")?,
            )
        }
        None => (addr.ip().to_string(), addr.port()),
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let registration = BrokerRegistration::new(&host, port, config.rack.clone(), now_ms);
    let replicas = ReplicaManager::open(&config).context("cannot open the partition logs")?;
    let cluster = Cluster::join(
        config.id,
        &config.coordinator,
        Duration::from_millis(config.session_timeout_ms),
        registration,
    )
    .await
    .context("cannot join the cluster")?;
    let broker = Arc::new(Broker {
        id: config.id,
        config: config.clone(),
        cluster: cluster.clone(),
        replicas,
        producer_ids: ProducerIds::default(),
        groups: GroupCoordinator::new(CoordinatorConfig {
            group: GroupConfig {
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms.max(0),
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                ..GroupConfig::default()
            },
            partitions: config.offsets_topic_partitions.max(1),
            replication_factor: config.offsets_topic_replication_factor.max(1),
            retention_ms: config.offsets_retention_minutes.max(1) * 60_000,
            segment_bytes: 100 * 1024 * 1024,
        }),
    });
    // Before the cluster task starts: it reads the setting once when it follows the view.
    if config.auto_leader_rebalance {
        cluster.set_leader_rebalance(
            Duration::from_millis(config.leader_imbalance_check_interval_ms.max(100)),
            config.leader_imbalance_per_broker_percentage,
        );
    }
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(cluster.clone().run(shutdown.child_token()));
    tasks.spawn(crate::replica::follow_view(
        broker.clone(),
        shutdown.child_token(),
    ));
    tasks.spawn(crate::replica::housekeeping(
        broker.clone(),
        shutdown.child_token(),
    ));
    tasks.spawn(crate::group::coordinator::run(
        broker.clone(),
        shutdown.child_token(),
    ));
    tasks.spawn(crate::replica::isr_maintenance(
        broker.clone(),
        shutdown.child_token(),
    ));
    let signal = shutdown.clone();
    let b = broker.clone();
    tokio::spawn(async move {
        fjord_shared::shutdown::wait_for_signal().await;
        if b.config.controlled_shutdown && !b.cluster.is_fenced() {
            // Keep serving while leadership moves, so clients are redirected, not cut off.
            tracing::info!(
                broker_id = b.id,
                "controlled shutdown: moving leadership away"
            );
            let timeout = Duration::from_millis(b.config.controlled_shutdown_timeout_ms);
            let done = tokio::select! {
                done = b.cluster.controlled_shutdown(timeout) => done,
                _ = fjord_shared::shutdown::wait_for_signal() => false,
            };
            if done {
                tracing::info!(broker_id = b.id, "controlled shutdown: leadership moved");
            } else {
                tracing::warn!(
                    broker_id = b.id,
                    "controlled shutdown: some leaderships could not be moved; stopping anyway"
                );
            }
        }
        signal.cancel();
    });
    tracing::info!(broker_id = config.id, %addr, advertised = %format!("{host}:{port}"), "broker started");
    println!("listening on {addr}");
    crate::server::run(
        listener,
        broker.clone(),
        config.max_connections,
        shutdown.clone(),
    )
    .await;
    tracing::info!(broker_id = config.id, "shutting down");
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    broker.replicas.close();
    drop(lock);
    Ok(())
}
