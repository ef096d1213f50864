//! `report.html`: one file that works offline. The chart code (uPlot, vendored under
//! `assets/vendor/uplot/`, MIT) and the data are inlined; the page's Content-Security-Policy
//! forbids every request, so it can make none. Distributions are drawn as CDFs of at most
//! [`CDF_POINTS`] points and the timeline as at most [`TIMELINE_POINTS`] points, so a one-hour
//! run stays light.

use super::Report;
use crate::measure::hist::Metric;
use serde_json::{json, Value};

const TEMPLATE: &str = include_str!("../../assets/report.html");
const UPLOT_JS: &str = include_str!("../../assets/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/vendor/uplot/uPlot.min.css");

/// Points per CDF curve.
pub const CDF_POINTS: usize = 200;
/// Points per time series.
pub const TIMELINE_POINTS: usize = 600;

/// A distribution as (values, cumulative shares), at most [`CDF_POINTS`] points.
pub fn cdf(m: &Metric) -> (Vec<f64>, Vec<f64>) {
    let mut values = m.values();
    values.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = values.iter().map(|v| v.1).sum();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    if total == 0 {
        return (xs, ys);
    }
    let step = (total as f64 / CDF_POINTS as f64).max(1.0);
    let (mut seen, mut next) = (0u64, 0.0f64);
    for (i, (v, n)) in values.iter().enumerate() {
        seen += n;
        if seen as f64 >= next || i + 1 == values.len() {
            xs.push(crate::stats::round3(*v));
            ys.push(seen as f64 / total as f64);
            next = seen as f64 + step;
        }
    }
    (xs, ys)
}

/// The intended and delivered sends per second, downsampled like the timeline.
fn schedule(r: &Report) -> Value {
    let w = &r.agg.sends.windows;
    let span = w.keys().next_back().map_or(0, |l| l + 1);
    let step = span.div_ceil(TIMELINE_POINTS as u64).max(1);
    let (mut t, mut intended, mut delivered) = (Vec::new(), Vec::new(), Vec::new());
    for start in (0..span).step_by(step as usize) {
        let (i, d) = w
            .range(start..start + step)
            .fold((0, 0), |(a, b), (_, (i, d))| (a + i, b + d));
        t.push(start as f64);
        intended.push(i as f64 / step as f64);
        delivered.push(d as f64 / step as f64);
    }
    json!({"t_s": t, "intended": intended, "delivered": delivered})
}

/// The data the page draws.
fn data(r: &Report) -> Result<Value, String> {
    let curve = |m: &Metric| {
        let (x, y) = cdf(m);
        json!([x, y])
    };
    let cdfs: serde_json::Map<String, Value> = r
        .agg
        .features
        .iter()
        .map(|(k, f)| {
            let v = json!({"ttft": curve(&f.ttft), "tpot": curve(&f.tpot), "e2e": curve(&f.e2e)});
            (k.clone(), v)
        })
        .collect();
    Ok(json!({
        "summary": serde_json::to_value(r.summary).map_err(|e| e.to_string())?,
        "plan": r.plan,
        "comparison": r.comparison,
        "stages": r.stages,
        "capacity": r.capacity.map(|c| c.json()),
        "cdf": cdfs,
        // Folded and judged once, in Rust: the page shows them, it does not work them out again.
        "notes": r.summary.notes_folded(),
        "whole": r.summary.whole_answer_features(),
        "timeline": r.agg.timeline.series(TIMELINE_POINTS),
        "schedule": schedule(r),
        "lateness_cdf": curve(&r.agg.lateness),
    }))
}

/// Text safe inside an HTML element: `<`, `>` and `&` escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn render(r: &Report) -> Result<String, String> {
    // Inside <script type="application/json"> only `</` could end the element early; `<` as
    // \u003c keeps the JSON equal and the element whole.
    let data = serde_json::to_string(&data(r)?)
        .map_err(|e| e.to_string())?
        .replace('<', "\\u003c");
    let title = format!(
        "duo-harness · {} · {}",
        r.summary.scenario, r.summary.verdict
    );
    fill(
        TEMPLATE,
        &[
            ("{{TITLE}}", &escape(&title)),
            ("{{UPLOT_CSS}}", UPLOT_CSS),
            ("{{DATA}}", &data),
            ("{{UPLOT_JS}}", UPLOT_JS),
        ],
    )
}

/// The template with each marker, in order of appearance, replaced once: what is inserted is
/// never searched again, so no data can be taken for a marker.
fn fill(template: &str, parts: &[(&str, &str)]) -> Result<String, String> {
    let (mut out, mut rest) = (String::with_capacity(template.len() + 65536), template);
    for (marker, value) in parts {
        let at = rest
            .find(marker)
            .ok_or_else(|| format!("report template: {marker} missing"))?;
        out.push_str(&rest[..at]);
        out.push_str(value);
        rest = &rest[at + marker.len()..];
    }
    out.push_str(rest);
    Ok(out)
}
