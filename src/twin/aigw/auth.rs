//! The twin AIGW's authentication (PROTOCOL.md §5): bypass for labs, or the Cloud Connector
//! chain: header checks in order, RS256 signature and `aud`/`exp`/`nbf` against the configured
//! public keys, claims against headers, then unit primitives per route. Also issues user tokens
//! (`/v1/code/user_access_token`) when a signing key is configured.

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;

/// The audience of AIGW tokens.
pub const AUDIENCE: &str = "gitlab-ai-gateway";
/// The issuer of tokens the AIGW signs itself (user tokens).
pub const AIGW_ISSUER: &str = "gitlab-ai-gateway";

/// Auth settings of the twin AIGW.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `bypass` (every request passes, as `AIGW_AUTH__BYPASS_EXTERNAL=true`) or `jwt`.
    #[serde(default)]
    pub mode: AuthMode,
    /// PEM files of RSA public keys whose signatures are accepted (`jwt` mode).
    #[serde(default)]
    pub public_keys: Vec<PathBuf>,
    /// PEM file of the RSA private key that signs user tokens; its public half must also be
    /// listed in `public_keys` for those tokens to be accepted back.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
}

#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Bypass,
    Jwt,
}

/// Loaded keys.
pub struct Auth {
    mode: AuthMode,
    keys: Vec<DecodingKey>,
    signing: Option<EncodingKey>,
}

/// The caller, after authentication.
#[derive(Debug, Clone)]
pub struct Caller {
    debug: bool,
    scopes: Vec<String>,
    aigw_issued: bool,
    claims: Value,
}

impl Caller {
    /// Whether the caller holds unit primitive `up`; `allow_user_tokens` is false on routes
    /// that refuse AIGW-issued tokens.
    pub fn can(&self, up: &str, allow_user_tokens: bool) -> bool {
        self.debug
            || ((allow_user_tokens || !self.aigw_issued) && self.scopes.iter().any(|s| s == up))
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read key {}: {e}", path.display()))
}

impl Auth {
    pub fn load(cfg: &AuthConfig) -> Result<Self, String> {
        let keys = cfg
            .public_keys
            .iter()
            .map(|p| {
                DecodingKey::from_rsa_pem(&read(p)?)
                    .map_err(|e| format!("{}: not an RSA public key PEM: {e}", p.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let signing = match &cfg.signing_key {
            Some(p) => Some(
                EncodingKey::from_rsa_pem(&read(p)?)
                    .map_err(|e| format!("{}: not an RSA private key PEM: {e}", p.display()))?,
            ),
            None => None,
        };
        if cfg.mode == AuthMode::Jwt && keys.is_empty() {
            return Err("auth mode 'jwt' needs at least one entry in public_keys".into());
        }
        Ok(Self {
            mode: cfg.mode,
            keys,
            signing,
        })
    }

    /// Runs the validation chain; `Err` carries the 401 message.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, &'static str> {
        if self.mode == AuthMode::Bypass {
            return Ok(Caller {
                debug: true,
                scopes: vec![],
                aigw_issued: false,
                claims: Value::Null,
            });
        }
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let authz = headers
            .get("authorization")
            .ok_or("No authorization header presented")?;
        let token = authz
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or("Invalid authorization header")?;
        if h("x-gitlab-authentication-type") != "oidc" {
            return Err("Invalid authentication token type - only OIDC is supported");
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_nbf = true;
        let claims: Value = self
            .keys
            .iter()
            .find_map(|k| jsonwebtoken::decode::<Value>(token, k, &validation).ok())
            .ok_or("Forbidden by auth provider")?
            .claims;
        let claim = |k: &str| claims[k].as_str().unwrap_or("").to_owned();
        if !claim("gitlab_realm").is_empty() && claim("gitlab_realm") != h("x-gitlab-realm") {
            return Err("Header mismatch 'X-Gitlab-Realm'");
        }
        if !claim("gitlab_instance_id").is_empty()
            && claim("gitlab_instance_id") != h("x-gitlab-instance-id")
        {
            return Err("Header mismatch 'X-Gitlab-Instance-Id'");
        }
        let aigw_issued = claim("iss") == AIGW_ISSUER;
        if aigw_issued && claim("sub") != h("x-gitlab-global-user-id") {
            return Err("Header mismatch 'X-Gitlab-Global-User-Id'");
        }
        if !aigw_issued && claim("sub") != h("x-gitlab-instance-id") {
            return Err("Header mismatch 'X-Gitlab-Instance-Id'");
        }
        let scopes = claims["scopes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Caller {
            debug: false,
            scopes,
            aigw_issued,
            claims,
        })
    }

    /// Issues a user token for `caller`, as `/v1/code/user_access_token` does. `None` without a
    /// signing key ("Failed to generate JWT").
    pub fn issue_user_token(&self, caller: &Caller, headers: &HeaderMap) -> Option<(String, i64)> {
        let key = self.signing.as_ref()?;
        let now = chrono::Utc::now().timestamp();
        let user = headers
            .get("x-gitlab-global-user-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let scopes: Vec<&str> = ["complete_code"]
            .into_iter()
            .filter(|s| caller.can(s, false))
            .collect();
        let claims = json!({
            "iss": AIGW_ISSUER, "sub": user, "aud": AUDIENCE, "exp": now + 3600, "nbf": now, "iat": now,
            "jti": format!("{:032x}", rand::random::<u128>()),
            "gitlab_realm": caller.claims["gitlab_realm"], "gitlab_instance_id": caller.claims["gitlab_instance_id"],
            "scopes": scopes, "extra": {"gitlab_instance_uid": ""},
        });
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key).ok()?;
        Some((token, now + 3600))
    }
}
