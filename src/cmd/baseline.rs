//! `baseline save RUN_DIR --to DIR`: keeps a judged, passing run where `[gate] baseline` points.

use super::Failure;
use crate::compare::baseline::{store, BaselineError};
use crate::exit::Exit;
use std::path::Path;

/// `baseline save`.
pub fn save(run: &Path, to: &Path, force: bool) -> Result<Exit, Failure> {
    let (stored, degraded) = store(run, to, force).map_err(|e| match e {
        BaselineError::Read(e) => Failure::from(e),
        BaselineError::Refused(why) => Failure::Usage(why),
        BaselineError::Write { path, source } => Failure::Write { path, source },
    })?;
    if let Some(line) = degraded {
        eprintln!("warning: {line}");
    }
    println!("{stored}");
    Ok(Exit::Pass)
}
