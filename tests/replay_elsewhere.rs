//! A recording replayed against another stack (issue: replay anywhere): recorded through
//! `duo-harness record` in front of one `duo-harness stack` process, replayed against a second.
//! The chat sub-features keep the model selection they were recorded with, which names the first
//! stack's backend: the preflight finds that endpoint dead and stops the run at once (exit 3,
//! naming it and the features); `--remap` moves it, and every request answers.

mod common;

use common::recorder::Recorder;
use common::{repo, run_cli, start_stack};
use serde_json::Value;
use std::path::Path;

/// The quickstart's HTTP corpus, its model settings pointed at `stack`'s backends by URL.
fn scenario_for(stack: &Value, corpus: &Path, dir: &Path, tag: &str) -> std::path::PathBuf {
    let base = |b: &str| {
        stack["backends"][b]["openai_base"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let s = dir.join(format!("{tag}.toml"));
    std::fs::write(&s, common::quickstart_on_backends(corpus, base)).unwrap();
    s
}

/// Records the default corpus replayed through a proxy in front of `stack`'s gateway.
fn record_through(stack: &Value, dir: &Path) -> std::path::PathBuf {
    let corpus = dir.join("recorded.jsonl");
    let aigw = stack["aigw"].as_str().unwrap();
    let rec = Recorder::start(aigw, &corpus, &[]);
    let original = repo().join("fixtures/corpus/duo-default.jsonl");
    let s = scenario_for(stack, &original, dir, "recording");
    let out = dir.join("recording-run");
    let args = [
        "run",
        s.to_str().unwrap(),
        "--target",
        &rec.url,
        "--out",
        out.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = run_cli(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (_, _, lines) = rec.stop();
    assert_eq!(lines.len(), 43);
    corpus
}

#[test]
fn a_recording_replays_against_another_stack_once_its_endpoints_are_moved() {
    let d = tempfile::tempdir().unwrap();
    let (first, a) = start_stack();
    let corpus = record_through(&a, d.path());
    let old_chat = a["backends"]["vllm-chat"]["openai_base"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(first); // the recording stack is gone, as when a recording travels
    let (_second, b) = start_stack();
    let s = scenario_for(&b, &corpus, d.path(), "replay");
    let target = b["aigw"].as_str().unwrap();

    // As recorded: the chat sub-features name the first stack's backend.
    let out = d.path().join("as-recorded");
    let started = std::time::Instant::now();
    let args = [
        "run",
        s.to_str().unwrap(),
        "--target",
        target,
        "--out",
        out.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = run_cli(&args);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        started.elapsed().as_secs() < 30,
        "failed at once, not after retry cycles"
    );
    assert!(
        stderr.contains(&format!("model endpoint {old_chat}"))
            && stderr.contains("duo_chat_explain_code"),
        "{stderr}"
    );
    assert_eq!(
        common::results_lines(&out.join("results.ndjson")),
        0,
        "no load was sent"
    );
    let summary = common::json_file(&out.join("summary.json"));
    assert_eq!(summary["verdict"], "error");
    assert!(!common::finding_message(&summary, "model_endpoint").is_empty());

    // Moved by the flag to the second stack's twin of it: every request answers.
    let new_chat = b["backends"]["vllm-chat"]["openai_base"].as_str().unwrap();
    let out = d.path().join("moved");
    let remap = format!("{old_chat}={new_chat}");
    let args = [
        "run",
        s.to_str().unwrap(),
        "--target",
        target,
        "--remap",
        &remap,
        "--out",
        out.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = run_cli(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let results = common::results(&out);
    assert_eq!(results.len(), 43);
    assert!(
        results.iter().all(|r| r["error"].is_null()),
        "every request answered"
    );
    let plan = common::json_file(&out.join("plan.json"));
    assert_eq!(plan["plan"]["remap"][&old_chat], new_chat);
}

#[test]
fn a_dead_model_endpoint_fails_the_preflight_with_a_hint() {
    let d = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", common::closed_port());
    let text = std::fs::read_to_string(repo().join("scenarios/quickstart.toml"))
        .unwrap()
        .replace("twin:vllm-code", &dead);
    let s = d.path().join("s.toml");
    std::fs::write(
        &s,
        text.replace("../fixtures", &format!("{}/fixtures", repo().display())),
    )
    .unwrap();
    let out = d.path().join("run");
    let (code, stdout, stderr) =
        run_cli(&["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains(&dead))
        .unwrap_or_default();
    assert!(
        line.contains("code_completions") && line.contains("code_generations"),
        "{stderr}"
    );
    assert!(line.contains("usually ends in /v1"), "{line}");
    assert_eq!(common::results_lines(&out.join("results.ndjson")), 0);
}
