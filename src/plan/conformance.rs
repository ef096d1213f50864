//! The scenario's `[conformance]` section: where the snapshots are, the content policy per
//! feature, the margins above the noise floor, and the masks. The conformance stage reads it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The scenario's `[conformance]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConformanceSpec {
    /// Snapshot folder, relative to the scenario file; unset: no conformance check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<PathBuf>,
    /// Content policy for features without their own.
    #[serde(default)]
    pub content: ContentPolicy,
    /// Token-similarity threshold of `similarity` (0..1).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    #[serde(default)]
    pub features: BTreeMap<String, FeaturePolicy>,
    /// How far above the measured noise a difference rate must be to count.
    #[serde(default)]
    pub margins: Margins,
    /// Volatile fields of the snapshot, masked before comparing and writing: selectors in the
    /// redaction grammar (`.text`, `.upstream.params.seed`, `.**.temperature`). Runs of 16+ hex
    /// digits in the text (request ids, the security tag) are always masked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masks: Vec<String>,
}

/// A `conformance.masks` entry that is no selector.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MaskError(pub String);

impl ConformanceSpec {
    /// The masks as redaction rules; the message names the bad selector.
    pub fn mask_rules(&self) -> Result<Vec<crate::redact::Rule>, MaskError> {
        self.mask_rules_text().map_err(MaskError)
    }

    fn mask_rules_text(&self) -> Result<Vec<crate::redact::Rule>, String> {
        self.masks
            .iter()
            .map(|m| format!("{m}=mask").parse())
            .collect()
    }

    /// The content policy and threshold of `feature`.
    pub fn policy(&self, feature: &str) -> (ContentPolicy, f64) {
        let p = self.features.get(feature);
        (
            p.and_then(|p| p.content).unwrap_or(self.content),
            p.and_then(|p| p.threshold).unwrap_or(self.threshold),
        )
    }
}

fn default_threshold() -> f64 {
    0.8
}

#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ContentPolicy {
    /// The text must be equal.
    #[default]
    Exact,
    /// Equal after collapsing whitespace.
    Normalized,
    /// Token-set similarity (Jaccard) at or above the threshold.
    Similarity,
    /// The text is not compared (protocol only).
    Ignore,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeaturePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// Margins a candidate difference rate must clear above the noise (Diffy's defaults).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Margins {
    /// Relative: the candidate rate must pass noise × (1 + relative)...
    #[serde(default = "default_relative")]
    pub relative: f64,
    /// ...and noise + absolute.
    #[serde(default = "default_absolute")]
    pub absolute: f64,
}

impl Default for Margins {
    fn default() -> Self {
        Self {
            relative: default_relative(),
            absolute: default_absolute(),
        }
    }
}

fn default_relative() -> f64 {
    0.20
}
fn default_absolute() -> f64 {
    0.0003
}

impl Margins {
    /// Whether a `candidate` difference rate stands out of the `noise` rate.
    pub fn exceeds(&self, candidate: f64, noise: f64) -> bool {
        candidate > noise * (1.0 + self.relative) && candidate > noise + self.absolute
    }
}
