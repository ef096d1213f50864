//! The run second by second: sends, ends, errors, output tokens and TTFT per second of the run,
//! folded in as records arrive (a one-hour run holds 3,600 small buckets, not its requests).
//!
//! In: measured [`RequestRecord`]s. Out: a [`Timeline`], which the report draws as TTFT,
//! throughput and requests in flight over time, downsampled to a bounded number of points.

use super::RequestRecord;
use serde::Serialize;
use std::collections::BTreeMap;

/// One second of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Second {
    /// Requests sent in this second.
    pub sends: u64,
    /// Requests that ended (completed, failed or cut off) in this second.
    pub ends: u64,
    pub errors: u64,
    /// Output tokens of successful requests that ended in this second.
    pub tokens: u64,
    /// TTFT of successful requests whose first content arrived in this second.
    pub ttft_n: u64,
    pub ttft_sum_ms: f64,
    pub ttft_max_ms: f64,
}

impl Second {
    fn absorb(&mut self, o: &Second) {
        self.sends += o.sends;
        self.ends += o.ends;
        self.errors += o.errors;
        self.tokens += o.tokens;
        self.ttft_n += o.ttft_n;
        self.ttft_sum_ms += o.ttft_sum_ms;
        self.ttft_max_ms = self.ttft_max_ms.max(o.ttft_max_ms);
    }
}

/// Per-second buckets, keyed by the second of the run (ms after the run start / 1000).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub seconds: BTreeMap<u64, Second>,
}

/// The timeline as columns, ready to draw: `t_s[i]` is the start of point `i`'s span.
#[derive(Debug, Clone, Default, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Series {
    /// Seconds per point (1 unless downsampled).
    pub step_s: u64,
    pub t_s: Vec<f64>,
    pub sends_per_s: Vec<f64>,
    pub completed_per_s: Vec<f64>,
    pub errors_per_s: Vec<f64>,
    pub tokens_per_s: Vec<f64>,
    /// Requests in flight at the end of the span.
    pub in_flight: Vec<f64>,
    pub ttft_mean_ms: Vec<Option<f64>>,
    pub ttft_max_ms: Vec<Option<f64>>,
}

fn second(ms: f64) -> u64 {
    (ms.max(0.0) / 1000.0) as u64
}

impl Timeline {
    /// Folds one measured (sent, not warm-up) record in.
    pub fn add(&mut self, r: &RequestRecord) {
        self.seconds.entry(second(r.sent_ms)).or_default().sends += 1;
        let end = self
            .seconds
            .entry(second(r.sent_ms + r.end_ms))
            .or_default();
        end.ends += 1;
        end.errors += u64::from(r.failed());
        if !r.ok() {
            return;
        }
        end.tokens += r.output_tokens.unwrap_or(0);
        if let Some(t) = r.ttft_ms() {
            let s = self.seconds.entry(second(r.sent_ms + t)).or_default();
            s.ttft_n += 1;
            s.ttft_sum_ms += t;
            s.ttft_max_ms = s.ttft_max_ms.max(t);
        }
    }

    /// At most `max_points` points: consecutive seconds are summed into spans of equal length.
    pub fn series(&self, max_points: usize) -> Series {
        let Some(last) = self.seconds.keys().next_back().copied() else {
            return Series {
                step_s: 1,
                ..Series::default()
            };
        };
        let span = last + 1;
        let step = span.div_ceil(max_points.max(1) as u64).max(1);
        let mut out = Series {
            step_s: step,
            ..Series::default()
        };
        let mut in_flight = 0i64;
        for start in (0..span).step_by(step as usize) {
            let mut b = Second::default();
            for (_, s) in self.seconds.range(start..start + step) {
                b.absorb(s);
            }
            in_flight += b.sends as i64 - b.ends as i64;
            let rate = |n: u64| n as f64 / step as f64;
            out.t_s.push(start as f64);
            out.sends_per_s.push(rate(b.sends));
            out.completed_per_s.push(rate(b.ends - b.errors));
            out.errors_per_s.push(rate(b.errors));
            out.tokens_per_s.push(rate(b.tokens));
            out.in_flight.push(in_flight.max(0) as f64);
            let some = b.ttft_n > 0;
            out.ttft_mean_ms
                .push(some.then(|| crate::stats::round3(b.ttft_sum_ms / b.ttft_n as f64)));
            out.ttft_max_ms
                .push(some.then(|| crate::stats::round3(b.ttft_max_ms)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_the_totals_and_bounds_the_points() {
        let mut t = Timeline::default();
        for s in 0..3600u64 {
            t.seconds.insert(
                s,
                Second {
                    sends: 2,
                    ends: 2,
                    tokens: 10,
                    ttft_n: 1,
                    ttft_sum_ms: s as f64,
                    ttft_max_ms: s as f64,
                    ..Second::default()
                },
            );
        }
        let s = t.series(600);
        assert_eq!(s.step_s, 6);
        assert_eq!(s.t_s.len(), 600);
        assert!(s.tokens_per_s.iter().all(|&v| v == 10.0));
        assert!(s.in_flight.iter().all(|&v| v == 0.0));
        assert_eq!(s.ttft_max_ms[1], Some(11.0));
    }
}
