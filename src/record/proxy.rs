//! The recording reverse proxy: forwards each request to the upstream and streams the answer
//! back chunk by chunk as it arrives (no buffering), while a [`Capture`] notes every chunk's
//! arrival. When the exchange ends (complete, reset by the upstream, or abandoned by the client)
//! the capture goes to the writer. Nothing here touches disk.
//!
//! In: HTTP/1.1 requests on the listen address. Out: the upstream's answers, byte for byte, and
//! [`Capture`]s on a channel.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::mpsc;

/// The largest request body the proxy accepts (Duo requests are a few hundred kB at most).
const MAX_REQUEST_BYTES: usize = 64 << 20;

/// Headers that belong to one hop, never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// One exchange as seen by the proxy (secrets still in it: only the writer, which redacts,
/// turns it into a corpus line).
#[derive(Debug, Clone)]
pub struct Capture {
    pub seq: u64,
    /// Arrival, ms after the proxy started.
    pub arrival_offset_ms: f64,
    pub method: String,
    pub path: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Bytes,
    pub status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    /// Response headers arrived, ms after the request arrived.
    pub headers_ms: Option<f64>,
    /// Every body chunk: arrival (ms after the request arrived) and bytes.
    pub chunks: Vec<(f64, Bytes)>,
    pub end_ms: Option<f64>,
    /// The upstream broke the stream (reset, timeout) before its end.
    pub truncated: bool,
    /// The client went away first; the upstream call was dropped (cancelled).
    pub cancelled: bool,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Counters of what the proxy did, by outcome.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub exchanges: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub truncated: AtomicU64,
    pub cancelled: AtomicU64,
    /// Requests refused before they became exchanges (a body over the limit, a WebSocket
    /// upgrade, a body the client did not finish): answered, never written.
    pub refused: AtomicU64,
}

pub struct Proxy {
    pub client: reqwest::Client,
    /// Upstream base URL, no trailing slash.
    pub upstream: String,
    pub started: Instant,
    pub captures: mpsc::UnboundedSender<Capture>,
    pub stats: Arc<ProxyStats>,
    seq: AtomicU64,
}

impl Proxy {
    pub fn new(
        client: reqwest::Client,
        upstream: &str,
        captures: mpsc::UnboundedSender<Capture>,
        first_seq: u64,
    ) -> Self {
        Self {
            client,
            upstream: upstream.trim_end_matches('/').to_owned(),
            started: Instant::now(),
            captures,
            stats: Arc::default(),
            seq: AtomicU64::new(first_seq),
        }
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn forwardable(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The proxy's one handler: every method, every path.
pub async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let arrived = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/".to_owned(), |pq| pq.as_str().to_owned());
    let refused = |status, why: String| refuse(&p, parts.method.as_str(), &path, status, why);
    if let Some(why) = not_proxied(&parts.headers) {
        return refused(StatusCode::NOT_IMPLEMENTED, why);
    }
    let request_body = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(e) if over_limit(&e) => {
            let why = format!(
                "the request body is over {} MiB, the most record keeps; nothing was forwarded \
                 or written",
                MAX_REQUEST_BYTES >> 20
            );
            return refused(StatusCode::PAYLOAD_TOO_LARGE, why);
        }
        Err(e) => return refused(StatusCode::BAD_REQUEST, format!("reading the request: {e}")),
    };
    let mut cap = Capture {
        seq: p.seq.fetch_add(1, Relaxed),
        arrival_offset_ms: (arrived - p.started).as_secs_f64() * 1000.0,
        method: parts.method.to_string(),
        path: path.clone(),
        request_headers: forwardable(&parts.headers),
        request_body,
        status: None,
        response_headers: Vec::new(),
        headers_ms: None,
        chunks: Vec::new(),
        end_ms: None,
        truncated: false,
        cancelled: false,
        error: None,
    };
    p.stats.exchanges.fetch_add(1, Relaxed);
    let mut up = p
        .client
        .request(parts.method.clone(), format!("{}{path}", p.upstream));
    for (k, v) in &cap.request_headers {
        if k != "content-length" {
            up = up.header(k, v);
        }
    }
    let resp = match up.body(cap.request_body.clone()).send().await {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("upstream {}: {}", p.upstream, crate::http::error_chain(&e));
            return fail(&p, cap, StatusCode::BAD_GATEWAY, msg);
        }
    };
    cap.status = Some(resp.status().as_u16());
    cap.response_headers = forwardable(resp.headers());
    cap.headers_ms = Some(ms_since(arrived));
    let mut builder = Response::builder().status(resp.status().as_u16());
    for (k, v) in &cap.response_headers {
        builder = builder.header(k, v);
    }
    let tee = Tee {
        inner: Box::pin(resp.bytes_stream()),
        arrived,
        capture: Some(cap),
        proxy: p.clone(),
    };
    builder
        .body(Body::from_stream(tee))
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}

/// Why a request is not proxied at all: a WebSocket (or other protocol) upgrade, which record
/// cannot replay as an HTTP exchange.
fn not_proxied(headers: &HeaderMap) -> Option<String> {
    let upgrade = headers.get("upgrade")?;
    Some(format!(
        "record does not proxy protocol upgrades ({}): it records HTTP exchanges of Duo's routes \
         only; nothing was forwarded or written",
        String::from_utf8_lossy(upgrade.as_bytes())
    ))
}

/// Whether reading a body failed on the size limit (rather than on the client).
fn over_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.to_string().contains("length limit exceeded") {
            return true;
        }
        source = s.source();
    }
    false
}

/// Answers a request that never became an exchange, and writes no line for it.
fn refuse(p: &Proxy, method: &str, path: &str, status: StatusCode, why: String) -> Response {
    tracing::warn!(
        "record: {method} {}: {} {}",
        crate::escape::console(&crate::redact::text(path)),
        status.as_u16(),
        crate::escape::console(&why)
    );
    p.stats.refused.fetch_add(1, Relaxed);
    let body = serde_json::json!({"detail": format!("duo-harness record: {why}")});
    (status, axum::Json(body)).into_response()
}

/// Answers the client with a proxy error and records the exchange with it: the request as it
/// was, no response status (the upstream gave none), and the error.
fn fail(p: &Proxy, mut cap: Capture, status: StatusCode, message: String) -> Response {
    tracing::warn!(
        "record: {} {}: {}",
        cap.method,
        crate::escape::console(&crate::redact::text(&cap.path)),
        crate::escape::console(&crate::redact::text(&message))
    );
    p.stats.upstream_errors.fetch_add(1, Relaxed);
    cap.error = Some(message.clone());
    let body = serde_json::json!({"detail": format!("duo-harness record: {message}")});
    let _ = p.captures.send(cap);
    (status, axum::Json(body)).into_response()
}

/// Passes the upstream body on chunk by chunk, noting each chunk's arrival; hands the capture
/// over when the body ends, breaks, or is dropped because the client left.
struct Tee {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    arrived: Instant,
    capture: Option<Capture>,
    proxy: Arc<Proxy>,
}

impl Tee {
    fn finish(&mut self) {
        if let Some(mut cap) = self.capture.take() {
            cap.end_ms = Some(ms_since(self.arrived));
            if cap.truncated {
                self.proxy.stats.truncated.fetch_add(1, Relaxed);
            }
            if cap.cancelled {
                self.proxy.stats.cancelled.fetch_add(1, Relaxed);
            }
            let _ = self.proxy.captures.send(cap);
        }
    }
}

impl Stream for Tee {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                let t = ms_since(self.arrived);
                if let Some(c) = self.capture.as_mut() {
                    c.chunks.push((t, bytes.clone()));
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                let msg = crate::http::error_chain(&e);
                if let Some(c) = self.capture.as_mut() {
                    c.truncated = true;
                    c.error = Some(format!("upstream stream broke: {msg}"));
                }
                self.finish();
                // The client sees the same break: the response ends without its terminator.
                Poll::Ready(Some(Err(std::io::Error::other(msg))))
            }
            Poll::Ready(None) => {
                self.finish();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        if let Some(c) = self.capture.as_mut() {
            c.cancelled = true;
            c.error
                .get_or_insert_with(|| "the client disconnected; upstream call cancelled".into());
        }
        self.finish();
    }
}
