//! Which Duo feature a captured request belongs to, from its route and prompt id:
//!
//! | Route | Feature |
//! |---|---|
//! | `/v2/code/completions`, `/v2/completions` | `code_completions` |
//! | `/v2/code/generations` | `code_generations` |
//! | `/v3/code/completions`, `/v4/code/suggestions` | first `prompt_components[].type`: `code_editor_generation` → `code_generations`, else `code_completions` |
//! | `/v2/chat/agent`, `/v1/chat/<invokable>` | `duo_chat` (sub-features are not told apart on this route) |
//! | `/v1/prompts/<id>`, `/v2/prompts/<id>` | the feature whose prompt id is `<id>` (`chat/explain_code` → `duo_chat_explain_code`, ...) |
//!
//! Any other route (health, metrics, tokens) is forwarded but not recorded.

use serde_json::Value;

/// The feature key of a request on `path` (query string allowed) with `body`.
pub fn feature_for(path: &str, body: &Value) -> Option<&'static str> {
    let path = path
        .split('?')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/');
    match path {
        "/v2/code/completions" | "/v2/completions" => Some("code_completions"),
        "/v2/code/generations" => Some("code_generations"),
        "/v3/code/completions" | "/v4/code/suggestions" => {
            let kind = body["prompt_components"][0]["type"].as_str();
            Some(match kind {
                Some("code_editor_generation") => "code_generations",
                _ => "code_completions",
            })
        }
        "/v2/chat/agent" => Some("duo_chat"),
        p if p.starts_with("/v1/chat/") => Some("duo_chat"),
        p => {
            let id = p
                .strip_prefix("/v1/prompts/")
                .or_else(|| p.strip_prefix("/v2/prompts/"))?;
            crate::features::FEATURES
                .iter()
                .find(|f| f.prompt_id == Some(id))
                .map(|f| f.key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_and_prompt_ids_map_to_features() {
        let none = json!({});
        assert_eq!(
            feature_for("/v2/code/completions", &none),
            Some("code_completions")
        );
        assert_eq!(
            feature_for("/v2/code/generations?x=1", &none),
            Some("code_generations")
        );
        let gen = json!({"prompt_components": [{"type": "code_editor_generation"}]});
        assert_eq!(
            feature_for("/v4/code/suggestions", &gen),
            Some("code_generations")
        );
        assert_eq!(
            feature_for("/v4/code/suggestions", &none),
            Some("code_completions")
        );
        assert_eq!(feature_for("/v2/chat/agent", &none), Some("duo_chat"));
        assert_eq!(
            feature_for("/v1/prompts/chat/fix_code", &none),
            Some("duo_chat_fix_code")
        );
        assert_eq!(
            feature_for("/v2/prompts/review_merge_request", &none),
            Some("review_merge_request")
        );
        assert_eq!(feature_for("/v1/prompts/nope", &none), None);
        assert_eq!(feature_for("/monitoring/healthz", &none), None);
    }
}
