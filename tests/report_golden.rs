//! Golden tests of the Markdown and JUnit reports (insta): a run built from records of known
//! timing (no clock, no socket: every figure is fixed), a failed SLO, a request error, and a
//! comparison with one regression, one inconclusive check and one pass. The JUnit output is also
//! read back by quick-junit's own parser: what GitLab reads is well-formed JUnit.

use duo_harness::compare::{Basis, Check, Comparison, GateVerdict, Outcome};
use duo_harness::measure::aggregate::Aggregate;
use duo_harness::measure::RequestRecord;
use duo_harness::plan::{GateMetric, LoadSpec, Slo, Threshold};
use duo_harness::report::{junit, markdown, Report, Stage, StageStatus};
use duo_harness::verdict::{summarise, Checks, RunInfo, Verdict};
use serde_json::json;
use std::collections::BTreeMap;

/// Request `i` of a feature: sent at `i × 100 ms`, first token after `ttft`, `tokens` tokens
/// `itl` apart; `error` makes it a failed request.
fn record(feature: &str, i: usize, ttft: f64, itl: f64, tokens: u64, error: bool) -> RequestRecord {
    let sent = i as f64 * 100.0;
    let chunks: Vec<_> = (0..tokens)
        .map(|k| json!({"t_ms": ttft + k as f64 * itl, "bytes": 8, "content": "x"}))
        .collect();
    let last = ttft + (tokens - 1) as f64 * itl;
    let err = error.then(|| json!({"class": "http5xx", "message": "500 Internal Server Error"}));
    serde_json::from_value(json!({
        "schema": "duo-harness/result/v1", "seq": i, "id": format!("{feature}-{}", i % 3),
        "feature": feature, "method": "POST", "path": "/v2/code/completions", "stream": true,
        "sent_at": "2026-11-29T00:00:00Z", "sent_ms": sent, "intended_ms": sent,
        "lateness_ms": 0.0, "queue_wait_ms": 0.0, "warmup": false, "disposition": "completed",
        "status": if error { 500 } else { 200 }, "headers": {}, "framing": "open_ai_sse",
        "headers_ms": 1.0,
        "first_content_ms": (!error).then_some(ttft), "last_content_ms": (!error).then_some(last),
        "end_ms": last + 1.0, "chunks": if error { vec![] } else { chunks }, "content": "",
        "usage": null, "output_tokens": (!error).then_some(tokens),
        "tokens_estimated": false, "token_source": "usage", "multi_token_chunks": false,
        "error": err
    }))
    .unwrap()
}

fn fixture() -> (duo_harness::verdict::Summary, Aggregate) {
    let mut slo = BTreeMap::new();
    slo.insert(
        "duo_chat".to_owned(),
        Slo {
            ttft_ms: Some(300.0),
            tpot_ms: None,
            e2e_ms: None,
            max_length_share: None,
            attainment: 0.9,
        },
    );
    let mut agg = Aggregate::new(slo);
    for i in 0..12 {
        let slow = i % 2 == 0;
        agg.add(&record(
            "duo_chat",
            i,
            if slow { 420.0 } else { 180.0 },
            10.0,
            6,
            false,
        ));
        agg.add(&record(
            "code_completions",
            i,
            40.0 + i as f64,
            5.0,
            4,
            i == 7,
        ));
    }
    let info = RunInfo {
        run_id: "20261129T000000Z-golden".into(),
        scenario: "golden".into(),
        target: "http://aigw.example:5052".into(),
        started_at: "2026-11-29T00:00:00+00:00".into(),
        duration_s: 1.5,
        scheduled: 24,
        cores: 2,
        request_timeout_s: 60.0,
        ..RunInfo::default()
    };
    let s = summarise(info, &LoadSpec::default(), &agg, &Checks::default());
    (s, agg)
}

fn comparison() -> Comparison {
    let check = |metric: &str, outcome, basis, worse: f64, lo: f64, hi: f64, reason: &str| Check {
        feature: "duo_chat".into(),
        mode: None,
        metric: GateMetric::parse(metric).unwrap(),
        outcome,
        basis,
        required: true,
        audit_widening: None,
        baseline: Some(250.0),
        current: Some(250.0 + worse),
        worse_by: Some(worse),
        interval: Some([lo, hi]),
        threshold: Threshold {
            relative: Some(0.1),
            absolute: Some(20.0),
        },
        allowed: 25.0,
        samples: [120, 118],
        more_requests: None,
        reason: reason.into(),
    };
    Comparison {
        schema: "duo-harness/comparison/v1".into(),
        baseline: "20261128T000000Z-golden (baselines/golden)".into(),
        current: "20261129T000000Z-golden (reports/golden)".into(),
        verdict: GateVerdict::Regression,
        current_verdict: Some(Verdict::Pass),
        differences: Vec::new(),
        method: "percentile bootstrap over requests (1000 resamples of each run, independently), 95 % intervals".into(),
        confidence: 0.95,
        regressions: 1,
        inconclusive: 1,
        undecided: 1,
        checks: vec![
            check("ttft_p50", Outcome::Regression, Basis::Interval, 170.0, 150.0, 190.0, "worse by 150.000 to 190.000, past the 25.000 allowed"),
            check("ttft_p99", Outcome::Inconclusive, Basis::Interval, 20.0, -5.0, 60.0, "the interval -5.000 to 60.000 spans the 25.000 allowed; about 300 more requests per run would decide it"),
            check("error_rate", Outcome::NoRegression, Basis::Interval, 0.0, 0.0, 0.0, "within the 0.010 allowed (at most 0.000 worse)"),
        ],
    }
}

fn stages() -> Vec<Stage> {
    vec![
        Stage {
            name: "health".into(),
            status: StageStatus::Passed,
            detail: "GET http://aigw.example:5052/monitoring/healthz answered 200".into(),
        },
        Stage {
            name: "models".into(),
            status: StageStatus::Failed(
                "duo_chat: http://vllm:8000/v1/models lists [\"llama\"], not 'mistral'".into(),
            ),
            detail: String::new(),
        },
    ]
}

#[test]
fn markdown_and_junit_are_stable() {
    let (summary, agg) = fixture();
    let scenario = std::path::Path::new("scenarios/quickstart.toml");
    let plan = duo_harness::plan::PlanDocument {
        plan: duo_harness::plan::resolve(scenario, Default::default(), "20261129T000000Z").unwrap(),
        resolved: duo_harness::plan::Resolved {
            target_url: "http://aigw.example:5052".into(),
            stack: None,
            features: Vec::new(),
        },
        merged_from: Vec::new(),
    };
    let (c, st) = (comparison(), stages());
    let report = Report {
        summary: &summary,
        agg: &agg,
        plan: &plan,
        comparison: Some(&c),
        stages: &st,
        capacity: None,
    };
    let md = markdown::render(
        &report,
        Some("https://gitlab.example/-/jobs/1/artifacts/file/report.html"),
    );
    insta::assert_snapshot!("report_md", md);
    let xml = junit::render(&report).unwrap();
    insta::assert_snapshot!("junit_xml", xml);
    let parsed = quick_junit::Report::deserialize_from_str(&xml).expect("well-formed JUnit");
    let failures: usize = parsed.test_suites.iter().map(|s| s.failures).sum();
    // models, slo (duo_chat missed 300 ms for half its requests), the request error (its case
    // and its feature's replay stage), the gate's regression and its required check that could
    // not be judged.
    assert_eq!(failures, 6, "{xml}");
    assert!(
        xml.contains("case code_completions-1"),
        "a case per corpus case"
    );
}
