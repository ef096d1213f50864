//! The README's recipes for a real gateway, held to what they say: a key path the environment
//! gives resolves against the working directory (where the user typed it), a written one against
//! the scenario's folder; minted tokens carry a Duo Enterprise user's scopes; `auth = "mint"`
//! goes with the embedded gateway and an external Duo Workflow Service.

mod common;

use std::path::Path;

/// The quickstart's HTTP corpus, two requests, minting from `key_file` (as written), its
/// sessions' DWS external: the scenario lives in `dir`, away from the repository.
fn scenario(dir: &Path, key_file: &str) -> String {
    let corpus = common::repo().join("fixtures/corpus/duo-default.jsonl");
    let text = common::quickstart_with_corpus(&format!("{:?}", corpus.to_str().unwrap()))
        .replace(
            "auth = \"bypass\"",
            &format!("auth = \"mint\"\nkey_file = \"{key_file}\""),
        )
        .replace("dws = \"embedded\"", "dws = \"http://127.0.0.1:1\"")
        .replace(
            "request_timeout_s",
            "features = [\"code_completions\"]\nrequest_timeout_s",
        );
    let s = dir.join("s.toml");
    let load = "[load]\nmax_requests = 2\nmax_send_lateness_ms = 1000\n";
    std::fs::write(&s, format!("{text}\n{load}")).unwrap();
    s.to_str().unwrap().to_owned()
}

fn run(scenario: &str, out: &Path, env: &[(&str, Option<&str>)]) -> (i32, String) {
    let args = ["run", scenario, "--out", out.to_str().unwrap()];
    let (code, stdout, stderr) = common::run_cli_env(&args, env);
    (code, format!("{stdout}{stderr}"))
}

#[test]
fn a_key_path_from_the_environment_resolves_where_it_was_typed() {
    let d = tempfile::tempdir().unwrap();
    let key = "tests/fixtures/keys/throwaway-aigw.pem"; // relative to the working directory
    let s = scenario(d.path(), "${DUO_TEST_KEY}");
    let out = d.path().join("env");
    let (code, printed) = run(&s, &out, &[("DUO_TEST_KEY", Some(key))]);
    assert_eq!(code, 0, "mint, embedded gateway, external DWS: {printed}");
    let plan = common::json_file(&out.join("plan.json"));
    assert_eq!(plan["plan"]["target"]["key_file"], key, "{plan}");
    let scopes = plan["plan"]["target"]["scopes"].to_string();
    for s in [
        "ask_issue",
        "documentation_search",
        "include_file_context",
        "duo_agent_platform",
    ] {
        assert!(
            scopes.contains(s),
            "a Duo Enterprise user's scopes: {scopes}"
        );
    }
    // Written in the file, the same path is the scenario folder's: not there.
    let s = scenario(d.path(), key);
    let (code, printed) = run(&s, &d.path().join("written"), &[]);
    assert_eq!(code, 2, "{printed}");
    assert!(
        printed.contains(&d.path().join(key).display().to_string()),
        "{printed}"
    );
}

/// The shipped real-gateway scenario with the default `bearer` and no token: exit 2, and the
/// message says where a token comes from and which other auth modes there are.
#[test]
fn a_missing_bearer_token_names_the_other_auth_modes() {
    let d = tempfile::tempdir().unwrap();
    let s = common::repo().join("scenarios/real-aigw.toml");
    let env = [
        ("DUO_AIGW_URL", Some("http://127.0.0.1:1")),
        ("DUO_CODE_BACKEND_URL", Some("http://127.0.0.1:1/v1")),
        ("DUO_CODE_MODEL", Some("codestral-22b")),
        ("DUO_CHAT_BACKEND_URL", Some("http://127.0.0.1:1/v1")),
        ("DUO_CHAT_MODEL", Some("mistral-7b-instruct")),
        ("DUO_AIGW_TOKEN", None),
        ("DUO_AIGW_AUTH", None),
    ];
    let (code, printed) = run(s.to_str().unwrap(), &d.path().join("run"), &env);
    assert_eq!(code, 2, "{printed}");
    for says in [
        "DUO_AIGW_TOKEN is not set",
        "auth = \"bypass\"",
        "auth = \"mint\"",
    ] {
        assert!(printed.contains(says), "{says}: {printed}");
    }
}
