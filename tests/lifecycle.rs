//! Signals, full disks and interrupted runs: SIGTERM stops a run like SIGINT and a second
//! signal stops it at once, every file still written; a run that cannot write its files still
//! prints its table and verdict and exits 3; `record` never truncates a corpus and stops within
//! a bounded drain with a stalled stream open.

mod common;

use common::json_file;

use common::recorder::Recorder;
use common::{hostile, stream_server};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn scenario(dir: &Path, url: &str, load: &str) -> String {
    let corpus = common::repo().join("fixtures/corpus/openai-bench.jsonl");
    let s = dir.join("s.toml");
    std::fs::write(
        &s,
        format!("name = \"life\"\ncorpus = {corpus:?}\nrequest_timeout_s = 60\n[target]\nurl = \"{url}\"\n[load]\n{load}\n"),
    )
    .unwrap();
    s.to_str().unwrap().to_owned()
}

/// SIGTERM (what CI runners and Kubernetes send) stops a run like SIGINT: sending stops, the
/// run drains briefly, every file is written with `interrupted: true`, exit 1. Two signals stop
/// it at once, however long the open streams would last.
#[test]
fn sigterm_stops_a_run_and_a_second_signal_stops_it_at_once() {
    // Streams of 30 s: far past the drain after a stop.
    let (url, _) = stream_server::start(stream_server::Script {
        first_ms: 5,
        gap_ms: 1000,
        chunks: 30,
        serial: false,
    });
    for signals in [1, 2] {
        let d = tempfile::tempdir().unwrap();
        let s = scenario(
            d.path(),
            &url,
            "arrival = \"constant\"\nrate = 50\nduration_s = 600\nmax_send_lateness_ms = 1000",
        );
        let out = d.path().join("run");
        let (code, took) =
            common::run_then_signal(&s, &out, libc::SIGTERM, signals, Duration::from_millis(300));
        assert_eq!(code, Some(1), "{signals} signal(s)");
        // Far below the 30 s streams: the stop did not wait for them.
        assert!(
            took < Duration::from_secs(20),
            "{signals} signal(s): {took:?}"
        );
        let sm = json_file(&out.join("summary.json"));
        assert_eq!(sm["interrupted"], true);
        let sent = sm["load"]["sent"].as_u64().unwrap();
        assert!(
            sent >= 1 && sm["load"]["cut_off"].as_u64().unwrap() >= 1,
            "{sm}"
        );
        let lines = std::fs::read_to_string(out.join("results.ndjson")).unwrap();
        assert_eq!(
            lines.lines().count() as u64,
            sent,
            "every sent request has its line"
        );
        assert!(out.join("histograms.json").exists());
    }
}

/// The disk fills (a file-size limit stands in for it): the run still prints its table and
/// verdict, names what it could not write, and exits 3.
#[test]
fn a_run_that_cannot_write_its_files_still_prints_its_verdict_and_exits_3() {
    let (url, _) = stream_server::start(stream_server::Script {
        first_ms: 1,
        gap_ms: 0,
        chunks: 40,
        serial: false,
    });
    let d = tempfile::tempdir().unwrap();
    let s = scenario(
        d.path(),
        &url,
        "arrival = \"constant\"\nrate = 100\nmax_requests = 60\nmax_send_lateness_ms = 1000",
    );
    let out = d.path().join("run");
    // 16 KiB per file: plan.json fits, results.ndjson (60 lines of 40 chunks) does not. A
    // write past the limit fails with EFBIG once SIGXFSZ is ignored.
    let script = format!(
        "trap '' XFSZ; ulimit -f 16; exec {:?} run {s:?} --out {:?}",
        common::bin(),
        out
    );
    let o = Command::new("bash")
        .args(["-c", &script])
        .env_remove("CI")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("verdict: "), "{stdout}");
    assert!(
        stderr.contains("could not write") && stderr.contains("results.ndjson"),
        "{stderr}"
    );
    // What was written is whole lines, never a fragment the next line is glued to.
    let results = std::fs::read_to_string(out.join("results.ndjson")).unwrap();
    for l in results.lines() {
        serde_json::from_str::<Value>(l).unwrap();
    }
}

/// `record` refuses a corpus that holds lines, appends to it with `--force` (ids go on, nothing
/// truncated), and stops within its bounded drain on SIGTERM even with a stalled stream open.
#[test]
fn record_never_truncates_and_stops_on_sigterm_with_a_stalled_stream() {
    let h = hostile::start("http://127.0.0.1:9");
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("c.jsonl");
    let first = r#"{"v":1,"id":"rec-000000","feature":"duo_chat","request":{"method":"POST","path":"/v2/chat/agent","body":{}}}"#;
    std::fs::write(&out, format!("{first}\n")).unwrap();
    let (code, _, stderr) = common::run_cli(&[
        "record",
        "--upstream",
        &h.url,
        "--listen",
        "127.0.0.1:0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), format!("{first}\n"));

    let rec = Recorder::start(&h.url, &out, &["--force"]);
    let client = reqwest::blocking::Client::new();
    let ok = client
        .post(format!("{}/v2/code/completions", rec.url))
        .header("x-case", "good")
        .body("{}")
        .send()
        .unwrap();
    let _ = ok.bytes();
    // A stream that stalls after its first chunk, left open.
    let url = rec.url.clone();
    std::thread::spawn(move || {
        let r = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
            .post(format!("{url}/v2/code/completions"))
            .header("x-case", "stall")
            .body("{}")
            .send();
        let _ = r.map(|r| r.bytes());
    });
    // Stop once the stalled request has reached the upstream through the proxy (both requests
    // read there): its exchange is open.
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.requests.load(std::sync::atomic::Ordering::SeqCst) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopped = Instant::now();
    let (code, stderr, lines) = rec.stop_with(libc::SIGTERM);
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("still open"), "{stderr}");
    assert_eq!(
        lines.len(),
        2,
        "the old line kept, the finished exchange appended"
    );
    assert_eq!(lines[0]["id"], "rec-000000");
    assert_eq!(lines[1]["id"], "rec-000001");
}

/// Spawns `duo-harness run S --out OUT`, output discarded.
fn spawn_run(s: &str, out: &Path) -> std::process::Child {
    Command::new(common::bin())
        .args(["run", s, "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_for(path: &Path) {
    for _ in 0..800 {
        if path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{} never appeared", path.display());
}

/// A stop signal during the preflight (here a model endpoint that never answers) ends the run
/// there, with every file written and the run judged interrupted: not the default death with
/// only `plan.json` left.
#[test]
fn a_signal_during_the_preflight_still_writes_the_run() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap(); // accepts, never answers
    let d = tempfile::tempdir().unwrap();
    let s = d.path().join("s.toml");
    let corpus = common::repo().join("fixtures/corpus/duo-default.jsonl");
    std::fs::write(
        &s,
        format!(
            "name = \"pre\"\ncorpus = {corpus:?}\n[target]\nurl = \"embedded\"\n[load]\narrival = \"constant\"\nrate = 1\nduration_s = 1\n[models.code_completions]\nname = \"codestral\"\nendpoint = \"http://{}/v1\"\nidentifier = \"custom_openai/codestral-22b\"\n",
            silent.local_addr().unwrap()
        ),
    )
    .unwrap();
    let out = d.path().join("run");
    let mut child = spawn_run(s.to_str().unwrap(), &out);
    wait_for(&out.join("plan.json"));
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    common::signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(signalled.elapsed() < Duration::from_secs(20));
    let sm = json_file(&out.join("summary.json"));
    assert_eq!(sm["interrupted"], true, "{sm}");
    for f in ["results.ndjson", "report.md", "junit.xml", "report.html"] {
        assert!(out.join(f).exists(), "{f}");
    }
}

/// A stop signal stops sending at once, however busy the harness is: no request intended after
/// the signal is sent (the run started after the spawn, so signal − spawn bounds the signal's
/// offset into the run from above).
#[test]
fn a_signal_at_a_high_rate_stops_sending_at_once() {
    let d = tempfile::tempdir().unwrap();
    let corpus = common::repo().join("fixtures/corpus/duo-default.jsonl");
    let s = d.path().join("s.toml");
    std::fs::write(
        &s,
        format!("name = \"fast\"\ncorpus = {corpus:?}\n[target]\nurl = \"embedded\"\n[load]\narrival = \"constant\"\nrate = 5000\nduration_s = 10\nmax_send_lateness_ms = 1000\n"),
    )
    .unwrap();
    let out = d.path().join("run");
    let spawned = Instant::now();
    let mut child = spawn_run(s.to_str().unwrap(), &out);
    wait_for(&out.join("results.ndjson"));
    std::thread::sleep(Duration::from_millis(800));
    let signal_offset_ms = spawned.elapsed().as_secs_f64() * 1000.0;
    common::signal(&child, libc::SIGINT);
    let _ = child.wait().unwrap();
    let last = common::results(&out)
        .iter()
        .filter_map(|r| r["intended_ms"].as_f64())
        .fold(0.0_f64, f64::max);
    assert!(last > 0.0, "something was sent");
    assert!(
        last <= signal_offset_ms + 50.0,
        "a send intended at {last:.0} ms, after the signal at most {signal_offset_ms:.0} ms in"
    );
}
