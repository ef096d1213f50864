//! The HTML report in real headless Chromium (Debian's package; `.ci/run` installs it), with
//! networking disabled: the page renders, every chart draws (no blank canvas), no request
//! leaves the page, and no script error or console error occurs. A screenshot is kept under
//! `target/report-screenshot.png`.
//!
//! Without Chromium the test says so and passes, except under CI (`CI` set), where a missing
//! browser is a failure: the CI run must exercise the page.

mod common;

use common::{browser, run_cli};
use std::process::Command;

#[test]
fn the_html_report_renders_offline_in_chromium() {
    let Some(browser) = browser::browser_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (code, stdout, stderr) = run_cli(&[
        "run",
        "scenarios/gate.toml",
        "--out",
        dir.to_str().unwrap(),
        "--duration",
        "3",
        "--rate",
        "20",
    ]);
    assert!(matches!(code, 0 | 4), "exit {code}: {stdout}{stderr}");
    let check = browser::self_check(&browser, &dir.join("report.html"), tmp.path());
    assert_eq!(check["rendered"], "true", "{check}");
    assert_eq!(check["errors"], serde_json::json!([]), "{check}");
    assert_eq!(
        check["requests"],
        serde_json::json!([]),
        "no request leaves the page: {check}"
    );
    let canvases = check["canvases"].as_u64().unwrap();
    // Per feature three CDFs, three charts over time, two of the schedule.
    assert!(canvases >= 2 * 3 + 3 + 2, "{check}");
    assert_eq!(check["blank"], 0, "every chart draws: {check}");
    let headings = check["headings"].to_string();
    // The report opens with its answer: the overview is the first section, on the first screen.
    assert_eq!(check["headings"][0], "Overview", "{check}");
    let top = check["overview_top"].as_f64().unwrap();
    assert!(
        top >= 0.0 && top < check["screen_height"].as_f64().unwrap(),
        "{check}"
    );
    assert_eq!(
        check["overview_chart"], true,
        "the latency chart draws: {check}"
    );
    for h in [
        "Errors and warnings",
        "Features",
        "Over time",
        "Load: target against achieved",
        "Resolved plan",
    ] {
        assert!(headings.contains(h), "{h}: {headings}");
    }
    let shot = common::repo().join("target/report-screenshot.png");
    let status = Command::new(&browser)
        .args(browser::chromium_args(&tmp.path().join("profile-2")))
        .arg("--window-size=1280,2400")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", dir.join("report.html").display()))
        .output()
        .expect("chromium runs");
    assert!(
        shot.is_file(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}
