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

    /// Starts the process in a fresh temp dir, on port 0.
    pub fn start(self) -> anyhow::Result<Process> {
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
        p.launch("127.0.0.1:0")?;
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
        let mut cmd = Command::new(&self.bin);
        cmd.arg(&self.spec.listen_flag).arg(listen);
        if let Some(flag) = &self.spec.data_dir_flag {
            cmd.arg(flag).arg(self.data_dir());
        }
        cmd.args(&self.spec.args);
        for (k, v) in &self.spec.envs {
            cmd.env(k, v);
        }
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
