//! The servers' own tokenizers, for answers that carry no `usage`: a scenario names a
//! `tokenizer.json` per feature (or one `default`), read once before the run.
//!
//! In: the plan's tokenizer paths. Out: a [`TokenCounter`] per feature for
//! [`super::recorder::finish_tokens`].

use super::recorder::TokenCounter;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl TokenCounter for tokenizers::Tokenizer {
    fn count(&self, text: &str) -> Option<u64> {
        // Special tokens (BOS) are not part of the generated text.
        self.encode(text, false).ok().map(|e| e.len() as u64)
    }
}

/// Tokenizers by feature, with an optional default.
#[derive(Clone, Default)]
pub struct Tokenizers {
    by_feature: BTreeMap<String, Arc<dyn TokenCounter>>,
}

/// A tokenizer file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("tokenizers.{feature}: {}: {message}", path.display())]
pub struct TokenizerError {
    pub feature: String,
    pub path: PathBuf,
    pub message: String,
}

impl Tokenizers {
    /// Reads every file (each path once); the error names the file and what is wrong with it.
    pub fn load(paths: &BTreeMap<String, PathBuf>) -> Result<Self, TokenizerError> {
        let mut read: BTreeMap<&Path, Arc<dyn TokenCounter>> = BTreeMap::new();
        let mut by_feature = BTreeMap::new();
        for (feature, path) in paths {
            let counter = match read.get(path.as_path()) {
                Some(c) => c.clone(),
                None => {
                    let t = tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizerError {
                        feature: feature.clone(),
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                    let c: Arc<dyn TokenCounter> = Arc::new(t);
                    read.insert(path, c.clone());
                    c
                }
            };
            by_feature.insert(feature.clone(), counter);
        }
        Ok(Self { by_feature })
    }

    /// The tokenizer that counts `feature`'s answers: its own, else the default.
    pub fn for_feature(&self, feature: &str) -> Option<&dyn TokenCounter> {
        self.by_feature
            .get(feature)
            .or_else(|| self.by_feature.get("default"))
            .map(|c| c.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words() -> BTreeMap<String, PathBuf> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer-words.json");
        BTreeMap::from([("default".to_owned(), p)])
    }

    /// A word-level tokenizer (the test fixture): one token per word or run of punctuation.
    #[test]
    fn a_tokenizer_file_counts_and_falls_back_to_the_default() {
        let t = Tokenizers::load(&words()).unwrap();
        let c = t.for_feature("code_completions").unwrap();
        assert_eq!(c.count(" def total(x): return x"), Some(7));
        assert_eq!(c.count(""), Some(0));
    }

    #[test]
    fn a_missing_or_broken_file_is_named() {
        let mut paths = words();
        paths.insert(
            "duo_chat".into(),
            PathBuf::from("/nonexistent/tokenizer.json"),
        );
        let e = Tokenizers::load(&paths).err().unwrap().to_string();
        assert!(
            e.contains("tokenizers.duo_chat") && e.contains("/nonexistent"),
            "{e}"
        );
        let bad = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let e = Tokenizers::load(&BTreeMap::from([("default".into(), bad)]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("Cargo.toml"), "{e}");
    }
}
