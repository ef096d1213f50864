//! `plan.json`: the resolved plan a run followed, what it resolved to once its stack was up,
//! and the corpus digest the gate holds two runs to.

use super::Plan;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `plan.json`: the plan, what the run resolved it to once its stack was up, and for a merged
/// folder the folders it came from.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlanDocument {
    pub plan: Plan,
    pub resolved: Resolved,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<PathBuf>,
}

/// What a plan resolved to once the run's stack was up.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Resolved {
    /// The base URL requests went to.
    pub target_url: String,
    /// The embedded stack's URLs, when it ran one.
    pub stack: Option<crate::twin::StackUrls>,
    /// The features of the corpus the run selected: each must be measured.
    #[serde(default)]
    pub features: Vec<String>,
}

/// The version of the plan this build writes and reads (`plan.json`'s `plan.schema`).
pub const PLAN_SCHEMA: &str = "duo-harness/plan/v1";

/// SHA-256 of the files' bytes, one after the other; `None` if one cannot be read.
pub(super) fn corpus_digest<'a>(files: impl Iterator<Item = &'a PathBuf>) -> Option<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for f in files {
        hasher.update(std::fs::read(f).ok()?);
    }
    let digest = hasher.finalize();
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}
