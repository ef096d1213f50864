//! Helpers shared by the integration tests (test tree only).
#![allow(dead_code)]

pub mod browser;
pub mod canary;
pub mod grpc;
pub mod hostile;
pub mod paced;
pub mod recorder;
pub mod stream_server;
pub mod tls;

use std::path::PathBuf;

/// The copied captures of a real AIGW and DWS, `fixtures/captures` (DUO_CAPTURES_DIR overrides).
pub fn captures_dir() -> PathBuf {
    std::env::var_os("DUO_CAPTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/captures"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_duo-harness"))
}

/// The first line a spawned child prints on stdout, as JSON (`record` and `stack` announce
/// their addresses that way).
pub fn first_json_line(child: &mut std::process::Child) -> serde_json::Value {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().expect("stdout is piped"))
        .read_line(&mut line)
        .unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"))
}

/// Everything a finished process printed, stdout then stderr.
pub fn printed(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs the real binary in the repository root; returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    run_cli_env(args, &[])
}

/// As [`run_cli`], with environment variables set (`Some`) or removed (`None`).
pub fn run_cli_env(args: &[&str], env: &[(&str, Option<&str>)]) -> (i32, String, String) {
    let mut c = std::process::Command::new(bin());
    c.args(args)
        .current_dir(repo())
        // The tests choose CI behaviour (no snapshot writes) themselves, whatever runs them.
        .env_remove("CI");
    for (k, v) in env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = c.output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A loopback port that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Parsed `NAME.response.raw`: status, headers (lowercase names) and the de-chunked body chunks.
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub chunks: Vec<Vec<u8>>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

pub fn parse_raw(bytes: &[u8]) -> RawResponse {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(": ")
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        })
        .collect();
    let mut rest = &bytes[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked");
    let mut chunks = Vec::new();
    if !chunked {
        chunks.push(rest.to_vec());
    } else {
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            chunks.push(rest[eol + 2..eol + 2 + size].to_vec());
            rest = &rest[(eol + 2 + size + 2).min(rest.len())..];
        }
    }
    RawResponse {
        status,
        headers,
        chunks,
    }
}

/// The AIGW route a capture was taken on, and the gateway mode it needs.
pub fn route_of(name: &str) -> (&'static str, Mode) {
    let mode = if name.starts_with("mockmode_") {
        Mode::Mock
    } else if name.starts_with("disable_streaming_") {
        Mode::NoStream
    } else {
        Mode::Normal
    };
    let n = name
        .trim_start_matches("mockmode_")
        .trim_start_matches("disable_streaming_");
    let route = match n {
        "err_prompt_unknown" => "/v1/prompts/does/not/exist",
        "err_upstream500_chat" => "/v2/chat/agent",
        "err_upstream500_generations" => "/v2/code/generations",
        "err_upstream500_prompts" => "/v1/prompts/chat/explain_code",
        "v1_code_user_access_token_bypass" => "/v1/code/user_access_token",
        _ if n.starts_with("v2_code_generations") => "/v2/code/generations",
        _ if n.starts_with("v2_code_completions") || n.starts_with("err_") => {
            "/v2/code/completions"
        }
        _ if n.starts_with("v3_") => "/v3/code/completions",
        _ if n.starts_with("v4_") => "/v4/code/suggestions",
        _ if n.starts_with("v2_chat_agent") => "/v2/chat/agent",
        _ if n.starts_with("v1_chat_agent") => "/v1/chat/agent",
        _ if n.starts_with("v1_prompts_explain_code") => "/v1/prompts/chat/explain_code",
        _ if n.starts_with("v2_prompts_explain_code") => "/v2/prompts/chat/explain_code",
        other => panic!("no route known for capture {other}"),
    };
    (route, mode)
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Mode {
    Normal,
    Mock,
    NoStream,
}

/// Reads one whole HTTP/1.1 request (head and Content-Length body) from `s`; `None` if the
/// peer closed first. Servers in tests read everything before answering: closing a socket with
/// unread bytes sends a reset, which could reach the client before the answer.
pub fn read_request(s: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = [0u8; 65536];
    let mut req = Vec::new();
    loop {
        if let Some(h) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&req[..h]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if req.len() >= h + 4 + len {
                return Some(req);
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
}

/// Asserts that `doc` is valid against `schemas/<name>`.
pub fn assert_schema(name: &str, doc: &serde_json::Value) {
    let text = std::fs::read_to_string(repo().join("schemas").join(name)).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}");
}

/// The findings a test can expect exactly: notes (`info`) and what the self-audit says about
/// this host's own timing and load (it varies from machine to machine) left out.
#[allow(dead_code)]
pub fn judged_findings(summary: &serde_json::Value) -> Vec<serde_json::Value> {
    summary["findings"]
        .as_array()
        .expect("findings is an array")
        .iter()
        .filter(|f| f["severity"] != "info")
        .filter(|f| {
            !matches!(
                f["kind"].as_str(),
                Some("degraded_figures" | "client_saturated")
            )
        })
        .cloned()
        .collect()
}

/// The message of the first finding of `kind` (panics, naming the findings, if there is none).
#[allow(dead_code)]
pub fn finding_message(summary: &serde_json::Value, kind: &str) -> String {
    summary["findings"]
        .as_array()
        .expect("findings is an array")
        .iter()
        .find(|f| f["kind"] == kind)
        .and_then(|f| f["message"].as_str())
        .unwrap_or_else(|| panic!("no {kind} finding in {}", summary["findings"]))
        .to_owned()
}

/// A JSON file, parsed.
#[allow(dead_code)]
pub fn json_file(p: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// What `compare BASELINE CURRENT` wrote into CURRENT: its own `compare-<baseline run id>.json`
/// (the run's `comparison.json` stays the run's).
#[allow(dead_code)]
pub fn compare_file(current: &std::path::Path) -> serde_json::Value {
    let found: Vec<std::path::PathBuf> = std::fs::read_dir(current)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("compare-")
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one compare-*.json in {}: {found:?}",
        current.display()
    );
    json_file(&found[0])
}

/// A run folder's `results.ndjson`, one value per line.
#[allow(dead_code)]
pub fn results(out: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("results.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Whole lines in a results file so far (0 before it exists).
#[allow(dead_code)]
pub fn results_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.matches('\n').count())
}

/// A `duo-harness stack` process (the twin AIGW and backends standing in for a site's own),
/// killed when dropped.
pub struct Stack(pub std::process::Child);

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `duo-harness stack`; returns it and the URLs it printed.
#[allow(dead_code)]
pub fn start_stack() -> (Stack, serde_json::Value) {
    start_stack_with(None)
}

/// `duo-harness stack [--config CONFIG]` as a child process, and the URLs it printed.
#[allow(dead_code)]
pub fn start_stack_with(config: Option<&std::path::Path>) -> (Stack, serde_json::Value) {
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("stack");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let urls = first_json_line(&mut child);
    (Stack(child), urls)
}

/// Sends `sig` to a child process this test spawned.
pub fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: kill sends a signal to the child we spawned.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// Starts `duo-harness run SCENARIO --out OUT`, waits until its results file exists and the
/// load has gone on for `settle`, then sends `sig` `times` times (50 ms apart). Returns the exit
/// code and how long the run took to end after the first signal.
pub fn run_then_signal(
    scenario: &str,
    out: &std::path::Path,
    sig: libc::c_int,
    times: usize,
    settle: std::time::Duration,
) -> (Option<i32>, std::time::Duration) {
    use std::time::{Duration, Instant};
    let mut child = std::process::Command::new(bin())
        .args(["run", scenario, "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Lines appear as requests end (perhaps none before the stop): wait for the results file.
    for _ in 0..400 {
        if out.join("results.ndjson").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    std::thread::sleep(settle);
    let stopped = Instant::now();
    for i in 0..times {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        signal(&child, sig);
    }
    let status = child.wait().unwrap();
    (status.code(), stopped.elapsed())
}

/// `scenarios/quickstart.toml` with its `corpus = …` line replaced by `corpus = <corpus>`
/// (given as TOML: a quoted path, or a list), the rest unchanged.
pub fn quickstart_with_corpus(corpus: &str) -> String {
    let text = std::fs::read_to_string(repo().join("scenarios/quickstart.toml")).unwrap();
    text.lines()
        .map(|l| match l.starts_with("corpus = ") {
            true => format!("corpus = {corpus}"),
            false => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The quickstart over `corpus` with its twin backends given by URL (`base` maps a backend's
/// name to its OpenAI base), its open-loop schedule loose enough for a busy test machine.
#[allow(dead_code)]
pub fn quickstart_on_backends(corpus: &std::path::Path, base: impl Fn(&str) -> String) -> String {
    let text = quickstart_with_corpus(&format!("{:?}", corpus.to_str().unwrap()))
        .replace("twin:vllm-code", &base("vllm-code"))
        .replace("twin:vllm-chat", &base("vllm-chat"));
    format!("{text}\n[load]\nmax_send_lateness_ms = 1000\n")
}

/// Serves each connection accepted on a fresh loopback port with `serve`, on a thread and a
/// current-thread runtime of its own; returns the port's address (`127.0.0.1:PORT`).
pub fn serve_on_thread<F, Fut>(serve: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((socket, _)) = listener.accept().await {
                tokio::task::spawn_local(serve(socket));
            }
        });
    });
    addr
}

/// What a tap saw: (tap index, arrival, the upstream call).
pub type TapCalls = tokio::sync::mpsc::UnboundedReceiver<(
    usize,
    std::time::Instant,
    duo_harness::record::proxy::Capture,
)>;

/// A tap in front of the twin backend `name` at `base` (its root URL), and the calls it sees.
pub async fn tap_in_front_of(name: &str, base: &str) -> (duo_harness::taps::RunningTap, TapCalls) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let spec = duo_harness::plan::TapSpec {
        name: None,
        backend: Some(name.into()),
        upstream: None,
        listen: None,
        advertise: None,
    };
    let tap = duo_harness::taps::start(&spec, 0, base, reqwest::Client::new(), tx)
        .await
        .unwrap();
    (tap, rx)
}
