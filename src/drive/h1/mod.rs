//! The load's own HTTP/1.1 client, for plain-`http` targets: the request task owns its
//! connection and reads it directly, draining what the socket holds at each wake-up and handing
//! every body chunk to the recorder as a slice of one reused buffer.
//!
//! Why not hyper here: hyper's client runs each connection in a task of its own and passes the
//! body to the request over a channel, one allocated frame per chunk, so every streamed token
//! costs two task wake-ups and an allocation; under load that was most of the harness's CPU
//! (README, "The harness's cost, measured"). The head is parsed by `httparse` (hyper's own
//! parser); bodies by [`body`]. TLS targets, and runs with an HTTP proxy in the environment
//! (which reqwest honours), keep reqwest.
//!
//! In: a base URL, and each request's method, path, headers and body. Out: the answer's status
//! and headers, then its body piece by piece ([`Answer`]). Connections are kept alive and
//! reused, last in first out, as reqwest's pool does.

pub mod body;

use body::{Body, BodyError, Length};
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest answer head accepted.
const MAX_HEAD: usize = 64 << 10;
/// The most header fields an answer may carry.
const MAX_HEADERS: usize = 128;
/// How long a connection may wait in the pool (reqwest's default idle timeout).
const IDLE_FOR: Duration = Duration::from_secs(90);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Free room kept before each read: a read that fills less than it tells the reactor the socket
/// is drained, so no second read is made to learn it.
const READ_ROOM: usize = 16 << 10;

/// Environment variables that route reqwest's plain-HTTP requests through a proxy.
const PROXY_VARS: [&str; 4] = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];

/// Why a request got no answer head.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The request is not one HTTP/1.1 can carry (a header with a line break, a bad method).
    #[error("{0}")]
    Request(String),
    #[error("tcp connect error: {0}")]
    Connect(io::Error),
    /// The connection ended before any byte of answer (the server had closed it).
    #[error("connection closed before message completed: {0}")]
    Closed(io::Error),
    /// The answer is not an HTTP/1 head, or broke off inside it.
    #[error("{0}")]
    Head(String),
}

impl SendError {
    /// The server ended the connection before any byte of answer: worth one retry on a fresh
    /// connection (the pooled one may have been closed while idle).
    pub fn stale(&self) -> bool {
        matches!(self, Self::Closed(_))
    }

    /// The harness ran out of file descriptors (EMFILE, ENFILE).
    pub fn out_of_descriptors(&self) -> bool {
        matches!(self, Self::Connect(e) if matches!(e.raw_os_error(), Some(23 | 24)))
    }
}

/// A connection and what it has read but not yet handed on.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn read(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ_ROOM / 2 {
            self.buf.reserve(READ_ROOM);
        }
        self.stream.read_buf(&mut self.buf).await
    }
}

/// Connections to one target, and how requests to it are addressed.
pub struct Pool {
    /// `host:port` to connect to.
    authority: String,
    /// The `host` header reqwest would send (the port only when not 80).
    host: String,
    idle: Mutex<Vec<(Conn, Instant)>>,
}

impl Pool {
    /// The pool for `base_url`, when the load's client serves it: plain `http`, and no proxy
    /// set in the environment. `None` leaves the target to reqwest.
    pub fn for_target(base_url: &str) -> Option<Self> {
        let url = reqwest::Url::parse(base_url).ok()?;
        let proxied = PROXY_VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        if url.scheme() != "http" || proxied || !url.username().is_empty() {
            return None;
        }
        let host = url.host_str()?.to_owned();
        let port = url.port_or_known_default()?;
        Some(Self {
            authority: format!("{host}:{port}"),
            host: url.port().map_or(host.clone(), |p| format!("{host}:{p}")),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The request's bytes on the wire: its line, `host`, the headers (validated as reqwest
    /// does; names lower-cased), `accept: */*` unless one is given, the body's length.
    pub fn request<'a>(
        &self,
        method: &str,
        url: &str,
        headers: impl Iterator<Item = (&'a str, &'a str)>,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, SendError> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| SendError::Request(format!("method {method:?}: {e}")))?;
        let parsed = reqwest::Url::parse(url).map_err(|e| SendError::Request(e.to_string()))?;
        let target = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_owned(),
        };
        let mut out = Vec::with_capacity(256 + body.map_or(0, <[u8]>::len));
        out.extend_from_slice(
            format!("{method} {target} HTTP/1.1\r\nhost: {}\r\n", self.host).as_bytes(),
        );
        let mut accept = false;
        for (k, v) in headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| SendError::Request(format!("header {k:?}: {e}")))?;
            reqwest::header::HeaderValue::from_str(v)
                .map_err(|e| SendError::Request(format!("header {name}: {e}")))?;
            accept |= name == reqwest::header::ACCEPT;
            for part in [name.as_str().as_bytes(), b": ", v.as_bytes(), b"\r\n"] {
                out.extend_from_slice(part);
            }
        }
        if !accept {
            out.extend_from_slice(b"accept: */*\r\n");
        }
        let payload = matches!(
            method,
            reqwest::Method::POST | reqwest::Method::PUT | reqwest::Method::PATCH
        );
        if let Some(n) = body.map(<[u8]>::len).or(payload.then_some(0)) {
            out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.unwrap_or_default());
        Ok(out)
    }

    /// Sends `request` on a pooled connection (or a new one, or, with `fresh`, always a new
    /// one) and reads the answer's head.
    pub async fn send(
        &self,
        request: &[u8],
        head_only: bool,
        fresh: bool,
    ) -> Result<Answer<'_>, SendError> {
        let idle = if fresh { None } else { self.take_idle() };
        let mut conn = match idle {
            Some(c) => c,
            None => self.connect().await?,
        };
        conn.stream
            .write_all(request)
            .await
            .map_err(SendError::Closed)?;
        let head = read_head(&mut conn).await?;
        let length = head.length(head_only)?;
        Ok(Answer {
            reusable: head.keep_alive && length != Length::UntilClose,
            status: head.status,
            headers: head.headers,
            body: Body::new(length),
            conn: Some(conn),
            pool: self,
        })
    }

    /// The most recently idled connection the server has not closed meanwhile.
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((conn, since)) = idle.pop() {
            let mut probe = [0u8; 1];
            // Readable while idle means closed (or stray bytes): either way not reusable.
            let quiet = matches!(conn.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
            if quiet && since.elapsed() < IDLE_FOR {
                return Some(conn);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.authority))
            .await
            .map_err(|_| {
                SendError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer within 10 s",
                ))
            })?
            .map_err(SendError::Connect)?;
        stream.set_nodelay(true).map_err(SendError::Connect)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(READ_ROOM),
        })
    }

    fn give_back(&self, mut conn: Conn) {
        if conn.buf.capacity() > 4 * READ_ROOM {
            conn.buf = Vec::with_capacity(READ_ROOM); // one large answer does not pin its buffer
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push((conn, Instant::now()));
    }
}

/// An answer's head as read.
struct Head {
    status: u16,
    /// HTTP/1.1 without `connection: close`.
    keep_alive: bool,
    headers: Vec<(String, String)>,
}

impl Head {
    fn field<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// How the body is delimited (RFC 9112 §6.3).
    fn length(&self, head_only: bool) -> Result<Length, SendError> {
        if head_only || matches!(self.status, 204 | 304) {
            return Ok(Length::Empty);
        }
        if let Some(te) = self.field("transfer-encoding").last() {
            let chunked = te
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            return Ok(if chunked {
                Length::Chunked
            } else {
                Length::UntilClose
            });
        }
        let mut lengths = self.field("content-length").flat_map(|v| v.split(','));
        let Some(first) = lengths.next() else {
            return Ok(Length::UntilClose);
        };
        let n: u64 = first
            .trim()
            .parse()
            .map_err(|_| SendError::Head(format!("content-length {first:?} is not a length")))?;
        match lengths.all(|v| v.trim().parse() == Ok(n)) {
            true => Ok(Length::Fixed(n)),
            false => Err(SendError::Head("content-length fields disagree".into())),
        }
    }
}

/// Reads until a whole head is buffered; interim (1xx) answers are passed over.
async fn read_head(conn: &mut Conn) -> Result<Head, SendError> {
    loop {
        if let Some((used, head)) = parse_head(&conn.buf)? {
            conn.buf.drain(..used);
            match head.status {
                100..=199 if head.status != 101 => continue,
                _ => return Ok(head),
            }
        }
        if conn.buf.len() > MAX_HEAD {
            return Err(SendError::Head("the answer's head passed 64 KiB".into()));
        }
        let had = !conn.buf.is_empty();
        match conn.read().await {
            Ok(0) if !had => return Err(SendError::Closed(io::ErrorKind::UnexpectedEof.into())),
            Ok(0) => {
                return Err(SendError::Head(
                    "the connection closed inside the answer's head".into(),
                ))
            }
            Ok(_) => {}
            Err(e) if !had => return Err(SendError::Closed(e)),
            Err(e) => return Err(SendError::Head(format!("reading the answer's head: {e}"))),
        }
    }
}

/// A whole head at the start of `buf` (and its length), `None` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, SendError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut fields);
    let used = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(SendError::Head(format!("not an HTTP/1 answer: {e}"))),
    };
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), visible(h.value).to_owned()))
        .collect();
    let close = headers.iter().any(|(k, v)| {
        k == "connection" && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
    });
    let head = Head {
        status: parsed.code.unwrap_or_default(),
        keep_alive: parsed.version == Some(1) && !close,
        headers,
    };
    Ok(Some((used, head)))
}

/// A header value as text, as `HeaderValue::to_str` gives it: empty unless visible ASCII.
fn visible(v: &[u8]) -> &str {
    let ok = v.iter().all(|&b| b == b'\t' || (32..127).contains(&b));
    std::str::from_utf8(v)
        .ok()
        .filter(|_| ok)
        .unwrap_or_default()
}

/// An answer whose head has arrived: its body is read with [`decode`](Self::decode) and
/// [`read`](Self::read); the connection goes back to the pool when the body was whole.
pub struct Answer<'a> {
    pub status: u16,
    /// Lower-case names, in the order received.
    pub headers: Vec<(String, String)>,
    body: Body,
    reusable: bool,
    conn: Option<Conn>,
    pool: &'a Pool,
}

impl Answer<'_> {
    /// Decodes what is buffered, handing each piece of body data to `each`.
    pub fn decode(&mut self, mut each: impl FnMut(&[u8])) -> Result<(), BodyError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let used = self.body.decode(&conn.buf, &mut each)?;
        conn.buf.drain(..used);
        Ok(())
    }

    /// The whole body has been read.
    pub fn ended(&self) -> bool {
        self.body.done()
    }

    /// Waits for more of the body (after [`decode`](Self::decode) handed on what was there).
    pub async fn read(&mut self) -> Result<(), BodyError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        match conn.read().await {
            Ok(0) => {
                self.reusable = false;
                self.body.eof()
            }
            Ok(_) => Ok(()),
            Err(e) => Err(BodyError::Closed(format!("inside the body: {e}"))),
        }
    }
}

impl Drop for Answer<'_> {
    /// A whole body with nothing after it leaves the connection reusable; anything else (a cut,
    /// a timeout, a broken stream, stray bytes) closes it.
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.reusable && self.body.done() && conn.buf.is_empty() {
            self.pool.give_back(conn);
        }
    }
}
