//! The scenario's `[gate]` section: the baseline run a run is compared with, and the thresholds
//! per metric (and per feature) past which a change is a regression.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A metric the gate judges, per feature.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum GateMetric {
    TtftP50,
    TtftP99,
    TpotP50,
    TpotP99,
    E2eP99,
    ErrorRate,
    Goodput,
    /// Agent Platform sessions only: the time to the first action.
    FirstActionP50,
    /// Agent Platform sessions only: each tool round trip.
    ToolRoundTripP50,
    /// Agent Platform sessions only: the session's end.
    SessionP99,
    /// A conformance finding the baseline did not have.
    Conformance,
    /// A routing finding the baseline did not have.
    Routing,
}

impl GateMetric {
    /// The metrics measured per feature (thresholds apply to these), in table order.
    pub const MEASURED: [GateMetric; 10] = [
        Self::TtftP50,
        Self::TtftP99,
        Self::TpotP50,
        Self::TpotP99,
        Self::E2eP99,
        Self::ErrorRate,
        Self::Goodput,
        Self::FirstActionP50,
        Self::ToolRoundTripP50,
        Self::SessionP99,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::TtftP50 => "ttft_p50",
            Self::TtftP99 => "ttft_p99",
            Self::TpotP50 => "tpot_p50",
            Self::TpotP99 => "tpot_p99",
            Self::E2eP99 => "e2e_p99",
            Self::ErrorRate => "error_rate",
            Self::Goodput => "goodput",
            Self::FirstActionP50 => "first_action_p50",
            Self::ToolRoundTripP50 => "tool_round_trip_p50",
            Self::SessionP99 => "session_p99",
            Self::Conformance => "conformance",
            Self::Routing => "routing",
        }
    }

    /// A measured metric by name; the error lists the names.
    pub fn parse(name: &str) -> Result<Self, UnknownMetric> {
        Self::MEASURED
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| UnknownMetric(name.to_owned()))
    }

    fn names() -> String {
        Self::MEASURED.map(Self::name).join(", ")
    }

    /// A share (`error_rate`, `goodput`) rather than a latency in ms.
    pub fn is_share(self) -> bool {
        matches!(self, Self::ErrorRate | Self::Goodput)
    }
}

/// A metric name the gate does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown metric '{0}' (one of {names})", names = GateMetric::names())]
pub struct UnknownMetric(pub String);

/// A `--threshold` the gate cannot read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ThresholdError(pub String);

impl std::fmt::Display for GateMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How far a metric may move before the change counts. A latency regresses when it grows by
/// more than `relative` of the baseline *and* more than `absolute` (ms); `error_rate` and
/// `goodput` are shares, and their `absolute` is in percentage points / 100.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute: Option<f64>,
}

impl Threshold {
    /// The built-in threshold of a metric: latency +10 % and +20 ms (TPOT +10 % and +2 ms),
    /// error rate +1 point, goodput −5 points.
    pub fn default_for(metric: GateMetric) -> Self {
        let (relative, absolute) = match metric {
            GateMetric::TpotP50 | GateMetric::TpotP99 => (Some(0.10), Some(2.0)),
            GateMetric::ErrorRate => (None, Some(0.01)),
            GateMetric::Goodput => (None, Some(0.05)),
            _ => (Some(0.10), Some(20.0)),
        };
        Self { relative, absolute }
    }

    /// This threshold, with the fields it leaves unset taken from `under`.
    pub fn over(self, under: Threshold) -> Self {
        Self {
            relative: self.relative.or(under.relative),
            absolute: self.absolute.or(under.absolute),
        }
    }

    /// The change a value may take before it counts, in the metric's own unit: the larger of
    /// the relative and the absolute part (both must be passed).
    pub fn allowance(&self, baseline: f64) -> f64 {
        let rel = self.relative.map_or(0.0, |r| r * baseline.abs());
        rel.max(self.absolute.unwrap_or(0.0))
    }
}

/// `[gate]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// The baseline run folder (relative to the scenario file), compared with after each run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<PathBuf>,
    /// Thresholds per metric, for every feature.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, Threshold>,
    /// Thresholds per feature and metric, over `thresholds`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, BTreeMap<String, Threshold>>,
    /// Confidence of the intervals (default 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Checks the gate may leave unjudged: `METRIC` (every feature) or `FEATURE.METRIC`. Every
    /// other check is required: one that cannot be judged keeps the gate from passing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional: Vec<String>,
    /// Size the load for the gate: before sending, the run works out how long the declared
    /// rate must last for every required check to have its samples and lasts that long (at
    /// least `load.duration_s`, at most this); checks even this cannot give samples are made
    /// optional, and said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_s: Option<f64>,
}

impl GateSpec {
    /// The threshold of one feature's metric: the feature's own, over the scenario's, over the
    /// built-in one.
    pub fn threshold(&self, feature: &str, metric: GateMetric) -> Threshold {
        let own = self
            .features
            .get(feature)
            .and_then(|m| m.get(metric.name()));
        let all = self.thresholds.get(metric.name());
        own.copied()
            .unwrap_or_default()
            .over(all.copied().unwrap_or_default())
            .over(Threshold::default_for(metric))
    }

    pub fn confidence(&self) -> f64 {
        self.confidence.unwrap_or(0.95)
    }

    /// Whether a check may stay unjudged without failing the gate.
    pub fn is_optional(&self, feature: &str, metric: GateMetric) -> bool {
        self.optional.iter().any(|o| match o.rsplit_once('.') {
            Some((f, m)) => f == feature && m == metric.name(),
            None => o == metric.name(),
        })
    }

    /// The features this section names (thresholds and optional checks): each must be a
    /// feature of the runs it judges.
    pub fn named_features(&self) -> impl Iterator<Item = &str> {
        let optional = self
            .optional
            .iter()
            .filter_map(|o| Some(o.rsplit_once('.')?.0));
        self.features.keys().map(String::as_str).chain(optional)
    }

    /// Every metric name known and every number finite and in range.
    pub fn check(&self) -> Result<(), String> {
        if let Some(c) = self.confidence {
            if !(c > 0.5 && c < 1.0) {
                return Err(format!("gate.confidence: {c} is not between 0.5 and 1"));
            }
        }
        let own = self.features.iter().flat_map(|(f, m)| {
            m.iter()
                .map(move |(k, t)| (format!("gate.features.{f}.{k}"), k, t))
        });
        let all = self
            .thresholds
            .iter()
            .map(|(k, t)| (format!("gate.thresholds.{k}"), k, t));
        for (at, metric, t) in all.chain(own) {
            GateMetric::parse(metric).map_err(|e| format!("{at}: {e}"))?;
            for (name, v) in [("relative", t.relative), ("absolute", t.absolute)] {
                if let Some(v) = v.filter(|v| !v.is_finite() || *v < 0.0) {
                    return Err(format!("{at}.{name}: {v} must be a finite number ≥ 0"));
                }
            }
        }
        if let Some(m) = self.max_duration_s {
            if !(m.is_finite() && m > 0.0 && m <= 7.0 * 86_400.0) {
                return Err(format!(
                    "gate.max_duration_s: {m} is not a duration between 0 and a week (seconds)"
                ));
            }
        }
        for o in &self.optional {
            let metric = o.rsplit_once('.').map_or(o.as_str(), |(_, m)| m);
            GateMetric::parse(metric).map_err(|e| format!("gate.optional '{o}': {e}"))?;
        }
        Ok(())
    }
}

/// A threshold from the command line: `METRIC=10%`, `METRIC=20ms`, `METRIC=10%,20ms`, or
/// `FEATURE.METRIC=…`; shares (`error_rate`, `goodput`) take `2%` as two points.
pub fn parse_threshold(
    text: &str,
) -> Result<(Option<String>, GateMetric, Threshold), ThresholdError> {
    parse_threshold_text(text).map_err(ThresholdError)
}

fn parse_threshold_text(text: &str) -> Result<(Option<String>, GateMetric, Threshold), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("--threshold '{text}': expected METRIC=VALUE"))?;
    let (feature, metric) = match key.rsplit_once('.') {
        Some((f, m)) => (Some(f.to_owned()), m.to_owned()),
        None => (None, key.to_owned()),
    };
    let metric = GateMetric::parse(&metric).map_err(|e| format!("--threshold '{text}': {e}"))?;
    let share = metric.is_share();
    let mut t = Threshold::default();
    for part in value.split(',').map(str::trim) {
        let number = |s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("--threshold '{text}': '{part}' is not a number ≥ 0"))
        };
        if let Some(p) = part.strip_suffix('%') {
            match share {
                true => t.absolute = Some(number(p)? / 100.0),
                false => t.relative = Some(number(p)? / 100.0),
            }
        } else if let Some(ms) = part.strip_suffix("ms").filter(|_| !share) {
            t.absolute = Some(number(ms)?);
        } else {
            return Err(format!(
                "--threshold '{text}': '{part}' needs a unit ({})",
                if share { "%" } else { "% or ms" }
            ));
        }
    }
    Ok((feature, metric, t))
}

/// `[gate]`, its baseline resolved against the scenario's folder.
pub(super) fn resolve(sc: &super::Scenario, paths: &super::Paths) -> Result<GateSpec, String> {
    let mut gate = sc.gate.clone();
    gate.check()?;
    if let Some(f) = gate
        .named_features()
        .find(|f| crate::features::lookup(f).is_none())
    {
        return Err(format!("gate: unknown Duo feature '{f}'"));
    }
    gate.baseline = gate
        .baseline
        .map(|b| paths.resolve(&["gate", "baseline"], None, &b));
    Ok(gate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_layer() {
        let (f, m, t) = parse_threshold("code_suggestions.ttft_p99=15%,30ms").unwrap();
        assert_eq!(f.as_deref(), Some("code_suggestions"));
        assert_eq!(m, GateMetric::TtftP99);
        assert_eq!(t.relative, Some(0.15));
        assert_eq!(t.absolute, Some(30.0));
        assert!(parse_threshold("ttft_p98=10%").is_err());
        assert!(parse_threshold("ttft_p99=-1ms").is_err());
        assert!(parse_threshold("error_rate=2ms").is_err());
        let (_, _, t) = parse_threshold("error_rate=2%").unwrap();
        assert_eq!(t.absolute, Some(0.02));
        let mut g = GateSpec::default();
        g.thresholds.insert(
            "ttft_p99".into(),
            Threshold {
                relative: Some(0.2),
                absolute: None,
            },
        );
        let t = g.threshold("duo_chat", GateMetric::TtftP99);
        assert_eq!((t.relative, t.absolute), (Some(0.2), Some(20.0)));
        assert_eq!(t.allowance(500.0), 100.0);
        assert_eq!(t.allowance(50.0), 20.0);
    }
}
