//! Taps inside a run: where the time goes.
//!
//! In: the scenario's `[[tap]]`s and the backends they stand in front of; during the run, every
//! upstream model call the taps see, and the nonce → request map the driver fills as it sends.
//! Out: `taps.ndjson` (one line per upstream call, with the request and feature it belongs to)
//! and per feature the backend's own TTFT and E2E, the gateway's wait before its upstream call,
//! and retries (several upstream calls for one request).
//!
//! Correlation: with taps on, the harness prepends a nonce (`dhn-` and 16 hex digits, unique per
//! send) to the longest string of each request body (the file content, the chat message, the
//! prompt input), which the gateway copies into the upstream prompt, where the tap finds it
//! again. A call without a known nonce is counted as unattributed.

use crate::measure::hist::Metric;
use crate::plan::TapSpec;
use crate::record::proxy::{Capture, Proxy};
use crate::record::writer::CorpusWriter;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The nonce of send `seq` in a run salted with `salt`.
pub fn nonce(salt: u64, seq: usize) -> String {
    // splitmix64: distinct sends give distinct, unguessable-looking nonces.
    let mut z = salt ^ (seq as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("dhn-{:016x}", z ^ (z >> 31))
}

/// Prepends `nonce` to the longest string of `body` outside the model selection; `false` if
/// the body has no string to carry it.
pub fn plant(body: &mut Value, nonce: &str) -> bool {
    fn longest<'a>(v: &'a mut Value, best: &mut Option<&'a mut String>) {
        match v {
            Value::String(s) if best.as_ref().is_none_or(|b| s.len() > b.len()) => *best = Some(s),
            Value::Object(m) => m
                .iter_mut()
                .filter(|(k, _)| !k.starts_with("model") && k.as_str() != "role")
                .for_each(|(_, x)| longest(x, best)),
            Value::Array(a) => a.iter_mut().for_each(|x| longest(x, best)),
            _ => {}
        }
    }
    let mut best = None;
    longest(body, &mut best);
    match best {
        Some(s) => {
            s.insert_str(0, &format!("{nonce} "));
            true
        }
        None => false,
    }
}

struct Sent {
    feature: String,
    sent_ms: f64,
    calls: u32,
}

/// Nonce → the request that carried it, filled by the driver, read by the tap collector.
/// Entries older than `horizon` are pruned, so memory stays flat on long runs.
pub struct Correlator {
    sent: Mutex<HashMap<String, Sent>>,
    horizon_ms: f64,
}

impl Correlator {
    pub fn new(horizon: Duration) -> Self {
        Self {
            sent: Mutex::default(),
            horizon_ms: horizon.as_secs_f64() * 1000.0,
        }
    }

    pub fn register(&self, nonce: &str, feature: &str, sent_ms: f64) {
        let mut m = self.sent.lock().expect("correlator lock");
        if m.len() % 4096 == 4095 {
            let cut = sent_ms - self.horizon_ms;
            m.retain(|_, s| s.sent_ms >= cut);
        }
        let s = Sent {
            feature: feature.to_owned(),
            sent_ms,
            calls: 0,
        };
        m.insert(nonce.to_owned(), s);
    }

    /// The feature and send time of the request behind `nonce`, and whether this call is a
    /// repeat (a retry) for it.
    fn attribute(&self, nonce: &str) -> Option<(String, f64, bool)> {
        let mut m = self.sent.lock().expect("correlator lock");
        let s = m.get_mut(nonce)?;
        s.calls += 1;
        Some((s.feature.clone(), s.sent_ms, s.calls > 1))
    }
}

/// One feature's view from the backends.
#[derive(Debug, Clone, Default)]
pub struct BackendAgg {
    pub calls: u64,
    /// Upstream calls beyond the first for the same request.
    pub retries: u64,
    /// First content at the backend, from the upstream call's arrival at the tap.
    pub ttft: Metric,
    /// End of the upstream answer, from its arrival at the tap.
    pub e2e: Metric,
    /// From the client's send to the upstream call's arrival: the gateway's time before it
    /// asked the model (auth, prompt assembly, queueing, earlier failed tries).
    pub upstream_wait: Metric,
    /// Calls by (tap, upstream model).
    pub observed: BTreeMap<(String, String), u64>,
}

/// Everything the taps saw.
#[derive(Debug, Clone, Default)]
pub struct TapAgg {
    pub features: BTreeMap<String, BackendAgg>,
    /// Per tap: calls seen, and calls no request could be found for.
    pub calls: BTreeMap<String, (u64, u64)>,
}

/// A running tap: its URL and the task serving it.
pub struct RunningTap {
    pub spec: TapSpec,
    pub url: String,
    /// The backend it forwards to.
    pub upstream: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RunningTap {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Starts a tap proxy for `spec` in front of `upstream`; its captures go to `out`, tagged with
/// the tap's index.
pub async fn start(
    spec: &TapSpec,
    index: usize,
    upstream: &str,
    client: reqwest::Client,
    out: mpsc::UnboundedSender<(usize, Instant, Capture)>,
) -> std::io::Result<RunningTap> {
    let listen = spec.listen.as_deref().filter(|l| !l.is_empty());
    let listener = tokio::net::TcpListener::bind(listen.unwrap_or("127.0.0.1:0")).await?;
    let local = listener.local_addr()?;
    let url = match spec.advertise.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => a.trim_end_matches('/').to_owned(),
        None => format!("http://{local}"),
    };
    if listen.is_some() {
        // Said once: the address the gateway's model settings will carry.
        println!(
            "tap {}: listening on {local}; the gateway reaches it at {url}",
            spec.name()
        );
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Capture>();
    let proxy = Arc::new(Proxy::new(client, upstream, tx, 0));
    let started = proxy.started;
    tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            let _ = out.send((index, started, c));
        }
    });
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = axum::Router::new()
        .fallback(crate::record::proxy::forward)
        .with_state(proxy);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(RunningTap {
        spec: spec.clone(),
        url,
        upstream: upstream.trim_end_matches('/').to_owned(),
        server,
    })
}

/// The run's taps, started.
pub struct Taps {
    pub running: Vec<RunningTap>,
    pub calls: mpsc::UnboundedReceiver<(usize, Instant, Capture)>,
    pub correlator: Arc<Correlator>,
    pub salt: u64,
}

/// Why the taps could not start.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("[[tap]] backend '{0}': no such backend in the embedded stack")]
    NoBackend(String),
    #[error("[[tap]] '{0}' names neither a backend nor an upstream")]
    Unrouted(String),
    #[error("cannot start the tap for {tap}: {source}")]
    Start { tap: String, source: std::io::Error },
}

/// Starts one tap per spec. `backends` resolves `backend = "<name>"` (the embedded stack).
/// `client` is the run's shared client: the site's CA bundle and connect timeout apply to the
/// upstream calls the taps forward, and it never follows a redirect.
pub async fn start_all(
    specs: &[TapSpec],
    backends: Option<&crate::twin::StackUrls>,
    horizon: Duration,
    client: reqwest::Client,
) -> Result<Option<Taps>, TapError> {
    if specs.is_empty() {
        return Ok(None);
    }
    let (tx, calls) = mpsc::unbounded_channel();
    let mut running = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let upstream = match (&spec.backend, &spec.upstream) {
            (Some(b), _) => backends
                .and_then(|u| u.backends.get(b))
                .map(|u| u.url.clone())
                .ok_or_else(|| TapError::NoBackend(b.clone()))?,
            (None, Some(u)) => u.trim_end_matches('/').to_owned(),
            // The plan refuses such a tap; should one come, it is named, not a panic.
            (None, None) => return Err(TapError::Unrouted(spec.name().to_owned())),
        };
        let tap = start(spec, i, &upstream, client.clone(), tx.clone())
            .await
            .map_err(|source| TapError::Start {
                tap: spec.name().to_owned(),
                source,
            })?;
        running.push(tap);
    }
    Ok(Some(Taps {
        running,
        calls,
        correlator: Arc::new(Correlator::new(horizon)),
        salt: rand::random(),
    }))
}

impl Taps {
    /// The endpoint a model setting should use: through the tap in front of its backend.
    /// `endpoint` is the setting as written (`twin:<backend>` or a URL).
    pub fn route(&self, endpoint: &str) -> Option<String> {
        self.running
            .iter()
            .find_map(|t| match (&t.spec.backend, &t.spec.upstream) {
                (Some(b), _) => (endpoint.strip_prefix("twin:") == Some(b.as_str()))
                    .then(|| format!("{}/v1", t.url)),
                (None, Some(u)) => endpoint
                    .strip_prefix(u.trim_end_matches('/'))
                    .map(|rest| format!("{}{rest}", t.url)),
                _ => None,
            })
    }

    /// The backend behind a routed endpoint: what the preflight asks, so its question is no
    /// call of the run's in the taps.
    pub fn unroute(&self, endpoint: &str) -> String {
        self.running
            .iter()
            .find_map(|t| {
                let rest = endpoint.strip_prefix(t.url.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", t.upstream))
            })
            .unwrap_or_else(|| endpoint.to_owned())
    }

    pub fn names(&self) -> Vec<String> {
        self.running
            .iter()
            .map(|t| t.spec.name().to_owned())
            .collect()
    }
}

/// Signed milliseconds from `from` to `to`.
fn ms_between(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(from - to).as_secs_f64() * 1000.0,
    }
}

/// One line of `taps.ndjson`: which tap saw the call, when, the request it was tied to (by the
/// nonce planted in the prompt), and the call as the record stage writes a tap line (method,
/// path, model, parameters, timings).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TapLine {
    pub tap: String,
    /// The call's arrival at the tap, ms from the run's start.
    pub arrival_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// The tied request's send, ms from the run's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ms: Option<f64>,
    /// A further call for a request already seen (a gateway's retry, an agent's next step).
    #[serde(default)]
    pub retry: bool,
    /// The model the call asked for.
    #[serde(default)]
    pub model: Option<String>,
    /// The backend's first content and end, ms from the call's arrival at the tap.
    #[serde(default)]
    pub first_content_ms: Option<f64>,
    #[serde(default)]
    pub end_ms: Option<f64>,
    /// The rest of the call as the record stage writes a tap line (method, path, parameters,
    /// chunks, usage…): reported, not judged.
    #[serde(flatten)]
    pub call: Map<String, Value>,
}

/// The tap stage's collector: writes `taps.ndjson` and folds each call into a [`TapAgg`].
pub async fn collect(
    mut calls: mpsc::UnboundedReceiver<(usize, Instant, Capture)>,
    names: Vec<String>,
    correlator: Arc<Correlator>,
    run_start: Instant,
    path: std::path::PathBuf,
) -> (TapAgg, std::io::Result<()>) {
    let mut agg = TapAgg::default();
    // Every tap is reported, one that saw no call too: silence is a finding of its own.
    for n in &names {
        agg.calls.entry(n.clone()).or_default();
    }
    let mut writer = CorpusWriter::create(&path, None);
    while let Some((index, started, cap)) = calls.recv().await {
        let mut call = match crate::record::tap_line(&cap, &[]) {
            Value::Object(call) => call,
            _ => Map::new(),
        };
        let mut take = |k: &str| call.remove(k).unwrap_or(Value::Null);
        let (model, first_content_ms, end_ms) =
            (take("model"), take("first_content_ms"), take("end_ms"));
        let found = call
            .get("nonce")
            .and_then(Value::as_str)
            .and_then(|n| correlator.attribute(n));
        let (feature, sent_ms, retry) = match found {
            Some((f, s, r)) => (Some(f), Some(s), r),
            None => (None, None, false),
        };
        let line = TapLine {
            tap: names.get(index).cloned().unwrap_or_default(),
            arrival_ms: ms_between(run_start, started) + cap.arrival_offset_ms,
            feature,
            sent_ms,
            retry,
            model: model.as_str().map(str::to_owned),
            first_content_ms: first_content_ms.as_f64(),
            end_ms: end_ms.as_f64(),
            call,
        };
        agg.fold(&line);
        write(&mut writer, &line);
    }
    let written = writer.map(|_| ());
    (agg, written)
}

impl TapAgg {
    /// Folds one line of `taps.ndjson` in: counted for its tap, and, when a request was found
    /// for it (`feature`, `sent_ms`, `retry`), for that request's feature.
    pub fn fold(&mut self, line: &TapLine) {
        let counts = self.calls.entry(line.tap.clone()).or_default();
        counts.0 += 1;
        let (Some(feature), Some(sent_ms)) = (line.feature.as_deref(), line.sent_ms) else {
            counts.1 += 1;
            return;
        };
        let f = self.features.entry(feature.to_owned()).or_default();
        f.calls += 1;
        let model = line.model.clone().unwrap_or_default();
        *f.observed.entry((line.tap.clone(), model)).or_default() += 1;
        // An Agent Platform session calls the model once per agent step: its further calls are
        // the loop, not retries, and its wait is the time to its first model call.
        let agent = crate::features::lookup(feature)
            .is_some_and(|x| x.entry == crate::features::Entry::Workflow);
        f.retries += u64::from(line.retry && !agent);
        if !(agent && line.retry) {
            f.upstream_wait.record(line.arrival_ms - sent_ms);
        }
        if let Some(t) = line.first_content_ms {
            f.ttft.record(t);
        }
        if let Some(t) = line.end_ms {
            f.e2e.record(t);
        }
    }

    /// Rebuilds what the taps saw from a run folder's `taps.ndjson` (`report`): the same
    /// figures the run computed as the calls came. Unreadable lines are skipped and counted.
    pub fn read(path: &std::path::Path, names: &[String]) -> std::io::Result<(Self, usize)> {
        let mut agg = TapAgg::default();
        for n in names {
            agg.calls.entry(n.clone()).or_default();
        }
        let mut bad = 0;
        for line in std::fs::read_to_string(path)?.lines() {
            match serde_json::from_str::<TapLine>(line) {
                Ok(l) => agg.fold(&l),
                Err(_) => bad += 1,
            }
        }
        Ok((agg, bad))
    }
}

fn write(writer: &mut std::io::Result<CorpusWriter>, line: &TapLine) {
    if let Ok(w) = writer {
        let text = serde_json::to_string(line).unwrap_or_default();
        if let Err(e) = w.append(&text) {
            *writer = Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nonces_are_distinct_and_planted_where_the_prompt_is() {
        assert_ne!(nonce(1, 0), nonce(1, 1));
        assert_eq!(nonce(1, 7).len(), 20);
        let mut b = json!({"current_file": {"file_name": "a.py", "content_above_cursor": "def total(items):\n    "},
                           "model_metadata": {"endpoint": "http://a-much-longer-endpoint-url.example/v1"}});
        assert!(plant(&mut b, "dhn-0123456789abcdef"));
        assert_eq!(
            b["current_file"]["content_above_cursor"],
            "dhn-0123456789abcdef def total(items):\n    "
        );
        assert_eq!(
            crate::record::find_nonce(&b.to_string()).as_deref(),
            Some("dhn-0123456789abcdef")
        );
        assert!(!plant(&mut json!({"n": 1}), "dhn-x"));
    }

    #[test]
    fn repeats_of_a_nonce_are_retries() {
        let c = Correlator::new(Duration::from_secs(60));
        c.register("dhn-a", "duo_chat", 5.0);
        assert_eq!(c.attribute("dhn-a"), Some(("duo_chat".into(), 5.0, false)));
        assert_eq!(c.attribute("dhn-a"), Some(("duo_chat".into(), 5.0, true)));
        assert_eq!(c.attribute("dhn-b"), None);
    }
}
