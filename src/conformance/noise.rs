//! The measured noise floor: how often two answers of the baseline differ, per feature and
//! field (`noise.json`, written by `run --calibrate`), and the margins a difference rate must
//! clear above it to count (Diffy's: 20 % relative and 0.03 % absolute by default).

use super::{compare, upstream_calls, ConformanceSpec, Snapshot, FIELDS};
use crate::measure::RequestRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How often two answers of the baseline differ, per feature and field (`noise.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Noise {
    pub schema: String,
    /// Feature → field → share of cases whose two baseline answers differed.
    pub features: BTreeMap<String, BTreeMap<String, f64>>,
    /// Feature → cases calibrated.
    pub cases: BTreeMap<String, u64>,
    /// Feature → the lowest token similarity between two baseline answers of one case: what
    /// ordinary variation looks like, from which a `similarity` threshold is derived where exact
    /// text is always noisy.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub text_similarity: BTreeMap<String, f64>,
}

/// At or above this share of differing baseline pairs, exact text comparison sees nothing: a
/// feature without a policy of its own is compared by similarity instead.
pub const NOISY_TEXT: f64 = 0.5;

/// The derived threshold is this share of the lowest baseline similarity. Ordinary variation
/// reaches below what a calibration sees: over 812 pairs of the twin's chat answers (one-sentence
/// answers, 30 % of words drawn at random) the lowest was 0.05, where 52 calibration pairs showed
/// 0.13 to 0.36; an answer that is no longer the same answer shares no word with it (0.0). An
/// eighth keeps the threshold well under that tail (0.026 on the shipped floor).
pub const SIMILARITY_FACTOR: f64 = 0.125;

impl Noise {
    fn noisy(&self, feature: &str) -> bool {
        self.features
            .get(feature)
            .and_then(|f| f.get("text"))
            .is_some_and(|t| *t >= NOISY_TEXT)
    }

    /// The similarity threshold derived for a feature whose exact text is always noisy. A corpus
    /// holds a few cases per feature, too few for one feature's tail: the lowest similarity of
    /// every noisy feature is pooled.
    pub fn derived_threshold(&self, feature: &str) -> Option<f64> {
        if !self.noisy(feature) {
            return None;
        }
        let lowest = self
            .text_similarity
            .iter()
            .filter(|(f, _)| self.noisy(f))
            .map(|(_, s)| *s)
            .reduce(f64::min)?;
        Some((lowest * SIMILARITY_FACTOR).clamp(0.0, 1.0))
    }
}

/// Where the noise floor of a corpus lives.
pub fn noise_path(dir: &Path, corpus: &str) -> PathBuf {
    dir.join(corpus).join("noise.json")
}

/// Calibrates from a run that answered every case twice (`run --calibrate`): the share of
/// cases per feature and field whose two answers differ under the feature's policy.
pub fn calibrate(
    spec: &ConformanceSpec,
    results: &Path,
    taps: Option<&Path>,
) -> std::io::Result<Noise> {
    let calls = upstream_calls(taps);
    let mut first: BTreeMap<String, Snapshot> = BTreeMap::new();
    let mut diffs: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut cases: BTreeMap<String, u64> = BTreeMap::new();
    let mut lowest: BTreeMap<String, f64> = BTreeMap::new();
    for line in std::fs::read_to_string(results)?.lines() {
        let Ok(r) = serde_json::from_str::<RequestRecord>(line) else {
            continue;
        };
        let snap = spec.masked(Snapshot::of(
            &r,
            r.nonce.as_ref().and_then(|n| calls.get(n)),
        ));
        let Some(a) = first.remove(&r.id) else {
            first.insert(r.id.clone(), snap);
            continue;
        };
        *cases.entry(r.feature.clone()).or_default() += 1;
        let sim = super::similarity(&a.text, &snap.text);
        let low = lowest.entry(r.feature.clone()).or_insert(1.0);
        *low = low.min(sim);
        let (content, threshold) = spec.policy(&r.feature);
        let per_field = diffs.entry(r.feature.clone()).or_default();
        for f in FIELDS {
            per_field.entry(f.to_owned()).or_default();
        }
        for m in compare(&a, &snap, content, threshold) {
            *per_field.entry(m.field.to_owned()).or_default() += 1;
        }
    }
    let features = diffs
        .into_iter()
        .map(|(f, fields)| {
            let n = cases[&f].max(1) as f64;
            (
                f,
                fields.into_iter().map(|(k, d)| (k, d as f64 / n)).collect(),
            )
        })
        .collect();
    Ok(Noise {
        schema: "duo-harness/noise/v1".into(),
        features,
        cases,
        text_similarity: lowest,
    })
}
