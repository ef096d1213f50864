//! The harness's own CPU meter: process CPU time from `getrusage`, minus the embedded twin's
//! threads (named `twin-*`), read from `/proc/self/task/*/stat` on Linux. Elsewhere the twin's
//! share cannot be told apart and the figure says so.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// CPU seconds used so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuTimes {
    /// The whole process (user + system).
    pub process_s: f64,
    /// Threads of the embedded twin; `None` when they cannot be measured apart.
    pub twin_s: Option<f64>,
    /// Each of the harness's own threads (twin threads apart).
    pub threads: ThreadSeconds,
    /// Each core this process may run on: (busy, steal, total) clock ticks from `/proc/stat`.
    pub cores: BTreeMap<usize, CoreTicks>,
}

/// CPU seconds per thread: id → (name, seconds).
pub type ThreadSeconds = BTreeMap<u64, (String, f64)>;

/// One core's counters from `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CoreTicks {
    pub busy: u64,
    pub steal: u64,
    pub total: u64,
}

impl CpuTimes {
    pub fn now() -> Self {
        let (twin_s, threads) =
            thread_times().map_or((None, BTreeMap::new()), |(t, h)| (Some(t), h));
        Self {
            process_s: process_cpu_s(),
            twin_s,
            threads,
            cores: core_ticks(),
        }
    }
}

/// The busiest of the harness's own threads over the run.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, schemars::JsonSchema)]
pub struct ThreadBusy {
    pub name: String,
    /// CPU time over wall time (1.0: the thread never left its core).
    pub busy: f64,
}

/// One core over the run (every process on the machine counted).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, schemars::JsonSchema)]
pub struct CoreBusy {
    pub cpu: usize,
    /// Share of the core's time spent running something.
    pub busy: f64,
    /// Share of the core's time the hypervisor ran another guest instead (a virtual machine's
    /// stolen time: nothing in it ran, the harness included).
    pub steal: f64,
}

/// What the harness spent between two readings, over `wall`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, schemars::JsonSchema)]
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
    /// The busiest harness thread (a saturated thread delays what it serves even when the
    /// machine has idle cores). `None` where threads cannot be read.
    pub busiest_thread: Option<ThreadBusy>,
    /// The cores this process may run on, over the run.
    pub cores: Vec<CoreBusy>,
}

impl ClientCpu {
    pub fn between(start: &CpuTimes, end: &CpuTimes, wall: Duration, requests: u64) -> Self {
        let twin = match (start.twin_s, end.twin_s) {
            (Some(a), Some(b)) => Some((b - a).max(0.0)),
            _ => None,
        };
        let cpu_s = (end.process_s - start.process_s - twin.unwrap_or(0.0)).max(0.0);
        let wall_s = wall.as_secs_f64().max(1e-9);
        Self {
            cpu_s,
            twin_cpu_s: twin,
            twin_separated: twin.is_some(),
            cpu_us_per_request: (requests > 0).then(|| cpu_s * 1e6 / requests as f64),
            cores_busy: cpu_s / wall_s,
            busiest_thread: busiest(start, end, wall_s),
            cores: cores_between(start, end),
        }
    }
}

fn busiest(start: &CpuTimes, end: &CpuTimes, wall_s: f64) -> Option<ThreadBusy> {
    end.threads
        .iter()
        .map(|(tid, (name, s))| {
            let before = start.threads.get(tid).map_or(0.0, |(_, b)| *b);
            ThreadBusy {
                name: name.clone(),
                busy: ((s - before) / wall_s).clamp(0.0, 1.0),
            }
        })
        .max_by(|a, b| a.busy.total_cmp(&b.busy))
}

fn cores_between(start: &CpuTimes, end: &CpuTimes) -> Vec<CoreBusy> {
    end.cores
        .iter()
        .filter_map(|(cpu, e)| {
            let s = start.cores.get(cpu)?;
            let total = e.total.checked_sub(s.total).filter(|t| *t > 0)? as f64;
            Some(CoreBusy {
                cpu: *cpu,
                busy: e.busy.saturating_sub(s.busy) as f64 / total,
                steal: e.steal.saturating_sub(s.steal) as f64 / total,
            })
        })
        .collect()
}

/// `/proc/stat`'s per-core counters for the cores this process may use.
fn core_ticks() -> BTreeMap<usize, CoreTicks> {
    let allowed = allowed_cpus();
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return BTreeMap::new();
    };
    stat.lines()
        .filter_map(parse_core_line)
        .filter(|(cpu, _)| allowed.as_ref().is_none_or(|a| a.contains(cpu)))
        .collect()
}

/// `cpuN user nice system idle iowait irq softirq steal …` → (N, ticks).
fn parse_core_line(line: &str) -> Option<(usize, CoreTicks)> {
    let mut fields = line.split_whitespace();
    let cpu: usize = fields.next()?.strip_prefix("cpu")?.parse().ok()?;
    let v: Vec<u64> = fields.take(8).filter_map(|f| f.parse().ok()).collect();
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let (idle, steal) = (v[3] + v[4], v[7]);
    Some((
        cpu,
        CoreTicks {
            busy: total - idle - steal,
            steal,
            total,
        },
    ))
}

/// The cores this process may run on (`None` where that cannot be read).
pub fn allowed_cpus() -> Option<Vec<usize>> {
    #[cfg(target_os = "linux")]
    // SAFETY: sched_getaffinity fills the zeroed set we own; CPU_ISSET reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(
            (0..libc::CPU_SETSIZE as usize)
                .filter(|c| libc::CPU_ISSET(*c, &set))
                .collect(),
        )
    }
    #[cfg(not(target_os = "linux"))]
    None
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

/// CPU seconds of the twin's threads (named `twin-*`) together, and of every other thread by
/// id; `None` off Linux.
fn thread_times() -> Option<(f64, ThreadSeconds)> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (mut twin, mut own) = (0.0, BTreeMap::new());
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let Some((name, t)) = thread_ticks(&stat) else {
            continue;
        };
        let s = t as f64 / ticks;
        if name.starts_with("twin-") {
            twin += s;
        } else if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
            own.insert(tid, (name.to_owned(), s));
        }
    }
    Some((twin, own))
}

/// The thread's name and utime + stime from one `/proc/*/stat` line. The name sits in
/// parentheses and may itself hold spaces, so fields are counted after the last `)`.
fn thread_ticks(stat: &str) -> Option<(&str, u64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the name: state is field 3 of stat(5); utime and stime are fields 14 and 15.
    let t = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((&stat[open + 1..close], t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_parsed_after_the_name() {
        let line = "123 (twin-worker) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(thread_ticks(line), Some(("twin-worker", 300)));
        let odd = "9 (tokio) x) S 1 2 3 4 5 6 7 8 9 10 1 1";
        assert_eq!(thread_ticks(odd), Some(("tokio) x", 2)));
        let core = parse_core_line("cpu1 100 0 50 800 20 5 5 20 0 0").unwrap();
        assert_eq!(
            core,
            (
                1,
                CoreTicks {
                    busy: 160,
                    steal: 20,
                    total: 1000
                }
            )
        );
        assert_eq!(parse_core_line("cpu 1 2 3 4 5 6 7 8"), None);
    }

    #[test]
    fn busy_work_shows_up_as_harness_cpu() {
        let start = CpuTimes::now();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let c = ClientCpu::between(&start, &CpuTimes::now(), t.elapsed(), 10);
        assert!(c.cpu_s > 0.0, "{c:?}");
        if cfg!(target_os = "linux") {
            let b = c
                .busiest_thread
                .as_ref()
                .expect("threads are read on Linux");
            assert!(b.busy > 0.3, "{c:?}");
            assert!(!c.cores.is_empty(), "{c:?}");
        }
        assert!(c.cpu_us_per_request.unwrap() > 0.0);
    }
}
