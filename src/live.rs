//! The live view: shared run counters, and a progress line on a terminal (rate, in flight,
//! errors, running TTFT p99). Quiet under CI (`CI` set) or when stderr is not a terminal.
//!
//! In: counters the dispatcher and the results collector update. Out: a redrawn stderr line.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters shared by the dispatcher, the collector and the view.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub sent: AtomicU64,
    pub done: AtomicU64,
    pub errors: AtomicU64,
    pub in_flight: AtomicI64,
    /// Running TTFT p99 over every feature, microseconds (0: none yet).
    pub ttft_p99_us: AtomicU64,
}

/// Whether to draw: a terminal on stderr and not under CI.
pub fn wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// A running progress line; stops when dropped.
pub struct LiveView {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl LiveView {
    /// Starts the view; `planned` is the request count when the schedule bounds it.
    pub fn start(stats: Arc<LiveStats>, planned: Option<u64>) -> Self {
        let bar = match planned {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::no_length(),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let template = if planned.is_some() {
            "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}"
        } else {
            "{elapsed_precise} {pos} sent {msg}"
        };
        bar.set_style(ProgressStyle::with_template(template).expect("static template"));
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                b.set_position(stats.sent.load(Relaxed));
                b.set_message(line(&stats, start.elapsed()));
            }
        });
        Self { bar, task }
    }
}

fn line(s: &LiveStats, elapsed: Duration) -> String {
    let rate = s.sent.load(Relaxed) as f64 / elapsed.as_secs_f64().max(1e-3);
    let p99 = match s.ttft_p99_us.load(Relaxed) {
        0 => "-".to_owned(),
        us => format!("{:.1} ms", us as f64 / 1000.0),
    };
    format!(
        "{rate:.0} req/s, {} in flight, {} done, {} errors, TTFT p99 {p99}",
        s.in_flight.load(Relaxed),
        s.done.load(Relaxed),
        s.errors.load(Relaxed)
    )
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}
