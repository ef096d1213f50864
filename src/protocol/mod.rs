//! Response framings of the AIGW and of OpenAI-compatible backends, decoded incrementally.
//!
//! In: a response's route, content type and body bytes as they arrive. Out: [`Event`]s (content
//! deltas, usage, stream start/end, actions, in-band errors) and, at the end, whether the framing
//! was complete. The same decoder serves the driver (timing each chunk) and the tests (comparing
//! twin responses with captures).

pub mod chunk;
pub mod sse;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sse::SseDecoder;
use std::borrow::Cow;

/// How a response body is framed (PROTOCOL.md §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// Incremental decoder for one response body.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    sse: SseDecoder,
    pending: Vec<u8>,
    body: Vec<u8>,
    ended: bool,
    broken: Option<String>,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        Self {
            framing,
            sse: SseDecoder::default(),
            pending: Vec::new(),
            body: Vec::new(),
            ended: false,
            broken: None,
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
                self.sse = sse;
            }
            Framing::ChatNdjson | Framing::PromptsNdjson => {
                self.pending.extend_from_slice(bytes);
                let pending = std::mem::take(&mut self.pending);
                let mut start = 0;
                while let Some(i) = memchr::memchr(b'\n', &pending[start..]) {
                    out.extend(self.ndjson_line(&pending[start..start + i]));
                    start += i + 1;
                }
                self.pending = pending;
                self.pending.drain(..start);
            }
        }
    }

    /// Ends the body. Returns the events only a complete body yields (JSON) and, as `Err`, what
    /// was wrong with the framing.
    pub fn finish(&mut self) -> (Vec<Event>, Result<(), String>) {
        let events = match self.framing {
            Framing::Json => match serde_json::from_slice::<Value>(&self.body) {
                Ok(v) => {
                    let mut events = vec![Event::Shape(json_shape(&v))];
                    events.extend(json_events(&v));
                    events
                }
                Err(e) => {
                    self.broken
                        .get_or_insert(format!("body is not valid JSON: {e}"));
                    Vec::new()
                }
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
        let complete = match self.framing {
            Framing::V4Sse => self
                .ended
                .then_some(())
                .ok_or("stream ended without stream_end"),
            Framing::OpenAiSse => self
                .ended
                .then_some(())
                .ok_or("stream ended without data: [DONE]"),
            Framing::RawText if !self.pending.is_empty() => {
                Err("stream ended inside a UTF-8 sequence")
            }
            _ => Ok(()),
        };
        (events, complete.map_err(str::to_owned))
    }

    fn utf8(&mut self, bytes: &[u8]) -> Option<String> {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => {
                self.broken.get_or_insert("body is not UTF-8".into());
                self.pending.len()
            }
        };
        let head: Vec<u8> = self.pending.drain(..valid).collect();
        Some(String::from_utf8_lossy(&head).into_owned())
    }

    fn bad(&mut self, what: String) -> Vec<Event> {
        self.broken.get_or_insert(what);
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
            // The scanner of `chunk`: this runs once per token under load.
            (Framing::V4Sse, Some("content_chunk")) | (Framing::OpenAiSse, _) => {
                chunk::parse(data).map(|c| chunk_events(c, out))
            }
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
                    return vec![Event::Content(l.data.text.unwrap_or_default().into_owned())];
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
            out.extend(keyed_usage(&v["usage"]).map(Event::Usage));
            return out;
        }
        let data = &v["data"];
        match v["type"].as_str() {
            Some("final_answer_delta") => vec![Event::Content(
                data["text"].as_str().unwrap_or_default().to_owned(),
            )],
            Some("unknown") => vec![Event::Content(
                data["text"].as_str().unwrap_or_default().to_owned(),
            )],
            Some("action") => vec![Event::Action(data.clone())],
            Some("usage") => keyed_usage(&data["usage"])
                .map(Event::Usage)
                .into_iter()
                .collect(),
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_framings() {
        assert_eq!(
            Framing::detect("/v4/code/suggestions", "text/event-stream; charset=utf-8"),
            Framing::V4Sse
        );
        assert_eq!(
            Framing::detect("/v2/code/completions", "text/event-stream; charset=utf-8"),
            Framing::RawText
        );
        assert_eq!(
            Framing::detect("/v2/prompts/chat/explain_code", "text/event-stream"),
            Framing::PromptsNdjson
        );
        assert_eq!(
            Framing::detect("/v2/chat/agent", "application/x-ndjson; charset=utf-8"),
            Framing::ChatNdjson
        );
        assert_eq!(
            Framing::detect("/v1/chat/completions", "text/event-stream"),
            Framing::OpenAiSse
        );
        assert_eq!(Framing::detect("/x", "text/plain"), Framing::Text);
    }

    #[test]
    fn raw_text_keeps_split_utf8_together() {
        let mut d = Decoder::new(Framing::RawText);
        let bytes = "é".as_bytes();
        assert!(d.push(&bytes[..1]).is_empty());
        assert_eq!(d.push(&bytes[1..]), vec![Event::Content("é".into())]);
        assert!(d.finish().1.is_ok());
    }

    #[test]
    fn garbage_is_a_framing_error() {
        let mut d = Decoder::new(Framing::ChatNdjson);
        d.push(b"{\"type\": \"final_answer_delta\", \"data\": {\"text\": \"a\"}}\nnot json\n");
        assert!(d.finish().1.unwrap_err().contains("not JSON"));
        let mut d = Decoder::new(Framing::OpenAiSse);
        d.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n");
        assert!(d.finish().1.unwrap_err().contains("[DONE]"));
    }
}
