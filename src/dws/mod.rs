//! The Duo Workflow Service (DWS, the Agent Platform) contract, shared by the session driver and
//! the twin DWS: the generated gRPC types ([`proto`], [`health`]) and the canonical names of a
//! session's steps ([`steps`]), the unit a replay and a capture are compared in.
//!
//! In: `proto/duo_workflow.proto` and `proto/health.proto`, compiled by `build.rs` (protox and
//! tonic, no system `protoc`). Out: prost messages, tonic clients and servers, step names.

pub mod order;
pub mod start;
pub mod steps;

/// The `DuoWorkflow` service (no proto package, so method paths are `/DuoWorkflow/<Rpc>`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("_");
}

/// `grpc.health.v1`, which the DWS serves without auth.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}

/// The DWS's message size limit, both ways (PROTOCOL-DWS.md §1).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The metadata header that selects the self-hosted model (PROTOCOL-DWS.md §3).
pub const MODEL_METADATA_HEADER: &str = "x-gitlab-agent-platform-model-metadata";

/// Checkpoint statuses (PROTOCOL-DWS.md §2.3).
pub const CHECKPOINT_STATUSES: &[&str] = &[
    "CREATED",
    "RUNNING",
    "INPUT_REQUIRED",
    "TOOL_CALL_APPROVAL_REQUIRED",
    "PLAN_APPROVAL_REQUIRED",
    "PAUSED",
    "FINISHED",
    "STOPPED",
    "FAILED",
];

/// The gRPC status code's canonical name (`OK`, `INVALID_ARGUMENT`…), as captures write it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The agent's text in a checkpoint payload: the content of the last `agent` entry of its
/// `ui_chat_log` (empty when there is none, or the payload is not JSON).
pub fn agent_text(checkpoint: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(checkpoint) else {
        return String::new();
    };
    v["channel_values"]["ui_chat_log"]
        .as_array()
        .and_then(|log| {
            log.iter()
                .rev()
                .find(|e| e["message_type"] == "agent")
                .and_then(|e| e["content"].as_str())
        })
        .unwrap_or_default()
        .to_owned()
}
