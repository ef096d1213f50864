//! Replays one recorded interaction over real sockets and measures it.
//!
//! In: an [`Interaction`], the target base URL, the feature's model setting and the auth
//! headers. Out: a [`RequestRecord`] with the send time, headers, every chunk's arrival, the
//! decoded content, usage and the error class if it failed. The request body gets the model
//! selection injected as GitLab would send it: flat `model_*` fields on `/v2/code/*`, a
//! top-level `model_metadata` elsewhere.

use crate::corpus::Interaction;
use crate::measure::{Chunk, ErrorClass, RequestError, RequestRecord, RESULT_SCHEMA};
use crate::plan::{AuthKind, ModelSetting, Target};
use crate::protocol::{Decoder, Event, Framing};
use crate::twin::vllm::tokens;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// A model setting with its endpoint and key resolved.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub setting: ModelSetting,
    pub endpoint: String,
    pub api_key: Option<String>,
}

/// Why the driver could not be set up (configuration, exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("{0}")]
    Config(String),
}

/// Builds the HTTP client for a target (custom CA bundle, certificate checks on unless turned off).
pub fn client(target: &Target) -> Result<reqwest::Client, DriveError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64);
    if let Some(path) = &target.ca_bundle {
        let pem = std::fs::read(path).map_err(|e| {
            DriveError::Config(format!("cannot read ca_bundle {}: {e}", path.display()))
        })?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| DriveError::Config(format!("{}: {e}", path.display())))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    if target.danger_accept_invalid_certs {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| DriveError::Config(e.to_string()))
}

/// The headers every request carries for the target's auth mode (tokens are minted once).
pub fn auth_headers(target: &Target) -> Result<Vec<(String, String)>, DriveError> {
    let token = match target.auth {
        AuthKind::Bypass => return Ok(Vec::new()),
        AuthKind::Bearer => {
            let var = target.token_env.as_deref().unwrap_or_default();
            std::env::var(var).map_err(|_| {
                DriveError::Config(format!(
                    "target.token_env: environment variable {var} is not set"
                ))
            })?
        }
        AuthKind::Mint => mint(target)?,
    };
    Ok(vec![
        ("authorization".into(), format!("Bearer {token}")),
        ("x-gitlab-authentication-type".into(), "oidc".into()),
        ("x-gitlab-instance-id".into(), target.instance_id.clone()),
        ("x-gitlab-realm".into(), target.realm.clone()),
        (
            "x-gitlab-global-user-id".into(),
            target.global_user_id.clone(),
        ),
    ])
}

/// Mints an RS256 instance token as GitLab does (PROTOCOL.md §5.2, §5.4).
fn mint(target: &Target) -> Result<String, DriveError> {
    let path = target
        .key_file
        .as_ref()
        .ok_or_else(|| DriveError::Config("target.key_file is not set".into()))?;
    let pem = std::fs::read(path)
        .map_err(|e| DriveError::Config(format!("cannot read key_file {}: {e}", path.display())))?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).map_err(|e| {
        DriveError::Config(format!(
            "{}: not an RSA private key PEM: {e}",
            path.display()
        ))
    })?;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": target.issuer, "aud": crate::twin::aigw::auth::AUDIENCE, "sub": target.instance_id,
        "iat": now, "nbf": now - 5, "exp": now + 3600, "jti": format!("{:032x}", rand::random::<u128>()),
        "gitlab_realm": target.realm, "gitlab_instance_id": target.instance_id, "scopes": target.scopes,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(|e| DriveError::Config(format!("cannot sign a token with {}: {e}", path.display())))
}

/// The request body with the feature's model selection injected.
pub fn body_for(it: &Interaction, model: Option<&ResolvedModel>) -> Value {
    let mut body = it.request.body.clone();
    let (Some(m), Some(obj)) = (model, body.as_object_mut()) else {
        return body;
    };
    let s = &m.setting;
    if it.request.path.starts_with("/v2/code/") || it.request.path == "/v2/completions" {
        obj.insert("model_provider".into(), json!("litellm"));
        obj.insert("model_name".into(), json!(s.name));
        obj.insert("model_endpoint".into(), json!(m.endpoint));
        obj.insert("model_identifier".into(), json!(s.identifier));
        if let Some(k) = &m.api_key {
            obj.insert("model_api_key".into(), json!(k));
        }
    } else {
        let mut meta = json!({"provider": s.provider, "name": s.name, "endpoint": m.endpoint, "identifier": s.identifier});
        if let Some(k) = &m.api_key {
            meta["api_key"] = json!(k);
        }
        obj.insert("model_metadata".into(), meta);
    }
    body
}

/// What one request needs besides the interaction.
pub struct Send<'a> {
    pub client: &'a reqwest::Client,
    pub base_url: &'a str,
    pub auth: &'a [(String, String)],
    pub timeout: Duration,
    pub run_start: Instant,
    pub seq: usize,
}

/// How much of an error body is kept in the error message.
const MAX_ERROR_BODY: usize = 512;

const HOP_BY_HOP: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "authorization",
];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sends `it` and measures it. Never fails: failures are recorded by class.
pub async fn send(s: &Send<'_>, it: &Interaction, body: &Value) -> RequestRecord {
    let sent = Instant::now();
    let mut rec = RequestRecord {
        schema: RESULT_SCHEMA.into(),
        seq: s.seq,
        id: it.id.clone(),
        feature: it.feature.clone(),
        method: it.request.method.clone(),
        path: it.request.path.clone(),
        stream: it.streams(),
        sent_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        sent_ms: ms(sent - s.run_start),
        status: None,
        headers: Map::new(),
        framing: None,
        headers_ms: None,
        first_content_ms: None,
        last_content_ms: None,
        end_ms: 0.0,
        chunks: Vec::new(),
        content: String::new(),
        usage: None,
        output_tokens: None,
        tokens_estimated: false,
        multi_token_chunks: false,
        error: None,
    };
    let outcome = tokio::time::timeout(s.timeout, exchange(s, it, body, sent, &mut rec)).await;
    rec.end_ms = ms(sent.elapsed());
    let error = match outcome {
        Err(_) => Some((
            ErrorClass::Timeout,
            format!("no complete answer within {:.1} s", s.timeout.as_secs_f64()),
        )),
        Ok(r) => r.err(),
    };
    rec.error = rec
        .error
        .take()
        .or(error.map(|(class, message)| RequestError { class, message }));
    finish_tokens(&mut rec);
    rec
}

fn finish_tokens(rec: &mut RequestRecord) {
    let ok_status = rec.status.is_some_and(|s| (200..300).contains(&s));
    if !ok_status {
        return;
    }
    match &rec.usage {
        Some(u) => rec.output_tokens = Some(u.output_tokens),
        None => {
            rec.output_tokens = Some(tokens::count(&rec.content) as u64);
            rec.tokens_estimated = true;
        }
    }
}

async fn exchange(
    s: &Send<'_>,
    it: &Interaction,
    body: &Value,
    sent: Instant,
    rec: &mut RequestRecord,
) -> Result<(), (ErrorClass, String)> {
    let url = format!("{}{}", s.base_url, it.request.path);
    let method = reqwest::Method::from_bytes(it.request.method.as_bytes())
        .map_err(|e| (ErrorClass::Connect, e.to_string()))?;
    let mut req = s.client.request(method, &url);
    for (k, v) in &it.request.headers {
        if let (false, Some(v)) = (
            HOP_BY_HOP.contains(&k.to_ascii_lowercase().as_str()),
            v.as_str(),
        ) {
            req = req.header(k, v);
        }
    }
    for (k, v) in s.auth {
        req = req.header(k, v);
    }
    if !body.is_null() {
        req = req.json(body);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| (ErrorClass::Connect, format!("{url}: {}", error_chain(&e))))?;
    rec.headers_ms = Some(ms(sent.elapsed()));
    let status = resp.status().as_u16();
    rec.status = Some(status);
    for (k, v) in resp.headers() {
        rec.headers
            .insert(k.to_string(), json!(v.to_str().unwrap_or_default()));
    }
    crate::redact::headers(&mut rec.headers);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let framing = Framing::detect(&it.request.path, ct);
    rec.framing = Some(framing);
    let success = (200..300).contains(&status);
    let mut decoder = Decoder::new(framing);
    let mut error_body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let bytes = chunk.map_err(|e| {
            (
                ErrorClass::Dropped,
                format!(
                    "stream broke after {} chunks: {}",
                    rec.chunks.len(),
                    error_chain(&e)
                ),
            )
        })?;
        let t = ms(sent.elapsed());
        if !success && error_body.len() < MAX_ERROR_BODY {
            let room = MAX_ERROR_BODY - error_body.len();
            error_body.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        let events = decoder.push(&bytes);
        record_chunk(rec, t, bytes.len(), events, success);
    }
    let (events, framing_result) = decoder.finish();
    let t = ms(sent.elapsed());
    if !events.is_empty() {
        // Whole-body framings (JSON) yield their content only once the body is complete.
        let last = rec.chunks.last().map_or(t, |c| c.t_ms);
        apply(rec, last, events, success);
    }
    if !success {
        let class = if (400..500).contains(&status) {
            ErrorClass::Http4xx
        } else {
            ErrorClass::Http5xx
        };
        return Err((
            class,
            format!("HTTP {status}: {}", String::from_utf8_lossy(&error_body)),
        ));
    }
    framing_result.map_err(|m| (ErrorClass::Framing, m))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn record_chunk(rec: &mut RequestRecord, t: f64, bytes: usize, events: Vec<Event>, success: bool) {
    rec.chunks.push(Chunk {
        t_ms: t,
        bytes,
        content: String::new(),
    });
    apply(rec, t, events, success);
}

/// Applies decoded events that arrived at `t` to the record (and to its last chunk).
fn apply(rec: &mut RequestRecord, t: f64, events: Vec<Event>, success: bool) {
    for ev in events {
        match ev {
            Event::Content(text) if !text.is_empty() => {
                if success {
                    rec.first_content_ms.get_or_insert(t);
                    rec.last_content_ms = Some(t);
                    rec.multi_token_chunks |= tokens::count(&text) > 1;
                }
                if let Some(c) = rec.chunks.last_mut() {
                    c.content.push_str(&text);
                }
                rec.content.push_str(&text);
            }
            Event::Usage(u) => rec.usage = Some(u),
            Event::Error(m) => {
                rec.error.get_or_insert(RequestError {
                    class: ErrorClass::StreamError,
                    message: m,
                });
            }
            Event::Action(a) => rec.content.push_str(&a.to_string()),
            _ => {}
        }
    }
}

/// Checks that something answers HTTP at `base_url` (any status counts).
pub async fn preflight(client: &reqwest::Client, base_url: &str) -> Result<(), String> {
    let url = format!("{base_url}/monitoring/healthz");
    match tokio::time::timeout(Duration::from_secs(10), client.get(&url).send()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(_) => Err("no answer within 10 s".into()),
    }
}
