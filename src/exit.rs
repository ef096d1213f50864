//! Exit codes of the whole tool, as `DESIGN.md` defines them.

/// The process exit status. One value per documented outcome; nothing else is ever returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The verdict passed.
    Pass = 0,
    /// The verdict failed: conformance, routing, SLO, errors or regression.
    VerdictFailed = 1,
    /// Usage or configuration error (bad scenario, corpus, flags).
    Usage = 2,
    /// The target did not answer, or infrastructure failed.
    Unreachable = 3,
    /// The harness could not keep its own schedule: the measurement is invalid.
    Invalid = 4,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}
