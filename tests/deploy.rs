//! The Kubernetes deployment (`deploy/kubernetes`) and the image (`Dockerfile`): every manifest
//! read strictly into the Kubernetes API's types (k8s-openapi; a field they do not know fails),
//! the example overlay rendered (its patches applied as kustomize applies them), and the
//! wiring checked: completion index → `--slice K/N`, N equal in its three places, the instant
//! zero from a ConfigMap, secrets from Secrets only, resources and a non-root user on every
//! container.

mod common;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, PersistentVolumeClaim};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn deploy() -> PathBuf {
    common::repo().join("deploy/kubernetes")
}

/// A manifest read into `T`, refusing any field `T` does not have.
fn strict<T: DeserializeOwned>(doc: &Value, origin: &str) -> T {
    let mut unknown = Vec::new();
    let value: T = serde_ignored::deserialize(doc.clone(), |path| unknown.push(path.to_string()))
        .unwrap_or_else(|e| panic!("{origin}: {e}"));
    assert!(unknown.is_empty(), "{origin}: unknown fields {unknown:?}");
    value
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// A kustomization, as far as these use it (anything else fails).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Kustomization {
    api_version: String,
    kind: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    images: Vec<Image>,
    #[serde(default)]
    config_map_generator: Vec<Generator>,
    #[serde(default)]
    generator_options: Option<Value>,
    #[serde(default)]
    patches: Vec<Patch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Image {
    name: String,
    new_name: Option<String>,
    new_tag: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Generator {
    name: String,
    #[serde(default)]
    behavior: Option<String>,
    files: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    target: PatchTarget,
    patch: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchTarget {
    kind: String,
    name: String,
}

fn kustomization(dir: &Path) -> Kustomization {
    let text = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    let k: Kustomization = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(k.kind, "Kustomization");
    for file in k
        .resources
        .iter()
        .chain(k.config_map_generator.iter().flat_map(|g| &g.files))
    {
        assert!(
            dir.join(file).exists(),
            "{}: {file} is missing",
            dir.display()
        );
    }
    k
}

/// The objects a kustomization's own resources hold, each read strictly (`kind` → type).
fn resources(dir: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for file in kustomization(dir)
        .resources
        .iter()
        .filter(|r| r.ends_with(".yaml"))
    {
        for doc in yaml_docs(&dir.join(file)) {
            let kind = doc["kind"].as_str().unwrap().to_owned();
            let origin = format!("{}/{file}", dir.display());
            match kind.as_str() {
                "Job" => drop(strict::<Job>(&doc, &origin)),
                "PersistentVolumeClaim" => drop(strict::<PersistentVolumeClaim>(&doc, &origin)),
                "ConfigMap" => drop(strict::<ConfigMap>(&doc, &origin)),
                other => panic!("{origin}: a {other} nobody checks"),
            }
            out.push((kind, doc));
        }
    }
    out
}

fn job(docs: &[(String, Value)], name: &str) -> Value {
    let found = docs
        .iter()
        .find(|(k, d)| k == "Job" && d["metadata"]["name"] == name);
    found
        .map(|(_, d)| d.clone())
        .unwrap_or_else(|| panic!("no Job {name}"))
}

/// The example overlay's effect on the base's load Job: its JSON patches (replace, as they all
/// are) and its image.
fn rendered_example() -> Value {
    let example = deploy().join("example");
    let k = kustomization(&example);
    assert_eq!(k.resources, ["../base"]);
    let mut doc = job(&resources(&deploy().join("base")), "duo-harness-load");
    for p in &k.patches {
        assert_eq!(
            (p.target.kind.as_str(), p.target.name.as_str()),
            ("Job", "duo-harness-load")
        );
        let ops: Vec<Value> = serde_yaml_ng::from_str(&p.patch).unwrap();
        for op in ops {
            assert_eq!(op["op"], "replace", "{op}");
            let path = op["path"].as_str().unwrap();
            let at = doc
                .pointer_mut(path)
                .unwrap_or_else(|| panic!("{path}: not in the base"));
            *at = op["value"].clone();
        }
    }
    for image in &k.images {
        let c = &mut doc["spec"]["template"]["spec"]["containers"][0]["image"];
        if c.as_str().unwrap().starts_with(&image.name) {
            let name = image.new_name.clone().unwrap_or(image.name.clone());
            *c = Value::from(format!("{name}:{}", image.new_tag.clone().unwrap()));
        }
    }
    doc
}

fn env<'a>(c: &'a Container, name: &str) -> &'a EnvVar {
    let vars = c.env.as_deref().unwrap_or_default();
    vars.iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

/// What every container of these Jobs must have: requests and limits for CPU and memory, no
/// privilege escalation; and no secret in a literal value.
fn check_container(c: &Container) {
    let r = c.resources.as_ref().expect("resources");
    for set in [&r.requests, &r.limits] {
        let set = set.as_ref().expect("requests and limits");
        assert!(
            set.contains_key("cpu") && set.contains_key("memory"),
            "{set:?}"
        );
    }
    let sc = c.security_context.as_ref().expect("a security context");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    for e in c.env.as_deref().unwrap_or_default() {
        let secretish = ["TOKEN", "KEY", "SECRET", "PASSWORD"]
            .iter()
            .any(|s| e.name.contains(s));
        if secretish {
            let from = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref());
            assert!(
                e.value.is_none() && from.is_some(),
                "{}: not from a Secret",
                e.name
            );
        }
    }
}

/// The load Job: Indexed, N in its three places, the index and instant wired into the args.
fn check_load_job(doc: &Value) -> i32 {
    let job: Job = strict(doc, "load job");
    let spec = job.spec.expect("spec");
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    let n = spec.completions.expect("completions");
    assert_eq!(spec.parallelism, Some(n), "parallelism = completions");
    // A slice run again would send its arrivals late: never retried.
    assert_eq!(spec.backoff_limit_per_index, Some(0));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let psc = pod.security_context.expect("pod security context");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert!(psc.run_as_user.is_some_and(|u| u > 0));
    let [c] = pod.containers.as_slice() else {
        panic!("one container")
    };
    check_container(c);
    let args = c.args.clone().unwrap_or_default();
    let after = |flag: &str| {
        let i = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("no {flag}"));
        args[i + 1].clone()
    };
    assert_eq!(args[0], "run");
    assert_eq!(after("--slice"), "$(SLICE_INDEX)/$(SLICES)");
    assert_eq!(after("--start-at"), "$(START_AT)");
    assert!(
        after("--out").contains("$(SLICE_INDEX)"),
        "each slice its own folder"
    );
    let index = env(c, "SLICE_INDEX")
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref());
    assert_eq!(
        index.map(|f| f.field_path.as_str()),
        Some("metadata.annotations['batch.kubernetes.io/job-completion-index']")
    );
    assert_eq!(
        env(c, "SLICES").value.as_deref(),
        Some(n.to_string().as_str())
    );
    let zero = env(c, "START_AT")
        .value_from
        .as_ref()
        .and_then(|v| v.config_map_key_ref.as_ref());
    assert_eq!(zero.map(|r| r.name.as_str()), Some("duo-harness-start"));
    let token = env(c, "DUO_AIGW_TOKEN")
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref());
    assert_eq!(token.map(|r| r.name.as_str()), Some("duo-harness-gateway"));
    n
}

#[test]
fn the_base_load_job_slices_the_schedule_by_its_completion_index() {
    let docs = resources(&deploy().join("base"));
    assert_eq!(check_load_job(&job(&docs, "duo-harness-load")), 4);
    let pvc = docs
        .iter()
        .find(|(k, _)| k == "PersistentVolumeClaim")
        .expect("a volume");
    let modes = pvc.1["spec"]["accessModes"].as_array().unwrap();
    assert!(
        modes.contains(&Value::from("ReadWriteMany")),
        "every pod writes to it"
    );
}

#[test]
fn the_example_overlay_sets_n_image_and_resources_consistently() {
    let doc = rendered_example();
    assert_eq!(check_load_job(&doc), 8);
    let image = doc["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert_eq!(image, "registry.gitlab.example.com/sre/duo-harness:0.1.0");
}

#[test]
fn the_merge_job_reports_every_slice_and_exits_with_the_verdict() {
    let docs = resources(&deploy().join("merge"));
    let job: Job = strict(&job(&docs, "duo-harness-merge"), "merge job");
    let pod = job.spec.expect("spec").template.spec.expect("pod spec");
    assert_eq!(
        pod.security_context.and_then(|s| s.run_as_non_root),
        Some(true)
    );
    let [c] = pod.containers.as_slice() else {
        panic!("one container")
    };
    check_container(c);
    let script = c.args.as_deref().unwrap_or_default().join(" ");
    assert!(script.starts_with("exec duo-harness report"), "{script}");
    assert!(
        script.contains("/slice-*") && script.contains("--out"),
        "{script}"
    );
    let zero = env(c, "START_AT")
        .value_from
        .as_ref()
        .and_then(|v| v.config_map_key_ref.as_ref());
    assert_eq!(zero.map(|r| r.name.as_str()), Some("duo-harness-start"));
}

/// The ConfigMap's scenario resolves with the real planner, names its token only by variable,
/// and ships the corpus the fixtures hold (byte for byte).
#[test]
fn the_configmap_scenario_is_a_valid_plan_without_secrets() {
    let base = deploy().join("base");
    let k = kustomization(&base);
    let files: Vec<&String> = k
        .config_map_generator
        .iter()
        .flat_map(|g| &g.files)
        .collect();
    assert!(files.contains(&&"scenario.toml".to_owned()), "{files:?}");
    for dir in [base.clone(), deploy().join("example")] {
        let scenario = std::fs::read_to_string(dir.join("scenario.toml")).unwrap();
        assert!(scenario.contains("token_env = \"DUO_AIGW_TOKEN\""));
        assert!(!scenario.contains("token ="), "a token in the ConfigMap");
    }
    let corpus = std::fs::read(base.join("corpus.jsonl")).unwrap();
    assert_eq!(
        corpus,
        std::fs::read(common::repo().join("fixtures/corpus/duo-default.jsonl")).unwrap()
    );
    // SAFETY (edition 2021: set_var is safe): only this test reads this variable.
    std::env::set_var("DUO_AIGW_URL", "http://ai-gateway.example:5052");
    let overrides = duo_harness::plan::Overrides::default();
    let plan = duo_harness::plan::resolve(&base.join("scenario.toml"), overrides, "t")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        plan.load.seed.is_some(),
        "every slice must draw one schedule"
    );
}

#[test]
fn the_image_builds_in_a_rust_stage_and_runs_as_a_user() {
    let text = std::fs::read_to_string(common::repo().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(
        froms[0].starts_with("FROM rust:") && froms[0].ends_with(" AS build"),
        "{froms:?}"
    );
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    let user = text
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER");
    let uid = user[5..].split(':').next().unwrap();
    assert!(uid.parse::<u32>().is_ok_and(|u| u > 0), "{user}");
    assert!(
        text.contains("COPY --from=build"),
        "only the binary travels"
    );
}

#[test]
fn a_field_the_api_does_not_know_is_refused() {
    let mut doc = job(&resources(&deploy().join("base")), "duo-harness-load");
    doc["spec"]["template"]["spec"]["containers"][0]["resource"] = serde_json::json!({});
    let refused = std::panic::catch_unwind(|| strict::<Job>(&doc, "typo")).unwrap_err();
    let said = refused
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(said.contains("resource"), "{said}");
}
