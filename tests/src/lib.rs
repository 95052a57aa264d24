//! Helpers for integration tests that start the real Fjord binaries.
//!
//! - [`binary`] finds a built binary (`FJORD_BIN_DIR`, else `<workspace>/target/debug`). Tests
//!   never run cargo themselves: a missing binary fails with a message telling to run
//!   `cargo build --workspace` first.
//! - [`Spec`] describes how to start one server; [`Spec::start`] gives it a temp dir of its
//!   own (data under `data/`, stderr appended to `process.log`), starts it with
//!   `--listen 127.0.0.1:0`, and waits for its `listening on ADDR` line.
//! - [`Process`] owns the running server: `kill -9` and restart on the same data dir and the
//!   same port, SIGSTOP/SIGCONT, SIGTERM with a bounded wait. Dropping it kills the process;
//!   if the test is panicking it also prints the tail of the log.
//! - [`zk`] is a raw ZooKeeper-protocol connection built on `fjord_shared::jute`, for tests
//!   that need exact control of the bytes on the wire.
//! - [`fjord`] runs the `fjord` CLI (and [`run_command`] any command) to completion with
//!   stdin, captured output and a timeout; [`Spec::run_to_exit`] does the same for a server
//!   that is expected to refuse to start.
//! - [`json`] is a small JSON reader, so tests can check the documents the servers store
//!   without sharing the servers' own types.
//!
//! Every wait has a timeout and every loop is bounded, so a broken server fails a test
//! instead of hanging it.

// Helpers for tests: a panic here is a failed test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod zk;

use anyhow::{anyhow, bail, Context};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to print `listening on ADDR`.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a process may take to die after SIGKILL (it cannot refuse; this only bounds
/// the wait for the kernel to reap it).
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The directory holding the built binaries: `FJORD_BIN_DIR`, else `<workspace>/target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FJORD_BIN_DIR") {
        return PathBuf::from(dir);
    }
    workspace_root().join("target").join("debug")
}

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The path of a built binary, or an error saying how to build it.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.is_file() {
        bail!(
            "{} does not exist: run `cargo build --workspace` first (or set FJORD_BIN_DIR to the directory holding {name})",
            path.display()
        );
    }
    Ok(path)
}

/// How to start one server process.
#[derive(Debug, Clone)]
pub struct Spec {
    binary: String,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    listen_flag: String,
    data_dir_flag: Option<String>,
    start_timeout: Duration,
}

impl Spec {
    /// A server binary that takes `--listen ADDR` and `--data-dir DIR`.
    pub fn new(binary: &str) -> Self {
        Spec {
            binary: binary.to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            listen_flag: "--listen".to_owned(),
            data_dir_flag: Some("--data-dir".to_owned()),
            start_timeout: START_TIMEOUT,
        }
    }

    /// `fjord-coordinator` with its defaults.
    pub fn coordinator() -> Self {
        Spec::new("fjord-coordinator")
    }

    /// `fjord-broker --id ID --coordinator COORDINATOR` (add e.g. `--session-timeout-ms`).
    pub fn broker(id: u32, coordinator: impl std::fmt::Display) -> Self {
        Spec::new("fjord-broker").args([
            "--id".to_owned(),
            id.to_string(),
            "--coordinator".to_owned(),
            coordinator.to_string(),
        ])
    }

    /// Adds one argument (after `--listen` and `--data-dir`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the process.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The flag that carries the data directory; `None` for a binary without one.
    pub fn data_dir_flag(mut self, flag: Option<&str>) -> Self {
        self.data_dir_flag = flag.map(str::to_owned);
        self
    }

    /// How long to wait for the `listening on` line.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Replaces the value following `flag` (or appends `flag value`). Used to change a
    /// setting between restarts.
    pub fn set_flag(&mut self, flag: &str, value: impl Into<OsString>) {
        let value = value.into();
        if let Some(i) = self.args.iter().position(|a| a == flag) {
            if i + 1 < self.args.len() {
                self.args[i + 1] = value;
                return;
            }
            self.args.push(value);
            return;
        }
        self.args.push(flag.into());
        self.args.push(value);
    }

    /// The command line for one start: `--listen`, the data dir, then the extra arguments.
    fn command(&self, bin: &Path, data_dir: &Path, listen: &str) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg(&self.listen_flag).arg(listen);
        if let Some(flag) = &self.data_dir_flag {
            cmd.arg(flag).arg(data_dir);
        }
        cmd.args(&self.args);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the server in a fresh temp dir, on port 0, until it exits by itself (for a
    /// server that must refuse to start); fails if it still runs after `timeout`, or if it
    /// printed a `listening on` line (then it did start). Its stderr is in the output.
    pub fn run_to_exit(self, timeout: Duration) -> anyhow::Result<Output> {
        let bin = binary(&self.binary)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", self.binary))
            .tempdir()
            .context("cannot create a temp dir")?;
        let cmd = self.command(&bin, &dir.path().join("data"), "127.0.0.1:0");
        let out = run_command(cmd, b"", timeout)?;
        if out.stdout.contains("listening on ") {
            bail!(
                "{} started although it should not have:\n{out}",
                self.binary
            );
        }
        Ok(out)
    }

    /// Starts the process in a fresh temp dir, on port 0.
    pub fn start(self) -> anyhow::Result<Process> {
        self.start_on("127.0.0.1:0")
    }

    /// Starts the process in a fresh temp dir, listening on `listen` (for members of an
    /// ensemble, which must know each other's addresses before they start).
    pub fn start_on(self, listen: &str) -> anyhow::Result<Process> {
        let bin = binary(&self.binary)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", self.binary))
            .tempdir()
            .context("cannot create a temp dir")?;
        let mut p = Process {
            spec: self,
            bin,
            dir,
            child: None,
            addr: None,
            starts: 0,
            stopped: false,
        };
        p.launch(listen)?;
        Ok(p)
    }
}

/// A running (or killed) server process with its own temp dir. Dropping it kills the process.
#[derive(Debug)]
pub struct Process {
    spec: Spec,
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    addr: Option<SocketAddr>,
    starts: u32,
    stopped: bool,
}

impl Process {
    /// The address the server printed (kept across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("a started process has an address")
    }

    /// `host:port`, as a connect string.
    pub fn connect_string(&self) -> String {
        self.addr().to_string()
    }

    /// The process's own temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory passed with the data-dir flag.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The log file: stderr of every start, each start headed by a marker line.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("process.log")
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The spec, to change flags before a [`Process::restart`].
    pub fn spec_mut(&mut self) -> &mut Spec {
        &mut self.spec
    }

    fn launch(&mut self, listen: &str) -> anyhow::Result<()> {
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("cannot open {}", self.log_path().display()))?;
        let mut cmd = self.spec.command(&self.bin, &self.data_dir(), listen);
        writeln!(log, "==== start #{}: {:?}", self.starts, cmd)?;
        log.flush()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        self.child = Some(child);
        self.stopped = false;

        // A thread reads stdout for as long as the process lives, so the pipe never fills;
        // the first `listening on` line is handed over through the channel.
        let (tx, rx) = mpsc::channel::<Result<SocketAddr, String>>();
        let name = self.spec.binary.clone();
        std::thread::Builder::new()
            .name(format!("{name}-stdout"))
            .spawn(move || {
                let mut sent = false;
                let mut lines = Vec::new();
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if !sent {
                        if let Some(rest) = line.trim().strip_prefix("listening on ") {
                            let parsed = rest
                                .trim()
                                .parse::<SocketAddr>()
                                .map_err(|e| format!("bad address in {line:?}: {e}"));
                            let _ = tx.send(parsed);
                            sent = true;
                            continue;
                        }
                        lines.push(line);
                    }
                }
                if !sent {
                    let _ = tx.send(Err(format!(
                        "stdout closed without a `listening on` line; stdout was {lines:?}"
                    )));
                }
            })?;

        match rx.recv_timeout(self.spec.start_timeout) {
            Ok(Ok(addr)) => {
                self.addr = Some(addr);
                Ok(())
            }
            Ok(Err(why)) => {
                let status = self.reap(Duration::from_secs(5));
                Err(anyhow!(
                    "{name} did not start ({why}); exit status {status:?}\n{}",
                    self.log_tail(30)
                ))
            }
            Err(_) => {
                self.kill9()?;
                Err(anyhow!(
                    "{name} printed no `listening on` line within {:?}\n{}",
                    self.spec.start_timeout,
                    self.log_tail(30)
                ))
            }
        }
    }

    /// Waits up to `timeout` for the child to exit; `None` if it still runs (or none runs).
    fn reap(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => return None,
            }
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) => {
                self.child = None;
                false
            }
            _ => false,
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`, `KILL`, …) with the `kill` command.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("the process is not running")?;
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .context("cannot run `kill`")?;
        if !status.success() {
            bail!("kill -{name} {pid} failed: {status}");
        }
        Ok(())
    }

    /// `kill -9`, then waits for the process to be gone. Does nothing if it is not running.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        // Child::kill sends SIGKILL; a stopped process dies of it too.
        let _ = child.kill();
        match self.reap(KILL_TIMEOUT) {
            Some(_) => Ok(()),
            None => bail!("the process did not die within {KILL_TIMEOUT:?} of SIGKILL"),
        }
    }

    /// Starts the process again on the same data dir and the same address it had before
    /// (killing it first if it still runs). A port briefly taken by someone else is retried
    /// for a few seconds.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9()?;
        let addr = self.addr().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.launch(&addr) {
                Ok(()) => {
                    if self.addr() != addr.parse()? {
                        bail!("restarted on {} instead of {addr}", self.addr());
                    }
                    return Ok(());
                }
                Err(e) if Instant::now() < deadline && attempt < 20 && port_taken(&e) => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => {
                    return Err(
                        e.context(format!("restart on {addr} failed after {attempt} attempts"))
                    )
                }
            }
        }
    }

    /// SIGSTOP: the process freezes (its sockets stay open, it answers nothing).
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal("STOP")?;
        self.stopped = true;
        Ok(())
    }

    /// SIGCONT after [`Process::pause`].
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.signal("CONT")?;
        self.stopped = false;
        Ok(())
    }

    /// SIGTERM, then waits up to `timeout` for the exit status. On timeout the process is
    /// killed and an error returned.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if self.stopped {
            self.resume()?;
        }
        self.signal("TERM")?;
        match self.reap(timeout) {
            Some(status) => Ok(status),
            None => {
                self.kill9()?;
                bail!(
                    "no exit within {timeout:?} of SIGTERM (killed)\n{}",
                    self.log_tail(30)
                )
            }
        }
    }

    /// The last `n` lines of the log, headed by its path.
    pub fn log_tail(&self, n: usize) -> String {
        let path = self.log_path();
        let text = read_tail(&path, 256 * 1024).unwrap_or_else(|e| format!("(cannot read: {e})"));
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(n);
        format!(
            "---- last {} lines of {} ----\n{}\n----",
            lines.len() - start,
            path.display(),
            lines[start..].join("\n")
        )
    }

    /// The current length of the log in bytes: a mark for [`Process::log_since`].
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(self.log_path()).map_or(0, |m| m.len())
    }

    /// The log from byte `mark` (see [`Process::log_len`]) on, as text.
    pub fn log_since(&self, mark: u64) -> String {
        let Ok(mut f) = File::open(self.log_path()) else {
            return String::new();
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(mark)).is_err() || f.read_to_end(&mut buf).is_err() {
            return String::new();
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Waits up to `timeout` for a log line written after `mark` that satisfies `pred`, and
    /// returns it; the error shows the tail of the log. It blocks the thread (it polls the
    /// file), so async tests call it through `block_in_place`.
    pub fn wait_for_log_line(
        &self,
        mark: u64,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log_since(mark).lines().find(|l| pred(l)) {
                return Ok(line.to_owned());
            }
            if Instant::now() >= deadline {
                bail!(
                    "no log line {what} within {timeout:?}\n{}",
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Prints the tail of the log to stderr (the test harness shows it for failed tests).
    pub fn dump_log(&self, n: usize) {
        eprintln!("{}", self.log_tail(n));
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.stopped {
            let _ = self.signal("CONT");
        }
        let _ = self.kill9();
        if std::thread::panicking() {
            self.dump_log(40);
            if std::env::var_os("FJORD_KEEP_TEST_DIRS").is_some() {
                self.dir.disable_cleanup(true);
                eprintln!("kept {}", self.dir.path().display());
            } else {
                eprintln!("(set FJORD_KEEP_TEST_DIRS=1 to keep the process's directory)");
            }
        }
    }
}

/// Whether a failed start was a port taken by someone else (worth retrying).
fn port_taken(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("Address already in use") || text.contains("os error 98")
}

/// The last `max` bytes of a file, as text.
fn read_tail(path: &Path, max: u64) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A small deterministic PRNG (xorshift64*), so a failing run can be repeated from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed non-zero value).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The seed from env `FJORD_TEST_SEED`, else `default`; printed so it can be reused.
    pub fn from_env(default: u64) -> Self {
        let seed = std::env::var("FJORD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("seed {seed} (set FJORD_TEST_SEED to repeat)");
        Rng::new(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..hi` (`lo` if the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }
}

/// What a command that ran to completion did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Output {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Fails (showing everything) unless it exited with status 0.
    pub fn ok(self) -> anyhow::Result<Output> {
        if !self.success() {
            bail!("command failed:\n{self}");
        }
        Ok(self)
    }

    /// The non-empty lines of stdout.
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\n{} after {:?}\n--- stdout ---\n{}--- stderr ---\n{}---",
            self.command, self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with `stdin` as its input until it exits, capturing stdout and stderr. If it
/// still runs after `timeout` it is killed and an error (with what it printed) returned.
pub fn run_command(mut cmd: Command, stdin: &[u8], timeout: Duration) -> anyhow::Result<Output> {
    let command = format!("{cmd:?}");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {command}"))?;
    // Threads feed stdin and drain both pipes, so a chatty process never blocks on a
    // full pipe while we wait for it.
    let mut input = child.stdin.take().context("no stdin pipe")?;
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().context("no stdout pipe")?));
    let err = drain(Box::new(child.stderr.take().context("no stderr pipe")?));
    let deadline = started + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let _ = writer.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            command,
            status,
            stdout,
            stderr,
            elapsed,
        }),
        None => bail!(
            "still running after {timeout:?} (killed): {command}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}---"
        ),
    }
}

/// Runs the `fjord` CLI with `args`, `stdin` as its input, for at most `timeout`.
pub fn fjord<I, S>(args: I, stdin: &str, timeout: Duration) -> anyhow::Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(binary("fjord")?);
    cmd.args(args);
    run_command(cmd, stdin.as_bytes(), timeout)
}

pub mod json {
    //! A small JSON reader (RFC 8259) for checking stored documents in tests. Objects keep
    //! their keys in order, duplicates included, so a test can notice them.

    use anyhow::{bail, Context};

    /// A parsed JSON value.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        /// The number as written (so big integers are not rounded).
        Number(String),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    impl Value {
        /// The member `key` of an object (the first, if repeated).
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }

        /// The string, if this is one.
        pub fn as_str(&self) -> Option<&str> {
            match self {
                Value::String(s) => Some(s),
                _ => None,
            }
        }

        /// The number as an integer, if this is an integral number.
        pub fn as_i64(&self) -> Option<i64> {
            match self {
                Value::Number(n) => n.parse().ok(),
                _ => None,
            }
        }

        /// The elements, if this is an array.
        pub fn as_array(&self) -> Option<&[Value]> {
            match self {
                Value::Array(a) => Some(a),
                _ => None,
            }
        }

        /// The members, if this is an object.
        pub fn as_object(&self) -> Option<&[(String, Value)]> {
            match self {
                Value::Object(m) => Some(m),
                _ => None,
            }
        }
    }

    /// Parses one JSON document (surrounding whitespace allowed, nothing else).
    pub fn parse(text: &str) -> anyhow::Result<Value> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0).with_context(|| format!("bad JSON: {text:?}"))?;
        p.ws();
        if p.i != p.s.len() {
            bail!("trailing bytes at {} in JSON: {text:?}", p.i);
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
        }

        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }

        fn eat(&mut self, b: u8) -> anyhow::Result<()> {
            if self.peek() != Some(b) {
                bail!("expected {:?} at {}", b as char, self.i);
            }
            self.i += 1;
            Ok(())
        }

        fn value(&mut self, depth: usize) -> anyhow::Result<Value> {
            if depth > 64 {
                bail!("nested too deeply");
            }
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.i += 1;
                    let mut members = Vec::new();
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return Ok(Value::Object(members));
                    }
                    loop {
                        self.ws();
                        let key = self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        members.push((key, self.value(depth + 1)?));
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Value::Object(members));
                            }
                            _ => bail!("expected ',' or '}}' at {}", self.i),
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        return Ok(Value::Array(items));
                    }
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Value::Array(items));
                            }
                            _ => bail!("expected ',' or ']' at {}", self.i),
                        }
                    }
                }
                Some(b'"') => Ok(Value::String(self.string()?)),
                Some(b't') => self.word("true", Value::Bool(true)),
                Some(b'f') => self.word("false", Value::Bool(false)),
                Some(b'n') => self.word("null", Value::Null),
                Some(b'-' | b'0'..=b'9') => {
                    let start = self.i;
                    while matches!(
                        self.peek(),
                        Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    ) {
                        self.i += 1;
                    }
                    let n = std::str::from_utf8(&self.s[start..self.i])?;
                    if n.parse::<f64>().is_err() {
                        bail!("bad number {n:?}");
                    }
                    Ok(Value::Number(n.to_owned()))
                }
                _ => bail!("unexpected input at {}", self.i),
            }
        }

        fn word(&mut self, w: &str, v: Value) -> anyhow::Result<Value> {
            if !self.s[self.i..].starts_with(w.as_bytes()) {
                bail!("expected {w} at {}", self.i);
            }
            self.i += w.len();
            Ok(v)
        }

        fn string(&mut self) -> anyhow::Result<String> {
            self.eat(b'"')?;
            let mut out = String::new();
            loop {
                let start = self.i;
                while !matches!(self.peek(), None | Some(b'"' | b'\\')) {
                    self.i += 1;
                }
                out.push_str(std::str::from_utf8(&self.s[start..self.i])?);
                match self.peek() {
                    Some(b'"') => {
                        self.i += 1;
                        return Ok(out);
                    }
                    Some(b'\\') => {
                        let e = *self.s.get(self.i + 1).context("unterminated escape")?;
                        self.i += 2;
                        match e {
                            b'"' => out.push('"'),
                            b'\\' => out.push('\\'),
                            b'/' => out.push('/'),
                            b'b' => out.push('\u{8}'),
                            b'f' => out.push('\u{c}'),
                            b'n' => out.push('\n'),
                            b'r' => out.push('\r'),
                            b't' => out.push('\t'),
                            b'u' => {
                                let hex =
                                    self.s.get(self.i..self.i + 4).context("short \\u escape")?;
                                let code = u32::from_str_radix(std::str::from_utf8(hex)?, 16)?;
                                self.i += 4;
                                // Surrogate pairs are not needed by the tests; a lone
                                // surrogate becomes U+FFFD.
                                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                            }
                            _ => bail!("bad escape at {}", self.i),
                        }
                    }
                    _ => bail!("unterminated string"),
                }
            }
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `fut` for at most `timeout`, failing with `what` on timeout.
pub async fn within<T>(
    timeout: Duration,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| anyhow!("timed out after {timeout:?}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let err = binary("no-such-fjord-binary").unwrap_err().to_string();
        assert!(err.contains("cargo build --workspace"), "{err}");
        assert!(err.contains("no-such-fjord-binary"), "{err}");
    }

    #[test]
    fn set_flag_replaces_or_appends() {
        let mut s = Spec::coordinator().args(["--tick-ms", "100"]);
        s.set_flag("--tick-ms", "200");
        s.set_flag("--snapshot-txns", "50");
        assert_eq!(s.args, ["--tick-ms", "200", "--snapshot-txns", "50"]);
    }

    #[test]
    fn broker_spec_carries_id_and_coordinator() {
        let s = Spec::broker(3, "127.0.0.1:2181").args(["--session-timeout-ms", "2000"]);
        assert_eq!(s.binary, "fjord-broker");
        assert_eq!(
            s.args,
            [
                "--id",
                "3",
                "--coordinator",
                "127.0.0.1:2181",
                "--session-timeout-ms",
                "2000"
            ]
        );
    }

    #[test]
    fn run_command_captures_output_and_bounds_the_wait() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat; echo err >&2; exit 3"]);
        let out = run_command(cmd, b"hello\n", Duration::from_secs(10)).unwrap();
        assert_eq!(out.status.code(), Some(3), "{out}");
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("hello\n", "err\n")
        );

        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let started = Instant::now();
        let err = run_command(cmd, b"", Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("still running"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn json_reads_what_the_servers_write() {
        let v = json::parse(
            r#" {"version":5,"host":"h","port":9092,"endpoints":["PLAINTEXT://h:9092"],"rack":null,"x":{"a":[true,false,-1.5e3]},"s":"q\"\u0041\n"} "#,
        )
        .unwrap();
        assert_eq!(v.get("version").and_then(json::Value::as_i64), Some(5));
        assert_eq!(v.get("host").and_then(json::Value::as_str), Some("h"));
        assert_eq!(v.get("rack"), Some(&json::Value::Null));
        assert_eq!(
            v.get("endpoints")
                .and_then(json::Value::as_array)
                .map(<[_]>::len),
            Some(1)
        );
        assert_eq!(v.get("s").and_then(json::Value::as_str), Some("q\"A\n"));
        for bad in ["", "{", "{\"a\":}", "[1,]", "{} x", "\"abc", "tru"] {
            assert!(json::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        for _ in 0..1000 {
            let x = a.range(10, 20);
            assert_eq!(x, b.range(10, 20));
            assert!((10..20).contains(&x));
        }
        assert_eq!(Rng::new(0).range(5, 5), 5);
    }
}
