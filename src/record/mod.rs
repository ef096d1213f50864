//! The `record` command: a stream-faithful reverse proxy in front of an AIGW (or, with `--tap`,
//! in front of a model backend) that writes each exchange as a corpus line.
//!
//! In: client traffic on `--listen`, the upstream at `--upstream`. Out: the upstream's answers,
//! forwarded byte for byte as they arrive; a corpus (`schemas/corpus-v1.schema.json`, or tap
//! lines with `--tap`) with secrets redacted before anything is written ([`crate::redact`]),
//! appended whole line by line and rotated by size ([`writer`]).

pub mod infer;
pub mod proxy;
pub mod writer;

use crate::protocol::{Decoder, Event, Framing};
use crate::redact::{self, Rule};
use base64::Engine;
use proxy::{Capture, Proxy};
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// What `duo-harness record` was asked to do.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub upstream: String,
    pub listen: SocketAddr,
    pub out: PathBuf,
    /// Extra CA certificates (PEM) for an `https` upstream.
    pub ca_bundle: Option<PathBuf>,
    /// Start a new corpus part past this many bytes.
    pub rotate_bytes: Option<u64>,
    pub rules: Vec<Rule>,
    /// Record upstream model calls (tap lines) instead of Duo interactions.
    pub tap: bool,
    /// Append to a corpus that already holds lines (without it, such a corpus is refused).
    pub force: bool,
}

/// How long open exchanges may go on after a stop signal before `record` stops regardless.
const STOP_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Why recording could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn header_map(pairs: &[(String, String)]) -> Map<String, Value> {
    let mut m: Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    redact::headers(&mut m);
    m
}

fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The request body as JSON, secrets redacted and rules applied; `Err` holds a body that is not
/// JSON, as base64 of its bytes (JWT-shaped words removed when it is text).
fn request_body(cap: &Capture, rules: &[Rule]) -> Result<Value, String> {
    if cap.request_body.is_empty() {
        return Ok(Value::Null);
    }
    match serde_json::from_slice::<Value>(&cap.request_body) {
        Ok(mut v) => {
            redact::body(&mut v);
            redact::apply_rules(rules, &mut v);
            Ok(v)
        }
        // Form-encoded and other bodies are redacted before they are encoded, so audits of
        // the corpus see what is kept.
        Err(_) => Err(b64(&redact::raw_body(&cap.request_body))),
    }
}

/// The response as recorded: status, headers, framing, every chunk with its arrival, and the
/// decoded content and usage.
fn response(cap: &Capture) -> Value {
    let ct = header(&cap.response_headers, "content-type").unwrap_or_default();
    let framing = Framing::detect(&cap.path, ct);
    let mut decoder = Decoder::new(framing);
    let (mut content, mut usage) = (String::new(), Value::Null);
    let mut chunks = Vec::with_capacity(cap.chunks.len());
    let mut first_content_ms = None;
    let mut take = |t: f64, events: Vec<Event>| {
        for e in events {
            match e {
                Event::Content(s) if !s.is_empty() => {
                    first_content_ms.get_or_insert(t);
                    content.push_str(&s);
                }
                Event::Usage(u) => usage = serde_json::to_value(u).unwrap_or_default(),
                _ => {}
            }
        }
    };
    for (t, bytes) in &cap.chunks {
        take(*t, decoder.push(bytes));
    }
    // Redacted as one stream, so a secret split across chunks is found.
    let parts: Vec<&[u8]> = cap.chunks.iter().map(|(_, b)| &b[..]).collect();
    for ((t, _), bytes) in cap.chunks.iter().zip(redact::pieces(&parts)) {
        chunks.push(match String::from_utf8(bytes) {
            Ok(text) => json!({"t_ms": t, "text": text}),
            Err(e) => json!({"t_ms": t, "b64": b64(e.as_bytes())}),
        });
    }
    // Whole-body framings (JSON) yield their events at the end: the last chunk's arrival.
    let last = cap.chunks.last().map_or(0.0, |(t, _)| *t);
    take(last, decoder.finish().0);
    json!({
        "status": cap.status, "headers": header_map(&cap.response_headers), "framing": framing,
        "headers_ms": cap.headers_ms, "first_content_ms": first_content_ms, "end_ms": cap.end_ms,
        "chunks": chunks, "content": redact::text(&content), "usage": usage,
        "truncated": cap.truncated, "cancelled": cap.cancelled,
        "error": cap.error.as_deref().map(redact::text),
    })
}

/// A corpus line for a Duo exchange, or `None` for a route that is no Duo feature.
pub fn corpus_line(cap: &Capture, rules: &[Rule]) -> Option<Value> {
    let parsed: Value = serde_json::from_slice(&cap.request_body).unwrap_or(Value::Null);
    let feature = infer::feature_for(&cap.path, &parsed)?;
    let path = redact::text(&cap.path);
    let mut request =
        json!({"method": cap.method, "path": path, "headers": header_map(&cap.request_headers)});
    match request_body(cap, rules) {
        Ok(body) => request["body"] = body,
        Err(bytes) => request["body_b64"] = json!(bytes),
    }
    let mut tags = vec!["recorded".to_owned()];
    tags.extend(cap.truncated.then(|| "truncated".to_owned()));
    tags.extend(cap.cancelled.then(|| "cancelled".to_owned()));
    Some(json!({
        "v": crate::corpus::VERSION, "id": format!("rec-{:06}", cap.seq), "feature": feature,
        "arrival_offset_ms": cap.arrival_offset_ms, "protocol": "http", "request": request,
        "response": response(cap), "tags": tags,
    }))
}

/// A tap line: one upstream model call with its sampling parameters and chunk timing.
pub fn tap_line(cap: &Capture, rules: &[Rule]) -> Value {
    let body = request_body(cap, rules).unwrap_or(Value::Null);
    const PARAMS: &[&str] = &[
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "n",
        "ignore_eos",
        "tool_choice",
        "parallel_tool_calls",
    ];
    let mut params: Map<String, Value> = PARAMS
        .iter()
        .filter_map(|k| body.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    // The tool specs offered, by count (an agent's model must take them; their text is long).
    if let Some(tools) = body["tools"].as_array() {
        params.insert("tools".into(), json!(tools.len()));
    }
    let nonce = find_nonce(&String::from_utf8_lossy(&cap.request_body));
    let resp = response(cap);
    json!({
        "v": 1, "kind": "tap", "id": format!("tap-{:06}", cap.seq),
        "arrival_offset_ms": cap.arrival_offset_ms, "method": cap.method, "path": redact::text(&cap.path),
        "model": body["model"], "params": params, "stream": body["stream"].as_bool().unwrap_or(false),
        "nonce": nonce, "status": cap.status, "headers_ms": cap.headers_ms,
        "first_content_ms": resp["first_content_ms"], "end_ms": cap.end_ms,
        "chunks": cap.chunks.iter().map(|(t, b)| json!({"t_ms": t, "bytes": b.len()})).collect::<Vec<_>>(),
        "usage": resp["usage"], "truncated": cap.truncated, "cancelled": cap.cancelled,
        "error": cap.error.as_deref().map(redact::text),
    })
}

/// The correlation nonce the harness plants in request content (`dhn-` and 16 hex digits),
/// found again in the upstream prompt.
pub fn find_nonce(text: &str) -> Option<String> {
    text.match_indices("dhn-").find_map(|(i, _)| {
        let hex = text.get(i + 4..i + 20)?;
        hex.bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| format!("dhn-{hex}"))
    })
}

fn client(opts: &RecordOptions) -> Result<reqwest::Client, RecordError> {
    crate::http::client(opts.ca_bundle.as_deref(), false)
        .map_err(|e| RecordError::Config(e.to_string()))
}

/// Listens on `addr`; the listener and the address it got.
async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), RecordError> {
    let listen = |source| RecordError::Listen { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(listen)?;
    let local = listener.local_addr().map_err(listen)?;
    Ok((listener, local))
}

/// Writes each captured exchange of a Duo route as it ends, until a stop signal (and the
/// drain after it) or the proxy's end: lines written, exchanges on no Duo route, and the first
/// write error.
async fn collect(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Capture>,
    writer: &mut writer::CorpusWriter,
    opts: &RecordOptions,
    stop_tx: &tokio::sync::watch::Sender<bool>,
) -> (u64, u64, Option<std::io::Error>) {
    let mut lines = 0u64;
    let mut not_duo = 0u64;
    let mut write_error = None;
    // A stop signal closes the listener and lets open exchanges end for STOP_DRAIN; then, or
    // at a second signal, `record` stops with what it has, even if a stream is stalled.
    let mut deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut signal = Box::pin(crate::signals::wait_for_stop());
    loop {
        let cap = tokio::select! {
            cap = rx.recv() => cap,
            () = &mut signal => {
                if deadline.is_some() {
                    break;
                }
                let _ = stop_tx.send(true);
                deadline = Some(Box::pin(tokio::time::sleep(STOP_DRAIN)));
                signal = Box::pin(crate::signals::wait_for_stop());
                continue;
            }
            () = async { deadline.as_mut().expect("guarded").await }, if deadline.is_some() => break,
        };
        let Some(cap) = cap else { break };
        let line = match opts.tap {
            true => Some(tap_line(&cap, &opts.rules)),
            false => corpus_line(&cap, &opts.rules),
        };
        let Some(line) = line else {
            // Health checks and other routes that no Duo feature uses are passed on, not kept.
            tracing::info!(
                "record: {} {} is no Duo feature's route; not written",
                cap.method,
                redact::text(&cap.path)
            );
            not_duo += 1;
            continue;
        };
        if let Err(source) = writer.append(&line.to_string()) {
            tracing::error!("record: cannot append to {}: {source}", opts.out.display());
            write_error.get_or_insert(source);
            continue;
        }
        lines += 1;
    }
    (lines, not_duo, write_error)
}

/// Runs the proxy until SIGINT/SIGTERM; returns how many lines were written.
pub async fn record(opts: RecordOptions) -> Result<u64, RecordError> {
    crate::plan::check::url("--upstream", &opts.upstream).map_err(|e| RecordError::Config(e.0))?;
    let client = client(&opts)?;
    let mut writer =
        writer::CorpusWriter::open(&opts.out, opts.rotate_bytes, opts.force).map_err(|source| {
            match source.kind() {
                std::io::ErrorKind::AlreadyExists => RecordError::Config(source.to_string()),
                _ => RecordError::Write {
                    path: opts.out.clone(),
                    source,
                },
            }
        })?;
    let (listener, local) = bind(opts.listen).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Capture>();
    let proxy = Arc::new(Proxy::new(
        client,
        &opts.upstream,
        tx,
        writer.existing_lines(),
    ));
    let stats = proxy.stats.clone();
    let app = axum::Router::new()
        .fallback(proxy::forward)
        .with_state(proxy);
    println!(
        "{}",
        json!({"listen": format!("http://{local}"), "upstream": opts.upstream, "out": opts.out, "tap": opts.tap})
    );
    // Each chunk leaves as it arrives: no Nagle delay behind an unacknowledged one.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
    });
    let (lines, not_duo, write_error) = collect(&mut rx, &mut writer, &opts, &stop_tx).await;
    let open = stats.exchanges.load(Relaxed) - lines - not_duo;
    if !server.is_finished() {
        server.abort();
        eprintln!("record: stopped with {open} exchanges still open; they were not written");
    }
    let parts: Vec<String> = writer
        .parts()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    eprintln!(
        "record: {} exchanges, {lines} lines written to {}, {not_duo} on no Duo feature's route (not written), {} refused (not written), {} upstream errors, {} truncated, {} cancelled",
        stats.exchanges.load(Relaxed),
        parts.join(" "),
        stats.refused.load(Relaxed),
        stats.upstream_errors.load(Relaxed),
        stats.truncated.load(Relaxed),
        stats.cancelled.load(Relaxed)
    );
    match write_error {
        Some(source) => Err(RecordError::Write {
            path: opts.out,
            source,
        }),
        None => Ok(lines),
    }
}
