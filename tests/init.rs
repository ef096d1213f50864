//! `init` against a GraphQL double of a GitLab instance (wiremock, serving the documented shapes
//! of `aiSelfHostedModels` and `aiFeatureSettings`): the scenario it writes names each
//! self-hosted feature's model, taps its backend and expects its routing; vendored features make
//! the setup hybrid; disabled ones must not answer; the token reaches the instance and nothing
//! else (not the file, not the console). The scenario then resolves as a plan.

mod common;

use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "glpat-InitTestToken0123456789";

fn answer() -> serde_json::Value {
    let codestral = json!({"id": "gid://gitlab/Ai::SelfHostedModel/1", "name": "codestral-gpu-a",
        "model": "codestral", "endpoint": "http://10.0.0.5:8000/v1",
        "identifier": "custom_openai/codestral-22b", "hasApiToken": false});
    let mistral = json!({"id": "gid://gitlab/Ai::SelfHostedModel/2", "name": "Mistral Chat",
        "model": "mistral", "endpoint": "http://10.0.0.6:8000/v1",
        "identifier": "custom_openai/mistral-7b-instruct", "hasApiToken": true});
    json!({"data": {
        "aiSelfHostedModels": {"nodes": [codestral, mistral]},
        "aiFeatureSettings": {"nodes": [
            {"feature": "code_completions", "provider": "self_hosted", "selfHostedModel": codestral},
            {"feature": "code_generations", "provider": "self_hosted", "selfHostedModel": codestral},
            {"feature": "duo_chat", "provider": "self_hosted", "selfHostedModel": mistral},
            {"feature": "generate_commit_message", "provider": "vendored", "selfHostedModel": null},
            {"feature": "summarize_review", "provider": "disabled", "selfHostedModel": null},
            {"feature": "duo_agent_platform", "provider": "vendored", "selfHostedModel": null}
        ]}
    }})
}

#[tokio::test(flavor = "multi_thread")]
async fn init_writes_a_scenario_from_the_instance_and_never_the_token() {
    let gitlab = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/graphql"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer()))
        .expect(1)
        .mount(&gitlab)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"message": "401 Unauthorized"})),
        )
        .mount(&gitlab)
        .await;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("site.toml");
    let run = |token: &str, out: &std::path::Path| {
        std::process::Command::new(common::bin())
            .args([
                "init",
                "--gitlab",
                &gitlab.uri(),
                "--token-env",
                "DUO_INIT_TOKEN",
                "--out",
            ])
            .arg(out)
            .env("DUO_INIT_TOKEN", token)
            .output()
            .unwrap()
    };
    let o = tokio::task::block_in_place(|| run(TOKEN, &out));
    let printed = common::printed(&o);
    assert_eq!(o.status.code(), Some(0), "{printed}");
    assert!(!printed.contains(TOKEN), "{printed}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains(TOKEN), "the token never reaches disk");
    let sc: toml::Value = toml::from_str(&text).unwrap();
    let m = &sc["models"];
    assert_eq!(
        m["code_completions"]["identifier"].as_str(),
        Some("custom_openai/codestral-22b")
    );
    assert_eq!(
        m["code_completions"]["endpoint"].as_str(),
        Some("http://10.0.0.5:8000/v1")
    );
    assert_eq!(m["duo_chat"]["name"].as_str(), Some("mistral"));
    assert_eq!(
        m["duo_chat"]["api_key_env"].as_str(),
        Some("DUO_MODEL_KEY_MISTRAL_CHAT")
    );
    assert!(
        m.get("generate_commit_message").is_none(),
        "vendored: no self-hosted model"
    );
    let taps = sc["tap"].as_array().unwrap();
    assert_eq!(taps.len(), 2, "one tap per backend: {taps:?}");
    let r = &sc["routing"];
    assert_eq!(
        r["fully_self_hosted"].as_bool(),
        Some(false),
        "vendored features make it hybrid"
    );
    assert_eq!(
        r["features"]["duo_chat"]["model"].as_str(),
        Some("mistral-7b-instruct")
    );
    assert_eq!(
        r["features"]["duo_chat"]["backend"].as_str(),
        Some("mistral_chat")
    );
    assert_eq!(
        r["features"]["summarize_review"]["disabled"].as_bool(),
        Some(true)
    );
    assert!(text.contains("generate_commit_message: vendored, served by GitLab's cloud AI gateway"));

    // The scenario is a plan once the site's environment is there.
    let plan_check = std::process::Command::new(common::bin())
        .args(["run"])
        .arg(&out)
        .args(["--out"])
        .arg(tmp.path().join("never"))
        .arg("--corpus")
        .arg(common::repo().join("fixtures/corpus/duo-default.jsonl"))
        .env(
            "DUO_AIGW_URL",
            format!("http://127.0.0.1:{}", common::closed_port()),
        )
        .env("DUO_AIGW_AUTH", "bypass")
        .env("DUO_MODEL_KEY_MISTRAL_CHAT", "sk-test")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let printed = common::printed(&plan_check);
    // Planned: it fails only on reaching the gateway, which is not there.
    assert_eq!(plan_check.status.code(), Some(3), "{printed}");
    assert!(printed.contains("did not answer"), "{printed}");

    // A refused token: a clear message, exit 2, and no file.
    let refused = tmp.path().join("refused.toml");
    let o = tokio::task::block_in_place(|| run("glpat-wrong", &refused));
    let printed = common::printed(&o);
    assert_eq!(o.status.code(), Some(2), "{printed}");
    assert!(printed.contains("token was refused"), "{printed}");
    assert!(!refused.exists());
}

/// Runs `init` against `gitlab` with `token`; returns (exit code, console, scenario path).
fn init_with(
    gitlab: &str,
    token: &str,
    dir: &std::path::Path,
) -> (i32, String, std::path::PathBuf) {
    let out = dir.join(format!("site-{}.toml", rand_suffix()));
    let o = std::process::Command::new(common::bin())
        .args([
            "init",
            "--gitlab",
            gitlab,
            "--token-env",
            "DUO_INIT_TOKEN",
            "--out",
        ])
        .arg(&out)
        .env("DUO_INIT_TOKEN", token)
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), common::printed(&o), out)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn instance_answering(answer: serde_json::Value) -> MockServer {
    let gitlab = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/graphql"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&gitlab)
        .await;
    gitlab
}

/// What a hostile instance returns is data: names with newlines and quotes add no key or table,
/// a `${DUO_AIGW_TOKEN}` in an endpoint stays literal (the preflight never sends the token to
/// the host the instance chose), an echoed token and a URL password are never written.
#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_instance_cannot_write_structure_or_secrets() {
    let sink = MockServer::start().await; // the gateway, and the host the instance names
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .mount(&sink)
        .await;
    let evil = json!({"id": "gid://gitlab/Ai::SelfHostedModel/9",
        "name": "evil\n[load]\nrate = 999999\nduration_s = 604800",
        "model": "mistral\"\nmax_error_rate = 1.0\n#",
        "endpoint": format!("{}/v1/${{DUO_AIGW_TOKEN}}", sink.uri()),
        "identifier": "custom_openai/m\n[metrics]\ntargets = [\"http://evil.example/metrics\"]",
        "hasApiToken": true});
    let echo = json!({"id": "gid://gitlab/Ai::SelfHostedModel/10", "name": "echo",
        "model": "codestral", "endpoint": format!("http://admin:{TOKEN}@10.0.0.9:8000/v1"),
        "identifier": format!("custom_openai/{TOKEN}"), "hasApiToken": false});
    let gitlab = instance_answering(json!({"data": {
        "aiSelfHostedModels": {"nodes": [evil, echo]},
        "aiFeatureSettings": {"nodes": [
            {"feature": "duo_chat", "provider": "self_hosted", "selfHostedModel": evil},
            {"feature": "code_completions", "provider": "self_hosted", "selfHostedModel": echo},
            {"feature": "evil\n[stack]\nhost = \"0.0.0.0\"", "provider": "self_hosted\n[x]", "selfHostedModel": null}
        ]}}}))
    .await;
    let tmp = tempfile::tempdir().unwrap();
    // A `--gitlab` URL with a password is refused, and the password is not shown.
    let with_password = gitlab.uri().replace("http://", "http://root:s3cretPw@");
    let (code, printed, out) =
        tokio::task::block_in_place(|| init_with(&with_password, TOKEN, tmp.path()));
    assert_eq!(code, 2, "{printed}");
    assert!(!printed.contains("s3cretPw") && !out.exists(), "{printed}");
    let (code, printed, out) =
        tokio::task::block_in_place(|| init_with(&gitlab.uri(), TOKEN, tmp.path()));
    assert_eq!(code, 0, "{printed}");
    let text = std::fs::read_to_string(&out).unwrap();
    for secret in [TOKEN, "s3cretPw", "admin:"] {
        assert!(
            !text.contains(secret) && !printed.contains(secret),
            "{secret}: {text}"
        );
    }
    assert!(
        printed.contains("held a secret"),
        "the operator is told: {printed}"
    );
    let sc: toml::Table = toml::from_str(&text).unwrap();
    let keys: Vec<&str> = sc.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "corpus",
            "models",
            "name",
            "request_timeout_s",
            "routing",
            "tap",
            "target"
        ]
    );
    let m = &sc["models"]["duo_chat"];
    assert_eq!(
        m["name"].as_str(),
        Some("mistral\"\nmax_error_rate = 1.0\n#")
    );
    assert!(sc["routing"]["features"].get("evil").is_none());
    assert!(text
        .lines()
        .all(|l| !l.starts_with("[load]") && !l.starts_with("[stack]")));

    // Run it: the literal `${DUO_AIGW_TOKEN}` is a path segment, never the token.
    let key_env = m["api_key_env"].as_str().unwrap().to_owned();
    let run_out = tmp.path().join("run");
    let o = tokio::task::block_in_place(|| {
        std::process::Command::new(common::bin())
            .args([
                "run",
                out.to_str().unwrap(),
                "--out",
                run_out.to_str().unwrap(),
            ])
            .args(["--rate", "1", "--duration", "1", "--corpus"])
            .arg(common::repo().join("fixtures/corpus/duo-default.jsonl"))
            .env("DUO_AIGW_URL", sink.uri())
            .env("DUO_AIGW_AUTH", "bearer")
            .env("DUO_AIGW_TOKEN", "canary-aigw-token-0123456789")
            .env(&key_env, "sk-test")
            .current_dir(tmp.path())
            .output()
            .unwrap()
    });
    let printed = common::printed(&o);
    let plan = std::fs::read_to_string(run_out.join("plan.json")).unwrap_or_default();
    assert!(plan.contains("/v1/${DUO_AIGW_TOKEN}"), "{printed}\n{plan}");
    let received = sink.received_requests().await.unwrap();
    assert!(
        received.iter().any(|r| r.url.path().contains("/v1/")),
        "the models preflight asked the instance's host: {printed}"
    );
    for r in received {
        let seen = format!("{} {:?}", r.url, r.headers);
        let to_model = r.url.path().starts_with("/v1/");
        assert!(
            !(to_model && seen.contains("canary-aigw-token")),
            "the token went to the instance's host: {seen}"
        );
    }
}

/// An answer the instance garbles (null nodes, wrong types, no data) is refused, exit 2, naming
/// the field; no scenario is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_answer_is_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let model = json!({"id": "1", "name": "a", "model": "m", "endpoint": "http://h/v1",
        "identifier": "custom_openai/m", "hasApiToken": false});
    for (answer, field) in [
        (json!({"data": null}), "data"),
        (
            json!({"data": {"aiSelfHostedModels": {"nodes": [null]}, "aiFeatureSettings": {"nodes": []}}}),
            "data.aiSelfHostedModels.nodes[0]",
        ),
        (
            json!({"data": {"aiSelfHostedModels": {"nodes": [model]},
            "aiFeatureSettings": {"nodes": [{"feature": 7, "provider": "self_hosted"}]}}}),
            "data.aiFeatureSettings.nodes[0].feature",
        ),
        (
            json!({"data": {"aiSelfHostedModels": {"nodes": [{"name": "a", "model": "m",
            "endpoint": null, "identifier": "x", "hasApiToken": false}]},
            "aiFeatureSettings": {"nodes": []}}}),
            "data.aiSelfHostedModels.nodes[0].endpoint",
        ),
        (
            json!({"data": {"aiSelfHostedModels": {"nodes": []}, "aiFeatureSettings": {"nodes": "x"}}}),
            "data.aiFeatureSettings.nodes",
        ),
    ] {
        let gitlab = instance_answering(answer.clone()).await;
        let (code, printed, out) =
            tokio::task::block_in_place(|| init_with(&gitlab.uri(), TOKEN, tmp.path()));
        assert_eq!(code, 2, "{answer}: {printed}");
        assert!(
            printed.contains(&format!("{field}:")),
            "{answer}: {printed}"
        );
        assert!(!out.exists());
    }
}
