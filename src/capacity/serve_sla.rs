//! `[capacity] strategy = "serve_sla"`: vLLM `bench sweep serve_sla`'s search replayed on our
//! probes, to compare how many probes and how long each strategy takes to an answer on the
//! same stack. Its order: the most allowed rate (`capacity.max_rps`), then 1 request/s, then
//! the integer part of the first root of a PCHIP through every (rate, margin) seen
//! ([`pchip::next_rate`]); it stops when the lowest failing and the highest passing rate are
//! 1 request/s apart. Only the order of probes is vLLM's: each rate is judged exactly as our
//! own search judges it (a second look near the boundary or at an invalid measurement; a rate
//! that did not comply counts as failing), so the two strategies differ in where they probe,
//! not in what passes.

use super::{look, pchip, Axis, CapacityError, Probe, Stop};
use crate::plan::Plan;
use std::path::Path;

/// The probes in order, and why the search stopped.
pub(super) async fn search(scenario: &Path, plan: &Plan, out: &Path) -> (Vec<Probe>, Stop) {
    let spec = &plan.capacity;
    let (min, max) = (1.0_f64.min(spec.max_rps), spec.max_rps.floor().max(1.0));
    // vLLM's margin: > 0 fails.
    let mut history: Vec<(f64, f64)> = Vec::new();
    let mut probes: Vec<Probe> = Vec::new();
    let mut signals = crate::signals::stop_signals();
    let stopped: Stop = loop {
        let passing = history
            .iter()
            .filter(|h| h.1 <= 0.0)
            .map(|h| h.0)
            .fold(min, f64::max);
        let failing = history
            .iter()
            .filter(|h| h.1 > 0.0)
            .map(|h| h.0)
            .fold(max, f64::min);
        if failing - passing <= 1.0 {
            break Ok(
                "serve_sla's stop: the lowest failing and the highest passing rate are 1 \
                      request/s apart"
                    .to_owned(),
            );
        }
        if probes.len() >= spec.max_probes {
            break Ok(format!("the probe budget ({}) is spent", spec.max_probes));
        }
        if signals.try_recv() {
            break Err(CapacityError::Interrupted(String::new()));
        }
        let Some(wanted) = pchip::next_rate(&history, min, max) else {
            break Ok("serve_sla's interpolant has no root (vLLM's loop raises here)".to_owned());
        };
        let rate = wanted.clamp(min, max);
        let p = match look(scenario, plan, (Axis::Rate, rate), out, &mut probes).await {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        if let Some(e) = p.failure() {
            probes.push(p);
            break Err(e);
        }
        let m = p.margin.unwrap_or(0.0);
        let vllm_margin = match p.compliant {
            true => -m.max(0.0),
            false => (-m).max(1e-9),
        };
        history.push((rate, vllm_margin));
        probes.push(p);
        if rate != wanted {
            break Ok(format!(
                "serve_sla's next rate {wanted} lies outside [{min}, {max}]"
            ));
        }
    };
    (probes, stopped)
}
