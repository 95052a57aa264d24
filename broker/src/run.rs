//! Starting and stopping a broker: bind, join the cluster, open the logs, serve.

use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::group::coordinator::{CoordinatorConfig, GroupCoordinator};
use crate::group::GroupConfig;
use crate::producer_ids::ProducerIds;
use crate::replica::ReplicaManager;
use crate::security::authorizer::Authorizer;
use crate::security::client_config::ClientSecurity;
use crate::security::listener::{registered_endpoint, Listeners};
use crate::security::sasl::SaslMechanism;
use crate::security::{InterBroker, Security};
use crate::server::ListenerRuntime;
use anyhow::Context;
use fjord_shared::cluster::BrokerRegistration;
use fjord_shared::tls::{ClientAuth, ClientTls, ServerTls};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs a broker until SIGTERM or SIGINT. Prints `listening on ADDR` once it is bound and
/// registered.
pub async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    if let Some((soft, hard)) = crate::fd_limit::raise_open_files_limit() {
        tracing::info!(soft, hard, "open files limit");
    }
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
    let listeners = listeners(&config)?;
    let security = Security {
        credentials: Default::default(),
        mechanisms: SaslMechanism::parse_list(&config.sasl_enabled_mechanisms)
            .map_err(|e| anyhow::anyhow!("--sasl-enabled-mechanisms: {e}"))?,
        reauth_ms: config.connections_max_reauth_ms,
        authorizer: match config.authorizer.as_str() {
            "acl" => Some(Arc::new(std::sync::RwLock::new(Authorizer::new(
                super_users(&config.super_users)?,
                config.allow_everyone_if_no_acl_found,
            )))),
            _ => None,
        },
    };
    let server_tls = server_tls(&config, &listeners)?;
    let inter_broker = Arc::new(inter_broker(&config, &listeners)?);
    let mut bound = Vec::new();
    let mut endpoints = Vec::new();
    for l in &listeners.listeners {
        let listener = tokio::net::TcpListener::bind(&l.bind)
            .await
            .with_context(|| format!("cannot listen on {} (listener {})", l.bind, l.name))?;
        let addr = listener.local_addr()?;
        endpoints.push((registered_endpoint(l, addr), l.protocol.name().to_owned()));
        let runtime = ListenerRuntime {
            name: l.name.clone(),
            protocol: l.protocol,
            tls: l
                .protocol
                .uses_tls()
                .then(|| server_tls.clone().map(tokio_rustls::TlsAcceptor::from))
                .flatten(),
        };
        println!("listener {} on {addr}", l.name);
        bound.push((listener, Arc::new(runtime), addr));
    }
    let addr = bound[0].2;
    let http = fjord_shared::http::bind(config.http_listen)
        .await
        .context("cannot listen for HTTP (--http-listen)")?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let registration = BrokerRegistration::with_listeners(&endpoints, config.rack.clone(), now_ms);
    let replicas = ReplicaManager::open(&config, inter_broker.clone())
        .context("cannot open the partition logs")?;
    let coordinator_opts =
        config
            .coordinator_security
            .apply(fjord_shared::coord_client::ConnectOptions::new(
                &config.coordinator,
            ))?;
    let cluster = Cluster::join(
        config.id,
        &config.coordinator,
        Duration::from_millis(config.session_timeout_ms),
        registration,
        crate::cluster::CoordinatorAccess::from_options(
            &coordinator_opts,
            config.coordinator_set_acl,
        ),
    )
    .await
    .context("cannot join the cluster")?;
    let broker = Arc::new(Broker {
        security,
        stats: crate::stats::BrokerStats::new(crate::handler::SUPPORTED.len()),
        inter_broker,
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
    let advertised: Vec<String> = endpoints.iter().map(|(e, _)| e.to_string()).collect();
    tracing::info!(broker_id = config.id, %addr, advertised = ?advertised, "broker started");
    // Logins and ACLs are checked against what was read before the first client is served.
    let watching =
        crate::security::sync::watch_and_load(cluster.client(), &broker.security.followed())
            .await
            .context("cannot read the users' SCRAM credentials and the ACLs")?;
    tasks.spawn(crate::security::sync::follow(
        cluster.clone(),
        broker.security.followed(),
        watching,
        shutdown.child_token(),
    ));
    if let Some((listener, bound)) = http {
        fjord_shared::http::spawn(
            listener,
            crate::metrics::router(broker.clone()),
            shutdown.child_token(),
        );
        tracing::info!(%bound, "metrics and health over HTTP");
        println!("http listening on {bound}");
    }
    println!("listening on {addr}");
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let mut servers = tokio::task::JoinSet::new();
    for (listener, runtime, _) in bound {
        servers.spawn(crate::server::run(
            listener,
            runtime,
            broker.clone(),
            slots.clone(),
            shutdown.clone(),
        ));
    }
    while servers.join_next().await.is_some() {}
    tracing::info!(broker_id = config.id, "shutting down");
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    broker.replicas.close();
    drop(lock);
    Ok(())
}

/// The listeners from `--listeners` (and friends), or one PLAINTEXT listener from `--listen`.
fn listeners(config: &BrokerConfig) -> anyhow::Result<Listeners> {
    match &config.listeners {
        Some(l) => Ok(Listeners::parse(
            l,
            config.listener_security_protocol_map.as_deref(),
            config.advertised_listeners.as_deref(),
            config.inter_broker_listener.as_deref(),
        )?),
        None => {
            let bind = config
                .listen
                .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 9092)));
            let advertised = match &config.advertised {
                Some(a) => {
                    let (h, p) = a
                        .rsplit_once(':')
                        .context("--advertised must be HOST:PORT")?;
                    Some((
                        h.to_owned(),
                        p.parse::<u16>()
                            .context("--advertised port is not a number")?,
                    ))
                }
                None => None,
            };
            Ok(Listeners::single(bind.to_string(), advertised))
        }
    }
}

/// The TLS server config, if any listener uses TLS.
fn server_tls(
    config: &BrokerConfig,
    listeners: &Listeners,
) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    if !listeners.listeners.iter().any(|l| l.protocol.uses_tls()) {
        return Ok(None);
    }
    let (Some(certificate), Some(key)) = (&config.ssl_certificate, &config.ssl_key) else {
        anyhow::bail!("SSL and SASL_SSL listeners need --ssl-certificate and --ssl-key");
    };
    let client_auth = ClientAuth::parse(&config.ssl_client_auth)
        .context("--ssl-client-auth must be none, requested or required")?;
    let tls = ServerTls {
        certificate: certificate.clone(),
        key: key.clone(),
        ca: config.ssl_ca.clone(),
        client_auth,
    };
    Ok(Some(tls.config().context("TLS settings")?))
}

/// How this broker reaches the others' inter-broker listener.
fn inter_broker(config: &BrokerConfig, listeners: &Listeners) -> anyhow::Result<InterBroker> {
    let protocol = listeners.inter_broker_protocol();
    let client = match &config.inter_broker_client_config {
        Some(path) => {
            ClientSecurity::from_file(path).map_err(|e| anyhow::anyhow!("--inter-broker-client-config {e}"))?
        }
        None if protocol.uses_sasl() => anyhow::bail!(
            "the inter-broker listener {} uses {protocol}: give the broker's login with --inter-broker-client-config",
            listeners.inter_broker
        ),
        None if protocol.uses_tls() => {
            // Trust the CA given for client certificates, and present our own certificate.
            let tls = ClientTls {
                ca: config.ssl_ca.clone(),
                certificate: config.ssl_certificate.clone(),
                key: config.ssl_key.clone(),
            };
            ClientSecurity {
                protocol,
                sasl: None,
                tls: Some(tls.config().context(
                    "the inter-broker listener uses SSL: --ssl-ca must name the CA that signed the brokers' certificates",
                )?),
            }
        }
        None => ClientSecurity::default(),
    };
    if client.protocol != protocol {
        anyhow::bail!(
            "--inter-broker-client-config says security.protocol={} but the inter-broker listener {} uses {protocol}",
            client.protocol,
            listeners.inter_broker
        );
    }
    Ok(InterBroker {
        listener: listeners.inter_broker.clone(),
        client,
    })
}

/// `--super-users`: `User:a;User:b` (Kafka's separator), each a `User:` principal.
fn super_users(text: &str) -> anyhow::Result<Vec<String>> {
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|p| match p.split_once(':') {
            Some(("User", name)) if !name.is_empty() => Ok(p.to_owned()),
            _ => anyhow::bail!("--super-users: {p:?} is not User:<name>"),
        })
        .collect()
}
