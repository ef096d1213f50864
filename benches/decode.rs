//! Decoding cost per chunk for each stream framing, fed one network chunk at a time as the
//! driver does. Target: under 1 µs per chunk. Chunks are shaped like the captures in
//! `../shared/aigw-samples/` and the twin vLLM's output.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use duo_harness::protocol::{Decoder, Framing};
use std::hint::black_box;

const CHUNKS: usize = 32;

fn chunks(framing: Framing) -> Vec<Vec<u8>> {
    (0..CHUNKS)
        .map(|i| {
            let tok = format!(" tok{i}");
            let s = match framing {
                Framing::RawText => tok,
                Framing::V4Sse => format!(
                    "event: content_chunk\ndata: {{\"choices\": [{{\"delta\": {{\"content\": \"{tok}\"}}, \"index\": 0}}]}}\n\n"
                ),
                Framing::ChatNdjson => format!(
                    "{{\"type\": \"final_answer_delta\", \"data\": {{\"text\": \"{tok}\"}}}}\n"
                ),
                _ => format!(
                    "data: {{\"id\":\"cmpl-00000000deadbeef\",\"object\":\"text_completion\",\"created\":1795565468,\"model\":\"codestral-22b\",\"choices\":[{{\"index\":0,\"text\":\"{tok}\",\"logprobs\":null,\"finish_reason\":null,\"stop_reason\":null}}]}}\n\n"
                ),
            };
            s.into_bytes()
        })
        .collect()
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_per_chunk");
    g.throughput(Throughput::Elements(CHUNKS as u64));
    for (name, framing) in [
        ("raw_text", Framing::RawText),
        ("v4_sse", Framing::V4Sse),
        ("chat_ndjson", Framing::ChatNdjson),
        ("openai_sse", Framing::OpenAiSse),
    ] {
        let input = chunks(framing);
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || Decoder::new(framing),
                |d| {
                    for ch in &input {
                        black_box(d.push(ch));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
