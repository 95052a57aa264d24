//! `fjord groups`: consumer groups, as Kafka's `kafka-consumer-groups.sh` shows and changes
//! them, through the client's group APIs (FindCoordinator, ListGroups, DescribeGroups,
//! OffsetFetch, OffsetCommit, DeleteGroups) and ListOffsets for the log end offsets.
//!
//! - `list`: every group with its state and protocol type (ListGroups to every broker).
//! - `describe GROUP`: a header (state, coordinator, protocol, members) and one row per
//!   partition the group has committed or been assigned: committed offset, log end offset,
//!   lag, and the member that owns it (`-` when none does, e.g. a group whose consumers
//!   stopped). `--members` lists the members and their assignments instead.
//! - `delete GROUP..`: deletes groups without members; a group with members is refused
//!   (NON_EMPTY_GROUP).
//! - `reset-offsets GROUP --topic T[:P,..] --to-...`: computes new offsets, clamped to the
//!   partition's [log start, log end]. Without `--execute` it only prints the plan, as
//!   Kafka's tool does; with it, it commits them, which the coordinator (and this tool,
//!   beforehand) allows only while the group has no active members.
//!
//! Tables go to stdout; notes about what was (not) done go to stderr, so stdout stays a
//! table a script can read.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use clap::{ArgGroup, Args, Subcommand};

use super::error::CliError;
use super::kafka::{topic_info, KafkaArgs};
use super::table::Table;
use crate::client::{
    code, Client, CommittedOffset, Error as ClientError, GroupDescription, GroupListing,
    OffsetSpec, TopicPartition,
};

/// `fjord groups <command>`.
#[derive(Debug, Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(subcommand)]
    pub command: GroupsCommand,
}

/// The `groups` commands.
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List every consumer group with its state and protocol type.
    List,
    /// Show a group's state, coordinator and members, and per partition its committed
    /// offset, log end offset, lag and owner.
    Describe {
        /// The group id.
        group: String,
        /// List the members and their assignments instead of the partitions.
        #[arg(long)]
        members: bool,
    },
    /// Delete groups and their committed offsets (only groups without active members).
    Delete {
        /// The group ids.
        #[arg(required = true, value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// Compute new committed offsets for a group and, with --execute, commit them (the
    /// group must have no active members).
    ResetOffsets(ResetOffsetsArgs),
}

/// `fjord groups reset-offsets GROUP (--topic T[:P,..].. | --all-topics) --to-... [--execute]`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("scope").required(true).multiple(true)
    .args(["topics", "all_topics"])))]
#[command(group(ArgGroup::new("target").required(true)
    .args(["to_earliest", "to_latest", "to_offset", "shift_by", "to_datetime"])))]
pub struct ResetOffsetsArgs {
    /// The group id.
    pub group: String,

    /// A topic to reset, optionally only some partitions (`orders:0,2`); repeat for
    /// several topics.
    #[arg(long = "topic", value_name = "TOPIC[:P,P..]", value_parser = parse_topic_selection)]
    pub topics: Vec<TopicSelection>,

    /// Reset every partition the group has a committed offset for.
    #[arg(long)]
    pub all_topics: bool,

    /// Move to the log start offset (the oldest record still kept).
    #[arg(long)]
    pub to_earliest: bool,

    /// Move to the log end offset (skip everything not yet read).
    #[arg(long)]
    pub to_latest: bool,

    /// Move to this offset (clamped to the log start and end offsets).
    #[arg(long, value_name = "OFFSET", value_parser = clap::value_parser!(i64).range(0..))]
    pub to_offset: Option<i64>,

    /// Move the committed offset by N (negative: back); every partition needs a committed
    /// offset. Clamped to the log start and end offsets.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,

    /// Move to the first record at or after this time: RFC 3339
    /// (2024-05-01T12:00:00Z, 2024-05-01T14:00:00.5+02:00) or milliseconds since the
    /// epoch. The log end offset where no record is that recent.
    #[arg(long, value_name = "TIME", value_parser = parse_datetime)]
    pub to_datetime: Option<i64>,

    /// Commit the new offsets. Without it the plan is only printed.
    #[arg(long)]
    pub execute: bool,
}

impl ResetOffsetsArgs {
    /// Which reset was asked for (clap makes exactly one present).
    fn target(&self) -> ResetTo {
        if let Some(o) = self.to_offset {
            ResetTo::Offset(o)
        } else if let Some(n) = self.shift_by {
            ResetTo::ShiftBy(n)
        } else if let Some(ms) = self.to_datetime {
            ResetTo::Datetime(ms)
        } else if self.to_latest {
            ResetTo::Latest
        } else {
            ResetTo::Earliest
        }
    }
}

/// A `--topic` value: a topic and optionally some of its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSelection {
    pub topic: String,
    /// `None`: every partition.
    pub partitions: Option<Vec<i32>>,
}

/// Parses `TOPIC` or `TOPIC:P,P..`.
fn parse_topic_selection(s: &str) -> Result<TopicSelection, String> {
    let (topic, partitions) = match s.split_once(':') {
        None => (s, None),
        Some((topic, list)) => {
            let parts: Result<Vec<i32>, String> = list
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .ok()
                        .filter(|p| *p >= 0)
                        .ok_or_else(|| {
                            format!("bad partition {p:?} in {s:?}: expected TOPIC:0,1,..")
                        })
                })
                .collect();
            (topic, Some(parts?))
        }
    };
    if !fjord_shared::cluster::valid_topic_name(topic) {
        return Err(format!(
            "invalid topic name {topic:?}: use 1-249 characters of a-z, A-Z, 0-9, '.', '_' and '-'"
        ));
    }
    Ok(TopicSelection {
        topic: topic.to_owned(),
        partitions,
    })
}

/// Parses milliseconds since the epoch, or an RFC 3339 date-time with a time zone
/// (`Z` or `±HH:MM`), into milliseconds since the epoch.
fn parse_datetime(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map_err(|e| format!("bad milliseconds {s:?}: {e}"));
    }
    rfc3339_ms(s).ok_or_else(|| {
        format!("expected RFC 3339 (2024-05-01T12:00:00Z, 2024-05-01T12:00:00.123+02:00) or milliseconds since the epoch, got {s:?}")
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fff..](Z|±HH:MM)` → ms since the epoch.
fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Milliseconds: the first three digits, padded; finer digits are dropped.
        let frac = &s[start..i.min(start + 3)];
        millis = format!("{frac:0<3}").parse::<i64>().ok()?;
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && sep(i + 3, b":") => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let total = h * 60 + m;
            if *sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(secs * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`, the inverse of the one in `output.rs`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Where reset-offsets moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    ShiftBy(i64),
    /// Milliseconds since the epoch.
    Datetime(i64),
}

/// What is known about one partition when planning a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionOffsets {
    /// The group's committed offset, if it has one.
    pub committed: Option<i64>,
    pub log_start: i64,
    pub log_end: i64,
    /// For [`ResetTo::Datetime`]: the first offset at or after the time (`None`: no record
    /// is that recent).
    pub at_time: Option<i64>,
}

/// The new offset of every partition, clamped to [log start, log end] as Kafka's tool
/// does. Fails (naming the partition) for a shift of a partition without a committed offset.
pub(crate) fn plan(
    to: ResetTo,
    partitions: &BTreeMap<TopicPartition, PartitionOffsets>,
) -> Result<BTreeMap<TopicPartition, i64>, String> {
    let mut out = BTreeMap::new();
    for ((topic, partition), p) in partitions {
        let wanted = match to {
            ResetTo::Earliest => p.log_start,
            ResetTo::Latest => p.log_end,
            ResetTo::Offset(o) => o,
            ResetTo::ShiftBy(n) => match p.committed {
                Some(c) => c.saturating_add(n),
                None => {
                    return Err(format!(
                        "cannot shift {topic}-{partition}: the group has no committed offset there (use --to-earliest, --to-latest or --to-offset)"
                    ))
                }
            },
            ResetTo::Datetime(_) => p.at_time.unwrap_or(p.log_end),
        };
        let end = p.log_end.max(p.log_start);
        out.insert((topic.clone(), *partition), wanted.clamp(p.log_start, end));
    }
    Ok(out)
}

/// Runs one `groups` command.
pub async fn run(
    bootstrap: &str,
    args: GroupsArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    let client = args.kafka.connect(bootstrap).await?;
    match args.command {
        GroupsCommand::List => list(&client, out).await,
        GroupsCommand::Describe { group, members } => describe(&client, &group, members, out).await,
        GroupsCommand::Delete { groups } => delete(&client, &groups, out, err).await,
        GroupsCommand::ResetOffsets(reset) => reset_offsets(&client, &reset, out, err).await,
    }
}

async fn list(client: &Client, out: &mut dyn Write) -> Result<(), CliError> {
    let mut groups = client.list_groups().await?;
    // Brokers that answer ListGroups below v4 leave the state out: ask the coordinator.
    for g in groups.iter_mut().filter(|g| g.state.is_none()) {
        g.state = Some(client.describe_group(&g.group_id).await?.state);
    }
    write_list(&groups, out)?;
    Ok(())
}

/// `-` for an empty cell, so every row has every column.
fn cell(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// The `list` table.
pub(crate) fn write_list(groups: &[GroupListing], out: &mut dyn Write) -> std::io::Result<()> {
    let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR"]);
    for g in groups {
        table.row(vec![
            g.group_id.clone(),
            cell(g.state.as_deref().unwrap_or("")),
            cell(&g.protocol_type),
            g.coordinator.to_string(),
        ]);
    }
    table.write(out, "")
}

/// Whether a ListOffsets failure means the partition is gone (its topic was deleted since
/// the commit), which describe shows as an unknown log end rather than failing.
fn partition_gone(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::UnknownTopic { .. } | ClientError::UnknownPartition { .. }
    ) || e.kafka_code() == Some(code::UNKNOWN_TOPIC_OR_PARTITION)
}

async fn describe(
    client: &Client,
    group: &str,
    members: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let desc = client.describe_group(group).await?;
    let committed = client.fetch_committed_offsets(group, None).await?;
    if !desc.exists() && committed.is_empty() {
        return Err(CliError::Group {
            group: group.to_owned(),
            reason: "does not exist (no members and no committed offsets)".to_owned(),
        });
    }
    write_header(&desc, out)?;
    writeln!(out)?;
    if members {
        if desc.members.is_empty() {
            writeln!(out, "group {group} has no active members")?;
        } else {
            write_members(&desc, out)?;
        }
        return Ok(());
    }
    let mut partitions: BTreeSet<TopicPartition> = committed.keys().cloned().collect();
    for m in &desc.members {
        for (topic, ps) in &m.assignment {
            partitions.extend(ps.iter().map(|p| (topic.clone(), *p)));
        }
    }
    let mut ends = BTreeMap::new();
    for (topic, partition) in &partitions {
        match client
            .list_offset(topic, *partition, OffsetSpec::Latest)
            .await
        {
            // An unknown end (no answer offset) shows as `-`, not as 0 with a negative lag.
            Ok(Some(end)) => {
                ends.insert((topic.clone(), *partition), end);
            }
            Ok(None) => {}
            Err(e) if partition_gone(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let rows = partition_rows(&desc, &committed, &ends);
    if rows.is_empty() {
        writeln!(
            out,
            "group {group} has no committed offsets and no assigned partitions"
        )?;
        return Ok(());
    }
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    for row in rows {
        table.row(row);
    }
    table.write(out, "")?;
    Ok(())
}

/// The header of `describe`: group, coordinator, state, protocol, generation, members.
pub(crate) fn write_header(desc: &GroupDescription, out: &mut dyn Write) -> std::io::Result<()> {
    let c = &desc.coordinator;
    writeln!(out, "group: {}", desc.group_id)?;
    writeln!(out, "coordinator: {} ({})", c.id, c.addr())?;
    writeln!(out, "state: {}", desc.state)?;
    writeln!(out, "protocol type: {}", cell(&desc.protocol_type))?;
    writeln!(out, "protocol: {}", cell(&desc.protocol))?;
    // DescribeGroups has no generation; members report theirs in their subscriptions.
    match desc.reported_generation() {
        Some(g) => writeln!(out, "generation: {g} (as reported by the members)")?,
        None => writeln!(out, "generation: -")?,
    }
    writeln!(out, "members: {}", desc.members.len())
}

/// One row per partition the group has committed or been assigned (sorted), then one per
/// member that owns no partition; `-` where there is no value (no commit, no owner, an
/// unknown log end).
pub(crate) fn partition_rows(
    desc: &GroupDescription,
    committed: &BTreeMap<TopicPartition, CommittedOffset>,
    ends: &BTreeMap<TopicPartition, i64>,
) -> Vec<Vec<String>> {
    let mut owner: BTreeMap<TopicPartition, usize> = BTreeMap::new();
    for (i, m) in desc.members.iter().enumerate() {
        for (topic, ps) in &m.assignment {
            for p in ps {
                owner.entry((topic.clone(), *p)).or_insert(i);
            }
        }
    }
    let partitions: BTreeSet<&TopicPartition> = committed.keys().chain(owner.keys()).collect();
    let dash = || "-".to_owned();
    let member_cells = |i: Option<&usize>| match i.and_then(|i| desc.members.get(*i)) {
        Some(m) => vec![cell(&m.member_id), cell(&m.client_host), cell(&m.client_id)],
        None => vec![dash(), dash(), dash()],
    };
    let mut rows = Vec::new();
    for tp in partitions {
        let current = committed.get(tp).map(|c| c.offset);
        let end = ends.get(tp).copied();
        let lag = match (current, end) {
            (Some(c), Some(e)) => (e - c).to_string(),
            _ => dash(),
        };
        let mut row = vec![
            tp.0.clone(),
            tp.1.to_string(),
            current.map_or_else(dash, |c| c.to_string()),
            end.map_or_else(dash, |e| e.to_string()),
            lag,
        ];
        row.extend(member_cells(owner.get(tp)));
        rows.push(row);
    }
    for (i, m) in desc.members.iter().enumerate() {
        if m.assignment.values().all(Vec::is_empty) {
            let mut row = vec![dash(), dash(), dash(), dash(), dash()];
            row.extend(member_cells(Some(&i)));
            rows.push(row);
        }
    }
    rows
}

/// The `describe --members` table.
pub(crate) fn write_members(desc: &GroupDescription, out: &mut dyn Write) -> std::io::Result<()> {
    let mut table = Table::new(&[
        "CONSUMER-ID",
        "INSTANCE-ID",
        "HOST",
        "CLIENT-ID",
        "#PARTITIONS",
        "ASSIGNMENT",
    ]);
    for m in &desc.members {
        let count: usize = m.assignment.values().map(Vec::len).sum();
        let assignment = match &m.assignment_error {
            Some(e) => format!("(unreadable: {e})"),
            None if count == 0 => "-".to_owned(),
            None => m
                .assignment
                .iter()
                .filter(|(_, ps)| !ps.is_empty())
                .map(|(t, ps)| {
                    let list: Vec<String> = ps.iter().map(i32::to_string).collect();
                    format!("{t}({})", list.join(","))
                })
                .collect::<Vec<_>>()
                .join(","),
        };
        table.row(vec![
            cell(&m.member_id),
            cell(m.group_instance_id.as_deref().unwrap_or("")),
            cell(&m.client_host),
            cell(&m.client_id),
            count.to_string(),
            assignment,
        ]);
    }
    table.write(out, "")
}

/// Why a group operation was refused, in words an operator can act on; other failures
/// keep the client's message.
fn explain(group: &str, e: ClientError) -> CliError {
    let reason = match e.kafka_code() {
        Some(code::NON_EMPTY_GROUP) => {
            "cannot delete it: it still has active members; stop its consumers first (NON_EMPTY_GROUP)"
                .to_owned()
        }
        Some(code::GROUP_ID_NOT_FOUND) => "does not exist (GROUP_ID_NOT_FOUND)".to_owned(),
        Some(c @ (code::UNKNOWN_MEMBER_ID | code::ILLEGAL_GENERATION | code::REBALANCE_IN_PROGRESS)) => {
            format!(
                "offsets can only be reset while the group has no active members, and it has some now; stop its consumers first ({})",
                crate::client::error_name(c)
            )
        }
        _ => return e.into(),
    };
    CliError::Group {
        group: group.to_owned(),
        reason,
    }
}

async fn delete(
    client: &Client,
    groups: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    let mut failed = Vec::new();
    for group in groups {
        match client.delete_group(group).await {
            Ok(()) => writeln!(out, "deleted group {group}")?,
            Err(e) => failed.push(explain(group, e)),
        }
    }
    match failed.len() {
        0 => Ok(()),
        // One group: its own message is the error line.
        1 if groups.len() == 1 => Err(failed.remove(0)),
        n => {
            for e in &failed {
                writeln!(err, "error: {e}")?;
            }
            Err(CliError::Incomplete(format!(
                "{n} of {} groups could not be deleted",
                groups.len()
            )))
        }
    }
}

async fn reset_offsets(
    client: &Client,
    args: &ResetOffsetsArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    let group = args.group.as_str();
    let desc = client.describe_group(group).await?;
    if !desc.is_inactive() {
        let why = format!(
            "offsets can only be reset while the group has no active members, but it is {} with {} member(s); stop its consumers first",
            desc.state,
            desc.members.len()
        );
        if args.execute {
            return Err(CliError::Group {
                group: group.to_owned(),
                reason: why,
            });
        }
        writeln!(err, "warning: group {group}: {why}")?;
    }

    let mut targets: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for sel in &args.topics {
        let info = topic_info(client, &sel.topic, false).await?;
        let chosen = targets.entry(sel.topic.clone()).or_default();
        match &sel.partitions {
            None => chosen.extend(info.partitions.keys().copied()),
            Some(ps) => {
                for p in ps {
                    if !info.partitions.contains_key(p) {
                        return Err(CliError::Usage(format!(
                            "topic {} has no partition {p} (it has {})",
                            sel.topic,
                            info.partitions.len()
                        )));
                    }
                    chosen.insert(*p);
                }
            }
        }
    }
    let committed = if args.all_topics {
        let all = client.fetch_committed_offsets(group, None).await?;
        for (topic, partition) in all.keys() {
            targets.entry(topic.clone()).or_default().insert(*partition);
        }
        all
    } else {
        client
            .fetch_committed_offsets(group, Some(&targets))
            .await?
    };
    if targets.is_empty() {
        writeln!(err, "group {group} has no committed offsets to reset")?;
        return Ok(());
    }

    let to = args.target();
    let mut state = BTreeMap::new();
    for (topic, partitions) in &targets {
        for &p in partitions {
            // Planning against an unknown start or end could commit 0 and rewind the
            // group to the beginning of the log: refuse instead.
            let unknown = |which: &str| {
                CliError::Incomplete(format!(
                    "{topic}-{p}: the broker did not give its log {which} offset; nothing was reset"
                ))
            };
            let log_start = client
                .list_offset(topic, p, OffsetSpec::Earliest)
                .await?
                .ok_or_else(|| unknown("start"))?;
            let log_end = client
                .list_offset(topic, p, OffsetSpec::Latest)
                .await?
                .ok_or_else(|| unknown("end"))?;
            let at_time = match to {
                ResetTo::Datetime(ms) => {
                    client
                        .list_offset(topic, p, OffsetSpec::Timestamp(ms))
                        .await?
                }
                _ => None,
            };
            let tp = (topic.clone(), p);
            let offsets = PartitionOffsets {
                committed: committed.get(&tp).map(|c| c.offset),
                log_start,
                log_end,
                at_time,
            };
            state.insert(tp, offsets);
        }
    }
    let new_offsets = plan(to, &state).map_err(CliError::Usage)?;

    let mut table = Table::new(&["TOPIC", "PARTITION", "NEW-OFFSET"]);
    for ((topic, partition), offset) in &new_offsets {
        table.row(vec![
            topic.clone(),
            partition.to_string(),
            offset.to_string(),
        ]);
    }
    table.write(out, "")?;
    if args.execute {
        client
            .commit_offsets(group, &new_offsets)
            .await
            .map_err(|e| explain(group, e))?;
        writeln!(
            err,
            "committed {} offset(s) for group {group}",
            new_offsets.len()
        )?;
    } else {
        writeln!(
            err,
            "dry run: nothing was committed; add --execute to commit these offsets"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{BrokerInfo, GroupMember};

    fn tp(t: &str, p: i32) -> TopicPartition {
        (t.to_owned(), p)
    }

    fn offsets(committed: Option<i64>, start: i64, end: i64) -> PartitionOffsets {
        PartitionOffsets {
            committed,
            log_start: start,
            log_end: end,
            at_time: None,
        }
    }

    #[test]
    fn plans_clamp_to_the_log() {
        let parts: BTreeMap<_, _> = [
            (tp("a", 0), offsets(Some(5), 2, 10)),
            (tp("a", 1), offsets(None, 0, 0)),
            (tp("b", 0), offsets(Some(8), 3, 9)),
        ]
        .into();
        let got = |to| plan(to, &parts);
        let want = |v: [i64; 3]| -> Result<BTreeMap<TopicPartition, i64>, String> {
            Ok([(tp("a", 0), v[0]), (tp("a", 1), v[1]), (tp("b", 0), v[2])].into())
        };
        assert_eq!(got(ResetTo::Earliest), want([2, 0, 3]));
        assert_eq!(got(ResetTo::Latest), want([10, 0, 9]));
        assert_eq!(got(ResetTo::Offset(4)), want([4, 0, 4]));
        assert_eq!(got(ResetTo::Offset(100)), want([10, 0, 9]));
        assert_eq!(got(ResetTo::Offset(0)), want([2, 0, 3]));
        // A shift needs a committed offset everywhere.
        let err = got(ResetTo::ShiftBy(1)).unwrap_err();
        assert!(err.contains("a-1"), "{err}");
        let committed: BTreeMap<_, _> = [
            (tp("a", 0), offsets(Some(5), 2, 10)),
            (tp("b", 0), offsets(Some(8), 3, 9)),
        ]
        .into();
        assert_eq!(
            plan(ResetTo::ShiftBy(-4), &committed),
            Ok([(tp("a", 0), 2), (tp("b", 0), 4)].into())
        );
        assert_eq!(
            plan(ResetTo::ShiftBy(3), &committed),
            Ok([(tp("a", 0), 8), (tp("b", 0), 9)].into())
        );
        assert_eq!(
            plan(ResetTo::ShiftBy(i64::MAX), &committed),
            Ok([(tp("a", 0), 10), (tp("b", 0), 9)].into())
        );
    }

    #[test]
    fn datetime_plans_use_the_found_offset_or_the_end() {
        let parts: BTreeMap<_, _> = [
            (
                tp("t", 0),
                PartitionOffsets {
                    at_time: Some(7),
                    ..offsets(None, 0, 12)
                },
            ),
            (tp("t", 1), offsets(Some(1), 0, 12)),
        ]
        .into();
        assert_eq!(
            plan(ResetTo::Datetime(1000), &parts),
            Ok([(tp("t", 0), 7), (tp("t", 1), 12)].into())
        );
    }

    #[test]
    fn datetimes_parse() {
        assert_eq!(parse_datetime("0"), Ok(0));
        assert_eq!(parse_datetime("1714564800123"), Ok(1_714_564_800_123));
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_datetime("2024-05-01T12:00:00.123Z"),
            Ok(1_714_564_800_123)
        );
        assert_eq!(
            parse_datetime("2024-05-01T14:00:00.1234+02:00"),
            Ok(1_714_564_800_123)
        );
        assert_eq!(
            parse_datetime("2024-05-01t07:30:00.5-04:30"),
            Ok(1_714_564_800_500)
        );
        assert_eq!(parse_datetime("2000-02-29T00:00:00Z"), Ok(951_782_400_000));
        for bad in [
            "",
            "yesterday",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00Zjunk",
            "-5",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn topic_selections_parse() {
        assert_eq!(
            parse_topic_selection("orders"),
            Ok(TopicSelection {
                topic: "orders".into(),
                partitions: None
            })
        );
        assert_eq!(
            parse_topic_selection("orders:0,2, 5"),
            Ok(TopicSelection {
                topic: "orders".into(),
                partitions: Some(vec![0, 2, 5])
            })
        );
        assert!(parse_topic_selection("orders:").is_err());
        assert!(parse_topic_selection("orders:x").is_err());
        assert!(parse_topic_selection("orders:-1").is_err());
        assert!(parse_topic_selection("bad topic").is_err());
        assert!(parse_topic_selection(":0").is_err());
    }

    fn member(id: &str, assignment: &[(&str, &[i32])]) -> GroupMember {
        GroupMember {
            member_id: id.into(),
            group_instance_id: None,
            client_id: format!("client-{id}"),
            client_host: "/127.0.0.1".into(),
            assignment: assignment
                .iter()
                .map(|(t, ps)| ((*t).to_owned(), ps.to_vec()))
                .collect(),
            assignment_error: None,
            subscription_generation: None,
        }
    }

    fn description(state: &str, members: Vec<GroupMember>) -> GroupDescription {
        GroupDescription {
            group_id: "billing".into(),
            state: state.into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members,
            coordinator: BrokerInfo {
                id: 2,
                host: "127.0.0.1".into(),
                port: 9093,
                rack: None,
            },
        }
    }

    fn committed(entries: &[(&str, i32, i64)]) -> BTreeMap<TopicPartition, CommittedOffset> {
        entries
            .iter()
            .map(|(t, p, o)| {
                (
                    tp(t, *p),
                    CommittedOffset {
                        offset: *o,
                        leader_epoch: None,
                        metadata: None,
                    },
                )
            })
            .collect()
    }

    fn render(desc: &GroupDescription, rows: Vec<Vec<String>>) -> String {
        let mut out = Vec::new();
        write_header(desc, &mut out).unwrap();
        let mut table = Table::new(&[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ]);
        for r in rows {
            table.row(r);
        }
        table.write(&mut out, "").unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn describe_rows_join_offsets_ends_and_owners() {
        let mut m1 = member("m1", &[("orders", &[0, 1])]);
        m1.subscription_generation = Some(3);
        let desc = description("Stable", vec![m1, member("m2", &[])]);
        let committed = committed(&[("orders", 0, 5), ("audit", 0, 2)]);
        let ends: BTreeMap<_, _> = [(tp("orders", 0), 9), (tp("orders", 1), 4)].into();
        let text = render(&desc, partition_rows(&desc, &committed, &ends));
        let want = "\
group: billing
coordinator: 2 (127.0.0.1:9093)
state: Stable
protocol type: consumer
protocol: range
generation: 3 (as reported by the members)
members: 2
TOPIC   PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  CONSUMER-ID  HOST        CLIENT-ID
audit   0          2               -               -    -            -           -
orders  0          5               9               4    m1           /127.0.0.1  client-m1
orders  1          -               4               -    m1           /127.0.0.1  client-m1
-       -          -               -               -    m2           /127.0.0.1  client-m2
";
        assert_eq!(text, want);
    }

    #[test]
    fn an_inactive_group_shows_dashes_for_consumers() {
        let mut desc = description("Empty", vec![]);
        desc.protocol_type = String::new();
        desc.protocol = String::new();
        let committed = committed(&[("t", 0, 3)]);
        let ends: BTreeMap<_, _> = [(tp("t", 0), 3)].into();
        let rows = partition_rows(&desc, &committed, &ends);
        assert_eq!(
            rows,
            vec![vec!["t", "0", "3", "3", "0", "-", "-", "-"]
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()]
        );
        let text = render(&desc, vec![]);
        assert!(
            text.contains("protocol type: -\nprotocol: -\ngeneration: -\nmembers: 0\n"),
            "{text}"
        );
    }

    #[test]
    fn members_and_list_tables() {
        let mut broken = member("m3", &[]);
        broken.assignment_error = Some("bad bytes".into());
        let mut m1 = member("m1", &[("orders", &[0, 2]), ("audit", &[1])]);
        m1.group_instance_id = Some("static-1".into());
        let desc = description("Stable", vec![m1, member("m2", &[]), broken]);
        let mut out = Vec::new();
        write_members(&desc, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let want = "\
CONSUMER-ID  INSTANCE-ID  HOST        CLIENT-ID  #PARTITIONS  ASSIGNMENT
m1           static-1     /127.0.0.1  client-m1  3            audit(1),orders(0,2)
m2           -            /127.0.0.1  client-m2  0            -
m3           -            /127.0.0.1  client-m3  0            (unreadable: bad bytes)
";
        assert_eq!(text, want);

        let groups = vec![
            GroupListing {
                group_id: "billing".into(),
                protocol_type: "consumer".into(),
                state: Some("Stable".into()),
                coordinator: 1,
            },
            GroupListing {
                group_id: "offsets-only".into(),
                protocol_type: String::new(),
                state: Some("Empty".into()),
                coordinator: 2,
            },
        ];
        let mut out = Vec::new();
        write_list(&groups, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GROUP         STATE   PROTOCOL-TYPE  COORDINATOR\n\
             billing       Stable  consumer       1\n\
             offsets-only  Empty   -              2\n"
        );
    }

    #[test]
    fn refusals_are_explained() {
        use kafka_protocol::messages::ApiKey;
        let refused =
            |api, c| explain("g", ClientError::kafka(api, "group g", c, None)).to_string();
        assert_eq!(
            refused(ApiKey::DeleteGroups, code::NON_EMPTY_GROUP),
            "group g: cannot delete it: it still has active members; stop its consumers first (NON_EMPTY_GROUP)"
        );
        assert_eq!(
            refused(ApiKey::DeleteGroups, code::GROUP_ID_NOT_FOUND),
            "group g: does not exist (GROUP_ID_NOT_FOUND)"
        );
        let active = refused(ApiKey::OffsetCommit, code::UNKNOWN_MEMBER_ID);
        assert!(
            active.starts_with(
                "group g: offsets can only be reset while the group has no active members"
            ) && active.ends_with("(UNKNOWN_MEMBER_ID)"),
            "{active}"
        );
        // Anything else keeps the client's message.
        assert_eq!(
            refused(ApiKey::DeleteGroups, 10),
            "DeleteGroups group g: MESSAGE_TOO_LARGE (10)"
        );
    }
}
