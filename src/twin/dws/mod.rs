//! The twin Duo Workflow Service: the `DuoWorkflow` gRPC service of PROTOCOL-DWS.md with the same
//! contract as the captured one, driving a twin vLLM (or any OpenAI endpoint the session's
//! `x-gitlab-agent-platform-model-metadata` names) with tool calls.
//!
//! In: a [`DwsConfig`]; per session the client's metadata and events. Out: a gRPC server on
//! loopback serving `ExecuteWorkflow` (the agent loop in `session.rs`), `GenerateToken`,
//! `ListCapabilities`, `ListTools`, `ListFlows`, `ValidateFlowConfig` and `grpc.health.v1`.
//!
//! What it runs: the legacy `chat` workflow and the v1 registry flow `agentic_chat`. Other flows
//! of the v1 catalogue fail as not runnable here; names outside it are unknown flows.

mod flow;
mod llm;
mod session;
mod workers;

use super::RunningServer;
use crate::dws::health::health_check_response::ServingStatus;
use crate::dws::health::health_server::{Health, HealthServer};
use crate::dws::health::{HealthCheckRequest, HealthCheckResponse};
use crate::dws::proto::duo_workflow_server::{DuoWorkflow, DuoWorkflowServer};
use crate::dws::proto::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// The twin DWS, as declared under `[stack.dws]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DwsConfig {
    /// Port on the stack's address; 0 picks a free one.
    #[serde(default)]
    pub port: u16,
    /// Set from the stack's `host`.
    #[serde(skip)]
    pub host: Option<std::net::IpAddr>,
    /// `DUO_WORKFLOW_AUTH__ENABLED`: every `DuoWorkflow` RPC needs `authorization: bearer …`;
    /// a JWT's audience must be the service's and its realm claim match `x-gitlab-realm`
    /// (signatures are not checked; health needs no token).
    #[serde(default)]
    pub auth: bool,
    /// Model calls per LLM step before the session fails (the real service makes 12 over about
    /// 45 s; the twin keeps a failing upstream quick).
    #[serde(default = "default_attempts")]
    pub llm_attempts: u32,
    /// Wait between those calls, milliseconds.
    #[serde(default = "default_retry_ms")]
    pub llm_retry_ms: u64,
    /// Streamed checkpoints are sent at most once per this many milliseconds (50 as observed),
    /// with a trailing send.
    #[serde(default = "default_throttle_ms")]
    pub checkpoint_throttle_ms: u64,
    /// Workers that the sessions' own work takes turns on (`workers.rs`): the real service is
    /// one Python process, one event loop, so 1.
    #[serde(default = "default_workers")]
    pub workers: u32,
    /// Worker time before a session's first action, milliseconds (the real service's first
    /// action comes about 8 ms after the start request).
    #[serde(default = "default_start_cost_ms")]
    pub start_cost_ms: u64,
    /// Worker time before a session's first model call: graph compile and prompt build
    /// (250–300 ms on the real service, measured at a tap in front of its model; 300 brings
    /// the twin's first text nearest the real one).
    #[serde(default = "default_session_cost_ms")]
    pub session_cost_ms: u64,
    /// Worker time per tool round trip, after the tool's answer and before the next model call
    /// (the real round trip is about 60 ms longer than the twin's without it).
    #[serde(default = "default_tool_cost_ms")]
    pub tool_cost_ms: u64,
}

fn default_attempts() -> u32 {
    2
}
fn default_retry_ms() -> u64 {
    100
}
fn default_throttle_ms() -> u64 {
    50
}
fn default_workers() -> u32 {
    1
}
fn default_start_cost_ms() -> u64 {
    5
}
fn default_session_cost_ms() -> u64 {
    300
}
fn default_tool_cost_ms() -> u64 {
    60
}

impl Default for DwsConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults of the DWS config deserialise")
    }
}

/// What every session of one server shares.
pub(crate) struct Shared {
    cfg: DwsConfig,
    client: reqwest::Client,
    workers: workers::Workers,
}

#[derive(Clone)]
struct Service(Arc<Shared>);

/// The accepted connections, each with `TCP_NODELAY` set: `serve_with_incoming` ignores the
/// builder's `tcp_nodelay`, and Nagle's algorithm with delayed ACKs holds a small action back by
/// about 40 ms, time the real service does not spend.
fn without_delay(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        let s = accepted?;
        s.set_nodelay(true)?;
        Ok(s)
    })
}

/// Starts the twin DWS.
pub async fn serve(cfg: DwsConfig) -> std::io::Result<RunningServer> {
    let host = cfg
        .host
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let listener = tokio::net::TcpListener::bind((host, cfg.port)).await?;
    let addr = listener.local_addr()?;
    // The prompt timeout the captured service sends (`x-stainless-read-timeout: 30.0`): a model
    // that stops answering fails the step instead of holding the session.
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(std::io::Error::other)?;
    let workers = workers::Workers::new(cfg.workers.max(1));
    let svc = Service(Arc::new(Shared {
        cfg,
        client,
        workers,
    }));
    let routes = routes(svc);
    let incoming = without_delay(listener);
    let task = tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .accept_http1(true)
            .add_routes(routes)
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = served {
            tracing::error!("twin DWS stopped: {e}");
        }
    });
    Ok(RunningServer::from_task(addr, task))
}

/// The gRPC services, and `GET /metrics` (HTTP/1.1, the worker pool's figures) on the same port.
fn routes(svc: Service) -> tonic::service::Routes {
    let limit = crate::dws::MAX_MESSAGE_BYTES;
    let dws = DuoWorkflowServer::new(svc.clone())
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let shared = svc.0.clone();
    let metrics = axum::routing::get(move || {
        let text = shared.workers.exposition();
        async move { ([("content-type", "text/plain; version=0.0.4")], text) }
    });
    let router = tonic::service::Routes::new(HealthServer::new(svc))
        .add_service(dws)
        .into_axum_router()
        .route("/metrics", metrics);
    tonic::service::Routes::from(router)
}

impl Service {
    /// The auth interceptor's checks (PROTOCOL-DWS.md §4, captured messages).
    fn authorise<T>(&self, req: &Request<T>) -> Result<(), Status> {
        if !self.0.cfg.auth {
            return Ok(());
        }
        let md = req.metadata();
        let token = md
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.get(7..)
                    .filter(|_| v[..7].eq_ignore_ascii_case("bearer "))
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Status::unauthenticated("No authorization header presented"))?;
        let claims = jwt_claims(token);
        let ours = |a: &serde_json::Value| {
            a == DWS_AUDIENCE
                || a.as_array()
                    .is_some_and(|l| l.iter().any(|x| x == DWS_AUDIENCE))
        };
        if claims
            .as_ref()
            .is_some_and(|c| !c["aud"].is_null() && !ours(&c["aud"]))
        {
            return Err(Status::unauthenticated("Invalid audience"));
        }
        let realm_claim = claims.and_then(|c| c["gitlab_realm"].as_str().map(str::to_owned));
        let realm = md.get("x-gitlab-realm").and_then(|v| v.to_str().ok());
        if realm_claim.is_some_and(|c| Some(c.as_str()) != realm) {
            return Err(Status::unauthenticated("Header mismatch 'X-Gitlab-Realm'"));
        }
        Ok(())
    }
}

/// The unit primitives the request's token grants (its `scopes` claim), when the twin checks
/// them: `None` with auth off, or for a token the twin issued itself (it carries no claims).
fn granted_scopes(cfg: &DwsConfig, md: &tonic::metadata::MetadataMap) -> Option<Vec<String>> {
    if !cfg.auth {
        return None;
    }
    let bearer = md.get("authorization")?.to_str().ok()?;
    let token = bearer
        .get(7..)
        .filter(|_| bearer[..7].eq_ignore_ascii_case("bearer "))?;
    if token.starts_with(ISSUED_PREFIX) {
        return None;
    }
    let claims = jwt_claims(token)?;
    let scopes = claims["scopes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    Some(
        scopes
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
    )
}

/// How the tokens the twin issues begin (they are no JWTs: the twin checks no signature).
const ISSUED_PREFIX: &str = "twin-dws-token-";

/// The audience of the service's tokens (`DUO_WORKFLOW_CLOUD_CONNECTOR_SERVICE_NAME`).
const DWS_AUDIENCE: &str = "gitlab-duo-workflow-service";

/// A JWT's claims, unverified (the twin checks their consistency with the headers only).
fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The tools the chat workflow offers (the 38 OpenAI function specs of the capture, long
/// descriptions redacted as there).
pub(crate) fn chat_tools() -> &'static serde_json::Value {
    static TOOLS: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    TOOLS.get_or_init(|| serde_json::from_str(include_str!("tools.json")).expect("tools.json"))
}

/// A JSON value as a protobuf `Struct` (objects only; other values give an empty one).
fn to_struct(v: &serde_json::Value) -> prost_types::Struct {
    fn value(v: &serde_json::Value) -> prost_types::Value {
        use prost_types::value::Kind;
        let kind = match v {
            serde_json::Value::Null => Kind::NullValue(0),
            serde_json::Value::Bool(b) => Kind::BoolValue(*b),
            serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) => Kind::StringValue(s.clone()),
            serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
                values: a.iter().map(value).collect(),
            }),
            serde_json::Value::Object(_) => Kind::StructValue(to_struct(v)),
        };
        prost_types::Value { kind: Some(kind) }
    }
    prost_types::Struct {
        fields: v
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, x)| (k.clone(), value(x)))
            .collect(),
    }
}

/// The v1 registry flows of the snapshot (PROTOCOL-DWS.md §7).
pub(crate) const V1_FLOWS: &[&str] = &[
    "agentic_chat",
    "analytics_agent",
    "code_review",
    "convert_to_gl_ci",
    "developer",
    "duo_permissions_assistant",
    "fix_pipeline",
    "flow_creator",
    "gitlab_duo_mention_assistant",
    "orbit_agent",
    "project_activity",
    "recommend_reviewers",
    "resolve_sast_vulnerability",
    "sast_fp_detection",
    "secrets_fp_detection",
    "security_review",
    "software_development",
    "support_assistant",
];

#[tonic::async_trait]
impl DuoWorkflow for Service {
    type ExecuteWorkflowStream = tokio_stream::wrappers::ReceiverStream<Result<Action, Status>>;

    async fn execute_workflow(
        &self,
        req: Request<Streaming<ClientEvent>>,
    ) -> Result<Response<Self::ExecuteWorkflowStream>, Status> {
        self.authorise(&req)?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let (metadata, _, inbox) = req.into_parts();
        tokio::spawn(session::run(self.0.clone(), metadata, inbox, tx));
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn generate_token(
        &self,
        req: Request<GenerateTokenRequest>,
    ) -> Result<Response<GenerateTokenResponse>, Status> {
        self.authorise(&req)?;
        let bearer = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if bearer.is_some_and(|b| b.contains(ISSUED_PREFIX)) {
            // Captured: a DWS-issued token cannot ask for another.
            return Err(Status::permission_denied("Unauthorized to generate token"));
        }
        if !self.0.cfg.auth {
            // Captured with auth off: no signing key.
            return Err(Status::unknown("Unexpected <class 'jose.exceptions.JWSError'>: Unable to parse an RSA_JWK from key: None"));
        }
        let expires = chrono::Utc::now().timestamp() + 3600;
        Ok(Response::new(GenerateTokenResponse {
            token: format!("{ISSUED_PREFIX}{:016x}", rand::random::<u64>()),
            expires_at: expires,
            server_capabilities: capabilities().into_iter().map(|c| c.name).collect(),
        }))
    }

    async fn list_capabilities(
        &self,
        req: Request<ListCapabilitiesRequest>,
    ) -> Result<Response<ListCapabilitiesResponse>, Status> {
        self.authorise(&req)?;
        Ok(Response::new(ListCapabilitiesResponse {
            capabilities: capabilities(),
        }))
    }

    async fn list_tools(
        &self,
        req: Request<ListToolsRequest>,
    ) -> Result<Response<ListToolsResponse>, Status> {
        self.authorise(&req)?;
        let tools = chat_tools()
            .as_array()
            .into_iter()
            .flatten()
            .map(to_struct)
            .collect();
        Ok(Response::new(ListToolsResponse {
            tools,
            eval_dataset: Vec::new(),
        }))
    }

    async fn list_flows(
        &self,
        req: Request<ListFlowsRequest>,
    ) -> Result<Response<ListFlowsResponse>, Status> {
        self.authorise(&req)?;
        let wanted = req
            .into_inner()
            .filters
            .map(|f| f.flow_identifier)
            .unwrap_or_default();
        let configs = V1_FLOWS
            .iter()
            .filter(|f| wanted.is_empty() || wanted.iter().any(|w| w == *f))
            .map(|f| {
                let env = if f.contains("chat") {
                    "chat"
                } else {
                    "ambient"
                };
                to_struct(&serde_json::json!({"flow_identifier": f, "version": "v1",
                    "flow_version": "1.0.0", "environment": env, "config": {}}))
            })
            .collect();
        Ok(Response::new(ListFlowsResponse { configs }))
    }

    async fn validate_flow_config(
        &self,
        req: Request<ValidateFlowConfigRequest>,
    ) -> Result<Response<ValidateFlowConfigResponse>, Status> {
        self.authorise(&req)?;
        let has_version = req
            .into_inner()
            .flow_config
            .is_some_and(|c| c.fields.contains_key("version"));
        let errors = match has_version {
            true => Vec::new(),
            false => vec!["Flow config must contain a 'version' key".to_owned()],
        };
        Ok(Response::new(ValidateFlowConfigResponse {
            valid: errors.is_empty(),
            errors,
        }))
    }
}

/// The capabilities the captured service lists.
fn capabilities() -> Vec<Capability> {
    [
        "tool_call_approval",
        "tool_call_pattern_approval",
        "flow_semantic_versioning",
    ]
    .into_iter()
    .map(|name| Capability {
        name: name.into(),
        metadata: String::new(),
    })
    .collect()
}

#[tonic::async_trait]
impl Health for Service {
    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        match req.into_inner().service.as_str() {
            "" | "DuoWorkflow" => Ok(Response::new(HealthCheckResponse {
                status: ServingStatus::Serving as i32,
            })),
            other => Err(Status::not_found(format!("unknown service {other}"))),
        }
    }
}

#[cfg(test)]
mod nodelay_tests {
    #[tokio::test]
    async fn accepted_connections_send_without_delay() {
        use tokio_stream::StreamExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(super::without_delay(listener));
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
