//! The sending phase: the pacer dispatches the schedule, the collector folds each record into
//! the aggregate and `results.ndjson`, the probe and CPU readings measure the harness itself;
//! then the drain, the cut-off, and what a stop signal changes.

use super::RunError;
use crate::drive::{self, dispatch, Channels, Prepared};
use crate::live::{self, LiveStats, LiveView};
use crate::measure::aggregate::Aggregate;
use crate::measure::cpu::{ClientCpu, CpuTimes};
use crate::measure::hist::Metric;
use crate::measure::{self, probe, ResultsSink};
use crate::plan::Plan;
use crate::schedule::{self, Arrival};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long the run drains after a stop signal before cutting off what is still in flight.
const SIGNAL_DRAIN: Duration = Duration::from_secs(2);

/// How the sending phase ended.
pub(super) struct Ended {
    pub(super) flag: bool,
    pub(super) cpu: ClientCpu,
    /// The default in-flight cap applied (the scenario set none).
    pub(super) default_cap: Option<usize>,
    /// The harness's receive-side delay, probed while the run went.
    pub(super) receive_delay: Metric,
}

/// Sends the schedule, drains, and collects: (aggregate, results-file outcome, requests
/// scheduled, how it ended).
///
/// The run's own figures: the receive-delay probe's, then the harness's CPU over the run.
async fn finish(
    probe: Option<probe::Probe>,
    cpu_start: &CpuTimes,
    run_start: std::time::Instant,
    sent: u64,
) -> Ended {
    let receive_delay = match probe {
        Some(p) => p.finish().await,
        None => Metric::default(),
    };
    let cpu = ClientCpu::between(cpu_start, &CpuTimes::now(), run_start.elapsed(), sent);
    Ended {
        flag: false,
        cpu,
        default_cap: None,
        receive_delay,
    }
}

/// The receive-delay probe, started on every worker. Without it the run still measures; the
/// audit then has no receive-side bound.
async fn start_probe() -> Option<probe::Probe> {
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    match probe::start(workers).await {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("warning: the receive-delay probe could not start: {e}");
            None
        }
    }
}

/// How the dispatcher sends: its window, warm-up, cap on requests in flight and what happens
/// at the cap; and the cap the harness set itself, when the scenario set none.
fn send_options(plan: &Plan) -> (dispatch::Options, Option<usize>) {
    let load = plan.process_load();
    let closed = !load.arrival.open_loop();
    // Without a cap of its own, an open loop against a server that stops answering would hold
    // a task and a socket per send until memory or descriptors ran out.
    let default_cap = (!closed && load.concurrency.is_none()).then_some(load.max_in_flight);
    let concurrency = match load.arrival {
        Arrival::Closed => Some(load.concurrency.unwrap_or(1)),
        _ => load.concurrency.or(default_cap),
    };
    let opts = dispatch::Options {
        window: load.send_window_s().map(Duration::from_secs_f64),
        warmup: Duration::from_secs_f64(load.warmup_s),
        concurrency,
        policy: match default_cap {
            Some(_) => crate::plan::CapPolicy::Skip,
            None => load.cap_policy,
        },
    };
    (opts, default_cap)
}

/// Draining: after the last send, an open loop gives requests in flight `grace_s`; a closed loop
/// gives them their full request timeout (a sequential run's last request is timed like any
/// other). A stop signal stops sending and drains briefly; a second signal, or one during the
/// drain, cuts everything off at once. Cut-off requests are recorded with what had arrived.
pub(super) async fn drive_load(
    plan: &Plan,
    target: Arc<drive::Target>,
    prepared: Arc<Vec<Prepared>>,
    schedule: schedule::Schedule,
    sink: ResultsSink,
) -> Result<(Aggregate, std::io::Result<()>, u64, Ended), RunError> {
    let live = Arc::new(LiveStats::default());
    let mut signals = crate::signals::stop_signals();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut collector = measure::collect(rx, sink, Aggregate::new(plan.slo.clone()), live.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (cut_tx, cut_rx) = watch::channel(false);
    let cpu_start = CpuTimes::now();
    let probe = start_probe().await;
    let view = live::wanted().then(|| LiveView::start(live.clone(), schedule.max_requests));
    let closed = !plan.load.arrival.open_loop();
    let (opts, default_cap) = send_options(plan);
    let mut scheduled = start_sending(
        plan,
        target.clone(),
        prepared,
        schedule,
        opts,
        Channels {
            out: tx,
            stop: stop_rx,
            cut: cut_rx,
            live,
        },
    );
    let mut signalled = 0;
    let mut count = None;
    tokio::select! {
        n = &mut scheduled => count = Some(n),
        _ = signals.recv() => signalled += 1,
    };
    let drain = match signalled {
        0 if closed => target.timeout + Duration::from_secs(1),
        0 => Duration::from_secs_f64(plan.load.grace_s),
        _ => {
            let _ = stop_tx.send(true);
            SIGNAL_DRAIN.min(Duration::from_secs_f64(plan.load.grace_s))
        }
    };
    let mut collected = None;
    tokio::select! {
        c = &mut collector => collected = Some(c),
        _ = tokio::time::sleep(drain) => {}
        _ = signals.recv() => signalled += 1,
    }
    if collected.is_none() {
        let _ = stop_tx.send(true);
        let _ = cut_tx.send(true);
    }
    let collected = match collected {
        Some(c) => c,
        None => collector.await,
    };
    let (agg, written) =
        collected.map_err(|e| RunError::Internal(format!("the results collector failed: {e}")))?;
    let count = match count {
        Some(n) => n,
        None => scheduled.await, // the pacer (or goose) stops promptly once told to
    };
    let count = count.transpose().map_err(RunError::Internal)?;
    drop(view);
    let mut ended = finish(probe, &cpu_start, target.run_start, agg.sent).await;
    (ended.flag, ended.default_cap) = (signalled > 0, default_cap);
    let count = count.unwrap_or(agg.sent);
    Ok((agg, written, count, ended))
}

/// How many requests were sent, once sending has ended (`None`: the sender vanished).
type Sending = Pin<Box<dyn Future<Output = Option<Result<u64, String>>> + Send>>;

/// Starts the sending side: the open-loop (or slot-bound closed-loop) dispatcher, or with
/// `arrival = "developers"` goose's virtual developers.
fn start_sending(
    plan: &Plan,
    target: Arc<drive::Target>,
    prepared: Arc<Vec<Prepared>>,
    schedule: schedule::Schedule,
    opts: dispatch::Options,
    c: Channels,
) -> Sending {
    #[cfg(feature = "goose")]
    if let (Arrival::Developers, Some(developers)) =
        (plan.load.arrival, plan.process_load().developers)
    {
        let opts = drive::developers::Options {
            developers,
            duration_s: plan.load.duration_s.unwrap_or(0.0) as u64,
            warmup: opts.warmup,
            grace: Duration::from_secs_f64(plan.load.grace_s),
        };
        let rx = drive::developers::start(target, prepared, schedule, opts, c);
        return Box::pin(async { rx.await.ok() });
    }
    let _ = plan; // read above with the goose feature
    let rx = dispatch::start(
        target, prepared, schedule, opts, c.out, c.stop, c.cut, c.live,
    );
    Box::pin(async { rx.await.ok().map(Ok) })
}
