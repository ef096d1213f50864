//! The report stage, last in the flow: what people and pipelines read.
//!
//! In: the verdict stage's [`Summary`], the run's [`Aggregate`] (distributions and the
//! second-by-second timeline), the resolved plan, and, when the run was compared with a
//! baseline, the gate's [`Comparison`]. Out: `report.html` (one offline file, [`html`]),
//! `junit.xml` ([`junit`]) and `report.md` ([`markdown`]).
//!
//! [`rebuild`] makes the same inputs from a run folder without sending a request (the `report`
//! command): the records of `results.ndjson` folded again, taps and snapshots judged again, the
//! run's own CPU and receive delay taken from what it wrote.

pub mod console;
pub mod html;
pub mod junit;
pub mod markdown;

use crate::compare::Comparison;
use crate::measure::aggregate::Aggregate;
use crate::measure::cpu::ClientCpu;
use crate::measure::hist::Metric;
use crate::results::RunFolder;
use crate::taps::TapAgg;
use crate::verdict::{self, Checks, RunInfo, Summary};
use std::path::{Path, PathBuf};

/// Everything a report shows.
pub struct Report<'a> {
    pub summary: &'a Summary,
    pub agg: &'a Aggregate,
    /// `plan.json` as written (`{"plan": …, "resolved": …}`).
    pub plan: &'a crate::plan::PlanDocument,
    pub comparison: Option<&'a Comparison>,
    /// The run's stages as checks of their own (pre-upgrade: health, models, gate…).
    pub stages: &'a [Stage],
    /// The capacity search's answer, when the run is its knee.
    pub capacity: Option<&'a dyn CapacitySection>,
}

pub use crate::verdict::{Stage, StageStatus};

/// Where the report files go (`None`: not written).
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub html: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub md: Option<PathBuf>,
    /// Where the HTML report will be found, for the Markdown's link line (default: its file
    /// name, next to the Markdown).
    pub html_link: Option<String>,
}

impl Outputs {
    /// These outputs, each one left unset taken from `defaults`.
    pub fn or(self, defaults: Outputs) -> Self {
        Self {
            html: self.html.or(defaults.html),
            junit: self.junit.or(defaults.junit),
            md: self.md.or(defaults.md),
            html_link: self.html_link.or(defaults.html_link),
        }
    }

    /// All three, in `dir`, under their default names.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            html: Some(dir.join("report.html")),
            junit: Some(dir.join("junit.xml")),
            md: Some(dir.join("report.md")),
            html_link: None,
        }
    }
}

/// Writes the report files; returns the ones that could not be written, with why.
pub fn write(report: &Report, out: &Outputs) -> Vec<(PathBuf, String)> {
    let link = out.html_link.clone().or_else(|| {
        let html = out.html.as_ref()?;
        Some(html.file_name()?.to_string_lossy().into_owned())
    });
    let documents = [
        (&out.html, html::render(report)),
        (&out.junit, junit::render(report)),
        (&out.md, Ok(markdown::render(report, link.as_deref()))),
    ];
    let mut failed = Vec::new();
    for (path, text) in documents {
        let Some(path) = path else { continue };
        let written = text.and_then(|t| {
            crate::files::write_atomic(path, crate::redact::text(&t).as_bytes())
                .map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            failed.push((path.clone(), e));
        }
    }
    failed
}

/// A capacity search's answer as the reports show it (the capacity stage writes it; the
/// reports only place it).
pub trait CapacitySection {
    /// The Markdown section: the answer, why, the roofline beside the measurement.
    fn markdown(&self, out: &mut String);
    /// The document as the HTML report embeds it.
    fn json(&self) -> serde_json::Value;
}

/// Why a run folder could not be judged again.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Taps {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Snapshots {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A run folder judged again: the summary, the aggregate it came from, and the receive delay.
pub struct Rebuilt {
    pub summary: Summary,
    pub agg: Aggregate,
    pub receive_delay: Metric,
}

/// The run's figures about itself, from the summaries its folders wrote. A folder without one
/// (a killed run) counts as interrupted and leaves the CPU unaudited.
fn run_info(merged: &RunFolder, sources: &[RunFolder]) -> RunInfo {
    let summaries: Vec<&Summary> = sources.iter().filter_map(|f| f.summary.as_ref()).collect();
    let all_wrote = summaries.len() == sources.len();
    let last_end_s = merged
        .records
        .iter()
        .map(|r| (r.sent_ms + r.end_ms) / 1000.0)
        .fold(0.0, f64::max);
    // The busiest client of the folders speaks for the merge: it is the one that could have
    // distorted what it measured.
    let client: Option<ClientCpu> = summaries
        .iter()
        .map(|s| s.load.client.clone())
        .max_by(|a, b| a.cores_busy.total_cmp(&b.cores_busy));
    let internal_errors = summaries
        .iter()
        .flat_map(|s| &s.findings)
        .filter(|f| f.kind == crate::verdict::FindingKind::InternalError)
        .map(|f| f.message.clone())
        .collect();
    let first = summaries.first().filter(|_| all_wrote);
    let load = &merged.plan.load;
    RunInfo {
        run_id: merged.plan.run_id.clone(),
        scenario: merged.plan.scenario_name.clone(),
        target: first
            .map(|s| s.target.clone())
            .or_else(|| merged.plan.target_url.clone())
            .unwrap_or_else(|| "embedded".into()),
        started_at: first
            .map(|s| s.started_at.clone())
            .or_else(|| merged.records.first().map(|r| r.sent_at.clone()))
            .unwrap_or_default(),
        duration_s: match (sources.len(), first) {
            (1, Some(s)) => s.load.duration_s,
            _ => last_end_s,
        },
        interrupted: !all_wrote || summaries.iter().any(|s| s.interrupted),
        scheduled: match all_wrote {
            true => summaries.iter().map(|s| s.load.scheduled).sum(),
            false => merged.records.len() as u64,
        },
        client: client.clone().unwrap_or_default(),
        cores: client.as_ref().map_or(0, |c| c.cores.len()),
        in_flight_cap: (load.arrival.open_loop() && load.concurrency.is_none())
            .then_some(load.max_in_flight),
        internal_errors,
        request_timeout_s: merged.plan.request_timeout_s,
        receive_delay: merged
            .histograms
            .as_ref()
            .map(|h| h.receive_delay.clone())
            .unwrap_or_default(),
    }
}

/// Judges a run folder again from its files. `results` is the folder's `results.ndjson` (for a
/// merge, the merged one), which the snapshot check reads; `taps` likewise.
pub fn rebuild(
    merged: &RunFolder,
    sources: &[RunFolder],
    results: &Path,
    taps: Option<&Path>,
) -> Result<Rebuilt, ReportError> {
    let plan = &merged.plan;
    let names: Vec<String> = plan.taps.iter().map(|t| t.name().to_owned()).collect();
    let tap_agg = match taps {
        Some(p) if !plan.taps.is_empty() => Some(
            TapAgg::read(p, &names)
                .map(|(agg, _)| agg)
                .map_err(|source| ReportError::Taps {
                    path: p.into(),
                    source,
                })?,
        ),
        _ => None,
    };
    let conformance = match &plan.conformance.snapshots {
        Some(dir) if dir.is_dir() => {
            let corpus = plan.corpus_name();
            let outcome =
                crate::conformance::check(&plan.conformance, dir, &corpus, results, taps, false);
            Some(outcome.map_err(|source| ReportError::Snapshots {
                path: dir.clone(),
                source,
            })?)
        }
        _ => None,
    };
    Ok(judge_folder(
        merged,
        sources,
        tap_agg.as_ref(),
        conformance.as_ref(),
    ))
}

/// The one judgement of a run folder's files, `run`'s and `report`'s alike: its records
/// aggregated, its own figures about itself (from the summary it wrote), the taps' and the
/// snapshots' outcomes, summarised into findings and a verdict.
pub fn judge_folder(
    merged: &RunFolder,
    sources: &[RunFolder],
    tap_agg: Option<&TapAgg>,
    conformance: Option<&crate::conformance::Outcome>,
) -> Rebuilt {
    judge_aggregate(merged, sources, merged.aggregate(), tap_agg, conformance)
}

/// [`judge_folder`] with the folder's records already folded into `agg` (by the one
/// `Aggregate::add`): `run` judges itself so, from the aggregate it built while measuring,
/// without reading its records back.
pub fn judge_aggregate(
    merged: &RunFolder,
    sources: &[RunFolder],
    agg: Aggregate,
    tap_agg: Option<&TapAgg>,
    conformance: Option<&crate::conformance::Outcome>,
) -> Rebuilt {
    let plan = &merged.plan;
    let info = run_info(merged, sources);
    let receive_delay = info.receive_delay.clone();
    let checks = Checks {
        taps: tap_agg,
        routing: plan.routing.clone(),
        conformance,
    };
    let mut summary = verdict::summarise(info, &plan.process_load(), &agg, &checks);
    verdict::modes::fill(&mut summary, &agg);
    // What the backends' metrics showed is not in results.ndjson: a single run keeps its own.
    if let [only] = sources {
        summary.backend_metrics = only
            .summary
            .as_ref()
            .map(|s| s.backend_metrics.clone())
            .unwrap_or_default();
    }
    Rebuilt {
        summary,
        agg,
        receive_delay,
    }
}
