//! A hostile Duo Workflow Service on loopback, raw HTTP/2 (h2), for what a tonic server would
//! never send. The request's `x-hostile` metadata picks the misbehaviour:
//! - `hang`: one action, then nothing (bounded: the stream is dropped after 30 s);
//! - `unknown`: an action whose kind is a field the contract does not define (99);
//! - `oversize`: a message announcing 5 MiB, past the 4 MiB limit;
//! - `no_status`: one checkpoint, then the stream ends without `grpc-status`;
//! - anything else: no action, status OK "workflow execution success".

use std::time::Duration;

/// One length-delimited protobuf field.
fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(&mut out, u64::from(number << 3 | 2));
    varint(&mut out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A gRPC message frame (uncompressed).
fn frame(message: &[u8]) -> bytes::Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.into()
}

/// An `Action` with `requestID` and one kind field.
fn action(kind: u32, payload: &[u8]) -> bytes::Bytes {
    let mut m = field(1, b"req-1");
    m.extend(field(kind, payload));
    frame(&m)
}

fn graphql() -> bytes::Bytes {
    let mut req = field(1, b"POST");
    req.extend(field(2, b"/api/graphql"));
    action(3, &req)
}

fn status(code: u32, message: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("grpc-status", code.to_string().parse().unwrap());
    h.insert("grpc-message", message.parse().unwrap());
    h
}

async fn serve_one(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
) {
    let mode = req
        .headers()
        .get("x-hostile")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let head = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let Ok(mut send) = respond.send_response(head, false) else {
        return;
    };
    let _ = match mode.as_str() {
        "hang" => {
            let _ = send.send_data(graphql(), false);
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
        "unknown" => {
            let _ = send.send_data(action(99, &field(1, b"a future action")), false);
            send.send_trailers(status(0, "workflow execution success"))
        }
        "oversize" => {
            let mut head = vec![0u8];
            head.extend_from_slice(&(5u32 * 1024 * 1024).to_be_bytes());
            head.extend(std::iter::repeat_n(0u8, 1024));
            let _ = send.send_data(head.into(), false);
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
        "no_status" => {
            let mut cp = field(1, b"CREATED");
            cp.extend(field(2, b"{}"));
            let _ = send.send_data(action(8, &cp), false);
            send.send_data(bytes::Bytes::new(), true)
        }
        _ => send.send_trailers(status(0, "workflow execution success")),
    };
}

/// Starts the server on its own thread; returns its `http://` URL.
pub fn start() -> String {
    let addr = super::serve_on_thread(|socket| async move {
        let Ok(mut conn) = h2::server::handshake(socket).await else {
            return;
        };
        while let Some(Ok((req, respond))) = conn.accept().await {
            tokio::task::spawn_local(serve_one(req, respond));
        }
    });
    format!("http://{addr}")
}
