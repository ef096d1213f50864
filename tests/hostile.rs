//! No false pass: runs against a hostile server (black holes, stalls, slow headers, wrong
//! content types, in-band errors, invalid UTF-8, streams without their completion marker,
//! endless streams and lines, redirects, echoes). Each case asserts the exit code, the error
//! class or finding, and that what was measured before the fault is kept.

mod common;

use common::{json_file, results};

use common::hostile;
use serde_json::{json, Value};
use std::path::Path;

fn line(id: &str, case: &str, path: &str) -> String {
    json!({"v": 1, "id": id, "feature": "code_completions", "request": {
        "method": "POST", "path": path, "headers": {"x-case": case},
        "body": {"model": "m", "prompt": "def f():", "max_tokens": 8, "stream": true}}})
    .to_string()
}

/// Writes a scenario against `url` with `extra` TOML at the end; returns its path.
fn scenario(dir: &Path, url: &str, lines: &[String], head: &str, extra: &str) -> String {
    std::fs::write(dir.join("c.jsonl"), lines.join("\n") + "\n").unwrap();
    let s = dir.join("s.toml");
    std::fs::write(
        &s,
        format!(
            "name = \"hostile\"\ncorpus = \"c.jsonl\"\n{head}\n[target]\nurl = \"{url}\"\n{extra}"
        ),
    )
    .unwrap();
    s.to_str().unwrap().to_owned()
}

fn run(s: &str, out: &Path) -> (i32, String) {
    let (code, stdout, stderr) = common::run_cli(&["run", s, "--out", out.to_str().unwrap()]);
    (code, format!("{stdout}\n{stderr}"))
}

fn by_id<'a>(rs: &'a [Value], id: &str) -> &'a Value {
    rs.iter().find(|r| r["id"] == id).unwrap()
}

fn kinds(sm: &Value, severity: &str) -> Vec<String> {
    sm["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == severity)
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// A black hole, a stall after the first chunk and headers after 3 s (request timeout 1 s) are
/// timeouts; the good answers around them are measured and kept. The last request, sequential,
/// gets its full timeout although `grace_s` is shorter.
#[test]
fn black_holes_stalls_and_slow_headers_are_timeouts() {
    let h = hostile::start("http://127.0.0.1:9");
    let d = tempfile::tempdir().unwrap();
    let lines = [
        line("a", "good", "/v1/completions"),
        line("b", "blackhole", "/v1/completions"),
        line("c", "stall", "/v1/completions"),
        line("d", "slow_headers", "/v1/completions"),
        line("e", "good", "/v1/completions"),
        line("z", "blackhole", "/v1/completions"),
    ];
    let s = scenario(
        d.path(),
        &h.url,
        &lines,
        "request_timeout_s = 1",
        "[load]\ngrace_s = 0.2\n",
    );
    let out = d.path().join("run");
    let (code, log) = run(&s, &out);
    assert_eq!(code, 1, "{log}");
    let sm = json_file(&out.join("summary.json"));
    common::assert_schema("summary-v1.schema.json", &sm);
    assert_eq!(sm["errors_by_class"], json!({"timeout": 4}), "{sm}");
    assert_eq!(
        (sm["requests"].as_u64(), sm["load"]["cut_off"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(
        sm["features"]["code_completions"]["latency_ms"]["ttft"]["n"],
        2
    );
    let rs = results(&out);
    assert_eq!(rs.len(), 6);
    let z = by_id(&rs, "z");
    assert_eq!(
        (z["error"]["class"].as_str(), z["disposition"].as_str()),
        (Some("timeout"), Some("completed"))
    );
    assert!(z["end_ms"].as_f64().unwrap() >= 1000.0, "{z}");
    // What arrived before the stall is kept.
    assert_eq!(by_id(&rs, "c")["content"], " first");
    // The console says from how many requests the latency figures come.
    assert!(
        log.contains("note: code_completions: TTFT from 2 of 6 requests (4 failed, 0 cut off)"),
        "{log}"
    );
    // A timeout this short never sees a real gateway's answer after its retry cycle.
    assert!(
        kinds(&sm, "warning").contains(&"retry_cycle".into()),
        "{sm}"
    );
}

/// Every request cut off (the server accepted and never answered, the open loop's grace ran
/// out): the run measured nothing, and fails with the summary written.
#[test]
fn a_run_whose_every_request_is_cut_off_fails() {
    let h = hostile::start("http://127.0.0.1:9");
    let d = tempfile::tempdir().unwrap();
    let lines = [line("b", "blackhole", "/v1/completions")];
    let load = "[load]\narrival = \"constant\"\nrate = 20\nduration_s = 0.2\ngrace_s = 0.3\nmax_send_lateness_ms = 1000\n";
    let s = scenario(d.path(), &h.url, &lines, "request_timeout_s = 30", load);
    let out = d.path().join("run");
    let (code, log) = run(&s, &out);
    assert_eq!(code, 1, "{log}");
    let sm = json_file(&out.join("summary.json"));
    let errors = kinds(&sm, "error");
    assert!(
        errors.contains(&"cut_off".into()) && errors.contains(&"nothing_measured".into()),
        "{errors:?}"
    );
    assert_eq!(sm["verdict"], "fail");
    assert!(log.contains("no request was measured"), "{log}");
}

/// Answers that are not what the route promises: an HTML page on a streaming route, an error
/// inside a 200 stream, invalid UTF-8, a stream without its finish_reason. A stream that had
/// its marker and terminator is complete even though the connection was cut afterwards.
#[test]
fn answers_that_break_their_route_are_classed() {
    let h = hostile::start("http://127.0.0.1:9");
    let d = tempfile::tempdir().unwrap();
    let lines = [
        line("good", "good", "/v1/completions"),
        line("html", "html", "/v1/completions"),
        line("inband", "inband_error", "/v1/completions"),
        line("utf8", "invalid_utf8", "/v2/code/completions"),
        line("nofinish", "no_finish", "/v1/completions"),
        line("cut", "complete_then_cut", "/v1/completions"),
    ];
    let s = scenario(d.path(), &h.url, &lines, "request_timeout_s = 10", "");
    let out = d.path().join("run");
    let (code, log) = run(&s, &out);
    assert_eq!(code, 1, "{log}");
    let rs = results(&out);
    let class = |id: &str| by_id(&rs, id)["error"]["class"].as_str().map(str::to_owned);
    assert_eq!(class("good"), None);
    assert_eq!(
        class("cut"),
        None,
        "complete before the cut: {}",
        by_id(&rs, "cut")
    );
    assert_eq!(class("html").as_deref(), Some("framing"));
    assert_eq!(class("inband").as_deref(), Some("stream_error"));
    assert_eq!(class("utf8").as_deref(), Some("framing"));
    assert_eq!(class("nofinish").as_deref(), Some("truncated"));
    assert!(by_id(&rs, "inband")["error"]["message"]
        .as_str()
        .unwrap()
        .contains("KV cache"));
    let sm = json_file(&out.join("summary.json"));
    assert_eq!(
        sm["errors_by_class"],
        json!({"framing": 2, "stream_error": 1, "truncated": 1})
    );
    assert_eq!(by_id(&rs, "nofinish")["content"], " a b", "content kept");
}

/// A stream that never ends and a line that never ends are cut at the harness's bounds, each
/// an `oversize` error, and the run goes on.
#[test]
fn endless_streams_and_lines_are_bounded() {
    let h = hostile::start("http://127.0.0.1:9");
    let d = tempfile::tempdir().unwrap();
    let lines = [
        line("stream", "endless_stream", "/v1/completions"),
        line("line", "endless_line", "/v1/completions"),
        line("good", "good", "/v1/completions"),
    ];
    let s = scenario(d.path(), &h.url, &lines, "request_timeout_s = 120", "");
    let out = d.path().join("run");
    let (code, log) = run(&s, &out);
    assert_eq!(code, 1, "{log}");
    let sm = json_file(&out.join("summary.json"));
    assert_eq!(sm["errors_by_class"], json!({"oversize": 2}), "{sm}");
    assert_eq!(
        sm["features"]["code_completions"]["latency_ms"]["ttft"]["n"],
        1
    );
}

/// A 307 to another origin is recorded as it is; the body (with its model key) never goes to
/// the other origin.
#[test]
fn redirects_are_recorded_not_followed() {
    let elsewhere = hostile::start("http://127.0.0.1:9");
    let h = hostile::start(&elsewhere.url);
    let d = tempfile::tempdir().unwrap();
    let s = scenario(
        d.path(),
        &h.url,
        &[line("r", "redirect", "/v1/completions")],
        "",
        "",
    );
    let out = d.path().join("run");
    let (code, log) = run(&s, &out);
    assert_eq!(code, 1, "{log}");
    let rs = results(&out);
    assert_eq!(rs[0]["status"], 307);
    assert_eq!(rs[0]["error"]["class"], "http3xx");
    assert_eq!(
        elsewhere.requests.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// A server that echoes the bearer token back in its error body: the token reaches neither the
/// results, the summary, stdout nor stderr.
#[test]
fn an_echoed_token_never_leaves_the_harness() {
    let h = hostile::start("http://127.0.0.1:9");
    let d = tempfile::tempdir().unwrap();
    let token = "canary-bearer-7f3a9c2e5d1b4a68";
    let target_auth = "auth = \"bearer\"\ntoken_env = \"DUO_TEST_CANARY_TOKEN\"\n";
    std::fs::write(
        d.path().join("c.jsonl"),
        line("e", "echo", "/v1/completions") + "\n",
    )
    .unwrap();
    let s = d.path().join("s.toml");
    std::fs::write(
        &s,
        format!(
            "name = \"echo\"\ncorpus = \"c.jsonl\"\n[target]\nurl = \"{}\"\n{target_auth}",
            h.url
        ),
    )
    .unwrap();
    let out = d.path().join("run");
    let o = std::process::Command::new(common::bin())
        .args(["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("DUO_TEST_CANARY_TOKEN", token)
        .env_remove("CI")
        .output()
        .unwrap();
    let printed = common::printed(&o);
    assert_eq!(o.status.code(), Some(1), "{printed}");
    let results = std::fs::read_to_string(out.join("results.ndjson")).unwrap();
    assert!(
        results.contains("invalid token: Bearer [REDACTED]"),
        "{results}"
    );
    for (name, text) in [
        ("results", results),
        (
            "summary",
            std::fs::read_to_string(out.join("summary.json")).unwrap(),
        ),
        (
            "plan",
            std::fs::read_to_string(out.join("plan.json")).unwrap(),
        ),
        ("console", printed),
    ] {
        assert!(!text.contains(token), "{name} holds the token");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("results.ndjson"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "results are the owner's only");
    }
}

/// Runs that measured nothing fail, whatever else they say: no request at all, and a warm-up
/// covering the whole run (hiding every error); a ramp from rate 0 simply ramps up.
#[test]
fn runs_that_measure_nothing_fail_and_a_ramp_from_zero_runs() {
    let h = hostile::start("http://127.0.0.1:9");
    let cases = [
        ("max_requests = 0", "[load]\narrival = \"constant\"\nrate = 10\nmax_requests = 0\nmax_send_lateness_ms = 1000\n", 1),
        ("a warm-up past the run", "[load]\narrival = \"constant\"\nrate = 20\nduration_s = 0.3\nwarmup_s = 10\nmax_send_lateness_ms = 1000\n", 1),
        ("every step at rate 0", "[load]\narrival = \"constant\"\nsteps = [{ rate = 0, duration_s = 0.2 }]\nmax_send_lateness_ms = 1000\n", 1),
        ("a ramp from rate 0", "[load]\narrival = \"constant\"\nrate = 0\nramp_to = 40\nduration_s = 0.5\nmax_send_lateness_ms = 1000\n", 0),
    ];
    for (what, load, want) in cases {
        let d = tempfile::tempdir().unwrap();
        let case = if want == 0 { "good" } else { "echo" };
        let s = scenario(
            d.path(),
            &h.url,
            &[line("a", case, "/v1/completions")],
            "",
            load,
        );
        let out = d.path().join("run");
        let (code, log) = run(&s, &out);
        assert_eq!(code, want, "{what}: {log}");
        let sm = json_file(&out.join("summary.json"));
        let errors = kinds(&sm, "error");
        assert_eq!(
            errors.contains(&"nothing_measured".into()),
            want == 1,
            "{what}: {errors:?}"
        );
        if want == 0 {
            assert!(sm["load"]["sent"].as_u64().unwrap() >= 5, "{what}: {sm}");
        }
    }
}

/// A closed loop starts at the run's instant zero: a one-request run has a positive duration,
/// no send before zero, and no absurd saturation warning.
#[test]
fn a_closed_loop_starts_at_instant_zero() {
    let h = hostile::start("http://127.0.0.1:9");
    let d = tempfile::tempdir().unwrap();
    let s = scenario(
        d.path(),
        &h.url,
        &[line("a", "good", "/v1/completions")],
        "",
        "",
    );
    let out = d.path().join("run");
    let (code, log) = run(&s, &out);
    assert_eq!(code, 0, "{log}");
    let sm = json_file(&out.join("summary.json"));
    assert!(
        !kinds(&sm, "warning").contains(&"client_saturated".into()),
        "{sm}"
    );
    let r = &results(&out)[0];
    assert!(r["sent_ms"].as_f64().unwrap() >= r["intended_ms"].as_f64().unwrap());
    assert!(sm["load"]["client"]["cores_busy"]
        .as_f64()
        .unwrap()
        .is_finite());
}

/// Running out of file descriptors is the client's failure (`client_resources`), never blamed
/// on the target as `connect`.
#[test]
fn running_out_of_descriptors_is_the_clients_failure() {
    let h = hostile::start("http://127.0.0.1:9");
    let d = tempfile::tempdir().unwrap();
    let load = "[load]\narrival = \"constant\"\nrate = 400\nduration_s = 0.5\ngrace_s = 3\nmax_send_lateness_ms = 1000\nmax_cut_off_rate = 1\n";
    let s = scenario(
        d.path(),
        &h.url,
        &[line("b", "blackhole", "/v1/completions")],
        "request_timeout_s = 1",
        load,
    );
    let out = d.path().join("run");
    // A hard limit of 64 descriptors: the harness cannot raise it, and 200 sends need more.
    let script = format!(
        "ulimit -n 64 && exec {:?} run {s:?} --out {:?}",
        common::bin(),
        out
    );
    let o = std::process::Command::new("bash")
        .args(["-c", &script])
        .env_remove("CI")
        .output()
        .unwrap();
    let log = common::printed(&o);
    assert_eq!(o.status.code(), Some(1), "{log}");
    let sm = json_file(&out.join("summary.json"));
    let classes = sm["errors_by_class"].as_object().unwrap();
    assert!(
        classes
            .get("client_resources")
            .is_some_and(|n| n.as_u64().unwrap() > 0),
        "{sm}"
    );
    assert!(classes.get("connect").is_none(), "{sm}");
}

/// An open loop against a server that stops answering holds at most `load.max_in_flight`
/// requests; past it sends are skipped and the run fails: the load was not delivered.
#[test]
fn the_in_flight_bound_bites_loudly() {
    let h = hostile::start("http://127.0.0.1:9");
    let d = tempfile::tempdir().unwrap();
    let load = "[load]\narrival = \"constant\"\nrate = 100\nduration_s = 0.2\ngrace_s = 0.2\nmax_in_flight = 5\nmax_send_lateness_ms = 1000\nmax_cut_off_rate = 1\n";
    let s = scenario(
        d.path(),
        &h.url,
        &[line("b", "blackhole", "/v1/completions")],
        "request_timeout_s = 30",
        load,
    );
    let out = d.path().join("run");
    let (code, log) = run(&s, &out);
    assert_eq!(code, 1, "{log}");
    let sm = json_file(&out.join("summary.json"));
    assert_eq!(
        (
            sm["load"]["skipped"].as_u64(),
            sm["load"]["cut_off"].as_u64()
        ),
        (Some(15), Some(5)),
        "{sm}"
    );
    assert!(
        kinds(&sm, "error").contains(&"in_flight_cap".into()),
        "{sm}"
    );
    assert_eq!(h.requests.load(std::sync::atomic::Ordering::SeqCst), 5);
}

/// `s` with every Markdown code span taken out: what GitLab would interpret.
fn outside_code_spans(md: &str) -> String {
    let (mut out, mut rest) = (String::new(), md);
    while let Some(i) = rest.find('`') {
        out.push_str(&rest[..i]);
        let run = rest[i..].chars().take_while(|c| *c == '`').count();
        let fence = "`".repeat(run);
        let after = &rest[i + run..];
        match after.find(&fence) {
            Some(j) => rest = &after[j + run..],
            None => {
                out.push_str(&rest[i..]);
                return out;
            }
        }
    }
    out + rest
}

/// A server's error text (a mention, a quick action, an image, raw HTML, `</script>`, an ANSI
/// sequence drawing a fake `verdict: pass` line, characters XML forbids) is inert wherever it
/// lands: in code spans in `report.md` (the CI example posts it as a merge-request note), one
/// clean line per finding on the console, valid XML in `junit.xml`, escaped in `report.html`.
#[test]
fn server_text_is_inert_where_it_lands() {
    let h = hostile::start("http://127.0.0.1:9");
    let d = tempfile::tempdir().unwrap();
    let lines = [
        line("hostile", "hostile_500", "/v1/completions"),
        line("good", "good", "/v1/completions"),
    ];
    let s = scenario(d.path(), &h.url, &lines, "", "");
    let out = d.path().join("run");
    let (code, printed) = run(&s, &out);
    assert_eq!(code, 1, "{printed}");
    assert!(
        !printed.contains('\u{1b}') && !printed.contains('\r'),
        "{printed:?}"
    );
    assert!(
        !printed
            .lines()
            .any(|l| l.trim_start().starts_with("verdict: pass")),
        "{printed}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("@all"), "the text is shown: {md}");
    let live = outside_code_spans(&md);
    for marker in [
        "@all",
        "![x]",
        "<img",
        "<a href",
        "</script>",
        "~pwned",
        "\u{1b}",
    ] {
        assert!(!live.contains(marker), "{marker} outside a code span: {md}");
    }
    assert!(
        !md.lines().any(|l| l.starts_with('/')),
        "a quick action: {md}"
    );
    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    let forbidden = |c: char| c < ' ' && !matches!(c, '\t' | '\n' | '\r');
    assert!(!xml.chars().any(forbidden), "{xml:?}");
    assert!(xml.contains("&lt;img") && !xml.contains("<img"), "{xml}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let template = std::fs::read_to_string(common::repo().join("assets/report.html")).unwrap();
    assert_eq!(
        html.matches("</script>").count(),
        template.matches("</script>").count(),
        "no element ends early"
    );
    assert!(!html.contains("<img src=x"));
}

/// `/v2/chat/agent` answers in chat NDJSON; the same stream in SSE is a protocol error, not a
/// pass, although its bytes decode.
#[test]
fn a_chat_answer_in_another_framing_is_a_protocol_error() {
    let h = hostile::start("http://127.0.0.1:9");
    let d = tempfile::tempdir().unwrap();
    let chat = json!({"v": 1, "id": "chat", "feature": "duo_chat", "request": {
        "method": "POST", "path": "/v2/chat/agent", "headers": {"x-case": "chat_as_sse"},
        "body": {"prompt": "hi", "stream": true}}})
    .to_string();
    let s = scenario(d.path(), &h.url, &[chat], "", "");
    let out = d.path().join("run");
    let (code, printed) = run(&s, &out);
    assert_eq!(code, 1, "{printed}");
    let rs = results(&out);
    assert_eq!(by_id(&rs, "chat")["error"]["class"], "framing", "{}", rs[0]);
    let message = by_id(&rs, "chat")["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("chat NDJSON"), "{message}");
    let sm = json_file(&out.join("summary.json"));
    assert!(kinds(&sm, "error").contains(&"protocol".to_owned()), "{sm}");
}
