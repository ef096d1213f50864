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
    let mut backend = BackendConfig::new("mock", &["mock-model", "mistral", "fail-500"]);
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
            Event::Content(_) => "content+",
            Event::Usage(_) => "usage",
            Event::Start(_) => "start",
            Event::End => "end",
            Event::Action(_) => "action",
            Event::Error(_) => "error",
            Event::Shape(_) => continue, // compared on its own below
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
    let captured =
        common::parse_raw(&std::fs::read(dir.join(format!("{name}.response.raw"))).unwrap());

    let resp = reqwest::Client::new()
        .post(format!("{}{route}", urls.aigw))
        .header("content-type", "application/json")
        .header("X-Request-ID", format!("harness-{name}"))
        .header("X-Gitlab-Authentication-Type", "oidc")
        .header("X-Gitlab-Realm", "self-managed")
        .body(request)
        .send()
        .await
        .map_err(|e| format!("{name}: request failed: {e}"))?;
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
            let got = shape(framing, &chunks);
            let want = shape(framing, &captured.chunks);
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

#[tokio::test]
async fn healthz_answers_empty_object() {
    let s = stack(Mode::Normal).await;
    let r = reqwest::get(format!("{}/monitoring/healthz", s.urls().aigw))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "{}");
}
