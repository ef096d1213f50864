//! `[load.developers]`: the closed-loop "N virtual developers" load (`arrival = "developers"`).
//! Each developer sends one request of the scenario's mix, reads the whole answer, thinks, and
//! sends the next; goose runs the developers (the `goose` cargo feature) and ramps them up.

use serde::{Deserialize, Serialize};

/// GitLab's sizing rule, 7 requests/s per 1,000 active developers: one request every 1000/7 s.
pub const GITLAB_THINK_S: f64 = 1000.0 / 7.0;

/// `[load.developers]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DevelopersSpec {
    /// How many developers work at once (after the ramp).
    pub users: usize,
    /// Mean think time after each answer, seconds. Default: GitLab's 7 requests/s per 1,000
    /// users (about 143 s), so N developers offer about what GitLab sizes N users at.
    #[serde(default = "gitlab_think_s")]
    pub think_s: f64,
    /// Think times are drawn uniformly within ± this share of `think_s` (0: always `think_s`).
    #[serde(default = "half")]
    pub think_spread: f64,
    /// Developers start evenly over this many whole seconds (0: all at once); `duration_s`
    /// counts from the end of the ramp.
    #[serde(default)]
    pub ramp_s: u64,
}

fn gitlab_think_s() -> f64 {
    GITLAB_THINK_S
}
fn half() -> f64 {
    0.5
}

/// The most developers one run drives (a goose user each: a task and a connection pool).
pub const MAX_USERS: usize = 100_000;

impl DevelopersSpec {
    /// A spec with `users` and every other key at its default.
    pub fn with_users(users: usize) -> Self {
        Self {
            users,
            think_s: GITLAB_THINK_S,
            think_spread: 0.5,
            ramp_s: 0,
        }
    }

    /// The shortest and longest think time.
    pub fn think_range_s(&self) -> (f64, f64) {
        (
            self.think_s * (1.0 - self.think_spread),
            self.think_s * (1.0 + self.think_spread),
        )
    }

    /// Checks the section; `duration_s` is the load's (whole seconds: goose's test plan counts
    /// in seconds).
    pub fn check(&self, duration_s: Option<f64>) -> Result<(), String> {
        if !(1..=MAX_USERS).contains(&self.users) {
            return Err(format!(
                "load.developers.users: {} must be 1 to {MAX_USERS}",
                self.users
            ));
        }
        if !(self.think_s.is_finite() && self.think_s >= 0.0 && self.think_s <= 86_400.0) {
            return Err(format!(
                "load.developers.think_s: {} must be 0 to 86400 seconds",
                self.think_s
            ));
        }
        if !(0.0..=1.0).contains(&self.think_spread) {
            return Err(format!(
                "load.developers.think_spread: {} must be 0 to 1",
                self.think_spread
            ));
        }
        if self.ramp_s > 86_400 {
            return Err(format!(
                "load.developers.ramp_s: {} must be at most 86400",
                self.ramp_s
            ));
        }
        match duration_s {
            Some(d) if d >= 1.0 && d.fract() == 0.0 && d <= 864_000.0 => Ok(()),
            Some(d) => Err(format!(
                "load.duration_s: {d} must be a whole number of seconds (1 to 864000) with \
                 arrival = \"developers\""
            )),
            None => Err(
                "arrival = \"developers\" needs load.duration_s (how long the developers \
                 work after the ramp)"
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_is_checked_and_named() {
        let ok = DevelopersSpec::with_users(10);
        assert!(ok.check(Some(30.0)).is_ok());
        let cases = [
            (DevelopersSpec::with_users(0), Some(30.0), "users"),
            (
                DevelopersSpec {
                    think_s: f64::NAN,
                    ..ok.clone()
                },
                Some(30.0),
                "think_s",
            ),
            (
                DevelopersSpec {
                    think_spread: 1.5,
                    ..ok.clone()
                },
                Some(30.0),
                "think_spread",
            ),
            (ok.clone(), Some(2.5), "duration_s"),
            (ok.clone(), None, "duration_s"),
        ];
        for (spec, d, key) in cases {
            let e = spec.check(d).unwrap_err();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn the_default_think_time_is_gitlabs_sizing_rule() {
        let s: DevelopersSpec = toml::from_str("users = 1000").unwrap();
        // 1,000 developers thinking 1000/7 s each offer 7 requests/s.
        assert!((s.users as f64 / s.think_s - 7.0).abs() < 1e-9);
        assert_eq!(s.think_range_s(), (s.think_s * 0.5, s.think_s * 1.5));
    }
}
