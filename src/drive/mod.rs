//! Sends requests over real sockets and measures them.
//!
//! In: [`Prepared`] interactions, the target, and when each request was meant to go. Out: one
//! [`RequestRecord`] per request with the intended and actual send, headers, every chunk's
//! arrival, the decoded content, usage, and the error class or cut-off if it did not complete.
//! [`client`](mod@client) sets requests up; [`dispatch`] decides when each one goes (open loop,
//! or a closed loop of concurrency slots); `developers` (the `goose` feature) runs closed-loop
//! virtual developers instead.

pub mod client;
#[cfg(feature = "goose")]
pub mod developers;
pub mod dispatch;
pub mod dws_probe;
pub mod h1;
pub mod prepared;
pub mod rails;
pub mod session;

pub use client::{auth_headers, client, list_models, preflight, Auth, DriveError, ResolvedModel};
pub use prepared::{body_for, ModelCall, Prepared, Replay};

use crate::http::error_chain;
use crate::measure::recorder::{finish_tokens, Recorder};
use crate::measure::{Disposition, ErrorClass, RequestError, RequestRecord, RESULT_SCHEMA};
use crate::protocol::Framing;
use futures_util::StreamExt;
use serde_json::{json, Map};
use std::future::Future;
use std::time::{Duration, Instant};

/// What every request of a run shares.
pub struct Target {
    pub client: reqwest::Client,
    /// A client that keeps no connection: the one retry of a request whose pooled connection
    /// the server had closed.
    pub fresh: reqwest::Client,
    /// The load's own HTTP/1.1 client, for a plain-`http` target ([`h1::Pool::for_target`]);
    /// `None`: reqwest carries the load.
    pub h1: Option<h1::Pool>,
    pub base_url: String,
    pub auth: Auth,
    pub timeout: Duration,
    /// Instant zero of the schedule; record times are offsets from it.
    pub run_start: Instant,
    /// With taps: the nonce salt and the map the tap collector reads.
    pub correlation: Option<(u64, std::sync::Arc<crate::taps::Correlator>)>,
    /// The servers' tokenizers, for answers without `usage`.
    pub tokenizers: crate::measure::tokenizer::Tokenizers,
    /// The Duo Workflow Service Agent Platform sessions go to.
    pub dws: Option<session::DwsTarget>,
}

/// Where the sending side's records go, and what it listens to: `stop` ends sending, `cut`
/// cancels requests in flight (recorded as cut off with what had arrived).
pub struct Channels {
    pub out: tokio::sync::mpsc::UnboundedSender<RequestRecord>,
    pub stop: tokio::sync::watch::Receiver<bool>,
    pub cut: tokio::sync::watch::Receiver<bool>,
    pub live: std::sync::Arc<crate::live::LiveStats>,
}

/// When one request was meant to go, and when its task got to it.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub seq: usize,
    pub intended: Instant,
    /// The request's task started (lateness = started − intended).
    pub started: Instant,
    pub warmup: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The record of a request before anything is sent: also what a request that never went out
/// (skipped, or cut off while queued) is recorded as.
pub fn unsent(t: &Target, p: &Prepared, slot: Slot, disposition: Disposition) -> RequestRecord {
    let it = &p.interaction;
    let now = Instant::now();
    RequestRecord {
        schema: RESULT_SCHEMA.into(),
        seq: slot.seq,
        id: it.id.clone(),
        feature: it.feature.clone(),
        method: it.request.method.clone(),
        path: it.request.path.clone(),
        stream: it.streams(),
        sent_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        sent_ms: ms(now.saturating_duration_since(t.run_start)),
        intended_ms: ms(slot.intended.saturating_duration_since(t.run_start)),
        lateness_ms: ms(slot.started.saturating_duration_since(slot.intended)),
        queue_wait_ms: ms(now.saturating_duration_since(slot.started)),
        warmup: slot.warmup,
        disposition,
        nonce: None,
        status: None,
        headers: Map::new(),
        framing: None,
        headers_ms: None,
        first_content_ms: None,
        last_content_ms: None,
        end_ms: 0.0,
        chunks: Vec::new(),
        content: String::new(),
        events: Vec::new(),
        json_shape: None,
        usage: None,
        output_tokens: None,
        tokens_estimated: false,
        token_source: None,
        content_events: 0,
        multi_event_reads: 0,
        multi_token_chunks: false,
        stale_connection: false,
        finish_reason: None,
        asked_model: p.asked_model.clone(),
        served_model: None,
        error: None,
        session: None,
    }
}

/// Sends `p` now and measures it. Never fails: failures are recorded by class; when `cancel`
/// resolves first, the request is recorded as cut off with what had arrived.
pub async fn send(
    t: &Target,
    p: &Prepared,
    slot: Slot,
    cancel: impl Future<Output = ()>,
) -> RequestRecord {
    let mut rec = unsent(t, p, slot, Disposition::Completed);
    let grpc = p.interaction.protocol == "grpc";
    let planted = planted_json(t, p, &mut rec, grpc);
    let body = match (&planted, grpc) {
        (_, true) => None,
        (Some(json), false) => Some(bytes::Bytes::from(json.to_string())),
        (None, false) => p.body.clone(),
    };
    let sent = Instant::now();
    let work = async {
        match grpc {
            true => {
                session::exchange(t, p, planted.as_ref().or(p.json.as_ref()), sent, &mut rec).await
            }
            false => exchange(t, p, body, sent, &mut rec).await,
        }
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout(t.timeout, work) => Some(r),
        () = cancel => None,
    };
    rec.end_ms = ms(sent.elapsed());
    let error = match outcome {
        None => {
            rec.disposition = Disposition::CutOff;
            None
        }
        Some(Err(_)) => Some((
            ErrorClass::Timeout,
            format!("no complete answer within {:.1} s", t.timeout.as_secs_f64()),
        )),
        Some(Ok(r)) => r.err(),
    };
    rec.error = rec
        .error
        .take()
        .or(error.map(|(class, message)| RequestError { class, message }));
    finish_tokens(&mut rec, t.tokenizers.for_feature(&p.interaction.feature));
    scrub(&mut rec);
    rec
}

/// Removes secrets from what a server sent back (the shape rule on answers; both rules on error
/// messages, which may echo the request): an echoing server must not carry a token into
/// results, findings or the console.
fn scrub(rec: &mut RequestRecord) {
    if crate::redact::known_in_place(&mut rec.content) {
        for c in &mut rec.chunks {
            crate::redact::known_in_place(&mut c.content);
        }
    }
    if let Some(e) = &mut rec.error {
        e.message = crate::redact::text(&e.message);
    }
    if let Some(s) = &mut rec.session {
        for text in std::iter::once(&mut s.details).chain(s.mismatches.iter_mut()) {
            crate::redact::known_in_place(text);
        }
    }
    // Response headers were redacted as they arrived (`redact::headers`, known secrets included).
}

/// With taps, a copy of the body carrying this send's nonce (registered for the tap collector
/// and kept in the record); `None` sends the prepared body. A session carries it in its goal,
/// which the service puts in the model's prompt.
fn planted_json(
    t: &Target,
    p: &Prepared,
    rec: &mut RequestRecord,
    grpc: bool,
) -> Option<serde_json::Value> {
    let (Some((salt, correlator)), Some(json)) = (&t.correlation, &p.json) else {
        return None;
    };
    let nonce = crate::taps::nonce(*salt, rec.seq);
    let mut json = json.clone();
    let planted = match grpc {
        true => match json.pointer_mut("/startRequest/goal") {
            Some(serde_json::Value::String(goal)) => {
                goal.insert_str(0, &format!("{nonce} "));
                true
            }
            _ => false,
        },
        false => crate::taps::plant(&mut json, &nonce),
    };
    if !planted {
        return None;
    }
    correlator.register(&nonce, &rec.feature, rec.sent_ms);
    rec.nonce = Some(nonce);
    Some(json)
}

async fn exchange(
    t: &Target,
    p: &Prepared,
    body: Option<bytes::Bytes>,
    sent: Instant,
    rec: &mut RequestRecord,
) -> Result<(), (ErrorClass, String)> {
    if let Some(pool) = &t.h1 {
        return exchange_h1(t, pool, p, body, sent, rec).await;
    }
    let it = &p.interaction;
    let url = format!("{}{}", t.base_url, it.request.path);
    let method = reqwest::Method::from_bytes(it.request.method.as_bytes())
        .map_err(|e| (ErrorClass::Connect, e.to_string()))?;
    let resp = send_or_retry(t, p, &method, &url, body, rec).await?;
    rec.headers_ms = Some(ms(sent.elapsed()));
    let headers = resp.headers().iter();
    let (mut recorder, misfit) = record_head(
        rec,
        resp.status().as_u16(),
        headers.map(|(k, v)| (k.as_str(), v.to_str().unwrap_or_default())),
    );
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let bytes = match chunk {
            Ok(b) => b,
            // Marker and terminator arrived: a cut after them loses nothing.
            Err(_) if recorder.complete() => break,
            Err(e) => return Err(broke(rec, &error_chain(&e))),
        };
        recorder.chunk(rec, ms(sent.elapsed()), &bytes);
        if recorder.stopped() {
            break; // a size bound passed: the rest is not read
        }
    }
    judge(recorder, rec, misfit, sent)
}

/// [`exchange`] on the load's own HTTP/1.1 client ([`h1`]): the same record, the same classes.
async fn exchange_h1(
    t: &Target,
    pool: &h1::Pool,
    p: &Prepared,
    body: Option<bytes::Bytes>,
    sent: Instant,
    rec: &mut RequestRecord,
) -> Result<(), (ErrorClass, String)> {
    let it = &p.interaction;
    let url = format!("{}{}", t.base_url, it.request.path);
    let auth = t.auth.headers();
    let headers = p.headers.iter().chain(auth.iter());
    let request = pool
        .request(
            &it.request.method,
            &url,
            headers.map(|(k, v)| (k.as_str(), v.as_str())),
            body.as_deref(),
        )
        .map_err(|e| h1_failure(&url, &e, false))?;
    let head_only = it.request.method.eq_ignore_ascii_case("HEAD");
    let mut answer = match pool.send(&request, head_only, false).await {
        Ok(a) => a,
        Err(e) if e.stale() => {
            rec.stale_connection = true;
            let again = pool.send(&request, head_only, true).await;
            again.map_err(|e| h1_failure(&url, &e, true))?
        }
        Err(e) => return Err(h1_failure(&url, &e, false)),
    };
    rec.headers_ms = Some(ms(sent.elapsed()));
    let headers = answer.headers.iter();
    let (mut recorder, misfit) = record_head(
        rec,
        answer.status,
        headers.map(|(k, v)| (k.as_str(), v.as_str())),
    );
    loop {
        // Every piece that one read brought arrived at the same instant.
        let t_ms = ms(sent.elapsed());
        let decoded = answer.decode(|piece| recorder.chunk(rec, t_ms, piece));
        let broken = match decoded {
            Ok(()) if answer.ended() || recorder.stopped() => break,
            Ok(()) => answer.read().await.err(),
            Err(e) => Some(e),
        };
        match broken {
            // Marker and terminator arrived: a cut after them loses nothing.
            Some(_) if recorder.complete() => break,
            Some(e) => return Err(broke(rec, &e.to_string())),
            None => {}
        }
    }
    drop(answer); // a whole body gives its connection back before the record is judged
    judge(recorder, rec, misfit, sent)
}

/// The class of a request that got no answer on the load's own client.
fn h1_failure(url: &str, e: &h1::SendError, retried: bool) -> (ErrorClass, String) {
    let class = if e.out_of_descriptors() {
        ErrorClass::ClientResources
    } else if retried && e.stale() {
        ErrorClass::StaleConnection
    } else {
        ErrorClass::Connect
    };
    (class, format!("{url}: {e}"))
}

/// Writes the answer's status and headers into the record: the recorder for its body, and the
/// framing breach its head already shows, if any.
fn record_head<'h>(
    rec: &mut RequestRecord,
    status: u16,
    headers: impl Iterator<Item = (&'h str, &'h str)>,
) -> (Recorder, Option<(ErrorClass, String)>) {
    rec.status = Some(status);
    let mut ct = None;
    for (k, v) in headers {
        if k == "content-type" {
            ct.get_or_insert(v);
        }
        rec.headers.insert(k.to_owned(), json!(v));
    }
    crate::redact::headers(&mut rec.headers);
    let ct = ct.unwrap_or("");
    let framing = Framing::detect(&rec.path, ct);
    rec.framing = Some(framing);
    // A 2xx in a framing its route does not have (an HTML page on a streaming route, chat in
    // SSE): a protocol breach, even when its bytes decode.
    let misfit = framing
        .misfit(&rec.path, rec.stream, status, ct)
        .map(|m| (ErrorClass::Framing, m));
    (Recorder::new(framing, status), misfit)
}

/// The stream broke before its answer was whole.
fn broke(rec: &RequestRecord, why: &str) -> (ErrorClass, String) {
    let n = rec.chunks.len();
    (
        ErrorClass::Dropped,
        format!("stream broke after {n} chunks: {why}"),
    )
}

/// The body's verdict; a framing breach seen in the head comes first.
fn judge(
    recorder: Recorder,
    rec: &mut RequestRecord,
    misfit: Option<(ErrorClass, String)>,
    sent: Instant,
) -> Result<(), (ErrorClass, String)> {
    let judged = recorder.finish(rec, ms(sent.elapsed()));
    match misfit {
        Some(m) => Err(m),
        None => judged,
    }
}

/// Sends the request; one that met a pooled connection the server had already closed (no byte
/// of answer) is sent again, once, on a fresh connection, and the record says so.
async fn send_or_retry(
    t: &Target,
    p: &Prepared,
    method: &reqwest::Method,
    url: &str,
    body: Option<bytes::Bytes>,
    rec: &mut RequestRecord,
) -> Result<reqwest::Response, (ErrorClass, String)> {
    let auth = t.auth.headers();
    let request = |client: &reqwest::Client| {
        let mut req = client.request(method.clone(), url);
        for (k, v) in p.headers.iter().chain(auth.iter()) {
            req = req.header(k, v);
        }
        match &body {
            Some(body) => req.body(body.clone()),
            None => req,
        }
    };
    let failed = |e: &reqwest::Error, class| (class, format!("{url}: {}", error_chain(e)));
    match request(&t.client).send().await {
        Ok(r) => Ok(r),
        Err(e) if stale(&e) => {
            rec.stale_connection = true;
            request(&t.fresh).send().await.map_err(|e| match stale(&e) {
                true => failed(&e, ErrorClass::StaleConnection),
                false => failed(&e, send_error_class(&e)),
            })
        }
        Err(e) => Err(failed(&e, send_error_class(&e))),
    }
}

/// The server had ended the connection before any byte of answer: reset, or closed before a
/// message completed. A connection that could not be made (`is_connect`) is no such case.
fn stale(e: &reqwest::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    if e.is_connect() || e.is_timeout() {
        return false;
    }
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let io = err
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind);
        if matches!(
            io,
            Some(BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof)
        ) {
            return true;
        }
        cur = err.source();
    }
    error_chain(e).contains("connection closed before message completed")
}

/// A request that failed before an answer: the harness's own resources (file descriptors), or
/// the target's connection.
fn send_error_class(e: &reqwest::Error) -> ErrorClass {
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // EMFILE, ENFILE: this process or the system ran out of descriptors.
            if matches!(io.raw_os_error(), Some(23 | 24)) {
                return ErrorClass::ClientResources;
            }
        }
        cur = err.source();
    }
    let text = error_chain(e);
    if text.contains("Too many open files") || text.contains("os error 24") {
        return ErrorClass::ClientResources;
    }
    ErrorClass::Connect
}
