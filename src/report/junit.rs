//! `junit.xml` for GitLab's `artifacts:reports:junit` (quick-junit): a suite `run` with one
//! case per stage of the run, then a suite per feature with a case per corpus case, and one per
//! SLO, routing, conformance and gate check. A failure carries the figures or the diff. No
//! times or timestamps: the same run always gives the same file.

use super::{Report, StageStatus};
use crate::compare::Outcome;
use crate::verdict::{FeatureSummary, Finding, Severity, StageName};
use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

fn passed(name: &str, out: impl Into<String>) -> TestCase {
    let mut c = TestCase::new(name, TestCaseStatus::success());
    let out = out.into();
    if !out.is_empty() {
        c.set_system_out(out);
    }
    c
}

fn failed(name: &str, kind: &str, message: &str, detail: impl Into<String>) -> TestCase {
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
    status.set_type(kind);
    status.set_message(first_line(message));
    status.set_description(detail.into());
    TestCase::new(name, status)
}

fn skipped(name: &str, why: &str) -> TestCase {
    let mut status = TestCaseStatus::skipped();
    status.set_message(why);
    TestCase::new(name, status)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// The error findings among `findings` of `stage`'s kinds (`verdict::kind`), as one failure
/// case named after the stage (or a pass).
fn stage_case(stage: StageName, findings: &[&Finding], ok_detail: String) -> TestCase {
    let hit: Vec<&&Finding> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error && f.kind.stage() == stage)
        .collect();
    match hit.first() {
        None => passed(stage.name(), ok_detail),
        Some(first) => {
            let detail: Vec<String> = hit
                .iter()
                .map(|f| format!("{}: {}", f.kind, f.message))
                .collect();
            failed(
                stage.name(),
                first.kind.name(),
                &first.message,
                detail.join("\n\n"),
            )
        }
    }
}

/// The stages a case is made for: every feature's that apply or found something, and the
/// run's that its own stage list lacks.
const STAGES: [StageName; 7] = [
    StageName::Preflight,
    StageName::Replay,
    StageName::Routing,
    StageName::Conformance,
    StageName::Slo,
    StageName::Audit,
    StageName::Gate,
];

fn run_suite(r: &Report) -> TestSuite {
    let mut suite = TestSuite::new("run");
    for stage in r.stages {
        suite.add_test_case(match &stage.status {
            StageStatus::Passed => passed(&stage.name, stage.detail.clone()),
            StageStatus::Failed(m) => failed(&stage.name, "stage", m, stage.detail.clone()),
            StageStatus::Skipped(m) => skipped(&stage.name, m),
        });
    }
    // Run-level findings of a stage the list does not show still fail a case of that stage.
    let run_level: Vec<&Finding> = r
        .summary
        .findings
        .iter()
        .filter(|f| f.feature.is_none())
        .collect();
    for stage in STAGES {
        let listed = r.stages.iter().any(|s| s.name == stage.name());
        let found = run_level
            .iter()
            .any(|f| f.kind.stage() == stage && f.severity == Severity::Error);
        if !listed && found {
            suite.add_test_case(stage_case(stage, &run_level, String::new()));
        }
    }
    suite
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

fn feature_suite(r: &Report, feature: &str) -> TestSuite {
    let f = &r.summary.features[feature];
    let findings: Vec<&Finding> = r
        .summary
        .findings
        .iter()
        .filter(|x| x.feature.as_deref() == Some(feature))
        .collect();
    let mut suite = TestSuite::new(feature);
    if let Some(agg) = r.agg.features.get(feature) {
        for (id, c) in &agg.cases {
            let name = format!("case {id}");
            let what = format!(
                "{} requests, {} errors, {} cut off",
                c.requests, c.errors, c.cut_off
            );
            suite.add_test_case(match (&c.first_error, c.cut_off) {
                (Some(e), _) => failed(&name, "request_error", e, what),
                (None, n) if n > 0 => failed(&name, "cut_off", "no complete answer", what),
                _ if c.first_mismatch.is_some() => {
                    let m = c.first_mismatch.as_deref().unwrap_or_default();
                    failed(&name, "session", m, what)
                }
                _ => passed(&name, what),
            });
        }
    }
    for stage in STAGES {
        if let Some(detail) = stage_detail(f, stage, &findings) {
            suite.add_test_case(stage_case(stage, &findings, detail));
        }
    }
    for ch in r
        .comparison
        .into_iter()
        .flat_map(|c| &c.checks)
        .filter(|c| c.feature == feature)
    {
        let name = format!("gate {}", ch.metric);
        suite.add_test_case(match (ch.outcome, ch.required) {
            (Outcome::Regression, _) => failed(&name, "regression", &ch.reason, ch.reason.clone()),
            // No evidence is never a pass: a required check that could not be judged fails.
            (Outcome::Inconclusive, true) => {
                let m = format!("could not be judged: {}", ch.reason);
                failed(&name, "undecided", &m, m.clone())
            }
            (Outcome::Inconclusive, false) => {
                skipped(&name, &format!("inconclusive (optional): {}", ch.reason))
            }
            (Outcome::NoRegression, _) => passed(&name, ch.reason.clone()),
        });
    }
    suite
}

/// What a feature's case for `stage` says when it passes; `None`: the stage does not apply to
/// the feature and found nothing there.
fn stage_detail(f: &FeatureSummary, stage: StageName, findings: &[&Finding]) -> Option<String> {
    let l = &f.latency_ms;
    let ttft = match f.answers.all_single_event() {
        true => "time to the whole answer",
        false => "TTFT",
    };
    let figures = format!(
        "{ttft} p50 {} p99 {} ms, TPOT p50 {}, E2E p99 {} ms",
        num(l.ttft.p50),
        num(l.ttft.p99),
        f.tpot_shown(|| format!("{} ms", num(l.tpot.p50))),
        num(l.e2e.p99)
    );
    let found = findings.iter().any(|x| x.kind.stage() == stage);
    let detail = match stage {
        StageName::Replay => Some(format!(
            "{} requests, {} errors; {figures}",
            f.requests, f.errors
        )),
        StageName::Slo => f.slo.map(|_| {
            let attained = f.goodput.as_ref().and_then(|g| g.attainment);
            format!("attainment {}; {figures}", num(attained))
        }),
        StageName::Routing => f.routing.as_ref().map(|rt| {
            let seen: Vec<String> = rt
                .observed
                .iter()
                .map(|o| format!("{} served {} ({} calls)", o.backend, o.model, o.calls))
                .collect();
            seen.join("\n")
        }),
        StageName::Conformance => f.conformance.as_ref().map(|c| {
            format!(
                "{} compared, {} mismatched, {} new",
                c.compared, c.mismatched, c.new
            )
        }),
        _ => None,
    };
    detail.or_else(|| found.then(String::new))
}

/// The JUnit XML of a report.
pub fn render(r: &Report) -> Result<String, String> {
    let mut report = quick_junit::Report::new(format!("duo-harness {}", r.summary.scenario));
    report.add_test_suite(run_suite(r));
    for feature in r.summary.features.keys() {
        report.add_test_suite(feature_suite(r, feature));
    }
    // A server's words are in messages and details: the characters XML forbids go (the writer
    // escapes markup, not those), so the file always parses.
    let xml = report.to_string().map_err(|e| e.to_string())?;
    Ok(crate::escape::xml(&xml))
}
