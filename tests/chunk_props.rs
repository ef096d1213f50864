//! The fast OpenAI chunk scanner against serde, its definition, on generated chunks: fields in
//! any order, any whitespace, escaped text, nested unknown fields, then cut or corrupted. The
//! scanner may decline anything; where it answers, serde must agree. Unbroken chunks without
//! `\u` escapes it must read itself (else the fast path would be dead code).
//! `fuzz/fuzz_targets/openai_chunk.rs` does the same on arbitrary text.

use duo_harness::protocol::chunk::{parse_with_scanner, parse_with_serde};
use proptest::prelude::*;
use serde_json::{json, Value};

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ a-z0-9_]{0,12}",
        "\\PC{0,8}",
        Just("\n    x = \"é\"\t\\".to_owned())
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        string().prop_map(Value::from),
    ]
}

fn nested() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn choice() -> impl Strategy<Value = Value> {
    (string(), any::<bool>(), nested()).prop_map(|(text, chat, extra)| {
        if chat {
            json!({"index": 0, "delta": {"role": "assistant", "content": text}, "logprobs": extra})
        } else {
            json!({"index": 0, "text": text, "finish_reason": extra})
        }
    })
}

/// The members of one chunk, in the order they will be written.
fn members() -> impl Strategy<Value = Vec<(String, Value)>> {
    let model = prop_oneof![Just(Value::Null), string().prop_map(Value::from)];
    let usage = prop_oneof![
        Just(Value::Null),
        (any::<u32>(), any::<u32>()).prop_map(
            |(p, c)| json!({"prompt_tokens": p, "total_tokens": 1, "completion_tokens": c})
        ),
    ];
    (
        model,
        prop::collection::vec(choice(), 0..3),
        usage,
        nested(),
        any::<u32>(),
    )
        .prop_map(|(model, choices, usage, extra, created)| {
            vec![
                ("id".to_owned(), Value::from("cmpl-1")),
                ("created".to_owned(), Value::from(created)),
                ("model".to_owned(), model),
                ("choices".to_owned(), Value::from(choices)),
                ("usage".to_owned(), usage),
                ("metadata".to_owned(), extra),
            ]
        })
        .prop_shuffle()
}

fn write(members: &[(String, Value)], space: &str) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{k:?}{space}:{space}{v}"))
        .collect();
    format!(
        "{space}{{{space}{}{space}}}{space}",
        body.join(&format!(",{space}"))
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_scanner_reads_whole_chunks_as_serde_does(
        members in members(),
        space in prop_oneof![Just(""), Just(" "), Just("\n\t ")],
    ) {
        let text = write(&members, space);
        let reference = parse_with_serde(&text).expect("a well-formed chunk");
        match parse_with_scanner(&text) {
            Some(fast) => prop_assert_eq!(fast, reference),
            None => prop_assert!(text.contains("\\u"), "declined {}", text),
        }
    }

    #[test]
    fn the_scanner_never_accepts_what_serde_reads_otherwise(
        members in members(),
        cut in any::<prop::sample::Index>(),
        byte in prop::sample::select(b"{}[],:\"\\ 0-etn.".to_vec()),
        replace in any::<bool>(),
    ) {
        let text = write(&members, "");
        let chars: Vec<char> = text.chars().collect();
        let at = cut.index(chars.len());
        let broken: String = if replace {
            chars.iter().enumerate().map(|(i, &c)| if i == at { char::from(byte) } else { c }).collect()
        } else {
            chars[..at].iter().collect()
        };
        if let Some(fast) = parse_with_scanner(&broken) {
            let reference = parse_with_serde(&broken);
            prop_assert!(reference.is_ok(), "serde rejects {}", broken);
            prop_assert_eq!(fast, reference.unwrap());
        }
    }
}
