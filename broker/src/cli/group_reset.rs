//! `fjord groups reset-offsets`: new committed offsets for a group, computed from the
//! partitions' log start and end (or a time, or a shift), clamped to the log, printed as a
//! plan and, with `--execute`, committed while the group has no members.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use clap::{ArgGroup, Args};

use super::error::CliError;
use super::groups::explain;
use super::kafka::topic_info;
use super::table::Table;
use crate::client::{Client, OffsetSpec, TopicPartition};

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

pub async fn reset_offsets(
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
}
