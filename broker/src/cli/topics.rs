//! `fjord topics`: list, create, describe, alter and delete topics through the Kafka admin
//! APIs (CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs or
//! IncrementalAlterConfigs), which the client sends to the controller.
//!
//! `list` prints bare names, one per line, so it pipes into other tools; `describe` prints
//! the partition table and the topic's config overrides (`--all-configs`: every entry with
//! its source, as `kafka-configs --describe --all` does).

use std::io::Write;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};

use super::error::CliError;
use super::kafka::{check_topic_name, ids, parse_key_value, partition_status, KafkaArgs};
use super::table::{self, Table};
use crate::client::{Client, ConfigChange, ConfigSource, Error, NewTopic};

/// `fjord topics <command>`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(subcommand)]
    pub command: TopicsCommand,
}

/// The `topics` commands.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Print every topic's name, one per line, sorted; with a filter, the partitions in
    /// trouble instead (exiting non-zero if there are any).
    List {
        /// Leave out internal topics such as `__consumer_offsets`.
        #[arg(long)]
        exclude_internal: bool,
        /// Partitions whose ISR is smaller than their replica set.
        #[arg(long)]
        under_replicated: bool,
        /// Partitions whose ISR is below the topic's min.insync.replicas (acks=all writes
        /// are refused).
        #[arg(long)]
        under_min_isr: bool,
        /// Partitions without a live leader.
        #[arg(long)]
        unavailable: bool,
    },
    /// Print each partition's offset: the earliest, the latest (the high watermark), or
    /// the first at or after a time.
    Offsets {
        topic: String,
        /// `earliest`, `latest` or milliseconds since the epoch.
        #[arg(long, default_value = "latest", value_parser = super::topic_offsets::parse_time)]
        time: crate::client::OffsetSpec,
    },
    /// Delete a partition's records before an offset (its log start moves there).
    DeleteRecords {
        /// TOPIC:PARTITION
        #[arg(value_parser = super::topic_offsets::parse_topic_partition)]
        partition: (String, i32),
        /// Records before this offset go; -1: every record below the high watermark.
        #[arg(long, value_name = "OFFSET", allow_negative_numbers = true)]
        before: i64,
    },
    /// Create a topic.
    Create {
        /// The topic's name: 1-249 characters of a-z, A-Z, 0-9, '.', '_' and '-'.
        name: String,
        /// Number of partitions (default: the broker's `num.partitions`).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
        partitions: Option<i32>,
        /// Replicas per partition (default: the broker's `default.replication.factor`).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i16).range(1..))]
        replication_factor: Option<i16>,
        /// A topic config override; repeat for several.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Succeed without change if the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Print a topic's partitions (leader, replicas, ISR) and config.
    Describe {
        name: String,
        /// Print every config entry with its source, not only the topic's overrides.
        #[arg(long)]
        all_configs: bool,
    },
    /// Add partitions or change config overrides.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["partitions", "replication_factor", "configs", "delete_configs"])))]
    Alter {
        name: String,
        /// The new total number of partitions (only growing is possible).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
        partitions: Option<i32>,
        /// Give every partition N replicas: a reassignment adds replicas on the least
        /// loaded brokers (or removes the last ones), and the command waits for it.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        replication_factor: Option<u16>,
        /// With --replication-factor: cap the copying at this many bytes per second
        /// (removed when done).
        #[arg(long, value_name = "BYTES_PER_SEC", requires = "replication_factor",
              value_parser = super::replica_moves::parse_rate)]
        throttle: Option<u64>,
        /// Set a config override; repeat for several.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Remove a config override (back to the broker's value); repeat for several.
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Delete a topic.
    Delete { name: String },
    /// Move partition replicas between brokers with a plan in Kafka's JSON format.
    Reassign(super::reassign::ReassignArgs),
}

/// Runs one `topics` command.
pub async fn run(bootstrap: &str, args: TopicsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let client = args.kafka.connect(bootstrap).await?;
    let timeout = Duration::from_millis(args.kafka.request_timeout_ms);
    match args.command {
        TopicsCommand::List {
            exclude_internal,
            under_replicated,
            under_min_isr,
            unavailable,
        } => {
            let filter = super::topic_health::Filter {
                under_replicated,
                under_min_isr,
                unavailable,
            };
            if filter.any() {
                return super::topic_health::list(&client, filter, exclude_internal, out).await;
            }
            let md = client.fetch_metadata(None, false).await?;
            for t in md.topics.values() {
                if !(exclude_internal && t.is_internal) {
                    writeln!(out, "{}", t.name)?;
                }
            }
        }
        TopicsCommand::Offsets { topic, time } => {
            super::topic_offsets::offsets(&client, &topic, time, out).await?;
        }
        TopicsCommand::DeleteRecords { partition, before } => {
            super::topic_offsets::delete_records(&client, partition, before, out).await?;
        }
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            check_topic_name(&name)?;
            let topic = NewTopic {
                name: name.clone(),
                partitions,
                replication_factor,
                configs,
            };
            match client.create_topic(&topic, timeout).await {
                Ok(()) => writeln!(out, "created topic {name}")?,
                Err(e)
                    if if_not_exists
                        && e.kafka_code() == Some(crate::client::code::TOPIC_ALREADY_EXISTS) =>
                {
                    writeln!(out, "topic {name} already exists")?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        TopicsCommand::Describe { name, all_configs } => {
            describe(&client, &name, all_configs, out).await?;
        }
        TopicsCommand::Alter {
            name,
            partitions,
            replication_factor,
            throttle,
            configs,
            delete_configs,
        } => {
            if let Some(total) = partitions {
                client.create_partitions(&name, total, timeout).await?;
                writeln!(out, "topic {name} now has {total} partitions")?;
            }
            if let Some(rf) = replication_factor {
                super::replica_moves::replication_factor(
                    &client,
                    &name,
                    rf.into(),
                    throttle,
                    timeout,
                    out,
                )
                .await?;
            }
            let changes: Vec<ConfigChange> = configs
                .into_iter()
                .map(|(k, v)| ConfigChange::Set(k, v))
                .chain(delete_configs.into_iter().map(ConfigChange::Delete))
                .collect();
            if !changes.is_empty() {
                client.alter_topic_configs(&name, &changes).await?;
                for c in &changes {
                    match c {
                        ConfigChange::Set(k, v) => writeln!(out, "set {k}={v} on {name}")?,
                        ConfigChange::Delete(k) => writeln!(out, "removed {k} from {name}")?,
                    }
                }
            }
        }
        TopicsCommand::Delete { name } => {
            client.delete_topic(&name, timeout).await?;
            writeln!(out, "deleted topic {name}")?;
        }
        TopicsCommand::Reassign(args) => {
            super::reassign::run(&client, args, timeout, out).await?;
        }
    }
    Ok(())
}

async fn describe(
    client: &Client,
    name: &str,
    all_configs: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let md = client
        .fetch_metadata(Some(&[name.to_owned()]), false)
        .await?;
    let Some(topic) = md.topic(name) else {
        return Err(Error::UnknownTopic {
            topic: name.to_owned(),
        }
        .into());
    };
    let rf = topic
        .partitions
        .values()
        .map(|p| p.replicas.len())
        .max()
        .unwrap_or(0);
    let mut header = vec![("topic", name.to_owned())];
    if let Some(id) = &topic.topic_id {
        header.push(("topic id", id.clone()));
    }
    header.push(("partitions", topic.partitions.len().to_string()));
    header.push(("replication factor", rf.to_string()));
    if topic.is_internal {
        header.push(("internal", "yes".into()));
    }
    table::fields(out, &header)?;
    table::gap(out)?;
    let mut table = Table::new(&[
        "PARTITION",
        "LEADER",
        "EPOCH",
        "REPLICAS",
        "ISR",
        "OFFLINE",
        "STATUS",
    ]);
    for p in topic.partitions.values() {
        table.row(vec![
            p.partition.to_string(),
            p.leader.map_or_else(|| "none".into(), |l| l.to_string()),
            if p.leader_epoch >= 0 {
                p.leader_epoch.to_string()
            } else {
                "-".into()
            },
            ids(&p.replicas),
            ids(&p.isr),
            ids(&p.offline_replicas),
            partition_status(p).to_owned(),
        ]);
    }
    table.write(out, "")?;
    table::gap(out)?;
    let configs = match client.describe_topic_configs(name).await {
        Ok(c) => c,
        // Describing still succeeds without configs from a broker that lacks the API.
        Err(e @ Error::UnsupportedApi { .. }) => {
            table::note(out, &format!("configs: not available ({e})"))?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if all_configs || table::json() {
        let mut table = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
        for c in &configs {
            table.row(vec![c.name.clone(), config_value(c), c.source.name()]);
        }
        table.write(out, "")?;
    } else {
        let overrides: Vec<_> = configs
            .iter()
            .filter(|c| c.source == ConfigSource::DynamicTopic)
            .collect();
        if overrides.is_empty() {
            writeln!(out, "configs: broker defaults (no overrides)")?;
        } else {
            writeln!(out, "configs:")?;
            for c in overrides {
                writeln!(out, "  {}={}", c.name, config_value(c))?;
            }
        }
    }
    Ok(())
}

fn config_value(c: &crate::client::ConfigEntry) -> String {
    match (&c.value, c.sensitive) {
        (_, true) => "(sensitive)".to_owned(),
        (Some(v), false) => v.clone(),
        (None, false) => "(none)".to_owned(),
    }
}
