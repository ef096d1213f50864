//! The shipped quickstart against an external gateway, unchanged but for `--target`: a
//! `duo-harness stack` process stands in for the operator's AIGW, and the run starts the twin
//! backends its `twin:<backend>` model settings name, so the gateway reaches GPU-free backends.

mod common;

use std::process::Command;

#[test]
fn the_quickstart_runs_unchanged_against_an_external_gateway() {
    let (_stack, urls) = common::start_stack();
    let aigw = urls["aigw"].as_str().unwrap();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let (code, stdout, stderr) = common::run_cli(&[
        "run",
        "scenarios/quickstart.toml",
        "--target",
        aigw,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let sm: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(sm["target"], aigw);
    assert_eq!(
        (sm["requests"].as_u64(), sm["errors"].as_u64()),
        (Some(49), Some(0)),
        "{sm}"
    );
    // 16 features through the gateway, and the Agent Platform's 2 through the twin DWS.
    assert_eq!(sm["features"].as_object().unwrap().len(), 18);
}

/// `scenarios/real-aigw.toml`, configured only through the environment, against a gateway
/// (a `duo-harness stack` process) and its two backends: every feature answers, the taps tie
/// every upstream call to its request, and the routing checks pass.
#[test]
fn the_real_aigw_scenario_works_from_the_environment_alone() {
    let (_stack, urls) = common::start_stack();
    let backend = |name: &str| {
        urls["backends"][name]["openai_base"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let o = Command::new(common::bin())
        .args([
            "run",
            "scenarios/real-aigw.toml",
            "--out",
            out.to_str().unwrap(),
            // As the README's first step: no reviewed snapshot yet.
            "--first-run",
        ])
        .current_dir(common::repo())
        .env_remove("CI")
        .env("DUO_AIGW_URL", urls["aigw"].as_str().unwrap())
        .env("DUO_AIGW_AUTH", "bypass")
        .env("DUO_CODE_BACKEND_URL", backend("vllm-code"))
        .env("DUO_CODE_MODEL", "codestral-22b")
        .env("DUO_CHAT_BACKEND_URL", backend("vllm-chat"))
        .env("DUO_CHAT_MODEL", "mistral-7b-instruct")
        .env("DUO_SNAPSHOTS_DIR", d.path().join("snaps"))
        .output()
        .unwrap();
    let log = common::printed(&o);
    assert_eq!(o.status.code(), Some(0), "{log}");
    let sm: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        (sm["requests"].as_u64(), sm["errors"].as_u64()),
        (Some(43), Some(0)),
        "{sm}"
    );
    let calls: u64 = ["code", "chat"]
        .iter()
        .map(|t| sm["taps"][t]["calls"].as_u64().unwrap())
        .sum();
    let unattributed: u64 = ["code", "chat"]
        .iter()
        .map(|t| sm["taps"][t]["unattributed"].as_u64().unwrap())
        .sum();
    assert!(calls >= 43 && unattributed == 0, "{}", sm["taps"]);
    let routing = &sm["features"]["code_completions"]["routing"];
    assert_eq!(
        routing["violations"].as_array().unwrap().len(),
        0,
        "{routing}"
    );
}
