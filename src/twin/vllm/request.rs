//! The parts of an OpenAI chat or completions request the twin vLLM uses.

use crate::tokens;
use serde_json::Value;

/// The parts of an OpenAI request the twin uses.
pub(super) struct Parsed {
    pub(super) model: String,
    pub(super) prompt: String,
    pub(super) prompt_tokens: usize,
    pub(super) react: bool,
    pub(super) max_tokens: Option<usize>,
    /// vLLM's `ignore_eos`: generate exactly `max_tokens` (what load benchmarks use).
    pub(super) ignore_eos: bool,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
    /// The request offers tools (`tools` is a non-empty list).
    pub(super) offers_tools: bool,
    /// The call the twin model makes instead of text (`tools.rs`).
    pub(super) tool_call: Option<super::tools::ToolCall>,
}

fn message_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// `model`, `max_tokens`, `ignore_eos`, `stream` and `stream_options.include_usage`.
type Common = (String, Option<usize>, bool, bool, bool);

fn parse_common(v: &Value) -> Result<Common, String> {
    let model = v["model"]
        .as_str()
        .ok_or("'model' must be a string")?
        .to_owned();
    let max_tokens = v
        .get("max_tokens")
        .or(v.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    let ignore_eos = v["ignore_eos"].as_bool().unwrap_or(false);
    let stream = v["stream"].as_bool().unwrap_or(false);
    let include_usage = v["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    Ok((model, max_tokens, ignore_eos, stream, include_usage))
}

pub(super) fn parse_chat(v: &Value) -> Result<Parsed, String> {
    let (model, max_tokens, ignore_eos, stream, include_usage) = parse_common(v)?;
    let messages = v["messages"]
        .as_array()
        .ok_or("'messages' must be a list")?;
    let texts: Vec<String> = messages
        .iter()
        .map(|m| message_text(&m["content"]))
        .collect();
    let react = messages.last().is_some_and(|m| m["role"] == "assistant")
        && texts
            .last()
            .is_some_and(|t| t.trim_end().ends_with("Thought:"));
    Ok(Parsed {
        prompt_tokens: tokens::count_messages(texts.iter().map(String::as_str)),
        prompt: texts.join("\n"),
        model,
        react,
        max_tokens,
        ignore_eos,
        stream,
        include_usage,
        offers_tools: super::tools::offers_tools(v),
        tool_call: super::tools::decide(v),
    })
}

pub(super) fn parse_completion(v: &Value) -> Result<Parsed, String> {
    let (model, max_tokens, ignore_eos, stream, include_usage) = parse_common(v)?;
    let prompt = match &v["prompt"] {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(""),
        _ => return Err("'prompt' must be a string".into()),
    };
    Ok(Parsed {
        prompt_tokens: tokens::count(&prompt),
        prompt,
        model,
        react: false,
        max_tokens,
        ignore_eos,
        stream,
        include_usage,
        offers_tools: false,
        tool_call: None,
    })
}
