//! The twin's tokenizer. It is not any real model's tokenizer; it is simple, documented and
//! consistent, so that every count the twin reports can be recomputed from the text:
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
        let rest = self.rest;
        if rest.is_empty() {
            return None;
        }
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
        let (tok, tail) = rest.split_at(ws + body);
        self.rest = tail;
        Some(tok)
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
