//! `duo-harness record`, the real binary over loopback: byte-faithful passthrough of every
//! capture, no secret on disk, record → replay fidelity, and the bad-input cases (upstream reset,
//! client gone, non-JSON body).

mod common;

use common::recorder::Recorder;
use common::stream_server::{self, Script};
use common::{captures_dir, parse_raw, repo, route_of};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

/// Serves one raw capture (`NAME.response.raw`) per connection: its head as captured, then its
/// chunks one write each, 5 ms apart, as the original chunking.
fn raw_server(raw: Vec<u8>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { return };
            let raw = raw.clone();
            std::thread::spawn(move || {
                if common::read_request(&mut s).is_none() {
                    return;
                }
                let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let resp = parse_raw(&raw);
                let _ = s.write_all(&raw[..split]);
                if resp.header("transfer-encoding") == Some("chunked") {
                    for c in &resp.chunks {
                        std::thread::sleep(Duration::from_millis(5));
                        let _ = s.write_all(format!("{:x}\r\n", c.len()).as_bytes());
                        let _ = s.write_all(c);
                        let _ = s.write_all(b"\r\n");
                    }
                    let _ = s.write_all(b"0\r\n\r\n");
                } else {
                    let _ = s.write_all(&raw[split..]);
                }
            });
        }
    });
    url
}

#[test]
fn passthrough_is_byte_identical_for_every_capture() {
    let dir = captures_dir().join("aigw-samples");
    let d = tempfile::tempdir().unwrap();
    let client = reqwest::blocking::Client::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(case) = name.strip_suffix(".request.json") else {
            continue;
        };
        let raw = std::fs::read(dir.join(format!("{case}.response.raw"))).unwrap();
        let want = parse_raw(&raw);
        let upstream = raw_server(raw);
        let rec = Recorder::start(&upstream, &d.path().join(format!("{case}.jsonl")), &[]);
        let body = std::fs::read(dir.join(&name)).unwrap();
        let (route, _) = route_of(case);
        let mut resp = client
            .post(format!("{}{route}", rec.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), want.status, "{case}");
        for (k, v) in &want.headers {
            if !["transfer-encoding", "connection", "content-length", "date"].contains(&k.as_str())
            {
                assert_eq!(
                    resp.headers().get(k).and_then(|x| x.to_str().ok()),
                    Some(v.as_str()),
                    "{case}: {k}"
                );
            }
        }
        let mut got = Vec::new();
        resp.read_to_end(&mut got).unwrap();
        assert_eq!(got, want.body(), "{case}: body differs");
        let (_, _, lines) = rec.stop();
        // Every Duo route is recorded: its chunks put together are the body the client got.
        if let Some(line) = lines.first() {
            let chunks = line["response"]["chunks"].as_array().unwrap();
            let text: String = chunks.iter().filter_map(|c| c["text"].as_str()).collect();
            assert_eq!(
                text.as_bytes(),
                want.body().as_slice(),
                "{case}: recorded body"
            );
            assert_eq!(line["response"]["status"], want.status, "{case}");
        }
        checked += 1;
    }
    assert!(
        checked >= 20,
        "only {checked} captures found in {}",
        dir.display()
    );
}

const CANARY: &str = "CANARY7d1e";

#[test]
fn no_secret_canary_reaches_the_corpus_logs_or_reports() {
    let (upstream, _) = stream_server::start(Script {
        first_ms: 1,
        gap_ms: 1,
        chunks: 2,
        serial: false,
    });
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("c.jsonl");
    let rec = Recorder::start(
        &upstream,
        &out,
        &["--redact", ".messages[].content=keep-length"],
    );
    let jwt = format!("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ{CANARY}.c2ln{CANARY}");
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": format!("my key is {CANARY}")}],
        "model_metadata": {"provider": "custom_openai", "name": "mistral", "endpoint": "http://x/v1",
                           "identifier": "custom_openai/m", "api_key": format!("sk-{CANARY}")},
        "model_api_key": format!("sk-{CANARY}"),
        "options": {"api_key": CANARY, "note": format!("token {jwt} inside")},
    });
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v2/chat/agent", rec.url))
        .header("authorization", format!("Bearer {jwt}"))
        .header("x-api-key", CANARY)
        .header("cookie", format!("session={CANARY}"))
        .header("x-gitlab-oidc-token", CANARY)
        .header("private-token", CANARY)
        .header("x-gitlab-instance-id", format!("x {jwt}"))
        .json(&body)
        .send()
        .unwrap();
    assert!(resp.status().is_success());
    let _ = resp.bytes();
    let (_, stderr, lines) = rec.stop();
    assert_eq!(lines.len(), 1);
    let corpus = std::fs::read_to_string(&out).unwrap();
    assert!(!corpus.contains(CANARY), "canary in the corpus: {corpus}");
    assert!(!stderr.contains(CANARY), "canary in the logs: {stderr}");
    let (code, stats, stats_err) =
        common::run_cli(&["corpus", "stats", out.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stats_err}");
    assert!(!stats.contains(CANARY) && !stats_err.contains(CANARY));
    // keep-length kept the message's shape.
    assert_eq!(
        lines[0]["request"]["body"]["messages"][0]["content"],
        "xx xxx xx xxxxxx0x0x"
    );
}

/// Every placement of a secret the harness has seen in the wild: key-named headers both ways,
/// JWTs glued to other text (`token=eyJ…`, inside compact JSON of SSE chunks, split across
/// raw-text chunks), query-string tokens, form-encoded bodies. None reaches the corpus.
#[test]
fn secrets_in_every_placement_are_redacted_at_capture() {
    let jwt = format!("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ{CANARY}.c2ln{CANARY}x");
    let (a, b) = jwt.split_at(30);
    let sse_json = format!("data: {{\"choices\":[{{\"text\":\"{a}");
    let body_chunks = [
        sse_json.as_str(),
        b,
        "\"}]}\n\n",
        " password: ",
        CANARY,
        "ab\n",
    ];
    let mut raw = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\nx-auth-key: {CANARY}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    for c in body_chunks {
        raw.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
    }
    raw.push_str("0\r\n\r\n");
    let upstream = raw_server(raw.into_bytes());
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("c.jsonl");
    let rec = Recorder::start(&upstream, &out, &[]);
    let client = reqwest::blocking::Client::new();
    let form = format!("grant_type=x&client_secret={CANARY}&token={jwt}&scope=api");
    let r = client
        .post(format!(
            "{}/v2/code/completions?private_token=glpat-{CANARY}{CANARY}&page=1",
            rec.url
        ))
        .header("X-Access-Key", CANARY)
        .header("X-Gitlab-Auth-Key", CANARY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .unwrap();
    let got = r.bytes().unwrap();
    assert!(
        String::from_utf8_lossy(&got).contains(CANARY),
        "the client gets the answer as is"
    );
    let json_body = serde_json::json!({
        "apiKey": CANARY, "API_KEY": CANARY, "credentials": {"password": CANARY},
        "current_file": {"content_above_cursor": format!("curl -H 'Authorization: Bearer {CANARY}x'")},
        "stream": true,
    });
    let r = client
        .post(format!("{}/v2/code/completions", rec.url))
        .json(&json_body)
        .send()
        .unwrap();
    let _ = r.bytes();
    let (_, stderr, lines) = rec.stop();
    assert_eq!(lines.len(), 2, "{stderr}");
    let corpus = std::fs::read_to_string(&out).unwrap();
    assert!(!corpus.contains(CANARY), "canary in the corpus: {corpus}");
    // The form body is redacted before it is encoded: an audit of the corpus sees it clean.
    let form = lines[0]["request"]["body_b64"].as_str().unwrap();
    use base64::Engine;
    let form = base64::engine::general_purpose::STANDARD
        .decode(form)
        .unwrap();
    let form = String::from_utf8(form).unwrap();
    assert!(
        !form.contains(CANARY) && form.contains("scope=api"),
        "{form}"
    );
    assert!(!stderr.contains(CANARY), "canary in the logs: {stderr}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the corpus is its owner's only");
    }
}

#[test]
fn upstream_resets_and_client_disconnects_are_recorded_as_such() {
    // An upstream that resets after the first chunk.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let reset_url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let mut s = conn.unwrap();
            common::read_request(&mut s);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n");
            std::thread::sleep(Duration::from_millis(20));
            drop(s); // no terminating chunk: a mid-stream reset for the client
        }
    });
    let d = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&reset_url, &d.path().join("reset.jsonl"), &[]);
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v2/code/completions", rec.url))
        .body("not json {")
        .send()
        .unwrap();
    assert!(r.bytes().is_err(), "the client sees the same break");
    let (_, _, lines) = rec.stop();
    let line = &lines[0];
    assert_eq!(line["response"]["truncated"], true);
    assert!(line["tags"]
        .as_array()
        .unwrap()
        .contains(&"truncated".into()));
    assert_eq!(line["request"]["body_b64"], "bm90IGpzb24gew=="); // "not json {"
    assert_eq!(line["response"]["chunks"][0]["text"], "hello");

    // A client that leaves mid-stream: the upstream call is cancelled.
    let (slow, counters) = stream_server::start(Script {
        first_ms: 5,
        gap_ms: 200,
        chunks: 20,
        serial: false,
    });
    let rec = Recorder::start(&slow, &d.path().join("gone.jsonl"), &[]);
    let mut s = std::net::TcpStream::connect(rec.url.trim_start_matches("http://")).unwrap();
    let req = "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 1024];
    let _ = s.read(&mut buf).unwrap();
    drop(s);
    for _ in 0..100 {
        if counters.requests.load(SeqCst) == 1 && counters.in_flight.load(SeqCst) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        counters.in_flight.load(SeqCst),
        0,
        "the upstream call was not cancelled"
    );
    let rec_tap = rec; // /v1/completions is no Duo route: nothing is recorded without --tap
    let (_, _, lines) = rec_tap.stop();
    assert!(lines.is_empty());
    let rec = Recorder::start(&slow, &d.path().join("tap.jsonl"), &["--tap"]);
    let mut s = std::net::TcpStream::connect(rec.url.trim_start_matches("http://")).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.read(&mut buf).unwrap();
    drop(s);
    rec.wait_for_lines(1); // the cancelled exchange is written once the proxy sees the close
    let (_, _, lines) = rec.stop();
    assert_eq!(lines[0]["kind"], "tap");
    assert_eq!(lines[0]["cancelled"], true);
}

/// Records a replay of a corpus through the proxy.
fn record_replay(
    corpus: &Path,
    stack: &duo_harness::twin::StackUrls,
    dir: &Path,
    tag: &str,
) -> Vec<Value> {
    let rec = Recorder::start(&stack.aigw, &dir.join(format!("{tag}.jsonl")), &[]);
    // The trace replay below is open loop: a busy test machine must not make it invalid.
    let scenario =
        common::quickstart_on_backends(corpus, |b| stack.backends[b].openai_base.clone());
    let s = dir.join(format!("{tag}.toml"));
    std::fs::write(&s, scenario).unwrap();
    let out = dir.join(format!("{tag}-run"));
    let (code, stdout, stderr) = common::run_cli(&[
        "run",
        s.to_str().unwrap(),
        "--target",
        &rec.url,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    rec.stop().2
}

#[test]
fn a_recorded_corpus_replays_with_the_same_features_and_bodies() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stack = rt
        .block_on(duo_harness::twin::start(&Default::default()))
        .unwrap();
    let urls = stack.urls();
    let d = tempfile::tempdir().unwrap();
    let first = record_replay(
        &repo().join("fixtures/corpus/duo-default.jsonl"),
        &urls,
        d.path(),
        "first",
    );
    assert_eq!(first.len(), 43);
    let corpus = d.path().join("first.jsonl");
    let (code, out, err) = common::run_cli(&["corpus", "validate", corpus.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    // The load engine's trace mode replays it on its recorded arrival times.
    let traced = d.path().join("traced");
    let first_scenario = d.path().join("first.toml");
    let args = [
        "run",
        first_scenario.to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--target",
        &urls.aigw,
        "--arrival",
        "trace",
        "--out",
        traced.to_str().unwrap(),
    ];
    let (code, out, err) = common::run_cli(&args);
    assert_eq!(code, 0, "{out}{err}");
    let mut intended: Vec<f64> = std::fs::read_to_string(traced.join("results.ndjson"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["intended_ms"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let mut recorded: Vec<f64> = first
        .iter()
        .map(|l| l["arrival_offset_ms"].as_f64().unwrap())
        .collect();
    intended.sort_by(f64::total_cmp);
    recorded.sort_by(f64::total_cmp);
    assert_eq!(intended.len(), recorded.len());
    assert!(
        intended
            .iter()
            .zip(&recorded)
            .all(|(a, b)| (a - b).abs() < 1e-3),
        "{intended:?} vs {recorded:?}"
    );
    let second = record_replay(&corpus, &urls, d.path(), "second");
    assert_eq!(second.len(), first.len());
    let key = |v: &Value| {
        (
            v["feature"].clone(),
            v["request"]["path"].clone(),
            v["request"]["body"].clone(),
        )
    };
    let mut a: Vec<String> = first.iter().map(|v| key(v).0.to_string()).collect();
    let mut b: Vec<String> = second.iter().map(|v| key(v).0.to_string()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "same features");
    for x in &first {
        assert!(
            second.iter().any(|y| key(x) == key(y)),
            "no replay with the body of {}",
            x["id"]
        );
        assert_eq!(x["response"]["status"], 200, "{}", x["id"]);
    }
    drop(stack);
}

#[test]
fn a_torn_last_line_is_reported_not_fatal() {
    let d = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(repo().join("fixtures/corpus/duo-default.jsonl")).unwrap();
    let first = good.lines().next().unwrap();
    let p = d.path().join("torn.jsonl");
    std::fs::write(&p, format!("{first}\n{}", &first[..first.len() / 2])).unwrap();
    let (code, out, err) = common::run_cli(&["corpus", "validate", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("torn.jsonl:2: torn last line"), "{err}");
    assert_eq!(duo_harness::corpus::load(&p).unwrap().len(), 1);
    let bad = d.path().join("bad.jsonl");
    std::fs::write(&bad, format!("{}\n{first}\n", &first[..10])).unwrap();
    let (code, _, err) = common::run_cli(&["corpus", "validate", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.jsonl:1:"), "{err}");
}

/// What never became an exchange leaves no line: a body over the limit is answered 413, a
/// WebSocket upgrade is refused with a clear message. An upstream that does not answer leaves
/// a line with the request, the error and no status (the upstream gave none).
#[test]
fn refused_requests_leave_no_line_and_failures_no_invented_status() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("c.jsonl");
    let rec = Recorder::start(
        &format!("http://127.0.0.1:{}", common::closed_port()),
        &out,
        &[],
    );
    let client = reqwest::blocking::Client::new();
    let big = vec![b'x'; (64 << 20) + 1];
    let r = client
        .post(format!("{}/v2/code/completions", rec.url))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let r = client
        .get(format!("{}/api/v4/ai/duo_workflows/ws", rec.url))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 501);
    assert!(r
        .text()
        .unwrap()
        .contains("does not proxy protocol upgrades"));
    let r = client
        .post(format!("{}/v2/code/completions", rec.url))
        .json(&serde_json::json!({"current_file": {"file_name": "a.py"}, "stream": true}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    let (_, stderr, lines) = rec.stop();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0]["response"]["status"].is_null(), "{}", lines[0]);
    assert!(lines[0]["response"]["error"]
        .as_str()
        .unwrap()
        .contains("upstream"));
    assert!(stderr.contains("2 refused (not written)"), "{stderr}");
}
