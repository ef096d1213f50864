//! RS256 auth end to end (a token minted by the harness, checked by the twin AIGW), secrets kept
//! off disk, and the twin vLLM's OpenAI stream and Prometheus metrics.

mod common;

use futures_util::StreamExt;
use serde_json::{json, Value};

fn key(name: &str) -> String {
    common::repo()
        .join("tests/fixtures/keys")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn jwt_scenario(dir: &std::path::Path, signing_key: &str) -> String {
    let corpus = common::repo().join("fixtures/corpus/duo-default.jsonl");
    let text = format!(
        r#"name = "jwt"
corpus = {corpus:?}
features = ["code_completions", "duo_chat"]
[target]
url = "embedded"
auth = "mint"
key_file = {signing_key:?}
[models.code_completions]
name = "codestral"
endpoint = "twin:vllm-code"
identifier = "custom_openai/codestral-22b"
api_key_env = "DUO_TEST_MODEL_KEY"
[models.duo_chat]
name = "mistral"
endpoint = "twin:vllm-chat"
identifier = "custom_openai/mistral-7b-instruct"
[stack.aigw.auth]
mode = "jwt"
public_keys = [{pubkey:?}]
"#,
        corpus = corpus.to_str().unwrap(),
        pubkey = key("throwaway-aigw.pub.pem"),
    );
    let p = dir.join("s.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

fn run_with_key(scenario: &str, out: &std::path::Path) -> (i32, String) {
    let o = std::process::Command::new(common::bin())
        .args(["run", scenario, "--out", out.to_str().unwrap()])
        .env("DUO_TEST_MODEL_KEY", "sk-secret-model-key-123")
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn minted_tokens_pass_jwt_auth_and_no_secret_reaches_disk() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let (code, log) = run_with_key(&jwt_scenario(d.path(), &key("throwaway-aigw.pem")), &out);
    assert_eq!(code, 0, "{log}");
    for f in ["results.ndjson", "summary.json", "plan.json"] {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(
            !text.contains("sk-secret-model-key-123"),
            "{f} holds the model key"
        );
        assert!(!text.contains("eyJ"), "{f} holds a JWT");
    }
}

#[test]
fn tokens_from_an_unknown_key_are_refused_with_401() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let (code, log) = run_with_key(&jwt_scenario(d.path(), &key("throwaway-other.pem")), &out);
    assert_eq!(code, 1, "{log}");
    let results = std::fs::read_to_string(out.join("results.ndjson")).unwrap();
    let first: Value = serde_json::from_str(results.lines().next().unwrap()).unwrap();
    assert_eq!(first["status"], 401);
    assert!(
        first["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Forbidden by auth provider"),
        "{first}"
    );
}

#[tokio::test]
async fn twin_vllm_streams_openai_chunks_with_usage_and_counts_metrics() {
    let mut b = duo_harness::twin::vllm::BackendConfig::new("b", &["m"]);
    b.itl_ms = 1.0;
    let server = duo_harness::twin::vllm::serve(b).await.unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url()))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "What is a merge train?"}],
                      "stream": true, "stream_options": {"include_usage": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let mut d = duo_harness::protocol::Decoder::new(duo_harness::protocol::Framing::OpenAiSse);
    let mut events = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(c) = body.next().await {
        events.extend(d.push(&c.unwrap()));
    }
    assert!(d.finish().1.is_ok(), "stream ends with [DONE]");
    use duo_harness::protocol::Event;
    let text: String = events
        .iter()
        .filter_map(|e| {
            if let Event::Content(t) = e {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect();
    let usage = events
        .iter()
        .find_map(|e| {
            if let Event::Usage(u) = e {
                Some(u.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(
        usage.output_tokens as usize,
        duo_harness::tokens::count(&text)
    );
    let wrong = reqwest::Client::new()
        .post(format!("{}/v1/completions", server.url()))
        .json(&json!({"model": "other", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    let metrics = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gen = format!(
        "vllm:generation_tokens_total{{engine=\"0\",model_name=\"m\"}} {}",
        usage.output_tokens
    );
    assert!(metrics.contains(&gen), "{metrics}");
    assert!(
        metrics.contains("vllm:time_to_first_token_seconds_count{engine=\"0\",model_name=\"m\"} 1")
    );
}

/// Every path of a scenario resolves against the scenario's folder, the `[stack]` keys too,
/// whatever the working directory.
#[test]
fn key_paths_resolve_against_the_scenario_file() {
    let d = tempfile::tempdir().unwrap();
    for f in ["throwaway-aigw.pem", "throwaway-aigw.pub.pem"] {
        std::fs::copy(key(f), d.path().join(f)).unwrap();
    }
    let text = std::fs::read_to_string(jwt_scenario(d.path(), "throwaway-aigw.pem"))
        .unwrap()
        .replace(
            &format!("{:?}", key("throwaway-aigw.pub.pem")),
            "\"throwaway-aigw.pub.pem\"",
        );
    assert!(
        text.contains("public_keys = [\"throwaway-aigw.pub.pem\"]"),
        "{text}"
    );
    std::fs::write(d.path().join("s.toml"), text).unwrap();
    let out = d.path().join("run");
    // The binary runs in the repository root, not beside the scenario.
    let (code, log) = run_with_key(d.path().join("s.toml").to_str().unwrap(), &out);
    assert_eq!(code, 0, "{log}");
}

/// The stack listens on, and names, the address its config gives (another loopback address
/// here; an address a real gateway elsewhere can reach, in use).
#[tokio::test]
async fn the_stack_serves_on_the_host_it_is_given() {
    let cfg = duo_harness::twin::StackConfig {
        host: Some("127.0.0.2".parse().unwrap()),
        ..Default::default()
    };
    let s = duo_harness::twin::start(&cfg).await.unwrap();
    let urls = s.urls();
    assert!(urls.aigw.starts_with("http://127.0.0.2:"), "{urls:?}");
    for b in urls.backends.values() {
        assert!(b.url.starts_with("http://127.0.0.2:"), "{urls:?}");
        let r = reqwest::get(format!("{}/v1/models", b.url)).await.unwrap();
        assert_eq!(r.status(), 200);
    }
}
