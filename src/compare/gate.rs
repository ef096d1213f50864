//! The gate folded into a run's verdict, as `run` and `report` both judge: the run's summary
//! against the scenario's baseline, the comparison's regressions and undecided checks as
//! findings, and the stages listed as checks of their own.

use crate::compare::{self, Comparison, GateVerdict, Outcome};
use crate::plan::{GateMetric, GateSpec};
use crate::results::RunFolder;
use crate::verdict::{
    self, Finding, FindingKind, Severity, Stage, StageName, StageStatus, Summary,
};

/// A run's summary with the gate folded in, and its stages.
pub struct Judged {
    pub summary: Summary,
    pub comparison: Option<Comparison>,
    pub stages: Vec<Stage>,
}

/// The gate stage: the `current` run (its `summary` not yet written) against `gate.baseline`.
fn gate_stage(
    current: &mut RunFolder,
    summary: &Summary,
    gate: &GateSpec,
) -> (Option<Comparison>, Stage) {
    let stage = |status, detail: String| Stage {
        name: "gate".into(),
        status,
        detail,
    };
    let Some(baseline) = &gate.baseline else {
        let why = "no [gate] baseline in the scenario".to_owned();
        return (None, stage(StageStatus::Skipped(why), String::new()));
    };
    if !baseline.join("plan.json").is_file() {
        let why = format!(
            "no baseline run at {} yet: save one with `duo-harness baseline save RUN_DIR --to {}`",
            baseline.display(),
            baseline.display()
        );
        return (None, stage(StageStatus::Skipped(why), String::new()));
    }
    current.summary = Some(summary.clone());
    let compared = RunFolder::open(baseline)
        .map_err(|e| e.to_string())
        .and_then(|b| compare::compare(&b, current, gate).map_err(|e| e.to_string()));
    match compared {
        Err(e) => (None, stage(StageStatus::Failed(e), String::new())),
        Ok(c) => {
            let detail = format!(
                "{} checks against {}: {} regression(s), {} inconclusive ({} required)",
                c.checks.len(),
                c.baseline,
                c.regressions,
                c.inconclusive,
                c.undecided
            );
            let status = match c.verdict {
                GateVerdict::Pass => StageStatus::Passed,
                _ => StageStatus::Failed(compare::verdict_line(&c)),
            };
            (Some(c), stage(status, detail))
        }
    }
}

/// The stages a summary shows, after the run's own (`preflight`) ones: each fails on the first
/// error finding whose kind belongs to it (`verdict::kind`), and is "not configured" when the
/// scenario did not ask for it and nothing was found there.
fn derived_stages(s: &Summary, preflight: Vec<Stage>) -> Vec<Stage> {
    let features = &s.features;
    let configured = |stage: StageName| match stage {
        StageName::Routing => features.values().any(|f| f.routing.is_some()),
        StageName::Conformance => features.values().any(|f| f.conformance.is_some()),
        StageName::Slo => features.values().any(|f| f.slo.is_some()),
        _ => true,
    };
    let rows = [
        StageName::Replay,
        StageName::Routing,
        StageName::Conformance,
        StageName::Slo,
        StageName::Audit,
    ];
    let mut out = preflight;
    for stage in rows {
        let failed = s
            .findings
            .iter()
            .find(|f| f.severity == Severity::Error && f.kind.stage() == stage)
            .map(|f| f.message.clone());
        let status = match (configured(stage), failed) {
            (_, Some(m)) => StageStatus::Failed(m),
            (false, None) => StageStatus::Skipped("not configured".into()),
            (true, None) => StageStatus::Passed,
        };
        let detail = match stage {
            StageName::Replay => format!("{} requests, {} errors", s.requests, s.errors),
            StageName::Audit => format!(
                "send lateness p99 {} ms, receive delay p99 {} ms",
                s.load
                    .send_lateness_ms
                    .p99
                    .map_or("-".into(), |v| format!("{v:.3}")),
                s.load
                    .receive
                    .delay_ms
                    .p99
                    .map_or("-".into(), |v| format!("{v:.3}"))
            ),
            _ => String::new(),
        };
        out.push(Stage {
            name: stage.name().into(),
            status,
            detail,
        });
    }
    out
}

/// The required checks that could not be judged, and what would decide them.
fn undecided_message(c: &Comparison) -> String {
    let mut what: Vec<String> = c
        .checks
        .iter()
        .filter(|ch| ch.required && ch.outcome == Outcome::Inconclusive)
        .take(8)
        .map(|ch| format!("{} {} ({})", ch.feature, ch.metric, ch.reason))
        .collect();
    if c.undecided > what.len() {
        what.push(format!("and {} more", c.undecided - what.len()));
    }
    format!("{}: {}", compare::verdict_line(c), what.join("; "))
}

/// Folds the preflight stages and the gate into the summary (a failed stage, a latency
/// regression: error findings) and lists the stages.
/// `current` is the run's folder as judged (its records already read): the gate compares it
/// without reading it again, its summary replaced by this one.
pub fn judge(
    current: &mut RunFolder,
    mut summary: Summary,
    gate: &GateSpec,
    preflight: Vec<Stage>,
) -> Judged {
    for stage in &preflight {
        if let StageStatus::Failed(m) = &stage.status {
            let m = format!("{}: {m}", stage.name);
            summary.findings.push(Finding::new(
                FindingKind::Preflight,
                Severity::Error,
                None,
                m,
            ));
        }
    }
    // The gate holds the current run to its own verdict, preflight included.
    summary.verdict = verdict::verdict(&summary.findings);
    let (comparison, gate_stage) = gate_stage(current, &summary, gate);
    for ch in comparison.iter().flat_map(|c| &c.checks) {
        // New conformance and routing findings already fail the run as themselves.
        if ch.outcome == Outcome::Regression
            && !matches!(ch.metric, GateMetric::Conformance | GateMetric::Routing)
        {
            let m = format!("{} {}: {}", ch.feature, ch.metric, ch.reason);
            summary.findings.push(Finding::new(
                FindingKind::Regression,
                Severity::Error,
                Some(&ch.feature),
                m,
            ));
        }
    }
    if let Some(c) = comparison
        .as_ref()
        .filter(|c| c.verdict == GateVerdict::Undecided)
    {
        // No evidence is never a pass: the run cannot pass on a gate that could not decide.
        summary.findings.push(Finding::new(
            FindingKind::GateUndecided,
            Severity::Error,
            None,
            undecided_message(c),
        ));
    }
    if let (Some(_), StageStatus::Skipped(m)) = (&gate.baseline, &gate_stage.status) {
        // A configured gate that did not run is said out loud, never passed over silently.
        let m = format!("the gate did not run: {m}");
        summary.findings.push(Finding::new(
            FindingKind::GateSkipped,
            Severity::Warning,
            None,
            m,
        ));
    }
    if let StageStatus::Failed(m) = &gate_stage.status {
        if comparison.is_none() {
            summary.findings.push(Finding::new(
                FindingKind::GateRefused,
                Severity::Error,
                None,
                m.clone(),
            ));
        }
    }
    summary.verdict = verdict::verdict(&summary.findings);
    let mut stages = derived_stages(&summary, preflight);
    stages.push(gate_stage);
    Judged {
        summary,
        comparison,
        stages,
    }
}
