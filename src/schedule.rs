//! Arrival processes: pure, seeded iterators of intended send instants. No I/O, no clock.
//!
//! In: a resolved [`LoadSpec`] and the selected interactions (features and recorded arrival
//! offsets). Out: an iterator of [`Planned`] sends: which interaction, and when (an offset from
//! the run's start), or "as soon as a slot frees" for the closed loop.
//!
//! Rate-based processes work by time rescaling: a unit-rate process (gaps of mean 1: constant 1,
//! exponential, or gamma with shape = burstiness and scale 1/burstiness) is generated in
//! "operational time" `u`, and each point is mapped back through the inverse of the cumulative
//! rate `Λ(t) = ∫₀ᵗ λ(s) ds`. With a fixed rate this is the textbook process; with a ramp or
//! steps the instantaneous rate follows the profile while the gap distribution keeps its shape.

pub use crate::plan::{Arrival, RateProfile, Segment};
use crate::plan::{LoadSpec, SliceOf};
use rand::distr::weighted::WeightedIndex;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Gamma};
use std::time::Duration;

/// Unit-mean gaps in operational time.
#[derive(Debug, Clone)]
enum Gaps {
    Constant,
    Exp(Exp<f64>),
    Gamma(Gamma<f64>),
}

impl Gaps {
    fn next(&self, rng: &mut ChaCha8Rng) -> f64 {
        match self {
            Gaps::Constant => 1.0,
            Gaps::Exp(d) => d.sample(rng),
            Gaps::Gamma(d) => d.sample(rng),
        }
    }
}

/// A rate-based arrival process: send offsets from the run's start, first at zero.
#[derive(Debug, Clone)]
pub struct Arrivals {
    profile: RateProfile,
    gaps: Gaps,
    rng: ChaCha8Rng,
    u: f64,
}

impl Arrivals {
    /// `burstiness` is only read for [`Arrival::Gamma`]. Panics on a non-rate arrival or a
    /// non-positive burstiness (the plan has checked both).
    pub fn new(arrival: Arrival, profile: RateProfile, burstiness: f64, seed: u64) -> Self {
        let gaps = match arrival {
            Arrival::Constant => Gaps::Constant,
            Arrival::Poisson => Gaps::Exp(Exp::new(1.0).expect("rate 1 is valid")),
            Arrival::Gamma => Gaps::Gamma(
                Gamma::new(burstiness, 1.0 / burstiness).expect("burstiness > 0 (plan checked)"),
            ),
            other => panic!("{other:?} is not a rate-based arrival"),
        };
        Self {
            profile,
            gaps,
            rng: ChaCha8Rng::seed_from_u64(seed),
            u: 0.0,
        }
    }
}

impl Iterator for Arrivals {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let t = self.profile.time_at(self.u)?;
        self.u += self.gaps.next(&mut self.rng);
        // A schedule past any representable instant has ended (the plan bounds it long before).
        Duration::try_from_secs_f64(t).ok()
    }
}

/// Trace replay: recorded offsets (ms, in any order) multiplied by `time_scale`, sorted, with
/// the index of the interaction each belongs to.
pub fn trace(offsets_ms: &[f64], time_scale: f64) -> Vec<(Duration, usize)> {
    let mut out: Vec<(Duration, usize)> = offsets_ms
        .iter()
        .enumerate()
        .map(|(i, &ms)| {
            (
                Duration::try_from_secs_f64(ms.max(0.0) / 1000.0 * time_scale)
                    .unwrap_or(Duration::MAX),
                i,
            )
        })
        .collect();
    out.sort_by_key(|&(t, i)| (t, i));
    out
}

/// Which interaction each send replays: a weighted mix of features, each feature's cases taken
/// in turn; without weights, every interaction in turn (so the corpus's own proportions hold).
#[derive(Debug, Clone)]
pub struct Picker {
    groups: Vec<Vec<usize>>,
    next_in_group: Vec<usize>,
    weights: Option<WeightedIndex<f64>>,
    rng: ChaCha8Rng,
}

/// Why a schedule cannot be drawn for this load and corpus.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("load.arrival: a rate-based arrival needs a rate")]
    NoRate,
    #[error("load.mix: no interaction of feature '{0}'")]
    NoInteraction(String),
    #[error("load.mix: {0}")]
    Weights(String),
}

impl Picker {
    /// `features[i]` is interaction i's feature; `mix` maps features to weights (empty: none).
    pub fn new(features: &[&str], mix: &[(String, f64)], seed: u64) -> Result<Self, ScheduleError> {
        let rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6d69_785f_7069_636b);
        if mix.is_empty() {
            return Ok(Self {
                groups: vec![(0..features.len()).collect()],
                next_in_group: vec![0],
                weights: None,
                rng,
            });
        }
        let mut groups = Vec::new();
        for (feature, _) in mix {
            let cases: Vec<usize> = (0..features.len())
                .filter(|&i| features[i] == feature)
                .collect();
            if cases.is_empty() {
                return Err(ScheduleError::NoInteraction(feature.clone()));
            }
            groups.push(cases);
        }
        let weights = WeightedIndex::new(mix.iter().map(|(_, w)| *w))
            .map_err(|e| ScheduleError::Weights(e.to_string()))?;
        Ok(Self {
            next_in_group: vec![0; groups.len()],
            groups,
            weights: Some(weights),
            rng,
        })
    }

    pub fn next_index(&mut self) -> usize {
        let g = self.weights.as_ref().map_or(0, |w| w.sample(&mut self.rng));
        let cases = &self.groups[g];
        let i = cases[self.next_in_group[g] % cases.len()];
        self.next_in_group[g] += 1;
        i
    }
}

/// One send the schedule asks for: the interaction, and when (offset from the run's start), or
/// `None` for "as soon as a concurrency slot frees" (closed loop).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Planned {
    pub at: Option<Duration>,
    pub index: usize,
}

/// A whole run's schedule (or a slice of one), and how many sends it may make at most.
pub struct Schedule {
    pub sends: Box<dyn Iterator<Item = Planned> + Send>,
    pub max_requests: Option<u64>,
    pub seq: SeqNumbers,
}

/// The sequence numbers of a schedule's sends: the n-th is `first + n * step` (a slice's are
/// its places in the whole schedule, so merged slices number every send once).
#[derive(Debug, Clone, Copy)]
pub struct SeqNumbers {
    first: u64,
    step: u64,
}

impl SeqNumbers {
    /// The sequence number of the n-th send.
    pub fn of(self, n: u64) -> u64 {
        self.first + n * self.step
    }
}

impl Schedule {
    /// No send at all (a run its preflight stopped).
    pub fn none() -> Self {
        Self::whole(Box::new(std::iter::empty()), Some(0))
    }

    fn whole(sends: Box<dyn Iterator<Item = Planned> + Send>, max: Option<u64>) -> Self {
        Self {
            sends,
            max_requests: max,
            seq: SeqNumbers { first: 0, step: 1 },
        }
    }

    /// The K-th of every N sends, in the whole schedule's order and at its intended times;
    /// `max_requests` bounds the whole schedule, of which this slice sends its share.
    pub fn slice(self, of: SliceOf) -> Self {
        let bounded: Box<dyn Iterator<Item = Planned> + Send> = match self.max_requests {
            Some(m) => Box::new(self.sends.take(usize::try_from(m).unwrap_or(usize::MAX))),
            None => self.sends,
        };
        let kept = bounded
            .enumerate()
            .filter(move |(i, _)| of.keeps(*i as u64))
            .map(|(_, p)| p);
        Self {
            sends: Box::new(kept),
            max_requests: self.max_requests.map(|m| of.share(m)),
            seq: SeqNumbers {
                first: u64::from(of.index),
                step: u64::from(of.count),
            },
        }
    }
}

/// Builds the schedule of `load` over the selected interactions (`features[i]` and
/// `offsets_ms[i]` belong to interaction i). A closed loop or a trace without other bounds makes
/// one pass over the interactions.
pub fn build(
    load: &LoadSpec,
    features: &[&str],
    offsets_ms: &[f64],
) -> Result<Schedule, ScheduleError> {
    let mix: Vec<(String, f64)> = load.mix.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let mut picker = Picker::new(features, &mix, load.seed())?;
    let one_pass = offsets_ms.len() as u64;
    let (sends, max): (Box<dyn Iterator<Item = Planned> + Send>, Option<u64>) = match load.arrival {
        Arrival::Closed => {
            let unbounded = load.duration_s.is_none() && load.max_requests.is_none();
            let it = std::iter::repeat_with(move || Planned {
                at: None,
                index: picker.next_index(),
            });
            (
                Box::new(it),
                if unbounded {
                    Some(one_pass * load.calibration_passes.max(1))
                } else {
                    load.max_requests
                },
            )
        }
        // Developers send until the duration ends (or `max_requests`), each at its own pace.
        Arrival::Developers => {
            let it = std::iter::repeat_with(move || Planned {
                at: None,
                index: picker.next_index(),
            });
            (Box::new(it), load.max_requests)
        }
        Arrival::Trace => {
            let it = trace(offsets_ms, load.time_scale)
                .into_iter()
                .map(|(t, index)| Planned { at: Some(t), index });
            let max = load.max_requests.map_or(one_pass, |m| m.min(one_pass));
            (Box::new(it), Some(max))
        }
        rate_based => {
            let profile = load.profile().ok_or(ScheduleError::NoRate)?;
            let arrivals = Arrivals::new(rate_based, profile, load.burstiness, load.seed());
            let it = arrivals.map(move |t| Planned {
                at: Some(t),
                index: picker.next_index(),
            });
            (Box::new(it), load.max_requests)
        }
    };
    Ok(Schedule::whole(sends, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_from_rate_zero_ramps_up() {
        let a: Vec<Duration> = Arrivals::new(
            Arrival::Constant,
            RateProfile::ramp(0.0, 20.0, Some(2.0)),
            1.0,
            0,
        )
        .collect();
        // ∫ 10 t dt = 20 requests over 2 s, the first at zero, gaps shrinking.
        assert_eq!(a.len(), 20);
        assert_eq!(a[0], Duration::ZERO);
        assert!(a[2] - a[1] < a[1] - a[0]);
    }

    #[test]
    fn constant_rate_is_evenly_spaced_from_zero() {
        let a: Vec<Duration> = Arrivals::new(
            Arrival::Constant,
            RateProfile::fixed(4.0, Some(1.0)),
            1.0,
            0,
        )
        .collect();
        let ms: Vec<u128> = a.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![0, 250, 500, 750]);
    }

    #[test]
    fn ramp_inverse_matches_hand_computation() {
        // λ(t) = 2t over 10 s: Λ(t) = t², so the k-th request is due at √k.
        let p = RateProfile::ramp(0.0, 20.0, Some(10.0));
        for k in [1.0, 4.0, 50.0, 99.0] {
            let t = p.time_at(k).unwrap();
            assert!((t - f64::sqrt(k)).abs() < 1e-9, "k={k}: {t}");
        }
        assert_eq!(p.time_at(100.0), None);
        assert!((p.mean_rate() - 10.0).abs() < 1e-12);
    }

    #[test]
    fn steps_follow_each_rate() {
        let p = RateProfile::steps(&[(10.0, 1.0), (100.0, 1.0)]);
        let a: Vec<Duration> = Arrivals::new(Arrival::Constant, p, 1.0, 0).collect();
        assert_eq!(a.len(), 110);
        assert_eq!(a[10], Duration::from_secs(1));
        assert!((a[11].as_secs_f64() - 1.01).abs() < 1e-9);
    }

    #[test]
    fn trace_scales_and_sorts() {
        let t = trace(&[1000.0, 0.0, 500.0], 0.5);
        assert_eq!(
            t,
            vec![
                (Duration::ZERO, 1),
                (Duration::from_millis(250), 2),
                (Duration::from_millis(500), 0)
            ]
        );
    }

    #[test]
    fn picker_follows_weights_and_cycles_cases() {
        let features = ["a", "b", "a", "b", "b"];
        let mut p = Picker::new(&features, &[("a".into(), 3.0), ("b".into(), 1.0)], 7).unwrap();
        let picks: Vec<usize> = (0..4000).map(|_| p.next_index()).collect();
        let a = picks.iter().filter(|&&i| features[i] == "a").count();
        assert!((2850..3150).contains(&a), "{a} of 4000 for weight 3/4");
        assert!(picks.contains(&0) && picks.contains(&2) && picks.contains(&4));
        let mut plain = Picker::new(&features, &[], 1).unwrap();
        let order: Vec<usize> = (0..6).map(|_| plain.next_index()).collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4, 0]);
        assert!(Picker::new(&features, &[("c".into(), 1.0)], 1).is_err());
    }
}
