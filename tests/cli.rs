//! The real binary end to end: the quickstart against the embedded stack, the run folder and its
//! schemas, and every bad input with its exit code and message.

mod common;

use common::run_cli;
use serde_json::Value;
use std::path::Path;

fn schema(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(common::repo().join("schemas").join(name)).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{what} violates its schema: {errors:?}");
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

#[test]
fn quickstart_exercises_every_feature_without_errors() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let (code, stdout, stderr) = run_cli(&[
        "run",
        "scenarios/quickstart.toml",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("verdict: pass"), "{stdout}");
    let summary = read_json(&dir.join("summary.json"));
    assert_valid(&schema("summary-v1.schema.json"), &summary, "summary.json");
    assert_eq!(summary["verdict"], "pass");
    for f in duo_harness::features::http_features() {
        let s = &summary["features"][f.key];
        assert!(
            s["requests"].as_u64().unwrap_or(0) >= 2,
            "feature {} not exercised: {s}",
            f.key
        );
        assert_eq!(s["errors"], 0, "feature {}", f.key);
        assert!(
            s["latency_ms"]["ttft"]["p50"].as_f64().unwrap() > 0.0,
            "feature {} has no TTFT",
            f.key
        );
        assert!(
            s["latency_ms"]["e2e"]["p99"].as_f64().unwrap()
                >= s["latency_ms"]["ttft"]["p50"].as_f64().unwrap()
        );
        assert!(
            s["output_tokens"].as_u64().unwrap() > 0,
            "feature {}",
            f.key
        );
    }
    let results = std::fs::read_to_string(dir.join("results.ndjson")).unwrap();
    let v = schema("result-v1.schema.json");
    let lines: Vec<Value> = results
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, summary["requests"].as_u64().unwrap());
    for l in &lines {
        assert_valid(&v, l, "results.ndjson line");
        assert!(l["error"].is_null(), "{}", l["id"]);
        if l["session"].is_object() {
            continue; // Agent Platform sessions: checked below
        }
        if l["stream"] == true && l["feature"] != "code_generations" {
            // Generations are line-buffered by the AIGW, so only other streams must arrive in pieces.
            assert!(
                l["chunks"].as_array().unwrap().len() > 1,
                "stream {} arrived in one chunk",
                l["id"]
            );
        }
    }
    // The Agent Platform: every shipped session ended as the real service's capture did.
    for f in ["duo_agent_platform", "duo_agent_platform_agentic_chat"] {
        let s = &summary["features"][f]["sessions"];
        assert!(s["sessions"].as_u64().unwrap() >= 1, "{f}: {s}");
        assert_eq!(s["mismatched"], 0, "{f}: {s}");
    }
    let sessions = lines.iter().filter(|l| l["session"].is_object()).count();
    assert_eq!(sessions, 6);
    assert!(
        stdout.contains("sessions duo_agent_platform_agentic_chat: 5"),
        "{stdout}"
    );
    // Streams through the AIGW carry routing evidence: chat usage is keyed by the upstream model.
    let chat = lines.iter().find(|l| l["feature"] == "duo_chat").unwrap();
    assert_eq!(chat["usage"]["model"], "mistral-7b-instruct");
    let plan = read_json(&dir.join("plan.json"));
    assert_eq!(plan["plan"]["scenario_name"], "quickstart");
    assert!(plan["resolved"]["stack"]["backends"]["vllm-code"]["url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
}

#[test]
fn default_corpus_matches_its_schema_and_covers_every_feature() {
    let v = schema("corpus-v1.schema.json");
    let text =
        std::fs::read_to_string(common::repo().join("fixtures/corpus/duo-default.jsonl")).unwrap();
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for line in text.lines() {
        let doc: Value = serde_json::from_str(line).unwrap();
        assert_valid(&v, &doc, "corpus line");
        *seen
            .entry(doc["feature"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for f in duo_harness::features::http_features() {
        assert!(
            seen.get(f.key).copied().unwrap_or(0) >= 2,
            "corpus has fewer than 2 cases of {}",
            f.key
        );
    }
    let loaded =
        duo_harness::corpus::load(&common::repo().join("fixtures/corpus/duo-default.jsonl"))
            .unwrap();
    assert_eq!(loaded.len(), text.lines().count());
}

#[test]
fn shipped_corpora_and_scenarios_are_valid() {
    let v = schema("corpus-v1.schema.json");
    for corpus in ["openai-bench.jsonl", "dap-sessions.jsonl"] {
        let path = common::repo().join("fixtures/corpus").join(corpus);
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            assert_valid(&v, &serde_json::from_str(line).unwrap(), corpus);
        }
        duo_harness::corpus::load(&path).unwrap();
    }
    // real-aigw.toml takes its stack from the environment (tests/external.rs runs it).
    for (k, v) in [
        ("DUO_AIGW_URL", "https://aigw.example.test:5052"),
        ("DUO_CODE_BACKEND_URL", "http://gpu-a.example.test:8000/v1"),
        ("DUO_CODE_MODEL", "codestral-22b"),
        ("DUO_CHAT_BACKEND_URL", "http://gpu-b.example.test:8000/v1"),
        ("DUO_CHAT_MODEL", "mistral-7b-instruct"),
    ] {
        std::env::set_var(k, v);
    }
    for entry in std::fs::read_dir(common::repo().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let plan = duo_harness::plan::resolve(&path, Default::default(), "t");
            assert!(plan.is_ok(), "{}: {:?}", path.display(), plan.err());
        }
    }
    let stack = common::repo().join("scenarios/stacks/bench-vllm.toml");
    duo_harness::twin::StackConfig::load(&stack).unwrap();
}

fn scenario(dir: &Path, body: &str) -> String {
    let p = dir.join("s.toml");
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn unknown_scenario_key_is_a_usage_error_naming_file_line_and_key() {
    let d = tempfile::tempdir().unwrap();
    let s = scenario(
        d.path(),
        "name = \"x\"\ncorpus = \"c.jsonl\"\n[target]\nurl = \"embedded\"\nrate = 5\n",
    );
    let (code, _, stderr) = run_cli(&["run", &s]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("s.toml") && stderr.contains("line 5") && stderr.contains("rate"),
        "{stderr}"
    );
}

#[test]
fn malformed_scenario_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let s = scenario(d.path(), "name = \"x\"\ncorpus = [\n");
    let (code, _, stderr) = run_cli(&["run", &s]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("s.toml"), "{stderr}");
}

#[test]
fn corrupt_corpus_line_is_a_usage_error_naming_file_line_and_field() {
    let d = tempfile::tempdir().unwrap();
    let good =
        std::fs::read_to_string(common::repo().join("fixtures/corpus/duo-default.jsonl")).unwrap();
    let first = good.lines().next().unwrap();
    let bad = first.replace("\"path\":", "\"pathh\":");
    std::fs::write(d.path().join("c.jsonl"), format!("{first}\n{bad}\n")).unwrap();
    let s = scenario(
        d.path(),
        "name = \"x\"\ncorpus = \"c.jsonl\"\n[target]\nurl = \"embedded\"\n",
    );
    let (code, _, stderr) = run_cli(&["run", &s]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("c.jsonl:2") && stderr.contains("pathh"),
        "{stderr}"
    );
}

#[test]
fn unreachable_target_exits_3_naming_the_url() {
    let port = common::closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let d = tempfile::tempdir().unwrap();
    let corpus = common::repo().join("fixtures/corpus/duo-default.jsonl");
    let s = scenario(
        d.path(),
        &format!(
            "name = \"x\"\ncorpus = {:?}\n[target]\nurl = \"embedded\"\n",
            corpus.to_str().unwrap()
        ),
    );
    let out = d.path().join("run");
    let (code, _, stderr) = run_cli(&["run", &s, "--target", &url, "--out", out.to_str().unwrap()]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
}

#[test]
fn stack_prints_its_urls_and_serves_until_stopped() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(common::bin())
        .arg("stack")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let urls: Value = serde_json::from_str(&line).unwrap();
    let get = |url: String| reqwest::blocking_get(&url);
    let health = get(format!(
        "{}/monitoring/healthz",
        urls["aigw"].as_str().unwrap()
    ));
    let models = get(format!(
        "{}/models",
        urls["backends"]["vllm-code"]["openai_base"]
            .as_str()
            .unwrap()
    ));
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(health.unwrap(), "{}");
    assert!(models.unwrap().contains("codestral-22b"));
}

mod reqwest {
    /// A blocking GET without pulling reqwest's blocking feature: a one-shot runtime.
    pub fn blocking_get(url: &str) -> Result<String, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            ::reqwest::get(url)
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())
        })
    }
}
