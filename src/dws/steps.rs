//! A session's steps under canonical names, so that a replay, a capture and a corpus case compare
//! step for step whatever the ids, timestamps and bodies:
//! - `graphql:workflow`, `graphql:tool_call_approved` (other GraphQL: `graphql`);
//! - `status:<status_event>` for the workflow `PATCH`;
//! - `checkpoint:save` (`POST …/checkpoints`), `checkpoint:writes` (`…/checkpoint_writes_batch`),
//!   `checkpoint:list` (`GET …/checkpoints…`), `workflow:get` (`GET …/workflows/<id>`);
//!   other Rails calls `http:<METHOD> <path with numbers as :id, no query>`;
//! - tool and other actions by their proto field name (`runReadFile`, `grep`…);
//! - `newCheckpoint:<STATUS>` where the workflow's status changes: [`collapse`] drops a
//!   checkpoint whose status is the one the previous checkpoint had, whatever came between.
//!   Those are the streamed UI updates, and how many a session gets (the service throttles them
//!   to one per 50 ms and drops queued ones) depends on the model's timing, not on the contract.

use super::proto::action::Action as Kind;
use serde_json::Value;

/// The canonical step of a server action.
pub fn of_action(a: &Kind) -> String {
    match a {
        Kind::RunHttpRequest(r) => http_step(&r.method, &r.path, r.body.as_deref().unwrap_or("")),
        Kind::NewCheckpoint(c) => format!("newCheckpoint:{}", c.status),
        other => kind_name(other).to_owned(),
    }
}

/// The proto field name of an action kind.
pub fn kind_name(a: &Kind) -> &'static str {
    match a {
        Kind::RunCommand(_) => "runCommand",
        Kind::RunHttpRequest(_) => "runHTTPRequest",
        Kind::RunReadFile(_) => "runReadFile",
        Kind::RunWriteFile(_) => "runWriteFile",
        Kind::RunGitCommand(_) => "runGitCommand",
        Kind::RunEditFile(_) => "runEditFile",
        Kind::NewCheckpoint(_) => "newCheckpoint",
        Kind::ListDirectory(_) => "listDirectory",
        Kind::Grep(_) => "grep",
        Kind::FindFiles(_) => "findFiles",
        Kind::RunMcpTool(_) => "runMCPTool",
        Kind::Mkdir(_) => "mkdir",
        Kind::RunReadFiles(_) => "runReadFiles",
        Kind::RunShellCommand(_) => "runShellCommand",
        Kind::TrackLlmCallForSelfHosted(_) => "trackLlmCallForSelfHosted",
        Kind::ScheduleNotification(_) => "scheduleNotification",
    }
}

/// Whether a step is a tool the agent asked the executor to run (not Rails, not a checkpoint).
pub fn is_tool(step: &str) -> bool {
    !(step.starts_with("graphql")
        || step.starts_with("status:")
        || step.starts_with("checkpoint:")
        || step.starts_with("workflow:")
        || step.starts_with("http:")
        || step.starts_with("newCheckpoint:")
        || step == "trackLlmCallForSelfHosted")
}

/// The canonical step of a `runHTTPRequest`.
pub fn http_step(method: &str, path: &str, body: &str) -> String {
    let bare = path.split('?').next().unwrap_or(path);
    let m = method.to_ascii_uppercase();
    if bare == "/api/graphql" {
        return if body.contains("toolCallApproved") {
            "graphql:tool_call_approved".into()
        } else if body.contains("duoWorkflowWorkflows") {
            "graphql:workflow".into()
        } else {
            "graphql".into()
        };
    }
    let under_workflow = bare.starts_with("/api/v4/ai/duo_workflows/workflows/");
    if under_workflow {
        let rest: Vec<&str> = bare.split('/').skip(6).collect();
        match (m.as_str(), rest.as_slice()) {
            ("PATCH", [_id]) => {
                let event = serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|v| v["status_event"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "?".into());
                return format!("status:{event}");
            }
            ("GET", [_id]) => return "workflow:get".into(),
            ("POST", [_id, "checkpoints"]) => return "checkpoint:save".into(),
            ("POST", [_id, "checkpoint_writes_batch"]) => return "checkpoint:writes".into(),
            ("GET", [_id, "checkpoints", ..]) => return "checkpoint:list".into(),
            _ => {}
        }
    }
    let templ: Vec<String> = bare
        .split('/')
        .map(
            |s| match !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                true => ":id".to_owned(),
                false => s.to_owned(),
            },
        )
        .collect();
    format!("http:{m} {}", templ.join("/"))
}

/// Keeps a `newCheckpoint` only where its status differs from the previous checkpoint's.
pub fn collapse(steps: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(steps.len());
    let mut status: Option<&String> = None;
    for s in steps {
        if s.starts_with("newCheckpoint:") {
            if status == Some(s) {
                continue;
            }
            status = Some(s);
        }
        out.push(s.clone());
    }
    out
}

/// What a capture (`dws-samples/*.grpc.jsonl`) shows of one session: its collapsed steps, the
/// final status code and details, the last checkpoint status.
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    pub steps: Vec<String>,
    pub code: String,
    pub details: String,
    pub checkpoint_status: Option<String>,
}

/// A capture of a DWS session that cannot be read (naming the line).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CaptureError(pub String);

pub fn from_capture(text: &str) -> Result<Captured, CaptureError> {
    from_capture_text(text).map_err(CaptureError)
}

/// Reads a capture's lines (proto3 JSON, `MessageToDict`) into what a replay is compared with.
fn from_capture_text(text: &str) -> Result<Captured, String> {
    let mut steps = Vec::new();
    let (mut code, mut details, mut status) = (None, String::new(), None);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let msg = &v["msg"];
        match v["kind"].as_str() {
            Some("Action") => {
                let (kind, body) = msg
                    .as_object()
                    .and_then(|o| o.iter().find(|(k, _)| *k != "requestID"))
                    .ok_or_else(|| format!("line {}: an action without a kind", i + 1))?;
                let step = match kind.as_str() {
                    "runHTTPRequest" => http_step(
                        body["method"].as_str().unwrap_or(""),
                        body["path"].as_str().unwrap_or(""),
                        body["body"].as_str().unwrap_or(""),
                    ),
                    "newCheckpoint" => {
                        status = body["status"].as_str().map(str::to_owned);
                        format!("newCheckpoint:{}", body["status"].as_str().unwrap_or("?"))
                    }
                    k => k.to_owned(),
                };
                steps.push(step);
            }
            Some("status") => {
                code = msg["code"].as_str().map(str::to_owned);
                details = msg["details"].as_str().unwrap_or_default().to_owned();
            }
            _ => {}
        }
    }
    Ok(Captured {
        steps: collapse(&steps),
        code: code.ok_or("the capture has no final status")?,
        details,
        checkpoint_status: status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rails_calls_get_their_canonical_names() {
        let w = "/api/v4/ai/duo_workflows/workflows/122164";
        assert_eq!(
            http_step("PATCH", w, r#"{"status_event": "start"}"#),
            "status:start"
        );
        assert_eq!(http_step("GET", w, ""), "workflow:get");
        let c = format!("{w}/checkpoints?checkpoint_strategy=full");
        assert_eq!(http_step("POST", &c, "{}"), "checkpoint:save");
        assert_eq!(
            http_step(
                "POST",
                "/api/graphql",
                "{\"query\": \"toolCallApproved(…)\"}"
            ),
            "graphql:tool_call_approved"
        );
        assert_eq!(
            http_step("GET", "/api/v4/projects/7/issues/12?x=1", ""),
            "http:GET /api/v4/projects/:id/issues/:id"
        );
        assert!(is_tool("runReadFile") && !is_tool("checkpoint:save"));
    }

    #[test]
    fn only_checkpoint_status_changes_are_kept() {
        let s: Vec<String> = [
            "newCheckpoint:CREATED",
            "newCheckpoint:CREATED",
            "runReadFile",
            "newCheckpoint:CREATED",
            "trackLlmCallForSelfHosted",
            "newCheckpoint:RUNNING",
            "newCheckpoint:CREATED",
        ]
        .map(String::from)
        .to_vec();
        let want = [
            "newCheckpoint:CREATED",
            "runReadFile",
            "trackLlmCallForSelfHosted",
            "newCheckpoint:RUNNING",
            "newCheckpoint:CREATED",
        ];
        assert_eq!(collapse(&s), want);
    }
}
