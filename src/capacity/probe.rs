//! One probe: a whole `run` at one point of the search's axis, judged for the search: its
//! smallest SLO margin and where, whether it complied, and what its backends' metrics say
//! limits the stack. A failure that load does not explain stops the search.

use super::{limiter, roofline, Axis, CapacityError, Probe};
use crate::compare::bootstrap::Statistic;
use crate::exit::Exit;
use crate::measure::RequestRecord;
use crate::plan::{self, Overrides, Plan, Slo};
use crate::results::RunFolder;
use crate::verdict::{FindingKind, Severity};
use std::path::{Path, PathBuf};

/// Error classes an overloaded stack produces.
const LOAD_ERRORS: &[&str] = &["timeout", "http5xx", "connect", "dropped"];

/// A request's figure for one SLO bound, given its own send lateness.
type Figure = fn(&RequestRecord, f64) -> Option<f64>;

/// The smallest margin over `slos`' bounds in a probe's records, and where it is.
pub fn margin(
    records: &[RequestRecord],
    slo: &dyn Fn(&str) -> Option<Slo>,
) -> Option<(f64, String)> {
    let mut features: Vec<&str> = records.iter().map(|r| r.feature.as_str()).collect();
    features.sort();
    features.dedup();
    let mut worst: Option<(f64, String)> = None;
    for f in features {
        let Some(s) = slo(f) else { continue };
        let measured: Vec<&RequestRecord> = records
            .iter()
            .filter(|r| r.feature == f && !r.warmup)
            .filter(|r| r.disposition != crate::measure::Disposition::Skipped)
            .collect();
        let late = |r: &RequestRecord| r.sent_ms - r.intended_ms;
        let bounds: [(&str, Option<f64>, Figure); 3] = [
            ("ttft_ms", s.ttft_ms, |r, _| r.ttft_from_intended_ms()),
            ("tpot_ms", s.tpot_ms, |r, _| r.tpot_ms()),
            ("e2e_ms", s.e2e_ms, |r, late| r.e2e_ms().map(|e| e + late)),
        ];
        for (name, bound, value) in bounds {
            let Some(b) = bound else { continue };
            let mut v: Vec<f64> = measured
                .iter()
                .map(|r| match r.ok() {
                    true => value(r, late(r)).unwrap_or(f64::INFINITY),
                    false => f64::INFINITY,
                })
                .collect();
            // A failed request's `inf` sorts last: it counts as a miss.
            let Some(at) = Statistic::NearestRank(s.attainment).of(&mut v) else {
                continue;
            };
            let m = ((b - at) / b).max(-10.0);
            if worst.as_ref().is_none_or(|(w, _)| m < *w) {
                worst = Some((m, format!("{f} {name}")));
            }
        }
    }
    worst
}

/// Why a probe's failure says the stack is broken rather than full, if it does: timeouts, 5xx,
/// refused and dropped connections are what overload looks like; any other error class, or a
/// failure of another kind than load's, says the stack (or the harness) is broken.
fn broken(summary: &crate::verdict::Summary) -> Option<String> {
    let classes: Vec<String> = summary
        .errors_by_class
        .iter()
        .filter(|(c, n)| !LOAD_ERRORS.contains(&c.name()) && **n > 0)
        .map(|(c, n)| format!("{n} {}", c.name()))
        .collect();
    if !classes.is_empty() {
        return Some(format!(
            "errors of class {} (a gateway's rate limit answers 429, counted as http4xx)",
            classes.join(", ")
        ));
    }
    let other: Vec<String> = summary
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .filter(|f| !f.kind.overload() && f.kind != FindingKind::InvalidMeasurement)
        .map(|f| format!("{}: {}", f.kind, f.message))
        .collect();
    (!other.is_empty()).then(|| other.join("; "))
}

/// Runs one probe at `at` on the axis into `dir` and judges it.
pub(super) async fn probe(
    scenario: &Path,
    plan: &Plan,
    (axis, at): (Axis, f64),
    dir: PathBuf,
    repeat: bool,
) -> Result<Probe, CapacityError> {
    let duration = match axis {
        Axis::Rate => plan.capacity.probe_s,
        Axis::Users { .. } => plan.capacity.probe_s.ceil(), // goose counts whole seconds
    };
    let overrides = Overrides {
        out: Some(dir.clone()),
        load: plan::LoadOverrides {
            duration_s: Some(duration),
            // Every probe draws the same arrival sequence (scaled to its rate), so probes differ
            // by rate alone; a repeat draws another, an independent second look.
            seed: plan.load.seed.map(|s| s.wrapping_add(u64::from(repeat))),
            ..axis.overrides(at)
        },
        ..Default::default()
    };
    let rate = axis.describe(at);
    let exit = crate::run::run(scenario, overrides)
        .await
        .map_err(|source| CapacityError::Probe {
            at: rate.clone(),
            source,
        })?;
    let unjudged = |reason: String| CapacityError::Unjudged {
        at: rate.clone(),
        reason,
    };
    if exit == Exit::Unreachable {
        return Err(unjudged(format!(
            "the run failed (exit 3): see {}",
            dir.display()
        )));
    }
    let folder = RunFolder::open(&dir).map_err(|e| unjudged(e.to_string()))?;
    let Some(summary) = folder.summary.as_ref() else {
        return Err(unjudged(format!("no summary.json in {}", dir.display())));
    };
    if summary.interrupted {
        return Err(CapacityError::Interrupted(format!(
            " during the probe at {rate}"
        )));
    }
    let verdict = summary.verdict.name().to_owned();
    let broken = broken(summary);
    let agg = crate::measure::aggregate::Aggregate::new(plan.slo.clone());
    let found = margin(&folder.records, &|f| agg.slo(f).copied());
    // The backend serving the feature that broke: its model setting's endpoint, as a target.
    let serving = found
        .as_ref()
        .and_then(|(_, w)| roofline::serving(plan, w.split(' ').next().unwrap_or_default()));
    let achieved_rps = summary.load.achieved_rps;
    Ok(Probe {
        rate_rps: match axis {
            Axis::Rate => at,
            Axis::Users { .. } => achieved_rps.unwrap_or(0.0),
        },
        developers: matches!(axis, Axis::Users { .. }).then_some(at as usize),
        at,
        dir,
        compliant: verdict == "pass" && broken.is_none(),
        verdict,
        margin: found.as_ref().map(|(m, _)| crate::stats::round3(*m)),
        limiting: found.map(|(_, w)| w),
        achieved_rps,
        repeat,
        limiter: limiter(&summary.backend_metrics, serving.as_deref()),
        broken,
    })
}
