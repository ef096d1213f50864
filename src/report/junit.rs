//! `junit.xml` for GitLab's `artifacts:reports:junit` (quick-junit): a suite `run` with one
//! case per stage of the run, then a suite per feature with a case per corpus case, and one per
//! SLO, routing, conformance and gate check. A failure carries the figures or the diff. No
//! times or timestamps: the same run always gives the same file.

use super::{Report, StageStatus};
use crate::compare::Outcome;
use crate::verdict::{Finding, Severity};
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

/// The error findings of `feature` whose kind is one of `kinds`, as one failure case (or a pass).
fn findings_case(name: &str, findings: &[&Finding], kinds: &[&str], ok_detail: String) -> TestCase {
    let hit: Vec<&&Finding> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error && kinds.contains(&f.kind.as_str()))
        .collect();
    match hit.first() {
        None => passed(name, ok_detail),
        Some(first) => {
            let detail: Vec<String> = hit
                .iter()
                .map(|f| format!("{}: {}", f.kind, f.message))
                .collect();
            failed(name, &first.kind, &first.message, detail.join("\n\n"))
        }
    }
}

fn run_suite(r: &Report) -> TestSuite {
    let s = r.summary;
    let mut suite = TestSuite::new("run");
    for stage in r.stages {
        suite.add_test_case(match &stage.status {
            StageStatus::Passed => passed(&stage.name, stage.detail.clone()),
            StageStatus::Failed(m) => failed(&stage.name, "stage", m, stage.detail.clone()),
            StageStatus::Skipped(m) => skipped(&stage.name, m),
        });
    }
    let run_level: Vec<&Finding> = s.findings.iter().filter(|f| f.feature.is_none()).collect();
    let audit = ["invalid_measurement", "internal_error"];
    suite.add_test_case(findings_case(
        "self-audit",
        &run_level,
        &audit,
        format!(
            "send lateness p99 {} ms, receive delay p99 {} ms",
            num(s.load.send_lateness_ms.p99),
            num(s.load.receive.delay_ms.p99)
        ),
    ));
    let others: Vec<&Finding> = run_level
        .iter()
        .copied()
        .filter(|f| !audit.contains(&f.kind.as_str()))
        .collect();
    let kinds: Vec<&str> = others.iter().map(|f| f.kind.as_str()).collect();
    suite.add_test_case(findings_case(
        "run",
        &others,
        &kinds,
        format!(
            "{} requests, {} errors, verdict {}",
            s.requests, s.errors, s.verdict
        ),
    ));
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
    let l = &f.latency_ms;
    let figures = format!(
        "TTFT p50 {} p99 {} ms, TPOT p50 {} ms, E2E p99 {} ms",
        num(l.ttft.p50),
        num(l.ttft.p99),
        num(l.tpot.p50),
        num(l.e2e.p99)
    );
    if f.slo.is_some() {
        let attained = f.goodput.as_ref().and_then(|g| g.attainment);
        suite.add_test_case(findings_case(
            "slo",
            &findings,
            &["slo", "invalid_measurement"],
            format!("attainment {}; {figures}", num(attained)),
        ));
    }
    if let Some(rt) = &f.routing {
        let seen: Vec<String> = rt.observed.iter().map(|o| format!("{o:?}")).collect();
        suite.add_test_case(findings_case(
            "routing",
            &findings,
            &["routing", "parameter_drift"],
            seen.join("\n"),
        ));
    }
    if let Some(c) = &f.conformance {
        suite.add_test_case(findings_case(
            "conformance",
            &findings,
            &["conformance_protocol", "conformance_content", "protocol"],
            format!(
                "{} compared, {} mismatched, {} new",
                c.compared, c.mismatched, c.new
            ),
        ));
    }
    for ch in r
        .comparison
        .into_iter()
        .flat_map(|c| &c.checks)
        .filter(|c| c.feature == feature)
    {
        let name = format!("gate {}", ch.metric);
        suite.add_test_case(match (ch.outcome, ch.required) {
            (Outcome::Regression, _) => {
                failed(&name, "regression", &ch.reason, ch.reason.clone())
            }
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
    // Request errors fail their corpus cases, gate regressions their gate cases.
    let judged = [
        "request_error",
        "regression",
        "slo",
        "routing",
        "parameter_drift",
        "conformance_protocol",
        "conformance_content",
        "protocol",
        "invalid_measurement",
    ];
    let rest: Vec<&Finding> = findings
        .iter()
        .copied()
        .filter(|x| !judged.contains(&x.kind.as_str()))
        .collect();
    let kinds: Vec<&str> = rest.iter().map(|x| x.kind.as_str()).collect();
    suite.add_test_case(findings_case("errors", &rest, &kinds, figures));
    suite
}

/// The JUnit XML of a report.
pub fn render(r: &Report) -> Result<String, String> {
    let mut report = quick_junit::Report::new(format!("duo-harness {}", r.summary.scenario));
    report.add_test_suite(run_suite(r));
    for feature in r.summary.features.keys() {
        report.add_test_suite(feature_suite(r, feature));
    }
    report.to_string().map_err(|e| e.to_string())
}
