use super::*;

#[test]
fn detects_framings() {
    assert_eq!(
        Framing::detect("/v4/code/suggestions", "text/event-stream; charset=utf-8"),
        Framing::V4Sse
    );
    assert_eq!(
        Framing::detect("/v2/code/completions", "text/event-stream; charset=utf-8"),
        Framing::RawText
    );
    assert_eq!(
        Framing::detect("/v2/prompts/chat/explain_code", "text/event-stream"),
        Framing::PromptsNdjson
    );
    assert_eq!(
        Framing::detect("/v2/chat/agent", "application/x-ndjson; charset=utf-8"),
        Framing::ChatNdjson
    );
    assert_eq!(
        Framing::detect("/v1/chat/completions", "text/event-stream"),
        Framing::OpenAiSse
    );
    assert_eq!(Framing::detect("/x", "text/plain"), Framing::Text);
}

#[test]
fn raw_text_keeps_split_utf8_together() {
    let mut d = Decoder::new(Framing::RawText);
    let bytes = "é".as_bytes();
    assert!(d.push(&bytes[..1]).is_empty());
    assert_eq!(d.push(&bytes[1..]), vec![Event::Content("é".into())]);
    assert!(d.finish().1.is_ok());
}

#[test]
fn garbage_is_a_framing_error() {
    let mut d = Decoder::new(Framing::ChatNdjson);
    d.push(b"{\"type\": \"final_answer_delta\", \"data\": {\"text\": \"a\"}}\nnot json\n");
    assert!(d.finish().1.unwrap_err().message().contains("not JSON"));
    let mut d = Decoder::new(Framing::OpenAiSse);
    d.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n");
    assert!(d.finish().1.unwrap_err().message().contains("[DONE]"));
}

#[test]
fn completion_markers_and_in_band_errors() {
    let chunk = |fin: &str| {
        format!("data: {{\"choices\":[{{\"text\":\"x\",\"finish_reason\":{fin}}}]}}\n\n")
    };
    let mut d = Decoder::new(Framing::OpenAiSse);
    d.push(chunk("null").as_bytes());
    d.push(b"data: [DONE]\n\n");
    assert!(!d.complete());
    assert!(matches!(d.finish().1, Err(Breach::Truncated(_))));
    let mut d = Decoder::new(Framing::OpenAiSse);
    d.push(chunk("\"length\"").as_bytes());
    d.push(b"data: [DONE]\n\n");
    assert!(d.complete());
    assert_eq!(d.finish().1, Ok(()));
    let mut d = Decoder::new(Framing::OpenAiSse);
    let ev =
        d.push(b"data: {\"error\": {\"object\": \"error\", \"message\": \"out of KV cache\"}}\n\n");
    assert_eq!(ev, vec![Event::Error("out of KV cache".into())]);
    let mut d = Decoder::new(Framing::ChatNdjson);
    d.push(b"{\"type\": \"final_answer_delta\", \"data\": {\"text\": \"a\", \"finish_reason\": null}}\n");
    assert!(matches!(d.finish().1, Err(Breach::Truncated(_))));
    let mut d = Decoder::new(Framing::PromptsNdjson);
    d.push(b"{\"content\": \"a\"}\n{\"content\": \"\", \"usage\": {\"m\": {\"input_tokens\": 1, \"output_tokens\": 1}}}\n");
    assert!(d.complete());
}

#[test]
fn an_endless_ndjson_line_is_oversize_in_linear_time() {
    let mut d = Decoder::new(Framing::ChatNdjson);
    let piece = vec![b'x'; 64 << 10];
    while !d.stopped() {
        d.push(&piece);
    }
    assert!(matches!(d.finish().1, Err(Breach::Oversize(_))));
}

/// How an answer ended, read once per answer from the event that ended it, in every framing that
/// says so: an OpenAI stream's finishing chunk, chat's finish or action, a whole JSON answer.
#[test]
fn finish_reasons_are_read_where_each_framing_carries_them() {
    let finish = |framing: Framing, body: &[u8]| {
        let mut d = Decoder::new(framing);
        let mut events = d.push(body);
        events.extend(d.finish().0);
        events.into_iter().find_map(|e| match e {
            Event::Finish(f) => Some((f.reason, f.model)),
            _ => None,
        })
    };
    let sse = b"data: {\"model\":\"m\",\"choices\":[{\"text\":\"a\",\"finish_reason\":null}]}\n\n\
        data: {\"model\":\"m\",\"choices\":[{\"text\":\"b\",\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n";
    assert_eq!(
        finish(Framing::OpenAiSse, sse),
        Some((Some("length".into()), Some("m".into())))
    );
    let action = b"{\"type\": \"action\", \"data\": {\"tool\": \"x\"}}\n";
    assert_eq!(
        finish(Framing::ChatNdjson, action).and_then(|f| f.0),
        Some("tool_calls".into())
    );
    let json =
        br#"{"model":"served","choices":[{"message":{"content":"x"},"finish_reason":"stop"}]}"#;
    assert_eq!(
        finish(Framing::Json, json),
        Some((Some("stop".into()), Some("served".into())))
    );
    let odd =
        b"{\"type\": \"final_answer_delta\", \"data\": {\"text\": \"a\", \"finish_reason\": 7}}\n";
    assert_eq!(
        finish(Framing::ChatNdjson, odd)
            .and_then(|f| f.0)
            .as_deref(),
        Some(chunk::NOT_A_STRING)
    );
}
