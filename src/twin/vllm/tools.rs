//! OpenAI tool calling in the twin vLLM (what vLLM does with `--enable-auto-tool-choice` and a
//! tool parser), enough for the twin DWS's agent loop:
//! - the twin calls `read_file` when the request offers it, the last message is the user's, and
//!   that message names a file: a word with a dot and a short alphanumeric extension
//!   (`main.rs`), or a repository's well-known file by its upper-case stem (`README` →
//!   `README.md`, as the captured session asked "What does the README of this project say?");
//!   the call's arguments stream as `tool_calls` deltas, and the answer ends with
//!   `finish_reason: "tool_calls"`;
//! - once a tool result is in the conversation it answers with text, as a model does;
//! - a backend with `tool_calling = false` answers a request with `tools` as vLLM does without
//!   the flag: HTTP 400, `"auto" tool choice requires --enable-auto-tool-choice …`.

use serde_json::{json, Value};

/// A call the twin model makes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ToolCall {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) arguments: String,
}

/// vLLM's message when tools come to a server started without auto tool choice.
pub(super) const NO_TOOL_CHOICE: &str =
    "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set";

/// Whether a chat request offers tools.
pub(super) fn offers_tools(req: &Value) -> bool {
    req["tools"].as_array().is_some_and(|t| !t.is_empty())
}

/// The call the twin makes for this request, if any (rule in the module doc).
pub(super) fn decide(req: &Value) -> Option<ToolCall> {
    let offered = req["tools"]
        .as_array()?
        .iter()
        .any(|t| t["function"]["name"] == "read_file");
    let last = req["messages"].as_array()?.last()?;
    if !offered || last["role"] != "user" {
        return None;
    }
    let file = last["content"]
        .as_str()?
        .split_whitespace()
        .find_map(file_name)?;
    let arguments = json!({ "file_path": file }).to_string();
    let hash = file.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let id = format!("call_{hash:08x}");
    Some(ToolCall {
        id,
        name: "read_file".into(),
        arguments,
    })
}

/// Well-known repository files by the stem a user calls them.
const KNOWN: &[(&str, &str)] = &[
    ("README", "README.md"),
    ("CHANGELOG", "CHANGELOG.md"),
    ("CONTRIBUTING", "CONTRIBUTING.md"),
    ("LICENSE", "LICENSE"),
];

/// A word that names a file: `name.ext`, the extension 1 to 4 alphanumerics (trailing
/// punctuation dropped), or a well-known stem.
fn file_name(word: &str) -> Option<&str> {
    let w = word.trim_end_matches(['?', '!', ',', ';', ':', ')', '"', '\'', '.']);
    if let Some((_, file)) = KNOWN.iter().find(|(stem, _)| *stem == w) {
        return Some(file);
    }
    let (stem, ext) = w.rsplit_once('.')?;
    let name_ok = !stem.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c));
    let ext_ok = (1..=4).contains(&ext.len()) && ext.chars().all(|c| c.is_ascii_alphanumeric());
    (name_ok && ext_ok && ext.chars().any(|c| c.is_ascii_alphabetic())).then_some(w)
}

/// The arguments in stream pieces (a few characters each, as a tool parser emits them).
pub(super) fn pieces(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    chars.chunks(6).map(|c| c.iter().collect()).collect()
}

/// The `delta` of one streamed piece: the first carries the call's id, type and name.
pub(super) fn delta(call: &ToolCall, piece: &str, first: bool) -> Value {
    let mut tc = json!({"index": 0, "function": {"arguments": piece}});
    if first {
        tc["id"] = json!(call.id);
        tc["type"] = json!("function");
        tc["function"]["name"] = json!(call.name);
    }
    json!({ "tool_calls": [tc] })
}

/// The whole (non-streamed) assistant message.
pub(super) fn message(call: &ToolCall) -> Value {
    json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
    ]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(last: Value) -> Value {
        json!({"tools": [{"type": "function", "function": {"name": "read_file"}}],
               "messages": [{"role": "system", "content": "s"}, last]})
    }

    #[test]
    fn a_user_message_naming_a_file_gets_a_read_file_call() {
        let c = decide(&req(
            json!({"role": "user", "content": "What does README.md say?"}),
        ));
        let c = c.expect("a call");
        assert_eq!(c.name, "read_file");
        assert_eq!(c.arguments, r#"{"file_path":"README.md"}"#);
        assert_eq!(pieces(&c.arguments).concat(), c.arguments);
        assert!(decide(&req(json!({"role": "user", "content": "What is GitLab?"}))).is_none());
        assert!(decide(&req(json!({"role": "tool", "content": "README.md"}))).is_none());
        assert!(decide(&req(
            json!({"role": "user", "content": "version 1.5 please"})
        ))
        .is_none());
        let c = decide(&req(
            json!({"role": "user", "content": "What does the README of this project say?"}),
        ));
        assert_eq!(
            c.map(|c| c.arguments),
            Some(r#"{"file_path":"README.md"}"#.to_owned())
        );
    }
}
