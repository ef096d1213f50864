//! The stack config's numbers, checked the same whether it comes from `stack --config` or a
//! scenario's `[stack]`.

use crate::numbers::within;

/// The embedded stack's numbers: timing, retries, engine settings.
pub fn numbers(stack: &crate::twin::StackConfig) -> Result<(), String> {
    within(
        "stack.aigw.retry_time_scale",
        stack.aigw.retry_time_scale,
        0.0,
        100.0,
        false,
    )?;
    let d = &stack.dws;
    if d.llm_attempts > 100 {
        return Err(format!(
            "stack.dws.llm_attempts = {}: must be <= 100",
            d.llm_attempts
        ));
    }
    if !(1..=1024).contains(&d.workers) {
        return Err(format!(
            "stack.dws.workers = {}: must be between 1 and 1024",
            d.workers
        ));
    }
    for (key, ms) in [
        ("stack.dws.llm_retry_ms", d.llm_retry_ms),
        ("stack.dws.checkpoint_throttle_ms", d.checkpoint_throttle_ms),
        ("stack.dws.start_cost_ms", d.start_cost_ms),
        ("stack.dws.session_cost_ms", d.session_cost_ms),
        ("stack.dws.tool_cost_ms", d.tool_cost_ms),
    ] {
        if ms > 600_000 {
            return Err(format!("{key} = {ms}: must be <= 600000"));
        }
    }
    for b in &stack.backends {
        let key = |k: &str| format!("stack.backend.{}.{k}", b.name);
        within(&key("ttft_ms"), b.ttft_ms, 0.0, 600_000.0, false)?;
        within(&key("itl_ms"), b.itl_ms, 0.0, 60_000.0, false)?;
        within(&key("variation"), b.variation, 0.0, 1.0, false)?;
        if b.default_max_tokens > 1_000_000 {
            return Err(key("default_max_tokens: must be <= 1000000"));
        }
        if let Some(e) = &b.engine {
            e.cost()
                .map_err(|m| format!("stack.backend.{}.{m}", b.name))?;
        }
    }
    Ok(())
}
