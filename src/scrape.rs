//! Backend metrics during a run: each target's Prometheus `/metrics` (vLLM's names, and NVIDIA
//! DCGM exporter's) read every `interval_s`, so a run can say what the model servers went
//! through while it measured them (queue, KV cache, preemptions, GPU activity).
//!
//! In: the targets' URLs (a `twin:<backend>` target resolved to the embedded backend; `twin:dws`
//! to the twin DWS, whose worker pool reports under its own `dws_*` names). Out:
//! `metrics.ndjson` (one line per scrape: time, target, the values read) and, per target, a
//! [`Observed`] summary (gauges' mean and max, counters' increase and rate) for `summary.json`'s
//! `backend_metrics`. A target that does not answer is counted, never fatal.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Gauges read (several spellings of one meaning are summed under the name read).
pub const GAUGES: &[&str] = &[
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_POWER_USAGE",
    // The twin DWS's worker pool (its own names; the real service exports none of these).
    "dws_workers",
    "dws_workers_busy",
    "dws_sessions_waiting",
];

/// Counters read.
pub const COUNTERS: &[&str] = &[
    "vllm:num_preemptions_total",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    // The engine's own inter-token time (sum and count of its histogram; the older name
    // first): the decode step as the server saw it, before any gateway re-chunked the stream.
    "vllm:time_per_output_token_seconds_sum",
    "vllm:time_per_output_token_seconds_count",
    "vllm:inter_token_latency_seconds_sum",
    "vllm:inter_token_latency_seconds_count",
    "dws_worker_busy_seconds_total",
    "dws_worker_wait_seconds_total",
];

/// One gauge over the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Gauge {
    pub mean: f64,
    pub max: f64,
}

/// One counter over the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Counter {
    pub increase: f64,
    pub per_s: f64,
}

/// What one target showed over the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Observed {
    pub url: String,
    pub scrapes: u64,
    pub failed: u64,
    pub gauges: BTreeMap<String, Gauge>,
    pub counters: BTreeMap<String, Counter>,
    /// The fewest and most sequences running at scrapes where requests waited: equal, the
    /// batch sat at a cap (`max_num_seqs`) while the queue grew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_while_waiting: Option<[f64; 2]>,
}

/// The twin DWS's worker pool as one run saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DwsPool {
    pub workers: f64,
    /// Worker time spent over the pool's time, 0 to 1.
    pub busy_share: f64,
    /// The most session steps seen waiting for a worker at a scrape.
    pub waiting_max: f64,
    /// Time steps waited for a worker, summed, seconds.
    pub waited_s: f64,
}

impl DwsPool {
    /// Saturated: busy most of the time with steps waiting.
    pub fn saturated(&self) -> bool {
        self.busy_share >= 0.8 && self.waiting_max >= 1.0
    }

    /// `1 worker(s) busy 97 % of the time, up to 12 session steps waiting (41.2 s waited in all)`.
    pub fn text(&self) -> String {
        format!(
            "{:.0} worker(s) busy {:.0} % of the time, up to {:.0} session steps waiting for one \
             ({:.1} s waited in all)",
            self.workers,
            (self.busy_share * 100.0).min(100.0),
            self.waiting_max,
            self.waited_s
        )
    }
}

impl Observed {
    pub fn gauge_max(&self, name: &str) -> Option<f64> {
        self.gauges.get(name).map(|g| g.max)
    }
    pub fn gauge_mean(&self, name: &str) -> Option<f64> {
        self.gauges.get(name).map(|g| g.mean)
    }

    /// The twin DWS's worker pool over the run, when this target is one (it has `dws_workers`).
    pub fn dws_pool(&self) -> Option<DwsPool> {
        let workers = self.gauge_max("dws_workers").filter(|w| *w >= 1.0)?;
        let counter = |n: &str| self.counters.get(n);
        Some(DwsPool {
            workers,
            // Exact, not sampled: the busy-seconds counter's rate over the pool.
            busy_share: counter("dws_worker_busy_seconds_total").map_or(0.0, |c| c.per_s / workers),
            waiting_max: self.gauge_max("dws_sessions_waiting").unwrap_or(0.0),
            waited_s: counter("dws_worker_wait_seconds_total").map_or(0.0, |c| c.increase),
        })
    }

    /// The server's mean inter-token time over the run, seconds (its histogram's sum over
    /// count, either spelling).
    pub fn server_itl_s(&self) -> Option<f64> {
        [
            "vllm:inter_token_latency_seconds",
            "vllm:time_per_output_token_seconds",
        ]
        .iter()
        .find_map(|n| {
            let sum = self.counters.get(&format!("{n}_sum"))?.increase;
            let count = self.counters.get(&format!("{n}_count"))?.increase;
            (count > 0.0).then(|| sum / count)
        })
    }
}

/// The values of the known metrics in a Prometheus text exposition, each summed over its label
/// sets (a vLLM serving several model names, several GPUs of one exporter).
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        if !GAUGES.contains(&name) && !COUNTERS.contains(&name) {
            continue;
        }
        let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        if v.is_finite() {
            *out.entry(name.to_owned()).or_insert(0.0) += v;
        }
    }
    out
}

/// A running scraper.
pub struct Scraper {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<BTreeMap<String, Observed>>,
}

/// One target's samples so far.
#[derive(Default)]
struct Samples {
    url: String,
    scrapes: u64,
    failed: u64,
    sums: BTreeMap<String, (f64, f64, u64)>,
    first: BTreeMap<String, (Instant, f64)>,
    last: BTreeMap<String, (Instant, f64)>,
    running_while_waiting: Option<[f64; 2]>,
}

impl Samples {
    fn add(&mut self, at: Instant, values: &BTreeMap<String, f64>) {
        self.scrapes += 1;
        let get = |k: &str| values.get(k).copied();
        if let (Some(w), Some(r)) = (
            get("vllm:num_requests_waiting"),
            get("vllm:num_requests_running"),
        ) {
            if w >= 1.0 {
                let [lo, hi] = self.running_while_waiting.unwrap_or([r, r]);
                self.running_while_waiting = Some([lo.min(r), hi.max(r)]);
            }
        }
        for (k, v) in values {
            if COUNTERS.contains(&k.as_str()) {
                self.first.entry(k.clone()).or_insert((at, *v));
                self.last.insert(k.clone(), (at, *v));
            } else {
                let e = self.sums.entry(k.clone()).or_insert((0.0, f64::MIN, 0));
                e.0 += v;
                e.1 = e.1.max(*v);
                e.2 += 1;
            }
        }
    }

    fn summary(self) -> Observed {
        let gauges = self
            .sums
            .into_iter()
            .map(|(k, (sum, max, n))| {
                (
                    k,
                    Gauge {
                        mean: sum / n.max(1) as f64,
                        max,
                    },
                )
            })
            .collect();
        let counters = self
            .last
            .iter()
            .map(|(k, (t1, v1))| {
                let (t0, v0) = self.first[k];
                let dt = t1.duration_since(t0).as_secs_f64();
                let increase = (v1 - v0).max(0.0);
                let per_s = if dt > 0.0 { increase / dt } else { 0.0 };
                (k.clone(), Counter { increase, per_s })
            })
            .collect();
        Observed {
            url: self.url,
            scrapes: self.scrapes,
            failed: self.failed,
            gauges,
            counters,
            running_while_waiting: self.running_while_waiting,
        }
    }
}

/// Starts scraping `targets` (name, URL) every `interval`, appending to `path`.
pub fn start(
    client: reqwest::Client,
    targets: Vec<(String, String)>,
    interval: Duration,
    path: PathBuf,
) -> Scraper {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut samples: BTreeMap<String, Samples> = targets
            .iter()
            .map(|(n, u)| {
                (
                    n.clone(),
                    Samples {
                        url: u.clone(),
                        ..Samples::default()
                    },
                )
            })
            .collect();
        let mut lines = String::new();
        let origin = Instant::now();
        loop {
            for (name, url) in &targets {
                let got = async {
                    let r = client
                        .get(url)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await
                        .ok()?;
                    r.status().is_success().then_some(())?;
                    r.text().await.ok()
                }
                .await;
                let s = samples.get_mut(name).expect("every target has samples");
                let Some(text) = got else {
                    s.failed += 1;
                    continue;
                };
                let at = Instant::now();
                let values = parse(&text);
                s.add(at, &values);
                let line = serde_json::json!({"t_s": crate::stats::round3(at.duration_since(origin).as_secs_f64()),
                    "target": name, "values": values});
                lines.push_str(&line.to_string());
                lines.push('\n');
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopped.changed() => break,
            }
        }
        let _ = crate::files::write_atomic(&path, lines.as_bytes());
        samples.into_iter().map(|(k, s)| (k, s.summary())).collect()
    });
    Scraper { stop, task }
}

impl Scraper {
    /// Stops (after one last scrape is not taken: the run is over) and summarises.
    pub async fn finish(self) -> BTreeMap<String, Observed> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sums_label_sets_of_known_names() {
        let text = "# HELP x\nvllm:num_requests_waiting{model_name=\"a\"} 2\n\
                    vllm:num_requests_waiting{model_name=\"b\"} 3\nvllm:other 7\n\
                    DCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 95\n";
        let v = parse(text);
        assert_eq!(v["vllm:num_requests_waiting"], 5.0);
        assert_eq!(v["DCGM_FI_DEV_GPU_UTIL"], 95.0);
        assert!(!v.contains_key("vllm:other"));
    }
}
