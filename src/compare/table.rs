//! The gate's console table: a row per judged check, the reason of each check that is not
//! "no regression", one line for the checks with too few samples, then the gate's verdict.

use super::{Basis, Check, Comparison, GateVerdict, Outcome};
use crate::plan::GateMetric;
use std::collections::BTreeSet;
use std::fmt::Write;

/// A metric's unit: latencies in ms, rates and shares in percentage points.
fn is_share(metric: GateMetric) -> bool {
    use GateMetric as M;
    matches!(
        metric,
        M::ErrorRate | M::Goodput | M::Conformance | M::Routing
    )
}

/// A figure with its unit.
fn figure(metric: GateMetric, v: f64) -> String {
    match is_share(metric) {
        true => format!("{:.2} %", v * 100.0),
        false => format!("{v:.1} ms"),
    }
}

/// The change in words: "worse by 12.3 ms", "better by 4.0 ms", "no change".
fn change(metric: GateMetric, worse_by: f64) -> String {
    let size = figure(metric, worse_by.abs());
    // What rounds to nothing at the figures' precision is no change.
    if size == figure(metric, 0.0) {
        return "no change".into();
    }
    match worse_by > 0.0 {
        true => format!("worse by {size}"),
        false => format!("better by {size}"),
    }
}

/// A check's cells, units included: what it is, the two figures, the change in words, its
/// interval, the allowance and the outcome.
pub fn cells(ch: &Check) -> [String; 8] {
    let m = ch.metric;
    let num = |v: Option<f64>| v.map_or("-".into(), |v| figure(m, v));
    let interval = ch
        .interval
        .map_or("-".into(), |[lo, hi]| match is_share(m) {
            true => format!("[{:+.2}, {:+.2}] %", lo * 100.0, hi * 100.0),
            false => format!("[{lo:+.1}, {hi:+.1}] ms"),
        });
    [
        ch.figure().to_string(),
        m.name().into(),
        num(ch.baseline),
        num(ch.current),
        ch.worse_by.map_or("-".into(), |w| change(m, w)),
        interval,
        figure(m, ch.allowed),
        ch.outcome.name().into(),
    ]
}

/// The console's last column: the allowance and the outcome together.
fn console_cells(ch: &Check) -> [String; 7] {
    let [a, b, c, d, e, f, allowed, outcome] = cells(ch);
    [a, b, c, d, e, f, format!("{allowed} {outcome}")]
}

/// Rows padded to their columns' widths: text left, figures right.
fn aligned(rows: &[[String; 7]]) -> String {
    let mut widths = [0usize; 7];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            let pad = " ".repeat(w - c.chars().count());
            match i {
                0 | 1 | 4 | 6 => line.push_str(&format!("{c}{pad}  ")),
                _ => line.push_str(&format!("{pad}{c}  ")),
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn few_samples(out: &mut String, c: &Comparison) {
    let few: Vec<&Check> = c
        .checks
        .iter()
        .filter(|ch| ch.basis == Basis::TooFewSamples)
        .collect();
    if few.is_empty() {
        return;
    }
    let features: BTreeSet<&str> = few.iter().map(|ch| ch.feature.as_str()).collect();
    let most = few
        .iter()
        .filter_map(|ch| ch.more_requests)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "  inconclusive: {} checks had too few samples (a median or a rate needs 10 requests per \
         run, a p99 100; up to {most} more per run): {}",
        few.len(),
        features.into_iter().collect::<Vec<_>>().join(", ")
    );
}

/// The table `compare` and `run` print.
pub fn table(c: &Comparison) -> String {
    let mut out = format!("compare: {} against baseline {}\n", c.current, c.baseline);
    for d in &c.differences {
        let _ = writeln!(out, "  differs: {d}");
    }
    let mut checks: Vec<&Check> = c.checks.iter().collect();
    checks.sort_by(|a, b| (&a.feature, a.metric, a.mode).cmp(&(&b.feature, b.metric, b.mode)));
    let header = [
        "feature",
        "metric",
        "baseline",
        "current",
        "change",
        "interval",
        "allowed, outcome",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = std::iter::once(header)
        .chain(
            checks
                .iter()
                .filter(|ch| ch.basis != Basis::TooFewSamples)
                .map(|ch| console_cells(ch)),
        )
        .collect();
    out.push_str(&aligned(&rows));
    let explained =
        |ch: &&&Check| ch.outcome != Outcome::NoRegression && ch.basis != Basis::TooFewSamples;
    for ch in checks.iter().filter(explained) {
        let optional = if ch.required { "" } else { " (optional)" };
        let _ = writeln!(
            out,
            "  {} {} {}{optional}: {}",
            ch.outcome.name(),
            ch.figure(),
            ch.metric.name(),
            ch.reason
        );
    }
    few_samples(&mut out, c);
    let _ = writeln!(
        out,
        "{} checks: {} regression(s), {} inconclusive, {} of them required ({})",
        c.checks.len(),
        c.regressions,
        c.inconclusive,
        c.undecided,
        c.method
    );
    let _ = writeln!(out, "gate: {}", verdict_line(c));
    out
}

/// The gate's verdict in words.
pub fn verdict_line(c: &Comparison) -> String {
    match c.verdict {
        GateVerdict::Pass => "pass: every required check was judged \"no regression\"".into(),
        GateVerdict::Regression => format!("fail: {} regression(s)", c.regressions),
        GateVerdict::RunFailed => format!(
            "fail: the current run failed its own verdict ({}), whatever its latency",
            c.current_verdict
                .map_or("no summary.json: interrupted".into(), |v| v.to_string())
        ),
        GateVerdict::Undecided => {
            let mut why = format!(
                "undecided: {} required check(s) could not be judged, and no evidence is never a \
                 pass",
                c.undecided
            );
            if c.current_verdict == Some(crate::verdict::Verdict::Invalid) {
                why += "; the current run's own measurement was invalid";
            }
            let more = c
                .checks
                .iter()
                .filter(|ch| ch.required)
                .filter_map(|ch| ch.more_requests)
                .max();
            if let Some(m) = more {
                let _ = write!(
                    why,
                    "; about {m} more requests per feature would decide the rest of them"
                );
            }
            why
        }
    }
}
