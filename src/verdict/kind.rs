//! Finding kinds and the one table that says, for each, which stage of a run it belongs to, how
//! it weighs on the verdict, and where it ranks on the console. Every output (console, HTML,
//! JUnit, Markdown, `compare`, `capacity`) reads it from here.

use super::{Finding, Severity, Verdict};
use serde::{Deserialize, Serialize};

/// Declares the kinds once: the enum, its serde names and [`FindingKind::ALL`].
macro_rules! finding_kinds {
    ($($variant:ident => $name:literal,)*) => {
        /// What a finding is about.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
            schemars::JsonSchema,
        )]
        pub enum FindingKind {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl FindingKind {
            /// Every kind, for the tests that walk them.
            pub const ALL: &[FindingKind] = &[$(Self::$variant,)*];

            /// The kind's name in every output (`request_error`…): what summary.json says.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

finding_kinds! {
    RequestError => "request_error",
    Protocol => "protocol",
    CutOff => "cut_off",
    NothingMeasured => "nothing_measured",
    Interrupted => "interrupted",
    InFlightCap => "in_flight_cap",
    Skipped => "skipped",
    RetryCycle => "retry_cycle",
    WarmupErrors => "warmup_errors",
    ForeignResults => "foreign_results",
    Session => "session",
    ModelToolCalling => "model_tool_calling",
    Routing => "routing",
    ParameterDrift => "parameter_drift",
    UpstreamRetries => "upstream_retries",
    ConformanceProtocol => "conformance_protocol",
    ConformanceContent => "conformance_content",
    SnapshotNew => "snapshot_new",
    Slo => "slo",
    LengthCapped => "length_capped",
    InvalidMeasurement => "invalid_measurement",
    BurstDistorted => "burst_distorted",
    TokensEstimated => "tokens_estimated",
    Unaudited => "unaudited",
    DegradedFigures => "degraded_figures",
    ClientSaturated => "client_saturated",
    HostSteal => "host_steal",
    InternalError => "internal_error",
    Preflight => "preflight",
    ModelEndpoint => "model_endpoint",
    Regression => "regression",
    GateUndecided => "gate_undecided",
    GateSkipped => "gate_skipped",
    GateRefused => "gate_refused",
    FeaturesUnsent => "features_unsent",
    ConformanceNotRun => "conformance_not_run",
    SliceLate => "slice_late",
    SliceClock => "slice_clock",
}

/// The stage of a run a finding belongs to: its case in JUnit, its row in the stage tables.
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
pub enum StageName {
    /// Health, models, DWS: before the load.
    Preflight,
    /// Sending the corpus and getting answers.
    Replay,
    /// Which backend and model served each feature.
    Routing,
    /// Protocol, content and sessions against what was recorded.
    Conformance,
    /// Latency objectives.
    Slo,
    /// The harness's own measurement.
    Audit,
    /// Against the baseline.
    Gate,
}

impl StageName {
    pub fn name(self) -> &'static str {
        match self {
            Self::Preflight => "preflight",
            Self::Replay => "replay",
            Self::Routing => "routing",
            Self::Conformance => "conformance",
            Self::Slo => "slo",
            Self::Audit => "audit",
            Self::Gate => "gate",
        }
    }
}

/// How a finding of error severity weighs on the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// The harness itself failed: nothing it says can be trusted (verdict `error`).
    Harness,
    /// What the run stands on is not there (a model endpoint that does not serve its model):
    /// verdict `error`, exit 3, as an unreachable target.
    Infrastructure,
    /// Fails the run whatever the self-audit says.
    Fails,
    /// The measurement is invalid (verdict `invalid`), unless something fails the run.
    Invalidates,
    /// Fails the run, unless the measurement it rests on is invalid.
    Timing,
    /// The gate could not decide: the run is `invalid` unless anything else fails it.
    Undecided,
}

/// One row of the table.
struct Row {
    stage: StageName,
    weight: Weight,
    /// Console order: lower first.
    rank: u8,
    /// Printed on the console whatever else there is: it changes what the run means.
    always_printed: bool,
}

const fn row(stage: StageName, weight: Weight, rank: u8, always_printed: bool) -> Row {
    Row {
        stage,
        weight,
        rank,
        always_printed,
    }
}

impl FindingKind {
    /// The table: each kind's stage, weight and console rank, written once.
    fn row(self) -> Row {
        use FindingKind::*;
        use StageName as S;
        use Weight as W;
        match self {
            InternalError => row(S::Audit, W::Harness, 0, true),
            InvalidMeasurement => row(S::Audit, W::Invalidates, 1, true),
            SliceLate => row(S::Audit, W::Invalidates, 1, true),
            SliceClock => row(S::Audit, W::Fails, 8, true),
            NothingMeasured => row(S::Replay, W::Fails, 1, true),
            Interrupted => row(S::Replay, W::Fails, 2, true),
            InFlightCap => row(S::Replay, W::Fails, 2, true),
            Preflight => row(S::Preflight, W::Fails, 2, true),
            ModelEndpoint => row(S::Preflight, W::Infrastructure, 1, true),
            ForeignResults => row(S::Replay, W::Fails, 2, true),
            FeaturesUnsent => row(S::Replay, W::Fails, 2, true),
            ConformanceNotRun => row(S::Conformance, W::Fails, 4, true),
            Routing => row(S::Routing, W::Fails, 3, true),
            ParameterDrift => row(S::Routing, W::Fails, 3, true),
            Protocol => row(S::Conformance, W::Fails, 4, false),
            ConformanceProtocol => row(S::Conformance, W::Fails, 4, false),
            Regression => row(S::Gate, W::Fails, 5, true),
            GateUndecided => row(S::Gate, W::Undecided, 5, true),
            GateRefused => row(S::Gate, W::Fails, 5, true),
            GateSkipped => row(S::Gate, W::Fails, 5, true),
            Slo => row(S::Slo, W::Timing, 5, false),
            LengthCapped => row(S::Replay, W::Fails, 5, false),
            CutOff => row(S::Replay, W::Fails, 5, false),
            RequestError => row(S::Replay, W::Fails, 6, false),
            Session => row(S::Conformance, W::Fails, 7, false),
            ConformanceContent => row(S::Conformance, W::Fails, 7, false),
            ModelToolCalling => row(S::Replay, W::Fails, 7, false),
            SnapshotNew => row(S::Conformance, W::Fails, 8, false),
            Skipped | RetryCycle | WarmupErrors => row(S::Replay, W::Fails, 8, false),
            UpstreamRetries => row(S::Routing, W::Fails, 8, false),
            BurstDistorted | TokensEstimated | Unaudited | DegradedFigures => {
                row(S::Audit, W::Fails, 8, false)
            }
            ClientSaturated | HostSteal => row(S::Audit, W::Fails, 8, false),
        }
    }

    /// The stage of a run this kind belongs to.
    pub fn stage(self) -> StageName {
        self.row().stage
    }

    /// How an error of this kind weighs on the verdict.
    pub fn weight(self) -> Weight {
        self.row().weight
    }

    /// Console order, most important first.
    pub fn rank(self) -> u8 {
        self.row().rank
    }

    pub fn always_printed(self) -> bool {
        self.row().always_printed
    }

    /// What a stack that is full (not broken) fails with: a capacity search goes on past it.
    pub fn overload(self) -> bool {
        use FindingKind::*;
        matches!(self, Slo | RequestError | CutOff | InFlightCap | Skipped)
    }

    /// The gate metric a finding of this kind counts under when the baseline did not have it.
    pub fn gate_metric(self) -> Option<crate::plan::GateMetric> {
        use crate::plan::GateMetric as M;
        use FindingKind::*;
        match self {
            Routing | ParameterDrift => Some(M::Routing),
            ConformanceProtocol | ConformanceContent => Some(M::Conformance),
            _ => None,
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The verdict, from the findings' weights (`kind::Weight`): an internal error, or a model endpoint that
/// does not serve its model, voids the run (`error`, exit 3); a
/// failure that does not depend on timing (errors, protocol, routing, conformance, nothing
/// measured, a regression judged with the self-audit's bounds) fails it whatever the self-audit
/// says; otherwise an invalid measurement makes it `invalid`, a missed SLO fails it, and a gate
/// that could not decide leaves it `invalid`: no evidence is never a pass.
pub fn verdict(findings: &[Finding]) -> Verdict {
    let weighs = |w: Weight| {
        findings
            .iter()
            .any(|f| f.severity == Severity::Error && f.kind.weight() == w)
    };
    if findings.iter().any(|f| f.kind.weight() == Weight::Harness) || weighs(Weight::Infrastructure)
    {
        Verdict::Error
    } else if weighs(Weight::Fails) {
        Verdict::Fail
    } else if weighs(Weight::Invalidates) {
        Verdict::Invalid
    } else if weighs(Weight::Timing) {
        Verdict::Fail
    } else if weighs(Weight::Undecided) {
        Verdict::Invalid
    } else {
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_serde_name_and_a_row() {
        for k in FindingKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.name(), "{k:?}");
            let _ = k.stage();
        }
    }
}
