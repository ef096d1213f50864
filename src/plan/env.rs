//! `${NAME}` and `${NAME:-default}` in a scenario's text, expanded from the environment before
//! it is parsed. An environment value is always one scalar value, never structure.
//!
//! The grammar:
//! - `${NAME}`: the variable's value; unset is an error (every unset name is reported at once,
//!   with its lines). `NAME` is letters, digits and `_`.
//! - `${NAME:-default}`: the value when set and not empty (as in a POSIX shell), else the
//!   default, which may hold references of its own (`${A:-${B}/x}`) and braces.
//! - `$${` is a literal `${`, never expanded (what `init` writes for a `${` the instance sent).
//! - Where the reference stands decides how the value is written:
//!   - in a `"…"` or `"""…"""` string: escaped for it (quotes, backslashes, newlines and every
//!     control character), so the value stays inside the string;
//!   - in a `'…'` or `'''…'''` string, which has no escapes: a value with a `'` or a control
//!     character is refused;
//!   - outside quotes (`rate = ${RPS:-5}`): the value must be one number, boolean or date;
//!     anything else (a newline, a `=`, a quote...) is refused, never spliced in;
//!   - in a comment (from `#` outside a string to the end of the line): nothing is expanded,
//!     and an unset variable there is no error.

use std::collections::BTreeMap;

/// Where in the TOML text a reference stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Bare,
    Comment,
    Basic,
    MultiBasic,
    Literal,
    MultiLiteral,
}

/// What went wrong, gathered over the whole text.
#[derive(Default)]
struct Problems {
    unset: BTreeMap<String, Vec<usize>>,
    refused: Vec<String>,
}

/// Expands every reference in `text`; see the module doc for the grammar.
pub fn expand(text: &str) -> Result<String, String> {
    let mut problems = Problems::default();
    let out = scan(text, Place::Bare, 1, &mut problems);
    report(problems).map(|()| out)
}

/// `text` expanded, starting at `place` on line `line` (a default's text is scanned where its
/// reference stands).
fn scan(text: &str, mut place: Place, mut line: usize, p: &mut Problems) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let taken = step(rest, &mut place, line, &mut out, p);
        line += rest[..taken].matches('\n').count();
        rest = &rest[taken..];
    }
    out
}

/// One step of the scan at the start of `rest`: copies or expands, moves `place`, returns the
/// bytes consumed (at least one).
fn step(rest: &str, place: &mut Place, line: usize, out: &mut String, p: &mut Problems) -> usize {
    use Place::*;
    let starts = |s: &str| rest.starts_with(s);
    if *place != Comment {
        if starts("$${") {
            out.push_str("${");
            return 3;
        }
        if starts("${") {
            if let Some(taken) = reference(rest, *place, line, out, p) {
                return taken;
            }
        }
    }
    let (next, len) = match (*place, rest.as_bytes()[0]) {
        (Bare, b'#') => (Comment, 1),
        (Bare, b'"') if starts("\"\"\"") => (MultiBasic, 3),
        (Bare, b'"') => (Basic, 1),
        (Bare, b'\'') if starts("'''") => (MultiLiteral, 3),
        (Bare, b'\'') => (Literal, 1),
        (Basic | MultiBasic, b'\\') => (
            *place,
            1 + rest[1..].chars().next().map_or(0, char::len_utf8),
        ),
        (MultiBasic, b'"') if starts("\"\"\"") => (Bare, 3),
        (MultiLiteral, b'\'') if starts("'''") => (Bare, 3),
        (Basic, b'"') | (Literal, b'\'') => (Bare, 1),
        (Comment | Basic | Literal, b'\n') => (Bare, 1),
        (p, _) => (p, rest.chars().next().map_or(1, char::len_utf8)),
    };
    out.push_str(&rest[..len]);
    *place = next;
    len
}

/// The index of the `}` closing a reference whose `${` ends just before `s`.
fn closing(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            b'\n' => return None,
            _ => {}
        }
    }
    None
}

/// Expands the reference at the start of `rest` into `out`; `None` when it is not one (left as
/// it is). Returns the bytes consumed.
fn reference(
    rest: &str,
    place: Place,
    line: usize,
    out: &mut String,
    p: &mut Problems,
) -> Option<usize> {
    let end = closing(&rest[2..])?;
    let inner = &rest[2..2 + end];
    let (name, default) = match inner.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (inner, None),
    };
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return None;
    }
    let value = std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty() || default.is_none());
    let text = match (value, default) {
        (Some(v), _) => written(name, &v, place, line, p),
        (None, Some(d)) => scan(d, place, line, p),
        (None, None) => {
            p.unset.entry(name.to_owned()).or_default().push(line);
            String::new()
        }
    };
    if place == Place::Bare && !scalar(&text) && !text.is_empty() {
        p.refused.push(format!(
            "{name} (line {line}): outside quotes a value must be one number, boolean or date; \
             quote the reference to take it as text"
        ));
    }
    out.push_str(&text);
    Some(3 + end)
}

/// The environment's value, written for its place (bare values are checked by the caller).
fn written(name: &str, v: &str, place: Place, line: usize, p: &mut Problems) -> String {
    match place {
        Place::Basic | Place::MultiBasic => escaped(v),
        Place::Literal | Place::MultiLiteral => {
            if v.chars()
                .any(|c| c == '\'' || (c.is_control() && c != '\t'))
            {
                p.refused.push(format!(
                    "{name} (line {line}): its value has a quote or a control character, which a \
                     '...' string cannot hold; use \"...\" around the reference"
                ));
            }
            v.to_owned()
        }
        Place::Bare | Place::Comment => v.to_owned(),
    }
}

/// `v` escaped for a TOML basic string.
fn escaped(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Whether `v` is one TOML number, boolean or date and nothing else.
fn scalar(v: &str) -> bool {
    let token = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_' | ':'));
    token
        && toml::from_str::<toml::Table>(&format!("v = {v}"))
            .is_ok_and(|t| t.len() == 1 && !matches!(t["v"], toml::Value::String(_)))
}

fn report(p: Problems) -> Result<(), String> {
    let mut out = Vec::new();
    if !p.unset.is_empty() {
        let named: Vec<String> = p
            .unset
            .iter()
            .map(|(name, lines)| {
                let lines: Vec<String> = lines.iter().map(ToString::to_string).collect();
                format!("{name} (line {})", lines.join(", "))
            })
            .collect();
        out.push(format!(
            "{} environment variable(s) not set: {}",
            named.len(),
            named.join("; ")
        ));
    }
    out.extend(p.refused);
    if out.is_empty() {
        Ok(())
    } else {
        Err(out.join("; "))
    }
}

#[cfg(test)]
mod tests;
