//! A scripted OpenAI-compatible streaming server for load tests (test tree only): every request
//! gets `chunks` SSE content chunks, the first after `first_ms`, then one every `gap_ms`, then
//! `data: [DONE]`, on any path (POST only; anything else gets 404). `serial` makes it answer one request at a time (a stalled server). It counts
//! requests in flight and the most seen at once.

use axum::body::{Body, Bytes};
use axum::response::IntoResponse;
use axum::Router;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Script {
    pub first_ms: u64,
    pub gap_ms: u64,
    pub chunks: usize,
    pub serial: bool,
}

#[derive(Default)]
pub struct Counters {
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub requests: AtomicUsize,
}

struct State {
    script: Script,
    counters: Arc<Counters>,
    turn: tokio::sync::Mutex<()>,
}

/// Decrements the in-flight count however the request ends (finished, or client gone).
struct InFlight(Arc<Counters>);

impl InFlight {
    fn new(c: &Arc<Counters>) -> Self {
        let now = c.in_flight.fetch_add(1, SeqCst) + 1;
        c.max_in_flight.fetch_max(now, SeqCst);
        c.requests.fetch_add(1, SeqCst);
        Self(c.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, SeqCst);
    }
}

/// Serves `script` on a fresh loopback port on a runtime of its own thread; returns the base URL.
pub fn start(script: Script) -> (String, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let state = Arc::new(State {
        script,
        counters: counters.clone(),
        turn: tokio::sync::Mutex::new(()),
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = Router::new().fallback(answer).with_state(state);
            axum::serve(listener, app).await.unwrap();
        });
    });
    (url, counters)
}

async fn answer(
    axum::extract::State(s): axum::extract::State<Arc<State>>,
    method: axum::http::Method,
) -> axum::response::Response {
    if method != axum::http::Method::POST {
        // The harness's preflight (GET /monitoring/healthz) is no request of the load.
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    let guard = InFlight::new(&s.counters);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let _guard = guard;
        let _turn = match s.script.serial {
            true => Some(s.turn.lock().await),
            false => None,
        };
        tokio::time::sleep(Duration::from_millis(s.script.first_ms)).await;
        for i in 0..s.script.chunks {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(s.script.gap_ms)).await;
            }
            let finish = if i + 1 == s.script.chunks {
                "\"length\""
            } else {
                "null"
            };
            let line = format!(
                "data: {{\"id\":\"c\",\"object\":\"text_completion\",\"choices\":[{{\"index\":0,\"text\":\" tok{i}\",\"finish_reason\":{finish}}}]}}\n\n"
            );
            if tx.send(Ok(Bytes::from(line))).await.is_err() {
                return;
            }
        }
        // Out of flight before the terminator goes, so a client that has read it can never
        // see its next request counted alongside this one.
        drop(_guard);
        let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
    });
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .unwrap()
}
