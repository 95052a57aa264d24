//! `fjord produce TOPIC`: one record per line of stdin.
//!
//! Each line (without its `\n`) is a record value; with `--key-separator SEP`, a line
//! `KEY<SEP>VALUE` gives a key too (split at the first SEP; a line without SEP has no key).
//! `--header k=v` adds headers to every record.
//!
//! Partitioning, like Kafka's default partitioner: `--partition` wins; otherwise a keyed
//! record goes to `murmur2(key) % partitions` (the same partition the Java client and
//! librdkafka's `murmur2_random` choose), and keyless records fill one batch per partition
//! in turn, starting at a random partition ("sticky" partitioning, so small runs do not
//! all land on partition 0).
//!
//! Records are sent in batches of `--batch-size`, or earlier when no new line arrived for
//! `--linger-ms` (so interactive input is sent as it is typed). Batches are sent one at a
//! time, in order, so records of one partition keep their input order. The first batch that
//! fails stops the command. At the end a summary goes to stderr (how many records were
//! acknowledged, and the offset range per partition), and the exit status is non-zero if
//! any record was not acknowledged.
//!
//! Stdin is read by a plain thread (stdin cannot be read asynchronously in a portable way);
//! it ends at EOF, or at the next line once the command stopped listening, or with the
//! process.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::error::CliError;
use super::kafka::{parse_key_value, topic_info, KafkaArgs};
use crate::client::partitioner::partition_for_key;
use crate::client::records::parse_compression;
use crate::client::{Acks, Client, Compression, ProduceOptions, ProduceRecord};

/// `fjord produce TOPIC [options] < lines`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The topic to write to (created by the broker if it auto-creates topics).
    pub topic: String,

    /// Send every record to this partition.
    #[arg(long, short = 'p', value_name = "P", value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,

    /// Split each line at the first SEP into key and value.
    #[arg(long, short = 'K', value_name = "SEP", value_parser = non_empty)]
    pub key_separator: Option<String>,

    /// A header for every record; repeat for several.
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub headers: Vec<(String, String)>,

    /// Acknowledgement: 0 (none), 1 (leader), all (every in-sync replica).
    #[arg(long, value_name = "0|1|all", default_value = "all", value_parser = parse_acks)]
    pub acks: Acks,

    /// Batch compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, value_name = "CODEC", default_value = "none", value_parser = parse_codec)]
    pub compression: Compression,

    /// Records per batch (per partition).
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,

    /// Send a partial batch after this long without a new line, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    pub linger_ms: u64,

    #[command(flatten)]
    pub kafka: KafkaArgs,
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    Acks::parse(s).ok_or_else(|| format!("expected 0, 1 or all, got {s:?}"))
}

fn parse_codec(s: &str) -> Result<Compression, String> {
    parse_compression(s)
        .ok_or_else(|| format!("expected none, gzip, snappy, lz4 or zstd, got {s:?}"))
}

/// Reads stdin, produces, and reports on stderr.
pub async fn run(bootstrap: &str, args: ProduceArgs) -> Result<(), CliError> {
    let client = args.kafka.connect(bootstrap).await?;
    let topic = topic_info(&client, &args.topic, true).await?;
    let partitions = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    if let Some(p) = args.partition {
        if !topic.partitions.contains_key(&p) {
            return Err(CliError::Usage(format!(
                "topic {} has no partition {p} (it has {partitions})",
                args.topic
            )));
        }
    }
    let opts = ProduceOptions {
        acks: args.acks,
        timeout: Duration::from_millis(args.kafka.request_timeout_ms),
        compression: args.compression,
    };
    let batch_size = args.batch_size as usize;
    let mut batcher = Batcher::new(
        partitions,
        args.partition,
        batch_size,
        random_start(partitions),
    );
    let headers: Vec<(String, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Some(Bytes::copy_from_slice(v.as_bytes()))))
        .collect();
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let linger = Duration::from_millis(args.linger_ms);

    let (tx, mut rx) = mpsc::channel(batch_size.max(16));
    std::thread::spawn(move || read_lines(std::io::stdin().lock(), &tx));

    let mut tally = Tally::default();
    // From a file, progress is the share of its bytes read; otherwise records sent.
    let input_size = std::fs::metadata("/dev/stdin")
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len());
    let mut progress = super::progress::Progress::new(
        super::progress::Progress::stderr_is_terminal(),
        input_size,
        if input_size.is_some() {
            "bytes"
        } else {
            "records"
        },
    );
    let mut read: u64 = 0;
    let mut deadline: Option<Instant> = None;
    let producer = Producer {
        client: &client,
        topic: &args.topic,
        opts: &opts,
    };
    let outcome: Result<(), CliError> = async {
        loop {
            let next = match deadline {
                None => rx.recv().await,
                Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => {
                        // Lingered long enough: send what there is.
                        deadline = None;
                        producer.send(batcher.drain(), &batcher, &mut tally).await?;
                        continue;
                    }
                },
            };
            match next {
                Some(Ok(line)) => {
                    read += line.len() as u64 + 1;
                    progress.update(
                        if input_size.is_some() {
                            read
                        } else {
                            tally.sent
                        },
                        tally.sent,
                    );
                    let (key, value) = split_line(&line, separator);
                    let record = ProduceRecord {
                        key,
                        value: Some(value),
                        headers: headers.clone(),
                        timestamp: None,
                    };
                    if batcher.is_empty() {
                        deadline = Some(Instant::now() + linger);
                    }
                    if let Some(full) = batcher.add(record) {
                        producer.send(vec![full], &batcher, &mut tally).await?;
                    }
                    if batcher.is_empty() {
                        deadline = None;
                    }
                }
                Some(Err(e)) if batcher.pending() > 0 => {
                    return Err(CliError::NotAcknowledged {
                        unacked: batcher.pending() as u64,
                        reason: format!("cannot read stdin: {e}"),
                    })
                }
                Some(Err(e)) => return Err(CliError::Input(e)),
                None => return producer.send(batcher.drain(), &batcher, &mut tally).await,
            }
        }
    }
    .await;
    progress.finish();
    // The summary comes first, whatever happened, so the user knows what did get through.
    tally.report(&args.topic, args.acks, &mut std::io::stderr())?;
    outcome
}

/// Sends batches for one topic.
struct Producer<'a> {
    client: &'a Client,
    topic: &'a str,
    opts: &'a ProduceOptions,
}

impl Producer<'_> {
    /// Sends `batches` in order and records what was acknowledged. On the first failure the
    /// error counts that batch, the ones after it, and the records still in `batcher` as
    /// unacknowledged.
    async fn send(
        &self,
        batches: Vec<(i32, Vec<ProduceRecord>)>,
        batcher: &Batcher,
        tally: &mut Tally,
    ) -> Result<(), CliError> {
        let mut left: u64 = batches.iter().map(|(_, b)| b.len() as u64).sum();
        for (partition, batch) in batches {
            let n = batch.len() as u64;
            match self
                .client
                .produce(self.topic, partition, &batch, self.opts)
                .await
            {
                Ok(ack) => {
                    tally.record(partition, ack.base_offset, n);
                    left -= n;
                }
                Err(e) => {
                    return Err(CliError::NotAcknowledged {
                        unacked: left + batcher.pending() as u64,
                        reason: e.to_string(),
                    })
                }
            }
        }
        Ok(())
    }
}

/// Reads `input` line by line into `tx` until EOF, a read error, or the receiver is gone.
fn read_lines(mut input: impl BufRead, tx: &mpsc::Sender<std::io::Result<Vec<u8>>>) {
    loop {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                if tx.blocking_send(Ok(line)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

/// Splits a line into key and value at the first `separator`, if given and present.
fn split_line(line: &[u8], separator: Option<&[u8]>) -> (Option<Bytes>, Bytes) {
    if let Some(sep) = separator {
        if let Some(at) = line.windows(sep.len()).position(|w| w == sep) {
            return (
                Some(Bytes::copy_from_slice(&line[..at])),
                Bytes::copy_from_slice(&line[at + sep.len()..]),
            );
        }
    }
    (None, Bytes::copy_from_slice(line))
}

/// A starting partition for keyless records that differs from run to run.
fn random_start(partitions: i32) -> i32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos % partitions.max(1) as u32) as i32
}

/// Assigns records to partitions and cuts them into batches (pure; see the module docs).
#[derive(Debug)]
struct Batcher {
    partitions: i32,
    fixed: Option<i32>,
    batch_size: usize,
    /// Where keyless records go until that partition's batch is sent.
    sticky: i32,
    pending: BTreeMap<i32, Vec<ProduceRecord>>,
}

impl Batcher {
    fn new(partitions: i32, fixed: Option<i32>, batch_size: usize, sticky: i32) -> Batcher {
        Batcher {
            partitions: partitions.max(1),
            fixed,
            batch_size: batch_size.max(1),
            sticky,
            pending: BTreeMap::new(),
        }
    }

    fn partition_for(&self, record: &ProduceRecord) -> i32 {
        match (self.fixed, &record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, self.partitions),
            (None, None) => self.sticky,
        }
    }

    /// Adds a record; returns a batch that became full.
    fn add(&mut self, record: ProduceRecord) -> Option<(i32, Vec<ProduceRecord>)> {
        let p = self.partition_for(&record);
        let batch = self.pending.entry(p).or_default();
        batch.push(record);
        if batch.len() < self.batch_size {
            return None;
        }
        let full = self.pending.remove(&p)?;
        self.batch_sent(p);
        Some((p, full))
    }

    /// Takes every partial batch, in partition order.
    fn drain(&mut self) -> Vec<(i32, Vec<ProduceRecord>)> {
        let all: Vec<_> = std::mem::take(&mut self.pending).into_iter().collect();
        if all.iter().any(|(p, _)| *p == self.sticky) {
            self.batch_sent(self.sticky);
        }
        all
    }

    /// Keyless records move on once the sticky partition's batch is sent.
    fn batch_sent(&mut self, partition: i32) {
        if partition == self.sticky {
            self.sticky = (self.sticky + 1) % self.partitions;
        }
    }

    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Records waiting in partial batches.
    fn pending(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }
}

/// What was acknowledged, per partition.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    /// partition → (first offset, last offset, records), for acknowledged batches.
    ranges: BTreeMap<i32, (i64, i64, u64)>,
}

impl Tally {
    fn record(&mut self, partition: i32, base_offset: Option<i64>, count: u64) {
        self.sent += count;
        if let Some(base) = base_offset {
            let last = base + count as i64 - 1;
            let e = self.ranges.entry(partition).or_insert((base, last, 0));
            e.0 = e.0.min(base);
            e.1 = e.1.max(last);
            e.2 += count;
        }
    }

    fn report(&self, topic: &str, acks: Acks, out: &mut dyn Write) -> std::io::Result<()> {
        if acks == Acks::None {
            return writeln!(
                out,
                "sent {} record(s) to {topic} with acks=0 (brokers do not acknowledge)",
                self.sent
            );
        }
        writeln!(out, "acknowledged {} record(s) on {topic}", self.sent)?;
        for (p, (first, last, n)) in &self.ranges {
            if first == last {
                writeln!(out, "  partition {p}: offset {first} (1 record)")?;
            } else {
                writeln!(out, "  partition {p}: offsets {first}-{last} ({n} records)")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(k: Option<&str>) -> ProduceRecord {
        ProduceRecord {
            key: k.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::from_static(b"v")),
            ..ProduceRecord::default()
        }
    }

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(
            split_line(b"k:v:w", Some(b":")),
            (Some(Bytes::from_static(b"k")), Bytes::from_static(b"v:w"))
        );
        assert_eq!(
            split_line(b"no-sep", Some(b"::")),
            (None, Bytes::from_static(b"no-sep"))
        );
        assert_eq!(
            split_line(b"a::b", Some(b"::")),
            (Some(Bytes::from_static(b"a")), Bytes::from_static(b"b"))
        );
        assert_eq!(
            split_line(b":v", Some(b":")),
            (Some(Bytes::new()), Bytes::from_static(b"v"))
        );
        assert_eq!(split_line(b"k:v", None), (None, Bytes::from_static(b"k:v")));
        assert_eq!(split_line(b"", Some(b":")), (None, Bytes::new()));
    }

    #[test]
    fn stdin_lines_lose_only_their_newline() {
        let (tx, mut rx) = mpsc::channel(10);
        read_lines(&b"a\nb\r\n\nlast"[..], &tx);
        drop(tx);
        let mut lines = Vec::new();
        while let Ok(Ok(l)) = rx.try_recv() {
            lines.push(l);
        }
        assert_eq!(
            lines,
            vec![
                b"a".to_vec(),
                b"b\r".to_vec(),
                b"".to_vec(),
                b"last".to_vec()
            ]
        );
    }

    #[test]
    fn keys_follow_murmur2_and_batches_fill_per_partition() {
        let mut b = Batcher::new(3, None, 2, 0);
        let p = partition_for_key(b"user-1", 3);
        assert!(b.add(keyed(Some("user-1"))).is_none());
        let (bp, batch) = b.add(keyed(Some("user-1"))).unwrap();
        assert_eq!((bp, batch.len()), (p, 2));
        assert!(b.is_empty());
    }

    #[test]
    fn keyless_records_stick_to_a_partition_until_its_batch_is_sent() {
        let mut b = Batcher::new(3, None, 2, 2);
        assert!(b.add(keyed(None)).is_none());
        assert_eq!(b.add(keyed(None)).unwrap().0, 2);
        assert!(b.add(keyed(None)).is_none());
        assert_eq!(b.add(keyed(None)).unwrap().0, 0);
        b.add(keyed(None));
        assert_eq!(b.pending(), 1);
        let drained = b.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].0, 1);
        // Draining the sticky partition's batch moves on too.
        b.add(keyed(None));
        assert_eq!(b.drain()[0].0, 2);
    }

    #[test]
    fn a_fixed_partition_wins() {
        let mut b = Batcher::new(4, Some(3), 10, 0);
        b.add(keyed(Some("x")));
        b.add(keyed(None));
        let drained = b.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!((drained[0].0, drained[0].1.len()), (3, 2));
    }

    #[test]
    fn the_summary_names_offset_ranges() {
        let mut t = Tally::default();
        t.record(0, Some(10), 2);
        t.record(0, Some(12), 3);
        t.record(2, Some(7), 1);
        let mut out = Vec::new();
        t.report("orders", Acks::All, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "acknowledged 6 record(s) on orders\n  partition 0: offsets 10-14 (5 records)\n  partition 2: offset 7 (1 record)\n"
        );
        let mut t = Tally::default();
        t.record(1, None, 4);
        let mut out = Vec::new();
        t.report("orders", Acks::None, &mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("sent 4 record(s) to orders with acks=0"));
    }

    #[test]
    fn flag_values_parse() {
        assert_eq!(parse_acks("all").unwrap(), Acks::All);
        assert!(parse_acks("2").is_err());
        assert_eq!(parse_codec("lz4").unwrap(), Compression::Lz4);
        assert!(parse_codec("brotli").is_err());
        assert!(non_empty("").is_err());
    }
}
