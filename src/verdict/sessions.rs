//! Agent Platform sessions in the summary and the verdict: per feature how the sessions ended,
//! their own times (first action, tool round trip, session end), which model the checkpoints
//! say served them; routing violations (a session without the model-metadata header is served
//! by GitLab's cloud default: a hybrid leak under `fully_self_hosted`; a checkpoint naming
//! another model is a wrong model) and findings (sessions unlike their case, a model that
//! refuses tool calling).

use super::{FeatureSummary, Finding, FindingKind, Severity};
use crate::measure::session::SessionAgg;
use crate::measure::ErrorClass;
use crate::plan::Routing;
use crate::routing::Violation;
use crate::stats::Percentiles;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A feature's sessions (`summary.json` `features.<f>.sessions`). TTFT and E2E of the feature
/// are the first and last streamed checkpoint text.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionSummary {
    pub sessions: u64,
    /// Final gRPC status → sessions (`none`: closed without one).
    pub codes: BTreeMap<String, u64>,
    pub checkpoint_statuses: BTreeMap<String, u64>,
    pub mismatched: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatch_examples: Vec<String>,
    pub without_model_metadata: u64,
    pub served_models: BTreeMap<String, u64>,
    pub tool_calls: u64,
    pub first_action_ms: Percentiles,
    pub tool_round_trip_ms: Percentiles,
    pub session_ms: Percentiles,
}

pub(super) fn summary(s: &SessionAgg) -> SessionSummary {
    SessionSummary {
        sessions: s.sessions,
        codes: s.codes.clone(),
        checkpoint_statuses: s.checkpoint_statuses.clone(),
        mismatched: s.mismatched,
        mismatch_examples: s.mismatch_examples.clone(),
        without_model_metadata: s.without_model_metadata,
        served_models: s.served_models.clone(),
        tool_calls: s.tool_calls,
        first_action_ms: s.first_action.percentiles(),
        tool_round_trip_ms: s.tool_round_trip.percentiles(),
        session_ms: s.session_end.percentiles(),
    }
}

/// The model part of an identifier (`custom_openai/mistral` → `mistral`).
fn model_part(identifier: &str) -> &str {
    identifier.split_once('/').map_or(identifier, |(_, m)| m)
}

/// What the sessions' own evidence says about routing.
pub(super) fn violations(routing: &Routing, feature: &str, s: &SessionAgg) -> Vec<Violation> {
    let mut out = Vec::new();
    if s.without_model_metadata > 0 && routing.fully_self_hosted {
        out.push(Violation {
            kind: crate::routing::ViolationKind::HybridLeak,
            message: format!(
                "{} sessions carried no {} header: the Duo Workflow Service then serves them with GitLab's cloud default model",
                s.without_model_metadata,
                crate::dws::MODEL_METADATA_HEADER
            ),
        });
    }
    let want = routing
        .features
        .get(feature)
        .and_then(|e| e.model.as_deref());
    for (served, n) in &s.served_models {
        if let Some(w) = want.filter(|w| model_part(served) != model_part(w)) {
            out.push(Violation {
                kind: crate::routing::ViolationKind::WrongModel,
                message: format!("{n} sessions were served by {served} (checkpoint model_metadata_json), not {w}"),
            });
        }
    }
    out
}

/// Sessions unlike their case, and a model that refuses tool calling.
pub(super) fn findings(
    features: &BTreeMap<String, FeatureSummary>,
    agg: &crate::measure::aggregate::Aggregate,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (k, f) in features {
        let Some(s) = &f.sessions else { continue };
        if s.mismatched > 0 {
            let m = format!(
                "{} of {} sessions differed from their case: {}",
                s.mismatched,
                s.sessions,
                s.mismatch_examples.join(" | ")
            );
            out.push(Finding::new(
                FindingKind::Session,
                Severity::Error,
                Some(k),
                m,
            ));
        }
        let refused = agg
            .features
            .get(k)
            .into_iter()
            .flat_map(|a| &a.error_messages)
            .find(|(c, m)| {
                *c == ErrorClass::GrpcStatus
                    && (m.contains("tool choice") || m.contains("tool_choice"))
            });
        if let Some((_, m)) = refused {
            let m = format!("the model behind the Duo Workflow Service refuses tool calling, which the Agent Platform needs (serve it with vLLM's --enable-auto-tool-choice and a --tool-call-parser): {m}");
            out.push(Finding::new(
                FindingKind::ModelToolCalling,
                Severity::Error,
                Some(k),
                m,
            ));
        }
    }
    out
}
