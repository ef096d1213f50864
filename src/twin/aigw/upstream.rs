//! The twin AIGW's upstream client: `POST {api_base}/chat/completions` as LiteLLM and the OpenAI
//! SDK make it, with their retry layering (§8.3): non-streaming calls get 4 tenacity attempts
//! (waits 3/9/27 s) of 3 SDK tries each (waits ≈0.45/0.9 s); streaming calls get the 3 SDK tries.
//! `retry_time_scale` multiplies every wait (1 = as observed, 0 = no waiting).
//!
//! Out: a whole answer ([`Completed`]) or a stream of [`Item`]s, one per upstream SSE chunk
//! (empty content included, since the AIGW re-emits those on some routes).

use crate::protocol::sse::SseDecoder;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Token usage as the upstream reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// One upstream stream chunk.
#[derive(Debug, Clone, Default)]
pub struct Item {
    pub content: String,
    pub usage: Option<Usage>,
}

/// A whole (non-streaming) answer.
#[derive(Debug, Clone)]
pub struct Completed {
    pub text: String,
    pub usage: Option<Usage>,
}

/// Why an upstream call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("APIConnectionError: Connection error.")]
    Connect(String),
    #[error("{}", litellm_status_message(*.status, .message))]
    Status { status: u16, message: String },
    #[error("APIError: {0}")]
    Protocol(String),
}

fn litellm_status_message(status: u16, message: &str) -> String {
    let class = match status {
        500 => "InternalServerError",
        503 => "ServiceUnavailableError",
        404 => "NotFoundError",
        429 => "RateLimitError",
        400 | 422 => "BadRequestError",
        401 => "AuthenticationError",
        _ => "APIError",
    };
    format!("litellm.{class}: {class}: Custom_openaiException - {message}")
}

impl UpstreamError {
    /// Network errors and 5xx are retried by both layers; 4xx are not.
    fn retryable(&self) -> bool {
        match self {
            Self::Connect(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::Protocol(_) => false,
        }
    }
}

/// One upstream call.
#[derive(Debug, Clone)]
pub struct Call {
    pub api_base: String,
    pub api_key: Option<String>,
    pub body: Map<String, Value>,
    pub timeout_s: f64,
}

/// Retry timing.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub time_scale: f64,
}

const SDK_WAITS_S: [f64; 2] = [0.45, 0.9];
const TENACITY_WAITS_S: [f64; 3] = [3.0, 9.0, 27.0];

impl Retry {
    /// A GitLab-managed fallback model failing offline: every attempt fails at once, and the
    /// tenacity waits between them (3, 9, 27 s, scaled) are all the time it takes.
    pub async fn cloud_cycle(&self) {
        for w in TENACITY_WAITS_S {
            self.wait(w).await;
        }
    }

    async fn wait(&self, seconds: f64) {
        let d = seconds * self.time_scale;
        if d > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(d)).await;
        }
    }
}

fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    Some(Usage {
        model: v["model"].as_str().unwrap_or_default().to_owned(),
        input_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
    })
}

async fn send(
    client: &reqwest::Client,
    call: &Call,
    stream: bool,
    attempt: usize,
) -> Result<reqwest::Response, UpstreamError> {
    let mut body = call.body.clone();
    if stream {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let mut req = client
        .post(format!("{}/chat/completions", call.api_base))
        .bearer_auth(call.api_key.as_deref().unwrap_or("dummy_key"))
        .header("x-stainless-retry-count", attempt.to_string())
        .header("x-stainless-read-timeout", format!("{:.1}", call.timeout_s))
        .json(&body);
    if !stream {
        req = req.timeout(Duration::from_secs_f64(call.timeout_s));
    }
    let resp = req
        .send()
        .await
        .map_err(|e| UpstreamError::Connect(e.to_string()))?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            v["message"]
                .as_str()
                .or(v["error"]["message"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or(text);
    Err(UpstreamError::Status { status, message })
}

/// The OpenAI SDK layer: up to 3 tries.
async fn sdk_send(
    client: &reqwest::Client,
    call: &Call,
    stream: bool,
    retry: Retry,
) -> Result<reqwest::Response, UpstreamError> {
    let mut attempt = 0;
    loop {
        match send(client, call, stream, attempt).await {
            Err(e) if e.retryable() && attempt < SDK_WAITS_S.len() => {
                retry.wait(SDK_WAITS_S[attempt]).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A non-streaming call with both retry layers.
pub async fn complete(
    client: &reqwest::Client,
    call: &Call,
    retry: Retry,
) -> Result<Completed, UpstreamError> {
    let mut attempt = 0;
    let resp = loop {
        match sdk_send(client, call, false, retry).await {
            Err(e) if e.retryable() && attempt < TENACITY_WAITS_S.len() => {
                retry.wait(TENACITY_WAITS_S[attempt]).await;
                attempt += 1;
            }
            other => break other?,
        }
    };
    let v: Value = resp
        .json()
        .await
        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(Completed {
        text,
        usage: usage_of(&v),
    })
}

/// A streaming call (SDK retries only, before the first byte).
pub async fn stream(
    client: &reqwest::Client,
    call: &Call,
    retry: Retry,
) -> Result<BoxStream<'static, Result<Item, UpstreamError>>, UpstreamError> {
    let resp = sdk_send(client, call, true, retry).await?;
    let mut decoder = SseDecoder::default();
    let items = resp
        .bytes_stream()
        .map(move |chunk| match chunk {
            Ok(bytes) => decoder
                .push(&bytes)
                .into_iter()
                .filter(|e| e.data != "[DONE]")
                .map(|e| parse_chunk(&e.data))
                .collect(),
            Err(e) => vec![Err(UpstreamError::Protocol(e.to_string()))],
        })
        .flat_map(futures_util::stream::iter);
    Ok(items.boxed())
}

fn parse_chunk(data: &str) -> Result<Item, UpstreamError> {
    let v: Value = serde_json::from_str(data)
        .map_err(|e| UpstreamError::Protocol(format!("bad chunk {data:?}: {e}")))?;
    let choice = &v["choices"][0];
    let content = choice["delta"]["content"]
        .as_str()
        .or(choice["text"].as_str())
        .unwrap_or_default()
        .to_owned();
    Ok(Item {
        content,
        usage: usage_of(&v),
    })
}
