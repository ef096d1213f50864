//! Where a scenario's paths resolve. A path written in the file resolves against the file's
//! folder. A path whose value the environment gave (it begins with `${VAR}` and `VAR` is set,
//! as in `key_file = "${DUO_AIGW_KEY_FILE:-aigw-key.pem}"` with the variable exported) resolves
//! against the working directory, where the user typed it; its default, when taken, was
//! written in the file and resolves against the file's folder. Absolute paths stay as they are.

use std::path::{Path, PathBuf};

/// The scenario's folder and its text before expansion.
pub(super) struct Paths<'a> {
    base: &'a Path,
    raw: &'a toml::Table,
}

impl<'a> Paths<'a> {
    pub(super) fn new(base: &'a Path, raw: &'a toml::Table) -> Self {
        Self { base, raw }
    }

    /// `path` (the expanded value at `keys`, the `index`th of a list there) resolved.
    pub(super) fn resolve(&self, keys: &[&str], index: Option<usize>, path: &Path) -> PathBuf {
        match self.written(keys, index).is_some_and(from_environment) {
            true => path.to_path_buf(),
            false => self.base.join(path),
        }
    }

    /// The value at `keys` as written, before expansion.
    fn written(&self, keys: &[&str], index: Option<usize>) -> Option<&'a str> {
        let (last, parents) = keys.split_last()?;
        let mut table = self.raw;
        for k in parents {
            table = table.get(*k)?.as_table()?;
        }
        let value = table.get(*last)?;
        match index {
            Some(i) => value.as_array()?.get(i)?.as_str(),
            None => value.as_str(),
        }
    }
}

/// Whether a written value begins with a variable the environment sets (a nested default's
/// variable included): then the value came from the environment.
fn from_environment(written: &str) -> bool {
    let Some(rest) = written.strip_prefix("${") else {
        return false;
    };
    let name_end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let set = std::env::var(&rest[..name_end]).is_ok_and(|v| !v.is_empty());
    set || rest[name_end..]
        .strip_prefix(":-")
        .is_some_and(from_environment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_the_environment_gave_resolves_where_it_was_typed() {
        std::env::set_var("DUO_PATHS_TEST_SET", "keys/k.pem");
        std::env::remove_var("DUO_PATHS_TEST_UNSET");
        let raw: toml::Table = toml::from_str(
            r#"corpus = ["a.jsonl", "${DUO_PATHS_TEST_SET}"]
               [target]
               key_file = "${DUO_PATHS_TEST_UNSET:-${DUO_PATHS_TEST_SET}}"
               ca_bundle = "${DUO_PATHS_TEST_UNSET:-ca.pem}""#,
        )
        .unwrap();
        let p = Paths::new(Path::new("/scenarios"), &raw);
        let at = |keys: &[&str], i, v: &str| p.resolve(keys, i, Path::new(v));
        assert_eq!(
            at(&["target", "key_file"], None, "k.pem"),
            Path::new("k.pem")
        );
        assert_eq!(
            at(&["target", "ca_bundle"], None, "ca.pem"),
            Path::new("/scenarios/ca.pem")
        );
        assert_eq!(
            at(&["corpus"], Some(0), "a.jsonl"),
            Path::new("/scenarios/a.jsonl")
        );
        assert_eq!(at(&["corpus"], Some(1), "c.jsonl"), Path::new("c.jsonl"));
        assert_eq!(
            at(&["corpus"], Some(1), "/abs/c.jsonl"),
            Path::new("/abs/c.jsonl")
        );
    }
}
