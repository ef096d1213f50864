//! How answers came, judged through the real command line against JSON-only doubles (wiremock)
//! of a direct OpenAI-compatible target (llama.cpp, vLLM): a non-streamed answer has no
//! measurable TPOT (an SLO on it judges nothing and fails, never "100 % met"); answers cut by
//! `max_tokens` are counted and may be bounded; an answer from another model than asked is a
//! routing finding; a target that does not list the model asked for fails the preflight.

mod common;

use serde_json::{json, Value};
use std::path::Path;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A direct target that lists `listed` and answers every chat completion whole, as `served`,
/// ending on `finish`.
async fn openai_double(listed: &[&str], served: &str, finish: &str) -> MockServer {
    let server = MockServer::start().await;
    let data: Vec<Value> = listed
        .iter()
        .map(|id| json!({"id": id, "object": "model"}))
        .collect();
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": data})),
        )
        .mount(&server)
        .await;
    let answer = json!({
        "id": "c1", "object": "chat.completion", "created": 1, "model": served,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "def add(a, b): return a + b"},
                     "finish_reason": finish}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
    });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&server)
        .await;
    server
}

/// Runs 6 non-streamed chat completions asking for model `m` against `uri`, with `extra` TOML.
async fn run(dir: &Path, uri: String, extra: &str) -> (i32, String, Value) {
    let lines: Vec<String> = (0..6)
        .map(|i| {
            json!({"v": 1, "id": format!("q{i}"), "feature": "code_generations", "request": {
                "method": "POST", "path": "/v1/chat/completions",
                "body": {"model": "m", "stream": false, "max_tokens": 16,
                         "messages": [{"role": "user", "content": "add two numbers"}]}}})
            .to_string()
        })
        .collect();
    std::fs::write(dir.join("c.jsonl"), lines.join("\n")).unwrap();
    let s = dir.join("s.toml");
    let scenario =
        format!("name = \"answers\"\ncorpus = \"c.jsonl\"\n[target]\nurl = \"{uri}\"\n{extra}");
    std::fs::write(&s, scenario).unwrap();
    let out = dir.join("run");
    let args = [
        "run".to_owned(),
        s.to_str().unwrap().into(),
        "--out".into(),
        out.to_str().unwrap().into(),
    ];
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        common::run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .map_or(Value::Null, |t| serde_json::from_str(&t).unwrap());
    (code, format!("{stdout}{stderr}"), summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpot_slo_on_answers_that_come_whole_judges_nothing_and_fails() {
    let server = openai_double(&["m"], "m", "stop").await;
    let d = tempfile::tempdir().unwrap();
    let (code, printed, s) = run(
        d.path(),
        server.uri(),
        "[slo.code_generations]\ntpot_ms = 50\n",
    )
    .await;
    assert_eq!(code, 1, "{printed}");
    let f = &s["features"]["code_generations"];
    assert_eq!(f["answers"]["single_event"], 6, "{f}");
    assert_eq!(
        f["latency_ms"]["tpot"]["n"], 0,
        "no TPOT from a whole answer: {f}"
    );
    assert!(
        f["goodput"]["attainment"].is_null(),
        "never '100 % met': {f}"
    );
    assert_eq!(f["goodput"]["unjudged"], 6);
    assert!(
        common::finding_message(&s, "slo").contains("judged none of 6 answers"),
        "{s}"
    );
    assert!(
        printed.contains("n/m") && printed.contains("time to the whole"),
        "{printed}"
    );
    let md = std::fs::read_to_string(d.path().join("run/report.md")).unwrap();
    assert!(
        md.contains("not measurable") && md.contains("(whole answer)"),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_cut_by_max_tokens_are_counted_and_may_be_bounded() {
    let server = openai_double(&["m"], "m", "length").await;
    let d = tempfile::tempdir().unwrap();
    let (code, printed, s) = run(d.path(), server.uri(), "").await;
    assert_eq!(code, 0, "unbounded: counted, not judged: {printed}");
    assert_eq!(
        s["features"]["code_generations"]["answers"]["finish_reasons"],
        json!({"length": 6})
    );
    let d = tempfile::tempdir().unwrap();
    let bound = "[slo.code_generations]\ne2e_ms = 60000\nmax_length_share = 0.1\n";
    let (code, printed, s) = run(d.path(), server.uri(), bound).await;
    assert_eq!(code, 1, "{printed}");
    assert!(
        common::finding_message(&s, "length_capped").contains("100.00 %"),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_from_another_model_is_a_routing_finding() {
    // Lists both, answers as the other: the preflight passes, the answers tell.
    let server = openai_double(&["m", "fallback"], "fallback", "stop").await;
    let d = tempfile::tempdir().unwrap();
    let (code, printed, s) = run(d.path(), server.uri(), "").await;
    assert_eq!(code, 1, "{printed}");
    assert_eq!(
        s["features"]["code_generations"]["answers"]["other_model"],
        json!({"m → fallback": 6})
    );
    assert!(
        common::finding_message(&s, "routing").contains("m → fallback"),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_target_without_the_model_fails_the_preflight() {
    let server = openai_double(&["fallback"], "fallback", "stop").await;
    let d = tempfile::tempdir().unwrap();
    let (code, printed, _) = run(d.path(), server.uri(), "").await;
    assert_eq!(code, 3, "{printed}");
    assert!(
        printed.contains("lists [fallback], not 'm'") && printed.contains("code_generations"),
        "{printed}"
    );
    assert_eq!(
        common::results_lines(&d.path().join("run/results.ndjson")),
        0
    );
}
