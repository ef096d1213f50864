//! The `run` command, a composition of the stages: `setup` (plan → corpus → embedded stack,
//! taps → prepared requests and their schedule) → `plan.json` → the preflight stages (health,
//! models: `preflight.rs`) → `measure` (the sending phase, `load.rs`: dispatch, collect into
//! `results.ndjson` and `taps.ndjson`, the harness's own CPU and receive delay) →
//! `judge_and_write` (conformance → verdict with the gate → `summary.json`, `histograms.json`,
//! `comparison.json` → the reports). After the last send, in-flight requests drain for
//! `load.grace_s`; what is still running then is cut off and counted. Ctrl-C stops sending, cuts
//! off what is in flight, and still writes the summary of what was measured.

use crate::corpus::{self, CorpusError, Interaction};
use crate::drive::{self, DriveError, Prepared};
use crate::exit::Exit;
use crate::measure::aggregate::Aggregate;
use crate::measure::tokenizer::Tokenizers;
use crate::measure::ResultsSink;
use crate::plan::{self, Overrides, Plan, PlanError};
use crate::report::{self, Stage};
use crate::results::RunFolder;

mod documents;
mod load;
mod models;
mod preflight;
mod references;
mod sizing;
use crate::schedule;
use crate::taps::{self, TapAgg, Taps};
use crate::twin::{self, StackError, StackUrls};
use crate::verdict::{self, RunInfo};
use documents::{write_documents, write_live};
use load::drive_load;
use models::{resolve_models, resolve_remap, secret_from_env};
use preflight::preflight_or_a_stop;
use references::{conformance_stage, refuse_second_first_run, store_first_baseline};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    #[error(transparent)]
    Taps(#[from] taps::TapError),
    #[error("target {url} did not answer: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Write {
        path: path.into(),
        source,
    }
}

/// Every corpus file of the plan, as one corpus: ids must stay unique across the files.
fn load_corpora(plan: &Plan) -> Result<Vec<Interaction>, RunError> {
    let mut all = corpus::load(&plan.corpus_path)?;
    let mut ids: std::collections::HashSet<String> = all.iter().map(|i| i.id.clone()).collect();
    for path in &plan.more_corpora {
        let more = corpus::load(path)?;
        if let Some(dup) = more.iter().find(|m| !ids.insert(m.id.clone())) {
            return Err(RunError::Config(format!(
                "{}: interaction id '{}' is already used by an earlier corpus of the scenario",
                path.display(),
                dup.id
            )));
        }
        all.extend(more);
    }
    Ok(all)
}

fn select(plan: &Plan, all: Vec<Interaction>) -> Result<Vec<Interaction>, RunError> {
    let chosen: Vec<Interaction> = all
        .into_iter()
        .filter(|i| plan.features.is_empty() || plan.features.contains(&i.feature))
        .collect();
    if chosen.is_empty() {
        return Err(RunError::Config(format!(
            "no interaction in {} matches features [{}]",
            plan.corpus_path.display(),
            plan.features.join(", ")
        )));
    }
    Ok(chosen)
}

/// Says what a `[stack]` section does when the target is external: never ignored silently.
fn explain_stack(plan: &Plan) {
    let (Some(url), Some(_)) = (&plan.target_url, &plan.stack) else {
        return;
    };
    if plan.needs_twin() {
        eprintln!(
            "note: the target is {url}; the [stack] backends serve the twin:<backend> endpoints \
             and backend taps, its AIGW settings do not apply"
        );
    } else {
        eprintln!(
            "warning: the target is {url} and no model setting or tap names a twin backend: the \
             [stack] section is not used"
        );
    }
}

/// Where Agent Platform sessions go: `target.dws`, or the embedded stack's twin DWS. A corpus
/// with sessions and nowhere to send them is a configuration error.
fn dws_target(
    plan: &Plan,
    urls: Option<&StackUrls>,
    interactions: &[Interaction],
) -> Result<Option<drive::session::DwsTarget>, RunError> {
    let url = match plan.target.dws.as_deref() {
        Some("embedded") => urls.map(|u| u.dws.clone()),
        Some(u) => Some(u.to_owned()),
        None if plan.embedded() => urls.map(|u| u.dws.clone()),
        None => None,
    };
    if !interactions.iter().any(|i| i.protocol == "grpc") {
        return Ok(None); // no session to send: no channel, no `dws` stage
    }
    match url {
        Some(u) => {
            let auth = drive::client::dws_auth(&plan.target)?;
            let ca = plan.target.ca_bundle.as_deref();
            drive::session::DwsTarget::new(&u, auth, ca, plan.target.dws_generate_token)
                .map(Some)
                .map_err(RunError::from)
        }
        None => Err(RunError::Config(
            "the corpus has Agent Platform sessions (grpc lines) but no Duo Workflow Service: set target.dws".into(),
        )),
    }
}

/// Where requests go: the base URL, and how the summary names it.
fn base_url(plan: &Plan, urls: Option<&StackUrls>) -> Result<(String, String), RunError> {
    let Some(urls) = urls.filter(|_| plan.embedded()) else {
        let url = plan.target_url.clone().unwrap_or_default();
        return Ok((url.clone(), url));
    };
    match &plan.embedded_backend {
        None => Ok((urls.aigw.clone(), format!("embedded AIGW ({})", urls.aigw))),
        Some(name) => {
            let b = urls.backends.get(name).ok_or_else(|| {
                RunError::Config(format!(
                    "target.url 'embedded:{name}': the stack has no backend named '{name}'"
                ))
            })?;
            Ok((
                b.url.clone(),
                format!("embedded backend {name} ({})", b.url),
            ))
        }
    }
}

/// Writes a JSON document atomically (temporary file, then rename), owner-only.
fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), RunError> {
    crate::files::write_json(path, value).map_err(write_err(path))
}

/// The schedule's instant zero lies this far after setup, so the pacer starts on time.
const LEAD: Duration = Duration::from_millis(20);

/// The schedule's instant zero: `--start-at` on this host's clock (a slice that starts after
/// it sends its first arrivals late, and says so), else just after setup.
fn run_start(plan: &Plan) -> Instant {
    let Some(zero) = plan.slice.as_ref().and_then(|s| s.start()) else {
        return Instant::now() + LEAD;
    };
    let (now, wall) = (Instant::now(), chrono::Utc::now());
    match (zero - wall).to_std() {
        Ok(ahead) => now + ahead,
        Err(_) => {
            let behind = (wall - zero).to_std().unwrap_or_default();
            eprintln!(
                "warning: the instant zero {} passed {:.3} s ago: this process's first sends \
                 are that late",
                zero.to_rfc3339(),
                behind.as_secs_f64()
            );
            now.checked_sub(behind).unwrap_or(now)
        }
    }
}

/// Everything a run needs before it sends: the stack, the target, what to send and when.
struct Setup {
    /// The embedded stack, kept alive for the whole run.
    _stack: Option<twin::IsolatedStack>,
    urls: Option<StackUrls>,
    base_url: String,
    /// How the summary names the target.
    target_name: String,
    client: reqwest::Client,
    auth: drive::Auth,
    tokenizers: Tokenizers,
    taps: Option<Taps>,
    prepared: Vec<Prepared>,
    schedule: schedule::Schedule,
    /// `[metrics]` targets: (name, URL of its /metrics).
    scrape: Vec<(String, String)>,
    /// Where Agent Platform sessions go.
    dws: Option<drive::session::DwsTarget>,
    /// The corpus's features the run selected, sorted.
    features: Vec<String>,
}

/// Plan → corpus → (the load sized for the gate) → (embedded stack, taps) → prepared requests
/// and their schedule.
async fn setup(plan: &mut Plan) -> Result<Setup, RunError> {
    let interactions = select(plan, load_corpora(plan)?)?;
    if let Some(said) = sizing::size(plan, &interactions) {
        println!("{said}");
    }
    let plan = &*plan;
    let tokenizers = Tokenizers::load(&plan.tokenizers)
        .map_err(|m| RunError::Config(format!("{}: {m}", plan.scenario_path.display())))?;
    let client = drive::client(&plan.target)?;
    let auth = drive::Auth::new(&plan.target)?;
    explain_stack(plan);
    let stack = match plan.needs_twin() {
        true => {
            let cfg = plan.stack.clone().unwrap_or_default();
            Some(twin::IsolatedStack::start(&cfg, twin_threads()).await?)
        }
        false => None,
    };
    let urls = stack.as_ref().map(|s| s.urls());
    let (base_url, target_name) = base_url(plan, urls.as_ref())?;
    let mut features: Vec<String> = interactions.iter().map(|i| i.feature.clone()).collect();
    features.sort();
    features.dedup();
    let horizon = Duration::from_secs_f64(plan.request_timeout_s + plan.load.grace_s + 60.0);
    let taps = taps::start_all(&plan.taps, urls.as_ref(), horizon, client.clone()).await?;
    let models = resolve_models(plan, urls.as_ref(), taps.as_ref(), &features)?;
    let feature_of: Vec<&str> = interactions.iter().map(|i| i.feature.as_str()).collect();
    let offsets: Vec<f64> = interactions.iter().map(|i| i.arrival_offset_ms).collect();
    let schedule = schedule::build(&plan.load, &feature_of, &offsets)
        .map_err(|m| RunError::Config(format!("{}: {m}", plan.scenario_path.display())))?;
    let schedule = match &plan.slice {
        Some(s) => schedule.slice(s.of()),
        None => schedule,
    };
    let replay_key = secret_from_env(
        "target.model_api_key_env",
        plan.target.model_api_key_env.as_deref(),
    )?;
    let scrape = scrape_targets(plan, urls.as_ref())?;
    let dws = dws_target(plan, urls.as_ref(), &interactions)?;
    let remap = resolve_remap(plan, urls.as_ref(), taps.as_ref())?;
    let replay = drive::Replay {
        openai_model: plan.target.model.as_deref(),
        replay_key: replay_key.as_deref(),
        remap: Some(&remap),
    };
    let prepared: Vec<Prepared> = interactions
        .into_iter()
        .map(|it| {
            let model = models
                .iter()
                .find(|(f, _)| *f == it.feature)
                .map(|(_, m)| m);
            Prepared::new(it, model, &replay)
        })
        .collect();
    Ok(Setup {
        _stack: stack,
        urls,
        base_url,
        target_name,
        client,
        auth,
        tokenizers,
        taps,
        dws,
        prepared,
        schedule,
        scrape,
        features,
    })
}

/// `[metrics]` targets with their URLs (`twin:<backend>`: the embedded backend's /metrics;
/// `twin:dws`: the twin DWS's).
fn scrape_targets(
    plan: &Plan,
    urls: Option<&StackUrls>,
) -> Result<Vec<(String, String)>, RunError> {
    plan.metrics
        .targets
        .iter()
        .map(|t| match t.strip_prefix("twin:") {
            Some(name) => urls
                .and_then(|u| match u.backends.get(name) {
                    Some(b) => Some(&b.url),
                    None => (name == "dws").then_some(&u.dws),
                })
                .map(|url| (t.clone(), format!("{url}/metrics")))
                .ok_or_else(|| {
                    RunError::Config(format!(
                        "metrics.targets: no twin backend named '{name}' (twin:dws is the twin DWS)"
                    ))
                }),
            None => Ok((t.clone(), t.clone())),
        })
        .collect()
}

/// What the sending phase measured, and which of its files could not be written.
struct Measured {
    agg: Aggregate,
    backend_metrics: std::collections::BTreeMap<String, crate::scrape::Observed>,
    taps: Option<TapAgg>,
    info: RunInfo,
    unwritten: Vec<(PathBuf, String)>,
}

/// The taps' collector, running until the taps stop: it writes `taps.ndjson`.
fn collect_taps(
    t: Taps,
    run_start: Instant,
    path: &Path,
) -> (
    Vec<taps::RunningTap>,
    tokio::task::JoinHandle<(TapAgg, std::io::Result<()>)>,
) {
    let names = t.names();
    let fut = taps::collect(t.calls, names, t.correlator, run_start, path.into());
    (t.running, tokio::spawn(fut))
}

/// Sends the load and collects: the results stage (`results.ndjson`), the taps stage
/// (`taps.ndjson`), and what the harness measured about itself.
async fn measure(
    plan: &Plan,
    setup: Setup,
    started_at: chrono::DateTime<chrono::Utc>,
) -> Result<Measured, RunError> {
    let results_path = plan.run_dir.join("results.ndjson");
    let sink =
        ResultsSink::create(&results_path, plan.output.chunks).map_err(write_err(&results_path))?;
    let taps = setup.taps;
    let fresh = crate::http::unpooled_client(
        plan.target.ca_bundle.as_deref(),
        plan.target.danger_accept_invalid_certs,
    )
    .map_err(|e| RunError::Config(e.to_string()))?;
    let target = Arc::new(drive::Target {
        client: setup.client,
        fresh,
        h1: drive::h1::Pool::for_target(&setup.base_url),
        base_url: setup.base_url,
        auth: setup.auth,
        timeout: Duration::from_secs_f64(plan.request_timeout_s),
        run_start: run_start(plan),
        correlation: taps.as_ref().map(|t| (t.salt, t.correlator.clone())),
        tokenizers: setup.tokenizers,
        dws: setup.dws,
    });
    let taps_path = plan.run_dir.join("taps.ndjson");
    let tap_collector = taps.map(|t| collect_taps(t, target.run_start, &taps_path));
    let scraper = (!setup.scrape.is_empty()).then(|| {
        let every = Duration::from_secs_f64(plan.metrics.interval_s);
        let path = plan.run_dir.join("metrics.ndjson");
        crate::scrape::start(target.client.clone(), setup.scrape.clone(), every, path)
    });
    let prepared = Arc::new(setup.prepared);
    let (agg, written, scheduled, ended) =
        drive_load(plan, target.clone(), prepared, setup.schedule, sink).await?;
    let backend_metrics = match scraper {
        Some(s) => s.finish().await,
        None => Default::default(),
    };
    // What could not be written is named at the end; the verdict is still computed and printed.
    let mut unwritten: Vec<(PathBuf, String)> = written
        .err()
        .map(|e| (results_path, e.to_string()))
        .into_iter()
        .collect();
    let tap_agg = match tap_collector {
        Some((running, task)) => {
            drop(running); // stops the tap servers, which ends the collector
            let (tap_agg, written) = task
                .await
                .map_err(|e| RunError::Internal(format!("the tap collector failed: {e}")))?;
            unwritten.extend(written.err().map(|e| (taps_path, e.to_string())));
            Some(tap_agg)
        }
        None => None,
    };
    let info = RunInfo {
        run_id: plan.run_id.clone(),
        scenario: plan.scenario_name.clone(),
        target: setup.target_name,
        started_at: started_at.to_rfc3339(),
        duration_s: target.run_start.elapsed().as_secs_f64(),
        interrupted: ended.flag,
        scheduled,
        client: ended.cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        in_flight_cap: ended.default_cap,
        internal_errors: crate::exit::panics(),
        request_timeout_s: plan.request_timeout_s,
        receive_delay: ended.receive_delay,
    };
    Ok(Measured {
        agg,
        backend_metrics,
        taps: tap_agg,
        info,
        unwritten,
    })
}

/// Conformance → verdict (with the preflight stages and the gate) → the run folder's
/// documents and reports. Returns the exit code.
fn judge_and_write(
    plan: &Plan,
    plan_json: &plan::PlanDocument,
    measured: Measured,
    preflight: Vec<Stage>,
) -> Result<Exit, RunError> {
    let Measured {
        agg,
        backend_metrics,
        taps: tap_agg,
        info,
        mut unwritten,
    } = measured;
    let taps_path = plan.run_dir.join("taps.ndjson");
    let taps = tap_agg.is_some().then_some(taps_path.as_path());
    let results_path = plan.run_dir.join("results.ndjson");
    let conformance = match conformance_stage(plan, &results_path, taps) {
        Ok(c) => c,
        Err(RunError::Write { path, source }) => {
            unwritten.push((path, source.to_string()));
            None
        }
        Err(e) => return Err(e),
    };
    let checks = verdict::Checks {
        taps: tap_agg.as_ref(),
        routing: plan.routing.clone(),
        conformance: conformance.as_ref(),
    };
    // What only the live run knows (its CPU, schedule, backends' metrics) goes to disk first;
    // then the run is judged from its folder by the one judgement `report` uses.
    let live = (info, &agg, backend_metrics);
    unwritten.extend(write_live(plan, live, &checks, &preflight));
    // Judged as `report` judges a folder, from the aggregate built while measuring: the
    // records are not read back (a comparison with a baseline reads them when it needs them).
    let folder =
        RunFolder::open_documents(&plan.run_dir).map_err(|e| RunError::Internal(e.to_string()))?;
    let mut sources = [folder];
    let mut agg = agg;
    if !plan.output.chunks {
        sources[0].itl_from_histograms(&mut agg);
    }
    let rebuilt = report::judge_aggregate(
        &sources[0],
        &sources,
        agg,
        tap_agg.as_ref(),
        conformance.as_ref(),
    );
    let (summary, agg) = (rebuilt.summary, rebuilt.agg);
    let [current] = &mut sources;
    let judged = crate::compare::gate::judge(current, summary, &plan.gate, preflight);
    let summary = judged.summary;
    print!("{}", summary.table());
    if let Some(c) = &judged.comparison {
        print!("{}", crate::compare::table(c));
    }
    let comparison = judged
        .comparison
        .as_ref()
        .map(|c| ("comparison.json", serde_json::to_value(c)));
    let documents = [("summary.json", serde_json::to_value(&summary))];
    unwritten.extend(write_documents(
        &plan.run_dir,
        documents.into_iter().chain(comparison),
    ));
    let view = report::Report {
        summary: &summary,
        agg: &agg,
        plan: plan_json,
        comparison: judged.comparison.as_ref(),
        stages: &judged.stages,
        capacity: None,
    };
    let outputs = report::Outputs::in_dir(&plan.run_dir);
    unwritten.extend(report::write(&view, &outputs));
    println!("run folder: {}", plan.run_dir.display());
    Ok(exit_unless_unwritten(&unwritten, summary.exit()))
}

/// A run folder missing a document is not a verdict anyone can rely on: each unwritten file
/// is named, and the run exits as unreachable whatever it measured.
fn exit_unless_unwritten(unwritten: &[(PathBuf, String)], judged: Exit) -> Exit {
    for (path, e) in unwritten {
        eprintln!("error: could not write {}: {e}", path.display());
    }
    if unwritten.is_empty() {
        judged
    } else {
        Exit::Unreachable
    }
}

/// Runs a scenario; returns the exit code of the verdict.
pub async fn run(scenario: &Path, overrides: Overrides) -> Result<Exit, RunError> {
    let started_at = chrono::Utc::now();
    let started = started_at.format("%Y%m%dT%H%M%SZ").to_string();
    let mut plan = plan::resolve(scenario, overrides, &started)?;
    refuse_second_first_run(&plan)?;
    crate::files::refuse_used_dir(&plan.run_dir, "run").map_err(RunError::Config)?;
    let setup = setup(&mut plan).await?;
    crate::files::create_dir_private(&plan.run_dir).map_err(write_err(&plan.run_dir))?;
    let plan_json = plan::PlanDocument {
        plan: plan.clone(),
        resolved: plan::Resolved {
            target_url: setup.base_url.clone(),
            stack: setup.urls.clone(),
            features: setup.features.clone(),
        },
        merged_from: Vec::new(),
    };
    write_json(&plan.run_dir.join("plan.json"), &plan_json)?;
    let (preflight, interrupted) = preflight_or_a_stop(&plan, &setup).await?;
    let mut setup = setup;
    let policy = plan.load.on_failed_preflight;
    if interrupted {
        eprintln!("stopped by a signal during the preflight: no load is sent");
        setup.schedule = schedule::Schedule::none();
    } else if let Some(why) = crate::compare::stages::stopped_by(&preflight, policy) {
        // A stack that fails its preflight gets no load: the answer is already "no".
        for (name, failed) in preflight.iter().filter_map(|s| match &s.status {
            report::StageStatus::Failed(m) => Some((&s.name, m)),
            _ => None,
        }) {
            eprintln!("error: {name}: {}", crate::escape::console(failed));
        }
        eprintln!("error: {}", crate::escape::console(&why));
        setup.schedule = schedule::Schedule::none();
    }
    let measured = measure(&plan, setup, started_at).await?;
    let exit = judge_and_write(&plan, &plan_json, measured, preflight)?;
    if plan.overrides.first_run && exit == Exit::Pass {
        store_first_baseline(&plan)?;
    }
    Ok(exit)
}

/// Threads for an embedded twin: half the machine, at least one.
fn twin_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}
