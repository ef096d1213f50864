//! Setting up requests: the HTTP client (custom CA bundle, certificate checks on unless turned
//! off by name), auth headers (bearer or RS256 tokens minted once), and the preflight's
//! questions (health, a backend's model list). Requests themselves are made in `prepared`.
//!
//! In: the plan's target and model settings. Out: a `reqwest::Client` and header pairs.

use crate::plan::{AuthKind, ModelSetting, Target};
use serde_json::{json, Value};
use std::time::Duration;

/// A model setting with its endpoint and key resolved.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub setting: ModelSetting,
    pub endpoint: String,
    pub api_key: Option<String>,
    /// The setting is General Chat's, inherited by a chat sub-feature without its own: a
    /// recorded request that carries a model selection of its own keeps it.
    pub inherited: bool,
}

/// Why the driver could not be set up (configuration, exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("{0}")]
    Config(String),
    /// A server that did not answer, or not as it must.
    #[error("{url}: {reason}")]
    Unanswered { url: String, reason: String },
}

/// Builds the HTTP client for a target (custom CA bundle, certificate checks on unless turned off).
pub fn client(target: &Target) -> Result<reqwest::Client, DriveError> {
    crate::http::client(
        target.ca_bundle.as_deref(),
        target.danger_accept_invalid_certs,
    )
    .map_err(|e| DriveError::Config(e.to_string()))
}

/// How long a minted instance token is valid (its `exp`), and when the harness mints the next.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const RENEW_AFTER: Duration = Duration::from_secs(3000);

/// Headers and when they were made.
type Minted = (std::sync::Arc<Vec<(String, String)>>, std::time::Instant);

/// The auth headers of every request. A minted token is renewed before it expires, so a run of
/// any length keeps its auth; a bearer token from the environment is used as it is.
pub struct Auth {
    target: Target,
    renew_after: Option<Duration>,
    state: std::sync::RwLock<Minted>,
}

impl Auth {
    pub fn new(target: &Target) -> Result<Self, DriveError> {
        let renew = matches!(target.auth, AuthKind::Mint).then_some(RENEW_AFTER);
        Self::renewing_after(target, renew)
    }

    /// As [`new`](Self::new), renewing a minted token once it is `renew_after` old.
    pub fn renewing_after(
        target: &Target,
        renew_after: Option<Duration>,
    ) -> Result<Self, DriveError> {
        let headers = auth_headers(target)?;
        Ok(Self {
            target: target.clone(),
            renew_after: renew_after.filter(|_| matches!(target.auth, AuthKind::Mint)),
            state: std::sync::RwLock::new((
                std::sync::Arc::new(headers),
                std::time::Instant::now(),
            )),
        })
    }

    /// The headers to send now (a fresh token when the current one is due for renewal).
    pub fn headers(&self) -> std::sync::Arc<Vec<(String, String)>> {
        let (current, minted) = {
            let s = self.state.read().unwrap_or_else(|e| e.into_inner());
            (s.0.clone(), s.1)
        };
        let Some(after) = self.renew_after.filter(|a| minted.elapsed() >= *a) else {
            return current;
        };
        match auth_headers(&self.target) {
            Ok(h) => {
                let h = std::sync::Arc::new(h);
                *self.state.write().unwrap_or_else(|e| e.into_inner()) =
                    (h.clone(), std::time::Instant::now());
                h
            }
            Err(e) => {
                tracing::warn!(
                    "could not renew the instance token (renewal due after {after:?}): {}",
                    crate::escape::console(&e.to_string())
                );
                current
            }
        }
    }
}

/// The audience of the Duo Workflow Service's tokens (PROTOCOL-DWS.md §4).
pub const DWS_AUDIENCE: &str = "gitlab-duo-workflow-service";

/// The auth of Agent Platform sessions: tokens minted for the DWS's audience, or the bearer
/// token of `dws_token_env` (else `token_env`'s).
pub fn dws_auth(target: &Target) -> Result<Auth, DriveError> {
    let mut t = target.clone();
    t.audience = Some(DWS_AUDIENCE.into());
    if let (AuthKind::Bearer, Some(env)) = (t.auth, &target.dws_token_env) {
        t.token_env = Some(env.clone());
    }
    Auth::new(&t)
}

/// The headers every request carries for the target's auth mode.
pub fn auth_headers(target: &Target) -> Result<Vec<(String, String)>, DriveError> {
    let token = match target.auth {
        AuthKind::Bypass => return Ok(Vec::new()),
        AuthKind::Bearer => {
            let var = target.token_env.as_deref().unwrap_or_default();
            std::env::var(var).map_err(|_| {
                DriveError::Config(format!(
                    "target.token_env: environment variable {var} is not set (auth = \"bearer\" \
                     sends a token the gateway accepts; a lab gateway started with \
                     AIGW_AUTH__BYPASS_EXTERNAL=true takes auth = \"bypass\", and with the \
                     gateway's own key the harness mints tokens: auth = \"mint\". README: Against \
                     your own gateway)"
                ))
            })?
        }
        AuthKind::Mint => mint(target)?,
    };
    crate::redact::register_secret(&token);
    Ok(vec![
        ("authorization".into(), format!("Bearer {token}")),
        ("x-gitlab-authentication-type".into(), "oidc".into()),
        ("x-gitlab-instance-id".into(), target.instance_id.clone()),
        ("x-gitlab-realm".into(), target.realm.clone()),
        (
            "x-gitlab-global-user-id".into(),
            target.global_user_id.clone(),
        ),
    ])
}

/// Mints an RS256 instance token as GitLab does (PROTOCOL.md §5.2, §5.4).
fn mint(target: &Target) -> Result<String, DriveError> {
    let path = target
        .key_file
        .as_ref()
        .ok_or_else(|| DriveError::Config("target.key_file is not set".into()))?;
    let pem = std::fs::read(path)
        .map_err(|e| DriveError::Config(format!("cannot read key_file {}: {e}", path.display())))?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).map_err(|e| {
        DriveError::Config(format!(
            "{}: not an RSA private key PEM: {e}",
            path.display()
        ))
    })?;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": target.issuer, "aud": target.audience.as_deref().unwrap_or(crate::twin::aigw::auth::AUDIENCE), "sub": target.instance_id,
        "iat": now, "nbf": now - 5, "exp": now + TOKEN_LIFETIME.as_secs() as i64, "jti": format!("{:032x}", rand::random::<u128>()),
        "gitlab_realm": target.realm, "gitlab_instance_id": target.instance_id, "scopes": target.scopes,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(|e| DriveError::Config(format!("cannot sign a token with {}: {e}", path.display())))
}

/// Checks that something answers HTTP at `base_url` (any status counts).
pub async fn preflight(client: &reqwest::Client, base_url: &str) -> Result<u16, DriveError> {
    let url = format!("{base_url}/monitoring/healthz");
    let reason = match tokio::time::timeout(Duration::from_secs(10), client.get(&url).send()).await
    {
        Ok(Ok(r)) => return Ok(r.status().as_u16()),
        Ok(Err(e)) => crate::http::error_chain(&e),
        Err(_) => "no answer within 10 s".into(),
    };
    Err(DriveError::Unanswered { url, reason })
}

/// `GET {base}/models` (OpenAI's list): the model ids a backend serves.
pub async fn list_models(
    client: &reqwest::Client,
    base: &str,
    api_key: Option<&str>,
) -> Result<Vec<String>, DriveError> {
    let url = format!("{}/models", base.trim_end_matches('/'));
    let unanswered = |reason: String| DriveError::Unanswered {
        url: format!("GET {url}"),
        reason,
    };
    let mut req = client.get(&url);
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let r = req.send().await.map_err(|e| crate::http::error_chain(&e))?;
        let status = r.status();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        r.json::<Value>()
            .await
            .map_err(|e| format!("not a JSON model list: {e}"))
    })
    .await
    .map_err(|_| unanswered("no answer within 10 s".into()))?
    .map_err(unanswered)?;
    let ids = answer["data"]
        .as_array()
        .ok_or_else(|| unanswered("no `data` list in the answer".into()))?;
    Ok(ids
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_is_renewed_when_due() {
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/keys/throwaway-aigw.pem"
        );
        let target: Target = serde_json::from_value(json!({
            "url": "http://127.0.0.1:1", "auth": "mint", "key_file": key,
        }))
        .unwrap();
        let bearer = |a: &Auth| a.headers()[0].1.clone();
        let stays = Auth::renewing_after(&target, Some(Duration::from_secs(3000))).unwrap();
        assert_eq!(bearer(&stays), bearer(&stays));
        let due = Auth::renewing_after(&target, Some(Duration::ZERO)).unwrap();
        assert_ne!(
            bearer(&due),
            bearer(&due),
            "each call past renewal mints anew"
        );
    }
}
