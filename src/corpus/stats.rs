//! `duo-harness corpus stats`: what a corpus holds. Per feature: interactions, prompt tokens and
//! output tokens (p50/p90/max, by the twin's documented token rule over the request's text, and
//! from the recorded usage or content); and the arrival rate over time.

use super::Interaction;
use crate::stats::Percentiles;
use crate::tokens;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FeatureStats {
    pub interactions: usize,
    /// Tokens of every string in the request body.
    pub prompt_tokens: Percentiles,
    /// Output tokens of recorded responses (usage, else counted from the content).
    pub output_tokens: Percentiles,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CorpusStats {
    pub interactions: usize,
    pub features: BTreeMap<String, FeatureStats>,
    /// Recorded span, first to last arrival, seconds.
    pub span_s: f64,
    pub bucket_s: f64,
    /// Arrivals per second in each bucket of `bucket_s`, from the first arrival.
    pub arrival_rate: Vec<f64>,
}

fn text_tokens(v: &Value) -> usize {
    match v {
        Value::String(s) => tokens::count(s),
        Value::Array(a) => a.iter().map(text_tokens).sum(),
        Value::Object(m) => m.values().map(text_tokens).sum(),
        _ => 0,
    }
}

fn output_tokens(it: &Interaction) -> Option<f64> {
    let r = it.response.as_ref()?;
    let from_usage = r["usage"]["output_tokens"].as_u64();
    let from_content = r["content"].as_str().map(|c| tokens::count(c) as u64);
    from_usage.or(from_content).map(|n| n as f64)
}

/// Statistics of a loaded corpus.
pub fn stats(corpus: &[Interaction]) -> CorpusStats {
    let mut by_feature: BTreeMap<&str, Vec<&Interaction>> = BTreeMap::new();
    for it in corpus {
        by_feature.entry(&it.feature).or_default().push(it);
    }
    let features = by_feature
        .into_iter()
        .map(|(k, its)| {
            let prompt = its
                .iter()
                .map(|i| text_tokens(&i.request.body) as f64)
                .collect();
            let output = its.iter().filter_map(|i| output_tokens(i)).collect();
            let s = FeatureStats {
                interactions: its.len(),
                prompt_tokens: Percentiles::of(prompt),
                output_tokens: Percentiles::of(output),
            };
            (k.to_owned(), s)
        })
        .collect();
    let offsets: Vec<f64> = corpus
        .iter()
        .map(|i| i.arrival_offset_ms / 1000.0)
        .collect();
    let first = offsets.iter().copied().fold(f64::INFINITY, f64::min);
    let last = offsets.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span_s = if corpus.is_empty() { 0.0 } else { last - first };
    // About 20 buckets, never under one second.
    let bucket_s = (span_s / 20.0).ceil().max(1.0);
    let mut counts = vec![0usize; (span_s / bucket_s).floor() as usize + 1];
    for t in &offsets {
        counts[((t - first) / bucket_s).floor() as usize] += 1;
    }
    CorpusStats {
        interactions: corpus.len(),
        features,
        span_s,
        bucket_s,
        arrival_rate: counts.iter().map(|&c| c as f64 / bucket_s).collect(),
    }
}

impl CorpusStats {
    /// The human-readable form.
    pub fn table(&self) -> String {
        let n = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.0}"));
        let mut out = format!(
            "{:<32} {:>6} {:>9} {:>9} {:>9} {:>9}\n",
            "feature", "count", "prompt50", "prompt90", "output50", "output90"
        );
        for (k, f) in &self.features {
            out.push_str(&format!(
                "{:<32} {:>6} {:>9} {:>9} {:>9} {:>9}\n",
                k,
                f.interactions,
                n(f.prompt_tokens.p50),
                n(f.prompt_tokens.p90),
                n(f.output_tokens.p50),
                n(f.output_tokens.p90)
            ));
        }
        let rates: Vec<String> = self
            .arrival_rate
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect();
        out.push_str(&format!(
            "{} interactions over {:.1} s; arrivals/s per {} s: {}\n",
            self.interactions,
            self.span_s,
            self.bucket_s,
            rates.join(" ")
        ));
        out
    }
}
