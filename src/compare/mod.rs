//! The compare stage: a run against a baseline run, per feature and metric, with a confidence
//! interval on every change, so the gate neither cries wolf on noise nor calls a real change
//! noise.
//!
//! In: two [`RunFolder`]s (baseline, current) and the gate's thresholds ([`GateSpec`]). Out: a
//! [`Comparison`] (`comparison.json`, `schemas/comparison-v1.schema.json`): one [`Check`] per
//! (feature, metric) saying `regression`, `no_regression` or `inconclusive` (how many more
//! requests would decide it), and a check per conformance or routing finding the baseline did
//! not have. Runs of different corpora, load shapes or targets are refused.
//!
//! Method: the percentile bootstrap over requests ([`bootstrap`]), the two runs resampled
//! independently. A latency regresses when the whole interval of its growth lies past the
//! threshold (+10 % *and* +20 ms by default); no regression when the whole interval lies below
//! it. A figure the self-audit marks degraded in either run is never called either way.

pub mod bootstrap;

use crate::measure::aggregate::meets;
use crate::measure::RequestRecord;
use crate::plan::{GateSpec, Threshold, GATE_METRICS};
use crate::results::RunFolder;
use bootstrap::Statistic;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Why two runs cannot be compared.
#[derive(Debug, thiserror::Error)]
#[error("cannot compare {baseline} with {current}: {reason}")]
pub struct Refused {
    pub baseline: String,
    pub current: String,
    pub reason: String,
}

/// One check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The change is past the threshold with the interval's confidence.
    Regression,
    /// The change is within the threshold with the interval's confidence.
    NoRegression,
    /// The interval spans the threshold, the figure is degraded, or there is too little data.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The change's confidence interval against the threshold.
    Interval,
    /// Too few samples in a run to judge the metric.
    TooFewSamples,
    /// The self-audit marked the figure degraded (or the run has no self-audit).
    Degraded,
    /// A conformance or routing finding the baseline did not have.
    NewFinding,
}

/// One feature's metric, compared.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub feature: String,
    /// A gate metric (`ttft_p99`…), or `conformance` / `routing` for a new finding.
    pub metric: String,
    pub outcome: Outcome,
    pub basis: Basis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<f64>,
    /// How much worse (+) or better (−) the current run is: ms for latencies, a share for
    /// `error_rate` and `goodput`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worse_by: Option<f64>,
    /// The interval of `worse_by`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    /// The threshold as set, and what it allows here (the metric's unit).
    pub threshold: Threshold,
    pub allowed: f64,
    /// Samples in each run.
    pub samples: [u64; 2],
    /// Inconclusive on an interval: about this many more requests per run would decide it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more_requests: Option<u64>,
    /// Why, in words.
    pub reason: String,
}

/// A run against its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub schema: &'static str,
    pub baseline: String,
    pub current: String,
    /// How the intervals were made.
    pub method: String,
    pub confidence: f64,
    pub regressions: usize,
    pub inconclusive: usize,
    pub checks: Vec<Check>,
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        self.regressions > 0
    }
}

/// What a metric is measured on, and which way is worse.
struct MetricDef {
    stat: Statistic,
    /// The self-audit's figure that must not be degraded.
    trust: &'static str,
    /// +1: higher is worse; −1: lower is worse.
    worse: f64,
    /// Fewest samples per run before the metric is judged at all.
    min_samples: usize,
}

fn metric_def(name: &str) -> MetricDef {
    let q = |q: f64, trust, min_samples| MetricDef {
        stat: Statistic::Quantile(q),
        trust,
        worse: 1.0,
        min_samples,
    };
    match name {
        "ttft_p50" => q(0.5, "ttft", 10),
        "ttft_p99" => q(0.99, "ttft", 100),
        "tpot_p50" => q(0.5, "tpot", 10),
        "tpot_p99" => q(0.99, "tpot", 100),
        "e2e_p99" => q(0.99, "e2e", 100),
        "first_action_p50" | "tool_round_trip_p50" => q(0.5, "", 10),
        "session_p99" => q(0.99, "", 100),
        "goodput" => MetricDef {
            stat: Statistic::Mean,
            trust: "goodput",
            worse: -1.0,
            min_samples: 10,
        },
        _ => MetricDef {
            stat: Statistic::Mean,
            trust: "",
            worse: 1.0,
            min_samples: 10,
        },
    }
}

/// One sample per measured request of `feature`, for `metric` (`None`: not applicable).
fn samples(folder: &RunFolder, feature: &str, metric: &str) -> Option<Vec<f64>> {
    let measured = folder.records.iter().filter(|r| {
        r.feature == feature && !r.warmup && r.disposition == crate::measure::Disposition::Completed
    });
    let ok = |f: fn(&RequestRecord) -> Option<f64>| {
        measured.clone().filter(|r| r.ok()).filter_map(f).collect()
    };
    let session_metric = matches!(
        metric,
        "first_action_p50" | "tool_round_trip_p50" | "session_p99"
    );
    if session_metric && !measured.clone().any(|r| r.session.is_some()) {
        return None; // not an Agent Platform feature
    }
    Some(match metric {
        "first_action_p50" => ok(|r| r.session.as_ref()?.first_action_ms),
        "tool_round_trip_p50" => measured
            .filter(|r| r.ok())
            .filter_map(|r| r.session.as_ref())
            .flat_map(|s| s.tool_round_trips_ms.iter().copied())
            .collect(),
        "session_p99" => ok(|r| r.session.as_ref().map(|_| r.end_ms)),
        "ttft_p50" | "ttft_p99" => ok(RequestRecord::ttft_ms),
        "tpot_p50" | "tpot_p99" => ok(RequestRecord::tpot_ms),
        "e2e_p99" => ok(RequestRecord::e2e_ms),
        "error_rate" => measured.map(|r| f64::from(u8::from(r.failed()))).collect(),
        "goodput" => {
            let agg = crate::measure::aggregate::Aggregate::new(folder.plan.slo.clone());
            let slo = *agg.slo(feature)?;
            measured
                .map(|r| f64::from(u8::from(meets(&slo, r))))
                .collect()
        }
        _ => return None,
    })
}

/// Whether the self-audit marked a figure of `feature` degraded in the folder's summary.
fn degraded(folder: &RunFolder, feature: &str, figure: &str) -> bool {
    let pointer = format!("/features/{feature}/trust/{figure}/status");
    folder.summary_at(&pointer).and_then(Value::as_str) == Some("degraded")
}

/// A stable seed per check, so the same two runs always give the same intervals.
fn seed_of(feature: &str, metric: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{feature}/{metric}").as_bytes());
    u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
}

fn judge(
    base: &RunFolder,
    cur: &RunFolder,
    feature: &str,
    metric: &str,
    gate: &GateSpec,
) -> Option<Check> {
    let def = metric_def(metric);
    let (b, c) = (
        samples(base, feature, metric)?,
        samples(cur, feature, metric)?,
    );
    let threshold = gate.threshold(feature, metric);
    let mut check = Check {
        feature: feature.into(),
        metric: metric.into(),
        outcome: Outcome::Inconclusive,
        basis: Basis::TooFewSamples,
        baseline: None,
        current: None,
        worse_by: None,
        interval: None,
        threshold,
        allowed: 0.0,
        samples: [b.len() as u64, c.len() as u64],
        more_requests: None,
        reason: String::new(),
    };
    if b.len() < def.min_samples || c.len() < def.min_samples {
        check.reason = format!(
            "too few samples to judge ({} and {}; at least {} each)",
            b.len(),
            c.len(),
            def.min_samples
        );
        check.more_requests = Some((def.min_samples - b.len().min(c.len())) as u64);
        return Some(check);
    }
    let ch = bootstrap::change(
        def.stat,
        &b,
        &c,
        gate.confidence(),
        seed_of(feature, metric),
    )?;
    let w = def.worse;
    let (worse, lo, hi) = (
        w * (ch.current - ch.baseline),
        (w * ch.low).min(w * ch.high),
        (w * ch.low).max(w * ch.high),
    );
    let allowed = threshold.allowance(ch.baseline);
    let r3 = crate::stats::round3;
    check.baseline = Some(r3(ch.baseline));
    check.current = Some(r3(ch.current));
    check.worse_by = Some(r3(worse));
    check.interval = Some([r3(lo), r3(hi)]);
    check.allowed = r3(allowed);
    let runs_degraded: Vec<&str> = [("baseline", base), ("current", cur)]
        .into_iter()
        .filter(|(_, f)| !def.trust.is_empty() && degraded(f, feature, def.trust))
        .map(|(n, _)| n)
        .collect();
    let unaudited: Vec<&str> = [("baseline", base), ("current", cur)]
        .into_iter()
        .filter(|(_, f)| !def.trust.is_empty() && f.summary.is_none())
        .map(|(n, _)| n)
        .collect();
    check.basis = Basis::Interval;
    if !unaudited.is_empty() {
        check.basis = Basis::Degraded;
        check.reason = format!(
            "the {} run has no summary.json (killed?), so no self-audit says how far its {} can \
             be trusted: `duo-harness report` on it first",
            unaudited.join(" and "),
            def.trust
        );
    } else if !runs_degraded.is_empty() {
        check.basis = Basis::Degraded;
        check.reason = format!(
            "the self-audit marks {} degraded in the {} run: neither a regression nor an \
             improvement can be read from it",
            def.trust,
            runs_degraded.join(" and ")
        );
    } else if lo > allowed {
        check.outcome = Outcome::Regression;
        check.reason = format!("worse by {lo:.3} to {hi:.3}, past the {allowed:.3} allowed");
    } else if hi <= allowed {
        check.outcome = Outcome::NoRegression;
        check.reason = match hi < 0.0 && -worse > allowed {
            true => format!("better by {:.3} to {:.3}", -hi, -lo),
            false => format!("within the {allowed:.3} allowed (at most {hi:.3} worse)"),
        };
    } else {
        let half = (hi - lo) / 2.0;
        let distance = (worse - allowed).abs();
        let n = b.len().max(c.len()) as f64;
        check.more_requests = (distance > half * 0.05)
            .then(|| ((n * (half / distance).powi(2)).ceil() - n).max(1.0) as u64);
        check.reason = format!(
            "the interval {lo:.3} to {hi:.3} spans the {allowed:.3} allowed{}",
            match check.more_requests {
                Some(m) => format!("; about {m} more requests per run would decide it"),
                None => "; the change sits on the threshold".into(),
            }
        );
    }
    Some(check)
}

/// Conformance and routing findings of the current run that the baseline did not have.
fn new_findings(base: &RunFolder, cur: &RunFolder) -> Vec<Check> {
    const KINDS: &[(&str, &str)] = &[
        ("routing", "routing"),
        ("parameter_drift", "routing"),
        ("conformance_protocol", "conformance"),
        ("conformance_content", "conformance"),
    ];
    let findings = |f: &RunFolder| -> Vec<Value> {
        f.summary_at("/findings")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let key = |f: &Value| {
        (
            f["kind"].clone(),
            f["feature"].clone(),
            f["message"].clone(),
        )
    };
    let old: BTreeSet<String> = findings(base)
        .iter()
        .map(|f| format!("{:?}", key(f)))
        .collect();
    findings(cur)
        .iter()
        .filter(|f| !old.contains(&format!("{:?}", key(f))))
        .filter_map(|f| {
            let (_, metric) = KINDS.iter().find(|(k, _)| f["kind"] == *k)?;
            Some(Check {
                feature: f["feature"].as_str().unwrap_or("(run)").into(),
                metric: (*metric).into(),
                outcome: Outcome::Regression,
                basis: Basis::NewFinding,
                baseline: None,
                current: None,
                worse_by: None,
                interval: None,
                threshold: Threshold::default(),
                allowed: 0.0,
                samples: [0, 0],
                more_requests: None,
                reason: format!(
                    "new {} finding: {}",
                    f["kind"].as_str().unwrap_or_default(),
                    f["message"].as_str().unwrap_or_default()
                ),
            })
        })
        .collect()
}

/// What two runs must share to be compared: corpus, features, load shape (seed aside), target.
fn refusal(base: &RunFolder, cur: &RunFolder) -> Option<String> {
    let (b, c) = (&base.plan, &cur.plan);
    let name = |p: &std::path::Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    if name(&b.corpus_path) != name(&c.corpus_path) {
        return Some(format!(
            "different corpora ({} and {})",
            b.corpus_path.display(),
            c.corpus_path.display()
        ));
    }
    // The plans' feature filters, not the features a short random mix happened to draw: a
    // feature one run did not sample is judged inconclusive (too few samples), not refused.
    if b.features != c.features {
        return Some(format!(
            "different features ({:?} and {:?})",
            b.features, c.features
        ));
    }
    let shape = |p: &crate::results::RecordedPlan| {
        let mut v = serde_json::to_value(&p.load).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("seed");
        }
        v
    };
    if shape(b) != shape(c) {
        return Some(format!(
            "different load shapes ({} and {})",
            shape(b),
            shape(c)
        ));
    }
    if b.target_url != c.target_url {
        let t = |u: &Option<String>| u.clone().unwrap_or_else(|| "the embedded twin".into());
        return Some(format!(
            "different targets ({} and {})",
            t(&b.target_url),
            t(&c.target_url)
        ));
    }
    None
}

/// Compares `current` with `baseline` by `gate`'s thresholds.
pub fn compare(
    baseline: &RunFolder,
    current: &RunFolder,
    gate: &GateSpec,
) -> Result<Comparison, Refused> {
    let id = |f: &RunFolder| format!("{} ({})", f.plan.run_id, f.dir.display());
    if let Some(reason) = refusal(baseline, current) {
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
        .flat_map(|f| GATE_METRICS.iter().map(move |m| (*f, *m)))
        .filter_map(|(f, m)| judge(baseline, current, f, m, gate))
        .collect();
    checks.extend(new_findings(baseline, current));
    let count = |o: Outcome| checks.iter().filter(|c| c.outcome == o).count();
    Ok(Comparison {
        schema: "duo-harness/comparison/v1",
        baseline: id(baseline),
        current: id(current),
        method: format!(
            "percentile bootstrap over requests ({} resamples of each run, independently), \
             {:.0} % intervals",
            bootstrap::RESAMPLES,
            gate.confidence() * 100.0
        ),
        confidence: gate.confidence(),
        regressions: count(Outcome::Regression),
        inconclusive: count(Outcome::Inconclusive),
        checks,
    })
}

/// The console table: a row per judged check, the reason of each regression and inconclusive
/// one, one line for the checks with too few samples, then the counts.
pub fn table(c: &Comparison) -> String {
    let mut out = format!(
        "compare: {} against baseline {}\n{:<24} {:<12} {:>10} {:>10} {:>22} {:>9}  outcome\n",
        c.current,
        c.baseline,
        "feature",
        "metric",
        "baseline",
        "current",
        "worse by (interval)",
        "allowed"
    );
    let by_feature: BTreeMap<&str, Vec<&Check>> =
        c.checks.iter().fold(BTreeMap::new(), |mut m, ch| {
            m.entry(ch.feature.as_str()).or_default().push(ch);
            m
        });
    let num = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
    for checks in by_feature.values() {
        for ch in checks.iter().filter(|ch| ch.basis != Basis::TooFewSamples) {
            let interval = ch
                .interval
                .map_or("-".into(), |[lo, hi]| format!("[{lo:.3}, {hi:.3}]"));
            out += &format!(
                "{:<24} {:<12} {:>10} {:>10} {:>9} {:>12} {:>9.3}  {}\n",
                ch.feature,
                ch.metric,
                num(ch.baseline),
                num(ch.current),
                num(ch.worse_by),
                interval,
                ch.allowed,
                ch.outcome.name()
            );
        }
    }
    let explained =
        |ch: &&Check| ch.outcome != Outcome::NoRegression && ch.basis != Basis::TooFewSamples;
    for ch in c.checks.iter().filter(explained) {
        let (what, f, m) = (ch.outcome.name(), &ch.feature, &ch.metric);
        out += &format!("  {what} {f} {m}: {}\n", ch.reason);
    }
    let few: Vec<&Check> = c
        .checks
        .iter()
        .filter(|ch| ch.basis == Basis::TooFewSamples)
        .collect();
    if !few.is_empty() {
        let features: BTreeSet<&str> = few.iter().map(|ch| ch.feature.as_str()).collect();
        let features: Vec<&str> = features.into_iter().collect();
        out += &format!(
            "  inconclusive: {} checks had too few samples (a median or a rate needs 10 requests \
             per run, a p99 100): {}\n",
            few.len(),
            features.join(", ")
        );
    }
    out += &format!(
        "{} checks: {} regression(s), {} inconclusive ({})\n",
        c.checks.len(),
        c.regressions,
        c.inconclusive,
        c.method
    );
    out
}
