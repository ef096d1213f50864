//! Load beyond one process: `run --slice K/N --start-at T` sends the K-th of every N arrivals of
//! the one seeded schedule from the common instant T; `report` merges the N folders, refusing a
//! missing or doubled slice by name, and audits the slices together. Real processes on
//! loopback against one `duo-harness stack`.

mod common;

use common::{bin, json_file, start_stack_with};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

/// A stack with one twin vLLM (TTFT 20 ms, 2 ms a token) and a scenario against it.
fn setup(dir: &Path, rate: f64) -> (common::Stack, PathBuf) {
    let stack_toml = dir.join("stack.toml");
    std::fs::write(
        &stack_toml,
        "[aigw]\nport = 0\n[[backend]]\nname = \"vllm-code\"\nmodels = [\"codestral-22b\"]\n\
         port = 0\nttft_ms = 20\nitl_ms = 2\n",
    )
    .unwrap();
    let (stack, urls) = start_stack_with(Some(&stack_toml));
    let url = urls["backends"]["vllm-code"]["url"].as_str().unwrap();
    std::fs::copy(
        common::repo().join("fixtures/corpus/openai-bench.jsonl"),
        dir.join("corpus.jsonl"),
    )
    .unwrap();
    let scenario = dir.join("scenario.toml");
    std::fs::write(
        &scenario,
        format!(
            "name = \"sliced\"\ncorpus = \"corpus.jsonl\"\nfeatures = [\"code_completions\"]\n\
             request_timeout_s = 10\n[target]\nurl = \"{url}\"\n[output]\ndir = \"runs\"\n\
             [load]\narrival = \"poisson\"\nrate = {rate}\nduration_s = 2\nwarmup_s = 0.5\n\
             grace_s = 3\nseed = 7\n"
        ),
    )
    .unwrap();
    (stack, scenario)
}

/// An instant `secs` from now, RFC 3339: time enough for N processes to start and set up.
fn instant_in(secs: f64) -> String {
    let at = chrono::Utc::now() + chrono::Duration::milliseconds((secs * 1000.0) as i64);
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn harness(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args).env("CI", "true");
    c
}

fn spawn_slice(scenario: &Path, slice: &str, at: &str, out: &Path) -> Child {
    let s = scenario.to_str().unwrap();
    harness(&["run", s, "--slice", slice, "--start-at", at, "--out"])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn report(dirs: &[PathBuf], out: &Path) -> Output {
    let mut c = harness(&["report"]);
    c.args(dirs).arg("--out").arg(out);
    c.output().unwrap()
}

/// (seq, intended offset µs, interaction) of every request of a results file or several.
fn schedule_of(files: &[PathBuf]) -> Vec<(u64, i64, String)> {
    let mut out: Vec<(u64, i64, String)> = files
        .iter()
        .flat_map(|f| common::results(f.parent().unwrap()))
        .map(|r| {
            let seq = r["seq"].as_u64().unwrap();
            let intended = (r["intended_ms"].as_f64().unwrap() * 1000.0).round() as i64;
            (seq, intended, r["id"].as_str().unwrap().to_owned())
        })
        .collect();
    out.sort();
    out
}

fn ttft(summary: &Value, p: &str) -> f64 {
    summary["features"]["code_completions"]["latency_ms"]["ttft"][p]
        .as_f64()
        .unwrap()
}

#[test]
fn four_slices_merge_into_the_one_process_run_of_their_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let (_stack, scenario) = setup(tmp.path(), 60.0);
    let at = instant_in(4.0);
    let dirs: Vec<PathBuf> = (0..4)
        .map(|k| tmp.path().join(format!("slice-{k}")))
        .collect();
    let children: Vec<Child> = (0..4)
        .map(|k| spawn_slice(&scenario, &format!("{k}/4"), &at, &dirs[k]))
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(
            matches!(o.status.code(), Some(0 | 1 | 4)),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    for (k, d) in dirs.iter().enumerate() {
        let plan = json_file(&d.join("plan.json"));
        assert_eq!(plan["plan"]["slice"]["index"], k);
        assert_eq!(plan["plan"]["slice"]["count"], 4);
        assert_eq!(
            plan["plan"]["slice"]["plan_sha256"].as_str().unwrap().len(),
            64
        );
    }
    // The same schedule in one process.
    let single = tmp.path().join("single");
    let o = harness(&["run", scenario.to_str().unwrap(), "--out"])
        .arg(&single)
        .output()
        .unwrap();
    assert!(matches!(o.status.code(), Some(0 | 1 | 4)), "{o:?}");

    let merged = tmp.path().join("merged");
    let o = report(&dirs, &merged);
    let printed = common::printed(&o);
    assert!(matches!(o.status.code(), Some(0 | 1 | 4)), "{printed}");
    let results: Vec<PathBuf> = dirs.iter().map(|d| d.join("results.ndjson")).collect();
    let whole = schedule_of(&[single.join("results.ndjson")]);
    // Every arrival of the schedule once, at its intended instant, numbered as one process
    // numbers it: the slices are exactly the schedule.
    assert!(whole.len() > 60, "{}", whole.len());
    assert_eq!(schedule_of(&results), whole);
    assert_eq!(schedule_of(&[merged.join("results.ndjson")]), whole);

    let m = json_file(&merged.join("summary.json"));
    let s = json_file(&single.join("summary.json"));
    assert_eq!(m["requests"], s["requests"]);
    assert_eq!(m["load"]["sent"], s["load"]["sent"]);
    assert_eq!(m["load"]["target_rps"], s["load"]["target_rps"]);
    let audits = m["slices"].as_array().unwrap();
    assert_eq!(audits.len(), 4, "{printed}");
    for (k, a) in audits.iter().enumerate() {
        assert_eq!(a["index"], k);
        assert!(a["first_send_late_ms"].as_f64().is_some(), "{a}");
        assert!(a["cpu_cores_busy"].as_f64().is_some(), "{a}");
    }
    assert!(printed.contains("slice 3/4"), "{printed}");
    // The merged folder is the whole schedule: re-rendered, it keeps its figures and audit.
    let o = harness(&["report"]).arg(&merged).output().unwrap();
    assert!(matches!(o.status.code(), Some(0 | 1 | 4)), "{o:?}");
    let again = json_file(&merged.join("summary.json"));
    assert_eq!(again["slices"], m["slices"]);
    assert_eq!(again["load"]["target_rps"], m["load"]["target_rps"]);
    assert!(json_file(&merged.join("plan.json"))["plan"]["slice"].is_null());
    // A slice's own summary states its share of the rate.
    let own = json_file(&dirs[1].join("summary.json"));
    assert_eq!(own["load"]["target_rps"].as_f64(), Some(15.0));

    // The merge is exact: judged from the same records as one folder, the figures are equal
    // within the histogram's precision (0.1 %).
    let union = union_folder(tmp.path(), &dirs[0], &results);
    let o = harness(&["report"]).arg(&union).output().unwrap();
    assert!(matches!(o.status.code(), Some(0 | 1 | 4)), "{o:?}");
    let u = json_file(&union.join("summary.json"));
    assert_eq!(m["requests"], u["requests"]);
    for p in ["p50", "p90", "p99"] {
        let (a, b) = (ttft(&m, p), ttft(&u, p));
        assert!((a - b).abs() <= 0.001 * b.max(1.0), "ttft {p}: {a} vs {b}");
    }

    refusals(tmp.path(), &dirs);
}

/// One folder holding every slice's records as one run (slice 0's plan, made whole).
fn union_folder(tmp: &Path, first: &Path, results: &[PathBuf]) -> PathBuf {
    let union = tmp.join("union");
    std::fs::create_dir(&union).unwrap();
    let mut plan = json_file(&first.join("plan.json"));
    plan["plan"].as_object_mut().unwrap().remove("slice");
    std::fs::write(union.join("plan.json"), plan.to_string()).unwrap();
    let lines: String = results
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    std::fs::write(union.join("results.ndjson"), lines).unwrap();
    union
}

/// A missing slice, a doubled one, and one of another plan are refused by name (exit 2).
fn refusals(tmp: &Path, dirs: &[PathBuf]) {
    let three = [dirs[0].clone(), dirs[1].clone(), dirs[3].clone()];
    let o = report(&three, &tmp.join("m3"));
    let said = common::printed(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(said.contains("slice 2/4 missing"), "{said}");

    let copy = tmp.join("slice-1-copy");
    copy_dir(&dirs[1], &copy);
    let twice = [dirs[0].clone(), dirs[1].clone(), copy, dirs[2].clone()];
    let o = report(&twice, &tmp.join("m4"));
    let said = common::printed(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(said.contains("slice 1/4 is given twice"), "{said}");

    let other = tmp.join("slice-3-other");
    copy_dir(&dirs[3], &other);
    let mut plan = json_file(&other.join("plan.json"));
    plan["plan"]["slice"]["plan_sha256"] = Value::from("0".repeat(64));
    std::fs::write(other.join("plan.json"), plan.to_string()).unwrap();
    let mixed = [dirs[0].clone(), dirs[1].clone(), dirs[2].clone(), other];
    let o = report(&mixed, &tmp.join("m5"));
    let said = common::printed(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(said.contains("slices of different plans"), "{said}");

    // One slice alone is no merge: elsewhere than its own folder it would pass for the whole.
    let o = report(&dirs[..1], &tmp.join("m6"));
    assert_eq!(o.status.code(), Some(2), "{}", common::printed(&o));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_slice_that_starts_after_the_instant_zero_invalidates_the_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let (_stack, scenario) = setup(tmp.path(), 20.0);
    let at = instant_in(3.0);
    let dirs: Vec<PathBuf> = (0..2)
        .map(|k| tmp.path().join(format!("slice-{k}")))
        .collect();
    let on_time = spawn_slice(&scenario, "0/2", &at, &dirs[0]);
    // The second pod comes up a second after the instant zero.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let late = spawn_slice(&scenario, "1/2", &at, &dirs[1]);
    let late = late.wait_with_output().unwrap();
    let warned = String::from_utf8_lossy(&late.stderr);
    assert!(warned.contains("passed"), "{warned}");
    on_time.wait_with_output().unwrap();
    let merged = tmp.path().join("merged");
    let o = report(&dirs, &merged);
    let m = json_file(&merged.join("summary.json"));
    assert_ne!(m["verdict"], "pass", "{}", common::printed(&o));
    let message = common::finding_message(&m, "slice_late");
    assert!(message.contains("slice 1/2"), "{message}");
    let late_ms = m["slices"][1]["first_send_late_ms"].as_f64().unwrap();
    assert!(late_ms >= 500.0, "{late_ms}");
}
