//! One latency metric's distribution: an HDR histogram (microseconds, 3 significant digits,
//! mergeable and serialisable, so memory stays flat however long a run lasts) plus the exact
//! samples while there are few enough of them (exact percentiles for small runs).

use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// Samples kept exactly per metric; past this, percentiles come from the histogram.
pub const EXACT_CAP: usize = 20_000;

use crate::stats::round3;
pub use crate::stats::{percentile, Percentiles};

/// Percentiles from the HDR histogram (within 0.1 %).
fn of_histogram(h: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| round3(us as f64 / 1000.0);
    let some = !h.is_empty();
    let at = |q: f64| some.then(|| ms(h.value_at_quantile(q)));
    Percentiles {
        n: h.len(),
        mean: some.then(|| round3(h.mean() / 1000.0)),
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: some.then(|| ms(h.max())),
        exact: false,
    }
}

/// The distribution of one metric.
#[derive(Debug, Clone)]
pub struct Metric {
    hist: Histogram<u64>,
    exact: Vec<f64>,
    overflowed: bool,
}

impl Default for Metric {
    fn default() -> Self {
        Self {
            hist: Histogram::new(3).expect("3 significant digits is valid"),
            exact: Vec::new(),
            overflowed: false,
        }
    }
}

impl Metric {
    /// Records one sample in milliseconds (negative values count as 0).
    pub fn record(&mut self, ms: f64) {
        let ms = ms.max(0.0);
        let us = (ms * 1000.0).round() as u64;
        // Auto-resizing: `record` grows the range; saturating would clamp to the initial one.
        if self.hist.record(us).is_err() {
            self.hist.saturating_record(us);
        }
        if self.overflowed {
            return;
        }
        if self.exact.len() < EXACT_CAP {
            self.exact.push(ms);
        } else {
            self.overflowed = true;
            self.exact = Vec::new();
        }
    }

    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    pub fn percentiles(&self) -> Percentiles {
        if self.overflowed {
            of_histogram(&self.hist)
        } else {
            Percentiles::of(self.exact.clone())
        }
    }

    /// How many samples are at most `ms` (exact while the samples are kept, else within the
    /// histogram's 0.1 %).
    pub fn count_at_most(&self, ms: f64) -> u64 {
        if !self.overflowed {
            return self.exact.iter().filter(|v| **v <= ms).count() as u64;
        }
        let us = (ms.max(0.0) * 1000.0).round() as u64;
        self.hist
            .iter_recorded()
            .filter(|v| self.hist.lowest_equivalent(v.value_iterated_to()) <= us)
            .map(|v| v.count_at_value())
            .sum()
    }

    /// The samples as (value ms, count): exact while kept, else the histogram's buckets.
    pub fn values(&self) -> Vec<(f64, u64)> {
        if !self.overflowed {
            return self.exact.iter().map(|v| (*v, 1)).collect();
        }
        self.hist
            .iter_recorded()
            .map(|v| (v.value_iterated_to() as f64 / 1000.0, v.count_at_value()))
            .collect()
    }

    /// How many samples are above `ms`.
    pub fn count_above(&self, ms: f64) -> u64 {
        self.len() - self.count_at_most(ms)
    }

    /// The 99th percentile, cheaply (for the live view).
    pub fn p99_ms(&self) -> Option<f64> {
        (!self.hist.is_empty()).then(|| self.hist.value_at_quantile(0.99) as f64 / 1000.0)
    }

    /// Adds another metric's samples (another run slice, another feature).
    pub fn merge(&mut self, other: &Metric) {
        self.hist
            .add(&other.hist)
            .expect("auto-resizing histograms always merge");
        if self.overflowed || other.overflowed || self.exact.len() + other.exact.len() > EXACT_CAP {
            self.overflowed = true;
            self.exact = Vec::new();
        } else {
            self.exact.extend_from_slice(&other.exact);
        }
    }

    /// The histogram in HDR's V2 compressed format, base64 (what `histograms.json` holds).
    pub fn encode(&self) -> String {
        use base64::Engine;
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.hist, &mut bytes)
            .expect("serialising into memory cannot fail");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Reads a histogram written by [`Metric::encode`] (exact samples are not kept there).
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| DecodeError(e.to_string()))?;
        let mut hist: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| DecodeError(format!("{e:?}")))?;
        hist.auto(true);
        Ok(Self {
            hist,
            exact: Vec::new(),
            overflowed: true,
        })
    }
}

/// A histogram text that is not one [`Metric::encode`] wrote.
#[derive(Debug, thiserror::Error)]
#[error("not an HDR histogram: {0}")]
pub struct DecodeError(pub String);

/// In a document a histogram is its [`Metric::encode`] text.
impl serde::Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> serde::Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Metric::decode(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Metric {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Histogram".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An HDR histogram in microseconds: V2 deflate format, base64"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_linearly() {
        let p = Percentiles::of(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(p.p50, Some(2.5));
        let mut m = Metric::default();
        [4.0, 1.0, 3.0, 2.0].into_iter().for_each(|v| m.record(v));
        assert_eq!((m.count_at_most(2.0), m.count_above(2.5)), (2, 2));
        assert_eq!(p.p90, Some(3.7));
        assert_eq!(p.max, Some(4.0));
        assert_eq!(p.mean, Some(2.5));
        assert_eq!(Percentiles::of(vec![]).p50, None);
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
    }

    #[test]
    fn histogram_takes_over_past_the_cap_within_a_tenth_of_a_percent() {
        let mut m = Metric::default();
        for i in 0..(EXACT_CAP + 5000) {
            m.record(20.0 + (i % 1000) as f64 / 100.0); // 20.00 .. 29.99 ms
        }
        let p = m.percentiles();
        assert!(!p.exact);
        assert_eq!(p.n, (EXACT_CAP + 5000) as u64);
        // A tenth of the values lie at or below 20.99 ms; counted from the histogram too.
        let below = m.count_at_most(20.995) as f64 / p.n as f64;
        assert!((below - 0.1).abs() < 0.002, "{below}");
        assert!((p.p50.unwrap() - 25.0).abs() < 0.03, "{p:?}");
        assert!((p.max.unwrap() - 29.99).abs() < 0.03, "{p:?}");
    }

    #[test]
    fn encode_decode_merge_round_trip() {
        let (mut a, mut b) = (Metric::default(), Metric::default());
        (1..=100).for_each(|i| a.record(i as f64));
        (101..=200).for_each(|i| b.record(i as f64));
        let mut merged = Metric::decode(&a.encode()).unwrap();
        merged.merge(&Metric::decode(&b.encode()).unwrap());
        let p = merged.percentiles();
        assert_eq!(p.n, 200);
        assert!((p.p50.unwrap() - 100.0).abs() < 0.1, "{p:?}");
        a.merge(&b);
        assert!(a.percentiles().exact);
        assert_eq!(a.percentiles().p50, Some(100.5));
    }
}
