//! The command line (clap). Parses arguments, runs the command on a tokio runtime, prints errors
//! and turns every outcome into one of DESIGN.md's exit codes.

mod inputs;

use crate::cmd::Failure;
use crate::exit::Exit;
use crate::plan::{LoadOverrides, Overrides};
use crate::schedule::Arrival;
use crate::twin::{self, StackConfig};
use clap::{Parser, Subcommand};
use inputs::{corpus, snapshots};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "duo-harness",
    version,
    about = "Conformance, routing and latency harness for GitLab Duo Self-Hosted"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario: replay its corpus against the target and write a run folder.
    Run {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Run folder to write (default: OUTPUT_DIR/RUN_ID).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Target AIGW base URL, or `embedded` (overrides target.url).
        #[arg(long)]
        target: Option<String>,
        /// Corpus file (overrides the scenario's corpus).
        #[arg(long)]
        corpus: Option<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
        /// Measure the noise floor: replay the corpus four times (one request at a time) against this
        /// baseline and write how often two answers differ, per feature and field, to the
        /// snapshot folder's noise.json.
        #[arg(long)]
        calibrate: bool,
        /// The first run against this stack: stages with no reference yet (the gate, conformance
        /// without reviewed snapshots) are not run and do not fail it; a passing run is stored as
        /// the scenario's `[gate] baseline`.
        #[arg(long, conflicts_with = "calibrate")]
        first_run: bool,
        /// Move a recorded model endpoint to this stack: OLD=NEW, NEW a URL or twin:<backend>
        /// (repeatable; over the scenario's [remap]).
        #[arg(long = "remap", value_name = "OLD=NEW")]
        remap: Vec<String>,
    },
    /// Record traffic through a streaming reverse proxy into a corpus (secrets redacted).
    Record {
        /// Upstream base URL: the AIGW, or with --tap a model backend.
        #[arg(long)]
        upstream: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Corpus file to write (JSONL; parts .1, .2... when rotating).
        #[arg(long)]
        out: PathBuf,
        /// Extra CA certificates (PEM) for an https upstream.
        #[arg(long)]
        ca_bundle: Option<PathBuf>,
        /// Start a new corpus part past this many megabytes.
        #[arg(long)]
        rotate_mb: Option<f64>,
        /// Redaction rule SELECTOR=drop|hash|keep-length over request bodies (repeatable), e.g.
        /// .current_file.content_above_cursor=keep-length
        #[arg(long = "redact")]
        rules: Vec<crate::redact::Rule>,
        /// Tap a model backend: write one line per upstream model call.
        #[arg(long)]
        tap: bool,
        /// Append to a corpus that already holds lines (it is never truncated).
        #[arg(long)]
        force: bool,
    },
    /// Write the JSON Schemas of the run folder's documents, made from the types that write and
    /// read them.
    Schemas {
        /// Folder to write them into.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
    /// Review pending snapshots: show each difference and ask, or accept / reject them all.
    Snapshots {
        #[command(subcommand)]
        action: SnapshotAction,
    },
    /// Look into a corpus.
    Corpus {
        #[command(subcommand)]
        action: CorpusAction,
    },
    /// Judge run folders again without sending a request: rebuild summary.json from
    /// results.ndjson (after a kill too), merge several folders of one plan, and write the
    /// HTML, JUnit and Markdown reports.
    Report {
        /// Run folders (several: merged into --out).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Folder to write (default: the one run folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// HTML report (default: OUT/report.html).
        #[arg(long)]
        html: Option<PathBuf>,
        /// JUnit XML (default: OUT/junit.xml).
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Markdown for a merge-request comment (default: OUT/report.md).
        #[arg(long)]
        md: Option<PathBuf>,
        /// Where the HTML report will be found (the Markdown's link), e.g.
        /// "$CI_JOB_URL/artifacts/file/reports/run/report.html".
        #[arg(long)]
        html_link: Option<String>,
    },
    /// Compare a run with a baseline run: per feature and metric the change with a confidence
    /// interval; exit 0 only when every required check was judged "no regression", 1 on a
    /// regression or a current run that failed, 4 when a required check could not be judged.
    Compare {
        baseline: PathBuf,
        current: PathBuf,
        /// Threshold over the scenario's gate section: METRIC=10%,20ms or FEATURE.METRIC=... (repeatable).
        #[arg(long = "threshold", value_parser = crate::plan::parse_threshold)]
        thresholds: Vec<(
            Option<String>,
            crate::plan::GateMetric,
            crate::plan::Threshold,
        )>,
        /// A check that may stay unjudged: METRIC or FEATURE.METRIC (repeatable; over the
        /// scenario's `[gate] optional`). Nothing is optional by default.
        #[arg(long = "optional")]
        optional: Vec<String>,
        /// Where to write comparison.json (default: CURRENT/comparison.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a scenario from a GitLab instance's Duo Self-Hosted configuration (GraphQL
    /// aiSelfHostedModels and aiFeatureSettings; an administrator token).
    Init {
        /// The instance's base URL.
        #[arg(long)]
        gitlab: String,
        /// Environment variable holding the token (never written anywhere).
        #[arg(long)]
        token_env: String,
        /// Scenario file to write.
        #[arg(long, default_value = "scenarios/site.toml")]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Find the highest total rate (or, with --users, the most virtual developers) at which
    /// every feature meets its SLO, by the scenario's capacity search: probes, the knee, the
    /// SLO that breaks first, active developers, the limiter, the roofline.
    Capacity {
        scenario: PathBuf,
        /// Folder for the probes' run folders and capacity.json.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Search over the number of closed-loop virtual developers (with the scenario's
        /// load.developers think time) instead of the rate (the goose feature).
        #[arg(long)]
        users: bool,
    },
    /// Manage the baseline run the gate compares with.
    Baseline {
        #[command(subcommand)]
        action: BaselineAction,
    },
    /// Serve the embedded twin stack on loopback until stopped; prints its URLs as one JSON line.
    Stack {
        /// Stack config (TOML); default: the built-in two-backend stack.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BaselineAction {
    /// Store a passing run folder as the baseline (`[gate] baseline` names where).
    Save {
        run: PathBuf,
        /// Baseline folder to write.
        #[arg(long)]
        to: PathBuf,
        /// Store a run that did not pass.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Show each pending snapshot's difference and ask: a(ccept), r(eject), s(kip).
    Review(SnapshotArgs),
    /// Accept every pending snapshot (that matches the filter).
    Accept(SnapshotArgs),
    /// Reject (delete) every pending snapshot (that matches the filter).
    Reject(SnapshotArgs),
}

#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// Snapshot folder.
    #[arg(long, default_value = "fixtures/snapshots")]
    dir: PathBuf,
    /// Only pending files whose path contains this.
    filter: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CorpusAction {
    /// Counts per feature, prompt and output token distributions, arrival rate over time.
    Stats {
        corpus: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check every line against the corpus schema and rules; exit 1 if any line is bad.
    Validate { corpus: PathBuf },
    /// Print one Agent Platform case (a corpus line) per capture of a real Duo Workflow
    /// Service (`*.grpc.jsonl`): its start request, the answers that mattered, and what the
    /// service did as the case's `expect`. Arrivals 1 s apart.
    FromDwsCapture { captures: Vec<PathBuf> },
}

/// Overrides of the scenario's `[load]` section.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Requests per second (makes a closed-loop scenario constant-rate).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of sending.
    #[arg(long)]
    duration: Option<f64>,
    /// Arrival process.
    #[arg(long, value_parser = parse_arrival)]
    arrival: Option<Arrival>,
    /// Most requests in flight (closed loop: exactly this many).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Seed of the arrival process and the feature mix.
    #[arg(long)]
    seed: Option<u64>,
    /// That many closed-loop virtual developers (arrival "developers"; the goose feature).
    #[arg(long, conflicts_with_all = ["rate", "arrival", "concurrency"])]
    users: Option<usize>,
    /// Send the K-th (from 0) of every N arrivals of the one seeded schedule, as one of N
    /// processes (pods, hosts); `report` merges the N run folders. Needs --start-at.
    #[arg(long, value_name = "K/N", requires = "start_at")]
    slice: Option<crate::plan::SliceOf>,
    /// The schedule's instant zero, common to every slice (RFC 3339, e.g.
    /// 2026-12-04T09:30:00Z): the process waits for it; arrivals keep their intended times.
    #[arg(long, value_name = "RFC3339", value_parser = crate::plan::parse_start_at)]
    start_at: Option<String>,
}

fn parse_arrival(s: &str) -> Result<Arrival, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| "one of closed, constant, poisson, gamma, trace, developers".to_owned())
}

impl From<LoadArgs> for LoadOverrides {
    fn from(a: LoadArgs) -> Self {
        Self {
            arrival: a.arrival,
            rate: a.rate,
            duration_s: a.duration,
            concurrency: a.concurrency,
            seed: a.seed,
            users: a.users,
            slice: a.slice,
            start_at: a.start_at,
        }
    }
}

/// Entry point of the binary.
pub fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Pass.into()
            };
        }
    };
    crate::exit::install_panic_hook();
    crate::clock::raise_open_file_limit();
    // Colour codes only for a person at a terminal: CI logs and files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    // The pacer hands each request to the runtime from outside it (the global queue); workers
    // look there every few polls instead of every 31, so a busy worker starts it on time.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .global_queue_interval(2)
        .on_thread_start(|| {
            let _ = crate::clock::raise_priority();
        })
        .build()
        .expect("a tokio runtime starts");
    let exit = match rt.block_on(dispatch(cli.command)) {
        Ok(exit) => exit,
        Err(f) => {
            // A server's words can reach an error: no secret, and no control character that
            // could draw a line of its own.
            eprintln!(
                "error: {}",
                crate::escape::console(&crate::redact::known(&f.to_string()))
            );
            f.exit()
        }
    };
    if !crate::exit::panics().is_empty() {
        return Exit::Unreachable.into();
    }
    exit.into()
}

/// Runs one command; every error it ends on comes back typed, for [`Failure::exit`].
async fn dispatch(cmd: Command) -> Result<Exit, Failure> {
    // The commands that stop cleanly on a signal catch it from their first instant; the others
    // keep the default (a Ctrl-C ends them).
    if matches!(
        cmd,
        Command::Run { .. }
            | Command::Stack { .. }
            | Command::Record { .. }
            | Command::Capacity { .. }
    ) {
        crate::signals::install();
    }
    match cmd {
        Command::Run {
            scenario,
            out,
            target,
            corpus,
            load,
            calibrate,
            first_run,
            remap,
        } => {
            let overrides = Overrides {
                target,
                corpus,
                out,
                load: load.into(),
                calibrate,
                first_run,
                remap,
            };
            Ok(crate::run::run(&scenario, overrides).await?)
        }
        Command::Stack { config } => Ok(stack(config).await),
        Command::Record {
            upstream,
            listen,
            out,
            ca_bundle,
            rotate_mb,
            rules,
            tap,
            force,
        } => {
            if let Some(mb) = rotate_mb.filter(|mb| !(mb.is_finite() && *mb > 0.0 && *mb <= 1e6)) {
                let m = format!("--rotate-mb {mb}: must be a finite number > 0 and <= 1000000");
                return Err(Failure::Usage(m));
            }
            let opts = crate::record::RecordOptions {
                upstream,
                listen,
                out,
                ca_bundle,
                rotate_bytes: rotate_mb.map(|mb| (mb * 1e6) as u64),
                rules,
                tap,
                force,
            };
            crate::record::record(opts).await?;
            Ok(Exit::Pass)
        }
        other => back_half(other).await,
    }
}

/// The commands that read run folders, or write files of their own.
async fn back_half(cmd: Command) -> Result<Exit, Failure> {
    match cmd {
        Command::Report {
            dirs,
            out,
            html,
            junit,
            md,
            html_link,
        } => {
            let outputs = crate::report::Outputs {
                html,
                junit,
                md,
                html_link,
            };
            crate::cmd::report::command(crate::cmd::report::ReportArgs { dirs, out, outputs })
        }
        Command::Compare {
            baseline,
            current,
            thresholds,
            optional,
            out,
        } => crate::cmd::compare::command(crate::cmd::compare::CompareArgs {
            baseline,
            current,
            thresholds,
            optional,
            out,
        }),
        Command::Init {
            gitlab,
            token_env,
            out,
            force,
        } => {
            crate::init::init(&gitlab, &token_env, &out, force).await?;
            Ok(Exit::Pass)
        }
        Command::Capacity {
            scenario,
            out,
            users,
        } => Ok(crate::capacity::command(&scenario, out, users).await?),
        Command::Baseline {
            action: BaselineAction::Save { run, to, force },
        } => crate::cmd::baseline::save(&run, &to, force),
        Command::Schemas { out } => {
            crate::cmd::schemas::write(&out)
                .map_err(|source| Failure::Write { path: out, source })?;
            Ok(Exit::Pass)
        }
        Command::Corpus { action } => Ok(corpus(action)),
        Command::Snapshots { action } => Ok(snapshots(action)),
        Command::Run { .. } | Command::Stack { .. } | Command::Record { .. } => {
            unreachable!("dispatched before")
        }
    }
}

async fn stack(config: Option<PathBuf>) -> Exit {
    let cfg = match config.map(|p| StackConfig::load(&p)).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let running = match twin::start(&cfg).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return if matches!(e, twin::StackError::Invalid(_)) {
                Exit::Usage
            } else {
                Exit::Unreachable
            };
        }
    };
    let line = serde_json::to_string(&running.urls()).expect("urls serialise");
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
    // The one line above is for programs; the one below for the person who reads it.
    eprintln!(
        "note: a model setting's endpoint (and the gateway's) is a backend's openai_base (…/v1); \
         its url is the server's root, where /chat/completions does not exist"
    );
    crate::signals::wait_for_stop().await;
    Exit::Pass
}
