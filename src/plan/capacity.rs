//! The scenario's `[capacity]` section: how `duo-harness capacity` searches for the highest
//! rate at which every feature meets its SLO.

use serde::{Deserialize, Serialize};

/// `[capacity]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacitySpec {
    /// The first probe's total rate, requests/s.
    #[serde(default = "one")]
    pub start_rps: f64,
    /// No probe goes above this rate.
    #[serde(default = "max_rps")]
    pub max_rps: f64,
    /// The search stops once the bracket is this narrow, relative to its lower end.
    #[serde(default = "resolution")]
    pub resolution: f64,
    /// The search stops after this many probes (repeats included).
    #[serde(default = "max_probes")]
    pub max_probes: usize,
    /// Each probe sends for this long, seconds (after the scenario's warm-up).
    #[serde(default = "probe_s")]
    pub probe_s: f64,
    /// Active developers per request/s: GitLab's sizing rule, 7 requests/s per 1,000 users.
    #[serde(default = "users_per_rps")]
    pub users_per_rps: f64,
    /// `[capacity.hardware."<endpoint>"]`: the model and GPUs behind a model setting's
    /// endpoint, so the answer puts measured TPOT and throughput beside the roofline. Twin
    /// backends with `[stack.backend.engine]` declare themselves.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub hardware: std::collections::BTreeMap<String, crate::roofline::Hardware>,
    /// `bracket` (ours: bracket, then regula falsi on the margin, repeats near the boundary), or
    /// `serve_sla` (vLLM's `bench sweep serve_sla` order replayed on our probes, to compare).
    #[serde(default)]
    pub strategy: Strategy,
}

/// How `capacity` chooses its next probe.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    Bracket,
    ServeSla,
}

fn one() -> f64 {
    1.0
}
fn max_rps() -> f64 {
    10_000.0
}
fn resolution() -> f64 {
    0.05
}
fn max_probes() -> usize {
    10
}
fn probe_s() -> f64 {
    20.0
}
fn users_per_rps() -> f64 {
    1000.0 / 7.0
}

impl Default for CapacitySpec {
    fn default() -> Self {
        toml::from_str("").expect("every key has a default")
    }
}

impl CapacitySpec {
    pub fn check(&self) -> Result<(), String> {
        let positive = |k: &str, v: f64| match v.is_finite() && v > 0.0 {
            true => Ok(()),
            false => Err(format!("capacity.{k}: {v} must be a finite number > 0")),
        };
        positive("start_rps", self.start_rps)?;
        positive("max_rps", self.max_rps)?;
        positive("probe_s", self.probe_s)?;
        positive("users_per_rps", self.users_per_rps)?;
        if !(self.resolution > 0.0 && self.resolution < 1.0) {
            return Err(format!(
                "capacity.resolution: {} must be in (0, 1)",
                self.resolution
            ));
        }
        if self.start_rps > self.max_rps {
            return Err("capacity.start_rps is above capacity.max_rps".into());
        }
        for (endpoint, h) in &self.hardware {
            h.resolve()
                .map_err(|e| format!("capacity.hardware.\"{endpoint}\": {e}"))?;
        }
        if !(2..=100).contains(&self.max_probes) {
            return Err(format!(
                "capacity.max_probes: {} must be 2 to 100",
                self.max_probes
            ));
        }
        Ok(())
    }
}

/// `[metrics]`: backends' Prometheus endpoints read during the run.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    /// `twin:<backend>` (the embedded backend's /metrics), `twin:dws` (the twin DWS's worker
    /// pool) or a full URL (a vLLM's `/metrics`, a DCGM exporter's, e.g.
    /// http://gpu-a:9400/metrics).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Seconds between scrapes.
    #[serde(default = "one")]
    pub interval_s: f64,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        toml::from_str("").expect("every key has a default")
    }
}

impl MetricsSpec {
    pub fn check(&self) -> Result<(), String> {
        if !(self.interval_s.is_finite() && self.interval_s >= 0.1 && self.interval_s <= 600.0) {
            return Err(format!(
                "metrics.interval_s: {} must be 0.1 to 600",
                self.interval_s
            ));
        }
        for t in &self.targets {
            let ok =
                t.starts_with("twin:") || t.starts_with("http://") || t.starts_with("https://");
            if !ok {
                return Err(format!(
                    "metrics.targets: '{t}' is neither twin:<backend> nor an http(s) URL"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scenario without the sections gets the documented defaults, not zeros.
    #[test]
    fn absent_sections_take_their_defaults() {
        let m = MetricsSpec::default();
        assert_eq!(m.interval_s, 1.0);
        assert!(m.check().is_ok());
        let c = CapacitySpec::default();
        assert_eq!((c.start_rps, c.max_probes), (1.0, 10));
        assert!(c.check().is_ok());
    }
}
