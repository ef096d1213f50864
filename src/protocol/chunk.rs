//! One OpenAI streaming chunk (chat `delta.content` or completions `text`, also the shape of an
//! AIGW v4 `content_chunk`): the model, the first choice's text and the usage, nothing else.
//!
//! In: the `data:` of one SSE event. Out: [`ChunkFields`], or an error when it is not a chunk.
//! This runs once per token under load, so a single-pass scanner reads the usual chunk without
//! building anything; whatever it is not sure of (escaped keys, `\u` escapes outside the text,
//! duplicate fields, non-object input, deep nesting) goes to the serde path, which stays the
//! definition: the scanner either agrees with it or declines. A differential fuzz target
//! (`fuzz/fuzz_targets/openai_chunk.rs`) and the tests below hold it to that.

use std::borrow::Cow;

/// What a chunk carried.
#[derive(Debug, PartialEq, Eq)]
pub struct ChunkFields<'a> {
    pub model: Option<Cow<'a, str>>,
    /// `choices[0].delta.content`, else `choices[0].text`.
    pub text: Option<Cow<'a, str>>,
    /// `(prompt_tokens, completion_tokens)`.
    pub usage: Option<(u64, u64)>,
    /// `choices[0].finish_reason`, when present and not null: the model's answer is complete.
    /// A value that is no string reads [`NOT_A_STRING`].
    pub finish_reason: Option<Cow<'a, str>>,
}

/// A choice's text and finish reason.
type Choice<'a> = (Option<Cow<'a, str>>, Option<Cow<'a, str>>);

/// What a `finish_reason` that is not a string (a number, a list…) is recorded as.
pub const NOT_A_STRING: &str = "(not a string)";

impl ChunkFields<'_> {
    /// The model's answer is complete.
    pub fn finished(&self) -> bool {
        self.finish_reason.is_some()
    }
}

/// Parses one chunk: the scanner where it is sure, serde otherwise.
pub fn parse(data: &str) -> Result<ChunkFields<'_>, serde_json::Error> {
    match Scanner::new(data).chunk() {
        Some(fields) => Ok(fields),
        None => parse_with_serde(data),
    }
}

/// The reference: typed serde structs, unknown fields skipped.
pub fn parse_with_serde(data: &str) -> Result<ChunkFields<'_>, serde_json::Error> {
    let mut c: SerdeChunk = serde_json::from_str(data)?;
    let finish_reason = c
        .choice
        .as_mut()
        .and_then(|c| c.finish_reason.take())
        .map(|r| match r {
            serde_json::Value::String(s) => Cow::Owned(s),
            _ => Cow::Borrowed(NOT_A_STRING),
        });
    let text = c
        .choice
        .and_then(|c| c.delta.and_then(|d| d.content).or(c.text));
    Ok(ChunkFields {
        model: c.model,
        text,
        usage: c.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        finish_reason,
    })
}

/// The fast path alone (for the differential tests): `None` where it declines.
pub fn parse_with_scanner(data: &str) -> Option<ChunkFields<'_>> {
    Scanner::new(data).chunk()
}

/// Bytes that end a run of plain string content: the quote, the backslash, control characters.
const STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Deeper than this, the scanner declines (serde's own limit is 128).
const MAX_DEPTH: usize = 64;

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn ws(&mut self) {
        let bytes = self.bytes();
        let mut i = self.pos;
        while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        self.pos = i;
    }

    /// Skips whitespace and consumes `b`.
    fn eat(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.peek()? == b).then(|| self.pos += 1)
    }

    /// The whole chunk: one object and nothing after it but whitespace.
    fn chunk(mut self) -> Option<ChunkFields<'a>> {
        let mut fields = ChunkFields {
            model: None,
            text: None,
            usage: None,
            finish_reason: None,
        };
        let (mut model, mut choices, mut usage) = (false, false, false);
        self.object(|s, key| {
            match key {
                "model" => {
                    (!std::mem::replace(&mut model, true)).then_some(())?;
                    fields.model = s.nullable_string()?;
                }
                "choices" => {
                    (!std::mem::replace(&mut choices, true)).then_some(())?;
                    (fields.text, fields.finish_reason) = s.choices()?;
                }
                "usage" => {
                    (!std::mem::replace(&mut usage, true)).then_some(())?;
                    fields.usage = s.usage()?;
                }
                _ => s.skip(0)?,
            }
            Some(())
        })?;
        self.ws();
        (self.pos == self.text.len()).then_some(fields)
    }

    /// `open`, comma-separated items each read by `item` (called with the scanner at it), then
    /// `close`.
    fn list(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        self.ws();
        if self.peek()? == close {
            self.pos += 1;
            return Some(());
        }
        loop {
            self.ws();
            item(self)?;
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                c if c == close => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An object, calling `member` on each key with the scanner at its value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.list(b'{', b'}', |s| {
            let key = s.plain_string()?;
            s.eat(b':')?;
            s.ws();
            member(s, key)
        })
    }

    /// `choices`: the text and the finish of the first element, the others skipped.
    fn choices(&mut self) -> Option<Choice<'a>> {
        let (mut choice, mut first) = ((None, None), true);
        self.list(b'[', b']', |s| match std::mem::take(&mut first) {
            true => s.choice().map(|c| choice = c),
            false => s.skip(1),
        })?;
        Some(choice)
    }

    /// One choice: `delta.content`, else `text`; and its `finish_reason`.
    fn choice(&mut self) -> Option<Choice<'a>> {
        let (mut delta, mut text, mut finish) = (None, None, None);
        let (mut seen_delta, mut seen_text, mut seen_finish) = (false, false, false);
        self.object(|s, key| {
            match key {
                "finish_reason" => {
                    (!std::mem::replace(&mut seen_finish, true)).then_some(())?;
                    finish = match s.peek()? {
                        b'"' | b'n' => s.nullable_string()?,
                        _ => {
                            s.skip(2)?;
                            Some(Cow::Borrowed(NOT_A_STRING))
                        }
                    };
                }
                "delta" => {
                    (!std::mem::replace(&mut seen_delta, true)).then_some(())?;
                    delta = s.delta()?;
                }
                "text" => {
                    (!std::mem::replace(&mut seen_text, true)).then_some(())?;
                    text = s.nullable_string()?;
                }
                _ => s.skip(1)?,
            }
            Some(())
        })?;
        Some((delta.or(text), finish))
    }

    /// `delta`: null, or an object whose `content` is a string or null.
    fn delta(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null() {
            return Some(None);
        }
        let (mut content, mut seen) = (None, false);
        self.object(|s, key| {
            if key == "content" {
                (!std::mem::replace(&mut seen, true)).then_some(())?;
                content = s.nullable_string()?;
            } else {
                s.skip(2)?;
            }
            Some(())
        })?;
        Some(content)
    }

    /// `usage`: null, or an object with unsigned integer token counts (missing ones are 0).
    fn usage(&mut self) -> Option<Option<(u64, u64)>> {
        if self.null() {
            return Some(None);
        }
        let (mut prompt, mut completion) = (None, None);
        self.object(|s, key| {
            let slot = match key {
                "prompt_tokens" => &mut prompt,
                "completion_tokens" => &mut completion,
                _ => return s.skip(1),
            };
            slot.is_none().then_some(())?;
            *slot = Some(s.unsigned()?);
            Some(())
        })?;
        Some(Some((prompt.unwrap_or(0), completion.unwrap_or(0))))
    }

    fn null(&mut self) -> bool {
        let hit = self.bytes()[self.pos..].starts_with(b"null");
        if hit {
            self.pos += 4;
        }
        hit
    }

    /// A string or `null`; escapes are decoded by serde_json (only the text has them, often).
    fn nullable_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null() {
            return Some(None);
        }
        let start = self.pos;
        let escaped = self.string()?;
        let raw = &self.text[start..self.pos];
        Some(Some(if escaped {
            Cow::Owned(serde_json::from_str::<String>(raw).ok()?)
        } else {
            Cow::Borrowed(&raw[1..raw.len() - 1])
        }))
    }

    /// A string without escapes (keys).
    fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.pos;
        (!self.string()?).then(|| &self.text[start + 1..self.pos - 1])
    }

    /// Consumes a string; returns whether it held escapes. Declines `\u` escapes and raw
    /// control characters, which serde judges (surrogates, errors).
    fn string(&mut self) -> Option<bool> {
        let bytes = self.bytes();
        let mut i = self.pos;
        (*bytes.get(i)? == b'"').then_some(())?;
        i += 1;
        let mut escaped = false;
        loop {
            // A table lookup per byte: these strings are short, shorter than memchr's set-up
            // pays for (eight bytes at a time did no better either).
            while bytes.get(i).is_some_and(|&b| !STRING_STOP[usize::from(b)]) {
                i += 1;
            }
            match *bytes.get(i)? {
                b'"' => break,
                b'\\' => i += 1,
                _ => return None,
            }
            match *bytes.get(i)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 1,
                _ => return None,
            }
            escaped = true;
        }
        self.pos = i + 1;
        Some(escaped)
    }

    /// An unsigned integer that fits in u64.
    fn unsigned(&mut self) -> Option<u64> {
        let start = self.pos;
        self.number()?;
        self.text[start..self.pos].parse().ok()
    }

    /// A number, by JSON's grammar, and one serde_json can hold: one whose exponent (or length)
    /// takes it past f64's range is declined, as serde_json refuses it ("number out of range").
    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        let exponent = self.number_syntax()?;
        let text = &self.text[start..self.pos];
        // Under 300 digits and no exponent, a number is always finite: no parse needed.
        let may_overflow = exponent || text.len() > 300;
        let finite = !may_overflow || text.parse::<f64>().is_ok_and(f64::is_finite);
        finite.then_some(())
    }

    /// The number's grammar; whether it had an exponent.
    fn number_syntax(&mut self) -> Option<bool> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.at_least_one_digit()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.at_least_one_digit()?;
            return Some(true);
        }
        Some(false)
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn at_least_one_digit(&mut self) -> Option<()> {
        self.peek()?.is_ascii_digit().then_some(())?;
        self.digits();
        Some(())
    }

    /// Skips any value, validating it as serde_json would.
    fn skip(&mut self, depth: usize) -> Option<()> {
        (depth < MAX_DEPTH).then_some(())?;
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|s, _| s.skip(depth + 1)),
            b'[' => self.array(depth),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.list(b'[', b']', |s| s.skip(depth + 1))
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes()[self.pos..]
            .starts_with(word)
            .then(|| self.pos += word.len())
    }
}

#[derive(serde::Deserialize)]
struct SerdeChunk<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "choices", deserialize_with = "first_choice")]
    choice: Option<SerdeChoice<'a>>,
    #[serde(default)]
    usage: Option<SerdeUsage>,
}

/// The first element of `choices`, the rest skipped without building a list.
fn first_choice<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SerdeChoice<'a>>, D::Error> {
    struct First<'a>(std::marker::PhantomData<&'a ()>);
    impl<'de: 'a, 'a> serde::de::Visitor<'de> for First<'a> {
        type Value = Option<SerdeChoice<'a>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of choices")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let first = seq.next_element()?;
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }
    d.deserialize_seq(First(std::marker::PhantomData))
}

#[derive(serde::Deserialize)]
struct SerdeChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<SerdeDelta<'a>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    finish_reason: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct SerdeDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct SerdeUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scanner reads these itself, and reads them as serde does.
    #[test]
    fn the_scanner_agrees_with_serde_on_real_chunks() {
        for data in [
            r#"{"id":"cmpl-1","object":"text_completion","created":1795565468,"model":"codestral-22b","choices":[{"index":0,"text":" tok","logprobs":null,"finish_reason":null,"stop_reason":null}]}"#,
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"\n    x = \"é\"\t"},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"c","model":"m","choices":[],"usage":{"prompt_tokens":12,"total_tokens":44,"completion_tokens":32}}"#,
            r#" { "choices" : [ { "delta" : null , "text" : "a" } , {"x": [1, -2.5e+3, true, false, null, {}]} ] , "usage" : null } "#,
            r#"{"choices":[{"delta":{"content":null},"text":"fallback"}],"model":null}"#,
            r#"{"metadata":{"a":{"b":[[["deep"]]]}},"choices":[{"text":"x\/y"}]}"#,
        ] {
            let fast = parse_with_scanner(data).unwrap_or_else(|| panic!("declined {data}"));
            assert_eq!(fast, parse_with_serde(data).unwrap(), "{data}");
        }
    }

    /// What the scanner is unsure of, it leaves to serde, which accepts or rejects it.
    #[test]
    fn the_scanner_declines_what_serde_decides() {
        for data in [
            r#"{"model":"a","model":"b"}"#,
            r#"{"mod\u0065l":"a"}"#,
            r#"{"choices":[{"text":"\ud83d\ude00"}]}"#,
            r#"{"usage":{"prompt_tokens":1.5}}"#,
            r#"{"choices":null}"#,
            r#"[null]"#,
            r#"{"x":tru}"#,
            r#"{"x":01}"#,
            r#"{"x":"a	b"}"#,
            r#"{"x":1} x"#,
            r#"{"x":1,}"#,
            // Out of f64's range: serde refuses it where it reads the value (proptest found it).
            r#"{"choices":[{"finish_reason":[null,-1e2442007680299]}]}"#,
        ] {
            assert_eq!(parse_with_scanner(data), None, "{data}");
        }
        assert_eq!(
            parse(r#"{"choices":[{"text":"\ud83d\ude00"}]}"#)
                .unwrap()
                .text
                .unwrap(),
            "😀"
        );
        assert!(parse(r#"{"model":"a","model":"b"}"#).is_err());
        assert!(parse(r#"{"x":tru}"#).is_err());
    }
}
