//! How a feature's answers came: whole (one content event) or streamed, how they ended (their
//! finish reasons), and which model a direct OpenAI target says served them.
//!
//! In: successful [`RequestRecord`]s. Out: [`Answers`], per feature, as `summary.json` carries it.

use super::RequestRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One feature's answers, successful ones only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Answers {
    /// Answers that came as one content event (non-streamed, or a stream of one event): their
    /// TTFT is the time to the whole answer, and TPOT and ITL are not measurable.
    #[serde(default)]
    pub single_event: u64,
    /// Answers by how they ended: `stop`, `length` (cut by `max_tokens`), `tool_calls`, `none`
    /// (the server said nothing), or another reason as the server named it.
    #[serde(default)]
    pub finish_reasons: BTreeMap<String, u64>,
    /// Answers of a direct OpenAI target served by another model than asked, by
    /// `"<asked> → <served>"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other_model: BTreeMap<String, u64>,
}

/// Requests sent on a pooled connection the server had already closed (no byte of answer): each
/// was sent again once on a fresh connection. Both counted: a server that closes connections
/// after errors shows here, not as "unreachable".
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StaleConnections {
    /// Requests that met one.
    pub seen: u64,
    /// Of those, the ones the fresh connection answered (the rest failed with their class).
    pub retried_ok: u64,
}

impl StaleConnections {
    pub fn add(&mut self, r: &RequestRecord) {
        if r.stale_connection {
            self.seen += 1;
            self.retried_ok += u64::from(r.status.is_some());
        }
    }
}

/// A finish reason in the few classes every server's words fall into.
pub fn finish_class(reason: Option<&str>) -> &str {
    match reason {
        None | Some("") => "none",
        Some("stop" | "eos" | "end_turn" | "stop_sequence") => "stop",
        Some("length" | "max_tokens") => "length",
        Some("tool_calls" | "function_call" | "tool_use") => "tool_calls",
        Some(other) => other,
    }
}

impl Answers {
    /// Counts one successful answer.
    pub fn add(&mut self, r: &RequestRecord) {
        self.single_event += u64::from(r.single_event());
        let class = finish_class(r.finish_reason.as_deref());
        match self.finish_reasons.get_mut(class) {
            Some(n) => *n += 1,
            None => {
                self.finish_reasons.insert(class.to_owned(), 1);
            }
        }
        let usage_model = r.usage.as_ref().and_then(|u| u.model.as_ref());
        if let (Some(asked), Some(served)) =
            (&r.asked_model, r.served_model.as_ref().or(usage_model))
        {
            if asked != served {
                *self
                    .other_model
                    .entry(format!("{asked} → {served}"))
                    .or_default() += 1;
            }
        }
    }

    /// Answers counted.
    pub fn total(&self) -> u64 {
        self.finish_reasons.values().sum()
    }

    /// Every answer came whole: TPOT and ITL are not measurable for the feature.
    pub fn all_single_event(&self) -> bool {
        self.total() > 0 && self.single_event == self.total()
    }

    /// The share of answers cut by `max_tokens`.
    pub fn length_share(&self) -> Option<f64> {
        let n = self.total();
        (n > 0).then(|| self.finish_reasons.get("length").copied().unwrap_or(0) as f64 / n as f64)
    }

    /// `stop 40, length 2`: the counts in one line.
    pub fn finish_line(&self) -> String {
        let parts: Vec<String> = self
            .finish_reasons
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_words_fall_into_classes() {
        for (said, class) in [
            (None, "none"),
            (Some("stop"), "stop"),
            (Some("eos"), "stop"),
            (Some("length"), "length"),
            (Some("max_tokens"), "length"),
            (Some("tool_calls"), "tool_calls"),
            (Some("content_filter"), "content_filter"),
        ] {
            assert_eq!(finish_class(said), class, "{said:?}");
        }
    }
}
