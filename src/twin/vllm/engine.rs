//! A roofline-timed continuous-batching engine for the twin vLLM (`ROOFLINE.md`), so that TTFT,
//! TPOT and throughput bend where a real GPU's would.
//!
//! In: requests (prompt tokens, output tokens) and a declared model geometry and GPU. Out: the
//! instant each request's every token is produced. Each engine step decodes one token for every
//! running sequence and spends the rest of `max_num_batched_tokens` on chunked prefill; at most
//! `max_num_seqs` run at once; a KV-cache budget makes new requests wait and, when running ones
//! outgrow it, preempts the newest (recomputed later, as vLLM v1 does). A step lasts
//! `max((W + kv·Σc) / (u_B·BW), 2·P·tokens / (u_F·F))`. [`Batch`] is the pure model (tested and
//! benched without a clock); [`Engine`] runs it on a task, sleeping each step's duration.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use crate::roofline::{gpu_preset, model_preset, Geometry, Gpu};

/// `[stack.backend.engine]`: the simulated serving engine of a twin backend.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// `llama-3.1-8b`, `mistral-7b`, `codestral-22b`.
    pub model: String,
    /// `h100-sxm`, `h200`.
    pub gpu: String,
    #[serde(default = "default_max_num_seqs")]
    pub max_num_seqs: usize,
    #[serde(default = "default_max_batched")]
    pub max_num_batched_tokens: usize,
    #[serde(default = "default_utilization")]
    pub gpu_memory_utilization: f64,
    /// Achieved share of HBM bandwidth (MBU).
    #[serde(default = "default_mbu")]
    pub mbu: f64,
    /// Achieved share of FLOP/s (MFU).
    #[serde(default = "default_mfu")]
    pub mfu: f64,
    /// Memory the runtime holds beside weights and KV cache, GB.
    #[serde(default = "default_overhead")]
    pub overhead_gb: f64,
    /// The KV budget in tokens, instead of the one memory leaves (a KV-bound test stack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_capacity_tokens: Option<u64>,
}

fn default_max_num_seqs() -> usize {
    256
}
fn default_max_batched() -> usize {
    8192
}
fn default_utilization() -> f64 {
    0.9
}
fn default_mbu() -> f64 {
    0.8
}
fn default_mfu() -> f64 {
    0.5
}
fn default_overhead() -> f64 {
    4.0
}

/// Everything a step's cost is computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub geometry: Geometry,
    pub gpu: Gpu,
    pub mbu: f64,
    pub mfu: f64,
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub kv_capacity_tokens: u64,
}

/// What is wrong with an engine's config.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

impl EngineConfig {
    /// The cost model, or what is wrong with the config.
    pub fn cost(&self) -> Result<Cost, EngineError> {
        self.cost_text().map_err(EngineError)
    }

    fn cost_text(&self) -> Result<Cost, String> {
        let geometry = model_preset(&self.model).ok_or_else(|| {
            format!(
                "engine.model '{}': one of llama-3.1-8b, mistral-7b, codestral-22b",
                self.model
            )
        })?;
        let gpu = gpu_preset(&self.gpu)
            .ok_or_else(|| format!("engine.gpu '{}': one of h100-sxm, h200", self.gpu))?;
        let share = |name: &str, v: f64| match v > 0.0 && v <= 1.0 {
            true => Ok(v),
            false => Err(format!("engine.{name} {v}: must be in (0, 1]")),
        };
        let (mbu, mfu) = (share("mbu", self.mbu)?, share("mfu", self.mfu)?);
        let util = share("gpu_memory_utilization", self.gpu_memory_utilization)?;
        if self.max_num_seqs == 0 || self.max_num_batched_tokens == 0 {
            return Err("engine.max_num_seqs and max_num_batched_tokens must be > 0".into());
        }
        let free = gpu.memory_bytes * util - geometry.weight_bytes() - self.overhead_gb * 1e9;
        let derived = (free / geometry.kv_bytes_per_token()).max(0.0) as u64;
        let kv_capacity_tokens = self.kv_capacity_tokens.unwrap_or(derived);
        if kv_capacity_tokens == 0 {
            return Err(format!(
                "engine: {} does not fit on {} with room for a KV cache",
                self.model, self.gpu
            ));
        }
        Ok(Cost {
            geometry,
            gpu,
            mbu,
            mfu,
            max_num_seqs: self.max_num_seqs,
            max_num_batched_tokens: self.max_num_batched_tokens,
            kv_capacity_tokens,
        })
    }
}

impl Cost {
    /// One step's duration: memory time (weights once, every running context's KV) against
    /// compute time (two FLOPs per parameter per token processed), whichever is longer.
    pub fn step_s(&self, tokens: usize, context_tokens: u64) -> (f64, f64) {
        let (memory, compute) = self.parts_s(tokens, context_tokens);
        (memory.max(compute), memory)
    }

    /// A step's memory time and compute time, seconds.
    pub fn parts_s(&self, tokens: usize, context_tokens: u64) -> (f64, f64) {
        let g = &self.geometry;
        let memory = (g.weight_bytes() + g.kv_bytes_per_token() * context_tokens as f64)
            / (self.mbu * self.gpu.hbm_bytes_per_s);
        let compute = 2.0 * g.params * tokens as f64 / (self.mfu * self.gpu.flops);
        (memory, compute)
    }
}

/// One request inside the engine.
#[derive(Debug)]
pub struct Seq<T> {
    /// Prompt (and, after a preemption, generated) tokens still to prefill.
    prefill_left: usize,
    prompt: usize,
    output: usize,
    generated: usize,
    /// Tokens it holds in the KV cache.
    kv: u64,
    pub sink: T,
}

/// What happened in one step.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Step {
    pub duration_s: f64,
    /// The memory-bound part of the step (DRAM busy), seconds.
    pub memory_s: f64,
    /// The compute part of the step (tensor cores busy), seconds.
    pub compute_s: f64,
    pub decoded: usize,
    pub prefilled: usize,
    pub preempted: usize,
}

/// The running batch and the queue: the engine without a clock.
#[derive(Debug)]
pub struct Batch<T> {
    pub cost: Cost,
    waiting: VecDeque<Seq<T>>,
    running: Vec<Seq<T>>,
    kv_used: u64,
}

impl<T> Batch<T> {
    pub fn new(cost: Cost) -> Self {
        Self {
            cost,
            waiting: VecDeque::new(),
            running: Vec::new(),
            kv_used: 0,
        }
    }

    /// Queues a request. One that could never fit the KV budget is cut to fit.
    pub fn submit(&mut self, prompt: usize, output: usize, sink: T) {
        let cap = self.cost.kv_capacity_tokens as usize;
        let prompt = prompt.clamp(1, cap.saturating_sub(1).max(1));
        let output = output.clamp(1, cap.saturating_sub(prompt).max(1));
        self.waiting.push_back(Seq {
            prefill_left: prompt,
            prompt,
            output,
            generated: 0,
            kv: 0,
            sink,
        });
    }

    pub fn idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }
    pub fn running(&self) -> usize {
        self.running.len()
    }
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
    pub fn kv_usage(&self) -> f64 {
        self.kv_used as f64 / self.cost.kv_capacity_tokens as f64
    }

    /// Plans one step: preempts what the decodes cannot fit, continues prefills, admits waiting
    /// requests while slots, token budget and KV allow. Returns the step and, per running
    /// sequence, the tokens it processes this step.
    fn plan(&mut self) -> (Step, Vec<usize>) {
        let mut step = Step::default();
        let cap = self.cost.kv_capacity_tokens;
        let decoding = |s: &Seq<T>| s.prefill_left == 0;
        // Decodes first; preempt the newest while their next tokens do not fit.
        while self.kv_used + self.running.iter().filter(|s| decoding(s)).count() as u64 > cap {
            let Some(mut s) = self.running.pop() else {
                break;
            };
            self.kv_used -= s.kv;
            s.kv = 0;
            s.prefill_left = s.prompt + s.generated;
            self.waiting.push_front(s);
            step.preempted += 1;
        }
        let mut budget = self.cost.max_num_batched_tokens;
        let mut kv_after = self.kv_used;
        let mut work = Vec::with_capacity(self.running.len());
        for s in &self.running {
            let n = match s.prefill_left {
                0 => 1,
                // A prefill chunk takes what the budget and the KV space leave.
                left => left.min(budget).min(cap.saturating_sub(kv_after) as usize),
            };
            budget = budget.saturating_sub(n);
            kv_after += n as u64;
            work.push(n);
        }
        while self.running.len() < self.cost.max_num_seqs && budget > 0 {
            let Some(next) = self.waiting.front() else {
                break;
            };
            let chunk = next.prefill_left.min(budget) as u64;
            if kv_after + chunk > cap {
                break; // the queue waits for KV space
            }
            let s = self.waiting.pop_front().expect("front exists");
            budget -= chunk as usize;
            kv_after += chunk;
            work.push(chunk as usize);
            self.running.push(s);
        }
        for (s, n) in self.running.iter().zip(&work) {
            if s.prefill_left == 0 {
                step.decoded += 1;
            } else {
                step.prefilled += n;
            }
        }
        let (duration_s, memory_s) = self.cost.step_s(step.decoded + step.prefilled, kv_after);
        step.duration_s = if step.decoded + step.prefilled == 0 {
            0.0
        } else {
            duration_s
        };
        step.memory_s = memory_s.min(step.duration_s);
        let (_, compute_s) = self.cost.parts_s(step.decoded + step.prefilled, kv_after);
        step.compute_s = compute_s.min(step.duration_s);
        (step, work)
    }

    /// Runs one step: `emit` is called for each sequence that produced a token (with its index
    /// among the request's tokens); it returns `false` when the request's client is gone (the
    /// request is aborted). Finished and aborted sequences leave and free their KV.
    pub fn step(&mut self, mut emit: impl FnMut(&mut T, usize) -> bool) -> Step {
        let (step, work) = self.plan();
        let mut keep = Vec::with_capacity(self.running.len());
        for (mut s, n) in std::mem::take(&mut self.running).into_iter().zip(work) {
            self.kv_used += n as u64;
            s.kv += n as u64;
            let produced = match s.prefill_left {
                0 => true,
                left => {
                    s.prefill_left = left - n;
                    s.prefill_left == 0
                }
            };
            let mut alive = true;
            if produced {
                alive = emit(&mut s.sink, s.generated);
                s.generated += 1;
            }
            if alive && s.generated < s.output {
                keep.push(s);
            } else {
                self.kv_used -= s.kv;
            }
        }
        self.running = keep;
        step
    }
}

/// What `/metrics` reads of a running engine.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub running: usize,
    pub waiting: usize,
    pub kv_usage: f64,
    pub kv_capacity_tokens: u64,
    pub preemptions: u64,
    /// Over the last second: the share of time a step ran (GPU utilisation) and the share its
    /// memory traffic took (DRAM active), and the memory in use (weights + KV).
    pub gpu_util: f64,
    pub dram_active: f64,
    /// Over the last second: the share of time the tensor pipes computed (compute-bound steps
    /// keep them busy however low the achieved MFU).
    pub tensor_active: f64,
    pub fb_used_bytes: f64,
}

/// A request for the engine: its size, and where each token's instant goes.
pub struct Request {
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    pub tokens: mpsc::UnboundedSender<Instant>,
}

/// The engine of one backend, running on its own task.
#[derive(Clone)]
pub struct Engine {
    submit: mpsc::UnboundedSender<Request>,
    snapshot: Arc<Mutex<Snapshot>>,
}

impl Engine {
    /// Starts the engine's task on the current runtime.
    pub fn start(cost: Cost) -> Self {
        let (submit, rx) = mpsc::unbounded_channel();
        let snapshot = Arc::new(Mutex::new(Snapshot {
            kv_capacity_tokens: cost.kv_capacity_tokens,
            fb_used_bytes: cost.geometry.weight_bytes(),
            ..Snapshot::default()
        }));
        tokio::spawn(run(Batch::new(cost), rx, snapshot.clone()));
        Self { submit, snapshot }
    }

    /// Queues a request; its tokens' instants arrive on the returned channel, which closes
    /// when the request is done.
    pub fn generate(
        &self,
        prompt_tokens: usize,
        output_tokens: usize,
    ) -> mpsc::UnboundedReceiver<Instant> {
        let (tokens, rx) = mpsc::unbounded_channel();
        let _ = self.submit.send(Request {
            prompt_tokens,
            output_tokens,
            tokens,
        });
        rx
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

async fn run(
    mut batch: Batch<mpsc::UnboundedSender<Instant>>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    snapshot: Arc<Mutex<Snapshot>>,
) {
    let mut window: VecDeque<(Instant, f64, f64, f64)> = VecDeque::new();
    let mut preemptions = 0u64;
    let mut at = Instant::now();
    loop {
        if batch.idle() {
            match rx.recv().await {
                Some(r) => batch.submit(r.prompt_tokens, r.output_tokens, r.tokens),
                None => return,
            }
            at = Instant::now();
        }
        while let Ok(r) = rx.try_recv() {
            batch.submit(r.prompt_tokens, r.output_tokens, r.tokens);
        }
        // The step's state changes now; its tokens exist once its duration has passed.
        let mut pending: Vec<mpsc::UnboundedSender<Instant>> = Vec::new();
        let step = batch.step(|sink, _| {
            pending.push(sink.clone());
            !sink.is_closed()
        });
        let step_start = at;
        at += Duration::from_secs_f64(step.duration_s);
        crate::clock::Timer::global().sleep_until(at).await;
        let now = Instant::now();
        for sink in pending {
            let _ = sink.send(now);
        }
        // A late wake-up does not make the simulated GPU faster (the next step starts when this
        // one ended), unless the engine fell behind by more than a few milliseconds.
        if now > at + Duration::from_millis(5) {
            at = now;
        }
        preemptions += step.preempted as u64;
        // The last second of steps (their starts): busy time over the time they span.
        window.push_back((step_start, step.duration_s, step.memory_s, step.compute_s));
        while window
            .front()
            .is_some_and(|w| at.duration_since(w.0) > Duration::from_secs(1))
        {
            window.pop_front();
        }
        let span = window
            .front()
            .map_or(1.0, |w| at.duration_since(w.0).as_secs_f64().max(1e-3));
        let tensor: f64 = (window.iter().map(|w| w.3).sum::<f64>() / span).min(1.0);
        let busy: f64 = (window.iter().map(|w| w.1).sum::<f64>() / span).min(1.0);
        let dram: f64 = (window.iter().map(|w| w.2).sum::<f64>() / span).min(1.0);
        if let Ok(mut s) = snapshot.lock() {
            let c = &batch.cost;
            *s = Snapshot {
                running: batch.running(),
                waiting: batch.waiting(),
                kv_usage: batch.kv_usage(),
                kv_capacity_tokens: c.kv_capacity_tokens,
                preemptions,
                gpu_util: busy,
                dram_active: dram * c.mbu,
                tensor_active: tensor,
                fb_used_bytes: c.geometry.weight_bytes()
                    + c.geometry.kv_bytes_per_token() * batch.kv_used as f64,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(model: &str, gpu: &str) -> Cost {
        let cfg: EngineConfig =
            serde_json::from_value(serde_json::json!({"model": model, "gpu": gpu})).unwrap();
        cfg.cost().unwrap()
    }

    /// ROOFLINE.md's Llama-3.1-8B on H100 figures, from the cost model itself.
    #[test]
    fn the_cost_model_gives_roofline_figures() {
        let c = cost("llama-3.1-8b", "h100-sxm");
        assert!((c.geometry.weight_bytes() / 1e9 - 16.06).abs() < 0.01);
        assert_eq!(c.geometry.kv_bytes_per_token(), 131072.0);
        // KV budget at 0.9: ≈ 396k tokens.
        assert!(
            (c.kv_capacity_tokens as f64 / 396e3 - 1.0).abs() < 0.01,
            "{}",
            c.kv_capacity_tokens
        );
        // Single stream at 80 % MBU: 4.79 / 0.8 ≈ 5.99 ms per token.
        let (t, _) = c.step_s(1, 1000);
        assert!((t * 1e3 - 6.04).abs() < 0.1, "{t}");
        // B = 64 at 2k context, 80 % MBU: ≈ 5,160 tok/s.
        let (t, _) = c.step_s(64, 64 * 2048);
        assert!((64.0 / t / 5160.0 - 1.0).abs() < 0.02, "{}", 64.0 / t);
    }

    #[test]
    fn a_full_kv_cache_makes_requests_wait_and_preempts() {
        let mut c = cost("llama-3.1-8b", "h100-sxm");
        c.kv_capacity_tokens = 1000;
        let mut b: Batch<u32> = Batch::new(c);
        for i in 0..4 {
            b.submit(300, 200, i);
        }
        let first = b.step(|_, _| true);
        assert_eq!(b.running(), 3, "three prompts of 300 fit in 1,000 tokens");
        assert_eq!(b.waiting(), 1);
        assert_eq!(first.prefilled, 900);
        let mut preempted = 0;
        let mut tokens = 0;
        for _ in 0..2000 {
            if b.idle() {
                break;
            }
            let s = b.step(|_, _| {
                tokens += 1;
                true
            });
            preempted += s.preempted;
            assert!(b.kv_used <= 1000);
        }
        assert!(b.idle(), "every request finishes");
        assert!(preempted > 0, "growing contexts preempt the newest");
        assert!(tokens >= 4 * 200 - 3, "{tokens}");
    }
}
