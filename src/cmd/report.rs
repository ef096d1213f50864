//! `report RUN_DIR…`: judges run folders again without sending a request (re-render, rebuild a
//! killed run, merge the folders of one plan) and writes every output.

use super::Failure;
use crate::compare;
use crate::compare::gate::{judge, Judged};
use crate::exit::Exit;
use crate::report::{self, Outputs, Report};
use crate::results::{self, RunFolder};
use crate::verdict::{self, Finding, FindingKind, Severity};
use std::path::{Path, PathBuf};

/// `report RUN_DIR…`: options.
pub struct ReportArgs {
    pub dirs: Vec<PathBuf>,
    pub out: Option<PathBuf>,
    pub outputs: Outputs,
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), Failure> {
    crate::files::write_json(path, value).map_err(write_failure(path))
}

fn write_text(path: &Path, text: &str) -> Result<(), Failure> {
    crate::files::write_atomic(path, text.as_bytes()).map_err(write_failure(path))
}

fn write_failure(path: &Path) -> impl FnOnce(std::io::Error) -> Failure + '_ {
    move |source| Failure::Write {
        path: path.into(),
        source,
    }
}

/// Writes the merged folder's own files: results (one clock), taps, plan.
fn write_merged(merged: &RunFolder, sources: &[RunFolder], out: &Path) -> Result<(), Failure> {
    crate::files::create_dir_private(out).map_err(write_failure(out))?;
    let mut results = String::new();
    for r in &merged.records {
        // A record always serialises: it was read from JSON.
        results += &serde_json::to_string(r).unwrap_or_default();
        results.push('\n');
    }
    write_text(&out.join("results.ndjson"), &results)?;
    let taps: String = sources
        .iter()
        .filter_map(|f| std::fs::read_to_string(f.dir.join("taps.ndjson")).ok())
        .collect();
    if !taps.is_empty() {
        write_text(&out.join("taps.ndjson"), &taps)?;
    }
    let mut plan = merged.plan_json.clone();
    plan.merged_from = sources.iter().map(|f| f.dir.clone()).collect();
    write_json(&out.join("plan.json"), &plan)
}

fn usage(m: impl Into<String>) -> Failure {
    Failure::Usage(m.into())
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Opens every folder, warning of lines it could not read; refuses a folder given twice.
fn open_sources(dirs: &[PathBuf]) -> Result<Vec<RunFolder>, Failure> {
    let mut sources: Vec<RunFolder> = Vec::new();
    for d in dirs {
        if let Some(twice) = sources.iter().find(|f| same_path(&f.dir, d)) {
            return Err(usage(format!(
                "{} is given twice (as {}): a run merged with itself counts every request twice",
                d.display(),
                twice.dir.display()
            )));
        }
        let f = RunFolder::open(d)?;
        for bad in &f.bad_lines {
            let what = match bad.torn {
                true => "torn last line (the run was killed mid-write?), skipped",
                false => "unreadable line, skipped",
            };
            let file = d.join("results.ndjson");
            eprintln!(
                "warning: {}:{}: {what}: {}",
                file.display(),
                bad.line,
                bad.message
            );
        }
        sources.push(f);
    }
    Ok(sources)
}

/// Where the report goes: one folder re-rendered in place, several merged into `--out`, which
/// must be neither a source nor another run's folder.
fn out_dir(out: Option<&PathBuf>, sources: &[RunFolder]) -> Result<PathBuf, Failure> {
    let out = match (out, sources) {
        (Some(o), _) => o.clone(),
        (None, [only]) => return Ok(only.dir.clone()),
        (None, _) => {
            return Err(usage(
                "several run folders merge into a new one: name it with --out DIR",
            ))
        }
    };
    if let [only] = sources {
        if same_path(&only.dir, &out) {
            return Ok(out);
        }
    }
    if sources.iter().any(|f| same_path(&f.dir, &out)) {
        return Err(usage(format!(
            "--out {} is one of the run folders: a merge goes into a folder of its own",
            out.display()
        )));
    }
    if out.join("plan.json").exists() {
        return Err(usage(format!(
            "--out {} holds another run: writing there would mix two runs' files",
            out.display()
        )));
    }
    Ok(out)
}

/// Findings about the folders themselves: lines of another run found in a results file.
fn foreign_findings(sources: &[RunFolder]) -> Vec<Finding> {
    let at = |ms: f64| {
        chrono::DateTime::from_timestamp_millis(ms as i64)
            .map_or_else(|| format!("{ms} ms"), |t| t.to_rfc3339())
    };
    sources
        .iter()
        .flat_map(|f| f.foreign.iter().map(move |x| (f, x)))
        .map(|(f, x)| {
            let m = format!(
                "{}: {} result lines belong to another run (its clock started at {}, this run's \
                 at {}): they are not counted",
                f.dir.join("results.ndjson").display(),
                x.lines,
                at(x.start_epoch_ms),
                f.start_epoch_ms.map_or("?".into(), at)
            );
            Finding::new(FindingKind::ForeignResults, Severity::Error, None, m)
        })
        .collect()
}

/// `report`: judges run folders again without sending a request, and writes every output.
pub fn command(args: ReportArgs) -> Result<Exit, Failure> {
    let sources = open_sources(&args.dirs)?;
    let out = out_dir(args.out.as_ref(), &sources)?;
    // One slice re-rendered in place is that slice's report; anywhere else, it would pass
    // for the whole schedule's load (several folders, the merge checks them itself).
    if matches!(sources.as_slice(), [only] if !same_path(&only.dir, &out)) {
        results::check_slices(&sources)?;
    }
    let mut merged = results::merge(sources.clone())?;
    if sources.len() > 1 || out != sources[0].dir {
        write_merged(&merged, &sources, &out)?;
    }
    let taps = out.join("taps.ndjson");
    let mut rebuilt = report::rebuild(
        &merged,
        &sources,
        &out.join("results.ndjson"),
        taps.is_file().then_some(taps.as_path()),
    )?;
    rebuilt.summary.findings.extend(foreign_findings(&sources));
    // A merged folder re-rendered keeps the audit of the slices it was merged from.
    let slices = match sources.as_slice() {
        [merged] if merged.plan.slice.is_none() => (merged.summary.as_ref())
            .map(|s| s.slices.clone())
            .unwrap_or_default(),
        _ => results::audit_slices(&sources),
    };
    let bound = rebuilt.summary.load.max_send_lateness_ms;
    rebuilt
        .summary
        .findings
        .extend(verdict::slice_findings(&slices, bound));
    rebuilt.summary.slices = slices;
    rebuilt.summary.verdict = verdict::verdict(&rebuilt.summary.findings);
    let preflight = match sources.as_slice() {
        [only] => only.preflight.clone().map(|p| p.stages).unwrap_or_default(),
        _ => Vec::new(),
    };
    // The judged folder is the one the reports go to.
    merged.dir = out.clone();
    let gate = merged.plan.gate.clone();
    let judged = judge(&mut merged, rebuilt.summary, &gate, preflight);
    print!("{}", judged.summary.table());
    if let Some(c) = &judged.comparison {
        print!("{}", compare::table(c));
    }
    let histograms = verdict::histograms(&rebuilt.agg, &rebuilt.receive_delay);
    let mut failed = write_documents(&out, &judged, &histograms);
    let view = Report {
        summary: &judged.summary,
        agg: &rebuilt.agg,
        plan: &merged.plan_json,
        comparison: judged.comparison.as_ref(),
        stages: &judged.stages,
        capacity: None,
    };
    failed.extend(report::write(
        &view,
        &args.outputs.or(Outputs::in_dir(&out)),
    ));
    println!("report folder: {}", out.display());
    if !failed.is_empty() {
        for (p, e) in failed {
            eprintln!("error: could not write {}: {e}", p.display());
        }
        return Ok(Exit::Unreachable);
    }
    Ok(judged.summary.exit())
}

/// Writes the judged folder's documents; what could not be written, and why.
fn write_documents(
    out: &Path,
    judged: &Judged,
    histograms: &verdict::Histograms,
) -> Vec<(PathBuf, String)> {
    let mut results = vec![
        (
            out.join("summary.json"),
            write_json(&out.join("summary.json"), &judged.summary),
        ),
        (
            out.join("histograms.json"),
            write_json(&out.join("histograms.json"), histograms),
        ),
    ];
    if let Some(c) = &judged.comparison {
        let path = out.join("comparison.json");
        results.push((path.clone(), write_json(&path, c)));
    }
    results
        .into_iter()
        .filter_map(|(p, r)| r.err().map(|e| (p, e.to_string())))
        .collect()
}
