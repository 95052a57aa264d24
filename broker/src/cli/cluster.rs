//! `fjord cluster`: the cluster at a glance, as the brokers describe it through the Kafka
//! Metadata API (`--bootstrap`): cluster id, controller, brokers, and every topic's
//! partitions with leader, replicas, ISR, offline replicas and a status column.
//!
//! `--registrations` adds what the coordinator (`--coordinator`) holds: the broker
//! registrations under `/brokers/ids`, `/controller` and `/controller_epoch`. The two views
//! can differ for a moment (a broker that died is still registered until its session
//! expires; a new controller is in the coordinator before the brokers learn of it), and
//! the differences are listed, since they are what an operator is looking for.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use clap::Args;
use fjord_shared::cluster::{
    self as layout, BrokerRegistration, ClusterId, ControllerInfo, Endpoint,
};
use fjord_shared::coord_client::{self, ConnectOptions, ErrorCode};

use super::error::CliError;
use super::kafka::{ids, partition_status, KafkaArgs};
use super::output::timestamp;
use super::table::{self, Table};
use crate::client::ClusterMetadata;

/// `fjord cluster [--registrations] [rebalance-leaders]`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub action: Option<ClusterAction>,

    /// Also show the broker registrations and controller stored in the coordinator
    /// (`--coordinator`), and where they differ from the brokers' view.
    #[arg(long)]
    pub registrations: bool,

    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// What `fjord cluster` can do besides showing the cluster.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterAction {
    /// Move every partition's leadership back to its preferred replica (the first in its
    /// replica list) where that broker is alive and in sync, as Kafka's preferred leader
    /// election. Fails if some partition could not move.
    RebalanceLeaders {
        /// How long to wait for the controller, in ms.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
    },
    /// Unclean leader election: give partitions without a live leader their first live
    /// replica as leader even if it was out of sync. Records that only the dead replicas
    /// had are lost; this is for deliberately recovering an offline partition.
    ElectUnclean {
        /// TOPIC:PARTITION; repeat for several (none: every partition without a leader).
        #[arg(long = "partition", value_name = "TOPIC:PARTITION",
              value_parser = super::topic_offsets::parse_topic_partition)]
        partitions: Vec<(String, i32)>,
        /// How long to wait for the controller, in ms.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
    },
    /// Each broker's log directory and the size of every replica in it, then each
    /// broker's total (DescribeLogDirs).
    LogDirs,
    /// The API versions each broker serves, and the version this tool would use.
    ApiVersions,
    /// Move every replica off a broker (to the least loaded others, rack-aware), wait
    /// until it holds none, and say when it is safe to stop it.
    Decommission {
        broker: i32,
        /// Print the plan without starting it.
        #[arg(long)]
        dry_run: bool,
        /// Cap the copying at this many bytes per second (removed when done).
        #[arg(long, value_name = "BYTES_PER_SEC", value_parser = super::replica_moves::parse_rate)]
        throttle: Option<u64>,
        /// Stop waiting after this many seconds (the moves carry on).
        #[arg(long, value_name = "SECS", default_value_t = 86_400)]
        wait_timeout_s: u64,
    },
    /// Compute a plan that spreads replicas and preferred leaders evenly over the live
    /// brokers, rack-aware, moving as little data as possible; print it as a Kafka plan
    /// file, and with --execute carry it out with progress, then move leaders.
    Balance {
        #[arg(long)]
        execute: bool,
        /// With --execute: cap the copying at this many bytes per second (removed when done).
        #[arg(long, value_name = "BYTES_PER_SEC", requires = "execute", value_parser = super::replica_moves::parse_rate)]
        throttle: Option<u64>,
        /// Stop waiting after this many seconds (the moves carry on).
        #[arg(long, value_name = "SECS", default_value_t = 86_400)]
        wait_timeout_s: u64,
    },
}

/// Prints the cluster, or runs an action.
pub async fn run(
    bootstrap: &str,
    coordinator: &str,
    args: ClusterArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let client = args.kafka.connect(bootstrap).await?;
    match args.action {
        Some(ClusterAction::RebalanceLeaders { timeout_ms }) => {
            return rebalance_leaders(&client, Duration::from_millis(timeout_ms), out).await;
        }
        Some(ClusterAction::ElectUnclean {
            partitions,
            timeout_ms,
        }) => {
            let results = client
                .elect_unclean_leaders(&partitions, Duration::from_millis(timeout_ms))
                .await?;
            let mut t = Table::new(&["TOPIC", "PARTITION", "RESULT"]);
            let mut failed = 0;
            for (topic, p, code, message) in &results {
                let result = if *code == 0 {
                    "elected (records only the lost replicas had are gone)".to_owned()
                } else if *code == crate::client::code::ELECTION_NOT_NEEDED {
                    "already has a live leader".to_owned()
                } else {
                    failed += 1;
                    format!(
                        "{}: {}",
                        crate::client::error_name(*code),
                        message.clone().unwrap_or_default()
                    )
                };
                t.row(vec![topic.clone(), p.to_string(), result]);
            }
            if results.is_empty() {
                table::note(out, "no partition is without a leader")?;
            } else {
                t.write(out, "")?;
            }
            return if failed > 0 {
                Err(CliError::Incomplete(format!(
                    "{failed} partition(s) got no leader"
                )))
            } else {
                Ok(())
            };
        }
        Some(ClusterAction::LogDirs) => {
            return super::cluster_brokers::log_dirs(&client, out).await
        }
        Some(ClusterAction::ApiVersions) => {
            return super::cluster_brokers::api_versions(&client, out).await
        }
        Some(ClusterAction::Decommission {
            broker,
            dry_run,
            throttle,
            wait_timeout_s,
        }) => {
            let timeout = Duration::from_millis(args.kafka.request_timeout_ms);
            let wait = Duration::from_secs(wait_timeout_s);
            return super::replica_moves::decommission(
                &client, broker, dry_run, throttle, timeout, wait, out,
            )
            .await;
        }
        Some(ClusterAction::Balance {
            execute,
            throttle,
            wait_timeout_s,
        }) => {
            let timeout = Duration::from_millis(args.kafka.request_timeout_ms);
            let wait = Duration::from_secs(wait_timeout_s);
            return super::replica_moves::balance(&client, execute, throttle, timeout, wait, out)
                .await;
        }
        None => {}
    }
    let md = client.fetch_metadata(None, false).await?;
    write_metadata(&md, out)?;
    if args.registrations {
        let timeout = Duration::from_millis(args.kafka.connect_timeout_ms);
        let regs = read_registrations(coordinator, timeout).await?;
        table::gap(out)?;
        write_registrations(coordinator, &regs, &md, out)?;
    }
    Ok(())
}

async fn rebalance_leaders(
    client: &crate::client::Client,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let results = client.elect_preferred_leaders(timeout).await?;
    let mut table = Table::new(&["TOPIC", "PARTITION", "RESULT"]);
    let (mut moved, mut failed) = (0, 0);
    for (topic, partition, code, message) in &results {
        let result = match code {
            0 => {
                moved += 1;
                "moved to the preferred replica".to_owned()
            }
            84 => "already led by the preferred replica".to_owned(),
            _ => {
                failed += 1;
                message.clone().unwrap_or_else(|| format!("error {code}"))
            }
        };
        table.row(vec![topic.clone(), partition.to_string(), result]);
    }
    table.write(out, "")?;
    writeln!(out, "{moved} moved, {failed} could not move")?;
    if failed > 0 {
        return Err(CliError::Incomplete(format!(
            "{failed} partitions could not move to their preferred replica"
        )));
    }
    Ok(())
}

/// Writes the Metadata view.
pub(crate) fn write_metadata(md: &ClusterMetadata, out: &mut dyn Write) -> std::io::Result<()> {
    let controller = match md.controller_id {
        Some(id) => id.to_string(),
        None => "none".to_owned(),
    };
    table::fields(
        out,
        &[
            (
                "cluster id",
                md.cluster_id.clone().unwrap_or_else(|| "-".into()),
            ),
            ("controller", controller),
        ],
    )?;
    table::gap(out)?;
    let mut brokers = Table::new(&["BROKER", "ADDRESS", "RACK"]);
    for b in md.brokers.values() {
        let id = if Some(b.id) == md.controller_id {
            format!("{} (controller)", b.id)
        } else {
            b.id.to_string()
        };
        brokers.row(vec![
            id,
            b.addr(),
            b.rack.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    brokers.write(out, "")?;
    table::gap(out)?;
    if md.topics.is_empty() {
        return table::note(out, "no topics");
    }
    let mut topics = Table::new(&[
        "TOPIC",
        "PARTITION",
        "LEADER",
        "REPLICAS",
        "ISR",
        "OFFLINE",
        "STATUS",
    ]);
    for t in md.topics.values() {
        if t.error_code != 0 && t.partitions.is_empty() {
            topics.row(vec![
                t.name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                crate::client::error_name(t.error_code),
            ]);
        }
        for p in t.partitions.values() {
            topics.row(vec![
                t.name.clone(),
                p.partition.to_string(),
                p.leader.map_or_else(|| "none".into(), |l| l.to_string()),
                ids(&p.replicas),
                ids(&p.isr),
                ids(&p.offline_replicas),
                partition_status(p).to_owned(),
            ]);
        }
    }
    topics.write(out, "")
}

/// What the coordinator holds about the cluster.
#[derive(Debug, Default)]
pub(crate) struct Registrations {
    pub cluster_id: Option<String>,
    pub controller: Option<ControllerInfo>,
    pub controller_epoch: Option<String>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
}

async fn read_registrations(
    coordinator: &str,
    timeout: Duration,
) -> Result<Registrations, CliError> {
    let opts = ConnectOptions::new(coordinator).connect_timeout(timeout);
    let zk = super::coord::open(coordinator, opts).await?;
    let result = read_registrations_with(&zk).await;
    if let Err(e) = zk.close().await {
        tracing::warn!(error = %e, "closing the coordinator session failed");
    }
    result
}

/// The data of `path`, or `None` if it does not exist.
async fn get(zk: &coord_client::Client, path: &str) -> Result<Option<bytes::Bytes>, CliError> {
    match zk.get_data(path, false).await {
        Ok((data, _)) => Ok(Some(data)),
        Err(coord_client::Error::Zk(ErrorCode::NoNode)) => Ok(None),
        Err(e) => Err(CliError::at(path)(e)),
    }
}

async fn read_registrations_with(zk: &coord_client::Client) -> Result<Registrations, CliError> {
    let mut regs = Registrations::default();
    if let Some(data) = get(zk, layout::CLUSTER_ID).await? {
        regs.cluster_id = serde_json::from_slice::<ClusterId>(&data)
            .ok()
            .map(|c| c.id);
    }
    if let Some(data) = get(zk, layout::CONTROLLER).await? {
        regs.controller = serde_json::from_slice(&data).ok();
    }
    if let Some(data) = get(zk, layout::CONTROLLER_EPOCH).await? {
        regs.controller_epoch = Some(
            String::from_utf8_lossy(&data)
                .trim()
                .trim_matches('"')
                .to_owned(),
        );
    }
    let children = match zk.get_children(layout::BROKER_IDS, false).await {
        Ok(c) => c,
        Err(coord_client::Error::Zk(ErrorCode::NoNode)) => Vec::new(),
        Err(e) => return Err(CliError::at(layout::BROKER_IDS)(e)),
    };
    for child in children {
        let Ok(id) = child.parse::<i32>() else {
            continue;
        };
        // A broker that deregistered between the listing and the read is simply gone.
        if let Some(data) = get(zk, &layout::broker_path(id)).await? {
            match serde_json::from_slice::<BrokerRegistration>(&data) {
                Ok(reg) => {
                    regs.brokers.insert(id, reg);
                }
                Err(e) => tracing::warn!(broker_id = id, error = %e, "unreadable registration"),
            }
        }
    }
    Ok(regs)
}

/// Writes the coordinator's view and how it differs from the brokers'.
pub(crate) fn write_registrations(
    coordinator: &str,
    regs: &Registrations,
    md: &ClusterMetadata,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    table::note(out, &format!("coordinator {coordinator}:"))?;
    let controller = match &regs.controller {
        Some(c) => format!(
            "{} (epoch {}, since {})",
            c.brokerid,
            regs.controller_epoch.as_deref().unwrap_or("?"),
            c.timestamp
                .parse::<i64>()
                .map_or_else(|_| c.timestamp.clone(), timestamp)
        ),
        None => "none".to_owned(),
    };
    let prefix = if table::json() { "" } else { "  " };
    table::fields(
        out,
        &[
            (
                &format!("{prefix}cluster id"),
                regs.cluster_id.clone().unwrap_or_else(|| "-".into()),
            ),
            (&format!("{prefix}controller"), controller),
        ],
    )?;
    let mut table = Table::new(&["BROKER", "ENDPOINTS", "RACK", "REGISTERED"]);
    for (id, reg) in &regs.brokers {
        table.row(vec![
            id.to_string(),
            reg.endpoints.join(","),
            reg.rack.clone().unwrap_or_else(|| "-".into()),
            reg.timestamp
                .parse::<i64>()
                .map_or_else(|_| reg.timestamp.clone(), timestamp),
        ]);
    }
    table.write(out, "  ")?;
    let diffs = differences(regs, md);
    if diffs.is_empty() {
        table::note(out, "  the brokers' metadata agrees with the coordinator")?;
    } else {
        for d in diffs {
            table::note(out, &format!("  differs: {d}"))?;
        }
    }
    Ok(())
}

/// Where the coordinator and the brokers' metadata disagree, one sentence each.
pub(crate) fn differences(regs: &Registrations, md: &ClusterMetadata) -> Vec<String> {
    let mut diffs = Vec::new();
    for (id, reg) in &regs.brokers {
        match md.brokers.get(id) {
            None => diffs.push(format!("broker {id} is registered but not in the metadata")),
            Some(b)
                if !reg
                    .endpoints
                    .iter()
                    .filter_map(|e| Endpoint::parse(e))
                    .any(|e| e.host == b.host && i32::from(e.port) == b.port) =>
            {
                diffs.push(format!(
                    "broker {id} is registered as {} but advertised as {}",
                    reg.endpoints.join(","),
                    b.addr()
                ))
            }
            Some(_) => {}
        }
    }
    for id in md.brokers.keys() {
        if !regs.brokers.contains_key(id) {
            diffs.push(format!("broker {id} is in the metadata but not registered"));
        }
    }
    let registered = regs.controller.as_ref().map(|c| c.brokerid);
    if registered != md.controller_id {
        let show = |c: Option<i32>| c.map_or_else(|| "none".to_owned(), |c| c.to_string());
        diffs.push(format!(
            "the controller is {} in the coordinator but {} in the metadata",
            show(registered),
            show(md.controller_id)
        ));
    }
    if let (Some(a), Some(b)) = (&regs.cluster_id, &md.cluster_id) {
        if a != b {
            diffs.push(format!(
                "the cluster id is {a} in the coordinator but {b} in the metadata"
            ));
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{BrokerInfo, PartitionInfo, TopicInfo};

    fn md() -> ClusterMetadata {
        let mut md = ClusterMetadata {
            cluster_id: Some("c1".into()),
            controller_id: Some(1),
            ..ClusterMetadata::default()
        };
        for id in [1, 2] {
            md.brokers.insert(
                id,
                BrokerInfo {
                    id,
                    host: "127.0.0.1".into(),
                    port: 9090 + id,
                    rack: None,
                },
            );
        }
        let partitions = [
            (0, Some(1), vec![1, 2], vec![1, 2], vec![]),
            (1, Some(2), vec![2, 1], vec![2], vec![]),
            (2, None, vec![3], vec![], vec![3]),
        ]
        .into_iter()
        .map(|(p, leader, replicas, isr, offline)| {
            (
                p,
                PartitionInfo {
                    partition: p,
                    leader,
                    leader_epoch: 0,
                    replicas,
                    isr,
                    offline_replicas: offline,
                    error_code: 0,
                },
            )
        })
        .collect();
        md.topics.insert(
            "orders".into(),
            TopicInfo {
                name: "orders".into(),
                topic_id: None,
                is_internal: false,
                error_code: 0,
                partitions,
            },
        );
        md
    }

    #[test]
    fn metadata_prints_as_tables() {
        let mut out = Vec::new();
        write_metadata(&md(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let want = "\
cluster id: c1
controller: 1

BROKER          ADDRESS         RACK
1 (controller)  127.0.0.1:9091  -
2               127.0.0.1:9092  -

TOPIC   PARTITION  LEADER  REPLICAS  ISR  OFFLINE  STATUS
orders  0          1       1,2       1,2  -        ok
orders  1          2       2,1       2    -        under-replicated
orders  2          none    3         -    3        offline
";
        assert_eq!(text, want);
    }

    #[test]
    fn differences_between_the_views_are_named() {
        let mut regs = Registrations {
            cluster_id: Some("c1".into()),
            controller: Some(ControllerInfo {
                version: 1,
                brokerid: 2,
                timestamp: "0".into(),
            }),
            controller_epoch: Some("3".into()),
            brokers: BTreeMap::new(),
        };
        regs.brokers
            .insert(1, BrokerRegistration::new("127.0.0.1", 9091, None, 0));
        regs.brokers
            .insert(3, BrokerRegistration::new("127.0.0.1", 9093, None, 0));
        let diffs = differences(&regs, &md());
        assert_eq!(
            diffs,
            vec![
                "broker 3 is registered but not in the metadata".to_owned(),
                "broker 2 is in the metadata but not registered".to_owned(),
                "the controller is 2 in the coordinator but 1 in the metadata".to_owned(),
            ]
        );
        let mut out = Vec::new();
        write_registrations("zk:2181", &regs, &md(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("  controller: 2 (epoch 3, since 1970-01-01T00:00:00.000Z)"),
            "{text}"
        );
        assert!(
            text.contains("  1       PLAINTEXT://127.0.0.1:9091  -     1970-01-01T00:00:00.000Z"),
            "{text}"
        );
    }
}
