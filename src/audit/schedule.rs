//! Did the open loop deliver the arrival process it was asked for?
//!
//! In: the aggregate's send windows and lateness, the load settings. Out: a [`ScheduleAudit`].
//!
//! Send lateness distorts the offered load (and TTFT from the intended send), so it is judged
//! against the schedule, not as a raw percentile: a send is *late* when its task started more
//! than `load.max_send_lateness_ms` after its intended instant (unset: 1 ms, or half the
//! schedule's mean gap when that is longer, since it then arrives closer to the next send than
//! meant). The
//! schedule is kept unless, with 95 % confidence (Wilson's interval), more than
//! `load.max_late_share` of the sends were late, or a whole second of the run delivered a rate
//! more than [`WINDOW_TOLERANCE`] off the intended one. One preempted send cannot trip either.

use crate::measure::aggregate::Aggregate;
use crate::measure::hist::Percentiles;
use crate::plan::LoadSpec;
use serde::Serialize;

/// A second of the run whose delivered count is off the intended one by more than this share
/// (with at least `WINDOW_MIN_SENDS` meant for it) was not kept.
pub const WINDOW_TOLERANCE: f64 = 0.10;
const WINDOW_MIN_SENDS: u64 = 20;
/// The normal quantile of a two-sided 95 % interval.
const Z95: f64 = 1.96;

/// Per-second rates, requests/s, over the whole seconds inside the run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, schemars::JsonSchema)]
pub struct WindowRates {
    pub seconds: u64,
    pub intended_min: f64,
    pub intended_max: f64,
    pub delivered_min: f64,
    pub delivered_max: f64,
    /// The largest |delivered − intended| / intended of a second with enough sends.
    pub worst_error: Option<f64>,
}

/// The open loop's delivered arrival process against the intended one.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ScheduleAudit {
    pub kept: bool,
    /// Sends judged (measured ones).
    pub sends: u64,
    /// A send later than this was late, ms.
    pub late_threshold_ms: f64,
    pub late: u64,
    pub late_share: f64,
    /// Wilson's 95 % interval of the late share.
    pub late_share_ci95: [f64; 2],
    pub max_late_share: f64,
    /// The schedule's own rate over these sends, and the rate they went at.
    pub intended_rps: Option<f64>,
    pub achieved_rps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<WindowRates>,
    pub lateness_ms: Percentiles,
}

/// Wilson's score interval of `k` successes in `n` at 95 %.
pub fn wilson(k: u64, n: u64) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = Z95 * Z95;
    let centre = p + z2 / (2.0 * n);
    let spread = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let d = 1.0 + z2 / n;
    [
        ((centre - spread) / d).max(0.0),
        ((centre + spread) / d).min(1.0),
    ]
}

pub fn audit(load: &LoadSpec, agg: &Aggregate) -> ScheduleAudit {
    let sends = agg.sends.count;
    let gap = agg.sends.mean_gap_ms();
    let threshold = load.late_threshold_ms(gap);
    let late = agg.lateness.count_above(threshold);
    let ci = wilson(late, sends);
    let windows = window_rates(agg);
    let window_ok = windows
        .as_ref()
        .and_then(|w| w.worst_error)
        .is_none_or(|e| e <= WINDOW_TOLERANCE);
    ScheduleAudit {
        kept: ci[0] <= load.max_late_share && window_ok,
        sends,
        late_threshold_ms: (threshold * 1000.0).round() / 1000.0,
        late,
        late_share: late as f64 / sends.max(1) as f64,
        late_share_ci95: ci,
        max_late_share: load.max_late_share,
        intended_rps: agg.sends.intended_rps(),
        achieved_rps: agg.achieved_rps(),
        windows,
        lateness_ms: agg.lateness.percentiles(),
    }
}

/// Rates of the whole seconds strictly inside the run (the first and last are partial).
fn window_rates(agg: &Aggregate) -> Option<WindowRates> {
    let w = &agg.sends.windows;
    let (first, last) = (*w.keys().next()?, *w.keys().next_back()?);
    let inner: Vec<(u64, u64)> = (first + 1..last)
        .map(|s| w.get(&s).copied().unwrap_or_default())
        .collect();
    if inner.is_empty() {
        return None;
    }
    let min_max = |v: &mut dyn Iterator<Item = u64>| {
        v.fold((u64::MAX, 0), |(lo, hi), x| (lo.min(x), hi.max(x)))
    };
    let (imin, imax) = min_max(&mut inner.iter().map(|x| x.0));
    let (dmin, dmax) = min_max(&mut inner.iter().map(|x| x.1));
    let worst_error = inner
        .iter()
        .filter(|(i, _)| *i >= WINDOW_MIN_SENDS)
        .map(|(i, d)| (*d as f64 - *i as f64).abs() / *i as f64)
        .max_by(f64::total_cmp);
    Some(WindowRates {
        seconds: inner.len() as u64,
        intended_min: imin as f64,
        intended_max: imax as f64,
        delivered_min: dmin as f64,
        delivered_max: dmax as f64,
        worst_error: worst_error.map(|e| (e * 10_000.0).round() / 10_000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // 2 of 150: p = 1.33 %, interval 0.37 % to 4.73 % (Wilson, 95 %).
        let [lo, hi] = wilson(2, 150);
        assert!(
            (lo - 0.00366).abs() < 2e-4 && (hi - 0.0473).abs() < 2e-4,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), [0.0, 1.0]);
        let [lo, _] = wilson(0, 1000);
        assert_eq!(lo, 0.0);
    }

    /// One preempted send among 150 cannot make a run lose its schedule; 20 of them can.
    #[test]
    fn one_late_send_in_a_small_run_is_not_a_lost_schedule() {
        assert!(wilson(1, 150)[0] <= 0.05);
        assert!(wilson(20, 150)[0] > 0.05);
    }
}
