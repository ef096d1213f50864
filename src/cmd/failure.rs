//! Every error that ends a command, by the stage it came from, and the one place its exit code
//! is decided: DESIGN.md's table (2: what the user gave is wrong; 3: the target, the
//! infrastructure or the harness failed; 1: the stack failed a check).

use crate::capacity::CapacityError;
use crate::exit::Exit;
use crate::init::InitError;
use crate::record::RecordError;
use crate::run::RunError;
use crate::taps::TapError;
use crate::twin::StackError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A flag, a number or a file the user named is wrong.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Results(#[from] crate::results::ResultsError),
    #[error(transparent)]
    Refused(#[from] crate::compare::Refused),
    /// A run folder whose taps or snapshots cannot be read.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Failure {
    /// The exit code of every error a command can end on.
    pub fn exit(&self) -> Exit {
        use CapacityError as C;
        match self {
            Self::Usage(_) | Self::Results(_) | Self::Refused(_) | Self::Report(_) => Exit::Usage,
            Self::Run(e) | Self::Capacity(C::Probe { source: e, .. }) => match e {
                RunError::Drive(crate::drive::DriveError::Unanswered { .. }) => Exit::Unreachable,
                RunError::Plan(_) | RunError::Corpus(_) | RunError::Drive(_) => Exit::Usage,
                RunError::Config(_)
                | RunError::Taps(TapError::NoBackend(_) | TapError::Unrouted(_)) => Exit::Usage,
                RunError::Taps(TapError::Start { .. }) => Exit::Unreachable,
                RunError::Stack(StackError::Invalid(_) | StackError::Parse { .. }) => Exit::Usage,
                RunError::Stack(_) | RunError::Unreachable { .. } => Exit::Unreachable,
                RunError::Write { .. } | RunError::Internal(_) => Exit::Unreachable,
            },
            Self::Capacity(C::Plan(_) | C::Config(_)) => Exit::Usage,
            Self::Capacity(C::Broken { .. } | C::Interrupted(_)) => Exit::VerdictFailed,
            Self::Capacity(C::Unjudged { .. } | C::Write { .. }) => Exit::Unreachable,
            Self::Record(RecordError::Config(_)) => Exit::Usage,
            Self::Init(
                InitError::Config(_) | InitError::Refused { .. } | InitError::Malformed { .. },
            ) => Exit::Usage,
            Self::Record(_) | Self::Init(InitError::Unreachable { .. }) => Exit::Unreachable,
            Self::Write { .. } => Exit::Unreachable,
        }
    }
}
