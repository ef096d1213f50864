//! The scenario's `[output]` section: where run folders go and what they keep.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Output settings.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Parent folder of run folders (relative to the working directory).
    #[serde(default = "default_reports")]
    pub dir: PathBuf,
    /// Keep every chunk (arrival time, size, content) in `results.ndjson`. Long load runs may
    /// turn this off: each line keeps its per-request timings, the histograms keep the rest.
    #[serde(default = "yes")]
    pub chunks: bool,
}

fn yes() -> bool {
    true
}

impl Default for Output {
    fn default() -> Self {
        Self {
            dir: default_reports(),
            chunks: true,
        }
    }
}

fn default_reports() -> PathBuf {
    "reports".into()
}
