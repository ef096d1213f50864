//! A Duo Agent Platform case (`protocol: "grpc"`): one `ExecuteWorkflow` session. The line's
//! `request` holds the gRPC metadata (`headers`) and the `startRequest` in proto3 JSON (`body`);
//! its `session` says how the harness, as executor and GitLab Rails, answers the service's
//! actions, and what the replay must show.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The method path every session line names.
pub const EXECUTE_WORKFLOW: &str = "/DuoWorkflow/ExecuteWorkflow";

/// How the harness plays executor and Rails for one session, and what it expects.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Session {
    /// The project's files, path → content: `runReadFile`, `runReadFiles`, `listDirectory`,
    /// `findFiles` and `grep` are answered from them (a missing file is a tool error, as in an
    /// IDE).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// Rails' answer to the `toolCallApproved` query (default: approved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_approved: Option<bool>,
    /// The HTTP status Rails answers `status_event=start` with (default 200; 403 refuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_status: Option<u16>,
    /// The client sends `stopWorkflow` once this many actions have arrived, instead of
    /// answering the last of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after_actions: Option<usize>,
    /// The stop's reason (default `USER_STOP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub expect: Expect,
}

/// What a replay of the session must show; unset parts are not checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The final gRPC status code (`OK`, `INVALID_ARGUMENT`…).
    #[serde(default = "ok")]
    pub status: String,
    /// The status details, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// The last checkpoint's status (`INPUT_REQUIRED`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_status: Option<String>,
    /// The tools asked for, in order (action names: `runReadFile`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Every step, canonical, checkpoints only where their status changes (`dws::steps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<String>>,
}

fn ok() -> String {
    "OK".into()
}

impl Default for Expect {
    fn default() -> Self {
        Self {
            status: ok(),
            details: None,
            checkpoint_status: None,
            tools: None,
            steps: None,
        }
    }
}
