//! The HTML report in real headless Chromium (Debian's package; `.ci/run` installs it), with
//! networking disabled: the page renders, every chart draws (no blank canvas), no request
//! leaves the page, and no script error or console error occurs. A screenshot is kept under
//! `target/report-screenshot.png`.
//!
//! Without Chromium the test says so and passes, except under CI (`CI` set), where a missing
//! browser is a failure: the CI run must exercise the page.

mod common;

use common::run_cli;
use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// Collects errors from the first moment (before the report's scripts run).
const EARLY: &str = r#"<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push("error: " + e.message));
document.addEventListener("securitypolicyviolation", e => window.__errors.push("blocked: " + e.blockedURI));
const __ce = console.error; console.error = (...a) => { window.__errors.push("console: " + a.join(" ")); __ce(...a); };
</script>"#;

/// After load: what rendered, which canvases hold a drawn pixel, what was requested.
const CHECK: &str = r#"<script>
window.addEventListener("load", () => setTimeout(() => {
  const canvases = [...document.querySelectorAll("canvas")];
  const blank = canvases.filter(c => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return false;
    return true;
  }).length;
  const out = document.createElement("pre");
  out.id = "selfcheck";
  out.textContent = JSON.stringify({
    rendered: document.documentElement.getAttribute("data-rendered"),
    canvases: canvases.length, blank,
    errors: window.__errors,
    requests: performance.getEntriesByType("resource").map(r => r.name),
    headings: [...document.querySelectorAll("h2")].map(h => h.textContent),
  });
  document.body.append(out);
}, 500));
</script>"#;

fn chromium_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        // No network: every name resolves nowhere, every connection goes to a closed proxy.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
        "--virtual-time-budget=5000",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

#[test]
fn the_html_report_renders_offline_in_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "Chromium is missing under CI: .ci/run installs Debian's chromium"
        );
        eprintln!("skipped: no Chromium here (apt-get install chromium)");
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
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let probe = html
        .replacen(
            "<meta charset=\"utf-8\">",
            &format!("<meta charset=\"utf-8\">{EARLY}"),
            1,
        )
        .replacen("</body>", &format!("{CHECK}</body>"), 1);
    let page = tmp.path().join("probe.html");
    std::fs::write(&page, probe).unwrap();
    let dom = Command::new(&browser)
        .args(chromium_args(&tmp.path().join("profile-1")))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&dom.stdout);
    let start = dom.find("<pre id=\"selfcheck\">").expect("the check ran") + 20;
    let end = start + dom[start..].find("</pre>").unwrap();
    let text = dom[start..end]
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    let check: serde_json::Value = serde_json::from_str(&text).unwrap();
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
    for h in [
        "Findings",
        "Features",
        "Over time",
        "Load: target against achieved",
        "Resolved plan",
    ] {
        assert!(headings.contains(h), "{h}: {headings}");
    }
    let shot = common::repo().join("target/report-screenshot.png");
    let status = Command::new(&browser)
        .args(chromium_args(&tmp.path().join("profile-2")))
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
