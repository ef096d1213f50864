//! Secret redaction, one rule set for every path that writes (record, the corpus commands, run
//! folders, reports, the console, logs), applied before anything reaches disk, a terminal or
//! another host. Two rules, each in its module:
//! - `shapes`: a value that looks like a secret, wherever it stands (the secrets the harness
//!   holds, [`register_secret`]; JWTs; token formats; PEM private keys; URL passwords);
//! - `names`: a value under a name that speaks of a credential (headers, gRPC metadata, JSON
//!   fields, `name=value` in text, query and form parameters, multipart parts).
//!
//! Traffic and what a server says about it (captured requests, error messages) get both
//! ([`text`], [`body`], [`headers`]); what the harness writes under its own field names (its run
//! documents, measured answers, whose code may well say `password = …`) gets the shape rule
//! ([`known`]). Plus user-configured [`Rule`]s over JSON bodies (drop, hash, or replace keeping
//! the length).

mod names;
mod rules;
mod shapes;

pub use names::secret_name;
pub use rules::{apply_rules, Mode, Rule};

use serde_json::{Map, Value};

/// The marker that replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

fn b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn run_of(bytes: &[u8], mut i: usize, ok: impl Fn(u8) -> bool) -> usize {
    while bytes.get(i).is_some_and(|&b| ok(b)) {
        i += 1;
    }
    i
}

/// Which rules the spans are searched with.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// The shape rule only (the harness's own documents and measured answers).
    Known,
    /// Both rules (traffic, and what servers say about it).
    All,
}

/// Registers a secret value the harness holds (bearer tokens, minted JWTs, model API keys): it is
/// scrubbed from everything written or printed, even when a server echoes it back.
pub fn register_secret(value: &str) {
    shapes::register(value);
}

/// Byte ranges of `bytes` that hold secrets, sorted and merged.
fn spans(bytes: &[u8], scope: Scope) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    shapes::find(bytes, &mut out);
    if scope == Scope::All {
        names::assignments(bytes, &mut out);
        names::multipart(bytes, &mut out);
    }
    out.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(out.len());
    for (a, b) in out {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

fn replace_spans(bytes: &[u8], spans: &[(usize, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    for &(a, b) in spans {
        out.extend_from_slice(&bytes[at..a]);
        out.extend_from_slice(REDACTED.as_bytes());
        at = b;
    }
    out.extend_from_slice(&bytes[at..]);
    out
}

fn scrub(s: &str, scope: Scope) -> Option<String> {
    let found = spans(s.as_bytes(), scope);
    if found.is_empty() {
        return None;
    }
    // Spans start and end on ASCII bytes, so the result stays UTF-8 (lossy only as a guard: a
    // secret is never kept because its neighbours did not decode).
    Some(String::from_utf8_lossy(&replace_spans(s.as_bytes(), &found)).into_owned())
}

/// `s` with every secret found by both rules replaced (request bytes, stream chunks, paths,
/// error messages).
pub fn text(s: &str) -> String {
    scrub(s, Scope::All).unwrap_or_else(|| s.to_owned())
}

/// `s` with every secret found by the shape rule replaced (the harness's own documents and
/// console lines, measured answers).
pub fn known(s: &str) -> String {
    scrub(s, Scope::Known).unwrap_or_else(|| s.to_owned())
}

/// As [`known`], in place; `true` when something was replaced.
pub fn known_in_place(s: &mut String) -> bool {
    match scrub(s, Scope::Known) {
        Some(clean) => {
            *s = clean;
            true
        }
        None => false,
    }
}

/// Redacts the pieces of one stream as a whole, so a secret split across two pieces is found:
/// each piece keeps its place, and the part of a secret it held becomes the marker.
pub fn pieces(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    let whole = parts.concat();
    let found = spans(&whole, Scope::All);
    let mut out = Vec::with_capacity(parts.len());
    let mut start = 0;
    for p in parts {
        let end = start + p.len();
        let local: Vec<(usize, usize)> = found
            .iter()
            .filter(|(a, b)| *a < end && *b > start)
            .map(|(a, b)| ((*a).max(start) - start, (*b).min(end) - start))
            .collect();
        out.push(replace_spans(p, &local));
        start = end;
    }
    out
}

/// A body that is not JSON: form-encoded or other text has its secrets replaced; bytes that are
/// not text have the known secrets and JWTs replaced, byte for byte.
pub fn raw_body(bytes: &[u8]) -> Vec<u8> {
    replace_spans(bytes, &spans(bytes, Scope::All))
}

/// Redacts HTTP headers or gRPC metadata in place: the values of secret names (compared in any
/// case), and secrets inside the others (a string, or a list of them).
pub fn headers(h: &mut Map<String, Value>) {
    for (k, v) in h.iter_mut() {
        if secret_name(k) || k.eq_ignore_ascii_case("set-cookie") {
            *v = Value::String(REDACTED.into());
        } else {
            body(v);
        }
    }
}

/// Redacts, anywhere in a JSON value, the string values of fields with a secret name and
/// secrets inside every other string.
pub fn body(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x {
                    Value::String(s) if secret_name(k) && !s.is_empty() => {
                        *s = REDACTED.into();
                    }
                    Value::Array(a) if secret_name(k) => a
                        .iter_mut()
                        .filter(|e| e.is_string())
                        .for_each(|e| *e = Value::String(REDACTED.into())),
                    _ => body(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(body),
        Value::String(s) => {
            if let Some(clean) = scrub(s, Scope::All) {
                *s = clean;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
