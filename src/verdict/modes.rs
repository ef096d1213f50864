//! A feature's streamed and non-streamed answers as figures apart (`features.*.modes` in
//! `summary.json`), for the features that have both. Worked out from the run folder's records
//! when the run is judged, not per request while it runs: the per-request path stays as cheap
//! as it was (`cargo bench --bench bookkeeping`).

use super::{ModeLatency, Summary};
use crate::measure::hist::Metric;
use crate::measure::{Disposition, RequestRecord, StreamMode};
use std::collections::BTreeMap;

/// One mode's metrics, filled as `Aggregate` fills a feature's: measured, successful requests.
#[derive(Default)]
struct ModeMetrics {
    ttft: Metric,
    tpot: Metric,
    e2e: Metric,
}

/// Fills `features.*.modes` of every feature with both streamed and non-streamed answers.
pub fn fill(summary: &mut Summary, records: &[RequestRecord]) {
    let mut by: BTreeMap<&str, BTreeMap<StreamMode, ModeMetrics>> = BTreeMap::new();
    let measured = records
        .iter()
        .filter(|r| !r.warmup && r.disposition == Disposition::Completed && r.ok());
    for r in measured {
        let m = by
            .entry(r.feature.as_str())
            .or_default()
            .entry(StreamMode::of(r.stream))
            .or_default();
        let record =
            |metric: &mut Metric, v: Option<f64>| v.into_iter().for_each(|v| metric.record(v));
        record(&mut m.ttft, r.ttft_ms());
        record(&mut m.tpot, r.tpot_ms());
        record(&mut m.e2e, r.e2e_ms());
    }
    for (feature, modes) in by.into_iter().filter(|(_, m)| m.len() > 1) {
        let Some(f) = summary.features.get_mut(feature) else {
            continue;
        };
        f.modes = modes
            .into_iter()
            .map(|(mode, m)| {
                let l = ModeLatency {
                    ttft: m.ttft.percentiles(),
                    tpot: m.tpot.percentiles(),
                    e2e: m.e2e.percentiles(),
                };
                (mode, l)
            })
            .collect();
    }
}
