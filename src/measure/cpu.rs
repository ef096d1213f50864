//! The harness's own CPU meter: process CPU time from `getrusage`, minus the embedded twin's
//! threads (named `twin-*`), read from `/proc/self/task/*/stat` on Linux. Elsewhere the twin's
//! share cannot be told apart and the figure says so.

use serde::Serialize;
use std::time::Duration;

/// CPU seconds used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    /// The whole process (user + system).
    pub process_s: f64,
    /// Threads of the embedded twin; `None` when they cannot be measured apart.
    pub twin_s: Option<f64>,
}

impl CpuTimes {
    pub fn now() -> Self {
        Self {
            process_s: process_cpu_s(),
            twin_s: twin_threads_cpu_s(),
        }
    }
}

/// What the harness spent between two readings, over `wall`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ClientCpu {
    /// CPU seconds of the harness itself (the twin's threads excluded when measurable).
    pub cpu_s: f64,
    /// CPU seconds of the embedded twin's threads, when it ran in this process.
    pub twin_cpu_s: Option<f64>,
    /// `false` when the twin's share could not be separated (non-Linux): `cpu_s` includes it.
    pub twin_separated: bool,
    /// Harness CPU per request sent, microseconds.
    pub cpu_us_per_request: Option<f64>,
    /// Harness CPU over wall time (1.0 = one core busy all the time).
    pub cores_busy: f64,
}

impl ClientCpu {
    pub fn between(start: CpuTimes, end: CpuTimes, wall: Duration, requests: u64) -> Self {
        let twin = match (start.twin_s, end.twin_s) {
            (Some(a), Some(b)) => Some((b - a).max(0.0)),
            _ => None,
        };
        let cpu_s = (end.process_s - start.process_s - twin.unwrap_or(0.0)).max(0.0);
        Self {
            cpu_s,
            twin_cpu_s: twin,
            twin_separated: twin.is_some(),
            cpu_us_per_request: (requests > 0).then(|| cpu_s * 1e6 / requests as f64),
            cores_busy: cpu_s / wall.as_secs_f64().max(1e-9),
        }
    }
}

fn process_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Sum of utime + stime of this process's threads whose name starts with `twin-`.
fn twin_threads_cpu_s() -> Option<f64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        total += twin_ticks(&stat).unwrap_or(0) as f64 / ticks;
    }
    Some(total)
}

/// utime + stime from one `/proc/*/stat` line, if the thread is a twin thread. The name sits in
/// parentheses and may itself hold spaces, so fields are counted after the last `)`.
fn twin_ticks(stat: &str) -> Option<u64> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    if !stat[open + 1..close].starts_with("twin-") {
        return None;
    }
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the name: state is field 3 of stat(5); utime and stime are fields 14 and 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_parsed_after_the_name() {
        let line = "123 (twin-worker) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(twin_ticks(line), Some(300));
        assert_eq!(twin_ticks("9 (tokio) x) S 1 2 3 4 5 6 7 8 9 10 1 1"), None);
    }

    #[test]
    fn busy_work_shows_up_as_harness_cpu() {
        let start = CpuTimes::now();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let c = ClientCpu::between(start, CpuTimes::now(), t.elapsed(), 10);
        assert!(c.cpu_s > 0.0, "{c:?}");
        assert!(c.cpu_us_per_request.unwrap() > 0.0);
    }
}
