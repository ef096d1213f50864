//! Closed-loop virtual developers (`arrival = "developers"`, goose; the `goose` feature):
//! against the twin each developer has at most one request in flight and thinks between
//! requests, streams are timed chunk by chunk into the usual results and summary; SIGINT
//! (which goose would otherwise take over) drains, and a second one cuts off, with every file
//! written; `capacity --users` finds how many developers the twin serves within its SLO.
#![cfg(feature = "goose")]

mod common;

use common::{assert_schema, json_file, run_cli, stream_server};
use std::path::Path;
use std::time::Duration;

/// The most requests in flight at once, from each record's send and end.
fn most_in_flight(results: &[serde_json::Value]) -> usize {
    let mut edges: Vec<(f64, i32)> = Vec::new();
    for r in results {
        let start = r["sent_ms"].as_f64().unwrap();
        let end = start + r["end_ms"].as_f64().unwrap();
        edges.push((start, 1));
        edges.push((end, -1));
    }
    // Ends before starts at the same instant: a developer's next request follows its last.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn developers_keep_one_request_each_and_think_between_them() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    // capacity-knee: one sequence at a time of ≈ 192 ms; developers think 0.4 to 1.2 s.
    let (code, stdout, stderr) = run_cli(&[
        "run",
        "scenarios/capacity-knee.toml",
        "--users",
        "3",
        "--duration",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    // A host too busy for the SLO verdict to stand is the audit's word (exit 4), not a failure
    // of the developers: what they sent is checked either way.
    assert!(matches!(code, 0 | 1 | 4), "{stdout}{stderr}");
    let sm = json_file(&out.join("summary.json"));
    if code == 4 {
        assert_eq!(sm["verdict"], "invalid", "{stdout}");
    }
    assert_schema("summary-v1.schema.json", &sm);
    assert_eq!(sm["load"]["arrival"], "developers");
    assert_eq!(sm["load"]["mode"], "closed");
    assert_eq!(sm["load"]["concurrency"], 3);
    let results = common::results(&out);
    // Each developer: a request of ≥ 192 ms, then ≥ 0.4 s of thought, over 4 s; and each sent
    // at least its first.
    let most = 3 * (4.0_f64 / 0.592).ceil() as usize + 3;
    assert!(
        (3..=most).contains(&results.len()),
        "{} requests from 3 developers in 4 s",
        results.len()
    );
    assert!(most_in_flight(&results) <= 3, "at most one each in flight");
    for r in &results {
        assert_eq!(r["disposition"], "completed", "{r}");
        assert!(
            r["first_content_ms"].as_f64().unwrap() > 0.0,
            "timed per chunk: {r}"
        );
        assert!(r["output_tokens"].as_u64().unwrap() > 1);
    }
    let f = &sm["features"]["code_completions"]["latency_ms"];
    assert!(f["ttft"]["p50"].as_f64().unwrap() > 0.0, "{f}");
    assert!(f["tpot"]["p50"].as_f64().unwrap() > 0.0, "{f}");
    assert!(std::fs::read_to_string(out.join("report.html")).is_ok());
}

/// goose installs its own SIGINT handler, which exits the process on a second Ctrl-C: the run
/// keeps SIGINT its own, so one drains and two cut off, and every file is written either way.
#[test]
fn sigint_stops_developers_and_the_report_is_written() {
    let (url, _) = stream_server::start(stream_server::Script {
        first_ms: 5,
        gap_ms: 1000,
        chunks: 30,
        serial: false,
    });
    for signals in [1, 2] {
        let d = tempfile::tempdir().unwrap();
        let s = scenario(d.path(), &url);
        let out = d.path().join("run");
        let (code, took) =
            common::run_then_signal(&s, &out, libc::SIGINT, signals, Duration::from_millis(500));
        assert_eq!(code, Some(1), "{signals} signal(s)");
        assert!(
            took < Duration::from_secs(20),
            "{signals} signal(s): the 30 s streams were not waited for"
        );
        let sm = json_file(&out.join("summary.json"));
        assert_eq!(sm["interrupted"], true, "{signals} signal(s)");
        let sent = sm["load"]["sent"].as_u64().unwrap();
        assert!(sent >= 2, "{sm}");
        assert_eq!(sm["load"]["cut_off"].as_u64().unwrap(), sent, "{sm}");
        assert_eq!(
            common::results_lines(&out.join("results.ndjson")) as u64,
            sent
        );
    }
}

fn scenario(dir: &Path, url: &str) -> String {
    let corpus = common::repo().join("fixtures/corpus/openai-bench.jsonl");
    let s = dir.join("s.toml");
    std::fs::write(
        &s,
        format!(
            "name = \"devs\"\ncorpus = {corpus:?}\nrequest_timeout_s = 60\n[target]\nurl = \
             \"{url}\"\n[load]\narrival = \"developers\"\nduration_s = 600\n\
             [load.developers]\nusers = 2\nthink_s = 1\n"
        ),
    )
    .unwrap();
    s.to_str().unwrap().to_owned()
}

/// `capacity --users` on the twin that runs one 192 ms sequence at a time: developers who
/// think 0.4 to 1.2 s saturate it near (0.8 + 0.192) / 0.192 ≈ 5; the answer is a whole
/// number of developers at most that, one apart from the first failing count (or within the
/// resolution), and the rate they achieved stays under the engine's 1 / 0.192 s.
#[test]
fn capacity_searches_over_developers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cap");
    let (code, stdout, stderr) = run_cli(&[
        "capacity",
        "scenarios/capacity-knee.toml",
        "--users",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let c = json_file(&out.join("capacity.json"));
    assert_schema("capacity-v1.schema.json", &c);
    assert_eq!(c["axis"], "users");
    let lo = c["users_interval"][0].as_f64().unwrap();
    let hi = c["users_interval"][1].as_f64().unwrap();
    assert!((1.0..=5.0).contains(&lo), "{stdout}");
    assert!(hi - lo <= 1.0 || (hi - lo) / lo <= 0.08, "{stdout}");
    assert_eq!(c["users"].as_f64(), Some(lo));
    let step_s = (16.06e9 + 131072.0 * 40.0) / (0.8 * 3.35e12);
    let engine_rps = 1.0 / (32.0 * step_s);
    let rps = c["max_rps"].as_f64().unwrap();
    assert!(rps > 0.0 && rps < engine_rps, "{rps} against {engine_rps}");
    for p in c["probes"].as_array().unwrap() {
        assert!(p["developers"].as_u64().is_some(), "{p}");
    }
    assert!(stdout.contains("virtual developers"), "{stdout}");
    let s = json_file(&out.join("summary.json"));
    assert_eq!(s["capacity"]["users"], c["users"]);
}
