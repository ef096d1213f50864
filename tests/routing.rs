//! Routing checks and the twin's faults, through the real command line: each violation comes
//! from its fault and from nothing else.

mod common;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn run(scenario_text: &str, dir: &Path) -> (i32, String, Value) {
    run_with(scenario_text, dir, &[])
}

/// `run` with more flags (`--first-run`).
fn run_with(scenario_text: &str, dir: &Path, extra: &[&str]) -> (i32, String, Value) {
    let s = dir.join("s.toml");
    let corpus = common::repo().join("fixtures/corpus/duo-default.jsonl");
    let text = scenario_text.replace(
        "\"../fixtures/corpus/duo-default.jsonl\"",
        &format!("{corpus:?}"),
    );
    std::fs::write(&s, text).unwrap();
    // A folder per run: a run never writes into another's.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = dir.join(format!("run-{n}"));
    let mut args = vec!["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(extra);
    let (code, stdout, stderr) = common::run_cli(&args);
    let sm =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    (code, format!("{stdout}{stderr}"), sm)
}

/// (kind, feature) of every finding a test can expect exactly.
fn findings(sm: &Value) -> BTreeSet<(String, String)> {
    common::judged_findings(sm)
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["feature"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn shipped() -> String {
    std::fs::read_to_string(common::repo().join("scenarios/faults-misroute.toml")).unwrap()
}

#[test]
fn faults_misroute_gives_exactly_its_two_findings() {
    let d = tempfile::tempdir().unwrap();
    let (code, log, sm) = run(&shipped(), d.path());
    assert_eq!(code, 1, "{log}");
    common::assert_schema("summary-v1.schema.json", &sm);
    let kinds: BTreeSet<(String, String)> = findings(&sm);
    let routing: Vec<_> = kinds.iter().filter(|(k, _)| k == "routing").collect();
    assert_eq!(routing.len(), 1, "{kinds:?}");
    assert_eq!(routing[0].1, "duo_chat_explain_code");
    let protocol: BTreeSet<&str> = kinds
        .iter()
        .filter(|(k, _)| k == "protocol")
        .map(|(_, f)| f.as_str())
        .collect();
    assert!(!protocol.is_empty(), "{kinds:?}");
    assert!(
        kinds.iter().all(|(k, _)| k == "routing" || k == "protocol"),
        "{kinds:?}"
    );
    // Every protocol finding is a v4 stream without its end.
    for f in sm["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "protocol")
    {
        let m = f["message"].as_str().unwrap();
        assert!(
            m.contains("/v4/code/suggestions") && m.contains("stream_end"),
            "{m}"
        );
    }
    let r = &sm["features"]["duo_chat_explain_code"]["routing"];
    assert_eq!(r["violations"][0]["kind"], "unreached");
    assert_eq!(r["expected"]["backend"], "vllm-chat");
    assert_eq!(
        r["inherited"], true,
        "a chat sub-feature follows duo_chat's entry"
    );
}

#[test]
fn without_the_faults_the_same_checks_pass() {
    let d = tempfile::tempdir().unwrap();
    let clean = shipped()
        .replace("drop_v4_stream_end = true", "drop_v4_stream_end = false")
        .replace("\"chat/explain_code\" = \"twin:vllm-code\"", "");
    let (code, log, sm) = run(&clean, d.path());
    assert_eq!(code, 0, "{log}");
    assert!(findings(&sm).is_empty(), "{:?}", findings(&sm));
    let r = &sm["features"]["code_completions"]["routing"];
    assert_eq!(r["observed"][0]["backend"], "vllm-code");
    assert_eq!(r["observed"][0]["model"], "codestral-22b");
}

#[test]
fn wrong_model_disabled_and_chat_fallback_are_each_caught() {
    let d = tempfile::tempdir().unwrap();
    let text = shipped()
        .replace("drop_v4_stream_end = true", "drop_v4_stream_end = false")
        .replace("\"chat/explain_code\" = \"twin:vllm-code\"", "")
        // duo_chat's expectation names the code model: duo_chat breaks it, and every chat
        // sub-feature (which inherits it) fails to fall back to it.
        .replace("[routing.features.duo_chat]\nbackend = \"vllm-chat\"\nmodel = \"mistral-7b-instruct\"", "[routing.features.duo_chat]\nbackend = \"vllm-chat\"\nmodel = \"codestral-22b\"")
        .replace("[routing.features.summarize_review]\nbackend = \"vllm-chat\"\nmodel = \"mistral-7b-instruct\"", "[routing.features.summarize_review]\ndisabled = true")
        .replace("fully_self_hosted = false", "fully_self_hosted = true");
    let (code, log, sm) = run(&text, d.path());
    assert_eq!(code, 1, "{log}");
    let kind = |f: &str| {
        sm["features"][f]["routing"]["violations"][0]["kind"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(kind("duo_chat"), "wrong_model");
    assert_eq!(kind("duo_chat_fix_code"), "no_chat_fallback");
    assert_eq!(kind("summarize_review"), "served_though_disabled");
    assert_eq!(kind("code_completions"), "");
    // Under fully_self_hosted, a feature with no entry is still checked for reaching a tap.
    assert!(
        sm["features"]["glab_ask_git_command"]["routing"]["violations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// Upstream parameters are part of the snapshot: a changed `temperature` (as a new prompt
/// version might bring) is a `parameter_drift` finding, and nothing else changes.
#[test]
fn upstream_parameter_drift_against_the_snapshot_is_caught() {
    let d = tempfile::tempdir().unwrap();
    let snaps = d.path().join("snaps");
    let base = shipped()
        .replace("drop_v4_stream_end = true", "drop_v4_stream_end = false")
        .replace("\"chat/explain_code\" = \"twin:vllm-code\"", "")
        .replace(
            "\"../fixtures/corpus/duo-default.jsonl\"",
            "\"../fixtures/corpus/duo-default.jsonl\"\nfeatures = [\"code_completions\", \"generate_commit_message\"]",
        )
        + &format!("\n[conformance]\nsnapshots = {:?}\n", snaps);
    let (code, log, _) = run_with(&base, d.path(), &["--first-run"]);
    assert_eq!(code, 0, "{log}");
    let accepted = std::process::Command::new(common::bin())
        .args(["snapshots", "accept", "--dir", snaps.to_str().unwrap()])
        .env_remove("CI")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&accepted.stdout).contains("11 accepted"));
    let snap: Value = serde_json::from_str(
        &std::fs::read_to_string(
            snaps.join("duo-default/code_completions/cc-python-v2-stream.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(snap["upstream"]["model"], "codestral-22b");

    let (code, log, sm) = run(&base, d.path());
    assert_eq!(code, 0, "unchanged: {log}");
    assert!(findings(&sm).is_empty(), "{:?}", findings(&sm));

    let drifted = base.replace(
        "drop_v4_stream_end = false",
        "drop_v4_stream_end = false\noverride_params = { temperature = 0.99 }",
    );
    let (code, log, sm) = run(&drifted, d.path());
    assert_eq!(code, 1, "{log}");
    let kinds: BTreeSet<String> = findings(&sm).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        ["parameter_drift".to_owned()].into_iter().collect(),
        "{}",
        sm["findings"]
    );
    let drift = common::finding_message(&sm, "parameter_drift");
    assert!(drift.contains("0.99"), "{drift}");
}

/// A feature setting pointing at the wrong backend (an operator's slip in GitLab's settings):
/// its calls reach the other tap, a `wrong_backend` violation on that feature only.
#[test]
fn a_feature_sent_to_the_wrong_backend_is_caught() {
    let d = tempfile::tempdir().unwrap();
    let text = shipped()
        .replace("drop_v4_stream_end = true", "drop_v4_stream_end = false")
        .replace("\"chat/explain_code\" = \"twin:vllm-code\"", "")
        .replacen(
            "[models.code_completions]\nname = \"codestral\"\nendpoint = \"twin:vllm-code\"",
            "[models.code_completions]\nname = \"codestral\"\nendpoint = \"twin:vllm-chat\"",
            1,
        )
        .replace(
            "name = \"vllm-chat\"\nmodels = [\"mistral-7b-instruct\"]",
            "name = \"vllm-chat\"\nmodels = [\"mistral-7b-instruct\", \"codestral-22b\"]",
        );
    let (code, log, sm) = run(&text, d.path());
    assert_eq!(code, 1, "{log}");
    let f: Vec<(String, String)> = findings(&sm).into_iter().collect();
    assert_eq!(
        f,
        vec![("routing".to_owned(), "code_completions".to_owned())],
        "{}",
        sm["findings"]
    );
    let v = &sm["features"]["code_completions"]["routing"]["violations"][0];
    assert_eq!(v["kind"], "wrong_backend");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("reached vllm-chat instead of vllm-code"),
        "{v}"
    );
}

/// The twin's model override puts another model in every upstream call: `wrong_model` on the
/// features that expected a different one. Under `fully_self_hosted`, the misrouted feature's
/// untapped calls are a hybrid leak.
#[test]
fn wrong_model_and_hybrid_leak_come_from_their_faults() {
    let d = tempfile::tempdir().unwrap();
    let text = shipped()
        .replace(
            "drop_v4_stream_end = true",
            "drop_v4_stream_end = false\noverride_params = { model = \"mistral-7b-instruct\" }",
        )
        .replace("fully_self_hosted = false", "fully_self_hosted = true");
    let (code, log, sm) = run(&text, d.path());
    assert_eq!(code, 1, "{log}");
    let kinds: BTreeSet<(String, String)> = sm["features"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(f, v)| {
            v["routing"]["violations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| (f.clone(), x["kind"].as_str().unwrap().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("code_completions", "wrong_model"),
        ("code_generations", "wrong_model"),
        ("duo_chat_explain_code", "hybrid_leak"),
    ]
    .iter()
    .map(|(f, k)| (f.to_string(), k.to_string()))
    .collect();
    assert_eq!(kinds, want);
}

/// A v4 request naming a model the gateway does not self-host falls back to a GitLab cloud
/// route (the real gateway: `stream_start`, then the connection drops): under
/// `fully_self_hosted` that is a hybrid leak, and the dropped stream its own error.
#[test]
fn a_model_the_gateway_does_not_self_host_is_a_hybrid_leak() {
    let d = tempfile::tempdir().unwrap();
    let corpus =
        std::fs::read_to_string(common::repo().join("fixtures/corpus/duo-default.jsonl")).unwrap();
    let v4 = corpus
        .lines()
        .find(|l| l.contains("\"cc-python-v4-sse\""))
        .unwrap();
    std::fs::write(d.path().join("v4.jsonl"), format!("{v4}\n")).unwrap();
    let scenario = r#"name = "leak"
corpus = "v4.jsonl"
[target]
url = "embedded"
[[tap]]
backend = "vllm-code"
[models.code_completions]
name = "qwen2p5-coder-7b"
endpoint = "twin:vllm-code"
identifier = "custom_openai/codestral-22b"
[routing]
fully_self_hosted = true
"#;
    let s = d.path().join("s.toml");
    std::fs::write(&s, scenario).unwrap();
    let out = d.path().join("run");
    let (code, stdout, stderr) =
        common::run_cli(&["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let sm: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let r = &sm["features"]["code_completions"]["routing"];
    assert_eq!(r["violations"][0]["kind"], "hybrid_leak", "{r}");
    assert_eq!(sm["errors_by_class"]["dropped"], 1, "{sm}");
    assert_eq!(sm["taps"]["vllm-code"]["calls"], 0);
}
