//! One redaction rule for every writer, proven by canaries: nothing shipped under `fixtures/`
//! holds a secret's shape; secrets planted in every kind of place (the names the first rule set
//! missed, query and form parameters, multipart parts, URL passwords and DSNs, gRPC metadata,
//! token shapes in prompts, goals and answers) reach neither a corpus, a run folder, nor the
//! console. The shapes are found by a second, independent detector (`common::canary`).

mod common;

use common::canary::{files_under, secret_shapes};
use common::hostile;
use common::recorder::Recorder;
use common::stream_server::{self, Script};
use serde_json::{json, Value};
use std::path::Path;

const CANARY: &str = "CnRy9d2f";

/// Asserts no canary and no secret shape in `text` (named `what`).
fn clean(what: &str, text: &str, canaries: &[&str]) {
    for c in canaries {
        assert!(!text.contains(c), "{what} holds the canary {c}: {text}");
    }
    let shapes = secret_shapes(text);
    assert!(shapes.is_empty(), "{what} holds secret shapes: {shapes:?}");
}

fn clean_folder(dir: &Path, canaries: &[&str]) {
    for f in files_under(dir) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        clean(&f.display().to_string(), &text, canaries);
    }
}

/// Whether a JWT has expired (its `exp` claim is in the past): the captures keep the tokens the
/// capture rigs minted with throwaway keys, byte for byte, and these no longer open anything.
fn expired_jwt(token: &str) -> bool {
    use base64::Engine;
    let Some(payload) = token.split('.').nth(1) else {
        return false;
    };
    let decoded =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='));
    let claims: Value = decoded
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    claims["exp"].as_u64().is_some_and(|exp| exp < now)
}

/// No shipped file holds a secret's shape; the only tokens allowed are JWTs that have expired.
#[test]
fn nothing_shipped_under_fixtures_holds_a_secret() {
    let files = files_under(&common::repo().join("fixtures"));
    assert!(files.len() > 100, "read the fixtures: {}", files.len());
    let mut expired = 0;
    for f in files {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        let live: Vec<_> = secret_shapes(&text)
            .into_iter()
            .filter(|(kind, m)| !(*kind == "JWT" && expired_jwt(m)))
            .collect();
        expired += secret_shapes(&text).len() - live.len();
        assert!(live.is_empty(), "{} holds secrets: {live:?}", f.display());
    }
    assert!(
        expired > 0,
        "the captures' expired tokens were seen (the scan reads them)"
    );
}

/// The places the first rule set missed, through a real recording.
#[test]
fn secrets_the_first_rule_set_missed_never_reach_the_corpus() {
    let (upstream, _) = stream_server::start(Script {
        first_ms: 1,
        gap_ms: 1,
        chunks: 2,
        serial: false,
    });
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("c.jsonl");
    let rec = Recorder::start(&upstream, &out, &[]);
    let c = |n: u32| format!("{CANARY}{n:02}x");
    let body = json!({
        "pass": c(1), "passphrase": c(2), "pwd": c(3), "auth": c(4), "bearer": c(5),
        "oauth": c(6), "signature": c(7), "session_id": c(8), "sessionId": c(9),
        "model_metadata": {"provider": "custom_openai", "name": "m",
            "endpoint": format!("http://user:{}@10.0.0.5:8000/v1", c(10)),
            "identifier": "custom_openai/m"},
        "current_file": {"file_name": "a.py", "content_above_cursor": format!(
            "DSN = 'postgres://app:{}@db/x'\nKEY = 'AKIAZZCANARY00000009'\nT = 'ghp_{}0123456789abcdefghijklmnop'\n\
             -----BEGIN RSA PRIVATE KEY-----\nMIIE{}\n-----END RSA PRIVATE KEY-----\nS = 'xoxb-{}-1234'\nH = 'hf_{}abcdefghijklmnopqrstuvwxyz0123'",
            c(11), c(12), c(13), c(14), c(15))},
        "stream": true,
    });
    let client = reqwest::blocking::Client::new();
    let query = format!(
        "key={}&sig={}&X-Amz-Signature={}&page=2",
        c(16),
        c(17),
        c(18)
    );
    let r = client
        .post(format!("{}/v2/code/completions?{query}", rec.url))
        .json(&body)
        .send()
        .unwrap();
    let _ = r.bytes();
    let multipart = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ\r\n\
         Content-Disposition: form-data; name=\"passphrase\"\r\n\r\n{}\r\n--XyZ--\r\n",
        c(19)
    );
    let r = client
        .post(format!("{}/v2/code/completions", rec.url))
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .header("x-amz-security-token", c(20))
        .header("x-oauth-token", c(21))
        .body(multipart)
        .send()
        .unwrap();
    let _ = r.bytes();
    let (_, stderr, lines) = rec.stop();
    assert_eq!(lines.len(), 2, "{stderr}");
    let corpus = std::fs::read_to_string(&out).unwrap();
    clean("the corpus", &corpus, &[CANARY]);
    clean("the logs", &stderr, &[CANARY]);
    // A body that was not JSON is kept as base64: decoded, it is clean too.
    use base64::Engine;
    let b64 = lines[1]["request"]["body_b64"].as_str().unwrap();
    let form = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let form = String::from_utf8(form).unwrap();
    clean("the multipart body", &form, &[CANARY]);
    assert!(form.contains("hello"), "the rest kept: {form}");
    let (_, stats, stats_err) = common::run_cli(&["corpus", "stats", out.to_str().unwrap()]);
    clean("corpus stats", &(stats + &stats_err), &[CANARY]);
}

/// `corpus from-dws-capture` writes traffic: the metadata's OAuth token, GitLab token, cookie,
/// JWT and API key, and token shapes in the goal, are redacted like any other capture's.
#[test]
fn a_dws_capture_becomes_a_corpus_line_without_its_secrets() {
    let capture = std::fs::read_to_string(
        common::repo().join("fixtures/captures/dws-samples/chat_text.grpc.jsonl"),
    )
    .unwrap();
    let jwt = format!("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ{CANARY}.c2ln{CANARY}");
    let lines: Vec<String> = capture
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if v["kind"] == "metadata" {
                let m = v["msg"].as_object_mut().unwrap();
                m.insert("x-gitlab-oauth-token".into(), json!(format!("oauth-{CANARY}")));
                m.insert("x-gitlab-token".into(), json!(format!("glpat-{CANARY}0123456789ab")));
                m.insert("cookie".into(), json!(format!("_gitlab_session={CANARY}")));
                m.insert("x-gitlab-id-token".into(), json!(jwt));
                m.insert("x-api-key".into(), json!(format!("k-{CANARY}")));
                m.insert("x-note".into(), json!(format!("see {jwt}")));
            }
            if let Some(start) = v["msg"].get_mut("startRequest") {
                start["goal"] = json!(format!(
                    "deploy with AKIAZZCANARY00000009 and -----BEGIN PRIVATE KEY-----\nMII{CANARY}\n-----END PRIVATE KEY-----"
                ));
            }
            v.to_string()
        })
        .collect();
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("planted.grpc.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let (code, stdout, stderr) =
        common::run_cli(&["corpus", "from-dws-capture", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    clean("the corpus line", &stdout, &[CANARY, "AKIAZZCANARY"]);
    let line: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        line["request"]["headers"]["x-gitlab-realm"], "self-managed",
        "the rest kept"
    );
    assert!(line["request"]["body"]["startRequest"]["goal"]
        .as_str()
        .unwrap()
        .starts_with("deploy with [REDACTED]"));
}

/// A leaky server's answers (a PEM key, an AWS key id, a GitHub token, a DSN with its password)
/// and an error body that echoes `password=…`: no file of the run folder and no console line
/// holds them.
#[test]
fn a_leaky_server_leaves_no_secret_in_the_run_folder() {
    let h = hostile::start("http://127.0.0.1:9");
    let d = tempfile::tempdir().unwrap();
    let line = |id: &str, case: &str| {
        json!({"v": 1, "id": id, "feature": "code_completions", "request": {
            "method": "POST", "path": "/v1/completions", "headers": {"x-case": case},
            "body": {"model": "m", "prompt": "def f():", "max_tokens": 8, "stream": true}}})
        .to_string()
    };
    std::fs::write(
        d.path().join("c.jsonl"),
        [line("leak", "leaky"), line("boom", "hostile_500")].join("\n") + "\n",
    )
    .unwrap();
    let s = d.path().join("s.toml");
    std::fs::write(
        &s,
        format!(
            "name = \"leaky\"\ncorpus = \"c.jsonl\"\n[target]\nurl = \"{}\"\n",
            h.url
        ),
    )
    .unwrap();
    let out = d.path().join("run");
    let (code, stdout, stderr) =
        common::run_cli(&["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let leaked = [
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "AKIAZZLEAKEDCANARY99",
        "LeakedCanary",
        "LeakedPw0123",
    ];
    clean_folder(&out, &leaked);
    clean("the console", &(stdout + &stderr), &leaked);
    let rs = common::results(&out);
    let leak = rs.iter().find(|r| r["id"] == "leak").unwrap();
    assert!(
        leak["content"].as_str().unwrap().contains("[REDACTED]"),
        "{leak}"
    );
    assert!(
        leak["error"].is_null(),
        "still measured as an answer: {leak}"
    );
}
