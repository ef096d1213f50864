//! The Duo Workflow Service's unary RPCs, asked before the load: `grpc.health.v1/Check` (no
//! auth), `ListTools`, `ListFlows` and `GenerateToken` (with the sessions' auth).
//!
//! In: the run's [`DwsTarget`]. Out: a [`Probe`] of what each answered (the `dws` preflight
//! stage): health must be `SERVING`; the others are reported as they answered (a service with
//! auth off refuses `GenerateToken`, as captured).

use super::session::DwsTarget;
use crate::dws::health::health_client::HealthClient;
use crate::dws::health::HealthCheckRequest;
use crate::dws::proto::duo_workflow_client::DuoWorkflowClient;
use crate::dws::proto::{GenerateTokenRequest, ListFlowsRequest, ListToolsRequest};
use std::time::Duration;
use tonic::metadata::{MetadataKey, MetadataValue};

/// What the unary RPCs answered.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `SERVING`, another status, or the error.
    pub health: Result<String, String>,
    pub tools: Result<usize, String>,
    /// Flow identifiers with their schema version (`agentic_chat/v1`).
    pub flows: Result<Vec<String>, String>,
    /// `GenerateToken`: the token's expiry (Unix s), or the error.
    pub token: Result<i64, String>,
}

fn status_text(s: &tonic::Status) -> String {
    format!("{} \"{}\"", crate::dws::code_name(s.code()), s.message())
}

/// A request carrying the sessions' auth headers.
fn authed<T>(dws: &DwsTarget, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(Duration::from_secs(10));
    for (k, v) in dws.auth.headers().iter() {
        if let Ok((k, v)) = metadata_pair(k, v) {
            req.metadata_mut().insert(k, v);
        }
    }
    req
}

/// A header pair as gRPC metadata (the key lower-cased); the message names the header.
pub(super) fn metadata_pair(
    k: &str,
    v: &str,
) -> Result<
    (
        MetadataKey<tonic::metadata::Ascii>,
        MetadataValue<tonic::metadata::Ascii>,
    ),
    String,
> {
    let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
        .map_err(|e| format!("metadata key '{k}': {e}"))?;
    let value = MetadataValue::try_from(v).map_err(|e| format!("metadata '{k}': {e}"))?;
    Ok((key, value))
}

/// The auth headers of one session: the target's, or with `dws_generate_token` the same with
/// `authorization` carrying the token `GenerateToken` issued (asked again a minute before it
/// expires). The issued token is a secret: it never reaches an output.
pub async fn session_auth(dws: &DwsTarget) -> Result<Vec<(String, String)>, String> {
    let mut headers = dws.auth.headers().as_ref().clone();
    let Some(issued) = &dws.issued else {
        return Ok(headers);
    };
    let mut slot = issued.lock().await;
    let now = chrono::Utc::now().timestamp();
    let token = match slot.as_ref().filter(|(_, exp)| *exp - 60 > now) {
        Some((t, _)) => t.clone(),
        None => {
            let mut c = DuoWorkflowClient::new(dws.channel.clone());
            let r = c
                .generate_token(authed(
                    dws,
                    GenerateTokenRequest {
                        workflow_definition: Some("chat".into()),
                    },
                ))
                .await
                .map_err(|s| {
                    format!(
                        "GenerateToken (target.dws_generate_token): {}",
                        status_text(&s)
                    )
                })?
                .into_inner();
            crate::redact::register_secret(&r.token);
            *slot = Some((r.token.clone(), r.expires_at));
            r.token
        }
    };
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
    headers.push(("authorization".into(), format!("Bearer {token}")));
    Ok(headers)
}

/// Asks each RPC once, each bounded by 10 s.
pub async fn probe(dws: &DwsTarget) -> Probe {
    let bounded = |f| tokio::time::timeout(Duration::from_secs(10), f);
    let mut health = HealthClient::new(dws.channel.clone());
    let health = match bounded(health.check(HealthCheckRequest {
        service: String::new(),
    }))
    .await
    {
        Ok(Ok(r)) => Ok(
            crate::dws::health::health_check_response::ServingStatus::try_from(
                r.into_inner().status,
            )
            .map_or("UNKNOWN".into(), |s| s.as_str_name().to_owned()),
        ),
        Ok(Err(s)) => Err(status_text(&s)),
        Err(_) => Err("no answer within 10 s".into()),
    };
    let mut c = DuoWorkflowClient::new(dws.channel.clone())
        .max_decoding_message_size(crate::dws::MAX_MESSAGE_BYTES);
    let tools = c
        .list_tools(authed(dws, ListToolsRequest {}))
        .await
        .map(|r| r.into_inner().tools.len())
        .map_err(|s| status_text(&s));
    let flows = c
        .list_flows(authed(dws, ListFlowsRequest { filters: None }))
        .await
        .map(|r| {
            r.into_inner()
                .configs
                .iter()
                .map(|cfg| {
                    let text = |k: &str| match cfg.fields.get(k).and_then(|v| v.kind.as_ref()) {
                        Some(prost_types::value::Kind::StringValue(s)) => s.clone(),
                        _ => "?".into(),
                    };
                    format!("{}/{}", text("flow_identifier"), text("version"))
                })
                .collect()
        })
        .map_err(|s| status_text(&s));
    let token = c
        .generate_token(authed(
            dws,
            GenerateTokenRequest {
                workflow_definition: Some("chat".into()),
            },
        ))
        .await
        .map(|r| r.into_inner().expires_at)
        .map_err(|s| status_text(&s));
    Probe {
        health,
        tools,
        flows,
        token,
    }
}
