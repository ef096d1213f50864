//! The measurement beside the roofline, at the knee: per feature, the measured TPOT and the
//! memory-bandwidth utilisation it implies at the batch the backend ran (from its
//! `vllm:num_requests_running`), and the feature's rate against ROOFLINE.md's request ceiling
//! for its prompt and output lengths on the declared GPUs.
//!
//! In: the plan (model settings, `[capacity.hardware]`, twin engines), a probe's records and
//! summary. Out: one [`Beside`] per feature whose endpoint's hardware is known.

use crate::compare::bootstrap::Statistic;
use crate::measure::RequestRecord;
use crate::plan::Plan;
use crate::roofline::Hardware;
use crate::scrape::Observed;
use crate::verdict::Summary;
use serde::Serialize;
use std::collections::BTreeMap;

/// One feature's measurement beside its ceiling.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Beside {
    pub feature: String,
    /// The model setting's endpoint that served it.
    pub endpoint: String,
    pub model: String,
    pub gpu: String,
    pub gpus: u32,
    /// Mean prompt tokens; `None` when neither source knew them, and the MBU then counts only
    /// the output's context (a lower bound).
    pub prompt_tokens: Option<f64>,
    /// Where `prompt_tokens` came from: `usage` (the feature's own answers), or `endpoint` (the
    /// endpoint's `vllm:prompt_tokens_total` increase over the requests it served, every
    /// feature it serves pooled: through a gateway whose answers carry no usage).
    pub prompt_source: Option<String>,
    /// Mean output tokens.
    pub output_tokens: f64,
    /// Median measured time per output token at the client, ms.
    pub tpot_ms: Option<f64>,
    /// The endpoint's own mean inter-token time over the probe (its vLLM histogram), ms: the
    /// engine's decode step, before a gateway re-chunks the stream.
    pub server_itl_ms: Option<f64>,
    /// Mean sequences running on the endpoint during the probe (`None`: no metrics; 1 assumed).
    pub batch: Option<f64>,
    /// `((W + kv·batch·context) / step) / BW`: the share of HBM bandwidth the measured step
    /// implies (well-tuned stacks reach 0.7 to 0.85); the step is the server's inter-token time
    /// when its metrics have it, else the client's TPOT.
    pub achieved_mbu: Option<f64>,
    /// `server` or `client`: which step `achieved_mbu` used.
    pub mbu_from: Option<String>,
    /// What to make of a figure that cannot be physical (an MBU above 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The feature's measured rate, requests/s.
    pub achieved_rps: f64,
    /// ROOFLINE.md's ceiling for this shape on the endpoint's GPUs (u_F 0.5, u_B 0.8, batch 64,
    /// unless declared otherwise), requests/s.
    pub ceiling_rps: Option<f64>,
    /// `achieved_rps / ceiling_rps`: the share of the GPUs' request budget this feature used.
    pub ceiling_share: Option<f64>,
}

/// The hardware behind each endpoint: declared, or a twin backend's own engine.
pub fn hardware(plan: &Plan) -> BTreeMap<String, Hardware> {
    let mut map = plan.capacity.hardware.clone();
    for b in plan.stack.iter().flat_map(|s| &s.backends) {
        if let Some(e) = &b.engine {
            map.entry(format!("twin:{}", b.name))
                .or_insert_with(|| Hardware {
                    model: e.model.clone(),
                    gpu: e.gpu.clone(),
                    gpus: 1,
                    mbu: e.mbu,
                    mfu: e.mfu,
                });
        }
    }
    map
}

/// The rows of a probe: its records, its summary's per-feature rates and backend metrics.
pub fn beside(plan: &Plan, records: &[RequestRecord], summary: &Summary) -> Vec<Beside> {
    let hw = hardware(plan);
    let observed = &summary.backend_metrics;
    let mut features: Vec<&str> = records.iter().map(|r| r.feature.as_str()).collect();
    features.sort();
    features.dedup();
    features
        .into_iter()
        .filter_map(|f| {
            let endpoint = serving(plan, f)?;
            let h = hw.get(&endpoint)?;
            let done: Vec<&RequestRecord> = records
                .iter()
                .filter(|r| r.feature == f && !r.warmup && r.ok())
                .collect();
            let o = observed.get(&endpoint);
            let pooled = o.and_then(|o| endpoint_prompt(plan, records, &endpoint, o));
            row(f, &endpoint, h, &done, summary, o, pooled)
        })
        .collect()
}

/// The endpoint that served `feature`: its model setting's, or the target itself when the run
/// goes straight to a backend (`embedded:<backend>`, or an OpenAI base URL).
pub fn serving(plan: &Plan, feature: &str) -> Option<String> {
    if let Some(m) = plan.model_for(feature) {
        return Some(m.endpoint.clone());
    }
    match &plan.embedded_backend {
        Some(b) => Some(format!("twin:{b}")),
        None => plan.target_url.clone(),
    }
}

/// The endpoint's mean prompt per request: its prompt-token counter's increase over the
/// requests the run completed through it.
fn endpoint_prompt(
    plan: &Plan,
    records: &[RequestRecord],
    endpoint: &str,
    o: &Observed,
) -> Option<f64> {
    let prompt = o.counters.get("vllm:prompt_tokens_total")?.increase;
    let served = records
        .iter()
        .filter(|r| r.ok() && serving(plan, &r.feature).as_deref() == Some(endpoint))
        .count();
    (served > 0 && prompt > 0.0).then(|| prompt / served as f64)
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, sum) = v.fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    (n > 0).then(|| sum / n as f64)
}

/// What to make of an MBU above 1, by the step it was computed from.
fn unphysical(mbu: f64, step_from: Option<&str>) -> String {
    let why = match step_from {
        Some("client") => {
            "a gateway that buffers and re-chunks the stream, or an estimated token count; \
             scrape the backend's /metrics for its own inter-token time"
        }
        _ => "the declared model or GPU is not what serves this endpoint",
    };
    format!(
        "MBU {mbu:.2} is above the physical limit: the {} step is shorter than reading the \
         weights takes, so it is not the engine's decode step ({why})",
        step_from.unwrap_or("measured")
    )
}

fn row(
    feature: &str,
    endpoint: &str,
    h: &Hardware,
    done: &[&RequestRecord],
    summary: &Summary,
    observed: Option<&Observed>,
    pooled_prompt: Option<f64>,
) -> Option<Beside> {
    let output_tokens = mean(
        done.iter()
            .filter_map(|r| r.output_tokens)
            .map(|t| t as f64),
    )?;
    let own = mean(
        done.iter()
            .filter_map(|r| r.usage.as_ref())
            .filter(|u| u.input_tokens > 0)
            .map(|u| u.input_tokens as f64),
    );
    let (prompt_tokens, prompt_source) = match (own, pooled_prompt) {
        (Some(p), _) => (Some(p), Some("usage")),
        (None, Some(p)) => (Some(p), Some("endpoint")),
        (None, None) => (None, None),
    };
    let mut tpots: Vec<f64> = done.iter().filter_map(|r| r.tpot_ms()).collect();
    let tpot_ms = Statistic::Quantile(0.5).of(&mut tpots);
    let batch = observed.and_then(|o| o.gauge_mean("vllm:num_requests_running"));
    let context = prompt_tokens.unwrap_or(0.0) + output_tokens / 2.0;
    let server_itl_ms = observed
        .and_then(Observed::server_itl_s)
        .map(|s| s * 1000.0);
    let (step_ms, mbu_from) = match (server_itl_ms, tpot_ms) {
        (Some(s), _) => (Some(s), Some("server")),
        (None, Some(t)) => (Some(t), Some("client")),
        (None, None) => (None, None),
    };
    let achieved_mbu = step_ms
        .and_then(|t| h.achieved_mbu(t / 1000.0, batch.unwrap_or(1.0), context))
        .map(crate::stats::round3);
    let note = achieved_mbu
        .filter(|m| *m > 1.0)
        .map(|m| unphysical(m, mbu_from));
    let achieved_rps = summary
        .features
        .get(feature)
        .map_or(0.0, |f| f.throughput.requests_per_s);
    let ceiling_rps = prompt_tokens
        .and_then(|isl| h.ceiling_rps(isl, output_tokens))
        .map(crate::stats::round3);
    Some(Beside {
        feature: feature.to_owned(),
        endpoint: endpoint.to_owned(),
        model: h.model.clone(),
        gpu: h.gpu.clone(),
        gpus: h.gpus,
        prompt_tokens: prompt_tokens.map(crate::stats::round3),
        prompt_source: prompt_source.map(str::to_owned),
        output_tokens: crate::stats::round3(output_tokens),
        tpot_ms: tpot_ms.map(crate::stats::round3),
        server_itl_ms: server_itl_ms.map(crate::stats::round3),
        mbu_from: mbu_from.map(str::to_owned),
        note,
        batch: batch.map(crate::stats::round3),
        achieved_mbu,
        achieved_rps,
        ceiling_share: ceiling_rps
            .filter(|c| *c > 0.0)
            .map(|c| crate::stats::round3(achieved_rps / c)),
        ceiling_rps,
    })
}

/// One console line per row.
pub fn lines(rows: &[Beside]) -> String {
    let f2 = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    rows.iter()
        .map(|r| {
            format!(
                "roofline: {} on {} ({} on {} × {}): TPOT {} ms (server step {} ms) at batch {} \
                 → MBU {}; {:.2} requests/s of a {} requests/s ceiling ({}), {} prompt / {:.0} \
                 output tokens{}\n",
                r.feature,
                r.endpoint,
                r.model,
                r.gpus,
                r.gpu,
                f2(r.tpot_ms),
                f2(r.server_itl_ms),
                r.batch
                    .map_or("1 (no metrics)".into(), |b| format!("{b:.1}")),
                f2(r.achieved_mbu),
                r.achieved_rps,
                f2(r.ceiling_rps),
                r.ceiling_share
                    .map_or("-".into(), |s| format!("{:.0} %", s * 100.0)),
                match (r.prompt_tokens, r.prompt_source.as_deref()) {
                    (Some(p), Some("endpoint")) => format!("{p:.0} (endpoint mean)"),
                    (Some(p), _) => format!("{p:.0}"),
                    (None, _) => "unknown".into(),
                },
                r.output_tokens,
                r.note
                    .as_ref()
                    .map_or(String::new(), |n| format!("\n  note: {n}"))
            )
        })
        .collect()
}
