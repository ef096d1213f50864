//! A feature's streamed and non-streamed answers as figures apart (`features.*.modes` in
//! `summary.json`), for the features that have both. The aggregate keeps them per mode as it
//! folds each record in (`FeatureAgg::modes`), so a run is judged without reading its records
//! back.

use super::{ModeLatency, Summary};
use crate::measure::aggregate::Aggregate;

/// Fills `features.*.modes` of every feature with both streamed and non-streamed answers.
pub fn fill(summary: &mut Summary, agg: &Aggregate) {
    let both = agg.features.iter().filter(|(_, f)| f.modes.len() > 1);
    for (feature, f) in both {
        let Some(s) = summary.features.get_mut(feature) else {
            continue;
        };
        s.modes = f
            .modes
            .iter()
            .map(|(mode, m)| {
                let l = ModeLatency {
                    ttft: m.ttft.percentiles(),
                    tpot: m.tpot.percentiles(),
                    e2e: m.e2e.percentiles(),
                };
                (*mode, l)
            })
            .collect();
    }
}
