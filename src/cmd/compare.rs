//! `compare BASELINE CURRENT`: the gate between two run folders, from the command line.

use super::Failure;
use crate::compare;
use crate::exit::Exit;
use crate::plan::{GateMetric, GateSpec, Threshold};
use crate::results::RunFolder;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// `compare BASELINE CURRENT`: options.
pub struct CompareArgs {
    pub baseline: PathBuf,
    pub current: PathBuf,
    /// `(feature, metric, threshold)` from `--threshold`, over the current run's `[gate]`.
    pub thresholds: Vec<(Option<String>, GateMetric, Threshold)>,
    /// `--optional METRIC|FEATURE.METRIC`, over the current run's `[gate] optional`.
    pub optional: Vec<String>,
    pub out: Option<PathBuf>,
}

/// The features the two runs measure: what a threshold may name.
fn features(folders: [&RunFolder; 2]) -> BTreeSet<String> {
    folders
        .iter()
        .flat_map(|f| {
            f.plan
                .features
                .iter()
                .chain(f.records.iter().map(|r| &r.feature))
        })
        .cloned()
        .collect()
}

/// The current run's `[gate]` with the command line's thresholds and optional checks over it;
/// an unknown feature or metric is refused.
fn gate(args: &CompareArgs, base: &RunFolder, cur: &RunFolder) -> Result<GateSpec, String> {
    let mut gate = cur.plan.gate.clone();
    for (feature, metric, t) in &args.thresholds {
        let slot = match feature {
            Some(f) => gate.features.entry(f.clone()).or_default(),
            None => &mut gate.thresholds,
        };
        let slot = slot.entry(metric.name().to_owned()).or_default();
        *slot = t.over(*slot);
    }
    gate.optional.extend(args.optional.iter().cloned());
    gate.check()?;
    let known = features([base, cur]);
    if let Some(f) = gate.named_features().find(|f| !known.contains(*f)) {
        return Err(format!(
            "the gate names the feature '{f}', which neither run measures (they measure {})",
            known.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(gate)
}

/// `compare-<baseline run id>.json`: what `compare` writes into the current folder by default.
fn own_file(base: &RunFolder) -> String {
    let id: String = base
        .plan
        .run_id
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() || "-_.".contains(c) {
            true => c,
            false => '_',
        })
        .collect();
    format!("compare-{id}.json")
}

/// `compare`: 0 only when every required check was judged "no regression" and the current run
/// passed; 1 on a regression or a failed current run; 4 when a required check could not be
/// judged; 2 when the runs cannot be compared or a flag is wrong.
pub fn command(args: CompareArgs) -> Result<Exit, Failure> {
    let (base, cur) = (
        RunFolder::open(&args.baseline)?,
        RunFolder::open(&args.current)?,
    );
    for f in [&base, &cur].into_iter().filter(|f| f.summary.is_none()) {
        eprintln!(
            "warning: {} has no summary.json (killed?): run `duo-harness report {}` first",
            f.dir.display(),
            f.dir.display()
        );
    }
    let gate = gate(&args, &base, &cur).map_err(Failure::Usage)?;
    let c = compare::compare(&base, &cur, &gate)?;
    print!("{}", compare::table(&c));
    // The run's own comparison.json is what its verdict rests on: this one is written beside it.
    let out = args.out.unwrap_or_else(|| cur.dir.join(own_file(&base)));
    crate::files::write_json(&out, &c).map_err(|source| Failure::Write {
        path: out.clone(),
        source,
    })?;
    println!("comparison: {}", out.display());
    Ok(c.exit())
}
