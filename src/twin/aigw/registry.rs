//! The twin AIGW's prompt registry, read from data (`registry.toml`, taken from the real
//! gateway's definitions as `PROMPTS.md` records them): which definition folder a model family
//! gets, which version a `prompt_version` constraint selects, and the display name, unit
//! primitive, required template variables and upstream parameters of that definition.
//!
//! In: a prompt id, a model family, a version constraint. Out: a [`Resolved`] definition, or the
//! real gateway's error for that case.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    families: BTreeMap<String, Family>,
    prompt: Vec<Prompt>,
}

/// A model family of `models.yml`: the definition folders searched, and its default parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Family {
    pub search: Vec<String>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// One prompt id and its definition files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    pub id: String,
    /// The feature setting whose default model serves the prompt without `model_metadata`.
    pub feature_setting: String,
    pub definition: Vec<Definition>,
}

/// One definition file (several versions with the same facts share one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub folder: String,
    pub versions: Vec<String>,
    /// The display name (`name:` of the file).
    pub name: String,
    pub unit_primitive: String,
    /// Template variables the request's `inputs` must hold (`current_date` is always added).
    #[serde(default)]
    pub inputs: Vec<String>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub timeout: Option<f64>,
    #[serde(default = "default_system_chars")]
    pub system_chars: usize,
    /// Tokens the real user template's own text adds beyond the twin's wording of its inputs.
    #[serde(default)]
    pub user_pad_tokens: usize,
}

fn default_system_chars() -> usize {
    4000
}

/// What one request gets: the definition, its version, and the effective parameters.
#[derive(Debug)]
pub struct Resolved {
    pub prompt: &'static Prompt,
    pub definition: &'static Definition,
    pub version: String,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub stop: Vec<&'static str>,
    /// The OpenAI SDK read timeout, seconds: the file's, else the factory default of 30.
    pub timeout_s: f64,
}

/// Why no definition could be resolved: the real gateway's 400 messages.
#[derive(Debug, PartialEq, Eq)]
pub enum ResolveError {
    NoMatch(String),
    Invalid(String),
}

impl ResolveError {
    pub fn message(&self) -> &str {
        match self {
            Self::NoMatch(m) | Self::Invalid(m) => m,
        }
    }
}

/// The registry compiled into the binary.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let data: Data = toml::from_str(include_str!("registry.toml"))
            .expect("registry.toml is valid (checked by a unit test)");
        Registry { data }
    })
}

pub struct Registry {
    data: Data,
}

/// A version of a definition file: `major.minor.patch[-pre]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    nums: (u64, u64, u64),
    /// A release sorts after its pre-releases.
    release: bool,
    pre: String,
}

impl Version {
    fn parse(s: &str) -> Option<Self> {
        let (core, pre) = s.split_once('-').map_or((s, ""), |(c, p)| (c, p));
        let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
        let major = it.next()??;
        let minor = it.next().unwrap_or(Some(0))?;
        let patch = it.next().unwrap_or(Some(0))?;
        if it.next().is_some() {
            return None;
        }
        Some(Self {
            nums: (major, minor, patch),
            release: pre.is_empty(),
            pre: pre.to_owned(),
        })
    }
}

/// A Poetry-style constraint: `^1.0.0`, `~1.2`, `>=1.0,<2.0`, or an exact pin.
enum Constraint {
    /// Bounds that consider stable versions only.
    Range(Vec<(String, Version)>),
    Exact(Version),
}

fn caret_upper(v: &Version) -> Version {
    let (a, b, c) = v.nums;
    let nums = match (a, b) {
        (0, 0) => (0, 0, c + 1),
        (0, _) => (0, b + 1, 0),
        _ => (a + 1, 0, 0),
    };
    Version {
        nums,
        release: false,
        pre: String::new(),
    }
}

fn parse_constraint(c: &str) -> Option<Constraint> {
    let c = c.trim();
    if let Some(v) = c.strip_prefix('^') {
        let v = Version::parse(v.trim())?;
        return Some(Constraint::Range(vec![
            (">=".into(), v.clone()),
            ("<".into(), caret_upper(&v)),
        ]));
    }
    if let Some(v) = c.strip_prefix('~').filter(|v| !v.starts_with('=')) {
        let v = Version::parse(v.trim())?;
        let upper = Version {
            nums: (v.nums.0, v.nums.1 + 1, 0),
            release: false,
            pre: String::new(),
        };
        return Some(Constraint::Range(vec![
            (">=".into(), v),
            ("<".into(), upper),
        ]));
    }
    if c.starts_with(['>', '<', '=', '!']) {
        let mut bounds = Vec::new();
        for part in c.split(',') {
            let part = part.trim();
            let op_len = part
                .find(|ch: char| ch.is_ascii_digit())
                .filter(|&i| i > 0)?;
            let (op, v) = part.split_at(op_len);
            let op = op.trim();
            if !matches!(op, ">=" | ">" | "<=" | "<" | "==" | "!=") {
                return None;
            }
            bounds.push((op.to_owned(), Version::parse(v.trim())?));
        }
        return Some(Constraint::Range(bounds));
    }
    Version::parse(c).map(Constraint::Exact)
}

fn satisfies(v: &Version, bounds: &[(String, Version)]) -> bool {
    v.release
        && bounds.iter().all(|(op, b)| match op.as_str() {
            ">=" => v >= b,
            ">" => v > b,
            "<=" => v <= b,
            "<" => v < b,
            "==" => v.nums == b.nums,
            _ => v.nums != b.nums,
        })
}

/// `['0.0.1-dev', '1.0.0']`: Python's repr of the folder's versions, sorted as strings.
fn available(versions: &[&str]) -> String {
    let mut v: Vec<&str> = versions.to_vec();
    v.sort_unstable();
    let items: Vec<String> = v.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", items.join(", "))
}

impl Registry {
    pub fn prompt(&self, id: &str) -> Option<&'static Prompt> {
        registry().data.prompt.iter().find(|p| p.id == id)
    }

    /// Whether `name` is a model family of `models.yml` that the twin knows.
    pub fn family(&self, name: &str) -> Option<&'static Family> {
        registry().data.families.get(name)
    }

    /// The definition `family` gets for `id` under `constraint` (default `^1.0.0`). An unknown
    /// family searches `base` only, as GitLab's own models do.
    pub fn resolve(
        &self,
        id: &str,
        family: &str,
        constraint: Option<&str>,
    ) -> Option<Result<Resolved, ResolveError>> {
        let prompt = self.prompt(id)?;
        let base = ["base".to_owned()];
        let search = self.family(family).map_or(&base[..], |f| &f.search[..]);
        let folder = search
            .iter()
            .find(|f| prompt.definition.iter().any(|d| &d.folder == *f))?;
        let files: Vec<&'static Definition> = prompt
            .definition
            .iter()
            .filter(|d| &d.folder == folder)
            .collect();
        let names: Vec<&str> = files
            .iter()
            .flat_map(|d| d.versions.iter().map(String::as_str))
            .collect();
        let c = constraint.unwrap_or("^1.0.0");
        let chosen = match parse_constraint(c) {
            Some(Constraint::Range(bounds)) => names
                .iter()
                .filter_map(|n| Some((Version::parse(n)?, *n)))
                .filter(|(v, _)| satisfies(v, &bounds))
                .max()
                .map(|(_, n)| n)
                .ok_or_else(|| {
                    ResolveError::NoMatch(format!(
                        "No version matching '{c}' (available: {})",
                        available(&names)
                    ))
                }),
            Some(Constraint::Exact(v)) => names
                .iter()
                .find(|n| Version::parse(n).as_ref() == Some(&v))
                .copied()
                .ok_or_else(|| {
                    ResolveError::NoMatch(format!(
                        "No version matching '{c}' (available: {})",
                        available(&names)
                    ))
                }),
            None => names.iter().find(|n| **n == c).copied().ok_or_else(|| {
                ResolveError::Invalid(format!(
                    "Version '{c}' is not a valid PEP 440 constraint and no exact match found (available: {})",
                    available(&names)
                ))
            }),
        };
        Some(chosen.map(|version| {
            let definition = files
                .iter()
                .find(|d| d.versions.iter().any(|v| v == version))
                .expect("the version came from these files");
            let fam = self.family(family);
            Resolved {
                prompt,
                definition,
                version: version.to_owned(),
                max_tokens: definition.max_tokens.or(fam.and_then(|f| f.max_tokens)),
                temperature: definition.temperature.or(fam.and_then(|f| f.temperature)),
                stop: definition.stop.iter().map(String::as_str).collect(),
                timeout_s: definition.timeout.unwrap_or(30.0),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(id: &str, family: &str, c: Option<&str>) -> Result<Resolved, ResolveError> {
        registry().resolve(id, family, c).expect("known prompt")
    }

    /// (prompt, family, version, max_tokens, temperature, stop count).
    type Row = (
        &'static str,
        &'static str,
        &'static str,
        Option<u32>,
        Option<f64>,
        usize,
    );

    /// (prompt, family) → (version, max_tokens, temperature, stop count) from PROMPTS.md's
    /// table (b).
    #[rustfmt::skip]
    const TABLE_B: &[Row] = &[
        ("chat/explain_code", "mistral", "1.1.0", Some(2048), Some(0.0), 0),
        ("chat/explain_code", "gpt", "1.1.0", Some(2048), None, 0),
        ("chat/write_tests", "mixtral", "1.1.0", Some(2048), Some(0.0), 0),
        ("chat/write_tests", "codestral", "1.1.0", Some(2048), Some(0.3), 0),
        ("chat/write_tests", "claude_3", "1.2.0", Some(2048), Some(0.1), 0),
        ("chat/fix_code", "mistral", "1.2.0", Some(2048), Some(0.1), 0),
        ("chat/explain_vulnerability", "codestral", "1.0.0", Some(2048), Some(0.0), 0),
        ("chat/explain_vulnerability", "gpt", "1.0.0", Some(2048), None, 0),
        ("generate_commit_message", "mistral", "1.2.0", Some(4096), Some(0.0), 0),
        ("generate_commit_message", "gpt", "1.2.0", None, None, 0),
        ("summarize_new_merge_request", "qwen", "1.0.0", Some(8192), Some(0.0), 0),
        ("review_merge_request", "mistral", "1.3.0", Some(8192), Some(0.0), 0),
        ("resolve_vulnerability", "gemini", "1.0.2", Some(65536), Some(0.1), 0),
        ("code_suggestions/completions", "codestral", "1.0.0", Some(64), Some(0.32), 5),
        ("code_suggestions/completions", "claude_3", "1.0.0", Some(128), Some(0.0), 0),
        ("code_suggestions/generations", "mixtral", "1.0.0", Some(4096), Some(0.0), 0),
        ("code_suggestions/generations", "claude_3", "1.2.0", Some(2048), Some(0.2), 1),
    ];

    #[test]
    fn the_registry_parses_and_resolves_as_prompts_md_says() {
        for &(id, family, version, max, temp, stops) in TABLE_B {
            let r = get(id, family, None).unwrap();
            assert_eq!(
                (
                    r.version.as_str(),
                    r.max_tokens,
                    r.temperature,
                    r.stop.len()
                ),
                (version, max, temp, stops),
                "{id} {family}"
            );
        }
        assert_eq!(
            get("summarize_review", "mistral", Some("^3.0.0"))
                .unwrap()
                .version,
            "3.0.0"
        );
        assert_eq!(
            get("code_suggestions/generations", "claude_3", Some("^2.0.0"))
                .unwrap()
                .version,
            "2.0.3"
        );
        assert_eq!(
            get("chat/troubleshoot_job", "mistral", Some("1.0.1-alpha"))
                .unwrap()
                .version,
            "1.0.1-alpha"
        );
    }

    #[test]
    fn version_errors_are_the_real_messages() {
        let avail = "['0.0.1-dev', '1.0.0', '1.0.1', '1.1.0', '1.1.0-dev']";
        assert_eq!(
            get("chat/explain_code", "mistral", Some("^9.0.0")).unwrap_err(),
            ResolveError::NoMatch(format!("No version matching '^9.0.0' (available: {avail})"))
        );
        assert_eq!(
            get("chat/explain_code", "mistral", Some("not-a-version")).unwrap_err(),
            ResolveError::Invalid(format!(
                "Version 'not-a-version' is not a valid PEP 440 constraint and no exact match found (available: {avail})"
            ))
        );
        assert!(registry().resolve("chat/nope", "mistral", None).is_none());
    }
}
