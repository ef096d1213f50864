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
