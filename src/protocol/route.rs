//! Which framings a route answers in, as the real gateway does (`fixtures/captures/aigw-samples*`):
//! `/v2/chat/agent` always in chat NDJSON; any other route streams a streamed request (SSE or
//! raw text under `text/event-stream`) and answers a non-streamed one with one JSON document.
//! A 2xx answer in another framing is a protocol breach, even when its bytes decode; so is one
//! whose content type fits no framing at all (an HTML login page).

use super::Framing;

/// The one route whose answer is chat NDJSON, streamed or not.
const CHAT_AGENT: &str = "/v2/chat/agent";

impl Framing {
    /// Why an answer with `status` in this framing (chosen from `content_type`) does not fit
    /// `path` for a request that did (or did not) ask for a stream; `None` when it fits, and for
    /// every answer that is not a 2xx (an error body has framings of its own).
    pub fn misfit(
        self,
        path: &str,
        streamed: bool,
        status: u16,
        content_type: &str,
    ) -> Option<String> {
        if !(200..300).contains(&status) {
            return None;
        }
        if self == Self::Text {
            return Some(format!(
                "HTTP {status} with content type '{}', which fits no framing of {path}",
                crate::escape::console(content_type)
            ));
        }
        let route = path.split('?').next().unwrap_or(path);
        let wanted = match (route == CHAT_AGENT, streamed) {
            (true, _) => "chat NDJSON (application/x-ndjson)",
            (false, true) => "a stream (text/event-stream)",
            (false, false) => "one JSON document (application/json)",
        };
        let fits = match (route == CHAT_AGENT, streamed, self) {
            (true, _, f) => f == Self::ChatNdjson,
            (false, _, Self::ChatNdjson) => false,
            (false, true, f) => f != Self::Json,
            (false, false, f) => f == Self::Json,
        };
        (!fits).then(|| {
            format!(
                "{path} answered in {} framing; the route answers {} request in {wanted}",
                self.name(),
                if streamed {
                    "a streamed"
                } else {
                    "a non-streamed"
                }
            )
        })
    }

    /// The framing's name as it is written in results.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::RawText => "raw_text",
            Self::V4Sse => "v4_sse",
            Self::ChatNdjson => "chat_ndjson",
            Self::PromptsNdjson => "prompts_ndjson",
            Self::OpenAiSse => "openai_sse",
            Self::Text => "text",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_answers_in_its_framing() {
        for other in [Framing::RawText, Framing::Json, Framing::OpenAiSse] {
            let m = other.misfit("/v2/chat/agent", true, 200, "").unwrap();
            assert!(m.contains("chat NDJSON"), "{m}");
        }
        assert!(Framing::Text
            .misfit("/v1/completions", true, 500, "text/plain")
            .is_none());
        // (framing, path, streamed, fits)
        for (framing, path, streamed, fits) in [
            (Framing::ChatNdjson, "/v2/chat/agent", true, true),
            (Framing::ChatNdjson, "/v2/chat/agent", false, true),
            (Framing::RawText, "/v2/code/completions", true, true),
            (Framing::Json, "/v2/code/completions", false, true),
            (Framing::Json, "/v2/code/completions", true, false),
            (Framing::V4Sse, "/v4/code/suggestions", false, false),
            (Framing::ChatNdjson, "/v1/prompts/chat", true, false),
            (Framing::OpenAiSse, "/v1/chat/completions", true, true),
            (Framing::Text, "/v2/code/completions", true, false),
        ] {
            assert_eq!(
                framing.misfit(path, streamed, 200, "").is_none(),
                fits,
                "{framing:?} {path}"
            );
        }
    }
}
