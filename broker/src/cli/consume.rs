//! `fjord consume TOPIC`: print records, one line each.
//!
//! Reads every partition (or `--partition`) from `--from`: `beginning` (the log start, the
//! default), `end`, an offset, or `@MS` (the first record at or after that time, via
//! ListOffsets; the end if there is none). Without `--follow` it stops at the end offsets
//! (high watermarks) as they were when it started, so it always terminates; with `--follow`
//! it long-polls for new records until Ctrl-C (exit 0) or `--count` records were printed.
//! No consumer group is joined and no offsets are committed: this is a reader, like
//! `kcat -C`.
//!
//! Each line is tab-separated: optional `partition:offset` (`--print-offset`), optional key
//! (`--print-key`), optional headers as `k=v,k2=v2` (`--print-headers`), then the value.
//! Keys, header values and values are printed as they are when they are UTF-8, and with
//! non-printable bytes escaped (`\x00`) otherwise, so binary data cannot garble a terminal;
//! a missing (null) key or value prints as an empty column. Output is flushed after each
//! fetch, so `consume --follow | grep` sees records as they arrive.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use clap::Args;

use super::error::CliError;
use super::kafka::{topic_info, KafkaArgs};
use super::output::data_text;
use super::signal::interrupted;
use tokio::task::JoinSet;

use crate::client::{
    Client, ConsumedRecord, Error as ClientError, FetchOptions, FetchPosition, OffsetSpec,
    PartitionFetch,
};

/// `fjord consume TOPIC [options]`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic to read.
    pub topic: String,

    /// Read only this partition.
    #[arg(long, short = 'p', value_name = "P", value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,

    /// Where to start: beginning, end, an offset, or @MS (first record at or after that
    /// time, in milliseconds since the epoch).
    #[arg(long, short = 'o', value_name = "POSITION", default_value = "beginning", value_parser = parse_start)]
    pub from: StartAt,

    /// Keep waiting for new records (until Ctrl-C or --count).
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// Stop after this many records.
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,

    /// Print each record's key.
    #[arg(long)]
    pub print_key: bool,

    /// Print each record's headers.
    #[arg(long)]
    pub print_headers: bool,

    /// Print each record's `partition:offset`.
    #[arg(long)]
    pub print_offset: bool,

    /// How long one fetch may wait at the broker for new records, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub max_wait_ms: u64,

    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
    Offset(i64),
    /// Milliseconds since the epoch.
    Timestamp(i64),
}

fn parse_start(s: &str) -> Result<StartAt, String> {
    match s {
        "beginning" | "earliest" => Ok(StartAt::Beginning),
        "end" | "latest" => Ok(StartAt::End),
        _ => {
            if let Some(ts) = s.strip_prefix('@') {
                return ts
                    .parse::<i64>()
                    .ok()
                    .filter(|t| *t >= 0)
                    .map(StartAt::Timestamp)
                    .ok_or_else(|| format!("expected @MILLISECONDS, got {s:?}"));
            }
            s.parse::<i64>()
                .ok()
                .filter(|o| *o >= 0)
                .map(StartAt::Offset)
                .ok_or_else(|| {
                    format!("expected beginning, end, an offset or @MILLISECONDS, got {s:?}")
                })
        }
    }
}

/// What to print per record.
#[derive(Debug, Clone, Copy)]
struct Columns {
    offset: bool,
    key: bool,
    headers: bool,
}

/// The largest partition fetch size a stalled read may grow to.
const MAX_PARTITION_BYTES: i32 = 32 * 1024 * 1024;

/// Prints records until the end offsets (or forever with `--follow`).
pub async fn run(bootstrap: &str, args: ConsumeArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let client = args.kafka.connect(bootstrap).await?;
    let topic = topic_info(&client, &args.topic, false).await?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) if topic.partitions.contains_key(&p) => vec![p],
        Some(p) => {
            return Err(CliError::Usage(format!(
                "topic {} has no partition {p} (it has {})",
                args.topic,
                topic.partitions.len()
            )))
        }
        None => topic.partitions.keys().copied().collect(),
    };
    if args.count == Some(0) {
        return Ok(());
    }
    let mut active = Vec::with_capacity(partitions.len());
    let mut ends = BTreeMap::new();
    for &p in &partitions {
        let start = start_offset(&client, &args.topic, p, args.from).await?;
        if !args.follow {
            let end = latest(&client, &args.topic, p).await?;
            if start >= end {
                continue;
            }
            ends.insert(p, end);
        }
        active.push(FetchPosition {
            topic: args.topic.clone(),
            partition: p,
            offset: start,
        });
    }
    let columns = Columns {
        offset: args.print_offset,
        key: args.print_key,
        headers: args.print_headers,
    };
    let mut fetch = FetchOptions {
        max_wait: Duration::from_millis(args.max_wait_ms),
        min_bytes: 1,
        ..FetchOptions::default()
    };
    let stop = interrupted();
    tokio::pin!(stop);
    // One fetch in flight per leader; each answer is printed as soon as it arrives and its
    // partitions are fetched again, so a long poll on one broker never delays records from
    // another. Every partition is in exactly one fetch at a time, which keeps its records
    // in offset order.
    let mut inflight = JoinSet::new();
    for group in client.group_by_leader(active) {
        spawn_fetch(&mut inflight, &client, group, fetch);
    }
    let mut printed: u64 = 0;
    // With --count and the records going to a file or a pipe: progress on the terminal.
    let mut progress = super::progress::Progress::new(
        args.count.is_some()
            && !std::io::IsTerminal::is_terminal(&std::io::stdout())
            && super::progress::Progress::stderr_is_terminal(),
        args.count,
        "records",
    );
    loop {
        let done = tokio::select! {
            done = inflight.join_next() => done,
            r = &mut stop => {
                out.flush()?;
                progress.finish();
                return r.map_err(CliError::Signal);
            }
        };
        // Nothing in flight: every partition reached its end.
        let Some(done) = done else {
            progress.finish();
            break;
        };
        let (mut group, results) = done.map_err(|e| CliError::Internal(e.to_string()))?;
        for (pos, result) in group.iter_mut().zip(results?) {
            let end = ends.get(&pos.partition).copied();
            for rec in &result.records {
                if end.is_some_and(|e| rec.offset >= e) {
                    break;
                }
                writeln!(out, "{}", format_record(pos.partition, rec, columns))?;
                printed += 1;
                progress.update(printed, printed);
                if Some(printed) == args.count {
                    out.flush()?;
                    progress.finish();
                    return Ok(());
                }
            }
            if result.stalled {
                if fetch.partition_max_bytes >= MAX_PARTITION_BYTES {
                    return Err(CliError::Usage(format!(
                        "the batch at {}-{} offset {} is larger than {MAX_PARTITION_BYTES} bytes",
                        pos.topic, pos.partition, pos.offset
                    )));
                }
                fetch.partition_max_bytes =
                    (fetch.partition_max_bytes * 2).min(MAX_PARTITION_BYTES);
                fetch.max_bytes = fetch.max_bytes.max(fetch.partition_max_bytes);
            }
            pos.offset = result.next_offset;
        }
        out.flush()?;
        group.retain(|p| match ends.get(&p.partition) {
            Some(end) => p.offset < *end,
            None => true,
        });
        if !group.is_empty() {
            // Regrouped: the leaders may have moved since the last fetch.
            for g in client.group_by_leader(group) {
                spawn_fetch(&mut inflight, &client, g, fetch);
            }
        }
    }
    Ok(())
}

/// A fetch's positions and its outcome.
type FetchDone = (Vec<FetchPosition>, Result<Vec<PartitionFetch>, ClientError>);

/// Starts one fetch for `group` (whose partitions share a leader).
fn spawn_fetch(
    inflight: &mut JoinSet<FetchDone>,
    client: &Client,
    group: Vec<FetchPosition>,
    opts: FetchOptions,
) {
    let client = client.clone();
    inflight.spawn(async move {
        let result = client.fetch_many(&group, &opts).await;
        (group, result)
    });
}

/// The offset `from` names in one partition.
async fn start_offset(
    client: &Client,
    topic: &str,
    partition: i32,
    from: StartAt,
) -> Result<i64, CliError> {
    Ok(match from {
        StartAt::Beginning => client
            .list_offset(topic, partition, OffsetSpec::Earliest)
            .await?
            .unwrap_or(0),
        StartAt::End => latest(client, topic, partition).await?,
        StartAt::Timestamp(ms) => match client
            .list_offset(topic, partition, OffsetSpec::Timestamp(ms))
            .await?
        {
            Some(o) => o,
            None => latest(client, topic, partition).await?,
        },
        StartAt::Offset(o) => {
            let earliest = client
                .list_offset(topic, partition, OffsetSpec::Earliest)
                .await?
                .unwrap_or(0);
            let end = latest(client, topic, partition).await?;
            if o < earliest || o > end {
                return Err(CliError::Usage(format!(
                    "offset {o} is outside {topic}-{partition}, which holds {earliest}..{end}"
                )));
            }
            o
        }
    })
}

/// The high watermark of one partition.
async fn latest(client: &Client, topic: &str, partition: i32) -> Result<i64, CliError> {
    Ok(client
        .list_offset(topic, partition, OffsetSpec::Latest)
        .await?
        .unwrap_or(0))
}

/// One output line (without the newline); see the module docs.
fn format_record(partition: i32, rec: &ConsumedRecord, columns: Columns) -> String {
    let mut cols: Vec<String> = Vec::with_capacity(4);
    if columns.offset {
        cols.push(format!("{partition}:{}", rec.offset));
    }
    if columns.key {
        cols.push(rec.key.as_deref().map(data_text).unwrap_or_default());
    }
    if columns.headers {
        let headers: Vec<String> = rec
            .headers
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={}", data_text(v)),
                None => k.clone(),
            })
            .collect();
        cols.push(headers.join(","));
    }
    cols.push(rec.value.as_deref().map(data_text).unwrap_or_default());
    cols.join("\t")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn start_positions_parse() {
        assert_eq!(parse_start("beginning"), Ok(StartAt::Beginning));
        assert_eq!(parse_start("end"), Ok(StartAt::End));
        assert_eq!(parse_start("42"), Ok(StartAt::Offset(42)));
        assert_eq!(
            parse_start("@1700000000000"),
            Ok(StartAt::Timestamp(1_700_000_000_000))
        );
        assert!(parse_start("-1").is_err());
        assert!(parse_start("@x").is_err());
        assert!(parse_start("middle").is_err());
    }

    #[test]
    fn records_print_as_tab_separated_columns() {
        let rec = ConsumedRecord {
            offset: 17,
            timestamp: 0,
            log_append_time: false,
            key: Some(Bytes::from_static(b"user-1")),
            value: Some(Bytes::from_static("grüße".as_bytes())),
            headers: vec![
                ("trace".into(), Some(Bytes::from_static(b"abc"))),
                ("flag".into(), None),
            ],
        };
        let none = Columns {
            offset: false,
            key: false,
            headers: false,
        };
        assert_eq!(format_record(3, &rec, none), "grüße");
        let all = Columns {
            offset: true,
            key: true,
            headers: true,
        };
        assert_eq!(
            format_record(3, &rec, all),
            "3:17\tuser-1\ttrace=abc,flag\tgrüße"
        );
        let binary = ConsumedRecord {
            key: None,
            value: Some(Bytes::from_static(&[0x00, b'a', 0xff])),
            headers: vec![],
            ..rec
        };
        assert_eq!(format_record(0, &binary, all), "0:17\t\t\t\\x00a\\xff");
    }
}
