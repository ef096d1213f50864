//! Scenario v1 (TOML, unknown keys rejected) plus command-line overrides, resolved once into an
//! immutable [`Plan`] that is written into every run folder as `plan.json`.
//!
//! In: a scenario file and [`Overrides`]. Out: a [`Plan`], or a [`PlanError`] naming the file,
//! line and key at fault.

pub mod check;
mod conformance;
mod developers;
mod env;
mod load;
mod paths;
mod rate;
mod remap;
mod slice;
use paths::Paths;
pub use remap::Remap;
pub use slice::{parse_start_at, Slice, SliceOf, MAX_SLICES};

mod capacity;
mod output;
pub use output::Output;
mod gate;
mod target;
pub use capacity::{CapacitySpec, MetricsSpec, Strategy};
pub use conformance::{ConformanceSpec, ContentPolicy, FeaturePolicy, Margins};
pub use developers::{DevelopersSpec, GITLAB_THINK_S, MAX_USERS};
mod document;
use document::corpus_digest;
pub use document::{PlanDocument, Resolved, PLAN_SCHEMA};
pub use gate::{parse_threshold, GateMetric, GateSpec, Threshold};
pub use load::{CapPolicy, LoadOverrides, LoadSpec, PreflightPolicy, Slo, Step};
pub use rate::{Arrival, RateProfile, Segment};

/// `[slo.default]`: the objective of every feature the scenario gives none of its own (chat
/// sub-features take General Chat's first).
pub const DEFAULT_SLO: &str = "default";
pub use target::{AuthKind, Target};

use crate::twin::StackConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The scenario file as written.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name used in run ids and reports.
    pub name: String,
    /// Corpus file, relative to the scenario file; or a list of them, read as one corpus (the
    /// quickstart adds its Agent Platform sessions so).
    pub corpus: CorpusFiles,
    /// Features to replay; empty means every feature in the corpus.
    #[serde(default)]
    pub features: Vec<String>,
    /// Per-request time limit, seconds.
    #[serde(default = "default_timeout")]
    pub request_timeout_s: f64,
    pub target: Target,
    #[serde(default)]
    pub output: Output,
    /// GitLab's "feature settings": the self-hosted model each feature uses, injected into every
    /// request of that feature (`model_metadata`, or the flat `model_*` fields on `/v2/code/*`).
    /// Chat sub-features without an entry use `duo_chat`'s.
    #[serde(default)]
    pub models: BTreeMap<String, ModelSetting>,
    /// The embedded twin stack, when the target is `embedded` or `embedded:<backend>`.
    #[serde(default)]
    pub stack: Option<StackConfig>,
    /// How requests are sent (arrival process, bounds, concurrency, self-audit).
    #[serde(default)]
    pub load: LoadSpec,
    /// Latency objectives per feature (for goodput).
    #[serde(default)]
    pub slo: BTreeMap<String, Slo>,
    /// Taps: recording proxies in front of model backends, for where the time goes.
    #[serde(default, rename = "tap")]
    pub taps: Vec<TapSpec>,
    /// What must serve each feature (checked through the taps).
    #[serde(default)]
    pub routing: Routing,
    /// Snapshots and content policy.
    #[serde(default)]
    pub conformance: ConformanceSpec,
    /// The servers' tokenizers (`tokenizer.json`, relative to this file), per feature or
    /// `default`: they count output tokens when an answer carries no `usage`.
    #[serde(default)]
    pub tokenizers: BTreeMap<String, PathBuf>,
    /// The regression gate: baseline run and thresholds.
    #[serde(default)]
    pub gate: GateSpec,
    /// How `capacity` searches for the highest compliant rate.
    #[serde(default)]
    pub capacity: CapacitySpec,
    /// Backends' metrics read during the run.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// Recorded model endpoints moved to this stack: `"<recorded endpoint>" = "<URL>"` or
    /// `"twin:<backend>"` (see `plan::remap`).
    #[serde(default)]
    pub remap: BTreeMap<String, String>,
}

/// The scenario's routing expectations.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Every feature that answers must have reached a tapped (self-hosted) backend; one that
    /// answered without is a hybrid leak.
    #[serde(default)]
    pub fully_self_hosted: bool,
    /// Per feature. Chat sub-features without an entry must follow `duo_chat`'s (GitLab's
    /// fallback to General Chat's model).
    #[serde(default)]
    pub features: BTreeMap<String, Expect>,
}

impl Routing {
    pub fn is_set(&self) -> bool {
        self.fully_self_hosted || !self.features.is_empty()
    }
}

/// What must serve one feature.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The tap (backend) its upstream calls must reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The `model` its upstream calls must name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The feature must not answer at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// A tap in front of one model backend. Model endpoints that point at it are routed through
/// the tap; each upstream call is recorded (`taps.ndjson`) and tied to the request that caused
/// it by a nonce the harness plants in the request's content.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TapSpec {
    /// The name routing expectations and the summary use; default: the backend's name, or the
    /// upstream URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A backend of the embedded stack (`twin:<backend>` endpoints go through the tap)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// ...or a real backend's base URL: model endpoints starting with it go through the tap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Where the tap listens (default `127.0.0.1:0`: this host's loopback, a free port). A
    /// gateway in another container or pod needs an address it can reach, e.g. `0.0.0.0:9101`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// The base URL the gateway must use for the tap (`http://harness.ci:9101`), when it is not
    /// the listening address itself (a wildcard or a NATed one). Empty: not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
}

impl TapSpec {
    /// The name the summary and routing use: its own, the backend's, or the upstream URL.
    pub fn name(&self) -> &str {
        self.name
            .as_deref()
            .or(self.backend.as_deref())
            .or(self.upstream.as_deref())
            .unwrap_or_default()
    }
}

fn default_timeout() -> f64 {
    120.0
}

/// One feature's self-hosted model (PROTOCOL.md §4.1).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSetting {
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Model family (`mistral`, `codestral`, `llama3`...).
    pub name: String,
    /// OpenAI base URL, or `twin:<backend>` for a backend of the embedded stack.
    pub endpoint: String,
    /// `provider/model` (the part after the first `/` is the upstream model id).
    pub identifier: String,
    /// Environment variable holding the model API key (never written anywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
}

fn default_provider() -> String {
    "custom_openai".into()
}

/// One corpus file, or several read as one.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum CorpusFiles {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl CorpusFiles {
    fn files(&self) -> Vec<PathBuf> {
        match self {
            Self::One(p) => vec![p.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// Command-line overrides of `run`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Overrides {
    pub target: Option<String>,
    pub corpus: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub load: LoadOverrides,
    /// `--calibrate`: measure the noise floor instead of checking.
    pub calibrate: bool,
    /// `--first-run`: nothing to compare with yet. Stages that need a reference (the gate,
    /// conformance without reviewed snapshots) are not run and do not fail the run, and a
    /// passing run is stored as `[gate] baseline`.
    #[serde(default)]
    pub first_run: bool,
    /// `--remap OLD=NEW` (repeatable): over the scenario's `[remap]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remap: Vec<String>,
}

/// Why a plan could not be made (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The resolved, immutable run plan.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Plan {
    pub schema: String,
    pub harness_version: String,
    pub scenario_name: String,
    pub scenario_path: PathBuf,
    pub corpus_path: PathBuf,
    /// Further corpus files read after `corpus_path`, as one corpus.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_corpora: Vec<PathBuf>,
    /// SHA-256 of the corpus files' bytes, in order (`None`: unreadable; the run then stops on
    /// it): what the gate holds two runs to, whatever the files are called.
    pub corpus_sha256: Option<String>,
    /// `None` for the embedded stack (its URL is known once it runs).
    pub target_url: Option<String>,
    /// `embedded:<backend>`: the twin backend requests go to directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedded_backend: Option<String>,
    pub target: Target,
    pub features: Vec<String>,
    pub request_timeout_s: f64,
    pub output: Output,
    pub models: BTreeMap<String, ModelSetting>,
    pub stack: Option<StackConfig>,
    /// The load, with overrides applied and the seed drawn.
    pub load: LoadSpec,
    pub slo: BTreeMap<String, Slo>,
    pub taps: Vec<TapSpec>,
    pub routing: Routing,
    /// Snapshot folder resolved against the scenario's folder.
    pub conformance: ConformanceSpec,
    /// Tokenizer files per feature (or `default`), resolved against the scenario's folder.
    pub tokenizers: BTreeMap<String, PathBuf>,
    /// The regression gate, its baseline resolved against the scenario's folder.
    pub gate: GateSpec,
    pub capacity: CapacitySpec,
    pub metrics: MetricsSpec,
    /// Recorded model endpoints and where they go now (`[remap]`, then `--remap`).
    #[serde(default, skip_serializing_if = "Remap::is_empty")]
    pub remap: Remap,
    /// Which slice of the schedule this process sends (`--slice`, `--start-at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<Slice>,
    /// `<UTC start>-<scenario name>` (a slice: `<instant zero>-<name>-slice-K-of-N`).
    pub run_id: String,
    /// The run folder; `--out` sets it exactly, otherwise `<output.dir>/<run id>`.
    pub run_dir: PathBuf,
    pub overrides: Overrides,
}

impl Plan {
    pub fn embedded(&self) -> bool {
        self.target_url.is_none()
    }

    /// Whether the run needs twin backends: the embedded target, or an external one whose model
    /// settings name `twin:<backend>` endpoints or whose taps front a twin backend (a real
    /// gateway tested with GPU-free backends).
    pub fn needs_twin(&self) -> bool {
        self.embedded()
            || self.target.dws.as_deref() == Some("embedded")
            || self
                .models
                .values()
                .any(|m| m.endpoint.starts_with("twin:"))
            || self.remap.twins().next().is_some()
            || self.taps.iter().any(|t| t.backend.is_some())
    }

    /// The corpus's name in the snapshot store (`<dir>/<corpus>/…`): its first file's stem.
    pub fn corpus_name(&self) -> String {
        let stem = self.corpus_path.file_stem().unwrap_or_default();
        stem.to_string_lossy().into_owned()
    }

    /// The setting for `feature`, falling back to General Chat's for chat sub-features.
    pub fn model_for(&self, feature: &str) -> Option<&ModelSetting> {
        self.models
            .get(feature)
            .or_else(|| self.models.get(crate::features::fallback(feature)?))
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// Reads a scenario, applies overrides and resolves everything that can be resolved up front,
/// one section at a time, each checked once. `started` (a UTC timestamp) and the scenario name
/// make the run id.
pub fn resolve(path: &Path, overrides: Overrides, started: &str) -> Result<Plan, PlanError> {
    let (sc, raw) = read_scenario(path)?;
    let at = |m: String| invalid(path, m);
    let base = path.parent().unwrap_or(Path::new("."));
    let paths = Paths::new(base, &raw);
    let (corpus_path, more_corpora) = corpora(&sc, &overrides, &paths).map_err(at)?;
    let (target_url, embedded_backend) = target_url(&sc, &overrides).map_err(at)?;
    check_dws(&sc).map_err(at)?;
    check_features(&sc).map_err(at)?;
    check::taps(&sc).map_err(at)?;
    let conformance = conformance(&sc, &paths).map_err(at)?;
    sc.capacity.check().map_err(at)?;
    sc.metrics.check().map_err(at)?;
    let gate = gate::resolve(&sc, &paths).map_err(at)?;
    let load = load(&sc, &overrides, &conformance).map_err(at)?;
    check::scenario(&sc).map_err(at)?;
    let target = target(&sc, &paths, target_url.is_none()).map_err(at)?;
    let remap = Remap::resolve(&sc.remap, &overrides.remap).map_err(at)?;
    let run_id = format!("{started}-{}", sc.name);
    let run_dir = overrides
        .out
        .clone()
        .unwrap_or_else(|| sc.output.dir.join(&run_id));
    Plan {
        schema: PLAN_SCHEMA.into(),
        harness_version: env!("CARGO_PKG_VERSION").into(),
        scenario_name: sc.name,
        scenario_path: path.into(),
        corpus_sha256: corpus_digest(std::iter::once(&corpus_path).chain(&more_corpora)),
        corpus_path,
        more_corpora,
        target_url,
        target,
        features: sc.features,
        request_timeout_s: sc.request_timeout_s,
        output: sc.output.clone(),
        models: sc.models,
        stack: sc.stack.map(|mut s| {
            s.resolve_paths(base);
            s
        }),
        load,
        // A calibration is one request at a time: its latency is no SLO's business.
        slo: if overrides.calibrate {
            BTreeMap::new()
        } else {
            sc.slo
        },
        taps: sc.taps,
        routing: sc.routing,
        conformance,
        tokenizers: sc
            .tokenizers
            .iter()
            .map(|(k, p)| (k.clone(), base.join(p)))
            .collect(),
        gate,
        capacity: sc.capacity,
        metrics: sc.metrics,
        remap,
        embedded_backend,
        slice: None,
        run_id,
        run_dir,
        overrides,
    }
    .sliced(&sc.output.dir)
    .map_err(at)
}

/// The scenario file, its `${VAR}`s expanded, parsed; and as written (empty where the text
/// is no TOML before expansion), to tell the paths the environment gave.
fn read_scenario(path: &Path) -> Result<(Scenario, toml::Table), PlanError> {
    let raw = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
        path: path.into(),
        source,
    })?;
    let text = env::expand(&raw).map_err(|m| invalid(path, m))?;
    let sc =
        toml::from_str(&text).map_err(|e| invalid(path, e.to_string().trim_end().to_owned()))?;
    Ok((sc, toml::from_str(&raw).unwrap_or_default()))
}

/// `corpus` (or `--corpus`): the first file, and the others read after it as one corpus.
fn corpora(
    sc: &Scenario,
    overrides: &Overrides,
    paths: &Paths,
) -> Result<(PathBuf, Vec<PathBuf>), String> {
    let listed = matches!(sc.corpus, CorpusFiles::Many(_));
    let mut corpora: Vec<PathBuf> = match &overrides.corpus {
        Some(c) => vec![c.clone()],
        None => (sc.corpus.files().iter().enumerate())
            .map(|(i, f)| paths.resolve(&["corpus"], listed.then_some(i), f))
            .collect(),
    };
    if corpora.is_empty() {
        return Err("corpus: the list names no file".into());
    }
    let first = corpora.remove(0);
    Ok((first, corpora))
}

/// `target.url` (or `--target`): an http(s) base URL, or `None` for the embedded stack (with
/// the twin backend of `embedded:<backend>`).
fn target_url(
    sc: &Scenario,
    overrides: &Overrides,
) -> Result<(Option<String>, Option<String>), String> {
    let url = overrides.target.as_deref().unwrap_or(&sc.target.url);
    let embedded_backend = url.strip_prefix("embedded:").map(str::to_owned);
    let target_url = match url {
        "embedded" => None,
        _ if embedded_backend.is_some() => None,
        u if u.starts_with("http://") || u.starts_with("https://") => {
            check::url("target.url", u)?;
            Some(u.trim_end_matches('/').to_owned())
        }
        u => {
            return Err(format!(
                "target.url: '{u}' is neither 'embedded' nor an http(s) URL"
            ))
        }
    };
    Ok((target_url, embedded_backend))
}

/// `target.dws`: `embedded`, or an http(s) URL whose certificates are checked.
fn check_dws(sc: &Scenario) -> Result<(), String> {
    match sc.target.dws.as_deref() {
        None | Some("embedded") => Ok(()),
        Some(u) if u.starts_with("https://") && sc.target.danger_accept_invalid_certs => {
            Err(format!("target.dws: '{u}': certificate checks cannot be turned off for the DWS; give its CA in target.ca_bundle"))
        }
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            Ok(check::url("target.dws", u)?)
        }
        Some(u) => Err(format!(
            "target.dws: '{u}' is neither 'embedded' nor an http(s):// URL"
        )),
    }
}

/// Every feature a section names is a Duo feature.
fn check_features(sc: &Scenario) -> Result<(), String> {
    let named = sc
        .features
        .iter()
        .chain(sc.models.keys())
        .chain(sc.slo.keys().filter(|k| *k != crate::plan::DEFAULT_SLO))
        .chain(sc.routing.features.keys())
        .chain(sc.tokenizers.keys().filter(|k| *k != "default"));
    match named
        .into_iter()
        .find(|f| crate::features::lookup(f).is_none())
    {
        Some(f) => Err(format!(
            "unknown Duo feature '{f}' (in 'features', 'models', 'slo', 'routing' or 'tokenizers')"
        )),
        None => Ok(()),
    }
}

/// `[conformance]`, its snapshot folder resolved against the scenario's folder.
fn conformance(sc: &Scenario, paths: &Paths) -> Result<ConformanceSpec, String> {
    let mut conformance = sc.conformance.clone();
    let folder = |d: PathBuf| paths.resolve(&["conformance", "snapshots"], None, &d);
    conformance.snapshots = conformance.snapshots.map(folder);
    conformance
        .mask_rules()
        .map_err(|m| format!("conformance.masks: {m}"))?;
    match conformance
        .features
        .keys()
        .find(|f| crate::features::lookup(f).is_none())
    {
        Some(f) => Err(format!("conformance.features: unknown Duo feature '{f}'")),
        None => Ok(conformance),
    }
}

/// `[load]` with the command line's overrides; a calibration's own load.
fn load(
    sc: &Scenario,
    overrides: &Overrides,
    conformance: &ConformanceSpec,
) -> Result<LoadSpec, String> {
    let mut load = sc.load.clone();
    if let Some(t) = &overrides.load.start_at {
        // Slices must draw one schedule: without a seed of their own, they share the instant's.
        load.seed.get_or_insert_with(|| slice::shared_seed(t));
    }
    load.apply(&overrides.load);
    if overrides.calibrate {
        if conformance.snapshots.is_none() {
            return Err("--calibrate needs [conformance] snapshots = \"<folder>\"".into());
        }
        // Four answers per case, one at a time (every case in turn, four times over): two
        // baseline pairs per case, so the noise floor sees more of ordinary variation's tail.
        load = LoadSpec {
            seed: load.seed,
            ..LoadSpec::default()
        };
        load.calibration_passes = 4;
        load.warmup_s = 0.0;
    }
    load.check()?;
    Ok(load)
}

/// `[target]`: its auth complete, its files resolved against the scenario's folder (or, given
/// by the environment, the working directory).
fn target(sc: &Scenario, paths: &Paths, embedded: bool) -> Result<Target, String> {
    let mut target = sc.target.clone();
    match target.auth {
        AuthKind::Bearer if target.token_env.is_none() => {
            return Err("target.auth = 'bearer' needs target.token_env".into())
        }
        AuthKind::Mint => {
            let key = target
                .key_file
                .as_ref()
                .ok_or("target.auth = 'mint' needs target.key_file")?;
            target.key_file = Some(paths.resolve(&["target", "key_file"], None, key));
        }
        _ => {}
    }
    // An empty path (`${VAR:-}` left unset) is no path.
    target.ca_bundle = target
        .ca_bundle
        .filter(|c| !c.as_os_str().is_empty())
        .map(|c| paths.resolve(&["target", "ca_bundle"], None, &c));
    // Minted tokens may be for an external DWS beside the embedded gateway (which ignores them).
    let external_dws = sc.target.dws.as_deref().is_some_and(|d| d != "embedded");
    let for_dws = external_dws && sc.target.auth == AuthKind::Mint;
    if embedded && sc.stack.is_none() && sc.target.auth != AuthKind::Bypass && !for_dws {
        return Err(
            "the default embedded stack runs with auth bypassed: use target.auth = 'bypass'".into(),
        );
    }
    Ok(target)
}

#[cfg(test)]
mod tests;
