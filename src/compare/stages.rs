//! A run's stages after its load (replay, routing, conformance, SLO, audit), judged from its
//! summary, and the rule that a stage which checked nothing is never a pass: it says "not run"
//! and why, and fails the run unless nothing could be checked yet (`--first-run`) or the run
//! measures something else (`--calibrate`).

use crate::conformance::{noise_path, Noise};
use crate::plan::{Overrides, PreflightPolicy};
use crate::results::RunFolder;
use crate::verdict::{Finding, FindingKind, Severity, Stage, StageName, StageStatus, Summary};

/// What a run was for, as its command line said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Checked against its references: every configured stage must check something.
    Normal,
    /// `--first-run`: the references (snapshots, baseline) are being made.
    FirstRun,
    /// `--calibrate`: the noise floor is being measured, one request at a time.
    Calibration,
}

impl RunMode {
    pub fn of(o: &Overrides) -> Self {
        match (o.first_run, o.calibrate) {
            (true, _) => Self::FirstRun,
            (_, true) => Self::Calibration,
            _ => Self::Normal,
        }
    }
}

/// Features the corpus selected that no request measured: the replay did not check them.
fn unsent(folder: &RunFolder, s: &Summary) -> Option<Finding> {
    let measured = |f: &String| {
        s.features
            .get(f)
            .is_some_and(|f| f.requests + f.warmup + f.cut_off > 0)
    };
    let missing: Vec<&String> = folder
        .plan_json
        .resolved
        .features
        .iter()
        .filter(|f| !measured(f))
        .collect();
    if missing.is_empty() || s.requests == 0 {
        return None; // nothing measured at all is its own finding
    }
    let names: Vec<&str> = missing.iter().map(|f| f.as_str()).collect();
    let m = format!(
        "not run for {} of {} features of the corpus (never sent: {}): the load was too short \
         or too slow for the mix; see the sizing line before the load",
        missing.len(),
        folder.plan_json.resolved.features.len(),
        names.join(", ")
    );
    Some(Finding::new(
        FindingKind::FeaturesUnsent,
        Severity::Error,
        None,
        m,
    ))
}

/// Features whose conformance compared nothing (no reviewed snapshot): not run for them. One
/// finding names them all.
fn conformance_unchecked(folder: &RunFolder, s: &Summary, mode: RunMode) -> Option<Finding> {
    let dir = folder.plan.conformance.snapshots.as_ref()?;
    let unchecked: Vec<(&String, u64)> = s
        .features
        .iter()
        .filter_map(|(f, fs)| fs.conformance.as_ref().map(|c| (f, c)))
        .filter(|(_, c)| c.compared == 0)
        .map(|(f, c)| (f, c.new))
        .collect();
    if unchecked.is_empty() {
        return None;
    }
    let dir = dir.display();
    // Only a first run is excused (a calibration does not compare).
    let (why, severity) = match mode {
        RunMode::FirstRun => (
            "first run (--first-run): nothing to compare with yet".to_owned(),
            Severity::Info,
        ),
        _ => (
            format!(
                "review them (`duo-harness snapshots review --dir {dir}`, then `accept`), or say \
                 this is the first run (--first-run)"
            ),
            Severity::Error,
        ),
    };
    let pending: u64 = unchecked.iter().map(|(_, n)| n).sum();
    let names: Vec<&str> = unchecked.iter().map(|(f, _)| f.as_str()).collect();
    let m = format!(
        "not run for {} feature(s): no reviewed snapshot in {dir}; {pending} answer(s) recorded \
         as pending: {why} ({})",
        names.len(),
        names.join(", ")
    );
    Some(Finding::new(
        FindingKind::ConformanceNotRun,
        severity,
        None,
        m,
    ))
}

/// A calibration's own judgement: every feature replayed must have cases answered twice.
fn calibration_findings(s: &Summary, noise: Option<&Noise>) -> Vec<Finding> {
    let Some(noise) = noise else {
        return Vec::new();
    };
    s.features
        .keys()
        .filter(|f| noise.cases.get(*f).copied().unwrap_or(0) == 0)
        .map(|f| {
            let m = format!("calibration: no case of {f} was answered twice without error");
            Finding::new(FindingKind::ConformanceNotRun, Severity::Error, Some(f), m)
        })
        .collect()
}

/// The noise floor a calibration run wrote, when this folder is one.
pub fn calibration_noise(folder: &RunFolder) -> Option<Noise> {
    if !folder.plan.overrides.calibrate {
        return None;
    }
    let dir = folder.plan.conformance.snapshots.as_ref()?;
    let text = std::fs::read_to_string(noise_path(dir, &folder.plan.corpus_name())).ok()?;
    serde_json::from_str(&text).ok()
}

/// The findings of stages that checked nothing (and of a calibration that calibrated nothing:
/// `noise`, what it wrote).
pub fn not_run_findings(
    folder: &RunFolder,
    s: &Summary,
    mode: RunMode,
    noise: Option<&Noise>,
) -> Vec<Finding> {
    let mut out: Vec<Finding> = unsent(folder, s).into_iter().collect();
    match mode {
        RunMode::Calibration => out.extend(calibration_findings(s, noise)),
        _ => out.extend(conformance_unchecked(folder, s, mode)),
    }
    out
}

/// Why the stages after the load were not run: a preflight stage failed and stopped the run
/// (unless `load.on_failed_preflight = "send"`).
pub fn stopped_by(preflight: &[Stage], policy: PreflightPolicy) -> Option<String> {
    if policy == PreflightPolicy::Send {
        return None;
    }
    let failed: Vec<&str> = preflight
        .iter()
        .filter(|s| matches!(s.status, StageStatus::Failed(_)))
        .map(|s| s.name.as_str())
        .collect();
    (!failed.is_empty()).then(|| {
        format!(
            "not run: the preflight failed ({}), so no load was sent",
            failed.join(", ")
        )
    })
}

/// Why a stage was not run although nothing failed in it (mode or preflight), if it was not.
fn excused(stage: StageName, mode: RunMode, stopped: Option<&str>) -> Option<String> {
    if let Some(why) = stopped {
        return Some(why.to_owned());
    }
    match (stage, mode) {
        (StageName::Slo, RunMode::Calibration) => Some(
            "not run: a calibration run sends one request at a time, which says nothing of \
             latency at the peak"
                .into(),
        ),
        _ => None,
    }
}

/// One stage's status: its first error (a "not run" error included), else why it was not run,
/// else whether the scenario asked for it.
fn status(s: &Summary, stage: StageName, configured: bool, excuse: Option<String>) -> StageStatus {
    let failed = s
        .findings
        .iter()
        .find(|f| f.severity == Severity::Error && f.kind.stage() == stage)
        .map(|f| f.message.clone());
    // Conformance that compared nothing, excused (a first run): not run, and why.
    let unchecked = s
        .findings
        .iter()
        .find(|f| stage == StageName::Conformance && f.kind == FindingKind::ConformanceNotRun)
        .map(|f| f.message.clone());
    match (failed, excuse.or(unchecked), configured) {
        (Some(m), _, _) => StageStatus::Failed(m),
        (None, Some(why), _) => StageStatus::Skipped(why),
        (None, None, false) => StageStatus::Skipped("not configured".into()),
        (None, None, true) => StageStatus::Passed,
    }
}

/// What a stage saw, for its detail line.
fn detail(s: &Summary, stage: StageName, noise: Option<&Noise>) -> String {
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
    match stage {
        StageName::Replay => format!(
            "{} requests, {} errors, {} feature(s)",
            s.requests,
            s.errors,
            s.features.len()
        ),
        StageName::Conformance => match noise {
            Some(n) => format!(
                "noise floor measured over {} case(s) of {} feature(s)",
                n.cases.values().sum::<u64>(),
                n.cases.len()
            ),
            None => {
                let counts = s.features.values().filter_map(|f| f.conformance.as_ref());
                let (compared, new) = counts.fold((0, 0), |(c, n), k| (c + k.compared, n + k.new));
                format!("{compared} answer(s) compared, {new} without a reviewed snapshot")
            }
        },
        StageName::Audit => format!(
            "send lateness p99 {} ms, receive delay p99 {} ms",
            ms(s.load.send_lateness_ms.p99),
            ms(s.load.receive.delay_ms.p99)
        ),
        _ => String::new(),
    }
}

/// The stages a summary shows, after the run's own (`preflight`) ones.
pub fn derived_stages(
    folder: &RunFolder,
    s: &Summary,
    preflight: Vec<Stage>,
    mode: RunMode,
    noise: Option<&Noise>,
) -> Vec<Stage> {
    let features = &s.features;
    let configured = |stage: StageName| match stage {
        StageName::Routing => features.values().any(|f| f.routing.is_some()),
        StageName::Conformance => {
            features.values().any(|f| f.conformance.is_some()) || mode == RunMode::Calibration
        }
        StageName::Slo => features.values().any(|f| f.slo.is_some()),
        _ => true,
    };
    let stopped = stopped_by(&preflight, folder.plan.load.on_failed_preflight);
    let rows = [
        StageName::Replay,
        StageName::Routing,
        StageName::Conformance,
        StageName::Slo,
        StageName::Audit,
    ];
    let mut out = preflight;
    for stage in rows {
        let excuse = excused(stage, mode, stopped.as_deref());
        out.push(Stage {
            name: stage.name().into(),
            status: status(s, stage, configured(stage), excuse),
            detail: detail(s, stage, noise),
        });
    }
    out
}
