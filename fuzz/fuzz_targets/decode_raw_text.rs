//! The raw_text stream decoder on arbitrary bytes in arbitrary chunks: it must never panic or hang.
#![no_main]

#[path = "chunked.rs"]
mod chunked;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chunked::decode_in_chunks(duo_harness::protocol::Framing::RawText, data)
});
