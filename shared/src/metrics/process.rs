//! The standard `process_*` metrics every Prometheus client exports, read from `/proc`.

use super::Families;

/// Writes CPU time, memory, file descriptors and the start time of this process. On a
/// system without `/proc` the families are left out.
pub fn write(f: &mut Families<'_>) -> std::fmt::Result {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Ok(());
    };
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Ok(());
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    // Linux reports times in clock ticks of 1/100 s (USER_HZ) on every architecture.
    let ticks = 100.0;
    if let (Some(utime), Some(stime)) = (num(14), num(15)) {
        f.counter_f64(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            (utime + stime) / ticks,
        )?;
    }
    if let Some(v) = status_bytes("VmSize:") {
        f.gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            v,
        )?;
    }
    if let Some(v) = status_bytes("VmRSS:") {
        f.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            v,
        )?;
    }
    if let (Some(start), Some(boot)) = (num(22), boot_time()) {
        f.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            boot + start / ticks,
        )?;
    }
    if let Some(fds) = open_fds() {
        f.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            fds as i64,
        )?;
    }
    if let Some(max) = max_fds() {
        f.gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            max,
        )?;
    }
    Ok(())
}

fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

/// A `kB` field of `/proc/self/status` (`VmRSS:`), in bytes.
pub fn status_bytes(key: &str) -> Option<f64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb * 1024.0)
}

/// Open file descriptors of this process.
pub fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

/// The process's limit on open file descriptors.
pub fn max_fds() -> Option<i64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<i64>().ok())
}

#[cfg(test)]
mod tests {
    use crate::metrics::{render, Collector, Families, Format};
    use prometheus_client::encoding::DescriptorEncoder;

    #[derive(Debug)]
    struct P;
    impl Collector for P {
        fn encode(&self, e: DescriptorEncoder) -> std::fmt::Result {
            super::write(&mut Families::new(e))
        }
    }

    #[test]
    fn process_metrics_are_there() {
        let text = render(Format::Prometheus, P).unwrap();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "{name} missing in {text}");
        }
    }
}
