//! The twin's simulated GPU engine must never be what limits a test: the CPU cost of one engine
//! step (planning the batch, chunked prefill, KV accounting, one token for every running
//! sequence) with 500 sequences running, and of 2,000 requests of 64 tokens through it. Target:
//! one core carries 500 concurrent streams and 2,000 requests/s of 64-token streams (README).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use duo_harness::twin::vllm::engine::{Batch, EngineConfig};
use std::hint::black_box;

fn cost() -> duo_harness::twin::vllm::engine::Cost {
    let cfg: EngineConfig = serde_json::from_value(serde_json::json!({
        "model": "llama-3.1-8b", "gpu": "h200", "max_num_seqs": 1024
    }))
    .unwrap();
    cfg.cost().unwrap()
}

fn step_with_500_running(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(500));
    g.bench_function("step_500_running", |b| {
        let mut batch: Batch<u64> = Batch::new(cost());
        let mut tokens = 0u64;
        b.iter(|| {
            // Finished streams are replaced: 500 stay in flight, admissions included.
            while batch.running() + batch.waiting() < 500 {
                batch.submit(200, 64, 0);
            }
            let s = batch.step(|sink, _| {
                *sink += 1;
                tokens += 1;
                true
            });
            black_box(s.duration_s)
        });
        black_box(tokens);
    });
    // 2,000 requests of a 100-token prompt and 64 output tokens, from submission to the last
    // token: the work one second of 2,000 requests/s asks of the engine.
    g.throughput(Throughput::Elements(2000));
    g.bench_function("2000_requests_of_64_tokens", |b| {
        b.iter(|| {
            let mut batch: Batch<u32> = Batch::new(cost());
            for _ in 0..2000 {
                batch.submit(100, 64, 0);
            }
            let mut steps = 0;
            while !batch.idle() {
                batch.step(|_, _| true);
                steps += 1;
            }
            black_box(steps)
        });
    });
    g.finish();
}

criterion_group!(benches, step_with_500_running);
criterion_main!(benches);
