//! The twin vLLM's `/metrics`: Prometheus text with vLLM's metric names (`VLLM-METRICS.md`), so a
//! scraper written against the twin reads a real vLLM unchanged. Every series carries the labels
//! `model_name` and `engine`.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Latency buckets (seconds), as vLLM uses for TTFT and inter-token latency.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
const E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }
    fn observe(&mut self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug, Clone)]
struct ModelSeries {
    running: i64,
    kv_tokens: i64,
    prompt_tokens: u64,
    generation_tokens: u64,
    success: BTreeMap<String, u64>,
    ttft: Histogram,
    itl: Histogram,
    tpot: Histogram,
    e2e: Histogram,
}

impl ModelSeries {
    fn new() -> Self {
        Self {
            running: 0,
            kv_tokens: 0,
            prompt_tokens: 0,
            generation_tokens: 0,
            success: BTreeMap::new(),
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            tpot: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(E2E_BUCKETS),
        }
    }
}

/// Selects one histogram of a model's series.
type PickHistogram = fn(&ModelSeries) -> &Histogram;

/// NVIDIA DCGM exporter names for the simulated GPU (`gpu="0"`): utilisation (%), DRAM
/// and tensor-pipe activity (0..1), framebuffer in use (MiB), power (W, 70 idle to 700 busy).
fn render_dcgm(out: &mut String, e: &super::engine::Snapshot) {
    let series = [
        (
            "DCGM_FI_DEV_GPU_UTIL",
            "GPU utilization (in %).",
            e.gpu_util * 100.0,
        ),
        (
            "DCGM_FI_PROF_DRAM_ACTIVE",
            "Ratio of cycles the device memory interface is active.",
            e.dram_active,
        ),
        (
            "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
            "Ratio of cycles the tensor (HMMA) pipe is active.",
            e.tensor_active,
        ),
        (
            "DCGM_FI_DEV_FB_USED",
            "Framebuffer memory used (in MiB).",
            e.fb_used_bytes / 1048576.0,
        ),
        (
            "DCGM_FI_DEV_POWER_USAGE",
            "Power draw (in W).",
            70.0 + 630.0 * e.gpu_util,
        ),
    ];
    for (name, help, v) in series {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{gpu=\"0\",modelName=\"twin\"}} {v}"
        );
    }
}

/// What one finished request contributes.
#[derive(Debug, Clone)]
pub struct Finished {
    pub prompt_tokens: usize,
    pub generation_tokens: usize,
    pub finish_reason: String,
    pub ttft_s: f64,
    pub itl_s: Vec<f64>,
    pub e2e_s: f64,
}

/// The twin's metric registry. Guarded by the server's mutex.
#[derive(Debug, Clone)]
pub struct Metrics {
    kv_capacity_tokens: u64,
    models: BTreeMap<String, ModelSeries>,
}

impl Metrics {
    pub fn new(models: &[String], kv_capacity_tokens: u64) -> Self {
        let models = models
            .iter()
            .map(|m| (m.clone(), ModelSeries::new()))
            .collect();
        Self {
            kv_capacity_tokens: kv_capacity_tokens.max(1),
            models,
        }
    }

    fn series(&mut self, model: &str) -> &mut ModelSeries {
        self.models
            .entry(model.to_owned())
            .or_insert_with(ModelSeries::new)
    }

    /// A request entered the running batch holding `kv_tokens` of context.
    pub fn started(&mut self, model: &str, kv_tokens: usize) {
        let s = self.series(model);
        s.running += 1;
        s.kv_tokens += kv_tokens as i64;
    }

    /// A request left the running batch (finished or aborted).
    pub fn left(&mut self, model: &str, kv_tokens: usize) {
        let s = self.series(model);
        s.running -= 1;
        s.kv_tokens -= kv_tokens as i64;
    }

    /// A request finished; `left` is called separately.
    pub fn finished(&mut self, model: &str, f: &Finished) {
        let s = self.series(model);
        s.prompt_tokens += f.prompt_tokens as u64;
        s.generation_tokens += f.generation_tokens as u64;
        *s.success.entry(f.finish_reason.clone()).or_default() += 1;
        s.ttft.observe(f.ttft_s);
        for g in &f.itl_s {
            s.itl.observe(*g);
        }
        if f.generation_tokens > 1 {
            s.tpot
                .observe((f.e2e_s - f.ttft_s) / (f.generation_tokens - 1) as f64);
        }
        s.e2e.observe(f.e2e_s);
    }

    /// Prometheus text exposition.
    pub fn render(&self, engine: Option<&super::engine::Snapshot>) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        let each = |out: &mut String, f: &dyn Fn(&mut String, &str, &ModelSeries)| {
            for (m, s) in &self.models {
                f(out, &format!("engine=\"0\",model_name=\"{m}\""), s);
            }
        };
        gauge(
            &mut out,
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
        );
        // With a simulated engine, the engine's own state (on the backend's first model: one
        // engine serves the backend) replaces the count of requests in flight.
        let first = self.models.keys().next().cloned();
        let engine_or = |l: &str, own: f64, pick: fn(&super::engine::Snapshot) -> f64| match engine
        {
            Some(e)
                if first
                    .as_ref()
                    .is_some_and(|m| l.ends_with(&format!("\"{m}\""))) =>
            {
                pick(e)
            }
            Some(_) => 0.0,
            None => own,
        };
        each(&mut out, &|o, l, s| {
            let v = engine_or(l, s.running as f64, |e| e.running as f64);
            let _ = writeln!(o, "vllm:num_requests_running{{{l}}} {v}");
        });
        gauge(
            &mut out,
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
        );
        each(&mut out, &|o, l, _| {
            let v = engine_or(l, 0.0, |e| e.waiting as f64);
            let _ = writeln!(o, "vllm:num_requests_waiting{{{l}}} {v}");
        });
        gauge(
            &mut out,
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
        );
        let cap = self.kv_capacity_tokens as f64;
        each(&mut out, &|o, l, s| {
            let v = engine_or(l, s.kv_tokens.max(0) as f64 / cap, |e| e.kv_usage);
            let _ = writeln!(o, "vllm:kv_cache_usage_perc{{{l}}} {v}");
        });
        if let Some(e) = engine {
            let _ = writeln!(out, "# HELP vllm:num_preemptions_total Cumulative number of preemptions from the engine.\n# TYPE vllm:num_preemptions_total counter");
            each(&mut out, &|o, l, _| {
                let v = engine_or(l, 0.0, |e| e.preemptions as f64);
                let _ = writeln!(o, "vllm:num_preemptions_total{{{l}}} {v}");
            });
            render_dcgm(&mut out, e);
        }
        self.render_totals(&mut out);
        out
    }

    /// The token and request counters and the latency histograms, per model.
    fn render_totals(&self, out: &mut String) {
        let each = |out: &mut String, f: &dyn Fn(&mut String, &str, &ModelSeries)| {
            for (m, s) in &self.models {
                f(out, &format!("engine=\"0\",model_name=\"{m}\""), s);
            }
        };
        let _ = writeln!(out, "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n# TYPE vllm:prompt_tokens_total counter");
        each(out, &|o, l, s| {
            let _ = writeln!(o, "vllm:prompt_tokens_total{{{l}}} {}", s.prompt_tokens);
        });
        let _ = writeln!(out, "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n# TYPE vllm:generation_tokens_total counter");
        each(out, &|o, l, s| {
            let _ = writeln!(
                o,
                "vllm:generation_tokens_total{{{l}}} {}",
                s.generation_tokens
            );
        });
        let _ = writeln!(out, "# HELP vllm:request_success_total Count of successfully processed requests.\n# TYPE vllm:request_success_total counter");
        each(out, &|o, l, s| {
            for (reason, n) in &s.success {
                let _ = writeln!(
                    o,
                    "vllm:request_success_total{{{l},finished_reason=\"{reason}\"}} {n}"
                );
            }
        });
        let hists: [(&str, &str, PickHistogram); 4] = [
            (
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                |s| &s.ttft,
            ),
            (
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
                |s| &s.itl,
            ),
            (
                "vllm:request_time_per_output_token_seconds",
                "Histogram of time_per_output_token_seconds per request.",
                |s| &s.tpot,
            ),
            (
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
                |s| &s.e2e,
            ),
        ];
        for (name, help, pick) in hists {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            each(out, &|o, l, s| pick(s).render(o, name, l));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_vllm_names_with_labels() {
        let mut m = Metrics::new(&["m1".to_owned()], 1000);
        m.started("m1", 100);
        m.finished(
            "m1",
            &Finished {
                prompt_tokens: 10,
                generation_tokens: 3,
                finish_reason: "stop".into(),
                ttft_s: 0.02,
                itl_s: vec![0.01, 0.01],
                e2e_s: 0.04,
            },
        );
        let t = m.render(None);
        assert!(t.contains("vllm:num_requests_running{engine=\"0\",model_name=\"m1\"} 1"));
        assert!(t.contains("vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m1\"} 0.1"));
        assert!(t.contains("vllm:prompt_tokens_total{engine=\"0\",model_name=\"m1\"} 10"));
        assert!(t.contains("vllm:generation_tokens_total{engine=\"0\",model_name=\"m1\"} 3"));
        assert!(
            t.contains("vllm:time_to_first_token_seconds_count{engine=\"0\",model_name=\"m1\"} 1")
        );
        assert!(
            t.contains("vllm:inter_token_latency_seconds_count{engine=\"0\",model_name=\"m1\"} 2")
        );
        m.left("m1", 100);
        assert!(m
            .render(None)
            .contains("vllm:num_requests_running{engine=\"0\",model_name=\"m1\"} 0"));
    }
}
