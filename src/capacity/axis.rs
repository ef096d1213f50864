//! What the capacity search varies: the total rate of an open loop (requests/s), or with
//! `capacity --users` the number of closed-loop virtual developers. The search's arithmetic
//! (bracketing, interpolation, the resolution) is the same; developers are whole numbers.

use crate::plan::{self, Plan};

/// The searched quantity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Axis {
    /// Total requests/s of the scenario's rate-based arrival.
    Rate,
    /// Virtual developers, each with the scenario's `[load.developers]` think time.
    Users { max: f64 },
}

impl Axis {
    /// The axis of a scenario's search, or why it cannot be searched.
    pub fn of(plan: &Plan, users: bool) -> Result<Axis, String> {
        if !users {
            return match plan.load.arrival.rate_based() {
                true => Ok(Axis::Rate),
                false => Err(
                    "capacity needs a rate-based [load] arrival (constant, poisson or \
                     gamma), or --users with [load.developers]"
                        .into(),
                ),
            };
        }
        if !cfg!(feature = "goose") {
            return Err(
                "capacity --users needs duo-harness built with the goose feature \
                 (cargo build --release --features goose)"
                    .into(),
            );
        }
        let Some(d) = &plan.load.developers else {
            return Err(
                "capacity --users needs [load.developers] (its think_s, think_spread \
                 and ramp_s shape every probe's developers)"
                    .into(),
            );
        };
        let max = plan.capacity.max_rps * d.think_s.max(1.0);
        Ok(Axis::Users {
            max: max.clamp(1.0, plan::MAX_USERS as f64).floor(),
        })
    }

    /// The first probe: `start_rps` worth of developers at the scenario's think time.
    pub fn start(self, plan: &Plan) -> f64 {
        match (self, &plan.load.developers) {
            (Axis::Users { max }, Some(d)) => (plan.capacity.start_rps * d.think_s)
                .round()
                .clamp(1.0, max),
            _ => plan.capacity.start_rps,
        }
    }

    pub fn max(self, plan: &Plan) -> f64 {
        match self {
            Axis::Rate => plan.capacity.max_rps,
            Axis::Users { max } => max,
        }
    }

    /// No compliant value at or below this: nothing complies.
    pub fn floor(self, plan: &Plan) -> f64 {
        match self {
            Axis::Rate => plan.capacity.start_rps / 64.0,
            Axis::Users { .. } => 1.0,
        }
    }

    /// A value the axis can probe (developers are whole, at least one).
    pub fn snap(self, x: f64) -> f64 {
        match self {
            Axis::Rate => x,
            Axis::Users { max } => x.round().clamp(1.0, max),
        }
    }

    /// Doubling while every probe complies.
    pub fn up(self, x: f64, plan: &Plan) -> f64 {
        self.snap((x * 2.0).min(self.max(plan)))
    }

    /// Halving while no probe complies.
    pub fn down(self, x: f64) -> f64 {
        match self {
            Axis::Rate => x / 2.0,
            Axis::Users { .. } => (x / 2.0).floor().max(1.0),
        }
    }

    /// The bracket `[lo, hi]` is narrow enough: within the resolution, or (developers) no whole
    /// number left between.
    pub fn narrow(self, lo: f64, hi: f64, resolution: f64) -> bool {
        (hi - lo) / lo <= resolution || matches!(self, Axis::Users { .. }) && hi - lo <= 1.0
    }

    /// The next probe strictly inside `(lo, hi)` near `guess`.
    pub fn inside(self, guess: f64, lo: f64, hi: f64) -> f64 {
        match self {
            Axis::Rate => guess,
            Axis::Users { .. } => guess.round().clamp(lo + 1.0, hi - 1.0),
        }
    }

    /// The overrides of a probe at `x`.
    pub fn overrides(self, x: f64) -> plan::LoadOverrides {
        match self {
            Axis::Rate => plan::LoadOverrides {
                rate: Some(x),
                ..Default::default()
            },
            Axis::Users { .. } => plan::LoadOverrides {
                users: Some(x as usize),
                ..Default::default()
            },
        }
    }

    /// "2.500 requests/s" or "12 developers".
    pub fn describe(self, x: f64) -> String {
        match self {
            Axis::Rate => format!("{x:.3} requests/s"),
            Axis::Users { .. } => format!("{x:.0} developers"),
        }
    }

    /// The probe folder's name.
    pub fn folder(self, n: usize, x: f64) -> String {
        match self {
            Axis::Rate => format!("probe-{n:02}-{x:.3}rps"),
            Axis::Users { .. } => format!("probe-{n:02}-{x:.0}dev"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Axis::Rate => "rate",
            Axis::Users { .. } => "users",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn developers_are_whole_and_the_bracket_closes_at_one_apart() {
        let a = Axis::Users { max: 500.0 };
        assert_eq!(a.snap(7.4), 7.0);
        assert_eq!(a.snap(0.2), 1.0);
        assert_eq!(a.snap(900.0), 500.0);
        assert_eq!(a.down(3.0), 1.0);
        assert_eq!(a.inside(10.2, 10.0, 12.0), 11.0);
        assert!(a.narrow(40.0, 41.0, 0.01));
        assert!(!a.narrow(40.0, 42.0, 0.01));
        assert!(Axis::Rate.narrow(4.0, 4.1, 0.05));
        assert_eq!(Axis::Rate.inside(4.04, 4.0, 4.1), 4.04);
    }
}
