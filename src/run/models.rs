//! The run's model selections resolved: each feature's setting and each `[remap]` target made a
//! URL the gateway can call (`twin:<backend>`: the embedded backend's OpenAI base; through its
//! tap when one fronts it), and the keys read from the environment.

use super::RunError;
use crate::drive::ResolvedModel;
use crate::plan::{Plan, Remap};
use crate::taps::Taps;
use crate::twin::StackUrls;

/// A secret read from the environment variable a scenario names (`key` says where), registered
/// so that it is scrubbed from everything the harness writes or prints.
pub(super) fn secret_from_env(key: &str, var: Option<&str>) -> Result<Option<String>, RunError> {
    let Some(var) = var else {
        return Ok(None);
    };
    let value =
        std::env::var(var).map_err(|_| RunError::Config(format!("{key}: {var} is not set")))?;
    crate::redact::register_secret(&value);
    Ok(Some(value))
}

/// The URL the gateway is given for `endpoint` as written (`key` names the setting).
fn resolve_endpoint(
    key: &str,
    endpoint: &str,
    urls: Option<&StackUrls>,
    taps: Option<&Taps>,
) -> Result<String, RunError> {
    if let Some(tapped) = taps.and_then(|t| t.route(endpoint)) {
        return Ok(tapped);
    }
    let Some(name) = endpoint.strip_prefix("twin:") else {
        return Ok(endpoint.to_owned());
    };
    let urls = urls.ok_or_else(|| {
        RunError::Config(format!(
            "{key}: endpoint '{endpoint}' needs the twin stack, which did not start"
        ))
    })?;
    let b = urls
        .backends
        .get(name)
        .ok_or_else(|| RunError::Config(format!("{key}: no twin backend named '{name}'")))?;
    Ok(b.openai_base.clone())
}

/// Resolves every feature's model setting.
pub(super) fn resolve_models(
    plan: &Plan,
    urls: Option<&StackUrls>,
    taps: Option<&Taps>,
    features: &[String],
) -> Result<Vec<(String, ResolvedModel)>, RunError> {
    let mut out = Vec::new();
    for f in features {
        let Some(setting) = plan.model_for(f) else {
            continue;
        };
        let endpoint = resolve_endpoint(&format!("models.{f}"), &setting.endpoint, urls, taps)?;
        let key = format!("models.{f}.api_key_env");
        let api_key = secret_from_env(&key, setting.api_key_env.as_deref())?;
        out.push((
            f.clone(),
            ResolvedModel {
                setting: setting.clone(),
                endpoint,
                api_key,
                inherited: !plan.models.contains_key(f),
            },
        ));
    }
    Ok(out)
}

/// The remap with every target resolved as a model setting's endpoint is.
pub(super) fn resolve_remap(
    plan: &Plan,
    urls: Option<&StackUrls>,
    taps: Option<&Taps>,
) -> Result<Remap, RunError> {
    let mut out = Remap::default();
    for (old, new) in &plan.remap.0 {
        let to = resolve_endpoint(&format!("remap.\"{old}\""), new, urls, taps)?;
        out.0.insert(old.clone(), to);
    }
    Ok(out)
}
