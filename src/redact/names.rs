//! The name rule: a value is a secret when the name it stands under speaks of a credential
//! (headers, gRPC metadata, JSON fields, `name=value` and `name: value` in text, query and form
//! parameters, multipart parts), compared in any case and separator style.

use super::{run_of, REDACTED};

/// Words of a name that make it a secret's (the name split at `-`, `_`, `.`, spaces and case
/// changes, lowercased: `X-Access-Key`, `apiKey`, `API_KEY`, `private_token` and `client_secret`
/// all match). A word that ends in `token`, `secret` or `password` counts too (`accesstoken`).
const SECRET_WORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "pass",
    "passphrase",
    "pwd",
    "auth",
    "oauth",
    "bearer",
    "signature",
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
    "sessionid",
    "dsn",
];

/// Pairs of words that name a key: `api key`, `access key`, `session id`...
const PAIRS: &[(&str, &str)] = &[
    ("api", "key"),
    ("access", "key"),
    ("auth", "key"),
    ("private", "key"),
    ("signing", "key"),
    ("secret", "key"),
    ("client", "key"),
    ("session", "id"),
    ("session", "key"),
];

/// Names that are a secret's only as a query or form parameter (`?key=…`, `&sig=…`).
const PARAMETER_NAMES: &[&str] = &["key", "sig", "code"];

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
            .any(|p| PAIRS.contains(&(p[0].as_str(), p[1].as_str())))
}

/// Whether a query or form parameter's name is a secret's: every secret name, and the short
/// names signed URLs and API keys use (`key`, `sig`, `X-Amz-Signature`).
pub fn secret_parameter(name: &str) -> bool {
    secret_name(name) || PARAMETER_NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
}

fn is_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

/// The name that ends just before the separator at `i` (after optional spaces and a closing
/// quote), with whether it is a query or form parameter (`?name=`, `&name=`, or a body that
/// starts with it).
fn name_before(bytes: &[u8], i: usize) -> Option<(&str, bool)> {
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
    let name = std::str::from_utf8(&bytes[j..name_end]).ok()?;
    let parameter =
        bytes[i] == b'=' && name_end == i && (j == 0 || matches!(bytes[j - 1], b'?' | b'&'));
    (!name.is_empty()).then_some((name, parameter))
}

/// `name=value`, `name: value`, `"name": "value"` where the name is a secret's: the value.
pub fn assignments(bytes: &[u8], out: &mut Vec<(usize, usize)>) {
    for i in memchr::memchr2_iter(b'=', b':', bytes) {
        let Some((name, parameter)) = name_before(bytes, i) else {
            continue;
        };
        if !(secret_name(name) || (parameter && secret_parameter(name))) {
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

/// Multipart form parts (`Content-Disposition: form-data; name="password"`) whose name is a
/// secret's: the part's content, from the blank line to the next boundary.
pub fn multipart(bytes: &[u8], out: &mut Vec<(usize, usize)>) {
    for i in memchr::memmem::find_iter(bytes, b"form-data;") {
        let line_end = memchr::memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |e| i + e);
        let line = &bytes[i..line_end];
        let Some(at) = memchr::memmem::find(line, b"name=\"") else {
            continue;
        };
        let name_start = at + 6;
        let name_end =
            memchr::memchr(b'"', &line[name_start..]).map_or(line.len(), |e| name_start + e);
        let name = String::from_utf8_lossy(&line[name_start..name_end]);
        if !secret_parameter(&name) {
            continue;
        }
        let rest = &bytes[line_end..];
        let Some(blank) = memchr::memmem::find(rest, b"\n\r\n")
            .map(|b| b + 3)
            .or_else(|| memchr::memmem::find(rest, b"\n\n").map(|b| b + 2))
        else {
            continue;
        };
        let start = line_end + blank;
        let end = memchr::memmem::find(&bytes[start..], b"\n--").map_or(bytes.len(), |e| {
            let e = start + e;
            if e > start && bytes[e - 1] == b'\r' {
                e - 1
            } else {
                e
            }
        });
        if end > start {
            out.push((start, end));
        }
    }
}
