//! Closed-loop virtual developers, run by goose (the `goose` cargo feature).
//!
//! In: the prepared requests, the [`Target`], the schedule's feature mix and
//! `[load.developers]`. Out: one [`RequestRecord`] per request on the same channel as the
//! open-loop dispatcher's, and the number of requests sent.
//!
//! goose owns what it does well: a user per developer, the ramp (its test plan: `N` users over
//! `ramp_s`, held for `duration_s`, then stopped), and the think time between a developer's
//! requests (its wait time, uniform within `think_spread`). Each goose transaction sends the
//! next request of the mix through [`send`], so streams are timed chunk by chunk in our
//! recorder (goose itself times only to the response headers) and land in the same histograms,
//! results and reports as every other run. A request still running when the developers' time
//! ends gets `grace_s`, then is cut off; a stop signal stops the developers at once.

use super::{send, Channels, Prepared, Slot, Target};
use crate::live::LiveStats;
use crate::measure::RequestRecord;
use crate::plan::DevelopersSpec;
use crate::schedule::Schedule;
use goose::config::GooseConfiguration;
use goose::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How long the developers work, and what a request that outlives them gets.
#[derive(Debug, Clone)]
pub struct Options {
    pub developers: DevelopersSpec,
    /// After the ramp, seconds (whole: goose's test plan counts in seconds).
    pub duration_s: u64,
    pub warmup: Duration,
    pub grace: Duration,
}

/// What every developer shares.
struct Shared {
    target: Arc<Target>,
    requests: Arc<Vec<Prepared>>,
    sends: Mutex<Schedule>,
    sent: AtomicU64,
    /// `max_requests` reached: the developers were told to stop by us, not by a signal.
    exhausted: AtomicBool,
    out: mpsc::UnboundedSender<RequestRecord>,
    cut: watch::Receiver<bool>,
    /// Requests still running at this instant are cut off.
    deadline: Instant,
    warmup: Duration,
    live: Arc<LiveStats>,
}

/// Starts the developers. The receiver yields the number of requests sent once every developer
/// has stopped, or goose's own error.
pub fn start(
    target: Arc<Target>,
    requests: Arc<Vec<Prepared>>,
    schedule: Schedule,
    opts: Options,
    channels: Channels,
) -> oneshot::Receiver<Result<u64, String>> {
    let Channels {
        out,
        mut stop,
        cut,
        live,
    } = channels;
    forward_sigint_once();
    let work = Duration::from_secs(opts.developers.ramp_s + opts.duration_s);
    let shared = Arc::new(Shared {
        deadline: target.run_start + work + opts.grace,
        target,
        requests,
        sends: Mutex::new(schedule),
        sent: AtomicU64::new(0),
        exhausted: AtomicBool::new(false),
        out,
        cut,
        warmup: opts.warmup,
        live,
    });
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let attack = attack(shared.clone(), &opts);
        let stopper = async {
            // A stop signal (or the run's end) tells goose to stop every developer.
            if stop.wait_for(|s| *s).await.is_ok() {
                goose::trigger_killswitch("duo-harness: stop signal");
            }
            std::future::pending::<()>().await;
        };
        let result = tokio::select! {
            r = attack => r,
            () = stopper => unreachable!("the stopper never resolves"),
        };
        let _ = done_tx.send(result.map(|()| shared.sent.load(Relaxed)));
    });
    done_rx
}

/// Builds and runs the goose attack: one scenario, one transaction (the next request).
async fn attack(shared: Arc<Shared>, opts: &Options) -> Result<(), String> {
    let (think_min, think_max) = opts.developers.think_range_s();
    // goose checks a host for its users' own clients, which the developers never use (every
    // request goes through the run's client): the target's URL satisfies it.
    let host = shared.target.base_url.clone();
    let next: TransactionFunction = Arc::new(move |_user| {
        let shared = shared.clone();
        Box::pin(async move {
            one_request(&shared).await;
            Ok(())
        })
    });
    let scenario = scenario!("developer")
        .set_wait_time(
            Duration::from_secs_f64(think_min),
            Duration::from_secs_f64(think_max),
        )
        .map_err(|e| e.to_string())?
        .register_transaction(Transaction::new(next).set_name("request"));
    let users = opts.developers.users;
    let plan = format!(
        "{users},{};{users},{};0,0",
        opts.developers.ramp_s, opts.duration_s
    );
    let configure = || -> Result<Box<GooseAttack>, GooseError> {
        GooseAttack::initialize_with_config(GooseConfiguration::default())?
            .register_scenario(scenario)
            .set_default(GooseDefault::Host, host.as_str())?
            .set_default(GooseDefault::TestPlan, plan.as_str())?
            .set_default(GooseDefault::Quiet, 1)?
            .set_default(GooseDefault::NoMetrics, true)?
            .set_default(GooseDefault::NoTelnet, true)?
            .set_default(GooseDefault::NoWebSocket, true)
    };
    configure()
        .map_err(|e| format!("goose: {e:?}"))?
        .execute()
        .await
        .map(|_| ())
        .map_err(|e| format!("goose: {e:?}"))
}

/// One developer's request: the next of the mix, sent and measured now.
async fn one_request(s: &Shared) {
    let (index, seq) = {
        let mut sends = s.sends.lock().unwrap_or_else(|p| p.into_inner());
        let seq = s.sent.load(Relaxed);
        let planned = match sends.max_requests {
            Some(m) if seq >= m => None,
            _ => sends.sends.next(),
        };
        let Some(planned) = planned else {
            // Every request allowed was sent: the developers stop.
            if !s.exhausted.swap(true, Relaxed) {
                goose::trigger_killswitch("duo-harness: load.max_requests reached");
            }
            return;
        };
        s.sent.store(seq + 1, Relaxed);
        (planned.index, sends.seq.of(seq))
    };
    let now = Instant::now();
    let slot = Slot {
        seq: seq as usize,
        intended: now,
        started: now,
        warmup: now.saturating_duration_since(s.target.run_start) < s.warmup,
    };
    s.live.sent.fetch_add(1, Relaxed);
    s.live.in_flight.fetch_add(1, Relaxed);
    let cancel = async {
        let mut cut = s.cut.clone();
        tokio::select! {
            _ = cut.wait_for(|c| *c) => {}
            () = tokio::time::sleep_until(s.deadline.into()) => {}
        }
    };
    let rec = send(&s.target, &s.requests[index], slot, cancel).await;
    s.live.in_flight.fetch_sub(1, Relaxed);
    let _ = s.out.send(rec);
}

/// goose installs a SIGINT handler of its own (the ctrlc crate), which would replace the one the
/// run listens to and exit the process on a second Ctrl-C, losing the report. Installing ours
/// first makes goose's attempt fail harmlessly; ours turns SIGINT into SIGTERM, which the run
/// handles like SIGINT (drain on the first, cut off on the second).
fn forward_sigint_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            // SAFETY: kill(2) on this process with a constant signal number.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGTERM);
            }
        });
        if let Err(e) = installed {
            eprintln!("warning: SIGINT forwarding for the developers could not be set up: {e}");
        }
    });
}
