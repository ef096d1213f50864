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
    /// The change itself: `current − baseline`, or case by case ([`change_by_case`]).
    pub delta: f64,
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
    let (b, c) = ([baseline.to_vec()], [current.to_vec()]);
    change_stratified(stat, &b, &c, confidence, seed)
}

/// Draws, stratum by stratum, as many samples as each stratum has, with replacement, into `into`
/// (the strata laid end to end).
fn draw(rng: &mut ChaCha8Rng, strata: &[Vec<f64>], into: &mut [f64]) {
    let mut at = 0;
    for s in strata.iter().filter(|s| !s.is_empty()) {
        for slot in &mut into[at..at + s.len()] {
            *slot = s[rng.random_range(0..s.len())];
        }
        at += s.len();
    }
}

/// The stratified bootstrap: each run's samples come in strata (a feature's corpus cases), and
/// each resample keeps every stratum's count. The schedule sends a feature's cases in turn, so
/// their shares are fixed by design, not drawn: resampling them freely would add the variance of
/// a case mix the runs never had. With one stratum this is the plain bootstrap.
pub fn change_stratified(
    stat: Statistic,
    baseline: &[Vec<f64>],
    current: &[Vec<f64>],
    confidence: f64,
    seed: u64,
) -> Option<Change> {
    let flat = |s: &[Vec<f64>]| s.concat();
    let b0 = stat.of(&mut flat(baseline))?;
    let c0 = stat.of(&mut flat(current))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut bs, mut cs) = (flat(baseline), flat(current));
    let diffs: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            draw(&mut rng, baseline, &mut bs);
            draw(&mut rng, current, &mut cs);
            stat.of(&mut cs).unwrap_or(0.0) - stat.of(&mut bs).unwrap_or(0.0)
        })
        .collect();
    Some(interval(diffs, confidence, b0, c0, c0 - b0))
}

/// The change of a quantile across several cases, case by case: each case's quantile in the
/// current run less its quantile in the baseline, averaged with the cases' shares as weights
/// (`pairs`: each case's baseline and current samples). A pooled median of two cases with a gap
/// between them sits in the gap, where one request more of either case moves it by the whole
/// gap; the case-by-case change does not move unless a case does. Resampled within each case.
pub fn change_by_case(q: f64, pairs: &[CasePair], confidence: f64, seed: u64) -> Option<Change> {
    let pairs: Vec<&CasePair> = pairs
        .iter()
        .filter(|(b, c)| !b.is_empty() && !c.is_empty())
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let total: f64 = pairs.iter().map(|(b, c)| (b.len() + c.len()) as f64).sum();
    let weights: Vec<f64> = pairs
        .iter()
        .map(|(b, c)| (b.len() + c.len()) as f64 / total)
        .collect();
    let mean = |xs: &[(f64, f64)]| {
        let weighted = xs.iter().zip(&weights);
        weighted.fold((0.0, 0.0), |(b, c), ((x, y), w)| (b + w * x, c + w * y))
    };
    let stat = Statistic::Quantile(q);
    let of = |v: &[f64]| stat.of(&mut v.to_vec()).unwrap_or(0.0);
    let points: Vec<(f64, f64)> = pairs.iter().map(|(b, c)| (of(b), of(c))).collect();
    let (b0, c0) = mean(&points);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut scratch: Vec<CasePair> = pairs.iter().map(|p| (*p).clone()).collect();
    let diffs: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let drawn: Vec<(f64, f64)> = pairs
                .iter()
                .zip(&mut scratch)
                .map(|((b, c), (bs, cs))| {
                    draw(&mut rng, std::slice::from_ref(b), bs);
                    draw(&mut rng, std::slice::from_ref(c), cs);
                    (stat.of(bs).unwrap_or(0.0), stat.of(cs).unwrap_or(0.0))
                })
                .collect();
            let (b, c) = mean(&drawn);
            c - b
        })
        .collect();
    Some(interval(diffs, confidence, b0, c0, c0 - b0))
}

/// One corpus case's samples: in the baseline, in the current run.
pub type CasePair = (Vec<f64>, Vec<f64>);

/// The central `confidence` share of the resampled changes.
fn interval(mut diffs: Vec<f64>, confidence: f64, b0: f64, c0: f64, delta: f64) -> Change {
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| diffs[((q * RESAMPLES as f64) as usize).min(RESAMPLES - 1)];
    Change {
        baseline: b0,
        current: c0,
        delta,
        low: at(tail),
        high: at(1.0 - tail),
    }
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

    /// Two cases 90 ms apart, the runs alike but for one request more of the slower case: the
    /// pooled median jumps the gap (a false regression even resampled within each case); the
    /// case-by-case change sees nothing.
    #[test]
    fn a_median_between_two_cases_is_judged_case_by_case() {
        let case =
            |at: f64, n: usize| -> Vec<f64> { (0..n).map(|i| at + (i % 5) as f64).collect() };
        let (fast, slow, slow_plus) = (case(200.0, 47), case(290.0, 47), case(290.0, 48));
        let pooled = change_stratified(
            Statistic::Quantile(0.5),
            &[fast.clone(), slow.clone()],
            &[fast.clone(), slow_plus.clone()],
            0.95,
            1,
        )
        .unwrap();
        assert!(
            pooled.low > 20.0,
            "the pooled median jumps the gap: {pooled:?}"
        );
        let pairs = [(fast.clone(), fast), (slow, slow_plus)];
        let by_case = change_by_case(0.5, &pairs, 0.95, 1).unwrap();
        assert!(by_case.low <= 0.0 && by_case.high >= 0.0, "{by_case:?}");
        assert!(by_case.delta.abs() < 1.0, "{by_case:?}");
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
