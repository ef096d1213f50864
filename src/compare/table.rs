//! The gate's console table: a row per judged check, the reason of each check that is not
//! "no regression", one line for the checks with too few samples, then the gate's verdict.

use super::{Basis, Check, Comparison, GateVerdict, Outcome};
use std::collections::BTreeSet;
use std::fmt::Write;

fn row(out: &mut String, ch: &Check) {
    let num = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
    let interval = ch
        .interval
        .map_or("-".into(), |[lo, hi]| format!("[{lo:.3}, {hi:.3}]"));
    let _ = writeln!(
        out,
        "{:<24} {:<19} {:>10} {:>10} {:>9} {:>20} {:>9.3}  {}",
        ch.feature,
        ch.metric.name(),
        num(ch.baseline),
        num(ch.current),
        num(ch.worse_by),
        interval,
        ch.allowed,
        ch.outcome.name()
    );
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
    let _ = writeln!(
        out,
        "{:<24} {:<19} {:>10} {:>10} {:>9} {:>20} {:>9}  outcome",
        "feature", "metric", "baseline", "current", "worse by", "(interval)", "allowed"
    );
    let mut checks: Vec<&Check> = c.checks.iter().collect();
    checks.sort_by(|a, b| (&a.feature, a.metric).cmp(&(&b.feature, b.metric)));
    for ch in checks.iter().filter(|ch| ch.basis != Basis::TooFewSamples) {
        row(&mut out, ch);
    }
    let explained =
        |ch: &&&Check| ch.outcome != Outcome::NoRegression && ch.basis != Basis::TooFewSamples;
    for ch in checks.iter().filter(explained) {
        let optional = if ch.required { "" } else { " (optional)" };
        let _ = writeln!(
            out,
            "  {} {} {}{optional}: {}",
            ch.outcome.name(),
            ch.feature,
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
