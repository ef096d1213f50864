//! The twin DWS's model calls: the OpenAI request the captured service sends (PROTOCOL-DWS.md §8)
//! and a reader of its streamed answer (text deltas, tool-call deltas, usage).

use serde_json::{json, Value};

/// The model a session's `x-gitlab-agent-platform-model-metadata` applies.
#[derive(Debug, Clone)]
pub(super) struct Model {
    pub(super) endpoint: String,
    /// The upstream model id: `identifier` after its first `/`.
    pub(super) model: String,
    pub(super) api_key: Option<String>,
    /// The applied metadata without `api_key`: what checkpoints carry as `model_metadata_json`.
    pub(super) applied: Value,
}

/// The model of a metadata header value; `None` when it is missing or invalid (the service then
/// logs "Model metadata not applied" and falls back to GitLab's cloud default).
pub(super) fn model_from_header(value: Option<&str>) -> Option<Model> {
    let v: Value = serde_json::from_str(value?).ok()?;
    let endpoint = v["endpoint"].as_str()?.trim_end_matches('/').to_owned();
    let identifier = v["identifier"].as_str()?;
    let model = identifier
        .split_once('/')
        .map_or(identifier, |(_, m)| m)
        .to_owned();
    let api_key = v["api_key"].as_str().map(str::to_owned);
    let mut applied = v.clone();
    if let Some(o) = applied.as_object_mut() {
        o.remove("api_key");
    }
    Some(Model {
        endpoint,
        model,
        api_key,
        applied,
    })
}

/// Deterministic filler standing in for a redacted system prompt of `chars` characters.
fn system_prompt(chars: usize, topic: &str) -> String {
    let phrase = format!(
        "You are GitLab Duo, {topic}. Follow the instructions and use tools when they help. "
    );
    phrase.chars().cycle().take(chars).collect()
}

/// The request body of one model call: the legacy chat's (3 system messages, 38 tools,
/// `max_tokens` 32768) or the v1 `agentic_chat` flow's (2 system messages, no tools, 4096).
pub(super) fn body(model: &str, agentic: bool, goal: &str, turns: &[Value]) -> Value {
    let mut messages = if agentic {
        vec![
            json!({"role": "system", "content": system_prompt(13026, "the agentic chat flow")}),
            json!({"role": "system", "content": system_prompt(1292, "answering in the IDE")}),
            json!({"role": "user", "content": goal}),
        ]
    } else {
        vec![
            json!({"role": "system", "content": system_prompt(8325, "an agentic chat assistant")}),
            json!({"role": "system", "content": system_prompt(3946, "working in a GitLab project")}),
            json!({"role": "system", "content": system_prompt(1546, "with these tools")}),
            json!({"role": "user", "content": format!("\n\n{goal}")}),
        ]
    };
    messages.extend(turns.iter().cloned());
    let mut b = json!({"messages": messages, "model": model, "stream": true,
        "stream_options": {"include_usage": true}, "temperature": 0.0,
        "max_tokens": if agentic { 4096 } else { 32768 }});
    if !agentic {
        b["tools"] = super::chat_tools().clone();
    }
    b
}

/// What one streamed answer said.
#[derive(Debug, Default)]
pub(super) struct Answer {
    pub(super) text: String,
    /// A tool call: id, name, arguments (JSON text).
    pub(super) tool: Option<(String, String, String)>,
}

impl Answer {
    /// Folds one SSE `data:` payload in; returns the text it added.
    pub(super) fn fold(&mut self, data: &str) -> Option<String> {
        let v: Value = serde_json::from_str(data).ok()?;
        let delta = &v["choices"][0]["delta"];
        if let Some(tc) = delta["tool_calls"][0].as_object() {
            let t = self.tool.get_or_insert_with(Default::default);
            if let Some(id) = tc.get("id").and_then(Value::as_str) {
                t.0 = id.to_owned();
            }
            if let Some(n) = tc["function"]["name"].as_str() {
                t.1 = n.to_owned();
            }
            if let Some(a) = tc["function"]["arguments"].as_str() {
                t.2.push_str(a);
            }
        }
        let text = delta["content"].as_str().filter(|s| !s.is_empty())?;
        self.text.push_str(text);
        Some(text.to_owned())
    }
}

/// Splits complete SSE events off `buf`, returning their `data:` payloads.
pub(super) fn drain_events(buf: &mut String) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(i) = buf.find("\n\n") {
        let event: String = buf.drain(..i + 2).collect();
        for line in event.lines() {
            if let Some(d) = line.strip_prefix("data:") {
                let d = d.trim();
                if d != "[DONE]" {
                    out.push(d.to_owned());
                }
            }
        }
    }
    out
}

/// The assistant and tool turns one tool round adds to the conversation.
pub(super) fn tool_turns(id: &str, name: &str, args: &str, result: &str) -> [Value; 2] {
    [
        json!({"content": "", "role": "assistant", "tool_calls": [
            {"type": "function", "id": id, "function": {"name": name, "arguments": args}}]}),
        json!({"content": result, "role": "tool", "tool_call_id": id}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_text_and_tool_calls_are_folded() {
        let mut buf = String::from(
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{\"name\":\"read_file\",\"arguments\":\"{\\\"a\"}}]}}]}\n\n\
             data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\":1}\"}}]}}]}\n\ndata: [DONE]\n\npartial",
        );
        let mut a = Answer::default();
        for d in drain_events(&mut buf) {
            a.fold(&d);
        }
        assert_eq!(buf, "partial");
        assert_eq!(
            a.tool,
            Some(("c1".into(), "read_file".into(), "{\"a\":1}".into()))
        );
        let m = model_from_header(Some(
            r#"{"endpoint":"http://h/v1/","identifier":"custom_openai/m","api_key":"k"}"#,
        ))
        .unwrap();
        assert_eq!(
            (m.endpoint.as_str(), m.model.as_str()),
            ("http://h/v1", "m")
        );
        assert!(m.applied.get("api_key").is_none());
        assert!(model_from_header(Some("{not json")).is_none());
        let b = body("m", false, "g", &[]);
        assert_eq!(b["tools"].as_array().map(Vec::len), Some(38));
        assert_eq!(b["messages"].as_array().map(Vec::len), Some(4));
    }
}
