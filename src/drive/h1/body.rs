//! The body framings of an HTTP/1.1 answer (RFC 9112 §6–7): chunked, a known length, or until
//! the server closes. Decoded in place from the connection's buffer: each piece of data is
//! handed on as a slice of it, never copied, and a chunk split across reads is handed on in as
//! many pieces as it arrived in (as hyper's frames are).
//!
//! In: the bytes buffered so far. Out: the pieces of data, and how many bytes were consumed.

/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 << 10;

/// How the answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// `transfer-encoding: chunked`.
    Chunked,
    /// `content-length`.
    Fixed(u64),
    /// Neither: the body ends when the server closes the connection.
    UntilClose,
    /// No body (`HEAD`, 204, 304).
    Empty,
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Chunked(Chunk),
    Fixed(u64),
    UntilClose,
    Done,
}

/// The body broke its framing, or the connection ended inside it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("bad chunked framing: {0}")]
    Chunked(&'static str),
    #[error("the connection closed {0}")]
    Closed(String),
}

/// One answer's body being decoded.
#[derive(Debug)]
pub struct Body {
    state: State,
}

impl Body {
    pub fn new(length: Length) -> Self {
        let state = match length {
            Length::Chunked => State::Chunked(Chunk::Size),
            Length::Fixed(0) | Length::Empty => State::Done,
            Length::Fixed(n) => State::Fixed(n),
            Length::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    /// The whole body has been read.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `buf`, handing each piece of data to `each`; returns how many bytes it consumed
    /// (the rest is an incomplete line, kept for the next read, or bytes after the body).
    pub fn decode(&mut self, buf: &[u8], each: &mut impl FnMut(&[u8])) -> Result<usize, BodyError> {
        match self.state {
            State::Done => Ok(0),
            State::UntilClose => {
                if !buf.is_empty() {
                    each(buf);
                }
                Ok(buf.len())
            }
            State::Fixed(left) => {
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                if n > 0 {
                    each(&buf[..n]);
                }
                self.state = match left - n as u64 {
                    0 => State::Done,
                    rest => State::Fixed(rest),
                };
                Ok(n)
            }
            State::Chunked(c) => self.chunked(c, buf, each),
        }
    }

    /// The connection ended: fine only for a body delimited by the close (or already whole).
    pub fn eof(&mut self) -> Result<(), BodyError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            State::Fixed(left) => Err(BodyError::Closed(format!(
                "{left} bytes before the end its content-length announced"
            ))),
            State::Chunked(_) => Err(BodyError::Closed("before the last chunk".into())),
        }
    }

    fn chunked(
        &mut self,
        mut at: Chunk,
        buf: &[u8],
        each: &mut impl FnMut(&[u8]),
    ) -> Result<usize, BodyError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            let (used, next) = match at {
                Chunk::Size => match line(rest)? {
                    None => break,
                    Some((len, text)) => (len, chunk_size(text)?),
                },
                Chunk::Data(left) => {
                    let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    if n == 0 {
                        break;
                    }
                    each(&rest[..n]);
                    let next = match left - n as u64 {
                        0 => Chunk::DataEnd,
                        more => Chunk::Data(more),
                    };
                    (n, Some(next))
                }
                Chunk::DataEnd => match rest {
                    [b'\r', b'\n', ..] => (2, Some(Chunk::Size)),
                    [] | [b'\r'] => break,
                    _ => return Err(BodyError::Chunked("a chunk's data is not followed by CRLF")),
                },
                Chunk::Trailers => match line(rest)? {
                    None => break,
                    Some((len, text)) => (len, (!text.is_empty()).then_some(Chunk::Trailers)),
                },
            };
            pos += used;
            match next {
                Some(c) => at = c,
                None => {
                    self.state = State::Done;
                    return Ok(pos);
                }
            }
        }
        self.state = State::Chunked(at);
        Ok(pos)
    }
}

/// The next CRLF-ended line of `buf`: its length with the CRLF, and its text without.
fn line(buf: &[u8]) -> Result<Option<(usize, &[u8])>, BodyError> {
    let Some(lf) = memchr::memchr(b'\n', buf) else {
        return match buf.len() > MAX_LINE {
            true => Err(BodyError::Chunked(
                "a chunk-size or trailer line passed 8 KiB",
            )),
            false => Ok(None),
        };
    };
    match lf.checked_sub(1).map(|cr| buf[cr]) {
        Some(b'\r') => Ok(Some((lf + 1, &buf[..lf - 1]))),
        _ => Err(BodyError::Chunked("a line ends in LF without CR")),
    }
}

/// A chunk-size line's size (hex, then optional whitespace and extensions, which are ignored):
/// the next state, or `Trailers` for the last chunk.
fn chunk_size(text: &[u8]) -> Result<Option<Chunk>, BodyError> {
    let digits = text
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(text.len());
    let after = &text[digits..];
    let ext_ok = after
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .is_none_or(|i| after[i] == b';');
    if digits == 0 || digits > 16 || !ext_ok {
        return Err(BodyError::Chunked("a chunk-size line is not a hex size"));
    }
    let hex = std::str::from_utf8(&text[..digits]).unwrap_or_default();
    let size = u64::from_str_radix(hex, 16)
        .map_err(|_| BodyError::Chunked("a chunk-size line is not a hex size"))?;
    Ok(Some(match size {
        0 => Chunk::Trailers,
        n => Chunk::Data(n),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in reads of the given sizes (the buffer keeps what was not consumed, as the
    /// connection's does): the pieces handed on, and whether the body ended.
    fn feed(
        length: Length,
        wire: &[u8],
        reads: &[usize],
    ) -> Result<(Vec<Vec<u8>>, bool), BodyError> {
        let mut body = Body::new(length);
        let (mut buf, mut pieces, mut at) = (Vec::new(), Vec::new(), 0);
        for &n in reads.iter().chain(std::iter::repeat(&usize::MAX)) {
            if at >= wire.len() || body.done() {
                break;
            }
            let end = wire.len().min(at.saturating_add(n));
            buf.extend_from_slice(&wire[at..end]);
            at = end;
            let used = body.decode(&buf, &mut |p: &[u8]| pieces.push(p.to_vec()))?;
            buf.drain(..used);
        }
        Ok((pieces, body.done()))
    }

    const WIRE: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";

    #[test]
    fn chunks_in_one_read_are_handed_on_one_piece_each() {
        let (pieces, done) = feed(Length::Chunked, WIRE, &[WIRE.len()]).unwrap();
        assert_eq!(pieces, [b"hello".to_vec(), b", world".to_vec()]);
        assert!(done);
    }

    /// Whatever the read boundaries, the data is the same and nothing is handed on empty.
    #[test]
    fn any_split_of_the_wire_gives_the_same_data() {
        for a in 1..WIRE.len() {
            for b in 1..8 {
                let (pieces, done) = feed(Length::Chunked, WIRE, &[a, b]).unwrap();
                assert!(pieces.iter().all(|p| !p.is_empty()), "{a} {b}");
                assert_eq!(pieces.concat(), b"hello, world", "{a} {b}");
                assert!(done, "{a} {b}");
            }
        }
    }

    #[test]
    fn bad_framing_is_named() {
        let bad = |wire: &[u8]| feed(Length::Chunked, wire, &[wire.len()]).unwrap_err();
        assert_eq!(
            bad(b"zz\r\n"),
            BodyError::Chunked("a chunk-size line is not a hex size")
        );
        assert_eq!(
            bad(b"5\nhello"),
            BodyError::Chunked("a line ends in LF without CR")
        );
        assert_eq!(
            bad(b"2\r\nhixx"),
            BodyError::Chunked("a chunk's data is not followed by CRLF")
        );
        assert_eq!(
            bad(b"11111111111111111\r\n"),
            BodyError::Chunked("a chunk-size line is not a hex size")
        );
        assert!(matches!(bad(&[b'1'; MAX_LINE + 1]), BodyError::Chunked(_)));
    }

    #[test]
    fn a_fixed_length_ends_at_its_length_and_leaves_the_rest() {
        let mut body = Body::new(Length::Fixed(5));
        let mut got = Vec::new();
        let used = body.decode(b"helloHTTP/1.1", &mut |p: &[u8]| got.extend_from_slice(p));
        assert_eq!(
            (used, got.as_slice(), body.done()),
            (Ok(5), &b"hello"[..], true)
        );
    }

    #[test]
    fn the_close_ends_only_a_body_it_delimits() {
        let mut until = Body::new(Length::UntilClose);
        assert_eq!(until.eof(), Ok(()));
        assert!(until.done());
        let mut fixed = Body::new(Length::Fixed(9));
        fixed.decode(b"four", &mut |_: &[u8]| {}).unwrap();
        assert!(fixed
            .eof()
            .unwrap_err()
            .to_string()
            .contains("5 bytes before the end"));
        let mut chunked = Body::new(Length::Chunked);
        chunked.decode(b"4\r\nfo", &mut |_: &[u8]| {}).unwrap();
        assert_eq!(
            chunked.eof(),
            Err(BodyError::Closed("before the last chunk".into()))
        );
        assert!(Body::new(Length::Empty).done() && Body::new(Length::Fixed(0)).done());
    }
}
