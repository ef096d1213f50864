//! Aggregation to verdict: from the run's [`Aggregate`] to `summary.json`
//! (`schemas/summary-v1.schema.json`), `histograms.json`, the findings and the exit code.
//!
//! In: the aggregate, the plan's load and SLO settings, the harness's own CPU and receive
//! delay, judged by the self-audit ([`crate::audit`]). Out: a [`Summary`] (verdict `pass`,
//! `fail`, or `invalid` when a figure the scenario judges is degraded beyond what the judgement
//! tolerates) and the per-feature table (`table`).

mod audit_findings;
mod findings;
mod histograms;
pub mod kind;
pub mod modes;
pub mod sessions;
mod slices;
mod stages;

use crate::audit::{Burst, ReceiveAudit, ScheduleAudit, SloAudit, Trust};
use crate::conformance::{Counts, Outcome};
use crate::exit::Exit;
use crate::measure::aggregate::{Aggregate, FeatureAgg};
use crate::measure::cpu::ClientCpu;
use crate::measure::hist::Metric;
pub use crate::measure::hist::Percentiles;
use crate::measure::{ErrorClass, StreamMode, TokenSource};
use crate::plan::{LoadSpec, Routing, Slo};
use crate::routing::RoutingSummary;
use crate::schedule::Arrival;
use crate::taps::{BackendAgg, TapAgg};
pub use findings::NOT_MEASURABLE;
pub use histograms::{histograms, FeatureHistograms, Histograms, HISTOGRAMS_SCHEMA};
pub use kind::{verdict, FindingKind, StageName, Weight};
use serde::{Deserialize, Serialize};
pub use slices::{findings as slice_findings, SliceAudit};
pub use stages::{Preflight, Stage, StageStatus, MODELS_STAGE, PREFLIGHT_SCHEMA};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Latency {
    /// First content chunk minus send.
    pub ttft: Percentiles,
    /// First content chunk minus the intended send (queueing and lateness included).
    pub ttft_from_intended: Percentiles,
    /// Gaps between content chunks, pooled (vLLM's ITL, AIPerf's ICL).
    pub itl: Percentiles,
    /// (E2E − TTFT) / (output tokens − 1) per request (vLLM's TPOT; GuideLLM's, AIPerf's ITL).
    pub tpot: Percentiles,
    /// Last content chunk minus send.
    pub e2e: Percentiles,
    /// Wait for a concurrency slot.
    pub queue_wait: Percentiles,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Throughput {
    /// Completed requests per second of the measured window.
    pub requests_per_s: f64,
    pub output_tokens_per_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Goodput {
    /// Successful requests that met every bound.
    pub met: u64,
    /// `met` over completed requests the SLO could judge (`None`: it judged none).
    pub attainment: Option<f64>,
    /// Successful requests the SLO could not judge: it bounds only what they cannot measure
    /// (TPOT of an answer that came whole).
    #[serde(default)]
    pub unjudged: u64,
    /// `met` per second of the measured window.
    pub rps: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FeatureSummary {
    pub requests: u64,
    /// Requests answered with a 2xx (a stream cut after its start included): what routing judges.
    pub answered: u64,
    pub errors: u64,
    pub errors_by_class: BTreeMap<ErrorClass, u64>,
    pub cut_off: u64,
    pub skipped: u64,
    pub warmup: u64,
    pub latency_ms: Latency,
    pub output_tokens: u64,
    /// Requests whose output token count was estimated (no `usage`, no tokenizer).
    pub tokens_estimated: u64,
    /// Successful requests by where their token count came from (`usage`, `tokenizer`,
    /// `chunks`: one per content event, `text_rule`: the twin's rule).
    pub token_sources: BTreeMap<TokenSource, u64>,
    /// Requests where some chunk was observed to hold more than one token.
    pub multi_token_chunks: u64,
    pub throughput: Throughput,
    pub slo: Option<Slo>,
    pub goodput: Option<Goodput>,
    /// The self-audit's trust in each figure (`ttft`, `ttft_from_intended`, `itl`, `tpot`,
    /// `e2e`, `output_tokens`, `output_tokens_per_s`, `goodput`).
    pub trust: BTreeMap<String, Trust>,
    /// With an SLO: the attainment range the harness's own error allows, and whether the
    /// verdict holds across it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo_audit: Option<SloAudit>,
    /// Transport batching seen: the client's gaps are not the server's token timing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<Burst>,
    /// With taps: the same requests seen from the model backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendSummary>,
    /// With `[routing]`: what served the feature, against what must.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingSummary>,
    /// With snapshots: answers compared, mismatched, and new.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conformance: Option<Counts>,
    /// Agent Platform sessions (gRPC), when the feature has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<sessions::SessionSummary>,
    /// A feature with streamed and non-streamed answers: each mode's latencies apart (the gate
    /// judges them as separate figures).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modes: BTreeMap<StreamMode, ModeLatency>,
    /// Successful answers: how many came whole, how they ended, which model served them.
    #[serde(default)]
    pub answers: crate::measure::answers::Answers,
    /// Requests that met a pooled connection the server had closed, and their fresh retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_connections: Option<crate::measure::answers::StaleConnections>,
}

/// One stream mode's latencies within a feature.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModeLatency {
    pub ttft: Percentiles,
    pub tpot: Percentiles,
    pub e2e: Percentiles,
}

/// What the run's checks beyond latency observed.
#[derive(Default)]
pub struct Checks<'a> {
    pub taps: Option<&'a TapAgg>,
    pub routing: Routing,
    pub conformance: Option<&'a Outcome>,
}

/// Where the time goes: the backend's own figures beside the client's, and the difference.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BackendSummary {
    /// Upstream calls attributed to this feature.
    pub calls: u64,
    /// Calls beyond the first for one request (gateway retries).
    pub retries: u64,
    /// First content at the backend, from the call's arrival at the tap.
    pub ttft_ms: Percentiles,
    /// End of the backend's answer, from the call's arrival.
    pub e2e_ms: Percentiles,
    /// From the client's send to the upstream call: the gateway's time before the model (for
    /// Agent Platform sessions: to the session's first model call).
    pub upstream_wait_ms: Percentiles,
    /// Client TTFT p50 − backend TTFT p50: the gateway's share of time to first token.
    pub gateway_ttft_p50_ms: Option<f64>,
    /// Client E2E p50 − backend E2E p50.
    pub gateway_e2e_p50_ms: Option<f64>,
}

/// One tap's counts.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TapSummary {
    pub calls: u64,
    /// Calls whose request could not be found (no nonce in the upstream prompt).
    pub unattributed: u64,
}

/// How much a finding weighs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Fails the verdict.
    Error,
    /// Reported; the verdict stands.
    Warning,
    Info,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }
}

/// The run's one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    /// Conformance, routing, an SLO, errors or a regression.
    Fail,
    /// The harness could not measure what the scenario judges (its own schedule or delay).
    Invalid,
    /// The harness itself failed (a panic), or what the run stands on is not there (a model
    /// endpoint that does not serve its model): nothing measured can be trusted (exit 3).
    Error,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Invalid => "invalid",
            Self::Error => "error",
        }
    }

    pub fn exit(self) -> Exit {
        match self {
            Self::Pass => Exit::Pass,
            Self::Invalid => Exit::Invalid,
            Self::Error => Exit::Unreachable,
            Self::Fail => Exit::VerdictFailed,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Finding {
    pub kind: FindingKind,
    /// `error` findings fail the verdict; `warning` and `info` do not.
    pub severity: Severity,
    pub feature: Option<String>,
    pub message: String,
}

impl Finding {
    pub fn new(
        kind: FindingKind,
        severity: Severity,
        feature: Option<&str>,
        message: String,
    ) -> Self {
        Self {
            kind,
            severity,
            feature: feature.map(str::to_owned),
            message,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Load {
    /// `closed` (next send when a slot frees) or `open` (sends on the schedule).
    pub mode: String,
    pub arrival: Arrival,
    pub seed: u64,
    pub concurrency: Option<usize>,
    /// The schedule's mean planned rate (rate-based arrivals).
    pub target_rps: Option<f64>,
    /// (measured sends − 1) / (last send − first send).
    pub achieved_rps: Option<f64>,
    /// Wall time of the whole run, seconds.
    pub duration_s: f64,
    /// From the first measured send to the last measured end, seconds.
    pub window_s: f64,
    pub scheduled: u64,
    pub sent: u64,
    pub warmup: u64,
    pub cut_off: u64,
    pub skipped: u64,
    /// Task start minus intended send (the harness's own delay), measured requests.
    pub send_lateness_ms: Percentiles,
    /// A send later than this counted as late (`load.max_send_lateness_ms`, or derived).
    pub max_send_lateness_ms: f64,
    pub throughput: Throughput,
    pub goodput_rps: Option<f64>,
    pub client: ClientCpu,
    /// The open loop's delivered arrival process against the intended one (`None`: closed).
    pub schedule: Option<ScheduleAudit>,
    /// The harness's receive-side delay and the bound it puts on every figure.
    pub receive: ReceiveAudit,
}

/// The version of `summary.json` this build writes and reads.
pub const SUMMARY_SCHEMA: &str = "duo-harness/summary/v1";

/// The whole `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Summary {
    pub schema: String,
    pub verdict: Verdict,
    pub run_id: String,
    pub scenario: String,
    pub target: String,
    pub started_at: String,
    pub interrupted: bool,
    /// Completed requests (warm-up, cut-off and skipped ones not included).
    pub requests: u64,
    pub errors: u64,
    pub errors_by_class: BTreeMap<ErrorClass, u64>,
    pub load: Load,
    pub features: BTreeMap<String, FeatureSummary>,
    /// With taps: what each tap saw.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub taps: BTreeMap<String, TapSummary>,
    /// With `[metrics]`: what each backend's metrics showed over the run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backend_metrics: BTreeMap<String, crate::scrape::Observed>,
    /// The slices merged into this run (`report` of `run --slice` folders), each audited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<SliceAudit>,
    pub findings: Vec<Finding>,
}

/// Who the run was, and what it measured about itself.
#[derive(Default)]
pub struct RunInfo {
    pub run_id: String,
    pub scenario: String,
    pub target: String,
    pub started_at: String,
    pub duration_s: f64,
    pub interrupted: bool,
    pub scheduled: u64,
    pub client: ClientCpu,
    /// CPU cores the harness could use.
    pub cores: usize,
    /// The default cap on requests in flight, when the scenario set none (open loop).
    pub in_flight_cap: Option<usize>,
    /// Panics of the harness's own threads and tasks: the run cannot pass (exit 3).
    pub internal_errors: Vec<String>,
    /// The per-request time limit, seconds.
    pub request_timeout_s: f64,
    /// The harness's receive-side delay, probed during the run.
    pub receive_delay: Metric,
}

fn per_s(n: u64, window_s: f64) -> f64 {
    if window_s > 0.0 {
        n as f64 / window_s
    } else {
        0.0
    }
}

fn feature_summary(f: &FeatureAgg, slo: Option<&Slo>, window_s: f64) -> FeatureSummary {
    let ok = f.requests - f.errors;
    FeatureSummary {
        requests: f.requests,
        answered: f.answered,
        errors: f.errors,
        errors_by_class: f.errors_by_class.clone(),
        cut_off: f.cut_off,
        skipped: f.skipped,
        warmup: f.warmup,
        latency_ms: Latency {
            ttft: f.ttft.percentiles(),
            ttft_from_intended: f.ttft_from_intended.percentiles(),
            itl: f.itl.percentiles(),
            tpot: f.tpot.percentiles(),
            e2e: f.e2e.percentiles(),
            queue_wait: f.queue_wait.percentiles(),
        },
        output_tokens: f.output_tokens,
        tokens_estimated: f.tokens_estimated,
        token_sources: f.token_sources.clone(),
        multi_token_chunks: f.multi_token_chunks,
        throughput: Throughput {
            requests_per_s: per_s(ok, window_s),
            output_tokens_per_s: per_s(f.output_tokens, window_s),
        },
        slo: slo.copied(),
        goodput: slo.map(|_| {
            let judged = f.requests.saturating_sub(f.slo_unjudged);
            Goodput {
                met: f.slo_met,
                attainment: (judged > 0).then(|| f.slo_met as f64 / judged as f64),
                unjudged: f.slo_unjudged,
                rps: per_s(f.slo_met, window_s),
            }
        }),
        trust: BTreeMap::new(),
        slo_audit: None,
        burst: None,
        backend: None,
        routing: None,
        conformance: None,
        sessions: f.sessions.as_ref().map(sessions::summary),
        modes: BTreeMap::new(),
        answers: f.answers.clone(),
        stale_connections: (f.stale.seen > 0).then_some(f.stale),
    }
}

fn backend_summary(b: &BackendAgg, client: &Latency) -> BackendSummary {
    let (ttft, e2e) = (b.ttft.percentiles(), b.e2e.percentiles());
    let diff = |c: Option<f64>, s: Option<f64>| Some(((c? - s?) * 1000.0).round() / 1000.0);
    BackendSummary {
        calls: b.calls,
        retries: b.retries,
        gateway_ttft_p50_ms: diff(client.ttft.p50, ttft.p50),
        gateway_e2e_p50_ms: diff(client.e2e.p50, e2e.p50),
        ttft_ms: ttft,
        e2e_ms: e2e,
        upstream_wait_ms: b.upstream_wait.percentiles(),
    }
}

/// Builds the summary, its findings and its verdict.
pub fn summarise(info: RunInfo, load: &LoadSpec, agg: &Aggregate, checks: &Checks) -> Summary {
    let window_s = agg.window_s();
    let mut audit = crate::audit::audit(load, agg, &info.receive_delay);
    let mut features: BTreeMap<String, FeatureSummary> = agg
        .features
        .iter()
        .map(|(k, f)| {
            let mut s = feature_summary(f, agg.slo(k), window_s);
            if let Some(a) = audit.features.remove(k) {
                (s.trust, s.slo_audit, s.burst) = (a.trust, a.slo, a.burst);
            }
            (k.clone(), s)
        })
        .collect();
    add_checks(&mut features, agg, checks);
    let load_summary = load_summary(&info, load, agg, &features, audit);
    let mut findings = findings::findings(&info, load, agg, &features, &load_summary);
    findings.extend(conformance_findings(checks));
    let mut errors_by_class = BTreeMap::new();
    for (c, n) in features.values().flat_map(|f| &f.errors_by_class) {
        *errors_by_class.entry(*c).or_default() += n;
    }
    Summary {
        schema: SUMMARY_SCHEMA.into(),
        verdict: verdict(&findings),
        run_id: info.run_id,
        scenario: info.scenario,
        target: info.target,
        started_at: info.started_at,
        interrupted: info.interrupted,
        requests: agg.completed(),
        errors: agg.errors(),
        errors_by_class,
        load: load_summary,
        features,
        taps: tap_counts(checks.taps),
        backend_metrics: BTreeMap::new(),
        slices: Vec::new(),
        findings,
    }
}

/// What the taps, the routing expectations and the snapshots say of each feature.
fn add_checks(features: &mut BTreeMap<String, FeatureSummary>, agg: &Aggregate, checks: &Checks) {
    let (taps, routing) = (checks.taps, &checks.routing);
    for (k, b) in taps.map(|t| &t.features).into_iter().flatten() {
        if let Some(f) = features.get_mut(k) {
            f.backend = Some(backend_summary(b, &f.latency_ms));
        }
    }
    if routing.is_set() {
        for (k, f) in features.iter_mut() {
            let seen = taps.and_then(|t| t.features.get(k));
            let mut r = crate::routing::check(routing, k, f.answered, seen);
            if let Some(s) = agg.features.get(k).and_then(|a| a.sessions.as_ref()) {
                r.violations.extend(sessions::violations(routing, k, s));
            }
            f.routing = Some(r);
        }
    }
    let conformance = checks.conformance.map(|c| &c.features);
    for (k, c) in conformance.into_iter().flatten() {
        if let Some(f) = features.get_mut(k) {
            f.conformance = Some(c.clone());
        }
    }
}

/// Each tap's call counts.
fn tap_counts(taps: Option<&TapAgg>) -> BTreeMap<String, TapSummary> {
    let calls = taps.map(|t| &t.calls).into_iter().flatten();
    calls
        .map(|(k, &(calls, unattributed))| {
            let s = TapSummary {
                calls,
                unattributed,
            };
            (k.clone(), s)
        })
        .collect()
}

/// The snapshot comparison's findings, by tier.
fn conformance_findings(checks: &Checks) -> Vec<Finding> {
    let found = checks
        .conformance
        .map(|c| &c.findings)
        .into_iter()
        .flatten();
    found
        .map(|(feature, tier, m)| {
            let (kind, severity) = match tier.as_str() {
                "new" => (FindingKind::SnapshotNew, Severity::Warning),
                "protocol" => (FindingKind::ConformanceProtocol, Severity::Error),
                "routing" => (FindingKind::ParameterDrift, Severity::Error),
                _ => (FindingKind::ConformanceContent, Severity::Error),
            };
            Finding::new(kind, severity, Some(feature), m.clone())
        })
        .collect()
}

/// The load as offered and delivered, and the self-audit's word on the schedule and the
/// receive side.
fn load_summary(
    info: &RunInfo,
    load: &LoadSpec,
    agg: &Aggregate,
    features: &BTreeMap<String, FeatureSummary>,
    audit: crate::audit::Audit,
) -> Load {
    let window_s = agg.window_s();
    let ok: u64 = features.values().map(|f| f.requests - f.errors).sum();
    let tokens: u64 = features.values().map(|f| f.output_tokens).sum();
    let good: Option<u64> = features
        .values()
        .filter_map(|f| f.goodput.as_ref().map(|g| g.met))
        .reduce(|a, b| a + b);
    Load {
        mode: if load.arrival.open_loop() {
            "open"
        } else {
            "closed"
        }
        .into(),
        arrival: load.arrival,
        seed: load.seed(),
        // Developers: at most one request each in flight.
        concurrency: match (&load.developers, load.arrival) {
            (Some(d), crate::plan::Arrival::Developers) => Some(d.users),
            _ => load.concurrency,
        },
        target_rps: load.target_rps(),
        achieved_rps: agg.achieved_rps(),
        duration_s: info.duration_s,
        window_s,
        scheduled: info.scheduled,
        sent: agg.sent,
        warmup: features.values().map(|f| f.warmup).sum(),
        cut_off: agg.cut_off(),
        skipped: agg.skipped(),
        send_lateness_ms: agg.lateness.percentiles(),
        max_send_lateness_ms: load.late_threshold_ms(agg.sends.mean_gap_ms()),
        throughput: Throughput {
            requests_per_s: per_s(ok, window_s),
            output_tokens_per_s: per_s(tokens, window_s),
        },
        goodput_rps: good.map(|g| per_s(g, window_s)),
        client: info.client.clone(),
        schedule: audit.schedule,
        receive: audit.receive,
    }
}

impl Summary {
    pub fn exit(&self) -> Exit {
        self.verdict.exit()
    }
}

#[cfg(test)]
mod tests;
