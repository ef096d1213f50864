//! What one Agent Platform session showed (a result line's `session`): how it ended, the steps
//! in canonical names, the tools asked for, and the session's own times. The request-level
//! fields carry the rest: `first_content_ms` is the first streamed checkpoint text (the
//! session's TTFT), `end_ms` the session end, `content` the agent's final text.

use serde::{Deserialize, Serialize};

/// One session, as the executor saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct SessionRecord {
    pub workflow_id: String,
    /// The final gRPC status (`OK`, `INTERNAL`…); `None` when the stream closed without one.
    pub code: Option<String>,
    pub details: String,
    /// The last `newCheckpoint` status.
    pub checkpoint_status: Option<String>,
    /// Every step, canonical, checkpoints only where their status changes (`dws::steps`).
    pub steps: Vec<String>,
    /// Tool actions asked for, in order.
    pub tools: Vec<String>,
    /// Actions received (checkpoints included).
    pub actions: u64,
    /// First action, ms after the send.
    pub first_action_ms: Option<f64>,
    /// Per tool action: from the executor's answer to the service's next agent text or tool
    /// action (the agent loop's turn around one tool, model call included).
    pub tool_round_trips_ms: Vec<f64>,
    /// The model the checkpoints say served the session (`model_metadata_json`, no key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<serde_json::Value>,
    /// The session carried `x-gitlab-agent-platform-model-metadata`.
    pub model_metadata_sent: bool,
    /// Where the session differed from its case's `expect` (status aside: a status other than
    /// the expected one is the record's error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<String>,
}

/// A feature's sessions, folded as records arrive (the summary's `sessions`).
#[derive(Debug, Clone, Default)]
pub struct SessionAgg {
    pub sessions: u64,
    /// Final gRPC status code → sessions ("none" for a stream closed without one).
    pub codes: std::collections::BTreeMap<String, u64>,
    /// Last checkpoint status → sessions.
    pub checkpoint_statuses: std::collections::BTreeMap<String, u64>,
    /// Sessions that differed from their case's `expect`, and the first few differences.
    pub mismatched: u64,
    pub mismatch_examples: Vec<String>,
    /// Sessions sent without the model-metadata header (the service then uses GitLab's cloud
    /// default model).
    pub without_model_metadata: u64,
    /// Served model identifier (from the checkpoints) → sessions.
    pub served_models: std::collections::BTreeMap<String, u64>,
    pub tool_calls: u64,
    pub first_action: super::hist::Metric,
    pub tool_round_trip: super::hist::Metric,
    pub session_end: super::hist::Metric,
}

impl SessionAgg {
    /// Folds one completed session in.
    pub fn add(&mut self, id: &str, end_ms: f64, s: &SessionRecord) {
        self.sessions += 1;
        let code = s.code.clone().unwrap_or_else(|| "none".into());
        *self.codes.entry(code).or_default() += 1;
        if let Some(c) = &s.checkpoint_status {
            *self.checkpoint_statuses.entry(c.clone()).or_default() += 1;
        }
        if !s.mismatches.is_empty() {
            self.mismatched += 1;
            if self.mismatch_examples.len() < 5 {
                self.mismatch_examples
                    .push(format!("{id}: {}", s.mismatches.join("; ")));
            }
        }
        self.without_model_metadata += u64::from(!s.model_metadata_sent);
        if let Some(m) = &s.served_model {
            let name = m["identifier"]
                .as_str()
                .or(m["name"].as_str())
                .unwrap_or("?");
            *self.served_models.entry(name.to_owned()).or_default() += 1;
        }
        self.tool_calls += s.tools.len() as u64;
        if let Some(t) = s.first_action_ms {
            self.first_action.record(t);
        }
        for t in &s.tool_round_trips_ms {
            self.tool_round_trip.record(*t);
        }
        self.session_end.record(end_ms);
    }
}
