//! The twin vLLM's hand-written SSE chunks against the JSON vLLM sends.
use super::*;

fn job(api: Api) -> Job {
    let cfg = BackendConfig::new("b", &["m\"x"]);
    let backend = Arc::new(Backend {
        metrics: Mutex::new(metrics::Metrics::new(&cfg.models, 1)),
        cfg,
        engine: None,
    });
    let p = Parsed {
        model: "m\"x".into(),
        prompt: String::new(),
        prompt_tokens: 1,
        react: false,
        max_tokens: None,
        ignore_eos: false,
        stream: true,
        include_usage: false,
        offers_tools: false,
        tool_call: None,
    };
    let gen = textgen::Generated {
        tokens: vec![],
        finish_reason: "stop",
    };
    Job {
        backend,
        p,
        gen,
        api,
        arrived: Instant::now(),
    }
}

fn data(b: &[u8]) -> Value {
    let s = std::str::from_utf8(b).unwrap();
    let body = s
        .strip_prefix("data: ")
        .unwrap()
        .strip_suffix("\n\n")
        .unwrap();
    serde_json::from_str(body).unwrap()
}

impl Job {
    fn chunk(&self, head: &str, delta: Option<&str>, first: bool, finish: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_chunk(head, delta, first, finish, &mut out);
        out
    }
}

#[test]
fn hand_written_chunks_are_the_json_vllm_sends() {
    let chat = job(Api::Chat);
    let v = data(&chat.chunk(&chat.head("c1"), Some("a \"q\"\n"), true, None));
    assert_eq!(v["model"], "m\"x");
    assert_eq!(
        v["choices"][0],
        json!({"index": 0, "delta": {"role": "assistant", "content": "a \"q\"\n"}, "logprobs": null, "finish_reason": null})
    );
    let v = data(&chat.chunk(&chat.head("c1"), None, true, Some("stop")));
    assert_eq!(v["choices"][0]["delta"], json!({"role": "assistant"}));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let v = data(&{
        let j = job(Api::Completions);
        j.chunk(&j.head("c2"), Some("x"), false, Some("length"))
    });
    assert_eq!(v["object"], "text_completion");
    assert_eq!(
        v["choices"][0],
        json!({"index": 0, "text": "x", "logprobs": null, "finish_reason": "length", "stop_reason": null})
    );
}
