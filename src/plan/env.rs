//! `${NAME}` and `${NAME:-default}` in a scenario's text, expanded from the environment before
//! it is parsed.

/// Replaces every `${NAME}` (or `${NAME:-default}`) with the environment variable's value,
/// escaped for a TOML string, so one scenario serves every site: the AIGW URL and the backend
/// URLs come from the environment. An unset variable without a default is an error naming it
/// and its line. Comment lines are left as they are.
pub fn expand(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("${") {
            let Some(end) = rest[i..].find('}') else {
                break;
            };
            let inner = &rest[i + 2..i + end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid || line.trim_start().starts_with('#') {
                out.push_str(&rest[..i + end + 1]);
                rest = &rest[i + end + 1..];
                continue;
            }
            let value = match (std::env::var(name), default) {
                (Ok(v), _) => v,
                (Err(_), Some(d)) => d.to_owned(),
                (Err(_), None) => {
                    return Err(format!(
                        "line {}: environment variable {name} is not set",
                        n + 1
                    ))
                }
            };
            out.push_str(&rest[..i]);
            out.push_str(&value.replace('\\', "\\\\").replace('"', "\\\""));
            rest = &rest[i + end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
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
}
