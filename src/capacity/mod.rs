//! `duo-harness capacity SCENARIO [--users]`: the highest total rate (or, with `--users`, the
//! most closed-loop virtual developers) at which every feature of the scenario's mix meets its
//! SLO, which SLO breaks first, how many active developers that is, why, and the measurement
//! beside the roofline.
//!
//! In: a scenario with a rate-based `[load]` (or `[load.developers]`), `[slo.<feature>]`
//! sections and `[capacity]`. Each probe is a whole `run` at one point of the [`Axis`]
//! (warm-up, self-audit, its own run folder under the capacity folder; `probe.rs`).
//! Our search brackets the knee (doubling or halving), then narrows it by interpolating where
//! the SLO margin crosses zero (regula falsi, kept off the bracket's ends), until the bracket is
//! `resolution` wide or `max_probes` are spent; `strategy = "serve_sla"` replays vLLM's order
//! instead (`serve_sla.rs`). Either way a point close to the boundary is looked
//! at twice with a fresh arrival sequence (both must comply), and an invalid measurement is
//! repeated and refused if the repeat is invalid too (an invalid look that measured a miss
//! still keeps its point from passing). Out: `capacity.json`
//! (`schemas/capacity-v1.schema.json`), with the limiter (`limiter.rs`) and the
//! roofline rows ([`roofline`]) at the knee, and the knee probe's `summary.json` with a
//! `capacity` section and its reports, in the capacity folder.

use crate::exit::Exit;
use crate::plan::{self, Overrides, Plan};
use crate::results::RunFolder;
use serde::Serialize;
use std::path::{Path, PathBuf};

mod axis;
mod error;
mod limiter;
mod markdown;
mod pchip;
mod probe;
pub mod roofline;
mod serve_sla;
pub use axis::Axis;
pub use error::CapacityError;
pub use limiter::{gateway_shares, limiter, GatewayShare};
use probe::probe;

/// Margins this close to zero are probed twice.
const NEAR: f64 = 0.05;

/// One probe's outcome.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Probe {
    /// The probed rate; with `--users`, the rate the developers achieved.
    pub rate_rps: f64,
    /// With `--users`: how many developers the probe ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub developers: Option<usize>,
    /// Where on the search's axis the probe lies (the rate, or the developers).
    #[serde(skip)]
    pub at: f64,
    pub dir: PathBuf,
    pub verdict: String,
    pub compliant: bool,
    /// The smallest SLO margin over features and bounds: (bound − value at the SLO's
    /// attainment quantile) / bound. Negative: the bound is missed.
    pub margin: Option<f64>,
    /// The feature and bound with that margin.
    pub limiting: Option<String>,
    pub achieved_rps: Option<f64>,
    /// A repeat of the probe before it.
    pub repeat: bool,
    /// What its backends' metrics say limits the stack (with `[metrics]`).
    pub limiter: Option<String>,
    /// The probe failed for a reason load does not explain (the stack is broken, not full):
    /// the search stops on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
}

impl Probe {
    /// The failure a broken probe ends the search with.
    fn failure(&self) -> Option<CapacityError> {
        Some(CapacityError::Broken {
            at: format!("{} ({})", self.at, self.dir.display()),
            reason: self.broken.clone()?,
        })
    }
}

/// The capacity folder's `summary.json`: the knee probe's summary with the answer beside it.
#[derive(Serialize)]
struct CapacitySummary<'a> {
    #[serde(flatten)]
    summary: crate::verdict::Summary,
    capacity: &'a Capacity,
}

/// The version of `capacity.json` this build writes.
pub const CAPACITY_SCHEMA: &str = "duo-harness/capacity/v1";

/// The answer (`capacity.json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Capacity {
    pub schema: String,
    pub scenario: String,
    /// What the search varied: `rate`, or `users` (closed-loop virtual developers).
    pub axis: String,
    /// The highest compliant rate probed (`None`: none complied).
    pub max_rps: Option<f64>,
    /// Between the highest compliant and the lowest failing rate: where the knee lies.
    pub max_rps_interval: [Option<f64>; 2],
    pub resolution: f64,
    /// Active developers at `max_rps`, by `users_per_rps`; with `--users`, the most virtual
    /// developers that complied.
    pub users: Option<f64>,
    /// With `--users`: the most developers that complied and the fewest that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_interval: Option<[Option<f64>; 2]>,
    pub users_per_rps: f64,
    /// What broke first: the failing probe's smallest margin (`feature ttft_ms`).
    pub limiting: Option<String>,
    /// Why, from the backends' metrics at the lowest failing probe (with `[metrics]`).
    pub limiter: Option<String>,
    pub stopped: String,
    pub probes: Vec<Probe>,
    /// At the knee: per feature, the measured TPOT and rate beside the roofline of the
    /// endpoint's declared (or twin-simulated) GPUs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roofline: Vec<roofline::Beside>,
    /// At the knee, with taps: the gateway's share of each feature's TTFT p50.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway: Vec<GatewayShare>,
}

/// A rate and the SLO margin there.
type Point = (f64, f64);

/// The next rate between a compliant `lo` and a failing `hi`: where the margin's line crosses
/// zero, kept at least a fifth of the bracket from either end.
fn interpolate(lo: Point, hi: Point) -> f64 {
    let ((r0, m0), (r1, m1)) = (lo, hi);
    let guess = match m0 - m1 > 1e-9 {
        true => r0 + (r1 - r0) * m0 / (m0 - m1),
        false => (r0 + r1) / 2.0,
    };
    let pad = (r1 - r0) * 0.2;
    guess.clamp(r0 + pad, r1 - pad)
}

/// The search. Every probe's folder goes under `out`. `users`: search over closed-loop virtual
/// developers instead of the rate. `Err`: the search could not start. A search that a failure
/// ended early still answers with the probes it measured, and the failure beside.
pub async fn search(
    scenario: &Path,
    out: &Path,
    users: bool,
) -> Result<(Capacity, Option<CapacityError>), CapacityError> {
    let started = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let plan = plan::resolve(scenario, Overrides::default(), &started)?;
    let config = |m: String| CapacityError::Config(format!("{}: {m}", scenario.display()));
    let axis = Axis::of(&plan, users).map_err(config)?;
    if plan.slo.is_empty() {
        return Err(config("capacity needs [slo.<feature>] sections".into()));
    }
    crate::files::refuse_used_dir(out, "capacity search").map_err(CapacityError::Config)?;
    crate::files::create_dir_private(out).map_err(|source| CapacityError::Write {
        path: out.into(),
        source,
    })?;
    let (lo, hi, stop, probes) = match (plan.capacity.strategy, axis) {
        (plan::Strategy::ServeSla, Axis::Rate) => {
            let (probes, stop) = serve_sla::search(scenario, &plan, out).await;
            let (lo, hi) = bracket_of(&probes);
            (lo, hi, stop, probes)
        }
        (plan::Strategy::ServeSla, _) => {
            return Err(config(
                "capacity.strategy = \"serve_sla\" searches the rate only".into(),
            ))
        }
        (plan::Strategy::Bracket, _) => bracket(scenario, &plan, axis, out).await,
    };
    let (stopped, failure) = match stop {
        Ok(why) => (why, None),
        Err(e) => (format!("stopped early: {e}"), Some(e)),
    };
    let mut c = answer(&plan, axis, lo, hi, stopped, probes);
    let knee = knee_probe(&c).and_then(|p| RunFolder::open(&p.dir).ok());
    if let Some((folder, summary)) = knee.and_then(|f| Some((f.records, f.summary?))) {
        c.roofline = roofline::beside(&plan, &folder, &summary);
        c.gateway = gateway_shares(&summary);
    }
    Ok((c, failure))
}

/// The probes that judged their point: a first look followed by a second is superseded by it.
fn judged(probes: &[Probe]) -> impl Iterator<Item = &Probe> {
    probes
        .iter()
        .enumerate()
        .filter(|(i, _)| !probes.get(i + 1).is_some_and(|next| next.repeat))
        .map(|(_, p)| p)
}

/// The lowest failing judged probe, and the highest compliant one below it (the answer stays
/// below every failing point, however the probes fell), as points of the bracket.
fn bracket_of(probes: &[Probe]) -> (Option<Point>, Option<Point>) {
    let hi = judged(probes)
        .filter(|p| !p.compliant)
        .map(|p| (p.at, p.margin.unwrap_or(0.0).min(0.0)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let lo = judged(probes)
        .filter(|p| p.compliant && hi.is_none_or(|h| p.at < h.0))
        .map(|p| (p.at, p.margin.unwrap_or(0.0).max(0.0)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    (lo, hi)
}

/// What a search leaves: the bracket's ends, why it stopped, every probe.
type Searched = (Option<Point>, Option<Point>, Stop, Vec<Probe>);

/// Why a search stopped: its own rule (`Ok`), or a failure that ends it early.
type Stop = Result<String, CapacityError>;

/// Our search: bracket by doubling or halving, then regula falsi on the margin, with a second
/// look near the boundary and at invalid probes.
async fn bracket(scenario: &Path, plan: &Plan, axis: Axis, out: &Path) -> Searched {
    let spec = &plan.capacity;
    let mut probes: Vec<Probe> = Vec::new();
    let (mut lo, mut hi): (Option<Point>, Option<Point>) = (None, None);
    let mut at = axis.start(plan);
    let mut signals = crate::signals::stop_signals();
    let stopped: Stop = loop {
        if probes.len() >= spec.max_probes {
            break Ok(format!("the probe budget ({}) is spent", spec.max_probes));
        }
        if signals.try_recv() {
            break Err(CapacityError::Interrupted(String::new()));
        }
        let p = match look(scenario, plan, (axis, at), out, &mut probes).await {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        if let Some(e) = p.failure() {
            probes.push(p);
            break Err(e);
        }
        let (refused, compliant, m) =
            (p.verdict == "invalid", p.compliant, p.margin.unwrap_or(0.0));
        probes.push(p);
        if refused {
            break Ok(format!(
                "the probe at {} was invalid twice (the harness could not measure it): refused",
                axis.describe(at)
            ));
        }
        // A pass at or above a failing point, or a failure at or below a passing one: the
        // stack does not answer monotonically at this probe length. The answer stays below
        // every failing point.
        let contradicts = match compliant {
            true => hi.is_some_and(|h| at >= h.0),
            false => lo.is_some_and(|l| at <= l.0),
        };
        if contradicts {
            if !compliant {
                hi = Some((at, m.min(0.0)));
                lo = judged(&probes)
                    .filter(|p| p.compliant && p.at < at)
                    .map(|p| (p.at, p.margin.unwrap_or(0.0).max(0.0)))
                    .max_by(|a, b| a.0.total_cmp(&b.0));
            }
            break Ok(format!(
                "the probes are not monotone (the one at {} contradicts an earlier one): probes \
                 too short for this stack's variance, or an unstable stack; raise \
                 capacity.probe_s",
                axis.describe(at)
            ));
        }
        match compliant {
            true => lo = Some((at, m.max(0.0))),
            false => hi = Some((at, m.min(0.0))),
        }
        at = match next_point(axis, plan, (lo, hi), at) {
            Ok(next) => next,
            Err(why) => break Ok(why),
        };
    };
    (lo, hi, stopped, probes)
}

/// Where the search probes next, or why it stops (`Err`).
fn next_point(
    axis: Axis,
    plan: &Plan,
    (lo, hi): (Option<Point>, Option<Point>),
    at: f64,
) -> Result<f64, String> {
    let spec = &plan.capacity;
    Ok(match (lo, hi) {
        (Some((l, _)), None) if l >= axis.max(plan) => {
            return Err(format!(
                "every probe up to the most allowed ({}) complied",
                axis.describe(axis.max(plan))
            ))
        }
        (_, None) => axis.up(at, plan),
        (None, Some((h, _))) if h <= axis.floor(plan) => {
            return Err("no probed point complied".into())
        }
        (None, Some(_)) => axis.down(at),
        (Some(l), Some(h)) if axis.narrow(l.0, h.0, spec.resolution) => {
            let developers = if axis == Axis::Rate {
                ""
            } else {
                ", or one developer"
            };
            return Err(format!(
                "the bracket is within the resolution ({:.1} %{developers})",
                spec.resolution * 100.0
            ));
        }
        (Some(l), Some(h)) => axis.inside(interpolate(l, h), l.0, h.0),
    })
}

/// One point judged: a probe, and a second look when the first lands close to the boundary or
/// its measurement is invalid (budget allowing). The first of two looks is pushed to `probes`;
/// the judged one is returned for the caller to push.
pub(super) async fn look(
    scenario: &Path,
    plan: &Plan,
    (axis, at): (Axis, f64),
    out: &Path,
    probes: &mut Vec<Probe>,
) -> Result<Probe, CapacityError> {
    let dir = |n: usize| out.join(axis.folder(n, at));
    let p = probe(scenario, plan, (axis, at), dir(probes.len() + 1), false).await?;
    let near = p.margin.is_some_and(|m| m.abs() < NEAR);
    let invalid = p.verdict == "invalid";
    let last = probes.len() + 1 >= plan.capacity.max_probes;
    if !(near || invalid) || last || p.broken.is_some() {
        return Ok(p);
    }
    probes.push(p.clone());
    let again = probe(scenario, plan, (axis, at), dir(probes.len() + 1), true).await?;
    Ok(second_look(p, again, invalid))
}

/// A probe looked at twice: an invalid first look proves nothing either way, so the repeat
/// decides, but a first look that measured a miss keeps the point from passing (never in the
/// user's favour); near the boundary both looks must comply, and the worse margin stands.
fn second_look(first: Probe, again: Probe, invalid: bool) -> Probe {
    match invalid {
        true => Probe {
            compliant: again.compliant && first.margin.is_none_or(|m| m >= 0.0),
            margin: match (first.margin, again.margin) {
                (Some(a), Some(b)) if a < 0.0 => Some(a.min(b)),
                (_, b) => b,
            },
            ..again
        },
        false => Probe {
            compliant: first.compliant && again.compliant,
            margin: match (first.margin, again.margin) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            ..again
        },
    }
}

/// The answer from the final bracket.
fn answer(
    plan: &Plan,
    axis: Axis,
    lo: Option<Point>,
    hi: Option<Point>,
    stopped: String,
    probes: Vec<Probe>,
) -> Capacity {
    let r3 = crate::stats::round3;
    let spec = &plan.capacity;
    let first_failing = judged(&probes)
        .filter(|p| !p.compliant)
        .min_by(|a, b| a.at.total_cmp(&b.at));
    let limiting = first_failing.and_then(|p| p.limiting.clone());
    let why = first_failing.and_then(|p| p.limiter.clone());
    // The rate at a point: the probed rate, or what the developers there achieved.
    let rate_at = |x: f64| match axis {
        Axis::Rate => Some(r3(x)),
        Axis::Users { .. } => probes
            .iter()
            .filter(|p| p.at == x && p.achieved_rps.is_some())
            .map(|p| r3(p.rate_rps))
            .reduce(f64::min),
    };
    let max_rps = lo.and_then(|l| rate_at(l.0));
    Capacity {
        schema: CAPACITY_SCHEMA.into(),
        scenario: plan.scenario_name.clone(),
        axis: axis.name().into(),
        max_rps,
        max_rps_interval: [max_rps, hi.and_then(|h| rate_at(h.0))],
        resolution: spec.resolution,
        users: match axis {
            Axis::Rate => max_rps.map(|r| (r * spec.users_per_rps).floor()),
            Axis::Users { .. } => lo.map(|l| l.0),
        },
        users_interval: matches!(axis, Axis::Users { .. })
            .then(|| [lo.map(|l| l.0), hi.map(|h| h.0)]),
        users_per_rps: spec.users_per_rps,
        limiting,
        limiter: why,
        stopped,
        probes,
        roofline: Vec::new(),
        gateway: Vec::new(),
    }
}

/// The console lines of an answer.
pub fn table(c: &Capacity) -> String {
    let by_users = c.users_interval.is_some();
    let mut out = format!(
        "capacity of {}: probes\n{:>10} {:>10} {:>9} {:>9}  limiting\n",
        c.scenario,
        if by_users { "developers" } else { "rate" },
        "achieved",
        "margin",
        "verdict"
    );
    for p in &c.probes {
        let at = match p.developers {
            Some(n) => format!("{n:>10}"),
            None => format!("{:>10.3}", p.rate_rps),
        };
        out += &format!(
            "{at} {:>10} {:>9} {:>9}  {}{}\n",
            p.achieved_rps.map_or("-".into(), |a| format!("{a:.3}")),
            p.margin.map_or("-".into(), |m| format!("{m:+.3}")),
            p.verdict,
            p.limiting.as_deref().unwrap_or("-"),
            if p.repeat { " (repeat)" } else { "" }
        );
    }
    let rps = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
    let n = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    out += &match c.users_interval {
        Some([lo, hi]) => format!(
            "capacity: {} virtual developers (knee between {} and {}), {} requests/s achieved; \
             breaks first: {}; stopped: {}\n",
            n(lo),
            n(lo),
            n(hi),
            rps(c.max_rps),
            c.limiting.as_deref().unwrap_or("-"),
            c.stopped
        ),
        None => format!(
            "capacity: {} requests/s (knee between {} and {}), about {} active developers at {:.0} \
             per request/s; breaks first: {}; stopped: {}\n",
            rps(c.max_rps),
            rps(c.max_rps_interval[0]),
            rps(c.max_rps_interval[1]),
            n(c.users),
            c.users_per_rps,
            c.limiting.as_deref().unwrap_or("-"),
            c.stopped
        ),
    };
    if let Some(why) = &c.limiter {
        out += &format!("why: {why}\n");
    }
    out += &roofline::lines(&c.roofline);
    out += &limiter::gateway_line(&c.gateway);
    out
}

/// The reports of the probe `dir` with the capacity section, into `out`.
fn render(dir: &Path, out: &Path, capacity: &Capacity) -> Result<(), String> {
    let folder = RunFolder::open(dir).map_err(|e| e.to_string())?;
    let taps = dir.join("taps.ndjson");
    let taps = taps.is_file().then_some(taps.as_path());
    let sources = [folder.clone()];
    let rebuilt = crate::report::rebuild(&folder, &sources, &dir.join("results.ndjson"), taps)
        .map_err(|e| e.to_string())?;
    let view = crate::report::Report {
        summary: &rebuilt.summary,
        agg: &rebuilt.agg,
        plan: &folder.plan_json,
        comparison: None,
        stages: &[],
        capacity: Some(capacity),
    };
    let failed = crate::report::write(&view, &crate::report::Outputs::in_dir(out));
    match failed.first() {
        Some((p, e)) => Err(format!("{}: {e}", p.display())),
        None => Ok(()),
    }
}

/// The last probe at the answer: the highest compliant point on the search's axis.
fn knee_probe(c: &Capacity) -> Option<&Probe> {
    let at = match c.users_interval {
        Some([lo, _]) => lo,
        None => c.max_rps,
    };
    c.probes
        .iter()
        .rev()
        .find(|p| p.compliant && Some(crate::stats::round3(p.at)) == at)
}

/// `capacity`: searches, writes `capacity.json` and the knee's summary, prints the answer.
/// Every ending writes `capacity.json` with the probes measured and why the search stopped;
/// a failure that ended it early is returned after, for its exit code.
pub async fn command(
    scenario: &Path,
    out: Option<PathBuf>,
    users: bool,
) -> Result<Exit, CapacityError> {
    let out = out.unwrap_or_else(|| {
        let stem = scenario.file_stem().unwrap_or_default().to_string_lossy();
        let at = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        PathBuf::from("reports").join(format!("{at}-{stem}-capacity"))
    });
    let (c, failure) = search(scenario, &out, users).await?;
    print!("{}", table(&c));
    let mut failed = crate::files::write_json(&out.join("capacity.json"), &c).is_err();
    let knee = knee_probe(&c);
    if let Some(summary) = knee.and_then(|p| RunFolder::open(&p.dir).ok()?.summary) {
        let doc = CapacitySummary {
            summary,
            capacity: &c,
        };
        failed |= crate::files::write_json(&out.join("summary.json"), &doc).is_err();
    }
    let shown = knee.or(c.probes.first());
    if let Some(p) = shown {
        if let Err(e) = render(&p.dir, &out, &c) {
            eprintln!("error: the capacity report: {e}");
            failed = true;
        }
    }
    println!("capacity folder: {}", out.display());
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(
        match (
            failed,
            c.max_rps,
            c.probes.iter().any(|p| p.verdict == "invalid" && !p.repeat),
        ) {
            (true, _, _) => Exit::Unreachable,
            (false, Some(_), _) => Exit::Pass,
            (false, None, true) => Exit::Invalid,
            (false, None, false) => Exit::VerdictFailed,
        },
    )
}
