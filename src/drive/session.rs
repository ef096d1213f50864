//! Drives one Agent Platform session over gRPC: the harness opens `ExecuteWorkflow` with the
//! case's metadata and start request, answers every action as executor and GitLab Rails
//! ([`super::rails`]), and records each action's arrival, the streamed checkpoint text, the tool
//! round trips and the final status.
//!
//! In: a prepared `grpc` interaction and the run's DWS channel. Out: the request record's fields
//! and its [`SessionRecord`]; failures classed: no status (`truncated`), an unknown action type
//! (`framing`), a message past 4 MiB (`oversize`), a status the case did not expect
//! (`grpc_status`), a server that stops answering (`timeout`, from the caller's bound).

use super::{ms, Prepared, Target};
use crate::corpus::session::Session;
use crate::dws::proto::client_event::Response as Event;
use crate::dws::proto::duo_workflow_client::DuoWorkflowClient;
use crate::dws::proto::{ActionResponse, ClientEvent, StopWorkflowRequest};
use crate::dws::steps;
use crate::measure::session::SessionRecord;
use crate::measure::{Chunk, ErrorClass, RequestRecord};
use std::time::Instant;

/// The run's Duo Workflow Service: one HTTP/2 channel its sessions share, and their auth.
#[derive(Clone)]
pub struct DwsTarget {
    pub url: String,
    pub channel: tonic::transport::Channel,
    pub auth: std::sync::Arc<super::Auth>,
    /// With `dws_generate_token`: the token `GenerateToken` issued.
    pub issued: Option<std::sync::Arc<tokio::sync::Mutex<Option<Issued>>>>,
}

/// A token `GenerateToken` issued, and its expiry (Unix s).
pub type Issued = (String, i64);

impl DwsTarget {
    /// A lazily connected channel to `url`: `http://host:port` (plaintext HTTP/2) or
    /// `https://` (TLS: the public roots, and `ca_bundle`'s certificates when given).
    pub fn new(
        url: &str,
        auth: super::Auth,
        ca_bundle: Option<&std::path::Path>,
        generate_token: bool,
    ) -> Result<Self, super::DriveError> {
        let config = super::DriveError::Config;
        let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| config(format!("DWS URL '{url}': {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(std::time::Duration::from_secs(10));
        if url.starts_with("https://") {
            let mut tls = tonic::transport::ClientTlsConfig::new()
                .with_enabled_roots()
                .assume_http2(true);
            if let Some(path) = ca_bundle {
                let pem = std::fs::read(path)
                    .map_err(|e| config(format!("target.ca_bundle {}: {e}", path.display())))?;
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| config(format!("DWS URL '{url}': TLS: {e}")))?;
        }
        Ok(Self {
            url: url.to_owned(),
            channel: endpoint.connect_lazy(),
            auth: std::sync::Arc::new(auth),
            issued: generate_token.then(Default::default),
        })
    }
}

type Failure = (ErrorClass, String);

/// What the session has seen so far.
struct Seen {
    case: Session,
    sent: Instant,
    rec_session: SessionRecord,
    steps: Vec<String>,
    text: String,
    /// A tool was answered at this instant; its round trip ends at the next text or tool.
    tool_pending: Option<f64>,
}

impl Seen {
    fn now_ms(&self) -> f64 {
        ms(self.sent.elapsed())
    }

    /// What has been seen so far, into the record: a session cut short by its timeout or the
    /// run's end keeps the steps it showed.
    fn publish(&self, rec: &mut RequestRecord) {
        let mut s = self.rec_session.clone();
        s.steps = steps::collapse(&self.steps);
        rec.session = Some(s);
    }

    fn close_round_trip(&mut self, t: f64) {
        if let Some(t0) = self.tool_pending.take() {
            self.rec_session.tool_round_trips_ms.push(t - t0);
        }
    }

    /// A checkpoint: its status, and the agent text it adds (a streamed chunk).
    fn checkpoint(&mut self, rec: &mut RequestRecord, status: &str, payload: &str, bytes: usize) {
        let t = self.now_ms();
        self.rec_session.checkpoint_status = Some(status.to_owned());
        let text = crate::dws::agent_text(payload);
        if status == "FAILED" || text.is_empty() || text == self.text {
            return;
        }
        let delta = text
            .strip_prefix(self.text.as_str())
            .unwrap_or(&text)
            .to_owned();
        self.close_round_trip(t);
        rec.first_content_ms.get_or_insert(t);
        rec.last_content_ms = Some(t);
        rec.content_events += 1;
        rec.chunks.push(Chunk {
            t_ms: t,
            bytes,
            content: delta,
        });
        self.text = text;
    }
}

/// Runs the session of `p` against the target's DWS, filling `rec`.
pub async fn exchange(
    t: &Target,
    p: &Prepared,
    body: Option<&serde_json::Value>,
    sent: Instant,
    rec: &mut RequestRecord,
) -> Result<(), Failure> {
    let dws = t.dws.as_ref().ok_or((
        ErrorClass::Connect,
        "no Duo Workflow Service to send to: set target.dws".to_owned(),
    ))?;
    let case = p.interaction.session.clone().unwrap_or_default();
    let start = crate::dws::start::from_json(body.unwrap_or(&p.interaction.request.body))
        .map_err(|e| (ErrorClass::Framing, format!("start request: {e}")))?;
    let mut seen = Seen {
        rec_session: SessionRecord {
            workflow_id: start.workflow_id.clone(),
            model_metadata_sent: p
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(crate::dws::MODEL_METADATA_HEADER)),
            ..SessionRecord::default()
        },
        case,
        sent,
        steps: Vec::new(),
        text: String::new(),
        tool_pending: None,
    };
    let result = run(dws, p, start, &mut seen, rec).await;
    seen.rec_session.steps = steps::collapse(&seen.steps);
    rec.content = seen.text.clone();
    let outcome = result.and_then(|()| judge(&seen.case, &mut seen.rec_session));
    rec.session = Some(seen.rec_session);
    outcome
}

/// Opens `ExecuteWorkflow` with the case's headers and the session's auth: the server's
/// stream, or the status it refused with.
async fn open(
    dws: &DwsTarget,
    p: &Prepared,
    rx: tokio::sync::mpsc::Receiver<ClientEvent>,
) -> Result<
    Result<tonic::Response<tonic::Streaming<crate::dws::proto::Action>>, tonic::Status>,
    Failure,
> {
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let auth = super::dws_probe::session_auth(dws)
        .await
        .map_err(|m| (ErrorClass::GrpcStatus, m))?;
    for (k, v) in p.headers.iter().chain(auth.iter()) {
        let (key, value) =
            super::dws_probe::metadata_pair(k, v).map_err(|m| (ErrorClass::Framing, m))?;
        req.metadata_mut().insert(key, value);
    }
    let limit = crate::dws::MAX_MESSAGE_BYTES;
    let mut client = DuoWorkflowClient::new(dws.channel.clone())
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    Ok(client.execute_workflow(req).await)
}

/// The conversation itself.
async fn run(
    dws: &DwsTarget,
    p: &Prepared,
    start: crate::dws::proto::StartWorkflowRequest,
    seen: &mut Seen,
    rec: &mut RequestRecord,
) -> Result<(), Failure> {
    let (tx, rx) = tokio::sync::mpsc::channel::<ClientEvent>(16);
    let event = |e| ClientEvent { response: Some(e) };
    let _ = tx.send(event(Event::StartRequest(start))).await;
    let mut stream = match open(dws, p, rx).await? {
        Ok(r) => {
            rec.status = Some(200);
            rec.headers_ms = Some(seen.now_ms());
            r.into_inner()
        }
        Err(status) => return ended(seen, rec, status),
    };
    loop {
        seen.publish(rec); // before each wait: what a timeout would otherwise lose
        let action = match stream.message().await {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(status) => return ended(seen, rec, status),
        };
        let t_ms = seen.now_ms();
        seen.rec_session.actions += 1;
        seen.rec_session.first_action_ms.get_or_insert(t_ms);
        let Some(kind) = action.action else {
            return Err((
                ErrorClass::Framing,
                format!(
                    "action {} of {}: an unknown action type (a field this contract does not define)",
                    seen.rec_session.actions, action.request_id
                ),
            ));
        };
        let step = steps::of_action(&kind);
        seen.steps.push(step.clone());
        if let crate::dws::proto::action::Action::NewCheckpoint(c) = &kind {
            seen.checkpoint(rec, &c.status, &c.checkpoint, c.checkpoint.len());
            continue;
        }
        if steps::is_tool(&step) {
            seen.close_round_trip(t_ms);
            seen.rec_session.tools.push(step.clone());
        }
        if seen.case.stop_after_actions == Some(seen.rec_session.actions as usize) {
            let reason = seen.case.stop_reason.clone().unwrap_or("USER_STOP".into());
            let _ = tx
                .send(event(Event::StopWorkflow(StopWorkflowRequest { reason })))
                .await;
            continue;
        }
        let response_type = super::rails::answer(&seen.case, &kind);
        note_served_model(seen, &kind);
        let answer = ActionResponse {
            request_id: action.request_id,
            response_type,
        };
        if tx.send(event(Event::ActionResponse(answer))).await.is_err() {
            break;
        }
        if steps::is_tool(&step) {
            seen.tool_pending = Some(seen.now_ms());
        }
    }
    closed(stream, seen, rec).await
}

/// The stream's end: its gRPC status from the trailers; none is a truncated stream.
async fn closed(
    mut stream: tonic::Streaming<crate::dws::proto::Action>,
    seen: &mut Seen,
    rec: &mut RequestRecord,
) -> Result<(), Failure> {
    let status = match stream.trailers().await {
        Ok(Some(md)) => tonic::Status::from_header_map(&md.into_headers()),
        _ => None,
    };
    match status {
        Some(s) => ended(seen, rec, s),
        None => Err((
            ErrorClass::Truncated,
            format!(
                "the stream closed after {} actions without a gRPC status",
                seen.rec_session.actions
            ),
        )),
    }
}

/// The checkpoint saves carry the model that serves the session.
fn note_served_model(seen: &mut Seen, kind: &crate::dws::proto::action::Action) {
    let crate::dws::proto::action::Action::RunHttpRequest(r) = kind else {
        return;
    };
    if seen.rec_session.served_model.is_some() || !r.path.contains("/checkpoints") {
        return;
    }
    let body: serde_json::Value =
        serde_json::from_str(r.body.as_deref().unwrap_or("")).unwrap_or_default();
    if let Some(m) = body["model_metadata_json"].as_str() {
        let mut served: serde_json::Value = serde_json::from_str(m).unwrap_or_default();
        // A service that leaves the key in would carry it to disk: it never goes further.
        if let Some(o) = served.as_object_mut() {
            o.remove("api_key");
        }
        seen.rec_session.served_model = (!served.is_null()).then_some(served);
    }
}

/// The stream's end status: recorded; transport failures classed.
fn ended(seen: &mut Seen, rec: &mut RequestRecord, status: tonic::Status) -> Result<(), Failure> {
    let code = status.code();
    let message = status.message().to_owned();
    let transport =
        std::error::Error::source(&status).is_some() || message.contains("transport error");
    let class = match code {
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            if message.contains("too large") && rec.status.is_some() =>
        {
            Some(ErrorClass::Oversize)
        }
        tonic::Code::Unavailable if rec.status.is_none() && transport => Some(ErrorClass::Connect),
        tonic::Code::Internal | tonic::Code::Unknown
            if message.contains("without grpc-status")
                || message.contains("missing grpc-status") =>
        {
            Some(ErrorClass::Truncated)
        }
        _ if transport || message.contains("h2 protocol error") => Some(ErrorClass::Dropped),
        _ => None,
    };
    if let Some(class) = class {
        return Err((class, format!("{}: {message}", crate::dws::code_name(code))));
    }
    seen.rec_session.code = Some(crate::dws::code_name(code).to_owned());
    seen.rec_session.details = message;
    if rec.status.is_none() {
        rec.status = Some(200); // a trailers-only answer: HTTP 200 carrying the gRPC status
        rec.headers_ms = Some(seen.now_ms());
    }
    Ok(())
}

/// The session against its case's `expect`: a status other than the expected one is the
/// record's error; other differences are mismatches (findings).
fn judge(case: &Session, s: &mut SessionRecord) -> Result<(), Failure> {
    let e = &case.expect;
    let code = s.code.clone().unwrap_or_default();
    let mut mismatches = Vec::new();
    if let Some(d) = e.details.as_ref().filter(|d| **d != s.details) {
        mismatches.push(format!("details '{}' (expected '{d}')", s.details));
    }
    if let Some(c) = e
        .checkpoint_status
        .as_ref()
        .filter(|c| s.checkpoint_status.as_ref() != Some(c))
    {
        let last = s.checkpoint_status.as_deref().unwrap_or("none");
        mismatches.push(format!("last checkpoint {last} (expected {c})"));
    }
    if let Some(tools) = e.tools.as_ref().filter(|t| **t != s.tools) {
        mismatches.push(format!(
            "tools [{}] (expected [{}])",
            s.tools.join(", "),
            tools.join(", ")
        ));
    }
    // The partial order the service guarantees, not the one order the capture showed.
    if let Some(d) = e
        .steps
        .as_ref()
        .and_then(|st| crate::dws::order::difference(st, &s.steps))
    {
        mismatches.push(d);
    }
    s.mismatches = mismatches;
    if code != e.status {
        return Err((
            ErrorClass::GrpcStatus,
            format!("ended {code} \"{}\" (expected {})", s.details, e.status),
        ));
    }
    Ok(())
}
