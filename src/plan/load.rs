//! The scenario's `[load]` and `[slo.<feature>]` sections, their command-line overrides and
//! their checks.

use super::developers::DevelopersSpec;
use super::rate::{Arrival, RateProfile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How the run sends its requests. Without a `[load]` section: a closed loop with one request in
/// flight, one pass over the corpus (a sequential conformance replay).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    #[serde(default)]
    pub arrival: Arrival,
    /// Requests per second (constant, poisson, gamma); with `ramp_to`, the starting rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// The rate rises (or falls) linearly from `rate` to `ramp_to` over `duration_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_to: Option<f64>,
    /// A stepped plan instead of `rate`: each step holds its rate for its duration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Gamma shape (vLLM bench's burstiness): 1 = Poisson, < 1 burstier, > 1 more regular.
    #[serde(default = "one")]
    pub burstiness: f64,
    /// Trace: recorded offsets are multiplied by this (0.5 replays twice as fast).
    #[serde(default = "one")]
    pub time_scale: f64,
    /// Stop sending after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Stop sending after this many requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u64>,
    /// Requests intended before this many seconds are sent and recorded, but left out of the
    /// figures.
    #[serde(default)]
    pub warmup_s: f64,
    /// At most this many requests in flight (closed loop: exactly this many).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// What an open-loop send does when every slot is busy.
    #[serde(default)]
    pub cap_policy: CapPolicy,
    /// What the run does when a preflight stage (health, models, DWS, baseline) fails: stop
    /// before the load (the answer is already "no"), or send it anyway (a fault drill that
    /// wants to see how each request fails).
    #[serde(default)]
    pub on_failed_preflight: PreflightPolicy,
    /// Open loop without `concurrency`: the most requests in flight at once (a bound on memory
    /// and sockets against a server that stops answering). Past it sends are skipped, and the
    /// run fails with an `in_flight_cap` finding: the offered load was not delivered.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// After the last send, in-flight requests get this long to finish; the rest are cut off
    /// and counted.
    #[serde(default = "default_grace")]
    pub grace_s: f64,
    /// Seed of the arrival process and the feature mix. Drawn at random when unset, and
    /// written into the plan either way, so any run can be repeated exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Self-audit: a send is late when it starts later than this after its intended instant.
    /// Unset: 1 ms, or half the schedule's mean gap when that is longer (a send that late
    /// arrives closer to the next one than the schedule meant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_send_lateness_ms: Option<f64>,
    /// Self-audit: an open loop kept its schedule unless, with 95 % confidence, more than this
    /// share of its sends was late (one preempted send never trips it). Not kept: the run is
    /// invalid (exit code 4).
    #[serde(default = "default_late_share")]
    pub max_late_share: f64,
    /// Share of failed requests tolerated before the verdict fails (default 0: any error fails).
    #[serde(default)]
    pub max_error_rate: f64,
    /// Share of measured requests that may be cut off (no complete answer when the run stopped
    /// waiting: after `grace_s`, or at a stop signal) before the verdict fails (default 0).
    #[serde(default)]
    pub max_cut_off_rate: f64,
    /// Passes over the corpus of a closed loop without other bounds (`--calibrate` makes 2).
    #[serde(skip)]
    pub calibration_passes: u64,
    /// Weighted feature mix (`code_completions = 3`); empty: the corpus's own proportions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mix: BTreeMap<String, f64>,
    /// `arrival = "developers"`: how many, how long they think, how they ramp up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub developers: Option<DevelopersSpec>,
}

impl Default for LoadSpec {
    fn default() -> Self {
        toml::from_str("").expect("an empty [load] section is valid")
    }
}

fn one() -> f64 {
    1.0
}
fn default_max_in_flight() -> usize {
    10_000
}
fn default_grace() -> f64 {
    10.0
}
fn default_late_share() -> f64 {
    0.05
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub rate: f64,
    pub duration_s: f64,
}

/// The concurrency cap's policy for open-loop sends that find every slot busy.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CapPolicy {
    /// Wait, first come first served, for a slot. Nothing is dropped; the wait is recorded per
    /// request (`queue_wait_ms`) and counts in TTFT-from-intended, not in send lateness.
    #[default]
    Queue,
    /// Do not send; count the request as skipped (a load shedder's view).
    Skip,
}

/// `load.on_failed_preflight`.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PreflightPolicy {
    /// No load after a failed preflight stage.
    #[default]
    Stop,
    /// The load is sent whatever the preflight found (the failure still fails the run).
    Send,
}

/// Per-feature latency objectives; a request meets its SLO when it succeeded and every set
/// bound holds (TTFT from the intended send, as the developer would have waited).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_ms: Option<f64>,
    /// Share of completed requests that must meet every bound, or the verdict fails.
    #[serde(default = "default_attainment")]
    pub attainment: f64,
    /// The most answers that may end cut by `max_tokens` (`finish_reason: length`), as a share
    /// (0.05: 5 %). Unset: any share passes, and the summary still counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length_share: Option<f64>,
}

fn default_attainment() -> f64 {
    0.99
}

impl Slo {
    /// `TTFT ≤ 500 ms, TPOT ≤ 50 ms`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("TTFT", self.ttft_ms),
            ("TPOT", self.tpot_ms),
            ("E2E", self.e2e_ms),
        ]
        .iter()
        .filter_map(|(n, v)| v.map(|v| format!("{n} ≤ {v} ms")))
        .collect();
        parts.join(", ")
    }
}

/// `--rate`, `--duration`, `--arrival`, `--concurrency`, `--seed`, `--users`, `--slice`,
/// `--start-at`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LoadOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrival: Option<Arrival>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// That many virtual developers (`arrival = "developers"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<usize>,
    /// `--slice K/N`: send the K-th of every N arrivals of the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<super::SliceOf>,
    /// `--start-at`: the schedule's instant zero (RFC 3339, UTC), common to every slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
}

impl LoadSpec {
    /// Applies overrides. A `--rate` on a closed-loop scenario makes it constant-rate; an
    /// `--arrival` that takes no rate drops the scenario's.
    pub fn apply(&mut self, o: &LoadOverrides) {
        if let Some(r) = o.rate {
            self.rate = Some(r);
            self.steps.clear();
            if !self.arrival.rate_based() && o.arrival.is_none() {
                self.arrival = Arrival::Constant;
            }
        }
        if let Some(a) = o.arrival {
            self.arrival = a;
            if !a.rate_based() {
                // `--arrival closed|trace` on a rate-based scenario: its rate no longer applies.
                (self.rate, self.ramp_to) = (None, None);
                self.steps.clear();
            }
        }
        if let Some(d) = o.duration_s {
            self.duration_s = Some(d);
        }
        if let Some(c) = o.concurrency {
            self.concurrency = Some(c);
        }
        if let Some(s) = o.seed {
            self.seed = Some(s);
        }
        if let Some(n) = o.users {
            self.arrival = Arrival::Developers;
            (self.rate, self.ramp_to) = (None, None);
            self.steps.clear();
            self.developers
                .get_or_insert_with(|| DevelopersSpec::with_users(n))
                .users = n;
        }
        self.seed.get_or_insert_with(rand::random);
    }

    /// A rate-based arrival's rate, steps, ramp and length; none of them on another arrival.
    fn check_rate(&self) -> Result<(), String> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if self.arrival.rate_based() {
            match (self.rate, self.steps.is_empty()) {
                (Some(_), false) => {
                    return Err("load: set either 'rate' or 'steps', not both".into())
                }
                (None, true) => {
                    return Err(format!(
                        "load.arrival = '{}' needs 'rate' (or 'steps')",
                        self.arrival.name()
                    ))
                }
                (Some(r), true) if !positive(r) && self.ramp_to.is_none_or(|t| !positive(t)) => {
                    return Err("load.rate must be > 0".into())
                }
                _ => {}
            }
            if self
                .steps
                .iter()
                .any(|s| !(s.rate >= 0.0 && positive(s.duration_s)))
            {
                return Err("load.steps: each step needs rate >= 0 and duration_s > 0".into());
            }
            if self.ramp_to.is_some() && self.duration_s.is_none() {
                return Err("load.ramp_to needs load.duration_s (the ramp's length)".into());
            }
            if self.steps.is_empty() && self.duration_s.is_none() && self.max_requests.is_none() {
                return Err("an open-loop load needs load.duration_s or load.max_requests".into());
            }
            if !positive(self.burstiness) {
                return Err("load.burstiness must be > 0".into());
            }
        } else if self.rate.is_some() || !self.steps.is_empty() || self.ramp_to.is_some() {
            return Err(
                "load.rate, ramp_to and steps need arrival constant, poisson or gamma".into(),
            );
        }
        Ok(())
    }

    /// Checks the section: its numbers against their one set of bounds (`plan::check::load`),
    /// then how its keys go together; the message names the key at fault.
    pub fn check(&self) -> Result<(), String> {
        super::check::load(self)?;
        self.check_rate()?;
        // A rate-based scenario may carry [load.developers] too: `--users` and `capacity
        // --users` use it.
        match (&self.developers, self.arrival) {
            (Some(d), Arrival::Developers) => d.check(self.duration_s)?,
            (None, Arrival::Developers) => {
                return Err("arrival = \"developers\" needs [load.developers] (users = N)".into())
            }
            (Some(d), _) => d.check(Some(1.0))?,
            (None, _) => {}
        }
        if self.arrival == Arrival::Developers && !cfg!(feature = "goose") {
            return Err(
                "arrival = \"developers\" needs duo-harness built with the goose \
                 feature (cargo build --release --features goose)"
                    .into(),
            );
        }
        for f in self.mix.keys() {
            if crate::features::lookup(f).is_none() {
                return Err(format!("load.mix: unknown Duo feature '{f}'"));
            }
        }
        Ok(())
    }

    /// The rate profile of a rate-based arrival.
    pub fn profile(&self) -> Option<RateProfile> {
        if !self.arrival.rate_based() {
            return None;
        }
        if !self.steps.is_empty() {
            let steps: Vec<(f64, f64)> =
                self.steps.iter().map(|s| (s.rate, s.duration_s)).collect();
            return Some(RateProfile::steps(&steps));
        }
        let rate = self.rate?;
        Some(RateProfile::ramp(
            rate,
            self.ramp_to.unwrap_or(rate),
            self.duration_s,
        ))
    }

    /// The planned mean send rate, when the schedule sets one.
    /// A send later than this is late: the scenario's bound, else 1 ms or half the schedule's
    /// mean gap (`mean_gap_ms`), whichever is longer.
    pub fn late_threshold_ms(&self, mean_gap_ms: Option<f64>) -> f64 {
        self.max_send_lateness_ms
            .unwrap_or_else(|| mean_gap_ms.map_or(1.0, |g| (g / 2.0).max(1.0)))
    }

    pub fn target_rps(&self) -> Option<f64> {
        self.profile().map(|p| p.mean_rate())
    }

    /// How long sending may last: the duration, or the steps' total (developers: their ramp
    /// and then the duration).
    pub fn send_window_s(&self) -> Option<f64> {
        if let (Arrival::Developers, Some(d)) = (self.arrival, &self.developers) {
            return self.duration_s.map(|s| s + d.ramp_s as f64);
        }
        let steps = self
            .profile()
            .map(|p| p.duration_s())
            .filter(|d| d.is_finite());
        match (self.duration_s, steps) {
            (Some(d), Some(s)) => Some(d.min(s)),
            (d, s) => d.or(s),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or_default()
    }
}
