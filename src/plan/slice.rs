//! `--slice K/N --start-at T`: one seeded schedule sent by N processes (pods, hosts), each its
//! K-th of every N arrivals, all from the common instant zero T.
//!
//! In: the command line's slice and instant, the resolved load. Out: the [`Slice`] a run folder
//! records (which slice, of which plan: the hash that ties slices together), the seed slices
//! share when the scenario sets none, and the load one slice runs: a closed loop or virtual
//! developers split their users (and any concurrency cap) instead of their arrivals.

use super::{Arrival, LoadSpec, Plan};
use serde::{Deserialize, Serialize};

/// The most slices of one schedule.
pub const MAX_SLICES: u32 = 4096;

/// An instant zero further ahead than this is a mistake (a wrong day, a wrong zone).
const MAX_LEAD_S: i64 = 24 * 3600;

/// `K/N`: the K-th (from 0) of N slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SliceOf {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for SliceOf {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let form = || format!("'{s}': a slice is K/N, K from 0 to N-1 (e.g. 0/4)");
        let (k, n) = s.split_once('/').ok_or_else(form)?;
        let k: u32 = k.trim().parse().map_err(|_| form())?;
        let n: u32 = n.trim().parse().map_err(|_| form())?;
        if n == 0 || n > MAX_SLICES {
            return Err(format!("'{s}': N in K/N is from 1 to {MAX_SLICES}"));
        }
        if k >= n {
            return Err(format!("'{s}': K in K/N is from 0 to N-1 ({})", n - 1));
        }
        Ok(Self { index: k, count: n })
    }
}

impl SliceOf {
    /// Whether arrival `i` (from 0, of the whole schedule) is this slice's.
    pub fn keeps(&self, i: u64) -> bool {
        i % u64::from(self.count) == u64::from(self.index)
    }

    /// How many of `total` (arrivals, users, slots) are this slice's: every N-th from K, so
    /// the first `total mod N` slices have one more.
    pub fn share(&self, total: u64) -> u64 {
        let n = u64::from(self.count);
        total / n + u64::from(u64::from(self.index) < total % n)
    }
}

/// `--start-at`: an RFC 3339 instant, normalised to UTC to the microsecond. Refused when it is
/// more than a day ahead.
pub fn parse_start_at(s: &str) -> Result<String, String> {
    let at = chrono::DateTime::parse_from_rfc3339(s.trim())
        .map_err(|e| format!("'{s}': not an RFC 3339 instant (e.g. 2026-12-04T09:30:00Z): {e}"))?
        .with_timezone(&chrono::Utc);
    let ahead = at - chrono::Utc::now();
    if ahead.num_seconds() > MAX_LEAD_S {
        return Err(format!(
            "'{s}' is {} h ahead: the instant zero is at most a day away",
            ahead.num_hours()
        ));
    }
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// A slice as its run folder records it (`plan.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Slice {
    pub index: u32,
    pub count: u32,
    /// The common instant zero of every slice's schedule (RFC 3339, UTC).
    pub start_at: String,
    /// SHA-256 of what makes the whole schedule ([`Plan::schedule_sha256`]): only slices of
    /// one plan merge.
    pub plan_sha256: String,
}

impl Slice {
    pub fn of(&self) -> SliceOf {
        SliceOf {
            index: self.index,
            count: self.count,
        }
    }

    /// The instant zero on this host's wall clock.
    pub fn start(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let at = chrono::DateTime::parse_from_rfc3339(&self.start_at).ok()?;
        Some(at.with_timezone(&chrono::Utc))
    }
}

/// The seed every slice draws when the scenario and the command line set none: one derived
/// from the instant zero, which all slices are given.
pub fn shared_seed(start_at: &str) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("duo-harness schedule {start_at}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// Whether `load` can be cut into `of`: a closed loop or virtual developers need a user (a
/// slot) per slice, a calibration runs whole.
pub fn check(of: SliceOf, load: &LoadSpec, calibrate: bool) -> Result<(), String> {
    if calibrate && of.count > 1 {
        return Err("--calibrate runs whole: it takes no --slice".into());
    }
    let users = match load.arrival {
        Arrival::Closed => Some(("concurrency", load.concurrency.unwrap_or(1))),
        Arrival::Developers => load.developers.as_ref().map(|d| ("users", d.users)),
        _ => load.concurrency.map(|c| ("concurrency", c)),
    };
    match users {
        Some((what, n)) if (n as u64) < u64::from(of.count) => Err(format!(
            "--slice {}/{}: load.{what} = {n} leaves slices without one: run at most {n} slices",
            of.index, of.count
        )),
        _ => Ok(()),
    }
}

impl Plan {
    /// The plan with its slice (`--slice`, `--start-at`) checked and recorded, and a slice's
    /// own run id: `<instant zero>-<name>-slice-K-of-N`, so slices on one volume never share a
    /// folder. `--start-at` alone is the whole schedule from that instant.
    pub(super) fn sliced(mut self, output_dir: &std::path::Path) -> Result<Plan, String> {
        let o = &self.overrides.load;
        let of = o.slice.unwrap_or(SliceOf { index: 0, count: 1 });
        let Some(start_at) = o.start_at.as_deref() else {
            if of.count > 1 {
                return Err("--slice K/N needs --start-at: the slices' common instant zero".into());
            }
            return Ok(self);
        };
        let start_at = parse_start_at(start_at)?;
        check(of, &self.load, self.overrides.calibrate)?;
        let zero = chrono::DateTime::parse_from_rfc3339(&start_at).map_err(|e| e.to_string())?;
        let stamp = zero.format("%Y%m%dT%H%M%SZ");
        self.run_id = match of.count {
            1 => format!("{stamp}-{}", self.scenario_name),
            n => format!("{stamp}-{}-slice-{}-of-{n}", self.scenario_name, of.index),
        };
        if self.overrides.out.is_none() {
            self.run_dir = output_dir.join(&self.run_id);
        }
        self.slice = Some(Slice {
            index: of.index,
            count: of.count,
            start_at,
            plan_sha256: self.schedule_sha256(),
        });
        Ok(self)
    }

    /// SHA-256 of what makes the whole schedule and how it is judged: scenario, corpus bytes,
    /// features, load (with its seed), SLOs and target. Paths are left out: pods may mount the
    /// same files elsewhere.
    pub fn schedule_sha256(&self) -> String {
        use sha2::Digest;
        let key = serde_json::json!([
            self.scenario_name,
            self.corpus_sha256,
            self.features,
            self.load,
            self.slo,
            self.target_url,
        ]);
        let digest = sha2::Sha256::digest(key.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The load this process runs: the whole plan's, or one slice's share of its users and
    /// concurrency cap, and of its rate and request count as the slice's own summary states
    /// them (its arrivals are cut from the whole schedule itself).
    pub fn process_load(&self) -> LoadSpec {
        let mut load = self.load.clone();
        let Some(of) = self.slice.as_ref().map(Slice::of) else {
            return load;
        };
        let n = f64::from(of.count);
        load.rate = load.rate.map(|r| r / n);
        load.ramp_to = load.ramp_to.map(|r| r / n);
        for step in &mut load.steps {
            step.rate /= n;
        }
        load.max_requests = load.max_requests.map(|m| of.share(m));
        let share = |n: usize| of.share(n as u64) as usize;
        load.concurrency = load.concurrency.map(share);
        if let Some(d) = load.developers.as_mut() {
            d.users = share(d.users);
        }
        if load.arrival == Arrival::Closed && load.concurrency.is_none() {
            load.concurrency = Some(share(1));
        }
        load
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_parse_and_refuse_what_is_not_k_of_n() {
        assert_eq!("1/4".parse::<SliceOf>(), Ok(SliceOf { index: 1, count: 4 }));
        for bad in ["4/4", "0/0", "1", "-1/4", "a/b", "0/5000"] {
            assert!(bad.parse::<SliceOf>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_arrival_and_user_has_exactly_one_slice() {
        for n in 1..=7u32 {
            let slices: Vec<SliceOf> = (0..n).map(|index| SliceOf { index, count: n }).collect();
            for i in 0..50u64 {
                assert_eq!(slices.iter().filter(|s| s.keeps(i)).count(), 1);
            }
            for total in 0..20u64 {
                assert_eq!(slices.iter().map(|s| s.share(total)).sum::<u64>(), total);
                let kept = |s: &SliceOf| (0..total).filter(|i| s.keeps(*i)).count() as u64;
                assert!(slices.iter().all(|s| kept(s) == s.share(total)));
            }
        }
    }

    #[test]
    fn a_closed_loop_needs_a_user_per_slice() {
        let closed = LoadSpec {
            arrival: Arrival::Closed,
            concurrency: Some(2),
            ..LoadSpec::default()
        };
        let of = |index, count| SliceOf { index, count };
        assert!(check(of(1, 2), &closed, false).is_ok());
        let refused = check(of(3, 4), &closed, false).unwrap_err();
        assert!(refused.contains("at most 2 slices"), "{refused}");
        assert!(check(of(0, 2), &LoadSpec::default(), true).is_err());
    }

    #[test]
    fn an_instant_zero_is_normalised_and_a_far_one_refused() {
        let t = parse_start_at("2026-12-04T10:00:00+01:00").unwrap();
        assert_eq!(t, "2026-12-04T09:00:00.000000Z");
        assert!(parse_start_at("2026-12-04 10:00").is_err());
        let far = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
        assert!(parse_start_at(&far).is_err());
        assert_eq!(shared_seed(&t), shared_seed(&t));
    }
}
