//! The twin AI Gateway: the Duo routes of PROTOCOL.md with their real framings, validation,
//! model selection and auth, calling the upstream model for real.
//!
//! In: Duo requests over HTTP/1.1 on loopback. Out: responses framed as the real gateway frames
//! them, and real `POST {endpoint}/chat/completions` calls to whatever backend each request's
//! model selection names. Switchable: one-chunk lag, generation line buffering, mock-model mode,
//! disabled upstream streaming, retry timing.

pub mod auth;
pub mod emit;
mod lang;
mod prompts;
mod react;
pub mod registry;
mod routes;
pub mod selection;
pub mod upstream;
mod validate;

use super::{json_error, serve_router, RunningServer};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Settings of the twin AIGW.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AigwConfig {
    /// Port on the stack's address (127.0.0.1 by default); 0 picks a free one.
    #[serde(default)]
    pub port: u16,
    /// The address to listen on: set from the stack's `host`.
    #[serde(skip)]
    pub host: Option<std::net::IpAddr>,
    #[serde(default)]
    pub auth: auth::AuthConfig,
    /// Re-emit every prompt-registry stream one upstream chunk late (§8.1).
    #[serde(default = "yes")]
    pub one_chunk_lag: bool,
    /// Flush generation streams only at line ends (§8.2).
    #[serde(default = "yes")]
    pub line_buffering: bool,
    /// `AIGW_MOCK_MODEL_RESPONSES=true`: answer "mock" without calling upstream (§6).
    #[serde(default)]
    pub mock_model_responses: bool,
    /// `AIGW_CUSTOM_MODELS__DISABLE_STREAMING=true`: every upstream call is non-streaming.
    #[serde(default)]
    pub disable_streaming: bool,
    /// Multiplies the retry waits of §8.3 (1 = as observed: 12 calls over ~45 s on a failing
    /// upstream; 0 = retry without waiting).
    #[serde(default = "one")]
    pub retry_time_scale: f64,
    /// Fault: send a prompt's upstream calls to another base URL (`twin:<backend>` is resolved
    /// when the stack starts), whatever the request's model selection says.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub misroute: std::collections::BTreeMap<String, String>,
    /// Fault: end v4 SSE streams without their `stream_end` event.
    #[serde(default)]
    pub drop_v4_stream_end: bool,
    /// Fault: send v4's `stream_end` first, before the content (events out of order).
    #[serde(default)]
    pub reorder_v4_events: bool,
    /// Fault: sampling parameters forced into every upstream call (`{ max_tokens = 99 }`), as a
    /// new prompt version might change them.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub override_params: serde_json::Map<String, serde_json::Value>,
}

fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}

impl Default for AigwConfig {
    fn default() -> Self {
        toml::from_str("").expect("an empty AIGW config takes every default")
    }
}

/// Why the AIGW could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

struct Gateway {
    cfg: AigwConfig,
    auth: auth::Auth,
    client: reqwest::Client,
}

/// The `User-Agent` of the real gateway's upstream calls (every `*.upstream.json` capture).
pub const UPSTREAM_USER_AGENT: &str = "AsyncOpenAI/Python 2.54.0";

/// Starts the twin AIGW on 127.0.0.1.
pub async fn serve(cfg: AigwConfig) -> Result<RunningServer, ServeError> {
    let auth = auth::Auth::load(&cfg.auth).map_err(ServeError::Config)?;
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        // What the real gateway's upstream calls carry (its OpenAI SDK), as captured.
        .user_agent(UPSTREAM_USER_AGENT)
        .build()
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let (host, port) = (cfg.host, cfg.port);
    let gw = Arc::new(Gateway { cfg, auth, client });
    let router = routes::router(gw).layer(axum::middleware::from_fn(request_headers));
    Ok(serve_router(router, host, port).await?)
}

/// Marks a response as an uncaught exception: uvicorn's bare 500 without the middleware headers.
#[derive(Clone, Copy)]
struct Uncaught;

/// uvicorn's answer to an uncaught exception.
fn internal_server_error() -> Response {
    let mut r = (
        StatusCode::INTERNAL_SERVER_ERROR,
        [("content-type", "text/plain; charset=utf-8")],
        "Internal Server Error",
    )
        .into_response();
    r.extensions_mut().insert(Uncaught);
    r
}

fn detail(status: StatusCode, message: &str) -> Response {
    json_error(status, json!({"detail": message}))
}

fn validation_error() -> Response {
    detail(StatusCode::UNPROCESSABLE_ENTITY, "Validation error")
}

/// `x-request-id` (echoed or generated) and `x-process-time` (seconds until headers), as the
/// real middleware stack sets them.
async fn request_headers(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&format!("{:032x}", rand::random::<u128>()))
                .expect("hex is a valid header")
        });
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert("server", HeaderValue::from_static("uvicorn"));
    if resp.extensions().get::<Uncaught>().is_none() {
        let h = resp.headers_mut();
        let t = started.elapsed().as_secs_f64().to_string();
        h.insert(
            "x-process-time",
            HeaderValue::from_str(&t).expect("a float is a valid header"),
        );
        h.insert("x-request-id", id);
    }
    resp
}

fn feature_flags(headers: &HeaderMap) -> Vec<String> {
    headers
        .get("x-gitlab-enabled-feature-flags")
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The random 16-hex suffix of the per-request security tag.
fn security_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}
