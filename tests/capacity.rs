//! `duo-harness capacity` on a twin whose knee is known in closed form
//! (`scenarios/capacity-knee.toml`: one sequence at a time, each holding the simulated H100 for
//! 32 decode steps): the answer brackets 1 / service time within the stated resolution, in at
//! most 10 probes, names the SLO that broke, and writes `capacity.json` and the knee's summary.

mod common;

use common::{assert_schema, json_file, run_cli};

#[test]
fn capacity_finds_a_knee_known_in_closed_form() {
    // 32 steps of (W + KV of ~40 tokens) / (0.8 × 3.35 TB/s).
    let step_s = (16.06e9 + 131072.0 * 40.0) / (0.8 * 3.35e12);
    let knee = 1.0 / (32.0 * step_s);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cap");
    let (code, stdout, stderr) = run_cli(&[
        "capacity",
        "scenarios/capacity-knee.toml",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let c = json_file(&out.join("capacity.json"));
    assert_schema("capacity-v1.schema.json", &c);
    let lo = c["max_rps_interval"][0].as_f64().unwrap();
    let hi = c["max_rps_interval"][1].as_f64().unwrap();
    assert!(
        lo <= knee * 1.03 && hi >= knee * 0.97,
        "[{lo}, {hi}] against the knee {knee:.3}\n{stdout}"
    );
    assert!((hi - lo) / lo <= 0.08 + 1e-9, "[{lo}, {hi}]");
    assert!(c["probes"].as_array().unwrap().len() <= 10, "{stdout}");
    assert_eq!(c["limiting"], "code_completions ttft_ms");
    let users = c["users"].as_f64().unwrap();
    assert_eq!(users, (lo * 1000.0 / 7.0).floor());
    let s = json_file(&out.join("summary.json"));
    assert_eq!(
        s["capacity"]["max_rps"], c["max_rps"],
        "the knee's summary carries the answer"
    );
    assert!(
        stdout.contains("breaks first: code_completions ttft_ms"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("**Capacity**"), "{md}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("\"max_rps_interval\""),
        "the page carries the capacity section"
    );
    let why = c["limiter"].as_str().unwrap_or_default();
    assert!(
        why.contains("max_num_seqs"),
        "one sequence at a time: the batch cap limits: {why}"
    );
    // Beside the roofline: one sequence decoding at the engine's 0.8 of HBM bandwidth, so the
    // measured TPOT implies MBU 0.8; at ≈ 5 requests/s against ROOFLINE's ≈ 290 requests/s
    // ceiling for 32-token completions, the GPU's request budget is barely touched (the batch
    // cap, not the GPU, limits).
    let r = &c["roofline"][0];
    assert_eq!(r["endpoint"], "twin:vllm-code", "{r}");
    let mbu = r["achieved_mbu"].as_f64().unwrap();
    assert!((mbu - 0.8).abs() < 0.04, "achieved MBU {mbu}: {r}");
    let share = r["ceiling_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 0.05, "{r}");
    assert!(md.contains("achieved MBU"), "{md}");
    assert!(stdout.contains("roofline: code_completions"), "{stdout}");
    // The capacity page in the browser: its section, the probe curve and the roofline table.
    if let Some(browser) = common::browser::browser_or_skip() {
        let check = common::browser::self_check(&browser, &out.join("report.html"), tmp.path());
        assert_eq!(check["rendered"], "true", "{check}");
        assert_eq!(check["errors"], serde_json::json!([]), "{check}");
        assert_eq!(check["blank"], 0, "every chart draws: {check}");
        assert!(
            check["headings"].to_string().contains("Capacity"),
            "{check}"
        );
        let sub = check["subheadings"].to_string();
        assert!(sub.contains("Beside the roofline"), "{check}");
    }
}

/// vLLM's `bench sweep serve_sla` order replayed on the same twin (`strategy = "serve_sla"`):
/// the most allowed rate, then 1, then PCHIP roots, to integer requests/s: it finds the knee's
/// integer part, 5, with its failing neighbour 6.
#[test]
fn serve_slas_strategy_replayed_finds_the_integer_knee() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cap");
    let o = std::process::Command::new(common::bin())
        .args(["capacity", "scenarios/capacity-knee.toml", "--out"])
        .arg(&out)
        .current_dir(common::repo())
        .env("CAPACITY_STRATEGY", "serve_sla")
        .output()
        .unwrap();
    let printed = common::printed(&o);
    assert_eq!(o.status.code(), Some(0), "{printed}");
    let c = json_file(&out.join("capacity.json"));
    assert_schema("capacity-v1.schema.json", &c);
    let rates: Vec<f64> = c["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rate_rps"].as_f64().unwrap())
        .collect();
    assert_eq!(
        rates[..2],
        [64.0, 1.0],
        "serve_sla's bounds first: {rates:?}"
    );
    assert!(rates.iter().all(|r| r.fract() == 0.0), "{rates:?}");
    assert_eq!(
        c["max_rps_interval"],
        serde_json::json!([5.0, 6.0]),
        "{printed}"
    );
    assert!(rates.len() <= 10, "{rates:?}");
}

/// A run at an overloading rate against an engine configured by `engine` (TOML keys), with the
/// backend's metrics read; returns the limiter the harness names.
fn limiter_of(engine: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = common::repo().join("fixtures/corpus/openai-bench.jsonl");
    let scenario = tmp.path().join("s.toml");
    let text = format!(
        "name = \"limiter\"\ncorpus = {corpus:?}\nfeatures = [\"code_completions\"]\n\
         [target]\nurl = \"embedded:vllm-code\"\n\
         [load]\narrival = \"constant\"\nrate = 60\nduration_s = 4\ngrace_s = 30\n\
         [metrics]\ntargets = [\"twin:vllm-code\"]\ninterval_s = 0.25\n\
         [[stack.backend]]\nname = \"vllm-code\"\nmodels = [\"codestral-22b\"]\n\
         [stack.backend.engine]\nmodel = \"llama-3.1-8b\"\ngpu = \"h100-sxm\"\n{engine}\n"
    );
    std::fs::write(&scenario, text).unwrap();
    let out = tmp.path().join("run");
    let (_, stdout, stderr) = run_cli(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let s = json_file(&out.join("summary.json"));
    let observed = serde_json::from_value(s["backend_metrics"].clone())
        .unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    assert!(out.join("metrics.ndjson").is_file());
    let named = duo_harness::capacity::limiter(&observed, None).expect("a limiter is named");
    format!(
        "{named}\n(run: {stdout}\nmetrics: {})",
        s["backend_metrics"]
    )
}

#[test]
fn the_limiter_is_named_for_a_kv_bound_and_a_compute_bound_stack() {
    // 300 tokens of KV for 42-token requests arriving at 60/s.
    let kv = limiter_of("kv_capacity_tokens = 300");
    assert!(kv.starts_with("KV cache full on twin:vllm-code"), "{kv}");
    // A GPU whose compute is the bottleneck (1 % MFU: 618 tokens/s at most, against 1,920
    // asked for; each step's compute outlasts its memory traffic).
    let compute = limiter_of("mfu = 0.01");
    assert!(compute.contains("compute-bound"), "{compute}");
}

/// With taps in front of the backends, the answer says how much of each feature's time to
/// first token the gateway took at the knee (client TTFT p50 less the backend's own).
#[test]
fn with_taps_the_answer_gives_the_gateways_share() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = common::repo().join("fixtures/corpus/duo-default.jsonl");
    let quickstart =
        std::fs::read_to_string(common::repo().join("scenarios/quickstart.toml")).unwrap();
    let models = &quickstart[quickstart
        .find("[models.")
        .expect("quickstart's model settings")..];
    let scenario = tmp.path().join("s.toml");
    let text = format!(
        "name = \"gateway-share\"\ncorpus = {corpus:?}\nfeatures = [\"code_completions\"]\n\
         [target]\nurl = \"embedded\"\n[load]\narrival = \"constant\"\nrate = 2\nduration_s = 2\n\
         [slo.code_completions]\nttft_ms = 5000\nattainment = 0.5\n\
         [capacity]\nstart_rps = 2\nmax_probes = 2\nprobe_s = 2\n\
         [[tap]]\nbackend = \"vllm-code\"\n\n{models}"
    );
    std::fs::write(&scenario, text).unwrap();
    let out = tmp.path().join("cap");
    let (code, stdout, stderr) = run_cli(&[
        "capacity",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let c = json_file(&out.join("capacity.json"));
    assert_schema("capacity-v1.schema.json", &c);
    let g = &c["gateway"][0];
    assert_eq!(g["feature"], "code_completions", "{c}");
    let share = g["share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0, "{g}");
    assert!(stdout.contains("gateway (taps)"), "{stdout}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("The gateway's share"), "{md}");
}

/// `scenarios/capacity-knee.toml` with `edit` applied, written into `dir` (the corpus path made
/// absolute), for a short search.
fn knee_scenario(dir: &std::path::Path, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let text = std::fs::read_to_string(common::repo().join("scenarios/capacity-knee.toml"))
        .unwrap()
        .replace(
            "../fixtures/corpus/openai-bench.jsonl",
            common::repo()
                .join("fixtures/corpus/openai-bench.jsonl")
                .to_str()
                .unwrap(),
        )
        .replace("probe_s = 6", "probe_s = 2")
        .replace("max_probes = 10", "max_probes = 3");
    let path = dir.join("scenario.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// A search that cannot go on ends with the exit code of its cause, and still writes
/// `capacity.json` with every probe it measured and why it stopped.
#[test]
fn a_search_that_cannot_go_on_keeps_its_probes_and_exits_by_its_cause() {
    let tmp = tempfile::tempdir().unwrap();
    // A backend that fails every answer of the corpus's model (it lists it, so the preflight
    // passes): broken, not full (exit 1).
    let broken = knee_scenario(tmp.path(), |t| {
        t.replace(
            r#"models = ["codestral-22b"]"#,
            "models = [\"codestral-22b\"]\nfail_models = [\"codestral-22b\"]",
        )
    });
    let out = tmp.path().join("broken");
    let (code, stdout, stderr) = run_cli(&[
        "capacity",
        broken.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let c = json_file(&out.join("capacity.json"));
    assert_schema("capacity-v1.schema.json", &c);
    let probes = c["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 1, "the probe that broke is kept: {c}");
    assert!(probes[0]["broken"].is_string(), "{c}");
    assert!(
        c["stopped"]
            .as_str()
            .unwrap()
            .contains("load does not explain"),
        "{c}"
    );
    assert!(stderr.contains("load does not explain"), "{stderr}");

    // A target nobody answers at: exit 3, and capacity.json says so.
    let port = common::closed_port();
    let unreachable = knee_scenario(tmp.path(), |t| {
        t.replace(
            r#"url = "embedded:vllm-code""#,
            &format!("url = \"http://127.0.0.1:{port}\"\nauth = \"bypass\""),
        )
        .replace(r#"targets = ["twin:vllm-code"]"#, "targets = []")
    });
    let out = tmp.path().join("unreachable");
    let (code, stdout, stderr) = run_cli(&[
        "capacity",
        unreachable.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    let c = json_file(&out.join("capacity.json"));
    assert!(
        c["stopped"].as_str().unwrap().contains("did not answer"),
        "{c}"
    );
}

/// A stop signal ends the search with exit 1, and `capacity.json` still says what was measured
/// and why it stopped.
#[test]
fn a_stop_signal_ends_the_search_and_keeps_what_it_measured() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = knee_scenario(tmp.path(), |t| t.replace("probe_s = 2", "probe_s = 20"));
    let out = tmp.path().join("stopped");
    let mut child = std::process::Command::new(common::bin())
        .args(["capacity", scenario.to_str().unwrap(), "--out"])
        .arg(&out)
        .env_remove("CI")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Poll until the first probe is sending, then stop the search.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let sending = || {
        std::fs::read_dir(&out)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let results = e.path().join("results.ndjson");
                common::results_lines(&results) > 0
            })
    };
    while !sending() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(sending(), "the first probe never sent");
    common::signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let c = json_file(&out.join("capacity.json"));
    assert!(
        c["stopped"]
            .as_str()
            .unwrap()
            .contains("stopped by a signal"),
        "{c}"
    );
}
