//! One `ExecuteWorkflow` session of the twin DWS: the reverse-RPC agent loop of PROTOCOL-DWS.md
//! §5, step for step as captured (Rails calls, checkpoints, tool actions, the final status).
//!
//! In: the client's metadata and events. Out: `Action`s, then the stream's end status.

use super::llm::{self, Model};
use super::Shared;
use crate::dws::proto::action::Action as Kind;
use crate::dws::proto::action_response::ResponseType;
use crate::dws::proto::client_event::Response as Event;
use crate::dws::proto::*;
use prost::Message;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status, Streaming};

/// How a session ends: the status the stream closes with.
struct End(Code, String);

impl End {
    fn failure(kind: &str, message: &str) -> Self {
        let (code, details) = super::flow::failure(kind, message);
        Self(code, details)
    }
}

type Step<T> = Result<T, End>;

/// What the session has asked and logged so far.
struct Session {
    shared: Arc<Shared>,
    tx: Sender<Result<Action, Status>>,
    inbox: Streaming<ClientEvent>,
    workflow_id: String,
    goal: String,
    status: &'static str,
    log: Vec<Value>,
    step: i64,
    parent_ts: Option<String>,
    model: Option<Model>,
    /// The unit primitives the token grants (`None`: not checked).
    scopes: Option<Vec<String>>,
}

/// Runs one session to its end and closes the stream with its status.
pub(super) async fn run(
    shared: Arc<Shared>,
    md: MetadataMap,
    inbox: Streaming<ClientEvent>,
    tx: Sender<Result<Action, Status>>,
) {
    let header = md
        .get(crate::dws::MODEL_METADATA_HEADER)
        .and_then(|v| v.to_str().ok());
    let billing = md
        .get("x-gitlab-self-hosted-dap-billing-enabled")
        .and_then(|v| v.to_str().ok())
        == Some("true");
    let scopes = super::granted_scopes(&shared.cfg, &md);
    let mut s = Session {
        shared,
        tx: tx.clone(),
        inbox,
        workflow_id: String::new(),
        goal: String::new(),
        status: "CREATED",
        log: Vec::new(),
        step: -1,
        parent_ts: None,
        model: llm::model_from_header(header),
        scopes,
    };
    let End(code, details) = match s.drive(billing).await {
        Ok(end) | Err(end) => end,
    };
    let _ = tx.send(Err(Status::new(code, details))).await;
}

fn uuid() -> String {
    let r: u128 = rand::random();
    let h = format!("{r:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..]
    )
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

fn entry(kind: &str, content: &str, status: &str) -> Value {
    json!({"message_type": kind, "message_sub_type": null, "content": content,
        "timestamp": now(), "status": status, "correlation_id": null, "tool_info": null,
        "additional_context": null, "message_id": format!("{kind}-{}", uuid())})
}

impl Session {
    async fn drive(&mut self, billing: bool) -> Step<End> {
        let start = match self.inbox.message().await {
            Ok(Some(ClientEvent {
                response: Some(Event::StartRequest(r)),
            })) => r,
            _ => {
                return Err(End(
                    Code::InvalidArgument,
                    "the first event must be a startRequest".into(),
                ))
            }
        };
        if start.workflow_id.is_empty() {
            return Ok(End(Code::Ok, String::new()));
        }
        let agentic = super::flow::flow_of(&start).map_err(|(c, m)| End(c, m))?;
        super::flow::permitted(&start, agentic, self.scopes.as_deref())
            .map_err(|(c, m)| End(c, m))?;
        self.workflow_id = start.workflow_id.clone();
        self.goal = start.goal.clone();
        self.spend(self.shared.cfg.start_cost_ms).await;
        self.fetch_workflow().await?;
        self.status_event("start").await?;
        self.log.push(entry("user", &self.goal.clone(), "success"));
        self.save("input").await?;
        self.checkpoint().await?;
        self.save("loop").await?;
        if agentic {
            self.save("loop").await?;
        }
        let mut turns: Vec<Value> = Vec::new();
        self.spend(self.shared.cfg.session_cost_ms).await;
        for _ in 0..10 {
            if billing {
                let flow = if agentic { "agentic_chat" } else { "chat" };
                self.ask(Kind::TrackLlmCallForSelfHosted(TrackLlmCallForSelfHosted {
                    workflow_id: self.workflow_id.clone(),
                    feature_qualified_name: flow.into(),
                    feature_ai_catalog_item: false,
                }))
                .await?;
            }
            let answer = self.call_model(agentic, &turns).await?;
            let Some((id, name, args)) = answer.tool else {
                return self.finish(agentic).await;
            };
            if !self.approved(&name, &args).await? {
                return self.require_approval(&id, &name, &args).await;
            }
            self.status = "RUNNING";
            self.save("loop").await?;
            self.checkpoint().await?;
            let result = self.run_tool(&name, &args).await?;
            let mut tool = entry("tool", &format!("Using {name}: {args}"), "success");
            tool["message_sub_type"] = json!(name);
            tool["tool_info"] = json!({"name": name, "args": serde_json::from_str::<Value>(&args).unwrap_or(Value::Null), "tool_response": result});
            self.log.push(tool);
            self.save("loop").await?;
            self.checkpoint().await?;
            turns.extend(llm::tool_turns(&id, &name, &args, &result));
            self.spend(self.shared.cfg.tool_cost_ms).await;
        }
        Err(End::failure(
            "GraphRecursionError",
            "Recursion limit of 10 reached without hitting a stop condition.",
        ))
    }

    /// The service's own work for a step: `ms` of a worker's time, after waiting for one.
    async fn spend(&self, ms: u64) {
        self.shared.workers.work(Duration::from_millis(ms)).await;
    }

    /// Sends an action; a stop or a client gone ends the session.
    async fn send(&mut self, kind: Kind) -> Step<String> {
        let id = uuid();
        let action = Action {
            request_id: id.clone(),
            action: Some(kind),
        };
        if action.encoded_len() > crate::dws::MAX_MESSAGE_BYTES {
            return Err(End(
                Code::ResourceExhausted,
                "Outgoing message too large.".into(),
            ));
        }
        self.tx
            .send(Ok(action))
            .await
            .map_err(|_| End(Code::Cancelled, "RPC cancelled by client".into()))?;
        Ok(id)
    }

    /// Sends an action and waits for its answer.
    async fn ask(&mut self, kind: Kind) -> Step<ActionResponse> {
        let id = self.send(kind).await?;
        loop {
            let event = match self.inbox.message().await {
                Ok(Some(e)) => e.response,
                _ => return Err(End(Code::Cancelled, "RPC cancelled by client".into())),
            };
            match event {
                Some(Event::ActionResponse(r)) if r.request_id == id => return Ok(r),
                Some(Event::StopWorkflow(s)) => return Err(self.stopped(&s.reason).await),
                _ => {} // heartbeats, stale answers
            }
        }
    }

    /// A client `stopWorkflow` (PROTOCOL-DWS.md §5.1).
    async fn stopped(&mut self, reason: &str) -> End {
        match reason {
            "WORKHORSE_SERVER_SHUTDOWN" => End(
                Code::Unavailable,
                format!("workflow execution interrupted: {}", self.status),
            ),
            "WORKHORSE_WEBSOCKET_PING_FAILED" => End(Code::Ok, "workflow execution stopped".into()),
            _ => {
                self.status = "STOPPED";
                self.log.clear();
                let _ = self.checkpoint().await;
                End(Code::Ok, "workflow execution stopped".into())
            }
        }
    }

    async fn rails(
        &mut self,
        method: &str,
        path: String,
        body: Option<String>,
    ) -> Step<(i32, String)> {
        let r = self
            .ask(Kind::RunHttpRequest(RunHttpRequest {
                method: method.into(),
                path,
                body,
            }))
            .await?;
        match r.response_type {
            Some(ResponseType::HttpResponse(h)) => Ok((h.status_code, h.body)),
            _ => Err(End::failure(
                "ValueError",
                "runHTTPRequest was not answered with an httpResponse",
            )),
        }
    }

    fn workflow_path(&self) -> String {
        format!("/api/v4/ai/duo_workflows/workflows/{}", self.workflow_id)
    }

    fn gid(&self) -> String {
        format!(
            "gid://gitlab/Ai::DuoWorkflows::Workflow/{}",
            self.workflow_id
        )
    }

    async fn fetch_workflow(&mut self) -> Step<()> {
        let query = "query($workflowId: AiDuoWorkflowsWorkflowID!) { duoWorkflowWorkflows(workflowId: $workflowId) { nodes { statusName projectId project { id name webUrl } agentPrivilegesNames preApprovedAgentPrivilegesNames mcpEnabled latestCheckpoint { checkpoint } } } }";
        let body = json!({"query": query, "variables": {"workflowId": self.gid()}}).to_string();
        let (code, text) = self
            .rails("POST", "/api/graphql".into(), Some(body))
            .await?;
        if !(200..300).contains(&code) {
            return Err(End::failure(
                "Exception",
                &format!("Failed to fetch workflow: HTTP {code}"),
            ));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let node = &v["data"]["duoWorkflowWorkflows"]["nodes"][0];
        if node.is_null() {
            return Err(End(
                Code::InvalidArgument,
                format!("Invalid workflow ID: {}", self.workflow_id),
            ));
        }
        if !node["project"]["webUrl"].is_string() && !node["namespace"]["webUrl"].is_string() {
            return Err(End::failure(
                "ValueError",
                "the workflow has no project or namespace webUrl",
            ));
        }
        Ok(())
    }

    async fn status_event(&mut self, event: &str) -> Step<()> {
        let body = json!({ "status_event": event }).to_string();
        let (code, _) = self
            .rails("PATCH", self.workflow_path(), Some(body))
            .await?;
        match code {
            200..=299 => Ok(()),
            403 if event == "start" => Err(End(
                Code::PermissionDenied,
                "workflow execution didn't start due to forbidden response".into(),
            )),
            _ => Err(End::failure(
                "BadStatusEvent",
                &format!("status event {event}: HTTP {code}"),
            )),
        }
    }

    /// `POST …/checkpoints`: the state with the model that serves it.
    async fn save(&mut self, source: &str) -> Step<()> {
        use base64::Engine;
        let ts = uuid();
        let state = json!({"channel_values": {"ui_chat_log": self.log, "status": self.status}});
        let model = self
            .model
            .as_ref()
            .map_or(Value::Null, |m| m.applied.clone());
        let body = json!({"thread_ts": ts, "parent_ts": self.parent_ts,
            "metadata": {"source": source, "step": self.step, "parents": {}},
            "compressed_checkpoint": base64::engine::general_purpose::STANDARD.encode(state.to_string()),
            "model_metadata_json": model.to_string()});
        let path = format!(
            "{}/checkpoints?checkpoint_strategy=full",
            self.workflow_path()
        );
        let (code, _) = self.rails("POST", path, Some(body.to_string())).await?;
        if !(200..300).contains(&code) {
            return Err(End::failure(
                "Exception",
                &format!("checkpoint save: HTTP {code}"),
            ));
        }
        self.parent_ts = Some(ts);
        self.step += 1;
        Ok(())
    }

    /// `newCheckpoint`: the UI state (not answered).
    async fn checkpoint(&mut self) -> Step<()> {
        let checkpoint =
            json!({"channel_values": {"ui_chat_log": self.log, "plan": {"steps": []}}});
        let kind = Kind::NewCheckpoint(NewCheckpoint {
            status: self.status.into(),
            checkpoint: checkpoint.to_string(),
            goal: self.goal.clone(),
            errors: Vec::new(),
            agent_context_usage: Default::default(),
        });
        self.send(kind).await.map(|_| ())
    }

    /// One model call, streamed: the agent's text goes out in throttled checkpoints.
    async fn call_model(&mut self, agentic: bool, turns: &[Value]) -> Step<llm::Answer> {
        let cfg = self.shared.cfg.clone();
        let mut last_error = "Connection error.".to_owned();
        for attempt in 0..cfg.llm_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(cfg.llm_retry_ms)).await;
            }
            match self.try_model(agentic, turns).await? {
                Ok(answer) => return Ok(answer),
                Err((retry, message)) if retry => last_error = message,
                Err((_, message)) => return self.fail(&message).await,
            }
        }
        let m = format!("litellm.InternalServerError: InternalServerError: Custom_openaiException - {last_error}");
        self.fail(&format!("InternalServerError: {m}")).await
    }

    /// The session's failure: `status_event=drop`, a FAILED checkpoint, INTERNAL.
    async fn fail<T>(&mut self, message: &str) -> Step<T> {
        self.status_event("drop").await?;
        self.status = "FAILED";
        self.log = vec![entry("agent", "There was an error processing your request in the Duo Agent Platform, please contact support if the issue persists.", "failure")];
        self.checkpoint().await?;
        let (kind, msg) = message.split_once(": ").unwrap_or(("Exception", message));
        Err(End::failure(kind, msg))
    }

    /// One try: the answer, or (whether to retry, the error).
    async fn try_model(
        &mut self,
        agentic: bool,
        turns: &[Value],
    ) -> Step<Result<llm::Answer, (bool, String)>> {
        let Some(m) = self.model.clone() else {
            return Ok(Err((true, "Connection error.".into())));
        };
        let body = llm::body(&m.model, agentic, &self.goal, turns);
        let mut req = self
            .shared
            .client
            .post(format!("{}/chat/completions", m.endpoint))
            .json(&body);
        if let Some(k) = &m.api_key {
            req = req.bearer_auth(k);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(_) => return Ok(Err((true, "Connection error.".into()))),
        };
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            let kind = if status.is_client_error() {
                "BadRequestError"
            } else {
                "InternalServerError"
            };
            let m = format!("{kind}: litellm.{kind}: Custom_openaiException - {message}");
            return Ok(Err((status.is_server_error(), m)));
        }
        self.stream_answer(resp).await.map(Ok)
    }

    async fn stream_answer(&mut self, mut resp: reqwest::Response) -> Step<llm::Answer> {
        let throttle = Duration::from_millis(self.shared.cfg.checkpoint_throttle_ms);
        let mut answer = llm::Answer::default();
        let (mut buf, mut last_sent, mut dirty) = (String::new(), None::<Instant>, false);
        self.log.push(entry("agent", "", "success"));
        loop {
            let bytes = match resp.chunk().await {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    let m = format!("APIError: litellm.APIError: Custom_openaiException - {e}");
                    return self.fail(&m).await;
                }
            };
            buf.push_str(&String::from_utf8_lossy(&bytes));
            for data in llm::drain_events(&mut buf) {
                dirty |= answer.fold(&data).is_some() || last_sent.is_none();
            }
            if dirty && last_sent.is_none_or(|t| t.elapsed() >= throttle) {
                self.set_agent_text(&answer.text);
                self.checkpoint().await?;
                (last_sent, dirty) = (Some(Instant::now()), false);
            }
        }
        if dirty {
            self.set_agent_text(&answer.text);
            self.checkpoint().await?;
        }
        if answer.text.is_empty() {
            self.log.pop(); // a tool call carries no agent text
        }
        Ok(answer)
    }

    fn set_agent_text(&mut self, text: &str) {
        if let Some(e) = self.log.last_mut() {
            e["content"] = json!(text);
        }
    }

    async fn approved(&mut self, name: &str, args: &str) -> Step<bool> {
        let query = "\nquery($workflowId: AiDuoWorkflowsWorkflowID!, $toolName: String!, $toolCallArgs: String!) {\n    duoWorkflowWorkflows(workflowId: $workflowId) {\n        nodes {\n            toolCallApproved(toolName: $toolName, toolCallArgs: $toolCallArgs)\n        }\n    }\n}\n";
        let body = json!({"query": query, "variables": {"workflowId": self.gid(), "toolName": name, "toolCallArgs": args}});
        let (_, text) = self
            .rails("POST", "/api/graphql".into(), Some(body.to_string()))
            .await?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(v["data"]["duoWorkflowWorkflows"]["nodes"][0]["toolCallApproved"] == true)
    }

    async fn require_approval(&mut self, id: &str, name: &str, args: &str) -> Step<End> {
        self.status_event("require_tool_call_approval").await?;
        let mut req = entry(
            "request",
            &format!("Tool {name} requires approval. Please confirm if you want to proceed."),
            "success",
        );
        req["tool_info"] = json!({"name": name, "args": serde_json::from_str::<Value>(args).unwrap_or(Value::Null)});
        req["message_id"] = json!(id);
        self.log.push(req);
        self.status = "TOOL_CALL_APPROVAL_REQUIRED";
        self.save("loop").await?;
        self.checkpoint().await?;
        self.rails("GET", self.workflow_path(), None).await?;
        Ok(End(Code::Ok, "workflow execution success".into()))
    }

    /// The tool's action (PROTOCOL-DWS.md §2.2 mapping) and the executor's answer.
    async fn run_tool(&mut self, name: &str, args: &str) -> Step<String> {
        let Some(kind) = super::flow::tool_action(name, args) else {
            return Ok(format!("Tool {name} is not available in the twin DWS"));
        };
        let r = self.ask(kind).await?;
        Ok(match r.response_type {
            Some(ResponseType::PlainTextResponse(p)) if p.error.is_empty() => p.response,
            Some(ResponseType::PlainTextResponse(p)) => format!("Error: {}", p.error),
            _ => "Error: the executor did not answer with plain text".into(),
        })
    }

    /// The agent answered with text: the session waits for the user.
    async fn finish(&mut self, agentic: bool) -> Step<End> {
        if agentic {
            self.save("loop").await?;
            self.checkpoint().await?;
        }
        self.status_event("require_input").await?;
        self.status = "INPUT_REQUIRED";
        self.save("loop").await?;
        if agentic {
            let path = format!("{}/checkpoint_writes_batch", self.workflow_path());
            let body = json!({"thread_ts": self.parent_ts, "checkpoint_writes": []}).to_string();
            self.rails("POST", path, Some(body)).await?;
        }
        self.checkpoint().await?;
        self.rails("GET", self.workflow_path(), None).await?;
        Ok(End(Code::Ok, "workflow execution success".into()))
    }
}
