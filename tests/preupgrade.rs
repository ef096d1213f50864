//! The pre-upgrade job as the README walks an operator through it, end to end, against
//! `duo-harness stack` processes standing in for the gateway and its backends, configured from
//! the environment alone: the first run (`--first-run`) stores the baseline, its snapshots are
//! accepted and the noise floor calibrated; an unchanged stack, restarted, passes (go); the
//! same stack with its chat backend 3x slower fails on chat features and on no code feature
//! (no-go); a chat backend that refuses connections fails `models` before any load is sent; a
//! missing baseline is not a pass; a feature setting naming a model its backend does not serve
//! fails `models`.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The operator's environment: where the gateway and its backends are, and the job's knobs
/// (a high peak rate keeps each run short: the gate sizes the load from it).
struct Site<'a> {
    urls: &'a Value,
    dir: &'a Path,
    chat_model: &'a str,
    chat_backend: Option<&'a str>,
    baseline: Option<&'a Path>,
    /// Variables over the defaults below.
    env: Vec<(&'a str, &'a str)>,
}

impl<'a> Site<'a> {
    fn new(urls: &'a Value, dir: &'a Path) -> Self {
        Self {
            urls,
            dir,
            chat_model: "mistral-7b-instruct",
            chat_backend: None,
            baseline: None,
            env: Vec::new(),
        }
    }

    fn backend(&self, name: &str) -> String {
        self.urls["backends"][name]["openai_base"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `duo-harness ARGS` in this environment; returns the exit code and what it printed.
    fn cli(&self, args: &[&str]) -> (i32, String) {
        let chat = self
            .chat_backend
            .map_or_else(|| self.backend("vllm-chat"), str::to_owned);
        let baseline = self
            .baseline
            .map_or_else(|| self.dir.join("baseline"), Path::to_path_buf);
        let o = Command::new(common::bin())
            .args(args)
            .current_dir(common::repo())
            .env_remove("CI")
            .env_remove("DUO_SNAPSHOTS_DIR")
            .env("DUO_AIGW_URL", self.urls["aigw"].as_str().unwrap())
            .env("DUO_AIGW_AUTH", "bypass")
            .env("DUO_CODE_BACKEND_URL", self.backend("vllm-code"))
            .env("DUO_CODE_MODEL", "codestral-22b")
            .env("DUO_CHAT_BACKEND_URL", chat)
            .env("DUO_CHAT_MODEL", self.chat_model)
            .env("DUO_BASELINE_DIR", baseline)
            .env("DUO_PEAK_RPS", "40")
            .env("DUO_PREUPGRADE_S", "20")
            .env("DUO_PREUPGRADE_MAX_S", "30")
            .envs(self.env.iter().copied())
            .output()
            .unwrap();
        (o.status.code().unwrap_or(-1), common::printed(&o))
    }

    /// The pre-upgrade run into `self.dir/<name>`, with `extra` flags.
    fn run(&self, name: &str, extra: &[&str]) -> (i32, String, std::path::PathBuf) {
        let out = self.dir.join(name);
        let mut args = vec![
            "run",
            "scenarios/preupgrade.toml",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let (code, log) = self.cli(&args);
        (code, log, out)
    }
}

/// Each stage's JUnit case in the `run` suite: (name, "passed" | "failed" | "skipped").
fn stages(out: &Path) -> Vec<(String, &'static str)> {
    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    let run = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "run")
        .unwrap();
    run.test_cases
        .iter()
        .map(|c| {
            let status = match &c.status {
                quick_junit::TestCaseStatus::Success { .. } => "passed",
                quick_junit::TestCaseStatus::Skipped { .. } => "skipped",
                _ => "failed",
            };
            (c.name.to_string(), status)
        })
        .collect()
}

fn status_of(out: &Path, name: &str) -> &'static str {
    stages(out)
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| *s)
        .unwrap_or("missing")
}

/// Features the run's `regression` findings name.
fn regressed(out: &Path) -> Vec<String> {
    let s = common::json_file(&out.join("summary.json"));
    let mut f: Vec<String> = s["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "regression")
        .filter_map(|f| f["feature"].as_str().map(str::to_owned))
        .collect();
    f.dedup();
    f
}

/// The first run, the snapshots accepted, the noise floor: the README's steps before an upgrade.
fn make_baseline(site: &Site) {
    let (code, log, first) = site.run("first", &["--first-run"]);
    assert_eq!(
        code, 0,
        "the first run passes and stores the baseline: {log}"
    );
    for (name, expected) in [
        ("health", "passed"),
        ("models", "passed"),
        ("replay", "passed"),
        ("routing", "passed"),
        ("slo", "passed"),
        ("conformance", "skipped"),
        ("gate", "skipped"),
    ] {
        assert_eq!(
            status_of(&first, name),
            expected,
            "{name}: {:?}",
            stages(&first)
        );
    }
    let baseline = site.dir.join("baseline");
    assert!(baseline.join("plan.json").is_file(), "{log}");
    let snaps = baseline.join("snapshots");
    let (code, log) = site.cli(&["snapshots", "accept", "--dir", snaps.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    let (code, log, cal) = site.run("calibrate", &["--calibrate"]);
    assert_eq!(
        code, 0,
        "a calibration's verdict is about the calibration: {log}"
    );
    assert_eq!(status_of(&cal, "gate"), "skipped");
    assert_eq!(status_of(&cal, "conformance"), "passed");
    assert!(snaps.join("duo-default/noise.json").is_file());
}

/// A passing run's merge-request comment is a few KB with no Rust debug text; logs carry no
/// colour codes off a terminal; `compare` prints units and words, and writes its own file
/// beside the run's `comparison.json`, which it leaves as the run wrote it.
fn output_an_operator_can_act_on(site: &Site, out: &Path, log: &str) {
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.len() < 6_000, "{} bytes:\n{md}", md.len());
    assert!(!md.contains("Some(") && !md.contains("None"), "{md}");
    assert!(!log.contains('\u{1b}'), "no colour codes in a log: {log}");
    let before = std::fs::read(out.join("comparison.json")).unwrap();
    let baseline = site.dir.join("baseline");
    let (code, printed) = site.cli(&["compare", baseline.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(code, 0, "{printed}");
    assert!(
        printed.contains(" ms ") && printed.contains(" %"),
        "units: {printed}"
    );
    assert!(
        printed.contains("better by") || printed.contains("worse by"),
        "changes in words: {printed}"
    );
    assert_eq!(std::fs::read(out.join("comparison.json")).unwrap(), before);
    assert!(common::compare_file(out)["verdict"] == "pass");
}

#[test]
fn the_readme_walkthrough_gives_go_and_no_go_rightly() {
    let d = tempfile::tempdir().unwrap();
    {
        let (_stack, urls) = common::start_stack();
        make_baseline(&Site::new(&urls, d.path()));
    }
    {
        // The same stack, restarted as after an upgrade: go. The code tap listens where the
        // operator says (another loopback address here) and says where the gateway reaches it.
        let (_stack, urls) = common::start_stack();
        let mut site = Site::new(&urls, d.path());
        site.env = vec![("DUO_TAP_LISTEN_CODE", "127.0.0.2:0")];
        let (code, log, out) = site.run("same", &[]);
        assert_eq!(code, 0, "an unchanged, restarted stack passes: {log}");
        assert_eq!(status_of(&out, "gate"), "passed");
        assert_eq!(status_of(&out, "conformance"), "passed");
        assert_eq!(
            status_of(&out, "routing"),
            "passed",
            "through the moved tap"
        );
        assert!(log.contains("gate sizing: at 40 req/s"), "{log}");
        assert!(
            log.contains("tap code: listening on 127.0.0.2:")
                && log.contains("the gateway reaches it at http://127.0.0.2:"),
            "{log}"
        );
        output_an_operator_can_act_on(&site, &out, &log);
    }
    {
        // The chat backend 3x slower (TTFT 20 -> 60 ms): no-go, on chat.
        let config = d.path().join("slow.toml");
        std::fs::write(
            &config,
            "[[backend]]\nname = \"vllm-code\"\nmodels = [\"codestral-22b\"]\n\n[[backend]]\n\
             name = \"vllm-chat\"\nmodels = [\"mistral-7b-instruct\"]\nttft_ms = 60\nitl_ms = 12\n",
        )
        .unwrap();
        let (_stack, urls) = common::start_stack_with(Some(&config));
        let (code, log, out) = Site::new(&urls, d.path()).run("slow", &[]);
        assert_eq!(code, 1, "{log}");
        let features = regressed(&out);
        assert!(
            features.iter().any(|f| f == "duo_chat"),
            "{features:?}\n{log}"
        );
        assert!(
            !features.iter().any(|f| f.starts_with("code_")),
            "the code backend did not change: {features:?}"
        );
        assert_eq!(status_of(&out, "gate"), "failed");
    }
}

#[test]
fn a_refusing_backend_a_missing_baseline_and_an_unserved_model_are_no_go() {
    let d = tempfile::tempdir().unwrap();
    let (_stack, urls) = common::start_stack();
    // A chat backend that refuses connections: `models` fails and no load is sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let mut site = Site::new(&urls, d.path());
    site.chat_backend = Some(&refused);
    let (code, log, out) = site.run("refused", &["--first-run"]);
    assert_eq!(code, 3, "the stack is not there: {log}");
    assert_eq!(status_of(&out, "models"), "failed", "{:?}", stages(&out));
    assert_eq!(
        common::results(&out).len(),
        0,
        "stopped before the load: {log}"
    );
    let summary = common::json_file(&out.join("summary.json"));
    let message = common::finding_message(&summary, "model_endpoint");
    assert!(message.contains("duo_chat"), "{message}");
    for later in ["replay", "slo", "gate"] {
        assert_eq!(status_of(&out, later), "skipped", "{later}");
    }

    // No baseline where the scenario says, and no --first-run: not a pass, and no load.
    let missing = d.path().join("no-such-baseline");
    let mut site = Site::new(&urls, d.path());
    site.baseline = Some(&missing);
    let (code, log, out) = site.run("missing", &[]);
    assert_eq!(code, 1, "{log}");
    assert_eq!(status_of(&out, "baseline"), "failed", "{:?}", stages(&out));
    assert!(log.contains("a missing baseline is not a pass"), "{log}");
    assert_eq!(common::results(&out).len(), 0);

    // The feature settings name a model the chat backend does not serve.
    let mut site = Site::new(&urls, d.path());
    site.chat_model = "mistral-8x7b";
    let (code, log, out) = site.run("unserved", &["--first-run"]);
    assert_eq!(code, 3, "{log}");
    assert_eq!(status_of(&out, "models"), "failed");
    let summary = common::json_file(&out.join("summary.json"));
    let message = common::finding_message(&summary, "model_endpoint");
    assert!(message.contains("not 'mistral-8x7b'"), "{message}");
    assert!(
        !d.path().join("baseline/plan.json").exists(),
        "a failed first run stores nothing"
    );

    // A tap on every interface with no address the gateway could use: refused before anything.
    let mut site = Site::new(&urls, d.path());
    site.env = vec![("DUO_TAP_LISTEN_CHAT", "0.0.0.0:9101")];
    let (code, log, _) = site.run("wildcard", &["--first-run"]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("advertise"), "{log}");

    // Every unset variable is named at once.
    let o = Command::new(common::bin())
        .args(["run", "scenarios/preupgrade.toml"])
        .current_dir(common::repo())
        .env_clear()
        .output()
        .unwrap();
    let printed = common::printed(&o);
    assert_eq!(o.status.code(), Some(2), "{printed}");
    for var in ["DUO_AIGW_URL", "DUO_CODE_BACKEND_URL", "DUO_CHAT_MODEL"] {
        assert!(printed.contains(var), "{var}: {printed}");
    }

    // One request a second for three seconds: most features are never sent, and the replay
    // stage says so instead of passing what it did not check.
    let mut site = Site::new(&urls, d.path());
    site.env = vec![
        ("DUO_PEAK_RPS", "1"),
        ("DUO_PREUPGRADE_S", "3"),
        ("DUO_PREUPGRADE_MAX_S", "3"),
        ("DUO_WARMUP_S", "0"),
    ];
    let (code, log, out) = site.run("starved", &["--first-run"]);
    assert_eq!(code, 1, "{log}");
    assert_eq!(status_of(&out, "replay"), "failed", "{:?}", stages(&out));
    let summary = common::json_file(&out.join("summary.json"));
    let message = common::finding_message(&summary, "features_unsent");
    assert!(message.contains("never sent"), "{message}");
    assert!(
        log.contains("gate sizing"),
        "the run said up front what it would need: {log}"
    );
}
