//! Deterministic output text for the twin vLLM.
//!
//! The same (seed, model, prompt, max_tokens) always gives the same text, so snapshots of twin
//! answers are stable. Requests that look like code work (FIM markers, a code fence, or the
//! `/v1/completions` route) get code-like text in the language the prompt suggests; ReAct chat
//! prompts (an assistant prefill ending in `Thought:`) get a thought and a `Final Answer:`;
//! everything else gets prose. `variation` (0..1) is the share of words drawn from an unseeded
//! generator, for tests that need answers to differ between runs.

use crate::tokens;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What kind of text to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Code(Lang),
    Prose,
    React,
}

/// Languages the code generator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Python,
    Rust,
    JavaScript,
    Go,
    Ruby,
}

/// Markers that make a prompt a code request.
const CODE_MARKERS: &[&str] = &[
    "[SUFFIX]",
    "[PREFIX]",
    "<PRE>",
    "|CODE|",
    "<|fim_prefix|>",
    "fim▁begin",
    "```",
    "## Existing code",
];

/// Chooses the style for a prompt. `completions_route` is true for `/v1/completions`.
pub fn style_for(prompt: &str, last_is_thought_prefill: bool, completions_route: bool) -> Style {
    if last_is_thought_prefill {
        Style::React
    } else if completions_route || CODE_MARKERS.iter().any(|m| prompt.contains(m)) {
        Style::Code(lang_for(prompt))
    } else {
        Style::Prose
    }
}

fn lang_for(prompt: &str) -> Lang {
    let has = |s: &str| prompt.contains(s);
    if has("fn ") || has("```rust") || has(".rs") {
        Lang::Rust
    } else if has("func ") || has(".go") {
        Lang::Go
    } else if has("function ") || has("const ") || has(".js") || has(".ts") {
        Lang::JavaScript
    } else if has(".rb") || has("```ruby") || (has("def ") && has("end\n")) {
        Lang::Ruby
    } else {
        Lang::Python
    }
}

/// One generation request.
pub struct GenRequest<'a> {
    pub seed: u64,
    pub model: &'a str,
    pub prompt: &'a str,
    pub max_tokens: usize,
    pub style: Style,
    pub variation: f64,
    /// Keep generating past the natural end until `max_tokens` (vLLM's `ignore_eos`).
    pub ignore_eos: bool,
}

/// The generated answer as the tokens it will be streamed in.
#[derive(Debug, Clone)]
pub struct Generated {
    pub tokens: Vec<String>,
    /// `stop` or `length` (vLLM's finish reasons).
    pub finish_reason: &'static str,
}

impl Generated {
    pub fn text(&self) -> String {
        self.tokens.concat()
    }
}

/// FNV-1a over the request, so the seed depends on every byte that matters. Runs of 16 or more
/// hex digits count as one placeholder: the AIGW's random security tag (PROTOCOL.md §8.4) and
/// the harness's correlation nonces change per request, and must not change the answer.
fn request_seed(req: &GenRequest) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ req.seed;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    req.model.bytes().chain([0]).for_each(&mut eat);
    let mut run: Vec<u8> = Vec::new();
    for b in req.prompt.bytes().chain([0]) {
        if b.is_ascii_hexdigit() {
            run.push(b);
            continue;
        }
        match run.len() {
            n if n >= 16 => eat(b'#'),
            _ => run.iter().for_each(|&x| eat(x)),
        }
        run.clear();
        eat(b);
    }
    h ^ (req.max_tokens as u64).rotate_left(17)
}

/// Picks from a word list: seeded, or with probability `variation` from an unseeded source.
struct Words {
    rng: ChaCha8Rng,
    variation: f64,
}

impl Words {
    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        let i = self.rng.random_range(0..list.len());
        if self.variation > 0.0 && rand::rng().random_bool(self.variation.min(1.0)) {
            return list[rand::rng().random_range(0..list.len())];
        }
        list[i]
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        self.rng.random_range(lo..=hi)
    }
}

fn answer(w: &mut Words, style: Style) -> String {
    match style {
        Style::Code(lang) => code(w, lang),
        Style::Prose => prose(w, 2, 5),
        Style::React => format!("{}\nFinal Answer: {}", w.pick(THOUGHTS), prose(w, 1, 4)),
    }
}

/// Generates the answer for `req`.
pub fn generate(req: &GenRequest) -> Generated {
    let mut w = Words {
        rng: ChaCha8Rng::seed_from_u64(request_seed(req)),
        variation: req.variation,
    };
    let mut text = answer(&mut w, req.style);
    while req.ignore_eos && tokens::count(&text) < req.max_tokens {
        text.push_str(&answer(&mut w, req.style));
    }
    let all = tokens::split(&text);
    let finish_reason = if all.len() > req.max_tokens || req.ignore_eos {
        "length"
    } else {
        "stop"
    };
    let tokens = all
        .into_iter()
        .take(req.max_tokens)
        .map(str::to_owned)
        .collect();
    Generated {
        tokens,
        finish_reason,
    }
}

const IDENTS: &[&str] = &[
    "total", "items", "count", "result", "value", "user", "config", "path", "index", "buffer",
];
const THOUGHTS: &[&str] = &[
    "Thought: I can answer this from general knowledge.",
    "Thought: The question is about the code shown, no tool is needed.",
    "Thought: I have enough context to answer directly.",
];
const SUBJECTS: &[&str] = &[
    "The function",
    "This change",
    "The pipeline",
    "The merge request",
    "The service",
    "This module",
];
const VERBS: &[&str] = &[
    "validates",
    "returns",
    "caches",
    "parses",
    "retries",
    "streams",
    "records",
    "updates",
];
const OBJECTS: &[&str] = &[
    "the request body",
    "each input value",
    "the job log",
    "the configuration",
    "every chunk",
    "the user session",
    "the dependency list",
    "the error path",
];
const TAILS: &[&str] = &[
    "before it is stored.",
    "so callers never see partial data.",
    "and logs the outcome.",
    "without blocking the event loop.",
    "when the cache is cold.",
    "to keep the behaviour predictable.",
];

fn prose(w: &mut Words, min: usize, max: usize) -> String {
    let n = w.range(min, max);
    (0..n)
        .map(|_| {
            format!(
                "{} {} {} {}",
                w.pick(SUBJECTS),
                w.pick(VERBS),
                w.pick(OBJECTS),
                w.pick(TAILS)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn code(w: &mut Words, lang: Lang) -> String {
    let lines = w.range(1, 4);
    let mut out = String::new();
    for _ in 0..lines {
        let (a, b) = (w.pick(IDENTS), w.pick(IDENTS));
        let line = match (lang, w.range(0, 3)) {
            (Lang::Python, 0) => format!("return {a} + {b}"),
            (Lang::Python, 1) => format!("{a} = [x for x in {b} if x]"),
            (Lang::Python, 2) => format!("if {a} is None:\n        {a} = {b}"),
            (Lang::Python, _) => format!("for {a} in {b}:\n        print({a})"),
            (Lang::Rust, 0) => format!("let {a} = {b}.iter().count();"),
            (Lang::Rust, 1) => format!("{a}.push({b});"),
            (Lang::Rust, 2) => format!("if {a}.is_empty() {{ return Ok({b}); }}"),
            (Lang::Rust, _) => format!("Ok({a} + {b})"),
            (Lang::JavaScript, 0) => format!("const {a} = {b}.map((x) => x * 2);"),
            (Lang::JavaScript, 1) => format!("return {a} ?? {b};"),
            (Lang::JavaScript, 2) => format!("if (!{a}) {{ throw new Error('{b}'); }}"),
            (Lang::JavaScript, _) => format!("{a}.push({b});"),
            (Lang::Go, 0) => format!("{a} := len({b})"),
            (Lang::Go, 1) => format!("if err != nil {{\n\t\treturn {a}, err\n\t}}"),
            (Lang::Go, 2) => format!("{a} = append({a}, {b})"),
            (Lang::Go, _) => format!("return {a} + {b}, nil"),
            (Lang::Ruby, 0) => format!("{a} = {b}.map(&:to_s)"),
            (Lang::Ruby, 1) => format!("return {a} if {b}.nil?"),
            (Lang::Ruby, 2) => format!("{a}.each {{ |x| puts x }}"),
            (Lang::Ruby, _) => format!("{a} + {b}"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(prompt: &str, max: usize, variation: f64) -> GenRequest<'_> {
        GenRequest {
            seed: 1,
            model: "m",
            prompt,
            max_tokens: max,
            style: style_for(prompt, false, false),
            variation,
            ignore_eos: false,
        }
    }

    #[test]
    fn deterministic_and_style_aware() {
        let a = generate(&req("<s>[SUFFIX]\n[PREFIX]def f(x):\n    ", 64, 0.0));
        let b = generate(&req("<s>[SUFFIX]\n[PREFIX]def f(x):\n    ", 64, 0.0));
        assert_eq!(a.text(), b.text());
        assert!(
            a.text().ends_with('\n'),
            "code ends with a newline: {:?}",
            a.text()
        );
        let p = generate(&req("What is GitLab?", 4096, 0.0));
        assert!(p.text().ends_with('.'), "prose: {:?}", p.text());
        assert_eq!(p.finish_reason, "stop");
        assert_eq!(tokens::count(&p.text()), p.tokens.len());
    }

    #[test]
    fn volatile_hex_does_not_change_the_answer() {
        let a = generate(&req("tag 0123456789abcdef. What is GitLab?", 200, 0.0)).text();
        let b = generate(&req("tag fedcba9876543210. What is GitLab?", 200, 0.0)).text();
        let c = generate(&req("tag beef. What is GitLab?", 200, 0.0)).text();
        assert_eq!(a, b);
        assert_ne!(a, c, "short hex words still count");
    }

    #[test]
    fn max_tokens_truncates_with_length() {
        let g = generate(&req("What is GitLab?", 3, 0.0));
        assert_eq!(g.tokens.len(), 3);
        assert_eq!(g.finish_reason, "length");
    }

    #[test]
    fn ignore_eos_generates_exactly_max_tokens() {
        for max in [1, 32, 700] {
            let mut r = req("What is GitLab?", max, 0.0);
            r.ignore_eos = true;
            let g = generate(&r);
            assert_eq!(g.tokens.len(), max);
            assert_eq!(g.finish_reason, "length");
        }
    }

    #[test]
    fn react_style_has_final_answer() {
        let g = generate(&GenRequest {
            seed: 3,
            model: "m",
            prompt: "q",
            max_tokens: 500,
            style: Style::React,
            variation: 0.0,
            ignore_eos: false,
        });
        assert!(g.text().starts_with("Thought:"));
        assert!(g.text().contains("\nFinal Answer: "));
    }

    #[test]
    fn variation_changes_answers() {
        let base = generate(&req("What is GitLab?", 4096, 0.0)).text();
        let differs = (0..20).any(|_| generate(&req("What is GitLab?", 4096, 1.0)).text() != base);
        assert!(differs);
    }
}
