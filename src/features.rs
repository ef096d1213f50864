//! The Duo feature catalogue (DESIGN.md, "Duo features"): every feature key the harness knows,
//! and for chat sub-features the General Chat feature whose model they fall back to.

/// How a feature reaches the AIGW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `/v2/code/completions`, `/v4/code/suggestions`.
    CodeCompletions,
    /// `/v2/code/generations`, `/v4/code/suggestions`.
    CodeGenerations,
    /// `/v2/chat/agent`.
    ChatAgent,
    /// `/v1/prompts/<id>` or `/v2/prompts/<id>`.
    PromptRegistry,
    /// Duo Workflow Service gRPC (not replayed over HTTP).
    Workflow,
}

/// One Duo feature.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    pub key: &'static str,
    pub entry: Entry,
    /// Prompt id used on the prompt-registry routes, where the feature has one.
    pub prompt_id: Option<&'static str>,
}

const fn f(key: &'static str, entry: Entry, prompt_id: Option<&'static str>) -> Feature {
    Feature {
        key,
        entry,
        prompt_id,
    }
}

/// Every feature of the Duo Self-Hosted feature table.
pub const FEATURES: &[Feature] = &[
    f("code_completions", Entry::CodeCompletions, None),
    f(
        "code_generations",
        Entry::CodeGenerations,
        Some("code_suggestions/generations"),
    ),
    f("duo_chat", Entry::ChatAgent, None),
    f(
        "duo_chat_explain_code",
        Entry::PromptRegistry,
        Some("chat/explain_code"),
    ),
    f(
        "duo_chat_write_tests",
        Entry::PromptRegistry,
        Some("chat/write_tests"),
    ),
    f(
        "duo_chat_refactor_code",
        Entry::PromptRegistry,
        Some("chat/refactor_code"),
    ),
    f(
        "duo_chat_fix_code",
        Entry::PromptRegistry,
        Some("chat/fix_code"),
    ),
    f(
        "duo_chat_troubleshoot_job",
        Entry::PromptRegistry,
        Some("chat/troubleshoot_job"),
    ),
    f(
        "duo_chat_explain_vulnerability",
        Entry::PromptRegistry,
        Some("chat/explain_vulnerability"),
    ),
    f(
        "duo_chat_summarize_comments",
        Entry::PromptRegistry,
        Some("chat/summarize_comments"),
    ),
    f(
        "generate_commit_message",
        Entry::PromptRegistry,
        Some("generate_commit_message"),
    ),
    f(
        "summarize_new_merge_request",
        Entry::PromptRegistry,
        Some("summarize_new_merge_request"),
    ),
    f(
        "review_merge_request",
        Entry::PromptRegistry,
        Some("review_merge_request"),
    ),
    f(
        "summarize_review",
        Entry::PromptRegistry,
        Some("summarize_review"),
    ),
    f(
        "resolve_vulnerability",
        Entry::PromptRegistry,
        Some("resolve_vulnerability"),
    ),
    f(
        "glab_ask_git_command",
        Entry::PromptRegistry,
        Some("glab_ask_git_command"),
    ),
    f("duo_agent_platform", Entry::Workflow, None),
    f("duo_agent_platform_agentic_chat", Entry::Workflow, None),
];

/// Looks a feature up by key.
pub fn lookup(key: &str) -> Option<&'static Feature> {
    FEATURES.iter().find(|f| f.key == key)
}

/// The feature whose model a feature falls back to when it has no model of its own:
/// chat sub-features fall back to General Chat (`duo_chat`).
pub fn fallback(key: &str) -> Option<&'static str> {
    key.strip_prefix("duo_chat_").map(|_| "duo_chat")
}

/// The features a default corpus must cover: every feature reachable over the AIGW's HTTP routes.
pub fn http_features() -> impl Iterator<Item = &'static Feature> {
    FEATURES.iter().filter(|f| f.entry != Entry::Workflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_sub_features_fall_back_to_general_chat() {
        assert_eq!(fallback("duo_chat_fix_code"), Some("duo_chat"));
        assert_eq!(fallback("duo_chat"), None);
        assert_eq!(fallback("code_completions"), None);
        assert!(lookup("review_merge_request").is_some());
        assert!(lookup("issue_description_generation").is_none());
    }
}
