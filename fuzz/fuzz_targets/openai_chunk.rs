//! Differential: wherever the fast chunk scanner answers, serde must accept the same text and
//! read the same fields from it. The scanner may decline anything; it may never disagree.
#![no_main]

use duo_harness::protocol::chunk::{parse_with_scanner, parse_with_serde};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(fast) = parse_with_scanner(text) {
        let reference = parse_with_serde(text).expect("serde rejects what the scanner accepted");
        assert_eq!(fast, reference, "{text:?}");
    }
});
