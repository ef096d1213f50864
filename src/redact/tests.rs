use super::*;
use serde_json::json;

#[test]
fn redacts_keys_headers_and_jwts() {
    let mut b = json!({"model_api_key": "sk-1", "model_metadata": {"api_key": "sk-2"}, "t": ["eyJhbGciOi.eyJzdWIi.c2ln"], "keep": "x"});
    body(&mut b);
    assert_eq!(
        b,
        json!({"model_api_key": REDACTED, "model_metadata": {"api_key": REDACTED}, "t": [REDACTED], "keep": "x"})
    );
    let mut h = json!({"Authorization": "Bearer x", "x-request-id": "r"})
        .as_object()
        .unwrap()
        .clone();
    headers(&mut h);
    assert_eq!(h["Authorization"], REDACTED);
    assert_eq!(h["x-request-id"], "r");
    let mut h = json!({"X-Gitlab-Oidc-Token": "t", "x-note": "see eyJhbGciOi.eyJzdWIi.c2ln now"})
        .as_object()
        .unwrap()
        .clone();
    headers(&mut h);
    assert_eq!(h["X-Gitlab-Oidc-Token"], REDACTED);
    assert_eq!(h["x-note"], format!("see {REDACTED} now"));
}

#[test]
fn secret_names_in_every_case_style_but_not_token_counts() {
    for n in [
        "apiKey",
        "API_KEY",
        "api-key",
        "X-Api-Key",
        "private_token",
        "client_secret",
        "X-Access-Key",
        "X-Gitlab-Auth-Key",
        "x-auth-key",
        "accessToken",
        "Authorization",
        "proxy-authorization",
        "password",
        "credentials",
        "model_api_key",
        "X-Gitlab-Oidc-Token",
        "APIKey",
        "id_token",
        "set-cookie",
        "X-Apikey",
    ] {
        assert!(secret_name(n), "{n}");
    }
    for n in [
        "max_tokens",
        "input_tokens",
        "tokens_consumption_metadata",
        "max_output_tokens_used",
        "context_tokens_sent",
        "tokenizer",
        "x-request-id",
        "content-type",
        "keyboard",
        "x-gitlab-authentication-type",
        "monkey",
    ] {
        assert!(!secret_name(n), "{n}");
    }
}

#[test]
fn secrets_in_free_text_query_and_form_bodies() {
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
    for (input, gone) in [
        (format!("token={jwt}&x=1"), jwt.to_owned()),
        (format!("{{\"a\":\"{jwt}\"}}"), jwt.to_owned()),
        (
            "/api?private_token=glpat-abcdefghijklmnop1234&page=2".to_owned(),
            "glpat-abcdefghijklmnop1234".to_owned(),
        ),
        (
            "grant_type=x&client_secret=s3cr3tvalue&scope=api".to_owned(),
            "s3cr3tvalue".to_owned(),
        ),
        (
            "{\"apiKey\":\"k-1234567890\",\"n\":1}".to_owned(),
            "k-1234567890".to_owned(),
        ),
        (
            "Authorization: Bearer abcdef123456".to_owned(),
            "abcdef123456".to_owned(),
        ),
    ] {
        let out = text(&input);
        assert!(!out.contains(&gone), "{input} -> {out}");
    }
    let counts = "{\"max_tokens\":64,\"tokens_consumption_metadata\":{\"input_tokens\":42,\"max_output_tokens_used\":false}}";
    assert_eq!(text(counts), counts);
    let parts = pieces(&[
        b"data: {\"t\":\"eyJhbGciOiJSUzI1NiJ9.ey",
        b"JzdWIiOiIxIn0.c2lnbmF0dXJl\"}",
    ]);
    assert!(!String::from_utf8_lossy(&parts.concat()).contains("c2lnbmF0dXJl"));
}

#[test]
fn the_names_the_first_rule_set_missed() {
    for n in [
        "pass",
        "passphrase",
        "pwd",
        "auth",
        "bearer",
        "oauth",
        "oauth_token",
        "signature",
        "session_id",
        "sessionId",
        "X-Amz-Signature",
        "x-api-key",
        "db_dsn",
    ] {
        assert!(secret_name(n), "{n}");
    }
    for n in [
        "session_url",
        "session_owner_id",
        "bypass",
        "authentication_type",
        "compass",
    ] {
        assert!(!secret_name(n), "{n}");
    }
    for (input, gone) in [
        ("/v1/x?key=AbCdEf0123456789&alt=json", "AbCdEf0123456789"),
        ("/blob?sv=1&sig=Zm9vYmFyYmF6cXV4&se=2", "Zm9vYmFyYmF6cXV4"),
        ("/o?X-Amz-Signature=deadbeef00&X-Amz-Date=1", "deadbeef00"),
        ("user=a&pwd=hunter2hunter2", "hunter2hunter2"),
    ] {
        let out = text(input);
        assert!(!out.contains(gone), "{input} -> {out}");
    }
    assert_eq!(
        text("monkey=banana&keyboard=qwerty"),
        "monkey=banana&keyboard=qwerty"
    );
}

#[test]
fn multipart_parts_with_a_secret_name() {
    let b = "--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nalice\r\n--XyZ\r\n\
             Content-Disposition: form-data; name=\"password\"\r\n\r\nCorrectHorse9\r\n--XyZ--\r\n";
    let out = String::from_utf8(raw_body(b.as_bytes())).unwrap();
    assert!(
        !out.contains("CorrectHorse9") && out.contains("alice"),
        "{out}"
    );
}

#[test]
fn token_shapes_and_url_passwords_wherever_they_stand() {
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn\n-----END RSA PRIVATE KEY-----";
    let secrets = [
        pem,
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "xoxb-1234567890-abcdefghij",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv",
        "sk-ant-api03-AbCdEf0123456789xyz",
    ];
    for s in secrets {
        let said = format!("here: {s} (and more)");
        assert_eq!(known(&said), format!("here: {REDACTED} (and more)"), "{s}");
    }
    for (url, gone) in [
        ("postgres://app:S3cretPw@db:5432/x", "S3cretPw"),
        (
            "see https://oauth2:glpat-abc@gitlab.example.com/g/p.git now",
            "glpat-abc",
        ),
        ("{\"endpoint\": \"http://u:p4ss@10.0.0.5:8000/v1\"}", "p4ss"),
    ] {
        let out = known(url);
        assert!(
            !out.contains(gone) && out.contains("[REDACTED]@"),
            "{url} -> {out}"
        );
    }
    for kept in [
        "from sklearn import x; sk-learn-compatible-names",
        "http://127.0.0.1:5052/v2/code/completions",
        "hf_tokenizer_config_path_value_is_long",
        "ldap://[::1]:389/",
    ] {
        assert_eq!(known(kept), kept);
    }
}
