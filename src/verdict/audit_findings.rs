//! The self-audit's findings: a schedule not kept, an SLO verdict the harness's own error could
//! have decided (both `invalid_measurement`, exit 4), figures degraded beyond the tolerance,
//! a saturated thread or core, and token counts that are estimates. Each message says which
//! figures are affected, by at most how much, and which way.

use super::{FeatureSummary, Finding, FindingKind, Load, Severity};
use crate::audit::schedule::WINDOW_TOLERANCE;
use crate::audit::{ScheduleAudit, Trust, FIGURE_TOLERANCE};
use crate::measure::TokenSource;
use std::collections::BTreeMap;

/// A harness thread or a core busier than this over the run is said out loud (a core 88 % busy
/// already makes threads on it wait for their turn).
const SATURATED: f64 = 0.85;
/// A virtual machine's stolen time above this share of a core is noted.
const STEAL: f64 = 0.02;

pub(super) fn findings(l: &Load, features: &BTreeMap<String, FeatureSummary>) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(s) = l.schedule.as_ref().filter(|s| !s.kept) {
        out.push(Finding::new(
            FindingKind::InvalidMeasurement,
            Severity::Error,
            None,
            schedule_message(s),
        ));
    }
    let bound = l.receive.bound_ms;
    let probes = l.receive.delay_ms.n;
    for (k, f) in features {
        if let Some(a) = f.slo_audit.as_ref().filter(|a| !a.decided) {
            let m = format!(
                "the SLO verdict lies within the harness's own error: {:.2} % of requests met it \
                 as measured, between {:.2} % and {:.2} % once the harness's receive delay \
                 (p99 {bound:.3} ms per wait, worst {:.3} ms, over {probes} probes) and each \
                 request's own send lateness are allowed for; {:.2} % is required",
                a.measured * 100.0,
                a.range[0] * 100.0,
                a.range[1] * 100.0,
                l.receive.worst_ms,
                a.required * 100.0
            );
            out.push(Finding::new(
                FindingKind::InvalidMeasurement,
                Severity::Error,
                Some(k),
                m,
            ));
        }
        if let Some(b) = &f.burst {
            let m = format!(
                "chunks arrive in bursts: ITL p50 {:.3} ms between reads at the client against \
                 {:.3} ms per token (TPOT p50), and {} of reads carried several events at once, \
                 so the ITL figures show transport batching, not the server's token timing \
                 (TTFT, TPOT and E2E are not affected)",
                b.itl_p50_ms,
                b.tpot_p50_ms,
                pct(b.multi_event_reads)
            );
            out.push(Finding::new(
                FindingKind::BurstDistorted,
                Severity::Warning,
                Some(k),
                m,
            ));
        }
        if let Some(m) = tokens_message(f) {
            out.push(Finding::new(
                FindingKind::TokensEstimated,
                Severity::Info,
                Some(k),
                m,
            ));
        }
    }
    if probes == 0 && features.values().any(|f| f.latency_ms.ttft.n > 0) {
        let m = "the receive-delay probe did not run (see stderr): the latency figures carry no \
                 bound on the harness's own delay"
            .to_owned();
        out.push(Finding::new(
            FindingKind::Unaudited,
            Severity::Warning,
            None,
            m,
        ));
    }
    out.extend(degraded(features, bound, probes));
    out.extend(saturation(l));
    out
}

/// Features listed by name in the degraded-figures finding; the rest are counted.
const DEGRADED_LISTED: usize = 6;

/// One finding for the run: each feature's figures that the harness's own delays (receive
/// side, send lateness) can move past the tolerance, with bound and direction.
fn degraded(
    features: &BTreeMap<String, FeatureSummary>,
    bound: f64,
    probes: u64,
) -> Option<Finding> {
    let listed: Vec<String> = features
        .iter()
        .filter_map(|(k, f)| {
            let moved: Vec<String> = f
                .trust
                .iter()
                .filter(|(_, t)| t.reasons.iter().any(|r| r.bounded()))
                .map(|(figure, t)| describe(figure, t))
                .collect();
            (!moved.is_empty()).then(|| format!("{k}: {}", moved.join(", ")))
        })
        .collect();
    if listed.is_empty() {
        return None;
    }
    let more = listed.len().saturating_sub(DEGRADED_LISTED);
    let mut m = format!(
        "the harness's own delay (receive p99 {bound:.3} ms per wait over {probes} probes, up \
         to two waits per figure: connection and read; send lateness for TTFT from the intended send) \
         can move these figures by more than {:.0} % of their median: {}",
        FIGURE_TOLERANCE * 100.0,
        listed[..listed.len().min(DEGRADED_LISTED)].join("; ")
    );
    if more > 0 {
        m.push_str(&format!(
            "; and {more} more features (summary.json: features.*.trust)"
        ));
    }
    Some(Finding::new(
        FindingKind::DegradedFigures,
        Severity::Warning,
        None,
        m,
    ))
}

fn pct(v: f64) -> String {
    format!("{:.2} %", v * 100.0)
}

fn schedule_message(s: &ScheduleAudit) -> String {
    let mut m = format!(
        "the schedule was not kept: {} of {} sends ({}, 95 % interval {} to {}) started more \
         than {:.3} ms after their intended instant (load.max_late_share {})",
        s.late,
        s.sends,
        pct(s.late_share),
        pct(s.late_share_ci95[0]),
        pct(s.late_share_ci95[1]),
        s.late_threshold_ms,
        pct(s.max_late_share),
    );
    let w = s.windows.as_ref();
    if let Some(e) = w
        .and_then(|w| w.worst_error)
        .filter(|e| *e > WINDOW_TOLERANCE)
    {
        m.push_str(&format!(
            "; the worst second delivered {} off its intended count",
            pct(e)
        ));
    }
    m.push_str(
        ". This moves the offered load (achieved_rps) and every feature's TTFT from the \
         intended send and goodput; TTFT, ITL, TPOT and E2E from the send are not moved by it. ",
    );
    let behind = w.is_some_and(|w| w.delivered_min < 0.9 * w.intended_min);
    m.push_str(if behind {
        "Some seconds delivered fewer requests than intended: under the intended load the \
         server's latency may be higher than these figures"
    } else {
        "The sends bunched: the server saw bursts the schedule did not hold, so its queueing \
         may read higher than under the intended arrival process"
    });
    m
}

fn describe(figure: &str, t: &Trust) -> String {
    let b = t.bound_ms.unwrap_or(0.0);
    match t.direction {
        Some(crate::audit::Direction::Over) => format!("{figure} can read up to {b:.3} ms high"),
        _ => format!("{figure} ± {b:.3} ms"),
    }
}

fn tokens_message(f: &FeatureSummary) -> Option<String> {
    let chunks = f
        .token_sources
        .get(&TokenSource::Chunks)
        .copied()
        .unwrap_or(0);
    let rule = f
        .token_sources
        .get(&TokenSource::TextRule)
        .copied()
        .unwrap_or(0);
    let total: u64 = f.token_sources.values().sum();
    if chunks + rule == 0 {
        return None;
    }
    let mut how = Vec::new();
    if chunks > 0 {
        how.push(format!("{chunks} one token per content event"));
    }
    if rule > 0 {
        how.push(format!("{rule} by the twin's text rule"));
    }
    Some(format!(
        "output tokens of {} of {total} requests are estimates (no usage in the answer, no \
         tokenizer named in [tokenizers]): {}; TPOT and tokens/s derive from them",
        chunks + rule,
        how.join(", ")
    ))
}

/// Shortest run whose thread and core shares are judged: the kernel counts CPU time in 10 ms
/// ticks, so a shorter run's shares are mostly rounding.
const SATURATION_MIN_S: f64 = 1.0;

fn saturation(l: &Load) -> Vec<Finding> {
    let mut out = Vec::new();
    let c = &l.client;
    if *c == crate::measure::cpu::ClientCpu::default() && l.sent > 0 {
        let m = "the harness's own CPU use is unknown (a summary rebuilt from results.ndjson \
                 of a run that wrote none): whether it was saturated cannot be judged"
            .to_owned();
        out.push(Finding::new(
            FindingKind::Unaudited,
            Severity::Warning,
            None,
            m,
        ));
    }
    if l.duration_s < SATURATION_MIN_S {
        return out;
    }
    if let Some(t) = c.busiest_thread.as_ref().filter(|t| t.busy >= SATURATED) {
        let m = format!(
            "the harness thread '{}' was busy {} of the run: what it serves waits (the \
             receive-delay bound says how long, p99 {:.3} ms)",
            t.name,
            pct(t.busy),
            l.receive.bound_ms
        );
        out.push(Finding::new(
            FindingKind::ClientSaturated,
            Severity::Warning,
            None,
            m,
        ));
    }
    for core in &c.cores {
        if core.busy >= SATURATED {
            let m = format!(
                "core {} was {} busy over the run (every process counted): threads on it, the \
                 harness's included, waited for it",
                core.cpu,
                pct(core.busy)
            );
            out.push(Finding::new(
                FindingKind::ClientSaturated,
                Severity::Warning,
                None,
                m,
            ));
        }
        if core.steal >= STEAL {
            let m = format!(
                "core {} lost {} of the run to the hypervisor (steal time): nothing on it ran \
                 meanwhile, the harness included (the receive-delay bound covers what that did \
                 to the figures)",
                core.cpu,
                pct(core.steal)
            );
            out.push(Finding::new(
                FindingKind::HostSteal,
                Severity::Info,
                None,
                m,
            ));
        }
    }
    out
}
