//! The dispatcher: when each request goes.
//!
//! In: a [`Schedule`], the prepared requests, the [`Target`] and the [`Options`]. Out: one
//! [`RequestRecord`] per scheduled request on a channel (sent, skipped, or cut off), and the
//! number of requests scheduled.
//!
//! A dedicated pacer thread sleeps precisely until each intended instant and spawns the request
//! on its own tokio task, however slow the server is: an open loop, so a stalled server shows as
//! growing latency, never as a thinner schedule (no coordinated omission). A closed-loop
//! schedule instead waits for a free concurrency slot before each send.
//!
//! Concurrency cap (`load.concurrency`), open loop: under `queue` a request that finds every
//! slot busy waits first come first served, and its wait is recorded (`queue_wait_ms`); under
//! `skip` it is not sent and is recorded as skipped. Stopping: `stop` ends the schedule; `cut`
//! cancels requests still in flight (or queued), which are recorded as cut off with whatever
//! they had received.

use super::{send, unsent, Prepared, Slot, Target};
use crate::live::LiveStats;
use crate::measure::{Disposition, RequestRecord};
use crate::plan::CapPolicy;
use crate::schedule::{Planned, Schedule};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

/// Bounds and cap of one dispatch.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stop scheduling at this offset from the run's start.
    pub window: Option<Duration>,
    /// Requests intended before this offset are flagged as warm-up.
    pub warmup: Duration,
    pub concurrency: Option<usize>,
    pub policy: CapPolicy,
}

/// Everything a request task shares with the others.
struct Shared {
    target: Arc<Target>,
    requests: Arc<Vec<Prepared>>,
    out: mpsc::UnboundedSender<RequestRecord>,
    cut: watch::Receiver<bool>,
    live: Arc<LiveStats>,
    policy: CapPolicy,
    cap: Option<Arc<Semaphore>>,
}

/// Starts the pacer thread. The returned receiver yields the number of requests scheduled once
/// the schedule has ended (bounds reached, or `stop`).
#[allow(clippy::too_many_arguments)]
pub fn start(
    target: Arc<Target>,
    requests: Arc<Vec<Prepared>>,
    schedule: Schedule,
    opts: Options,
    out: mpsc::UnboundedSender<RequestRecord>,
    stop: watch::Receiver<bool>,
    cut: watch::Receiver<bool>,
    live: Arc<LiveStats>,
) -> oneshot::Receiver<u64> {
    let (done_tx, done_rx) = oneshot::channel();
    let handle = tokio::runtime::Handle::current();
    let shared = Arc::new(Shared {
        target,
        requests,
        out,
        cut,
        live,
        policy: opts.policy,
        cap: opts.concurrency.map(|n| Arc::new(Semaphore::new(n))),
    });
    std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            let _ = crate::clock::pacer_thread();
            let n = pace(&handle, &shared, schedule, &opts, &stop);
            let _ = done_tx.send(n);
        })
        .expect("the pacer thread starts");
    done_rx
}

fn pace(
    handle: &tokio::runtime::Handle,
    shared: &Arc<Shared>,
    schedule: Schedule,
    opts: &Options,
    stop: &watch::Receiver<bool>,
) -> u64 {
    let run_start = shared.target.run_start;
    // Every schedule, the closed loop's too, starts at the run's instant zero.
    if !sleep_until_unless_stopped(run_start, stop) {
        return 0;
    }
    let mut n: u64 = 0;
    let seq = schedule.seq;
    for planned in schedule.sends {
        if stopped(stop) || schedule.max_requests.is_some_and(|m| n >= m) {
            break;
        }
        let Some((intended, permit)) = wait_for_turn(handle, shared, planned, opts, stop) else {
            break;
        };
        // Sending stops at the window's end in wall time, even when the pacer is behind.
        if opts.window.is_some_and(|w| Instant::now() >= run_start + w) {
            break;
        }
        let slot = Slot {
            seq: seq.of(n) as usize,
            intended,
            started: intended,
            warmup: intended.saturating_duration_since(run_start) < opts.warmup,
        };
        shared.live.sent.fetch_add(1, Relaxed);
        handle.spawn(request(shared.clone(), planned.index, slot, permit));
        n += 1;
    }
    n
}

/// Waits until `planned` is due; `None` when the run must stop sending instead.
fn wait_for_turn(
    handle: &tokio::runtime::Handle,
    shared: &Shared,
    planned: Planned,
    opts: &Options,
    stop: &watch::Receiver<bool>,
) -> Option<(Instant, Option<OwnedSemaphorePermit>)> {
    let run_start = shared.target.run_start;
    match planned.at {
        Some(offset) => {
            if opts.window.is_some_and(|w| offset >= w) {
                return None;
            }
            let at = run_start + offset;
            sleep_until_unless_stopped(at, stop).then_some((at, None))
        }
        None => {
            let sem = shared.cap.clone().expect("a closed loop always has a cap");
            let mut stop = stop.clone();
            let permit = handle.block_on(async move {
                tokio::select! {
                    p = sem.acquire_owned() => p.ok(),
                    _ = stop.wait_for(|s| *s) => None,
                }
            })?;
            let now = Instant::now();
            let over = opts.window.is_some_and(|w| now - run_start >= w);
            (!over).then_some((now, Some(permit)))
        }
    }
}

/// Whether sending must stop: the run said so, or a stop signal arrived (read straight from the
/// signal thread's count, so a saturated runtime cannot delay it).
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || crate::signals::received() > 0
}

/// Sleeps until `at` in slices, so a stop is noticed; `false` if stopped.
fn sleep_until_unless_stopped(at: Instant, stop: &watch::Receiver<bool>) -> bool {
    const SLICE: Duration = Duration::from_millis(20);
    loop {
        if stopped(stop) {
            return false;
        }
        if at <= Instant::now() + SLICE {
            crate::clock::sleep_until(at);
            return !stopped(stop);
        }
        std::thread::sleep(SLICE);
    }
}

/// Resolves when the run cuts in-flight requests off (never, if nobody can any more).
async fn cut_off(mut cut: watch::Receiver<bool>) {
    if cut.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn request(
    s: Arc<Shared>,
    index: usize,
    mut slot: Slot,
    permit: Option<OwnedSemaphorePermit>,
) {
    slot.started = Instant::now();
    let p = &s.requests[index];
    let record = |d| unsent(&s.target, p, slot, d);
    let _permit = match (permit, &s.cap) {
        (Some(p), _) => Some(p),
        (None, None) => None,
        (None, Some(sem)) => match s.policy {
            CapPolicy::Skip => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    let _ = s.out.send(record(Disposition::Skipped));
                    return;
                }
            },
            CapPolicy::Queue => tokio::select! {
                p = sem.clone().acquire_owned() => p.ok(),
                () = cut_off(s.cut.clone()) => {
                    let _ = s.out.send(record(Disposition::CutOff));
                    return;
                }
            },
        },
    };
    s.live.in_flight.fetch_add(1, Relaxed);
    let rec = send(&s.target, p, slot, cut_off(s.cut.clone())).await;
    s.live.in_flight.fetch_sub(1, Relaxed);
    let _ = s.out.send(rec);
}
