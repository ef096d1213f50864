//! Why the knee is where it is: the limiter named in one sentence from the backends' metrics
//! (vLLM's and DCGM's names) scraped during a probe, and with taps the gateway's share of each
//! feature's time to first token.

use crate::scrape::Observed;
use serde::Serialize;

/// What limits a stack, named from its backends' metrics in one sentence.
///
/// `serving`: the target that serves the feature whose SLO broke, when known (its model
/// setting's endpoint); otherwise the most pressured target (most waiting, then fullest cache).
pub fn limiter(
    observed: &std::collections::BTreeMap<String, Observed>,
    serving: Option<&str>,
) -> Option<String> {
    let model = model_target(observed, serving);
    let model_saturated = model
        .is_some_and(|(_, o)| matches!(pressure(o), (waiting, kv) if waiting >= 1.0 || kv >= 0.9));
    // The twin DWS's pool is judged first: it limits when it queues and the model does not.
    if let Some(dws) = dws_limit(observed).filter(|_| !model_saturated) {
        return Some(dws);
    }
    let (target, o) = model?;
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

/// A model server's pressure: its most waiting requests, then its fullest KV cache.
fn pressure(o: &Observed) -> (f64, f64) {
    let kv = o
        .gauge_max("vllm:kv_cache_usage_perc")
        .or(o.gauge_max("vllm:gpu_cache_usage_perc"));
    (
        o.gauge_max("vllm:num_requests_waiting").unwrap_or(0.0),
        kv.unwrap_or(0.0),
    )
}

/// The model server to judge: `serving` when scraped, else the most pressured one (the twin
/// DWS's pool is no model server).
fn model_target<'a>(
    observed: &'a std::collections::BTreeMap<String, Observed>,
    serving: Option<&str>,
) -> Option<(&'a String, &'a Observed)> {
    let scraped = || {
        observed
            .iter()
            .filter(|(_, o)| o.scrapes > 0 && o.dws_pool().is_none())
    };
    scraped()
        .find(|(name, _)| Some(name.as_str()) == serving)
        .or_else(|| {
            scraped().max_by(|a, b| {
                pressure(a.1)
                    .partial_cmp(&pressure(b.1))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
        })
}

/// The twin DWS as the limit: its workers busy most of the time with sessions waiting for one.
fn dws_limit(observed: &std::collections::BTreeMap<String, Observed>) -> Option<String> {
    observed.iter().find_map(|(target, o)| {
        let pool = o.dws_pool().filter(|p| p.saturated())?;
        Some(format!(
            "the Duo Workflow Service ({target}) limits, not the model: {}, so sessions queue \
             before their first action and first model call; add DWS replicas",
            pool.text()
        ))
    })
}

/// The gateway's share of one feature's time to first token at a probe, from the taps: the
/// client's TTFT p50 less the backend's own (measured at the tap, from the upstream call's
/// arrival), over the client's.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct GatewayShare {
    pub feature: String,
    pub client_ttft_p50_ms: f64,
    pub gateway_ttft_p50_ms: f64,
    pub share: f64,
}

/// The shares a probe's `summary.json` allows (features with taps' figures).
pub fn gateway_shares(summary: &crate::verdict::Summary) -> Vec<GatewayShare> {
    summary
        .features
        .iter()
        .filter_map(|(name, f)| {
            let client = f.latency_ms.ttft.p50?;
            let gateway = f.backend.as_ref()?.gateway_ttft_p50_ms?;
            (client > 0.0).then(|| GatewayShare {
                feature: name.clone(),
                client_ttft_p50_ms: crate::stats::round3(client),
                gateway_ttft_p50_ms: crate::stats::round3(gateway),
                share: crate::stats::round3(gateway / client),
            })
        })
        .collect()
}

/// The shares in words (`duo_chat 12.0 ms of 40.0 ms (30 %); …`), as the console and the
/// Markdown say them.
pub fn shares_text(shares: &[GatewayShare]) -> String {
    let parts: Vec<String> = shares
        .iter()
        .map(|g| {
            format!(
                "{} {:.1} ms of {:.1} ms ({:.0} %)",
                g.feature,
                g.gateway_ttft_p50_ms,
                g.client_ttft_p50_ms,
                g.share * 100.0
            )
        })
        .collect();
    parts.join("; ")
}

/// One console line for the shares, or nothing.
pub fn gateway_line(shares: &[GatewayShare]) -> String {
    match shares.is_empty() {
        true => String::new(),
        false => format!(
            "gateway (taps): its share of TTFT p50 at the knee: {}\n",
            shares_text(shares)
        ),
    }
}
