//! Routing checks: which backend and model served each feature, against what the scenario
//! declares (`[routing]`).
//!
//! In: the expectations, and per feature the requests that answered and the upstream calls the
//! taps tied to them (tap and `model`). Out: per feature `routing.{expected, observed,
//! violations}`. Violations: `wrong_backend`, `wrong_model`, `no_chat_fallback` (a chat
//! sub-feature without its own entry did not use General Chat's model), `unreached` (answers,
//! but no upstream call reached a tapped backend), `hybrid_leak` (the same, under
//! `fully_self_hosted`), `served_though_disabled`.

use crate::plan::{Expect, Routing};
use crate::taps::BackendAgg;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Observed {
    pub backend: String,
    pub model: String,
    pub calls: u64,
}

/// What a routing violation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    WrongBackend,
    WrongModel,
    /// A chat sub-feature without its own entry did not use General Chat's model.
    NoChatFallback,
    /// Answers, but no upstream call reached a tapped backend.
    Unreached,
    /// The same, under `fully_self_hosted`: GitLab's cloud served it.
    HybridLeak,
    ServedThoughDisabled,
}

impl ViolationKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::WrongBackend => "wrong_backend",
            Self::WrongModel => "wrong_model",
            Self::NoChatFallback => "no_chat_fallback",
            Self::Unreached => "unreached",
            Self::HybridLeak => "hybrid_leak",
            Self::ServedThoughDisabled => "served_though_disabled",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Violation {
    pub kind: ViolationKind,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct RoutingSummary {
    pub expected: Option<Expect>,
    /// The expectation is General Chat's, inherited by a chat sub-feature.
    pub inherited: bool,
    pub observed: Vec<Observed>,
    pub violations: Vec<Violation>,
}

/// Checks one feature; `answered` counts its successful requests.
pub fn check(
    routing: &Routing,
    feature: &str,
    answered: u64,
    backend: Option<&BackendAgg>,
) -> RoutingSummary {
    let own = routing.features.get(feature);
    let inherited = own.is_none();
    let expected = own.or_else(|| routing.features.get(crate::features::fallback(feature)?));
    let observed: Vec<Observed> = backend
        .map(|b| &b.observed)
        .into_iter()
        .flatten()
        .map(|((backend, model), calls)| Observed {
            backend: backend.clone(),
            model: model.clone(),
            calls: *calls,
        })
        .collect();
    let mut violations = Vec::new();
    let mut violate = |kind, message: String| violations.push(Violation { kind, message });
    if expected.is_some_and(|e| e.disabled) {
        if answered > 0 {
            violate(
                ViolationKind::ServedThoughDisabled,
                format!("{answered} requests answered although the feature must be disabled"),
            );
        }
    } else if answered > 0 && observed.is_empty() {
        let want = expected
            .and_then(|e| e.backend.as_deref())
            .unwrap_or("a tapped backend");
        if routing.fully_self_hosted {
            violate(ViolationKind::HybridLeak, format!("{answered} requests answered without any upstream call reaching a self-hosted backend (expected {want})"));
        } else if expected.is_some() {
            violate(
                ViolationKind::Unreached,
                format!("{answered} requests answered but no upstream call reached {want}"),
            );
        }
    }
    for o in &observed {
        let Some(e) = expected.filter(|e| !e.disabled) else {
            continue;
        };
        if let Some(b) = e.backend.as_deref().filter(|b| *b != o.backend) {
            violate(
                ViolationKind::WrongBackend,
                format!("{} calls reached {} instead of {b}", o.calls, o.backend),
            );
        }
        if let Some(m) = e.model.as_deref().filter(|m| *m != o.model) {
            let kind = if inherited {
                ViolationKind::NoChatFallback
            } else {
                ViolationKind::WrongModel
            };
            violate(
                kind,
                format!(
                    "{} calls asked for model '{}' instead of '{m}'",
                    o.calls, o.model
                ),
            );
        }
    }
    RoutingSummary {
        expected: expected.cloned(),
        inherited: inherited && expected.is_some(),
        observed,
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn routing(fully: bool) -> Routing {
        let e = |b: &str, m: &str| Expect {
            backend: Some(b.into()),
            model: Some(m.into()),
            disabled: false,
        };
        Routing {
            fully_self_hosted: fully,
            features: BTreeMap::from([
                ("duo_chat".to_owned(), e("chat", "mistral")),
                ("code_completions".to_owned(), e("code", "codestral")),
                (
                    "summarize_review".to_owned(),
                    Expect {
                        disabled: true,
                        ..Expect::default()
                    },
                ),
            ]),
        }
    }

    fn seen(pairs: &[(&str, &str)]) -> BackendAgg {
        let mut b = BackendAgg::default();
        for (t, m) in pairs {
            *b.observed
                .entry((t.to_string(), m.to_string()))
                .or_default() += 1;
        }
        b
    }

    fn kinds(s: &RoutingSummary) -> Vec<&str> {
        s.violations.iter().map(|v| v.kind.name()).collect()
    }

    #[test]
    fn each_violation_has_its_cause_and_none_without() {
        let r = routing(false);
        assert!(kinds(&check(
            &r,
            "code_completions",
            2,
            Some(&seen(&[("code", "codestral")]))
        ))
        .is_empty());
        assert_eq!(
            kinds(&check(
                &r,
                "code_completions",
                2,
                Some(&seen(&[("chat", "codestral")]))
            )),
            ["wrong_backend"]
        );
        assert_eq!(
            kinds(&check(
                &r,
                "code_completions",
                2,
                Some(&seen(&[("code", "other")]))
            )),
            ["wrong_model"]
        );
        assert_eq!(
            kinds(&check(
                &r,
                "duo_chat_fix_code",
                1,
                Some(&seen(&[("chat", "codestral")]))
            )),
            ["no_chat_fallback"]
        );
        assert!(kinds(&check(
            &r,
            "duo_chat_fix_code",
            1,
            Some(&seen(&[("chat", "mistral")]))
        ))
        .is_empty());
        assert_eq!(
            kinds(&check(&r, "code_completions", 2, None)),
            ["unreached"]
        );
        assert_eq!(
            kinds(&check(&routing(true), "code_completions", 2, None)),
            ["hybrid_leak"]
        );
        assert_eq!(
            kinds(&check(&routing(true), "glab_ask_git_command", 1, None)),
            ["hybrid_leak"]
        );
        assert!(
            kinds(&check(&r, "glab_ask_git_command", 1, None)).is_empty(),
            "no expectation, no check"
        );
        assert_eq!(
            kinds(&check(&r, "summarize_review", 1, None)),
            ["served_though_disabled"]
        );
        assert!(kinds(&check(&r, "summarize_review", 0, None)).is_empty());
    }
}
