//! Output token counts that cannot mislead: against a llama.cpp-shaped server (no `usage` in
//! its stream, one token per event) the count is one per event and marked estimated in every
//! output, the console included; with the scenario's tokenizer it is counted, not estimated;
//! `multi_token_chunks` is set only when observed (usage or the tokenizer finding more tokens
//! than events). The tokenizer fixture (`tests/fixtures/tokenizer-words.json`) is a word-level
//! `tokenizer.json` written for these tests: one token per word or run of punctuation.

mod common;

use common::paced::{self, Pace};
use serde_json::Value;
use std::path::Path;

/// Runs 10 requests against a paced server; returns (exit code, console, summary, results).
fn run(pace: Pace, extra: &str) -> (i32, String, Value, Vec<Value>) {
    let (url, _) = paced::start(pace);
    let d = tempfile::tempdir().unwrap();
    let corpus = common::repo().join("fixtures/corpus/openai-bench.jsonl");
    let text = format!(
        "name = \"tokens\"\ncorpus = {corpus:?}\nfeatures = [\"code_completions\"]\n{extra}\n\
         [target]\nurl = \"{url}\"\n[load]\narrival = \"constant\"\nrate = 20\nmax_requests = 10\n"
    );
    let s = d.path().join("s.toml");
    std::fs::write(&s, text).unwrap();
    let out = d.path().join("run");
    let (code, stdout, stderr) =
        common::run_cli(&["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let log = format!("{stdout}{stderr}");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{e}: {log}"));
    let summary: Value = serde_json::from_str(&read(&out.join("summary.json"))).unwrap();
    common::assert_schema("summary-v1.schema.json", &summary);
    let results = common::results(&out);
    (code, stdout, summary, results)
}

fn tokenizer() -> String {
    let p = common::repo().join("tests/fixtures/tokenizer-words.json");
    format!("[tokenizers]\ndefault = {:?}\n", p.to_str().unwrap())
}

fn row(console: &str) -> &str {
    console
        .lines()
        .find(|l| l.starts_with("code_completions"))
        .unwrap()
}

#[test]
fn without_usage_tokens_are_one_per_event_and_marked_estimated_everywhere() {
    let pace = Pace {
        usage: false,
        ..Pace::default()
    };
    let (code, console, sm, results) = run(pace, "");
    assert_eq!(code, 0, "{console}");
    for r in &results {
        assert_eq!(r["token_source"], "chunks", "{r}");
        assert_eq!(r["output_tokens"], 32);
        assert_eq!(r["tokens_estimated"], true);
        assert_eq!(
            r["multi_token_chunks"], false,
            "one token per event: never observed"
        );
    }
    let f = &sm["features"]["code_completions"];
    assert_eq!(f["token_sources"]["chunks"], 10);
    assert_eq!(f["multi_token_chunks"], 0);
    for figure in ["tpot", "output_tokens", "output_tokens_per_s"] {
        assert_eq!(f["trust"][figure]["estimated"], true, "{figure}");
    }
    assert!(f["trust"]["ttft"].get("estimated").is_none());
    let line = row(&console);
    // Columns: feature, reqs, errs, ttft p50, ttft p99, tpot p50, ... The value itself is timing
    // (about 5 ms a token); only the mark is asserted, so a slow machine cannot fail this.
    let tpot = line.split_whitespace().nth(5).unwrap();
    assert!(tpot.contains('~'), "TPOT marked estimated: {line}");
    assert!(
        line.trim_end().ends_with("320~"),
        "tokens marked estimated: {line}"
    );
    assert!(console.contains("~ estimated"), "{console}");
    let note = common::finding_message(&sm, "tokens_estimated");
    assert!(note.contains("one token per content event"), "{note}");
}

#[test]
fn the_scenarios_tokenizer_counts_and_sees_several_tokens_per_event() {
    let pace = Pace {
        usage: false,
        words: 2,
        ..Pace::default()
    };
    let (code, console, sm, results) = run(pace, &tokenizer());
    assert_eq!(code, 0, "{console}");
    for r in &results {
        assert_eq!(r["token_source"], "tokenizer", "{r}");
        assert_eq!(r["output_tokens"], 64, "two words per event, 32 events");
        assert_eq!(r["tokens_estimated"], false);
        assert_eq!(r["multi_token_chunks"], true, "observed by the tokenizer");
    }
    let f = &sm["features"]["code_completions"];
    assert!(f["trust"]["tpot"].get("estimated").is_none(), "{f}");
    assert!(!row(&console).contains('~'), "{console}");
    // The same server without a tokenizer: counted per event (32), flagged, never multi-token.
    let (_, _, _, results) = run(pace, "");
    assert!(results
        .iter()
        .all(|r| r["output_tokens"] == 32 && r["multi_token_chunks"] == false));
}

#[test]
fn usage_beats_everything_and_shows_several_tokens_per_event() {
    let pace = Pace {
        words: 2,
        ..Pace::default()
    };
    let (code, console, sm, results) = run(pace, &tokenizer());
    assert_eq!(code, 0, "{console}");
    for r in &results {
        assert_eq!(r["token_source"], "usage", "{r}");
        assert_eq!(r["output_tokens"], 64);
        assert_eq!(
            r["multi_token_chunks"], true,
            "usage counted 64 tokens in 32 events"
        );
    }
    assert_eq!(sm["features"]["code_completions"]["tokens_estimated"], 0);
}

#[test]
fn a_tokenizer_that_cannot_be_read_is_a_usage_error_naming_it() {
    let (url, _) = paced::start(Pace::default());
    let d = tempfile::tempdir().unwrap();
    let corpus = common::repo().join("fixtures/corpus/openai-bench.jsonl");
    let text = format!(
        "name = \"tokens\"\ncorpus = {corpus:?}\n[tokenizers]\ncode_completions = \"nope.json\"\n\
         [target]\nurl = \"{url}\"\n"
    );
    let s = d.path().join("s.toml");
    std::fs::write(&s, &text).unwrap();
    let (code, _, stderr) = common::run_cli(&["run", s.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("tokenizers.code_completions") && stderr.contains("nope.json"),
        "{stderr}"
    );
    let bad = text.replace("code_completions = ", "no_such_feature = ");
    std::fs::write(&s, bad).unwrap();
    let (code, _, stderr) = common::run_cli(&["run", s.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no_such_feature"), "{stderr}");
}
