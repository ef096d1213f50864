//! The scenario `init` writes, built as a TOML document and written by the serializer: what the
//! instance returned is only ever a value (a string, or a key the serializer quotes), so no name
//! can add a key, a table or a line. Each such string keeps `${` literal (written `$${`, see
//! `plan::env`), and goes through the one redaction rule, so an echoed token or a URL password is
//! never written.

use super::answer::{FeatureSetting, SelfHostedModel};
use std::collections::BTreeMap;
use toml::{Table, Value};

/// The scenario text, and a warning for each value that held a secret (written redacted).
pub struct Written {
    pub text: String,
    pub warnings: Vec<String>,
}

/// Turns the instance's strings into values: `${` stays literal, secrets are redacted (and
/// named in a warning).
#[derive(Default)]
struct Values {
    warnings: Vec<String>,
}

impl Values {
    fn given(&mut self, field: &str, s: &str) -> Value {
        let clean = crate::redact::text(s);
        if clean != s {
            self.warnings.push(format!(
                "{field}: held a secret (a token or a URL password); written as {}",
                crate::redact::REDACTED
            ));
        }
        Value::String(clean.replace("${", "$${"))
    }

    /// An endpoint: as [`Values::given`], with any credentials in the URL left out (a model's
    /// key comes from its `api_key_env`).
    fn given_url(&mut self, field: &str, s: &str) -> Value {
        let Ok(mut url) = reqwest::Url::parse(s) else {
            return self.given(field, s);
        };
        if url.username().is_empty() && url.password().is_none() {
            return self.given(field, s);
        }
        let _ = url.set_username("");
        let _ = url.set_password(None);
        self.warnings.push(format!(
            "{field}: the URL held credentials; they were left out (a model's key is read from \
             its api_key_env)"
        ));
        self.given(field, url.as_str())
    }
}

/// A name usable in TOML keys and environment variables (may be empty).
fn slug(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    out.trim_matches('_').to_owned()
}

/// One tap per backend endpoint, named after the first model served there; names are unique
/// (`_2`, `_3`... when two models slug alike) and never empty.
fn taps(models: &[SelfHostedModel], settings: &[FeatureSetting]) -> BTreeMap<String, String> {
    let mut taps: BTreeMap<String, String> = BTreeMap::new();
    for m in models
        .iter()
        .chain(settings.iter().filter_map(|s| s.model.as_ref()))
    {
        if m.endpoint.is_empty() || taps.contains_key(&m.endpoint) {
            continue;
        }
        let base = Some(slug(&m.name))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "backend".into());
        let mut name = base.clone();
        for n in 2.. {
            if !taps.values().any(|t| *t == name) {
                break;
            }
            name = format!("{base}_{n}");
        }
        taps.insert(m.endpoint.clone(), name);
    }
    taps
}

fn table(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Table {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// The harness's own settings: the gateway and its auth come from the environment.
fn head() -> Table {
    let target = table([
        ("url", text("${DUO_AIGW_URL}")),
        ("auth", text("${DUO_AIGW_AUTH:-bearer}")),
        ("token_env", text("DUO_AIGW_TOKEN")),
        ("key_file", text("${DUO_AIGW_KEY_FILE:-aigw-key.pem}")),
        ("ca_bundle", text("${DUO_AIGW_CA_BUNDLE:-}")),
    ]);
    table([
        ("name", text("site")),
        ("corpus", text("../fixtures/corpus/duo-default.jsonl")),
        ("request_timeout_s", Value::Integer(60)),
        ("target", Value::Table(target)),
    ])
}

/// What the document gathers feature by feature.
#[derive(Default)]
struct Parts {
    models: Table,
    routing: Table,
    notes: Vec<String>,
}

/// A feature served by a self-hosted model: its model setting, and the routing it must show
/// (the backend behind `tap`, the model the identifier names).
fn self_hosted(parts: &mut Parts, v: &mut Values, at: &str, m: &SelfHostedModel, tap: &str) {
    let feature = at.rsplit('.').next().unwrap_or(at);
    let upstream = m
        .identifier
        .split_once('/')
        .map_or(m.identifier.as_str(), |(_, id)| id);
    let mut model = table([
        ("name", v.given(&format!("{at}.model"), &m.family)),
        (
            "endpoint",
            v.given_url(&format!("{at}.endpoint"), &m.endpoint),
        ),
        (
            "identifier",
            v.given(&format!("{at}.identifier"), &m.identifier),
        ),
    ]);
    if m.has_api_token {
        let name = Some(slug(&m.name).to_uppercase())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "MODEL".into());
        model.insert("api_key_env".into(), text(&format!("DUO_MODEL_KEY_{name}")));
    }
    parts.models.insert(feature.to_owned(), Value::Table(model));
    let routing = table([
        ("backend", text(tap)),
        ("model", v.given(&format!("{at}.identifier"), upstream)),
    ]);
    parts
        .routing
        .insert(feature.to_owned(), Value::Table(routing));
}

/// A name from the instance shown in a comment: quoted with every line break escaped, so
/// nothing it holds ends the comment.
fn shown(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !s.is_empty() && s.chars().all(plain) {
        return s.to_owned();
    }
    // JSON quoting escapes every line break (TOML's would write a multi-line string).
    serde_json::to_string(&crate::redact::text(s)).unwrap_or_default()
}

fn feature(parts: &mut Parts, v: &mut Values, s: &FeatureSetting, taps: &BTreeMap<String, String>) {
    let name = shown(&s.feature);
    if crate::features::lookup(&s.feature).is_none() {
        let note = format!(
            "{name}: {} (not replayed over the AIGW's HTTP routes)",
            shown(&s.provider)
        );
        return parts.notes.push(note);
    }
    let at = format!("models.{}", s.feature);
    match (s.provider.as_str(), &s.model) {
        ("self_hosted", Some(m)) if !m.endpoint.is_empty() => {
            self_hosted(parts, v, &at, m, &taps[&m.endpoint]);
        }
        ("self_hosted", Some(_)) => parts
            .notes
            .push(format!("{name}: self_hosted, its model has no endpoint")),
        ("self_hosted", None) => parts
            .notes
            .push(format!("{name}: self_hosted without a model")),
        ("vendored", _) => parts.notes.push(format!(
            "{name}: vendored, served by GitLab's cloud AI gateway (a hybrid setup, not a leak)"
        )),
        ("disabled", _) => {
            let disabled = table([("disabled", Value::Boolean(true))]);
            parts
                .routing
                .insert(s.feature.clone(), Value::Table(disabled));
        }
        (_, _) => parts.notes.push(format!(
            "{name}: provider {} not known to the harness",
            shown(&s.provider)
        )),
    }
}

/// The scenario for these settings; `gitlab` is the instance's URL (checked: no credentials).
pub fn scenario(gitlab: &str, models: &[SelfHostedModel], settings: &[FeatureSetting]) -> Written {
    let mut values = Values::default();
    let mut doc = head();
    let taps = taps(models, settings);
    let tap_list: Vec<Value> = taps
        .iter()
        .map(|(endpoint, name)| {
            Value::Table(table([
                ("name", text(name)),
                ("upstream", values.given_url("tap.upstream", endpoint)),
            ]))
        })
        .collect();
    doc.insert("tap".into(), Value::Array(tap_list));
    let mut parts = Parts::default();
    for s in settings {
        feature(&mut parts, &mut values, s, &taps);
    }
    let hybrid = settings.iter().any(|s| s.provider == "vendored");
    if !parts.models.is_empty() {
        doc.insert(
            "models".into(),
            Value::Table(std::mem::take(&mut parts.models)),
        );
    }
    let mut routing = table([("fully_self_hosted", Value::Boolean(!hybrid))]);
    routing.insert(
        "features".into(),
        Value::Table(std::mem::take(&mut parts.routing)),
    );
    doc.insert("routing".into(), Value::Table(routing));
    let body = toml::to_string(&doc).unwrap_or_default();
    Written {
        text: format!(
            "{}{body}{}",
            header(gitlab, models.len(), settings.len(), hybrid),
            footer(&parts.notes)
        ),
        warnings: values.warnings,
    }
}

/// The comment on top: where the scenario came from and what the site's environment must give.
fn header(gitlab: &str, models: usize, settings: usize, hybrid: bool) -> String {
    // `init` refused a URL with credentials; quoted all the same, as any outside text.
    let from = shown(gitlab.trim_end_matches('/'));
    let routing = if hybrid {
        "Some features are vendored: the setup is hybrid, so not every answer must reach a tap."
    } else {
        "Every feature is self-hosted: an answer that reached no tap is a leak."
    };
    format!(
        "# Written by `duo-harness init` from {from}: its Duo Self-Hosted models and feature settings.\n\
         # The gateway and its auth come from the environment, as in scenarios/real-aigw.toml:\n\
         #   export DUO_AIGW_URL=https://aigw.internal:5052 DUO_AIGW_AUTH=bearer DUO_AIGW_TOKEN=...\n\
         # Models GitLab holds an API token for read theirs from DUO_MODEL_KEY_<MODEL> (GitLab never\n\
         # gives its copy out). {models} self-hosted model(s), {settings} feature setting(s).\n\
         # {routing}\n\n"
    )
}

/// What was not turned into a check, as comments (each name quoted).
fn footer(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let mut out = "\n# Feature settings not turned into checks:\n".to_owned();
    for n in notes {
        out += &format!("#   {n}\n");
    }
    out
}
