//! `POST /v1/prompts/{id}` and `/v2/prompts/{id}`: the prompt registry as the real gateway serves
//! it (`aigw-samples-2`). The definition comes from [`registry`](super::registry): the model
//! family's folder, the version `prompt_version` selects, its required inputs and parameters.
//! The real gateway's errors are reproduced: unknown prompt ids (the message depends on
//! `model_metadata` and on the first path segment), versions that match nothing or are no
//! constraint (400), missing template variables (422; a stream answers 200 and closes with no
//! chunk), and a request without a usable `model_metadata`, which falls back to a GitLab-managed
//! cloud model that fails offline after the retry cycle (421).

use super::registry::registry;
use super::routes::{call_for, done, forbid, stream_response, Gw, Res, RAW_TEXT};
use super::selection::{self, Selection};
use super::upstream::UpstreamError;
use super::validate::{flag, json_object, text};
use super::{detail, emit, internal_server_error, security_tag, validation_error};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// Where GitLab's image keeps the definitions: the real messages name this path.
const DEFINITIONS_DIR: &str = "/home/aigateway/app/ai_gateway/prompts/definitions";

pub(super) async fn prompts_v1(
    State(gw): State<Gw>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    done(prompts(gw, headers, id, body, false).await)
}

pub(super) async fn prompts_v2(
    State(gw): State<Gw>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    done(prompts(gw, headers, id, body, true).await)
}

/// 400 for a prompt id the registry does not have. Without `model_metadata`, a first segment
/// that names no feature setting is reported as such; otherwise the folder is missing.
fn unknown_prompt(id: &str, has_metadata: bool) -> Response {
    let segment = id.split('/').next().unwrap_or_default();
    let setting = segment == "chat" || crate::features::lookup(segment).is_some();
    let why = if has_metadata || setting {
        format!("Prompt definition directory not found: {DEFINITIONS_DIR}/{id}")
    } else {
        format!("Invalid feature setting: {segment}")
    };
    detail(
        StatusCode::BAD_REQUEST,
        &format!("Failed to load prompt definition for '{id}': {why}"),
    )
}

fn py_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.map(|s| format!("'{s}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// LangChain's message for template variables missing from `inputs` (`current_date` is always
/// added by the gateway); `None` when nothing is missing.
fn missing_inputs(required: &[String], inputs: &Map<String, Value>) -> Option<String> {
    let missing: Vec<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|k| *k != "current_date" && !inputs.contains_key(*k))
        .collect();
    let first = *missing.first()?;
    let set = format!(
        "{{{}}}",
        missing
            .iter()
            .map(|m| format!("'{m}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut expected: Vec<&str> = required.iter().map(String::as_str).collect();
    expected.sort_unstable();
    let received = inputs
        .keys()
        .map(String::as_str)
        .chain((!inputs.contains_key("current_date")).then_some("current_date"));
    Some(format!(
        "\"Input to ChatPromptTemplate is missing variables {set}.  Expected: {} Received: {}\\nNote: if you intended {{{first}}} to be part of the string and not a variable, please escape it with double curly braces like: '{{{{{first}}}}}'.\\nFor troubleshooting, visit: https://docs.langchain.com/oss/python/langchain/errors/INVALID_PROMPT_INPUT \"",
        py_list(expected.into_iter()),
        py_list(received),
    ))
}

/// Without a usable `model_metadata` the gateway falls back to the feature setting's
/// GitLab-managed model, which fails offline: a stream answers 200 and closes; a call waits out
/// the retry cycle (3, 9, 27 s, scaled by `retry_time_scale`) and answers 421.
async fn cloud_fallback(gw: &Gw, stream: bool) -> Res {
    if stream {
        return Ok(stream_response(RAW_TEXT, &[], emit::closed()));
    }
    gw.retry().cloud_cycle().await;
    Err(detail(
        StatusCode::MISDIRECTED_REQUEST,
        "500: Internal Server Error",
    ))
}

async fn prompts(gw: Gw, headers: HeaderMap, id: String, body: Bytes, v2: bool) -> Res {
    let caller = gw.caller(&headers)?;
    let v = Value::Object(json_object(&body)?);
    let has_metadata = v.get("model_metadata").is_some_and(|m| !m.is_null());
    // An unknown family is dropped by the middleware, as if no model_metadata had been sent.
    let sel = Selection::from_metadata(&v).filter(|s| registry().family(&s.family).is_some());
    let family = sel.as_ref().map_or("general", |s| s.family.as_str());
    let constraint = text(&v, "prompt_version", 50, false)?;
    let resolved = match registry().resolve(&id, family, constraint.as_deref()) {
        None => return Err(unknown_prompt(&id, has_metadata)),
        Some(Err(e)) => return Err(detail(StatusCode::BAD_REQUEST, e.message())),
        Some(Ok(r)) => r,
    };
    let inputs = v
        .get("inputs")
        .and_then(Value::as_object)
        .ok_or_else(validation_error)?;
    let stream = flag(&v, "stream")?;
    if let Some(m) = missing_inputs(&resolved.definition.inputs, inputs) {
        return match stream {
            true => Ok(stream_response(RAW_TEXT, &[], emit::closed())),
            false => Err(detail(StatusCode::UNPROCESSABLE_ENTITY, &m)),
        };
    }
    if !caller.can(&resolved.definition.unit_primitive, true) {
        return Err(forbid(&format!("'{id}'")));
    }
    let Some(sel) = sel else {
        return cloud_fallback(&gw, stream).await;
    };
    let model = sel.upstream_model().ok_or_else(internal_server_error)?;
    let (messages, params) = selection::prompt_call(&resolved, inputs, &security_tag());
    let mut call = call_for(&sel, &model, messages, &params);
    if let Some(base) = gw.cfg.misroute.get(&id) {
        call.api_base = base.trim_end_matches('/').to_owned(); // fault injection
    }
    if stream {
        let src = gw.source(call, &sel.family, true).await;
        let body = if v2 {
            let usage_key = gw.cfg.disable_streaming.then(|| sel.family.clone());
            emit::body(move |sink| emit::prompts_v2(src, usage_key, sink))
        } else {
            emit::body(move |sink| emit::raw_text(src, false, sink))
        };
        return Ok(stream_response(RAW_TEXT, &[], body));
    }
    let c = match gw.whole(&call, &sel.family, "").await {
        Ok(c) => c,
        Err(UpstreamError::Status { status, .. }) => {
            let reason = StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            return Err(detail(
                StatusCode::MISDIRECTED_REQUEST,
                &format!("{status}: {reason}"),
            ));
        }
        Err(_) => return Err(internal_server_error()),
    };
    if !v2 {
        return Ok(axum::Json(json!(c.text)).into_response());
    }
    let usage = c.usage.map(
        |u| json!({u.model: {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens}}),
    );
    Ok(axum::Json(json!({"content": c.text, "usage": usage})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_input_message_is_langchains() {
        let inputs = json!({"notes": "x"}).as_object().unwrap().clone();
        let m = missing_inputs(&["notes_content".to_owned()], &inputs).unwrap();
        assert_eq!(
            serde_json::to_string(&json!({"detail": m})).unwrap(),
            r#"{"detail":"\"Input to ChatPromptTemplate is missing variables {'notes_content'}.  Expected: ['notes_content'] Received: ['notes', 'current_date']\\nNote: if you intended {notes_content} to be part of the string and not a variable, please escape it with double curly braces like: '{{notes_content}}'.\\nFor troubleshooting, visit: https://docs.langchain.com/oss/python/langchain/errors/INVALID_PROMPT_INPUT \""}"#
        );
    }
}
