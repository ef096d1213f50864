//! The twin AIGW against the byte-exact captures of a real AIGW (`fixtures/captures/aigw-samples`): for
//! every `*.request.json`, the twin answers with the captured status, content type, framing
//! (event sequence, JSON shape) and error body; generated text and volatile fields are masked.

mod common;

use common::{route_of, Mode};
use duo_harness::protocol::{json_shape, Breach, Decoder, Event, Framing};
use duo_harness::twin::aigw::AigwConfig;
use duo_harness::twin::vllm::BackendConfig;
use duo_harness::twin::{self, RunningStack, StackConfig};
use serde_json::Value;
use std::path::Path;

async fn stack(mode: Mode) -> RunningStack {
    let mut backend = BackendConfig::new(
        "mock",
        &[
            "mock-model",
            "mistral",
            "fail-500",
            "mistral-7b-instruct",
            "codestral-22b",
        ],
    );
    backend.fail_models = vec!["fail-500".into()];
    backend.ttft_ms = 2.0;
    backend.itl_ms = 2.0;
    let aigw = AigwConfig {
        retry_time_scale: 0.0,
        mock_model_responses: mode == Mode::Mock,
        disable_streaming: mode == Mode::NoStream,
        ..AigwConfig::default()
    };
    twin::start(&StackConfig {
        aigw,
        backends: vec![backend],
        dws: Default::default(),
        host: None,
    })
    .await
    .unwrap()
}

/// Event kinds with runs of content collapsed: the framing without the generated text.
fn shape(framing: Framing, chunks: &[Vec<u8>]) -> (Vec<String>, Result<(), Breach>) {
    let mut d = Decoder::new(framing);
    let mut events: Vec<Event> = chunks.iter().flat_map(|c| d.push(c)).collect();
    let (tail, done) = d.finish();
    events.extend(tail);
    let mut kinds: Vec<String> = Vec::new();
    for e in events {
        let k = match e {
            // Empty content lines are structure (the v2 prompt stream's tail), not text.
            Event::Content(c) if c.is_empty() => "empty",
            Event::Content(_) => "content+",
            Event::Usage(_) => "usage",
            Event::Start(_) => "start",
            Event::End => "end",
            Event::Action(_) => "action",
            Event::Error(_) => "error",
            Event::Shape(_) => continue,  // compared on its own below
            Event::Finish(_) => continue, // how it ended: counted, not structure
        };
        if kinds.last().map(String::as_str) != Some(k) || k != "content+" {
            kinds.push(k.to_owned());
        }
    }
    (kinds, done)
}

/// The structure of a JSON value: keys and value types, values masked.
fn rewrite_endpoints(body: &str, openai_base: &str, closed: u16) -> String {
    body.replace("http://127.0.0.1:18000/v1", openai_base)
        .replace("127.0.0.1:18999", &format!("127.0.0.1:{closed}"))
}

/// Set 2's routes, from its README's index table (`| \`name\` | METHOD /route | …`).
fn index_routes(dir: &Path) -> std::collections::BTreeMap<String, (String, String)> {
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let (method, route) = cells.get(2)?.split_once(' ')?;
            route
                .starts_with('/')
                .then(|| (name.to_owned(), (method.to_owned(), route.to_owned())))
        })
        .collect()
}

/// One capture replayed against the twin: (method, route, mode, the request body with the
/// capture's endpoints pointed at `openai_base`).
struct Case {
    name: String,
    method: String,
    route: String,
    body: Option<String>,
    /// Tolerate the upstream's role-only first delta (set 1's upstream had none).
    lenient_lead: bool,
}

async fn check(name: &str, dir: &Path, stacks: &[(Mode, RunningStack)]) -> Result<(), String> {
    let (route, mode) = route_of(name);
    let stack = &stacks.iter().find(|(m, _)| *m == mode).unwrap().1;
    let urls = stack.urls();
    let request = std::fs::read_to_string(dir.join(format!("{name}.request.json"))).unwrap();
    let request = rewrite_endpoints(
        &request,
        &urls.backends["mock"].openai_base,
        common::closed_port(),
    );
    let case = Case {
        name: name.to_owned(),
        method: "POST".into(),
        route: route.to_owned(),
        body: Some(request),
        lenient_lead: true,
    };
    compare(&case, dir, &urls.aigw).await
}

/// Sends `case` to the twin AIGW at `aigw` and compares the answer with its capture in `dir`:
/// status, content type, request id, streaming format, server, and the framing (event
/// sequence, JSON shape, or exact error bodies).
async fn compare(case: &Case, dir: &Path, aigw: &str) -> Result<(), String> {
    let (name, route) = (case.name.as_str(), case.route.as_str());
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new()
        .request(method, format!("{aigw}{route}"))
        .header("X-Request-ID", format!("harness-{name}"))
        .header("X-Gitlab-Authentication-Type", "oidc")
        .header("X-Gitlab-Realm", "self-managed");
    if let Some(body) = &case.body {
        req = req
            .header("content-type", "application/json")
            .body(body.clone());
    }
    let captured =
        common::parse_raw(&std::fs::read(dir.join(format!("{name}.response.raw"))).unwrap());

    let resp = req
        .send()
        .await
        .map_err(|e| format!("{name}: request failed: {e}"))?;
    for h in [
        "server",
        "allow",
        "connection",
        "cache-control",
        "x-accel-buffering",
    ] {
        let got = resp
            .headers()
            .get(h)
            .map(|v| v.to_str().unwrap().to_owned());
        if got.as_deref() != captured.header(h) {
            return Err(format!(
                "{name}: {h} {got:?}, captured {:?}",
                captured.header(h)
            ));
        }
    }
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let request_id = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let streaming_format = resp
        .headers()
        .get("x-streaming-format")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut chunks = Vec::new();
    let mut body = resp.bytes_stream();
    use futures_util::StreamExt;
    while let Some(c) = body.next().await {
        match c {
            Ok(c) => chunks.push(c.to_vec()),
            Err(_) => break,
        }
    }
    let want_ct = captured.header("content-type").unwrap_or("");
    if status != captured.status || ct != want_ct {
        return Err(format!(
            "{name}: got {status} {ct:?}, captured {} {want_ct:?}",
            captured.status
        ));
    }
    if request_id.as_deref() != captured.header("x-request-id") {
        return Err(format!(
            "{name}: x-request-id {request_id:?}, captured {:?}",
            captured.header("x-request-id")
        ));
    }
    if streaming_format.as_deref() != captured.header("x-streaming-format") {
        return Err(format!("{name}: x-streaming-format {streaming_format:?}"));
    }
    let framing = Framing::detect(route, &ct);
    match framing {
        Framing::Json => {
            let got: Value =
                serde_json::from_slice(&chunks.concat()).map_err(|e| format!("{name}: {e}"))?;
            let want: Value = serde_json::from_slice(&captured.body()).unwrap();
            let exact = status >= 400;
            let (g, w) = if exact {
                (got.clone(), want.clone())
            } else {
                (json_shape(&got), json_shape(&want))
            };
            if g != w {
                return Err(format!("{name}: JSON differs:\n got  {g}\n want {w}"));
            }
        }
        Framing::Text => {
            if chunks.concat() != captured.body() {
                return Err(format!(
                    "{name}: body {:?}",
                    String::from_utf8_lossy(&chunks.concat())
                ));
            }
        }
        _ => {
            let (mut got, mut want) = (shape(framing, &chunks), shape(framing, &captured.chunks));
            if case.lenient_lead {
                // Set 1's mock upstream sent no role-only first delta; the twin vLLM does, as
                // vLLM does, and the gateway passes it on as one empty item.
                for s in [&mut got.0, &mut want.0] {
                    if let Some(i) = s.iter().position(|k| k == "content+").filter(|i| *i > 0) {
                        if s[i - 1] == "empty" {
                            s.remove(i - 1);
                        }
                    }
                }
            }
            if got != want {
                return Err(format!(
                    "{name}: framing differs:\n got  {got:?}\n want {want:?}"
                ));
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn twin_aigw_matches_every_capture() {
    let dir = common::captures_dir().join("aigw-samples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".request.json")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 40,
        "expected the full capture set, found {}",
        names.len()
    );
    let stacks = vec![
        (Mode::Normal, stack(Mode::Normal).await),
        (Mode::Mock, stack(Mode::Mock).await),
        (Mode::NoStream, stack(Mode::NoStream).await),
    ];
    let mut failures = Vec::new();
    for name in &names {
        if let Err(e) = check(name, &dir, &stacks).await {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} captures differ:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n")
    );
}

/// How many upstream calls the capture `name` shows.
fn upstream_count(name: &str, dir: &Path) -> usize {
    let text = std::fs::read_to_string(dir.join(format!("{name}.upstream.json"))).unwrap();
    serde_json::from_str::<Vec<Value>>(&text).unwrap().len()
}

/// The upstream calls the twin made for one case, against `NAME.upstream.json`: how many, and
/// for the first one its `User-Agent`, path, model and every sampling parameter.
fn compare_upstream(name: &str, dir: &Path, calls: &[Value]) -> Result<(), String> {
    let want: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}.upstream.json"))).unwrap(),
    )
    .unwrap();
    if want.len() != calls.len() {
        return Err(format!(
            "{name}: {} upstream calls, captured {}",
            calls.len(),
            want.len()
        ));
    }
    let Some(w) = want.first() else {
        return Ok(());
    };
    let params = |b: &Value| -> Value {
        let mut m = b.as_object().cloned().unwrap_or_default();
        for k in ["messages", "prompt"] {
            m.remove(k);
        }
        Value::Object(m)
    };
    let g = &calls[0];
    if g["user_agent"] != w["headers"]["user-agent"] {
        return Err(format!(
            "{name}: upstream user-agent {}, captured {}",
            g["user_agent"], w["headers"]["user-agent"]
        ));
    }
    prompt_size(name, &w["body"], &g["body"])?;
    if g["path"] != w["path"] || params(&g["body"]) != params(&w["body"]) {
        return Err(format!(
            "{name}: upstream {} {}, captured {} {}",
            g["path"],
            params(&g["body"]),
            w["path"],
            params(&w["body"])
        ));
    }
    Ok(())
}

/// The tokens of a captured message's content by the harness's text rule. A system prompt the
/// capture redacted (`<<REDACTED system prompt: N chars, …>>`) counts as N characters at the
/// token density of the twin's message in its place: its wording is not known, its length is.
fn captured_tokens(content: &str, twin: &str) -> f64 {
    let redacted = content
        .strip_prefix("<<REDACTED system prompt: ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<f64>().ok());
    match redacted {
        Some(chars) if !twin.is_empty() => {
            chars * duo_harness::tokens::count(twin) as f64 / twin.chars().count() as f64
        }
        Some(chars) => chars / 4.0,
        None => duo_harness::tokens::count(content) as f64,
    }
}

/// The twin's upstream prompt against the captured one: the same roles in the same order, the
/// same tool names, and a size within 5 % in tokens (the harness's text rule, 4 tokens a
/// message), since input length is load. The wording may differ.
fn prompt_size(name: &str, want: &Value, got: &Value) -> Result<(), String> {
    let texts = |b: &Value| -> Vec<(String, String)> {
        match (&b["messages"], &b["prompt"]) {
            (Value::Array(ms), _) => ms
                .iter()
                .map(|m| {
                    let content = m["content"].as_str().unwrap_or_default().to_owned();
                    (m["role"].as_str().unwrap_or_default().to_owned(), content)
                })
                .collect(),
            (_, Value::String(p)) => vec![("prompt".to_owned(), p.clone())],
            _ => vec![],
        }
    };
    let (w, g) = (texts(want), texts(got));
    let roles = |v: &[(String, String)]| v.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>();
    if roles(&w) != roles(&g) {
        return Err(format!(
            "{name}: upstream roles {:?}, captured {:?}",
            roles(&g),
            roles(&w)
        ));
    }
    let tools = |b: &Value| -> Vec<Value> {
        let list = b["tools"].as_array().cloned().unwrap_or_default();
        list.iter().map(|t| t["function"]["name"].clone()).collect()
    };
    if tools(want) != tools(got) {
        return Err(format!(
            "{name}: upstream tools {:?}, captured {:?}",
            tools(got),
            tools(want)
        ));
    }
    let per = duo_harness::tokens::PER_MESSAGE as f64;
    let real: f64 = w
        .iter()
        .zip(&g)
        .map(|((_, c), (_, t))| captured_tokens(c, t) + per)
        .sum();
    let twin: f64 = g
        .iter()
        .map(|(_, t)| duo_harness::tokens::count(t) as f64 + per)
        .sum();
    if real > 0.0 && (twin / real - 1.0).abs() > 0.05 {
        return Err(format!(
            "{name}: upstream prompt {twin:.0} tokens, captured {real:.0} ({:.2} of it)",
            twin / real
        ));
    }
    Ok(())
}

/// Every capture of the second set (every prompt-registry feature, the error and edge cases,
/// each code model family) against the twin, upstream calls included: the twin must answer as
/// the real gateway did and call its backend with the same path, model and parameters.
#[tokio::test]
async fn twin_aigw_matches_every_capture_of_set_2() {
    let dir = common::captures_dir().join("aigw-samples-2");
    let routes = index_routes(&dir);
    assert!(routes.len() >= 100, "index rows: {}", routes.len());
    let s = stack(Mode::Normal).await;
    let urls = s.urls();
    let (tap, mut rx) = common::tap_in_front_of("mock", &urls.backends["mock"].url).await;
    let mut failures = Vec::new();
    for (name, (method, route)) in &routes {
        if name.starts_with("auth_") {
            continue; // JWT mode: `auth_captures_give_the_real_answers` below
        }
        let body = std::fs::read_to_string(dir.join(format!("{name}.request.json")))
            .ok()
            .map(|b| {
                b.replace("http://127.0.0.1:15202/v1", &format!("{}/v1", tap.url))
                    .replace("http://127.0.0.1:15201/v1", &format!("{}/v1", tap.url))
            });
        let case = Case {
            name: name.clone(),
            method: method.clone(),
            route: route.clone(),
            body,
            lenient_lead: false,
        };
        let result = compare(&case, &dir, &urls.aigw).await;
        // The tap hands a call over once its answer has ended: wait (bounded) for as many as
        // the capture shows, then a moment more for any extra one.
        let expected = upstream_count(name, &dir);
        let mut calls = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut settle = 0;
        while tokio::time::Instant::now() < deadline && settle < 3 {
            match rx.try_recv() {
                Ok((_, _, c)) => {
                    let body: Value =
                        serde_json::from_slice(&c.request_body).unwrap_or(Value::Null);
                    let path = c.path.split('?').next().unwrap_or_default().to_owned();
                    let agent = c
                        .request_headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
                        .map(|(_, v)| v.clone());
                    calls
                        .push(serde_json::json!({"path": path, "body": body, "user_agent": agent}));
                }
                Err(_) => {
                    settle += usize::from(calls.len() >= expected);
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
        if let Err(e) = result.and_then(|()| compare_upstream(name, &dir, &calls)) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} captures differ:\n{}",
        failures.len(),
        routes.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn healthz_answers_empty_object() {
    let s = stack(Mode::Normal).await;
    let r = reqwest::get(format!("{}/monitoring/healthz", s.urls().aigw))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "{}");
}

/// Mints an instance token as GitLab does, with `scopes`, signed by the throwaway key.
fn instance_token(scopes: &[&str]) -> String {
    let pem = std::fs::read(common::repo().join("tests/fixtures/keys/throwaway-aigw.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": "http://gitlab.example.test", "aud": "gitlab-ai-gateway",
        "sub": "5d7e3f1a-0000-4000-8000-000000000001", "iat": now, "nbf": now - 5, "exp": now + 3600,
        "jti": "0123456789abcdef", "gitlab_realm": "self-managed",
        "gitlab_instance_id": "5d7e3f1a-0000-4000-8000-000000000001", "scopes": scopes,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap()
}

/// The second set's auth captures, in JWT mode: the gateway's own 403 strings, and a user token
/// that may not mint another.
#[tokio::test]
async fn auth_captures_give_the_real_answers() {
    use duo_harness::twin::aigw::auth::{AuthConfig, AuthMode};
    let keys = common::repo().join("tests/fixtures/keys");
    let aigw = AigwConfig {
        retry_time_scale: 0.0,
        auth: AuthConfig {
            mode: AuthMode::Jwt,
            public_keys: vec![keys.join("throwaway-aigw.pub.pem")],
            signing_key: Some(keys.join("throwaway-aigw.pem")),
        },
        ..AigwConfig::default()
    };
    let s = twin::start(&StackConfig {
        aigw,
        backends: vec![BackendConfig::new("mock", &["mistral-7b-instruct"])],
        dws: Default::default(),
        host: None,
    })
    .await
    .unwrap();
    let dir = common::captures_dir().join("aigw-samples-2");
    let client = reqwest::Client::new();
    let send = |route: &str, name: &str, token: &str| {
        let body = std::fs::read_to_string(dir.join(format!("{name}.request.json"))).unwrap();
        client
            .post(format!("{}{route}", s.urls().aigw))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("x-gitlab-authentication-type", "oidc")
            .header(
                "x-gitlab-instance-id",
                "5d7e3f1a-0000-4000-8000-000000000001",
            )
            .header("x-gitlab-realm", "self-managed")
            .header("x-gitlab-global-user-id", "duo-harness")
            .body(body)
            .send()
    };
    let want = |name: &str| {
        let raw =
            common::parse_raw(&std::fs::read(dir.join(format!("{name}.response.raw"))).unwrap());
        let body: Value = serde_json::from_slice(&raw.body()).unwrap();
        (raw.status, body)
    };
    // Only `duo_chat`: classic chat is refused with the gateway's own words.
    let name = "auth_v2_chat_agent_duo_chat_scope_only";
    let r = send("/v2/chat/agent", name, &instance_token(&["duo_chat"]))
        .await
        .unwrap();
    let got = (r.status().as_u16(), r.json::<Value>().await.unwrap());
    assert_eq!(got, want(name), "{name}");
    // A user token minted from an instance token, then used to ask for another: refused.
    let scopes = [
        "complete_code",
        "generate_code",
        "duo_classic_chat",
        "duo_chat",
        "explain_code",
    ];
    let name = "auth_v1_code_user_access_token";
    let r = send("/v1/code/user_access_token", name, &instance_token(&scopes))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), want(name).0);
    let ujwt = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let name = "auth_v1_code_user_access_token_with_ujwt";
    let r = send("/v1/code/user_access_token", name, &ujwt)
        .await
        .unwrap();
    let got = (r.status().as_u16(), r.json::<Value>().await.unwrap());
    assert_eq!(got, want(name), "{name}");
}

/// Every prompt-registry case of the default corpus sends exactly the template variables its
/// real definition requires (`current_date` is the gateway's own), for every model family the
/// shipped scenarios use for prompts.
#[test]
fn default_corpus_prompt_inputs_are_exactly_the_templates() {
    let registry = duo_harness::twin::aigw::registry::registry();
    let corpus =
        std::fs::read_to_string(common::repo().join("fixtures/corpus/duo-default.jsonl")).unwrap();
    let mut checked = 0;
    for line in corpus.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let path = v["request"]["path"].as_str().unwrap();
        let Some(id) = path.split_once("/prompts/").map(|(_, id)| id) else {
            continue;
        };
        let sent: std::collections::BTreeSet<&str> = v["request"]["body"]["inputs"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for family in ["mistral", "codestral", "llama3", "gpt"] {
            let r = registry
                .resolve(id, family, Some("^1.0.0"))
                .unwrap()
                .unwrap();
            let want: std::collections::BTreeSet<&str> = r
                .definition
                .inputs
                .iter()
                .map(String::as_str)
                .filter(|k| *k != "current_date")
                .collect();
            assert_eq!(sent, want, "{} ({id}, {family})", v["id"]);
        }
        checked += 1;
    }
    assert_eq!(checked, 26);
}
