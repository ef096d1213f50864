//! The harness's text rule for tokens, shared by the twin (whose every count it defines) and by
//! the measurement of real backends that send no usage and whose framing does not delimit
//! their deltas (the roughest estimate, marked as such). It is not any real model's tokenizer;
//! it is simple, documented and consistent, so every count can be recomputed from the text:
//!
//! * a token is optional leading whitespace followed by up to [`MAX_WORD`] word characters
//!   (alphanumeric or `_`), or optional leading whitespace followed by one other character;
//! * whitespace at the very end of a text is one token of its own;
//! * a prompt costs the sum of its messages' token counts plus [`PER_MESSAGE`] per message.
//!
//! Longer words split into several tokens, roughly as BPE vocabularies split identifiers.

/// The most word characters in one token.
pub const MAX_WORD: usize = 6;
/// Tokens charged per chat message for role and separators (as chat templates add).
pub const PER_MESSAGE: usize = 4;

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Splits `text` into tokens; concatenating them gives `text` back.
pub fn split(text: &str) -> Vec<&str> {
    Tokens { rest: text }.collect()
}

/// The tokens of a text, one at a time (counting needs no allocation).
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let len = ascii_token_len(self.rest.as_bytes()).unwrap_or_else(|| token_len(self.rest));
        let (tok, tail) = self.rest.split_at(len);
        self.rest = tail;
        Some(tok)
    }
}

/// The length of the token `rest` starts with (by the rules above).
fn token_len(rest: &str) -> usize {
    let ws = rest.len() - rest.trim_start().len();
    let after = &rest[ws..];
    let body = match after.chars().next() {
        None => 0,
        Some(c) if is_word(c) => after
            .char_indices()
            .take_while(|(_, c)| is_word(*c))
            .take(MAX_WORD)
            .last()
            .map(|(i, c)| i + c.len_utf8())
            .unwrap_or(0),
        Some(c) => c.len_utf8(),
    };
    ws + body
}

/// [`token_len`] by bytes, where every character it depends on is ASCII (the usual case, and
/// the driver asks once per streamed chunk); `None` sends the rest to the general rule.
fn ascii_token_len(b: &[u8]) -> Option<usize> {
    // ASCII's part of `char::is_whitespace`.
    let mut i = 0;
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')) {
        i += 1;
    }
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    match b.get(i) {
        None => Some(i),
        Some(c) if !c.is_ascii() => None,
        Some(c) if word(c) => {
            let mut j = i;
            while j - i < MAX_WORD && b.get(j).is_some_and(word) {
                j += 1;
            }
            // A non-ASCII letter next could still belong to the word.
            let undecided = j - i < MAX_WORD && b.get(j).is_some_and(|c| !c.is_ascii());
            (!undecided).then_some(j)
        }
        Some(_) => Some(i + 1),
    }
}

/// Number of tokens in `text`.
pub fn count(text: &str) -> usize {
    Tokens { rest: text }.count()
}

/// Whether `text` holds more than one token (checked per streamed chunk, so it stops early).
pub fn several(text: &str) -> bool {
    Tokens { rest: text }.nth(1).is_some()
}

/// Prompt tokens of a chat request: every message's content plus [`PER_MESSAGE`] each.
pub fn count_messages<'a>(contents: impl Iterator<Item = &'a str>) -> usize {
    contents.map(|c| count(c) + PER_MESSAGE).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_rule_agrees_with_the_general_one() {
        for text in [
            "def add(a, b):\n    return a + b\n",
            "  \t\x0b\x0cx",
            "abcdefghij_k",
            "abcdeé",
            "abcdefé",
            " \u{a0}x",
            "é",
            "   ",
            "__init__",
            "x\u{85}y",
        ] {
            let mut rest = text;
            while !rest.is_empty() {
                let general = token_len(rest);
                match ascii_token_len(rest.as_bytes()) {
                    Some(fast) => assert_eq!(fast, general, "{rest:?}"),
                    None => assert!(!rest.is_ascii(), "{rest:?}"),
                }
                rest = &rest[general..];
            }
        }
    }

    #[test]
    fn split_round_trips_and_counts() {
        let text = "def add(a, b):\n    return a + b\n";
        let toks = split(text);
        assert_eq!(toks.concat(), text);
        assert_eq!(toks[0], "def");
        assert_eq!(toks[1], " add");
        assert!(toks.contains(&"\n    return"));
        assert_eq!(*toks.last().unwrap(), "\n");
        assert_eq!(count("identifier_long"), 3);
        assert_eq!(count(""), 0);
        assert_eq!(
            count_messages(["a b", "c"].into_iter()),
            3 + 2 * PER_MESSAGE
        );
    }
}
