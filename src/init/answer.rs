//! The instance's GraphQL answer, read strictly: every node and field `init` uses must be there
//! with its documented type, or the answer is refused naming the field (a null node, a number
//! where a name belongs, a missing list). Nothing is defaulted, so a garbled answer can never
//! become an empty or a wrong scenario.

use serde_json::Value;

/// One self-hosted model as GitLab knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfHostedModel {
    pub name: String,
    pub family: String,
    pub endpoint: String,
    pub identifier: String,
    pub has_api_token: bool,
}

/// One feature's setting.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSetting {
    pub feature: String,
    /// `self_hosted`, `vendored` or `disabled` (lowercased).
    pub provider: String,
    pub model: Option<SelfHostedModel>,
}

/// What was wrong with the answer, and where (a path such as
/// `data.aiFeatureSettings.nodes[2].provider`).
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    pub field: String,
    pub reason: String,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn malformed(field: &str, reason: String) -> Malformed {
    Malformed {
        field: field.to_owned(),
        reason,
    }
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a serde_json::Map<String, Value>, Malformed> {
    v.as_object()
        .ok_or_else(|| malformed(field, format!("expected an object, got {}", kind(v))))
}

/// A string field; `empty_ok` says whether "" is a value.
fn string(node: &Value, at: &str, key: &str, empty_ok: bool) -> Result<String, Malformed> {
    let field = format!("{at}.{key}");
    match node.get(key) {
        Some(Value::String(s)) if empty_ok || !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(malformed(&field, "is empty".into())),
        Some(other) => Err(malformed(
            &field,
            format!("expected a string, got {}", kind(other)),
        )),
        None => Err(malformed(&field, "is missing".into())),
    }
}

fn model(v: &Value, at: &str) -> Result<SelfHostedModel, Malformed> {
    object(v, at)?;
    let has_api_token = match v.get("hasApiToken") {
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(malformed(
                &format!("{at}.hasApiToken"),
                format!("expected a boolean, got {}", kind(other)),
            ))
        }
        None => return Err(malformed(&format!("{at}.hasApiToken"), "is missing".into())),
    };
    // GitLab leaves the identifier null for models it names by family alone.
    let identifier = match v.get("identifier") {
        Some(Value::Null) | None => String::new(),
        _ => string(v, at, "identifier", true)?,
    };
    Ok(SelfHostedModel {
        name: string(v, at, "name", false)?,
        family: string(v, at, "model", false)?,
        endpoint: string(v, at, "endpoint", true)?,
        identifier,
        has_api_token,
    })
}

fn setting(v: &Value, at: &str) -> Result<FeatureSetting, Malformed> {
    object(v, at)?;
    let model = match v.get("selfHostedModel") {
        Some(Value::Null) | None => None,
        Some(m) => Some(model(m, &format!("{at}.selfHostedModel"))?),
    };
    Ok(FeatureSetting {
        feature: string(v, at, "feature", false)?.to_lowercase(),
        provider: string(v, at, "provider", false)?.to_lowercase(),
        model,
    })
}

/// `data.<list>.nodes`, each node read by `read`.
fn nodes<T>(
    body: &Value,
    list: &str,
    read: impl Fn(&Value, &str) -> Result<T, Malformed>,
) -> Result<Vec<T>, Malformed> {
    let at = format!("data.{list}");
    let Some(connection) = body["data"].get(list).filter(|v| !v.is_null()) else {
        return Err(malformed(
            &at,
            "is missing (GitLab Duo Self-Hosted not set up, or not an administrator's token?)"
                .into(),
        ));
    };
    object(connection, &at)?;
    let at = format!("{at}.nodes");
    let list = connection
        .get("nodes")
        .ok_or_else(|| malformed(&at, "is missing".into()))?;
    let list = list
        .as_array()
        .ok_or_else(|| malformed(&at, format!("expected a list, got {}", kind(list))))?;
    list.iter()
        .enumerate()
        .map(|(i, n)| read(n, &format!("{at}[{i}]")))
        .collect()
}

/// The models and feature settings of a GraphQL answer whose `errors` were already looked at.
pub fn read(body: &Value) -> Result<(Vec<SelfHostedModel>, Vec<FeatureSetting>), Malformed> {
    object(body, "the answer")?;
    object(&body["data"], "data")?;
    let models = nodes(body, "aiSelfHostedModels", model)?;
    let settings = nodes(body, "aiFeatureSettings", setting)?;
    Ok((models, settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_malformed_field_is_named() {
        let m = json!({"name": "a", "model": "m", "endpoint": "http://h/v1", "identifier": null, "hasApiToken": false});
        let ok = json!({"data": {"aiSelfHostedModels": {"nodes": [m]},
            "aiFeatureSettings": {"nodes": [{"feature": "DUO_CHAT", "provider": "self_hosted", "selfHostedModel": m}]}}});
        let (models, settings) = read(&ok).unwrap();
        assert_eq!(models[0].identifier, "");
        assert_eq!(settings[0].feature, "duo_chat");
        for (bad, field) in [
            (json!({"data": null}), "data"),
            (
                json!({"data": {"aiSelfHostedModels": {"nodes": [null]}}}),
                "data.aiSelfHostedModels.nodes[0]",
            ),
            (
                json!({"data": {"aiSelfHostedModels": {"nodes": 3}}}),
                "data.aiSelfHostedModels.nodes",
            ),
            (
                json!({"data": {"aiSelfHostedModels": {"nodes": [{"name": 7}]}}}),
                "data.aiSelfHostedModels.nodes[0].hasApiToken",
            ),
            (
                json!({"data": {"aiSelfHostedModels": {"nodes": []}, "aiFeatureSettings": {"nodes": [{"feature": "", "provider": "x"}]}}}),
                "data.aiFeatureSettings.nodes[0].feature",
            ),
            (
                json!({"data": {"aiSelfHostedModels": {"nodes": []}, "aiFeatureSettings": null}}),
                "data.aiFeatureSettings",
            ),
        ] {
            assert_eq!(read(&bad).unwrap_err().field, field, "{bad}");
        }
    }
}
