//! `fjord topics reassign`: move partition replicas between brokers with a plan in Kafka's
//! JSON format (see [`super::reassign_plan`]), through AlterPartitionReassignments and
//! ListPartitionReassignments.
//!
//! - `--plan FILE` shows what the plan would move (and how many bytes must be copied),
//!   changing nothing;
//! - `--execute FILE` starts it, first printing the current assignment as a plan to roll
//!   back with; a partition already being reassigned is refused unless `--additional`;
//! - `--verify [FILE]` reports each partition as done, moving (with the bytes its new
//!   replicas hold) or different, and exits non-zero until everything is done;
//! - `--cancel [FILE]` returns partitions being moved to their original replicas;
//! - `--list` shows every reassignment in progress.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgGroup, Args};

use super::error::CliError;
use super::kafka::ids;
use super::placement::Tp;
use super::reassign_plan::Plan;
use super::replica_moves::{human_bytes, sizes, PROGRESS_ASK};
use super::table::{self, Table};
use crate::client::{Client, ClusterMetadata, OngoingReassignment};

/// `fjord topics reassign`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").required(true)
    .args(["plan", "execute", "verify", "cancel", "list"])))]
pub struct ReassignArgs {
    /// Show what the plan in FILE would move, without changing anything.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Start the reassignments in FILE.
    #[arg(long, value_name = "FILE")]
    pub execute: Option<PathBuf>,
    /// With --execute: replace reassignments already in progress for the same partitions.
    #[arg(long, requires = "execute")]
    pub additional: bool,
    /// With --execute: cap the copying at this many bytes per second (Kafka's replication
    /// throttle on every broker); --verify removes it once everything is done.
    #[arg(long, value_name = "BYTES_PER_SEC", requires = "execute",
          value_parser = super::replica_moves::parse_rate)]
    pub throttle: Option<u64>,
    /// Report progress of the plan in FILE (of every reassignment without FILE); exits
    /// non-zero until all are done.
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub verify: Option<Option<PathBuf>>,
    /// Cancel the reassignments of FILE's partitions (every reassignment without FILE).
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub cancel: Option<Option<PathBuf>>,
    /// List the reassignments in progress.
    #[arg(long)]
    pub list: bool,
}

fn read_plan(path: &Path) -> Result<Plan, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    Plan::parse(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// Runs `topics reassign`.
pub async fn run(
    client: &Client,
    args: ReassignArgs,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if let Some(path) = &args.plan {
        let plan = read_plan(path)?;
        let md = client.fetch_metadata(None, false).await?;
        plan.check(&md).map_err(CliError::Usage)?;
        return show_plan(client, &plan, &md, out).await;
    }
    if let Some(path) = &args.execute {
        let plan = read_plan(path)?;
        return execute(client, &plan, args.additional, args.throttle, timeout, out).await;
    }
    if let Some(path) = &args.verify {
        let plan = path.as_deref().map(read_plan).transpose()?;
        return verify(client, plan.as_ref(), out).await;
    }
    if let Some(path) = &args.cancel {
        let plan = path.as_deref().map(read_plan).transpose()?;
        return cancel(client, plan.as_ref(), timeout, out).await;
    }
    list(client, out).await
}

/// (topic, partition) → the reassignment in progress.
async fn ongoing(
    client: &Client,
) -> Result<BTreeMap<(String, i32), OngoingReassignment>, CliError> {
    Ok(client
        .list_partition_reassignments()
        .await?
        .into_iter()
        .map(|r| ((r.topic.clone(), r.partition), r))
        .collect())
}

/// The replicas a partition had before any reassignment in progress.
fn original(
    md: &ClusterMetadata,
    moving: &BTreeMap<(String, i32), OngoingReassignment>,
    topic: &str,
    partition: i32,
) -> Vec<i32> {
    match moving.get(&(topic.to_owned(), partition)) {
        Some(r) => r
            .replicas
            .iter()
            .copied()
            .filter(|b| !r.adding.contains(b))
            .collect(),
        None => md
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(&partition))
            .map(|p| p.replicas.clone())
            .unwrap_or_default(),
    }
}

async fn show_plan(
    client: &Client,
    plan: &Plan,
    md: &ClusterMetadata,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let moving = ongoing(client).await?;
    let sizes = sizes(client).await;
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT",
        "TARGET",
        "ADDING",
        "REMOVING",
        "COPY",
    ]);
    let mut total = 0i64;
    for p in &plan.partitions {
        let current = original(md, &moving, &p.topic, p.partition);
        let adding: Vec<i32> = p
            .replicas
            .iter()
            .copied()
            .filter(|r| !current.contains(r))
            .collect();
        let removing: Vec<i32> = current
            .iter()
            .copied()
            .filter(|r| !p.replicas.contains(r))
            .collect();
        let copy = sizes
            .get(&(p.topic.clone(), p.partition))
            .copied()
            .unwrap_or(0)
            * adding.len() as i64;
        total += copy;
        table.row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            ids(&current),
            ids(&p.replicas),
            ids(&adding),
            ids(&removing),
            human_bytes(copy),
        ]);
    }
    table.write(out, "")?;
    table::gap(out)?;
    table::note(
        out,
        &format!(
            "{} partition(s), {} to copy; nothing was changed (start it with --execute)",
            plan.partitions.len(),
            human_bytes(total)
        ),
    )?;
    Ok(())
}

async fn execute(
    client: &Client,
    plan: &Plan,
    additional: bool,
    throttle: Option<u64>,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let md = client.fetch_metadata(None, false).await?;
    plan.check(&md).map_err(CliError::Usage)?;
    let moving = ongoing(client).await?;
    let busy: Vec<String> = plan
        .partitions
        .iter()
        .filter(|p| moving.contains_key(&(p.topic.clone(), p.partition)))
        .map(|p| format!("{}-{}", p.topic, p.partition))
        .collect();
    if !busy.is_empty() && !additional {
        return Err(CliError::Usage(format!(
            "already being reassigned: {}; wait for it (--verify), cancel it (--cancel), or \
             replace it with --additional",
            busy.join(", ")
        )));
    }
    let rollback = Plan::new(plan.partitions.iter().map(|p| {
        (
            (p.topic.clone(), p.partition),
            original(&md, &moving, &p.topic, p.partition),
        )
    }));
    table::note(
        out,
        "Current partition replica assignment (save it to roll back with --execute):",
    )?;
    writeln!(out, "{}", rollback.to_json())?;
    table::gap(out)?;
    if let Some(rate) = throttle {
        super::replica_moves::set_throttle(client, &rollback.targets(), &plan.targets(), rate, out)
            .await?;
    }
    let changes: Vec<(String, i32, Option<Vec<i32>>)> = plan
        .partitions
        .iter()
        .map(|p| (p.topic.clone(), p.partition, Some(p.replicas.clone())))
        .collect();
    let outcomes = client
        .alter_partition_reassignments(&changes, timeout)
        .await?;
    report(outcomes, "started the reassignment of", out)
}

/// Prints the partitions that failed; an error if any did.
fn report(
    outcomes: Vec<crate::client::ReassignmentOutcome>,
    done: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let failed = super::replica_moves::refusals(&outcomes);
    let ok = outcomes.len() - failed.len();
    table::note(out, &format!("{done} {ok} partition(s)"))?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Incomplete(format!(
            "{} partition(s) refused: {}",
            failed.len(),
            failed.join("; ")
        )))
    }
}

async fn verify(client: &Client, plan: Option<&Plan>, out: &mut dyn Write) -> Result<(), CliError> {
    let moving = ongoing(client).await?;
    let md = client.fetch_metadata(None, false).await?;
    let targets: BTreeMap<(String, i32), Vec<i32>> = match plan {
        Some(p) => p.targets(),
        None => moving
            .iter()
            .map(|(k, r)| {
                (
                    k.clone(),
                    r.replicas
                        .iter()
                        .copied()
                        .filter(|b| !r.removing.contains(b))
                        .collect(),
                )
            })
            .collect(),
    };
    let dirs = client.describe_log_dirs_within(PROGRESS_ASK).await;
    let size_on = |broker: i32, tp: &(String, i32)| {
        dirs.iter()
            .filter(|d| d.broker == broker)
            .find_map(|d| d.replicas.get(tp).map(|(b, _)| *b))
    };
    let mut table = Table::new(&["TOPIC", "PARTITION", "TARGET", "STATUS"]);
    let mut unfinished = 0;
    for (tp, target) in &targets {
        let status = match moving.get(tp) {
            Some(r) => {
                unfinished += 1;
                let leader = md
                    .topics
                    .get(&tp.0)
                    .and_then(|t| t.partitions.get(&tp.1))
                    .and_then(|p| p.leader);
                let full = leader.and_then(|l| size_on(l, tp)).unwrap_or(0);
                let progress: Vec<String> = r
                    .adding
                    .iter()
                    .map(|b| {
                        format!(
                            "broker {b} has {} of {}",
                            human_bytes(size_on(*b, tp).unwrap_or(0)),
                            human_bytes(full)
                        )
                    })
                    .collect();
                if progress.is_empty() {
                    format!("in progress (removing {})", ids(&r.removing))
                } else {
                    format!("in progress: {}", progress.join(", "))
                }
            }
            None => {
                let current = md
                    .topics
                    .get(&tp.0)
                    .and_then(|t| t.partitions.get(&tp.1))
                    .map(|p| p.replicas.clone());
                match current {
                    Some(c) if &c == target => "done".to_owned(),
                    Some(c) => {
                        unfinished += 1;
                        format!("not in progress, and the replicas are {}", ids(&c))
                    }
                    None => {
                        unfinished += 1;
                        "no such partition".to_owned()
                    }
                }
            }
        };
        table.row(vec![tp.0.clone(), tp.1.to_string(), ids(target), status]);
    }
    if targets.is_empty() {
        table::note(out, "no reassignment is in progress")?;
    } else {
        table.write(out, "")?;
    }
    if unfinished > 0 {
        return Err(CliError::Incomplete(format!(
            "{unfinished} of {} partition(s) are not done",
            targets.len()
        )));
    }
    if plan.is_some() {
        // Done: a throttle set by --execute has nothing left to hold back.
        super::replica_moves::clear_throttle(client, targets.keys().map(|(t, _)| t.as_str()), out)
            .await?;
    }
    Ok(())
}

async fn cancel(
    client: &Client,
    plan: Option<&Plan>,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let moving = ongoing(client).await?;
    let wanted: Vec<(String, i32)> = match plan {
        Some(p) => p.targets().into_keys().collect(),
        None => moving.keys().cloned().collect(),
    };
    let (cancel, idle): (Vec<Tp>, Vec<Tp>) =
        wanted.into_iter().partition(|tp| moving.contains_key(tp));
    for (t, p) in &idle {
        table::note(out, &format!("{t}-{p} is not being reassigned"))?;
    }
    if cancel.is_empty() {
        return table::note(out, "nothing to cancel").map_err(Into::into);
    }
    let changes: Vec<(String, i32, Option<Vec<i32>>)> =
        cancel.iter().map(|(t, p)| (t.clone(), *p, None)).collect();
    let outcomes = client
        .alter_partition_reassignments(&changes, timeout)
        .await?;
    report(outcomes, "cancelled the reassignment of", out)?;
    super::replica_moves::clear_throttle(client, cancel.iter().map(|(t, _)| t.as_str()), out).await
}

async fn list(client: &Client, out: &mut dyn Write) -> Result<(), CliError> {
    let mut table = Table::new(&["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"]);
    let ongoing = client.list_partition_reassignments().await?;
    if ongoing.is_empty() {
        return table::note(out, "no reassignment is in progress").map_err(Into::into);
    }
    for r in ongoing {
        table.row(vec![
            r.topic.clone(),
            r.partition.to_string(),
            ids(&r.replicas),
            ids(&r.adding),
            ids(&r.removing),
        ]);
    }
    table.write(out, "")?;
    Ok(())
}
