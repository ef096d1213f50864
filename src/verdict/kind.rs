//! Finding kinds and the one table that says, for each, which stage of a run it belongs to, how
//! it weighs on the verdict, and where it ranks on the console. Every output (console, HTML,
//! JUnit, Markdown, `compare`, `capacity`) reads it from here.

use serde::{Deserialize, Serialize};

/// What a finding is about.
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
pub enum FindingKind {
    RequestError,
    Protocol,
    CutOff,
    NothingMeasured,
    Interrupted,
    InFlightCap,
    Skipped,
    RetryCycle,
    WarmupErrors,
    ForeignResults,
    Session,
    ModelToolCalling,
    Routing,
    ParameterDrift,
    UpstreamRetries,
    ConformanceProtocol,
    ConformanceContent,
    SnapshotNew,
    Slo,
    InvalidMeasurement,
    BurstDistorted,
    TokensEstimated,
    Unaudited,
    DegradedFigures,
    ClientSaturated,
    HostSteal,
    InternalError,
    Preflight,
    Regression,
    GateUndecided,
    GateSkipped,
    GateRefused,
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
    /// Every kind, for the tests that walk them.
    pub const ALL: [FindingKind; 32] = {
        use FindingKind::*;
        [
            RequestError,
            Protocol,
            CutOff,
            NothingMeasured,
            Interrupted,
            InFlightCap,
            Skipped,
            RetryCycle,
            WarmupErrors,
            ForeignResults,
            Session,
            ModelToolCalling,
            Routing,
            ParameterDrift,
            UpstreamRetries,
            ConformanceProtocol,
            ConformanceContent,
            SnapshotNew,
            Slo,
            InvalidMeasurement,
            BurstDistorted,
            TokensEstimated,
            Unaudited,
            DegradedFigures,
            ClientSaturated,
            HostSteal,
            InternalError,
            Preflight,
            Regression,
            GateUndecided,
            GateSkipped,
            GateRefused,
        ]
    };

    /// The table: each kind's stage, weight and console rank, written once.
    fn row(self) -> Row {
        use FindingKind::*;
        use StageName as S;
        use Weight as W;
        match self {
            InternalError => row(S::Audit, W::Harness, 0, true),
            InvalidMeasurement => row(S::Audit, W::Invalidates, 1, true),
            NothingMeasured => row(S::Replay, W::Fails, 1, true),
            Interrupted => row(S::Replay, W::Fails, 2, true),
            InFlightCap => row(S::Replay, W::Fails, 2, true),
            Preflight => row(S::Preflight, W::Fails, 2, true),
            ForeignResults => row(S::Replay, W::Fails, 2, true),
            Routing => row(S::Routing, W::Fails, 3, true),
            ParameterDrift => row(S::Routing, W::Fails, 3, true),
            Protocol => row(S::Conformance, W::Fails, 4, false),
            ConformanceProtocol => row(S::Conformance, W::Fails, 4, false),
            Regression => row(S::Gate, W::Fails, 5, true),
            GateUndecided => row(S::Gate, W::Undecided, 5, true),
            GateRefused => row(S::Gate, W::Fails, 5, true),
            GateSkipped => row(S::Gate, W::Fails, 5, true),
            Slo => row(S::Slo, W::Timing, 5, false),
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

    /// The kind's name in every output (`request_error`…).
    pub fn name(self) -> &'static str {
        NAMES[self as usize]
    }
}

/// The kinds' names, in the order of the enum (checked against serde by a test).
const NAMES: [&str; 32] = [
    "request_error",
    "protocol",
    "cut_off",
    "nothing_measured",
    "interrupted",
    "in_flight_cap",
    "skipped",
    "retry_cycle",
    "warmup_errors",
    "foreign_results",
    "session",
    "model_tool_calling",
    "routing",
    "parameter_drift",
    "upstream_retries",
    "conformance_protocol",
    "conformance_content",
    "snapshot_new",
    "slo",
    "invalid_measurement",
    "burst_distorted",
    "tokens_estimated",
    "unaudited",
    "degraded_figures",
    "client_saturated",
    "host_steal",
    "internal_error",
    "preflight",
    "regression",
    "gate_undecided",
    "gate_skipped",
    "gate_refused",
];

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_serde_name_and_a_row() {
        for (i, k) in FindingKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "ALL is in the enum's order");
            assert_eq!(serde_json::to_value(k).unwrap(), k.name(), "{k:?}");
            let _ = k.stage();
        }
    }
}
