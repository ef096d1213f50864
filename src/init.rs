//! `init`: a scenario written from a GitLab instance's real Duo Self-Hosted configuration, the
//! stage before every other (it makes what `plan` reads).
//!
//! In: GitLab's GraphQL API (`aiSelfHostedModels`: name, model family, endpoint, identifier,
//! hasApiToken; `aiFeatureSettings`: feature, provider `self_hosted` / `vendored` / `disabled`,
//! its self-hosted model), asked with an administrator token read from an environment variable.
//! Out: a scenario TOML. Self-hosted features get `[models.*]`, a tap per backend and routing
//! expectations; vendored ones are listed as going to GitLab's cloud gateway (a hybrid setup,
//! not a leak: the scenario is then not `fully_self_hosted`); disabled ones must not answer.
//! The token is sent to the instance only, and written nowhere.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
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
}

const QUERY: &str = "query dutHarnessInit {
  aiSelfHostedModels { nodes { id name model endpoint identifier hasApiToken } }
  aiFeatureSettings { nodes { feature provider selfHostedModel { id name model endpoint identifier hasApiToken } } }
}";

/// One self-hosted model as GitLab knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfHostedModel {
    pub name: String,
    pub family: String,
    pub endpoint: String,
    pub identifier: String,
    pub has_api_token: bool,
}

/// One feature's setting.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSetting {
    pub feature: String,
    /// `self_hosted`, `vendored` or `disabled`.
    pub provider: String,
    pub model: Option<SelfHostedModel>,
}

fn model_of(v: &Value) -> Option<SelfHostedModel> {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    v.is_object().then(|| SelfHostedModel {
        name: s("name"),
        family: s("model"),
        endpoint: s("endpoint"),
        identifier: s("identifier"),
        has_api_token: v["hasApiToken"].as_bool().unwrap_or(false),
    })
}

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
        let messages: Vec<&str> = errors
            .iter()
            .filter_map(|e| e["message"].as_str())
            .collect();
        return Err(refused(format!("GraphQL errors: {}", messages.join("; "))));
    }
    let nodes = |k: &str| body["data"][k]["nodes"].as_array().cloned();
    let models = nodes("aiSelfHostedModels").ok_or_else(|| {
        refused("no aiSelfHostedModels in the answer (GitLab Duo Self-Hosted not set up?)".into())
    })?;
    let settings = nodes("aiFeatureSettings")
        .ok_or_else(|| refused("no aiFeatureSettings in the answer".into()))?;
    Ok((
        models.iter().filter_map(model_of).collect(),
        settings
            .iter()
            .map(|s| FeatureSetting {
                feature: s["feature"].as_str().unwrap_or_default().to_lowercase(),
                provider: s["provider"].as_str().unwrap_or_default().to_lowercase(),
                model: model_of(&s["selfHostedModel"]),
            })
            .collect(),
    ))
}

/// A name usable in TOML keys and environment variables.
fn slug(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    out.trim_matches('_').to_owned()
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A feature served by a self-hosted model: its model setting, and the routing it must show
/// (the backend behind `tap`, the model the identifier names).
fn self_hosted(
    out: &mut String,
    routing: &mut String,
    feature: &str,
    m: &SelfHostedModel,
    tap: &str,
) {
    let upstream = m
        .identifier
        .split_once('/')
        .map_or(m.identifier.as_str(), |(_, id)| id);
    let _ = writeln!(
        out,
        "\n[models.{feature}]\nname = {}\nendpoint = {}\nidentifier = {}",
        quoted(&m.family),
        quoted(&m.endpoint),
        quoted(&m.identifier)
    );
    if m.has_api_token {
        let _ = writeln!(
            out,
            "api_key_env = \"DUO_MODEL_KEY_{}\"",
            slug(&m.name).to_uppercase()
        );
    }
    let _ = writeln!(
        routing,
        "\n[routing.features.{feature}]\nbackend = {}\nmodel = {}",
        quoted(tap),
        quoted(upstream)
    );
}

/// One tap per backend endpoint, named after the first model served there.
fn taps(models: &[SelfHostedModel], settings: &[FeatureSetting]) -> BTreeMap<String, String> {
    let mut taps: BTreeMap<String, String> = BTreeMap::new();
    for m in models
        .iter()
        .chain(settings.iter().filter_map(|s| s.model.as_ref()))
    {
        if !m.endpoint.is_empty() && !taps.contains_key(&m.endpoint) {
            taps.insert(m.endpoint.clone(), slug(&m.name));
        }
    }
    taps
}

/// The scenario text for these settings.
pub fn scenario(gitlab: &str, models: &[SelfHostedModel], settings: &[FeatureSetting]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by `duo-harness init` from {gitlab}: its Duo Self-Hosted models and feature settings.\n\
         # The gateway and its auth come from the environment, as in scenarios/real-aigw.toml:\n\
         #   export DUO_AIGW_URL=https://aigw.internal:5052 DUO_AIGW_AUTH=bearer DUO_AIGW_TOKEN=...\n\
         # Models GitLab holds an API token for read theirs from DUO_MODEL_KEY_<MODEL> (GitLab never\n\
         # gives its copy out). {} self-hosted model(s), {} feature setting(s).\n\
         name = \"site\"\n\
         corpus = \"../fixtures/corpus/duo-default.jsonl\"\n\
         request_timeout_s = 60\n\n\
         [target]\n\
         url = \"${{DUO_AIGW_URL}}\"\n\
         auth = \"${{DUO_AIGW_AUTH:-bearer}}\"\n\
         token_env = \"DUO_AIGW_TOKEN\"\n\
         key_file = \"${{DUO_AIGW_KEY_FILE:-aigw-key.pem}}\"\n\
         ca_bundle = \"${{DUO_AIGW_CA_BUNDLE:-}}\"",
        models.len(),
        settings.len()
    );
    let taps = taps(models, settings);
    for (endpoint, name) in &taps {
        let _ = writeln!(
            out,
            "\n[[tap]]\nname = {}\nupstream = {}",
            quoted(name),
            quoted(endpoint)
        );
    }
    let known = |f: &FeatureSetting| crate::features::lookup(&f.feature).is_some();
    let hybrid = settings.iter().any(|s| s.provider == "vendored");
    let mut routing = String::new();
    let mut notes = Vec::new();
    for s in settings {
        if !known(s) {
            notes.push(format!(
                "{}: {} (not replayed over the AIGW's HTTP routes)",
                s.feature, s.provider
            ));
            continue;
        }
        match (s.provider.as_str(), &s.model) {
            ("self_hosted", Some(m)) => {
                self_hosted(&mut out, &mut routing, &s.feature, m, &taps[&m.endpoint]);
            }
            ("self_hosted", None) => {
                notes.push(format!("{}: self_hosted without a model", s.feature))
            }
            ("vendored", _) => notes.push(format!(
                "{}: vendored, served by GitLab's cloud AI gateway (a hybrid setup, not a leak)",
                s.feature
            )),
            ("disabled", _) => {
                let _ = writeln!(
                    routing,
                    "\n[routing.features.{}]\ndisabled = true",
                    s.feature
                );
            }
            (other, _) => notes.push(format!(
                "{}: provider '{other}' not known to the harness",
                s.feature
            )),
        }
    }
    footer(&mut out, hybrid, &routing, &notes);
    out
}

/// `[routing]` with the expectations gathered, and what was not turned into a check.
fn footer(out: &mut String, hybrid: bool, routing: &str, notes: &[String]) {
    let _ = writeln!(
        out,
        "\n# {}\n[routing]\nfully_self_hosted = {}{}",
        if hybrid {
            "Some features are vendored: the setup is hybrid, so not every answer must reach a tap."
        } else {
            "Every feature is self-hosted: an answer that reached no tap is a leak."
        },
        !hybrid,
        routing
    );
    if !notes.is_empty() {
        *out += "\n# Feature settings not turned into checks:\n";
        for n in notes {
            let _ = writeln!(out, "#   {n}");
        }
    }
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
    let text = scenario(gitlab, &models, &settings);
    crate::files::write_atomic(out, text.as_bytes())
        .map_err(|e| InitError::Config(format!("cannot write {}: {e}", out.display())))?;
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
