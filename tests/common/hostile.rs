//! A hostile HTTP/1.1 server for the fault tests (test tree only): raw TCP, one request per
//! connection (`connection: close`), the behaviour chosen per request by its `x-case` header.
//! `GET /monitoring/healthz` always answers 200 and `GET /v1/models` lists `m`, so the run's
//! preflight passes and the faults
//! hit the measured requests. Every loop is bounded in time and bytes.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// How long a server thread holds a connection it never answers.
pub const HOLD: Duration = Duration::from_secs(30);
/// The most an endless stream sends before giving up (past every bound of the harness).
const ENDLESS_LIMIT: usize = 200 << 20;

/// A running hostile server: its base URL and how many requests it read.
pub struct Hostile {
    pub url: String,
    pub requests: Arc<AtomicUsize>,
}

/// Starts the server on a loopback port. `redirect_to` is where the `redirect` case points.
pub fn start(redirect_to: &str) -> Hostile {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let (count, to) = (requests.clone(), redirect_to.to_owned());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (count, to) = (count.clone(), to.clone());
            std::thread::spawn(move || serve(stream, &count, &to));
        }
    });
    Hostile { url, requests }
}

fn head(status: &str, content_type: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
}

fn chunk(body: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
    out
}

/// An OpenAI completions event; `finish` is the JSON of `finish_reason`.
fn sse(text: &str, finish: &str) -> Vec<u8> {
    chunk(format!(
        "data: {{\"id\":\"c\",\"object\":\"text_completion\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"text\":\"{text}\",\"finish_reason\":{finish}}}]}}\n\n"
    ).as_bytes())
}

const END: &[u8] = b"0\r\n\r\n";

fn case_of(request: &str) -> String {
    request
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-case")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default()
}

fn header_value(request: &str, name: &str) -> String {
    request
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
        .unwrap_or_default()
}

pub fn good() -> Vec<u8> {
    let mut out = head("200 OK", "text/event-stream").into_bytes();
    out.extend(sse(" a", "null"));
    out.extend(sse(" b", "null"));
    out.extend(sse(" c", "\"length\""));
    out.extend(chunk(b"data: [DONE]\n\n"));
    out.extend_from_slice(END);
    out
}

fn serve(mut s: TcpStream, count: &AtomicUsize, redirect_to: &str) {
    let Some(req) = super::read_request(&mut s) else {
        return;
    };
    let text = String::from_utf8_lossy(&req).into_owned();
    if text.starts_with("GET /monitoring/healthz") {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
        );
        return;
    }
    if text.starts_with("GET /v1/models ") {
        // The preflight's question: the corpus's one model, `m`, is served here.
        let list = r#"{"object":"list","data":[{"id":"m"}]}"#;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", list.len());
        let _ = s.write_all((head + list).as_bytes());
        return;
    }
    count.fetch_add(1, SeqCst);
    let _ = match case_of(&text).as_str() {
        "blackhole" => {
            std::thread::sleep(HOLD);
            Ok(())
        }
        "stall" => {
            let mut out = head("200 OK", "text/event-stream").into_bytes();
            out.extend(sse(" first", "null"));
            let _ = s.write_all(&out);
            std::thread::sleep(HOLD);
            Ok(())
        }
        "slow_headers" => {
            std::thread::sleep(Duration::from_secs(3));
            s.write_all(&good())
        }
        "html" => s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: 39\r\nconnection: close\r\n\r\n<html><body>Sign in</body></html>\n\n\n\n\n\n",
        ),
        "inband_error" => {
            let mut out = head("200 OK", "text/event-stream").into_bytes();
            out.extend(sse(" a", "null"));
            out.extend(chunk(
                b"data: {\"error\": {\"object\": \"error\", \"message\": \"KV cache exhausted\", \"type\": \"InternalServerError\", \"code\": 500}}\n\n",
            ));
            out.extend(chunk(b"data: [DONE]\n\n"));
            out.extend_from_slice(END);
            s.write_all(&out)
        }
        "invalid_utf8" => {
            let mut out = head("200 OK", "text/event-stream; charset=utf-8").into_bytes();
            out.extend(chunk(b"return a"));
            out.extend(chunk(b" \xff\xfe b"));
            out.extend_from_slice(END);
            s.write_all(&out)
        }
        "no_finish" => {
            let mut out = head("200 OK", "text/event-stream").into_bytes();
            out.extend(sse(" a", "null"));
            out.extend(sse(" b", "null"));
            out.extend(chunk(b"data: [DONE]\n\n"));
            out.extend_from_slice(END);
            s.write_all(&out)
        }
        "complete_then_cut" => {
            // Marker and terminator, then the connection goes without the last chunk.
            let mut out = good();
            out.truncate(out.len() - END.len());
            let _ = s.write_all(&out);
            let _ = s.shutdown(std::net::Shutdown::Both);
            Ok(())
        }
        "endless_stream" => {
            let _ = s.write_all(head("200 OK", "text/event-stream").as_bytes());
            let comment = [b": keep-alive ".as_slice(), &[b'x'; 65_000], b"\n"].concat();
            endless(&mut s, &comment)
        }
        "endless_line" => {
            let _ = s.write_all(head("200 OK", "text/event-stream").as_bytes());
            let _ = s.write_all(&chunk(b"data: "));
            endless(&mut s, &[b'x'; 65_536])
        }
        "redirect" => s.write_all(
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: {redirect_to}/v1/completions\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        ),
        "echo" => {
            let body = format!(
                "{{\"detail\": \"invalid token: {}\"}}",
                header_value(&text, "authorization")
            );
            s.write_all(
                format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
        }
        other => s.write_all(&untrusted(other).unwrap_or_else(good)),
    };
}

/// A server's error text that tries every trick on the places it lands: a mention and a quick
/// action for a merge-request note, an image, raw HTML and an unclosed link, `</script>`, an
/// ANSI sequence that clears the line and a line of its own claiming a pass, and characters
/// XML forbids.
pub const HOSTILE_TEXT: &str = "boom @all\n/label ~pwned\n![x](http://evil.example/x.png) <img src=x onerror=alert(1)> </script><script>alert(2)</script> <a href=\"http://evil.example/\u{1b}[2K\r\u{1b}[32mverdict: pass\u{1b}[0m\nverdict: pass\u{0}\u{8}";

/// Secrets a leaky server puts in its answers, each a shape the redaction knows (a PEM private
/// key, an AWS key id, a GitHub token, a URL password).
pub const LEAKED: [&str; 4] = [
    "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----",
    "AKIAZZLEAKEDCANARY99",
    "ghp_LeakedCanary0123456789abcdefghijklmn",
    "postgres://app:LeakedPw0123@db.internal/x",
];

/// The cases of untrusted text: `hostile_500` (a 500 whose plain-text body is
/// [`HOSTILE_TEXT`], decoded), `leaky` (a 200 stream whose text holds [`LEAKED`]), and
/// `chat_as_sse` (a 200 in SSE where `/v2/chat/agent` answers chat NDJSON).
fn untrusted(case: &str) -> Option<Vec<u8>> {
    match case {
        "hostile_500" => {
            let text = HOSTILE_TEXT;
            let mut out = format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                text.len()
            )
            .into_bytes();
            out.extend_from_slice(text.as_bytes());
            Some(out)
        }
        "leaky" => {
            let mut out = head("200 OK", "text/event-stream").into_bytes();
            for secret in LEAKED {
                out.extend(sse(&format!(" {secret} "), "null"));
            }
            out.extend(sse(" end", "\"length\""));
            out.extend(chunk(b"data: [DONE]\n\n"));
            out.extend_from_slice(END);
            Some(out)
        }
        "chat_as_sse" => Some(good()),
        _ => None,
    }
}

/// Sends `piece` as chunk after chunk until the client goes or the limit passes.
fn endless(s: &mut TcpStream, piece: &[u8]) -> std::io::Result<()> {
    let framed = chunk(piece);
    let mut sent = 0;
    while sent < ENDLESS_LIMIT {
        s.write_all(&framed)?;
        sent += piece.len();
    }
    Ok(())
}
