//! Requests ready to send: the recorded interaction with the feature's model selection injected
//! (or the recorded one kept, moved by `[remap]`), a key redacted at capture given again, its
//! body serialised once, so the per-request cost under load is only the send; and what model
//! call each request will make the gateway do ([`ModelCall`], for the preflight).
//!
//! In: the corpus's interactions, the resolved model settings and remap. Out: [`Prepared`].

use super::client::ResolvedModel;
use crate::corpus::Interaction;
use crate::plan::Remap;
use bytes::Bytes;
use serde_json::{json, Value};

/// The request body with the feature's model selection injected (a setting the scenario names
/// for the feature itself replaces a recorded selection; one inherited from General Chat does
/// not).
pub fn body_for(it: &Interaction, model: Option<&ResolvedModel>) -> Value {
    let mut body = it.request.body.clone();
    if it.protocol == "grpc" {
        return body; // a session's model goes in its metadata (`session_model_header`)
    }
    let (Some(m), Some(obj), false) = (
        model,
        body.as_object_mut(),
        is_openai_path(&it.request.path),
    ) else {
        return body;
    };
    let recorded = obj.contains_key("model_metadata") || obj.contains_key("model_name");
    if m.inherited && recorded {
        return body; // replayed traffic keeps the selection GitLab sent
    }
    let s = &m.setting;
    if it.request.path.starts_with("/v2/code/") || it.request.path == "/v2/completions" {
        obj.insert("model_provider".into(), json!("litellm"));
        obj.insert("model_name".into(), json!(s.name));
        obj.insert("model_endpoint".into(), json!(m.endpoint));
        obj.insert("model_identifier".into(), json!(s.identifier));
        if let Some(k) = &m.api_key {
            obj.insert("model_api_key".into(), json!(k));
        }
    } else {
        let mut meta = json!({"provider": s.provider, "name": s.name, "endpoint": m.endpoint, "identifier": s.identifier});
        if let Some(k) = &m.api_key {
            meta["api_key"] = json!(k);
        }
        obj.insert("model_metadata".into(), meta);
    }
    body
}

/// One interaction ready to send: its body serialised once, its headers filtered.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub interaction: Interaction,
    /// `None` for a request without a body.
    pub body: Option<Bytes>,
    /// The JSON body, kept when taps need a nonce planted in each send.
    pub json: Option<Value>,
    /// Recorded request headers to replay (hop-by-hop and auth headers removed).
    pub headers: Vec<(String, String)>,
    /// On an OpenAI route (a direct target): the model the body asks for, which the answer's
    /// `model` is held to.
    pub asked_model: Option<String>,
}

/// Headers never replayed from a recording: hop-by-hop ones, and auth (the target's own applies).
const NOT_REPLAYED: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "authorization",
];

/// A recorded model selection whose key was redacted at capture gets the key the run was given
/// (or loses the placeholder): `[REDACTED]` is never sent as a key.
fn restore_model_key(body: &mut Value, key: Option<&str>) {
    let redacted = |v: &Value| v.as_str() == Some(crate::redact::REDACTED);
    let slots: [(&str, Option<&str>); 2] =
        [("model_api_key", None), ("model_metadata", Some("api_key"))];
    for (field, inner) in slots {
        let Some(obj) = (match inner {
            None => body.as_object_mut(),
            Some(_) => body.get_mut(field).and_then(Value::as_object_mut),
        }) else {
            continue;
        };
        let name = inner.unwrap_or(field);
        if !obj.get(name).is_some_and(redacted) {
            continue;
        }
        match key {
            Some(k) => obj.insert(name.to_owned(), json!(k)),
            None => obj.remove(name),
        };
    }
}

/// What every request's model selection shares: the model a direct OpenAI target is asked for,
/// the key given again where capture redacted one, and where recorded endpoints moved.
#[derive(Debug, Default, Clone, Copy)]
pub struct Replay<'a> {
    pub openai_model: Option<&'a str>,
    pub replay_key: Option<&'a str>,
    /// Resolved: every target is a URL the gateway can call (a twin's or a tap's).
    pub remap: Option<&'a Remap>,
}

impl Replay<'_> {
    /// A recorded selection's endpoint moved, if the remap says where.
    fn moved(&self, selection: Option<&mut Value>) {
        let (Some(remap), Some(slot)) = (self.remap, selection) else {
            return;
        };
        if let Some(to) = slot.as_str().and_then(|e| remap.target(e)) {
            *slot = json!(to);
        }
    }

    /// Both places a body carries its endpoint: `model_metadata.endpoint` and the flat
    /// `model_endpoint` of `/v2/code/*`.
    fn move_body(&self, body: &mut Value) {
        self.moved(
            body.get_mut("model_metadata")
                .and_then(|m| m.get_mut("endpoint")),
        );
        self.moved(body.get_mut("model_endpoint"));
    }
}

impl Prepared {
    /// Prepares `it` with the feature's model (and, for OpenAI targets, a model override). A
    /// recorded model key that was redacted is given again, or left out; a recorded endpoint
    /// the remap names is moved.
    pub fn new(it: Interaction, model: Option<&ResolvedModel>, replay: &Replay) -> Self {
        let mut body_json = body_for(&it, model);
        restore_model_key(&mut body_json, replay.replay_key);
        replay.move_body(&mut body_json);
        if let (Some(m), true) = (replay.openai_model, is_openai_path(&it.request.path)) {
            body_json["model"] = json!(m);
        }
        let mut headers: Vec<(String, String)> = it
            .request
            .headers
            .iter()
            .filter(|(k, _)| !NOT_REPLAYED.contains(&k.to_ascii_lowercase().as_str()))
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        let raw = it.request.body_b64.as_deref().and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        });
        let body = match raw {
            Some(bytes) => Some(Bytes::from(bytes)),
            None => (!body_json.is_null()).then(|| Bytes::from(body_json.to_string())),
        };
        let has_type = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !has_type && it.request.body_b64.is_none() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        if it.protocol == "grpc" {
            session_model_header(&mut headers, model, replay);
        }
        let asked_model = is_openai_path(&it.request.path)
            .then(|| body_json["model"].as_str().map(str::to_owned))
            .flatten();
        let json = (it.request.body_b64.is_none() && !body_json.is_null()).then_some(body_json);
        Self {
            interaction: it,
            body,
            json,
            headers,
            asked_model,
        }
    }
}

/// A session's self-hosted model: `x-gitlab-agent-platform-model-metadata` from the feature's
/// setting (replacing a recorded one, unless the setting is inherited), or the recorded one
/// with a key redacted at capture given again (or left out) and its endpoint moved.
fn session_model_header(
    headers: &mut Vec<(String, String)>,
    model: Option<&ResolvedModel>,
    replay: &Replay,
) {
    let name = crate::dws::MODEL_METADATA_HEADER;
    let recorded = headers
        .iter()
        .position(|(k, _)| k.eq_ignore_ascii_case(name));
    let own = model.filter(|m| !(m.inherited && recorded.is_some()));
    let value = if let Some(m) = own {
        let s = &m.setting;
        let mut meta = json!({"provider": s.provider, "name": s.name, "endpoint": m.endpoint, "identifier": s.identifier});
        if let Some(k) = &m.api_key {
            meta["api_key"] = json!(k);
        }
        meta
    } else if let Some(i) = recorded {
        let meta: Value = serde_json::from_str(&headers[i].1).unwrap_or(Value::Null);
        let mut wrapped = json!({ "model_metadata": meta });
        restore_model_key(&mut wrapped, replay.replay_key);
        replay.move_body(&mut wrapped);
        wrapped["model_metadata"].take()
    } else {
        return;
    };
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    headers.push((name.to_owned(), value.to_string()));
}

/// A model call a request will make the gateway do (or, to a direct target, is): where, and the
/// model id asked for (`None`: the selection names no identifier).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ModelCall {
    pub endpoint: String,
    pub model: Option<String>,
    /// The key the selection gives the backend; a direct target's is the target's own auth.
    pub api_key: Option<String>,
    /// The request goes to the backend itself (an OpenAI route of the target).
    pub direct: bool,
}

/// The model id an identifier asks for: `custom_openai/<id>` → `<id>`.
fn model_id(identifier: Option<&str>) -> Option<String> {
    let i = identifier.filter(|i| !i.is_empty())?;
    Some(i.split_once('/').map_or(i, |(_, id)| id).to_owned())
}

/// The call a `model_metadata` object (or the flat `model_*` fields) selects.
fn selected_call(meta: &Value, prefix: &str) -> Option<ModelCall> {
    let field = |name: &str| meta.get(format!("{prefix}{name}"))?.as_str();
    let endpoint = field("endpoint").filter(|e| !e.is_empty())?;
    Some(ModelCall {
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        model: model_id(field("identifier")),
        api_key: field("api_key").map(str::to_owned),
        direct: false,
    })
}

impl Prepared {
    /// The model call this request makes happen, its settings and remap applied: `None` when
    /// it names no endpoint (the gateway's own default model).
    pub fn model_call(&self, base_url: &str) -> Option<ModelCall> {
        let path = &self.interaction.request.path;
        if self.interaction.protocol == "grpc" {
            let name = crate::dws::MODEL_METADATA_HEADER;
            let (_, v) = self
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))?;
            return selected_call(&serde_json::from_str(v).ok()?, "");
        }
        let body = self.json.as_ref()?;
        if is_openai_path(path) {
            let prefix = path
                .split("/chat/completions")
                .next()?
                .split("/completions")
                .next()?;
            return Some(ModelCall {
                endpoint: format!("{}{prefix}", base_url.trim_end_matches('/')),
                model: self.asked_model.clone(),
                api_key: None,
                direct: true,
            });
        }
        body.get("model_metadata")
            .and_then(|m| selected_call(m, ""))
            .or_else(|| selected_call(body, "model_"))
    }
}

/// OpenAI-compatible routes of a model backend (no Duo model selection applies).
pub fn is_openai_path(path: &str) -> bool {
    path.starts_with("/v1/chat/completions") || path.starts_with("/v1/completions")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ModelSetting;

    #[test]
    fn a_redacted_model_key_is_restored_or_left_out_never_sent() {
        let mut flat = json!({"model_api_key": "[REDACTED]", "model_name": "codestral"});
        restore_model_key(&mut flat, Some("sk-live"));
        assert_eq!(flat["model_api_key"], "sk-live");
        let mut meta = json!({"model_metadata": {"name": "mistral", "api_key": "[REDACTED]"}});
        restore_model_key(&mut meta, None);
        assert_eq!(meta, json!({"model_metadata": {"name": "mistral"}}));
        let mut own = json!({"model_api_key": "sk-recorded-elsewhere"});
        restore_model_key(&mut own, Some("sk-live"));
        assert_eq!(own["model_api_key"], "sk-recorded-elsewhere");
    }

    /// Every place a recording carries its endpoint moves: `model_metadata`, the flat fields
    /// of `/v2/code/*`, and an Agent Platform session's model-metadata header; the model call
    /// the preflight asks about is the moved one.
    #[test]
    fn a_remap_moves_the_endpoint_wherever_the_recording_carries_it() {
        let remap = Remap::resolve(
            &Default::default(),
            &["http://old:8000/v1=http://new:9000/v1".to_owned()],
        )
        .unwrap();
        let replay = Replay {
            remap: Some(&remap),
            ..Default::default()
        };
        let line = |v: Value| -> Interaction { serde_json::from_value(v).unwrap() };
        let meta = json!({"name": "mistral", "endpoint": "http://old:8000/v1/", "identifier": "custom_openai/m"});
        let chat = line(
            json!({"v": 1, "id": "a", "feature": "duo_chat_fix_code", "request": {
            "method": "POST", "path": "/v1/prompts/chat/fix_code", "body": {"inputs": {}, "model_metadata": meta}}}),
        );
        let code = line(
            json!({"v": 1, "id": "b", "feature": "code_completions", "request": {
            "method": "POST", "path": "/v2/code/completions",
            "body": {"model_endpoint": "http://old:8000/v1", "model_identifier": "custom_openai/c"}}}),
        );
        let session = line(
            json!({"v": 1, "id": "c", "feature": "duo_agent_platform", "protocol": "grpc",
            "request": {"method": "POST", "path": "/DuoWorkflow/ExecuteWorkflow",
                "headers": {crate::dws::MODEL_METADATA_HEADER: meta.to_string()}, "body": {}}}),
        );
        for (it, model) in [(chat, "m"), (code, "c"), (session, "m")] {
            let p = Prepared::new(it, None, &replay);
            let call = p.model_call("http://aigw").unwrap();
            assert_eq!(call.endpoint, "http://new:9000/v1", "{}", p.interaction.id);
            assert_eq!(call.model.as_deref(), Some(model));
            let sent = p.json.as_ref().map(Value::to_string).unwrap_or_default()
                + &p.headers
                    .iter()
                    .map(|(_, v)| v.as_str())
                    .collect::<String>();
            assert!(!sent.contains("old:8000"), "{sent}");
        }
    }

    #[test]
    fn a_recorded_selection_is_kept_unless_the_feature_itself_is_set() {
        let it: Interaction = serde_json::from_value(json!({
            "v": 1, "id": "a", "feature": "duo_chat_explain_code",
            "request": {"method": "POST", "path": "/v1/prompts/chat/explain_code",
                        "body": {"inputs": {}, "model_metadata": {"name": "llama3", "endpoint": "http://recorded/v1"}}}
        }))
        .unwrap();
        let setting: ModelSetting = serde_json::from_value(json!({
            "name": "mistral", "endpoint": "http://scenario/v1", "identifier": "custom_openai/m"
        }))
        .unwrap();
        let mut m = ResolvedModel {
            setting,
            endpoint: "http://scenario/v1".into(),
            api_key: None,
            inherited: true,
        };
        assert_eq!(body_for(&it, Some(&m))["model_metadata"]["name"], "llama3");
        m.inherited = false;
        assert_eq!(body_for(&it, Some(&m))["model_metadata"]["name"], "mistral");
    }
}
