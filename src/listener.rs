//! The built-in listener: plain HTTP/1.1 with keep-alive on the client's runtime (TLS is
//! terminated by a reverse proxy in front of it). It serves the webhook path and the seed
//! hosts' `GET /client/getMedia?id=<media id>`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, TryStreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Body as _, Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::Runtime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::DeliveryError;
use crate::media::MediaClient;
use crate::secrets::Credentials;
use crate::webhook::{query_param, Reply, WebhookHandler};

pub const GET_MEDIA_PATH: &str = "/client/getMedia";

/// Fixed answers without a box; streamed media boxed.
type Body = Either<Full<Bytes>, UnsyncBoxBody<Bytes, std::io::Error>>;

/// What the listener serves.
pub struct Routes {
    pub webhook_path: String,
    pub webhook: Arc<WebhookHandler>,
    pub media: Arc<MediaClient>,
    pub credentials: Arc<Credentials>,
    /// Required by `/client/getMedia` (Bearer header or `access_token` query); `None` refuses all.
    pub media_access_token: Option<crate::secrets::Secret>,
    /// See `DEFAULT_IDLE_TIMEOUT`; `None` keeps connections however long they idle.
    pub idle_timeout: Option<Duration>,
    /// See `DEFAULT_MAX_CONNECTIONS`; `None` accepts without limit.
    pub max_connections: Option<usize>,
}

/// By default the listener holds at most this many connections at once; further ones wait in
/// the kernel's accept queue until one closes. The listener shares the host process's
/// descriptors (often a soft limit of 1024): without a bound, a flood of connections would
/// leave the host's own sockets and files failing with EMFILE. Far above what Meta or a
/// reverse proxy's connection pool opens.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Binds `address` now (so that errors surface at client creation) and serves on the runtime.
/// Returns the bound address (useful with port 0).
pub fn start(runtime: &Runtime, address: &str, routes: Routes) -> Result<SocketAddr, String> {
    let std_listener = std::net::TcpListener::bind(address)
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let local = std_listener.local_addr().map_err(|e| e.to_string())?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| format!("cannot listen on {address}: {e}"))?
    };
    let routes = Arc::new(routes);
    let limit = routes.max_connections.map(|max| {
        let slots = Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS)));
        (slots, max)
    });
    runtime.spawn(async move {
        tracing::info!(address = %local, path = %routes.webhook_path, "webhook listener started");
        let mut last_warned = None;
        loop {
            let slot = match &limit {
                Some((slots, max)) => Some(connection_slot(slots, *max, &mut last_warned).await),
                None => None,
            };
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and similar: back off rather than spin.
                    tracing::warn!("listener accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let routes = routes.clone();
            tokio::spawn(async move {
                serve_connection(stream, routes).await;
                drop(slot);
            });
        }
    });
    Ok(local)
}

/// Waits for a free connection slot. A full listener is logged at most once a minute: under a
/// flood it fills again with every connection that closes.
async fn connection_slot(
    slots: &Arc<Semaphore>,
    max: usize,
    last_warned: &mut Option<std::time::Instant>,
) -> OwnedSemaphorePermit {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return slot;
    }
    if last_warned.is_none_or(|at| at.elapsed() >= FULL_WARNING_INTERVAL) {
        *last_warned = Some(std::time::Instant::now());
        tracing::warn!(
            "webhook listener holds its limit of {max} connections: new ones wait until one \
             closes (wa_options_set_webhook_max_connections)"
        );
    }
    slots
        .clone()
        .acquire_owned()
        .await
        .expect("the listener's semaphore is never closed")
}

const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// By default a connection that moves no byte either way for this long is closed: a peer that
/// vanished, an idle kept-alive connection, a request head or body that stalled, an answer
/// nobody reads. Longer than the idle timeouts of common reverse proxies (nginx's upstream
/// keep-alive and AWS load balancers: 60 s), so that they close first and never send a request
/// on a connection this end is closing. Checked once per period: a connection goes after one
/// to two periods without progress.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// Serves one connection until it ends or stops making progress. Hyper's own header timeout
/// would need a timer armed for every request (about 0.4 µs per webhook); this is one per
/// period per connection, checking two rules: no byte moved for the idle timeout, or a request
/// head still incomplete `HEAD_DEADLINE` after its bytes started (a head trickled a byte at a
/// time makes progress forever and would hold its connection slot: slowloris).
async fn serve_connection(stream: tokio::net::TcpStream, routes: Arc<Routes>) {
    let idle_timeout = routes.idle_timeout;
    // One allocation per connection, one reference count per request (as `routes` alone was).
    let connection_state = Arc::new(ConnectionState {
        routes,
        counts: Counts::default(),
    });
    let counts = connection_state.clone();
    let io = TokioIo::new(Watched {
        stream,
        state: connection_state.clone(),
    });
    let service = service_fn(move |request| {
        let state = connection_state.clone();
        async move {
            // A complete head reached the service; its body and handler have their own bounds.
            state.counts.active.fetch_add(1, Ordering::Relaxed);
            let answer = serve(request, &state.routes).await;
            state.counts.active.fetch_sub(1, Ordering::Relaxed);
            answer
        }
    });
    let connection = http1::Builder::new()
        .keep_alive(true)
        // Answers are a few bytes: copied behind their headers and sent with one write(2)
        // instead of hyper's default queue of buffers for writev(2). About 0.2 µs less per
        // webhook in the one-CPU bench; a streamed media body is copied once more, which is
        // small beside the download itself.
        .writev(false)
        .serve_connection(io, service);
    let Some(idle_timeout) = idle_timeout else {
        let _ = connection.await;
        return;
    };
    let head_deadline = idle_timeout.min(HEAD_DEADLINE);
    let period = head_deadline.min(CHECK_PERIOD);
    tokio::pin!(connection);
    let mut watch = ConnectionWatch::new(tokio::time::Instant::now());
    loop {
        tokio::select! {
            biased;
            _ = &mut connection => return,
            () = tokio::time::sleep(period) => {
                let now = tokio::time::Instant::now();
                match watch.check(&counts.counts, now, idle_timeout, head_deadline) {
                    Verdict::Open => {}
                    Verdict::Idle => {
                        tracing::debug!("closing a webhook listener connection without progress");
                        // Dropping the connection closes the socket.
                        return;
                    }
                    Verdict::SlowHead => {
                        tracing::debug!(
                            "closing a webhook listener connection whose request head took \
                             longer than {} ms",
                            head_deadline.as_millis()
                        );
                        return;
                    }
                }
            }
        }
    }
}

/// How long a request head may take from its first bytes: Meta sends a head at once.
const HEAD_DEADLINE: Duration = Duration::from_secs(30);
/// How often a connection's rules are checked (at most; less with shorter timeouts).
const CHECK_PERIOD: Duration = Duration::from_secs(10);

/// What the service and the socket of one connection share.
struct ConnectionState {
    routes: Arc<Routes>,
    counts: Counts,
}

/// What moved on a connection: bytes read, bytes written (events, not sizes), and the requests
/// being handled (head received, answer not yet produced).
#[derive(Default)]
struct Counts {
    reads: AtomicU64,
    writes: AtomicU64,
    active: AtomicU64,
}

/// A connection's state between two checks.
struct ConnectionWatch {
    seen: (u64, u64),
    last_progress: tokio::time::Instant,
    /// Since when bytes arrive without a complete head or an answer: a head is being received.
    head_since: Option<tokio::time::Instant>,
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Open,
    Idle,
    SlowHead,
}

impl ConnectionWatch {
    fn new(now: tokio::time::Instant) -> Self {
        Self {
            seen: (0, 0),
            last_progress: now,
            head_since: None,
        }
    }

    fn check(
        &mut self,
        counts: &Counts,
        now: tokio::time::Instant,
        idle_timeout: Duration,
        head_deadline: Duration,
    ) -> Verdict {
        let current = (
            counts.reads.load(Ordering::Relaxed),
            counts.writes.load(Ordering::Relaxed),
        );
        let (read, wrote) = (current.0 != self.seen.0, current.1 != self.seen.1);
        self.seen = current;
        if read || wrote {
            self.last_progress = now;
        }
        let handling = counts.active.load(Ordering::Relaxed) > 0;
        if wrote || handling {
            // An answer went out (so every head before it was complete) or a request is being
            // handled (its body and handler have their own bounds): the next head starts with
            // its next bytes.
            self.head_since = None;
        } else if read && self.head_since.is_none() {
            self.head_since = Some(now);
        }
        if now.duration_since(self.last_progress) >= idle_timeout {
            Verdict::Idle
        } else if self
            .head_since
            .is_some_and(|since| now.duration_since(since) >= head_deadline)
        {
            Verdict::SlowHead
        } else {
            Verdict::Open
        }
    }
}

/// A connection's socket that counts the reads and writes that moved bytes.
struct Watched {
    stream: tokio::net::TcpStream,
    state: Arc<ConnectionState>,
}

impl Watched {
    /// `written` (a write's outcome), counted.
    fn wrote(&self, written: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = written {
            if n > 0 {
                self.state.counts.writes.fetch_add(1, Ordering::Relaxed);
            }
        }
        written
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.state.counts.reads.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, data);
        this.wrote(written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, data);
        this.wrote(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

fn response(reply: Reply) -> Response<Body> {
    let body = match reply.body {
        Cow::Borrowed(text) => Bytes::from_static(text.as_bytes()),
        Cow::Owned(text) => Bytes::from(text),
    };
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    response
}

fn plain(status: u16, body: impl Into<Cow<'static, str>>) -> Response<Body> {
    response(Reply::text(status, body))
}

async fn serve(request: Request<Incoming>, routes: &Routes) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path();
    if path == routes.webhook_path {
        // A body may take 30 s, or the idle timeout if that is shorter.
        let body_timeout = routes
            .idle_timeout
            .map_or(REQUEST_BODY_TIMEOUT, |idle| idle.min(REQUEST_BODY_TIMEOUT));
        return Ok(webhook(request, &routes.webhook, body_timeout).await);
    }
    if path == GET_MEDIA_PATH {
        return Ok(get_media(request, routes).await);
    }
    Ok(plain(404, "not found"))
}

/// Meta's signature header, named once (looking it up by a string parses the name each time).
const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-hub-signature-256");

async fn webhook(
    request: Request<Incoming>,
    handler: &WebhookHandler,
    body_timeout: Duration,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let signature = parts
        .headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    let max = handler.max_body();
    // A declared Content-Length is known to the body already.
    if body.size_hint().lower() > max as u64 {
        return plain(413, "payload too large");
    }
    let reading = read_body(body, max);
    tokio::pin!(reading);
    // Nearly every webhook's body came with its head: taken at once, without arming a timer.
    let read = match (&mut reading).now_or_never() {
        Some(read) => read,
        None => match tokio::time::timeout(body_timeout, reading).await {
            Ok(read) => read,
            Err(_) => return timed_out(),
        },
    };
    let body = match read {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return plain(413, "payload too large"),
        Err(BodyError::Broken) => return plain(400, "could not read the body"),
    };
    let query = parts.uri.query().unwrap_or("");
    response(handler.handle(parts.method.as_str(), query, signature, &body))
}

/// How long a webhook's whole body may take once its head arrived (or the idle timeout, if
/// shorter): a body trickled in slowly enough to keep the connection alive is cut off here.
const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// 408, and the connection closed: the rest of a body that was too slow may still arrive.
fn timed_out() -> Response<Body> {
    let mut response = plain(408, "request body not received in time");
    response
        .headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    response
}

enum BodyError {
    TooLarge,
    Broken,
}

/// The whole body, at most `max` bytes. A body that arrived in one piece (nearly every webhook:
/// it comes with its headers) is taken as it is, without a copy or a list of chunks.
async fn read_body(mut body: Incoming, max: usize) -> Result<Bytes, BodyError> {
    let mut whole = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        // Trailers carry no body bytes.
        let Ok(data) = frame.map_err(|_| BodyError::Broken)?.into_data() else {
            continue;
        };
        len += data.len();
        if len > max {
            return Err(BodyError::TooLarge);
        }
        match &mut joined {
            Some(buffer) => buffer.extend_from_slice(&data),
            None if whole.is_empty() => whole = data,
            None => {
                let mut buffer = BytesMut::with_capacity(len);
                buffer.extend_from_slice(&whole);
                buffer.extend_from_slice(&data);
                joined = Some(buffer);
            }
        }
    }
    Ok(joined.map_or(whole, BytesMut::freeze))
}

/// `GET /client/getMedia?id=<media id>`: the media's bytes, streamed from Graph. Not an open
/// proxy: the caller must present the configured access token.
async fn get_media(request: Request<Incoming>, routes: &Routes) -> Response<Body> {
    if request.method() != hyper::Method::GET {
        return plain(405, "method not allowed");
    }
    let query = request.uri().query().unwrap_or("");
    let presented = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| query_param(query, "access_token"));
    let authorised = match (&routes.media_access_token, presented) {
        (Some(expected), Some(presented)) => {
            bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes()))
        }
        _ => false,
    };
    if !authorised {
        let text = if routes.media_access_token.is_none() {
            "getMedia is disabled: no media access token is configured"
        } else {
            "a valid access token is required (Authorization: Bearer or access_token=)"
        };
        let mut reply = plain(401, text);
        if let Ok(value) = "Bearer".parse() {
            reply
                .headers_mut()
                .insert(hyper::header::WWW_AUTHENTICATE, value);
        }
        return reply;
    }
    let Some(media_id) = query_param(query, "id").filter(|id| !id.is_empty()) else {
        return plain(400, "missing id parameter");
    };
    let token = routes.credentials.token();
    if token.is_empty() {
        return plain(503, "no WhatsApp access token is configured (SetConfig)");
    }
    match routes.media.stream(&media_id, token.expose()).await {
        Ok((info, stream)) => {
            let body = Either::Right(StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync());
            let mut response = Response::new(body);
            let headers = response.headers_mut();
            if let Ok(value) = info.mime_type.parse() {
                headers.insert(hyper::header::CONTENT_TYPE, value);
            }
            if let Some(size) = info.file_size {
                headers.insert(hyper::header::CONTENT_LENGTH, size.into());
            }
            response
        }
        Err((error, text)) => {
            let status = match error {
                DeliveryError::NotFound => 404,
                DeliveryError::BadRequest => 400,
                _ => 502,
            };
            plain(status, routes.credentials.redact(&text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two rules of `serve_connection`, checked period by period.
    #[test]
    fn connections_close_when_idle_or_when_a_head_drags() {
        let start = tokio::time::Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let (idle, head) = (Duration::from_millis(1000), Duration::from_millis(300));
        let bump = |counter: &AtomicU64| {
            counter.fetch_add(1, Ordering::Relaxed);
        };

        // A head trickled in: progress every period, but no complete head nor answer.
        let counts = Counts::default();
        let mut watch = ConnectionWatch::new(start);
        bump(&counts.reads);
        assert_eq!(watch.check(&counts, at(100), idle, head), Verdict::Open);
        bump(&counts.reads);
        assert_eq!(watch.check(&counts, at(200), idle, head), Verdict::Open);
        bump(&counts.reads);
        assert_eq!(watch.check(&counts, at(400), idle, head), Verdict::SlowHead);

        // A body trickled in after its head: the handler's own bound applies, not the head's.
        let counts = Counts::default();
        let mut watch = ConnectionWatch::new(start);
        bump(&counts.reads);
        bump(&counts.active);
        for ms in [100, 200, 300, 400, 500, 600] {
            bump(&counts.reads);
            assert_eq!(watch.check(&counts, at(ms), idle, head), Verdict::Open);
        }
        // Answered; then the next head arrives at once: no deadline reached.
        counts.active.fetch_sub(1, Ordering::Relaxed);
        bump(&counts.writes);
        assert_eq!(watch.check(&counts, at(700), idle, head), Verdict::Open);
        bump(&counts.reads);
        assert_eq!(watch.check(&counts, at(800), idle, head), Verdict::Open);
        bump(&counts.writes);
        assert_eq!(watch.check(&counts, at(1000), idle, head), Verdict::Open);

        // Kept alive with nothing moving: closed after the idle timeout.
        assert_eq!(watch.check(&counts, at(1900), idle, head), Verdict::Open);
        assert_eq!(watch.check(&counts, at(2000), idle, head), Verdict::Idle);
    }
}
