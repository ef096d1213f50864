//! How the twin AIGW turns model output into its four streaming framings (PROTOCOL.md §0):
//! raw text deltas, v4 SSE with CRLF, classic-chat NDJSON, and prompts-v2 NDJSON; plus the two
//! measurement-distorting behaviours, the one-chunk lag (§8.1) and generation line buffering
//! (§8.2), each switchable.
//!
//! In: a [`Source`] of upstream [`Item`]s. Out: an HTTP body whose chunks are written as they are
//! produced (each `send` becomes one HTTP/1.1 chunk).

use super::upstream::{Item, UpstreamError, Usage};
use crate::twin::pyjson;
use axum::body::{Body, Bytes};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::VecDeque;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

type Upstream = BoxStream<'static, Result<Item, UpstreamError>>;

enum State {
    Opening(BoxFuture<'static, Result<Upstream, UpstreamError>>),
    Streaming(Upstream),
    Done,
}

/// Model output as the AIGW's prompt layer yields it: upstream items (one-chunk lag optional),
/// then one final empty item carrying the usage, as `Prompt.astream` does.
pub struct Source {
    state: State,
    lag: bool,
    held: Option<Item>,
    usage: Option<Usage>,
    final_usage_item: bool,
    ready: VecDeque<Result<Item, UpstreamError>>,
    /// The whole answer arrived at once (mock mode, streaming disabled).
    pub whole: bool,
}

impl Source {
    /// A live upstream stream, opened when the body starts.
    pub fn live(open: BoxFuture<'static, Result<Upstream, UpstreamError>>, lag: bool) -> Self {
        Self {
            state: State::Opening(open),
            lag,
            held: None,
            usage: None,
            final_usage_item: true,
            ready: VecDeque::new(),
            whole: false,
        }
    }

    /// A whole answer, emitted as one item (plus the usage item when `usage` is known).
    pub fn whole(text: String, usage: Option<Usage>) -> Self {
        let mut ready = VecDeque::new();
        ready.push_back(Ok(Item {
            content: text,
            usage: None,
        }));
        let final_usage_item = usage.is_some();
        Self {
            state: State::Done,
            lag: false,
            held: None,
            usage,
            final_usage_item,
            ready,
            whole: true,
        }
    }

    /// An answer that failed before its first item.
    pub fn failed(e: UpstreamError) -> Self {
        let ready = VecDeque::from([Err(e)]);
        Self {
            state: State::Done,
            lag: false,
            held: None,
            usage: None,
            final_usage_item: false,
            ready,
            whole: true,
        }
    }

    /// The usage seen so far (complete once `next` returned `None`).
    pub fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    pub async fn next(&mut self) -> Option<Result<Item, UpstreamError>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            match &mut self.state {
                State::Opening(open) => match open.await {
                    Ok(s) => self.state = State::Streaming(s),
                    Err(e) => {
                        self.state = State::Done;
                        self.final_usage_item = false;
                        return Some(Err(e));
                    }
                },
                State::Streaming(s) => match s.next().await {
                    Some(Ok(mut item)) => {
                        // Usage travels only on the final item, as Prompt.astream attaches it.
                        if let Some(u) = item.usage.take() {
                            self.usage = Some(u);
                        }
                        if !self.lag {
                            self.ready.push_back(Ok(item));
                        } else if let Some(prev) = self.held.replace(item) {
                            self.ready.push_back(Ok(prev));
                        }
                    }
                    Some(Err(e)) => {
                        self.state = State::Done;
                        self.held = None;
                        self.final_usage_item = false;
                        return Some(Err(e));
                    }
                    None => {
                        self.state = State::Done;
                        self.ready.extend(self.held.take().map(Ok));
                    }
                },
                State::Done => {
                    if !std::mem::take(&mut self.final_usage_item) {
                        return None;
                    }
                    // A live stream ends with LangChain's empty trailing chunk, then the item
                    // that carries the usage: three empty items in all after the text, as the
                    // real gateway's v4 and v2-prompt streams show.
                    if !self.whole {
                        self.ready.push_back(Ok(Item {
                            content: String::new(),
                            usage: None,
                        }));
                    }
                    self.ready.push_back(Ok(Item {
                        content: String::new(),
                        usage: self.usage.clone(),
                    }));
                }
            }
        }
    }
}

/// Writes body chunks; every `send` is one HTTP chunk on the wire.
pub struct Sink(mpsc::Sender<Result<Bytes, std::io::Error>>);

impl Sink {
    async fn send(&self, s: String) -> bool {
        self.0.send(Ok(Bytes::from(s))).await.is_ok()
    }
    /// Ends the response without the terminating chunk (the connection drops).
    async fn abort(&self, why: &UpstreamError) {
        let _ = self
            .0
            .send(Err(std::io::Error::other(why.to_string())))
            .await;
    }
}

/// Runs `produce` in its own task and returns the body it writes.
pub fn body<F, Fut>(produce: F) -> Body
where
    F: FnOnce(Sink) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(32);
    tokio::spawn(produce(Sink(tx)));
    Body::from_stream(ReceiverStream::new(rx))
}

/// A body that ends at once without the terminating chunk: the connection drops with nothing
/// sent (what the real gateway does when a stream fails before its first chunk).
pub fn closed() -> Body {
    body(|sink| async move {
        sink.abort(&UpstreamError::Protocol(
            "the stream failed before its first chunk".into(),
        ))
        .await;
    })
}

/// Splits text into complete lines for generation line buffering, dropping code-fence lines.
#[derive(Default)]
pub struct LineBuffer {
    buf: String,
}

impl LineBuffer {
    /// Adds a delta; returns the complete lines it finished, if any.
    pub fn push(&mut self, delta: &str) -> Option<String> {
        self.buf.push_str(delta);
        let cut = self.buf.rfind('\n')? + 1;
        let lines: String = self.buf.drain(..cut).collect();
        Some(strip_fences(&lines)).filter(|s| !s.is_empty())
    }
    /// What is left at the end of the stream.
    pub fn finish(&mut self) -> Option<String> {
        Some(strip_fences(&std::mem::take(&mut self.buf))).filter(|s| !s.is_empty())
    }
}

/// Removes markdown fence lines (```lang / ```), as the AIGW's generation post-processing does.
pub fn strip_fences(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|l| !l.trim_start().starts_with("```"))
        .collect()
}

/// Raw text deltas (`/v2/code/*`, `/v3`, `/v1/prompts` streams): empty deltas are not written.
pub async fn raw_text(mut src: Source, line_buffered: bool, sink: Sink) {
    let mut lines = line_buffered.then(LineBuffer::default);
    while let Some(item) = src.next().await {
        let item = match item {
            Ok(i) => i,
            Err(e) => return sink.abort(&e).await,
        };
        let out = match &mut lines {
            Some(lb) => lb.push(&item.content),
            None => Some(item.content).filter(|c| !c.is_empty()),
        };
        if let Some(text) = out {
            if !sink.send(text).await {
                return;
            }
        }
    }
    if let Some(rest) = lines.as_mut().and_then(LineBuffer::finish) {
        sink.send(rest).await;
    }
}

fn sse(event: &str, data: &str) -> String {
    format!("event: {event}\r\ndata: {data}\r\n\r\n")
}

fn content_chunk(text: &str) -> String {
    sse(
        "content_chunk",
        &pyjson::dumps(&json!({"choices": [{"delta": {"content": text}, "index": 0}]})),
    )
}

/// v4 SSE: `stream_start` (metadata), `content_chunk` per item (empty ones too, unless line
/// buffered), `stream_end` (left out, or sent first, under a [`V4Fault`]).
pub async fn v4_sse(
    mut src: Source,
    start_metadata: Value,
    line_buffered: bool,
    fault: V4Fault,
    sink: Sink,
) {
    if !sink
        .send(sse(
            "stream_start",
            &pyjson::dumps(&json!({"metadata": start_metadata})),
        ))
        .await
    {
        return;
    }
    if fault == V4Fault::EndFirst && !sink.send(sse("stream_end", "null")).await {
        return;
    }
    let mut lines = line_buffered.then(LineBuffer::default);
    while let Some(item) = src.next().await {
        let item = match item {
            Ok(i) => i,
            Err(e) => return sink.abort(&e).await,
        };
        let out = match &mut lines {
            Some(lb) => lb.push(&item.content),
            None => Some(item.content),
        };
        if let Some(text) = out {
            if !sink.send(content_chunk(&text)).await {
                return;
            }
        }
    }
    if let Some(rest) = lines.as_mut().and_then(LineBuffer::finish) {
        sink.send(content_chunk(&rest)).await;
    }
    if fault == V4Fault::None {
        sink.send(sse("stream_end", "null")).await;
    }
}

/// A v4 stream whose model failed at once: `stream_start`, then the connection drops.
pub async fn start_then_close(start_metadata: Value, sink: Sink) {
    let start = sse(
        "stream_start",
        &pyjson::dumps(&json!({"metadata": start_metadata})),
    );
    if sink.send(start).await {
        // The fallback fails a few ms later (a missing API key); the start is on the wire by then.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        sink.abort(&UpstreamError::Protocol("the fallback model failed".into()))
            .await;
    }
}

/// Stream faults of the v4 SSE framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V4Fault {
    None,
    /// No `stream_end` at all.
    DropEnd,
    /// `stream_end` right after `stream_start`, before the content (events out of order).
    EndFirst,
}

fn usage_map(u: &Usage, key: &str) -> Value {
    json!({key: {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens}})
}

/// Prompts v2 stream: NDJSON `{"content": …}` per item; the last line also carries `usage`.
pub async fn prompts_v2(mut src: Source, usage_key: Option<String>, sink: Sink) {
    while let Some(item) = src.next().await {
        let item = match item {
            Ok(i) => i,
            Err(e) => return sink.abort(&e).await,
        };
        let mut line = json!({"content": item.content});
        if let Some(u) = &item.usage {
            line["usage"] = usage_map(u, usage_key.as_deref().unwrap_or(&u.model));
        }
        if !sink.send(format!("{line}\n")).await {
            return;
        }
    }
}

fn chat_line(kind: &str, data: Value) -> String {
    format!("{}\n", pyjson::dumps(&json!({"type": kind, "data": data})))
}

const FINAL_ANSWER: &str = "Final Answer:";

/// Classic chat NDJSON (`/v2/chat/agent`): parses the ReAct text as it streams and emits
/// `final_answer_delta`s after `Final Answer:`, or an `action`, or `unknown`; then `usage`.
pub async fn chat(mut src: Source, usage_key: Option<String>, sink: Sink) {
    let mut text = String::new();
    let mut emitted: Option<usize> = None;
    let mut started = false;
    while let Some(item) = src.next().await {
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                sink.send(chat_line(
                    "error",
                    json!({"message": e.to_string(), "retryable": false}),
                ))
                .await;
                return;
            }
        };
        text.push_str(&item.content);
        if emitted.is_none() {
            emitted = text.find(FINAL_ANSWER).map(|i| i + FINAL_ANSWER.len());
            if let Some(start) = emitted {
                let lead = text[start..].len() - text[start..].trim_start().len();
                emitted = Some(start + lead);
            }
        }
        if src.whole {
            continue;
        }
        if let Some(mut from) = emitted.filter(|from| *from < text.len()) {
            if !started {
                // The answer's first delta starts at its first word: the space after
                // `Final Answer:` may arrive in a chunk of its own.
                from += text[from..].len() - text[from..].trim_start().len();
                emitted = Some(from);
                if from == text.len() {
                    continue;
                }
                started = true;
            }
            let delta = &text[from..];
            if !sink
                .send(chat_line(
                    "final_answer_delta",
                    json!({"text": delta, "finish_reason": null}),
                ))
                .await
            {
                return;
            }
            emitted = Some(text.len());
        }
    }
    let ended = match emitted {
        Some(from) if src.whole => chat_line(
            "final_answer_delta",
            json!({"text": &text[from..], "finish_reason": "stop"}),
        ),
        Some(_) => chat_line(
            "final_answer_delta",
            json!({"text": "", "finish_reason": "stop"}),
        ),
        None => match parse_action(&text) {
            Some(action) => chat_line("action", action),
            None => chat_line("unknown", json!({"text": text})),
        },
    };
    if !sink.send(ended).await {
        return;
    }
    if let Some(u) = src.usage() {
        let key = usage_key.unwrap_or_else(|| u.model.clone());
        sink.send(chat_line("usage", json!({"usage": usage_map(u, &key)})))
            .await;
    }
}

/// `Thought: …\nAction: tool\nAction Input: …` → the action event's data.
fn parse_action(text: &str) -> Option<Value> {
    let (before, after) = text.split_once("Action:")?;
    let (tool, input) = after.split_once("Action Input:").unwrap_or((after, ""));
    let thought = before.trim().trim_start_matches("Thought:").trim();
    Some(json!({"tool": tool.trim(), "tool_input": input.trim(), "thought": thought}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_buffer_flushes_complete_lines_without_fences() {
        let mut lb = LineBuffer::default();
        assert_eq!(lb.push("```python\nreturn"), None);
        assert_eq!(lb.push(" a + b\nx"), Some("return a + b\n".into()));
        assert_eq!(lb.finish(), Some("x".into()));
    }

    #[test]
    fn parses_actions() {
        let a = parse_action("Thought: need the issue\nAction: issue_reader\nAction Input: #12")
            .unwrap();
        assert_eq!(a["tool"], "issue_reader");
        assert_eq!(a["tool_input"], "#12");
        assert_eq!(a["thought"], "need the issue");
    }
}
