//! The twin AIGW's routes: validation (422 shapes), unit-primitive checks (403), model selection,
//! the upstream call and the response framing, route by route as PROTOCOL.md §3 describes them.

// Handlers return `Result<Response, Response>`: the error is the HTTP answer itself, built on a
// cold path, so its size does not matter.
#![allow(clippy::result_large_err)]

use super::emit::{self, Source};
use super::selection::{self, Selection};
use super::upstream::{self, Call, Completed, Retry, UpstreamError, Usage};
use super::validate::{component_request, json_object, text, v2_request, CodeInput};
use super::{
    detail, feature_flags, internal_server_error, security_tag, unix_now, validation_error, Gateway,
};
use crate::tokens;
use crate::twin::json_error;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

pub(super) type Gw = Arc<Gateway>;
pub(super) type Res = Result<Response, Response>;

pub(super) fn router(gw: Gw) -> Router {
    Router::new()
        .route(
            "/monitoring/healthz",
            get(|| async { axum::Json(json!({})) }),
        )
        .route(
            "/monitoring/ready",
            get(|| async { internal_server_error() }),
        )
        .route("/v2/code/completions", post(v2_completions))
        .route("/v2/completions", post(v2_completions))
        .route("/v2/code/generations", post(v2_generations))
        .route("/v3/code/completions", post(v3_code))
        .route("/v4/code/suggestions", post(v4_code))
        .route("/v2/chat/agent", post(chat_agent))
        .route("/v1/chat/{invokable}", post(v1_chat))
        .route("/v1/prompts/{*prompt_id}", post(super::prompts::prompts_v1))
        .route("/v2/prompts/{*prompt_id}", post(super::prompts::prompts_v2))
        .route("/v1/code/user_access_token", post(user_access_token))
        // FastAPI's answers for an unknown route and a method the route does not take.
        .fallback(|| async { detail(StatusCode::NOT_FOUND, "Not Found") })
        .method_not_allowed_fallback(|| async {
            detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        })
        .with_state(gw)
}

pub(super) fn done(r: Res) -> Response {
    r.unwrap_or_else(|e| e)
}

pub(super) fn forbid(what: &str) -> Response {
    detail(
        StatusCode::FORBIDDEN,
        &format!("Unauthorized to access {what}"),
    )
}

pub(super) fn stream_response(
    content_type: &'static str,
    extra: &[(&'static str, &'static str)],
    body: Body,
) -> Response {
    let mut r = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type);
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.body(body).expect("static response parts are valid")
}

pub(super) const RAW_TEXT: &str = "text/event-stream; charset=utf-8";

impl Gateway {
    pub(super) fn caller(&self, headers: &HeaderMap) -> Result<super::auth::Caller, Response> {
        self.auth
            .authenticate(headers)
            .map_err(|m| json_error(StatusCode::UNAUTHORIZED, json!({"error": m})))
    }

    /// Generation streams pass through the line buffer when it is switched on (§8.2).
    fn line_buffered(&self, generation: bool) -> bool {
        generation && self.cfg.line_buffering
    }

    /// The call with the `override_params` fault applied.
    fn faulted(&self, call: &Call) -> Call {
        let mut call = call.clone();
        for (k, v) in &self.cfg.override_params {
            call.body.insert(k.clone(), v.clone());
        }
        call
    }

    pub(super) fn retry(&self) -> Retry {
        Retry {
            time_scale: self.cfg.retry_time_scale,
        }
    }

    /// A non-streaming answer (mock mode answers "mock" without calling upstream).
    pub(super) async fn whole(
        &self,
        call: &Call,
        family: &str,
        local_input: &str,
    ) -> Result<Completed, UpstreamError> {
        if self.cfg.mock_model_responses {
            let usage = Usage {
                model: family.to_owned(),
                input_tokens: tokens::count(local_input) as u64,
                output_tokens: 0,
            };
            return Ok(Completed {
                text: "mock".into(),
                usage: Some(usage),
            });
        }
        let mut c = upstream::complete(&self.client, &self.faulted(call), self.retry()).await?;
        // Non-streaming usage is keyed by the family name (§2.3).
        if let Some(u) = &mut c.usage {
            u.model = family.to_owned();
        }
        Ok(c)
    }

    /// A streaming answer as the prompt layer yields it.
    pub(super) async fn source(self: &Arc<Self>, call: Call, family: &str, lag: bool) -> Source {
        if self.cfg.mock_model_responses {
            return Source::whole("mock".into(), None);
        }
        if self.cfg.disable_streaming {
            return match self.whole(&call, family, "").await {
                Ok(c) => Source::whole(c.text, c.usage),
                Err(e) => Source::failed(e),
            };
        }
        let gw = self.clone();
        let call = self.faulted(&call);
        let open = Box::pin(async move { upstream::stream(&gw.client, &call, gw.retry()).await });
        Source::live(open, lag && self.cfg.one_chunk_lag)
    }
}

/// Upstream messages and parameters of a prompt-registry code request.
fn code_messages(
    sel: &Selection,
    input: &CodeInput,
    generation: bool,
    hex: &str,
) -> (Vec<Value>, selection::Params) {
    if generation {
        let instruction = input.prompt.as_deref().unwrap_or_default();
        selection::generation(
            sel,
            &input.prefix,
            &input.suffix,
            instruction,
            &input.lang,
            hex,
        )
    } else {
        selection::completion(sel, &input.prefix, &input.suffix, hex)
    }
}

pub(super) fn call_for(
    sel: &Selection,
    model: &str,
    messages: Vec<Value>,
    params: &selection::Params,
) -> Call {
    Call {
        api_base: sel.api_base().unwrap_or_default(),
        api_key: sel.api_key.clone(),
        body: selection::upstream_body(model, messages, params),
        timeout_s: params.timeout_s,
    }
}

fn consumption(c: &Completed) -> Value {
    let (i, o) = c
        .usage
        .as_ref()
        .map_or((0, 0), |u| (u.input_tokens, u.output_tokens));
    json!({"input_tokens": i, "output_tokens": o, "max_output_tokens_used": false, "context_tokens_sent": 0, "context_tokens_used": 0})
}

fn choices(text: &str) -> Value {
    if text.is_empty() {
        json!([])
    } else {
        json!([{"text": text, "index": 0, "finish_reason": "length"}])
    }
}

async fn v2_completions(State(gw): State<Gw>, headers: HeaderMap, body: Bytes) -> Response {
    done(code_v2(gw, headers, body, false).await)
}

async fn v2_generations(State(gw): State<Gw>, headers: HeaderMap, body: Bytes) -> Response {
    done(code_v2(gw, headers, body, true).await)
}

async fn code_v2(gw: Gw, headers: HeaderMap, body: Bytes, generation: bool) -> Res {
    let caller = gw.caller(&headers)?;
    let v = Value::Object(json_object(&body)?);
    let (input, sel) = v2_request(&v, generation)?;
    let permitted = if generation {
        caller.can("generate_code", false)
    } else {
        caller.can("complete_code", true)
    };
    if !permitted {
        return Err(forbid(if generation {
            "code generations"
        } else {
            "code completions"
        }));
    }
    let legacy = generation && input.prompt_id.is_none();
    let hex = security_tag();
    let (model, (messages, params)) = if legacy {
        (
            sel.family.clone(),
            selection::legacy_generation(&input.prefix, &input.lang),
        )
    } else {
        // A name without a models.yml entry (qwen2p5-coder-7b passes the validator): the
        // gateway raises `Invalid model identifier`, an uncaught 500 before any upstream call.
        if !selection::has_model_entry(&sel.family) {
            return Err(internal_server_error());
        }
        // Without an identifier LiteLLM cannot pick a provider: an uncaught 500, no upstream call.
        let model = sel.upstream_model().ok_or_else(internal_server_error)?;
        (model, code_messages(&sel, &input, generation, &hex))
    };
    let call = call_for(&sel, &model, messages, &params);
    if input.stream {
        let src = gw.source(call, &sel.family, !legacy).await;
        let line_buffered = gw.line_buffered(generation);
        return Ok(stream_response(
            RAW_TEXT,
            &[],
            emit::body(move |sink| emit::raw_text(src, line_buffered, sink)),
        ));
    }
    let local = format!("{}{}", input.prefix, input.suffix);
    let c = gw
        .whole(&call, &sel.family, &local)
        .await
        .map_err(|_| internal_server_error())?;
    let (engine, name, consumed, text) = match (generation, legacy) {
        (false, _) => (
            "litellm",
            sel.family.clone(),
            consumption(&c),
            c.text.clone(),
        ),
        (true, true) => (
            "litellm",
            format!("custom_openai/{}", sel.family),
            Value::Null,
            emit::strip_fences(&c.text),
        ),
        (true, false) => (
            "agent",
            selection::code_prompt_name(&sel.family, true),
            Value::Null,
            emit::strip_fences(&c.text),
        ),
    };
    Ok(axum::Json(json!({
        "id": "id",
        "model": {"engine": engine, "name": name, "lang": input.lang, "tokens_consumption_metadata": consumed, "region": "us-central1"},
        "experiments": [], "object": "text_completion", "created": unix_now(), "choices": choices(&text),
        "metadata": {"enabled_feature_flags": feature_flags(&headers)},
    }))
    .into_response())
}

struct Suggestion {
    input: CodeInput,
    generation: bool,
    sel: Selection,
    call: Call,
}

/// What serves a v3/v4 request: the self-hosted model it names, or (a name the gateway does not
/// know) GitLab's cloud default, which fails offline: a hybrid leak a routing check must catch.
enum Served {
    Own(Box<Suggestion>),
    Cloud { stream: bool, generation: bool },
}

/// The cloud fallback's answer: a stream opens (v4: its `stream_start` names the fallback's
/// definition) and closes; a call waits out the retry cycle and fails with an uncaught 500.
async fn cloud_fallback(
    gw: &Gw,
    headers: &HeaderMap,
    v4: bool,
    stream: bool,
    generation: bool,
) -> Res {
    if !stream {
        gw.retry().cloud_cycle().await;
        return Err(internal_server_error());
    }
    if !v4 {
        return Ok(stream_response(RAW_TEXT, &[], emit::closed()));
    }
    let name = match generation {
        true => "Code Generations Agent",
        false => "Codestral 22B Code Completions",
    };
    let start = json!({
        "model": {"engine": "agent", "name": name},
        "timestamp": unix_now(), "enabled_feature_flags": feature_flags(headers), "region": "us-central1",
    });
    let body = emit::body(move |sink| emit::start_then_close(start, sink));
    Ok(stream_response(RAW_TEXT, &SSE_HEADERS, body))
}

/// The v4 stream's headers, as captured (`v4_code_suggestions.response.raw`), in that order.
const SSE_HEADERS: [(&str, &str); 4] = [
    ("x-streaming-format", "sse"),
    ("cache-control", "no-store"),
    ("connection", "keep-alive"),
    ("x-accel-buffering", "no"),
];

async fn suggestion(gw: &Gw, headers: &HeaderMap, body: &Bytes) -> Result<Served, Response> {
    let caller = gw.caller(headers)?;
    let v = Value::Object(json_object(body)?);
    let (input, generation) = component_request(&v)?;
    let permitted = if generation {
        caller.can("generate_code", true)
    } else {
        caller.can("complete_code", false)
    };
    if !permitted {
        return Err(forbid("code suggestions"));
    }
    let sel = Selection::from_metadata(&v).filter(|s| selection::has_model_entry(&s.family));
    let Some(sel) = sel else {
        let stream = input.stream;
        return Ok(Served::Cloud { stream, generation });
    };
    let model = sel.upstream_model().ok_or_else(internal_server_error)?;
    let hex = security_tag();
    let (messages, params) = code_messages(&sel, &input, generation, &hex);
    let call = call_for(&sel, &model, messages, &params);
    Ok(Served::Own(Box::new(Suggestion {
        input,
        generation,
        sel,
        call,
    })))
}

async fn suggestion_json(gw: &Gw, s: Suggestion, headers: &HeaderMap) -> Res {
    let local = format!("{}{}", s.input.prefix, s.input.suffix);
    let c = gw
        .whole(&s.call, &s.sel.family, &local)
        .await
        .map_err(|_| internal_server_error())?;
    let text = if s.generation {
        emit::strip_fences(&c.text)
    } else {
        c.text
    };
    // Generations name their definition (`engine: agent`); completions echo the request.
    let model = match s.generation {
        true => {
            json!({"engine": "agent", "name": selection::code_prompt_name(&s.sel.family, true), "lang": s.input.lang})
        }
        false => json!({"engine": s.sel.provider, "name": s.sel.family, "lang": s.input.lang}),
    };
    Ok(axum::Json(json!({
        "choices": choices(&text),
        "metadata": {"model": model, "timestamp": unix_now(), "enabled_feature_flags": feature_flags(headers), "region": null},
        "model": model,
    }))
    .into_response())
}

async fn v3_code(State(gw): State<Gw>, headers: HeaderMap, body: Bytes) -> Response {
    done(
        async {
            let s = match suggestion(&gw, &headers, &body).await? {
                Served::Own(s) => *s,
                Served::Cloud { stream, generation } => {
                    return cloud_fallback(&gw, &headers, false, stream, generation).await
                }
            };
            if !s.input.stream {
                return suggestion_json(&gw, s, &headers).await;
            }
            let src = gw.source(s.call, &s.sel.family, true).await;
            let line_buffered = gw.line_buffered(s.generation);
            Ok(stream_response(
                RAW_TEXT,
                &[],
                emit::body(move |sink| emit::raw_text(src, line_buffered, sink)),
            ))
        }
        .await,
    )
}

async fn v4_code(State(gw): State<Gw>, headers: HeaderMap, body: Bytes) -> Response {
    done(async {
        let s = match suggestion(&gw, &headers, &body).await? {
            Served::Own(s) => *s,
            Served::Cloud { stream, generation } => {
                return cloud_fallback(&gw, &headers, true, stream, generation).await
            }
        };
        if !s.input.stream {
            return suggestion_json(&gw, s, &headers).await;
        }
        let start = json!({
            "model": {"engine": "agent", "name": selection::code_prompt_name(&s.sel.family, s.generation)},
            "timestamp": unix_now(), "enabled_feature_flags": feature_flags(&headers), "region": "us-central1",
        });
        let src = gw.source(s.call, &s.sel.family, true).await;
        let line_buffered = gw.line_buffered(s.generation);
        let fault = match (gw.cfg.drop_v4_stream_end, gw.cfg.reorder_v4_events) {
            (true, _) => emit::V4Fault::DropEnd,
            (false, true) => emit::V4Fault::EndFirst,
            _ => emit::V4Fault::None,
        };
        Ok(stream_response(RAW_TEXT, &SSE_HEADERS, emit::body(move |sink| emit::v4_sse(src, start, line_buffered, fault, sink))))
    }
    .await)
}

const ROLES: &[&str] = &["user", "assistant", "system"];

async fn chat_agent(State(gw): State<Gw>, headers: HeaderMap, body: Bytes) -> Response {
    done(
        async {
            let caller = gw.caller(&headers)?;
            let v = Value::Object(json_object(&body)?);
            let messages = v
                .get("messages")
                .and_then(Value::as_array)
                .ok_or_else(validation_error)?;
            for m in messages {
                let role = m
                    .get("role")
                    .and_then(Value::as_str)
                    .filter(|r| ROLES.contains(r))
                    .ok_or_else(validation_error)?;
                text(m, "content", 400_000, false)?;
                if role != "assistant" && m.get("agent_scratchpad").is_some_and(|s| !s.is_null()) {
                    return Err(detail(
                        StatusCode::BAD_REQUEST,
                        "agent_scratchpad can only be present when role is 'assistant'",
                    ));
                }
            }
            if !caller.can("duo_classic_chat", true) {
                return Err(detail(
                    StatusCode::FORBIDDEN,
                    "Duo Core no longer authorized to access Duo Classic Chat",
                ));
            }
            let contexts = messages
                .iter()
                .filter_map(|m| m.get("additional_context")?.as_array())
                .flatten();
            for category in contexts.filter_map(|c| c.get("category")?.as_str()) {
                if !caller.can(&format!("include_{category}_context"), true) {
                    return Err(forbid(&format!("include_{category}_context")));
                }
            }
            if messages.is_empty() {
                // The agent indexes the last message: an uncaught exception.
                return Err(internal_server_error());
            }
            let sel = Selection::from_metadata(&v).ok_or_else(internal_server_error)?;
            let model = sel.upstream_model().ok_or_else(internal_server_error)?;
            let date = chrono::Utc::now().format("%A, %B %d, %Y").to_string();
            let (msgs, params) = selection::react_chat(&sel, super::react::conversation(&v), &date);
            let call = call_for(&sel, &model, msgs, &params);
            let usage_key = gw.cfg.disable_streaming.then(|| sel.family.clone());
            let src = gw.source(call, &sel.family, true).await;
            let body = emit::body(move |sink| emit::chat(src, usage_key, sink));
            Ok(stream_response(
                "application/x-ndjson; charset=utf-8",
                &[],
                body,
            ))
        }
        .await,
    )
}

/// The deprecated `/v1/chat/{invokable}`: always an uncaught 500 in this AIGW snapshot (§3.6).
async fn v1_chat(
    State(gw): State<Gw>,
    headers: HeaderMap,
    Path(_invokable): Path<String>,
) -> Response {
    done(gw.caller(&headers).map(|_| internal_server_error()))
}

async fn user_access_token(State(gw): State<Gw>, headers: HeaderMap) -> Response {
    done(
        async {
            let caller = gw.caller(&headers)?;
            if !caller.can("complete_code", false)
                && !caller.can("ai_gateway_model_provider_proxy", false)
            {
                return Err(detail(
                    StatusCode::FORBIDDEN,
                    "Unauthorized to create user access token",
                ));
            }
            let (token, expires_at) =
                gw.auth.issue_user_token(&caller, &headers).ok_or_else(|| {
                    detail(StatusCode::INTERNAL_SERVER_ERROR, "Failed to generate JWT")
                })?;
            Ok(axum::Json(json!({"token": token, "expires_at": expires_at})).into_response())
        }
        .await,
    )
}
