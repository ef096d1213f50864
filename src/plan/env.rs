//! `${NAME}` and `${NAME:-default}` in a scenario's text, expanded from the environment before
//! it is parsed.

use std::collections::BTreeMap;

/// Replaces every `${NAME}` (or `${NAME:-default}`, where the default may hold references of its
/// own: `${A:-${B}/x}`) with the environment variable's value, escaped for a TOML string, so one
/// scenario serves every site: the AIGW URL and the backend URLs come from the environment.
/// Every unset variable without a default is named at once, with its lines, so an operator
/// learns them all from one try. Comment lines are left as they are.
pub fn expand(text: &str) -> Result<String, String> {
    let mut missing: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut unset = Vec::new();
        out.push_str(&expand_line(line, &mut unset));
        for name in unset {
            missing.entry(name).or_default().push(n + 1);
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let named: Vec<String> = missing
        .iter()
        .map(|(name, lines)| {
            let lines: Vec<String> = lines.iter().map(ToString::to_string).collect();
            format!("{name} (line {})", lines.join(", "))
        })
        .collect();
    Err(format!(
        "{} environment variable(s) not set: {}",
        named.len(),
        named.join("; ")
    ))
}

/// The index of the `}` closing a reference whose `${` ends just before `s`.
fn closing(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// One line (or a default's text) with its references expanded; unset names go to `unset`.
fn expand_line(line: &str, unset: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("${") {
        let Some(end) = closing(&rest[i + 2..]) else {
            break;
        };
        let inner = &rest[i + 2..i + 2 + end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..i]);
        match (valid, std::env::var(name), default) {
            (false, _, _) => out.push_str(&rest[i..i + 3 + end]),
            (true, Ok(v), _) => out.push_str(&v.replace('\\', "\\\\").replace('"', "\\\"")),
            (true, Err(_), Some(d)) => out.push_str(&expand_line(d, unset)),
            (true, Err(_), None) => unset.push(name.to_owned()),
        }
        rest = &rest[i + 3 + end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_variables_are_expanded_and_unset_ones_named() {
        std::env::set_var("DUO_PLAN_TEST_URL", "http://127.0.0.1:5052");
        let t = expand("url = \"${DUO_PLAN_TEST_URL}\"\n# ${NOT_EXPANDED}\n").unwrap();
        assert_eq!(t, "url = \"http://127.0.0.1:5052\"\n# ${NOT_EXPANDED}\n");
        let t = expand("k = \"${DUO_PLAN_TEST_UNSET_VAR:-fallback}\"").unwrap();
        assert_eq!(t, "k = \"fallback\"");
        let e = expand("a = 1\nb = \"${DUO_PLAN_TEST_UNSET_VAR}\"\n").unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("DUO_PLAN_TEST_UNSET_VAR"),
            "{e}"
        );
    }

    #[test]
    fn every_unset_variable_is_named_at_once_and_defaults_may_refer_to_others() {
        let e = expand("a = \"${DUO_PLAN_UNSET_A}\"\nb = \"${DUO_PLAN_UNSET_B}\"\nc = \"${DUO_PLAN_UNSET_A}\"\n")
            .unwrap_err();
        assert!(e.starts_with("2 environment variable(s) not set"), "{e}");
        assert!(e.contains("DUO_PLAN_UNSET_A (line 1, 3)"), "{e}");
        assert!(e.contains("DUO_PLAN_UNSET_B (line 2)"), "{e}");
        std::env::set_var("DUO_PLAN_TEST_BASE", "/b");
        let t = expand("s = \"${DUO_PLAN_UNSET_C:-${DUO_PLAN_TEST_BASE}/snapshots}\"").unwrap();
        assert_eq!(t, "s = \"/b/snapshots\"");
        let e = expand("s = \"${DUO_PLAN_UNSET_C:-${DUO_PLAN_UNSET_D}/x}\"").unwrap_err();
        assert!(e.contains("DUO_PLAN_UNSET_D (line 1)"), "{e}");
    }
}
