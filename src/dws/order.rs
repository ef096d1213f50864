//! When two sessions are the same: the partial order the Duo Workflow Service guarantees, read
//! from the captures and PROTOCOL-DWS.md, not the one order a capture happened to show.
//!
//! A session's steps ([`super::steps`]) come from three sources that run concurrently:
//! - **the executor's round trips** the graph awaits in a node (the workflow fetch, the tool
//!   approval, each tool, the final `GET`, other Rails calls): one chain, in order;
//! - **the checkpointer** (`status:*` PATCHes and `checkpoint:save` / `checkpoint:writes`
//!   POSTs), which LangGraph runs in background tasks: between two executor round trips the
//!   same ones happen, the status events in order, saves and writes in any order among them;
//! - **the UI stream** (`newCheckpoint:*`, collapsed), throttled and built when sent: in order
//!   among themselves, anywhere relative to the rest (a queued `INPUT_REQUIRED` can go out
//!   before the `require_input` PATCH).
//!
//! In: a case's expected steps and a replay's. Out: `None` when the replay keeps every ordering
//! the service guarantees and has the same steps; else the first difference, in words.

/// Which of the three sources a step comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Executor,
    Checkpointer,
    Ui,
}

fn source(step: &str) -> Source {
    if step.starts_with("newCheckpoint:") {
        Source::Ui
    } else if step.starts_with("status:") || step.starts_with("checkpoint:") {
        Source::Checkpointer
    } else {
        Source::Executor
    }
}

/// The steps of one source, in order.
fn chain(steps: &[String], of: Source) -> Vec<&str> {
    steps
        .iter()
        .filter(|s| source(s) == of)
        .map(String::as_str)
        .collect()
}

/// The checkpointer's steps between executor round trips: per segment, its status events in
/// order and its saves and writes sorted (their order among themselves is free).
fn segments(steps: &[String]) -> Vec<(Vec<&str>, Vec<&str>)> {
    let mut out: Vec<(Vec<&str>, Vec<&str>)> = vec![(Vec::new(), Vec::new())];
    for s in steps.iter().map(String::as_str) {
        match source(s) {
            Source::Executor => out.push((Vec::new(), Vec::new())),
            Source::Ui => {}
            Source::Checkpointer => {
                let Some((events, persisted)) = out.last_mut() else {
                    continue;
                };
                match s.starts_with("status:") {
                    true => events.push(s),
                    false => persisted.push(s),
                }
            }
        }
    }
    for (_, persisted) in &mut out {
        persisted.sort_unstable();
    }
    out
}

/// The first place two chains differ, in words.
fn first_difference(what: &str, want: &[&str], got: &[&str]) -> Option<String> {
    if want == got {
        return None;
    }
    let at = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let step = |v: Option<&&str>| v.map_or("(none)".to_owned(), |s| format!("'{s}'"));
    Some(format!(
        "{what} differ at {at}: {} (expected {})",
        step(got.get(at)),
        step(want.get(at))
    ))
}

/// `None` when `got` is the session `want` describes, in an order the service may produce.
pub fn difference(want: &[String], got: &[String]) -> Option<String> {
    let executor = first_difference(
        "steps",
        &chain(want, Source::Executor),
        &chain(got, Source::Executor),
    );
    let ui = || {
        first_difference(
            "checkpoint statuses",
            &chain(want, Source::Ui),
            &chain(got, Source::Ui),
        )
    };
    let persisted = || {
        let (w, g) = (segments(want), segments(got));
        w.iter()
            .zip(&g)
            .enumerate()
            .find_map(|(i, ((ws, wp), (gs, gp)))| {
                let after = match i {
                    0 => "before the first executor step".to_owned(),
                    i => format!("after executor step {}", i - 1),
                };
                first_difference(&format!("status events {after}"), ws, gs).or_else(|| {
                    first_difference(&format!("checkpoint saves and writes {after}"), wp, gp)
                })
            })
    };
    executor.or_else(ui).or_else(persisted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// The v1 registry flow's capture (`flow_agentic_chat_v1`).
    const CAPTURED: &str = "graphql:workflow status:start checkpoint:save newCheckpoint:CREATED \
        checkpoint:save graphql:tool_call_approved checkpoint:save newCheckpoint:RUNNING \
        runReadFile checkpoint:save status:require_input checkpoint:save checkpoint:writes \
        newCheckpoint:INPUT_REQUIRED workflow:get";

    #[test]
    fn the_orders_the_service_may_produce_pass() {
        let want = steps(CAPTURED);
        assert_eq!(difference(&want, &want), None);
        for allowed in [
            // A queued checkpoint's status built when it is sent: before the status event.
            CAPTURED.replace(
                "status:require_input checkpoint:save checkpoint:writes newCheckpoint:INPUT_REQUIRED",
                "newCheckpoint:INPUT_REQUIRED status:require_input checkpoint:save checkpoint:writes",
            ),
            // Checkpoint writes before the last save.
            CAPTURED.replace("checkpoint:save checkpoint:writes", "checkpoint:writes checkpoint:save"),
            // The UI stream behind a tool.
            CAPTURED.replace("newCheckpoint:RUNNING runReadFile", "runReadFile newCheckpoint:RUNNING"),
        ] {
            assert_eq!(difference(&want, &steps(&allowed)), None, "{allowed}");
        }
    }

    #[test]
    fn missing_extra_wrong_and_impossible_orders_fail() {
        let want = steps(CAPTURED);
        for (bad, says) in [
            // The tool before its approval: the service awaits the approval first.
            (
                CAPTURED.replace(
                    "graphql:tool_call_approved checkpoint:save newCheckpoint:RUNNING runReadFile",
                    "runReadFile checkpoint:save newCheckpoint:RUNNING graphql:tool_call_approved",
                ),
                "steps differ at 1",
            ),
            // A save moved across the tool: the checkpointer's work is not where it was.
            (
                CAPTURED.replace("runReadFile checkpoint:save", "checkpoint:save runReadFile"),
                "checkpoint saves and writes",
            ),
            // Status events swapped.
            (
                CAPTURED
                    .replace("status:start", "status:X")
                    .replace("status:require_input", "status:start")
                    .replace("status:X", "status:require_input"),
                "status events",
            ),
            // Checkpoint statuses out of their own order.
            (
                CAPTURED
                    .replace("newCheckpoint:CREATED", "newCheckpoint:X")
                    .replace("newCheckpoint:RUNNING", "newCheckpoint:CREATED")
                    .replace("newCheckpoint:X", "newCheckpoint:RUNNING"),
                "checkpoint statuses",
            ),
            (
                CAPTURED.replace(" checkpoint:writes", ""),
                "checkpoint saves and writes",
            ),
            (format!("{CAPTURED} runReadFile"), "steps differ at 4"),
            (CAPTURED.replace("runReadFile", "grep"), "steps differ at 2"),
        ] {
            let d = difference(&want, &steps(&bad));
            assert!(
                d.as_deref().is_some_and(|d| d.contains(says)),
                "{bad}: {d:?}"
            );
        }
    }
}
