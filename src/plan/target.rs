//! `[target]`: where requests go (the AIGW or a backend, and the Duo Workflow Service for
//! Agent Platform sessions) and how they authenticate.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where requests go, and how they authenticate.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `embedded` (the twin AIGW), `embedded:<backend>` (a twin vLLM backend directly), or a
    /// base URL (`http://` or `https://`) of an AIGW or an OpenAI-compatible backend.
    pub url: String,
    /// OpenAI-compatible targets: the `model` sent in `/v1/*` bodies, replacing the corpus's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub auth: AuthKind,
    /// `bearer`: environment variable holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// `mint`: RSA private key PEM (one of the AIGW's `AIGW_SELF_SIGNED_JWT__*` keys, or the
    /// GitLab Cloud Connector key), relative to the scenario file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// `mint`: claims and headers of the minted instance token.
    #[serde(default = "default_instance")]
    pub instance_id: String,
    #[serde(default = "default_realm")]
    pub realm: String,
    #[serde(default = "default_user")]
    pub global_user_id: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// `mint`: the token's unit primitives. The default is what GitLab issues a Duo Enterprise
    /// user (every feature, chat's tools and context, the Agent Platform): the scopes shape
    /// the chat prompt, so snapshots recorded with one set fail against another.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The Duo Workflow Service the corpus's Agent Platform sessions (`grpc` lines) go to:
    /// `embedded` (the twin stack's; the default with an embedded target), `http://host:port`
    /// (plaintext HTTP/2, as the service listens on port 50052) or `https://host:port` (TLS, with
    /// `ca_bundle` for a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dws: Option<String>,
    /// `bearer`: the Duo Workflow Service's token, when it is not `token_env`'s. With `mint`,
    /// sessions get tokens minted for the service's audience (`gitlab-duo-workflow-service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dws_token_env: Option<String>,
    /// Sessions use the token `GenerateToken` issues, as GitLab Rails does: the auth above
    /// goes to `GenerateToken`, and its answer (renewed before its `expiresAt`) to each
    /// `ExecuteWorkflow`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dws_generate_token: bool,
    /// The audience minted tokens name (set by the harness: the AIGW's, or the DWS's).
    #[serde(skip)]
    pub audience: Option<String>,
    /// PEM bundle of extra CA certificates for `https` targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<PathBuf>,
    /// Turns certificate checks off. Named in full on purpose.
    #[serde(default)]
    pub danger_accept_invalid_certs: bool,
    /// Replayed recorded traffic keeps each request's own model selection; a model key redacted
    /// at capture is supplied again from this environment variable (never from the corpus). Unset:
    /// the redacted key is left out of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_api_key_env: Option<String>,
}

#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// No Authorization header (the AIGW runs with auth bypassed).
    #[default]
    Bypass,
    /// A bearer token from `token_env`.
    Bearer,
    /// RS256 instance tokens minted from `key_file`.
    Mint,
}

fn default_instance() -> String {
    "5d7e3f1a-0000-4000-8000-000000000001".into()
}
fn default_realm() -> String {
    "self-managed".into()
}
fn default_user() -> String {
    "duo-harness".into()
}
fn default_issuer() -> String {
    "http://gitlab.example.test".into()
}
fn default_scopes() -> Vec<String> {
    [
        "complete_code",
        "generate_code",
        "duo_classic_chat",
        "duo_chat",
        "explain_code",
        "write_tests",
        "refactor_code",
        "fix_code",
        "troubleshoot_job",
        "explain_vulnerability",
        "summarize_comments",
        "generate_commit_message",
        "summarize_new_merge_request",
        "review_merge_request",
        "summarize_review",
        "resolve_vulnerability",
        "glab_ask_git_command",
        // Chat's tools: the gateway offers chat only the tools the scopes allow, which shapes
        // its prompt (about 3,580 input tokens with them, 1,140 without).
        "ask_build",
        "ask_commit",
        "ask_epic",
        "ask_issue",
        "ask_merge_request",
        "documentation_search",
        "include_file_context",
        "include_snippet_context",
        "include_merge_request_context",
        "include_issue_context",
        "include_dependency_context",
        "include_local_git_context",
        "include_terminal_context",
        "include_repository_context",
        "include_directory_context",
        "include_os_information_context",
        "include_agent_user_environment_context",
        // The Agent Platform.
        "duo_agent_platform",
        "duo_workflow_execute_workflow",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}
