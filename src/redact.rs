//! Secret redaction, applied before anything reaches disk: Authorization headers, JWTs, API keys
//! (`model_api_key`, `api_key`) in headers and bodies.

use serde_json::{Map, Value};

/// The marker that replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "set-cookie",
    "proxy-authorization",
];
const SECRET_FIELDS: &[&str] = &[
    "model_api_key",
    "api_key",
    "token",
    "access_token",
    "password",
    "secret",
];

/// Whether a string looks like a JWT (three base64url parts, the first a JSON header).
fn looks_like_jwt(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && s.starts_with("eyJ")
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Redacts secret headers in place (names compared case-insensitively).
pub fn headers(h: &mut Map<String, Value>) {
    for (k, v) in h.iter_mut() {
        if SECRET_HEADERS.contains(&k.to_ascii_lowercase().as_str())
            || v.as_str().is_some_and(looks_like_jwt)
        {
            *v = Value::String(REDACTED.into());
        }
    }
}

/// Redacts secret fields and JWT-looking strings anywhere in a JSON value.
pub fn body(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if SECRET_FIELDS.contains(&k.as_str()) && !x.is_null() {
                    *x = Value::String(REDACTED.into());
                } else {
                    body(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(body),
        Value::String(s) if looks_like_jwt(s) => *s = REDACTED.into(),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
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
    }
}
