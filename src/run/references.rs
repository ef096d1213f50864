//! The references a run is judged against, and the runs that make them: a first run
//! (`--first-run`) stores itself as the baseline when it passes (refused where one already is);
//! the conformance stage compares with the reviewed snapshots, or, calibrating, writes the noise
//! floor beside them.

use super::{write_err, write_json, RunError};
use crate::conformance;
use crate::plan::Plan;
use std::path::Path;

/// `--first-run` where a baseline already is: the run would not be compared, and its store
/// would replace the baseline, so it is refused before anything is sent.
pub(super) fn refuse_second_first_run(plan: &Plan) -> Result<(), RunError> {
    match &plan.gate.baseline {
        Some(b) if plan.overrides.first_run && crate::compare::baseline::holds(b) => {
            Err(RunError::Config(format!(
                "--first-run: {} holds a baseline already; run without --first-run to be \
                 compared with it, or remove it to start again",
                b.display()
            )))
        }
        _ => Ok(()),
    }
}

/// `--first-run`: a passing run becomes the scenario's baseline (said, with where).
pub(super) fn store_first_baseline(plan: &Plan) -> Result<(), RunError> {
    let Some(to) = &plan.gate.baseline else {
        println!("first run: no [gate] baseline in the scenario, so none is stored");
        return Ok(());
    };
    use crate::compare::baseline::{store, BaselineError};
    let (stored, degraded) = store(&plan.run_dir, to, false).map_err(|e| match e {
        BaselineError::Write { path, source } => RunError::Write { path, source },
        other => RunError::Config(format!("first run: storing the baseline: {other}")),
    })?;
    if let Some(line) = degraded {
        eprintln!("warning: {line}");
    }
    println!("{stored}");
    Ok(())
}

/// The conformance stage over the finished results: with `--calibrate`, measure and write the
/// noise floor; otherwise compare with the snapshots (pending files only outside CI).
pub(super) fn conformance_stage(
    plan: &Plan,
    results: &Path,
    taps: Option<&Path>,
) -> Result<Option<conformance::Outcome>, RunError> {
    let Some(dir) = &plan.conformance.snapshots else {
        return Ok(None);
    };
    let corpus = plan.corpus_name();
    if plan.overrides.calibrate {
        let noise =
            conformance::calibrate(&plan.conformance, results, taps).map_err(write_err(results))?;
        let path = conformance::noise_path(dir, &corpus);
        std::fs::create_dir_all(path.parent().unwrap_or(dir)).map_err(write_err(dir))?;
        write_json(&path, &noise)?;
        println!("noise floor written to {}", path.display());
        return Ok(None);
    }
    let write = std::env::var_os("CI").is_none();
    conformance::check(&plan.conformance, dir, &corpus, results, taps, write)
        .map(Some)
        .map_err(write_err(dir))
}
