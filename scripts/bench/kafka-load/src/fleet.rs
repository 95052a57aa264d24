//! `fleet`: many producers and a consumer group on one topic, as many applications would
//! use a cluster. Every client is a librdkafka instance of its own (connections, threads,
//! metadata, heartbeats), all in this process.
//!
//! The consumers join one group first (`--consumers`, each polled by a thread of its own,
//! librdkafka defaults: auto commit every 5 s, cooperative off), and the time until the
//! group's assignments cover every partition is the settle time. Then `--rate` records
//! per second of `--size` bytes, spread over the producers in turn (no key: librdkafka's
//! sticky partitioner), for `--secs`. Each record carries its send time, so delivery
//! reports give the produce latency and consumers the end-to-end latency. Records still
//! unacknowledged a minute after the last send are counted, not waited for; every
//! acknowledged record must have been consumed.

use crate::{Args, STARTED};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the group may take to cover every partition.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long consumers may take to read every acknowledged record after the producers stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the producers may take, all together, to have their last records acknowledged.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The send time a record carries in its first 8 bytes.
fn sent_us(payload: Option<&[u8]>) -> Option<u64> {
    let b: [u8; 8] = payload?.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// What every client reports into.
#[derive(Default)]
struct Shared {
    /// Partitions assigned to each consumer right now.
    assigned: Vec<AtomicUsize>,
    rebalances: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    consumed: AtomicU64,
    ack_us: Mutex<Vec<u64>>,
    e2e_us: Mutex<Vec<u64>>,
}

struct Ctx {
    shared: Arc<Shared>,
    /// The consumer's index in `assigned` (unused by producers).
    index: usize,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let t = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
        eprintln!("{t:10.6} [{}] {level:?} {fac}: {message}", self.index);
    }
}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _: &BaseConsumer<Ctx>, rebalance: &Rebalance<'_>) {
        let n = match rebalance {
            Rebalance::Assign(tpl) => tpl.count(),
            _ => 0,
        };
        self.shared.assigned[self.index].store(n, Ordering::Relaxed);
        self.shared.rebalances.fetch_add(1, Ordering::Relaxed);
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                if let Some(sent) = sent_us(m.payload()) {
                    let lat = now_us().saturating_sub(sent);
                    self.shared.ack_us.lock().unwrap().push(lat);
                }
                self.shared.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.shared.failed.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

fn client_config(a: &Args) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &a.bootstrap);
    for (k, v) in &a.config {
        c.set(k, v);
    }
    if a.config.iter().any(|(k, _)| k == "debug") {
        c.set_log_level(RDKafkaLogLevel::Debug);
    }
    c
}

fn quantiles(mut v: Vec<u64>) -> Value {
    v.sort_unstable();
    let q = |p: f64| {
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1e3
    };
    json!({"p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0)})
}

pub fn fleet(a: &Args) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let shared = Arc::new(Shared {
        assigned: (0..a.consumers).map(|_| AtomicUsize::new(0)).collect(),
        ..Default::default()
    });
    // The partition count, from a metadata request of a throwaway producer.
    let probe: BaseProducer = client_config(a)
        .create()
        .map_err(|e| format!("producer: {e}"))?;
    let md = probe
        .client()
        .fetch_metadata(Some(&a.topic), Duration::from_secs(30))
        .map_err(|e| format!("metadata: {e}"))?;
    let partitions = md
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        return Err(format!("topic {} has no partitions", a.topic));
    }
    drop(probe);

    let stop = Arc::new(AtomicBool::new(false));
    let joined = Instant::now();
    let mut threads = Vec::new();
    for index in 0..a.consumers {
        let consumer: BaseConsumer<Ctx> = client_config(a)
            .set("group.id", &a.group)
            .set("auto.offset.reset", "earliest")
            .create_with_context(Ctx {
                shared: shared.clone(),
                index,
            })
            .map_err(|e| format!("consumer: {e}"))?;
        consumer
            .subscribe(&[&a.topic])
            .map_err(|e| format!("subscribe: {e}"))?;
        let (shared, stop) = (shared.clone(), stop.clone());
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        if let Some(sent) = sent_us(m.payload()) {
                            lat.push(now_us().saturating_sub(sent));
                        }
                        shared.consumed.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(e)) => {
                        shared
                            .first_error
                            .lock()
                            .unwrap()
                            .get_or_insert_with(|| format!("consumer {index}: {e}"));
                    }
                    None => {}
                }
            }
            shared.e2e_us.lock().unwrap().extend(lat);
            // Dropping the consumer leaves the group.
            Ok(())
        }));
    }
    // The group settles once its assignments cover every partition.
    let settle = loop {
        let covered: usize = shared
            .assigned
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum();
        if covered == partitions {
            break joined.elapsed();
        }
        if joined.elapsed() > SETTLE_TIMEOUT || Instant::now() > deadline {
            stop.store(true, Ordering::Relaxed);
            return Err(format!(
                "the group covered {covered} of {partitions} partitions after {:.0} s",
                joined.elapsed().as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let rebalances_settled = shared.rebalances.load(Ordering::Relaxed);

    let mut producers = Vec::with_capacity(a.producers);
    for _ in 0..a.producers {
        let p: BaseProducer<Ctx> = client_config(a)
            .set("acks", "all")
            .create_with_context(Ctx {
                shared: shared.clone(),
                index: usize::MAX,
            })
            .map_err(|e| format!("producer: {e}"))?;
        // Connected and knowing the leaders before the clock starts.
        p.client()
            .fetch_metadata(Some(&a.topic), Duration::from_secs(30))
            .map_err(|e| format!("metadata: {e}"))?;
        producers.push(p);
    }
    let mut payload = vec![b'x'; a.size.max(8)];
    let total = (a.rate as f64 * a.secs) as u64;
    let interval = Duration::from_secs_f64(1.0 / a.rate as f64);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut last_poll = Instant::now();
    while sent < total {
        let due = started + interval * sent as u32;
        let now = Instant::now();
        if now < due {
            std::thread::sleep((due - now).min(Duration::from_millis(1)));
        } else {
            let p = &producers[(sent % a.producers as u64) as usize];
            payload[..8].copy_from_slice(&now_us().to_be_bytes());
            let record = BaseRecord::<(), [u8], ()>::to(&a.topic).payload(&payload);
            match p.send(record) {
                Ok(()) => sent += 1,
                Err((e, _)) => return Err(format!("send: {e}")),
            }
        }
        // Delivery reports are served by poll.
        if last_poll.elapsed() >= Duration::from_millis(5) {
            for p in &producers {
                p.poll(Duration::ZERO);
            }
            last_poll = Instant::now();
            if Instant::now() > deadline {
                return Err(format!("timed out after {sent} sends"));
            }
        }
    }
    // Whatever is still unacknowledged after this is reported, not waited for: a server
    // that cannot keep up shows as records neither acknowledged nor failed.
    let flush_until = Instant::now() + FLUSH_TIMEOUT;
    for p in &producers {
        let left = flush_until.saturating_duration_since(Instant::now());
        let _ = p.flush(left.max(Duration::from_millis(1)));
    }
    let produce_secs = started.elapsed().as_secs_f64();
    let acked = shared.acked.load(Ordering::Relaxed);
    let drain = Instant::now();
    while shared.consumed.load(Ordering::Relaxed) < acked && drain.elapsed() < DRAIN_TIMEOUT {
        std::thread::sleep(Duration::from_millis(20));
    }
    let consumed = shared.consumed.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    drop(producers);
    for t in threads {
        t.join().map_err(|_| "a consumer thread panicked")??;
    }
    let failed = shared.failed.load(Ordering::Relaxed);
    let mut v = json!({
        "mode": "fleet",
        "partitions": partitions,
        "producers": a.producers,
        "consumers": a.consumers,
        "size": a.size,
        "rate": a.rate,
        "settle_secs": settle.as_secs_f64(),
        "rebalances_to_settle": rebalances_settled,
        "rebalances": shared.rebalances.load(Ordering::Relaxed),
        "sent": sent,
        "acked": acked,
        "failed": failed,
        "unacked": sent.saturating_sub(acked + failed),
        "first_error": shared.first_error.lock().unwrap().clone(),
        "consumed": consumed,
        "produce_secs": produce_secs,
        "msgs_per_sec": acked as f64 / produce_secs,
    });
    v["ack"] = quantiles(std::mem::take(&mut *shared.ack_us.lock().unwrap()));
    v["e2e"] = quantiles(std::mem::take(&mut *shared.e2e_us.lock().unwrap()));
    if failed > 0 || consumed < acked {
        return Err(format!(
            "{failed} deliveries failed and {} acknowledged records were not consumed: {v}",
            acked.saturating_sub(consumed)
        ));
    }
    Ok(v)
}
