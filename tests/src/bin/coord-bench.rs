//! `coord-bench`: a load generator for ZooKeeper-protocol servers.
//!
//! It drives `fjord-coordinator` and Apache ZooKeeper with the very same workload
//! through an independent client library (`zookeeper-client`), so the numbers
//! compare servers, not clients. `scripts/bench/coordinator` runs it against
//! both and prints the comparison table.
//!
//! Every client is its own session with exactly one request in flight: it waits
//! for each reply before sending the next request. Concurrency comes only from
//! the number of sessions, which is what makes group commit visible: with 32
//! sessions up to 32 writes can share one fsync.
//!
//! Phases, per client count:
//! - `create`: each client creates persistent nodes under its own parent;
//! - `set`: each client overwrites the data of its own nodes, round robin;
//! - `get`: each client reads its own nodes, round robin.
//!
//! Then, with two extra sessions, the watch latency: one session arms a watch
//! (a one-shot `getData` watch for `watch`, an `addWatch` persistent watch for
//! `pwatch`), the other sets the node's data; the latency is the time from the
//! `setData` call until the watcher sees the event.
//!
//! Every phase is bounded in time (warm-up plus measured window) and in
//! operation count. The output is one JSON object per line and phase. For the create,
//! set and get phases it includes the CPU time per measured operation of the load
//! generator itself and, with `--server-pid`, of the server (user + system, from
//! `/proc/PID/stat` at the start and the end of the measured window; -1 when unknown):
//! on a machine the two share, the generator's own cost bounds how far apart two
//! servers' rates can be.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use zookeeper_client::{Acls, AddWatchMode, Client, CreateMode, EventType};

/// Command line of the load generator.
#[derive(Parser, Debug)]
#[command(about = "Load generator for ZooKeeper-protocol servers; prints one JSON line per phase")]
struct Args {
    /// Server address, `host:port`.
    #[arg(long)]
    server: String,
    /// Client (session) counts; the create, set and get phases run once per count.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    clients: Vec<usize>,
    /// Phases to run, in this order within each client count.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "create,set,get,watch,pwatch"
    )]
    phases: Vec<Phase>,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Unmeasured warm-up seconds before each phase (same operations, not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Upper bound on measured operations per phase, across all clients.
    #[arg(long, default_value_t = 2_000_000)]
    max_ops: u64,
    /// Upper bound on measured rounds of each watch phase.
    #[arg(long, default_value_t = 2_000)]
    watch_rounds: u64,
    /// Size in bytes of every node's data.
    #[arg(long, default_value_t = 128)]
    data_size: usize,
    /// Runtime worker threads of the load generator; 1 means a single-threaded runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Session timeout requested from the server, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: u64,
    /// Label copied into every output line (e.g. the server's name).
    #[arg(long, default_value = "server")]
    label: String,
    /// The server's process id, to report its CPU time per operation (Linux).
    #[arg(long)]
    server_pid: Option<u32>,
}

/// One kind of measured work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Phase {
    Create,
    Set,
    Get,
    Watch,
    Pwatch,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::Set => "set",
            Phase::Get => "get",
            Phase::Watch => "watch",
            Phase::Pwatch => "pwatch",
        }
    }
}

/// The measurements of one phase.
struct PhaseResult {
    phase: Phase,
    clients: usize,
    ops: u64,
    errors: u64,
    elapsed: Duration,
    /// Per-operation latencies in microseconds, sorted.
    latencies_us: Vec<u32>,
    /// CPU time over the measured window: (load generator, server), where known.
    cpu: (Option<Duration>, Option<Duration>),
}

impl PhaseResult {
    fn percentile(&self, p: f64) -> u32 {
        // Nearest rank: the smallest value with at least p% of the samples at or below it.
        if self.latencies_us.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1]
    }

    /// Microseconds of `cpu` per measured operation, -1 if unknown.
    fn cpu_per_op(&self, cpu: Option<Duration>) -> f64 {
        match cpu {
            Some(cpu) if self.ops > 0 => cpu.as_secs_f64() * 1e6 / self.ops as f64,
            _ => -1.0,
        }
    }

    /// One output line; `nodes` is how many nodes the benchmark has created so far.
    fn json(&self, label: &str, nodes: u64) -> String {
        let secs = self.elapsed.as_secs_f64();
        let ops_per_sec = if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        };
        let mean = if self.latencies_us.is_empty() {
            0.0
        } else {
            self.latencies_us.iter().map(|&v| f64::from(v)).sum::<f64>()
                / self.latencies_us.len() as f64
        };
        let mut line = String::new();
        // Flat and in a fixed key order so that a shell script can read it with awk.
        let _ = write!(
            line,
            "{{\"label\":\"{}\",\"op\":\"{}\",\"clients\":{},\"ops\":{},\"errors\":{},\"secs\":{:.3},\
             \"ops_per_sec\":{:.1},\"mean_us\":{:.1},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"nodes\":{},\
             \"client_cpu_us_per_op\":{:.1},\"server_cpu_us_per_op\":{:.1}}}",
            label.replace(['"', '\\'], "_"),
            self.phase.name(),
            self.clients,
            self.ops,
            self.errors,
            secs,
            ops_per_sec,
            mean,
            self.percentile(50.0),
            self.percentile(99.0),
            self.latencies_us.last().copied().unwrap_or(0),
            nodes,
            self.cpu_per_op(self.cpu.0),
            self.cpu_per_op(self.cpu.1),
        );
        line
    }
}

/// What one client task measured.
#[derive(Default)]
struct ClientOutcome {
    latencies_us: Vec<u32>,
    errors: u64,
    last_done: Option<Instant>,
    created: usize,
}

/// The time window of a phase: operations before `measure_from` warm up, operations
/// starting at or after `until` are not issued.
#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    until: Instant,
}

impl Window {
    fn starting_now(warmup: Duration, measured: Duration) -> Self {
        let measure_from = Instant::now() + warmup;
        Window {
            measure_from,
            until: measure_from + measured,
        }
    }
}

/// User plus system CPU time of a process so far, from `/proc/PID/stat` (fields 14 and
/// 15, in the kernel's fixed USER_HZ of 100 ticks per second); None where unreadable.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The CPU time of this process and of `server` between the start of `window`'s measured
/// part and its end, or `done`, whichever comes first.
async fn cpu_over(
    window: Window,
    server: Option<u32>,
    done: tokio::sync::oneshot::Receiver<()>,
) -> (Option<Duration>, Option<Duration>) {
    let server = server.map(|p| p.to_string());
    let read = || (cpu_time("self"), server.as_deref().and_then(cpu_time));
    tokio::time::sleep_until(window.measure_from.into()).await;
    let before = read();
    tokio::select! {
        _ = tokio::time::sleep_until(window.until.into()) => {}
        _ = done => {}
    }
    let after = read();
    let delta = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
    (delta(before.0, after.0), delta(before.1, after.1))
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.clients.contains(&0) {
        bail!("--clients must be at least 1");
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(args))
}

async fn connect(args: &Args) -> Result<Client> {
    Client::connector()
        .with_session_timeout(Duration::from_millis(args.session_timeout_ms))
        .connect(&args.server)
        .await
        .with_context(|| format!("connecting to {}", args.server))
}

async fn run(args: Args) -> Result<()> {
    let admin = connect(&args).await?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let root = format!("/coord-bench-{stamp}");
    let acl = CreateMode::Persistent.with_acls(Acls::anyone_all());
    admin
        .create(&root, b"", &acl)
        .await
        .with_context(|| format!("creating {root}"))?;

    let data = Arc::new(vec![b'x'; args.data_size]);
    let warmup = Duration::from_secs_f64(args.warmup_secs);
    let measured = Duration::from_secs_f64(args.secs);
    // Nodes this run has created (or tried to: a failed create is counted too).
    let mut nodes = 1u64;

    let has_ops_phase = args
        .phases
        .iter()
        .any(|p| matches!(p, Phase::Create | Phase::Set | Phase::Get));
    for &count in args.clients.iter().filter(|_| has_ops_phase) {
        let base = format!("{root}/{count}c");
        let sessions = open_sessions(&args, &admin, &base, count).await?;
        nodes += 1 + count as u64;
        // Nodes each client has created so far; the set and get phases use them.
        let mut created = vec![0usize; count];
        for &phase in &args.phases {
            if !matches!(phase, Phase::Create | Phase::Set | Phase::Get) {
                continue;
            }
            if phase != Phase::Create {
                // The set and get phases need at least one node per client.
                for (i, client) in sessions.iter().enumerate() {
                    if created[i] == 0 {
                        client
                            .create(&format!("{base}/c{i}/n0"), &data, &acl)
                            .await?;
                        created[i] = 1;
                        nodes += 1;
                    }
                }
            }
            let before: usize = created.iter().sum();
            let window = Window::starting_now(warmup, measured);
            let (done, finished) = tokio::sync::oneshot::channel();
            let cpu = tokio::spawn(cpu_over(window, args.server_pid, finished));
            let mut result = run_ops_phase(
                phase,
                &sessions,
                &base,
                &mut created,
                &data,
                window,
                args.max_ops,
            )
            .await?;
            let _ = done.send(());
            result.cpu = cpu.await.context("CPU sampler panicked")?;
            nodes += (created.iter().sum::<usize>() - before) as u64;
            println!("{}", result.json(&args.label, nodes));
        }
        drop(sessions);
    }

    for &phase in &args.phases {
        if matches!(phase, Phase::Watch | Phase::Pwatch) {
            let path = format!("{root}/{}", phase.name());
            admin.create(&path, &data, &acl).await?;
            nodes += 1;
            let result = run_watch_phase(&args, phase, &path, &data, warmup, measured).await?;
            println!("{}", result.json(&args.label, nodes));
        }
    }

    Ok(())
}

/// Opens `count` sessions, each with its own parent node `{base}/c{i}` under a new `base`.
async fn open_sessions(
    args: &Args,
    admin: &Client,
    base: &str,
    count: usize,
) -> Result<Vec<Client>> {
    let acl = CreateMode::Persistent.with_acls(Acls::anyone_all());
    admin
        .create(base, b"", &acl)
        .await
        .with_context(|| format!("creating {base}"))?;
    let mut sessions = Vec::with_capacity(count);
    for i in 0..count {
        let client = connect(args).await?;
        client.create(&format!("{base}/c{i}"), b"", &acl).await?;
        sessions.push(client);
    }
    Ok(sessions)
}

/// Runs one operation phase on all `sessions` at once; `created` holds, per client, how
/// many nodes it has under its parent, and is updated by creates.
async fn run_ops_phase(
    phase: Phase,
    sessions: &[Client],
    base: &str,
    created: &mut [usize],
    data: &Arc<Vec<u8>>,
    window: Window,
    max_ops: u64,
) -> Result<PhaseResult> {
    let budget = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(sessions.len());
    for (i, client) in sessions.iter().enumerate() {
        let client = client.clone();
        let parent = format!("{base}/c{i}");
        let existing = created[i];
        let data = Arc::clone(data);
        let budget = Arc::clone(&budget);
        tasks.push(tokio::spawn(async move {
            client_loop(
                client, phase, parent, existing, data, window, budget, max_ops,
            )
            .await
        }));
    }
    let mut ops = 0u64;
    let mut errors = 0u64;
    let mut latencies = Vec::new();
    let mut last_done = window.measure_from;
    for (i, task) in tasks.into_iter().enumerate() {
        let outcome = task.await.context("client task panicked")?;
        ops += outcome.latencies_us.len() as u64;
        errors += outcome.errors;
        latencies.extend_from_slice(&outcome.latencies_us);
        if let Some(done) = outcome.last_done {
            last_done = last_done.max(done);
        }
        created[i] += outcome.created;
    }
    latencies.sort_unstable();
    Ok(PhaseResult {
        phase,
        clients: sessions.len(),
        ops,
        errors,
        elapsed: last_done.saturating_duration_since(window.measure_from),
        latencies_us: latencies,
        cpu: (None, None),
    })
}

/// One client's loop: one request in flight, until the window closes or the
/// shared budget of measured operations is spent.
#[allow(clippy::too_many_arguments)]
async fn client_loop(
    client: Client,
    phase: Phase,
    parent: String,
    existing: usize,
    data: Arc<Vec<u8>>,
    window: Window,
    budget: Arc<AtomicU64>,
    max_ops: u64,
) -> ClientOutcome {
    let acl = CreateMode::Persistent.with_acls(Acls::anyone_all());
    // Paths of the nodes this client already has (set/get); formatted once, not per request.
    let paths: Vec<String> = if phase == Phase::Create {
        Vec::new()
    } else {
        (0..existing).map(|k| format!("{parent}/n{k}")).collect()
    };
    let mut outcome = ClientOutcome::default();
    let mut next = 0usize;
    loop {
        let start = Instant::now();
        if start >= window.until {
            break;
        }
        let measuring = start >= window.measure_from;
        if measuring && budget.fetch_add(1, Ordering::Relaxed) >= max_ops {
            break;
        }
        let ok = match phase {
            Phase::Create => {
                let path = format!("{parent}/n{}", existing + outcome.created);
                // A failed create still consumes the name: it may exist after a lost reply.
                outcome.created += 1;
                client.create(&path, &data, &acl).await.is_ok()
            }
            Phase::Set => {
                let ok = client
                    .set_data(&paths[next % paths.len()], &data, None)
                    .await
                    .is_ok();
                next += 1;
                ok
            }
            Phase::Get => {
                let ok = client.get_data(&paths[next % paths.len()]).await.is_ok();
                next += 1;
                ok
            }
            Phase::Watch | Phase::Pwatch => true,
        };
        let done = Instant::now();
        if measuring {
            if ok {
                outcome.latencies_us.push(micros(done - start));
                outcome.last_done = Some(done);
            } else {
                outcome.errors += 1;
            }
        }
    }
    outcome
}

async fn run_watch_phase(
    args: &Args,
    phase: Phase,
    path: &str,
    data: &[u8],
    warmup: Duration,
    measured: Duration,
) -> Result<PhaseResult> {
    let watcher = connect(args).await?;
    let setter = connect(args).await?;
    let mut persistent = if phase == Phase::Pwatch {
        Some(watcher.watch(path, AddWatchMode::Persistent).await?)
    } else {
        None
    };
    let window = Window::starting_now(warmup, measured);
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    let mut rounds = 0u64;
    let mut last_done = window.measure_from;
    let event_timeout = Duration::from_secs(5);
    loop {
        let now = Instant::now();
        if now >= window.until || rounds >= args.watch_rounds {
            break;
        }
        let measuring = now >= window.measure_from;
        let elapsed = if let Some(persistent) = persistent.as_mut() {
            let start = Instant::now();
            let set = setter.set_data(path, data, None);
            let event = async {
                loop {
                    let event = persistent.changed().await;
                    if event.event_type == EventType::NodeDataChanged {
                        return Instant::now();
                    }
                }
            };
            let (set, seen) = tokio::join!(set, tokio::time::timeout(event_timeout, event));
            match (set, seen) {
                (Ok(_), Ok(seen)) => Some(seen - start),
                _ => None,
            }
        } else {
            // Arming the one-shot watch is not timed; only set → event is.
            let (_, _, oneshot) = watcher.get_and_watch_data(path).await?;
            let start = Instant::now();
            let set = setter.set_data(path, data, None);
            let event = async {
                let event = oneshot.changed().await;
                (event.event_type, Instant::now())
            };
            let (set, seen) = tokio::join!(set, tokio::time::timeout(event_timeout, event));
            match (set, seen) {
                (Ok(_), Ok((EventType::NodeDataChanged, seen))) => Some(seen - start),
                _ => None,
            }
        };
        if measuring {
            rounds += 1;
            match elapsed {
                Some(elapsed) => {
                    latencies.push(micros(elapsed));
                    last_done = Instant::now();
                }
                None => errors += 1,
            }
        }
    }
    latencies.sort_unstable();
    Ok(PhaseResult {
        phase,
        clients: 2,
        ops: latencies.len() as u64,
        errors,
        elapsed: last_done.saturating_duration_since(window.measure_from),
        latencies_us: latencies,
        cpu: (None, None),
    })
}
