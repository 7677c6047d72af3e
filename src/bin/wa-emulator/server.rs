//! Hyper plumbing: the accept loop, one HTTP/1.1 keep-alive connection per task, reading Graph
//! requests, applying fault actions and latency, recording, and turning replies into responses.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::CONTENT_LENGTH;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::control;
use crate::graph::{self, GraphError, GraphRequest, Reply, MAX_BODY_BYTES};
use crate::media::{self, Download, MAX_UPLOAD_BODY_BYTES, RECORDED_BODY_LIMIT};
use crate::state::{
    digits_only, AppState, AsyncError, FaultAction, FaultSubject, Record, RecordedResponse,
};
use crate::webhook;

pub type HttpResponse = Response<BytesBody>;

/// Largest frame a response body hands to hyper at once.
const RESPONSE_CHUNK_BYTES: usize = 64 * 1024;

/// A response body over one [`Bytes`], yielded in chunks of at most [`RESPONSE_CHUNK_BYTES`]:
/// each chunk is a zero-copy slice, so serving a 100 MB media file neither copies it nor hands
/// hyper one giant write. Small JSON answers are a single frame.
pub struct BytesBody {
    remaining: Bytes,
}

impl BytesBody {
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        BytesBody {
            remaining: bytes.into(),
        }
    }
}

impl Body for BytesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining.is_empty() {
            return Poll::Ready(None);
        }
        let length = self.remaining.len().min(RESPONSE_CHUNK_BYTES);
        let chunk = self.remaining.split_to(length);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining.len() as u64)
    }
}

/// Returned from the service to make hyper close the connection without writing a response:
/// the `drop` fault, or a client that vanished mid-body.
#[derive(Debug)]
pub struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

pub async fn serve(listener: TcpListener, state: Arc<AppState>) {
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically EMFILE under a load test; back off instead of spinning.
                eprintln!("wa-emulator: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Small JSON answers must not wait for Nagle's algorithm on keep-alive connections.
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                // Handled in its own task so that a client giving up (a timeout) does not cancel
                // the handling: the request is still recorded, as Graph still processed it.
                let task = tokio::spawn(handle(request, state.clone()));
                async move { task.await.unwrap_or(Err(DropConnection)) }
            });
            // Connection errors (client resets, our own drops) end only that connection.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<AppState>,
) -> Result<HttpResponse, DropConnection> {
    if request.uri().path().starts_with("/_emulator/") {
        return Ok(control::handle(request, &state).await);
    }
    handle_graph(request, &state).await
}

/// Reads an upload body of up to [`MAX_UPLOAD_BODY_BYTES`] into one buffer sized from
/// Content-Length, so a large file exists once in memory (collecting hyper's chunks and then
/// joining them would hold it twice). `(empty, true)` when it is too large.
async fn read_upload_body(
    mut body: Incoming,
    content_length: Option<u64>,
) -> Result<(Bytes, bool), DropConnection> {
    let limit = MAX_UPLOAD_BODY_BYTES;
    if content_length.is_some_and(|length| length > limit as u64) {
        return Ok((Bytes::new(), true));
    }
    let capacity = content_length.map_or(0, |length| length as usize);
    let mut buffer = Vec::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| DropConnection)?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                return Ok((Bytes::new(), true));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok((Bytes::from(buffer), false))
}

/// Reads the body up to [`MAX_BODY_BYTES`]; `Err` when the client went away mid-body.
async fn read_body(body: Incoming) -> Result<(Bytes, bool), DropConnection> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok((collected.to_bytes(), false)),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Ok((Bytes::new(), true)),
        Err(_) => Err(DropConnection),
    }
}

/// Reads a control-endpoint body (JSON documents) of at most `limit` bytes.
pub async fn read_control_body(body: Incoming, limit: usize) -> Result<Bytes, String> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => Err(format!("could not read body: {error}")),
    }
}

async fn handle_graph(
    request: Request<Incoming>,
    state: &Arc<AppState>,
) -> Result<HttpResponse, DropConnection> {
    let seq = state.next_seq();
    let received_at_ms = state.elapsed_ms();
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let is_upload = graph::is_upload_path(&parts.method, parts.uri.path());
    let (body, body_too_large) = if is_upload {
        let content_length = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        read_upload_body(body, content_length).await?
    } else {
        read_body(body).await?
    };
    // A multipart upload is never JSON; do not scan up to 100 MB to find that out.
    let json = if is_upload {
        None
    } else {
        serde_json::from_slice::<Value>(&body).ok()
    };
    let graph_request = GraphRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
        body_too_large,
        json,
    };
    let config = state.config();
    let to = graph_request.to_text();
    let message_type = graph_request.message_type();
    let phone_number_id = graph_request.phone_number_id();
    let fault = state.take_fault(&FaultSubject {
        path: &graph_request.path,
        phone_number_id: phone_number_id.as_deref(),
        to: to.as_deref(),
        message_type: message_type.as_deref(),
    });
    let fault_id = fault.as_ref().map(|(id, _)| *id);

    if let Some(delay_ms) = fault.as_ref().and_then(|(_, action)| action.delay_ms) {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    if config.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(config.latency_ms)).await;
    }

    let forced = match fault.as_ref().map(|(_, action)| action) {
        Some(action) if action.drop == Some(true) => Some(Outcome::Drop),
        Some(action) => fault_answer(action),
        None => None,
    };
    let outcome = match forced {
        Some(outcome) => outcome,
        None => match media_download_id(&graph_request) {
            Some(media_id) => {
                download_outcome(media::download(state, &config, &graph_request, media_id))
            }
            None => Outcome::Graph(graph::route(state, &config, &graph_request).await),
        },
    };

    let served = graph_request.served_version();
    let version = VersionHeaders {
        served: served.served().to_string(),
        warning: served.warning(),
    };
    let (status, recorded_response, response, wamid, accepted_send) = match outcome {
        Outcome::Drop => (None, None, None, None, false),
        Outcome::Graph(reply) => {
            let response = graph_response(&reply, &version);
            (
                Some(reply.status),
                Some(RecordedResponse::Json(reply.body_text)),
                Some(response),
                reply.wamid,
                reply.accepted_send,
            )
        }
        Outcome::Raw {
            status,
            content_type,
            body,
            retry_after_s,
        } => {
            let response = raw_response(status, content_type, &body, retry_after_s, &version);
            (
                Some(status),
                Some(RecordedResponse::Raw(body)),
                Some(response),
                None,
                false,
            )
        }
        Outcome::File {
            bytes,
            mime_type,
            filename,
        } => {
            // Recorded as a summary: the file itself is in the media store.
            let summary = format!("[{} bytes of {mime_type}]", bytes.len());
            let response = file_response(bytes, &mime_type, &filename);
            (
                Some(200),
                Some(RecordedResponse::Raw(summary)),
                Some(response),
                None,
                false,
            )
        }
    };

    if !state.quiet {
        let shown = status.map_or_else(|| "dropped".to_string(), |status| status.to_string());
        eprintln!(
            "{} {} -> {shown} ({} ms){}",
            graph_request.method,
            graph_request.path,
            started.elapsed().as_millis(),
            fault_id.map_or_else(String::new, |id| format!(" [fault {id}]")),
        );
    }

    if accepted_send {
        if let Some(wamid) = &wamid {
            let async_error = fault.and_then(|(_, action)| action.async_error);
            follow_with_status_webhooks(state, &graph_request, wamid, async_error);
        }
    }

    let recorded_length = if is_upload {
        graph_request.body.len().min(RECORDED_BODY_LIMIT)
    } else {
        graph_request.body.len()
    };
    let record = Record {
        seq,
        method: graph_request.method.as_str().to_string(),
        headers: graph_request
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect(),
        body_is_json: graph_request.json.is_some(),
        phone_number_id,
        // A copy: the received `Bytes` shares hyper's whole read buffer, which a long-lived
        // record would otherwise keep alive (kilobytes per request). Media bodies (uploads of
        // up to 100 MB) keep only their first KiB.
        body: graph_request
            .body
            .get(..recorded_length)
            .unwrap_or_default()
            .to_vec(),
        body_truncated: recorded_length < graph_request.body.len(),
        path: graph_request.path,
        query: graph_request.query,
        to,
        message_type,
        response_status: status,
        response: recorded_response,
        wamid,
        fault_id,
        received_at_ms,
    };
    state.record(record, accepted_send);

    response.ok_or(DropConnection)
}

/// Hands an accepted send to the webhook driver (auto statuses, `async_error` faults).
fn follow_with_status_webhooks(
    state: &Arc<AppState>,
    request: &GraphRequest,
    wamid: &str,
    async_error: Option<AsyncError>,
) {
    let body = request.json.as_ref();
    let text_member = |key: &str| {
        body.and_then(|body| body.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let group = body
        .and_then(|body| body.get("recipient_type"))
        .and_then(Value::as_str)
        == Some("group");
    let send = webhook::AcceptedSend {
        wamid: wamid.to_string(),
        phone_number_id: request.object_id().unwrap_or_default().to_string(),
        group_id: group.then(|| request.to_text()).flatten(),
        wa_id: request
            .to_text()
            .filter(|_| !group)
            .map(|to| digits_only(&to)),
        bsuid: text_member("recipient"),
        biz_opaque_callback_data: text_member("biz_opaque_callback_data"),
        template: request.message_type().as_deref() == Some("template"),
    };
    webhook::after_accepted_send(state, send, async_error);
}

enum Outcome {
    Graph(Reply),
    Raw {
        status: u16,
        content_type: &'static str,
        body: String,
        retry_after_s: Option<u64>,
    },
    File {
        bytes: Bytes,
        mime_type: String,
        filename: String,
    },
    Drop,
}

/// The media id of a download URL path `/media/download/<media_id>` (GET only; other methods
/// there fall through to Graph's 100/33).
fn media_download_id(request: &GraphRequest) -> Option<&str> {
    if request.method != hyper::Method::GET {
        return None;
    }
    request
        .path
        .strip_prefix("/media/download/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

fn download_outcome(download: Download) -> Outcome {
    match download {
        Download::Graph(reply) => Outcome::Graph(reply),
        Download::Page {
            status,
            content_type,
            body,
        } => Outcome::Raw {
            status,
            content_type,
            body,
            retry_after_s: None,
        },
        Download::File {
            bytes,
            mime_type,
            filename,
        } => Outcome::File {
            bytes,
            mime_type,
            filename,
        },
    }
}

/// The answer a fault action forces, or `None` when it only delays.
fn fault_answer(action: &FaultAction) -> Option<Outcome> {
    if let Some(error) = &action.error {
        let mut graph_error = GraphError::with_code(error.code);
        if let Some(status) = error.http_status {
            graph_error.http_status = status;
        }
        if let Some(message) = &error.message {
            graph_error.message = message.clone();
        }
        if let Some(error_type) = &error.error_type {
            graph_error.error_type = error_type.clone();
        }
        graph_error.subcode = error.subcode;
        // WhatsApp-specific codes always carry error_data on Graph; default its text to the title.
        graph_error.details = error
            .details
            .clone()
            .or_else(|| (error.code >= 130_000).then(|| graph::code_title(error.code).to_string()));
        let mut reply = graph_error.into_reply();
        if let Some(seconds) = action.retry_after_s {
            reply.headers.push(("retry-after", seconds.to_string()));
        }
        return Some(Outcome::Graph(reply));
    }
    if let Some(status) = action.http_status {
        return Some(Outcome::Raw {
            status,
            content_type: "text/html; charset=utf-8",
            body: action.body.clone().unwrap_or_default(),
            retry_after_s: action.retry_after_s,
        });
    }
    None
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `facebook-api-version` (the version served) and, for an auto-upgraded call,
/// `X-Ad-Api-Version-Warning` (cloud-api.md §1.4).
struct VersionHeaders {
    served: String,
    warning: Option<String>,
}

impl VersionHeaders {
    fn apply(&self, mut builder: hyper::http::response::Builder) -> hyper::http::response::Builder {
        builder = builder.header("facebook-api-version", self.served.as_str());
        if let Some(warning) = &self.warning {
            builder = builder.header("x-ad-api-version-warning", warning.as_str());
        }
        builder
    }
}

fn graph_response(reply: &Reply, version: &VersionHeaders) -> HttpResponse {
    let builder = Response::builder()
        .status(status_code(reply.status))
        .header("content-type", "application/json; charset=UTF-8");
    let mut builder = version
        .apply(builder)
        .header(
            "x-fb-trace-id",
            graph::random_trace_id().get(..11).unwrap_or(""),
        )
        .header("x-fb-request-id", graph::random_trace_id());
    for (name, value) in &reply.headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(BytesBody::new(reply.body_text.clone()))
        .unwrap_or_else(|_| fallback_response())
}

fn raw_response(
    status: u16,
    content_type: &str,
    body: &str,
    retry_after_s: Option<u64>,
    version: &VersionHeaders,
) -> HttpResponse {
    let builder = Response::builder()
        .status(status_code(status))
        .header("content-type", content_type);
    let mut builder = version.apply(builder);
    if let Some(seconds) = retry_after_s {
        builder = builder.header("retry-after", seconds.to_string());
    }
    builder
        .body(BytesBody::new(body.to_string()))
        .unwrap_or_else(|_| fallback_response())
}

/// A media download: the stored bytes streamed in chunks, with the lookaside host's headers.
fn file_response(bytes: Bytes, mime_type: &str, filename: &str) -> HttpResponse {
    // Client-chosen names go into a header: keep only characters that are safe unquoted.
    let filename: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, ';' | '"' | '\\' | ',') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mime_type = if mime_type
        .bytes()
        .all(|byte| byte.is_ascii_graphic() || byte == b' ')
    {
        mime_type
    } else {
        "application/octet-stream"
    };
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", mime_type)
        .header("content-length", bytes.len().to_string())
        .header("content-disposition", format!("inline;filename={filename}"))
        .header(
            "cache-control",
            "private, no-cache, no-store, must-revalidate",
        )
        .body(BytesBody::new(bytes))
        .unwrap_or_else(|_| fallback_response())
}

/// Only reached if a header value were invalid, which the callers prevent; never panic for it.
fn fallback_response() -> HttpResponse {
    let mut response = Response::new(BytesBody::new(Bytes::from_static(
        b"{\"error\":{\"message\":\"internal emulator error\",\"type\":\"OAuthException\",\"code\":1}}",
    )));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// A JSON response for control endpoints (plain serde_json encoding).
pub fn json_response(status: u16, body: &Value) -> HttpResponse {
    text_json_response(status, body.to_string())
}

/// A control-endpoint response whose JSON text is already rendered.
pub fn text_json_response(status: u16, text: String) -> HttpResponse {
    Response::builder()
        .status(status_code(status))
        .header("content-type", "application/json")
        .body(BytesBody::new(text))
        .unwrap_or_else(|_| fallback_response())
}
