//! The back half's commands, wired from its stages: `report` (re-render, rebuild, merge run
//! folders), `compare` (the gate), `baseline save`, and [`judge`], which `run` and `report`
//! share: the gate against the scenario's baseline, folded into the one verdict, and the
//! stages listed as checks of their own.

use crate::compare::{self, Comparison, Outcome};
use crate::exit::Exit;
use crate::plan::{GateSpec, Threshold};
use crate::report::{self, Outputs, Report, Stage, StageStatus};
use crate::results::{self, RunFolder};
use crate::verdict::{self, Finding, Severity, Summary};
use std::path::{Path, PathBuf};

/// A run's summary with the gate folded in, and its stages.
pub struct Judged {
    pub summary: Summary,
    pub comparison: Option<Comparison>,
    pub stages: Vec<Stage>,
}

/// The gate stage: the run in `dir` (its `summary` not yet written) against `gate.baseline`.
fn gate_stage(dir: &Path, summary: &Summary, gate: &GateSpec) -> (Option<Comparison>, Stage) {
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
    let opened = RunFolder::open(baseline).and_then(|b| {
        let mut c = RunFolder::open(dir)?;
        c.summary = serde_json::to_value(summary).ok();
        Ok((b, c))
    });
    let compared = opened
        .map_err(|e| e.to_string())
        .and_then(|(b, c)| compare::compare(&b, &c, gate).map_err(|e| e.to_string()));
    match compared {
        Err(e) => (None, stage(StageStatus::Failed(e), String::new())),
        Ok(c) => {
            let detail = format!(
                "{} checks against {}: {} regression(s), {} inconclusive",
                c.checks.len(),
                c.baseline,
                c.regressions,
                c.inconclusive
            );
            let status = match c.regressed() {
                true => StageStatus::Failed(format!("{} regression(s)", c.regressions)),
                false => StageStatus::Passed,
            };
            (Some(c), stage(status, detail))
        }
    }
}

/// The stages a summary shows, after the run's own (`preflight`) ones.
fn derived_stages(s: &Summary, preflight: Vec<Stage>) -> Vec<Stage> {
    let mut out = preflight;
    let any = |kinds: &[&str]| {
        s.findings
            .iter()
            .find(|f| f.severity == Severity::Error && kinds.contains(&f.kind.as_str()))
            .map(|f| f.message.clone())
    };
    let mut add = |name: &str, applies: bool, failed: Option<String>, detail: String| {
        let status = match (applies, failed) {
            (false, _) => StageStatus::Skipped("not configured".into()),
            (true, Some(m)) => StageStatus::Failed(m),
            (true, None) => StageStatus::Passed,
        };
        out.push(Stage {
            name: name.into(),
            status,
            detail,
        });
    };
    let features = &s.features;
    add(
        "replay",
        true,
        any(&["request_error", "protocol", "nothing_measured", "cut_off"]),
        format!("{} requests, {} errors", s.requests, s.errors),
    );
    add(
        "routing",
        features.values().any(|f| f.routing.is_some()),
        any(&["routing", "parameter_drift"]),
        String::new(),
    );
    add(
        "conformance",
        features.values().any(|f| f.conformance.is_some()),
        any(&["conformance_protocol", "conformance_content"]),
        String::new(),
    );
    add(
        "slo",
        features.values().any(|f| f.slo.is_some()),
        any(&["slo", "invalid_measurement"]),
        String::new(),
    );
    out
}

/// Folds the preflight stages and the gate into the summary (a failed stage, a latency
/// regression: error findings) and lists the stages.
pub fn judge(dir: &Path, mut summary: Summary, gate: &GateSpec, preflight: Vec<Stage>) -> Judged {
    for stage in &preflight {
        if let StageStatus::Failed(m) = &stage.status {
            let m = format!("{}: {m}", stage.name);
            summary
                .findings
                .push(Finding::new("preflight", Severity::Error, None, m));
        }
    }
    let (comparison, gate_stage) = gate_stage(dir, &summary, gate);
    for ch in comparison.iter().flat_map(|c| &c.checks) {
        // New conformance and routing findings already fail the run as themselves.
        if ch.outcome == Outcome::Regression
            && !matches!(ch.metric.as_str(), "conformance" | "routing")
        {
            let m = format!("{} {}: {}", ch.feature, ch.metric, ch.reason);
            summary.findings.push(Finding::new(
                "regression",
                Severity::Error,
                Some(&ch.feature),
                m,
            ));
        }
    }
    if let (Some(_), StageStatus::Skipped(m)) = (&gate.baseline, &gate_stage.status) {
        // A configured gate that did not run is said out loud, never passed over silently.
        let m = format!("the gate did not run: {m}");
        summary
            .findings
            .push(Finding::new("gate_skipped", Severity::Warning, None, m));
    }
    if let StageStatus::Failed(m) = &gate_stage.status {
        if comparison.is_none() {
            summary.findings.push(Finding::new(
                "gate_refused",
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

/// The stages a run recorded before it sent its load (`preflight.json`), if any.
pub fn read_preflight(dir: &Path) -> Vec<Stage> {
    std::fs::read_to_string(dir.join("preflight.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// `report RUN_DIR…`: options.
pub struct ReportArgs {
    pub dirs: Vec<PathBuf>,
    pub out: Option<PathBuf>,
    pub outputs: Outputs,
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), String> {
    crate::files::write_json(path, value).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the merged folder's own files: results (one clock), taps, plan, histograms.
fn write_merged(merged: &RunFolder, sources: &[RunFolder], out: &Path) -> Result<(), String> {
    crate::files::create_dir_private(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut results = String::new();
    for r in &merged.records {
        results += &serde_json::to_string(r).map_err(|e| e.to_string())?;
        results.push('\n');
    }
    let path = out.join("results.ndjson");
    crate::files::write_atomic(&path, results.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let taps: String = sources
        .iter()
        .filter_map(|f| std::fs::read_to_string(f.dir.join("taps.ndjson")).ok())
        .collect();
    if !taps.is_empty() {
        let path = out.join("taps.ndjson");
        crate::files::write_atomic(&path, taps.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut plan = merged.plan_json.clone();
    plan["merged_from"] = sources
        .iter()
        .map(|f| f.dir.display().to_string())
        .collect();
    write_json(&out.join("plan.json"), &plan)
}

/// `report`: judges run folders again without sending a request, and writes every output.
pub fn report_command(args: ReportArgs) -> Exit {
    match report_inner(args) {
        Ok(exit) => exit,
        Err((exit, message)) => {
            eprintln!("error: {message}");
            exit
        }
    }
}

fn report_inner(args: ReportArgs) -> Result<Exit, (Exit, String)> {
    let usage = |m: String| (Exit::Usage, m);
    let mut sources = Vec::new();
    for d in &args.dirs {
        let f = RunFolder::open(d).map_err(|e| usage(e.to_string()))?;
        for bad in &f.bad_lines {
            let what = if bad.torn {
                "torn last line (the run was killed mid-write?), skipped"
            } else {
                "unreadable line, skipped"
            };
            eprintln!(
                "warning: {}:{}: {what}: {}",
                d.join("results.ndjson").display(),
                bad.line,
                bad.message
            );
        }
        sources.push(f);
    }
    let out = match (&args.out, sources.len()) {
        (Some(o), _) => o.clone(),
        (None, 1) => sources[0].dir.clone(),
        (None, _) => {
            return Err(usage(
                "several run folders merge into a new one: name it with --out DIR".into(),
            ))
        }
    };
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if sources.len() > 1 && sources.iter().any(|f| same(&f.dir, &out)) {
        return Err(usage(format!(
            "--out {} is one of the run folders: a merge goes into a folder of its own",
            out.display()
        )));
    }
    let merged = results::merge(sources.clone()).map_err(|e| usage(e.to_string()))?;
    if sources.len() > 1 || out != sources[0].dir {
        write_merged(&merged, &sources, &out).map_err(|e| (Exit::Unreachable, e))?;
    }
    let taps = out.join("taps.ndjson");
    let rebuilt = report::rebuild(
        &merged,
        &sources,
        &out.join("results.ndjson"),
        taps.is_file().then_some(taps.as_path()),
    )
    .map_err(usage)?;
    let preflight = match sources.len() {
        1 => read_preflight(&sources[0].dir),
        _ => Vec::new(),
    };
    let judged = judge(&out, rebuilt.summary, &merged.plan.gate, preflight);
    print!("{}", judged.summary.table());
    let mut failed: Vec<(PathBuf, String)> = Vec::new();
    let mut save = |name: &str, r: Result<(), String>| {
        if let Err(e) = r {
            failed.push((out.join(name), e));
        }
    };
    save(
        "summary.json",
        write_json(&out.join("summary.json"), &judged.summary),
    );
    let histograms = verdict::histograms(&rebuilt.agg, &rebuilt.receive_delay);
    save(
        "histograms.json",
        write_json(&out.join("histograms.json"), &histograms),
    );
    if let Some(c) = &judged.comparison {
        print!("{}", compare::table(c));
        save(
            "comparison.json",
            write_json(&out.join("comparison.json"), c),
        );
    }
    let mut outputs = args.outputs;
    let defaults = Outputs::in_dir(&out);
    outputs.html = outputs.html.or(defaults.html);
    outputs.junit = outputs.junit.or(defaults.junit);
    outputs.md = outputs.md.or(defaults.md);
    let view = Report {
        summary: &judged.summary,
        agg: &rebuilt.agg,
        plan: &merged.plan_json,
        comparison: judged.comparison.as_ref(),
        stages: &judged.stages,
        capacity: None,
    };
    failed.extend(report::write(&view, &outputs));
    println!("report folder: {}", out.display());
    if !failed.is_empty() {
        for (p, e) in failed {
            eprintln!("error: could not write {}: {e}", p.display());
        }
        return Ok(Exit::Unreachable);
    }
    Ok(judged.summary.exit())
}

/// `compare BASELINE CURRENT`: options.
pub struct CompareArgs {
    pub baseline: PathBuf,
    pub current: PathBuf,
    /// `(feature, metric, threshold)` from `--threshold`, over the current run's `[gate]`.
    pub thresholds: Vec<(Option<String>, String, Threshold)>,
    pub out: Option<PathBuf>,
}

/// `compare`: exit 1 on a regression, 4 when no regression was found but a run's measurement
/// was invalid, 2 when the runs cannot be compared.
pub fn compare_command(args: CompareArgs) -> Exit {
    let open = |d: &Path| {
        RunFolder::open(d).map_err(|e| {
            eprintln!("error: {e}");
            Exit::Usage
        })
    };
    let (base, cur) = match (open(&args.baseline), open(&args.current)) {
        (Ok(b), Ok(c)) => (b, c),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    for f in [&base, &cur] {
        if f.summary.is_none() {
            eprintln!(
                "warning: {} has no summary.json (killed?): the self-audit's marks are missing; \
                 run `duo-harness report {}` first",
                f.dir.display(),
                f.dir.display()
            );
        }
    }
    let mut gate = cur.plan.gate.clone();
    for (feature, metric, t) in args.thresholds {
        match feature {
            Some(f) => {
                let slot = gate
                    .features
                    .entry(f)
                    .or_default()
                    .entry(metric)
                    .or_default();
                *slot = t.over(*slot);
            }
            None => {
                let slot = gate.thresholds.entry(metric).or_default();
                *slot = t.over(*slot);
            }
        }
    }
    let c = match compare::compare(&base, &cur, &gate) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    print!("{}", compare::table(&c));
    let out = args.out.unwrap_or_else(|| cur.dir.join("comparison.json"));
    if let Err(e) = write_json(&out, &c) {
        eprintln!("error: could not write {e}");
        return Exit::Unreachable;
    }
    println!("comparison: {}", out.display());
    let invalid = [&base, &cur]
        .iter()
        .any(|f| f.summary_at("/verdict").and_then(|v| v.as_str()) == Some("invalid"));
    match (c.regressed(), invalid) {
        (true, _) => Exit::VerdictFailed,
        (false, true) => {
            eprintln!(
                "no regression found, but a run's measurement was invalid: the gate cannot pass it"
            );
            Exit::Invalid
        }
        (false, false) => Exit::Pass,
    }
}

/// `baseline save RUN_DIR --to DIR`: copies a judged run's files to where `[gate] baseline`
/// points. Refuses a run that did not pass, or has no summary.
pub fn baseline_save(run: &Path, to: &Path, force: bool) -> Exit {
    let folder = match RunFolder::open(run) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let verdict = folder.summary_at("/verdict").and_then(|v| v.as_str());
    if verdict != Some("pass") && !force {
        eprintln!(
            "error: {} has verdict {}: only a passing run is a baseline (--force to store it anyway)",
            run.display(),
            verdict.unwrap_or("none (no summary.json)")
        );
        return Exit::Usage;
    }
    if let (Ok(a), Ok(b)) = (run.canonicalize(), to.canonicalize()) {
        if a == b {
            eprintln!("error: --to {} is the run folder itself", to.display());
            return Exit::Usage;
        }
    }
    if let Err(e) = crate::files::create_dir_private(to) {
        eprintln!("error: {}: {e}", to.display());
        return Exit::Unreachable;
    }
    const FILES: &[&str] = &[
        "plan.json",
        "results.ndjson",
        "summary.json",
        "histograms.json",
        "taps.ndjson",
        "preflight.json",
    ];
    for name in FILES {
        let (from, into) = (run.join(name), to.join(name));
        if !from.is_file() {
            let _ = std::fs::remove_file(&into);
            continue;
        }
        if let Err(e) = std::fs::copy(&from, &into) {
            eprintln!("error: {} → {}: {e}", from.display(), into.display());
            return Exit::Unreachable;
        }
    }
    println!(
        "baseline: {} ({}) stored in {}",
        folder.plan.run_id,
        run.display(),
        to.display()
    );
    Exit::Pass
}
