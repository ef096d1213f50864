//! Shared by the decoder targets: arbitrary bytes cut into network chunks at arbitrary points
//! (the first byte sets the chunk size), pushed through one framing's decoder, then finished.

use duo_harness::protocol::{Decoder, Framing};

pub fn decode_in_chunks(framing: Framing, data: &[u8]) {
    let Some((&size, body)) = data.split_first() else {
        return;
    };
    let mut d = Decoder::new(framing);
    for chunk in body.chunks(usize::from(size).max(1)) {
        let _ = d.push(chunk);
    }
    let _ = d.finish();
}
