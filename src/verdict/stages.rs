//! A run's stages as checks of their own (health, models, DWS before the load; replay, routing,
//! conformance, SLO, audit and gate after it), and `preflight.json`, the ones judged before the
//! load.

use serde::{Deserialize, Serialize};

/// One stage of a run, judged.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Stage {
    pub name: String,
    pub status: StageStatus,
    /// What it saw.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "status", content = "message", rename_all = "lowercase")]
pub enum StageStatus {
    Passed,
    Failed(String),
    Skipped(String),
}

/// The preflight stage that asks each model endpoint for its models.
pub const MODELS_STAGE: &str = "models";

impl Stage {
    /// The finding a failure of this stage is: a model endpoint that does not serve its model
    /// is the stack not being there (`model_endpoint`, exit 3); any other, `preflight`.
    pub fn failure_kind(&self) -> super::FindingKind {
        match self.name == MODELS_STAGE {
            true => super::FindingKind::ModelEndpoint,
            false => super::FindingKind::Preflight,
        }
    }
}

/// The version of `preflight.json` this build writes and reads.
pub const PREFLIGHT_SCHEMA: &str = "duo-harness/preflight/v1";

/// `preflight.json`: the stages a run judged before it sent its load (health, models, DWS).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Preflight {
    pub schema: String,
    pub stages: Vec<Stage>,
}

impl Preflight {
    pub fn new(stages: Vec<Stage>) -> Self {
        Self {
            schema: PREFLIGHT_SCHEMA.into(),
            stages,
        }
    }
}
