//! `[remap]` and `run --remap OLD=NEW`: recorded model endpoints moved to another stack.
//!
//! A recording keeps the model selection GitLab sent with each request (a chat sub-feature's
//! own `model_metadata`, an Agent Platform session's model-metadata header), and that selection
//! names the recording stack's backend. Replayed elsewhere it must move: each entry maps a
//! recorded endpoint to a new one, an http(s) URL or `twin:<backend>` (a backend of the
//! embedded stack). Endpoints match whole, a trailing `/` aside; the flag wins over the table.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Recorded endpoint (without a trailing `/`) → where requests naming it now go.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Remap(pub BTreeMap<String, String>);

/// An endpoint as compared: a trailing `/` is no difference.
fn normal(endpoint: &str) -> &str {
    endpoint.trim_end_matches('/')
}

impl Remap {
    /// The table as written, with the `--remap OLD=NEW` flags applied over it, each checked:
    /// an old endpoint must be an http(s) URL; a new one an http(s) URL or `twin:<backend>`.
    pub fn resolve(table: &BTreeMap<String, String>, flags: &[String]) -> Result<Self, String> {
        let mut out = BTreeMap::new();
        for (old, new) in table {
            add(&mut out, &format!("remap.\"{old}\""), old, new)?;
        }
        for flag in flags {
            let (old, new) = flag.split_once('=').ok_or_else(|| {
                format!("--remap '{flag}': expected OLD=NEW (a recorded endpoint = a URL or twin:<backend>)")
            })?;
            add(
                &mut out,
                &format!("--remap '{flag}'"),
                old.trim(),
                new.trim(),
            )?;
        }
        Ok(Self(out))
    }

    /// Where a request that names `endpoint` goes now, if it moves.
    pub fn target(&self, endpoint: &str) -> Option<&str> {
        self.0.get(normal(endpoint)).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `twin:<backend>` targets (they need the embedded stack's backends).
    pub fn twins(&self) -> impl Iterator<Item = &str> {
        self.0.values().filter_map(|v| v.strip_prefix("twin:"))
    }
}

fn add(out: &mut BTreeMap<String, String>, key: &str, old: &str, new: &str) -> Result<(), String> {
    super::check::url(key, old).map_err(|e| e.0)?;
    match new.strip_prefix("twin:") {
        Some("") => return Err(format!("{key}: 'twin:' names no backend")),
        Some(_) => {}
        None => super::check::url(key, new).map_err(|e| e.0)?,
    }
    out.insert(normal(old).to_owned(), normal(new).to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_table_and_slashes_do_not_matter() {
        let table = BTreeMap::from([("http://old:8000/v1/".to_owned(), "twin:a".to_owned())]);
        let flags = ["http://old:8000/v1=http://new:9000/v1/".to_owned()];
        let r = Remap::resolve(&table, &flags).unwrap();
        assert_eq!(r.target("http://old:8000/v1"), Some("http://new:9000/v1"));
        assert_eq!(r.target("http://old:8000/v1/"), Some("http://new:9000/v1"));
        assert_eq!(r.target("http://old:8000"), None);
    }

    #[test]
    fn bad_entries_are_named() {
        let none = BTreeMap::new();
        for (flag, says) in [
            ("no-equals", "expected OLD=NEW"),
            ("ftp://x/v1=twin:a", "not an http(s) URL"),
            ("http://x/v1=twin:", "names no backend"),
            ("http://x/v1=http://u:p@y/v1", "credentials"),
        ] {
            let e = Remap::resolve(&none, &[flag.to_owned()]).unwrap_err();
            assert!(e.contains(says), "{flag}: {e}");
        }
    }
}
