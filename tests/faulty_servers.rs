//! Servers that misbehave: a JSON-only double (wiremock) answering 4xx/5xx, and a raw TCP server
//! that sends garbage, drops a stream mid-way and hangs. Every failure is counted by class, the
//! run goes on, results already measured are kept, and the verdict fails with exit code 1.

mod common;

use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn line(id: &str, feature: &str, route: &str, body: Value) -> String {
    json!({"v": 1, "id": id, "feature": feature, "request": {"method": "POST", "path": route, "body": body}}).to_string()
}

fn write_run(dir: &Path, lines: &[String], timeout_s: f64) -> String {
    std::fs::write(dir.join("c.jsonl"), lines.join("\n")).unwrap();
    let s = dir.join("s.toml");
    std::fs::write(&s, format!("name = \"faulty\"\ncorpus = \"c.jsonl\"\nrequest_timeout_s = {timeout_s}\n[target]\nurl = \"embedded\"\n")).unwrap();
    s.to_str().unwrap().to_owned()
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("run/summary.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_counted_by_class_and_the_run_goes_on() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/monitoring/healthz"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/code/completions"))
        .respond_with(ResponseTemplate::new(500).set_body_string("Internal Server Error"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/code/generations"))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(json!({"detail": "Validation error"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/prompts/generate_commit_message"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!("Fix the invoice total")))
        .mount(&server)
        .await;
    let d = tempfile::tempdir().unwrap();
    let s = write_run(
        d.path(),
        &[
            line("a", "code_completions", "/v2/code/completions", json!({})),
            line("b", "code_generations", "/v2/code/generations", json!({})),
            line(
                "c",
                "generate_commit_message",
                "/v1/prompts/generate_commit_message",
                json!({"inputs": {"diff": "x"}}),
            ),
        ],
        10.0,
    );
    let (uri, out) = (server.uri(), d.path().join("run"));
    let args = [
        "run".to_owned(),
        s,
        "--target".into(),
        uri,
        "--out".into(),
        out.to_str().unwrap().to_owned(),
    ];
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        common::run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let sm = summary(d.path());
    assert_eq!(sm["verdict"], "fail");
    assert_eq!(sm["requests"], 3);
    assert_eq!(sm["errors_by_class"], json!({"http4xx": 1, "http5xx": 1}));
    assert_eq!(sm["features"]["generate_commit_message"]["errors"], 0);
    assert!(
        sm["features"]["generate_commit_message"]["latency_ms"]["ttft"]["p50"]
            .as_f64()
            .is_some()
    );
    let findings = sm["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["message"].as_str().unwrap().contains("request 'a'")),
        "{findings:?}"
    );
}

/// Answers by route: garbage NDJSON, a stream cut mid-way, or nothing at all. One request per
/// connection, said with `connection: close`, so no client reuses a socket it is about to close.
fn bad_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_bad(stream));
        }
    });
    port
}

fn serve_bad(mut s: std::net::TcpStream) {
    let Some(req) = common::read_request(&mut s) else {
        return;
    };
    let head = String::from_utf8_lossy(&req).into_owned();
    let chunked = |ct: &str| {
        format!("HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
    };
    let _ = if head.starts_with("GET /monitoring/healthz") {
        s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{}",
        )
    } else if head.contains("/v2/chat/agent") {
        let body = "this is not json\n";
        s.write_all(
            format!(
                "{}{:x}\r\n{body}\r\n0\r\n\r\n",
                chunked("application/x-ndjson"),
                body.len()
            )
            .as_bytes(),
        )
    } else if head.contains("/v2/code/completions") {
        // One chunk of content, then the connection closes without the terminating chunk.
        s.write_all(
            format!(
                "{}8\r\nreturn a\r\n",
                chunked("text/event-stream; charset=utf-8")
            )
            .as_bytes(),
        )
    } else {
        std::thread::sleep(std::time::Duration::from_secs(5));
        Ok(())
    };
}

#[test]
fn garbage_dropped_streams_and_hangs_are_classified() {
    let port = bad_server();
    let d = tempfile::tempdir().unwrap();
    let chat = json!({"messages": [{"role": "user", "content": "hi"}]});
    let s = write_run(
        d.path(),
        &[
            line("garbage", "duo_chat", "/v2/chat/agent", chat),
            line(
                "dropped",
                "code_completions",
                "/v2/code/completions",
                json!({"stream": true}),
            ),
            line(
                "hang",
                "summarize_review",
                "/v1/prompts/summarize_review",
                json!({"inputs": {}}),
            ),
        ],
        1.0,
    );
    let out = d.path().join("run");
    let (code, stdout, stderr) = common::run_cli(&[
        "run",
        &s,
        "--target",
        &format!("http://127.0.0.1:{port}"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let sm = summary(d.path());
    assert_eq!(
        sm["errors_by_class"],
        json!({"dropped": 1, "framing": 1, "timeout": 1}),
        "{sm}"
    );
    let results = std::fs::read_to_string(out.join("results.ndjson")).unwrap();
    let dropped: Value = results
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["id"] == "dropped")
        .unwrap();
    // What arrived before the drop is kept.
    assert_eq!(dropped["content"], "return a");
}
