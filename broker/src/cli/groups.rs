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

use clap::{Args, Subcommand};

use super::error::CliError;
use super::kafka::KafkaArgs;
use super::table::{self, Table};
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
    /// List every consumer group with its state, protocol type, coordinator and total lag.
    List,
    /// Show a group's state, coordinator and members, and per partition its committed
    /// offset, log end offset, lag and owner.
    Describe {
        /// The group id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        group: Option<String>,
        /// Describe every group, one after another.
        #[arg(long)]
        all: bool,
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
    ResetOffsets(super::group_reset::ResetOffsetsArgs),
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
        GroupsCommand::Describe {
            group: Some(group),
            members,
            ..
        } => describe(&client, &group, members, out).await,
        GroupsCommand::Describe { members, .. } => {
            let groups = client.list_groups().await?;
            for (i, g) in groups.iter().enumerate() {
                if i > 0 {
                    table::gap(out)?;
                }
                describe(&client, &g.group_id, members, out).await?;
            }
            Ok(())
        }
        GroupsCommand::Delete { groups } => delete(&client, &groups, out, err).await,
        GroupsCommand::ResetOffsets(reset) => {
            super::group_reset::reset_offsets(&client, &reset, out, err).await
        }
    }
}

async fn list(client: &Client, out: &mut dyn Write) -> Result<(), CliError> {
    let mut groups = client.list_groups().await?;
    // Brokers that answer ListGroups below v4 leave the state out: ask the coordinator.
    for g in groups.iter_mut().filter(|g| g.state.is_none()) {
        g.state = Some(client.describe_group(&g.group_id).await?.state);
    }
    let mut lags = Vec::with_capacity(groups.len());
    for g in &groups {
        lags.push(total_lag(client, &g.group_id).await?);
    }
    write_list(&groups, &lags, out)?;
    Ok(())
}

/// The group's lag summed over the partitions it committed; `None` without commits.
async fn total_lag(client: &Client, group: &str) -> Result<Option<i64>, CliError> {
    let committed = client.fetch_committed_offsets(group, None).await?;
    if committed.is_empty() {
        return Ok(None);
    }
    let mut total = 0;
    for ((topic, partition), c) in &committed {
        match client
            .list_offset(topic, *partition, OffsetSpec::Latest)
            .await
        {
            Ok(Some(end)) if c.offset >= 0 => total += (end - c.offset).max(0),
            Ok(_) => {}
            Err(e) if partition_gone(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(total))
}

/// `-` for an empty cell, so every row has every column.
fn cell(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// The `list` table: each group with its total lag (`-` without committed offsets).
pub(crate) fn write_list(
    groups: &[GroupListing],
    lags: &[Option<i64>],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR", "LAG"]);
    for (i, g) in groups.iter().enumerate() {
        table.row(vec![
            g.group_id.clone(),
            cell(g.state.as_deref().unwrap_or("")),
            cell(&g.protocol_type),
            g.coordinator.to_string(),
            lags.get(i)
                .copied()
                .flatten()
                .map_or_else(|| "-".to_owned(), |l| l.to_string()),
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
    table::gap(out)?;
    if members {
        if desc.members.is_empty() {
            table::note(out, &format!("group {group} has no active members"))?;
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
        table::note(
            out,
            &format!("group {group} has no committed offsets and no assigned partitions"),
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
    // DescribeGroups has no generation; members report theirs in their subscriptions.
    let generation = match desc.reported_generation() {
        Some(g) if table::json() => g.to_string(),
        Some(g) => format!("{g} (as reported by the members)"),
        None => "-".into(),
    };
    table::fields(
        out,
        &[
            ("group", desc.group_id.clone()),
            ("coordinator", format!("{} ({})", c.id, c.addr())),
            ("state", desc.state.clone()),
            ("protocol type", cell(&desc.protocol_type)),
            ("protocol", cell(&desc.protocol)),
            ("generation", generation),
            ("members", desc.members.len().to_string()),
        ],
    )
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
pub(crate) fn explain(group: &str, e: ClientError) -> CliError {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{BrokerInfo, GroupMember};

    fn tp(t: &str, p: i32) -> TopicPartition {
        (t.to_owned(), p)
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
        write_list(&groups, &[Some(42), None], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GROUP         STATE   PROTOCOL-TYPE  COORDINATOR  LAG\n\
             billing       Stable  consumer       1            42\n\
             offsets-only  Empty   -              2            -\n"
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
