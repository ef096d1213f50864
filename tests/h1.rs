//! The load's own HTTP/1.1 client (`src/drive/h1`) against a raw socket server that frames its
//! answers in every legal way: a body split across reads at awkward places, an interim 100
//! head, chunk extensions and trailers, a known length, a body delimited by the close, and
//! `connection: close`; and in one illegal way (bad chunk framing). What the server received is
//! checked too: the request line, `host`, the replayed header, `accept`, the body's length.

mod common;

use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn sse(text: &str, finish: Option<&str>) -> String {
    let c = json!({"id": "c", "object": "text_completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

/// The answer to the request whose `x-case` is `case`, as the pieces the server writes with a
/// pause between them (each arrives in a read of its own).
fn answer(case: &str) -> Vec<Vec<u8>> {
    let events = format!(
        "{}{}data: [DONE]\n\n",
        sse("return", None),
        sse(" 1", Some("length"))
    );
    let (first, rest) = events.split_at(40);
    let sse_head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n";
    let pieces: Vec<String> = match case {
        // Split inside a chunk's data, inside a size line and between data and its CRLF.
        "chunked" => vec![
            "HTTP/1.1 100 Continue\r\n\r\n".into(),
            format!(
                "{sse_head}transfer-encoding: chunked\r\n\r\n{:x};ext=1\r\n{first}",
                first.len()
            ),
            format!("\r\n{:x}", rest.len()),
            format!("\r\n{rest}"),
            "\r\n0\r\nx-trailer: t\r\n\r\n".into(),
        ],
        "length" => vec![
            format!("{sse_head}content-length: {}\r\n\r\n{first}", events.len()),
            rest.into(),
        ],
        "close" => vec![
            format!("{sse_head}connection: close\r\n\r\n{first}"),
            rest.into(),
        ],
        "http10" => vec![format!(
            "HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n{events}"
        )],
        "bad" => vec![format!(
            "{sse_head}transfer-encoding: chunked\r\n\r\n{:x}\r\n{first}\r\nzz\r\n",
            first.len()
        )],
        // The preflight's questions (health, the model list): a JSON answer.
        _ => {
            let list = r#"{"object":"list","data":[{"id":"m"}]}"#;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n";
            vec![format!(
                "{head}content-length: {}\r\n\r\n{list}",
                list.len()
            )]
        }
    };
    pieces.into_iter().map(String::into_bytes).collect()
}

struct Seen {
    connections: AtomicUsize,
    requests: Mutex<Vec<String>>,
}

fn serve(mut s: TcpStream, seen: &Seen) {
    s.set_nodelay(true).unwrap();
    while let Some(req) = common::read_request(&mut s) {
        let text = String::from_utf8_lossy(&req).into_owned();
        seen.requests.lock().unwrap().push(text.clone());
        let case = text
            .lines()
            .find_map(|l| l.strip_prefix("x-case: "))
            .unwrap_or("none")
            .trim()
            .to_owned();
        for piece in answer(&case) {
            if s.write_all(&piece).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(15));
        }
        if matches!(case.as_str(), "close" | "http10" | "bad") {
            return; // the close ends the body (or the connection the answer said it would)
        }
    }
}

fn start() -> (String, Arc<Seen>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen {
        connections: AtomicUsize::new(0),
        requests: Mutex::new(Vec::new()),
    });
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten().take(100) {
            s2.connections.fetch_add(1, SeqCst);
            let seen = s2.clone();
            std::thread::spawn(move || serve(s, &seen));
        }
    });
    (url, seen)
}

fn run(url: &str, cases: &[&str]) -> (i32, String, Vec<Value>) {
    let lines: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            json!({"v": 1, "id": format!("{i}-{case}"), "feature": "code_completions",
                "request": {"method": "POST", "path": "/v1/completions",
                    "headers": {"X-Case": case},
                    "body": {"model": "m", "prompt": "def f():", "max_tokens": 2, "stream": true}}})
            .to_string()
        })
        .collect();
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("c.jsonl"), lines.join("\n")).unwrap();
    let s = d.path().join("s.toml");
    let scenario = format!("name = \"h1\"\ncorpus = \"c.jsonl\"\n[target]\nurl = \"{url}\"\n");
    std::fs::write(&s, scenario).unwrap();
    let out = d.path().join("run");
    let (code, stdout, stderr) =
        common::run_cli(&["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    (code, format!("{stdout}{stderr}"), common::results(&out))
}

#[test]
fn every_legal_body_framing_reads_whole_and_a_kept_connection_is_reused() {
    let (url, seen) = start();
    let cases = [
        "chunked", "chunked", "length", "close", "chunked", "http10", "chunked",
    ];
    let (code, log, results) = run(&url, &cases);
    assert_eq!(code, 0, "{log}");
    for r in &results {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["content"], "return 1", "{r}");
        assert_eq!(r["status"], 200);
        assert_eq!(r["finish_reason"], "length", "{r}");
        assert_ne!(r["stale_connection"], true, "{r}");
    }
    // Each piece written after a pause arrives as a chunk of its own: the body was read as it
    // came, not at its end.
    let chunks = |i: usize| results[i]["chunks"].as_array().map_or(0, Vec::len);
    assert_eq!([chunks(0), chunks(2), chunks(3)], [2, 2, 2], "{results:?}");
    // The preflight's connection, then: chunked ×2 and length share one; close ends it;
    // chunked reuses none (a new one), http10 needs a new one and ends it; the last a new one.
    let connections = seen.connections.load(SeqCst);
    assert!(
        connections <= 5,
        "kept-alive connections are reused: {connections}"
    );
    let requests = seen.requests.lock().unwrap();
    let sent = requests
        .iter()
        .find(|r| r.starts_with("POST "))
        .expect("a POST reached the server");
    let host = url.trim_start_matches("http://");
    assert!(
        sent.starts_with("POST /v1/completions HTTP/1.1\r\n"),
        "{sent}"
    );
    assert!(sent.contains(&format!("\r\nhost: {host}\r\n")), "{sent}");
    assert!(
        sent.contains("\r\nx-case: chunked\r\n"),
        "names are lower-cased: {sent}"
    );
    assert!(sent.contains("\r\naccept: */*\r\n"), "{sent}");
    let body = sent.split("\r\n\r\n").nth(1).unwrap();
    assert!(
        sent.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
        "{sent}"
    );
    assert!(
        sent.contains("\r\ncontent-type: application/json\r\n"),
        "{sent}"
    );
}

#[test]
fn a_broken_chunk_framing_is_a_dropped_stream_that_keeps_what_arrived() {
    let (url, _) = start();
    let (code, log, results) = run(&url, &["bad"]);
    assert_eq!(code, 1, "{log}");
    let r = &results[0];
    assert_eq!(r["error"]["class"], "dropped", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("bad chunked framing: a chunk-size line is not a hex size"),
        "{message}"
    );
    assert!(r["chunks"].as_array().is_some_and(|c| !c.is_empty()), "{r}");
}
