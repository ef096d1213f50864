//! Bounds on the numbers a user gives (a scenario, a stack config, a flag): shared by every
//! stage that reads one, so each says the same thing the same way.

/// `key` must be finite and within `lo..=hi` (`lo` itself excluded when `open`).
pub fn within(key: &str, v: f64, lo: f64, hi: f64, open: bool) -> Result<(), String> {
    let low_ok = if open { v > lo } else { v >= lo };
    if v.is_finite() && low_ok && v <= hi {
        return Ok(());
    }
    let low = if open { ">" } else { ">=" };
    Err(format!(
        "{key} = {v}: must be a finite number {low} {lo} and <= {hi}"
    ))
}
