//! The harness as GitLab: the executor (IDE or runner) that runs tool actions, and the fake
//! Rails that answers `runHTTPRequest` with the minimal answers of PROTOCOL-DWS.md §5.2.
//!
//! In: a session case (its files, approvals, start status) and one server action. Out: the
//! `ActionResponse` payload, or `None` for `newCheckpoint` (never answered).

use crate::corpus::session::Session;
use crate::dws::proto::action::Action as Kind;
use crate::dws::proto::action_response::ResponseType;
use crate::dws::proto::{HttpResponse, PlainTextResponse, ScheduleNotificationResponse};
use serde_json::{json, Value};

/// The answer to one action (`None`: a checkpoint, which is not answered).
pub fn answer(case: &Session, action: &Kind) -> Option<ResponseType> {
    Some(match action {
        Kind::NewCheckpoint(_) => return None,
        Kind::RunHttpRequest(r) => {
            let (status, body) = rails(case, &r.method, &r.path, r.body.as_deref().unwrap_or(""));
            ResponseType::HttpResponse(HttpResponse {
                headers: [("content-type".to_owned(), "application/json".to_owned())].into(),
                status_code: i32::from(status),
                body: body.to_string(),
                error: String::new(),
            })
        }
        Kind::ScheduleNotification(_) => {
            ResponseType::ScheduleNotificationResponse(ScheduleNotificationResponse {
                accepted: false,
                reason: "the harness schedules no notification".into(),
                fires_at: String::new(),
            })
        }
        other => plain(tool(case, other)),
    })
}

fn plain(r: Result<String, String>) -> ResponseType {
    let (response, error) = match r {
        Ok(text) => (text, String::new()),
        Err(e) => (String::new(), e),
    };
    ResponseType::PlainTextResponse(PlainTextResponse { response, error })
}

/// Rails' answer: (HTTP status, JSON body).
fn rails(case: &Session, method: &str, path: &str, body: &str) -> (u16, Value) {
    let bare = path.split('?').next().unwrap_or(path);
    let id = bare
        .strip_prefix("/api/v4/ai/duo_workflows/workflows/")
        .and_then(|r| r.split('/').next())
        .unwrap_or("0");
    match crate::dws::steps::http_step(method, path, body).as_str() {
        "graphql:workflow" => (200, workflow_node()),
        "graphql:tool_call_approved" => {
            let ok = case.tool_call_approved.unwrap_or(true);
            (
                200,
                json!({"data": {"duoWorkflowWorkflows": {"nodes": [{"toolCallApproved": ok}]}}}),
            )
        }
        "status:start" => {
            let s = case.start_status.unwrap_or(200);
            (s, json!({"workflow": {"id": id}, "status": "running"}))
        }
        s if s.starts_with("status:") => {
            (200, json!({"workflow": {"id": id}, "status": "running"}))
        }
        "workflow:get" => (200, json!({"id": id, "status": "running"})),
        "checkpoint:save" | "checkpoint:writes" => (200, json!({})),
        "checkpoint:list" if bare.ends_with("by_thread_ts") => {
            (404, json!({"message": "404 Not Found"}))
        }
        "checkpoint:list" => (200, json!([])),
        _ => (404, json!({"message": "404 Not Found"})),
    }
}

/// The GraphQL workflow node that worked against the real service (§5.2).
fn workflow_node() -> Value {
    json!({"data": {"duoWorkflowWorkflows": {"nodes": [{
        "statusName": "created", "projectId": "gid://gitlab/Project/1",
        "project": {"id": "gid://gitlab/Project/1", "name": "proj", "description": "harness project",
            "httpUrlToRepo": "http://gitlab.example.test/group/proj.git",
            "webUrl": "http://gitlab.example.test/group/proj", "languages": []},
        "namespaceId": null, "namespace": null,
        "agentPrivilegesNames": ["read_write_files", "read_only_gitlab", "read_write_gitlab",
            "run_commands", "use_git"],
        "preApprovedAgentPrivilegesNames": [], "mcpEnabled": false,
        "incrementalCheckpointsEnabled": false, "allowAgentToRequestUser": true,
        "webSearchEnabled": false, "latestCheckpoint": null, "archived": false, "stalled": false,
        "workflowDefinition": "chat", "userId": "gid://gitlab/User/1"
    }]}}})
}

/// A tool action run against the case's files.
fn tool(case: &Session, action: &Kind) -> Result<String, String> {
    let read = |p: &str| {
        case.files
            .get(p.trim_start_matches("./"))
            .cloned()
            .ok_or_else(|| format!("File '{p}' not found"))
    };
    match action {
        Kind::RunReadFile(r) => read(&r.filepath),
        Kind::RunReadFiles(r) => {
            let parts: Result<Vec<String>, String> = r
                .filepaths
                .iter()
                .map(|p| read(p).map(|c| format!("--- {p}\n{c}")))
                .collect();
            parts.map(|p| p.join("\n"))
        }
        Kind::ListDirectory(d) => Ok(listing(case, &d.directory)),
        Kind::FindFiles(f) => Ok(listing(case, "")
            .lines()
            .filter(|p| p.contains(f.name_pattern.trim_matches('*')))
            .collect::<Vec<_>>()
            .join("\n")),
        Kind::Grep(g) => Ok(grep(case, &g.pattern, g.case_insensitive)),
        Kind::RunWriteFile(_) | Kind::RunEditFile(_) | Kind::Mkdir(_) => Ok("done".into()),
        Kind::TrackLlmCallForSelfHosted(_) => Ok(String::new()),
        _ => Err("the harness runs no commands".into()),
    }
}

fn listing(case: &Session, dir: &str) -> String {
    let dir = dir.trim_start_matches("./").trim_end_matches('/');
    case.files
        .keys()
        .filter(|p| dir.is_empty() || dir == "." || p.starts_with(&format!("{dir}/")))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

fn grep(case: &Session, pattern: &str, insensitive: bool) -> String {
    let fold = |s: &str| {
        if insensitive {
            s.to_lowercase()
        } else {
            s.to_owned()
        }
    };
    let want = fold(pattern);
    let mut out = Vec::new();
    for (path, text) in &case.files {
        for (n, line) in text.lines().enumerate() {
            if fold(line).contains(&want) {
                out.push(format!("{path}:{}:{line}", n + 1));
            }
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dws::proto::{ReadFile, RunHttpRequest};

    #[test]
    fn rails_and_tools_answer_from_the_case() {
        let mut case = Session::default();
        case.files.insert("README.md".into(), "# proj\n".into());
        case.tool_call_approved = Some(false);
        let read = Kind::RunReadFile(ReadFile {
            filepath: "README.md".into(),
            limit: None,
            offset: None,
        });
        let Some(ResponseType::PlainTextResponse(p)) = answer(&case, &read) else {
            panic!()
        };
        assert_eq!(p.response, "# proj\n");
        let q = Kind::RunHttpRequest(RunHttpRequest {
            method: "POST".into(),
            path: "/api/graphql".into(),
            body: Some("{\"query\": \"toolCallApproved\"}".into()),
        });
        let Some(ResponseType::HttpResponse(h)) = answer(&case, &q) else {
            panic!()
        };
        assert!(h.body.contains("\"toolCallApproved\":false"), "{}", h.body);
    }
}
