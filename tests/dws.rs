//! The Agent Platform end to end: the real binary replays Duo Workflow Service sessions over
//! gRPC against the twin DWS (and a hostile one), playing executor and GitLab Rails. Each case
//! must end with the status and step sequence of the real service's capture it came from.

mod common;

use duo_harness::dws::steps;
use serde_json::Value;
use std::path::{Path, PathBuf};

const MODELS: &str = r#"
[models.duo_agent_platform_agentic_chat]
name = "mistral"
endpoint = "twin:vllm-chat"
identifier = "custom_openai/mistral-7b-instruct"

[models.duo_agent_platform]
name = "mistral"
endpoint = "twin:vllm-chat"
identifier = "custom_openai/mistral-7b-instruct"
"#;

/// A twin DWS with workers to spare: these tests load the harness's session driving, not the
/// service's own capacity (`tests/dws_load.rs` does that).
const ROOMY_DWS: &str = "[stack.dws]\nworkers = 32\n";

/// The shipped session cases, by id.
fn case(id: &str) -> Value {
    let text =
        std::fs::read_to_string(common::repo().join("fixtures/corpus/dap-sessions.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no case {id}"))
}

/// Writes `lines` as a corpus and a scenario around them (`extra` appended); returns the
/// scenario's path.
fn scenario(dir: &Path, lines: &[Value], extra: &str) -> PathBuf {
    let corpus: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
    let text = format!(
        "name = \"dws\"\ncorpus = \"corpus.jsonl\"\nrequest_timeout_s = 20\n\n[target]\nurl = \"embedded\"\nauth = \"bypass\"\n\n[output]\ndir = \"reports\"\n{extra}\n"
    );
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(scenario: &Path, out: &Path) -> (i32, String) {
    let (code, stdout, stderr) = common::run_cli(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    (code, format!("{stdout}\n{stderr}"))
}

/// The capture a case names in its `capture:<name>` tag, read by the library's own reader.
fn captured(name: &str) -> steps::Captured {
    let path = common::captures_dir().join(format!("dws-samples/{name}.grpc.jsonl"));
    steps::from_capture(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_like_capture(r: &Value, capture: &str) {
    let c = captured(capture);
    let s = &r["session"];
    assert_eq!(s["code"], c.code.as_str(), "{}: {r}", r["id"]);
    assert_eq!(s["details"], c.details.as_str(), "{}", r["id"]);
    let got: Vec<String> = serde_json::from_value(s["steps"].clone()).unwrap();
    assert_eq!(got, c.steps, "{}: steps", r["id"]);
    assert_eq!(
        s["checkpoint_status"].as_str(),
        c.checkpoint_status.as_deref(),
        "{}",
        r["id"]
    );
}

#[test]
fn each_case_ends_with_the_status_and_steps_of_its_capture() {
    let d = tempfile::tempdir().unwrap();
    let ids = [
        "dap-chat-text",
        "dap-chat-tool",
        "dap-chat-tool-approval-required",
        "dap-chat-stop",
        "dap-flow-agentic-chat-v1",
        "dap-err-unknown-flow",
    ];
    let lines: Vec<Value> = ids.iter().map(|i| case(i)).collect();
    let out = d.path().join("run");
    let (code, printed) = run(&scenario(d.path(), &lines, MODELS), &out);
    assert_eq!(code, 0, "{printed}");
    let results = common::results(&out);
    assert_eq!(results.len(), ids.len());
    for r in &results {
        let tag = r["id"].as_str().unwrap();
        let capture = case(tag)["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|t| t.as_str()?.strip_prefix("capture:").map(str::to_owned))
            .unwrap();
        assert_like_capture(r, &capture);
        assert!(r["error"].is_null(), "{r}");
    }
    let by_id = |id: &str| results.iter().find(|r| r["id"] == id).unwrap();
    // The tool was asked for and answered from the case's files; the model then answered.
    let tool = by_id("dap-chat-tool");
    assert_eq!(tool["session"]["tools"], serde_json::json!(["runReadFile"]));
    assert_eq!(
        tool["session"]["tool_round_trips_ms"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        tool["first_content_ms"].as_f64().unwrap()
            > tool["session"]["first_action_ms"].as_f64().unwrap()
    );
    assert_eq!(
        tool["session"]["served_model"]["identifier"],
        "custom_openai/mistral-7b-instruct"
    );
    assert!(tool["session"]["served_model"].get("api_key").is_none());
    // Approval refused: no tool ran, and the session waits for approval.
    let refused = by_id("dap-chat-tool-approval-required");
    assert_eq!(refused["session"]["tools"], serde_json::json!([]));
    let sm = common::json_file(&out.join("summary.json"));
    let s = &sm["features"]["duo_agent_platform_agentic_chat"]["sessions"];
    assert_eq!(s["sessions"], 5, "{s}");
    assert_eq!(s["mismatched"], 0, "{s}");
    assert_eq!(s["codes"]["OK"], 5, "{s}");
    assert_eq!(
        sm["features"]["duo_agent_platform"]["sessions"]["codes"]["INVALID_ARGUMENT"],
        1
    );
    assert!(
        printed.contains("sessions duo_agent_platform_agentic_chat: 5"),
        "{printed}"
    );
    common::assert_schema("summary-v1.schema.json", &sm);
    for r in &results {
        common::assert_schema("result-v1.schema.json", r);
    }
}

/// A session whose expected status or steps differ is a failure, named with the case.
#[test]
fn a_session_unlike_its_case_fails_the_run() {
    let d = tempfile::tempdir().unwrap();
    let mut line = case("dap-chat-text");
    line["session"]["expect"]["steps"][0] = "graphql:tool_call_approved".into();
    let mut wrong_status = case("dap-chat-tool");
    wrong_status["id"] = "dap-chat-tool-expects-internal".into();
    wrong_status["session"]["expect"]["status"] = "INTERNAL".into();
    let out = d.path().join("run");
    let (code, printed) = run(&scenario(d.path(), &[line, wrong_status], MODELS), &out);
    assert_eq!(code, 1, "{printed}");
    let sm = common::json_file(&out.join("summary.json"));
    let m = common::finding_message(&sm, "session");
    assert!(
        m.contains("dap-chat-text") && m.contains("steps differ at 0"),
        "{m}"
    );
    let f = &sm["features"]["duo_agent_platform_agentic_chat"];
    assert_eq!(f["errors_by_class"]["grpc_status"], 1, "{f}");
}

/// The same sessions, their cases' steps in another order: one the real service produces under
/// load (a queued `INPUT_REQUIRED` checkpoint before the status event; checkpoint writes before
/// the last save) passes; one it never produces (a save moved past the final fetch, the tool
/// before its approval) is a session unlike its case.
#[test]
fn sessions_are_judged_on_the_order_the_service_guarantees() {
    let reorder = |id: &str, new_id: &str, edit: &dyn Fn(&mut Vec<String>)| {
        let mut line = case(id);
        let mut steps: Vec<String> =
            serde_json::from_value(line["session"]["expect"]["steps"].clone()).unwrap();
        edit(&mut steps);
        line["id"] = new_id.into();
        line["session"]["expect"]["steps"] = serde_json::json!(steps);
        line
    };
    let swap = |a: &'static str, b: &'static str| {
        move |s: &mut Vec<String>| {
            let i = s.iter().position(|x| x == a).unwrap();
            let j = s.iter().rposition(|x| x == b).unwrap();
            s.swap(i, j);
        }
    };
    let allowed = [
        reorder(
            "dap-chat-text",
            "queued-status",
            &swap("status:require_input", "newCheckpoint:INPUT_REQUIRED"),
        ),
        reorder("dap-flow-agentic-chat-v1", "writes-first", &|s| {
            let w = s.iter().position(|x| x == "checkpoint:writes").unwrap();
            let moved = s.remove(w);
            s.insert(w - 1, moved);
        }),
    ];
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("allowed");
    let (code, printed) = run(&scenario(d.path(), &allowed, MODELS), &out);
    assert_eq!(code, 0, "{printed}");
    let never = [
        reorder("dap-chat-text", "save-after-get", &|s| {
            let last = s.iter().rposition(|x| x == "checkpoint:save").unwrap();
            let moved = s.remove(last);
            s.push(moved);
        }),
        reorder(
            "dap-chat-tool",
            "tool-first",
            &swap("graphql:tool_call_approved", "runReadFile"),
        ),
    ];
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("never");
    let (code, printed) = run(&scenario(d.path(), &never, MODELS), &out);
    assert_eq!(code, 1, "{printed}");
    let sm = common::json_file(&out.join("summary.json"));
    assert_eq!(
        sm["features"]["duo_agent_platform_agentic_chat"]["sessions"]["mismatched"], 2,
        "{sm}"
    );
}

/// As the real service: a token without `duo_agent_platform` may run the chat workflow (it has
/// `duo_chat`) but no flow: `PERMISSION_DENIED "Unauthorized to execute agentic_chat/v1"`.
#[test]
fn a_token_without_the_agent_platform_scope_runs_no_flow() {
    let d = tempfile::tempdir().unwrap();
    let key = common::repo().join("tests/fixtures/keys/throwaway-aigw.pem");
    let mut flow = case("dap-flow-agentic-chat-v1");
    flow["session"]["expect"] = serde_json::json!({
        "status": "PERMISSION_DENIED", "details": "Unauthorized to execute agentic_chat/v1"});
    let extra = format!("{MODELS}\n[stack.dws]\nauth = true\n");
    let path = scenario(d.path(), &[case("dap-chat-text"), flow], &extra);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "auth = \"bypass\"",
        &format!(
            "auth = \"mint\"\nkey_file = {:?}\nscopes = [\"duo_chat\"]",
            key.to_str().unwrap()
        ),
    );
    std::fs::write(&path, text).unwrap();
    let out = d.path().join("run");
    let (code, printed) = run(&path, &out);
    assert_eq!(code, 0, "each session ends as its case says: {printed}");
    let results = common::results(&out);
    let by_id = |id: &str| results.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(by_id("dap-chat-text")["session"]["code"], "OK");
    let refused = &by_id("dap-flow-agentic-chat-v1")["session"];
    assert_eq!(refused["code"], "PERMISSION_DENIED", "{refused}");
    assert_eq!(refused["actions"], 0, "refused before any action");
}

#[test]
fn unauthenticated_and_upstream_down_end_as_captured() {
    let d = tempfile::tempdir().unwrap();
    let mut line = case("dap-chat-text");
    line["session"]["expect"] = serde_json::json!({"status": "UNAUTHENTICATED"});
    let out = d.path().join("auth");
    let extra = format!("{MODELS}\n[stack.dws]\nauth = true\n");
    let (code, printed) = run(&scenario(d.path(), &[line], &extra), &out);
    assert_eq!(code, 0, "{printed}");
    let r = &common::results(&out)[0];
    assert_like_capture(r, "err_unauthenticated_no_token");
    assert_eq!(r["session"]["actions"], 0);

    // A token minted by the harness names the service's audience: the session runs.
    let key = common::repo().join("tests/fixtures/keys/throwaway-aigw.pem");
    let out = d.path().join("minted");
    let path = scenario(d.path(), &[case("dap-chat-text")], &extra);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "auth = \"bypass\"",
        &format!("auth = \"mint\"\nkey_file = {:?}", key.to_str().unwrap()),
    );
    std::fs::write(&path, text).unwrap();
    let (code, printed) = run(&path, &out);
    assert_eq!(code, 0, "{printed}");
    assert_like_capture(&common::results(&out)[0], "chat_text");

    let mut line = case("dap-chat-text");
    line["session"]["expect"] = serde_json::json!({"status": "INTERNAL"});
    let port = common::closed_port();
    // A fault drill: the load is sent although the `models` preflight fails on the dead backend.
    let down = MODELS.replace("twin:vllm-chat", &format!("http://127.0.0.1:{port}/v1"))
        + "\n[load]\non_failed_preflight = \"send\"\n";
    let out = d.path().join("down");
    let (code, printed) = run(&scenario(d.path(), &[line], &down), &out);
    // The dead backend fails `models` (exit 3: the stack is not there), and the session still
    // ends as captured.
    assert_eq!(code, 3, "{printed}");
    let summary = common::json_file(&out.join("summary.json"));
    assert!(common::finding_message(&summary, "model_endpoint").contains("models"));
    let r = &common::results(&out)[0];
    assert_like_capture(r, "err_upstream_down");
}

/// A missing model-metadata header is a hybrid leak; a model that refuses tool calling is named.
#[test]
fn a_session_without_model_metadata_leaks_and_a_model_without_tools_is_named() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("leak");
    let extra = "[routing]\nfully_self_hosted = true\n";
    let (code, printed) = run(&scenario(d.path(), &[case("dap-chat-text")], extra), &out);
    assert_eq!(code, 1, "{printed}");
    let sm = common::json_file(&out.join("summary.json"));
    let routing: Vec<String> = sm["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "routing")
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        routing
            .iter()
            .any(|m| m.contains("hybrid_leak")
                && m.contains("x-gitlab-agent-platform-model-metadata")),
        "{routing:?}"
    );

    let out = d.path().join("notools");
    let extra = format!("{MODELS}\n[stack]\n[[stack.backend]]\nname = \"vllm-chat\"\nmodels = [\"mistral-7b-instruct\"]\ntool_calling = false\n");
    let (code, printed) = run(&scenario(d.path(), &[case("dap-chat-tool")], &extra), &out);
    assert_eq!(code, 1, "{printed}");
    let sm = common::json_file(&out.join("summary.json"));
    let m = common::finding_message(&sm, "model_tool_calling");
    assert!(m.contains("--enable-auto-tool-choice"), "{m}");
}

/// Sessions under open-loop arrivals: each measured, with the session's own figures.
#[test]
fn agentic_chat_sessions_run_open_loop() {
    let d = tempfile::tempdir().unwrap();
    let lines = [case("dap-chat-text"), case("dap-chat-tool")];
    let extra = format!(
        "{MODELS}\n[load]\narrival = \"poisson\"\nrate = 10\nduration_s = 3\ngrace_s = 10\nseed = 7\n{ROOMY_DWS}"
    );
    let out = d.path().join("run");
    let (code, printed) = run(&scenario(d.path(), &lines, &extra), &out);
    assert!(code == 0 || code == 4, "{printed}");
    let sm = common::json_file(&out.join("summary.json"));
    let f = &sm["features"]["duo_agent_platform_agentic_chat"];
    let n = f["requests"].as_u64().unwrap();
    assert!((15..=50).contains(&n), "{n} sessions at 10/s for 3 s: {f}");
    assert_eq!(f["errors"], 0, "{f}");
    let s = &f["sessions"];
    assert_eq!(s["sessions"].as_u64(), Some(n));
    assert_eq!(s["mismatched"], 0, "{s}");
    for k in ["first_action_ms", "tool_round_trip_ms", "session_ms"] {
        assert!(s[k]["p50"].as_f64().unwrap() > 0.0, "{k}: {s}");
    }
    assert!(s["tool_round_trip_ms"]["n"].as_u64().unwrap() >= 3, "{s}");
    assert_eq!(
        f["latency_ms"]["ttft"]["n"].as_u64(),
        Some(n),
        "every session streamed text: {f}"
    );
    assert!(
        f["latency_ms"]["ttft"]["p50"].as_f64().unwrap()
            > s["first_action_ms"]["p50"].as_f64().unwrap()
    );
    assert_eq!(sm["load"]["arrival"], "poisson");
}

/// A server that hangs, sends an unknown action, passes 4 MiB or closes without a status: each
/// session classed, bounded by its timeout, and the run goes on to measure the good one.
#[test]
fn hostile_servers_are_classed_and_the_run_goes_on() {
    let url = common::grpc::start();
    let d = tempfile::tempdir().unwrap();
    let modes = ["hang", "unknown", "oversize", "no_status", "fine"];
    let lines: Vec<Value> = modes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut l = case("dap-chat-text");
            l["id"] = format!("hostile-{m}").into();
            l["request"]["headers"]["x-hostile"] = (*m).into();
            l["arrival_offset_ms"] = (i as u64 * 10).into();
            l
        })
        .collect();
    // The hostile service fails its health check too: a fault drill sends its load regardless.
    let extra = format!("{MODELS}\n[load]\nconcurrency = 5\non_failed_preflight = \"send\"\n");
    let path = scenario(d.path(), &lines, &extra);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("request_timeout_s = 20", "request_timeout_s = 2")
        .replace(
            "auth = \"bypass\"",
            &format!("auth = \"bypass\"\ndws = \"{url}\""),
        );
    std::fs::write(&path, text).unwrap();
    let out = d.path().join("run");
    let (code, printed) = run(&path, &out);
    assert_eq!(code, 1, "{printed}");
    let results = common::results(&out);
    assert_eq!(results.len(), modes.len(), "{printed}");
    let class = |m: &str| {
        let r = results
            .iter()
            .find(|r| r["id"] == format!("hostile-{m}"))
            .unwrap();
        (
            r["error"]["class"].as_str().map(str::to_owned),
            r["error"]["message"].to_string(),
        )
    };
    for (mode, want) in [
        ("hang", "timeout"),
        ("unknown", "framing"),
        ("oversize", "oversize"),
        ("no_status", "truncated"),
    ] {
        let (got, message) = class(mode);
        assert_eq!(got.as_deref(), Some(want), "{mode}: {message}");
    }
    // The hung session keeps what it showed before its timeout.
    let hung = results.iter().find(|r| r["id"] == "hostile-hang").unwrap();
    assert_eq!(hung["session"]["actions"], 1, "{hung}");
    assert_eq!(
        hung["session"]["steps"],
        serde_json::json!(["graphql"]),
        "{hung}"
    );
    // `fine` answers OK with no action: a session, measured, that its case (a chat) did not
    // expect to be so short.
    let (got, _) = class("fine");
    assert_eq!(got, None);
}

/// Through a tap in front of the chat backend, each session's model calls are tied to it: the
/// model and parameters that served it (38 tool specs, `max_tokens` 32768 for the chat
/// workflow), and routing checks the backend and model.
#[test]
fn the_tap_sees_the_model_and_parameters_that_served_each_session() {
    let d = tempfile::tempdir().unwrap();
    let extra = format!(
        "{MODELS}\n[[tap]]\nbackend = \"vllm-chat\"\n\n[routing]\nfully_self_hosted = true\n\n[routing.features.duo_agent_platform_agentic_chat]\nbackend = \"vllm-chat\"\nmodel = \"mistral-7b-instruct\"\n"
    );
    let out = d.path().join("run");
    let lines = [case("dap-chat-tool"), case("dap-flow-agentic-chat-v1")];
    let (code, printed) = run(&scenario(d.path(), &lines, &extra), &out);
    assert_eq!(code, 0, "{printed}");
    let results = common::results(&out);
    let taps: Vec<Value> = std::fs::read_to_string(out.join("taps.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let calls = |id: &str| -> Vec<&Value> {
        let nonce = results.iter().find(|r| r["id"] == id).unwrap()["nonce"].clone();
        assert!(nonce.is_string(), "{id} carries a nonce");
        taps.iter().filter(|t| t["nonce"] == nonce).collect()
    };
    let chat = calls("dap-chat-tool");
    assert_eq!(chat.len(), 2, "a tool call, then the answer: {chat:?}");
    for c in &chat {
        assert_eq!(c["model"], "mistral-7b-instruct");
        assert_eq!(c["params"]["max_tokens"], 32768);
        assert_eq!(c["params"]["tools"], 38);
    }
    let flow = calls("dap-flow-agentic-chat-v1");
    assert_eq!(flow.len(), 1);
    assert_eq!(flow[0]["params"]["max_tokens"], 4096);
    assert!(flow[0]["params"].get("tools").is_none());
    let sm = common::json_file(&out.join("summary.json"));
    let f = &sm["features"]["duo_agent_platform_agentic_chat"];
    assert_eq!(f["routing"]["violations"], serde_json::json!([]), "{f}");
    assert_eq!(f["backend"]["calls"], 3, "{f}");
    // The loop's second call is no retry; the wait is each session's first model call.
    assert_eq!(f["backend"]["retries"], 0, "{f}");
    assert_eq!(f["backend"]["upstream_wait_ms"]["n"], 2, "{f}");
    let first_action = f["sessions"]["first_action_ms"]["p50"].as_f64().unwrap();
    assert!(
        f["backend"]["upstream_wait_ms"]["p50"].as_f64().unwrap() > first_action,
        "{f}"
    );
}

/// The shipped cases are exactly what `corpus from-dws-capture` makes of the captures they name,
/// and every line passes `corpus validate`.
#[test]
fn the_shipped_sessions_are_made_from_the_captures() {
    for corpus in ["dap-sessions.jsonl", "dap-load.jsonl"] {
        made_from_captures(corpus);
    }
}

fn made_from_captures(corpus: &str) {
    let shipped =
        std::fs::read_to_string(common::repo().join("fixtures/corpus").join(corpus)).unwrap();
    let names: Vec<String> = shipped
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["tags"][1]
                .as_str()
                .unwrap()
                .strip_prefix("capture:")
                .unwrap()
                .to_owned()
        })
        .collect();
    let paths: Vec<String> = names
        .iter()
        .map(|n| {
            common::captures_dir()
                .join(format!("dws-samples/{n}.grpc.jsonl"))
                .display()
                .to_string()
        })
        .collect();
    let mut args = vec!["corpus", "from-dws-capture"];
    args.extend(paths.iter().map(String::as_str));
    let (code, stdout, stderr) = common::run_cli(&args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, shipped);
    let path = common::repo().join("fixtures/corpus").join(corpus);
    let (code, stdout, _) = common::run_cli(&["corpus", "validate", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");
    for l in shipped.lines() {
        common::assert_schema("corpus-v1.schema.json", &serde_json::from_str(l).unwrap());
    }
    // A session line whose start request misspells a field is refused, naming it.
    let bad = shipped
        .lines()
        .next()
        .unwrap()
        .replace("\"goal\"", "\"goall\"");
    let e = duo_harness::corpus::parse_line(&bad).unwrap_err().0;
    assert!(e.contains("request.body") && e.contains("goall"), "{e}");
}

/// The model key a session's metadata carries reaches the model and nothing else: no file of
/// the run folder holds it.
#[test]
fn the_model_key_never_reaches_disk() {
    let d = tempfile::tempdir().unwrap();
    let key = "sk-dws-model-key-4242";
    let models = MODELS.replace(
        "identifier = \"custom_openai/mistral-7b-instruct\"\n",
        "identifier = \"custom_openai/mistral-7b-instruct\"\napi_key_env = \"DUO_TEST_DWS_KEY\"\n",
    );
    let extra = format!("{models}\n[[tap]]\nbackend = \"vllm-chat\"\n");
    let path = scenario(d.path(), &[case("dap-chat-tool")], &extra);
    let out = d.path().join("run");
    let o = std::process::Command::new(common::bin())
        .args([
            "run",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("DUO_TEST_DWS_KEY", key)
        .output()
        .unwrap();
    let printed = common::printed(&o);
    assert_eq!(o.status.code(), Some(0), "{printed}");
    assert!(!printed.contains(key));
    let r = &common::results(&out)[0];
    assert_eq!(
        r["session"]["served_model"]["identifier"],
        "custom_openai/mistral-7b-instruct"
    );
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
        assert!(
            !text.contains(key),
            "{} holds the model key",
            e.path().display()
        );
    }
}

/// A Duo Workflow Service behind TLS (`DUO_WORKFLOW_TLS__*`): `dws = "https://…"`, its private
/// CA in `ca_bundle`. Here a `duo-harness stack` process's DWS behind a TLS front.
#[test]
fn sessions_reach_a_dws_behind_tls() {
    let (_stack, urls) = common::start_stack();
    let front = common::tls::front(urls["dws"].as_str().unwrap());
    let d = tempfile::tempdir().unwrap();
    let ca = d.path().join("ca.pem");
    std::fs::write(&ca, &front.ca_pem).unwrap();
    let path = scenario(d.path(), &[case("dap-chat-tool")], MODELS);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "auth = \"bypass\"",
        &format!(
            "auth = \"bypass\"\ndws = \"{}\"\nca_bundle = {:?}",
            front.url,
            ca.to_str().unwrap()
        ),
    );
    std::fs::write(&path, text).unwrap();
    let out = d.path().join("run");
    let (code, printed) = run(&path, &out);
    assert_eq!(code, 0, "{printed}");
    let r = &common::results(&out)[0];
    assert_like_capture(r, "chat_tool");
    let pre = common::json_file(&out.join("preflight.json"));
    let stage = pre["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "dws")
        .unwrap();
    assert!(
        stage["detail"].as_str().unwrap().contains("https://"),
        "{stage}"
    );

    // Without the CA the certificate is refused: every session a connect error, named.
    let path2 = d.path().join("noca.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&format!("ca_bundle = {:?}", ca.to_str().unwrap()), "");
    std::fs::write(&path2, text).unwrap();
    let out = d.path().join("noca");
    let (code, printed) = run(&path2, &out);
    assert_ne!(code, 0, "{printed}");
}

/// The gate over sessions: a slower model shows in the session's time to first text and tool
/// round trip, not in its first action (the service's own start).
#[test]
fn compare_gates_the_agent_loop() {
    let d = tempfile::tempdir().unwrap();
    let lines = [case("dap-chat-text"), case("dap-chat-tool")];
    let load = format!("[load]\narrival = \"poisson\"\nrate = 10\nduration_s = 3\ngrace_s = 10\nseed = 7\nmax_send_lateness_ms = 1000\n{ROOMY_DWS}");
    let slow = "[[stack.backend]]\nname = \"vllm-chat\"\nmodels = [\"mistral-7b-instruct\"]\nttft_ms = 400\n";
    let mut folders = Vec::new();
    for (name, stack) in [("base", ""), ("slow", slow)] {
        let dir = d.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("run");
        let (code, printed) = run(
            &scenario(&dir, &lines, &format!("{MODELS}\n{load}\n{stack}")),
            &out,
        );
        assert!(code == 0 || code == 4, "{printed}");
        folders.push(out);
    }
    let (code, stdout, stderr) = common::run_cli(&[
        "compare",
        folders[0].to_str().unwrap(),
        folders[1].to_str().unwrap(),
    ]);
    let c = common::compare_file(&folders[1]);
    let outcome = |metric: &str| {
        c["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["feature"] == "duo_agent_platform_agentic_chat" && k["metric"] == metric)
            .unwrap_or_else(|| panic!("no {metric} check: {c}"))["outcome"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(code, 1, "{stdout}{stderr}");
    // TTFT waits on the self-audit (a busy machine can mark it degraded: inconclusive); it can
    // never read as fine.
    assert_ne!(outcome("ttft_p50"), "no_regression", "{c}");
    assert_eq!(outcome("tool_round_trip_p50"), "regression", "{c}");
    assert_ne!(outcome("first_action_p50"), "regression", "{c}");
    common::assert_schema("comparison-v1.schema.json", &c);
}

/// `x-gitlab-self-hosted-dap-billing-enabled: true` (kept from the capture's metadata): the
/// service asks `trackLlmCallForSelfHosted` before each model call, the executor answers, and
/// the session goes as the capture did.
#[test]
fn the_billing_header_brings_a_track_action_before_each_model_call() {
    let path = common::captures_dir().join("dws-samples/chat_tool_billing.grpc.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    let it = duo_harness::corpus::capture::session_case("chat_tool_billing", &text).unwrap();
    let line = serde_json::to_value(&it).unwrap();
    let headers = &line["request"]["headers"];
    assert_eq!(
        headers["x-gitlab-self-hosted-dap-billing-enabled"], "true",
        "{headers}"
    );
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let (code, printed) = run(&scenario(d.path(), &[line], MODELS), &out);
    assert_eq!(code, 0, "{printed}");
    let r = &common::results(&out)[0];
    assert_like_capture(r, "chat_tool_billing");
    let steps = r["session"]["steps"].as_array().unwrap();
    let tracks = steps
        .iter()
        .filter(|s| *s == "trackLlmCallForSelfHosted")
        .count();
    assert_eq!(tracks, 2, "{steps:?}");
}

/// `dws_generate_token`: as GitLab Rails does, the harness sends its instance token to
/// `GenerateToken` and runs sessions with the token it issues, which reaches no output. A
/// service that issues none fails each session, naming `GenerateToken`.
#[test]
fn sessions_can_run_on_a_token_generate_token_issued() {
    let d = tempfile::tempdir().unwrap();
    let key = common::repo().join("tests/fixtures/keys/throwaway-aigw.pem");
    let write = |name: &str, auth_on: bool| {
        let dir = d.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let extra = format!("{MODELS}\n[stack.dws]\nauth = {auth_on}\n");
        let path = scenario(&dir, &[case("dap-chat-text")], &extra);
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "auth = \"bypass\"",
            &format!(
                "auth = \"mint\"\nkey_file = {:?}\ndws_generate_token = true",
                key.to_str().unwrap()
            ),
        );
        std::fs::write(&path, text).unwrap();
        (path, dir.join("run"))
    };
    let (path, out) = write("issued", true);
    let (code, printed) = run(&path, &out);
    assert_eq!(code, 0, "{printed}");
    assert_like_capture(&common::results(&out)[0], "chat_text");
    assert!(!printed.contains("twin-dws-token-"));
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
        assert!(
            !text.contains("twin-dws-token-"),
            "{} holds the issued token",
            e.path().display()
        );
    }

    let (path, out) = write("none", false);
    let (code, printed) = run(&path, &out);
    assert_eq!(code, 1, "{printed}");
    let r = &common::results(&out)[0];
    assert_eq!(r["error"]["class"], "grpc_status", "{r}");
    let m = r["error"]["message"].as_str().unwrap();
    assert!(m.contains("GenerateToken") && m.contains("UNKNOWN"), "{m}");
}
