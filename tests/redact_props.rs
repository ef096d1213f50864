//! Property test of redaction at capture: random secrets planted in random places of random
//! requests and streams (key-named headers and fields in every case style and at any depth,
//! JWTs glued to other text or split across chunks, query parameters, form bodies, response
//! headers) never survive into the corpus line.

use bytes::Bytes;
use duo_harness::record::corpus_line;
use duo_harness::record::proxy::Capture;
use proptest::prelude::*;
use serde_json::{json, Value};

/// A secret-bearing name in one of the case styles seen in the wild.
fn secret_name() -> impl Strategy<Value = String> {
    let words = prop_oneof![
        Just(vec!["api", "key"]),
        Just(vec!["private", "token"]),
        Just(vec!["client", "secret"]),
        Just(vec!["access", "token"]),
        Just(vec!["auth", "key"]),
        Just(vec!["access", "key"]),
        Just(vec!["password"]),
        Just(vec!["credentials"]),
        Just(vec!["x", "gitlab", "auth", "key"]),
    ];
    (words, 0..6usize).prop_map(|(w, style)| {
        let cap = |s: &str| s[..1].to_uppercase() + &s[1..];
        match style {
            0 => w.join("_"),
            1 => w.join("-"),
            2 => w.join("_").to_uppercase(),
            3 => w[0].to_owned() + &w[1..].iter().map(|s| cap(s)).collect::<String>(),
            4 => w.iter().map(|s| cap(s)).collect::<Vec<_>>().join("-"),
            _ => w.iter().map(|s| cap(s)).collect(),
        }
    })
}

fn jwt(secret: &str) -> String {
    format!("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOi{secret}.{secret}")
}

fn capture(path: &str, headers: Vec<(String, String)>, body: Vec<u8>) -> Capture {
    Capture {
        seq: 0,
        arrival_offset_ms: 0.0,
        method: "POST".into(),
        path: path.into(),
        request_headers: headers,
        request_body: Bytes::from(body),
        status: Some(200),
        response_headers: vec![("content-type".into(), "text/event-stream".into())],
        headers_ms: Some(1.0),
        chunks: vec![(2.0, Bytes::from_static(b"return a"))],
        end_ms: Some(3.0),
        truncated: false,
        cancelled: false,
        error: None,
    }
}

/// Nests `leaf` under `depth` random levels of objects and arrays.
fn nest(leaf: Value, depth: usize, keys: &[String]) -> Value {
    (0..depth).fold(leaf, |v, i| match i % 2 {
        0 => json!({ keys[i % keys.len()].clone(): v, "file_name": "a.py" }),
        _ => json!([v, {"role": "user"}]),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn planted_secrets_never_survive(
        secret in "[A-Za-z0-9]{24,40}",
        name in secret_name(),
        place in 0..7usize,
        depth in 0..5usize,
        keys in proptest::collection::vec("[a-z_]{1,12}", 1..4),
        glue in "[A-Za-z =:({\\[\"]{0,6}",
        cut in 1..60usize,
    ) {
        let plain = || json!({"current_file": {"content_above_cursor": "def f(x):"}, "stream": true});
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        let mut path = "/v2/code/completions".to_owned();
        let mut body = plain().to_string().into_bytes();
        let mut cap_chunks = None;
        let mut response_header = None;
        match place {
            0 => headers.push((name.clone(), secret.clone())),
            1 => body = nest(json!({ name.clone(): secret.clone() }), depth, &keys).to_string().into_bytes(),
            2 => {
                let text = format!("{glue}{}{glue}", jwt(&secret));
                body = nest(json!({"content": text}), depth, &keys).to_string().into_bytes();
            }
            3 => path = format!("{path}?page=2&{name}={secret}&x=1"),
            4 => {
                headers[0].1 = "application/x-www-form-urlencoded".into();
                body = format!("grant_type=client&{name}={secret}&scope=api").into_bytes();
            }
            5 => {
                let text = format!("x = call({glue}{}) \n", jwt(&secret));
                let at = cut.min(text.len() - 1);
                let (a, b) = text.as_bytes().split_at(at);
                cap_chunks = Some(vec![(1.0, Bytes::copy_from_slice(a)), (2.0, Bytes::copy_from_slice(b))]);
            }
            _ => response_header = Some((name.clone(), secret.clone())),
        }
        let mut cap = capture(&path, headers, body);
        if let Some(c) = cap_chunks {
            cap.chunks = c;
        }
        cap.response_headers.extend(response_header);
        let line = corpus_line(&cap, &[]).expect("a Duo route").to_string();
        prop_assert!(!line.contains(&secret), "place {place}: {line}");
        // What the body said apart from the secret is still there.
        if place == 4 {
            let b64 = serde_json::from_str::<Value>(&line).unwrap()["request"]["body_b64"].as_str().unwrap().to_owned();
            use base64::Engine;
            let form = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
            prop_assert!(String::from_utf8_lossy(&form).contains("scope=api"));
        }
    }
}

/// A well-known token format around `secret` (letters and digits, 24 to 40 of them).
fn shaped(secret: &str, format: usize) -> String {
    let upper: String = secret.to_uppercase().chars().take(16).collect();
    match format {
        0 => format!("ghp_{secret}0123456789"),
        1 => format!("AKIA{upper:0<16}"),
        2 => format!("xoxb-{secret}-1"),
        3 => format!("hf_{secret}A1abcdefgh"),
        4 => format!("-----BEGIN EC PRIVATE KEY-----\nMHc{secret}\n-----END EC PRIVATE KEY-----"),
        5 => format!("glpat-{secret}"),
        _ => format!("postgres://app:{secret}@db.internal:5432/x"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The second rule set's places: multipart parts with a secret name, URL passwords in a
    /// JSON string at any depth, token shapes in prompts and split across stream chunks,
    /// short query parameter names (`key`, `sig`), and the new secret names.
    #[test]
    fn planted_shapes_never_survive(
        secret in "[A-Za-z][A-Za-z0-9]{23,39}",
        format in 0..7usize,
        place in 0..5usize,
        depth in 0..5usize,
        keys in proptest::collection::vec("[a-z_]{1,12}", 1..4),
        name in prop_oneof![Just("pass"), Just("pwd"), Just("passphrase"), Just("auth"),
            Just("bearer"), Just("oauth"), Just("signature"), Just("session_id"), Just("sessionId")],
        cut in 1..80usize,
    ) {
        let token = shaped(&secret, format);
        let needle = if format == 1 { token.clone() } else { secret.clone() };
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        let mut path = "/v2/code/completions".to_owned();
        let mut body = json!({"stream": true}).to_string().into_bytes();
        let mut chunks = None;
        match place {
            0 => {
                headers[0].1 = "multipart/form-data; boundary=b0".into();
                body = format!("--b0\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{secret}\r\n--b0--\r\n").into_bytes();
            }
            1 => body = nest(json!({"note": format!("use {token} here")}), depth, &keys).to_string().into_bytes(),
            2 => body = nest(json!({ name: secret.clone() }), depth, &keys).to_string().into_bytes(),
            3 => path = format!("{path}?alt=json&{}={secret}", if depth % 2 == 0 { "key" } else { "sig" }),
            _ => {
                let text = format!("x = '{token}'\n");
                let at = cut.min(text.len() - 1);
                let (a, b) = text.as_bytes().split_at(at);
                chunks = Some(vec![(1.0, Bytes::copy_from_slice(a)), (2.0, Bytes::copy_from_slice(b))]);
            }
        }
        let mut cap = capture(&path, headers, body);
        if let Some(c) = chunks {
            cap.chunks = c;
        }
        let line = corpus_line(&cap, &[]).expect("a Duo route");
        let mut text = line.to_string();
        if let Some(b64) = line["request"]["body_b64"].as_str() {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
            text += &String::from_utf8_lossy(&raw);
        }
        prop_assert!(!text.contains(&needle), "place {place}, format {format}: {text}");
    }
}
