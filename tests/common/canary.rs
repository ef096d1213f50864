//! Secret shapes found independently of the harness's own redaction (test tree only): a second
//! opinion, written as regular expressions from the token formats' documentation.

use regex::Regex;
use std::sync::LazyLock;

static SHAPES: LazyLock<Vec<(&str, Regex)>> = LazyLock::new(|| {
    [
        (
            "JWT",
            r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{3,}\.[A-Za-z0-9_-]+",
        ),
        (
            "GitLab token",
            r"\bgl(pat|ptt|dt|rt|oas|soat|cbt|ft|imt|agent|wt)-[A-Za-z0-9_-]{16,}",
        ),
        ("OpenAI/Anthropic key", r"\bsk-[A-Za-z0-9_-]{20,}"),
        ("AWS key id", r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"),
        (
            "GitHub token",
            r"\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
        ),
        ("Slack token", r"\bxox[baprs]-[A-Za-z0-9-]{10,}"),
        ("Hugging Face token", r"\bhf_[A-Za-z0-9]{30,}"),
        ("PEM private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
        (
            "URL password",
            r#"[a-z][a-z0-9+.-]*://[^/\s:@"'<>\\]+:([^/\s@"'<>\\\[]+)@"#,
        ),
    ]
    .into_iter()
    .map(|(name, re)| (name, Regex::new(re).unwrap()))
    .collect()
});

/// Every secret shape in `text`: (the format's name, what matched).
pub fn secret_shapes(text: &str) -> Vec<(&'static str, String)> {
    SHAPES
        .iter()
        .flat_map(|(name, re)| re.find_iter(text).map(|m| (*name, m.as_str().to_owned())))
        .collect()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
