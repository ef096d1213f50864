//! The twin AI Gateway's last differences from the real one, over sockets: a multi-turn chat
//! sends the whole conversation upstream (history, selected code, the ReAct scratchpad), and a
//! code request's language is the real gateway's (file extension first, then the editor's
//! identifier, named as its `LanguageId`).

mod common;

use duo_harness::twin::aigw::AigwConfig;
use duo_harness::twin::vllm::BackendConfig;
use duo_harness::twin::{self, RunningStack, StackConfig};
use serde_json::{json, Value};

async fn stack() -> RunningStack {
    let mut backend = BackendConfig::new("mock", &["mock-model"]);
    backend.ttft_ms = 1.0;
    backend.itl_ms = 1.0;
    twin::start(&StackConfig {
        aigw: AigwConfig::default(),
        backends: vec![backend],
        dws: Default::default(),
        host: None,
    })
    .await
    .unwrap()
}

fn metadata(openai_base: &str) -> Value {
    json!({"provider": "custom_openai", "name": "mistral", "endpoint": openai_base,
        "api_key": "sk-test", "identifier": "custom_openai/mock-model"})
}

#[tokio::test]
async fn a_multi_turn_chat_sends_the_whole_conversation_upstream() {
    let s = stack().await;
    let urls = s.urls();
    let (tap, mut rx) = common::tap_in_front_of("mock", &urls.backends["mock"].url).await;
    let body = json!({
        "messages": [
            {"role": "user", "content": "What does this project do?"},
            {"role": "assistant", "content": "It bills customers."},
            {"role": "user", "content": "Explain the selected code",
             "current_file": {"file_path": "billing/invoice.py",
                              "data": "def total_due(invoices):\n    return sum(i.amount for i in invoices)",
                              "selected_code": true}}
        ],
        "model_metadata": metadata(&format!("{}/v1", tap.url)),
        "options": {"agent_scratchpad": {"agent_type": "react", "steps": [
            {"thought": "I should read the issue", "tool": "issue_reader",
             "tool_input": "#12", "observation": "The issue asks for open items only."}
        ]}}
    });
    let r = reqwest::Client::new()
        .post(format!("{}/v2/chat/agent", urls.aigw))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let (_, _, call) = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .expect("the upstream call within 5 s")
        .unwrap();
    let sent: Value = serde_json::from_slice(&call.request_body).unwrap();
    let messages = sent["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user", "assistant"]);
    let content = |i: usize| messages[i]["content"].as_str().unwrap();
    assert!(content(1).ends_with("What does this project do?"));
    assert_eq!(content(2), "It bills customers.");
    assert!(
        content(3).contains("return sum(i.amount for i in invoices)"),
        "{}",
        content(3)
    );
    assert!(content(3).contains("billing/invoice.py"));
    assert!(content(4).contains("Observation: The issue asks for open items only."));
    assert!(content(4).ends_with("\nThought:"));
}

/// The `lang` the twin answers for a `/v2/code/completions` request on `file_name`.
async fn lang_of(aigw: &str, openai_base: &str, file_name: &str, editor: Option<&str>) -> String {
    let mut file = json!({"file_name": file_name, "content_above_cursor": "fun main() {\n    ",
        "content_below_cursor": "\n}\n"});
    if let Some(e) = editor {
        file["language_identifier"] = json!(e);
    }
    let body = json!({"current_file": file, "model_provider": "litellm", "model_name": "mistral",
        "model_endpoint": openai_base, "model_api_key": "sk-test",
        "model_identifier": "custom_openai/mock-model", "prompt_version": 2, "prompt": null,
        "stream": false});
    let r = reqwest::Client::new()
        .post(format!("{aigw}/v2/code/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["model"]["lang"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn code_languages_are_named_as_the_real_gateway_names_them() {
    let s = stack().await;
    let urls = s.urls();
    let base = &urls.backends["mock"].openai_base;
    for (file, editor, want) in [
        ("Main.kt", None, "kotlin"),
        ("deploy", Some("shellscript"), "bash"),
        ("build.kts", Some("plaintext"), "kotlin"),
        ("app.tsx", Some("typescriptreact"), "ts"),
        ("index.js", None, "js"),
        ("main.py", Some("python"), "python"),
        ("notes.txt", Some("plaintext"), ""),
    ] {
        assert_eq!(
            lang_of(&urls.aigw, base, file, editor).await,
            want,
            "{file} {editor:?}"
        );
    }
}
