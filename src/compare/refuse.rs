//! What two runs must share to be compared, and what they may differ in (said, not refused).

use crate::plan::Plan;
use crate::results::RunFolder;
use serde_json::Value;
use std::path::Path;

/// The fields of `[load]` that do not change what the server was offered: how long, how it was
/// seeded, what the run tolerates of itself.
const NOT_SHAPE: &[&str] = &[
    "seed",
    "duration_s",
    "max_requests",
    "warmup_s",
    "grace_s",
    "max_send_lateness_ms",
    "max_late_share",
    "max_error_rate",
    "max_cut_off_rate",
    "on_failed_preflight",
];

/// The arrival process and its rate, as a value to hold equal.
fn load_shape(p: &Plan) -> Value {
    let mut v = serde_json::to_value(&p.load).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        NOT_SHAPE.iter().for_each(|k| {
            o.remove(*k);
        });
    }
    v
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Why the two runs cannot be compared, if they cannot.
pub(super) fn refusal(base: &RunFolder, cur: &RunFolder) -> Option<String> {
    if same_folder(&base.dir, &cur.dir) {
        return Some("the same run folder twice: a run compared with itself proves nothing".into());
    }
    if base.plan.run_id == cur.plan.run_id {
        return Some(format!(
            "both folders hold run {}: a copy of a run compared with itself proves nothing",
            cur.plan.run_id
        ));
    }
    plan_refusal(&base.plan, &cur.plan)
}

/// Why runs of these two plans cannot be compared, if they cannot: known before the current
/// run sends anything (its preflight asks).
pub fn plan_refusal(b: &Plan, c: &Plan) -> Option<String> {
    match (&b.corpus_sha256, &c.corpus_sha256) {
        (Some(x), Some(y)) if x != y => {
            return Some(format!(
                "different corpora: {} (sha256 {}) and {} (sha256 {}) differ in content",
                b.corpus_path.display(),
                &x[..12],
                c.corpus_path.display(),
                &y[..12]
            ))
        }
        (Some(_), Some(_)) => {}
        // A plan written before corpora were hashed: the file names are all there is.
        _ if b.corpus_path.file_name() != c.corpus_path.file_name() => {
            return Some(format!(
                "different corpora ({} and {})",
                b.corpus_path.display(),
                c.corpus_path.display()
            ))
        }
        _ => {}
    }
    // The plans' feature filters, not the features a short random mix happened to draw: a
    // feature one run did not sample is a check that could not be judged, not a refusal.
    if b.features != c.features {
        let shown = |f: &[String]| match f.is_empty() {
            true => "every feature of the corpus".to_owned(),
            false => f.join(", "),
        };
        return Some(format!(
            "different features ({} and {})",
            shown(&b.features),
            shown(&c.features)
        ));
    }
    let (x, y) = (load_shape(b), load_shape(c));
    if x != y {
        return Some(format!(
            "different load shapes (arrival process or rate): {x} and {y}"
        ));
    }
    None
}

/// What the runs differ in without being refused: the report says so.
pub(super) fn differences(base: &RunFolder, cur: &RunFolder) -> Vec<String> {
    let (b, c) = (&base.plan, &cur.plan);
    let mut out = Vec::new();
    if b.target_url != c.target_url {
        let t = |u: &Option<String>| u.clone().unwrap_or_else(|| "the embedded twin".into());
        out.push(format!(
            "target: {} → {}",
            t(&b.target_url),
            t(&c.target_url)
        ));
    }
    if b.load.duration_s != c.load.duration_s || b.load.max_requests != c.load.max_requests {
        let d = |p: &Plan| match (p.load.duration_s, p.load.max_requests) {
            (Some(s), _) => format!("{s} s"),
            (None, Some(n)) => format!("{n} requests"),
            (None, None) => "the whole corpus".into(),
        };
        out.push(format!("length: {} → {}", d(b), d(c)));
    }
    if b.corpus_sha256.is_none() || c.corpus_sha256.is_none() {
        out.push(
            "a plan.json without the corpus digest: the corpora were matched by file name only"
                .into(),
        );
    }
    if let Some(s) = &base.summary {
        if s.verdict != crate::verdict::Verdict::Pass {
            out.push(format!(
                "the baseline's own verdict was {}: it is judged as measured",
                s.verdict
            ));
        }
    }
    out
}
