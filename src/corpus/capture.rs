//! Agent Platform cases from captures of a real Duo Workflow Service (`*.grpc.jsonl`, as in
//! `fixtures/captures/dws-samples/`): the start request and metadata as sent (auth and the
//! model selection left out: the scenario supplies them), the executor's and Rails' answers
//! that mattered (files read, tool approval, the start's status, a stop), and what the real
//! service did (steps, tools, checkpoint status, gRPC status) as the case's `expect`.

use super::session::{Expect, Session, EXECUTE_WORKFLOW};
use super::{Interaction, RecordedRequest};
use crate::dws::steps::{self, CaptureError};
use serde_json::{Map, Value};

/// Metadata never copied into a case: credentials, and the model the scenario chooses.
const NOT_COPIED: &[&str] = &["authorization", crate::dws::MODEL_METADATA_HEADER];

/// The case a capture shows. `name` is the capture's name (its file stem).
pub fn session_case(name: &str, text: &str) -> Result<Interaction, CaptureError> {
    let captured = steps::from_capture(text)?;
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| CaptureError(format!("{name}: {e}"))))
        .collect::<Result<_, _>>()?;
    let mut session = Session::default();
    let (mut headers, start) = read_messages(&lines, &mut session);
    let start =
        start.ok_or_else(|| CaptureError(format!("{name}: the capture has no startRequest")))?;
    let feature = feature_of(&start["startRequest"]);
    session.expect = Expect {
        status: captured.code.clone(),
        details: Some(captured.details.clone()),
        checkpoint_status: captured.checkpoint_status.clone(),
        tools: Some(
            captured
                .steps
                .iter()
                .filter(|s| steps::is_tool(s))
                .cloned()
                .collect(),
        ),
        steps: Some(captured.steps),
    };
    let mut start = start;
    redact_traffic(&mut headers, &mut start, &mut session);
    Ok(Interaction {
        v: super::VERSION,
        id: format!("dap-{}", name.replace('_', "-")),
        feature: feature.into(),
        arrival_offset_ms: 0.0,
        protocol: "grpc".into(),
        request: RecordedRequest {
            method: "POST".into(),
            path: EXECUTE_WORKFLOW.into(),
            headers,
            body: start,
            body_b64: None,
        },
        response: None,
        upstream: Vec::new(),
        session: Some(session),
        tags: vec!["dap".into(), format!("capture:{name}")],
    })
}

/// The capture's messages in order: the metadata and start request sent, with what the
/// session must replay noted in `session`.
fn read_messages(lines: &[Value], session: &mut Session) -> (Map<String, Value>, Option<Value>) {
    let (mut headers, mut start, mut actions) = (Map::new(), None, 0usize);
    let mut pending: std::collections::HashMap<String, Value> = Default::default();
    for l in lines {
        let msg = &l["msg"];
        match (l["dir"].as_str(), l["kind"].as_str()) {
            (_, Some("metadata")) => {
                for (k, v) in msg.as_object().into_iter().flatten() {
                    if !NOT_COPIED.contains(&k.to_ascii_lowercase().as_str()) {
                        headers.insert(k.clone(), v.clone());
                    }
                }
            }
            (_, Some("Action")) => {
                actions += 1;
                if let Some(id) = msg["requestID"].as_str() {
                    pending.insert(id.to_owned(), msg.clone());
                }
            }
            (_, Some("ClientEvent")) if msg.get("startRequest").is_some() => {
                start = Some(msg.clone());
            }
            (_, Some("ClientEvent")) if msg.get("stopWorkflow").is_some() => {
                session.stop_after_actions = Some(actions);
                session.stop_reason = msg["stopWorkflow"]["reason"].as_str().map(str::to_owned);
            }
            (_, Some("ClientEvent")) => {
                let answer = &msg["actionResponse"];
                let Some(action) = answer["requestID"].as_str().and_then(|id| pending.get(id))
                else {
                    continue;
                };
                note_answer(session, action, answer);
            }
            _ => {}
        }
    }
    (headers, start)
}

/// What a capture holds is traffic: its metadata, start request (the goal) and files go through
/// the one redaction rule before they become a corpus line.
fn redact_traffic(headers: &mut Map<String, Value>, start: &mut Value, session: &mut Session) {
    crate::redact::headers(headers);
    crate::redact::body(start);
    for text in session.files.values_mut() {
        *text = crate::redact::text(text);
    }
}

/// The executor's and Rails' answers a replay must give again.
fn note_answer(session: &mut Session, action: &Value, answer: &Value) {
    if let Some(read) = action.get("runReadFile") {
        let (Some(path), Some(text)) = (
            read["filepath"].as_str(),
            answer["plainTextResponse"]["response"].as_str(),
        ) else {
            return;
        };
        session.files.insert(path.to_owned(), text.to_owned());
        return;
    }
    let Some(http) = action.get("runHTTPRequest") else {
        return;
    };
    let step = steps::http_step(
        http["method"].as_str().unwrap_or(""),
        http["path"].as_str().unwrap_or(""),
        http["body"].as_str().unwrap_or(""),
    );
    let reply = &answer["httpResponse"];
    match step.as_str() {
        "graphql:tool_call_approved" => {
            let body: Value =
                serde_json::from_str(reply["body"].as_str().unwrap_or("")).unwrap_or_default();
            let ok = body["data"]["duoWorkflowWorkflows"]["nodes"][0]["toolCallApproved"].as_bool();
            session.tool_call_approved = ok.filter(|ok| !ok);
        }
        "status:start" => {
            let code = reply["statusCode"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok());
            session.start_status = code.filter(|c| *c != 200);
        }
        _ => {}
    }
}

/// The Agent Platform feature of a start request: chat (the legacy workflow, or the
/// `agentic_chat` flow) or a flow.
fn feature_of(start: &Value) -> &'static str {
    let chat = start["workflowDefinition"] == "chat"
        || start["workflowDefinition"] == "agentic_chat/v1"
        || start["flowConfigId"] == "agentic_chat";
    match chat {
        true => "duo_agent_platform_agentic_chat",
        false => "duo_agent_platform",
    }
}
