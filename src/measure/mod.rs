//! Per-request measurement records and the `results.ndjson` sink
//! (`schemas/result-v1.schema.json`).
//!
//! In: what the driver observed (send instant, headers, every chunk with its arrival time,
//! decoded events, end, error). Out: one [`RequestRecord`] per request, appended to
//! `results.ndjson` and flushed as soon as the request ends, so an interrupted run loses nothing
//! already measured. [`hist`] holds the mergeable per-metric distributions, [`aggregate`] folds
//! records into them as they arrive, [`cpu`] is the harness's own CPU meter (per thread and per
//! core), [`probe`] its receive-side delay, [`tokenizer`] the servers' tokenizers.

pub mod aggregate;
pub mod answers;
pub mod cpu;
pub mod hist;
pub mod probe;
pub mod recorder;
pub mod session;
pub mod timeline;
pub mod tokenizer;

use crate::protocol::{Framing, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::Path;
use tokio::sync::mpsc::{error::TryRecvError, UnboundedReceiver};

/// One body chunk as it arrived.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Chunk {
    /// Arrival, milliseconds after the send.
    pub t_ms: f64,
    pub bytes: usize,
    /// Content text this chunk carried (decoded per framing).
    pub content: String,
}

/// Error classes counted in the summary.
#[derive(
    Debug,
    Clone,
    Copy,
    Serialize,
    Deserialize,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Could not connect, or the connection failed before a response.
    Connect,
    /// No complete answer within the request timeout.
    Timeout,
    /// HTTP 3xx: a redirect, recorded as it is and never followed (a body with a model key is
    /// not re-sent elsewhere).
    Http3xx,
    /// HTTP 4xx.
    Http4xx,
    /// HTTP 5xx (and other non-2xx statuses).
    Http5xx,
    /// The body broke its framing (garbage, missing terminator).
    Framing,
    /// The connection dropped mid-stream.
    Dropped,
    /// The server reported an error inside a 200 stream.
    StreamError,
    /// The stream ended without its route's completion marker or terminator (a `finish_reason`,
    /// `[DONE]`, `stream_end`, chat's finish or usage line), even if the body closed cleanly.
    Truncated,
    /// A line, an event or the whole body passed the harness's size bound; reading stopped.
    /// For a gRPC session: a message past the 4 MiB limit.
    Oversize,
    /// A gRPC session ended with a status its case did not expect (a failed workflow,
    /// `UNAUTHENTICATED`, `INVALID_ARGUMENT`…).
    GrpcStatus,
    /// The harness itself ran out of a resource (file descriptors): the client's failure,
    /// never the target's.
    ClientResources,
    /// The server had ended the connection before any byte of answer, on the pooled connection
    /// and again on a fresh one (a request whose fresh retry answers is not an error).
    StaleConnection,
}

impl ErrorClass {
    /// The class's name as written in results and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Http3xx => "http3xx",
            Self::Http4xx => "http4xx",
            Self::Http5xx => "http5xx",
            Self::Framing => "framing",
            Self::Dropped => "dropped",
            Self::StreamError => "stream_error",
            Self::Truncated => "truncated",
            Self::Oversize => "oversize",
            Self::GrpcStatus => "grpc_status",
            Self::ClientResources => "client_resources",
            Self::StaleConnection => "stale_connection",
        }
    }
}

/// Where a request's output token count came from.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The server's own `usage` figures.
    Usage,
    /// The content re-encoded with the tokenizer the scenario names (the server's).
    Tokenizer,
    /// No usage, no tokenizer, an event-per-delta stream: one token per content event
    /// (estimated; exact for servers that stream one token per event, as llama.cpp does).
    Chunks,
    /// No usage, no tokenizer, no event boundaries: the twin's documented text rule
    /// (estimated, the roughest).
    TextRule,
}

impl TokenSource {
    /// Counted by the server or its tokenizer, not estimated.
    pub fn exact(self) -> bool {
        matches!(self, Self::Usage | Self::Tokenizer)
    }
}

/// A failed request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct RequestError {
    pub class: ErrorClass,
    pub message: String,
}

/// How a scheduled request ended up.
#[derive(
    Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Sent, and answered or failed on its own.
    #[default]
    Completed,
    /// Still in flight when the drain's grace period ran out (or the run was interrupted).
    CutOff,
    /// Not sent: every concurrency slot was busy under `cap_policy = "skip"`.
    Skipped,
}

/// Whether a request asked for a stream: one feature's streamed and non-streamed answers are
/// different figures (a whole answer's first byte is its last).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StreamMode {
    Streamed,
    NonStreamed,
}

impl StreamMode {
    pub fn of(stream: bool) -> Self {
        if stream {
            Self::Streamed
        } else {
            Self::NonStreamed
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Streamed => "streamed",
            Self::NonStreamed => "non-streamed",
        }
    }
}

/// Everything measured about one request.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestRecord {
    pub schema: String,
    pub seq: usize,
    pub id: String,
    pub feature: String,
    pub method: String,
    pub path: String,
    pub stream: bool,
    /// Wall-clock send time (RFC 3339).
    pub sent_at: String,
    /// Send, milliseconds after the run started.
    pub sent_ms: f64,
    /// When the schedule meant it to be sent, ms after the run started.
    pub intended_ms: f64,
    /// Harness lateness: the request task started this long after its intended instant.
    pub lateness_ms: f64,
    /// Time spent waiting for a concurrency slot (between the task's start and the send).
    pub queue_wait_ms: f64,
    /// Sent during the warm-up: recorded, left out of the figures.
    pub warmup: bool,
    pub disposition: Disposition,
    /// With taps: the nonce planted in this request's content (`taps.ndjson` names it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub status: Option<u16>,
    /// Response headers (secrets redacted).
    pub headers: Map<String, Value>,
    pub framing: Option<Framing>,
    /// Response headers arrived, ms after send.
    pub headers_ms: Option<f64>,
    /// First content-bearing chunk, ms after send (TTFT).
    pub first_content_ms: Option<f64>,
    /// Last content-bearing chunk, ms after send (E2E).
    pub last_content_ms: Option<f64>,
    /// Body complete (or failed), ms after send.
    pub end_ms: f64,
    pub chunks: Vec<Chunk>,
    /// The whole content, concatenated.
    pub content: String,
    /// The stream's structure: event kinds in order (`start`, `content`, `usage`, `action`,
    /// `error`, `end`), repeats collapsed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// A JSON answer's shape (keys and value types), for the protocol tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_shape: Option<Value>,
    pub usage: Option<Usage>,
    /// Output tokens: from `usage`, else counted as `token_source` says.
    pub output_tokens: Option<u64>,
    /// The count is an estimate (`token_source` is `chunks` or `text_rule`).
    pub tokens_estimated: bool,
    /// Where `output_tokens` came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_source: Option<TokenSource>,
    /// Content-bearing events decoded (SSE events, NDJSON lines; reads for raw text).
    #[serde(default)]
    pub content_events: u64,
    /// Reads that carried more than one content event: events batched on the way (or read
    /// late), so the gap between reads is not the time between tokens.
    #[serde(default)]
    pub multi_event_reads: u64,
    /// Some content event was observed to hold more than one token: usage counted more tokens
    /// than there were events, or the tokenizer found several in one. Never set by a guess.
    pub multi_token_chunks: bool,
    /// The request first went on a pooled connection the server had already ended (no byte of
    /// answer), and was sent again once on a fresh one: what this record measured.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale_connection: bool,
    /// How the answer ended, as the server said (`stop`, `length`, `tool_calls`…; `None`: it
    /// said nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// A direct OpenAI target: the model the request asked for...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_model: Option<String>,
    /// ...and the model the answer says served it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    pub error: Option<RequestError>,
    /// An Agent Platform session's own record (gRPC lines only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<session::SessionRecord>,
}

impl RequestRecord {
    /// Completed without error.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.disposition == Disposition::Completed
    }
    /// Counted as a failure: an error on a request that was not cut off.
    pub fn failed(&self) -> bool {
        self.error.is_some() && self.disposition == Disposition::Completed
    }
    pub fn ttft_ms(&self) -> Option<f64> {
        self.first_content_ms
    }
    /// TTFT from the intended send: what a user arriving on schedule waited (queueing and
    /// harness lateness included; free of coordinated omission).
    pub fn ttft_from_intended_ms(&self) -> Option<f64> {
        Some(self.first_content_ms? + self.sent_ms - self.intended_ms)
    }
    pub fn e2e_ms(&self) -> Option<f64> {
        self.last_content_ms
    }
    /// The answer came as one content event (a non-streamed body, or a stream of one event):
    /// its TTFT is the time to the whole answer, and TPOT and ITL are not measurable.
    pub fn single_event(&self) -> bool {
        // Records written before `content_events` was counted read it as 0: their timing says.
        self.first_content_ms.is_some()
            && (self.content_events == 1 || self.first_content_ms == self.last_content_ms)
    }
    /// Gaps between consecutive content chunks (vLLM's ITL, AIPerf's ICL).
    pub fn content_gaps_ms(&self) -> Vec<f64> {
        let times: Vec<f64> = self
            .chunks
            .iter()
            .filter(|c| !c.content.is_empty())
            .map(|c| c.t_ms)
            .collect();
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }
    /// (E2E − TTFT) / (output tokens − 1): vLLM's TPOT, GuideLLM's and AIPerf's ITL.
    pub fn tpot_ms(&self) -> Option<f64> {
        if self.single_event() {
            return None; // one event holds the whole answer: no time between its tokens
        }
        let n = self.output_tokens?;
        let span = self.e2e_ms()? - self.ttft_ms()?;
        (n > 1).then(|| span / (n - 1) as f64)
    }
}

/// The schema id of result lines.
pub const RESULT_SCHEMA: &str = "duo-harness/result/v1";

/// Appends records to `results.ndjson`, whole lines only: lines gather in a buffer written out
/// when it passes [`FLUSH_BYTES`] and whenever no record is waiting ([`ResultsSink::flush`]), so
/// a busy run makes one write per many records and an idle one leaves nothing unwritten. A
/// write that fails (a full disk) is undone back to the last whole line, so the file never ends
/// in a fragment.
pub struct ResultsSink {
    file: std::fs::File,
    keep_chunks: bool,
    /// Bytes written: the last line boundary on disk.
    written: u64,
    pending: Vec<u8>,
}

/// Buffered lines past this size are written out at once.
pub const FLUSH_BYTES: usize = 64 * 1024;

impl ResultsSink {
    /// `keep_chunks = false` leaves each line's chunk list empty (long runs: the per-request
    /// timings stay, the per-chunk detail goes).
    pub fn create(path: &Path, keep_chunks: bool) -> std::io::Result<Self> {
        Ok(Self {
            file: crate::files::create_private(path)?,
            keep_chunks,
            written: 0,
            pending: Vec::with_capacity(2 * FLUSH_BYTES),
        })
    }

    pub fn write(&mut self, mut r: RequestRecord) -> std::io::Result<()> {
        if !self.keep_chunks {
            r.chunks = Vec::new();
        }
        serde_json::to_writer(&mut self.pending, &r)?;
        self.pending.push(b'\n');
        match self.pending.len() >= FLUSH_BYTES {
            true => self.flush(),
            false => Ok(()),
        }
    }

    /// Writes the buffered lines out.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.pending) {
            use std::io::Seek;
            let _ = self.file.set_len(self.written);
            let _ = self.file.seek(std::io::SeekFrom::Start(self.written));
            self.pending.clear();
            return Err(e);
        }
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

/// Reads a `results.ndjson` back (for `report`-style re-rendering and tests).
pub fn read_results(path: &Path) -> std::io::Result<Vec<RequestRecord>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
        .collect()
}

/// The results stage: takes records as requests end, folds each into the aggregate, updates the
/// live counters, and appends it to `results.ndjson`. Runs on a thread of its own ("collector",
/// at nice 0, below the raised workers but never starved), so neither the JSON nor the file
/// writes ever hold up a tokio worker that must start a request on time. While records keep
/// coming it looks for them every 10 ms, so no sender has to wake it. Ends when every sender is
/// gone; the receiver yields the aggregate and whether every line was written. A write error
/// stops the writing, never the measuring.
pub fn collect(
    records: UnboundedReceiver<RequestRecord>,
    sink: ResultsSink,
    agg: aggregate::Aggregate,
    live: std::sync::Arc<crate::live::LiveStats>,
) -> tokio::sync::oneshot::Receiver<(aggregate::Aggregate, std::io::Result<()>)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("collector".into())
        .spawn(move || {
            crate::clock::ordinary_priority();
            let _ = tx.send(collect_blocking(records, sink, agg, &live));
        })
        .expect("the collector thread starts");
    rx
}

/// How long the collector sleeps between looks while records keep coming ([`collect`]).
/// Blocked on the channel instead, it would be woken by each record's sender: a futex call and
/// two context switches per request on the core that drives the load.
const COLLECT_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// Looks that find nothing before the collector blocks until the next record, so an idle run
/// (a long pause, a slow closed loop) costs no wake-ups.
const IDLE_LOOKS: u32 = 10;

/// The next record after a look found none: looked for once per [`COLLECT_TICK`], then
/// waited for. `None` once every sender is gone.
fn next_after_pause(records: &mut UnboundedReceiver<RequestRecord>) -> Option<RequestRecord> {
    for _ in 0..IDLE_LOOKS {
        std::thread::sleep(COLLECT_TICK);
        match records.try_recv() {
            Ok(r) => return Some(r),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
    }
    records.blocking_recv()
}

fn collect_blocking(
    mut records: UnboundedReceiver<RequestRecord>,
    mut sink: ResultsSink,
    mut agg: aggregate::Aggregate,
    live: &crate::live::LiveStats,
) -> (aggregate::Aggregate, std::io::Result<()>) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut ttft = hist::Metric::default();
    let mut written = Ok(());
    let mut next = records.blocking_recv();
    while let Some(r) = next {
        agg.add(&r);
        live.done.fetch_add(1, Relaxed);
        if r.failed() {
            live.errors.fetch_add(1, Relaxed);
        }
        if let (Some(t), false) = (r.ttft_ms(), r.warmup) {
            ttft.record(t);
            if ttft.len() % 32 == 1 {
                let p99 = ttft.p99_ms().unwrap_or_default();
                live.ttft_p99_us.store((p99 * 1000.0) as u64, Relaxed);
            }
        }
        if written.is_ok() {
            written = sink.write(r);
        }
        next = match records.try_recv() {
            Ok(r) => Some(r),
            Err(TryRecvError::Disconnected) => None,
            // Nothing waiting: what is buffered goes to disk before the thread sleeps.
            Err(TryRecvError::Empty) => {
                if written.is_ok() {
                    written = sink.flush();
                }
                next_after_pause(&mut records)
            }
        };
    }
    if written.is_ok() {
        written = sink.flush();
    }
    (agg, written)
}

#[cfg(test)]
mod collect_tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::{Duration, Instant};

    fn record(seq: u64) -> RequestRecord {
        serde_json::from_value(serde_json::json!({
            "schema": RESULT_SCHEMA, "seq": seq, "id": "r", "feature": "code_completions",
            "method": "POST", "path": "/v1/completions", "stream": true, "sent_at": "",
            "sent_ms": 0.0, "intended_ms": 0.0, "lateness_ms": 0.0, "queue_wait_ms": 0.0,
            "warmup": false, "disposition": "completed", "status": 200, "headers": {},
            "framing": "open_ai_sse", "headers_ms": 1.0, "first_content_ms": 2.0,
            "last_content_ms": 3.0, "end_ms": 4.0, "chunks": [], "content": "",
            "usage": null, "output_tokens": 2, "tokens_estimated": false,
            "multi_token_chunks": false, "error": null
        }))
        .unwrap()
    }

    fn lines(path: &Path) -> usize {
        std::fs::read_to_string(path).unwrap().lines().count()
    }

    /// An idle collector has written out what it holds, and records after a pause longer than
    /// its polling (when it blocks on the channel instead) are still collected, every one.
    #[test]
    fn records_after_an_idle_pause_are_all_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.ndjson");
        let sink = ResultsSink::create(&path, false).unwrap();
        let live = std::sync::Arc::new(crate::live::LiveStats::default());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let done = collect(
            rx,
            sink,
            aggregate::Aggregate::new(Default::default()),
            live.clone(),
        );
        for seq in 0..3 {
            tx.send(record(seq)).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while lines(&path) < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            lines(&path),
            3,
            "an idle collector leaves nothing unwritten"
        );
        std::thread::sleep(COLLECT_TICK * (IDLE_LOOKS + 5));
        for seq in 3..5 {
            tx.send(record(seq)).unwrap();
        }
        drop(tx);
        let (_agg, written) = done.blocking_recv().unwrap();
        written.unwrap();
        assert_eq!(lines(&path), 5);
        assert_eq!(live.done.load(Relaxed), 5);
    }
}
