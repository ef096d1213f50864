//! An https upstream behind a private CA, as self-hosted sites run their AIGW: `record` and
//! `run` reach it with the CA bundle they are given, and refuse it, naming the certificate
//! problem, without one.

mod common;

use common::recorder::Recorder;
use common::stream_server::{self, Script};
use common::tls;
use serde_json::Value;

const CHUNKS: usize = 4;

fn streaming_backend() -> String {
    stream_server::start(Script {
        first_ms: 5,
        gap_ms: 2,
        chunks: CHUNKS,
        serial: false,
    })
    .0
}

/// Posts one streamed code completion through the proxy at `url` on `route`; returns the status
/// and the body. (The backend streams the same answer on every route.)
fn complete_through(url: &str, route: &str) -> (u16, String) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{url}{route}"))
        .json(&serde_json::json!({
            "current_file": {"file_name": "a.py", "content_above_cursor": "def f():", "content_below_cursor": ""},
            "stream": true
        }))
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

#[test]
fn record_reaches_an_https_upstream_through_its_ca_bundle_and_refuses_it_without() {
    let d = tempfile::tempdir().unwrap();
    let front = tls::front(&streaming_backend());
    let ca = d.path().join("ca.pem");
    front.write_ca(&ca);

    let rec = Recorder::start(
        &front.url,
        &d.path().join("trusted.jsonl"),
        &["--ca-bundle", ca.to_str().unwrap()],
    );
    let (status, body) = complete_through(&rec.url, "/v2/code/completions");
    // A route no Duo feature uses is passed on, and counted, but not written.
    let (other_status, _) = complete_through(&rec.url, "/v1/completions");
    let (code, log, lines) = rec.stop();
    assert_eq!((status, other_status, code), (200, 200, 0), "{log}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    assert_eq!(lines.len(), 1, "{log}");
    assert!(log.contains("2 exchanges, 1 lines written"), "{log}");
    assert!(log.contains("1 on no Duo feature's route"), "{log}");
    let line: &Value = &lines[0];
    assert_eq!(line["feature"], "code_completions", "{line}");
    assert_eq!(line["response"]["status"], 200, "{line}");
    assert!(line["response"]["error"].is_null(), "{line}");

    let rec = Recorder::start(&front.url, &d.path().join("untrusted.jsonl"), &[]);
    let (status, body) = complete_through(&rec.url, "/v2/code/completions");
    let (_, log, lines) = rec.stop();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("certificate"), "{body}");
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].to_string().contains("certificate"), "{}", lines[0]);
}

#[test]
fn run_measures_an_https_target_trusted_through_the_scenario_ca_bundle() {
    let d = tempfile::tempdir().unwrap();
    let front = tls::front(&streaming_backend());
    let ca = d.path().join("ca.pem");
    front.write_ca(&ca);
    let corpus = common::repo().join("fixtures/corpus/openai-bench.jsonl");
    let scenario = |ca_line: &str| {
        let p = d.path().join("s.toml");
        std::fs::write(
            &p,
            format!(
                "name = \"tls\"\ncorpus = {corpus:?}\nfeatures = [\"code_completions\"]\n\
                 request_timeout_s = 10\n\n\
                 [target]\nurl = \"{}\"\n{ca_line}\n\n[load]\nmax_requests = 3\n",
                front.url
            ),
        )
        .unwrap();
        p
    };
    let run = |s: &std::path::Path, tag: &str| {
        let out = d.path().join(tag);
        let (code, stdout, stderr) =
            common::run_cli(&["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        (code, format!("{stdout}{stderr}"), out)
    };

    let (code, log, out) = run(&scenario(&format!("ca_bundle = {ca:?}")), "trusted");
    assert_eq!(code, 0, "{log}");
    let results = std::fs::read_to_string(out.join("results.ndjson")).unwrap();
    assert_eq!(results.lines().count(), 3, "{log}");
    for line in results.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["output_tokens"], CHUNKS as u64, "{r}");
    }

    let (code, log, _) = run(&scenario(""), "untrusted");
    assert_eq!(
        code, 3,
        "an untrusted target is an infrastructure failure: {log}"
    );
    assert!(log.contains("certificate"), "{log}");
}
