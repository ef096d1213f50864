//! `report` through the real command line: a killed run judged from what it left (a torn last
//! line reported and skipped), two runs of one plan merged exactly (the merged percentiles are
//! those of the union of the requests), runs of different plans refused, and every file a run
//! writes valid against its schema; a run's summary is what `report` rebuilds from its folder,
//! and every finding kind lands in one stage in every output. The HTML report itself is tested
//! in `html_report.rs`.

mod common;

use common::{assert_schema, json_file, run_cli};
use duo_harness::stats::Percentiles;
use std::io::Write;
use std::path::Path;

/// A short open-loop run of the gate scenario into `dir`.
fn short_run(dir: &Path, extra: &[&str]) -> i32 {
    let out = dir.to_str().unwrap();
    let mut args = vec![
        "run",
        "scenarios/gate.toml",
        "--out",
        out,
        "--duration",
        "3",
        "--rate",
        "20",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run_cli(&args);
    assert!(dir.join("results.ndjson").is_file(), "{stdout}{stderr}");
    code
}

#[test]
fn a_run_writes_every_report_and_each_file_is_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let code = short_run(&dir, &[]);
    assert!(matches!(code, 0 | 4), "exit {code}");
    assert_schema(
        "summary-v1.schema.json",
        &json_file(&dir.join("summary.json")),
    );
    assert_schema(
        "preflight-v1.schema.json",
        &json_file(&dir.join("preflight.json")),
    );
    let xml = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    let junit = quick_junit::Report::deserialize_from_str(&xml).expect("well-formed JUnit");
    let suites: Vec<&str> = junit.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(suites, ["run", "code_completions", "duo_chat"], "{xml}");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("[Full report (HTML)](report.html)"), "{md}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("default-src 'none'"),
        "the page may make no request"
    );
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "no remote script"
    );
    every_finding_kind_lands_in_one_stage_everywhere(&dir);
    report_rebuilds_the_runs_own_summary(&dir);
}

/// The ttft figures of one feature over several run folders' results, as the harness computes
/// them (exact below 20,000 samples).
fn union_ttft(dirs: &[&Path], feature: &str) -> Percentiles {
    let mut v = Vec::new();
    for d in dirs {
        for r in common::results(d) {
            let ok = r["error"].is_null() && r["disposition"] == "completed";
            if r["feature"] == feature && ok && r["warmup"] == false {
                v.extend(r["first_content_ms"].as_f64());
            }
        }
    }
    Percentiles::of(v)
}

#[test]
fn two_runs_of_one_plan_merge_into_the_union_of_their_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, merged) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("m"),
    );
    short_run(&a, &[]);
    short_run(&b, &[]);
    let (code, stdout, stderr) = run_cli(&[
        "report",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(matches!(code, 0 | 4), "exit {code}: {stdout}{stderr}");
    let (sa, sb, sm) = (
        json_file(&a.join("summary.json")),
        json_file(&b.join("summary.json")),
        json_file(&merged.join("summary.json")),
    );
    assert_schema("summary-v1.schema.json", &sm);
    let n = |s: &serde_json::Value| s["requests"].as_u64().unwrap();
    assert_eq!(n(&sm), n(&sa) + n(&sb));
    for feature in ["code_completions", "duo_chat"] {
        let got = &sm["features"][feature]["latency_ms"]["ttft"];
        let want = union_ttft(&[&a, &b], feature);
        assert_eq!(got["n"].as_u64(), Some(want.n), "{feature}");
        for q in ["p50", "p90", "p99", "max"] {
            let w = serde_json::to_value(&want).unwrap()[q].clone();
            assert_eq!(got[q], w, "{feature} {q}");
        }
    }
    assert_eq!(
        common::results(&merged).len(),
        common::results(&a).len() + common::results(&b).len()
    );
    // A merge never overwrites one of its own sources, nor a baseline its run.
    let (code, _, stderr) = run_cli(&[
        "report",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        a.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is one of the run folders"), "{stderr}");
    let (code, _, stderr) = run_cli(&[
        "baseline",
        "save",
        a.to_str().unwrap(),
        "--to",
        a.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!common::results(&a).is_empty(), "the run is whole");
    // Runs of another plan do not merge.
    let other = tmp.path().join("other");
    let (_, stdout, stderr) = run_cli(&[
        "run",
        "scenarios/quickstart.toml",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert!(other.join("summary.json").is_file(), "{stdout}{stderr}");
    let (code, _, stderr) = run_cli(&[
        "report",
        a.to_str().unwrap(),
        other.to_str().unwrap(),
        "--out",
        tmp.path().join("m2").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("different plans"), "{stderr}");
}

#[test]
fn a_killed_run_is_judged_from_what_it_left() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("killed");
    let mut child = std::process::Command::new(common::bin())
        .args([
            "run",
            "scenarios/gate.toml",
            "--duration",
            "30",
            "--rate",
            "20",
            "--out",
        ])
        .arg(&dir)
        .current_dir(common::repo())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let results = dir.join("results.ndjson");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while common::results_lines(&results) < 30 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL: no summary, no report
    child.wait().unwrap();
    assert!(!dir.join("summary.json").exists());
    // What a kill in the middle of a write leaves.
    let whole = common::results_lines(&results);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&results)
        .unwrap()
        .write_all(b"{\"schema\":\"duo-harness/result/v1\",\"seq\":")
        .unwrap();
    let (code, stdout, stderr) = run_cli(&["report", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "an interrupted run fails: {stdout}{stderr}");
    assert!(
        stderr.contains(&format!("results.ndjson:{}: torn last line", whole + 1)),
        "{stderr}"
    );
    let s = json_file(&dir.join("summary.json"));
    assert_schema("summary-v1.schema.json", &s);
    let kinds: Vec<&str> = s["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"interrupted"), "{kinds:?}");
    assert!(
        kinds.contains(&"unaudited"),
        "the CPU it never wrote is not made up: {kinds:?}"
    );
    let measured = common::results(&{
        // The torn line is not JSON: count the whole ones.
        let copy = tmp.path().join("whole");
        std::fs::create_dir_all(&copy).unwrap();
        let text = std::fs::read_to_string(&results).unwrap();
        let cut = text.rfind('\n').unwrap() + 1;
        std::fs::write(copy.join("results.ndjson"), &text[..cut]).unwrap();
        copy
    })
    .into_iter()
    .filter(|r| r["warmup"] == false && r["disposition"] == "completed")
    .count() as u64;
    assert_eq!(s["requests"].as_u64(), Some(measured));
    for f in ["report.html", "junit.xml", "report.md", "histograms.json"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
}

/// `run` judges its folder with the one judgement `report` uses: re-judging a finished run
/// gives its summary back, figure for figure.
fn report_rebuilds_the_runs_own_summary(dir: &Path) {
    let written = json_file(&dir.join("summary.json"));
    let (code, stdout, stderr) = run_cli(&["report", dir.to_str().unwrap()]);
    assert!(matches!(code, 0 | 4), "exit {code}: {stdout}{stderr}");
    let rebuilt = json_file(&dir.join("summary.json"));
    assert_eq!(written, rebuilt);
}

/// Every finding kind lands in the same stage in every output: the stage list (console,
/// Markdown, HTML) and the JUnit case of its feature.
fn every_finding_kind_lands_in_one_stage_everywhere(dir: &Path) {
    use duo_harness::verdict::{Finding, FindingKind, Severity, StageName};
    let mut folder = duo_harness::results::RunFolder::open(dir).unwrap();
    for &kind in FindingKind::ALL {
        let mut summary = folder.summary.clone().unwrap();
        summary.findings = vec![Finding::new(
            kind,
            Severity::Error,
            Some("duo_chat"),
            format!("planted {kind}"),
        )];
        let gate = duo_harness::plan::GateSpec::default();
        let judged = duo_harness::compare::gate::judge(&mut folder, summary, &gate, Vec::new());
        let failed: Vec<&str> = judged
            .stages
            .iter()
            .filter(|s| matches!(s.status, duo_harness::report::StageStatus::Failed(_)))
            .map(|s| s.name.as_str())
            .collect();
        // A preflight or gate finding comes with its own stage row (health, models, gate),
        // made by the code that makes the finding.
        if !matches!(kind.stage(), StageName::Preflight | StageName::Gate) {
            assert_eq!(failed, [kind.stage().name()], "{kind}: the stage list");
        }
        let agg = folder.aggregate();
        let view = duo_harness::report::Report {
            summary: &judged.summary,
            agg: &agg,
            plan: &folder.plan_json,
            comparison: None,
            stages: &judged.stages,
            capacity: None,
        };
        let xml = duo_harness::report::junit::render(&view).unwrap();
        let junit = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        let chat = junit
            .test_suites
            .iter()
            .find(|s| s.name.as_str() == "duo_chat")
            .unwrap();
        let failing: Vec<&str> = chat
            .test_cases
            .iter()
            .filter(|c| matches!(c.status, quick_junit::TestCaseStatus::NonSuccess { .. }))
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failing, [kind.stage().name()], "{kind}: the JUnit case");
    }
}
