//! Taps inside a run, through the real command line against the embedded stack: every upstream
//! call is tied to its request by the planted nonce, the backend's figures stand beside the
//! client's, and gateway retries are counted.

mod common;

use serde_json::Value;
use std::path::Path;

/// The quickstart's model settings and corpus, limited to `features`, with a tap on both twin
/// backends and `stack` as the embedded stack.
fn scenario(dir: &Path, features: &str, stack: &str) -> std::path::PathBuf {
    let text = common::quickstart_with_corpus(&format!(
        "{:?}\nfeatures = {features}",
        common::repo().join("fixtures/corpus/duo-default.jsonl")
    ));
    let p = dir.join("s.toml");
    std::fs::write(&p, format!("{text}\n[[tap]]\nbackend = \"vllm-code\"\n\n[[tap]]\nbackend = \"vllm-chat\"\n\n{stack}")).unwrap();
    p
}

fn run(s: &Path, out: &Path) -> (i32, String, Value) {
    let (code, stdout, stderr) =
        common::run_cli(&["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let sm =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    (code, format!("{stdout}{stderr}"), sm)
}

#[test]
fn every_upstream_call_is_tied_to_its_request_and_the_time_is_split() {
    let d = tempfile::tempdir().unwrap();
    let features = r#"["code_completions", "duo_chat_explain_code", "generate_commit_message"]"#;
    let out = d.path().join("run");
    let (code, log, sm) = run(&scenario(d.path(), features, ""), &out);
    assert_eq!(code, 0, "{log}");
    common::assert_schema("summary-v1.schema.json", &sm);
    for tap in ["vllm-code", "vllm-chat"] {
        assert_eq!(sm["taps"][tap]["unattributed"], 0, "{}", sm["taps"]);
    }
    for (k, f) in sm["features"].as_object().unwrap() {
        let b = &f["backend"];
        assert_eq!(
            b["calls"], f["requests"],
            "{k}: one upstream call per request"
        );
        assert_eq!(b["retries"], 0, "{k}");
        // The twin backends answer their first token after 20 ms; the gateway adds, never removes.
        assert!(b["ttft_ms"]["p50"].as_f64().unwrap() >= 20.0, "{k}: {b}");
        assert!(
            b["upstream_wait_ms"]["p50"].as_f64().unwrap() > 0.0,
            "{k}: {b}"
        );
        assert!(b["gateway_ttft_p50_ms"].as_f64().unwrap() > 0.0, "{k}: {b}");
    }
    // taps.ndjson: one line per call, each naming its tap, feature and the request's nonce.
    let taps: Vec<Value> = std::fs::read_to_string(out.join("taps.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let results: Vec<Value> = std::fs::read_to_string(out.join("results.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(taps.len(), results.len());
    for r in &results {
        let call = taps
            .iter()
            .find(|t| t["nonce"] == r["nonce"])
            .expect("a call per request");
        assert_eq!(call["feature"], r["feature"]);
        assert!(call["model"].is_string() && call["params"].is_object());
    }
}

#[test]
fn gateway_retries_against_a_failing_backend_are_counted() {
    let d = tempfile::tempdir().unwrap();
    // codestral always fails: the gateway retries each completion before it gives up.
    let stack = "[stack.aigw]\nretry_time_scale = 0.0\n\n[[stack.backend]]\nname = \"vllm-code\"\nmodels = [\"codestral-22b\"]\nfail_models = [\"codestral-22b\"]\n\n[[stack.backend]]\nname = \"vllm-chat\"\nmodels = [\"mistral-7b-instruct\"]\n";
    let (code, log, sm) = run(
        &scenario(d.path(), r#"["code_completions"]"#, stack),
        &d.path().join("run"),
    );
    assert_eq!(code, 1, "the completions fail: {log}");
    let f = &sm["features"]["code_completions"];
    let b = &f["backend"];
    assert!(
        b["calls"].as_u64().unwrap() > f["requests"].as_u64().unwrap(),
        "{b}"
    );
    assert_eq!(
        b["retries"].as_u64().unwrap(),
        b["calls"].as_u64().unwrap() - f["requests"].as_u64().unwrap()
    );
    assert!(sm["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["kind"] == "upstream_retries"));
}
