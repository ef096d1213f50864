//! Secret redaction, applied before anything reaches disk or a terminal: headers, JSON fields,
//! query and form parameters whose names speak of a credential (in any case style), JWT-shaped
//! strings and GitLab/OpenAI token prefixes wherever they stand, and every secret value the
//! harness itself holds ([`register_secret`]); plus user-configured [`Rule`]s over JSON bodies
//! (drop, hash, or replace keeping the length).

mod rules;

pub use rules::{apply_rules, Mode, Rule};

use serde_json::{Map, Value};

/// The marker that replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Words of a name that make it a secret's (the name split at `-`, `_`, `.`, spaces and case
/// changes, lowercased: `X-Access-Key`, `apiKey`, `API_KEY`, `private_token` and `client_secret`
/// all match). A word that ends in `token`, `secret` or `password` counts too (`accesstoken`).
const SECRET_WORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "credential",
    "credentials",
    "cookie",
    "authorization",
    "authorisation",
    "apikey",
    "accesskey",
    "authkey",
    "privatekey",
    "signingkey",
    "secretkey",
];

/// Pairs of words that name a key: `api key`, `access key`, `auth key`...
const KEY_QUALIFIERS: &[&str] = &[
    "api", "access", "auth", "private", "signing", "secret", "client",
];

/// Prefixes of GitLab and OpenAI-style tokens, found wherever they stand as a word.
const TOKEN_PREFIXES: &[&[u8]] = &[
    b"glpat-",
    b"glptt-",
    b"gldt-",
    b"glrt-",
    b"gloas-",
    b"glsoat-",
    b"glcbt-",
    b"glft-",
    b"glimt-",
    b"glagent-",
    b"glwt-",
    b"sk-",
];

/// The words of a name, lowercased: split at punctuation and at case changes (`apiKey`,
/// `APIKey` and `api_key` all give `api`, `key`).
fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            out.extend((!cur.is_empty()).then(|| std::mem::take(&mut cur)));
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1);
        let boundary = c.is_uppercase()
            && prev.is_some_and(|p| {
                p.is_lowercase() || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase()))
            });
        if boundary && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.extend(c.to_lowercase());
    }
    out.extend((!cur.is_empty()).then_some(cur));
    out
}

/// Whether a header, field or parameter name speaks of a credential. Counts and lists of
/// tokens (`max_tokens`, `input_tokens`, `tokens_consumption_metadata`) are not secrets.
pub fn secret_name(name: &str) -> bool {
    let w = words(name);
    let secret_word = |x: &String| {
        SECRET_WORDS.contains(&x.as_str())
            || ["token", "secret", "password"]
                .iter()
                .any(|e| x.ends_with(e) && x.len() > e.len())
    };
    w.iter().any(secret_word)
        || w.windows(2)
            .any(|p| p[1] == "key" && KEY_QUALIFIERS.contains(&p[0].as_str()))
}

/// Secret values the harness itself holds (bearer tokens, minted JWTs, model API keys): scrubbed
/// from everything it writes or prints, even when a server echoes them back.
static KNOWN: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Registers a secret value the harness holds (values under 4 characters are not secrets).
pub fn register_secret(value: &str) {
    let v = value.trim();
    if v.len() < 4 {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
    if !known.iter().any(|k| k == v) {
        known.push(v.to_owned());
    }
}

fn b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn run_of(bytes: &[u8], mut i: usize, ok: impl Fn(u8) -> bool) -> usize {
    while bytes.get(i).is_some_and(|&b| ok(b)) {
        i += 1;
    }
    i
}

/// A JWT starting at `i` (`eyJ…` `.` `…` `.` `…`): its end.
fn jwt_at(bytes: &[u8], i: usize) -> Option<usize> {
    let a = run_of(bytes, i, b64url);
    (a - i >= 10 && bytes.get(a) == Some(&b'.')).then_some(())?;
    let b = run_of(bytes, a + 1, b64url);
    (b - a > 2 && bytes.get(b) == Some(&b'.')).then_some(())?;
    Some(run_of(bytes, b + 1, b64url))
}

/// What the spans are searched for.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// Known secrets and JWTs only (measured answers: cheap, and code text stays as it is).
    Known,
    /// Everything: also `name=value` / `"name": "value"` with a secret name, and token prefixes.
    All,
}

/// Byte ranges of `bytes` that hold secrets, sorted and merged.
fn spans(bytes: &[u8], scope: Scope) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for k in KNOWN.read().unwrap_or_else(|e| e.into_inner()).iter() {
        out.extend(memchr::memmem::find_iter(bytes, k.as_bytes()).map(|i| (i, i + k.len())));
    }
    for i in memchr::memmem::find_iter(bytes, b"eyJ") {
        out.extend(jwt_at(bytes, i).map(|end| (i, end)));
    }
    if scope == Scope::All {
        prefixed_tokens(bytes, &mut out);
        assignments(bytes, &mut out);
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

fn prefixed_tokens(bytes: &[u8], out: &mut Vec<(usize, usize)>) {
    for p in TOKEN_PREFIXES {
        for i in memchr::memmem::find_iter(bytes, p) {
            if i > 0 && bytes[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let end = run_of(bytes, i + p.len(), b64url);
            if end - i - p.len() >= 16 {
                out.push((i, end));
            }
        }
    }
}

/// `name=value`, `name: value`, `"name": "value"` where the name is a secret's: the value.
fn assignments(bytes: &[u8], out: &mut Vec<(usize, usize)>) {
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.';
    for (i, _) in bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'=' || b == b':')
    {
        // The name before: optional spaces and closing quote, then the name itself.
        let mut j = i;
        while j > 0 && bytes[j - 1] == b' ' {
            j -= 1;
        }
        if j > 0 && matches!(bytes[j - 1], b'"' | b'\'') {
            j -= 1;
        }
        let name_end = j;
        while j > 0 && is_name(bytes[j - 1]) {
            j -= 1;
        }
        let Ok(name) = std::str::from_utf8(&bytes[j..name_end]) else {
            continue;
        };
        if name.is_empty() || !secret_name(name) {
            continue;
        }
        let mut v = run_of(bytes, i + 1, |b| b == b' ');
        let quote = bytes.get(v).copied().filter(|b| matches!(b, b'"' | b'\''));
        if quote.is_some() {
            v += 1;
        } else if matches!(bytes.get(v), Some(b'{' | b'[')) {
            continue; // an object or a list: its own fields are looked at one by one
        }
        // `Bearer xyz`, `Basic xyz`: the scheme stays, the credential goes.
        for scheme in [&b"Bearer "[..], b"bearer ", b"Basic ", b"Token "] {
            if bytes[v..].starts_with(scheme) {
                v += scheme.len();
            }
        }
        let end = match quote {
            Some(q) => run_of(bytes, v, |b| b != q && b != b'\\'),
            None => run_of(bytes, v, |b| {
                !matches!(
                    b,
                    b'&' | b';' | b',' | b'"' | b'\'' | b'<' | b'>' | b'}' | b']' | b')'
                ) && !b.is_ascii_whitespace()
            }),
        };
        let value = &bytes[v..end];
        let literal = quote.is_none()
            && (matches!(value, b"null" | b"true" | b"false")
                || value
                    .iter()
                    .all(|b| b.is_ascii_digit() || *b == b'.' || *b == b'-'));
        if end > v && !literal && value != REDACTED.as_bytes() {
            out.push((v, end));
        }
    }
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
    // Spans start and end on ASCII bytes, so the result stays UTF-8.
    String::from_utf8(replace_spans(s.as_bytes(), &found)).ok()
}

/// `s` with every secret found in free text replaced: known secrets, JWTs, token prefixes, and
/// the values of `name=value` pairs with a secret name (request bytes, stream chunks, paths).
pub fn text(s: &str) -> String {
    scrub(s, Scope::All).unwrap_or_else(|| s.to_owned())
}

/// `s` with the harness's own secrets and JWT-shaped strings replaced (measured answers, error
/// messages: whatever the harness writes or prints).
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

/// Redacts secret headers in place (names compared case-insensitively), and secrets inside the
/// values of the others.
pub fn headers(h: &mut Map<String, Value>) {
    for (k, v) in h.iter_mut() {
        if secret_name(k) || k.eq_ignore_ascii_case("set-cookie") {
            *v = Value::String(REDACTED.into());
        } else if let Some(clean) = v.as_str().and_then(|s| scrub(s, Scope::All)) {
            *v = Value::String(clean);
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
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_keys_headers_and_jwts() {
        let mut b = json!({"model_api_key": "sk-1", "model_metadata": {"api_key": "sk-2"}, "t": ["eyJhbGciOi.eyJzdWIi.c2ln"], "keep": "x"});
        body(&mut b);
        assert_eq!(
            b,
            json!({"model_api_key": REDACTED, "model_metadata": {"api_key": REDACTED}, "t": [REDACTED], "keep": "x"})
        );
        let mut h = json!({"Authorization": "Bearer x", "x-request-id": "r"})
            .as_object()
            .unwrap()
            .clone();
        headers(&mut h);
        assert_eq!(h["Authorization"], REDACTED);
        assert_eq!(h["x-request-id"], "r");
        let mut h =
            json!({"X-Gitlab-Oidc-Token": "t", "x-note": "see eyJhbGciOi.eyJzdWIi.c2ln now"})
                .as_object()
                .unwrap()
                .clone();
        headers(&mut h);
        assert_eq!(h["X-Gitlab-Oidc-Token"], REDACTED);
        assert_eq!(h["x-note"], format!("see {REDACTED} now"));
    }

    #[test]
    fn secret_names_in_every_case_style_but_not_token_counts() {
        for n in [
            "apiKey",
            "API_KEY",
            "api-key",
            "X-Api-Key",
            "private_token",
            "client_secret",
            "X-Access-Key",
            "X-Gitlab-Auth-Key",
            "x-auth-key",
            "accessToken",
            "Authorization",
            "proxy-authorization",
            "password",
            "credentials",
            "model_api_key",
            "X-Gitlab-Oidc-Token",
            "APIKey",
            "id_token",
            "set-cookie",
            "X-Apikey",
        ] {
            assert!(secret_name(n), "{n}");
        }
        for n in [
            "max_tokens",
            "input_tokens",
            "tokens_consumption_metadata",
            "max_output_tokens_used",
            "context_tokens_sent",
            "tokenizer",
            "x-request-id",
            "content-type",
            "keyboard",
            "x-gitlab-authentication-type",
            "monkey",
        ] {
            assert!(!secret_name(n), "{n}");
        }
    }

    #[test]
    fn secrets_in_free_text_query_and_form_bodies() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        for (input, gone) in [
            (format!("token={jwt}&x=1"), jwt.to_owned()),
            (format!("{{\"a\":\"{jwt}\"}}"), jwt.to_owned()),
            (
                "/api?private_token=glpat-abcdefghijklmnop1234&page=2".to_owned(),
                "glpat-abcdefghijklmnop1234".to_owned(),
            ),
            (
                "grant_type=x&client_secret=s3cr3tvalue&scope=api".to_owned(),
                "s3cr3tvalue".to_owned(),
            ),
            (
                "{\"apiKey\":\"k-1234567890\",\"n\":1}".to_owned(),
                "k-1234567890".to_owned(),
            ),
            (
                "Authorization: Bearer abcdef123456".to_owned(),
                "abcdef123456".to_owned(),
            ),
        ] {
            let out = text(&input);
            assert!(!out.contains(&gone), "{input} -> {out}");
        }
        let counts = "{\"max_tokens\":64,\"tokens_consumption_metadata\":{\"input_tokens\":42,\"max_output_tokens_used\":false}}";
        assert_eq!(text(counts), counts);
        let parts = pieces(&[
            b"data: {\"t\":\"eyJhbGciOiJSUzI1NiJ9.ey",
            b"JzdWIiOiIxIn0.c2lnbmF0dXJl\"}",
        ]);
        assert!(!String::from_utf8_lossy(&parts.concat()).contains("c2lnbmF0dXJl"));
    }
}
