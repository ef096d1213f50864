//! The harness's own costs besides decoding: recording a histogram sample, generating the
//! schedule, and the whole per-request bookkeeping of a 32-chunk streamed answer (record
//! creation, per-chunk decode and recording, token accounting, aggregation, and the
//! `results.ndjson` line), and the redaction every answer goes through before it is kept (the
//! shape rule over a 1.3 kB code answer). Target: under 20 µs of harness CPU per request.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use duo_harness::corpus::Interaction;
use duo_harness::drive::{self, Prepared, Slot, Target};
use duo_harness::measure::aggregate::Aggregate;
use duo_harness::measure::hist::Metric;
use duo_harness::measure::recorder::{finish_tokens, Recorder};
use duo_harness::measure::Disposition;
use duo_harness::protocol::Framing;
use duo_harness::schedule::{Arrival, Arrivals, RateProfile};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn histogram(c: &mut Criterion) {
    let mut m = Metric::default();
    let mut v = 0.0;
    c.bench_function("histogram_record", |b| {
        b.iter(|| {
            v = (v + 0.37) % 200.0;
            m.record(black_box(20.0 + v));
        })
    });
}

fn schedule(c: &mut Criterion) {
    let mut g = c.benchmark_group("schedule_next");
    g.throughput(Throughput::Elements(1000));
    for (name, arrival) in [
        ("constant", Arrival::Constant),
        ("poisson", Arrival::Poisson),
        ("gamma", Arrival::Gamma),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let a = Arrivals::new(arrival, RateProfile::fixed(1000.0, None), 0.5, 7);
                a.take(1000).for_each(|t| {
                    black_box(t);
                })
            })
        });
    }
    g.finish();
}

fn sse_chunks() -> Vec<Vec<u8>> {
    (0..32)
        .map(|i| {
            let finish = if i == 31 { "\"length\"" } else { "null" };
            format!(
                "data: {{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1795565468,\"model\":\"codestral-22b\",\"choices\":[{{\"index\":0,\"text\":\" tok{i}\",\"logprobs\":null,\"finish_reason\":{finish},\"stop_reason\":null}}]}}\n\n"
            )
            .into_bytes()
        })
        .chain([
            b"data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"codestral-22b\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"total_tokens\":44,\"completion_tokens\":32}}\n\n".to_vec(),
            b"data: [DONE]\n\n".to_vec(),
        ])
        .collect()
}

fn per_request(c: &mut Criterion) {
    let it: Interaction = serde_json::from_str(
        r#"{"v":1,"id":"b","feature":"code_completions","request":{"method":"POST","path":"/v1/completions","body":{"model":"codestral-22b","prompt":"def f():","max_tokens":32,"stream":true}}}"#,
    )
    .unwrap();
    let prepared = Prepared::new(it, None, &Default::default());
    let target = Target {
        client: reqwest::Client::new(),
        fresh: reqwest::Client::new(),
        h1: None,
        base_url: "http://127.0.0.1:1".into(),
        auth: duo_harness::drive::Auth::new(
            &serde_json::from_value(serde_json::json!({"url": "http://127.0.0.1:1"})).unwrap(),
        )
        .unwrap(),
        timeout: Duration::from_secs(10),
        run_start: Instant::now(),
        correlation: None,
        tokenizers: Default::default(),
        dws: None,
    };
    let body = sse_chunks();
    let mut agg = Aggregate::new(Default::default());
    let mut line = Vec::with_capacity(8192);
    c.bench_function("per_request_bookkeeping_32_chunks", |b| {
        b.iter(|| {
            let now = Instant::now();
            let slot = Slot {
                seq: 0,
                intended: now,
                started: now,
                warmup: false,
            };
            let mut rec = drive::unsent(&target, &prepared, slot, Disposition::Completed);
            rec.status = Some(200);
            rec.framing = Some(Framing::OpenAiSse);
            let mut r = Recorder::new(Framing::OpenAiSse, 200);
            for (i, ch) in body.iter().enumerate() {
                r.chunk(&mut rec, 20.0 + 5.0 * i as f64, ch);
            }
            r.finish(&mut rec, 200.0).unwrap();
            finish_tokens(&mut rec, None);
            agg.add(&rec);
            line.clear();
            serde_json::to_writer(&mut line, &rec).unwrap();
            black_box(line.len());
        })
    });
}

/// The shape rule over a measured answer, as `drive` applies it to every record: a code answer
/// of 1.3 kB with no secret in it (the usual case, so the whole text is searched).
fn redact_answer(c: &mut Criterion) {
    let answer = "def handler(event, context):\n    url = f\"https://{host}:{port}/v1/models\"\n    \
                  response = requests.get(url, timeout=30)\n    return {'status': response.status_code}\n"
        .repeat(8);
    c.bench_function("redact_answer_1304_bytes", |b| {
        b.iter(|| black_box(duo_harness::redact::known(black_box(&answer))))
    });
}

/// The load's own HTTP/1.1 client taking apart a chunked body of the 34 SSE chunks above, as one
/// read delivers them (the body's framing only: the recorder's share is `per_request`).
fn chunked_body(c: &mut Criterion) {
    use duo_harness::drive::h1::body::{Body, Length};
    let mut wire = Vec::new();
    for chunk in sse_chunks() {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(&chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let mut g = c.benchmark_group("h1");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("chunked_body_34_chunks", |b| {
        b.iter(|| {
            let mut body = Body::new(Length::Chunked);
            let mut bytes = 0;
            let used = body.decode(black_box(&wire), &mut |p: &[u8]| bytes += p.len());
            black_box((used, bytes))
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    histogram,
    schedule,
    per_request,
    redact_answer,
    chunked_body
);
criterion_main!(benches);
