//! Percentiles as every stage reports them: exact order statistics with linear interpolation
//! (NumPy's default, as vLLM bench reports), in milliseconds, rounded to the microsecond. Shared
//! by the corpus statistics, the measurement and the summary.

use serde::Serialize;

/// Percentiles of one metric, milliseconds; `None` fields when there was no sample.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Percentiles {
    pub n: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    /// `true`: exact order statistics with linear interpolation (NumPy's default, as vLLM bench
    /// reports); `false`: from the HDR histogram (within 0.1 %).
    pub exact: bool,
}

/// Linear-interpolation percentile of sorted samples (`q` in 0..=1).
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// Rounds milliseconds to the microsecond (three decimals), as every reported figure is.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl Percentiles {
    /// Exact percentiles of `samples` (ms).
    pub fn of(mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let mean = (n > 0).then(|| samples.iter().sum::<f64>() / n as f64);
        Self {
            n: n as u64,
            mean: mean.map(round3),
            p50: percentile(&samples, 0.5).map(round3),
            p90: percentile(&samples, 0.9).map(round3),
            p99: percentile(&samples, 0.99).map(round3),
            max: samples.last().copied().map(round3),
            exact: true,
        }
    }
}
