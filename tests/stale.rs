//! A server that closes a keep-alive connection after a failed answer (as llama.cpp does): the
//! next request sent on that pooled connection never reaches it. The harness classes that as a
//! stale connection, not "unreachable", retries it once on a fresh connection, and counts both.

mod common;

use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;

fn respond(s: &mut TcpStream, status: &str, body: &str) -> bool {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all((head + body).as_bytes()).is_ok()
}

/// Keep-alive connections. A request with `x-case: fail` gets a 500, after which the server
/// ends the connection as soon as the next request arrives, without reading it.
fn serve(mut s: TcpStream) {
    let answer = json!({"id": "c", "object": "text_completion", "model": "m",
        "choices": [{"index": 0, "text": "return 1", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    .to_string();
    while let Some(req) = common::read_request(&mut s) {
        let head = String::from_utf8_lossy(&req).to_ascii_lowercase();
        let ok = if head.starts_with("get /v1/models ") {
            respond(&mut s, "200 OK", r#"{"object":"list","data":[{"id":"m"}]}"#)
        } else if head.starts_with("get ") {
            respond(&mut s, "200 OK", "{}")
        } else if head.contains("x-case: fail") {
            respond(&mut s, "500 Internal Server Error", r#"{"error":"boom"}"#);
            let mut one = [0u8; 1];
            let _ = s.peek(&mut one); // the next request is here: it is never read
            return; // dropped with unread bytes: the peer gets a reset
        } else {
            respond(&mut s, "200 OK", &answer)
        };
        if !ok {
            return;
        }
    }
}

#[test]
fn a_request_on_a_connection_the_server_closed_is_retried_once_and_counted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in listener.incoming().flatten().take(200) {
            std::thread::spawn(move || serve(s));
        }
    });
    let lines: Vec<String> = (0..8)
        .map(|i| {
            let case = if i % 2 == 0 { "fail" } else { "ok" };
            json!({"v": 1, "id": format!("r{i}"), "feature": "code_completions", "arrival_offset_ms": i * 10,
                "request": {"method": "POST", "path": "/v1/completions", "headers": {"x-case": case},
                            "body": {"model": "m", "prompt": "def f():", "max_tokens": 4}}})
            .to_string()
        })
        .collect();
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("c.jsonl"), lines.join("\n")).unwrap();
    let s = d.path().join("s.toml");
    let load = ""; // the default: a sequential replay, in corpus order
    std::fs::write(
        &s,
        format!("name = \"stale\"\ncorpus = \"c.jsonl\"\n[target]\nurl = \"{url}\"\n{load}"),
    )
    .unwrap();
    let out = d.path().join("run");
    let (code, stdout, stderr) =
        common::run_cli(&["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 1, "the 500s fail the run: {stdout}{stderr}");
    let sm = common::json_file(&out.join("summary.json"));
    assert_eq!(
        sm["errors_by_class"],
        json!({"http5xx": 4}),
        "no request is 'unreachable': {sm}"
    );
    let f = &sm["features"]["code_completions"];
    assert_eq!(
        f["stale_connections"],
        json!({"seen": 4, "retried_ok": 4}),
        "{f}"
    );
    let retried: Vec<Value> = common::results(&out)
        .into_iter()
        .filter(|r| r["stale_connection"] == true)
        .collect();
    assert_eq!(retried.len(), 4);
    assert!(retried
        .iter()
        .all(|r| r["error"].is_null() && r["content"] == "return 1"));
    assert!(
        stdout.contains("stale connection"),
        "the console says so: {stdout}"
    );
}
