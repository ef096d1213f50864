//! The chat agent's conversation as the real gateway sends it upstream (`ReActPromptTemplate`):
//! every user and assistant message of the request in order, each user message with its
//! `context`, `current_file` (selected code or the file) and `additional_context` rendered
//! before its text, then the assistant prefill carrying the ReAct scratchpad's steps (thought,
//! action, input, observation) and an open `Thought:`.
//!
//! In: the request's `messages` and `options.agent_scratchpad.steps`. Out: the messages after
//! the system prompt. The wording is the twin's; the structure and the size are the gateway's.

use serde_json::{json, Value};

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A `context` object (an issue, an epic, a merge request…): its type, title and content.
fn context_block(c: &Value) -> String {
    let kind = text(c, "type");
    if kind.is_empty() {
        return String::new();
    }
    format!(
        "\nThe user is viewing the {kind} \"{}\":\n<{kind}>\n{}\n</{kind}>\n",
        text(c, "title"),
        text(c, "content")
    )
}

/// The editor's file: its selected code, or the whole file in view.
fn current_file_block(f: &Value) -> String {
    if !f.is_object() {
        return String::new();
    }
    let (path, data) = (text(f, "file_path"), text(f, "data"));
    match f.get("selected_code").and_then(Value::as_bool) == Some(true) {
        true => format!(
            "\nUser selected code below enclosed in <selected_code></selected_code> tags in file \
             {path} to work with:\n\n<selected_code>\n  {data}\n</selected_code>\n"
        ),
        false => format!("\nThe user is viewing the file {path}:\n<file>\n{data}\n</file>\n"),
    }
}

fn additional_blocks(items: Option<&Value>) -> String {
    let items = items.and_then(Value::as_array).map(Vec::as_slice);
    items
        .unwrap_or_default()
        .iter()
        .map(|a| {
            let category = text(a, "category");
            format!(
                "\n<{category} id=\"{}\">\n{}\n</{category}>\n",
                text(a, "id"),
                text(a, "content")
            )
        })
        .collect()
}

/// One user message as the user template renders it (the bare case is `\n\n<text>`, as
/// captured).
fn user_content(m: &Value) -> String {
    let context = m.get("context").map(context_block).unwrap_or_default();
    let file = m.get("current_file").map(current_file_block);
    format!(
        "{context}{}{}\n\n{}",
        file.unwrap_or_default(),
        additional_blocks(m.get("additional_context")),
        text(m, "content")
    )
}

/// The assistant prefill: each scratchpad step, then an open `Thought:` (`\nThought:` alone,
/// as captured, when there is none).
fn prefill(steps: &[Value]) -> String {
    let mut out: String = steps
        .iter()
        .map(|s| {
            format!(
                "\nThought: {}\nAction: {}\nAction Input: {}\nObservation: {}",
                text(s, "thought"),
                text(s, "tool"),
                text(s, "tool_input"),
                text(s, "observation")
            )
        })
        .collect();
    out.push_str("\nThought:");
    out
}

/// The messages after the system prompt. System messages of the history are not sent (the
/// template renders users and assistants only).
pub(super) fn conversation(request: &Value) -> Vec<Value> {
    let messages = request.get("messages").and_then(Value::as_array);
    let mut out: Vec<Value> = messages
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| match text(m, "role") {
            "user" => Some(json!({"role": "user", "content": user_content(m)})),
            "assistant" => Some(json!({"role": "assistant", "content": text(m, "content")})),
            _ => None,
        })
        .collect();
    let steps = request.pointer("/options/agent_scratchpad/steps");
    let steps = steps.and_then(Value::as_array).map(Vec::as_slice);
    out.push(json!({"role": "assistant", "content": prefill(steps.unwrap_or_default())}));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_question_is_sent_as_captured() {
        let r = json!({"messages": [{"role": "user", "content": "What is GitLab?",
            "context": null, "current_file": null, "additional_context": []}]});
        assert_eq!(
            conversation(&r),
            vec![
                json!({"role": "user", "content": "\n\nWhat is GitLab?"}),
                json!({"role": "assistant", "content": "\nThought:"})
            ]
        );
    }

    #[test]
    fn the_whole_history_the_selected_code_and_the_scratchpad_go_upstream() {
        let r = json!({
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "an answer"},
                {"role": "user", "content": "explain this",
                 "current_file": {"file_path": "src/a.rs", "data": "fn a() {}", "selected_code": true}}
            ],
            "options": {"agent_scratchpad": {"agent_type": "react", "steps": [
                {"thought": "look", "tool": "issue_reader", "tool_input": "#1", "observation": "an issue"}
            ]}}
        });
        let c = conversation(&r);
        let roles: Vec<&str> = c.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
        assert_eq!(c[1]["content"], "an answer");
        let selected = c[2]["content"].as_str().unwrap();
        assert!(selected.contains("<selected_code>\n  fn a() {}\n</selected_code>"));
        assert!(selected.ends_with("\n\nexplain this"));
        assert_eq!(
            c[3]["content"],
            "\nThought: look\nAction: issue_reader\nAction Input: #1\nObservation: an issue\nThought:"
        );
    }
}
