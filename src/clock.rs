//! Precise waiting, for the send schedule and for the twin's token timing.
//!
//! tokio's timer wheel ticks once per millisecond and fires up to a tick late. That is the whole
//! error budget of a send schedule (p99 lateness under 1 ms) and more than the twin's TTFT may
//! drift (a load test must be able to check a 20 ms TTFT to 0.5 ms). Two tools instead:
//! - [`sleep_until`] for a dedicated std thread (the harness's pacer): nanosleep with the
//!   thread's timer slack cut to 1 ns, then a spin over the last few microseconds;
//! - [`Timer`], one thread that wakes async tasks at their deadline (the twin's token
//!   emitter), typically within tens of microseconds; under load it fires the deadlines of
//!   one 100 µs granule together (at 4,000 streams/s one wake-up per deadline was a tenth of
//!   the twin's core).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The last stretch before a deadline that [`sleep_until`] spins instead of sleeping.
const SPIN: Duration = Duration::from_micros(20);

/// Asks Linux to wake this thread's timed sleeps on time (the default slack is 50 µs).
fn tighten_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only affects this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// Blocks the calling (non-async) thread until `deadline`.
pub fn sleep_until(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > SPIN {
            std::thread::sleep(left - SPIN);
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Prepares the calling thread for [`sleep_until`] (call once, at the thread's start): tight
/// timer slack, and a raised scheduling priority where the user may raise it (root or
/// CAP_SYS_NICE), so a busy machine wakes the pacer first. Returns whether the priority was
/// raised.
pub fn precise_thread() -> bool {
    tighten_timer_slack();
    raise_priority()
}

/// [`precise_thread`] for the pacer alone: real-time where allowed ([`real_time`]), else the
/// raised nice value.
pub fn pacer_thread() -> bool {
    tighten_timer_slack();
    real_time() || raise_priority()
}

/// Puts the calling thread in the real-time class at the lowest real-time priority where the
/// user may (root or CAP_SYS_NICE): it then runs the moment it wakes, where a raised nice value
/// still waits out the running worker's time slice (milliseconds under EEVDF, on a core the
/// pacer shares with a busy worker). Safe for the pacer: it sleeps all but the last 20 µs
/// before each send. Returns whether it did.
fn real_time() -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: sched_setscheduler reads a plain struct owned here and affects only this thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
        let param = libc::sched_param { sched_priority: 1 };
        libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Raises the calling thread's scheduling priority where the user may (root or
/// CAP_SYS_NICE); returns whether it did.
pub fn raise_priority() -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take plain integers and affect only this thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, -10) == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Sets the calling thread to nice 0 (threads inherit their creator's raised priority): for
/// bookkeeping that shares a core with the workers. Below the workers where they are raised,
/// so it yields to them, yet never starved: under `SCHED_IDLE` a saturated core never ran it
/// and the records queued for it grew without bound (measured: 626 MB of RSS at 2,000 req/s on
/// one saturated core, against 210 MB with the collector inside the runtime). Anyone may lower
/// their own thread.
pub fn ordinary_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take plain values and affect only this thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 0);
    }
}

/// Raises the open-file limit to its hard limit: under open-loop load every request in flight
/// holds a socket, and running out is the client's failure, not the target's. Returns the soft
/// limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit read and write a plain struct owned here.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
        Some(lim.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

struct Entry {
    at: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

/// A timer thread for async tasks that need sub-millisecond wake-ups.
#[derive(Clone)]
pub struct Timer {
    shared: Arc<(Mutex<Queue>, Condvar)>,
}

impl Timer {
    /// The process-wide timer (its thread starts on first use and lives as long as the process).
    pub fn global() -> &'static Timer {
        static TIMER: OnceLock<Timer> = OnceLock::new();
        TIMER.get_or_init(Timer::start)
    }

    fn start() -> Timer {
        let t = Timer {
            shared: Arc::new((Mutex::new(Queue::default()), Condvar::new())),
        };
        let shared = t.shared.clone();
        std::thread::Builder::new()
            .name("twin-timer".into())
            .spawn(move || fire_loop(&shared))
            .expect("the timer thread starts");
        t
    }

    /// Resolves at `deadline` (at once if it has passed).
    pub async fn sleep_until(&self, deadline: Instant) {
        if Instant::now() >= deadline {
            return;
        }
        let (wake, woken) = oneshot::channel();
        {
            let (lock, cv) = &*self.shared;
            let mut q = lock.lock().expect("timer lock");
            let earliest = q.heap.peek().is_none_or(|Reverse(e)| deadline < e.at);
            q.seq += 1;
            let seq = q.seq;
            q.heap.push(Reverse(Entry {
                at: deadline,
                seq,
                wake,
            }));
            if earliest {
                cv.notify_one();
            }
        }
        let _ = woken.await;
    }
}

/// The shortest time the timer thread sleeps between firings.
const FIRE_GRANULE: Duration = Duration::from_micros(100);

fn fire_loop(shared: &(Mutex<Queue>, Condvar)) {
    tighten_timer_slack();
    let (lock, cv) = shared;
    let mut q = lock.lock().expect("timer lock");
    loop {
        let now = Instant::now();
        while q.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            let Reverse(e) = q.heap.pop().expect("peeked");
            let _ = e.wake.send(()); // the waiter may be gone (client left)
        }
        // Under load, deadlines a few microseconds apart are fired together, one wake-up per
        // granule, rather than one each: never early, at most `FIRE_GRANULE` late.
        let next = q.heap.peek().map(|Reverse(e)| e.at.max(now + FIRE_GRANULE));
        q = match next {
            None => cv.wait(q).expect("timer lock"),
            Some(at) => cv.wait_timeout(q, at - now).expect("timer lock").0,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timer_wakes_in_deadline_order_and_never_early() {
        let t = Timer::global();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for ms in [30u64, 10, 20] {
            let d = start + Duration::from_millis(ms);
            tasks.push(tokio::spawn(async move {
                t.sleep_until(d).await;
                (ms, Instant::now() >= d)
            }));
        }
        for task in tasks {
            let (ms, on_time) = task.await.unwrap();
            assert!(on_time, "woke before its {ms} ms deadline");
        }
    }

    #[test]
    fn sleep_until_is_never_early() {
        precise_thread();
        let d = Instant::now() + Duration::from_millis(3);
        sleep_until(d);
        assert!(Instant::now() >= d);
    }
}
