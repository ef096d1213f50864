//! The gate folded into a run's verdict, as `run` and `report` both judge: the run's summary
//! against the scenario's baseline, the comparison's regressions and undecided checks as
//! findings, and the stages listed as checks of their own.

use super::stages::{calibration_noise, derived_stages, not_run_findings, stopped_by, RunMode};
use crate::compare::{self, Comparison, GateVerdict, Outcome};
use crate::plan::{GateMetric, GateSpec};
use crate::results::RunFolder;
use crate::verdict::{self, Finding, FindingKind, Severity, Stage, StageStatus, Summary};

/// A run's summary with the gate folded in, and its stages.
pub struct Judged {
    pub summary: Summary,
    pub comparison: Option<Comparison>,
    pub stages: Vec<Stage>,
}

/// The baseline the gate compares with, or why the gate is not run: no baseline configured,
/// the mode, a stopped run, or no baseline where the scenario says (an error unless this is
/// the first run).
fn gate_baseline<'a>(
    gate: &'a GateSpec,
    mode: RunMode,
    stopped: Option<&str>,
) -> Result<&'a std::path::Path, (StageStatus, Option<Finding>)> {
    let Some(baseline) = &gate.baseline else {
        let why = "no [gate] baseline in the scenario".to_owned();
        return Err((StageStatus::Skipped(why), None));
    };
    if let Some(why) = stopped {
        return Err((StageStatus::Skipped(why.to_owned()), None));
    }
    let at = baseline.display();
    match mode {
        RunMode::FirstRun => {
            let why =
                format!("not run: first run: a passing run is stored as the baseline at {at}");
            return Err((StageStatus::Skipped(why), None));
        }
        RunMode::Calibration => {
            let why = "not run: a calibration run is not compared with the baseline".to_owned();
            return Err((StageStatus::Skipped(why), None));
        }
        RunMode::Normal if compare::baseline::holds(baseline) => return Ok(baseline),
        RunMode::Normal => {}
    }
    let why = format!(
        "not run: no baseline run at {at}: a missing baseline is not a pass. On the first run \
         against this stack say so (`run --first-run` stores a passing run there), or store one \
         with `duo-harness baseline save RUN_DIR --to {at}`"
    );
    let finding = Finding::new(FindingKind::GateSkipped, Severity::Error, None, why.clone());
    Err((StageStatus::Failed(why), Some(finding)))
}

/// The gate stage: the `current` run (its `summary` not yet written) against `gate.baseline`,
/// and the finding of a gate that could not run (missing baseline, refused comparison).
fn gate_stage(
    current: &mut RunFolder,
    summary: &Summary,
    gate: &GateSpec,
    stopped: Option<&str>,
) -> (Option<Comparison>, Stage, Option<Finding>) {
    let stage = |status, detail: String| Stage {
        name: "gate".into(),
        status,
        detail,
    };
    let mode = RunMode::of(&current.plan.overrides);
    let baseline = match gate_baseline(gate, mode, stopped) {
        Ok(b) => b,
        Err((status, finding)) => return (None, stage(status, String::new()), finding),
    };
    current.summary = Some(summary.clone());
    let compared = (current.read_records())
        .and_then(|()| RunFolder::open(baseline))
        .map_err(|e| e.to_string())
        .and_then(|b| compare::compare(&b, current, gate).map_err(|e| e.to_string()));
    match compared {
        Err(e) => {
            let refused = Finding::new(FindingKind::GateRefused, Severity::Error, None, e.clone());
            (
                None,
                stage(StageStatus::Failed(e), String::new()),
                Some(refused),
            )
        }
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
            (Some(c), stage(status, detail), None)
        }
    }
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
            let kind = stage.failure_kind();
            summary
                .findings
                .push(Finding::new(kind, Severity::Error, None, m));
        }
    }
    let mode = RunMode::of(&current.plan.overrides);
    let noise = calibration_noise(current);
    let stopped = stopped_by(&preflight, current.plan.load.on_failed_preflight);
    if stopped.is_some() {
        // No load was sent on purpose: "nothing measured" would only repeat the preflight.
        summary
            .findings
            .retain(|f| f.kind != FindingKind::NothingMeasured);
    }
    summary
        .findings
        .extend(not_run_findings(current, &summary, mode, noise.as_ref()));
    // The gate holds the current run to its own verdict, preflight included.
    summary.verdict = verdict::verdict(&summary.findings);
    let (comparison, gate_stage, not_run) = gate_stage(current, &summary, gate, stopped.as_deref());
    summary.findings.extend(not_run);
    for ch in comparison.iter().flat_map(|c| &c.checks) {
        // New conformance and routing findings already fail the run as themselves.
        if ch.outcome == Outcome::Regression
            && !matches!(ch.metric, GateMetric::Conformance | GateMetric::Routing)
        {
            let m = format!("{} {}: {}", ch.figure(), ch.metric, ch.reason);
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
    summary.verdict = verdict::verdict(&summary.findings);
    let mut stages = derived_stages(current, &summary, preflight, mode, noise.as_ref());
    stages.push(gate_stage);
    Judged {
        summary,
        comparison,
        stages,
    }
}
