//! The open-loop load engine, through the real command line over loopback: known timing is
//! reported as configured, a stalled server cannot thin the schedule, the concurrency cap, the
//! drain and the cut-off are counted, and the self-audit turns late sends into exit code 4.
//! Every load here is bounded (a few dozen requests, under a second of sending). Bounds on
//! measured times are one-sided or generous, so a slow machine cannot fail them.

mod common;

use common::{json_file as json, results};

use common::stream_server::{self, Script};
use common::{repo, run_cli};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;

const CORPUS: &str = "fixtures/corpus/openai-bench.jsonl";

/// Writes a scenario of the OpenAI bench corpus against `url` with the given `[load]` lines.
fn scenario(dir: &Path, url: &str, load: &str, extra: &str) -> PathBuf {
    let corpus = repo().join(CORPUS);
    let text = format!(
        "name = \"load-test\"\ncorpus = {corpus:?}\nfeatures = [\"code_completions\"]\nrequest_timeout_s = 10\n\
         {extra}\n[target]\nurl = \"{url}\"\n\n[load]\n{load}\n"
    );
    let p = dir.join("s.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run(scenario: &Path, out: &Path, args: &[&str]) -> (i32, String) {
    let mut all = vec![
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run_cli(&all);
    (code, format!("{stdout}{stderr}"))
}

/// A finished load run against a scripted server: exit code, log, run folder, server counters.
struct Run {
    code: i32,
    log: String,
    out: PathBuf,
    counters: std::sync::Arc<stream_server::Counters>,
    _dir: tempfile::TempDir,
}

impl Run {
    fn summary(&self) -> Value {
        json(&self.out.join("summary.json"))
    }
}

/// Starts a server playing `script`, and runs the bench corpus against it with `load`.
fn run_against(script: Script, load: &str, extra: &str, args: &[&str]) -> Run {
    let (url, counters) = stream_server::start(script);
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let (code, log) = run(&scenario(d.path(), &url, load, extra), &out, args);
    Run {
        code,
        log,
        out,
        counters,
        _dir: d,
    }
}

/// A script answering `chunks` chunks, the first after `first_ms`, then one per `gap_ms`.
fn script(first_ms: u64, gap_ms: u64, chunks: usize) -> Script {
    Script {
        first_ms,
        gap_ms,
        chunks,
        serial: false,
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn schema(name: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&json(&repo().join("schemas").join(name))).unwrap()
}

#[test]
fn known_twin_timing_is_reported_as_configured() {
    let d = tempfile::tempdir().unwrap();
    let extra = "[[stack.backend]]\nname = \"bench\"\nmodels = [\"codestral-22b\"]\nttft_ms = 20\nitl_ms = 5\n";
    // A generous lateness bound: this test checks the figures, not the machine's speed.
    let load = "arrival = \"constant\"\nrate = 100\nduration_s = 0.5\nseed = 3\nmax_send_lateness_ms = 1000";
    let s = scenario(d.path(), "embedded:bench", load, extra);
    let out = d.path().join("run");
    let (code, log) = run(&s, &out, &[]);
    assert_eq!(code, 0, "{log}");
    let sm = json(&out.join("summary.json"));
    assert!(schema("summary-v1.schema.json").is_valid(&sm), "{sm}");
    let l = &sm["load"];
    assert_eq!(
        (l["mode"].as_str(), l["sent"].as_u64()),
        (Some("open"), Some(50))
    );
    assert_eq!(f(&l["target_rps"]), 100.0);
    assert!((f(&l["achieved_rps"]) / 100.0 - 1.0).abs() < 0.05, "{l}");
    let cc = &sm["features"]["code_completions"];
    let lat = &cc["latency_ms"];
    // The twin cannot answer before its TTFT, and emits tokens on a fixed 5 ms grid.
    assert!(f(&lat["ttft"]["p50"]) >= 20.0, "{lat}");
    // Above it only by scheduling: the twin shares this machine's 2 cores with the harness (a
    // starved twin answers late, truly). E2E (32 tokens, ~180 ms) would read far above this.
    assert!(f(&lat["ttft"]["p50"]) < 60.0, "{lat}");
    assert!((f(&lat["tpot"]["p50"]) - 5.0).abs() < 0.5, "{lat}");
    assert!(f(&lat["ttft_from_intended"]["p50"]) >= f(&lat["ttft"]["p50"]));
    assert_eq!(cc["output_tokens"], 50 * 32);
    assert_eq!(cc["tokens_estimated"], 0);
    assert_eq!(cc["multi_token_chunks"], 0);
    let lines = results(&out);
    let v = schema("result-v1.schema.json");
    assert!(lines.iter().all(|r| v.is_valid(r)));
    // Constant 100/s from zero: intended instants are exactly 10 ms apart.
    let mut intended: Vec<f64> = lines.iter().map(|r| f(&r["intended_ms"])).collect();
    intended.sort_by(f64::total_cmp);
    assert!(intended
        .windows(2)
        .all(|w| (w[1] - w[0] - 10.0).abs() < 1e-3));
    // histograms.json holds mergeable histograms with the same counts.
    let h = json(&out.join("histograms.json"));
    assert!(schema("histograms-v1.schema.json").is_valid(&h));
    let ttft = duo_harness::measure::hist::Metric::decode(
        h["features"]["code_completions"]["ttft"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(ttft.len(), 50);
    assert!((ttft.percentiles().p50.unwrap() - f(&lat["ttft"]["p50"])).abs() < 0.5);
    // The self-audit's probes travel too, so a re-rendered audit has what this one had.
    let probes =
        duo_harness::measure::hist::Metric::decode(h["receive_delay"].as_str().unwrap()).unwrap();
    assert_eq!(
        probes.len(),
        sm["load"]["receive"]["delay_ms"]["n"].as_u64().unwrap()
    );
    assert!(!probes.is_empty());
}

/// The server answers one request at a time, 100 ms each: sends must still follow the
/// schedule, and TTFT from the intended send must grow with the queue the server builds.
#[test]
fn a_stalled_server_grows_ttft_from_intended_while_the_schedule_holds() {
    let serial = Script {
        serial: true,
        ..script(100, 1, 2)
    };
    let load = "arrival = \"constant\"\nrate = 20\nduration_s = 0.5\nmax_send_lateness_ms = 1000";
    let r = run_against(serial, load, "", &[]);
    assert_eq!(r.code, 0, "{}", r.log);
    let mut lines = results(&r.out);
    lines.sort_by(|a, b| f(&a["intended_ms"]).total_cmp(&f(&b["intended_ms"])));
    assert_eq!(lines.len(), 10);
    // Open loop: every send went out on its slot, although the server was still busy.
    for l in &lines {
        assert!(f(&l["sent_ms"]) - f(&l["intended_ms"]) < 40.0, "{l}");
    }
    assert!(
        r.counters.max_in_flight.load(SeqCst) >= 5,
        "sends did not overlap"
    );
    let ttft_i = |l: &Value| f(&l["first_content_ms"]) + f(&l["sent_ms"]) - f(&l["intended_ms"]);
    let (first, last) = (ttft_i(&lines[0]), ttft_i(&lines[9]));
    // The 10th request waits for nine 100 ms turns: at least 1,000 − 450 ms from its intent.
    assert!(last - first > 400.0, "{first} vs {last}");
}

/// With a cap of two, the harness itself queues: TTFT from the send stays one server turn,
/// while TTFT from the intended send grows (what a closed-loop tool would hide).
#[test]
fn the_concurrency_cap_holds_and_its_queueing_is_measured() {
    let load = "arrival = \"constant\"\nrate = 100\nduration_s = 0.1\nconcurrency = 2\nmax_send_lateness_ms = 1000";
    let r = run_against(script(50, 1, 2), load, "", &[]);
    assert_eq!(r.code, 0, "{}", r.log);
    assert_eq!(r.counters.max_in_flight.load(SeqCst), 2);
    assert_eq!(r.counters.requests.load(SeqCst), 10);
    let sm = r.summary();
    let lat = &sm["features"]["code_completions"]["latency_ms"];
    // 10 requests of 50+ ms through 2 slots: the last pair starts after four turns (≥ 200 ms),
    // and the last request was meant to go at 90 ms, so it waited at least 110 ms.
    assert!(f(&lat["queue_wait"]["max"]) >= 110.0, "{lat}");
    assert!(
        f(&lat["ttft_from_intended"]["max"]) >= f(&lat["ttft"]["max"]) + 100.0,
        "{lat}"
    );
    assert_eq!(sm["load"]["concurrency"], 2);
}

#[test]
fn in_flight_requests_drain_within_the_grace_period() {
    let load = "arrival = \"constant\"\nrate = 20\nduration_s = 0.2\ngrace_s = 10\nmax_send_lateness_ms = 1000";
    let r = run_against(script(20, 50, 4), load, "", &[]);
    assert_eq!(r.code, 0, "{}", r.log);
    let sm = r.summary();
    assert_eq!(
        (sm["load"]["sent"].as_u64(), sm["load"]["cut_off"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(sm["requests"], 4);
}

#[test]
fn requests_past_the_grace_period_are_cut_off_and_counted() {
    // Streams last 4 s; sending lasts 0.2 s and the grace 0.3 s.
    let load = "arrival = \"constant\"\nrate = 20\nduration_s = 0.2\ngrace_s = 0.3\nmax_send_lateness_ms = 1000";
    let r = run_against(script(10, 1000, 5), load, "", &[]);
    assert_eq!(
        r.code, 1,
        "cut-off requests count against the verdict (load.max_cut_off_rate): {}",
        r.log
    );
    let sm = r.summary();
    let kinds: Vec<&str> = sm["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"cut_off") && kinds.contains(&"nothing_measured"),
        "{kinds:?}"
    );
    assert_eq!(
        (sm["load"]["sent"].as_u64(), sm["load"]["cut_off"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(
        (sm["requests"].as_u64(), sm["errors"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(sm["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == "cut_off"));
    let lines = results(&r.out);
    assert!(lines.iter().all(|l| l["disposition"] == "cut_off"));
    // What arrived before the cut is kept.
    assert!(lines
        .iter()
        .any(|l| l["chunks"].as_array().is_some_and(|c| !c.is_empty())));
    // The server saw the cancelled clients go away.
    for _ in 0..100 {
        if r.counters.in_flight.load(SeqCst) == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(r.counters.in_flight.load(SeqCst), 0);
}

#[test]
fn skip_policy_counts_what_it_did_not_send() {
    let load = "arrival = \"constant\"\nrate = 20\nduration_s = 0.5\nconcurrency = 1\ncap_policy = \"skip\"\nmax_send_lateness_ms = 1000";
    let r = run_against(script(150, 1, 1), load, "", &[]);
    assert_eq!(r.code, 0, "{}", r.log);
    let l = &r.summary()["load"];
    let (sent, skipped) = (l["sent"].as_u64().unwrap(), l["skipped"].as_u64().unwrap());
    assert_eq!(sent + skipped, 10);
    assert!(skipped >= 5, "{l}");
    assert_eq!(r.counters.requests.load(SeqCst) as u64, sent);
}

#[test]
fn late_sends_make_the_run_invalid_with_exit_4() {
    // No machine starts a task within a nanosecond of its instant, and no late send is
    // tolerated: the audit must trip.
    let load = "arrival = \"constant\"\nrate = 100\nduration_s = 0.1\n\
                max_send_lateness_ms = 0.000001\nmax_late_share = 0";
    let r = run_against(script(1, 1, 1), load, "", &[]);
    assert_eq!(r.code, 4, "{}", r.log);
    let sm = r.summary();
    assert_eq!(sm["verdict"], "invalid");
    assert!(sm["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == "invalid_measurement"));
    assert!(f(&sm["load"]["send_lateness_ms"]["max"]) > 0.0);
    assert!(f(&sm["load"]["client"]["cpu_s"]) > 0.0);
}

fn sorted_intended(out: &Path) -> Vec<f64> {
    let mut v: Vec<f64> = results(out).iter().map(|r| f(&r["intended_ms"])).collect();
    v.sort_by(f64::total_cmp);
    v
}

#[test]
fn overrides_seed_warmup_and_slo_shape_the_run() {
    let slo = "[slo.code_completions]\nttft_ms = 1\nattainment = 0.5\n";
    let load = "warmup_s = 0.1\nmax_send_lateness_ms = 1000";
    let args = [
        "--rate",
        "100",
        "--duration",
        "0.3",
        "--arrival",
        "poisson",
        "--seed",
        "7",
        "--concurrency",
        "50",
    ];
    let (a, b) = (
        run_against(script(5, 1, 3), load, slo, &args),
        run_against(script(5, 1, 3), load, slo, &args),
    );
    // A 1 ms TTFT objective cannot be met by a 5 ms server: the SLO fails the verdict.
    assert_eq!(a.code, 1, "{}", a.log);
    assert_eq!(
        sorted_intended(&a.out),
        sorted_intended(&b.out),
        "the same seed gives the same schedule"
    );
    let sm = a.summary();
    let l = &sm["load"];
    assert_eq!(
        (
            l["arrival"].as_str(),
            l["seed"].as_u64(),
            l["concurrency"].as_u64()
        ),
        (Some("poisson"), Some(7), Some(50))
    );
    let cc = &sm["features"]["code_completions"];
    let warm = cc["warmup"].as_u64().unwrap();
    assert_eq!(
        warm as usize,
        sorted_intended(&a.out)
            .iter()
            .filter(|t| **t < 100.0)
            .count()
    );
    assert_eq!(
        cc["requests"].as_u64().unwrap() + warm,
        l["sent"].as_u64().unwrap()
    );
    assert_eq!(cc["goodput"]["met"], 0);
    assert!(sm["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == "slo"));
    assert_eq!(json(&a.out.join("plan.json"))["plan"]["load"]["seed"], 7);
}

#[test]
fn trace_replay_keeps_the_recorded_offsets_scaled() {
    let load = "arrival = \"trace\"\ntime_scale = 0.1\nmax_send_lateness_ms = 1000";
    let r = run_against(script(1, 1, 1), load, "", &[]);
    assert_eq!(r.code, 0, "{}", r.log);
    let got = sorted_intended(&r.out);
    // The corpus's code_completions cases were recorded at 0, 250, 500 and 750 ms.
    let want = [0.0, 25.0, 50.0, 75.0];
    assert_eq!(got.len(), 4);
    assert!(
        got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6),
        "{got:?}"
    );
}

#[test]
fn bad_load_settings_are_usage_errors_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    for (load, key) in [
        ("arrival = \"poisson\"", "needs 'rate'"),
        (
            "arrival = \"constant\"\nrate = 5",
            "duration_s or load.max_requests",
        ),
        (
            "arrival = \"gamma\"\nrate = 5\nduration_s = 1\nburstiness = 0",
            "burstiness",
        ),
        ("arrival = \"sometimes\"", "arrival"),
        ("concurrency = 0", "concurrency"),
        ("mix = { not_a_feature = 1 }", "not_a_feature"),
    ] {
        let s = scenario(d.path(), "http://127.0.0.1:9", load, "");
        let (code, log) = run(&s, &d.path().join("run"), &[]);
        assert_eq!(code, 2, "{load}: {log}");
        assert!(log.contains(key) && log.contains("s.toml"), "{load}: {log}");
    }
}

/// Ctrl-C in the middle of a long open-loop run: sending stops, in-flight requests drain
/// briefly and are then cut off, and the summary is still written, with what was measured
/// before.
#[test]
fn an_interrupted_run_still_writes_its_report() {
    // Streams of 6 s: longer than the drain after a stop signal.
    let (url, _) = stream_server::start(script(5, 200, 30));
    let d = tempfile::tempdir().unwrap();
    let load = "arrival = \"constant\"\nrate = 50\nduration_s = 600\nmax_send_lateness_ms = 1000";
    let s = scenario(d.path(), &url, load, "");
    let out = d.path().join("run");
    let mut child = std::process::Command::new(common::bin())
        .args(["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until requests are flowing (results appear), then interrupt.
    let results_file = out.join("results.ndjson");
    for _ in 0..200 {
        if std::fs::metadata(&results_file).is_ok_and(|m| m.len() > 0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    // SAFETY: kill sends a signal to the child we spawned.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "an interrupted run fails its verdict"
    );
    let sm = json(&out.join("summary.json"));
    assert_eq!(sm["interrupted"], true);
    let l = &sm["load"];
    assert!(l["sent"].as_u64().unwrap() >= 1);
    assert!(l["cut_off"].as_u64().unwrap() >= 1, "{l}");
    assert_eq!(results(&out).len() as u64, l["sent"].as_u64().unwrap());
    assert!(sm["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == "interrupted"));
}
