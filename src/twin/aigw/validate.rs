//! Request validation of the twin AIGW, as pydantic does it on the real one: wrong types, missing
//! required fields and over-long strings give `422 {"detail":"Validation error"}`.

// The error is the 422 response itself, built on a cold path.
#![allow(clippy::result_large_err)]

use super::selection::{self, Selection};
use super::validation_error;
use axum::body::Bytes;
use axum::response::Response;
use serde_json::{Map, Value};

pub(super) fn json_object(body: &Bytes) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(validation_error()),
    }
}

/// A string field: `Ok(None)` when absent or null (if not required), 422 when of the wrong type
/// or longer than `max` characters.
pub(super) fn text(
    v: &Value,
    key: &str,
    max: usize,
    required: bool,
) -> Result<Option<String>, Response> {
    match v.get(key) {
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        _ => Err(validation_error()),
    }
}

pub(super) fn flag(v: &Value, key: &str) -> Result<bool, Response> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        _ => Err(validation_error()),
    }
}

pub(super) fn list_at_most(v: &Value, key: &str, max: usize) -> Result<(), Response> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(a)) if a.len() <= max => Ok(()),
        _ => Err(validation_error()),
    }
}

/// A code request's editor state, common to `/v2/code/*`, `/v3` and `/v4`.
pub(super) struct CodeInput {
    pub(super) lang: String,
    pub(super) prefix: String,
    pub(super) suffix: String,
    pub(super) stream: bool,
    pub(super) prompt: Option<String>,
    pub(super) prompt_id: Option<String>,
}

impl CodeInput {
    /// From a `current_file`-style object (the v2 `current_file`, or a v3/v4 `payload`).
    pub(super) fn editor(file: &Value, stream: bool) -> Result<Self, Response> {
        if !file.is_object() {
            return Err(validation_error());
        }
        let file_name = text(file, "file_name", 255, true)?.unwrap_or_default();
        let editor = text(file, "language_identifier", 255, false)?;
        let lang = super::lang::resolve(&file_name, editor.as_deref()).to_owned();
        Ok(Self {
            lang,
            prefix: text(file, "content_above_cursor", 100_000, true)?.unwrap_or_default(),
            suffix: text(file, "content_below_cursor", 100_000, true)?.unwrap_or_default(),
            stream,
            prompt: None,
            prompt_id: None,
        })
    }
}

const PROVIDERS: &[&str] = &[
    "anthropic",
    "vertex-ai",
    "litellm",
    "codestral",
    "fireworks_ai",
    "amazon_q",
    "gitlab",
];

/// `/v2/code/completions` and `/v2/code/generations` request validation.
pub(super) fn v2_request(v: &Value, generation: bool) -> Result<(CodeInput, Selection), Response> {
    let mut input = CodeInput::editor(
        v.get("current_file").unwrap_or(&Value::Null),
        flag(v, "stream")?,
    )?;
    let version = match v.get("prompt_version") {
        None | Some(Value::Null) => 1,
        Some(n) => n
            .as_u64()
            .filter(|n| (1..=3).contains(n))
            .ok_or_else(validation_error)?,
    };
    let provider = text(v, "model_provider", 50, false)?;
    if provider.as_deref().is_some_and(|p| !PROVIDERS.contains(&p)) {
        return Err(validation_error());
    }
    let name = text(v, "model_name", 50, false)?.unwrap_or_default();
    let allowed = if generation {
        selection::generation_name_allowed(&name)
    } else {
        selection::COMPLETION_NAMES.contains(&name.as_str())
    };
    if provider.as_deref() == Some("litellm") && !allowed {
        return Err(validation_error());
    }
    list_at_most(v, "context", 100)?;
    list_at_most(v, "telemetry", 10)?;
    input.prompt = text(v, "prompt", 400_000, generation && version == 2)?;
    input.prompt_id = text(v, "prompt_id", 255, false)?;
    let sel = Selection {
        provider: "litellm".into(),
        family: name,
        endpoint: text(v, "model_endpoint", 255, false)?,
        api_key: text(v, "model_api_key", 2000, false)?,
        identifier: text(v, "model_identifier", 1000, false)?,
    };
    Ok((input, sel))
}

/// `/v3` and `/v4` requests: the first prompt component decides completion or generation.
pub(super) fn component_request(v: &Value) -> Result<(CodeInput, bool), Response> {
    let comps = v
        .get("prompt_components")
        .and_then(Value::as_array)
        .filter(|a| (1..=100).contains(&a.len()));
    let first = comps.and_then(|c| c.first()).ok_or_else(validation_error)?;
    let generation = match first.get("type").and_then(Value::as_str) {
        Some("code_editor_completion") => false,
        Some("code_editor_generation") => true,
        _ => return Err(validation_error()),
    };
    let payload = first.get("payload").unwrap_or(&Value::Null);
    let mut input = CodeInput::editor(payload, flag(payload, "stream")?)?;
    if generation {
        input.prompt = text(payload, "prompt", 400_000, false)?;
        input.prompt_id = text(payload, "prompt_id", 255, false)?;
    }
    Ok((input, generation))
}
