//! `report.md`, sized for a merge-request comment: the verdict, a line per feature, what moved
//! against the baseline, the findings that matter (capped), and a link line to the HTML report.

use super::{Report, StageStatus};
use crate::compare::Outcome;
use crate::escape::markdown_code as cell;
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
        Verdict::Error => "💥 **error** (harness or infrastructure)",
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
        "### duo-harness: {} · {}\n\n{} requests, {} errors, scenario {}, target {}\n",
        cell(&s.scenario),
        badge(s.verdict),
        s.requests,
        s.errors,
        cell(&s.scenario),
        cell(&s.target)
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
    if !s.slices.is_empty() {
        let _ = writeln!(
            out,
            "\n**Slices** (one schedule, sent from {} processes)\n",
            s.slices.len()
        );
        for slice in &s.slices {
            let _ = writeln!(out, "- {}", cell(&slice.line()));
        }
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
        let whole = match f.answers.all_single_event() {
            true => " (whole answer)",
            false => "",
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} / {}{whole} | {} | {} | {attained} |",
            f.requests,
            f.errors,
            num(l.ttft.p50),
            num(l.ttft.p99),
            f.tpot_shown(|| num(l.tpot.p50)),
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
    // What the gate rests on: regressions, and required checks it could not judge. Optional
    // checks left unjudged are one line (comparison.json has each).
    let moved: Vec<_> = c
        .checks
        .iter()
        .filter(|ch| {
            ch.outcome == Outcome::Regression
                || (ch.required && ch.outcome != Outcome::NoRegression)
        })
        .collect();
    let unjudged = c
        .checks
        .iter()
        .filter(|ch| !ch.required && ch.outcome == Outcome::Inconclusive)
        .count();
    if unjudged > 0 {
        let _ = writeln!(
            out,
            "{unjudged} optional check(s) left unjudged (too few samples or too wide; each is in \
             comparison.json).\n"
        );
    }
    if moved.is_empty() {
        return;
    }
    *out += "| feature | metric | baseline | current | change [interval] | allowed | outcome |\n";
    *out += "|---|---|---:|---:|---:|---:|---|\n";
    // Regressions first, then what could not be judged.
    let mut moved = moved;
    moved.sort_by_key(|ch| (ch.outcome != Outcome::Regression, !ch.required));
    for ch in moved {
        let c = crate::compare::table::cells(ch);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} {} | {} | {} |",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
        );
    }
}

/// The `info` notes: one line, each kind once with its count.
fn notes(out: &mut String, s: &crate::verdict::Summary) {
    let notes: Vec<String> = s
        .notes_folded()
        .into_iter()
        .map(|n| format!("`{}` ×{}", n.kind, n.count))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(
            out,
            "\nNotes: {} (summary.json has each).",
            notes.join(", ")
        );
    }
}

/// The findings that are not notes, errors first (by the kind table's rank), each kind folded
/// into one line with a count and the features it names: a comment stays a few KB.
fn findings(out: &mut String, s: &crate::verdict::Summary) {
    let mut folded: Vec<(&crate::verdict::Finding, usize, Vec<&str>)> = Vec::new();
    for f in s.findings.iter().filter(|f| f.severity != Severity::Info) {
        let same = folded
            .iter_mut()
            .find(|(g, _, _)| g.kind == f.kind && g.severity == f.severity);
        match same {
            Some((_, n, features)) => {
                *n += 1;
                features.extend(f.feature.as_deref());
            }
            None => folded.push((f, 1, f.feature.as_deref().into_iter().collect())),
        }
    }
    if folded.is_empty() {
        notes(out, s);
        return;
    }
    let order = |f: &crate::verdict::Finding| (f.severity != Severity::Error, f.kind.rank());
    folded.sort_by_key(|(f, _, _)| order(f));
    *out += "\n**Findings**\n\n";
    for (f, n, mut features) in folded.into_iter().take(FINDINGS_SHOWN) {
        features.dedup();
        let count = match n {
            1 => String::new(),
            n => format!(" ×{n}"),
        };
        let named = match features.as_slice() {
            [] => String::new(),
            [one] => format!(" [{one}]"),
            [first, rest @ ..] => format!(" [{first} and {} more]", rest.len()),
        };
        let _ = writeln!(
            out,
            "- {} `{}`{count}{named}: {}",
            f.severity.name(),
            f.kind,
            cell(&f.message)
        );
    }
    notes(out, s);
}
