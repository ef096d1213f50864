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
}
