//! The embedded twin stack: a stream-faithful twin AIGW ([`aigw`]) in front of twin vLLM
//! backends ([`vllm`]), all on loopback. In: a [`StackConfig`] (TOML). Out: running servers and
//! their URLs ([`StackUrls`], printed as one JSON line by `duo-harness stack`).

pub mod aigw;
pub mod check;
pub mod dws;
pub mod pyjson;
pub mod vllm;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use tokio::task::JoinHandle;

/// The whole twin stack.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    #[serde(default)]
    pub aigw: aigw::AigwConfig,
    /// The model backends. Default: `vllm-code` (serving `codestral-22b`) and `vllm-chat`
    /// (serving `mistral-7b-instruct`).
    #[serde(default = "default_backends", rename = "backend")]
    pub backends: Vec<vllm::BackendConfig>,
    /// The twin Duo Workflow Service (Agent Platform, gRPC).
    #[serde(default)]
    pub dws: dws::DwsConfig,
    /// The address every server of the stack listens on and is named by: loopback by default;
    /// an address of this host where a real AIGW elsewhere must reach the twin backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<std::net::IpAddr>,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            aigw: aigw::AigwConfig::default(),
            backends: default_backends(),
            dws: dws::DwsConfig::default(),
            host: None,
        }
    }
}

fn default_backends() -> Vec<vllm::BackendConfig> {
    vec![
        vllm::BackendConfig::new("vllm-code", &["codestral-22b"]),
        vllm::BackendConfig::new("vllm-chat", &["mistral-7b-instruct"]),
    ]
}

/// Errors starting the stack.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot read stack config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid stack config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid stack config: {0}")]
    Invalid(String),
    #[error("cannot listen for twin {what} on {addr}: {source}")]
    Bind {
        what: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the twin stack: {0}")]
    Start(String),
}

/// `host:port` as the stack binds it (loopback when no host is set); port 0 is "any".
fn address(host: Option<std::net::IpAddr>, port: u16) -> String {
    let host = host.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    std::net::SocketAddr::new(host, port).to_string()
}

impl StackConfig {
    /// Reads a stack config file (TOML; unknown keys rejected).
    pub fn load(path: &Path) -> Result<Self, StackError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| StackError::Read {
            path: p.clone(),
            source,
        })?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| StackError::Parse {
            path: p,
            message: e.to_string(),
        })?;
        cfg.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        cfg.validate()?;
        Ok(cfg)
    }

    /// Makes every path of the config (auth keys) relative to `base`, the folder of the file
    /// that names it.
    pub fn resolve_paths(&mut self, base: &Path) {
        let auth = &mut self.aigw.auth;
        for k in auth.public_keys.iter_mut() {
            *k = base.join(&*k);
        }
        if let Some(k) = auth.signing_key.as_mut() {
            *k = base.join(&*k);
        }
    }

    /// Checks what serde cannot, as a scenario's `[stack]` is checked: unique backend names,
    /// one server per port, sane timing and engine settings.
    pub fn validate(&self) -> Result<(), StackError> {
        self.unique_ports()?;
        check::numbers(self).map_err(StackError::Invalid)?;
        let mut names = std::collections::HashSet::new();
        for b in &self.backends {
            if !names.insert(&b.name) {
                return Err(StackError::Invalid(format!(
                    "backend name '{}' is used twice",
                    b.name
                )));
            }
            if b.models.is_empty() {
                return Err(StackError::Invalid(format!(
                    "backend '{}' serves no model",
                    b.name
                )));
            }
            let timing = |v: f64| v.is_finite() && (0.0..=600_000.0).contains(&v);
            if !(timing(b.ttft_ms) && timing(b.itl_ms) && (0.0..=1.0).contains(&b.variation)) {
                return Err(StackError::Invalid(format!(
                    "backend '{}': ttft_ms and itl_ms must be finite, within 0..600000, and \
                     variation within 0..1",
                    b.name
                )));
            }
        }
        Ok(())
    }
}

impl StackConfig {
    /// Two servers of the stack given one port cannot both listen: said before anything starts.
    fn unique_ports(&self) -> Result<(), StackError> {
        let mut taken: BTreeMap<u16, String> = BTreeMap::new();
        let servers = [
            ("aigw".to_owned(), self.aigw.port),
            ("dws".to_owned(), self.dws.port),
        ]
        .into_iter()
        .chain(
            self.backends
                .iter()
                .map(|b| (format!("backend '{}'", b.name), b.port)),
        );
        for (what, port) in servers.filter(|(_, p)| *p != 0) {
            if let Some(first) = taken.insert(port, what.clone()) {
                return Err(StackError::Invalid(format!(
                    "port {port} is given to both {first} and {what}: each server of the \
                     stack needs its own (or 0, any free port)"
                )));
            }
        }
        Ok(())
    }
}

/// A server task on loopback; aborted when dropped.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// A server already listening on `addr`, served by `task`.
    pub fn from_task(addr: SocketAddr, task: JoinHandle<()>) -> Self {
        Self { addr, task }
    }
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `host` (127.0.0.1 when unset):`port` and serves `router` on it.
pub async fn serve_router(
    router: Router,
    host: Option<std::net::IpAddr>,
    port: u16,
) -> std::io::Result<RunningServer> {
    use axum::serve::ListenerExt;
    let host = host.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let listener = tokio::net::TcpListener::bind((host, port)).await?;
    let addr = listener.local_addr()?;
    // Stream chunks leave as they are written (no Nagle delay behind an unacknowledged one).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("twin server on {addr} stopped: {e}");
        }
    });
    Ok(RunningServer { addr, task })
}

/// A JSON error body with a status.
pub fn json_error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// URLs of a running stack, as `duo-harness stack` prints them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct StackUrls {
    /// Base URL of the twin AIGW.
    pub aigw: String,
    /// URL of the twin DWS (gRPC, plaintext HTTP/2).
    pub dws: String,
    /// Per backend: base URL, OpenAI base (`…/v1`, what `model_endpoint` takes) and models.
    pub backends: BTreeMap<String, BackendUrls>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct BackendUrls {
    pub url: String,
    pub openai_base: String,
    pub models: Vec<String>,
}

/// The running stack; everything stops when it is dropped.
#[derive(Debug)]
pub struct RunningStack {
    pub aigw: RunningServer,
    pub dws: RunningServer,
    pub backends: Vec<(vllm::BackendConfig, RunningServer)>,
}

impl RunningStack {
    pub fn urls(&self) -> StackUrls {
        let backends = self
            .backends
            .iter()
            .map(|(cfg, s)| {
                let urls = BackendUrls {
                    url: s.url(),
                    openai_base: format!("{}/v1", s.url()),
                    models: cfg.models.clone(),
                };
                (cfg.name.clone(), urls)
            })
            .collect();
        StackUrls {
            aigw: self.aigw.url(),
            dws: self.dws.url(),
            backends,
        }
    }
}

/// A stack running on its own tokio runtime (threads named `twin-*`), so that a harness in the
/// same process keeps its own workers to itself and can meter its CPU apart from the twin's.
pub struct IsolatedStack {
    stack: Option<RunningStack>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl IsolatedStack {
    /// Starts `cfg` on a new runtime of `threads` workers.
    pub async fn start(cfg: &StackConfig, threads: usize) -> Result<Self, StackError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("twin-worker")
            .enable_all()
            .build()
            .map_err(|e| StackError::Start(format!("its runtime: {e}")))?;
        let cfg = cfg.clone();
        let started = runtime.spawn(async move { start(&cfg).await }).await;
        let failure = match started {
            Ok(Ok(stack)) => {
                return Ok(Self {
                    stack: Some(stack),
                    runtime: Some(runtime),
                })
            }
            Ok(Err(e)) => e,
            Err(join) => StackError::Start(join.to_string()),
        };
        // A runtime may not be dropped on an async thread: it is let go instead.
        runtime.shutdown_background();
        Err(failure)
    }

    pub fn urls(&self) -> StackUrls {
        self.stack.as_ref().expect("running until dropped").urls()
    }
}

impl Drop for IsolatedStack {
    fn drop(&mut self) {
        drop(self.stack.take());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Starts every backend, then the AIGW.
pub async fn start(cfg: &StackConfig) -> Result<RunningStack, StackError> {
    cfg.validate()?;
    let mut backends = Vec::new();
    for b in &cfg.backends {
        let mut b = b.clone();
        b.host = cfg.host;
        let server = vllm::serve(b.clone())
            .await
            .map_err(|source| StackError::Bind {
                what: format!("backend '{}'", b.name),
                addr: address(cfg.host, b.port),
                source,
            })?;
        backends.push((b.clone(), server));
    }
    let mut aigw_cfg = cfg.aigw.clone();
    aigw_cfg.host = cfg.host;
    for target in aigw_cfg.misroute.values_mut() {
        if let Some(name) = target.strip_prefix("twin:") {
            let (_, server) = backends
                .iter()
                .find(|(b, _)| b.name == name)
                .ok_or_else(|| {
                    StackError::Invalid(format!("aigw.misroute: no backend named '{name}'"))
                })?;
            *target = format!("{}/v1", server.url());
        }
    }
    let aigw = aigw::serve(aigw_cfg).await.map_err(|e| match e {
        aigw::ServeError::Io(source) => StackError::Bind {
            what: "AIGW".into(),
            addr: address(cfg.host, cfg.aigw.port),
            source,
        },
        aigw::ServeError::Config(m) => StackError::Invalid(m),
    })?;
    let mut dws_cfg = cfg.dws.clone();
    dws_cfg.host = cfg.host;
    let dws = dws::serve(dws_cfg)
        .await
        .map_err(|source| StackError::Bind {
            what: "DWS".into(),
            addr: address(cfg.host, cfg.dws.port),
            source,
        })?;
    Ok(RunningStack {
        aigw,
        dws,
        backends,
    })
}
