//! The JSON Schemas of the run folder's documents, made from the Rust types that write and read
//! them: `schemas/` holds them, and a test holds the checked-in files equal to these
//! (`duo-harness schemas --out schemas` writes them again). The corpus and snapshot schemas are
//! the inputs' contracts, written by hand with more than their types say (feature names).

use serde_json::Value;

/// One document: its schema file, its version id, what it is, and its schema.
pub struct Document {
    pub file: &'static str,
    pub id: &'static str,
    pub title: &'static str,
    make: fn() -> schemars::Schema,
}

impl Document {
    /// The schema, with its id and title.
    pub fn schema(&self) -> Value {
        let mut v = (self.make)().to_value();
        if let Some(o) = v.as_object_mut() {
            o.insert("$id".into(), self.id.into());
            o.insert("title".into(), self.title.into());
        }
        v
    }
}

macro_rules! document {
    ($file:literal, $id:expr, $title:literal, $ty:ty) => {
        Document {
            file: $file,
            id: $id,
            title: $title,
            make: || schemars::schema_for!($ty),
        }
    };
}

/// Every document with a schema.
pub fn documents() -> Vec<Document> {
    use crate::{compare, measure, plan, verdict};
    vec![
        document!(
            "plan-v1.schema.json",
            plan::PLAN_SCHEMA,
            "plan.json: the resolved plan a run followed",
            plan::PlanDocument
        ),
        document!(
            "result-v1.schema.json",
            measure::RESULT_SCHEMA,
            "results.ndjson: one line per request",
            measure::RequestRecord
        ),
        document!(
            "summary-v1.schema.json",
            verdict::SUMMARY_SCHEMA,
            "summary.json: the run's verdict, figures, self-audit and findings",
            verdict::Summary
        ),
        document!(
            "histograms-v1.schema.json",
            verdict::HISTOGRAMS_SCHEMA,
            "histograms.json: mergeable HDR histograms per feature and metric",
            verdict::Histograms
        ),
        document!(
            "preflight-v1.schema.json",
            verdict::PREFLIGHT_SCHEMA,
            "preflight.json: the stages a run judged before sending its load",
            verdict::Preflight
        ),
        document!(
            "comparison-v1.schema.json",
            compare::COMPARISON_SCHEMA,
            "comparison.json: a run against its baseline (duo-harness compare, [gate] baseline)",
            compare::Comparison
        ),
        document!(
            "capacity-v1.schema.json",
            crate::capacity::CAPACITY_SCHEMA,
            "capacity.json: the highest rate at which every feature meets its SLO",
            crate::capacity::Capacity
        ),
    ]
}

/// `duo-harness schemas --out DIR`: writes every schema.
pub fn write(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for d in documents() {
        let text = serde_json::to_string_pretty(&d.schema())? + "\n";
        std::fs::write(dir.join(d.file), text)?;
    }
    Ok(())
}
