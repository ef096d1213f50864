//! What a twin DWS session runs: the workflow a start request names (PROTOCOL-DWS.md §6, §7),
//! and the executor action each tool becomes (§2.2's mapping).

use crate::dws::proto::action::Action as Kind;
use crate::dws::proto::*;
use serde_json::Value;
use tonic::Code;

/// `INTERNAL "workflow execution failure: <Type>: <message>"` (PROTOCOL-DWS.md §6).
pub(super) fn failure(kind: &str, message: &str) -> (Code, String) {
    (
        Code::Internal,
        format!("workflow execution failure: {kind}: {message}"),
    )
}

/// Which workflow a start request runs (PROTOCOL-DWS.md §6, §7).
pub(super) fn flow_of(r: &StartWorkflowRequest) -> Result<bool, (Code, String)> {
    let Some(id) = r.flow_config_id.as_deref() else {
        return match r.workflow_definition.as_str() {
            "chat" => Ok(false),
            "agentic_chat/v1" => Ok(true),
            d => Err(failure(
                "NotImplementedError",
                &format!(
                    "the twin DWS runs the chat workflow and the agentic_chat flow, not '{d}'"
                ),
            )),
        };
    };
    let schema = r.flow_config_schema_version.as_deref().unwrap_or("");
    if !["v1", "experimental"].contains(&schema) {
        let m = format!("1 validation error for RegistryFlowRequest\n  Value error, Invalid flowConfigSchemaVersion: '{schema}'. Must be one of: experimental, v1.");
        return Err((Code::InvalidArgument, m));
    }
    let version = r.flow_version.as_deref().ok_or_else(|| {
        (
            Code::InvalidArgument,
            "flowVersion is required with flowConfigId".to_owned(),
        )
    })?;
    if schema == "v1" && id == "agentic_chat" {
        return Ok(true);
    }
    if schema == "v1" && super::V1_FLOWS.contains(&id) {
        return Err(failure(
            "NotImplementedError",
            &format!("the twin DWS does not run the {id}/{schema} flow"),
        ));
    }
    Err((
        Code::InvalidArgument,
        format!("Failed to load flow {id}/{schema} (version {version})"),
    ))
}

/// Whether the token's unit primitives allow the workflow (PROTOCOL-DWS.md §4, captured): the
/// chat workflow needs `duo_chat`, every flow `duo_agent_platform`; else `PERMISSION_DENIED
/// "Unauthorized to execute <workflow>"`. `scopes` is `None` when the twin does not check.
pub(super) fn permitted(
    r: &StartWorkflowRequest,
    agentic: bool,
    scopes: Option<&[String]>,
) -> Result<(), (Code, String)> {
    let (needed, name) = match (agentic, r.flow_config_id.as_deref()) {
        (false, _) => ("duo_chat", "chat".to_owned()),
        (true, Some(id)) => {
            let schema = r.flow_config_schema_version.as_deref().unwrap_or("v1");
            ("duo_agent_platform", format!("{id}/{schema}"))
        }
        (true, None) => ("duo_agent_platform", r.workflow_definition.clone()),
    };
    match scopes {
        Some(s) if !s.iter().any(|x| x == needed) => Err((
            Code::PermissionDenied,
            format!("Unauthorized to execute {name}"),
        )),
        _ => Ok(()),
    }
}

/// The action a tool call becomes; `None` for a tool the twin does not map.
pub(super) fn tool_action(name: &str, args: &str) -> Option<Kind> {
    let a: Value = serde_json::from_str(args).unwrap_or(Value::Null);
    let s = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
    let kind = match name {
        "read_file" => Kind::RunReadFile(ReadFile {
            filepath: s("file_path"),
            limit: None,
            offset: None,
        }),
        "read_files" => Kind::RunReadFiles(ReadFiles {
            filepaths: a["file_paths"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect(),
        }),
        "list_dir" => Kind::ListDirectory(ListDirectory {
            directory: s("directory"),
        }),
        "find_files" => Kind::FindFiles(FindFiles {
            name_pattern: s("name_pattern"),
        }),
        "grep" => Kind::Grep(Grep {
            search_directory: s("search_directory"),
            pattern: s("pattern"),
            case_insensitive: a["case_insensitive"] == true,
        }),
        "create_file_with_contents" => Kind::RunWriteFile(WriteFile {
            filepath: s("file_path"),
            contents: s("contents"),
        }),
        "edit_file" => Kind::RunEditFile(EditFile {
            filepath: s("file_path"),
            old_string: s("old_str"),
            new_string: s("new_str"),
        }),
        "mkdir" => Kind::Mkdir(Mkdir {
            directory_path: s("directory_path"),
        }),
        "run_command" => Kind::RunCommand(RunCommandAction {
            program: s("program"),
            arguments: Vec::new(),
            flags: Vec::new(),
            timeout: None,
        }),
        _ => return None,
    };
    Some(kind)
}
