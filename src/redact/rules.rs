//! User redaction rules over JSON bodies (`--redact SELECTOR=MODE`): selectors `.a.b`,
//! `.messages[].content`, `.**.content`; modes drop, hash, keep-length (and mask, for volatile
//! snapshot fields).

use serde_json::Value;

/// What a [`Rule`] does to the values it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Remove the field.
    Drop,
    /// Replace the value by `sha256:` and the first 16 hex digits of its JSON text's digest
    /// (equal inputs stay equal, so duplicates remain visible).
    Hash,
    /// Replace letters by `x` and digits by `0`, keeping every other character: the length, the
    /// layout and the token count (for load replay) stay realistic.
    KeepLength,
    /// Replace the value by `[masked]` (volatile fields in snapshots).
    Mask,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    /// `[]`: every element of an array.
    Each,
    /// `**`: any depth, this level included.
    Any,
}

/// A user redaction rule: `SELECTOR=MODE`, e.g. `.current_file.content_above_cursor=keep-length`,
/// `.messages[].content=hash`, `.**.content=drop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    steps: Vec<Step>,
    pub mode: Mode,
    text: String,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Rule {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (sel, mode) = text.rsplit_once('=').ok_or_else(|| {
            format!("redaction rule '{text}': expected SELECTOR=drop|hash|keep-length")
        })?;
        let mode = match mode {
            "drop" => Mode::Drop,
            "hash" => Mode::Hash,
            "keep-length" => Mode::KeepLength,
            "mask" => Mode::Mask,
            m => return Err(format!("redaction rule '{text}': unknown mode '{m}'")),
        };
        let body = sel
            .strip_prefix('.')
            .ok_or_else(|| format!("redaction rule '{text}': a selector starts with '.'"))?;
        let mut steps = Vec::new();
        for part in body.split('.') {
            let (key, each) = match part.strip_suffix("[]") {
                Some(k) => (k, true),
                None => (part, false),
            };
            match key {
                "" if each => {}
                "" => return Err(format!("redaction rule '{text}': empty key")),
                "**" => steps.push(Step::Any),
                k => steps.push(Step::Key(k.to_owned())),
            }
            if each {
                steps.push(Step::Each);
            }
        }
        Ok(Rule {
            steps,
            mode,
            text: text.to_owned(),
        })
    }
}

/// Applies every rule to `v`.
pub fn apply_rules(rules: &[Rule], v: &mut Value) {
    for r in rules {
        walk(v, &r.steps, r.mode);
    }
}

fn walk(v: &mut Value, steps: &[Step], mode: Mode) {
    let Some((step, rest)) = steps.split_first() else {
        transform(v, mode);
        return;
    };
    match (step, v) {
        (Step::Key(k), Value::Object(m)) => {
            if rest.is_empty() && mode == Mode::Drop {
                m.shift_remove(k);
            } else if let Some(x) = m.get_mut(k) {
                walk(x, rest, mode);
            }
        }
        (Step::Each, Value::Array(a)) => a.iter_mut().for_each(|x| walk(x, rest, mode)),
        (Step::Any, v) => {
            walk(v, rest, mode);
            match v {
                Value::Object(m) => m.values_mut().for_each(|x| walk(x, steps, mode)),
                Value::Array(a) => a.iter_mut().for_each(|x| walk(x, steps, mode)),
                _ => {}
            }
        }
        _ => {}
    }
}

fn transform(v: &mut Value, mode: Mode) {
    match mode {
        Mode::Drop => *v = Value::Null, // a dropped array element or root keeps its place
        Mode::Hash => {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(v.to_string().as_bytes());
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            *v = Value::String(format!("sha256:{hex}"));
        }
        Mode::KeepLength => keep_length(v),
        Mode::Mask => *v = Value::String("[masked]".into()),
    }
}

fn keep_length(v: &mut Value) {
    match v {
        Value::String(s) => {
            *s = s
                .chars()
                .map(|c| match c {
                    c if c.is_alphabetic() => 'x',
                    c if c.is_numeric() => '0',
                    c => c,
                })
                .collect()
        }
        Value::Array(a) => a.iter_mut().for_each(keep_length),
        Value::Object(m) => m.values_mut().for_each(keep_length),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_drop_hash_and_keep_length() {
        let rules: Vec<Rule> = [
            ".current_file.content_above_cursor=keep-length",
            ".messages[].content=hash",
            ".**.secret_note=drop",
        ]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
        let mut v = json!({
            "current_file": {"content_above_cursor": "def f(x1):\n    return", "file_name": "a.py"},
            "messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "hi"}],
            "deep": {"a": [{"secret_note": 1, "k": 2}]}
        });
        apply_rules(&rules, &mut v);
        assert_eq!(
            v["current_file"]["content_above_cursor"],
            "xxx x(x0):\n    xxxxxx"
        );
        assert_eq!(v["current_file"]["file_name"], "a.py");
        let h = v["messages"][0]["content"].as_str().unwrap();
        assert!(h.starts_with("sha256:") && h.len() == 23, "{h}");
        assert_eq!(v["messages"][1]["content"], h, "equal inputs hash equal");
        assert_eq!(v["deep"]["a"][0], json!({"k": 2}));
        assert!("x=shred".parse::<Rule>().is_err());
        assert!(".a=zap".parse::<Rule>().is_err());
    }
}
