//! The findings of a run, each with its kind, severity, feature and message: request errors
//! (protocol ones apart), SLOs, routing, retries, interruption, nothing measured, cut-offs, the
//! in-flight bound, warm-up errors, the gateway's retry cycle, and the harness's self-audit.

use super::{FeatureSummary, Finding, FindingKind, Load, RunInfo, Severity};
use crate::measure::aggregate::{Aggregate, ERROR_MESSAGES_KEPT};
use crate::measure::ErrorClass;
use crate::plan::LoadSpec;
use std::collections::BTreeMap;

/// The real gateway answers a failing upstream only after its retry cycle: 4 attempts with
/// 3, 9 and 27 s between them (PROTOCOL.md §8.3), about 39 s, plus the attempts themselves.
const RETRY_CYCLE_S: f64 = 39.0;

pub(super) fn findings(
    info: &RunInfo,
    load: &LoadSpec,
    agg: &Aggregate,
    features: &BTreeMap<String, FeatureSummary>,
    l: &Load,
) -> Vec<Finding> {
    let mut out = request_errors(load, agg);
    out.extend(feature_findings(features));
    out.extend(run_findings(info, load, agg, l));
    out.extend(unsent(info, l));
    out.extend(notes(info, agg, features, l));
    out.extend(super::sessions::findings(features, agg));
    out.extend(super::audit_findings::findings(l, features));
    out
}

/// Each failed request (up to the kept few per feature, then a count): an error past
/// `load.max_error_rate`, a warning within it.
fn request_errors(load: &LoadSpec, agg: &Aggregate) -> Vec<Finding> {
    let error_rate = agg.errors() as f64 / agg.completed().max(1) as f64;
    let severity = match agg.errors() > 0 && error_rate > load.max_error_rate {
        true => Severity::Error,
        false => Severity::Warning,
    };
    let mut out = Vec::new();
    for (k, f) in &agg.features {
        for (class, m) in &f.error_messages {
            // A broken framing is the protocol tier's verdict: the stream is not what the
            // route promises (garbage, a wrong content type, a missing marker or terminator).
            let kind = match class {
                ErrorClass::Framing | ErrorClass::Truncated => FindingKind::Protocol,
                _ => FindingKind::RequestError,
            };
            out.push(Finding::new(kind, severity, Some(k), m.clone()));
        }
        let more = f.errors.saturating_sub(ERROR_MESSAGES_KEPT as u64);
        if more > 0 {
            let m = format!("{more} more failed requests (see results.ndjson)");
            out.push(Finding::new(
                FindingKind::RequestError,
                severity,
                Some(k),
                m,
            ));
        }
    }
    out
}

/// Per feature: its SLO, its routing violations, its gateway's retries.
fn feature_findings(features: &BTreeMap<String, FeatureSummary>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (k, f) in features {
        out.extend(slo_finding(k, f));
        out.extend(answer_findings(k, f));
        for v in f.routing.iter().flat_map(|r| &r.violations) {
            let m = format!("{}: {}", v.kind.name(), v.message);
            out.push(Finding::new(
                FindingKind::Routing,
                Severity::Error,
                Some(k),
                m,
            ));
        }
        if let Some(b) = f.backend.as_ref().filter(|b| b.retries > 0) {
            let m = format!(
                "{} upstream calls were retries ({} calls for {} requests): each multiplies the load on a failing backend",
                b.retries, b.calls, f.requests
            );
            let kind = FindingKind::UpstreamRetries;
            out.push(Finding::new(kind, Severity::Warning, Some(k), m));
        }
    }
    out
}

/// What voids or cuts the run short: the harness's panics, an interruption, nothing measured,
/// requests cut off.
fn run_findings(info: &RunInfo, load: &LoadSpec, agg: &Aggregate, l: &Load) -> Vec<Finding> {
    let mut out: Vec<Finding> = info
        .internal_errors
        .iter()
        .map(|p| Finding::new(FindingKind::InternalError, Severity::Error, None, p.clone()))
        .collect();
    if info.interrupted {
        let m = "the run was interrupted before its schedule ended".to_owned();
        out.push(Finding::new(
            FindingKind::Interrupted,
            Severity::Error,
            None,
            m,
        ));
    }
    out.extend(nothing_measured(load, agg, l));
    if l.cut_off > 0 {
        let share = l.cut_off as f64 / (agg.completed() + l.cut_off) as f64;
        let severity = match share > load.max_cut_off_rate {
            true => Severity::Error,
            false => Severity::Warning,
        };
        let m = format!(
            "{} of {} measured requests ({:.2} %) had no complete answer when the run stopped \
             waiting for them and were cut off (load.max_cut_off_rate {:.2} %)",
            l.cut_off,
            agg.completed() + l.cut_off,
            share * 100.0,
            load.max_cut_off_rate * 100.0
        );
        out.push(Finding::new(FindingKind::CutOff, severity, None, m));
    }
    out
}

/// Sends that did not go out: past the in-flight cap (the offered load was not delivered: an
/// error), or with every slot busy.
fn unsent(info: &RunInfo, l: &Load) -> Option<Finding> {
    match info.in_flight_cap {
        _ if l.skipped == 0 => None,
        Some(cap) => {
            let m = format!(
                "{} sends were skipped: {cap} requests were already in flight (load.max_in_flight); \
                 the offered load was not delivered. Set load.concurrency and cap_policy to choose",
                l.skipped
            );
            Some(Finding::new(
                FindingKind::InFlightCap,
                Severity::Error,
                None,
                m,
            ))
        }
        None => {
            let m = format!("{} requests were not sent: every slot was busy", l.skipped);
            Some(Finding::new(
                FindingKind::Skipped,
                Severity::Warning,
                None,
                m,
            ))
        }
    }
}

/// Warnings that explain a figure: timeouts shorter than a gateway's retry cycle, failed
/// warm-up requests.
fn notes(
    info: &RunInfo,
    agg: &Aggregate,
    features: &BTreeMap<String, FeatureSummary>,
    l: &Load,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let timeouts: u64 = features
        .values()
        .filter_map(|f| f.errors_by_class.get(&ErrorClass::Timeout))
        .sum();
    if timeouts > 0 && info.request_timeout_s < RETRY_CYCLE_S + 6.0 {
        let m = format!(
            "{timeouts} requests timed out after {} s: a real AI Gateway answers a failing upstream \
             only after its retry cycle (4 attempts, 3 + 9 + 27 s: about {RETRY_CYCLE_S} s), so \
             with request_timeout_s under about 45 s its answer is never seen",
            info.request_timeout_s
        );
        out.push(Finding::new(
            FindingKind::RetryCycle,
            Severity::Warning,
            None,
            m,
        ));
    }
    if agg.warmup_errors > 0 {
        let m = format!(
            "{} of {} warm-up requests failed (left out of the figures and of the verdict)",
            agg.warmup_errors, l.warmup
        );
        out.push(Finding::new(
            FindingKind::WarmupErrors,
            Severity::Warning,
            None,
            m,
        ));
    }
    out
}

/// A run with no successful measured request measured nothing: it cannot pass, whatever else
/// it says.
fn nothing_measured(load: &LoadSpec, agg: &Aggregate, l: &Load) -> Option<Finding> {
    let ok = agg.completed() - agg.errors();
    if ok > 0 {
        return None;
    }
    let why = if l.sent == 0 && l.skipped == 0 {
        "nothing was sent (a rate of 0, max_requests = 0, or a window too short for one send)"
            .to_owned()
    } else if l.warmup > 0 && agg.completed() + l.cut_off + l.skipped == 0 {
        format!(
            "all {} requests fell in the warm-up (load.warmup_s = {} s covers the whole run)",
            l.warmup, load.warmup_s
        )
    } else if agg.completed() == 0 && l.cut_off > 0 {
        format!(
            "all {} measured requests were cut off without a complete answer",
            l.cut_off
        )
    } else if agg.completed() == 0 {
        format!("all {} measured sends were skipped", l.skipped)
    } else {
        format!("all {} measured requests failed", agg.completed())
    };
    let m = format!("no request was measured: {why}");
    Some(Finding::new(
        FindingKind::NothingMeasured,
        Severity::Error,
        None,
        m,
    ))
}

fn slo_finding(feature: &str, f: &FeatureSummary) -> Option<Finding> {
    let (slo, g) = (f.slo.as_ref()?, f.goodput.as_ref()?);
    let Some(attained) = g.attainment else {
        // No evidence is never a pass: an SLO that could judge no answer fails.
        let m = format!(
            "the SLO ({}) judged none of {} answers: they came whole (one event each), where \
             TPOT is not measurable; bound TTFT (time to the whole answer) or E2E instead",
            slo.describe(),
            g.unjudged
        );
        return (g.unjudged > 0)
            .then(|| Finding::new(FindingKind::Slo, Severity::Error, Some(feature), m));
    };
    (attained < slo.attainment).then(|| {
        let m = format!(
            "{:.2} % of requests met the SLO ({}), below the {:.2} % required",
            attained * 100.0,
            slo.describe(),
            slo.attainment * 100.0
        );
        Finding::new(FindingKind::Slo, Severity::Error, Some(feature), m)
    })
}

/// How the feature's answers came: a TPOT bound not judged on answers that came whole, a share
/// of answers cut by `max_tokens` past the scenario's bound, answers from another model.
fn answer_findings(feature: &str, f: &FeatureSummary) -> Vec<Finding> {
    let a = &f.answers;
    let mut out = Vec::new();
    let tpot_bound = f.slo.as_ref().and_then(|s| s.tpot_ms);
    if let (Some(b), true) = (tpot_bound, a.single_event > 0) {
        let m = format!(
            "TPOT ≤ {b} ms was not judged on {} of {} answers: they came whole (one event), where \
             TPOT and ITL are not measurable",
            a.single_event,
            a.total()
        );
        out.push(Finding::new(
            FindingKind::Slo,
            Severity::Warning,
            Some(feature),
            m,
        ));
    }
    let bound = f.slo.as_ref().and_then(|s| s.max_length_share);
    if let (Some(b), Some(share)) = (bound, a.length_share().filter(|s| *s > 0.0)) {
        let m = format!(
            "{:.2} % of answers ended cut by max_tokens (finish_reason length; {}), the scenario \
             allows {:.2} %",
            share * 100.0,
            a.finish_line(),
            b * 100.0
        );
        let severity = if share > b {
            Severity::Error
        } else {
            Severity::Info
        };
        out.push(Finding::new(
            FindingKind::LengthCapped,
            severity,
            Some(feature),
            m,
        ));
    }
    if let Some(st) = f.stale_connections {
        let m = format!(
            "{} requests went on a stale connection (a pooled connection the server had closed, \
             no byte of answer): each was sent again once on a fresh connection, and {} of them \
             answered. A server that closes keep-alive connections after errors does this",
            st.seen, st.retried_ok
        );
        out.push(Finding::new(
            FindingKind::RequestError,
            Severity::Warning,
            Some(feature),
            m,
        ));
    }
    for (pair, n) in &a.other_model {
        let m = format!(
            "{n} answers were served by another model than asked ({pair}): the target fell back \
             to a model it has, so the run measured the wrong one"
        );
        out.push(Finding::new(
            FindingKind::Routing,
            Severity::Error,
            Some(feature),
            m,
        ));
    }
    out
}

impl FeatureSummary {
    /// Every answer came whole (one event): TTFT is the time to the whole answer, and TPOT and
    /// ITL are not measurable. How every output shows a TPOT figure: the number, or that.
    pub fn tpot_shown(&self, shown: impl FnOnce() -> String) -> String {
        match self.answers.all_single_event() {
            true => NOT_MEASURABLE.to_owned(),
            false => shown(),
        }
    }
}

/// What a figure an answer cannot carry is shown as.
pub const NOT_MEASURABLE: &str = "not measurable";

/// The `info` notes of one kind, folded into one line.
#[derive(Debug, serde::Serialize)]
pub struct Note<'a> {
    pub kind: FindingKind,
    pub count: usize,
    /// The features they name (`run` for the run's own), each once, in order.
    pub features: Vec<&'a str>,
    /// The first one's message.
    pub first: &'a str,
}

impl super::Summary {
    /// The `info` notes folded by kind, in order of first appearance. Every output shows them
    /// so, after the errors and warnings.
    pub fn notes_folded(&self) -> Vec<Note<'_>> {
        let mut out: Vec<Note> = Vec::new();
        for f in self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Info)
        {
            let feature = f.feature.as_deref().unwrap_or("run");
            match out.iter_mut().find(|n| n.kind == f.kind) {
                Some(n) => {
                    n.count += 1;
                    if !n.features.contains(&feature) {
                        n.features.push(feature);
                    }
                }
                None => out.push(Note {
                    kind: f.kind,
                    count: 1,
                    features: vec![feature],
                    first: &f.message,
                }),
            }
        }
        out
    }

    /// The features whose every answer came whole (one event): TTFT is the time to the whole
    /// answer there, and TPOT and ITL are not measurable.
    pub fn whole_answer_features(&self) -> Vec<&str> {
        self.features
            .iter()
            .filter(|(_, f)| f.answers.all_single_event())
            .map(|(k, _)| k.as_str())
            .collect()
    }
}
