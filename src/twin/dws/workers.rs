//! The twin DWS's own work: a pool of workers that every session's steps take turns on, as the
//! real service's Python process does (one event loop per process: compiling a session's graph
//! and building its prompts holds it while other sessions wait).
//!
//! In: the `[stack.dws]` costs; per session step, a cost to spend. Out: the time spent (queueing
//! for a worker, then the cost), and the pool's metrics in Prometheus text for `/metrics` on the
//! DWS's own port (`dws_*`, the twin's names: the real service exports none of these).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The pool, its gauges and counters.
pub(super) struct Workers {
    size: u32,
    permits: Semaphore,
    busy: AtomicU64,
    waiting: AtomicU64,
    busy_ns: AtomicU64,
    wait_ns: AtomicU64,
    steps: AtomicU64,
}

/// Decrements a gauge when dropped, so a session cancelled while it waits or works leaves the
/// gauges right.
struct Held<'a>(&'a AtomicU64);

impl<'a> Held<'a> {
    fn on(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Relaxed);
        Self(gauge)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Workers {
    pub(super) fn new(size: u32) -> Self {
        Self {
            size,
            permits: Semaphore::new(size as usize),
            busy: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            wait_ns: AtomicU64::new(0),
            steps: AtomicU64::new(0),
        }
    }

    /// Spends `cost` on a worker, waiting for one first when all are busy. Nothing with a zero
    /// cost (the cost model off).
    pub(super) async fn work(&self, cost: Duration) {
        if cost.is_zero() {
            return;
        }
        let queued = Instant::now();
        let permit = {
            let _waiting = Held::on(&self.waiting);
            self.permits.acquire().await
        };
        let Ok(_permit) = permit else { return };
        self.wait_ns.fetch_add(nanos(queued.elapsed()), Relaxed);
        let _busy = Held::on(&self.busy);
        tokio::time::sleep(cost).await;
        self.busy_ns.fetch_add(nanos(cost), Relaxed);
        self.steps.fetch_add(1, Relaxed);
    }

    /// The pool's metrics in Prometheus text exposition format.
    pub(super) fn exposition(&self) -> String {
        let gauge = |name: &str, help: &str, v: f64| {
            format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n")
        };
        let counter = |name: &str, help: &str, v: f64| {
            format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n")
        };
        let secs = |a: &AtomicU64| a.load(Relaxed) as f64 / 1e9;
        [
            gauge("dws_workers", "Workers in the pool.", self.size as f64),
            gauge(
                "dws_workers_busy",
                "Workers spending a session's cost now.",
                self.busy.load(Relaxed) as f64,
            ),
            gauge(
                "dws_sessions_waiting",
                "Session steps waiting for a worker.",
                self.waiting.load(Relaxed) as f64,
            ),
            counter(
                "dws_worker_busy_seconds_total",
                "Worker time spent, summed over workers.",
                secs(&self.busy_ns),
            ),
            counter(
                "dws_worker_wait_seconds_total",
                "Time session steps waited for a worker.",
                secs(&self.wait_ns),
            ),
            counter(
                "dws_worker_steps_total",
                "Session steps worked.",
                self.steps.load(Relaxed) as f64,
            ),
        ]
        .concat()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields until `done` holds (bounded: 2 s), so the test waits on state, not on a timer.
    async fn until(done: impl Fn() -> bool) {
        for _ in 0..2000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the pool never reached the state");
    }

    #[tokio::test]
    async fn a_busy_pool_queues_the_next_step_and_counts_it() {
        let pool = std::sync::Arc::new(Workers::new(1));
        let cost = Duration::from_millis(100);
        let started = Instant::now();
        let spawn = |p: std::sync::Arc<Workers>| tokio::spawn(async move { p.work(cost).await });
        let a = spawn(pool.clone());
        until(|| pool.busy.load(Relaxed) == 1).await;
        let b = spawn(pool.clone());
        until(|| pool.waiting.load(Relaxed) == 1).await;
        assert!(pool.exposition().contains("dws_sessions_waiting 1\n"));
        a.await.unwrap();
        b.await.unwrap();
        // The second step waited for the first: two costs in a row.
        assert!(started.elapsed() >= 2 * cost);
        let text = pool.exposition();
        assert!(
            text.contains("dws_worker_busy_seconds_total 0.2\n"),
            "{text}"
        );
        let waited = text
            .lines()
            .find_map(|l| l.strip_prefix("dws_worker_wait_seconds_total "))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(waited.is_some_and(|w| w > 0.0), "{text}");
        assert!(text.contains("dws_sessions_waiting 0\n"), "{text}");
        assert!(text.contains("dws_workers_busy 0\n"), "{text}");
    }
}
