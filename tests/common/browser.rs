//! Headless Chromium (Debian's package; `.ci/run` installs it) with networking disabled, and a
//! self-check injected into a report page: whether it rendered, which canvases drew, which
//! errors and requests occurred, which headings it shows.

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
    subheadings: [...document.querySelectorAll("h3")].map(h => h.textContent),
    overview_top: (document.getElementById("overview") || {getBoundingClientRect: () => ({top: -1})}).getBoundingClientRect().top,
    overview_chart: !!document.querySelector('#overview-chart svg rect'),
    screen_height: window.innerHeight,
  });
  document.body.append(out);
}, 500));
</script>"#;

pub fn chromium_args(profile: &Path) -> Vec<String> {
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

/// The browser, or `None` outside CI without one (under `CI` a missing browser fails: the CI
/// run must exercise the page).
pub fn browser_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "Chromium is missing under CI: .ci/run installs Debian's chromium"
        );
        eprintln!("skipped: no Chromium here (apt-get install chromium)");
    }
    found
}

/// Loads `report` in `browser` with the self-check injected (files under `work`); returns the
/// check's JSON.
pub fn self_check(browser: &Path, report: &Path, work: &Path) -> serde_json::Value {
    let html = std::fs::read_to_string(report).unwrap();
    let probe = html
        .replacen(
            "<meta charset=\"utf-8\">",
            &format!("<meta charset=\"utf-8\">{EARLY}"),
            1,
        )
        .replacen("</body>", &format!("{CHECK}</body>"), 1);
    let page = work.join("probe.html");
    std::fs::write(&page, probe).unwrap();
    let dom = Command::new(browser)
        .args(chromium_args(&work.join("profile-check")))
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
    serde_json::from_str(&text).unwrap()
}
