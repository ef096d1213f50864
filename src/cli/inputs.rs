//! The commands over inputs and references, apart from `run`: `snapshots review|accept|reject`
//! and `corpus validate|stats|from-dws-capture`.

use super::{CorpusAction, SnapshotAction};
use crate::exit::Exit;
use std::io::Write;
use std::path::PathBuf;

/// `snapshots review|accept|reject`.
pub(super) fn snapshots(action: SnapshotAction) -> Exit {
    use crate::conformance::{accepted_path, describe, pending};
    let (args, mode) = match action {
        SnapshotAction::Review(a) => (a, 'r'),
        SnapshotAction::Accept(a) => (a, 'a'),
        SnapshotAction::Reject(a) => (a, 'x'),
    };
    if mode == 'r' && std::env::var_os("CI").is_some() {
        eprintln!("error: snapshots review asks questions; under CI use accept or reject");
        return Exit::Usage;
    }
    if !args.dir.is_dir() {
        eprintln!(
            "error: --dir {}: no such folder of snapshots (a typo here would otherwise accept \
             nothing and say so as a success)",
            args.dir.display()
        );
        return Exit::Usage;
    }
    let files = pending(&args.dir, args.filter.as_deref());
    let stdin = std::io::stdin();
    let (mut accepted, mut rejected) = (0, 0);
    for p in &files {
        let choice = match mode {
            'r' => {
                print!("{}\n[a]ccept, [r]eject, [s]kip? ", describe(p));
                let _ = std::io::stdout().flush();
                let mut answer = String::new();
                if stdin.read_line(&mut answer).unwrap_or(0) == 0 {
                    break;
                }
                answer.trim().chars().next().unwrap_or('s')
            }
            'a' => 'a',
            _ => 'r',
        };
        let done = match choice {
            'a' => std::fs::rename(p, accepted_path(p)).map(|_| accepted += 1),
            'r' => std::fs::remove_file(p).map(|_| rejected += 1),
            _ => Ok(()),
        };
        if let Err(e) = done {
            eprintln!("error: {}: {e}", p.display());
            return Exit::Unreachable;
        }
    }
    println!(
        "{} pending, {accepted} accepted, {rejected} rejected",
        files.len()
    );
    Exit::Pass
}

/// `corpus from-dws-capture`: one corpus line per capture, on stdout.
fn cases_from_captures(captures: &[PathBuf]) -> Exit {
    for (i, path) in captures.iter().enumerate() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.trim_end_matches(".grpc.jsonl"))
            .unwrap_or_default();
        let case = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                crate::corpus::capture::session_case(name, &text).map_err(|e| e.to_string())
            });
        match case {
            Ok(mut it) => {
                it.arrival_offset_ms = 1000.0 * (i + 1) as f64;
                println!(
                    "{}",
                    serde_json::to_string(&it).expect("corpus lines serialise")
                );
            }
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return Exit::Usage;
            }
        }
    }
    Exit::Pass
}

pub(super) fn corpus(action: CorpusAction) -> Exit {
    let path = match &action {
        CorpusAction::Stats { corpus, .. } | CorpusAction::Validate { corpus } => corpus,
        CorpusAction::FromDwsCapture { captures } => return cases_from_captures(captures),
    };
    let scan = match crate::corpus::scan(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    if let Some(line) = scan.torn_last_line {
        eprintln!(
            "warning: {}:{line}: torn last line (the recorder stopped mid-write?)",
            path.display()
        );
    }
    for (line, message) in &scan.errors {
        eprintln!(
            "{}:{line}: {}",
            path.display(),
            crate::escape::console(message)
        );
    }
    match action {
        CorpusAction::Validate { .. } => {
            println!(
                "{}: {} valid lines, {} bad{}",
                path.display(),
                scan.interactions.len(),
                scan.errors.len(),
                if scan.torn_last_line.is_some() {
                    ", torn last line"
                } else {
                    ""
                }
            );
            if scan.errors.is_empty() {
                Exit::Pass
            } else {
                Exit::VerdictFailed
            }
        }
        CorpusAction::Stats { json, .. } => {
            let stats = crate::corpus::stats::stats(&scan.interactions);
            match json {
                true => println!(
                    "{}",
                    serde_json::to_string_pretty(&stats).expect("stats serialise")
                ),
                false => print!("{}", stats.table()),
            }
            Exit::Pass
        }
        CorpusAction::FromDwsCapture { captures } => cases_from_captures(&captures),
    }
}
