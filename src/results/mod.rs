//! The results stage read back: a run folder (`plan.json`, `results.ndjson`, `taps.ndjson`,
//! `histograms.json`, and `summary.json` when the run lived to write it) as the back half needs
//! it, for `report` (re-render, rebuild after a kill, merge) and `compare`.
//!
//! In: one or more run folders. Out: a [`RunFolder`] each: the plan as recorded, every whole
//! result line (a torn last line, what a kill leaves, is reported and skipped; lines of another
//! run, appended, are set aside), and what the run measured about itself. Every document is read
//! by the type that wrote it ([`document`]: a document of another version is refused with its
//! name and version). Several folders of one plan [`merge`] into one: their records on one clock
//! (each folder's wall-clock start), their self-measurements combined; the same run twice, or
//! runs of different plans or targets, are refused.

mod slices;
pub use slices::audit as audit_slices;

/// Refuses folders that are not exactly slices 0..N−1 of one plan, once each (folders that are
/// no slices pass).
pub fn check_slices(folders: &[RunFolder]) -> Result<(), ResultsError> {
    match slices::sliced(folders)? {
        true => slices::check(folders),
        false => Ok(()),
    }
}

use crate::measure::aggregate::Aggregate;
use crate::measure::RequestRecord;
use crate::plan::{Plan, PlanDocument, PLAN_SCHEMA};
use crate::verdict::{
    Histograms, Preflight, Summary, HISTOGRAMS_SCHEMA, PREFLIGHT_SCHEMA, SUMMARY_SCHEMA,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Why a run folder could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a run folder's file: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: a document of version {found}; this build reads {expected}")]
    Version {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error("{0}")]
    Mismatch(String),
}

/// A line of `results.ndjson` that could not be read.
#[derive(Debug, Clone)]
pub struct BadLine {
    pub line: usize,
    pub message: String,
    /// The file's last line, without its newline: what a kill mid-write leaves.
    pub torn: bool,
}

/// Result lines whose clock started elsewhere than the folder's run: another run's lines.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignLines {
    pub lines: usize,
    /// Their run's start on the wall clock, ms since the epoch.
    pub start_epoch_ms: f64,
}

/// Lines further from the run's own clock start than this belong to another run, ms.
const CLOCK_TOLERANCE_MS: f64 = 2000.0;

/// A record's run start on the wall clock: its send instant less its offset into the run.
fn record_epoch_ms(r: &RequestRecord) -> Option<f64> {
    let at = chrono::DateTime::parse_from_rfc3339(&r.sent_at).ok()?;
    Some(at.timestamp_micros() as f64 / 1000.0 - r.sent_ms)
}

/// The run's start on the wall clock from its id (`<UTC start>-<name>`, to the second), ms.
fn run_id_start_ms(run_id: &str) -> Option<f64> {
    let stamp = run_id.get(..16)?;
    let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").ok()?;
    Some(t.and_utc().timestamp_millis() as f64)
}

/// The clocks the records were written on: each a start (ms since the epoch) and its lines.
fn clocks(records: &[RequestRecord]) -> Vec<ForeignLines> {
    let mut out: Vec<ForeignLines> = Vec::new();
    for e in records.iter().filter_map(record_epoch_ms) {
        match out
            .iter_mut()
            .find(|c| (c.start_epoch_ms - e).abs() <= CLOCK_TOLERANCE_MS)
        {
            Some(c) => c.lines += 1,
            None => out.push(ForeignLines {
                lines: 1,
                start_epoch_ms: e,
            }),
        }
    }
    out
}

/// Splits the records into the run's own and another run's, grouped by clock; with the run's
/// start. The run's own clock is the first to start at or after the start its id names (a run
/// starts its clock after its setup); without one, the clock most lines share.
fn own_records(
    records: Vec<RequestRecord>,
    run_id: &str,
) -> (Vec<RequestRecord>, Vec<ForeignLines>, Option<f64>) {
    let mut found = clocks(&records);
    let started = run_id_start_ms(run_id);
    let after_start = |c: &&ForeignLines| started.is_some_and(|s| c.start_epoch_ms >= s - 1000.0);
    let own = found
        .iter()
        .filter(after_start)
        .min_by(|a, b| a.start_epoch_ms.total_cmp(&b.start_epoch_ms))
        .or_else(|| found.iter().max_by_key(|c| c.lines))
        .map(|c| c.start_epoch_ms);
    let Some(own) = own else {
        return (records, Vec::new(), None);
    };
    found.retain(|c| (c.start_epoch_ms - own).abs() > CLOCK_TOLERANCE_MS);
    let kept: Vec<RequestRecord> = records
        .into_iter()
        .filter(|r| record_epoch_ms(r).is_none_or(|e| (e - own).abs() <= CLOCK_TOLERANCE_MS))
        .collect();
    let start = kept.iter().find_map(record_epoch_ms);
    (kept, found, start)
}

/// One run folder, read.
#[derive(Debug, Clone)]
pub struct RunFolder {
    pub dir: PathBuf,
    /// The plan the run followed (`plan_json.plan`).
    pub plan: Plan,
    /// `plan.json` whole (the report shows the resolved plan).
    pub plan_json: PlanDocument,
    pub records: Vec<RequestRecord>,
    pub bad_lines: Vec<BadLine>,
    /// Result lines of another run (appended to this folder's file): not counted.
    pub foreign: Vec<ForeignLines>,
    /// `summary.json`, when the run wrote one.
    pub summary: Option<Summary>,
    /// `preflight.json`, when the run got that far.
    pub preflight: Option<Preflight>,
    /// `histograms.json`, when the run wrote one.
    pub histograms: Option<Histograms>,
    /// The folder's run start on the wall clock, ms since the epoch (from its first record).
    pub start_epoch_ms: Option<f64>,
    /// Whether `results.ndjson` was read ([`RunFolder::open_documents`] leaves it for
    /// [`RunFolder::read_records`]).
    pub records_read: bool,
}

fn read(path: &Path) -> Result<String, ResultsError> {
    std::fs::read_to_string(path).map_err(|source| ResultsError::Read {
        path: path.into(),
        source,
    })
}

/// A run-folder document of version `schema` (the string at `pointer`), typed; `None` when the
/// file is absent. A document of another version is refused with its name and version.
pub fn document<T: serde::de::DeserializeOwned>(
    path: &Path,
    pointer: &str,
    schema: &'static str,
) -> Result<Option<T>, ResultsError> {
    let Some(value) = json(path)? else {
        return Ok(None);
    };
    let found = value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("none");
    if found != schema {
        return Err(ResultsError::Version {
            path: path.into(),
            found: found.into(),
            expected: schema,
        });
    }
    serde_path_to_error::deserialize(value)
        .map(Some)
        .map_err(|e| ResultsError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })
}

fn json(path: &Path) -> Result<Option<Value>, ResultsError> {
    if !path.exists() {
        return Ok(None);
    }
    serde_json::from_str(&read(path)?)
        .map(Some)
        .map_err(|e| ResultsError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })
}

/// Every whole line of a results file, and the lines that could not be read.
pub fn read_lines(text: &str) -> (Vec<RequestRecord>, Vec<BadLine>) {
    let (mut records, mut bad) = (Vec::new(), Vec::new());
    let last = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<RequestRecord>(line) {
            Ok(r) => records.push(r),
            Err(e) => bad.push(BadLine {
                line: i + 1,
                message: e.to_string(),
                torn: i + 1 == last && !text.ends_with('\n'),
            }),
        }
    }
    (records, bad)
}

impl RunFolder {
    /// The folder whole: its documents and every record.
    pub fn open(dir: &Path) -> Result<Self, ResultsError> {
        let mut folder = Self::open_documents(dir)?;
        folder.read_records()?;
        Ok(folder)
    }

    /// The folder's documents without its records: what `run` judges itself from, its
    /// aggregate already in hand (reading 10⁵ records back would cost as much memory and CPU
    /// as writing them). [`RunFolder::read_records`] reads them when a comparison needs them.
    pub fn open_documents(dir: &Path) -> Result<Self, ResultsError> {
        let plan_path = dir.join("plan.json");
        let plan_json: PlanDocument = document(&plan_path, "/plan/schema", PLAN_SCHEMA)?
            .ok_or_else(|| ResultsError::Invalid {
                path: plan_path.clone(),
                message: "missing: is this a run folder?".into(),
            })?;
        Ok(Self {
            dir: dir.into(),
            plan: plan_json.plan.clone(),
            plan_json,
            records: Vec::new(),
            bad_lines: Vec::new(),
            foreign: Vec::new(),
            summary: document(&dir.join("summary.json"), "/schema", SUMMARY_SCHEMA)?,
            preflight: document(&dir.join("preflight.json"), "/schema", PREFLIGHT_SCHEMA)?,
            histograms: document(&dir.join("histograms.json"), "/schema", HISTOGRAMS_SCHEMA)?,
            start_epoch_ms: None,
            records_read: false,
        })
    }

    /// Reads `results.ndjson` (once): the run's own records, the bad and foreign lines.
    pub fn read_records(&mut self) -> Result<(), ResultsError> {
        if self.records_read {
            return Ok(());
        }
        let (records, bad_lines) = read_lines(&read(&self.dir.join("results.ndjson"))?);
        let (records, foreign, start_epoch_ms) = own_records(records, &self.plan.run_id);
        (self.records, self.bad_lines, self.foreign) = (records, bad_lines, foreign);
        self.start_epoch_ms = start_epoch_ms;
        self.records_read = true;
        Ok(())
    }

    /// Whether every measured successful record kept its chunks (ITL can be rebuilt from them).
    pub fn has_chunks(&self) -> bool {
        self.records
            .iter()
            .filter(|r| r.ok() && !r.warmup)
            .all(|r| r.chunks.len() as u64 >= r.content_events.min(1))
    }

    /// Folds the records into an aggregate. Without chunks in `results.ndjson`
    /// (`output.chunks = false`), ITL comes from `histograms.json`.
    pub fn aggregate(&self) -> Aggregate {
        let mut agg = Aggregate::new(self.plan.slo.clone());
        self.records.iter().for_each(|r| agg.add(r));
        if !self.has_chunks() {
            self.itl_from_histograms(&mut agg);
        }
        agg
    }

    /// Each feature's ITL as `histograms.json` keeps it: what the folder's ITL is when its
    /// records carry no chunks (and what `run` judges itself by then, so that `report` of the
    /// folder gives the same figures back).
    pub fn itl_from_histograms(&self, agg: &mut Aggregate) {
        let kept = self.histograms.as_ref().map(|h| &h.features);
        for (k, f) in agg.features.iter_mut() {
            if let Some(h) = kept.and_then(|h| h.get(k)) {
                f.itl = h.itl.clone();
            }
        }
    }
}

/// The load as two folders of one plan must share it (the seed may differ between pods).
fn plan_key(p: &Plan) -> Value {
    let mut load = serde_json::to_value(&p.load).unwrap_or_default();
    if let Some(l) = load.as_object_mut() {
        l.remove("seed");
    }
    serde_json::json!([
        p.scenario_name,
        p.corpus_path,
        p.more_corpora,
        p.features,
        load,
        p.slo,
        p.target_url,
        p.corpus_sha256
    ])
}

/// Merges several folders of one plan into one: records on the earliest folder's clock, ids and
/// sequence numbers kept, self-measurements (receive delay, CPU) combined. Refuses folders of
/// different plans, naming what differs.
pub fn merge(mut folders: Vec<RunFolder>) -> Result<RunFolder, ResultsError> {
    let Some(first) = folders.first() else {
        return Err(ResultsError::Mismatch("no run folder given".into()));
    };
    let key = plan_key(&first.plan);
    // Slices first, so that a doubled one is named as a slice. They are held to their plan's
    // hash (their paths may differ between pods); other runs to the plan they recorded.
    let sliced = slices::sliced(&folders)?;
    if sliced && folders.len() > 1 {
        slices::check(&folders)?;
    }
    for (i, f) in folders.iter().enumerate() {
        if let Some(g) = folders[..i].iter().find(|g| g.plan.run_id == f.plan.run_id) {
            return Err(ResultsError::Mismatch(format!(
                "{} and {} hold the same run ({}): a merge would count it twice",
                g.dir.display(),
                f.dir.display(),
                f.plan.run_id
            )));
        }
    }
    for f in folders[1..].iter() {
        if !sliced && plan_key(&f.plan) != key {
            return Err(ResultsError::Mismatch(format!(
                "{} and {} are runs of different plans (scenario, corpus, features, load, \
                 SLOs or target differ): only runs of one plan merge",
                first.dir.display(),
                f.dir.display()
            )));
        }
    }
    if folders.len() == 1 {
        return Ok(folders.remove(0));
    }
    let epoch = folders
        .iter()
        .filter_map(|f| f.start_epoch_ms)
        .fold(f64::INFINITY, f64::min);
    let mut merged = folders[0].clone();
    merged.records.clear();
    merged.bad_lines.clear();
    merged.foreign.clear();
    for f in &folders {
        // Slices already share their instant zero: their offsets stand as they are.
        let shift = match sliced {
            true => 0.0,
            false => f.start_epoch_ms.map_or(0.0, |s| s - epoch),
        };
        merged
            .records
            .extend(f.records.iter().cloned().map(|mut r| {
                r.sent_ms += shift;
                r.intended_ms += shift;
                r
            }));
        merged.bad_lines.extend(f.bad_lines.iter().cloned());
        merged.foreign.extend(f.foreign.iter().cloned());
    }
    merged
        .records
        .sort_by(|a, b| a.sent_ms.total_cmp(&b.sent_ms));
    merged.start_epoch_ms = epoch.is_finite().then_some(epoch);
    merged.histograms = merged_histograms(&folders);
    merged.summary = None;
    // The merge is the whole schedule, no longer a slice of it.
    merged.plan.slice = None;
    merged.plan_json.plan.slice = None;
    merged.plan.run_id = folders
        .iter()
        .map(|f| f.plan.run_id.as_str())
        .collect::<Vec<_>>()
        .join("+");
    Ok(merged)
}

/// The folders' histograms added (what a merged ITL and receive delay come from); `None` unless
/// every folder has them.
fn merged_histograms(folders: &[RunFolder]) -> Option<Histograms> {
    let mut out = folders.first()?.histograms.clone()?;
    for f in &folders[1..] {
        out.merge(f.histograms.as_ref()?);
    }
    Some(out)
}
