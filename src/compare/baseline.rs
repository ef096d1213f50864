//! The gate's baseline: a judged, passing run kept where `[gate] baseline` points (`baseline
//! save`, or a first run that passed). Its own files are replaced; anything else in the folder
//! (the reviewed snapshots and noise floor kept beside it) is left as it is.

use crate::results::{ResultsError, RunFolder};
use crate::verdict::Verdict;
use std::path::{Path, PathBuf};

/// Whether `dir` holds a baseline run (the snapshots kept beside one are not one).
pub fn holds(dir: &Path) -> bool {
    dir.join("plan.json").is_file()
}

/// Why a run could not be stored as the baseline.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(transparent)]
    Read(#[from] ResultsError),
    /// Not a baseline (did not pass, mixes two runs…) or would replace one unasked.
    #[error("{0}")]
    Refused(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

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
    // The folder may already hold the snapshots and noise floor the baseline keeps beside it.
    if holds(to) && !force {
        return Some(format!(
            "{} holds a baseline already: --force replaces it",
            to.display()
        ));
    }
    None
}

/// Copies the run's files into `to`, removing any of them an older baseline left there.
fn copy(run: &Path, to: &Path) -> Result<(), BaselineError> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BaselineError::Write { path, source }
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

/// The figures of the baseline its own self-audit marked degraded, in one line: kept, and
/// said, since every later gate judges against them (widened by their bounds).
fn degraded(summary: Option<&crate::verdict::Summary>) -> Option<String> {
    let features = summary.into_iter().flat_map(|s| &s.features);
    let named: Vec<String> = features
        .filter_map(|(name, f)| {
            let figures: Vec<&str> = f
                .trust
                .iter()
                .filter(|(_, t)| t.status == crate::audit::TrustStatus::Degraded)
                .map(|(k, _)| k.as_str())
                .collect();
            (!figures.is_empty()).then(|| format!("{name} {}", figures.join(", ")))
        })
        .collect();
    (!named.is_empty()).then(|| {
        format!(
            "the baseline's self-audit marked figures of {} feature(s) degraded (the gate widens \
             their intervals by the bounds in summary.json; a quieter run makes a sharper \
             baseline): {}",
            named.len(),
            named.join("; ")
        )
    })
}

/// Stores the run at `run` as the baseline at `to` (`force`: replace one, keep a run that did
/// not pass). Returns what to say: the run stored, and a warning of its degraded figures.
pub fn store(
    run: &Path,
    to: &Path,
    force: bool,
) -> Result<(String, Option<String>), BaselineError> {
    let folder = RunFolder::open(run)?;
    if let Some(why) = refusal(&folder, run, to, force) {
        return Err(BaselineError::Refused(why));
    }
    copy(run, to)?;
    let stored = format!(
        "baseline: {} ({}) stored in {}",
        folder.plan.run_id,
        run.display(),
        to.display()
    );
    Ok((stored, degraded(folder.summary.as_ref())))
}
