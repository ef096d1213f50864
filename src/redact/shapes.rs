//! The shape rule: a value is a secret by what it looks like, wherever it stands (an answer, an
//! error, a path, a goal): the secrets the harness holds, JWTs, well-known token formats
//! (GitLab, OpenAI, Anthropic, GitHub, Slack, Hugging Face, Google, AWS access key ids), PEM
//! private keys, and the password of any URL (`https://user:pw@host`, DSNs such as
//! `postgres://user:pw@db/x`). One pass finds every candidate (Aho-Corasick), so the cost stays
//! flat however many formats there are.

use super::{b64url, run_of};
use aho_corasick::AhoCorasick;
use std::sync::LazyLock;

/// A token format: its prefix, the bytes that may follow it, and how many at least.
struct Format {
    prefix: &'static str,
    body: fn(u8) -> bool,
    min: usize,
}

/// The one prefix common in ordinary text (`sk-learn-…`): its tokens must also look random.
const AMBIGUOUS: &str = "sk-";

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn upper_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

const FORMATS: &[Format] = &[
    Format {
        prefix: "glpat-",
        body: b64url,
        min: 16,
    },
    Format {
        prefix: "glptt-",
        body: b64url,
        min: 16,
    },
    Format {
        prefix: "gldt-",
        body: b64url,
        min: 16,
    },
    Format {
        prefix: "glrt-",
        body: b64url,
        min: 16,
    },
    Format {
        prefix: "gloas-",
        body: b64url,
        min: 16,
    },
    Format {
        prefix: "glsoat-",
        body: b64url,
        min: 16,
    },
    Format {
        prefix: "glcbt-",
        body: b64url,
        min: 16,
    },
    Format {
        prefix: "glft-",
        body: b64url,
        min: 16,
    },
    Format {
        prefix: "glimt-",
        body: b64url,
        min: 16,
    },
    Format {
        prefix: "glagent-",
        body: b64url,
        min: 16,
    },
    Format {
        prefix: "glwt-",
        body: b64url,
        min: 16,
    },
    Format {
        prefix: "sk-",
        body: b64url,
        min: 16,
    },
    Format {
        prefix: "ghp_",
        body: alnum,
        min: 30,
    },
    Format {
        prefix: "gho_",
        body: alnum,
        min: 30,
    },
    Format {
        prefix: "ghu_",
        body: alnum,
        min: 30,
    },
    Format {
        prefix: "ghs_",
        body: alnum,
        min: 30,
    },
    Format {
        prefix: "ghr_",
        body: alnum,
        min: 30,
    },
    Format {
        prefix: "github_pat_",
        body: b64url,
        min: 30,
    },
    Format {
        prefix: "xoxb-",
        body: b64url,
        min: 10,
    },
    Format {
        prefix: "xoxp-",
        body: b64url,
        min: 10,
    },
    Format {
        prefix: "xoxa-",
        body: b64url,
        min: 10,
    },
    Format {
        prefix: "xoxr-",
        body: b64url,
        min: 10,
    },
    Format {
        prefix: "xoxs-",
        body: b64url,
        min: 10,
    },
    Format {
        prefix: "xapp-",
        body: b64url,
        min: 10,
    },
    Format {
        prefix: "hf_",
        body: alnum,
        min: 30,
    },
    Format {
        prefix: "AIza",
        body: b64url,
        min: 30,
    },
    Format {
        prefix: "ya29.",
        body: b64url,
        min: 20,
    },
    Format {
        prefix: "AKIA",
        body: upper_digit,
        min: 16,
    },
    Format {
        prefix: "ASIA",
        body: upper_digit,
        min: 16,
    },
];

/// What a candidate found by the automaton is.
#[derive(Clone, Copy)]
enum Candidate {
    Jwt,
    Pem,
    Url,
    Format(usize),
}

/// The candidates' searcher: SIMD (Teddy) where the CPU has it, else an automaton.
enum Searcher {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

impl Searcher {
    /// (pattern, start, end) of each candidate, leftmost first.
    fn each(&self, bytes: &[u8], mut f: impl FnMut(usize, usize, usize)) {
        match self {
            Self::Packed(s) => s
                .find_iter(bytes)
                .for_each(|m| f(m.pattern().as_usize(), m.start(), m.end())),
            Self::Automaton(a) => a
                .find_iter(bytes)
                .for_each(|m| f(m.pattern().as_usize(), m.start(), m.end())),
        }
    }
}

static PATTERNS: LazyLock<(Searcher, Vec<Candidate>)> = LazyLock::new(|| {
    let mut patterns = vec!["eyJ", "-----BEGIN ", "://"];
    let mut kinds = vec![Candidate::Jwt, Candidate::Pem, Candidate::Url];
    for (i, f) in FORMATS.iter().enumerate() {
        patterns.push(f.prefix);
        kinds.push(Candidate::Format(i));
    }
    let packed = aho_corasick::packed::Searcher::new(patterns.iter());
    let searcher = match packed {
        Some(p) => Searcher::Packed(p),
        None => Searcher::Automaton(
            AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                .build(&patterns)
                .expect("static patterns build"),
        ),
    };
    (searcher, kinds)
});

/// Secret values the harness itself holds (bearer tokens, minted JWTs, model API keys).
static KNOWN: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Registers a secret value the harness holds (values under 4 characters are not secrets).
pub fn register(value: &str) {
    let v = value.trim();
    if v.len() < 4 {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
    if !known.iter().any(|k| k == v) {
        known.push(v.to_owned());
    }
}

/// Every span of `bytes` that is a secret by its shape.
pub fn find(bytes: &[u8], out: &mut Vec<(usize, usize)>) {
    for k in KNOWN.read().unwrap_or_else(|e| e.into_inner()).iter() {
        out.extend(memchr::memmem::find_iter(bytes, k.as_bytes()).map(|i| (i, i + k.len())));
    }
    let (searcher, kinds) = &*PATTERNS;
    searcher.each(bytes, |pattern, i, end| {
        let found = match kinds[pattern] {
            Candidate::Jwt => jwt_at(bytes, i).map(|e| (i, e)),
            Candidate::Pem => pem_at(bytes, i),
            Candidate::Url => url_password(bytes, end),
            Candidate::Format(f) => format_at(bytes, i, &FORMATS[f]),
        };
        out.extend(found);
    });
}

/// A JWT starting at `i` (`eyJ…` `.` `…` `.` `…`): its end.
fn jwt_at(bytes: &[u8], i: usize) -> Option<usize> {
    let a = run_of(bytes, i, b64url);
    (a - i >= 10 && bytes.get(a) == Some(&b'.')).then_some(())?;
    let b = run_of(bytes, a + 1, b64url);
    (b - a > 2 && bytes.get(b) == Some(&b'.')).then_some(())?;
    Some(run_of(bytes, b + 1, b64url))
}

/// A token of format `f` at `i`: standing as a word and long enough; for the ambiguous `sk-`,
/// random-looking too (a digit or a capital in it, so `sk-learn-compatible-names` is not one).
fn format_at(bytes: &[u8], i: usize, f: &Format) -> Option<(usize, usize)> {
    if i > 0 && bytes[i - 1].is_ascii_alphanumeric() {
        return None;
    }
    let start = i + f.prefix.len();
    let end = run_of(bytes, start, f.body);
    let body = &bytes[start..end];
    let random = f.prefix != AMBIGUOUS
        || body
            .iter()
            .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    let ends_word = bytes.get(end).is_none_or(|b| !b.is_ascii_alphanumeric());
    (body.len() >= f.min && random && ends_word).then_some((i, end))
}

/// A PEM block of a private key (`-----BEGIN … PRIVATE KEY-----` … `-----END …-----`), whole;
/// one cut off before its end line is redacted to the end of the text.
fn pem_at(bytes: &[u8], i: usize) -> Option<(usize, usize)> {
    let label_start = i + "-----BEGIN ".len();
    let label_end = memchr::memmem::find(&bytes[label_start..], b"-----")? + label_start;
    let label = &bytes[label_start..label_end];
    if memchr::memmem::find(label, b"PRIVATE KEY").is_none() || label.len() > 40 {
        return None;
    }
    let after = label_end + 5;
    let end = memchr::memmem::find(&bytes[after..], b"-----END ").map_or(bytes.len(), |e| {
        let e = after + e + "-----END ".len();
        memchr::memmem::find(&bytes[e..], b"-----").map_or(bytes.len(), |c| e + c + 5)
    });
    Some((i, end))
}

/// The password in a URL's userinfo (`scheme://user:password@host`), given the index just past
/// `://`.
fn url_password(bytes: &[u8], from: usize) -> Option<(usize, usize)> {
    let stop = |b: u8| {
        matches!(
            b,
            b'/' | b'?' | b'#' | b'@' | b'"' | b'\'' | b'<' | b'>' | b'\\' | b'`'
        ) || b.is_ascii_whitespace()
    };
    let end = run_of(bytes, from, |b| !stop(b));
    if bytes.get(end) != Some(&b'@') {
        return None;
    }
    let colon = memchr::memchr(b':', &bytes[from..end])? + from;
    let password = &bytes[colon + 1..end];
    (!password.is_empty() && password != super::REDACTED.as_bytes()).then_some((colon + 1, end))
}
