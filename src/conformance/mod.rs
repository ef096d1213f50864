//! Conformance against reviewed snapshots: one file per case under
//! `<dir>/<corpus>/<feature>/<case>.json` holding the normalised response, compared tier by tier.
//!
//! In: `results.ndjson` of a run (the first answer of each case), the snapshot folder and the
//! per-feature content policy. Out: per feature `{compared, mismatched, new}`, findings naming
//! the tier that decided them (`protocol`: status, content type, framing, event structure;
//! `content`: the text, exact, whitespace-normalised, or token similarity above a threshold),
//! and a `<case>.pending.json` beside each snapshot that differs or does not exist yet. A person
//! accepts or rejects pending files (`duo-harness snapshots`); a run never rewrites a snapshot,
//! and with `CI` set it writes no file at all.

mod noise;
mod store;

pub use crate::plan::{ConformanceSpec, ContentPolicy, FeaturePolicy, Margins};
pub use noise::{calibrate, noise_path, Noise, NOISY_TEXT, SIMILARITY_FACTOR};
use store::write_pending;
pub use store::{accepted_path, describe, pending, pending_path, snapshot_path};

use crate::measure::RequestRecord;
use crate::protocol::Framing;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

impl ConformanceSpec {
    /// `s` with the masks applied.
    fn masked(&self, s: Snapshot) -> Snapshot {
        let Ok(rules) = self.mask_rules() else {
            return s;
        };
        if rules.is_empty() {
            return s;
        }
        let mut v = serde_json::to_value(&s).expect("snapshots serialise");
        crate::redact::apply_rules(&rules, &mut v);
        serde_json::from_value(v).unwrap_or(s)
    }
}

/// The normalised, reviewable form of one answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Snapshot {
    pub schema: String,
    pub id: String,
    pub feature: String,
    pub method: String,
    pub path: String,
    pub status: Option<u16>,
    pub content_type: Option<String>,
    pub framing: Option<Framing>,
    pub events: Vec<String>,
    /// The answer's text, volatile parts masked (runs of 16+ hex digits: request ids, the
    /// security tag of PROTOCOL.md §8.4).
    pub text: String,
    /// A JSON answer's shape: keys and value types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<serde_json::Value>,
    /// With taps: the first upstream call's `model` and sampling parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<serde_json::Value>,
}

pub const SNAPSHOT_SCHEMA: &str = "duo-harness/snapshot/v1";

/// Replaces every run of 16 or more hex digits by `[hex]`.
fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        out.push_str(if run.len() >= 16 { "[hex]" } else { run });
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

impl Snapshot {
    /// The snapshot of `r`; `upstream` is what a tap saw of its first upstream call.
    pub fn of(r: &RequestRecord, upstream: Option<&serde_json::Value>) -> Self {
        Self {
            schema: SNAPSHOT_SCHEMA.into(),
            id: r.id.clone(),
            feature: r.feature.clone(),
            method: r.method.clone(),
            path: r.path.clone(),
            status: r.status,
            content_type: r
                .headers
                .get("content-type")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            framing: r.framing,
            events: r.events.clone(),
            text: mask(&r.content),
            shape: r.json_shape.clone(),
            upstream: upstream.cloned(),
        }
    }
}

/// Nonce → `{model, params}` of the first upstream call each request caused (`taps.ndjson`).
pub fn upstream_calls(taps: Option<&Path>) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    let text = taps
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(n) = v["nonce"].as_str() {
            let call = serde_json::json!({"model": v["model"], "params": v["params"]});
            out.entry(n.to_owned()).or_insert(call);
        }
    }
    out
}

/// One difference, and the tier that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub tier: &'static str,
    /// The compared field: `status`, `content_type`, `framing`, `events` or `text`.
    pub field: &'static str,
    pub message: String,
}

fn words(s: &str) -> HashSet<&str> {
    s.split_whitespace().collect()
}

/// Token-set (Jaccard) similarity of two texts; 1 for two empty texts.
pub fn similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (words(a), words(b));
    let union = a.union(&b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

/// Compares a new answer with its snapshot under `policy` (and `threshold`).
pub fn compare(
    old: &Snapshot,
    new: &Snapshot,
    policy: ContentPolicy,
    threshold: f64,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut protocol = |field: &'static str, a: String, b: String| {
        if a != b {
            let message = format!("{field}: {a} → {b}");
            out.push(Mismatch {
                tier: "protocol",
                field,
                message,
            });
        }
    };
    // Values as an operator reads them (`200 → 421`), never Rust's debug text.
    let shown = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    let framing = |f: Option<crate::protocol::Framing>| {
        f.and_then(|f| serde_json::to_value(f).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
    };
    let status = |s: Option<u16>| shown(s.map(|s| s.to_string()));
    protocol("status", status(old.status), status(new.status));
    protocol(
        "content_type",
        shown(old.content_type.clone()),
        shown(new.content_type.clone()),
    );
    protocol(
        "framing",
        shown(framing(old.framing)),
        shown(framing(new.framing)),
    );
    protocol("events", old.events.join(","), new.events.join(","));
    // Compared where both sides have one (snapshots from before shapes were kept have none;
    // a JSON answer turning into a stream shows in the framing).
    if let (Some(a), Some(b)) = (&old.shape, &new.shape) {
        protocol("shape", a.to_string(), b.to_string());
    }
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let content = match policy {
        ContentPolicy::Ignore => None,
        ContentPolicy::Exact => (old.text != new.text).then(|| "text differs".to_owned()),
        ContentPolicy::Normalized => (squash(&old.text) != squash(&new.text))
            .then(|| "text differs beyond whitespace".to_owned()),
        ContentPolicy::Similarity => {
            let s = similarity(&old.text, &new.text);
            (s < threshold).then(|| format!("text similarity {s:.2} below {threshold:.2}"))
        }
    };
    out.extend(content.map(|message| Mismatch {
        tier: "content",
        field: "text",
        message,
    }));
    if let (Some(a), Some(b)) = (&old.upstream, &new.upstream) {
        if a != b {
            let message = format!("upstream parameters drifted: {a} → {b}");
            out.push(Mismatch {
                tier: "routing",
                field: "upstream",
                message,
            });
        }
    }
    out
}

/// Every compared field.
pub const FIELDS: [&str; 7] = [
    "status",
    "shape",
    "content_type",
    "framing",
    "events",
    "text",
    "upstream",
];

/// One feature's conformance counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Counts {
    pub compared: u64,
    pub mismatched: u64,
    /// Cases with no snapshot yet (recorded as pending).
    pub new: u64,
    /// Per field that differed at all: the baseline's noise rate beside this run's rate. A
    /// field's differences count only when its rate clears the noise by the margins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldRate>,
    /// Where exact text is always noisy and the feature has no policy of its own: the
    /// `similarity` threshold derived from the calibration, which the text is compared by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derived_similarity: Option<f64>,
}

/// Share of compared cases whose field differed: between two baseline answers (`noise`) and
/// between snapshot and this run (`candidate`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct FieldRate {
    pub noise: f64,
    pub candidate: f64,
}

/// What a conformance pass found.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub features: BTreeMap<String, Counts>,
    /// (feature, tier or `new`, message).
    pub findings: Vec<(String, String, String)>,
}

/// The similarity threshold a feature's text is compared by when the calibration found its
/// exact text always noisy and the scenario gave the feature no policy of its own.
fn derived(spec: &ConformanceSpec, noise: Option<&Noise>, feature: &str) -> Option<f64> {
    let own = spec.features.get(feature).and_then(|p| p.content).is_some();
    if own || spec.content != ContentPolicy::Exact {
        return None;
    }
    noise?.derived_threshold(feature)
}

/// Each feature's fields that differed at all: this run's rate of differences beside the
/// baseline's noise rate.
fn field_rates(
    out: &mut Outcome,
    compared: &[(PathBuf, Snapshot, Vec<Mismatch>)],
    noise: Option<&Noise>,
) {
    let mut rates: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for (_, new, diffs) in compared {
        for d in diffs {
            *rates.entry((new.feature.clone(), d.field)).or_default() += 1;
        }
    }
    for ((feature, field), n) in &rates {
        let Some(counts) = out.features.get_mut(feature) else {
            continue;
        };
        let candidate = *n as f64 / counts.compared.max(1) as f64;
        // Under a derived similarity policy the baseline pairs all passed by construction:
        // the text's noise is zero, so a changed answer counts.
        let derived_text = *field == "text" && counts.derived_similarity.is_some();
        let noise = noise
            .filter(|_| !derived_text)
            .and_then(|z| z.features.get(feature)?.get(*field).copied())
            .unwrap_or(0.0);
        counts
            .fields
            .insert((*field).to_owned(), FieldRate { noise, candidate });
    }
}

/// The compared cases' differences that stand out of the noise: counted, said, and (outside
/// CI) written as pending snapshots.
fn mismatches(
    spec: &ConformanceSpec,
    out: &mut Outcome,
    compared: Vec<(PathBuf, Snapshot, Vec<Mismatch>)>,
    write: bool,
) -> std::io::Result<()> {
    for (path, new, diffs) in compared {
        let rates = &out.features[&new.feature].fields;
        let real: Vec<&Mismatch> = diffs
            .iter()
            .filter(|d| {
                let r = &rates[d.field];
                spec.margins.exceeds(r.candidate, r.noise)
            })
            .collect();

        if real.is_empty() {
            continue;
        }
        out.features
            .get_mut(&new.feature)
            .expect("counted above")
            .mismatched += 1;
        for d in &real {
            let m = format!("case '{}': {}", new.id, d.message);
            out.findings.push((new.feature.clone(), d.tier.into(), m));
        }
        if write {
            write_pending(&path, &new)?;
        }
    }
    Ok(())
}

/// Compares the first answer of every case in `results` with its snapshot. A field's
/// differences count only where their rate stands out of the measured noise (`noise`, when
/// calibrated) by `margins`. `write` says whether pending files may be written (not under CI).
pub fn check(
    spec: &ConformanceSpec,
    dir: &Path,
    corpus: &str,
    results: &Path,
    taps: Option<&Path>,
    write: bool,
) -> std::io::Result<Outcome> {
    let calls = upstream_calls(taps);
    let noise: Option<Noise> = std::fs::read_to_string(noise_path(dir, corpus))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let mut out = Outcome::default();
    let mut seen = HashSet::new();
    // (path, new snapshot, differences) of every compared case, judged once the rates are known.
    let mut compared: Vec<(PathBuf, Snapshot, Vec<Mismatch>)> = Vec::new();
    for line in std::fs::read_to_string(results)?.lines() {
        let Ok(r) = serde_json::from_str::<RequestRecord>(line) else {
            continue;
        };
        if r.warmup || !seen.insert(r.id.clone()) {
            continue;
        }
        let new = spec.masked(Snapshot::of(
            &r,
            r.nonce.as_ref().and_then(|n| calls.get(n)),
        ));
        let path = snapshot_path(dir, corpus, &r.feature, &r.id);
        let counts = out.features.entry(r.feature.clone()).or_default();
        let old: Option<Snapshot> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .map(|o| spec.masked(o)); // a mask added later covers older snapshots too
        let Some(old) = old else {
            counts.new += 1;
            let m = format!(
                "case '{}' has no snapshot yet: recorded as pending for review",
                r.id
            );
            out.findings.push((r.feature.clone(), "new".into(), m));
            if write {
                write_pending(&path, &new)?;
            }
            continue;
        };
        counts.compared += 1;
        let (content, threshold) = match derived(spec, noise.as_ref(), &r.feature) {
            Some(t) => {
                counts.derived_similarity = Some(t);
                (ContentPolicy::Similarity, t)
            }
            None => spec.policy(&r.feature),
        };
        let diffs = compare(&old, &new, content, threshold);
        compared.push((path, new, diffs));
    }
    field_rates(&mut out, &compared, noise.as_ref());
    mismatches(spec, &mut out, compared, write)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(text: &str, events: &[&str]) -> Snapshot {
        Snapshot {
            schema: SNAPSHOT_SCHEMA.into(),
            id: "a".into(),
            feature: "code_completions".into(),
            method: "POST".into(),
            path: "/v4/code/suggestions".into(),
            status: Some(200),
            content_type: Some("text/event-stream".into()),
            framing: Some(Framing::V4Sse),
            events: events.iter().map(|e| e.to_string()).collect(),
            text: text.into(),
            shape: None,
            upstream: None,
        }
    }

    #[test]
    fn tiers_decide_what_they_own() {
        let base = snap("return a + b", &["start", "content", "end"]);
        assert!(compare(&base, &base.clone(), ContentPolicy::Exact, 0.8).is_empty());
        let no_end = snap("return a + b", &["start", "content"]);
        let d = compare(&base, &no_end, ContentPolicy::Exact, 0.8);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].tier, "protocol");
        let spaced = snap("return  a +\nb", &["start", "content", "end"]);
        assert_eq!(
            compare(&base, &spaced, ContentPolicy::Exact, 0.8)[0].tier,
            "content"
        );
        assert!(compare(&base, &spaced, ContentPolicy::Normalized, 0.8).is_empty());
        let other = snap("return a + c", &["start", "content", "end"]);
        assert!(compare(&base, &other, ContentPolicy::Similarity, 0.5).is_empty());
        assert_eq!(
            compare(&base, &other, ContentPolicy::Similarity, 0.9).len(),
            1
        );
        assert!(compare(&base, &other, ContentPolicy::Ignore, 0.9).is_empty());
        let (mut a, mut b) = (base.clone(), base.clone());
        a.shape = Some(serde_json::json!({"choices": [{"text": "string"}]}));
        b.shape = Some(serde_json::json!({"choices": [{"text": "number"}]}));
        let d = compare(&a, &b, ContentPolicy::Exact, 0.8);
        assert_eq!((d.len(), d[0].tier, d[0].field), (1, "protocol", "shape"));
        a.upstream = Some(serde_json::json!({"model": "m", "params": {"max_tokens": 64}}));
        b = a.clone();
        b.upstream = Some(serde_json::json!({"model": "m", "params": {"max_tokens": 99}}));
        let d = compare(&a, &b, ContentPolicy::Exact, 0.8);
        assert_eq!((d.len(), d[0].tier, d[0].field), (1, "routing", "upstream"));
    }

    #[test]
    fn hex_runs_are_masked() {
        assert_eq!(mask("tag 0123456789abcdef0 and cafe"), "tag [hex] and cafe");
    }
}
