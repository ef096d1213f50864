//! Per-request measurement records and the `results.ndjson` sink
//! (`schemas/result-v1.schema.json`).
//!
//! In: what the driver observed (send instant, headers, every chunk with its arrival time,
//! decoded events, end, error). Out: one [`RequestRecord`] per request, appended to
//! `results.ndjson` and flushed as soon as the request ends, so an interrupted run loses nothing
//! already measured.

use crate::protocol::{Framing, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::Path;

/// One body chunk as it arrived.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Chunk {
    /// Arrival, milliseconds after the send.
    pub t_ms: f64,
    pub bytes: usize,
    /// Content text this chunk carried (decoded per framing).
    pub content: String,
}

/// Error classes counted in the summary.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Could not connect, or the connection failed before a response.
    Connect,
    /// No complete answer within the request timeout.
    Timeout,
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
}

/// A failed request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestError {
    pub class: ErrorClass,
    pub message: String,
}

/// Everything measured about one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    pub usage: Option<Usage>,
    /// Output tokens: from `usage`, else estimated.
    pub output_tokens: Option<u64>,
    pub tokens_estimated: bool,
    /// Whether any content chunk held more than one token (by the twin's token rule).
    pub multi_token_chunks: bool,
    pub error: Option<RequestError>,
}

impl RequestRecord {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
    pub fn ttft_ms(&self) -> Option<f64> {
        self.first_content_ms
    }
    pub fn e2e_ms(&self) -> Option<f64> {
        self.last_content_ms
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
        let n = self.output_tokens?;
        let span = self.e2e_ms()? - self.ttft_ms()?;
        (n > 1).then(|| span / (n - 1) as f64)
    }
}

/// The schema id of result lines.
pub const RESULT_SCHEMA: &str = "duo-harness/result/v1";

/// Appends records to `results.ndjson`, one flushed line each.
pub struct ResultsSink {
    file: std::io::BufWriter<std::fs::File>,
}

impl ResultsSink {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: std::io::BufWriter::new(std::fs::File::create(path)?),
        })
    }

    pub fn write(&mut self, r: &RequestRecord) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.file, r)?;
        self.file.write_all(b"\n")?;
        self.file.flush()
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
