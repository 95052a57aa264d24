//! kafka-load: one librdkafka client driving one partition, for the broker benchmarks.
//!
//! ```text
//! kafka-load produce  --bootstrap B --topic T [--partition 0] --messages N --size S [-X k=v]...
//! kafka-load consume  --bootstrap B --topic T [--partition 0] --messages N [-X k=v]...
//! kafka-load latency  --bootstrap B --topic T [--partition 0] --rate R --secs S --size S [-X k=v]...
//! kafka-load fleet    --bootstrap B --topic T --producers P --consumers C --rate R --secs S --size S
//! ```
//!
//! Every mode prints one JSON line. The client runs with librdkafka's defaults except
//! `acks=all` for producers and what `-X` sets. `produce` sends N records of S bytes as
//! fast as the client takes them and counts until the last delivery report; `consume`
//! reads N records from the start of the partition and counts from the assignment (made
//! once the client knows the partition's leader) to the N-th record; `latency` sends R records per second for S seconds and reports the time
//! from each send to its delivery report. `produce` and `consume` also report what the
//! client's statistics say about its requests to the partition's broker (count, bytes
//! per response, round-trip times). `fleet` (see `fleet.rs`) runs many producers and a
//! consumer group over every partition of a topic.

mod fleet;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A consumer waiting this long for records while more are there has stalled (librdkafka
/// backs off for `fetch.queue.backoff.ms`, 1 s, when its prefetch queue is full).
const STALL: Duration = Duration::from_millis(200);

pub(crate) static STARTED: OnceLock<Instant> = OnceLock::new();

const USAGE: &str = "usage: kafka-load produce|consume|latency|fleet --bootstrap B --topic T \
[--partition P] [--messages N] [--size BYTES] [--rate PER_SEC] [--secs S] [--timeout S] \
[--producers N] [--consumers N] [--group G] [-X key=value]...";

pub(crate) struct Args {
    mode: String,
    bootstrap: String,
    topic: String,
    partition: i32,
    messages: u64,
    size: usize,
    rate: u64,
    secs: f64,
    timeout: f64,
    producers: usize,
    consumers: usize,
    group: String,
    config: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or(USAGE)?;
    if !matches!(mode.as_str(), "produce" | "consume" | "latency" | "fleet") {
        return Err(format!("unknown mode {mode:?}\n{USAGE}"));
    }
    let mut a = Args {
        mode,
        bootstrap: String::new(),
        topic: String::new(),
        partition: 0,
        messages: 1_000_000,
        size: 100,
        rate: 5000,
        secs: 10.0,
        timeout: 300.0,
        producers: 1,
        consumers: 1,
        group: "kafka-load-fleet".into(),
        config: Vec::new(),
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--bootstrap" => a.bootstrap = value,
            "--topic" => a.topic = value,
            "--partition" => a.partition = num(&value)? as i32,
            "--messages" => a.messages = num(&value)? as u64,
            "--size" => a.size = num(&value)? as usize,
            "--rate" => a.rate = num(&value)? as u64,
            "--secs" => a.secs = num(&value)?,
            "--timeout" => a.timeout = num(&value)?,
            "--producers" => a.producers = num(&value)? as usize,
            "--consumers" => a.consumers = num(&value)? as usize,
            "--group" => a.group = value,
            "-X" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("-X {value}: expected key=value"))?;
                a.config.push((k.to_string(), v.to_string()));
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if a.bootstrap.is_empty() || a.topic.is_empty() {
        return Err(format!("--bootstrap and --topic are required\n{USAGE}"));
    }
    if a.messages == 0
        || a.rate == 0
        || a.secs <= 0.0
        || a.timeout <= 0.0
        || a.producers == 0
        || a.consumers == 0
    {
        return Err(
            "--messages, --rate, --secs, --timeout, --producers and --consumers must be positive"
                .into(),
        );
    }
    Ok(a)
}

/// Delivery reports and the latest statistics.
struct Ctx {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Send instants of `latency` mode, by record index; latencies in microseconds.
    sent_at: Mutex<Vec<Instant>>,
    latencies_us: Mutex<Vec<u64>>,
    stats: Mutex<Option<Statistics>>,
}

impl Ctx {
    fn new() -> Ctx {
        Ctx {
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
            sent_at: Mutex::new(Vec::new()),
            latencies_us: Mutex::new(Vec::new()),
            stats: Mutex::new(None),
        }
    }
}

impl ClientContext for Ctx {
    /// librdkafka's log lines (and `-X debug=...` output) go to stderr, with the time
    /// since the process started.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let t = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
        eprintln!("{t:10.6} {level:?} {fac}: {message}");
    }

    fn stats(&self, statistics: Statistics) {
        *self.stats.lock().unwrap() = Some(statistics);
    }
}

impl ConsumerContext for Ctx {}

impl ProducerContext for Ctx {
    /// 0 in the throughput mode, else 1 + the record's index in `sent_at`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        match result {
            Ok(_) => {
                if index > 0 {
                    let at = self.sent_at.lock().unwrap()[index - 1];
                    self.latencies_us
                        .lock()
                        .unwrap()
                        .push(at.elapsed().as_micros() as u64);
                }
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

fn config(a: &Args, producer: bool) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &a.bootstrap)
        .set("statistics.interval.ms", "500");
    if producer {
        c.set("acks", "all");
    } else {
        c.set("group.id", "kafka-load")
            .set("enable.auto.commit", "false");
    }
    for (k, v) in &a.config {
        c.set(k, v);
    }
    if a.config.iter().any(|(k, _)| k == "debug") {
        c.set_log_level(RDKafkaLogLevel::Debug);
    }
    c
}

/// What the statistics say about the requests to the broker(s) that served the run.
fn request_summary(ctx: &Ctx, request: &str) -> Value {
    let Some(stats) = ctx.stats.lock().unwrap().take() else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    let (mut requests, mut rx, mut rxbytes) = (0i64, 0u64, 0u64);
    let mut rtt_avg = 0i64;
    let mut rtt_p99 = 0i64;
    for b in stats.brokers.values().filter(|b| b.nodeid >= 0) {
        let n = b.req.get(request).copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        requests += n;
        rx += b.rx;
        rxbytes += b.rxbytes;
        if let Some(w) = &b.rtt {
            rtt_avg = rtt_avg.max(w.avg);
            rtt_p99 = rtt_p99.max(w.p99);
        }
    }
    out.insert("requests".into(), json!(requests));
    out.insert("responses".into(), json!(rx));
    out.insert(
        "bytes_per_response".into(),
        json!(rxbytes.checked_div(rx).unwrap_or(0)),
    );
    out.insert("rtt_avg_us".into(), json!(rtt_avg));
    out.insert("rtt_p99_us".into(), json!(rtt_p99));
    Value::Object(out)
}

fn produce(a: &Args) -> Result<Value, String> {
    let producer: BaseProducer<Ctx> = config(a, true)
        .create_with_context(Ctx::new())
        .map_err(|e| format!("producer: {e}"))?;
    let payload = vec![b'x'; a.size];
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < a.messages {
        let record = BaseRecord::<(), [u8], usize>::with_opaque_to(&a.topic, 0)
            .partition(a.partition)
            .payload(&payload);
        let full = match producer.send(record) {
            Ok(()) => {
                sent += 1;
                false
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(1));
                true
            }
            Err((e, _)) => return Err(format!("send: {e}")),
        };
        if (full || sent.is_multiple_of(4096)) && Instant::now() > deadline {
            return Err(format!("timed out after {sent} sends"));
        }
    }
    let ctx = producer.context();
    while ctx.delivered.load(Ordering::Relaxed) + ctx.failed.load(Ordering::Relaxed) < a.messages {
        producer.poll(Duration::from_millis(10));
        if Instant::now() > deadline {
            return Err("timed out waiting for delivery reports".into());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // One more statistics interval, so the summary covers the whole run.
    std::thread::sleep(Duration::from_millis(600));
    producer.poll(Duration::from_millis(0));
    result(a, ctx, secs, a.messages, "Produce")
}

fn result(a: &Args, ctx: &Ctx, secs: f64, messages: u64, request: &str) -> Result<Value, String> {
    let failed = ctx.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = ctx.first_error.lock().unwrap().clone().unwrap_or_default();
        return Err(format!(
            "{failed} deliveries failed, the first with: {first}"
        ));
    }
    Ok(json!({
        "mode": a.mode,
        "messages": messages,
        "size": a.size,
        "secs": secs,
        "msgs_per_sec": messages as f64 / secs,
        "mb_per_sec": (messages as f64 * a.size as f64) / secs / 1e6,
        "requests": request_summary(ctx, request),
    }))
}

fn consume(a: &Args) -> Result<Value, String> {
    let consumer: BaseConsumer<Ctx> = config(a, false)
        .create_with_context(Ctx::new())
        .map_err(|e| format!("consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&a.topic, a.partition, Offset::Beginning)
        .map_err(|e| format!("assign: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    // Learn the partition's leader first: assigned without it, librdkafka retries its
    // offset lookup on a 500 ms timer, which would be measured as the server's time.
    consumer
        .fetch_metadata(Some(&a.topic), Duration::from_secs_f64(a.timeout.min(30.0)))
        .map_err(|e| format!("metadata: {e}"))?;
    let started = Instant::now();
    consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut first_at = None;
    // Stalls: 4096 records (or fewer, then a wait) that took longer than STALL.
    let (mut last_count, mut last_check) = (0u64, started);
    let (mut stalls, mut longest) = (0u32, Duration::ZERO);
    while count < a.messages {
        let idle = match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first_at.get_or_insert_with(Instant::now);
                bytes += m.payload_len() as u64;
                count += 1;
                false
            }
            Some(Err(e)) => return Err(format!("consume: {e}")),
            None => true,
        };
        // Reading the clock per record would be a measurable part of the client's work:
        // every 4096 records (and when idle) is enough to see stalls.
        if idle || count.is_multiple_of(4096) {
            let now = Instant::now();
            if now > deadline {
                return Err(format!("timed out after {count} records"));
            }
            if count > last_count && first_at.is_some() {
                let gap = now - last_check;
                if gap >= STALL {
                    stalls += 1;
                }
                longest = longest.max(gap);
                last_count = count;
                last_check = now;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let first_ms = first_at.map_or(0.0, |t| (t - started).as_secs_f64() * 1e3);
    std::thread::sleep(Duration::from_millis(600));
    let _ = consumer.poll(Duration::from_millis(0));
    let mut v = result(a, consumer.context(), secs, count, "Fetch")?;
    v["first_record_ms"] = json!(first_ms);
    v["stalls"] = json!(stalls);
    v["longest_stall_ms"] = json!(longest.as_secs_f64() * 1e3);
    v["bytes"] = json!(bytes);
    Ok(v)
}

fn latency(a: &Args) -> Result<Value, String> {
    let producer: BaseProducer<Ctx> = config(a, true)
        .create_with_context(Ctx::new())
        .map_err(|e| format!("producer: {e}"))?;
    let payload = vec![b'x'; a.size];
    let total = (a.rate as f64 * a.secs) as usize;
    producer.context().sent_at.lock().unwrap().reserve(total);
    // Warm up: metadata, connection and the first produce before the clock starts.
    let warm = BaseRecord::<(), [u8], usize>::with_opaque_to(&a.topic, 0)
        .partition(a.partition)
        .payload(&payload);
    producer.send(warm).map_err(|(e, _)| format!("send: {e}"))?;
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("flush: {e}"))?;
    let ctx = producer.context();
    ctx.delivered.store(0, Ordering::Relaxed);
    let interval = Duration::from_secs_f64(1.0 / a.rate as f64);
    let started = Instant::now();
    for i in 0..total {
        let due = started + interval * i as u32;
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            producer.poll(due - now);
        }
        ctx.sent_at.lock().unwrap().push(Instant::now());
        let record = BaseRecord::<(), [u8], usize>::with_opaque_to(&a.topic, i + 1)
            .partition(a.partition)
            .payload(&payload);
        producer
            .send(record)
            .map_err(|(e, _)| format!("send: {e}"))?;
    }
    producer
        .flush(Duration::from_secs_f64(a.timeout))
        .map_err(|e| format!("flush: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    let mut lat = ctx.latencies_us.lock().unwrap().clone();
    lat.sort_unstable();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let mut v = result(a, ctx, secs, total as u64, "Produce")?;
    v["p50_ms"] = json!(q(0.50) as f64 / 1e3);
    v["p99_ms"] = json!(q(0.99) as f64 / 1e3);
    v["max_ms"] = json!(lat.last().copied().unwrap_or(0) as f64 / 1e3);
    Ok(v)
}

fn main() -> ExitCode {
    STARTED.get_or_init(Instant::now);
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kafka-load: {e}");
            return ExitCode::from(2);
        }
    };
    let out = match args.mode.as_str() {
        "produce" => produce(&args),
        "consume" => consume(&args),
        "fleet" => fleet::fleet(&args),
        _ => latency(&args),
    };
    match out {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kafka-load: {e}");
            ExitCode::FAILURE
        }
    }
}
