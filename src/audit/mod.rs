//! The self-audit: how far the harness's own disturbances can have moved each figure, and
//! whether a figure the scenario judges can be trusted.
//!
//! In: the [`Aggregate`] (send windows, lateness, per-feature distributions, SLO corrections),
//! the receive-delay probe's distribution, and the load settings. Out: an [`Audit`]: the
//! schedule's fidelity ([`schedule`]), the receive-side bound, a [`Trust`] per figure, the SLO
//! judgements the harness's own delay could have decided, and the findings that say so.
//!
//! Each disturbance is judged by what it can distort:
//! - **send lateness** moves the offered load and TTFT from the intended send, never TTFT from
//!   the send: judged on the delivered arrival process ([`schedule`]);
//! - **receive-side delay** (a task run after what it waited for was ready) makes TTFT and E2E
//!   read late by at most [`RUNTIME_WAITS`] delays (the connection, the chunk's own read),
//!   moves an ITL gap either way by at most one, a TPOT by at most one over (tokens − 1):
//!   judged against each figure's median;
//! - **transport batching** (chunks arriving in bursts) makes the gaps at the client say nothing
//!   about the server's token timing: ITL p50 far below TPOT p50.

pub mod schedule;

use crate::measure::aggregate::{Aggregate, FeatureAgg, RUNTIME_WAITS};
use crate::measure::hist::{Metric, Percentiles};
use crate::plan::{LoadSpec, Slo};
use crate::stats::round3;
pub use schedule::ScheduleAudit;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A figure is `ok` while the bound on the harness's error stays under this share of its median.
pub const FIGURE_TOLERANCE: f64 = 0.05;
/// ITL p50 under this share of TPOT p50: the client sees bursts, not token timing.
pub const BURST_RATIO: f64 = 0.25;
/// At least this share of content reads carrying several events: batched on the way.
pub const BATCHED_READS: f64 = 0.10;
/// Fewest gaps and TPOT samples before transport batching is judged.
const BURST_MIN_SAMPLES: u64 = 20;

/// Whether a figure can be read as measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrustStatus {
    Ok,
    /// The harness's own error can pass [`FIGURE_TOLERANCE`] of the figure, or the figure does
    /// not measure what it names (bursts).
    Degraded,
}

/// What disturbed a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Disturbance {
    /// The harness's receive-side delay.
    ReceiveDelay,
    /// Sends later than their intended instant.
    SendLateness,
    /// The open loop did not keep its schedule.
    Schedule,
    /// Chunks reached the client in bursts.
    TransportBatching,
}

impl Disturbance {
    /// Whether the figure's bound covers this disturbance (a burst or a lost schedule has none).
    pub fn bounded(self) -> bool {
        matches!(self, Self::ReceiveDelay | Self::SendLateness)
    }
}

/// Which way the harness's own error can move a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The figure can only read high.
    Over,
    /// Either way.
    Either,
}

/// How far a figure can be trusted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Trust {
    pub status: TrustStatus,
    /// Why; empty when ok.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Disturbance>,
    /// The most the harness's own disturbance can have moved the figure, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_ms: Option<f64>,
    /// Which way the figure can have moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Computed from estimated token counts (no usage, no tokenizer).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

impl Trust {
    fn ok() -> Self {
        Self {
            status: TrustStatus::Ok,
            reasons: Vec::new(),
            bound_ms: None,
            direction: None,
            estimated: false,
        }
    }

    /// A figure whose error is at most `bound` (ms) in `direction`, against its median.
    fn bounded(bound: f64, direction: Direction, median: Option<f64>) -> Self {
        let mut t = Self::ok();
        t.bound_ms = Some(round3(bound));
        t.direction = Some(direction);
        // A median of 0 (everything in one chunk) is no timing to distort.
        if median.is_some_and(|m| m > 0.0 && bound > FIGURE_TOLERANCE * m) {
            t.degrade(Disturbance::ReceiveDelay);
        }
        t
    }

    fn degrade(&mut self, reason: Disturbance) {
        self.status = TrustStatus::Degraded;
        if !self.reasons.contains(&reason) {
            self.reasons.push(reason);
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status == TrustStatus::Ok
    }
}

/// The harness's receive-side delay over the run.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReceiveAudit {
    /// Probe delays: from a datagram's send to its read by a task of the runtime, ms.
    pub delay_ms: Percentiles,
    /// The bound on one wait, applied to every figure: the probes' p99 (a single stall cannot
    /// set it). TTFT and E2E carry it up to [`RUNTIME_WAITS`] times.
    pub bound_ms: f64,
    /// The worst probe.
    pub worst_ms: f64,
    /// Share of probes past `bound_ms`: how many waits may have taken longer (up to
    /// `worst_ms`), which an SLO verdict must survive too.
    pub tail_share: f64,
}

/// How an SLO judgement stands against the harness's own error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct SloAudit {
    /// Share that met the SLO as measured.
    pub measured: f64,
    /// Lowest and highest share the harness's own error allows.
    pub range: [f64; 2],
    pub required: f64,
    /// Both ends of `range` give the same verdict.
    pub decided: bool,
}

/// One feature's trust in each of its figures, and its SLO judgement's standing.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FeatureAudit {
    pub trust: BTreeMap<String, Trust>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloAudit>,
    /// Transport batching, when seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<Burst>,
}

/// Chunks that reached the client in bursts: its gaps say nothing about token timing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Burst {
    /// ITL p50 at the client (between reads), ms.
    pub itl_p50_ms: f64,
    /// TPOT p50: the server's time per token, ms.
    pub tpot_p50_ms: f64,
    /// Share of content reads that carried several events at once.
    pub multi_event_reads: f64,
}

/// The whole self-audit.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Audit {
    /// `None` for a closed loop: its sends wait for answers by design, there is no schedule.
    pub schedule: Option<ScheduleAudit>,
    pub receive: ReceiveAudit,
    pub features: BTreeMap<String, FeatureAudit>,
}

/// Audits a run.
pub fn audit(load: &LoadSpec, agg: &Aggregate, probe: &Metric) -> Audit {
    let schedule = load.arrival.open_loop().then(|| schedule::audit(load, agg));
    let delay = probe.percentiles();
    let receive = ReceiveAudit {
        bound_ms: delay.p99.unwrap_or(0.0),
        worst_ms: delay.max.unwrap_or(0.0),
        tail_share: probe.count_above(delay.p99.unwrap_or(0.0)) as f64 / probe.len().max(1) as f64,
        delay_ms: delay,
    };
    let kept = schedule.as_ref().is_none_or(|s| s.kept);
    let lateness_p99 = agg.lateness.percentiles().p99.unwrap_or(0.0);
    let features = agg
        .features
        .iter()
        .map(|(k, f)| {
            let slo = agg.slo(k);
            let a = feature_audit(f, slo, &receive, probe, lateness_p99, kept);
            (k.clone(), a)
        })
        .collect();
    Audit {
        schedule,
        receive,
        features,
    }
}

fn feature_audit(
    f: &FeatureAgg,
    slo: Option<&Slo>,
    receive: &ReceiveAudit,
    probe: &Metric,
    lateness_p99: f64,
    kept: bool,
) -> FeatureAudit {
    let bound = receive.bound_ms;
    let waits = RUNTIME_WAITS * bound;
    let (ttft, e2e, itl, tpot) = (
        f.ttft.percentiles(),
        f.e2e.percentiles(),
        f.itl.percentiles(),
        f.tpot.percentiles(),
    );
    let mut trust = BTreeMap::new();
    trust.insert(
        "ttft".to_owned(),
        Trust::bounded(waits, Direction::Over, ttft.p50),
    );
    trust.insert(
        "e2e".to_owned(),
        Trust::bounded(waits, Direction::Over, e2e.p50),
    );
    // TTFT from the intended send carries the send lateness on top of the receive delay.
    let from_intended = f.ttft_from_intended.percentiles();
    let mut t = Trust::bounded(waits, Direction::Over, from_intended.p50);
    let late = Trust::bounded(waits + lateness_p99, Direction::Over, from_intended.p50);
    t.bound_ms = late.bound_ms;
    if !late.is_ok() && t.is_ok() {
        t.degrade(Disturbance::SendLateness);
    }
    if !kept {
        t.degrade(Disturbance::Schedule);
    }
    trust.insert("ttft_from_intended".to_owned(), t);
    let mut t = Trust::bounded(bound, Direction::Either, itl.p50);
    let burst = bursts(&itl, &tpot, f.multi_event_reads, f.content_reads);
    if burst.is_some() {
        t.degrade(Disturbance::TransportBatching);
    }
    trust.insert("itl".to_owned(), t);
    let tpot_bound = f
        .min_tpot_tokens
        .filter(|n| *n > 1)
        .map(|n| bound / (n - 1) as f64);
    let mut t = match tpot_bound {
        Some(b) => Trust::bounded(b, Direction::Either, tpot.p50),
        None => Trust::ok(),
    };
    let estimated = f.tokens_estimated > 0;
    t.estimated = estimated;
    trust.insert("tpot".to_owned(), t);
    for k in ["output_tokens", "output_tokens_per_s"] {
        let mut t = Trust::ok();
        t.estimated = estimated;
        trust.insert(k.to_owned(), t);
    }
    let slo = slo.map(|s| slo_audit(f, s, receive, probe));
    let mut goodput = Trust::ok();
    if slo.as_ref().is_some_and(|s| !s.decided) {
        goodput.degrade(Disturbance::ReceiveDelay);
    }
    if !kept {
        goodput.degrade(Disturbance::Schedule);
    }
    if slo.is_some() {
        trust.insert("goodput".to_owned(), goodput);
    }
    FeatureAudit { trust, slo, burst }
}

/// Transport batching: the gaps at the client far below the server's time per token (events
/// written back to back), or many reads carrying several events (events coalesced on the way).
fn bursts(itl: &Percentiles, tpot: &Percentiles, multi: u64, reads: u64) -> Option<Burst> {
    if itl.n < BURST_MIN_SAMPLES || tpot.n < BURST_MIN_SAMPLES {
        return None;
    }
    let (i, t) = (itl.p50?, tpot.p50?);
    let share = multi as f64 / reads.max(1) as f64;
    let gaps_collapsed = t > 0.0 && i < BURST_RATIO * t;
    (gaps_collapsed || share >= BATCHED_READS).then(|| Burst {
        itl_p50_ms: i,
        tpot_p50_ms: t,
        multi_event_reads: round3(share),
    })
}

/// The SLO share met as measured, and the range the harness's own error allows.
///
/// Upwards (a miss the harness may have caused), generously: misses the p99 delay per wait
/// explains (each request's own send lateness taken off), and beyond them as many as the
/// probes' share of waits past the p99 can account for, up to the worst delay seen. A miss is
/// likelier than most requests to be one that was delayed, so no chance is discounted there.
///
/// Downwards (a hit a delay may have made: a first chunk read late shortens the TPOT span), by
/// chance: a hit with headroom `h` flips only if its first read waited longer than `h`, which
/// the probes say happens with probability P(delay > h); the expected count, plus three standard
/// deviations and one, is what may have flipped.
fn slo_audit(f: &FeatureAgg, slo: &Slo, receive: &ReceiveAudit, probe: &Metric) -> SloAudit {
    let n = f.requests.max(1) as f64;
    let (p99, worst) = (receive.bound_ms, receive.worst_ms);
    let tail = (receive.tail_share * RUNTIME_WAITS * n).ceil() as u64;
    let m = &f.slo_miss_correction;
    let (near, far) = (m.count_at_most(p99), m.count_at_most(worst));
    let explained = near + (far - near).min(tail);
    let hidden = likely_flips(&f.slo_tpot_headroom, probe);
    let (low, high) = (
        f.slo_met.saturating_sub(hidden) as f64 / n,
        (f.slo_met + explained) as f64 / n,
    );
    let required = slo.attainment;
    SloAudit {
        measured: f.slo_met as f64 / n,
        range: [low, high],
        required,
        decided: (low >= required) == (high >= required),
    }
}

/// How many of the `margins` (ms) a delay drawn from the probes' distribution could pass:
/// E + 3√E + 1 for E = Σ P(delay > margin), at most all of them.
fn likely_flips(margins: &Metric, probe: &Metric) -> u64 {
    if margins.is_empty() {
        return 0;
    }
    let mut delays: Vec<(f64, u64)> = probe.values();
    delays.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = delays.iter().map(|d| d.1).sum();
    // Probes above each delay value, from the top: a running sum.
    let mut above = vec![0u64; delays.len() + 1];
    for i in (0..delays.len()).rev() {
        above[i] = above[i + 1] + delays[i].1;
    }
    let p_above = |h: f64| {
        let i = delays.partition_point(|d| d.0 <= h);
        above[i] as f64 / total.max(1) as f64
    };
    let expected: f64 = margins
        .values()
        .iter()
        .map(|(h, c)| *c as f64 * p_above(*h))
        .sum();
    let bound = (expected + 3.0 * expected.sqrt() + 1.0).ceil() as u64;
    bound.min(margins.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_degrades_a_figure_only_past_the_tolerance() {
        assert!(Trust::bounded(0.2, Direction::Over, Some(20.0)).is_ok());
        let t = Trust::bounded(0.4, Direction::Either, Some(5.0));
        assert_eq!(
            (t.status, t.reasons.clone()),
            (TrustStatus::Degraded, vec![Disturbance::ReceiveDelay])
        );
        assert!(Trust::bounded(1.0, Direction::Over, None).is_ok());
    }

    fn pct(n: u64, p50: f64) -> Percentiles {
        let mut p = Percentiles::of(vec![p50]);
        p.n = n;
        p
    }

    /// A rare long stall cannot make every hit with less headroom suspect: only as many as the
    /// probes say such a delay reaches.
    #[test]
    fn hits_flip_by_chance_not_by_the_worst_probe() {
        let mut probe = Metric::default();
        (0..9990).for_each(|_| probe.record(0.05));
        (0..10).for_each(|_| probe.record(50.0)); // 0.1 % of waits stalled 50 ms
        let mut margins = Metric::default();
        (0..10_000).for_each(|_| margins.record(31.0));
        // E = 10,000 × 0.001 = 10; 10 + 3·√10 + 1 = 20.5 → 21.
        assert_eq!(likely_flips(&margins, &probe), 21);
        let mut wide = Metric::default();
        (0..100).for_each(|_| wide.record(60.0));
        assert_eq!(likely_flips(&wide, &probe), 1);
        assert_eq!(likely_flips(&Metric::default(), &probe), 0);
    }

    #[test]
    fn bursts_need_samples_and_collapsed_gaps_or_batched_reads() {
        let b = bursts(&pct(100, 0.01), &pct(50, 5.0), 0, 100).unwrap();
        assert_eq!((b.itl_p50_ms, b.tpot_p50_ms), (0.01, 5.0));
        assert_eq!(bursts(&pct(100, 4.9), &pct(50, 5.0), 2, 100), None);
        assert!(bursts(&pct(100, 40.0), &pct(50, 5.0), 30, 100).is_some());
        assert_eq!(bursts(&pct(5, 0.01), &pct(50, 5.0), 0, 5), None);
    }
}
