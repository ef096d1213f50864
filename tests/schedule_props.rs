//! Property tests of the arrival processes: the mean rate, and for gamma the coefficient of
//! variation, come out as configured for any seed.

use duo_harness::schedule::{Arrival, Arrivals, RateProfile};
use proptest::prelude::*;

const N: usize = 20_000;

fn gaps(arrival: Arrival, rate: f64, burstiness: f64, seed: u64) -> Vec<f64> {
    let t: Vec<f64> = Arrivals::new(arrival, RateProfile::fixed(rate, None), burstiness, seed)
        .take(N + 1)
        .map(|d| d.as_secs_f64())
        .collect();
    t.windows(2).map(|w| w[1] - w[0]).collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn cv(v: &[f64]) -> f64 {
    let m = mean(v);
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64;
    var.sqrt() / m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn poisson_mean_rate_holds(rate in 0.5f64..5000.0, seed in any::<u64>()) {
        let g = gaps(Arrival::Poisson, rate, 1.0, seed);
        let achieved = 1.0 / mean(&g);
        // 20,000 exponential gaps: the mean's standard error is 0.7 %; 4 % is over 5 sigma.
        prop_assert!((achieved / rate - 1.0).abs() < 0.04, "rate {rate}: got {achieved}");
        prop_assert!((cv(&g) - 1.0).abs() < 0.06);
    }

    #[test]
    fn gamma_rate_and_burstiness_hold(rate in 0.5f64..5000.0, b in 0.25f64..4.0, seed in any::<u64>()) {
        let g = gaps(Arrival::Gamma, rate, b, seed);
        let achieved = 1.0 / mean(&g);
        prop_assert!((achieved / rate - 1.0).abs() < 0.06, "rate {rate} b {b}: got {achieved}");
        let want = 1.0 / b.sqrt();
        prop_assert!((cv(&g) / want - 1.0).abs() < 0.10, "b {b}: cv {} want {want}", cv(&g));
    }

    #[test]
    fn constant_is_exact(rate in 0.5f64..5000.0) {
        let g = gaps(Arrival::Constant, rate, 1.0, 0);
        prop_assert!((mean(&g) * rate - 1.0).abs() < 1e-9);
        // Offsets are whole nanoseconds, so gaps jitter by up to 1 ns.
        prop_assert!(cv(&g) < 1e-4);
    }

    #[test]
    fn same_seed_same_schedule(seed in any::<u64>()) {
        prop_assert_eq!(gaps(Arrival::Poisson, 50.0, 1.0, seed), gaps(Arrival::Poisson, 50.0, 1.0, seed));
    }

    #[test]
    fn ramp_delivers_the_planned_count(from in 0.0f64..500.0, to in 1.0f64..500.0, secs in 1.0f64..20.0) {
        let p = RateProfile::ramp(from, to, Some(secs));
        let n = Arrivals::new(Arrival::Constant, p.clone(), 1.0, 0).count() as f64;
        let expected = p.mean_rate() * secs;
        prop_assert!((n - expected).abs() <= 1.0, "{n} vs {expected}");
    }
}
