//! The run folder's documents as `run` writes them: first what only the live run knows, then
//! what the one judgement made of the folder.

use super::{write_json, RunError};
use crate::measure::aggregate::Aggregate;
use crate::plan::Plan;
use crate::verdict::{self, RunInfo, Stage};
use std::path::{Path, PathBuf};

/// Writes each document into `dir`; what could not be written, and why.
pub(super) fn write_documents<'a>(
    dir: &Path,
    documents: impl IntoIterator<Item = (&'a str, serde_json::Result<serde_json::Value>)>,
) -> Vec<(PathBuf, String)> {
    let mut unwritten = Vec::new();
    for (name, doc) in documents {
        let path = dir.join(name);
        let written = doc
            .map_err(|e| RunError::Internal(e.to_string()))
            .and_then(|d| write_json(&path, &d));
        if let Err(e) = written {
            unwritten.push((path, e.to_string()));
        }
    }
    unwritten
}

/// What each backend's metrics showed over the run.
pub(super) type BackendMetrics = std::collections::BTreeMap<String, crate::scrape::Observed>;

/// The live run's documents: its summary (what only it knows: its CPU, its schedule, the
/// backends' metrics), its histograms and its preflight stages.
pub(super) fn write_live(
    plan: &Plan,
    (info, agg, backend_metrics): (RunInfo, &Aggregate, BackendMetrics),
    checks: &verdict::Checks,
    preflight: &[Stage],
) -> Vec<(PathBuf, String)> {
    let histograms = verdict::histograms(agg, &info.receive_delay);
    let mut live = verdict::summarise(info, &plan.load, agg, checks);
    live.backend_metrics = backend_metrics;
    let preflight = verdict::Preflight::new(preflight.to_vec());
    write_documents(
        &plan.run_dir,
        [
            ("summary.json", serde_json::to_value(&live)),
            ("histograms.json", serde_json::to_value(&histograms)),
            ("preflight.json", serde_json::to_value(&preflight)),
        ],
    )
}
