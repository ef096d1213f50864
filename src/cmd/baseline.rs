//! `baseline save RUN_DIR --to DIR`: keeps a judged, passing run where `[gate] baseline` points.

use super::Failure;
use crate::exit::Exit;
use crate::results::RunFolder;
use crate::verdict::Verdict;
use std::path::Path;

/// The files of a run folder a baseline keeps.
const FILES: &[&str] = &[
    "plan.json",
    "results.ndjson",
    "summary.json",
    "histograms.json",
    "taps.ndjson",
    "preflight.json",
];

/// Why `run` cannot be stored at `to` (`force`: replace an existing baseline, keep a run that
/// did not pass).
fn refusal(folder: &RunFolder, run: &Path, to: &Path, force: bool) -> Option<String> {
    let Some(summary) = &folder.summary else {
        return Some(format!(
            "{} has no summary.json (killed?): judge it with `duo-harness report {}` first",
            run.display(),
            run.display()
        ));
    };
    if summary.run_id != folder.plan.run_id || summary.scenario != folder.plan.scenario_name {
        return Some(format!(
            "{}: summary.json is of run {} ({}), plan.json of run {} ({}): the folder mixes two runs",
            run.display(),
            summary.run_id,
            summary.scenario,
            folder.plan.run_id,
            folder.plan.scenario_name
        ));
    }
    if summary.verdict != Verdict::Pass && !force {
        return Some(format!(
            "{} has verdict {}: only a passing run is a baseline (--force to store it anyway)",
            run.display(),
            summary.verdict
        ));
    }
    if let (Ok(a), Ok(b)) = (run.canonicalize(), to.canonicalize()) {
        if a == b {
            return Some(format!("--to {} is the run folder itself", to.display()));
        }
    }
    let occupied = std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some());
    if occupied && !force {
        return Some(format!(
            "{} exists and is not empty: --force replaces the baseline it holds",
            to.display()
        ));
    }
    None
}

/// Copies the run's files into `to`, removing any of them an older baseline left there.
fn copy(run: &Path, to: &Path) -> Result<(), Failure> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Failure::Write { path, source }
    };
    crate::files::create_dir_private(to).map_err(failed(to))?;
    for name in FILES {
        let (from, into) = (run.join(name), to.join(name));
        if !from.is_file() {
            let _ = std::fs::remove_file(&into);
            continue;
        }
        std::fs::copy(&from, &into).map_err(failed(&into))?;
    }
    Ok(())
}

/// `baseline save`.
pub fn save(run: &Path, to: &Path, force: bool) -> Result<Exit, Failure> {
    let folder = RunFolder::open(run)?;
    if let Some(why) = refusal(&folder, run, to, force) {
        return Err(Failure::Usage(why));
    }
    copy(run, to)?;
    println!(
        "baseline: {} ({}) stored in {}",
        folder.plan.run_id,
        run.display(),
        to.display()
    );
    Ok(Exit::Pass)
}
