//! `histograms.json`: every (feature, metric) HDR histogram of a run, mergeable across runs and
//! load-generator pods, written and read by one type.

use crate::measure::aggregate::Aggregate;
use crate::measure::hist::Metric;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `histograms.json`: every (feature, metric) HDR histogram, V2-deflate, base64, in microseconds,
/// with the run's send lateness and the self-audit's receive-delay probes (what a re-rendered
/// audit needs).
/// Mergeable across runs or load-generator pods ([`Metric::decode`], [`Metric::merge`]).
pub fn histograms(agg: &Aggregate, receive_delay: &Metric) -> Histograms {
    let features = agg
        .features
        .iter()
        .map(|(k, f)| {
            let h = FeatureHistograms {
                ttft: f.ttft.clone(),
                ttft_from_intended: f.ttft_from_intended.clone(),
                itl: f.itl.clone(),
                tpot: f.tpot.clone(),
                e2e: f.e2e.clone(),
                queue_wait: f.queue_wait.clone(),
            };
            (k.clone(), h)
        })
        .collect();
    Histograms {
        schema: HISTOGRAMS_SCHEMA.into(),
        unit: "us".into(),
        encoding: "hdrhistogram-v2-deflate-base64".into(),
        send_lateness: agg.lateness.clone(),
        receive_delay: receive_delay.clone(),
        features,
    }
}

/// The version of `histograms.json` this build writes and reads.
pub const HISTOGRAMS_SCHEMA: &str = "duo-harness/histograms/v1";

/// `histograms.json`: every (feature, metric) HDR histogram, mergeable across runs.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Histograms {
    pub schema: String,
    /// `us`.
    pub unit: String,
    /// `hdrhistogram-v2-deflate-base64`.
    pub encoding: String,
    /// Task start minus intended send, measured requests.
    pub send_lateness: Metric,
    /// The self-audit's receive-delay probes.
    pub receive_delay: Metric,
    pub features: BTreeMap<String, FeatureHistograms>,
}

/// One feature's histograms.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FeatureHistograms {
    pub ttft: Metric,
    pub ttft_from_intended: Metric,
    pub itl: Metric,
    pub tpot: Metric,
    pub e2e: Metric,
    pub queue_wait: Metric,
}

impl Histograms {
    /// Every histogram of `others` added into these (features missing from one are kept as
    /// they are).
    pub fn merge(&mut self, other: &Histograms) {
        self.send_lateness.merge(&other.send_lateness);
        self.receive_delay.merge(&other.receive_delay);
        for (k, theirs) in &other.features {
            let Some(ours) = self.features.get_mut(k) else {
                self.features.insert(k.clone(), theirs.clone());
                continue;
            };
            for (a, b) in ours.each_mut().into_iter().zip(theirs.each()) {
                a.merge(b);
            }
        }
    }
}

impl FeatureHistograms {
    fn each_mut(&mut self) -> [&mut Metric; 6] {
        [
            &mut self.ttft,
            &mut self.ttft_from_intended,
            &mut self.itl,
            &mut self.tpot,
            &mut self.e2e,
            &mut self.queue_wait,
        ]
    }

    fn each(&self) -> [&Metric; 6] {
        [
            &self.ttft,
            &self.ttft_from_intended,
            &self.itl,
            &self.tpot,
            &self.e2e,
            &self.queue_wait,
        ]
    }
}
