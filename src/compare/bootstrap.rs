//! The percentile bootstrap over requests: how far a statistic's change between two runs can be
//! trusted. Each resample draws as many requests, with replacement, from each run as it has; the
//! interval is the central share of the resampled changes. Seeded: the same two runs always give
//! the same interval.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Resamples per interval: the interval's ends move by well under 1 % of its width between
/// seeds at this count.
pub const RESAMPLES: usize = 1000;

/// What is measured of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    /// The q-quantile, interpolated linearly between order statistics: the definition every
    /// figure of `summary.json` uses (NumPy's default), so the gate's point figures are the
    /// run's own.
    Quantile(f64),
    /// The q-quantile by nearest rank: always one of the samples (an infinite miss stays one).
    NearestRank(f64),
    /// The mean (a share, for 0/1 samples).
    Mean,
}

impl Statistic {
    /// The statistic of `v` (reordered in place), in linear time.
    pub fn of(self, v: &mut [f64]) -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        match self {
            Self::Mean => Some(v.iter().sum::<f64>() / v.len() as f64),
            Self::NearestRank(q) => {
                let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
                let (_, x, _) = v.select_nth_unstable_by(rank, f64::total_cmp);
                Some(*x)
            }
            Self::Quantile(q) => {
                let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
                let lo = pos.floor() as usize;
                let (_, x, above) = v.select_nth_unstable_by(lo, f64::total_cmp);
                let x = *x;
                let next = above.iter().copied().min_by(f64::total_cmp).unwrap_or(x);
                Some(x + (next - x) * (pos - lo as f64))
            }
        }
    }
}

/// The change `stat(current) − stat(baseline)` and its `confidence` interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub baseline: f64,
    pub current: f64,
    pub low: f64,
    pub high: f64,
}

/// Bootstraps the change of `stat` from `baseline` to `current`; `None` when either is empty.
pub fn change(
    stat: Statistic,
    baseline: &[f64],
    current: &[f64],
    confidence: f64,
    seed: u64,
) -> Option<Change> {
    let b0 = stat.of(&mut baseline.to_vec())?;
    let c0 = stat.of(&mut current.to_vec())?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut bs, mut cs) = (vec![0.0; baseline.len()], vec![0.0; current.len()]);
    let mut diffs: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let mut draw = |from: &[f64], into: &mut [f64]| {
                for slot in into.iter_mut() {
                    *slot = from[rng.random_range(0..from.len())];
                }
            };
            draw(baseline, &mut bs);
            draw(current, &mut cs);
            stat.of(&mut cs).unwrap_or(0.0) - stat.of(&mut bs).unwrap_or(0.0)
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| diffs[((q * RESAMPLES as f64) as usize).min(RESAMPLES - 1)];
    Some(Change {
        baseline: b0,
        current: c0,
        low: at(tail),
        high: at(1.0 - tail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shift_is_inside_its_interval_and_no_shift_straddles_zero() {
        let base: Vec<f64> = (0..400).map(|i| 100.0 + (i % 50) as f64).collect();
        let same = change(Statistic::Quantile(0.5), &base, &base, 0.95, 1).unwrap();
        assert!(same.low <= 0.0 && same.high >= 0.0, "{same:?}");
        let slower: Vec<f64> = base.iter().map(|v| v + 30.0).collect();
        let c = change(Statistic::Quantile(0.5), &base, &slower, 0.95, 1).unwrap();
        assert!(c.low > 20.0 && c.high < 40.0, "{c:?}");
        assert_eq!(c.current - c.baseline, 30.0);
        let errs = [0.0, 0.0, 1.0, 0.0];
        assert_eq!(Statistic::Mean.of(&mut errs.to_vec()), Some(0.25));
        assert!(change(Statistic::Mean, &[], &errs, 0.95, 1).is_none());
    }

    /// Synthetic runs with a known difference: the 95 % interval of a median's change holds the
    /// true change about 95 % of the time, neither far less (a gate that cries wolf) nor always
    /// (intervals too wide to decide anything).
    #[test]
    fn the_interval_covers_a_known_change_about_95_percent_of_the_time() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // Exponential latencies (mean 50 ms) above a 100 ms floor: the median is
        // 100 + 50 ln 2; the current run is 15 ms slower everywhere.
        let mut draw = |n: usize, shift: f64| -> Vec<f64> {
            (0..n)
                .map(|_| 100.0 + shift - 50.0 * (1.0 - rng.random::<f64>()).ln())
                .collect()
        };
        let trials = 200;
        let covered = (0..trials)
            .filter(|i| {
                let (b, c) = (draw(120, 0.0), draw(120, 15.0));
                let ch = change(Statistic::Quantile(0.5), &b, &c, 0.95, *i as u64).unwrap();
                ch.low <= 15.0 && 15.0 <= ch.high
            })
            .count();
        let share = covered as f64 / trials as f64;
        assert!((0.88..=0.99).contains(&share), "coverage {share}");
    }

    #[test]
    fn quantiles_are_the_summarys_own() {
        // Two samples: the median is their mean, as summary.json says (not the lower one).
        let mut v = [294.1, 139.5];
        assert_eq!(Statistic::Quantile(0.5).of(&mut v), Some(216.8));
        let samples: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f64 / 3.0)
            .collect();
        for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
            let mut sorted = samples.clone();
            sorted.sort_by(f64::total_cmp);
            let want = crate::stats::percentile(&sorted, q);
            assert_eq!(
                Statistic::Quantile(q).of(&mut samples.clone()),
                want,
                "q = {q}"
            );
        }
    }
}
