//! One check: a feature's metric in two runs, its change bootstrapped, the interval widened by
//! the self-audit's bounds, held against the allowance.

use super::bootstrap::{self, Statistic};
use super::{Basis, Check, Outcome};
use crate::audit::{Direction, Trust};
use crate::measure::aggregate::{meets, Aggregate};
use crate::measure::{Disposition, RequestRecord, StreamMode};
use crate::plan::{GateMetric, GateSpec};
use crate::results::RunFolder;
use crate::stats::round3;

/// What a metric is measured on, and which way is worse.
struct MetricDef {
    stat: Statistic,
    /// The self-audit's figure whose bound applies (`None`: the harness's own delay cannot move
    /// it, or no figure stands for it).
    figure: Option<&'static str>,
    /// +1: higher is worse; −1: lower is worse.
    worse: f64,
    /// Fewest samples per run before the metric is judged at all.
    min_samples: usize,
}

fn metric_def(metric: GateMetric) -> MetricDef {
    use GateMetric as M;
    let q = |q: f64, figure, min_samples| MetricDef {
        stat: Statistic::Quantile(q),
        figure,
        worse: 1.0,
        min_samples,
    };
    let share = |figure, worse| MetricDef {
        stat: Statistic::Mean,
        figure,
        worse,
        min_samples: 10,
    };
    match metric {
        M::TtftP50 => q(0.5, Some("ttft"), 10),
        M::TtftP99 => q(0.99, Some("ttft"), 100),
        M::TpotP50 => q(0.5, Some("tpot"), 10),
        M::TpotP99 => q(0.99, Some("tpot"), 100),
        M::E2eP99 => q(0.99, Some("e2e"), 100),
        M::FirstActionP50 | M::ToolRoundTripP50 => q(0.5, None, 10),
        M::SessionP99 => q(0.99, None, 100),
        M::Goodput => share(Some("goodput"), -1.0),
        M::ErrorRate | M::Conformance | M::Routing => share(None, 1.0),
    }
}

/// What a check is about: a feature, or one stream mode of a feature that has both.
#[derive(Debug, Clone, Copy)]
pub struct Figure<'a> {
    pub feature: &'a str,
    pub mode: Option<StreamMode>,
}

/// `duo_chat`, or `duo_chat_fix_code (non-streamed)`: how every output names a figure.
impl std::fmt::Display for Figure<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mode {
            Some(m) => write!(f, "{} ({})", self.feature, m.name()),
            None => f.write_str(self.feature),
        }
    }
}

/// Latencies differ by stream mode (a whole answer's first byte is its last); rates do not.
pub fn split_by_mode(metric: GateMetric) -> bool {
    use GateMetric as M;
    matches!(
        metric,
        M::TtftP50 | M::TtftP99 | M::TpotP50 | M::TpotP99 | M::E2eP99
    )
}

/// The fewest samples per run before `metric` is judged at all.
pub fn min_samples(metric: GateMetric) -> usize {
    metric_def(metric).min_samples
}

/// The figure's samples, one per measured request, in strata by corpus case (what the
/// stratified bootstrap resamples within); `None`: the metric does not apply.
fn samples(folder: &RunFolder, fig: Figure, metric: GateMetric) -> Option<Strata> {
    use GateMetric as M;
    let Figure { feature, mode } = fig;
    let measured = folder.records.iter().filter(|r| {
        r.feature == feature
            && !r.warmup
            && r.disposition == Disposition::Completed
            && mode.is_none_or(|m| StreamMode::of(r.stream) == m)
    });
    if matches!(metric, M::TpotP50 | M::TpotP99) && !measured.clone().any(|r| r.stream) {
        return None; // a whole answer has no time per output token
    }
    let session_metric = matches!(
        metric,
        M::FirstActionP50 | M::ToolRoundTripP50 | M::SessionP99
    );
    if session_metric && !measured.clone().any(|r| r.session.is_some()) {
        return None; // not an Agent Platform feature
    }
    let goodput_slo = match metric {
        M::Goodput => Some(*Aggregate::new(folder.plan.slo.clone()).slo(feature)?),
        M::Conformance | M::Routing => return None,
        _ => None,
    };
    let mut strata: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for r in measured {
        let values = request_values(r, metric, goodput_slo.as_ref());
        strata.entry(r.id.as_str()).or_default().extend(values);
    }
    strata.retain(|_, s| !s.is_empty());
    Some(strata.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// A figure's samples by corpus case (interaction id).
type Strata = std::collections::BTreeMap<String, Vec<f64>>;

/// The bootstrapped change of a figure. A median over several cases is judged case by case
/// (the pooled median of cases with a gap between them sits in the gap, and one request more
/// of either case moves it across); every other statistic pooled, resampled within each case.
/// The second value says whether the change is case by case (it then differs from the pooled
/// figures' difference).
fn bootstrapped(
    def: &MetricDef,
    b: &Strata,
    c: &Strata,
    confidence: f64,
    seed: u64,
) -> Option<(bootstrap::Change, bool)> {
    if def.stat == Statistic::Quantile(0.5) && b.len() > 1 {
        let pairs: Vec<bootstrap::CasePair> = b
            .iter()
            .filter_map(|(id, bv)| Some((bv.clone(), c.get(id)?.clone())))
            .collect();
        return bootstrap::change_by_case(0.5, &pairs, confidence, seed).map(|ch| (ch, true));
    }
    let (b, c): (Vec<Vec<f64>>, Vec<Vec<f64>>) =
        (b.values().cloned().collect(), c.values().cloned().collect());
    bootstrap::change_stratified(def.stat, &b, &c, confidence, seed).map(|ch| (ch, false))
}

/// What one request contributes to `metric` (several tool round trips, or none when it failed).
fn request_values(
    r: &RequestRecord,
    metric: GateMetric,
    slo: Option<&crate::plan::Slo>,
) -> Vec<f64> {
    use GateMetric as M;
    let ok = |v: Option<f64>| v.filter(|_| r.ok()).into_iter().collect();
    match metric {
        M::FirstActionP50 => ok(r.session.as_ref().and_then(|s| s.first_action_ms)),
        M::ToolRoundTripP50 => r
            .session
            .as_ref()
            .filter(|_| r.ok())
            .map(|s| s.tool_round_trips_ms.clone())
            .unwrap_or_default(),
        M::SessionP99 => ok(r.session.as_ref().map(|_| r.end_ms)),
        M::TtftP50 | M::TtftP99 => ok(r.ttft_ms()),
        M::TpotP50 | M::TpotP99 => ok(r.tpot_ms()),
        M::E2eP99 => ok(r.e2e_ms()),
        M::ErrorRate => vec![f64::from(u8::from(r.failed()))],
        M::Goodput => slo
            .map(|s| f64::from(u8::from(meets(s, r))))
            .into_iter()
            .collect(),
        M::Conformance | M::Routing => Vec::new(),
    }
}

/// The figure as the run's `summary.json` gives it, where it gives it.
fn summary_figure(folder: &RunFolder, fig: Figure, metric: GateMetric) -> Option<f64> {
    use GateMetric as M;
    let f = folder.summary.as_ref()?.features.get(fig.feature)?;
    let (l, s) = (&f.latency_ms, f.sessions.as_ref());
    if let Some(m) = fig.mode {
        let l = f.modes.get(&m)?;
        return match metric {
            M::TtftP50 => l.ttft.p50,
            M::TtftP99 => l.ttft.p99,
            M::TpotP50 => l.tpot.p50,
            M::TpotP99 => l.tpot.p99,
            M::E2eP99 => l.e2e.p99,
            _ => None,
        };
    }
    match metric {
        M::TtftP50 => l.ttft.p50,
        M::TtftP99 => l.ttft.p99,
        M::TpotP50 => l.tpot.p50,
        M::TpotP99 => l.tpot.p99,
        M::E2eP99 => l.e2e.p99,
        M::FirstActionP50 => s?.first_action_ms.p50,
        M::ToolRoundTripP50 => s?.tool_round_trip_ms.p50,
        M::SessionP99 => s?.session_ms.p99,
        M::ErrorRate => (f.requests > 0).then(|| f.errors as f64 / f.requests as f64),
        M::Goodput => f.goodput.as_ref()?.attainment,
        M::Conformance | M::Routing => None,
    }
}

/// A stable seed per check, so the same two runs always give the same intervals.
fn seed_of(fig: Figure, metric: GateMetric) -> u64 {
    use sha2::Digest;
    let mode = fig.mode.map_or("", StreamMode::name);
    let d = sha2::Sha256::digest(format!("{}/{metric}{mode}", fig.feature).as_bytes());
    u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
}

/// How far the harness's own error can have moved one run's figure: (how much lower the true
/// value can be, how much higher), in the metric's unit. `Err`: it cannot say (no self-audit, or
/// a disturbance with no bound).
fn run_bound(folder: &RunFolder, feature: &str, def: &MetricDef) -> Result<(f64, f64), String> {
    let Some(figure) = def.figure else {
        return Ok((0.0, 0.0));
    };
    let Some(summary) = &folder.summary else {
        return Err(format!(
            "{} has no summary.json (killed?), so no self-audit says how far its {figure} can be \
             trusted: `duo-harness report` on it first",
            folder.dir.display()
        ));
    };
    let f = summary.features.get(feature);
    if figure == "goodput" {
        // The SLO audit's attainment range is the goodput's bound.
        let Some(a) = f.and_then(|f| f.slo_audit.as_ref()) else {
            return Ok((0.0, 0.0));
        };
        return unbounded(f.and_then(|f| f.trust.get(figure)), figure)
            .map(|_| (a.measured - a.range[0], a.range[1] - a.measured));
    }
    let Some(trust) = f.and_then(|f| f.trust.get(figure)) else {
        return Ok((0.0, 0.0));
    };
    unbounded(Some(trust), figure)?;
    let b = trust.bound_ms.unwrap_or(0.0);
    Ok(match trust.direction {
        // The figure can only read high: the truth is up to `b` lower.
        Some(Direction::Over) => (b, 0.0),
        _ => (b, b),
    })
}

/// `Err` when the figure is degraded by a disturbance its bound does not cover.
fn unbounded(trust: Option<&Trust>, figure: &str) -> Result<(), String> {
    let Some(t) = trust.filter(|t| !t.is_ok()) else {
        return Ok(());
    };
    match t.reasons.iter().find(|r| !r.bounded()) {
        Some(r) => {
            // The name summary.json gives it (`transport_batching`), not Rust's.
            let name = serde_json::to_value(r)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            Err(format!(
                "the self-audit marks {figure} degraded by {name}, which no bound covers"
            ))
        }
        None => Ok(()),
    }
}

/// The check before any sample is looked at.
fn blank(fig: Figure, metric: GateMetric, gate: &GateSpec, samples: [u64; 2]) -> Check {
    let feature = fig.feature;
    Check {
        feature: feature.into(),
        mode: fig.mode,
        metric,
        outcome: Outcome::Inconclusive,
        basis: Basis::TooFewSamples,
        required: !gate.is_optional(feature, metric),
        baseline: None,
        current: None,
        worse_by: None,
        interval: None,
        audit_widening: None,
        threshold: gate.threshold(feature, metric),
        allowed: 0.0,
        samples,
        more_requests: None,
        reason: String::new(),
    }
}

/// Judges `feature`'s `metric`; `None` when it does not apply (session metrics of an HTTP
/// feature, goodput without an SLO).
pub(super) fn judge(
    base: &RunFolder,
    cur: &RunFolder,
    fig: Figure,
    metric: GateMetric,
    gate: &GateSpec,
) -> Option<Check> {
    let def = metric_def(metric);
    let feature = fig.feature;
    let (b, c) = (samples(base, fig, metric)?, samples(cur, fig, metric)?);
    let count = |s: &Strata| s.values().map(Vec::len).sum::<usize>();
    let (nb, nc) = (count(&b), count(&c));
    let mut check = blank(fig, metric, gate, [nb as u64, nc as u64]);
    if nb < def.min_samples || nc < def.min_samples {
        check.reason = format!(
            "too few samples to judge ({nb} and {nc}; at least {} each)",
            def.min_samples
        );
        check.more_requests = Some((def.min_samples - nb.min(nc)) as u64);
        return Some(check);
    }
    let (ch, by_case) = bootstrapped(&def, &b, &c, gate.confidence(), seed_of(fig, metric))?;
    let w = def.worse;
    // One figure, one number: the runs' own summaries say what their figures are; a median
    // judged case by case changes by its cases' changes.
    let (bv, cv) = (
        summary_figure(base, fig, metric).unwrap_or(ch.baseline),
        summary_figure(cur, fig, metric).unwrap_or(ch.current),
    );
    let worse = match by_case {
        true => w * ch.delta,
        false => w * (cv - bv),
    };
    let (lo, hi) = ((w * ch.low).min(w * ch.high), (w * ch.low).max(w * ch.high));
    check.baseline = Some(round3(bv));
    check.current = Some(round3(cv));
    check.worse_by = Some(round3(worse));
    check.allowed = round3(check.threshold.allowance(bv));
    let bounds =
        run_bound(base, feature, &def).and_then(|b| Ok((b, run_bound(cur, feature, &def)?)));
    match bounds {
        Err(why) => {
            check.interval = Some([round3(lo), round3(hi)]);
            check.basis = Basis::Degraded;
            check.reason = why;
        }
        Ok((bb, cb)) => decide(&mut check, (lo, hi), widening(w, bb, cb), nb.max(nc)),
    }
    Some(check)
}

/// How far the interval of "worse by" widens, (below, above), from each run's (lower, higher)
/// bound: the change is current − baseline, turned by `w` so that positive is worse.
fn widening(w: f64, (b_lo, b_hi): (f64, f64), (c_lo, c_hi): (f64, f64)) -> (f64, f64) {
    // current − baseline can be as low as (c − c_lo) − (b + b_hi), as high as (c + c_hi) − (b − b_lo).
    let (down, up) = (c_lo + b_hi, c_hi + b_lo);
    if w > 0.0 {
        (down, up)
    } else {
        (up, down)
    }
}

/// Holds the widened interval against the allowance.
fn decide(check: &mut Check, (lo, hi): (f64, f64), (down, up): (f64, f64), n: usize) {
    let allowed = check.allowed;
    let worse = check.worse_by.unwrap_or(0.0);
    let (wlo, whi) = (lo - down, hi + up);
    check.interval = Some([round3(wlo), round3(whi)]);
    let widened = down > 0.0 || up > 0.0;
    check.audit_widening = widened.then_some([round3(down), round3(up)]);
    let unit = if check.metric.is_share() { "" } else { " ms" };
    check.basis = Basis::Interval;
    if wlo > allowed {
        check.outcome = Outcome::Regression;
        check.reason =
            format!("worse by {wlo:.3} to {whi:.3}{unit}, past the {allowed:.3}{unit} allowed");
    } else if whi <= allowed {
        check.outcome = Outcome::NoRegression;
        check.reason = match whi < 0.0 && -worse > allowed {
            true => format!("better by {:.3} to {:.3}{unit}", -whi, -wlo),
            false => {
                format!("within the {allowed:.3}{unit} allowed (at most {whi:.3}{unit} worse)")
            }
        };
    } else if widened && (lo > allowed || hi <= allowed) {
        // The sampling interval alone decides; the self-audit's bound is what spans the allowance.
        check.basis = Basis::Degraded;
        check.reason = format!(
            "the self-audit's bound (−{down:.3}, +{up:.3}{unit}) could explain the change: \
             {wlo:.3} to {whi:.3}{unit} spans the {allowed:.3}{unit} allowed; more requests will \
             not decide it, a quieter host will"
        );
    } else {
        let half = (whi - wlo) / 2.0;
        let distance = (worse - allowed).abs();
        let nf = n as f64;
        check.more_requests = (distance > half * 0.05)
            .then(|| ((nf * (half / distance).powi(2)).ceil() - nf).max(1.0) as u64);
        check.reason = format!(
            "the interval {wlo:.3} to {whi:.3}{unit} spans the {allowed:.3}{unit} allowed{}",
            match check.more_requests {
                Some(m) => format!("; about {m} more requests per run would decide it"),
                None => "; the change sits on the threshold".into(),
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_follows_the_direction_of_each_bound() {
        // Latency (higher worse), both figures can only read high by 2.5 ms: the change can be
        // 2.5 lower (the current read high) or 2.5 higher (the baseline read high).
        assert_eq!(widening(1.0, (2.5, 0.0), (2.5, 0.0)), (2.5, 2.5));
        // Only the baseline degraded.
        assert_eq!(widening(1.0, (2.5, 0.0), (0.0, 0.0)), (0.0, 2.5));
        // Goodput (lower worse): the current's attainment can truly be 0.125 higher and the
        // baseline's 0.25 lower; both make the current run better than measured, so its loss
        // can be 0.375 smaller, never larger.
        assert_eq!(widening(-1.0, (0.25, 0.0), (0.0, 0.125)), (0.375, 0.0));
    }

    fn check(allowed: f64, worse: f64) -> Check {
        let mut c = blank(
            Figure {
                feature: "duo_chat",
                mode: None,
            },
            GateMetric::TtftP50,
            &GateSpec::default(),
            [50, 50],
        );
        c.allowed = allowed;
        c.worse_by = Some(worse);
        c
    }

    #[test]
    fn a_ten_fold_regression_is_caught_through_a_degraded_baseline() {
        // 20 → 200 ms, interval [179.9, 180.0], baseline TTFT degraded with a 2.5 ms bound.
        let mut c = check(20.0, 180.0);
        decide(
            &mut c,
            (179.9, 180.0),
            widening(1.0, (2.5, 0.0), (0.0, 0.0)),
            100,
        );
        assert_eq!(
            (c.outcome, c.basis),
            (Outcome::Regression, Basis::Interval),
            "{c:?}"
        );
        assert_eq!(c.interval, Some([179.9, 182.5]));
    }

    #[test]
    fn a_bound_that_spans_the_allowance_leaves_the_check_undecided() {
        // Worse by 22 ± 1 against 20 allowed: a regression on the samples alone, but a 5 ms bound
        // on the current run could explain it.
        let mut c = check(20.0, 22.0);
        decide(
            &mut c,
            (21.0, 23.0),
            widening(1.0, (0.0, 0.0), (5.0, 0.0)),
            100,
        );
        assert_eq!(
            (c.outcome, c.basis),
            (Outcome::Inconclusive, Basis::Degraded),
            "{c:?}"
        );
        assert!(c.reason.contains("quieter host"), "{}", c.reason);
        // With no bound, the same samples are a regression.
        let mut c = check(20.0, 22.0);
        decide(&mut c, (21.0, 23.0), (0.0, 0.0), 100);
        assert_eq!(c.outcome, Outcome::Regression, "{c:?}");
    }

    #[test]
    fn an_interval_that_spans_the_allowance_asks_for_more_requests() {
        let mut c = check(20.0, 19.0);
        decide(&mut c, (10.0, 28.0), (0.0, 0.0), 100);
        assert_eq!(
            (c.outcome, c.basis),
            (Outcome::Inconclusive, Basis::Interval)
        );
        assert!(c.more_requests.is_some_and(|m| m > 100), "{c:?}");
    }
}
