//! Why a capacity search could not start, or stopped before its answer.

use crate::plan::PlanError;
use crate::run::RunError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// The scenario cannot be searched (exit 2).
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Config(String),
    /// A probe could not run at all: the run's own error decides the exit code.
    #[error("the probe at {at} could not run: {source}")]
    Probe {
        at: String,
        #[source]
        source: RunError,
    },
    /// A probe ran but left no judgement (exit 3).
    #[error("the probe at {at}: {reason}")]
    Unjudged { at: String, reason: String },
    /// A probe failed for a reason load does not explain: the stack is broken, not full
    /// (exit 1).
    #[error("the probe at {at} failed for a reason load does not explain: {reason}")]
    Broken { at: String, reason: String },
    /// A stop signal ended the search (exit 1).
    #[error("stopped by a signal{0}")]
    Interrupted(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}
