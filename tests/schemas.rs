//! The checked-in schemas of the run folder's documents are the ones their types generate:
//! a change to a document's type changes its schema in the same commit
//! (`cargo run -- schemas --out schemas`).

mod common;

#[test]
fn the_checked_in_schemas_are_the_generated_ones() {
    let dir = common::repo().join("schemas");
    let mut stale = Vec::new();
    for d in duo_harness::cmd::schemas::documents() {
        let path = dir.join(d.file);
        let checked_in: Option<serde_json::Value> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if checked_in.as_ref() != Some(&d.schema()) {
            stale.push(d.file);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from what their types generate: `cargo run -- schemas --out schemas`"
    );
}

#[test]
fn a_generated_schema_refuses_what_its_type_refuses() {
    let d = duo_harness::cmd::schemas::documents();
    let comparison = d
        .iter()
        .find(|d| d.file == "comparison-v1.schema.json")
        .unwrap();
    let v = jsonschema::validator_for(&comparison.schema()).unwrap();
    let doc = serde_json::json!({"schema": "duo-harness/comparison/v1", "verdict": "maybe"});
    assert!(
        !v.is_valid(&doc),
        "an unknown verdict and missing fields are refused"
    );
}
