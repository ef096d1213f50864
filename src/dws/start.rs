//! A `startRequest` between its proto3 JSON form (as captures and corpus lines hold it:
//! `MessageToDict` names such as `workflowID`, `additional_context`) and the prost message.

use super::proto::{approval, AdditionalContext, Approval, StartWorkflowRequest};
use serde_json::Value;

/// A start request that does not follow the contract (an unknown field, a wrong type).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

pub fn from_json(body: &Value) -> Result<StartWorkflowRequest, StartError> {
    from_json_text(body).map_err(StartError)
}

/// Reads `{"startRequest": {…}}` or the bare start request; the message names the field at
/// fault, and an unknown field is refused (a misspelt one would be silently dropped).
fn from_json_text(body: &Value) -> Result<StartWorkflowRequest, String> {
    let v = body.get("startRequest").unwrap_or(body);
    let o = v.as_object().ok_or("the start request must be an object")?;
    let mut r = StartWorkflowRequest::default();
    for (k, x) in o {
        let s = || {
            x.as_str()
                .map(str::to_owned)
                .ok_or(format!("'{k}' must be a string"))
        };
        let list = || -> Result<Vec<String>, String> {
            x.as_array()
                .ok_or(format!("'{k}' must be a list"))?
                .iter()
                .map(|e| {
                    e.as_str()
                        .map(str::to_owned)
                        .ok_or(format!("'{k}' must list strings"))
                })
                .collect()
        };
        match k.as_str() {
            "clientVersion" => r.client_version = s()?,
            "workflowID" => r.workflow_id = s()?,
            "workflowDefinition" => r.workflow_definition = s()?,
            "goal" => r.goal = s()?,
            "workflowMetadata" => r.workflow_metadata = s()?,
            "clientCapabilities" => r.client_capabilities = list()?,
            "preapproved_tools" => r.preapproved_tools = list()?,
            "flowConfigSchemaVersion" => r.flow_config_schema_version = Some(s()?),
            "flowConfigId" => r.flow_config_id = Some(s()?),
            "flowVersion" => r.flow_version = Some(s()?),
            "resume_checkpoint_ts" => r.resume_checkpoint_ts = Some(s()?),
            "streaming" => r.streaming = Some(x.as_bool().ok_or("'streaming' must be a boolean")?),
            "additional_context" => r.additional_context = contexts(x)?,
            "approval" => r.approval = Some(approval_of(x)?),
            other => {
                return Err(format!(
                    "'{other}' is not a start request field this build sends"
                ))
            }
        }
    }
    Ok(r)
}

fn contexts(x: &Value) -> Result<Vec<AdditionalContext>, String> {
    let opt = |c: &Value, k: &str| c[k].as_str().map(str::to_owned);
    x.as_array()
        .ok_or("'additional_context' must be a list")?
        .iter()
        .map(|c| {
            Ok(AdditionalContext {
                category: opt(c, "category").ok_or("additional_context: 'category' is required")?,
                id: opt(c, "id"),
                content: opt(c, "content"),
                metadata: opt(c, "metadata"),
            })
        })
        .collect()
}

fn approval_of(x: &Value) -> Result<Approval, String> {
    let decision = if let Some(a) = x.get("approval") {
        approval::UserDecision::Approval(approval::Approved {
            tool_name: a["tool_name"].as_str().map(str::to_owned),
            tool_args_json: a["tool_args_json"].as_str().map(str::to_owned),
            ..Default::default()
        })
    } else if let Some(r) = x.get("rejection") {
        approval::UserDecision::Rejection(approval::Rejected {
            message: r["message"].as_str().map(str::to_owned),
        })
    } else {
        return Err("'approval' must hold 'approval' or 'rejection'".into());
    };
    Ok(Approval {
        user_decision: Some(decision),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_captured_start_request_and_refuses_unknown_fields() {
        let r = from_json(&json!({"startRequest": {"clientVersion": "c", "workflowID": "1",
            "workflowDefinition": "chat", "goal": "g", "clientCapabilities": ["incremental_streaming"],
            "flowConfigId": "agentic_chat", "approval": {"rejection": {"message": "no"}}}}))
        .unwrap();
        assert_eq!(r.workflow_id, "1");
        assert_eq!(r.flow_config_id.as_deref(), Some("agentic_chat"));
        assert!(r.approval.is_some());
        let e = from_json(&json!({"startRequest": {"goall": "x"}})).unwrap_err();
        assert!(e.0.contains("goall"), "{e}");
        let e = from_json(&json!({"startRequest": {"goal": 5}})).unwrap_err();
        assert!(e.0.contains("goal"), "{e}");
    }
}
