//! An OpenAI streaming server with known timing, for the self-audit tests (test tree only).
//!
//! Raw TCP, one thread per connection, `connection: close`. Every POST gets `tokens` one-token
//! SSE events, the first `ttft` after the request was read, then one per `gap`, written as the
//! deadlines come (precise sleeps, not a timer wheel); with `burst = B` the server still
//! produces a token per `gap` but writes them `B` at a time (a proxy or a busy server that
//! batches its writes). With `usage` the last event carries `usage`. The server records its own
//! truth per request: from reading the request to writing the first token.
//!
//! `cpu` pins the server's threads to one core, away from the harness under test. Every loop
//! is bounded: the stream ends after `tokens` events, a connection after 30 s.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub ttft: Duration,
    pub gap: Duration,
    pub tokens: usize,
    pub burst: usize,
    pub usage: bool,
    /// Words per event (a server streaming several tokens per event, as with speculative
    /// decoding); `usage` counts them all.
    pub words: usize,
    pub cpu: Option<usize>,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            ttft: Duration::from_millis(20),
            gap: Duration::from_millis(5),
            tokens: 32,
            burst: 1,
            usage: true,
            words: 1,
            cpu: None,
        }
    }
}

/// The server's own record: time to first token written, per request, ms.
#[derive(Default)]
pub struct Truth {
    pub ttft_ms: Mutex<Vec<f64>>,
}

pub fn start(pace: Pace) -> (String, Arc<Truth>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let truth = Arc::new(Truth::default());
    let t = truth.clone();
    std::thread::spawn(move || {
        if let Some(cpu) = pace.cpu {
            pin_to(cpu); // threads spawned from here inherit it
        }
        for stream in listener.incoming().flatten() {
            let t = t.clone();
            std::thread::spawn(move || serve(stream, pace, &t));
        }
    });
    (url, truth)
}

/// Pins the calling thread to one core (Linux); threads it spawns inherit the mask.
pub fn pin_to(cpu: usize) {
    // SAFETY: the set is a zeroed struct owned here; sched_setaffinity(0) affects this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Reads one request head and body (by content-length); returns the head (lowercase).
fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        let n = s.read(&mut tmp).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            let n = s.read(&mut tmp).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        return Some(head);
    }
}

fn event(i: usize, last: bool, pace: &Pace) -> String {
    let (usage, tokens) = (pace.usage, pace.tokens * pace.words.max(1));
    let text: String = (0..pace.words.max(1))
        .map(|w| format!(" t{i}w{w}"))
        .collect();
    let finish = if last { "\"length\"" } else { "null" };
    let usage = if last && usage {
        format!(
            ",\"usage\":{{\"prompt_tokens\":8,\"completion_tokens\":{tokens},\"total_tokens\":{}}}",
            tokens + 8
        )
    } else {
        String::new()
    };
    format!(
        "data: {{\"id\":\"c\",\"object\":\"text_completion\",\"model\":\"codestral-22b\",\"choices\":[{{\"index\":0,\"text\":\"{text}\",\"finish_reason\":{finish}}}]{usage}}}\n\n"
    )
}

fn chunk(body: &str) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

fn sleep_until(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(150));
        } else {
            std::hint::spin_loop();
        }
    }
}

fn serve(mut s: TcpStream, pace: Pace, truth: &Truth) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_nodelay(true);
    let Some(head) = read_request(&mut s) else {
        return;
    };
    let start = Instant::now();
    if head.starts_with("get /v1/models ") {
        // The preflight's question: the corpus's one model is served here.
        let list = r#"{"object":"list","data":[{"id":"codestral-22b","object":"model"}]}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{list}",
            list.len()
        );
        let _ = s.write_all(answer.as_bytes());
        return;
    }
    if !head.starts_with("post") {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        return;
    }
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    if s.write_all(head.as_bytes()).is_err() {
        return;
    }
    let burst = pace.burst.max(1);
    let mut pending = String::new();
    for i in 0..pace.tokens {
        let due = start + pace.ttft + pace.gap * i as u32;
        let last = i + 1 == pace.tokens;
        pending.push_str(&event(i, last, &pace));
        if (i + 1) % burst != 0 && !last {
            continue;
        }
        sleep_until(due);
        if i + 1 == burst.min(pace.tokens) {
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            truth.ttft_ms.lock().unwrap().push(ms);
        }
        if s.write_all(&chunk(&std::mem::take(&mut pending))).is_err() {
            return;
        }
    }
    let _ = s.write_all(&chunk("data: [DONE]\n\n"));
    let _ = s.write_all(b"0\r\n\r\n");
}
