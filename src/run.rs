//! The `run` command: plan → corpus → (embedded stack) → preflight → sequential replay →
//! `results.ndjson` (flushed per request) → `summary.json` → table and exit code. Ctrl-C stops
//! sending and still writes the summary of what was measured.

use crate::corpus::{self, CorpusError, Interaction};
use crate::drive::{self, DriveError, ResolvedModel};
use crate::exit::Exit;
use crate::measure::ResultsSink;
use crate::plan::{self, Overrides, Plan, PlanError};
use crate::summary::{self, RunInfo};
use crate::twin::{self, StackError, StackUrls};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error(transparent)]
    Drive(#[from] DriveError),
    #[error("{0}")]
    Config(String),
    #[error("embedded stack: {0}")]
    Stack(#[from] StackError),
    #[error("target {url} did not answer: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RunError {
    pub fn exit(&self) -> Exit {
        match self {
            Self::Plan(_) | Self::Corpus(_) | Self::Drive(_) | Self::Config(_) => Exit::Usage,
            Self::Stack(StackError::Invalid(_) | StackError::Parse { .. }) => Exit::Usage,
            Self::Stack(_) | Self::Unreachable { .. } | Self::Write { .. } => Exit::Unreachable,
        }
    }
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Write {
        path: path.into(),
        source,
    }
}

/// Resolves every feature's model setting (endpoints `twin:<backend>` need the embedded stack).
fn resolve_models(
    plan: &Plan,
    urls: Option<&StackUrls>,
    features: &[String],
) -> Result<Vec<(String, ResolvedModel)>, RunError> {
    let mut out = Vec::new();
    for f in features {
        let Some(setting) = plan.model_for(f) else {
            continue;
        };
        let endpoint = match setting.endpoint.strip_prefix("twin:") {
            Some(name) => {
                let urls = urls.ok_or_else(|| {
                    RunError::Config(format!(
                        "models.{f}: endpoint '{}' needs the embedded target",
                        setting.endpoint
                    ))
                })?;
                let b = urls.backends.get(name).ok_or_else(|| {
                    RunError::Config(format!("models.{f}: no twin backend named '{name}'"))
                })?;
                b.openai_base.clone()
            }
            None => setting.endpoint.clone(),
        };
        let api_key = match &setting.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                RunError::Config(format!("models.{f}.api_key_env: {var} is not set"))
            })?),
            None => None,
        };
        out.push((
            f.clone(),
            ResolvedModel {
                setting: setting.clone(),
                endpoint,
                api_key,
            },
        ));
    }
    Ok(out)
}

fn select(plan: &Plan, all: Vec<Interaction>) -> Result<Vec<Interaction>, RunError> {
    let chosen: Vec<Interaction> = all
        .into_iter()
        .filter(|i| plan.features.is_empty() || plan.features.contains(&i.feature))
        .collect();
    if chosen.is_empty() {
        return Err(RunError::Config(format!(
            "no interaction in {} matches features {:?}",
            plan.corpus_path.display(),
            plan.features
        )));
    }
    Ok(chosen)
}

/// Runs a scenario; returns the exit code of the verdict.
pub async fn run(scenario: &Path, overrides: Overrides) -> Result<Exit, RunError> {
    let started_at = chrono::Utc::now();
    let started = started_at.format("%Y%m%dT%H%M%SZ").to_string();
    let plan = plan::resolve(scenario, overrides, &started)?;
    let interactions = select(&plan, corpus::load(&plan.corpus_path)?)?;
    let client = drive::client(&plan.target)?;
    let auth = drive::auth_headers(&plan.target)?;

    let stack = match plan.embedded() {
        true => Some(twin::start(&plan.stack.clone().unwrap_or_default()).await?),
        false => None,
    };
    let urls = stack.as_ref().map(|s| s.urls());
    let base_url = urls.as_ref().map_or_else(
        || plan.target_url.clone().unwrap_or_default(),
        |u| u.aigw.clone(),
    );
    let mut features: Vec<String> = interactions.iter().map(|i| i.feature.clone()).collect();
    features.dedup();
    let models = resolve_models(&plan, urls.as_ref(), &features)?;

    std::fs::create_dir_all(&plan.run_dir).map_err(write_err(&plan.run_dir))?;
    let plan_path = plan.run_dir.join("plan.json");
    let plan_json =
        serde_json::json!({"plan": plan, "resolved": {"target_url": base_url, "stack": urls}});
    std::fs::write(
        &plan_path,
        serde_json::to_string_pretty(&plan_json).expect("plan serialises"),
    )
    .map_err(write_err(&plan_path))?;

    drive::preflight(&client, &base_url)
        .await
        .map_err(|reason| RunError::Unreachable {
            url: base_url.clone(),
            reason,
        })?;

    let results_path = plan.run_dir.join("results.ndjson");
    let mut sink = ResultsSink::create(&results_path).map_err(write_err(&results_path))?;
    let run_start = Instant::now();
    let mut records = Vec::with_capacity(interactions.len());
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    for (seq, it) in interactions.iter().enumerate() {
        let model = models
            .iter()
            .find(|(f, _)| *f == it.feature)
            .map(|(_, m)| m);
        let body = drive::body_for(it, model);
        let send = drive::Send {
            client: &client,
            base_url: &base_url,
            auth: &auth,
            timeout: Duration::from_secs_f64(plan.request_timeout_s),
            run_start,
            seq,
        };
        let rec = tokio::select! {
            r = drive::send(&send, it, &body) => r,
            _ = &mut ctrl_c => { interrupted = true; break; }
        };
        sink.write(&rec).map_err(write_err(&results_path))?;
        records.push(rec);
    }
    let info = RunInfo {
        run_id: plan.run_id.clone(),
        scenario: plan.scenario_name.clone(),
        target: if plan.embedded() {
            format!("embedded ({base_url})")
        } else {
            base_url.clone()
        },
        started_at: started_at.to_rfc3339(),
        duration_s: run_start.elapsed().as_secs_f64(),
        interrupted,
    };
    let summary = summary::summarise(info, &records);
    let summary_path = plan.run_dir.join("summary.json");
    std::fs::write(
        &summary_path,
        serde_json::to_string_pretty(&summary).expect("summary serialises"),
    )
    .map_err(write_err(&summary_path))?;
    print!("{}", summary.table());
    println!("run folder: {}", plan.run_dir.display());
    Ok(summary.exit())
}
