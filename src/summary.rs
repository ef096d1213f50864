//! Aggregation and verdict: from [`RequestRecord`]s to `summary.json`
//! (`schemas/summary-v1.schema.json`), the per-feature table and the exit code.
//!
//! Percentiles are exact, with linear interpolation between order statistics (NumPy's default),
//! which is right for the small runs of a conformance replay.

use crate::exit::Exit;
use crate::measure::{ErrorClass, RequestRecord};
use serde::Serialize;
use std::collections::BTreeMap;

/// p50/p90/p99/max of one metric, milliseconds; `None` fields when there was no sample.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub n: usize,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// Linear-interpolation percentile of sorted samples (`q` in 0..=1).
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

impl Percentiles {
    pub fn of(mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        let round = |v: Option<f64>| v.map(|x| (x * 1000.0).round() / 1000.0);
        Self {
            n: samples.len(),
            p50: round(percentile(&samples, 0.5)),
            p90: round(percentile(&samples, 0.9)),
            p99: round(percentile(&samples, 0.99)),
            max: round(samples.last().copied()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub ttft: Percentiles,
    pub itl: Percentiles,
    pub tpot: Percentiles,
    pub e2e: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeatureSummary {
    pub requests: usize,
    pub errors: usize,
    pub errors_by_class: BTreeMap<ErrorClass, usize>,
    pub latency_ms: Latency,
    pub output_tokens: u64,
    /// Requests whose output token count was estimated (no `usage` in the answer).
    pub tokens_estimated: usize,
    /// Requests where some chunk held more than one token.
    pub multi_token_chunks: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: String,
    pub feature: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Load {
    /// `sequential`: one request at a time, in corpus order.
    pub mode: &'static str,
    pub duration_s: f64,
    pub achieved_rps: f64,
}

/// The whole `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub schema: &'static str,
    pub verdict: &'static str,
    pub run_id: String,
    pub scenario: String,
    pub target: String,
    pub started_at: String,
    pub interrupted: bool,
    pub requests: usize,
    pub errors: usize,
    pub errors_by_class: BTreeMap<ErrorClass, usize>,
    pub load: Load,
    pub features: BTreeMap<String, FeatureSummary>,
    pub findings: Vec<Finding>,
}

/// Who the run was, for the summary header.
pub struct RunInfo {
    pub run_id: String,
    pub scenario: String,
    pub target: String,
    pub started_at: String,
    pub duration_s: f64,
    pub interrupted: bool,
}

fn feature_summary(records: &[&RequestRecord]) -> FeatureSummary {
    let ok: Vec<&&RequestRecord> = records.iter().filter(|r| r.ok()).collect();
    let mut errors_by_class = BTreeMap::new();
    for e in records.iter().filter_map(|r| r.error.as_ref()) {
        *errors_by_class.entry(e.class).or_default() += 1;
    }
    FeatureSummary {
        requests: records.len(),
        errors: records.len() - ok.len(),
        errors_by_class,
        latency_ms: Latency {
            ttft: Percentiles::of(ok.iter().filter_map(|r| r.ttft_ms()).collect()),
            itl: Percentiles::of(ok.iter().flat_map(|r| r.content_gaps_ms()).collect()),
            tpot: Percentiles::of(ok.iter().filter_map(|r| r.tpot_ms()).collect()),
            e2e: Percentiles::of(ok.iter().filter_map(|r| r.e2e_ms()).collect()),
        },
        output_tokens: ok.iter().filter_map(|r| r.output_tokens).sum(),
        tokens_estimated: ok.iter().filter(|r| r.tokens_estimated).count(),
        multi_token_chunks: ok.iter().filter(|r| r.multi_token_chunks).count(),
    }
}

/// Builds the summary and its verdict.
pub fn summarise(info: RunInfo, records: &[RequestRecord]) -> Summary {
    let mut by_feature: BTreeMap<String, Vec<&RequestRecord>> = BTreeMap::new();
    for r in records {
        by_feature.entry(r.feature.clone()).or_default().push(r);
    }
    let features: BTreeMap<String, FeatureSummary> = by_feature
        .iter()
        .map(|(k, v)| (k.clone(), feature_summary(v)))
        .collect();
    let mut errors_by_class = BTreeMap::new();
    for f in features.values() {
        for (c, n) in &f.errors_by_class {
            *errors_by_class.entry(*c).or_default() += n;
        }
    }
    let mut findings: Vec<Finding> = records
        .iter()
        .filter_map(|r| {
            let e = r.error.as_ref()?;
            let class = serde_json::to_value(e.class).ok()?.as_str()?.to_owned();
            Some(Finding {
                kind: "request_error".into(),
                feature: Some(r.feature.clone()),
                message: format!(
                    "request '{}' ({} {}): {class}: {}",
                    r.id, r.method, r.path, e.message
                ),
            })
        })
        .collect();
    if info.interrupted {
        findings.push(Finding {
            kind: "interrupted".into(),
            feature: None,
            message: "the run was interrupted before the corpus was replayed".into(),
        });
    }
    let errors = records.iter().filter(|r| !r.ok()).count();
    let verdict = if errors == 0 && !info.interrupted {
        "pass"
    } else {
        "fail"
    };
    let achieved_rps = if info.duration_s > 0.0 {
        records.len() as f64 / info.duration_s
    } else {
        0.0
    };
    Summary {
        schema: "duo-harness/summary/v1",
        verdict,
        run_id: info.run_id,
        scenario: info.scenario,
        target: info.target,
        started_at: info.started_at,
        interrupted: info.interrupted,
        requests: records.len(),
        errors,
        errors_by_class,
        load: Load {
            mode: "sequential",
            duration_s: info.duration_s,
            achieved_rps,
        },
        features,
        findings,
    }
}

impl Summary {
    pub fn exit(&self) -> Exit {
        if self.verdict == "pass" {
            Exit::Pass
        } else {
            Exit::VerdictFailed
        }
    }

    /// The per-feature table printed at the end of a run.
    pub fn table(&self) -> String {
        let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.1}"));
        let mut out = format!(
            "{:<32} {:>5} {:>5} {:>10} {:>10} {:>10} {:>10} {:>8}\n",
            "feature", "reqs", "errs", "ttft p50", "ttft p99", "e2e p50", "e2e p99", "out tok"
        );
        for (k, f) in &self.features {
            let l = &f.latency_ms;
            out.push_str(&format!(
                "{:<32} {:>5} {:>5} {:>10} {:>10} {:>10} {:>10} {:>8}\n",
                k,
                f.requests,
                f.errors,
                fmt(l.ttft.p50),
                fmt(l.ttft.p99),
                fmt(l.e2e.p50),
                fmt(l.e2e.p99),
                f.output_tokens
            ));
        }
        out.push_str(&format!(
            "verdict: {} ({} requests, {} errors, {:.1} s; latencies in ms)\n",
            self.verdict, self.requests, self.errors, self.load.duration_s
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_linearly() {
        let p = Percentiles::of(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(p.p50, Some(2.5));
        assert_eq!(p.p90, Some(3.7));
        assert_eq!(p.max, Some(4.0));
        assert_eq!(Percentiles::of(vec![]).p50, None);
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
    }
}
