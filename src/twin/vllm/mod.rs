//! The twin vLLM: an OpenAI-compatible model server on loopback.
//!
//! In: `POST /v1/chat/completions` and `/v1/completions` (streaming SSE with `data: [DONE]`, or
//! JSON), `GET /v1/models`, `GET /health`, `GET /metrics`. Out: deterministic text
//! ([`textgen`]), token counts from the documented [`crate::tokens`] rule, and timing from a fixed
//! TTFT plus a fixed gap per token, or, with `[engine]`, from a simulated GPU engine
//! ([`engine`]: roofline step times, continuous batching, a KV-cache budget). Each backend serves its own model names, so which backend a
//! request reached is observable; a model listed in `fail_models` always answers HTTP 500.

pub mod engine;
pub mod metrics;
mod request;
pub mod textgen;
mod tools;
use request::{parse_chat, parse_completion, Parsed};

use super::{json_error, serve_router, RunningServer};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The most bytes of SSE events one write carries when tokens that are due together coalesce.
const COALESCE_BYTES: usize = 16 * 1024;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// One twin backend, as declared in a stack config.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Name used to refer to this backend (`twin:<name>` in scenarios).
    pub name: String,
    /// Model names this backend serves; any other model gets vLLM's 404.
    pub models: Vec<String>,
    /// Port on the stack's address (127.0.0.1 by default); 0 picks a free one.
    #[serde(default)]
    pub port: u16,
    /// The address to listen on: set from the stack's `host`.
    #[serde(skip)]
    pub host: Option<std::net::IpAddr>,
    /// Time to first token, milliseconds.
    #[serde(default = "default_ttft_ms")]
    pub ttft_ms: f64,
    /// Gap between tokens, milliseconds.
    #[serde(default = "default_itl_ms")]
    pub itl_ms: f64,
    /// Seed of the text generator.
    #[serde(default)]
    pub seed: u64,
    /// Share (0..1) of words drawn unseeded, so answers vary between runs.
    #[serde(default)]
    pub variation: f64,
    /// Models that always fail with HTTP 500 (fault injection).
    #[serde(default)]
    pub fail_models: Vec<String>,
    /// KV-cache capacity in tokens, for `vllm:kv_cache_usage_perc`.
    #[serde(default = "default_kv_capacity")]
    pub kv_capacity_tokens: u64,
    /// `max_tokens` when a request sets none.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: usize,
    /// Started with auto tool choice and a tool parser (vLLM's `--enable-auto-tool-choice`):
    /// requests with `tools` get tool calls. Off: such requests get vLLM's HTTP 400.
    #[serde(default = "yes")]
    pub tool_calling: bool,
    /// A simulated GPU serving engine (roofline timing, continuous batching, KV budget): timing
    /// then comes from it, not from `ttft_ms` and `itl_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<engine::EngineConfig>,
}

fn yes() -> bool {
    true
}

fn default_ttft_ms() -> f64 {
    20.0
}
fn default_itl_ms() -> f64 {
    4.0
}
fn default_kv_capacity() -> u64 {
    400_000
}
fn default_max_tokens() -> usize {
    1024
}

impl BackendConfig {
    /// A backend with default timing serving `models`.
    pub fn new(name: &str, models: &[&str]) -> Self {
        let mut cfg: Self = serde_json::from_value(json!({"name": name, "models": models}))
            .expect("defaults of a backend config deserialise");
        cfg.seed = 0;
        cfg
    }
}

struct Backend {
    cfg: BackendConfig,
    metrics: Mutex<metrics::Metrics>,
    engine: Option<engine::Engine>,
}

/// Starts a backend on 127.0.0.1.
pub async fn serve(cfg: BackendConfig) -> std::io::Result<RunningServer> {
    let engine = match &cfg.engine {
        Some(e) => {
            let cost = e.cost().map_err(std::io::Error::other)?;
            Some(engine::Engine::start(cost))
        }
        None => None,
    };
    let state = Arc::new(Backend {
        metrics: Mutex::new(metrics::Metrics::new(&cfg.models, cfg.kv_capacity_tokens)),
        cfg: cfg.clone(),
        engine,
    });
    let router = Router::new()
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/v1/models", get(models))
        .route("/metrics", get(render_metrics))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .with_state(state);
    serve_router(router, cfg.host, cfg.port).await
}

async fn models(State(b): State<Arc<Backend>>) -> Response {
    let data: Vec<Value> = b
        .cfg
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": unix_now(), "owned_by": "vllm", "root": m, "parent": null}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn render_metrics(State(b): State<Arc<Backend>>) -> Response {
    let snapshot = b.engine.as_ref().map(engine::Engine::snapshot);
    let text = b
        .metrics
        .lock()
        .expect("metrics lock")
        .render(snapshot.as_ref());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn vllm_error(status: StatusCode, kind: &str, message: String) -> Response {
    json_error(
        status,
        json!({"object": "error", "message": message, "type": kind, "param": null, "code": status.as_u16()}),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Api {
    Chat,
    Completions,
}

async fn chat_completions(State(b): State<Arc<Backend>>, body: Bytes) -> Response {
    handle(b, body, Api::Chat).await
}

async fn completions(State(b): State<Arc<Backend>>, body: Bytes) -> Response {
    handle(b, body, Api::Completions).await
}

async fn handle(b: Arc<Backend>, body: Bytes, api: Api) -> Response {
    let arrived = Instant::now();
    let parsed = serde_json::from_slice::<Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| {
            if api == Api::Chat {
                parse_chat(&v)
            } else {
                parse_completion(&v)
            }
        });
    let p = match parsed {
        Ok(p) => p,
        Err(e) => return vllm_error(StatusCode::BAD_REQUEST, "BadRequestError", e),
    };
    if !b.cfg.models.contains(&p.model) {
        let msg = format!("The model `{}` does not exist.", p.model);
        return vllm_error(StatusCode::NOT_FOUND, "NotFoundError", msg);
    }
    if b.cfg.fail_models.contains(&p.model) {
        return vllm_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "mock upstream failure".into(),
        );
    }
    if p.offers_tools && !b.cfg.tool_calling {
        let msg = tools::NO_TOOL_CHOICE.to_owned();
        return vllm_error(StatusCode::BAD_REQUEST, "BadRequestError", msg);
    }
    let style = textgen::style_for(&p.prompt, p.react, api == Api::Completions);
    let gen = match &p.tool_call {
        Some(call) => textgen::Generated {
            tokens: tools::pieces(&call.arguments),
            finish_reason: "tool_calls",
        },
        None => textgen::generate(&textgen::GenRequest {
            seed: b.cfg.seed,
            model: &p.model,
            prompt: &p.prompt,
            max_tokens: p.max_tokens.unwrap_or(b.cfg.default_max_tokens),
            style,
            variation: b.cfg.variation,
            ignore_eos: p.ignore_eos,
        }),
    };
    let job = Job {
        backend: b,
        p,
        gen,
        api,
        arrived,
    };
    if job.p.stream {
        job.stream()
    } else {
        job.whole().await
    }
}

/// One request being generated.
struct Job {
    backend: Arc<Backend>,
    p: Parsed,
    gen: textgen::Generated,
    api: Api,
    arrived: Instant,
}

/// Keeps the running gauge honest however the request ends (finish, client gone, panic).
struct InFlight {
    backend: Arc<Backend>,
    model: String,
    kv_tokens: usize,
}

impl InFlight {
    fn new(backend: Arc<Backend>, model: &str, kv_tokens: usize) -> Self {
        backend
            .metrics
            .lock()
            .expect("metrics lock")
            .started(model, kv_tokens);
        Self {
            backend,
            model: model.to_owned(),
            kv_tokens,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut m) = self.backend.metrics.lock() {
            m.left(&self.model, self.kv_tokens);
        }
    }
}

impl Job {
    /// With a simulated engine: the request queued there, its tokens' instants to come.
    fn engine_tokens(&self) -> Option<mpsc::UnboundedReceiver<Instant>> {
        let e = self.backend.engine.as_ref()?;
        Some(e.generate(self.p.prompt_tokens, self.gen.tokens.len()))
    }

    fn token_due(&self, i: usize) -> Instant {
        let c = &self.backend.cfg;
        self.arrived + Duration::from_secs_f64((c.ttft_ms + c.itl_ms * i as f64) / 1000.0)
    }

    fn usage(&self) -> Value {
        let (p, c) = (self.p.prompt_tokens, self.gen.tokens.len());
        json!({"prompt_tokens": p, "total_tokens": p + c, "completion_tokens": c})
    }

    fn record(&self, first: Instant, times: &[Instant]) {
        let itl_s = times
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        let f = metrics::Finished {
            prompt_tokens: self.p.prompt_tokens,
            generation_tokens: self.gen.tokens.len(),
            finish_reason: self.gen.finish_reason.to_owned(),
            ttft_s: (first - self.arrived).as_secs_f64(),
            itl_s,
            e2e_s: self.arrived.elapsed().as_secs_f64(),
        };
        self.backend
            .metrics
            .lock()
            .expect("metrics lock")
            .finished(&self.p.model, &f);
    }

    fn id(&self) -> String {
        let prefix = if self.api == Api::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        };
        format!("{prefix}-{:016x}", rand::random::<u64>())
    }

    async fn whole(self) -> Response {
        let _guard = InFlight::new(
            self.backend.clone(),
            &self.p.model,
            self.p.prompt_tokens + self.gen.tokens.len(),
        );
        let n = self.gen.tokens.len();
        let times: Vec<Instant> = match self.engine_tokens() {
            Some(mut rx) => {
                let mut times = Vec::with_capacity(n);
                while let Some(t) = rx.recv().await {
                    times.push(t);
                }
                times
            }
            None => {
                crate::clock::Timer::global()
                    .sleep_until(self.token_due(n.saturating_sub(1)))
                    .await;
                (0..n).map(|i| self.token_due(i)).collect()
            }
        };
        self.record(times.first().copied().unwrap_or_else(Instant::now), &times);
        let (text, fr) = (self.gen.text(), self.gen.finish_reason);
        let choice = if let Some(call) = &self.p.tool_call {
            json!({"index": 0, "message": tools::message(call), "logprobs": null, "finish_reason": fr})
        } else if self.api == Api::Chat {
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": fr})
        } else {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": fr})
        };
        let object = if self.api == Api::Chat {
            "chat.completion"
        } else {
            "text_completion"
        };
        axum::Json(
            json!({"id": self.id(), "object": object, "created": unix_now(), "model": self.p.model,
            "choices": [choice], "usage": self.usage()}),
        )
        .into_response()
    }

    /// The fields every chunk of one stream shares, written once per stream: `id`, `object`,
    /// `created` (one instant per request, as vLLM does) and `model`, up to the `choices`.
    fn head(&self, id: &str) -> String {
        let object = match self.api {
            Api::Chat => "chat.completion.chunk",
            Api::Completions => "text_completion",
        };
        let model = serde_json::to_string(&self.p.model).expect("strings serialise");
        format!(
            "{{\"id\":\"{id}\",\"object\":\"{object}\",\"created\":{},\"model\":{model},",
            unix_now()
        )
    }

    /// One SSE chunk after the stream's [`Job::head`], written straight into `out` (it runs
    /// once per token under load: no `json!` tree, no intermediate strings). Field order as
    /// vLLM writes it.
    fn write_chunk(
        &self,
        head: &str,
        delta: Option<&str>,
        first: bool,
        finish: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        if let (Some(call), Some(piece)) = (&self.p.tool_call, delta.filter(|d| !d.is_empty())) {
            // The stream passes its own tokens: the first is recognised by address, not text.
            let first_piece = self
                .gen
                .tokens
                .first()
                .is_some_and(|t| std::ptr::eq(t.as_ptr(), piece.as_ptr()));
            let d = tools::delta(call, piece, first_piece);
            let finish = finish.map_or("null".to_owned(), |f| format!("\"{f}\""));
            out.extend_from_slice(format!(
                "data: {head}\"choices\":[{{\"index\":0,\"delta\":{d},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
            ).as_bytes());
            return;
        }
        let text = |out: &mut Vec<u8>, t: &str| {
            serde_json::to_writer(&mut *out, t).expect("strings serialise");
        };
        let finish_reason = |out: &mut Vec<u8>| match finish {
            Some(f) => out.extend_from_slice(format!("\"{f}\"").as_bytes()),
            None => out.extend_from_slice(b"null"),
        };
        for part in ["data: ", head, "\"choices\":[{\"index\":0,"] {
            out.extend_from_slice(part.as_bytes());
        }
        match self.api {
            Api::Chat => {
                out.extend_from_slice(b"\"delta\":{");
                if first {
                    out.extend_from_slice(b"\"role\":\"assistant\"");
                }
                if let Some(d) = delta {
                    out.extend_from_slice(if first {
                        b",\"content\":"
                    } else {
                        b"\"content\":"
                    });
                    text(out, d);
                }
                out.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":");
                finish_reason(out);
                out.extend_from_slice(b"}]}\n\n");
            }
            Api::Completions => {
                out.extend_from_slice(b"\"text\":");
                text(out, delta.unwrap_or(""));
                out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
                finish_reason(out);
                out.extend_from_slice(b",\"stop_reason\":null}]}\n\n");
            }
        }
    }

    /// Token `i`'s SSE events (a chat stream's first token is preceded by the role's event).
    fn token_events(&self, head: &str, i: usize, tok: &str, out: &mut Vec<u8>) {
        let n = self.gen.tokens.len();
        let finish = (i + 1 == n).then_some(self.gen.finish_reason);
        if i == 0 && self.api == Api::Chat {
            self.write_chunk(head, Some(""), true, None, out);
        }
        self.write_chunk(head, Some(tok), false, finish, out);
    }

    fn stream(self) -> Response {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        tokio::spawn(async move {
            let _guard = InFlight::new(
                self.backend.clone(),
                &self.p.model,
                self.p.prompt_tokens + self.gen.tokens.len(),
            );
            let head = self.head(&self.id());
            let n = self.gen.tokens.len();
            let mut times = Vec::with_capacity(n);
            let mut engine = self.engine_tokens();
            let mut pending: Vec<u8> = Vec::new();
            for (i, tok) in self.gen.tokens.iter().enumerate() {
                match engine.as_mut() {
                    Some(rx) => match rx.recv().await {
                        Some(_) => {}
                        None => return, // the engine is gone
                    },
                    None if pending.is_empty() => {
                        crate::clock::Timer::global()
                            .sleep_until(self.token_due(i))
                            .await
                    }
                    None => {} // due already: it joins the write in hand
                }
                times.push(Instant::now());
                self.token_events(&head, i, tok, &mut pending);
                // A token whose successor is already due (the server is behind, or its client
                // read slowly) goes out with it in one write, as vLLM's output collector merges
                // the deltas of a client that lags: each stays its own SSE event.
                let next_due = engine.is_none()
                    && i + 1 < n
                    && self.token_due(i + 1) <= Instant::now()
                    && pending.len() < COALESCE_BYTES;
                if next_due {
                    continue;
                }
                let write = Bytes::from(std::mem::take(&mut pending));
                if tx.send(Ok(write)).await.is_err() {
                    return; // client went away: vLLM aborts the request
                }
            }
            if self.p.include_usage {
                let usage = format!(
                    "data: {head}\"choices\":[],\"usage\":{}}}\n\n",
                    self.usage()
                );
                let _ = tx.send(Ok(Bytes::from(usage))).await;
            }
            let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
            self.record(times.first().copied().unwrap_or_else(Instant::now), &times);
        });
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
            .body(Body::from_stream(ReceiverStream::new(rx)))
            .expect("static response parts are valid")
    }
}

#[cfg(test)]
mod tests;
