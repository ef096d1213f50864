//! `duo-harness capacity SCENARIO`: the highest total rate at which every feature of the
//! scenario's mix meets its SLO, which SLO breaks first, and how many active developers that is.
//!
//! In: a scenario with a rate-based `[load]`, `[slo.<feature>]` sections and `[capacity]`. Each
//! probe is a whole `run` at one rate (warm-up, self-audit, its own run folder under the
//! capacity folder). The search brackets the knee (doubling or halving the rate), then narrows
//! it by interpolating where the SLO margin crosses zero (regula falsi, kept off the bracket's
//! ends), until the bracket is `resolution` wide or `max_probes` are spent. A probe close to the
//! boundary is repeated with a fresh arrival sequence (both must comply); a probe whose
//! measurement is invalid is repeated, and refused if the repeat is invalid too (an invalid look
//! that measured a miss still keeps its rate from passing). Out: `capacity.json`
//! (`schemas/capacity-v1.schema.json`), and the knee probe's `summary.json` with a `capacity`
//! section, in the capacity folder.

use crate::compare::bootstrap::Statistic;
use crate::exit::Exit;
use crate::measure::RequestRecord;
use crate::plan::{self, Overrides, Plan, Slo};
use crate::results::RunFolder;
use crate::scrape::Observed;
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Margins this close to zero are probed twice.
const NEAR: f64 = 0.05;

/// Error classes an overloaded stack produces.
const LOAD_ERRORS: &[&str] = &["timeout", "http5xx", "connect", "dropped"];

/// Findings that say the stack is saturated (the search goes on); any other failure stops it.
const LOAD_FAILURES: &[&str] = &[
    "slo",
    "request_error",
    "cut_off",
    "in_flight_cap",
    "skipped",
];

/// What limits a stack, named from its backends' metrics in one sentence.
///
/// `serving`: the target that serves the feature whose SLO broke, when known (its model
/// setting's endpoint); otherwise the most pressured target (most waiting, then fullest cache).
pub fn limiter(
    observed: &std::collections::BTreeMap<String, Observed>,
    serving: Option<&str>,
) -> Option<String> {
    let pressure = |o: &Observed| {
        let kv = o
            .gauge_max("vllm:kv_cache_usage_perc")
            .or(o.gauge_max("vllm:gpu_cache_usage_perc"));
        (
            o.gauge_max("vllm:num_requests_waiting").unwrap_or(0.0),
            kv.unwrap_or(0.0),
        )
    };
    let scraped = || observed.iter().filter(|(_, o)| o.scrapes > 0);
    let (target, o) = scraped()
        .find(|(name, _)| Some(name.as_str()) == serving)
        .or_else(|| {
            scraped().max_by(|a, b| {
                pressure(a.1)
                    .partial_cmp(&pressure(b.1))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
        })?;
    let (waiting, kv) = pressure(o);
    let preempted = o
        .counters
        .get("vllm:num_preemptions_total")
        .map_or(0.0, |c| c.increase);
    let util = o.gauge_mean("DCGM_FI_DEV_GPU_UTIL");
    let dram = o.gauge_mean("DCGM_FI_PROF_DRAM_ACTIVE").unwrap_or(0.0);
    let tensor = o
        .gauge_mean("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE")
        .unwrap_or(0.0);
    let util_text = util.map_or(String::new(), |u| format!(", GPU utilisation {u:.0} %"));
    let busy = util.unwrap_or(0.0) >= 80.0;
    let running_max = o.gauge_max("vllm:num_requests_running").unwrap_or(0.0);
    let capped = o
        .running_while_waiting
        .is_some_and(|[_, hi]| hi >= running_max && hi > 0.0);
    Some(if kv >= 0.9 || preempted > 0.0 {
        format!(
            "KV cache full on {target} (up to {kv:.2}, {preempted:.0} preemptions, up to {waiting:.0} \
             waiting){util_text}: requests queue for cache space; add GPU memory, or cap context \
             and output length"
        )
    } else if busy && tensor > dram {
        format!(
            "{target} is compute-bound: its tensor pipes run at {:.0} % of peak against DRAM \
             active {:.0} %, with the KV cache at {kv:.2}{util_text}: every step's tokens cost \
             more compute than memory traffic (prefill dominates); add GPUs or shorten prompts",
            tensor * 100.0,
            dram * 100.0
        )
    } else if waiting >= 1.0 && capped {
        format!(
            "the running batch on {target} sat at its most ({running_max:.0} sequences) while up \
             to {waiting:.0} requests waited, with the KV cache at {kv:.2}{util_text}: the batch \
             cap (vLLM's max_num_seqs) limits; raise it while KV memory allows, or add replicas"
        )
    } else if busy {
        format!(
            "{target} is memory-bandwidth-bound: DRAM is active {:.0} % of the time with the KV \
             cache at {kv:.2}{util_text}: each decode step reads the weights and every context, \
             so inter-token time grows with the batch; add GPUs or move to higher-bandwidth ones",
            dram * 100.0
        )
    } else {
        format!(
            "no backend saturated (up to {waiting:.0} waiting on {target}, KV cache up to \
             {kv:.2}{util_text}): the limit lies before the model, in the gateway or the network \
             (the taps' upstream wait says how long the gateway held each request)"
        )
    })
}

/// One probe's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub rate_rps: f64,
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
}

/// The answer.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub schema: &'static str,
    pub scenario: String,
    /// The highest compliant rate probed (`None`: none complied).
    pub max_rps: Option<f64>,
    /// Between the highest compliant and the lowest failing rate: where the knee lies.
    pub max_rps_interval: [Option<f64>; 2],
    pub resolution: f64,
    /// Active developers at `max_rps`, by `users_per_rps`.
    pub users: Option<f64>,
    pub users_per_rps: f64,
    /// What broke first: the failing probe's smallest margin (`feature ttft_ms`).
    pub limiting: Option<String>,
    /// Why, from the backends' metrics at the lowest failing probe (with `[metrics]`).
    pub limiter: Option<String>,
    pub stopped: String,
    pub probes: Vec<Probe>,
}

/// A request's figure for one SLO bound, given its own send lateness.
type Figure = fn(&RequestRecord, f64) -> Option<f64>;

/// A rate and the SLO margin there.
type Point = (f64, f64);

/// The smallest margin over `slos`' bounds in a probe's records, and where it is.
pub fn margin(
    records: &[RequestRecord],
    slo: &dyn Fn(&str) -> Option<Slo>,
) -> Option<(f64, String)> {
    let mut features: Vec<&str> = records.iter().map(|r| r.feature.as_str()).collect();
    features.sort();
    features.dedup();
    let mut worst: Option<(f64, String)> = None;
    for f in features {
        let Some(s) = slo(f) else { continue };
        let measured: Vec<&RequestRecord> = records
            .iter()
            .filter(|r| r.feature == f && !r.warmup)
            .filter(|r| r.disposition != crate::measure::Disposition::Skipped)
            .collect();
        let late = |r: &RequestRecord| r.sent_ms - r.intended_ms;
        let bounds: [(&str, Option<f64>, Figure); 3] = [
            ("ttft_ms", s.ttft_ms, |r, _| r.ttft_from_intended_ms()),
            ("tpot_ms", s.tpot_ms, |r, _| r.tpot_ms()),
            ("e2e_ms", s.e2e_ms, |r, late| r.e2e_ms().map(|e| e + late)),
        ];
        for (name, bound, value) in bounds {
            let Some(b) = bound else { continue };
            let mut v: Vec<f64> = measured
                .iter()
                .map(|r| match r.ok() {
                    true => value(r, late(r)).unwrap_or(f64::INFINITY),
                    false => f64::INFINITY,
                })
                .collect();
            // A failed request's `inf` sorts last: it counts as a miss.
            let Some(at) = Statistic::Quantile(s.attainment).of(&mut v) else {
                continue;
            };
            let m = ((b - at) / b).max(-10.0);
            if worst.as_ref().is_none_or(|(w, _)| m < *w) {
                worst = Some((m, format!("{f} {name}")));
            }
        }
    }
    worst
}

/// Runs one probe at `rate` into `dir` and judges it.
async fn probe(
    scenario: &Path,
    plan: &Plan,
    rate: f64,
    dir: PathBuf,
    repeat: bool,
) -> Result<Probe, String> {
    let overrides = Overrides {
        out: Some(dir.clone()),
        load: plan::LoadOverrides {
            rate: Some(rate),
            duration_s: Some(plan.capacity.probe_s),
            // Every probe draws the same arrival sequence (scaled to its rate), so probes differ
            // by rate alone; a repeat draws another, an independent second look.
            seed: plan.load.seed.map(|s| s.wrapping_add(u64::from(repeat))),
            ..Default::default()
        },
        ..Default::default()
    };
    let exit = crate::run::run(scenario, overrides)
        .await
        .map_err(|e| e.to_string())?;
    if matches!(exit, Exit::Usage | Exit::Unreachable) {
        return Err(format!(
            "the probe at {rate:.3} requests/s could not run (exit {})",
            exit as u8
        ));
    }
    let folder = RunFolder::open(&dir).map_err(|e| e.to_string())?;
    let verdict = folder
        .summary_at("/verdict")
        .and_then(Value::as_str)
        .unwrap_or("error")
        .to_owned();
    let findings = folder
        .summary_at("/findings")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let other: Vec<String> = findings
        .iter()
        .filter(|f| f["severity"] == "error")
        .filter(|f| {
            !LOAD_FAILURES.iter().any(|k| f["kind"] == *k) && f["kind"] != "invalid_measurement"
        })
        .map(|f| {
            format!(
                "{}: {}",
                f["kind"].as_str().unwrap_or(""),
                f["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    // Timeouts, 5xx, refused and dropped connections are what overload looks like; any other
    // error class says the stack (or the harness) is broken, not full.
    let classes = folder
        .summary_at("/errors_by_class")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let broken: Vec<String> = classes
        .iter()
        .filter(|(c, n)| !LOAD_ERRORS.contains(&c.as_str()) && n.as_u64() > Some(0))
        .map(|(c, n)| format!("{n} {c}"))
        .collect();
    if !broken.is_empty() {
        return Err(format!(
            "the probe at {rate:.3} requests/s had errors load does not explain ({}; a gateway's \
             rate limit answers 429, counted as http4xx): see {}",
            broken.join(", "),
            dir.display()
        ));
    }
    if !other.is_empty() {
        return Err(format!(
            "the probe at {rate:.3} requests/s failed for a reason load does not explain: {}",
            other.join("; ")
        ));
    }
    let agg = crate::measure::aggregate::Aggregate::new(plan.slo.clone());
    let found = margin(&folder.records, &|f| agg.slo(f).copied());
    // The backend serving the feature that broke: its model setting's endpoint, as a target.
    let serving = found
        .as_ref()
        .and_then(|(_, w)| plan.model_for(w.split(' ').next().unwrap_or_default()))
        .map(|m| m.endpoint.clone());
    Ok(Probe {
        rate_rps: rate,
        dir,
        compliant: verdict == "pass",
        verdict,
        margin: found.as_ref().map(|(m, _)| crate::stats::round3(*m)),
        limiting: found.map(|(_, w)| w),
        achieved_rps: folder
            .summary_at("/load/achieved_rps")
            .and_then(Value::as_f64),
        repeat,
        limiter: folder
            .summary_at("/backend_metrics")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .and_then(|o| limiter(&o, serving.as_deref())),
    })
}

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

/// The search. Every probe's folder goes under `out`.
pub async fn search(scenario: &Path, out: &Path) -> Result<Capacity, String> {
    let started = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let plan =
        plan::resolve(scenario, Overrides::default(), &started).map_err(|e| e.to_string())?;
    if !plan.load.arrival.rate_based() {
        return Err(format!(
            "{}: capacity needs a rate-based [load] arrival (constant, poisson or gamma)",
            scenario.display()
        ));
    }
    if plan.slo.is_empty() {
        return Err(format!(
            "{}: capacity needs [slo.<feature>] sections",
            scenario.display()
        ));
    }
    let spec = plan.capacity.clone();
    crate::files::create_dir_private(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut probes: Vec<Probe> = Vec::new();
    let (mut lo, mut hi): (Option<Point>, Option<Point>) = (None, None);
    let mut rate = spec.start_rps;
    let stopped = loop {
        if probes.len() >= spec.max_probes {
            break format!("the probe budget ({}) is spent", spec.max_probes);
        }
        let dir = |n: usize| out.join(format!("probe-{n:02}-{rate:.3}rps"));
        let mut p = probe(scenario, &plan, rate, dir(probes.len() + 1), false).await?;
        let near = p.margin.is_some_and(|m| m.abs() < NEAR);
        let invalid = p.verdict == "invalid";
        if (near || invalid) && probes.len() + 1 < spec.max_probes {
            probes.push(p.clone());
            let again = probe(scenario, &plan, rate, dir(probes.len() + 1), true).await?;
            p = match invalid {
                // An invalid look proves nothing either way; the repeat decides, but a first
                // look that measured a miss keeps the rate from passing (never in the user's
                // favour).
                true => Probe {
                    compliant: again.compliant && p.margin.is_none_or(|m| m >= 0.0),
                    margin: match (p.margin, again.margin) {
                        (Some(a), Some(b)) if a < 0.0 => Some(a.min(b)),
                        (_, b) => b,
                    },
                    ..again
                },
                // Near the boundary both looks must comply, and the worse margin stands.
                false => Probe {
                    compliant: p.compliant && again.compliant,
                    margin: match (p.margin, again.margin) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                    ..again
                },
            };
        }
        let (refused, compliant, m) =
            (p.verdict == "invalid", p.compliant, p.margin.unwrap_or(0.0));
        probes.push(p);
        if refused {
            break format!("the probe at {rate:.3} requests/s was invalid twice (the harness could not measure it): refused");
        }
        // A pass at or above a failing rate, or a failure at or below a passing one: the
        // stack does not answer monotonically at this probe length. The answer stays below
        // every failing rate.
        let contradicts = match compliant {
            true => hi.is_some_and(|h| rate >= h.0),
            false => lo.is_some_and(|l| rate <= l.0),
        };
        if contradicts {
            if !compliant {
                hi = Some((rate, m.min(0.0)));
                lo = probes
                    .iter()
                    .filter(|p| p.compliant && p.rate_rps < rate)
                    .map(|p| (p.rate_rps, p.margin.unwrap_or(0.0).max(0.0)))
                    .max_by(|a, b| a.0.total_cmp(&b.0));
            }
            break format!(
                "the probes are not monotone in rate (the one at {rate:.3} requests/s \
                 contradicts an earlier one): probes too short for this stack's variance, or an \
                 unstable stack; raise capacity.probe_s"
            );
        }
        match compliant {
            true => lo = Some((rate, m.max(0.0))),
            false => hi = Some((rate, m.min(0.0))),
        }
        rate = match (lo, hi) {
            (Some((l, _)), None) if l >= spec.max_rps => {
                break format!(
                    "every probe up to capacity.max_rps ({}) complied",
                    spec.max_rps
                )
            }
            (_, None) => (rate * 2.0).min(spec.max_rps),
            (None, Some((h, _))) if h <= spec.start_rps / 64.0 => {
                break "no probed rate complied".into()
            }
            (None, Some(_)) => rate / 2.0,
            (Some(l), Some(h)) if (h.0 - l.0) / l.0 <= spec.resolution => {
                break format!(
                    "the bracket is within the resolution ({:.1} %)",
                    spec.resolution * 100.0
                )
            }
            (Some(l), Some(h)) => interpolate(l, h),
        };
    };
    let r3 = crate::stats::round3;
    let first_failing = probes
        .iter()
        .filter(|p| !p.compliant)
        .min_by(|a, b| a.rate_rps.total_cmp(&b.rate_rps));
    let limiting = first_failing.and_then(|p| p.limiting.clone());
    let why = first_failing.and_then(|p| p.limiter.clone());
    let max_rps = lo.map(|l| r3(l.0));
    Ok(Capacity {
        schema: "duo-harness/capacity/v1",
        scenario: plan.scenario_name.clone(),
        max_rps,
        max_rps_interval: [max_rps, hi.map(|h| r3(h.0))],
        resolution: spec.resolution,
        users: max_rps.map(|r| (r * spec.users_per_rps).floor()),
        users_per_rps: spec.users_per_rps,
        limiting,
        limiter: why,
        stopped,
        probes,
    })
}

/// The console lines of an answer.
pub fn table(c: &Capacity) -> String {
    let mut out = format!(
        "capacity of {}: probes\n{:>10} {:>10} {:>9} {:>9}  limiting\n",
        c.scenario, "rate", "achieved", "margin", "verdict"
    );
    for p in &c.probes {
        out += &format!(
            "{:>10.3} {:>10} {:>9} {:>9}  {}{}\n",
            p.rate_rps,
            p.achieved_rps.map_or("-".into(), |a| format!("{a:.3}")),
            p.margin.map_or("-".into(), |m| format!("{m:+.3}")),
            p.verdict,
            p.limiting.as_deref().unwrap_or("-"),
            if p.repeat { " (repeat)" } else { "" }
        );
    }
    let rps = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
    out += &format!(
        "capacity: {} requests/s (knee between {} and {}), about {} active developers at {:.0} per request/s; breaks first: {}; stopped: {}\n",
        rps(c.max_rps),
        rps(c.max_rps_interval[0]),
        rps(c.max_rps_interval[1]),
        c.users.map_or("-".into(), |u| format!("{u:.0}")),
        c.users_per_rps,
        c.limiting.as_deref().unwrap_or("-"),
        c.stopped
    );
    if let Some(why) = &c.limiter {
        out += &format!("why: {why}\n");
    }
    out
}

/// The reports of the probe `dir` with the capacity section, into `out`.
fn render(dir: &Path, out: &Path, capacity: &Value) -> Result<(), String> {
    let folder = RunFolder::open(dir).map_err(|e| e.to_string())?;
    let taps = dir.join("taps.ndjson");
    let taps = taps.is_file().then_some(taps.as_path());
    let sources = [folder.clone()];
    let rebuilt = crate::report::rebuild(&folder, &sources, &dir.join("results.ndjson"), taps)?;
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

/// `capacity`: searches, writes `capacity.json` and the knee's summary, prints the answer.
pub async fn command(scenario: &Path, out: Option<PathBuf>) -> Exit {
    let out = out.unwrap_or_else(|| {
        let stem = scenario.file_stem().unwrap_or_default().to_string_lossy();
        let at = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        PathBuf::from("reports").join(format!("{at}-{stem}-capacity"))
    });
    let c = match search(scenario, &out).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", crate::redact::known(&e));
            return Exit::Usage;
        }
    };
    print!("{}", table(&c));
    let write = |name: &str, v: &Value| crate::files::write_json(&out.join(name), v);
    let doc = serde_json::to_value(&c).unwrap_or_default();
    let mut failed = write("capacity.json", &doc).is_err();
    let knee = c
        .probes
        .iter()
        .rev()
        .find(|p| p.compliant && Some(crate::stats::round3(p.rate_rps)) == c.max_rps);
    if let Some(summary) =
        knee.and_then(|p| std::fs::read_to_string(p.dir.join("summary.json")).ok())
    {
        let mut s: Value = serde_json::from_str(&summary).unwrap_or_default();
        s["capacity"] = doc.clone();
        failed |= write("summary.json", &s).is_err();
    }
    let shown = knee.or(c.probes.first());
    if let Some(p) = shown {
        if let Err(e) = render(&p.dir, &out, &doc) {
            eprintln!("error: the capacity report: {e}");
            failed = true;
        }
    }
    println!("capacity folder: {}", out.display());
    match (
        failed,
        c.max_rps,
        c.probes.iter().any(|p| p.verdict == "invalid" && !p.repeat),
    ) {
        (true, _, _) => Exit::Unreachable,
        (false, Some(_), _) => Exit::Pass,
        (false, None, true) => Exit::Invalid,
        (false, None, false) => Exit::VerdictFailed,
    }
}
