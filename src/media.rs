//! Media: forwarding an inbound media file to a destination URL (the seed's `RequestMedia`),
//! downloading it to a file or streaming it to the listener's `/client/getMedia`, and uploading
//! local media for sending.
//!
//! Transfers are streamed end to end with bounded memory; the SHA-256 Graph announces is
//! checked while the bytes pass. The bearer token only goes to the Graph host and to media hosts
//! on an allow-list, so a media URL pointing elsewhere cannot collect it.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Url;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::error::{DeliveryError, GraphError};
use crate::graph::{install_crypto_provider, read_limited, USER_AGENT};
use crate::webhook::decode_hex_sha256;

/// Meta's default media host (cloud-api.md §1.1).
pub const DEFAULT_MEDIA_HOST: &str = "lookaside.fbsbx.com";
/// Above Meta's largest media (documents, 100 MB).
pub const DEFAULT_MAX_BYTES: u64 = 128 * 1024 * 1024;

pub type MediaError = (DeliveryError, String);

fn fail<T>(error: DeliveryError, text: impl Into<String>) -> Result<T, MediaError> {
    Err((error, text.into()))
}

/// What `GET /{media-id}` says about a media object.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    pub url: String,
    pub mime_type: String,
    pub sha256: Option<[u8; 32]>,
    pub file_size: Option<u64>,
}

/// Source of an upload.
#[derive(Debug, Clone)]
pub enum UploadSource {
    File(PathBuf),
    Buffer { data: Bytes, filename: String },
}

/// Meta's accepted MIME types and size limits for sending (cloud-api.md §4.5).
pub fn upload_limit(mime_type: &str) -> Option<(&'static str, u64)> {
    const MB: u64 = 1024 * 1024;
    let limit = match mime_type {
        "image/jpeg" | "image/png" => ("image", 5 * MB),
        "image/webp" => ("sticker", 500 * 1024),
        "audio/aac" | "audio/amr" | "audio/mpeg" | "audio/mp4" | "audio/ogg" => ("audio", 16 * MB),
        "video/mp4" | "video/3gpp" => ("video", 16 * MB),
        "text/plain"
        | "application/pdf"
        | "application/msword"
        | "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        | "application/vnd.ms-excel"
        | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        | "application/vnd.ms-powerpoint"
        | "application/vnd.openxmlformats-officedocument.presentationml.presentation" => {
            ("document", 100 * MB)
        }
        _ => return None,
    };
    Some(limit)
}

/// Checks an upload before any request: known type, within Meta's limit.
pub fn validate_upload(mime_type: &str, size: u64) -> Result<(), String> {
    let Some((kind, max)) = upload_limit(mime_type) else {
        return Err(format!(
            "{mime_type:?} is not a media type WhatsApp accepts for sending"
        ));
    };
    if size == 0 {
        return Err("the media is empty".into());
    }
    if size > max {
        return Err(format!(
            "{size} bytes is over WhatsApp's {max}-byte limit for {kind} ({mime_type})"
        ));
    }
    Ok(())
}

fn transport_text(what: &str, e: &reqwest::Error) -> String {
    let detail =
        crate::graph::certificate_refusal(e).unwrap_or_else(|| crate::graph::error_text(e));
    format!("{what}: {detail}")
}

fn timed_out_text(what: &str, idle: Duration) -> String {
    format!(
        "{what}: timed out, nothing moved for {} ms",
        idle.as_millis()
    )
}

/// Largest piece of a request body handed to the connection at once: the idle watchdog sees
/// progress once per piece taken, so one piece must not take long to send (a download's chunks
/// reach 400 KiB).
const PIECE: usize = 64 * 1024;

/// `bytes` as pieces of at most `PIECE` bytes, without copying.
fn pieces(bytes: Bytes) -> impl Iterator<Item = Bytes> {
    (0..bytes.len())
        .step_by(PIECE)
        .map(move |start| bytes.slice(start..bytes.len().min(start + PIECE)))
}

/// `stream` with its chunks cut into `pieces`.
fn in_pieces<S, E>(stream: S) -> impl Stream<Item = Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    stream.flat_map(|item| {
        let items: Vec<Result<Bytes, E>> = match item {
            Ok(bytes) => pieces(bytes).map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(items)
    })
}

/// How long a media transfer may make no progress. Progress is seen when the connection takes
/// data, and the kernel's send buffer (up to a few MB where Linux tunes it up) takes a lot at
/// once: on a slow link the time between two takes, and after the last one until the answer,
/// is the buffer's drain time. Two minutes allow buffers of 4 MB down to about 270 kbit/s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The idle timeout of a transfer whose request carries a large body (an upload, a forward's
/// POST to the destination).
///
/// reqwest's `read_timeout` is no idle timeout: it runs from the request's start until the
/// answer's head, so the whole body would have to be sent within it. Instead the request body is
/// wrapped so that every chunk the connection takes counts as progress, and the request fails
/// only once nothing moved for `idle`. The wait for the answer's head after the last chunk is
/// bounded by `idle` too.
#[derive(Clone)]
struct Watchdog {
    idle: Duration,
    state: Arc<Mutex<WatchState>>,
}

struct WatchState {
    last_progress: Instant,
    /// Waiting on the body's own source, which has its own timer (a forward's download):
    /// the connection is not idle meanwhile, it has nothing to send.
    paused: bool,
}

/// The watched transfer made no progress for the idle timeout.
#[derive(Debug)]
struct Stalled;

impl Watchdog {
    fn new(idle: Duration) -> Self {
        Self {
            idle,
            state: Arc::new(Mutex::new(WatchState {
                last_progress: Instant::now(),
                paused: false,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn progress(&self) {
        let mut state = self.lock();
        state.last_progress = Instant::now();
        state.paused = false;
    }

    fn pause(&self) {
        self.lock().paused = true;
    }

    /// When the transfer counts as stalled if nothing moves before; `None` while paused.
    fn deadline(&self) -> Option<Instant> {
        let state = self.lock();
        (!state.paused).then(|| state.last_progress + self.idle)
    }

    /// Runs `future` to completion, or gives up once nothing moved for the idle timeout.
    async fn guard<F: Future>(&self, future: F) -> Result<F::Output, Stalled> {
        let mut future = std::pin::pin!(future);
        loop {
            let wake = self
                .deadline()
                .unwrap_or_else(|| Instant::now() + self.idle);
            tokio::select! {
                biased;
                output = &mut future => return Ok(output),
                () = tokio::time::sleep_until(wake) => {
                    if self.deadline().is_some_and(|d| d <= Instant::now()) {
                        return Err(Stalled);
                    }
                }
            }
        }
    }

    /// `stream` with every item its consumer takes counted as progress. With `pause_while_waiting`
    /// the time the consumer waits on `stream` itself is not idle time (its source has its own
    /// timer); otherwise it is (a local file that hangs is a stall too).
    fn watch<S>(
        &self,
        stream: S,
        pause_while_waiting: bool,
    ) -> impl Stream<Item = S::Item> + Send + 'static
    where
        S: Stream + Send + 'static,
        S::Item: Send + 'static,
    {
        let watchdog = self.clone();
        futures_util::stream::unfold(Box::pin(stream), move |mut stream| {
            let watchdog = watchdog.clone();
            async move {
                if pause_while_waiting {
                    watchdog.pause();
                }
                let item = stream.next().await;
                watchdog.progress();
                item.map(|item| (item, stream))
            }
        })
    }
}

/// Result of streaming: set by the verifying stream when the bytes do not match.
type StreamProblem = Arc<Mutex<Option<MediaError>>>;

/// Passes the download's bytes on while hashing and counting them; ends with an error (which
/// aborts whatever consumes it) on a size or SHA-256 mismatch, or when the media host sends
/// nothing for `idle`. That timer runs only while the consumer waits for the next chunk: a
/// consumer slow to take the bytes (a destination, a disk, a getMedia client) is not a stalled
/// download.
fn verified_stream(
    response: reqwest::Response,
    info: &MediaInfo,
    max_bytes: u64,
    idle: Duration,
    problem: StreamProblem,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    struct State {
        response: reqwest::Response,
        idle: Duration,
        hasher: Sha256,
        received: u64,
        expected_sha: Option<[u8; 32]>,
        expected_size: Option<u64>,
        max_bytes: u64,
        problem: StreamProblem,
        done: bool,
        held: Option<Bytes>,
    }
    impl State {
        /// Ends the stream with `error`, recording it for the caller.
        fn fail(&mut self, error: MediaError) -> std::io::Error {
            self.done = true;
            self.held = None;
            let io = std::io::Error::other(error.1.clone());
            *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
            io
        }
    }
    let state = State {
        response,
        idle,
        hasher: Sha256::new(),
        received: 0,
        expected_sha: info.sha256,
        expected_size: info.file_size,
        max_bytes,
        problem,
        done: false,
        held: None,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                // After a successful end the chunk held back is released last.
                return s.held.take().map(|chunk| (Ok(chunk), s));
            }
            let Ok(read) = tokio::time::timeout(s.idle, s.response.chunk()).await else {
                let text = timed_out_text("media download failed", s.idle);
                let error = s.fail((DeliveryError::OtherHttp, text));
                return Some((Err(error), s));
            };
            match read {
                Ok(Some(chunk)) => {
                    s.received += chunk.len() as u64;
                    if s.received > s.max_bytes {
                        let text = format!("media is larger than the {}-byte cap", s.max_bytes);
                        let error = s.fail((DeliveryError::OtherHttp, text));
                        return Some((Err(error), s));
                    }
                    s.hasher.update(&chunk);
                    // Hold one chunk back: the last bytes go out only once the whole file is
                    // verified, so a consumer never sees a complete body that failed the check.
                    if let Some(previous) = s.held.replace(chunk) {
                        return Some((Ok(previous), s));
                    }
                }
                Ok(None) => {
                    s.done = true;
                    let digest: [u8; 32] = std::mem::take(&mut s.hasher).finalize().into();
                    let problem = if s.expected_size.is_some_and(|size| size != s.received) {
                        format!(
                            "media size mismatch: Graph announced {:?} bytes, got {}",
                            s.expected_size, s.received
                        )
                    } else if s.expected_sha.is_some_and(|sha| sha != digest) {
                        "media SHA-256 does not match what Graph announced".to_string()
                    } else {
                        continue;
                    };
                    let error = s.fail((DeliveryError::OtherHttp, problem));
                    return Some((Err(error), s));
                }
                Err(e) => {
                    let error = s.fail((
                        DeliveryError::OtherHttp,
                        transport_text("media download failed", &e),
                    ));
                    return Some((Err(error), s));
                }
            }
        }
    })
}

/// A download's temporary file, next to its destination: `.<file name>.<pid>.<n>.part`.
///
/// The name is the process's own (pid and counter), and the file is created only if it does not
/// exist: two downloads never share one (`a.jpg` and `a.png` would if the extension were
/// replaced), and no file of the host's (its own `voice.part`) is overwritten or moved away.
/// Removed when dropped, unless `commit` moved it over the destination: on every failure path,
/// including a cancelled download.
struct PartialFile {
    path: Option<PathBuf>,
}

impl PartialFile {
    async fn create(destination: &Path) -> std::io::Result<(Self, tokio::fs::File)> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let Some(name) = destination.file_name() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the path does not name a file",
            ));
        };
        // Room for the additions within the usual 255-byte limit on a file name.
        let mut name_part = String::new();
        for c in name.to_string_lossy().chars() {
            if name_part.len() + c.len_utf8() > 160 {
                break;
            }
            name_part.push(c);
        }
        let directory = destination.parent().unwrap_or(Path::new("")).to_path_buf();
        // The file is created on the blocking pool and handed back inside its guard: if this
        // future is dropped while the open runs (a cancelled download), the pool drops the
        // unclaimed guard and the new file goes with it.
        let created = tokio::task::spawn_blocking(move || {
            let mut attempts = 0;
            loop {
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let path = directory.join(format!(".{name_part}.{}.{n}.part", std::process::id()));
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    Ok(file) => return Ok((Self { path: Some(path) }, file)),
                    // A leftover of an earlier process with the same pid: take the next number.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 100 => {
                        attempts += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        })
        .await
        .map_err(std::io::Error::other)?;
        let (partial, file) = created?;
        Ok((partial, tokio::fs::File::from_std(file)))
    }

    /// Moves the file over `destination` (replacing a file there).
    async fn commit(mut self, destination: &Path) -> std::io::Result<()> {
        if let Some(path) = &self.path {
            tokio::fs::rename(path, destination).await?;
            self.path = None;
        }
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Synchronous: drop may run during cancellation, where nothing can be awaited. One
            // unlink is short.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Media operations for one client configuration.
pub struct MediaClient {
    http: reqwest::Client,
    graph_base: String,
    allowed_hosts: HashSet<String>,
    graph_origin: (String, String, Option<u16>),
    max_bytes: u64,
    /// The bound of a small request (a lookup, a download's answer head).
    timeout: Duration,
    /// A transfer fails once nothing moved for this long, however long it takes.
    idle: Duration,
}

impl MediaClient {
    pub fn new(config: &ClientConfig) -> Result<Self, String> {
        install_crypto_provider();
        let base =
            Url::parse(&config.graph_base_url).map_err(|e| format!("Graph base URL: {e}"))?;
        let graph_host = base.host_str().unwrap_or("").to_string();
        let mut allowed_hosts: HashSet<String> = config.media_hosts.iter().cloned().collect();
        allowed_hosts.insert(graph_host.clone());
        let redirect_hosts = allowed_hosts.clone();
        let http = crate::graph::build_client(&config.graph_base_url, || {
            let redirect_hosts = redirect_hosts.clone();
            reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .connect_timeout(config.connect_timeout)
                // No client-wide timeout: a 100 MB transfer may take long, a stalled one may
                // not. reqwest's `read_timeout` would bound the whole request body (it runs
                // until the answer's head), so each stage has its own bound: `Watchdog`,
                // `verified_stream`. Redirects keep the Authorization header only within the
                // allow-list.
                .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                    let allowed = attempt
                        .url()
                        .host_str()
                        .is_some_and(|h| redirect_hosts.contains(h));
                    if attempt.previous().len() >= 5 || !allowed {
                        attempt.stop()
                    } else {
                        attempt.follow()
                    }
                }))
        })?;
        Ok(Self {
            http,
            graph_base: format!("{}/{}", config.graph_base_url, config.api_version),
            allowed_hosts,
            graph_origin: (
                base.scheme().to_string(),
                graph_host,
                base.port_or_known_default(),
            ),
            max_bytes: config.media_max_bytes,
            timeout: config.request_timeout,
            idle: config.media_idle_timeout,
        })
    }

    /// Whether the bearer token may be sent to `url`: https on an allow-listed host, or the
    /// Graph host itself with its own scheme (the emulator speaks plain http on loopback).
    fn token_may_go_to(&self, url: &Url) -> bool {
        let host = url.host_str().unwrap_or("");
        let same_origin = url.scheme() == self.graph_origin.0
            && host == self.graph_origin.1
            && url.port_or_known_default() == self.graph_origin.2;
        same_origin || (url.scheme() == "https" && self.allowed_hosts.contains(host))
    }

    /// A small answer body, read within the timeout; empty when it cannot be read.
    async fn read_answer(&self, response: reqwest::Response) -> Bytes {
        match tokio::time::timeout(self.timeout, read_limited(response)).await {
            Ok(Ok(body)) => body,
            _ => Bytes::new(),
        }
    }

    fn graph_failure(status: u16, body: &[u8]) -> MediaError {
        let error = GraphError::parse(status, body);
        (error.delivery_error(), error.text())
    }

    /// `GET /{media-id}`: where the bytes are and what they should hash to.
    pub async fn resolve(&self, media_id: &str, token: &str) -> Result<MediaInfo, MediaError> {
        if media_id.is_empty()
            || !media_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return fail(
                DeliveryError::BadRequest,
                format!("{media_id:?} is not a media id"),
            );
        }
        let response = self
            .http
            .get(format!("{}/{}", self.graph_base, media_id))
            .bearer_auth(token)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| {
                (
                    DeliveryError::OtherHttp,
                    transport_text("media lookup failed", &e),
                )
            })?;
        let status = response.status().as_u16();
        let body = read_limited(response).await.map_err(|e| {
            (
                DeliveryError::OtherHttp,
                transport_text("media lookup failed", &e),
            )
        })?;
        if !(200..300).contains(&status) {
            return Err(Self::graph_failure(status, &body));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
            (
                DeliveryError::OtherHttp,
                "media lookup answer is not JSON".to_string(),
            )
        })?;
        let url = v["url"].as_str().unwrap_or("").to_string();
        if url.is_empty() {
            return fail(DeliveryError::OtherHttp, "media lookup answer has no url");
        }
        // Graph sends file_size as a number in practice and as a string in its docs.
        let file_size = v["file_size"]
            .as_u64()
            .or_else(|| v["file_size"].as_str().and_then(|s| s.parse().ok()));
        Ok(MediaInfo {
            url,
            mime_type: v["mime_type"]
                .as_str()
                .unwrap_or("application/octet-stream")
                .to_string(),
            sha256: v["sha256"].as_str().and_then(decode_hex_sha256),
            file_size,
        })
    }

    /// Resolves and starts the download; an expired URL (404) is re-resolved once.
    pub async fn open(
        &self,
        media_id: &str,
        token: &str,
    ) -> Result<(MediaInfo, reqwest::Response), MediaError> {
        let mut info = self.resolve(media_id, token).await?;
        for attempt in 0..2 {
            if info.file_size.is_some_and(|size| size > self.max_bytes) {
                return fail(
                    DeliveryError::OtherHttp,
                    format!("media is larger than the {}-byte cap", self.max_bytes),
                );
            }
            let url = Url::parse(&info.url).map_err(|_| {
                (
                    DeliveryError::OtherHttp,
                    "media url is malformed".to_string(),
                )
            })?;
            if !self.token_may_go_to(&url) {
                return fail(
                    DeliveryError::OtherHttp,
                    format!(
                        "media url host {:?} is not an allowed media host; the token was not sent",
                        url.host_str().unwrap_or("")
                    ),
                );
            }
            // The answer's head within the timeout; the body's chunks are timed one by one.
            let sent =
                tokio::time::timeout(self.timeout, self.http.get(url).bearer_auth(token).send());
            let response = sent
                .await
                .map_err(|_| {
                    (
                        DeliveryError::OtherHttp,
                        timed_out_text("media download failed", self.timeout),
                    )
                })?
                .map_err(|e| {
                    (
                        DeliveryError::OtherHttp,
                        transport_text("media download failed", &e),
                    )
                })?;
            let status = response.status().as_u16();
            if status == 404 && attempt == 0 {
                tracing::debug!("media url expired; resolving {media_id} again");
                info = self.resolve(media_id, token).await?;
                continue;
            }
            if !(200..300).contains(&status) {
                let body = self.read_answer(response).await;
                return Err(Self::graph_failure(status, &body));
            }
            // Some edges answer an HTML page instead of the file (cloud-api.md §4.3).
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if is_html_page(content_type) {
                return fail(
                    DeliveryError::OtherHttp,
                    "the media host answered an HTML page instead of the media",
                );
            }
            return Ok((info, response));
        }
        fail(DeliveryError::NotFound, "media url expired twice")
    }

    /// The download as a verified stream, for the listener's `/client/getMedia`.
    pub async fn stream(
        &self,
        media_id: &str,
        token: &str,
    ) -> Result<
        (
            MediaInfo,
            impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        ),
        MediaError,
    > {
        let (info, response) = self.open(media_id, token).await?;
        let stream = verified_stream(response, &info, self.max_bytes, self.idle, Arc::default());
        Ok((info, stream))
    }

    /// The seed's RequestMedia: download and POST the bytes to `destination`. Returns the
    /// destination's HTTP status on success.
    pub async fn forward(
        &self,
        media_id: &str,
        destination: &str,
        mime_type: Option<&str>,
        token: &str,
    ) -> Result<String, MediaError> {
        let destination = Url::parse(destination)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                (
                    DeliveryError::BadRequest,
                    "destination is not an http(s) URL".to_string(),
                )
            })?;
        let (info, response) = self.open(media_id, token).await?;
        let problem = StreamProblem::default();
        let stream = verified_stream(response, &info, self.max_bytes, self.idle, problem.clone());
        // The download times its own chunks; the destination is idle only when it takes none.
        let watchdog = Watchdog::new(self.idle);
        let body = reqwest::Body::wrap_stream(watchdog.watch(in_pieces(stream), true));
        let content_type = mime_type
            .filter(|m| !m.is_empty())
            .unwrap_or(&info.mime_type)
            .to_string();
        let mut request = self
            .http
            .post(destination)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        if let Some(size) = info.file_size {
            request = request.header(CONTENT_LENGTH, size);
        }
        watchdog.progress();
        let sent = watchdog.guard(request.send()).await;
        if let Some(error) = problem.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(error);
        }
        let Ok(sent) = sent else {
            return fail(
                DeliveryError::OtherHttp,
                timed_out_text("posting to the destination failed", self.idle),
            );
        };
        let response = sent.map_err(|e| {
            (
                DeliveryError::OtherHttp,
                transport_text("posting to the destination failed", &e),
            )
        })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(status.to_string())
        } else {
            fail(
                DeliveryError::OtherHttp,
                format!("the destination answered HTTP {status}"),
            )
        }
    }

    /// Downloads to `path` (written to a temporary file of its own next to it, renamed over
    /// `path` when complete and verified, removed otherwise). Returns the media's MIME type.
    pub async fn download_to_file(
        &self,
        media_id: &str,
        path: &Path,
        token: &str,
    ) -> Result<String, MediaError> {
        use tokio::io::AsyncWriteExt;
        let (info, response) = self.open(media_id, token).await?;
        let io_err = |e: std::io::Error| {
            (
                DeliveryError::OtherHttp,
                format!("cannot write {}: {e}", path.display()),
            )
        };
        // Removed when this function returns early or is cancelled.
        let (partial, mut file) = PartialFile::create(path).await.map_err(io_err)?;
        let mut stream = std::pin::pin!(verified_stream(
            response,
            &info,
            self.max_bytes,
            self.idle,
            Arc::default()
        ));
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => file.write_all(&bytes).await.map_err(io_err)?,
                Err(e) => return fail(DeliveryError::OtherHttp, e.to_string()),
            }
        }
        file.flush().await.map_err(io_err)?;
        drop(file);
        partial.commit(path).await.map_err(io_err)?;
        Ok(info.mime_type)
    }

    /// `POST /{channel}/media` (multipart); returns the new media id.
    pub async fn upload(
        &self,
        channel: &str,
        source: UploadSource,
        mime_type: &str,
        token: &str,
    ) -> Result<String, MediaError> {
        // Every chunk the connection takes is progress; a file that hangs is a stall too.
        let watchdog = Watchdog::new(self.idle);
        let part = match source {
            UploadSource::Buffer { data, filename } => {
                let size = data.len();
                let chunks = pieces(data).map(Ok::<_, std::io::Error>);
                let stream = watchdog.watch(futures_util::stream::iter(chunks), false);
                reqwest::multipart::Part::stream_with_length(
                    reqwest::Body::wrap_stream(stream),
                    size as u64,
                )
                .file_name(filename)
            }
            UploadSource::File(path) => {
                let file = tokio::fs::File::open(&path).await.map_err(|e| {
                    (
                        DeliveryError::BadRequest,
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "upload".into());
                let stream = tokio_util::io::ReaderStream::with_capacity(file, PIECE);
                let stream = watchdog.watch(stream, false);
                reqwest::multipart::Part::stream_with_length(
                    reqwest::Body::wrap_stream(stream),
                    size,
                )
                .file_name(name)
            }
        };
        let part = part.mime_str(mime_type).map_err(|_| {
            (
                DeliveryError::BadRequest,
                format!("{mime_type:?} is not a MIME type"),
            )
        })?;
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", mime_type.to_string())
            .part("file", part);
        let request = self
            .http
            .post(format!("{}/{}/media", self.graph_base, channel))
            .bearer_auth(token)
            .multipart(form);
        watchdog.progress();
        let response = watchdog
            .guard(request.send())
            .await
            .map_err(|Stalled| {
                (
                    DeliveryError::OtherHttp,
                    timed_out_text("media upload failed", self.idle),
                )
            })?
            .map_err(|e| {
                (
                    DeliveryError::OtherHttp,
                    transport_text("media upload failed", &e),
                )
            })?;
        let status = response.status().as_u16();
        let body = self.read_answer(response).await;
        if !(200..300).contains(&status) {
            return Err(Self::graph_failure(status, &body));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        match v["id"].as_str() {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => fail(DeliveryError::OtherHttp, "upload answer has no media id"),
        }
    }
}

/// Whether a `Content-Type` names an HTML page (media types are case-insensitive, RFC 9110
/// §8.3.1).
fn is_html_page(content_type: &str) -> bool {
    content_type
        .trim_start()
        .get(..9)
        .is_some_and(|t| t.eq_ignore_ascii_case("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_cancelled_while_its_file_is_created_leaves_no_file() {
        let dir = std::env::temp_dir().join(format!("wa-partial-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let destination = dir.join("voice.ogg");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async {
            for _ in 0..20 {
                // One poll starts the open on the blocking pool; then the download is dropped
                // (usually while the open runs; a finished one is dropped with its guard).
                let create = PartialFile::create(&destination);
                drop(futures_util::FutureExt::now_or_never(create));
            }
            // And the completed path still removes its file when the guard goes.
            // (Cancelled opens may still be running: only this file's own existence is certain.)
            let (partial, file) = PartialFile::create(&destination).await.unwrap();
            assert!(partial.path.as_ref().is_some_and(|p| p.exists()));
            drop((partial, file));
        });
        // Shutting the runtime down waits for the blocking opens still running.
        drop(runtime);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn html_pages_are_recognised_in_any_case() {
        for html in [
            "text/html",
            "text/html; charset=utf-8",
            "TEXT/HTML",
            "Text/Html;q=1",
        ] {
            assert!(is_html_page(html), "{html}");
        }
        for media in [
            "",
            "image/jpeg",
            "text/plain",
            "text/htm",
            "application/xhtml+xml",
        ] {
            assert!(!is_html_page(media), "{media}");
        }
    }

    #[test]
    fn upload_limits_follow_the_reference() {
        assert!(validate_upload("image/png", 5 * 1024 * 1024).is_ok());
        assert!(validate_upload("image/png", 5 * 1024 * 1024 + 1).is_err());
        assert!(validate_upload("image/gif", 10).is_err());
        assert!(validate_upload("application/pdf", 100 * 1024 * 1024).is_ok());
        assert!(validate_upload("image/webp", 600 * 1024).is_err());
        assert!(validate_upload("audio/ogg", 0).is_err());
    }

    #[test]
    fn hex_sha256() {
        let hex = "c86c28d437534f7367e73b283155c083dddfdaf7f9b4dfae27e140f880035141";
        assert_eq!(decode_hex_sha256(hex).unwrap()[0], 0xc8);
        assert!(decode_hex_sha256("abc").is_none());
    }
}
