//! Per-chunk bookkeeping of one response body: decodes each chunk as it arrives and writes what
//! it carried into the [`RequestRecord`] (arrival time, size, content, first and last content
//! instants, usage, in-stream errors), then judges the body as a whole (HTTP status, framing).
//!
//! In: the framing, the status, and body chunks with their arrival times. Out: the filled record,
//! or the error class that failed it. No I/O, so its cost per chunk is benchmarked alone.

use super::{Chunk, ErrorClass, RequestError, RequestRecord, TokenSource};
use crate::protocol::{Breach, Decoder, Event, Framing};
use crate::tokens;

/// How much of an error body is kept in the error message.
const MAX_ERROR_BODY: usize = 512;

/// The body of one response being recorded.
pub struct Recorder {
    decoder: Decoder,
    status: u16,
    error_body: Vec<u8>,
    /// Each chunk's events, in one vector reused for the whole stream.
    events: Vec<Event>,
}

impl Recorder {
    pub fn new(framing: Framing, status: u16) -> Self {
        Self {
            decoder: Decoder::new(framing),
            status,
            error_body: Vec::new(),
            events: Vec::new(),
        }
    }

    fn success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The answer is complete in its framing (marker and terminator arrived).
    pub fn complete(&self) -> bool {
        self.decoder.complete()
    }

    /// Decoding stopped for good (a size bound passed): nothing more needs reading.
    pub fn stopped(&self) -> bool {
        self.decoder.stopped()
    }

    /// One chunk arrived `t_ms` after the send.
    pub fn chunk(&mut self, rec: &mut RequestRecord, t_ms: f64, bytes: &[u8]) {
        if !self.success() && self.error_body.len() < MAX_ERROR_BODY {
            let room = MAX_ERROR_BODY - self.error_body.len();
            self.error_body
                .extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        self.decoder.push_into(bytes, &mut self.events);
        rec.chunks.push(Chunk {
            t_ms,
            bytes: bytes.len(),
            content: String::new(),
        });
        let (success, before) = (self.success(), rec.content_events);
        apply(rec, t_ms, self.events.drain(..), success);
        rec.multi_event_reads += u64::from(rec.content_events - before > 1);
    }

    /// The body ended `t_ms` after the send: whole-body events, then the verdict on the body.
    pub fn finish(
        mut self,
        rec: &mut RequestRecord,
        t_ms: f64,
    ) -> Result<(), (ErrorClass, String)> {
        let (events, framing_result) = self.decoder.finish();
        if !events.is_empty() {
            // Whole-body framings (JSON) yield their content only once the body is complete.
            let last = rec.chunks.last().map_or(t_ms, |c| c.t_ms);
            apply(rec, last, events.into_iter(), self.success());
        }
        if !self.success() {
            let class = match self.status {
                300..=399 => ErrorClass::Http3xx,
                400..=499 => ErrorClass::Http4xx,
                _ => ErrorClass::Http5xx,
            };
            let body = String::from_utf8_lossy(&self.error_body);
            return Err((class, format!("HTTP {}: {body}", self.status)));
        }
        framing_result.map_err(breach)
    }
}

/// The error class of a framing breach.
pub fn breach(b: Breach) -> (ErrorClass, String) {
    match b {
        Breach::Framing(m) => (ErrorClass::Framing, m),
        Breach::Truncated(m) => (ErrorClass::Truncated, m),
        Breach::Oversize(m) => (ErrorClass::Oversize, m),
    }
}

/// Applies decoded events that arrived at `t` to the record (and to its last chunk).
fn apply(rec: &mut RequestRecord, t: f64, events: impl Iterator<Item = Event>, success: bool) {
    for ev in events {
        let kind = match &ev {
            Event::Content(s) if s.is_empty() => None,
            Event::Content(_) => Some("content"),
            Event::Usage(_) => Some("usage"),
            Event::Start(_) => Some("start"),
            Event::End => Some("end"),
            Event::Action(_) => Some("action"),
            Event::Error(_) => Some("error"),
            Event::Shape(_) | Event::Finish(_) => None,
        };
        if let Some(k) = kind.filter(|k| rec.events.last().is_none_or(|l| l != k)) {
            rec.events.push(k.to_owned());
        }
        match ev {
            Event::Content(text) if !text.is_empty() => {
                if success {
                    rec.first_content_ms.get_or_insert(t);
                    rec.last_content_ms = Some(t);
                    rec.content_events += 1;
                }
                rec.content.push_str(&text);
                match rec.chunks.last_mut() {
                    // The usual case: the chunk's one piece of text is moved, not copied.
                    Some(c) if c.content.is_empty() => c.content = text,
                    Some(c) => c.content.push_str(&text),
                    None => {}
                }
            }
            Event::Usage(u) => rec.usage = Some(u),
            Event::Error(m) => {
                rec.error.get_or_insert(RequestError {
                    class: ErrorClass::StreamError,
                    message: m,
                });
            }
            Event::Action(a) => rec.content.push_str(&a.to_string()),
            Event::Shape(v) => rec.json_shape = Some(v),
            Event::Finish(f) => {
                rec.finish_reason = f.reason.or(rec.finish_reason.take());
                rec.served_model = f.model.or(rec.served_model.take());
            }
            _ => {}
        }
    }
}

/// Counts tokens of content pieces with the server's own tokenizer.
pub trait TokenCounter: Send + Sync {
    fn count(&self, text: &str) -> Option<u64>;
}

/// Output tokens of a successful answer, and where the count came from: the server's `usage`;
/// else the server's tokenizer where the scenario names one; else one token per content event
/// where the framing delimits events (SSE, NDJSON); else the twin's text rule. `multi_token_chunks`
/// is set only when observed: usage counted more tokens than there were events, or the
/// tokenizer found several in one chunk.
pub fn finish_tokens(rec: &mut RequestRecord, tokenizer: Option<&dyn TokenCounter>) {
    if !rec.status.is_some_and(|s| (200..300).contains(&s)) {
        return;
    }
    let events = rec.content_events;
    let (count, source) = match (&rec.usage, tokenizer) {
        (Some(u), _) => {
            // One spare token: servers may count the end-of-sequence token, which carries no text.
            rec.multi_token_chunks = u.output_tokens > events + 1;
            (u.output_tokens, TokenSource::Usage)
        }
        (None, Some(t)) => match tokenized(rec, t) {
            Some((n, several)) => {
                rec.multi_token_chunks = several;
                (n, TokenSource::Tokenizer)
            }
            None => untokenized(rec),
        },
        (None, None) => untokenized(rec),
    };
    rec.output_tokens = Some(count);
    rec.token_source = Some(source);
    rec.tokens_estimated = !source.exact();
}

/// The count by the tokenizer: the whole content, and whether one chunk held several tokens.
fn tokenized(rec: &RequestRecord, t: &dyn TokenCounter) -> Option<(u64, bool)> {
    let total = t.count(&rec.content)?;
    let mut several = false;
    for c in rec.chunks.iter().filter(|c| !c.content.is_empty()) {
        several |= t.count(&c.content)? > 1;
    }
    Some((total, several))
}

/// The estimate when neither the server nor a tokenizer counts.
fn untokenized(rec: &RequestRecord) -> (u64, TokenSource) {
    let delimited = rec.framing.is_some_and(|f| f.delimits_events());
    if delimited && rec.content_events > 0 {
        (rec.content_events, TokenSource::Chunks)
    } else {
        (tokens::count(&rec.content) as u64, TokenSource::TextRule)
    }
}
