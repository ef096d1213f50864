//! duo-harness: conformance, routing and latency measurement for GitLab Duo Self-Hosted.
//!
//! The data flow (see `DESIGN.md`) is one module per stage:
//! [`corpus`] (recorded interactions, JSONL) → [`plan`] (scenario + overrides, resolved once) →
//! [`drive`] (HTTP replay over real sockets) → [`protocol`] (framing decoders) → [`measure`]
//! (per-request records, `results.ndjson`) → [`audit`] (the harness's own disturbance: what it
//! can have moved, per figure) → [`summary`] (aggregation, verdict, `summary.json`).
//! [`twin`] is the embedded stack (twin AIGW + twin vLLM backends) used as the default target.
//! Shared by the stages, depending on none of them: [`stats`] (percentiles), [`tokens`] (the
//! text rule), [`http`] (the client and error texts), [`signals`], [`clock`], [`files`],
//! [`redact`], [`features`]. A stage depends only on stages before it and on these:
//! `tests/layout.rs` holds the module graph free of cycles.
//! [`run`] wires the stages together for the `run` command; [`cli`] is the command line.

pub mod audit;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod compare;
pub mod conformance;
pub mod corpus;
pub mod drive;
pub mod exit;
pub mod features;
pub mod files;
pub mod http;
pub mod init;
pub mod live;
pub mod measure;
pub mod plan;
pub mod protocol;
pub mod pyjson;
pub mod record;
pub mod redact;
pub mod report;
pub mod results;
pub mod routing;
pub mod run;
pub mod schedule;
pub mod signals;
pub mod stats;
pub mod summary;
pub mod taps;
pub mod tokens;
pub mod twin;
