//! A progress line for long runs (`fjord produce` from a file, `fjord consume --count N`):
//! on stderr, redrawn in place at most four times a second, and only when stderr is a
//! terminal, so nothing extra reaches a pipe or a log file.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const REDRAW: Duration = Duration::from_millis(250);

/// One line of progress.
#[derive(Debug)]
pub struct Progress {
    on: bool,
    started: Instant,
    last: Option<Instant>,
    /// What 100% is (records or bytes), when known.
    goal: Option<u64>,
    unit: &'static str,
    drawn: bool,
}

impl Progress {
    /// A progress line for `unit` (`records`, `bytes`) towards `goal`, shown if `on`.
    pub fn new(on: bool, goal: Option<u64>, unit: &'static str) -> Progress {
        Progress {
            on,
            started: Instant::now(),
            last: None,
            goal,
            unit,
            drawn: false,
        }
    }

    /// Whether stderr is a terminal (the usual `on`).
    pub fn stderr_is_terminal() -> bool {
        std::io::stderr().is_terminal()
    }

    /// The line for `done` units and `records` records after `elapsed`.
    pub fn line(&self, done: u64, records: u64, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(0.001);
        let rate = records as f64 / secs;
        let mut line = match self.goal {
            Some(goal) if goal > 0 => format!(
                "{done}/{goal} {} ({:.0}%)",
                self.unit,
                (done as f64 * 100.0 / goal as f64).min(100.0)
            ),
            _ => format!("{done} {}", self.unit),
        };
        if self.unit != "records" {
            line.push_str(&format!(", {records} records"));
        }
        line.push_str(&format!(", {rate:.0} records/s, {secs:.1} s"));
        line
    }

    /// Redraws the line if it is on and due.
    pub fn update(&mut self, done: u64, records: u64) {
        if !self.on {
            return;
        }
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < REDRAW) {
            return;
        }
        self.last = Some(now);
        let line = self.line(done, records, now.duration_since(self.started));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the line, so what follows starts on a clean one.
    pub fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_well() {
        let p = Progress::new(false, Some(200), "records");
        assert_eq!(
            p.line(50, 50, Duration::from_secs(2)),
            "50/200 records (25%), 25 records/s, 2.0 s"
        );
        let b = Progress::new(false, Some(1000), "bytes");
        assert_eq!(
            b.line(500, 10, Duration::from_secs(1)),
            "500/1000 bytes (50%), 10 records, 10 records/s, 1.0 s"
        );
        let open = Progress::new(false, None, "records");
        assert!(open
            .line(7, 7, Duration::from_secs(1))
            .starts_with("7 records,"));
    }
}
