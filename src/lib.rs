//! duo-harness: conformance, routing and latency measurement for GitLab Duo Self-Hosted.
//!
//! The data flow (see `DESIGN.md`) is one module per stage:
//! [`init`] (a scenario from a GitLab instance's settings) → [`corpus`] (recorded interactions,
//! JSONL) → [`plan`] (scenario + overrides, resolved once) → [`drive`] (HTTP replay over real
//! sockets) → [`protocol`] (framing decoders) → [`measure`] (per-request records,
//! `results.ndjson`) → [`audit`] (the harness's own disturbance: what it can have moved, per
//! figure); then the back half: [`verdict`] (findings and one run's verdict: `summary.json`) →
//! [`results`] (run folders read back, typed, merged) → [`compare`] (a run against its baseline,
//! with bootstrap intervals: `comparison.json`) → [`report`] (console, `report.html`, `junit.xml`,
//! `report.md`). Checks beside the flow: [`conformance`] (snapshots), [`routing`], [`taps`].
//! [`twin`] is the embedded stack (twin AIGW + twin vLLM backends) used as the default target.
//! Shared by the stages, depending on none of them: [`stats`] (percentiles), [`tokens`] (the
//! text rule), [`http`] (the client and error texts), [`signals`], [`clock`], [`files`],
//! [`redact`] (one redaction rule set for every writer), [`escape`] (outside text made inert
//! on a console, in Markdown, in XML), [`numbers`] (bounds on a user's numbers), [`features`].
//! A stage depends only on stages before it and on these:
//! `tests/layout.rs` holds the module graph free of cycles and the back half in its order.
//! [`run`] wires the stages together for the `run` command, [`cmd`] for `report`, `compare`,
//! `baseline` and `schemas` (one module each, and [`cmd::Failure`]: every error that ends a
//! command, with its exit code decided in one place); [`cli`] is the command line. `run` and
//! `report` judge a run folder with the same functions ([`report::judge_folder`],
//! [`compare::gate::judge`]). No function in `src/` is over 80 lines (`clippy.toml`, checked
//! by `.ci/run`).

#![warn(clippy::too_many_lines)]

pub mod audit;
pub mod capacity;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod compare;
pub mod conformance;
pub mod corpus;
pub mod drive;
pub mod dws;
pub mod escape;
pub mod exit;
pub mod features;
pub mod files;
pub mod http;
pub mod init;
pub mod live;
pub mod measure;
pub mod numbers;
pub mod plan;
pub mod protocol;
pub mod record;
pub mod redact;
pub mod report;
pub mod results;
pub mod roofline;
pub mod routing;
pub mod run;
pub mod schedule;
pub mod scrape;
pub mod signals;
pub mod stats;
pub mod taps;
pub mod tokens;
pub mod twin;
pub mod verdict;
