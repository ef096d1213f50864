//! The load sized for the gate (`[gate] max_duration_s`, with or without a baseline yet): before
//! anything is sent, how long the declared rate must last for every required check to have its
//! samples in both runs, from the corpus's mix; the load is made that long (at least
//! `load.duration_s`, at most the cap), and the checks even the cap cannot give samples are made
//! optional. Both are said before the load.

use crate::compare::{min_samples, split_by_mode};
use crate::corpus::Interaction;
use crate::measure::StreamMode;
use crate::plan::{GateMetric, Plan};
use std::collections::{BTreeMap, BTreeSet};

/// More samples than the minimum are planned for: arrivals are random (Poisson), a few
/// requests may fail, and the round-robin over cases does not split evenly.
const SLACK: f64 = 1.3;

/// One figure the gate judges: a feature's metric, of one stream mode where it has both.
struct Need {
    feature: String,
    mode: Option<StreamMode>,
    metric: GateMetric,
    /// Share of the load's requests that are samples of it.
    share: f64,
}

/// Each interaction's share of the sends (the schedule's picker: round robin over the corpus,
/// or `load.mix`'s weights per feature, round robin within it).
fn shares(plan: &Plan, corpus: &[Interaction]) -> Vec<f64> {
    let mix = &plan.load.mix;
    if mix.is_empty() {
        return vec![1.0 / corpus.len() as f64; corpus.len()];
    }
    let total: f64 = mix.values().sum();
    corpus
        .iter()
        .map(|i| {
            let cases = corpus.iter().filter(|j| j.feature == i.feature).count();
            mix.get(&i.feature).copied().unwrap_or(0.0) / total / cases as f64
        })
        .collect()
}

/// Every required figure with its share of the load.
fn needs(plan: &Plan, corpus: &[Interaction]) -> Vec<Need> {
    let share = shares(plan, corpus);
    // Features with both streamed and non-streamed cases: their latencies are figures apart.
    let streams: BTreeSet<(&str, bool)> = corpus
        .iter()
        .map(|i| (i.feature.as_str(), i.streams()))
        .collect();
    let mixed = |f: &str| streams.contains(&(f, true)) && streams.contains(&(f, false));
    let slos = crate::measure::aggregate::Aggregate::new(plan.slo.clone());
    let mut out = Vec::new();
    for metric in GateMetric::MEASURED
        .iter()
        .copied()
        .filter(|m| http_metric(*m))
    {
        let mut by: BTreeMap<(String, Option<StreamMode>), f64> = BTreeMap::new();
        for (i, it) in corpus
            .iter()
            .enumerate()
            .filter(|(_, i)| i.protocol == "http")
        {
            let split = split_by_mode(metric) && mixed(&it.feature);
            let mode = split.then(|| StreamMode::of(it.streams()));
            if metric_applies(metric, it) {
                *by.entry((it.feature.clone(), mode)).or_default() += share[i];
            }
        }
        for ((feature, mode), share) in by {
            // Goodput is judged only where the feature has an SLO.
            let judged = metric != GateMetric::Goodput || slos.slo(&feature).is_some();
            if !plan.gate.is_optional(&feature, metric) && judged {
                out.push(Need {
                    feature,
                    mode,
                    metric,
                    share,
                });
            }
        }
    }
    out
}

/// Metrics of HTTP features (session metrics are the Agent Platform's).
fn http_metric(m: GateMetric) -> bool {
    use GateMetric as M;
    !matches!(m, M::FirstActionP50 | M::ToolRoundTripP50 | M::SessionP99)
}

/// A case gives samples of TPOT only when it streams.
fn metric_applies(m: GateMetric, it: &Interaction) -> bool {
    !matches!(m, GateMetric::TpotP50 | GateMetric::TpotP99) || it.streams()
}

/// How long the load must last for this figure's samples, s.
fn seconds(n: &Need, rate: f64, warmup_s: f64) -> f64 {
    warmup_s + min_samples(n.metric) as f64 * SLACK / (rate * n.share)
}

fn name(n: &Need) -> String {
    let figure = crate::compare::Figure {
        feature: &n.feature,
        mode: n.mode,
    };
    format!("{figure} {}", n.metric.name())
}

/// `ttft_p99 of 16 features, e2e_p99 of code_completions`: the short figures by metric.
fn by_metric(short: &[&Need]) -> String {
    let mut by: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for n in short {
        by.entry(n.metric.name()).or_default().insert(&n.feature);
    }
    let parts: Vec<String> = by
        .into_iter()
        .map(|(m, f)| match f.len() {
            1 => format!("{m} of {}", f.into_iter().next().unwrap_or_default()),
            n => format!("{m} of {n} features"),
        })
        .collect();
    parts.join(", ")
}

/// Sizes `plan`'s load for its gate, where it asks for it; returns what to say before the load.
pub(super) fn size(plan: &mut Plan, corpus: &[Interaction]) -> Option<String> {
    let cap = plan.gate.max_duration_s?;
    let (rate, declared) = (plan.load.target_rps()?, plan.load.duration_s?);
    // With or without a baseline yet: a run measured now to be compared later needs the
    // samples as much as the one compared. A `--duration` on the command line is taken as
    // asked: the gate then judges what it gets.
    let asked = plan.overrides.load.duration_s.is_some();
    if asked || plan.overrides.calibrate || !plan.load.arrival.open_loop() {
        return None;
    }
    let warmup = plan.load.warmup_s;
    let needs = needs(plan, corpus);
    let rarest = needs
        .iter()
        .max_by(|a, b| seconds(a, rate, warmup).total_cmp(&seconds(b, rate, warmup)))?;
    let needed = seconds(rarest, rate, warmup).ceil();
    let duration = needed.clamp(declared, cap.max(declared));
    plan.load.duration_s = Some(duration);
    let mut said = format!(
        "gate sizing: at {rate} req/s every required check has its samples after {needed} s \
         (the rarest: {}, {} samples at {:.1} % of the load, warm-up {warmup} s); the load runs \
         {duration} s",
        name(rarest),
        min_samples(rarest.metric),
        rarest.share * 100.0
    );
    let short: Vec<&Need> = needs
        .iter()
        .filter(|n| seconds(n, rate, warmup) > duration)
        .collect();
    if !short.is_empty() {
        let mut optional: Vec<String> = short
            .iter()
            .map(|n| format!("{}.{}", n.feature, n.metric.name()))
            .collect();
        optional.sort();
        optional.dedup();
        said += &format!(
            "\ngate sizing: [gate] max_duration_s = {cap} s is too short for {} figure(s); \
             these checks stay optional (judged if they get their samples, never failing the \
             gate unjudged; plan.json's gate.optional lists them): {}",
            short.len(),
            by_metric(&short)
        );
        plan.gate.optional.extend(optional);
    }
    Some(said)
}
