//! What a scenario asks of the arrival process: the kind of [`Arrival`] and the planned rate
//! over time ([`RateProfile`]). The schedule stage turns them into send instants; the plan and
//! the summary read the profile's mean rate and length.

use serde::{Deserialize, Serialize};

/// How requests arrive.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Closed loop: the next request goes as soon as a concurrency slot frees (with the default
    /// concurrency of 1, a sequential replay).
    #[default]
    Closed,
    /// Evenly spaced sends at the rate.
    Constant,
    /// Exponential gaps (a Poisson process).
    Poisson,
    /// Gamma gaps with shape `burstiness` (vLLM bench's definition: 1 is Poisson, below 1 is
    /// burstier, above 1 more regular). Coefficient of variation 1/√burstiness.
    Gamma,
    /// The corpus's recorded arrival offsets, multiplied by `time_scale`.
    Trace,
    /// Closed loop of `[load.developers]` virtual developers, each thinking between requests
    /// (the `goose` cargo feature).
    Developers,
}

impl Arrival {
    /// The name as a scenario writes it.
    pub fn name(self) -> &'static str {
        match self {
            Arrival::Closed => "closed",
            Arrival::Constant => "constant",
            Arrival::Poisson => "poisson",
            Arrival::Gamma => "gamma",
            Arrival::Trace => "trace",
            Arrival::Developers => "developers",
        }
    }

    pub fn open_loop(self) -> bool {
        !matches!(self, Arrival::Closed | Arrival::Developers)
    }
    pub fn rate_based(self) -> bool {
        matches!(self, Arrival::Constant | Arrival::Poisson | Arrival::Gamma)
    }
}

/// One piece of a rate profile: the rate moves linearly from `from` to `to` over `duration_s`
/// (which may be infinite for a run bounded by count only).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Segment {
    pub from: f64,
    pub to: f64,
    pub duration_s: f64,
}

impl Segment {
    /// Requests expected in the whole segment (∫ λ).
    fn area(&self) -> f64 {
        (self.from + self.to) / 2.0 * self.duration_s
    }
    /// Time into the segment at which `area` requests are expected (inverse of ∫ λ).
    fn time_for(&self, area: f64) -> f64 {
        if area <= 0.0 {
            return 0.0; // the first send of a ramp from rate 0 (0/0 otherwise)
        }
        let a = self.from;
        let b = if self.duration_s.is_finite() {
            (self.to - self.from) / self.duration_s
        } else {
            0.0
        };
        // Root of b/2·τ² + a·τ − area = 0, in the form that stays exact when b → 0.
        2.0 * area / (a + (a * a + 2.0 * b * area).max(0.0).sqrt())
    }
}

/// The planned rate over time: segments laid end to end.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RateProfile {
    pub segments: Vec<Segment>,
}

impl RateProfile {
    pub fn fixed(rate: f64, duration_s: Option<f64>) -> Self {
        Self::ramp(rate, rate, duration_s)
    }
    pub fn ramp(from: f64, to: f64, duration_s: Option<f64>) -> Self {
        Self {
            segments: vec![Segment {
                from,
                to,
                duration_s: duration_s.unwrap_or(f64::INFINITY),
            }],
        }
    }
    pub fn steps(steps: &[(f64, f64)]) -> Self {
        Self {
            segments: steps
                .iter()
                .map(|&(rate, duration_s)| Segment {
                    from: rate,
                    to: rate,
                    duration_s,
                })
                .collect(),
        }
    }

    /// The instant (seconds) by which `u` requests are expected, or `None` past the profile's end.
    pub fn time_at(&self, mut u: f64) -> Option<f64> {
        let mut start = 0.0;
        for s in &self.segments {
            let area = s.area();
            if u < area || (s.duration_s.is_infinite() && s.from > 0.0) {
                return Some(start + s.time_for(u));
            }
            u -= area;
            start += s.duration_s;
        }
        None
    }

    pub fn duration_s(&self) -> f64 {
        self.segments.iter().map(|s| s.duration_s).sum()
    }

    /// The mean planned rate over the profile (requests/s).
    pub fn mean_rate(&self) -> f64 {
        let d = self.duration_s();
        if d.is_infinite() {
            return self.segments.last().map_or(0.0, |s| s.from);
        }
        self.segments.iter().map(Segment::area).sum::<f64>() / d
    }
}
