//! Snapshots through the real command line: a first run records pending snapshots, accept makes
//! them the reference, a changed answer is a content mismatch with a pending file beside its
//! snapshot, a broken stream a protocol one, review/accept/reject act on pending files, and under
//! `CI` nothing is written.

mod common;

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The quickstart (code completions and commit messages only) with snapshots under `snaps`.
fn scenario(dir: &Path, extra: &str) -> String {
    let corpus = common::repo().join("fixtures/corpus/duo-default.jsonl");
    let text = common::quickstart_with_corpus(&format!(
        "{corpus:?}\nfeatures = [\"code_completions\", \"generate_commit_message\"]"
    ));
    let p = dir.join(format!("s{}.toml", extra.len()));
    std::fs::write(
        &p,
        format!("{text}\n[conformance]\nsnapshots = \"snaps\"\n{extra}"),
    )
    .unwrap();
    p.to_str().unwrap().to_owned()
}

/// Runs the binary with or without `CI`; returns (exit code, summary).
fn run(s: &str, out: &Path, ci: bool) -> (i32, Value) {
    run_with(s, out, ci, &[])
}

/// `run` with more flags (`--first-run`).
fn run_with(s: &str, out: &Path, ci: bool, extra: &[&str]) -> (i32, Value) {
    let mut c = Command::new(common::bin());
    c.args(["run", s, "--out", out.to_str().unwrap()])
        .args(extra)
        .current_dir(common::repo());
    if ci {
        c.env("CI", "true");
    } else {
        c.env_remove("CI");
    }
    let o = c.output().unwrap();
    let sm =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    (o.status.code().unwrap_or(-1), sm)
}

fn snapshots(args: &[&str], input: &str) -> String {
    let mut child = Command::new(common::bin())
        .arg("snapshots")
        .args(args)
        .env_remove("CI")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

fn pending(dir: &Path) -> usize {
    duo_harness::conformance::pending(dir, None).len()
}

fn kinds(sm: &Value) -> Vec<String> {
    common::judged_findings(sm)
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn record_accept_compare_and_review_snapshots() {
    let d = tempfile::tempdir().unwrap();
    let snaps = d.path().join("snaps");
    let dir = snaps.to_str().unwrap();
    let s = scenario(d.path(), "");

    // 1. No snapshots yet: every case is new and pending. Conformance checked nothing, which
    // fails a run unless it is the first (then a note, not a failure).
    let (code, sm) = run(&s, &d.path().join("r0"), false);
    assert_eq!(code, 1, "{sm}");
    let not_run = common::finding_message(&sm, "conformance_not_run");
    assert!(not_run.starts_with("not run for "), "{not_run}");
    let (code, sm) = run_with(&s, &d.path().join("r1"), false, &["--first-run"]);
    assert_eq!(code, 0, "{sm}");
    assert_eq!(pending(&snaps), 11);
    assert!(kinds(&sm)
        .iter()
        .all(|k| k == "snapshot_new" || k == "conformance_not_run"));
    assert_eq!(sm["features"]["code_completions"]["conformance"]["new"], 9);
    for p in duo_harness::conformance::pending(&snaps, None) {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        common::assert_schema("snapshot-v1.schema.json", &doc);
    }
    assert!(snapshots(&["accept", "--dir", dir], "").contains("11 accepted"));
    assert_eq!(pending(&snaps), 0);

    // 2. The same stack answers the same: compared, nothing mismatched, nothing written.
    let (code, sm) = run(&s, &d.path().join("r2"), false);
    assert_eq!(code, 0, "{sm}");
    assert_eq!(
        sm["features"]["code_completions"]["conformance"],
        serde_json::json!({"compared": 9, "mismatched": 0, "new": 0})
    );
    assert_eq!(pending(&snaps), 0);

    // 2b. Stream events out of order (v4's stream_end first): protocol mismatches, v4 only.
    let reordered = scenario(d.path(), "\n[stack.aigw]\nreorder_v4_events = true\n");
    let (code, sm) = run(&reordered, &d.path().join("r2b"), true);
    assert_eq!(code, 1);
    for f in common::judged_findings(&sm) {
        assert_eq!(f["kind"], "conformance_protocol", "{f}");
        let m = f["message"].as_str().unwrap();
        assert!(
            m.contains("-v4-") && m.contains("events: start,content,end → start,end,content"),
            "{m}"
        );
    }
    assert_eq!(
        sm["features"]["code_completions"]["conformance"]["mismatched"],
        2
    );

    // 3. Another seed changes every answer's text: content mismatches, each with a pending file.
    let changed = scenario(d.path(), "\n[[stack.backend]]\nname = \"vllm-code\"\nmodels = [\"codestral-22b\"]\nseed = 7\n\n[[stack.backend]]\nname = \"vllm-chat\"\nmodels = [\"mistral-7b-instruct\"]\nseed = 7\n");
    let (code, sm) = run(&changed, &d.path().join("r3ci"), true);
    assert_eq!(code, 1);
    assert_eq!(pending(&snaps), 0, "under CI nothing is written");
    let (code, sm3) = run(&changed, &d.path().join("r3"), false);
    assert_eq!(code, 1);
    assert_eq!(
        kinds(&sm),
        kinds(&sm3),
        "CI changes what is written, not what is found"
    );
    assert!(
        kinds(&sm3).iter().all(|k| k == "conformance_content"),
        "{:?}",
        kinds(&sm3)
    );
    assert_eq!(
        sm3["features"]["generate_commit_message"]["conformance"]["mismatched"],
        2
    );
    assert_eq!(pending(&snaps), 11);

    // 4. review: accept the first, reject the second, skip the rest; reject clears them.
    let shown = snapshots(
        &["review", "--dir", dir, "generate_commit_message"],
        "a\nr\n",
    );
    assert!(
        shown.contains("text:") && shown.contains("1 accepted, 1 rejected"),
        "{shown}"
    );
    assert_eq!(pending(&snaps), 9);
    assert!(snapshots(&["reject", "--dir", dir], "").contains("9 rejected"));
    assert_eq!(pending(&snaps), 0);

    // 5. A similarity policy with a low bar accepts the changed text; protocol is still exact.
    let lenient = scenario(d.path(), "content = \"similarity\"\nthreshold = 0.0\n\n[[stack.backend]]\nname = \"vllm-code\"\nmodels = [\"codestral-22b\"]\nseed = 7\n\n[[stack.backend]]\nname = \"vllm-chat\"\nmodels = [\"mistral-7b-instruct\"]\nseed = 7\n[stack.aigw]\ndrop_v4_stream_end = true\n");
    let (code, sm) = run(&lenient, &d.path().join("r5"), true);
    assert_eq!(code, 1);
    let k = kinds(&sm);
    assert!(k.contains(&"conformance_protocol".to_owned()), "{k:?}");
    assert!(!k.contains(&"conformance_content".to_owned()), "{k:?}");

    // 6. A mask over the text makes the changed answers equal again.
    let masked = scenario(d.path(), "masks = [\".text\"]\n\n[[stack.backend]]\nname = \"vllm-code\"\nmodels = [\"codestral-22b\"]\nseed = 7\n\n[[stack.backend]]\nname = \"vllm-chat\"\nmodels = [\"mistral-7b-instruct\"]\nseed = 7\n");
    let (code, sm) = run(&masked, &d.path().join("r6"), true);
    assert_eq!(code, 0, "{}", sm["findings"]);
}

/// `scenarios/noise.toml` against the shipped snapshots and measured noise floor (run under `CI`,
/// so the fixtures are only read): the chat backend's random variation stays within its derived
/// similarity,
/// and a real change (another seed on the code backend) fails on exactly the features it changed.
#[test]
fn noise_scenario_passes_and_a_real_change_fails_on_exactly_its_features() {
    let d = tempfile::tempdir().unwrap();
    let shipped = common::repo().join("scenarios/noise.toml");
    let (code, sm) = run(shipped.to_str().unwrap(), &d.path().join("calm"), true);
    assert_eq!(code, 0, "{}", sm["findings"]);
    let chat = &sm["features"]["duo_chat"]["conformance"];
    assert_eq!(chat["mismatched"], 0);
    // Chat text is always noisy: it is compared by a similarity threshold from the calibration.
    assert!(chat["derived_similarity"].as_f64().is_some(), "{chat}");

    let fixtures = common::repo().join("fixtures");
    let text = std::fs::read_to_string(&shipped)
        .unwrap()
        .replace("\"../fixtures", &format!("\"{}", fixtures.display()))
        .replace(
            "name = \"vllm-code\"\nmodels = [\"codestral-22b\"]\n",
            "name = \"vllm-code\"\nmodels = [\"codestral-22b\"]\nseed = 9\n",
        );
    let changed = d.path().join("changed.toml");
    std::fs::write(&changed, text).unwrap();
    let (code, sm) = run(changed.to_str().unwrap(), &d.path().join("changed"), true);
    assert_eq!(code, 1);
    let flagged: std::collections::BTreeSet<String> = common::judged_findings(&sm)
        .iter()
        .map(|f| {
            assert_eq!(f["kind"], "conformance_content", "{f}");
            f["feature"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        flagged,
        ["code_completions", "code_generations"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The shipped noise floor does not switch content checking off: chat text, always noisy, is
/// compared by a similarity threshold derived from the calibration, so the ordinary variation
/// of a sampling model passes and one answer that is no longer the same answer is caught.
#[test]
fn a_changed_chat_answer_is_caught_and_ordinary_variation_is_not() {
    let d = tempfile::tempdir().unwrap();
    let snaps = d.path().join("snaps");
    copy_dir(&common::repo().join("fixtures/snapshots"), &snaps);
    let case = snaps.join("duo-default/duo_chat/chat-general-1.json");
    let mut snap: Value = serde_json::from_str(&std::fs::read_to_string(&case).unwrap()).unwrap();
    snap["text"] =
        "Request refused: this assistant cannot answer questions about deployments.".into();
    std::fs::write(&case, serde_json::to_string_pretty(&snap).unwrap()).unwrap();
    let fixtures = common::repo().join("fixtures");
    let text = std::fs::read_to_string(common::repo().join("scenarios/noise.toml"))
        .unwrap()
        .replace("\"../fixtures/snapshots\"", &format!("{snaps:?}"))
        .replace("\"../fixtures", &format!("\"{}", fixtures.display()));
    let s = d.path().join("noise.toml");
    std::fs::write(&s, text).unwrap();
    let (code, sm) = run(s.to_str().unwrap(), &d.path().join("run"), true);
    assert_eq!(code, 1, "{sm}");
    let findings = common::judged_findings(&sm);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["kind"], "conformance_content");
    assert!(findings[0]["message"]
        .as_str()
        .unwrap()
        .contains("chat-general-1"));
    let chat = &sm["features"]["duo_chat"]["conformance"];
    let threshold = chat["derived_similarity"].as_f64().unwrap();
    assert!(threshold > 0.0 && threshold < 0.5, "{chat}");
    assert_eq!(chat["mismatched"], 1);
}
