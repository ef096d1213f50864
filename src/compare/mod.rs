//! The compare stage: a run against a baseline run, per feature and metric, with a confidence
//! interval on every change, so the gate neither cries wolf on noise nor calls a real change
//! noise.
//!
//! In: two [`RunFolder`]s (baseline, current) and the gate's thresholds ([`GateSpec`]). Out: a
//! [`Comparison`] (`comparison.json`, `schemas/comparison-v1.schema.json`): one [`Check`] per
//! (feature, metric) saying `regression`, `no_regression` or `inconclusive` (how many more
//! requests would decide it), a check per conformance or routing finding the baseline did not
//! have, and the gate's [`GateVerdict`]. Runs of different corpus content, features or load
//! shapes are refused (`refuse`); a different target or length is said, not refused.
//!
//! Method (`judge`): the percentile bootstrap over requests ([`bootstrap`]), the two runs
//! resampled independently, the interval then widened by the self-audit's bound on each run's
//! figure. A latency regresses when the whole widened interval of its growth lies past the
//! threshold (+10 % *and* +20 ms by default); no regression when the whole of it lies below.
//! Anything else is inconclusive, and an inconclusive *required* check keeps the gate from
//! passing: no evidence is never a pass. A current run that failed its own verdict fails the gate.

pub mod baseline;
pub mod bootstrap;
pub mod gate;
mod judge;
pub use judge::{min_samples, split_by_mode, Figure};
mod refuse;
pub use refuse::plan_refusal;
pub mod stages;
pub mod table;

use crate::exit::Exit;
use crate::measure::StreamMode;
use crate::plan::{GateMetric, GateSpec, Threshold};
use crate::results::RunFolder;
use crate::verdict::{Finding, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
pub use table::{table, verdict_line};

/// The version of `comparison.json` this build writes and reads.
pub const COMPARISON_SCHEMA: &str = "duo-harness/comparison/v1";

/// Why two runs cannot be compared.
#[derive(Debug, thiserror::Error)]
#[error("cannot compare {baseline} with {current}: {reason}")]
pub struct Refused {
    pub baseline: String,
    pub current: String,
    pub reason: String,
}

/// One check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The change is past the threshold with the interval's confidence.
    Regression,
    /// The change is within the threshold with the interval's confidence.
    NoRegression,
    /// The interval spans the threshold, the figure cannot be bounded, or there is too little
    /// data.
    Inconclusive,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Self::Regression => "regression",
            Self::NoRegression => "no regression",
            Self::Inconclusive => "inconclusive",
        }
    }
}

/// What an outcome rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The change's confidence interval, widened by the self-audit's bounds, against the
    /// threshold.
    Interval,
    /// Too few samples in a run to judge the metric.
    TooFewSamples,
    /// The self-audit's bound could explain the change, it has no bound for the disturbance it
    /// saw, or a run has no self-audit (no `summary.json`).
    Degraded,
    /// A conformance or routing finding the baseline did not have.
    NewFinding,
}

/// One feature's metric, compared.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Check {
    pub feature: String,
    /// For a feature with streamed and non-streamed answers, which of them the latency is of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<StreamMode>,
    pub metric: GateMetric,
    pub outcome: Outcome,
    pub basis: Basis,
    /// An inconclusive required check keeps the gate from passing (`[gate] optional` and
    /// `--optional` make a check optional).
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<f64>,
    /// How much worse (+) or better (−) the current run is: ms for latencies, a share for
    /// `error_rate` and `goodput`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worse_by: Option<f64>,
    /// The interval of `worse_by` that was judged (widened by `audit_widening`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    /// How far the self-audit's bounds on the two runs' figures widened the bootstrap interval
    /// (below, above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_widening: Option<[f64; 2]>,
    /// The threshold as set, and what it allows here (the metric's unit).
    pub threshold: Threshold,
    pub allowed: f64,
    /// Samples in each run.
    pub samples: [u64; 2],
    /// Inconclusive: about this many more requests per run would decide it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_requests: Option<u64>,
    /// Why, in words.
    pub reason: String,
}

/// The gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GateVerdict {
    /// Every required check was judged "no regression", and the current run passed.
    Pass,
    /// At least one regression.
    Regression,
    /// The current run failed its own verdict (errors, cut-offs, nothing measured, an
    /// interrupted run), whatever its latency.
    RunFailed,
    /// A required check could not be judged, or the current run's measurement was invalid.
    Undecided,
}

impl GateVerdict {
    /// `compare`'s exit code (DESIGN.md): 0 pass, 1 regression or failed run, 4 undecided.
    pub fn exit(self) -> Exit {
        match self {
            Self::Pass => Exit::Pass,
            Self::Regression | Self::RunFailed => Exit::VerdictFailed,
            Self::Undecided => Exit::Invalid,
        }
    }
}

/// A run against its baseline (`comparison.json`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Comparison {
    pub schema: String,
    pub baseline: String,
    pub current: String,
    /// The gate's answer.
    pub verdict: GateVerdict,
    /// The current run's own verdict (`None`: it has no summary: interrupted).
    pub current_verdict: Option<Verdict>,
    /// What the runs differ in without being refused (target, length…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
    /// How the intervals were made.
    pub method: String,
    pub confidence: f64,
    pub regressions: usize,
    pub inconclusive: usize,
    /// Inconclusive checks that are required: each keeps the gate from passing.
    pub undecided: usize,
    pub checks: Vec<Check>,
}

impl Check {
    /// What the check is about, as every output names it.
    pub fn figure(&self) -> judge::Figure<'_> {
        judge::Figure {
            feature: &self.feature,
            mode: self.mode,
        }
    }
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        self.regressions > 0
    }

    pub fn exit(&self) -> Exit {
        self.verdict.exit()
    }
}

/// Conformance and routing findings of the current run that the baseline did not have.
fn new_findings(base: &RunFolder, cur: &RunFolder, gate: &GateSpec) -> Vec<Check> {
    let findings = |f: &RunFolder| -> Vec<Finding> {
        f.summary
            .as_ref()
            .map(|s| s.findings.clone())
            .unwrap_or_default()
    };
    let key = |f: &Finding| (f.kind, f.feature.clone(), f.message.clone());
    let old: BTreeSet<_> = findings(base).iter().map(key).collect();
    findings(cur)
        .into_iter()
        .filter(|f| !old.contains(&key(f)))
        .filter_map(|f| {
            let metric = f.kind.gate_metric()?;
            let feature = f.feature.clone().unwrap_or_else(|| "(run)".into());
            Some(Check {
                required: !gate.is_optional(&feature, metric),
                feature,
                mode: None,
                metric,
                outcome: Outcome::Regression,
                basis: Basis::NewFinding,
                baseline: None,
                current: None,
                worse_by: None,
                interval: None,
                audit_widening: None,
                threshold: Threshold::default(),
                allowed: 0.0,
                samples: [0, 0],
                more_requests: None,
                reason: format!("new {} finding: {}", f.kind, f.message),
            })
        })
        .collect()
}

/// The gate's answer from its checks and the current run's own verdict.
fn gate_verdict(checks: &[Check], current: Option<Verdict>) -> GateVerdict {
    let any = |o: Outcome, required: bool| {
        checks
            .iter()
            .any(|c| c.outcome == o && (c.required || !required))
    };
    if any(Outcome::Regression, false) {
        GateVerdict::Regression
    } else if matches!(current, None | Some(Verdict::Fail | Verdict::Error)) {
        GateVerdict::RunFailed
    } else if any(Outcome::Inconclusive, true) || current == Some(Verdict::Invalid) {
        GateVerdict::Undecided
    } else {
        GateVerdict::Pass
    }
}

/// The figures a metric of a feature is judged on: the feature whole, or for a latency of a
/// feature with both streamed and non-streamed answers, each mode apart.
fn figures<'a>(
    base: &RunFolder,
    cur: &RunFolder,
    feature: &'a str,
    metric: GateMetric,
) -> Vec<(judge::Figure<'a>, GateMetric)> {
    let modes: BTreeSet<StreamMode> = base
        .records
        .iter()
        .chain(&cur.records)
        .filter(|r| r.feature == feature)
        .map(|r| StreamMode::of(r.stream))
        .collect();
    let whole = judge::Figure {
        feature,
        mode: None,
    };
    if modes.len() < 2 || !judge::split_by_mode(metric) {
        return vec![(whole, metric)];
    }
    modes
        .into_iter()
        .map(|m| {
            let fig = judge::Figure {
                feature,
                mode: Some(m),
            };
            (fig, metric)
        })
        .collect()
}

/// Compares `current` with `baseline` by `gate`'s thresholds.
pub fn compare(
    baseline: &RunFolder,
    current: &RunFolder,
    gate: &GateSpec,
) -> Result<Comparison, Refused> {
    let id = |f: &RunFolder| format!("{} ({})", f.plan.run_id, f.dir.display());
    if let Some(reason) = refuse::refusal(baseline, current) {
        return Err(Refused {
            baseline: id(baseline),
            current: id(current),
            reason,
        });
    }
    let features: BTreeSet<&str> = baseline
        .records
        .iter()
        .chain(&current.records)
        .map(|r| r.feature.as_str())
        .collect();
    let mut checks: Vec<Check> = features
        .iter()
        .flat_map(|f| GateMetric::MEASURED.iter().map(move |m| (*f, *m)))
        .flat_map(|(f, m)| figures(baseline, current, f, m))
        .filter_map(|(fig, m)| judge::judge(baseline, current, fig, m, gate))
        .collect();
    checks.extend(new_findings(baseline, current, gate));
    let count = |p: &dyn Fn(&Check) -> bool| checks.iter().filter(|c| p(c)).count();
    // The run's own verdict, before any gate folded into it (a run judged against another
    // baseline earlier may carry that gate's findings).
    let current_verdict = current.summary.as_ref().map(|s| {
        let gate = |f: &Finding| f.kind.stage() == crate::verdict::StageName::Gate;
        if !s.findings.iter().any(gate) {
            return s.verdict;
        }
        let own: Vec<Finding> = s.findings.iter().filter(|f| !gate(f)).cloned().collect();
        crate::verdict::verdict(&own)
    });
    Ok(Comparison {
        schema: COMPARISON_SCHEMA.into(),
        baseline: id(baseline),
        current: id(current),
        verdict: gate_verdict(&checks, current_verdict),
        current_verdict,
        differences: refuse::differences(baseline, current),
        method: format!(
            "stratified percentile bootstrap over requests (resampled within each corpus case; \
             {} resamples of each run, independently), {:.0} % intervals widened by the \
             self-audit's bounds",
            bootstrap::RESAMPLES,
            gate.confidence() * 100.0
        ),
        confidence: gate.confidence(),
        regressions: count(&|c| c.outcome == Outcome::Regression),
        inconclusive: count(&|c| c.outcome == Outcome::Inconclusive),
        undecided: count(&|c| c.outcome == Outcome::Inconclusive && c.required),
        checks,
    })
}
