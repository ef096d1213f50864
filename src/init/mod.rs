//! `init`: a scenario written from a GitLab instance's real Duo Self-Hosted configuration, the
//! stage before every other (it makes what `plan` reads).
//!
//! In: GitLab's GraphQL API (`aiSelfHostedModels`: name, model family, endpoint, identifier,
//! hasApiToken; `aiFeatureSettings`: feature, provider `self_hosted` / `vendored` / `disabled`,
//! its self-hosted model), asked with an administrator token read from an environment variable.
//! Out: a scenario TOML. Self-hosted features get `[models.*]`, a tap per backend and routing
//! expectations; vendored ones are listed as going to GitLab's cloud gateway (a hybrid setup,
//! not a leak: the scenario is then not `fully_self_hosted`); disabled ones must not answer.
//! The token is sent to the instance only, and written nowhere. What the instance returns is
//! data: read strictly (`answer`) and written by a serializer (`scenario`).

mod answer;
mod scenario;

pub use answer::{FeatureSetting, Malformed, SelfHostedModel};
pub use scenario::{scenario, Written};

use serde_json::{json, Value};
use std::time::Duration;

/// Why a scenario could not be written.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0}")]
    Config(String),
    #[error("{url} did not answer: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url}: {reason}")]
    Refused { url: String, reason: String },
    #[error("{url}: the answer is malformed: {}: {}", .malformed.field, .malformed.reason)]
    Malformed { url: String, malformed: Malformed },
}

const QUERY: &str = "query dutHarnessInit {
  aiSelfHostedModels { nodes { id name model endpoint identifier hasApiToken } }
  aiFeatureSettings { nodes { feature provider selfHostedModel { id name model endpoint identifier hasApiToken } } }
}";

/// Asks the instance; returns its models and feature settings.
pub async fn fetch(
    gitlab: &str,
    token: &str,
) -> Result<(Vec<SelfHostedModel>, Vec<FeatureSetting>), InitError> {
    let url = format!("{}/api/graphql", gitlab.trim_end_matches('/'));
    let client = crate::http::client(None, false).map_err(|e| InitError::Config(e.to_string()))?;
    let sent = client
        .post(&url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .json(&json!({ "query": QUERY }))
        .send()
        .await
        .map_err(|e| InitError::Unreachable {
            url: url.clone(),
            reason: crate::http::error_chain(&e),
        })?;
    let status = sent.status();
    let refused = |reason: String| InitError::Refused {
        url: url.clone(),
        reason,
    };
    if status.as_u16() == 401 || status.as_u16() == 403 {
        return Err(refused(format!(
            "answered {status}: the token was refused (an administrator's token with the api scope is needed)"
        )));
    }
    if !status.is_success() {
        return Err(refused(format!("answered {status}")));
    }
    let body: Value = sent
        .json()
        .await
        .map_err(|e| refused(format!("not a GraphQL answer: {e}")))?;
    if let Some(errors) = body["errors"].as_array().filter(|e| !e.is_empty()) {
        let messages: Vec<String> = errors
            .iter()
            .filter_map(|e| e["message"].as_str())
            .map(|m| format!("{m:?}"))
            .collect();
        return Err(refused(format!("GraphQL errors: {}", messages.join("; "))));
    }
    answer::read(&body).map_err(|malformed| InitError::Malformed { url, malformed })
}

/// `init`: reads the token, asks the instance, writes the scenario to `out`.
pub async fn init(
    gitlab: &str,
    token_env: &str,
    out: &std::path::Path,
    force: bool,
) -> Result<(), InitError> {
    crate::plan::check::url("--gitlab", gitlab).map_err(|e| InitError::Config(e.0))?;
    let token = std::env::var(token_env).map_err(|_| {
        InitError::Config(format!("--token-env {token_env}: the variable is not set"))
    })?;
    crate::redact::register_secret(&token);
    if out.exists() && !force {
        return Err(InitError::Config(format!(
            "{} exists: choose another --out, or --force to replace it",
            out.display()
        )));
    }
    let (models, settings) = fetch(gitlab, &token).await?;
    let written = scenario(gitlab, &models, &settings);
    // What was written must read back as a scenario: a last guard that no value became structure.
    toml::from_str::<toml::Table>(&written.text).map_err(|e| {
        InitError::Config(format!(
            "internal error: the scenario written does not parse: {e}"
        ))
    })?;
    crate::files::write_atomic(out, written.text.as_bytes())
        .map_err(|e| InitError::Config(format!("cannot write {}: {e}", out.display())))?;
    for w in &written.warnings {
        eprintln!("warning: {w}");
    }
    let self_hosted = settings
        .iter()
        .filter(|s| s.provider == "self_hosted")
        .count();
    println!(
        "{}: {} self-hosted model(s), {self_hosted} self-hosted feature(s) of {}",
        out.display(),
        models.len(),
        settings.len()
    );
    Ok(())
}
