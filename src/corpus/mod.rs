//! Corpus v1: versioned JSONL, one recorded Duo interaction per line
//! (`schemas/corpus-v1.schema.json`). In: a file. Out: [`Interaction`]s, or a [`CorpusError`]
//! naming the file, the line and the field that is wrong.

pub mod capture;
pub mod session;
pub mod stats;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The only corpus version this build reads.
pub const VERSION: u32 = 1;

/// One recorded interaction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    /// Corpus format version; must be 1.
    pub v: u32,
    /// Unique id within the corpus.
    pub id: String,
    /// Duo feature key (`features::FEATURES`).
    pub feature: String,
    /// Offset of the original arrival from the start of the recording, milliseconds.
    #[serde(default)]
    pub arrival_offset_ms: f64,
    /// `http` (AIGW routes) or `grpc` (a Duo Workflow Service session: `session` says how to
    /// play it).
    #[serde(default = "http")]
    pub protocol: String,
    pub request: RecordedRequest,
    /// The response as recorded, when the line came from a capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    /// What the backend taps saw upstream, when recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<Value>,
    /// A `grpc` line's session: the executor's and Rails' answers, and what must be seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<session::Session>,
    /// Free-form labels (language, size class...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

fn http() -> String {
    "http".into()
}

/// The request half of an interaction. Secrets are redacted before a line is written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: Map<String, Value>,
    #[serde(default)]
    pub body: Value,
    /// A body that was not JSON when recorded: its bytes, base64 (sent as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_b64: Option<String>,
}

impl Interaction {
    /// Whether the request asks for a streamed answer.
    pub fn streams(&self) -> bool {
        let b = &self.request.body;
        b["stream"].as_bool().unwrap_or(false)
            || b["prompt_components"][0]["payload"]["stream"]
                .as_bool()
                .unwrap_or(false)
            || self.request.path == "/v2/chat/agent"
            || self.protocol == "grpc" // a session streams checkpoints
    }
}

/// A corpus that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("cannot read corpus {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: the corpus holds no interaction")]
    Empty { path: PathBuf },
}

/// Reads and checks a whole corpus file. A torn last line (no newline at its end and not valid:
/// a recorder stopped mid-write) is reported on stderr and skipped, not fatal.
pub fn load(path: &Path) -> Result<Vec<Interaction>, CorpusError> {
    let scan = scan(path)?;
    if let Some((line, message)) = scan.errors.into_iter().next() {
        return Err(CorpusError::Line {
            path: path.into(),
            line,
            message,
        });
    }
    if let Some(line) = scan.torn_last_line {
        eprintln!(
            "warning: {}:{line}: torn last line skipped (the recorder stopped mid-write?)",
            path.display()
        );
    }
    if scan.interactions.is_empty() {
        return Err(CorpusError::Empty { path: path.into() });
    }
    Ok(scan.interactions)
}

/// Every line of a corpus checked: the good interactions, the bad lines with their messages,
/// and a torn last line.
#[derive(Debug, Default)]
pub struct Scan {
    pub interactions: Vec<Interaction>,
    /// (line number, message) of each bad line.
    pub errors: Vec<(usize, String)>,
    pub torn_last_line: Option<usize>,
}

/// Checks every line of `path`, going on past bad ones.
pub fn scan(path: &Path) -> Result<Scan, CorpusError> {
    let bytes = std::fs::read(path).map_err(|source| CorpusError::Read {
        path: path.into(),
        source,
    })?;
    let mut out = Scan::default();
    let mut ids = std::collections::HashSet::new();
    // Lines are split as bytes: a torn last line may end inside a multi-byte character.
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let count = lines.len() - usize::from(bytes.ends_with(b"\n"));
    let torn_possible = !bytes.ends_with(b"\n");
    for (i, raw) in lines.iter().take(count).enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let parsed = std::str::from_utf8(raw)
            .map_err(|e| format!("not UTF-8 (byte {})", e.valid_up_to()))
            .and_then(|text| match text.trim().is_empty() {
                true => Ok(None),
                false => parse_line_text(text).map(Some),
            });
        match parsed {
            Ok(None) => {}
            Ok(Some(it)) if !ids.insert(it.id.clone()) => out.errors.push((
                i + 1,
                format!("field 'id': '{}' is used by an earlier line", it.id),
            )),
            Ok(Some(it)) => out.interactions.push(it),
            Err(_) if i + 1 == count && torn_possible => out.torn_last_line = Some(i + 1),
            Err(m) => out.errors.push((i + 1, m)),
        }
    }
    Ok(out)
}

/// The latest recorded arrival a corpus may hold: a week, in milliseconds.
const MAX_OFFSET_MS: f64 = 7.0 * 86_400_000.0;

/// What `run` needs of a request that serde cannot check: a sendable method, header names and
/// values, a decodable `body_b64`, an arrival offset it can schedule.
fn check_sendable(it: &Interaction) -> Result<(), String> {
    let o = it.arrival_offset_ms;
    if !(o.is_finite() && (0.0..=MAX_OFFSET_MS).contains(&o)) {
        return Err(format!(
            "field 'arrival_offset_ms': {o} must be a finite number within 0..{MAX_OFFSET_MS}"
        ));
    }
    let r = &it.request;
    if reqwest::Method::from_bytes(r.method.as_bytes()).is_err() || r.method.is_empty() {
        return Err(format!(
            "field 'request.method': '{}' is not an HTTP method",
            r.method
        ));
    }
    if reqwest::Url::parse("http://h")
        .and_then(|b| b.join(&r.path))
        .is_err()
    {
        return Err(format!(
            "field 'request.path': '{}' is not a valid path",
            r.path
        ));
    }
    for (k, v) in &r.headers {
        let Some(v) = v.as_str() else {
            return Err(format!("field 'request.headers.{k}': must be a string"));
        };
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(format!(
                "field 'request.headers': '{k}' is not a valid header name"
            ));
        }
        if reqwest::header::HeaderValue::from_str(v).is_err() {
            return Err(format!(
                "field 'request.headers.{k}': not a valid header value"
            ));
        }
    }
    if let Some(b) = &r.body_b64 {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("field 'request.body_b64': not base64: {e}"))?;
    }
    Ok(())
}

/// A `grpc` line: an Agent Platform feature, `ExecuteWorkflow`, a start request this build can
/// send.
fn check_session(it: &Interaction) -> Result<(), String> {
    let workflow = crate::features::lookup(&it.feature)
        .is_some_and(|f| f.entry == crate::features::Entry::Workflow);
    if !workflow {
        return Err(format!(
            "field 'feature': '{}' is not an Agent Platform feature, so it has no gRPC session",
            it.feature
        ));
    }
    if it.request.path != session::EXECUTE_WORKFLOW {
        return Err(format!(
            "field 'request.path': a session calls {}",
            session::EXECUTE_WORKFLOW
        ));
    }
    crate::dws::start::from_json(&it.request.body)
        .map(|_| ())
        .map_err(|e| format!("field 'request.body': {e}"))
}

/// A corpus line that is not a valid interaction; the message names the field at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LineError(pub String);

/// Parses one line; the message names the field at fault.
pub fn parse_line(raw: &str) -> Result<Interaction, LineError> {
    parse_line_text(raw).map_err(LineError)
}

fn parse_line_text(raw: &str) -> Result<Interaction, String> {
    let value: Value = serde_json::from_str(raw).map_err(|e| format!("not valid JSON: {e}"))?;
    let it: Interaction = serde_path_to_error::deserialize(&value).map_err(|e| {
        let field = e.path().to_string();
        format!("field '{field}': {}", e.inner())
    })?;
    if it.v != VERSION {
        return Err(format!(
            "field 'v': corpus version {} is not supported (this build reads {VERSION})",
            it.v
        ));
    }
    if crate::features::lookup(&it.feature).is_none() {
        return Err(format!(
            "field 'feature': unknown Duo feature '{}'",
            it.feature
        ));
    }
    match it.protocol.as_str() {
        "http" => {}
        "grpc" => check_session(&it)?,
        p => {
            return Err(format!(
                "field 'protocol': '{p}' cannot be replayed by this build ('http' or 'grpc')"
            ))
        }
    }
    if !it.request.path.starts_with('/') {
        return Err("field 'request.path': must start with '/'".into());
    }
    check_sendable(&it)?;
    Ok(it)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_field_at_fault() {
        let e = parse_line_text(r#"{"v":1,"id":"a","feature":"code_completions","request":{"method":"POST","path":"/x","bodyy":{}}}"#).unwrap_err();
        assert!(e.contains("request"), "{e}");
        assert!(e.contains("bodyy"), "{e}");
        let e = parse_line_text(r#"{"v":2,"id":"a","feature":"code_completions","request":{"method":"POST","path":"/x"}}"#).unwrap_err();
        assert!(e.contains("field 'v'"), "{e}");
        let e = parse_line_text(
            r#"{"v":1,"id":"a","feature":"nope","request":{"method":"POST","path":"/x"}}"#,
        )
        .unwrap_err();
        assert!(e.contains("field 'feature'"), "{e}");
        let e = parse_line_text(
            r#"{"v":1,"id":"a","feature":"duo_chat","request":{"method":"POST","path":5}}"#,
        )
        .unwrap_err();
        assert!(e.contains("field 'request.path'"), "{e}");
        for (line, field) in [
            (
                r#"{"v":1,"id":"a","feature":"duo_chat","arrival_offset_ms":1e300,"request":{"method":"POST","path":"/x"}}"#,
                "arrival_offset_ms",
            ),
            (
                r#"{"v":1,"id":"a","feature":"duo_chat","arrival_offset_ms":-1,"request":{"method":"POST","path":"/x"}}"#,
                "arrival_offset_ms",
            ),
            (
                r#"{"v":1,"id":"a","feature":"duo_chat","request":{"method":"PO ST","path":"/x"}}"#,
                "request.method",
            ),
            (
                r#"{"v":1,"id":"a","feature":"duo_chat","request":{"method":"POST","path":"/x","headers":{"x":"a\nb"}}}"#,
                "request.headers.x",
            ),
            (
                r#"{"v":1,"id":"a","feature":"duo_chat","request":{"method":"POST","path":"/x","body_b64":"***"}}"#,
                "request.body_b64",
            ),
        ] {
            let e = parse_line_text(line).unwrap_err();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn a_torn_last_line_inside_a_character_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.jsonl");
        let good =
            r#"{"v":1,"id":"a","feature":"duo_chat","request":{"method":"POST","path":"/x"}}"#;
        let mut bytes = format!("{good}\n{{\"v\":1,\"id\":\"b\",\"x\":\"").into_bytes();
        bytes.extend_from_slice(&"é".as_bytes()[..1]);
        std::fs::write(&p, bytes).unwrap();
        let scan = scan(&p).unwrap();
        assert_eq!(scan.interactions.len(), 1);
        assert_eq!(scan.torn_last_line, Some(2));
        assert!(scan.errors.is_empty());
    }
}
