//! Incremental Server-Sent Events decoding (WHATWG rules for `event:` / `data:` fields, `\n`,
//! `\r\n` or `\r` line ends, comments ignored). Used for vLLM/OpenAI streams and AIGW v4 streams.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// The longest line or event the decoders accept (bytes); past it the stream is oversize.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// Feeds bytes in as they arrive; returns the events completed by each push. Each byte is
/// scanned for a line end once, so a line that never ends costs linear time; a line or event
/// longer than [`MAX_LINE_BYTES`] is dropped and [`overlong`](Self::overlong) set.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// `buf[..scanned]` holds no line end (it was searched already).
    scanned: usize,
    /// A line or event passed [`MAX_LINE_BYTES`].
    overlong: bool,
    /// A line was not valid UTF-8 (decoded lossily).
    invalid_utf8: bool,
    /// The event's `event:` field so far (empty when none), reused from event to event.
    event: String,
    has_event: bool,
    /// The event's data lines so far, joined by `\n`, reused from event to event.
    data: String,
    data_lines: usize,
    has_fields: bool,
}

impl SseDecoder {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        self.push_each(bytes, |event, data| {
            out.push(SseEvent {
                event: event.map(str::to_owned),
                data: data.to_owned(),
            })
        });
        out
    }

    /// As [`push`](Self::push), handing each completed event (`event` field, data) to
    /// `dispatch` without allocating: this runs once per token under load.
    pub fn push_each(&mut self, bytes: &[u8], mut dispatch: impl FnMut(Option<&str>, &str)) {
        if self.overlong {
            return;
        }
        self.buf.extend_from_slice(bytes);
        // Lines are read in place and the consumed prefix dropped once.
        let mut buf = std::mem::take(&mut self.buf);
        let mut start = 0;
        let mut from = self.scanned;
        while let Some((end, next)) = Self::line_end(&buf[start..], from - start) {
            let bytes = &buf[start..start + end];
            // The fast validator first; the lossy one only for a line that is not UTF-8.
            let line = match std::str::from_utf8(bytes) {
                Ok(s) => std::borrow::Cow::Borrowed(s),
                Err(_) => {
                    self.invalid_utf8 = true;
                    String::from_utf8_lossy(bytes)
                }
            };
            self.field(&line, &mut dispatch);
            start += next;
            from = start;
        }
        buf.drain(..start);
        // A lone '\r' at the end is looked at again with the next byte.
        self.scanned = buf.len().saturating_sub(1);
        if buf.len() > MAX_LINE_BYTES || self.data.len() > MAX_LINE_BYTES {
            self.overlong = true;
            buf = Vec::new();
            self.data = String::new();
            self.scanned = 0;
        }
        self.buf = buf;
    }

    /// A line or event passed [`MAX_LINE_BYTES`]; decoding stopped there.
    pub fn overlong(&self) -> bool {
        self.overlong
    }

    /// Some line was not valid UTF-8.
    pub fn invalid_utf8(&self) -> bool {
        self.invalid_utf8
    }

    /// Bytes received but not yet part of a complete line (a truncated stream leaves some).
    pub fn pending(&self) -> usize {
        self.buf.len() + usize::from(self.has_fields)
    }

    /// The next line end in `buf`, searching from `from` (what lies before holds none).
    fn line_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
        let i = from + memchr::memchr2(b'\n', b'\r', &buf[from..])?;
        if buf[i] == b'\r' {
            // A lone '\r' at the end may be the first half of "\r\n": wait for the next byte.
            match buf.get(i + 1) {
                None => None,
                Some(b'\n') => Some((i, i + 2)),
                Some(_) => Some((i, i + 1)),
            }
        } else {
            Some((i, i + 1))
        }
    }

    fn field(&mut self, line: &str, dispatch: &mut impl FnMut(Option<&str>, &str)) {
        if line.is_empty() {
            if self.has_fields && self.data_lines > 0 {
                dispatch(self.has_event.then_some(&*self.event), &self.data);
            }
            self.event.clear();
            self.has_event = false;
            self.data.clear();
            self.data_lines = 0;
            self.has_fields = false;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (name, value) = line
            .split_once(':')
            .map_or((line, ""), |(n, v)| (n, v.strip_prefix(' ').unwrap_or(v)));
        self.has_fields = true;
        match name {
            "event" => {
                self.event.clear();
                self.event.push_str(value);
                self.has_event = true;
            }
            "data" => {
                if self.data_lines > 0 {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.data_lines += 1;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_split_crlf_events() {
        let mut d = SseDecoder::default();
        assert!(d.push(b"event: content_chunk\r\ndata: {\"a\"").is_empty());
        let ev = d.push(b": 1}\r\n\r");
        assert!(ev.is_empty());
        let ev = d.push(b"\n: ping\r\n\r\ndata: [DONE]\n\n");
        assert_eq!(ev.len(), 2);
        assert_eq!(
            ev[0],
            SseEvent {
                event: Some("content_chunk".into()),
                data: "{\"a\": 1}".into()
            }
        );
        assert_eq!(ev[1].data, "[DONE]");
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_line_that_never_ends_is_bounded() {
        let mut d = SseDecoder::default();
        let piece = vec![b'x'; 64 << 10];
        let mut pushes = 0;
        while !d.overlong() {
            assert!(d.push(&piece).is_empty());
            pushes += 1;
        }
        assert_eq!(pushes, MAX_LINE_BYTES / piece.len() + 1);
        assert!(
            d.push(b"\n\ndata: x\n\n").is_empty(),
            "nothing after the bound"
        );
        let mut d = SseDecoder::default();
        d.push(b"data: \xff\n\n");
        assert!(d.invalid_utf8());
    }
}
