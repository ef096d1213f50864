//! `scenarios/preupgrade.toml` end to end, configured from the environment alone against a
//! gateway (a `duo-harness stack` process) and its backends: the first run passes with every
//! stage a JUnit case and the gate skipped (no baseline yet); `baseline save` stores it; the
//! next run is compared with it; and a feature setting naming a model its backend does not
//! serve fails the `models` stage, and the run.

mod common;

use std::path::Path;
use std::process::Command;

/// Runs the pre-upgrade scenario into `out`; returns its exit code and output.
fn preupgrade(urls: &serde_json::Value, dir: &Path, out: &Path, chat_model: &str) -> (i32, String) {
    let backend = |name: &str| {
        urls["backends"][name]["openai_base"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let o = Command::new(common::bin())
        .args(["run", "scenarios/preupgrade.toml", "--out"])
        .arg(out)
        .current_dir(common::repo())
        .env_remove("CI")
        .env("DUO_AIGW_URL", urls["aigw"].as_str().unwrap())
        .env("DUO_AIGW_AUTH", "bypass")
        .env("DUO_CODE_BACKEND_URL", backend("vllm-code"))
        .env("DUO_CODE_MODEL", "codestral-22b")
        .env("DUO_CHAT_BACKEND_URL", backend("vllm-chat"))
        .env("DUO_CHAT_MODEL", chat_model)
        .env("DUO_SNAPSHOTS_DIR", dir.join("snaps"))
        .env("DUO_BASELINE_DIR", dir.join("baseline"))
        .env("DUO_PEAK_RPS", "10")
        .env("DUO_PREUPGRADE_S", "5")
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), common::printed(&o))
}

/// Each stage's JUnit case in the `run` suite: (name, "passed" | "failed" | "skipped").
fn stages(out: &Path) -> Vec<(String, &'static str)> {
    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    let run = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "run")
        .unwrap();
    run.test_cases
        .iter()
        .map(|c| {
            let status = match &c.status {
                quick_junit::TestCaseStatus::Success { .. } => "passed",
                quick_junit::TestCaseStatus::Skipped { .. } => "skipped",
                _ => "failed",
            };
            (c.name.to_string(), status)
        })
        .collect()
}

fn status_of(stages: &[(String, &'static str)], name: &str) -> &'static str {
    stages
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| *s)
        .unwrap_or("missing")
}

#[test]
fn the_preupgrade_run_judges_every_stage_and_gates_on_the_stored_baseline() {
    let (_stack, urls) = common::start_stack();
    let d = tempfile::tempdir().unwrap();

    let first = d.path().join("first");
    let (code, log) = preupgrade(&urls, d.path(), &first, "mistral-7b-instruct");
    assert!(matches!(code, 0 | 4), "exit {code}: {log}");
    let st = stages(&first);
    for name in [
        "health",
        "models",
        "replay",
        "routing",
        "conformance",
        "slo",
    ] {
        assert_ne!(status_of(&st, name), "failed", "{name}: {st:?}\n{log}");
        assert_ne!(status_of(&st, name), "missing", "{name}: {st:?}");
    }
    assert_eq!(status_of(&st, "health"), "passed", "{st:?}");
    assert_eq!(status_of(&st, "models"), "passed", "{st:?}");
    assert_eq!(status_of(&st, "gate"), "skipped", "no baseline yet: {st:?}");
    let first_summary = common::json_file(&first.join("summary.json"));
    let skipped = common::finding_message(&first_summary, "gate_skipped");
    assert!(
        skipped.contains("baseline save"),
        "a configured gate that did not run is said: {skipped}"
    );

    let baseline = d.path().join("baseline");
    let (code, stdout, stderr) = common::run_cli(&[
        "baseline",
        "save",
        first.to_str().unwrap(),
        "--to",
        baseline.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(baseline.join("results.ndjson").is_file());

    let second = d.path().join("second");
    let (code, log) = preupgrade(&urls, d.path(), &second, "mistral-7b-instruct");
    // The same stack raises no regression against its own baseline; a gate with too few
    // samples to judge is undecided (exit 4), never a pass.
    let comparison = common::json_file(&second.join("comparison.json"));
    assert_eq!(comparison["regressions"], 0, "{log}");
    let gate = status_of(&stages(&second), "gate");
    match comparison["verdict"].as_str() {
        Some("pass") => assert_eq!((code, gate), (0, "passed"), "{log}"),
        _ => assert_eq!((code, gate), (4, "failed"), "{log}"),
    }
    common::assert_schema(
        "comparison-v1.schema.json",
        &common::json_file(&second.join("comparison.json")),
    );

    // The feature settings name a model the chat backend does not serve.
    let third = d.path().join("third");
    let (code, log) = preupgrade(&urls, d.path(), &third, "mistral-8x7b");
    assert_eq!(code, 1, "{log}");
    let st = stages(&third);
    assert_eq!(status_of(&st, "models"), "failed", "{st:?}");
    let summary = common::json_file(&third.join("summary.json"));
    let message = common::finding_message(&summary, "preflight");
    assert!(message.contains("not 'mistral-8x7b'"), "{message}");
}
