//! The twin Duo Workflow Service under load: its own work (a pool of workers, a cost per session
//! and per tool round trip) queues sessions when the pool is busy, its `/metrics` says so, and
//! `capacity` names the DWS, not the model, as the limit.

mod common;

use common::{json_file, run_cli};
use std::path::{Path, PathBuf};

/// `scenarios/dap-capacity.toml` written into `dir` with `edit` applied (the corpus path made
/// absolute) and `extra` appended.
fn dap_scenario(dir: &Path, edit: impl Fn(String) -> String, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(common::repo().join("scenarios/dap-capacity.toml")).unwrap();
    let corpus = common::repo().join("fixtures/corpus/dap-load.jsonl");
    let text = text.replace(
        "\"../fixtures/corpus/dap-load.jsonl\"",
        &format!("{:?}", corpus.to_str().unwrap()),
    );
    let path = dir.join("scenario.toml");
    std::fs::write(&path, format!("{}\n{extra}", edit(text))).unwrap();
    path
}

/// A DWS of one worker at 200 ms a session: about 4 sessions/s at most (5 ms before the first
/// action, 200 before the first model call, 60 per tool round trip).
const SLOW_DWS: &str =
    "[stack.dws]\nworkers = 1\nstart_cost_ms = 5\nsession_cost_ms = 200\ntool_cost_ms = 60\n";

#[test]
fn a_dws_twin_at_twice_its_worker_capacity_queues_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    // 8 sessions/s for 3 s: twice what one worker can take.
    let scenario = dap_scenario(
        tmp.path(),
        |t| {
            t.replace("arrival = \"poisson\"", "arrival = \"constant\"")
                .replace("rate = 1\n", "rate = 8\n")
                .replace("duration_s = 20", "duration_s = 3")
                .replace("warmup_s = 2", "warmup_s = 0")
                .replace("interval_s = 1", "interval_s = 0.25")
        },
        SLOW_DWS,
    );
    let out = tmp.path().join("run");
    let (code, stdout, stderr) = run_cli(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(code == 0 || code == 1, "{stdout}{stderr}");
    let s = json_file(&out.join("summary.json"));
    let dws = &s["backend_metrics"]["twin:dws"];
    assert!(dws["scrapes"].as_u64().unwrap() > 0, "{dws}");
    let waiting = dws["gauges"]["dws_sessions_waiting"]["max"]
        .as_f64()
        .unwrap();
    assert!(waiting >= 3.0, "{dws}");
    let waited = dws["counters"]["dws_worker_wait_seconds_total"]["increase"]
        .as_f64()
        .unwrap();
    assert!(waited > 1.0, "{dws}");
    // The queue shows where the real service's does: in the first action, before any model
    // call (at most 5 ms of work of its own, idle).
    let sessions = &s["features"]["duo_agent_platform_agentic_chat"]["sessions"];
    let first_action_p99 = sessions["first_action_ms"]["p99"].as_f64().unwrap();
    assert!(first_action_p99 > 200.0, "{sessions}");
    assert!(
        stdout.contains("dws (twin:dws): 1 worker(s) busy")
            && stdout.contains("saturated, sessions queue for it"),
        "{stdout}"
    );
}

#[test]
fn capacity_on_the_agent_platform_names_the_dws_as_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = dap_scenario(
        tmp.path(),
        |t| {
            t.replace("probe_s = 20", "probe_s = 4")
                .replace("max_probes = 10", "max_probes = 3")
                .replace("start_rps = 4", "start_rps = 8")
                .replace("interval_s = 1", "interval_s = 0.25")
                .replace("ttft_ms = 3000", "ttft_ms = 1000")
        },
        SLOW_DWS,
    );
    let out = tmp.path().join("cap");
    let (_, stdout, stderr) = run_cli(&[
        "capacity",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let c = json_file(&out.join("capacity.json"));
    let probes = c["probes"].as_array().unwrap();
    let first = &probes[0];
    assert!(
        !first["compliant"].as_bool().unwrap(),
        "{c}\n{stdout}{stderr}"
    );
    let why = first["limiter"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("the Duo Workflow Service (twin:dws) limits, not the model"),
        "{why}\n{stdout}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("Duo Workflow Service (twin:dws) limits"),
        "{md}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Duo Workflow Service (twin:dws) limits"));
}

#[test]
fn the_dws_pool_is_refused_a_size_of_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = dap_scenario(tmp.path(), |t| t, "[stack.dws]\nworkers = 0\n");
    let out = tmp.path().join("run");
    let (code, stdout, stderr) = run_cli(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("stack.dws.workers = 0"), "{stderr}");
}
