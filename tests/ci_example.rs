//! `examples/gitlab-ci.yml` read as GitLab reads it (YAML): the job has what a merge-request gate
//! needs (rules, the JUnit report, artifacts kept on failure, a commented-out allow_failure for
//! exit 4), its image can build the locked dependencies (the Rust of `rust-version`), its cache
//! holds what Cargo downloads, a failed note post cannot fail the job, and it cites no file the
//! repository does not have.

use serde_yaml_ng::Value;

fn example() -> (String, Value) {
    let text = std::fs::read_to_string("examples/gitlab-ci.yml").unwrap();
    let yaml = serde_yaml_ng::from_str(&text).unwrap();
    (text, yaml)
}

fn rust_version() -> String {
    let toml: toml::Value = std::fs::read_to_string("Cargo.toml")
        .unwrap()
        .parse()
        .unwrap();
    toml["package"]["rust-version"].as_str().unwrap().to_owned()
}

#[test]
fn the_ci_example_is_a_gitlab_job_with_what_a_gate_needs() {
    let (text, yaml) = example();
    let job = &yaml["duo-harness-gate"];
    assert!(job.is_mapping(), "the job is defined");
    let rules = job["rules"].as_sequence().expect("rules");
    assert!(rules.iter().any(|r| r["if"]
        .as_str()
        .is_some_and(|c| c.contains("merge_request_event"))));
    assert_eq!(
        job["artifacts"]["reports"]["junit"].as_str(),
        Some("reports/run/junit.xml")
    );
    assert_eq!(job["artifacts"]["when"].as_str(), Some("always"));
    assert!(
        text.contains("allow_failure:\n  #   exit_codes: [4]"),
        "exit 4 may be made a warning"
    );
    // The image builds the locked dependencies.
    let image = job["image"].as_str().unwrap();
    assert!(
        image.starts_with(&format!("rust:{}", rust_version())),
        "{image} against rust-version {}",
        rust_version()
    );
    // The cache holds what Cargo downloads: CARGO_HOME inside the project.
    let home = job["variables"]["CARGO_HOME"].as_str().unwrap();
    assert_eq!(home, "$CI_PROJECT_DIR/.cargo");
    let paths: Vec<&str> = job["cache"]["paths"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(paths.contains(&".cargo/registry/"), "{paths:?}");
    // A failed note post warns; the job's outcome stays the run's.
    let script: Vec<&str> = job["script"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let posting = script.iter().find(|s| s.contains("curl")).unwrap();
    assert!(
        posting.contains("|| echo \"duo-harness: WARNING"),
        "{posting}"
    );
    assert!(posting.trim_end().ends_with("exit \"$code\""), "{posting}");
}

#[test]
fn the_ci_example_cites_only_files_the_repository_has() {
    let (text, _) = example();
    for word in text.split(|c: char| c.is_whitespace() || "(),`'\"".contains(c)) {
        let cited = word.trim_end_matches([':', '.', ';']);
        let is_file = cited.ends_with(".md") || cited.ends_with(".toml");
        // A repository file: a path (scenarios/x.toml) or a document (DESIGN.md), not one of
        // the run's outputs (report.md, reports/run/...).
        let repository = cited.contains('/') || cited.starts_with(|c: char| c.is_ascii_uppercase());
        if is_file && repository && !cited.contains(['$', '@']) && !cited.starts_with("reports/") {
            assert!(
                std::path::Path::new(cited).exists(),
                "examples/gitlab-ci.yml cites {cited}, which the repository does not have"
            );
        }
    }
}
