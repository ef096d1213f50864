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
