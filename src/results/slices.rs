//! Slices of one schedule read back together (`report SLICE_DIR…` over `run --slice K/N`
//! folders): checked to be exactly slices 0..N−1 of one plan, none missing or doubled, and
//! audited side by side.
//!
//! In: the run folders. Out: a refusal naming the slice and folders at fault, or one
//! [`SliceAudit`] per slice (start against the common instant, lateness, CPU, clock).

use super::{record_epoch_ms, ResultsError, RunFolder};
use crate::measure::Disposition;
use crate::plan::Slice;
use crate::verdict::SliceAudit;
use std::collections::BTreeMap;

fn slice_of(f: &RunFolder) -> Option<&Slice> {
    f.plan.slice.as_ref()
}

fn name(f: &RunFolder) -> String {
    f.dir.display().to_string()
}

/// Whether the folders are slices: `None` when none is, an error when some are and others
/// are not.
pub fn sliced(folders: &[RunFolder]) -> Result<bool, ResultsError> {
    let (cut, whole): (Vec<&RunFolder>, Vec<&RunFolder>) =
        folders.iter().partition(|f| slice_of(f).is_some());
    match (cut.first(), whole.first()) {
        (Some(s), Some(w)) => Err(ResultsError::Mismatch(format!(
            "{} is a slice of a schedule and {} is a run of its own: slices merge only with the \
             other slices of their schedule",
            name(s),
            name(w)
        ))),
        (Some(_), None) => Ok(true),
        _ => Ok(false),
    }
}

/// Checks that the folders are slices 0..N−1 of one plan (one hash, one N, one instant zero),
/// each exactly once.
pub fn check(folders: &[RunFolder]) -> Result<(), ResultsError> {
    let Some(first) = folders.first().and_then(|f| Some((f, slice_of(f)?))) else {
        return Ok(());
    };
    let (f0, s0) = first;
    for f in folders {
        let s = slice_of(f).expect("every folder is a slice (checked by `sliced`)");
        let differs = if s.plan_sha256 != s0.plan_sha256 {
            Some("plans (scenario, corpus, load, seed, SLOs or target)")
        } else if s.count != s0.count {
            Some("numbers of slices")
        } else if s.start_at != s0.start_at {
            Some("instants zero")
        } else {
            None
        };
        if let Some(what) = differs {
            return Err(ResultsError::Mismatch(format!(
                "{} (slice {}/{} of plan {}, zero {}) and {} (slice {}/{} of plan {}, zero {}) \
                 are slices of different {what}: only the slices of one schedule merge",
                name(f0),
                s0.index,
                s0.count,
                short(&s0.plan_sha256),
                s0.start_at,
                name(f),
                s.index,
                s.count,
                short(&s.plan_sha256),
                s.start_at,
            )));
        }
    }
    each_once(folders, s0.count)
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Every index 0..n once: a doubled slice names both folders, a missing one the folders given.
fn each_once(folders: &[RunFolder], n: u32) -> Result<(), ResultsError> {
    let mut by_index: BTreeMap<u32, &RunFolder> = BTreeMap::new();
    for f in folders {
        let k = slice_of(f).map_or(0, |s| s.index);
        if let Some(g) = by_index.insert(k, f) {
            return Err(ResultsError::Mismatch(format!(
                "slice {k}/{n} is given twice ({} and {}): merged, its requests would count twice",
                name(g),
                name(f)
            )));
        }
    }
    let missing: Vec<String> = (0..n)
        .filter(|k| !by_index.contains_key(k))
        .map(|k| format!("{k}/{n}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let given: Vec<String> = by_index
        .iter()
        .map(|(k, f)| format!("{k}/{n} in {}", name(f)))
        .collect();
    Err(ResultsError::Mismatch(format!(
        "slice {} missing (given: {}): the merge of some slices is not the schedule's load",
        missing.join(", "),
        given.join("; ")
    )))
}

/// Each slice as its folder shows it, in index order.
pub fn audit(folders: &[RunFolder]) -> Vec<SliceAudit> {
    let mut out: Vec<SliceAudit> = folders.iter().filter_map(audit_one).collect();
    out.sort_by_key(|a| a.index);
    out
}

fn audit_one(f: &RunFolder) -> Option<SliceAudit> {
    let s = slice_of(f)?;
    let sent: Vec<_> = f
        .records
        .iter()
        .filter(|r| r.disposition != Disposition::Skipped)
        .collect();
    let first = sent
        .iter()
        .min_by(|a, b| a.intended_ms.total_cmp(&b.intended_ms));
    let zero_ms = s.start().map(|t| t.timestamp_micros() as f64 / 1000.0);
    let offsets: Vec<f64> = sent
        .iter()
        .filter_map(|r| Some(record_epoch_ms(r)? - zero_ms?))
        .collect();
    let (lo, hi) = offsets
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), o| {
            (lo.min(*o), hi.max(*o))
        });
    let summary = f.summary.as_ref();
    Some(SliceAudit {
        index: s.index,
        count: s.count,
        dir: name(f),
        requests: f.records.len() as u64,
        first_intended_ms: first.map(|r| r.intended_ms),
        first_send_late_ms: first.map(|r| (r.sent_ms - r.intended_ms).max(0.0)),
        lateness_p99_ms: summary.and_then(|s| s.load.send_lateness_ms.p99),
        cpu_cores_busy: summary.map(|s| s.load.client.cores_busy),
        busiest_thread_busy: summary
            .and_then(|s| s.load.client.busiest_thread.as_ref())
            .map(|t| t.busy),
        clock_offset_ms: offsets
            .first()
            .map(|_| if lo.abs() > hi.abs() { lo } else { hi }),
        clock_spread_ms: offsets.first().map(|_| hi - lo),
    })
}
