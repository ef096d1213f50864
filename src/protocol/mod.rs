//! Response framings of the AIGW and of OpenAI-compatible backends, decoded incrementally.
//!
//! In: a response's route, content type and body bytes as they arrive. Out: [`Event`]s (content
//! deltas, usage, stream start/end, actions, in-band errors) and, at the end, whether the framing
//! was complete. The same decoder serves the driver (timing each chunk) and the tests (comparing
//! twin responses with captures).

pub mod chunk;
mod route;
pub mod sse;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sse::SseDecoder;
use std::borrow::Cow;

/// How a response body is framed (PROTOCOL.md §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// One JSON document (non-streaming answers, error bodies).
    Json,
    /// Raw text deltas under `text/event-stream` (`/v2/code/*`, `/v3`, `/v1/prompts`).
    RawText,
    /// Real SSE with `stream_start` / `content_chunk` / `stream_end` (`/v4/code/suggestions`).
    V4Sse,
    /// NDJSON `{"type", "data"}` lines (`/v2/chat/agent`).
    ChatNdjson,
    /// NDJSON `{"content"}` lines under `text/event-stream` (`/v2/prompts/*`).
    PromptsNdjson,
    /// OpenAI SSE `data:` chunks ending in `[DONE]` (vLLM).
    OpenAiSse,
    /// Anything else (plain-text errors).
    Text,
}

impl Framing {
    /// The stream delimits its deltas (SSE events, NDJSON lines), so a content event is one
    /// model delta; raw text and whole-body framings do not.
    pub fn delimits_events(self) -> bool {
        matches!(
            self,
            Self::OpenAiSse | Self::V4Sse | Self::ChatNdjson | Self::PromptsNdjson
        )
    }

    /// Chooses the framing from the request path and the response content type.
    pub fn detect(path: &str, content_type: &str) -> Self {
        let ct = content_type.to_ascii_lowercase();
        if ct.starts_with("application/x-ndjson") {
            Self::ChatNdjson
        } else if ct.starts_with("application/json") {
            Self::Json
        } else if ct.starts_with("text/event-stream") {
            if path.starts_with("/v4/") {
                Self::V4Sse
            } else if path.starts_with("/v2/prompts/") {
                Self::PromptsNdjson
            } else if path.ends_with("/chat/completions") || path.ends_with("/v1/completions") {
                Self::OpenAiSse
            } else {
                Self::RawText
            }
        } else {
            Self::Text
        }
    }
}

/// Token usage found in a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Usage {
    /// The model key the usage was reported under, where there is one.
    pub model: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What a chunk of body carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Content(String),
    Usage(Usage),
    Start(Value),
    End,
    Action(Value),
    /// A stream-level error reported in band (chat `error` lines).
    Error(String),
    /// A whole JSON body's shape ([`json_shape`]), for the protocol tier.
    Shape(Value),
    /// How the answer ended (`finish_reason`; chat's `action` is `tool_calls`) and the model the
    /// answer says served it. Read once per answer, from the event that finished it.
    Finish(Finish),
}

/// How an answer ended, as the server said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finish {
    pub reason: Option<String>,
    pub model: Option<String>,
}

/// A `finish_reason` as the record keeps it: the string, or (any other value) what the chunk
/// scanner calls it; `None` when absent or null.
fn reason_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        _ => Some(chunk::NOT_A_STRING.to_owned()),
    }
}

impl Finish {
    /// From an OpenAI chunk or answer: `choices[0].finish_reason` and `model` (a string only:
    /// the AIGW's `model` objects name no served model).
    fn of_openai(v: &Value) -> Self {
        Self {
            reason: reason_of(&v["choices"][0]["finish_reason"]),
            model: v["model"].as_str().map(str::to_owned),
        }
    }

    /// The event of an answer that names how it ended and no model (chat's lines).
    fn event_of(reason: &str) -> Event {
        Event::Finish(Self {
            reason: Some(reason.to_owned()),
            model: None,
        })
    }
}

/// The shape of a JSON value: keys kept, leaves replaced by their type, arrays by the shape of
/// their first element.
pub fn json_shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), json_shape(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().take(1).map(json_shape).collect()),
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => Value::Null,
    }
}

/// The largest response body a decoder takes (bytes); past it the answer is oversize.
pub const MAX_BODY_BYTES: u64 = 64 << 20;

pub use sse::MAX_LINE_BYTES;

/// Why a body is not a complete answer in its route's framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breach {
    /// Garbage, invalid UTF-8, an event the framing does not have, a content type that fits no
    /// framing.
    Framing(String),
    /// The stream ended, cleanly or not, without its route's completion marker or terminator.
    Truncated(String),
    /// A line, an event or the whole body passed its size bound; decoding stopped there.
    Oversize(String),
}

impl Breach {
    pub fn message(&self) -> &str {
        match self {
            Self::Framing(m) | Self::Truncated(m) | Self::Oversize(m) => m,
        }
    }
}

/// Incremental decoder for one response body.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    sse: SseDecoder,
    pending: Vec<u8>,
    body: Vec<u8>,
    /// Body bytes pushed so far.
    received: u64,
    /// The framing's terminator arrived (`[DONE]`, `stream_end`).
    ended: bool,
    /// The answer's completion marker arrived (a `finish_reason`, chat's finish/action/usage
    /// line, the prompts stream's usage line).
    finished: bool,
    broken: Option<Breach>,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        Self {
            framing,
            sse: SseDecoder::default(),
            pending: Vec::new(),
            body: Vec::new(),
            received: 0,
            ended: false,
            finished: false,
            broken: None,
        }
    }

    /// Whether decoding stopped for good (a size bound passed): the rest need not be read.
    pub fn stopped(&self) -> bool {
        matches!(self.broken, Some(Breach::Oversize(_)))
    }

    /// Whether the answer is complete in its framing: completion marker and terminator both
    /// arrived. A connection cut after that loses nothing.
    pub fn complete(&self) -> bool {
        self.broken.is_none()
            && match self.framing {
                Framing::OpenAiSse => self.ended && self.finished,
                Framing::V4Sse => self.ended,
                Framing::ChatNdjson | Framing::PromptsNdjson => self.finished,
                Framing::Json | Framing::Text | Framing::RawText => false,
            }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Decodes the next bytes of the body.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        self.push_into(bytes, &mut out);
        out
    }

    /// As [`push`](Self::push), appending to `out` (the driver reuses one vector per stream).
    pub fn push_into(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        if self.stopped() {
            return;
        }
        self.received += bytes.len() as u64;
        if self.received > MAX_BODY_BYTES {
            self.broken = Some(Breach::Oversize(format!(
                "the body passed {} MiB",
                MAX_BODY_BYTES >> 20
            )));
            return;
        }
        match self.framing {
            Framing::Json | Framing::Text => self.body.extend_from_slice(bytes),
            Framing::RawText => out.extend(
                self.utf8(bytes)
                    .filter(|s| !s.is_empty())
                    .map(Event::Content),
            ),
            Framing::V4Sse | Framing::OpenAiSse => {
                // Taken out for the call so that each event can update the rest of `self`.
                let mut sse = std::mem::take(&mut self.sse);
                sse.push_each(bytes, |event, data| self.sse_event(event, data, out));
                if sse.overlong() {
                    self.broken = Some(Breach::Oversize(format!(
                        "an SSE line or event passed {} MiB",
                        MAX_LINE_BYTES >> 20
                    )));
                } else if sse.invalid_utf8() {
                    self.bad("an SSE line is not UTF-8".into());
                }
                self.sse = sse;
            }
            Framing::ChatNdjson | Framing::PromptsNdjson => {
                // What was pending held no newline: only the new bytes are searched.
                let mut from = self.pending.len();
                self.pending.extend_from_slice(bytes);
                let pending = std::mem::take(&mut self.pending);
                let mut start = 0;
                while let Some(i) = memchr::memchr(b'\n', &pending[from..]) {
                    out.extend(self.ndjson_line(&pending[start..from + i]));
                    start = from + i + 1;
                    from = start;
                }
                self.pending = pending;
                self.pending.drain(..start);
                if self.pending.len() > MAX_LINE_BYTES {
                    self.pending = Vec::new();
                    self.broken = Some(Breach::Oversize(format!(
                        "an NDJSON line passed {} MiB",
                        MAX_LINE_BYTES >> 20
                    )));
                }
            }
        }
    }

    /// Ends the body. Returns the events only a complete body yields (JSON) and, as `Err`, what
    /// was wrong with the framing or what is missing from the stream.
    pub fn finish(&mut self) -> (Vec<Event>, Result<(), Breach>) {
        if self.stopped() {
            return (Vec::new(), Err(self.broken.take().expect("stopped")));
        }
        let events = match self.framing {
            Framing::Json => match serde_json::from_slice::<Value>(&self.body) {
                Ok(v) => {
                    let mut events = vec![Event::Shape(json_shape(&v))];
                    events.extend(json_events(&v));
                    events
                }
                Err(e) => self.bad(format!("body is not valid JSON: {e}")),
            },
            Framing::Text => vec![Event::Content(
                String::from_utf8_lossy(&self.body).into_owned(),
            )],
            Framing::ChatNdjson | Framing::PromptsNdjson if !self.pending.is_empty() => {
                let rest = std::mem::take(&mut self.pending);
                self.ndjson_line(&rest)
            }
            _ => Vec::new(),
        };
        if let Some(b) = self.broken.take() {
            return (events, Err(b));
        }
        let truncated = |m: &str| Err(Breach::Truncated(m.to_owned()));
        let complete = match self.framing {
            Framing::V4Sse if !self.ended => truncated("stream ended without stream_end"),
            Framing::OpenAiSse if !self.ended => truncated("stream ended without data: [DONE]"),
            Framing::OpenAiSse if !self.finished => truncated(
                "stream ended with [DONE] but no choice carried a finish_reason: the answer was cut short",
            ),
            Framing::ChatNdjson if !self.finished => {
                truncated("stream ended without a finish_reason, action or usage line")
            }
            Framing::PromptsNdjson if !self.finished => {
                truncated("stream ended without its closing usage line")
            }
            Framing::RawText if !self.pending.is_empty() => Err(Breach::Framing(
                "stream ended inside a UTF-8 sequence".into(),
            )),
            _ => Ok(()),
        };
        (events, complete)
    }

    fn utf8(&mut self, bytes: &[u8]) -> Option<String> {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => {
                self.broken
                    .get_or_insert(Breach::Framing("body is not UTF-8".into()));
                self.pending.len()
            }
        };
        let head: Vec<u8> = self.pending.drain(..valid).collect();
        Some(String::from_utf8_lossy(&head).into_owned())
    }

    fn bad(&mut self, what: String) -> Vec<Event> {
        self.broken.get_or_insert(Breach::Framing(what));
        Vec::new()
    }

    fn sse_event(&mut self, event: Option<&str>, data: &str, out: &mut Vec<Event>) {
        if (self.framing == Framing::OpenAiSse && data == "[DONE]") || event == Some("stream_end") {
            self.ended = true;
            out.push(Event::End);
            return;
        }
        let parsed = match (self.framing, event) {
            (Framing::V4Sse, Some("stream_start")) => {
                serde_json::from_str(data).map(|v| out.push(Event::Start(v)))
            }
            // The scanner of `chunk`: this runs once per token under load. Only a chunk that
            // carried nothing is looked at again for an in-band error (`{"error": …}`).
            (Framing::V4Sse, Some("content_chunk")) | (Framing::OpenAiSse, _) => chunk::parse(data)
                .map(|c| {
                    let empty = c.text.is_none() && c.usage.is_none() && !c.finished();
                    match empty.then(|| in_band_error(data)).flatten() {
                        Some(message) => out.push(Event::Error(message)),
                        None => {
                            self.finished |= c.finished();
                            // Once per answer: how it ended and what says it served it.
                            let finish = c.finish_reason.as_deref().map(|r| Finish {
                                reason: Some(r.to_owned()),
                                model: c.model.as_deref().map(str::to_owned),
                            });
                            chunk_events(c, out);
                            out.extend(finish.map(Event::Finish));
                        }
                    }
                }),
            (_, other) => {
                self.bad(format!("unexpected v4 event {other:?}"));
                return;
            }
        };
        if parsed.is_err() {
            self.bad(format!("event data is not JSON: {data:?}"));
        }
    }

    fn ndjson_line(&mut self, line: &[u8]) -> Vec<Event> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Vec::new();
        }
        // Fast path for the per-token chat lines; everything else goes through `Value`.
        if self.framing == Framing::ChatNdjson {
            if let Ok(l) = serde_json::from_slice::<ChatTextLine>(line) {
                if matches!(&*l.kind, "final_answer_delta" | "unknown") {
                    // Mock mode's only line is `unknown`; a real answer ends on a finish.
                    self.finished |= l.kind == "unknown" || l.data.finish_reason.is_some();
                    let mut out =
                        vec![Event::Content(l.data.text.unwrap_or_default().into_owned())];
                    out.extend(l.data.finish_reason.map(|r| Finish::event_of(&r)));
                    return out;
                }
            }
        }
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(_) => {
                return self.bad(format!(
                    "line is not JSON: {:?}",
                    String::from_utf8_lossy(line)
                ))
            }
        };
        if self.framing == Framing::PromptsNdjson {
            let mut out = vec![Event::Content(
                v["content"].as_str().unwrap_or_default().to_owned(),
            )];
            let usage = keyed_usage(&v["usage"]);
            self.finished |= usage.is_some();
            out.extend(usage.map(Event::Usage));
            return out;
        }
        let data = &v["data"];
        let text = || {
            vec![Event::Content(
                data["text"].as_str().unwrap_or_default().to_owned(),
            )]
        };
        match v["type"].as_str() {
            Some("final_answer_delta") => {
                let reason = reason_of(&data["finish_reason"]);
                self.finished |= reason.is_some();
                let mut out = text();
                out.extend(reason.map(|r| Finish::event_of(&r)));
                out
            }
            Some("unknown") => {
                self.finished = true;
                text()
            }
            Some("action") => {
                self.finished = true;
                vec![Event::Action(data.clone()), Finish::event_of("tool_calls")]
            }
            Some("usage") => {
                self.finished = true;
                keyed_usage(&data["usage"])
                    .map(Event::Usage)
                    .into_iter()
                    .collect()
            }
            Some("error") => vec![Event::Error(
                data["message"].as_str().unwrap_or("error").to_owned(),
            )],
            other => self.bad(format!("unknown chat event type {other:?}")),
        }
    }
}

/// `{"<model>": {"input_tokens", "output_tokens"}}` (AIGW chat and prompts v2).
fn keyed_usage(v: &Value) -> Option<Usage> {
    let (model, u) = v.as_object()?.iter().next()?;
    Some(Usage {
        model: Some(model.clone()),
        input_tokens: u["input_tokens"].as_u64().unwrap_or(0),
        output_tokens: u["output_tokens"].as_u64().unwrap_or(0),
    })
}

/// A chat NDJSON line carrying text (`final_answer_delta`, `unknown`).
#[derive(serde::Deserialize)]
struct ChatTextLine<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    data: ChatText<'a>,
}

#[derive(serde::Deserialize)]
struct ChatText<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

/// The message of an in-band error event (`data: {"error": …}`, as vLLM and OpenAI send it
/// inside a 200 stream); `None` for any other event. Only events that mention `"error"` are
/// parsed twice.
fn in_band_error(data: &str) -> Option<String> {
    memchr::memmem::find(data.as_bytes(), b"\"error\"")?;
    let v: Value = serde_json::from_str(data).ok()?;
    let e = v.get("error").filter(|e| !e.is_null())?;
    Some(match e {
        Value::String(s) => s.clone(),
        _ => e["message"]
            .as_str()
            .map_or_else(|| e.to_string(), str::to_owned),
    })
}

/// The events of one OpenAI (or v4 content) chunk.
fn chunk_events(c: chunk::ChunkFields, out: &mut Vec<Event>) {
    out.extend(c.text.map(|t| Event::Content(t.into_owned())));
    if let Some((input_tokens, output_tokens)) = c.usage {
        out.push(Event::Usage(Usage {
            model: c.model.map(Cow::into_owned),
            input_tokens,
            output_tokens,
        }));
    }
}

/// OpenAI `usage` (`prompt_tokens`, `completion_tokens`) of a whole JSON answer.
fn openai_usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u["prompt_tokens"].is_u64())?;
    Some(Usage {
        model: v["model"].as_str().map(str::to_owned),
        input_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
    })
}

/// Content and usage of a whole JSON answer, whatever route produced it.
fn json_events(v: &Value) -> Vec<Event> {
    let mut out = Vec::new();
    let text = match v {
        Value::String(s) => Some(s.clone()),
        _ => v["choices"][0]["text"]
            .as_str()
            .or(v["choices"][0]["message"]["content"].as_str())
            .or(v["content"].as_str())
            .map(str::to_owned),
    };
    out.extend(text.map(Event::Content));
    let tcm = &v["model"]["tokens_consumption_metadata"];
    let usage = openai_usage(v)
        .or_else(|| keyed_usage(&v["usage"]))
        .or_else(|| {
            tcm.is_object().then(|| Usage {
                model: v["model"]["name"].as_str().map(str::to_owned),
                input_tokens: tcm["input_tokens"].as_u64().unwrap_or(0),
                output_tokens: tcm["output_tokens"].as_u64().unwrap_or(0),
            })
        });
    out.extend(usage.map(Event::Usage));
    if v.get("choices").is_some() {
        out.push(Event::Finish(Finish::of_openai(v)));
    }
    out
}

#[cfg(test)]
mod tests;
