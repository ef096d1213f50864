//! `report.md`, sized for a merge-request comment: the verdict, a line per feature, what moved
//! against the baseline, the findings that matter (capped), and a link line to the HTML report.

use super::{Report, StageStatus};
use crate::compare::Outcome;
use crate::verdict::{Severity, Verdict};
use std::fmt::Write;

/// Findings listed before "and N more".
const FINDINGS_SHOWN: usize = 15;

fn num(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

fn badge(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "✅ **pass**",
        Verdict::Fail => "❌ **fail**",
        Verdict::Invalid => "⚠️ **invalid measurement**",
        Verdict::Error => "💥 **harness error**",
    }
}

/// One line, safe inside a table cell or a list item.
pub fn cell(s: &str) -> String {
    let one = s.lines().next().unwrap_or_default().replace('|', "\\|");
    match one.chars().count() > 160 {
        true => format!("{}…", one.chars().take(160).collect::<String>()),
        false => one,
    }
}

/// Agent Platform sessions, one line per feature that has them.
fn sessions(out: &mut String, s: &crate::verdict::Summary) {
    let rows: Vec<String> = s
        .features
        .iter()
        .filter_map(|(name, f)| {
            let ss = f.sessions.as_ref()?;
            let codes: Vec<String> = ss.codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
            Some(format!(
                "| {name} | {} | {} | {} | {} | {} | {} |",
                ss.sessions,
                codes.join(", "),
                num(ss.first_action_ms.p50),
                num(ss.tool_round_trip_ms.p50),
                num(ss.session_ms.p50),
                ss.mismatched
            ))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str("\n| Agent Platform | sessions | gRPC status | first action p50 ms | tool round trip p50 ms | session p50 ms | unlike their case |\n");
    out.push_str("|---|---:|---|---:|---:|---:|---:|\n");
    for r in rows {
        out.push_str(&r);
        out.push('\n');
    }
}

pub fn render(r: &Report, html_link: Option<&str>) -> String {
    let s = r.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### duo-harness: {} · {}\n\n{} requests, {} errors, scenario `{}`, target `{}`\n",
        s.scenario,
        badge(s.verdict),
        s.requests,
        s.errors,
        s.scenario,
        s.target
    );
    stages(&mut out, r);
    features(&mut out, s);
    sessions(&mut out, s);
    if let Some(c) = r.capacity {
        c.markdown(&mut out);
    }
    if let Some(c) = r.comparison {
        comparison(&mut out, c);
    }
    findings(&mut out, s);
    if let Some(link) = html_link {
        let _ = writeln!(out, "\n📊 [Full report (HTML)]({link})");
    }
    out
}

/// The stages on one line.
fn stages(out: &mut String, r: &Report) {
    let stages: Vec<String> = r
        .stages
        .iter()
        .map(|st| match &st.status {
            StageStatus::Passed => format!("✅ {}", st.name),
            StageStatus::Failed(m) => format!("❌ {} ({})", st.name, cell(m)),
            StageStatus::Skipped(m) => format!("⏭️ {} ({})", st.name, cell(m)),
        })
        .collect();
    if !stages.is_empty() {
        let _ = writeln!(out, "Stages: {}\n", stages.join(" · "));
    }
}

/// A row per feature.
fn features(out: &mut String, s: &crate::verdict::Summary) {
    *out += "| feature | requests | errors | TTFT p50 / p99 ms | TPOT p50 ms | E2E p99 ms | SLO attainment |\n";
    *out += "|---|---:|---:|---:|---:|---:|---:|\n";
    for (name, f) in &s.features {
        let l = &f.latency_ms;
        let attained = f
            .goodput
            .as_ref()
            .and_then(|g| g.attainment)
            .map_or("–".into(), |a| format!("{:.1} %", a * 100.0));
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} / {} | {} | {} | {attained} |",
            f.requests,
            f.errors,
            num(l.ttft.p50),
            num(l.ttft.p99),
            num(l.tpot.p50),
            num(l.e2e.p99)
        );
    }
}

/// The gate's verdict, and a row per check that is not "no regression".
fn comparison(out: &mut String, c: &crate::compare::Comparison) {
    let _ = writeln!(
        out,
        "\n**Against the baseline** ({} checks: {} regression(s), {} inconclusive, {} of them \
         required): gate {}\n",
        c.checks.len(),
        c.regressions,
        c.inconclusive,
        c.undecided,
        crate::compare::verdict_line(c)
    );
    let moved: Vec<_> = c
        .checks
        .iter()
        .filter(|ch| ch.outcome != Outcome::NoRegression)
        .collect();
    if moved.is_empty() {
        return;
    }
    *out += "| feature | metric | baseline | current | worse by [interval] | allowed | outcome |\n";
    *out += "|---|---|---:|---:|---:|---:|---|\n";
    for ch in moved {
        let interval = ch
            .interval
            .map_or("–".into(), |[lo, hi]| format!("[{lo:.1}, {hi:.1}]"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} {interval} | {:.1} | {} |",
            ch.feature,
            ch.metric,
            num(ch.baseline),
            num(ch.current),
            num(ch.worse_by),
            ch.allowed,
            ch.outcome.name()
        );
    }
}

/// The findings that are not notes, the first few.
fn findings(out: &mut String, s: &crate::verdict::Summary) {
    let shown: Vec<_> = s
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Info)
        .collect();
    if shown.is_empty() {
        return;
    }
    *out += "\n**Findings**\n\n";
    for f in shown.iter().take(FINDINGS_SHOWN) {
        let feature = f
            .feature
            .as_deref()
            .map_or(String::new(), |x| format!(" [{x}]"));
        let _ = writeln!(
            out,
            "- {} `{}`{feature}: {}",
            f.severity.name(),
            f.kind,
            cell(&f.message)
        );
    }
    if shown.len() > FINDINGS_SHOWN {
        let _ = writeln!(
            out,
            "- and {} more: see the HTML report",
            shown.len() - FINDINGS_SHOWN
        );
    }
}
