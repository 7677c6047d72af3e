//! Media: the store (uploaded, control-created and webhook-announced files), the Graph routes
//! (upload, URL lookup, delete), the "lookaside" download route with expiring signed URLs, and
//! the media control endpoints.
//!
//! File bytes are kept as [`Bytes`]: an upload keeps a slice of the request body (no copy), a
//! download streams slices of the stored buffer, and a lookup only clones a reference count.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper::Method;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::control::query_param;
use crate::graph::{check_token, GraphError, GraphRequest, Reply};
use crate::multipart;
use crate::state::{AppState, Config};

/// Meta's download URLs live 5 minutes.
const DEFAULT_URL_TTL_MS: u64 = 300_000;

/// Largest body the upload route reads: the 100 MB document limit plus multipart overhead.
pub const MAX_UPLOAD_BODY_BYTES: usize = 110 * 1024 * 1024;

/// Largest file `POST /_emulator/media` may generate (`size`); a guard against typos that
/// would exhaust memory, well above Meta's 100 MB so tests can exceed it.
const MAX_GENERATED_BYTES: u64 = 512 * 1024 * 1024;

/// Live download URLs remembered per media id; older ones are forgotten first. A client that
/// asks for a URL before every download must not grow memory without bound.
const MAX_LIVE_URLS_PER_MEDIA: usize = 256;

/// Recorded bodies of media routes are cut to this many bytes (an upload can be 100 MB).
pub const RECORDED_BODY_LIMIT: usize = 1024;

const MIB: u64 = 1024 * 1024;
const KIB: u64 = 1024;

/// The media types Graph accepts: MIME type, kind, size limit and the extension of Meta's default
/// file name (cloud-api.md §4.5). "MB" is taken as MiB. Stickers: webp is only allowed as a
/// sticker; the animated limit (500 KB) is used, as telling static from animated would mean
/// parsing the file.
const MEDIA_TYPES: &[(&str, &str, u64, &str)] = &[
    ("audio/aac", "audio", 16 * MIB, "aac"),
    ("audio/amr", "audio", 16 * MIB, "amr"),
    ("audio/mpeg", "audio", 16 * MIB, "mp3"),
    ("audio/mp4", "audio", 16 * MIB, "m4a"),
    ("audio/ogg", "audio", 16 * MIB, "ogg"),
    ("text/plain", "document", 100 * MIB, "txt"),
    ("application/pdf", "document", 100 * MIB, "pdf"),
    ("application/msword", "document", 100 * MIB, "doc"),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "document",
        100 * MIB,
        "docx",
    ),
    ("application/vnd.ms-excel", "document", 100 * MIB, "xls"),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "document",
        100 * MIB,
        "xlsx",
    ),
    (
        "application/vnd.ms-powerpoint",
        "document",
        100 * MIB,
        "ppt",
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "document",
        100 * MIB,
        "pptx",
    ),
    ("image/jpeg", "image", 5 * MIB, "jpg"),
    ("image/png", "image", 5 * MIB, "png"),
    ("image/webp", "sticker", 500 * KIB, "webp"),
    ("video/mp4", "video", 16 * MIB, "mp4"),
    ("video/3gpp", "video", 16 * MIB, "3gp"),
];

fn media_type(essence: &str) -> Option<&'static (&'static str, &'static str, u64, &'static str)> {
    MEDIA_TYPES.iter().find(|(mime, ..)| *mime == essence)
}

/// What kind of media a MIME type is and its size limit. Parameters such as `; codecs=opus`
/// are ignored here (the caller passes the essence).
fn media_kind(essence: &str) -> Option<(&'static str, u64)> {
    media_type(essence).map(|&(_, kind, max, _)| (kind, max))
}

fn supported_types() -> String {
    let names: Vec<&str> = MEDIA_TYPES.iter().map(|(mime, ..)| *mime).collect();
    names.join(", ")
}

/// `image/png; x=y` → `image/png` (lowercase).
fn mime_essence(mime_type: &str) -> String {
    mime_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The file name used when none was given, like Meta's `whatsapp.png`.
fn default_filename(mime_type: &str) -> String {
    let extension = media_type(&mime_essence(mime_type)).map_or("bin", |&(.., ext)| ext);
    format!("whatsapp.{extension}")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// A file to add to the store.
pub struct NewMedia {
    pub bytes: Bytes,
    pub mime_type: String,
    pub filename: Option<String>,
    /// The phone number id that owns it; `None` lets any number read it.
    pub owner: Option<String>,
}

/// What [`MediaStore::store`] answers (the control endpoint shows all of it).
pub struct Stored {
    pub id: String,
    /// Lowercase hex, as `GET /{media_id}` reports it.
    pub sha256_hex: String,
    pub file_size: u64,
}

struct MediaEntry {
    /// Emptied on delete: the entry stays so the control endpoint can report `deleted`.
    bytes: Bytes,
    mime_type: String,
    filename: String,
    owner: Option<String>,
    sha256_hex: String,
    file_size: u64,
    downloads: u64,
    deleted: bool,
    urls: VecDeque<IssuedUrl>,
}

/// One download URL handed out by `GET /{media_id}`.
struct IssuedUrl {
    hash: String,
    ext: u64,
    expires_at_unix_ms: u64,
}

/// Settings of `POST /_emulator/media/config`.
#[derive(Clone, Debug, Serialize)]
pub struct MediaConfig {
    pub url_ttl_ms: u64,
    pub corrupt_sha256: bool,
    /// Host put into download URLs instead of the listening address.
    pub url_host: Option<String>,
    pub expire_next_urls: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            url_ttl_ms: DEFAULT_URL_TTL_MS,
            corrupt_sha256: false,
            url_host: None,
            expire_next_urls: 0,
        }
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, MediaEntry>,
    config: MediaConfig,
}

/// All media of the run. One short mutex section per operation; hashing and copying happen
/// outside it.
pub struct MediaStore {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    /// The bound address, for building download URLs (set once at startup).
    bound: OnceLock<SocketAddr>,
}

impl Default for MediaStore {
    fn default() -> Self {
        MediaStore {
            inner: Mutex::new(Inner::default()),
            next_id: AtomicU64::new(1),
            bound: OnceLock::new(),
        }
    }
}

impl MediaStore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_bound_address(&self, address: SocketAddr) {
        let _ = self.bound.set(address);
    }

    /// Forgets every file and restores the default media config (the id counter keeps running
    /// so ids stay unique for the run).
    pub fn reset(&self) {
        *self.lock() = Inner::default();
    }

    /// Stores a file under a new numeric id shaped like Meta's (16 digits: 10 random, then a
    /// counter that keeps them unique).
    pub fn store(&self, media: NewMedia) -> Stored {
        let counter = self.next_id.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        let id = format!(
            "{}{:09}{counter:06}",
            fastrand::u8(1..10),
            fastrand::u32(..1_000_000_000)
        );
        let sha256_hex = sha256_hex(&media.bytes);
        let file_size = media.bytes.len() as u64;
        let filename = media
            .filename
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| default_filename(&media.mime_type));
        let entry = MediaEntry {
            bytes: media.bytes,
            mime_type: media.mime_type,
            filename,
            owner: media.owner,
            sha256_hex: sha256_hex.clone(),
            file_size,
            downloads: 0,
            deleted: false,
            urls: VecDeque::new(),
        };
        self.lock().entries.insert(id.clone(), entry);
        Stored {
            id,
            sha256_hex,
            file_size,
        }
    }

    pub fn config(&self) -> MediaConfig {
        self.lock().config.clone()
    }

    /// A download URL for an inbound media webhook (Meta's `source=webhook` URL, rolling out
    /// since 2025-11-12): issued like the ones `GET /{media_id}` hands out, with the same
    /// lifetime (`url_ttl_ms`); `expire_next_urls` only concerns those lookups. `None` for an
    /// id this emulator does not hold.
    pub fn webhook_url(&self, media_id: &str) -> Option<String> {
        let now_ms = unix_ms();
        let mut inner = self.lock();
        let Inner { entries, config } = &mut *inner;
        let entry = entries.get_mut(media_id).filter(|entry| !entry.deleted)?;
        Some(self.issue_url(config, entry, media_id, now_ms, false, Some("webhook")))
    }

    /// Records a fresh download URL of `entry` and answers it; `expired` issues one that is
    /// already past its `ext`, `source` adds Meta's `source=` parameter.
    fn issue_url(
        &self,
        config: &MediaConfig,
        entry: &mut MediaEntry,
        media_id: &str,
        now_ms: u64,
        expired: bool,
        source: Option<&str>,
    ) -> String {
        let (ext, expires_at_unix_ms) = if expired {
            ((now_ms / 1000).saturating_sub(1), 0)
        } else {
            let expires = now_ms.saturating_add(config.url_ttl_ms);
            (expires.div_ceil(1000), expires)
        };
        let hash = URL_SAFE_NO_PAD.encode(std::array::from_fn::<u8, 32, _>(|_| fastrand::u8(..)));
        entry
            .urls
            .retain(|issued| issued.expires_at_unix_ms > now_ms);
        if entry.urls.len() >= MAX_LIVE_URLS_PER_MEDIA {
            entry.urls.pop_front();
        }
        entry.urls.push_back(IssuedUrl {
            hash: hash.clone(),
            ext,
            expires_at_unix_ms,
        });
        let source = source.map_or_else(String::new, |source| format!("source={source}&"));
        format!(
            "http://{}/media/download/{media_id}?{source}ext={ext}&hash={hash}",
            self.url_authority(config.url_host.as_deref())
        )
    }

    /// The default host of download URLs: the listening IP, or the IPv4 loopback when bound
    /// to an unspecified address.
    fn url_authority(&self, host_override: Option<&str>) -> String {
        let address = self
            .bound
            .get()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let host = match host_override {
            Some(host) => host.to_string(),
            None if address.ip().is_unspecified() => "127.0.0.1".to_string(),
            None if address.is_ipv6() => format!("[{}]", address.ip()),
            None => address.ip().to_string(),
        };
        format!("{host}:{}", address.port())
    }
}

/// Answers `POST /{version}/{phone_number_id}/media`.
pub fn upload(
    state: &AppState,
    request: &GraphRequest,
    phone_number_id: &str,
) -> Result<Reply, GraphError> {
    let content_type = request
        .headers
        .get(CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let boundary = multipart::form_data_boundary(&content_type).ok_or_else(|| {
        GraphError::invalid_parameter("Content-Type: must be multipart/form-data with a boundary")
    })?;
    if request.body_too_large {
        return Err(GraphError::invalid_parameter(format!(
            "body: larger than {MAX_UPLOAD_BODY_BYTES} bytes"
        )));
    }
    let parts = multipart::parse(&request.body, &boundary)
        .map_err(|reason| GraphError::invalid_parameter(format!("body: {reason}")))?;
    // A repeated field counts by its first occurrence, as form parsers commonly do.
    let field = |name: &str| parts.iter().find(|part| part.name == name);

    match field("messaging_product").map(multipart::Part::text) {
        Some(product) if product == "whatsapp" => {}
        Some(_) => {
            return Err(GraphError::invalid_parameter(
                "messaging_product: must be \"whatsapp\"",
            ))
        }
        None => return Err(GraphError::invalid_parameter("messaging_product: required")),
    }
    let file = field("file").ok_or_else(|| GraphError::invalid_parameter("file: required"))?;
    if file.body.is_empty() {
        return Err(GraphError::invalid_parameter("file: must not be empty"));
    }
    let declared = field("type")
        .map(multipart::Part::text)
        .filter(|text| !text.is_empty())
        .ok_or_else(|| GraphError::invalid_parameter("type: required (the file's MIME type)"))?;
    let essence = mime_essence(&declared);
    let (kind, max_bytes) = media_kind(&essence).ok_or_else(|| {
        GraphError::invalid_parameter(format!(
            "type: unsupported MIME type '{declared}'; supported: {}",
            supported_types()
        ))
    })?;
    if let Some(part_type) = &file.content_type {
        if mime_essence(part_type) != essence {
            return Err(GraphError {
                details: Some(format!(
                    "Param type '{declared}' does not match the Content-Type '{part_type}' of \
                     the file part"
                )),
                ..GraphError::with_code(131053)
            });
        }
    }
    if let Some(ttl) = field("ttl_minutes") {
        let valid = ttl
            .text()
            .parse::<u64>()
            .is_ok_and(|minutes| (60..=43_200).contains(&minutes));
        if !valid {
            return Err(GraphError::invalid_parameter(
                "ttl_minutes: must be an integer from 60 to 43200",
            ));
        }
    }
    let size = file.body.len() as u64;
    if size > max_bytes {
        return Err(GraphError::invalid_parameter(format!(
            "file: {size} bytes exceeds the {max_bytes}-byte limit for {kind} ({essence})"
        )));
    }
    let stored = state.media.store(NewMedia {
        // A slice of the request body: the file is not copied.
        bytes: file.body.clone(),
        mime_type: declared,
        filename: file.filename.clone(),
        owner: Some(phone_number_id.to_string()),
    });
    #[derive(Serialize)]
    struct UploadAnswer {
        id: String,
    }
    Ok(Reply::new(200, &UploadAnswer { id: stored.id }))
}

/// Graph's shape for `GET /{media_id}`, fields in Graph's order.
#[derive(Serialize)]
struct UrlAnswer {
    url: String,
    mime_type: String,
    sha256: String,
    file_size: u64,
    id: String,
    messaging_product: &'static str,
}

/// Answers `GET /{version}/{media_id}` and `GET /{media_id}`: a fresh download URL.
pub fn lookup(
    state: &AppState,
    request: &GraphRequest,
    media_id: &str,
) -> Result<Reply, GraphError> {
    let unknown = || GraphError::unsupported(&Method::GET, media_id);
    let wanted_owner = query_param(&request.query, "phone_number_id");
    let now_ms = unix_ms();
    let mut inner = state.media.lock();
    let Inner { entries, config } = &mut *inner;
    let entry = entries
        .get_mut(media_id)
        .filter(|entry| !entry.deleted)
        .ok_or_else(unknown)?;
    if let (Some(wanted), Some(owner)) = (&wanted_owner, &entry.owner) {
        if wanted != owner {
            return Err(unknown());
        }
    }
    let expired = config.expire_next_urls > 0;
    if expired {
        config.expire_next_urls -= 1;
    }
    let url = state
        .media
        .issue_url(config, entry, media_id, now_ms, expired, None);
    let sha256 = if config.corrupt_sha256 {
        // A well-formed but wrong digest, so clients must really verify.
        sha256_hex(entry.sha256_hex.as_bytes())
    } else {
        entry.sha256_hex.clone()
    };
    let answer = UrlAnswer {
        url,
        mime_type: entry.mime_type.clone(),
        sha256,
        file_size: entry.file_size,
        id: media_id.to_string(),
        messaging_product: "whatsapp",
    };
    drop(inner);
    Ok(Reply::new(200, &answer))
}

/// Answers `DELETE /{version}/{media_id}`.
pub fn delete(
    state: &AppState,
    request: &GraphRequest,
    media_id: &str,
) -> Result<Reply, GraphError> {
    let invalid = || GraphError {
        message: "(#100) Invalid post_id parameter".to_string(),
        ..GraphError::with_code(100)
    };
    let wanted_owner = query_param(&request.query, "phone_number_id");
    let mut inner = state.media.lock();
    let entry = inner
        .entries
        .get_mut(media_id)
        .filter(|entry| !entry.deleted)
        .ok_or_else(invalid)?;
    if let (Some(wanted), Some(owner)) = (&wanted_owner, &entry.owner) {
        if wanted != owner {
            return Err(invalid());
        }
    }
    entry.deleted = true;
    // Frees the file (unless a download is still streaming it); its URLs stop working.
    entry.bytes = Bytes::new();
    entry.urls.clear();
    drop(inner);
    #[derive(Serialize)]
    struct SuccessAnswer {
        success: bool,
    }
    Ok(Reply::new(200, &SuccessAnswer { success: true }))
}

/// The outcome of `GET /media/download/<media_id>?ext=..&hash=..`.
pub enum Download {
    /// A Graph error (the 401 for a missing or wrong token).
    Graph(Reply),
    /// A non-file answer: the 404 for a bad or expired URL, the HTML page of the User-Agent
    /// quirk.
    Page {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    File {
        bytes: Bytes,
        mime_type: String,
        filename: String,
    },
}

/// What Meta's lookaside host answers to clients without a User-Agent (cloud-api.md §4.3).
const NO_USER_AGENT_PAGE: &str =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Error</title></head><body><h1>Sorry, something went wrong.</h1>\
<p>We're working on getting this fixed as soon as we can.</p></body></html>\n";

/// Serves a download URL: token first (401, like Meta), then the URL's validity (404), then
/// the User-Agent quirk (an HTML page with status 200), then the bytes.
pub fn download(
    state: &AppState,
    config: &Config,
    request: &GraphRequest,
    media_id: &str,
) -> Download {
    if let Err(error) = check_token(config, request) {
        return Download::Graph(error.into_reply());
    }
    let not_found = |reason: &str| Download::Page {
        status: 404,
        content_type: "text/plain; charset=utf-8",
        body: format!("Not Found: {reason}\n"),
    };
    let ext = query_param(&request.query, "ext").and_then(|ext| ext.parse::<u64>().ok());
    let hash = query_param(&request.query, "hash");
    let now_ms = unix_ms();
    let mut inner = state.media.lock();
    let Some(entry) = inner
        .entries
        .get_mut(media_id)
        .filter(|entry| !entry.deleted)
    else {
        return not_found("unknown media");
    };
    let Some(issued) = entry
        .urls
        .iter()
        .find(|issued| Some(&issued.hash) == hash.as_ref() && Some(issued.ext) == ext)
    else {
        return not_found("URL signature mismatch");
    };
    if now_ms >= issued.expires_at_unix_ms {
        return not_found("URL signature expired");
    }
    let has_user_agent = request
        .headers
        .get(USER_AGENT)
        .is_some_and(|value| !value.as_bytes().trim_ascii().is_empty());
    if !has_user_agent {
        return Download::Page {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: NO_USER_AGENT_PAGE.to_string(),
        };
    }
    entry.downloads += 1;
    Download::File {
        bytes: entry.bytes.clone(),
        mime_type: entry.mime_type.clone(),
        filename: entry.filename.clone(),
    }
}

// ----- control endpoints -----

/// `POST /_emulator/media`: `{"mime_type", "size" | "base64", "filename"?, "phone_number_id"?}`.
pub fn control_create(state: &AppState, body: &Value) -> Result<Value, String> {
    let fields = body.as_object().ok_or("body: must be a JSON object")?;
    for key in fields.keys() {
        if !["mime_type", "size", "base64", "filename", "phone_number_id"].contains(&key.as_str()) {
            return Err(format!("{key}: unknown field"));
        }
    }
    let text = |key: &str| -> Result<Option<String>, String> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(format!("{key}: must be a string")),
        }
    };
    let mime_type = text("mime_type")?
        .filter(|mime| !mime.trim().is_empty())
        .ok_or("mime_type: required")?;
    let bytes = match (fields.get("size"), text("base64")?) {
        (Some(size), None) => {
            let size = size
                .as_u64()
                .ok_or("size: must be a non-negative integer")?;
            if size > MAX_GENERATED_BYTES {
                return Err(format!("size: at most {MAX_GENERATED_BYTES} bytes"));
            }
            let length = usize::try_from(size).map_err(|_| "size: too large for this machine")?;
            let mut buffer = vec![0u8; length];
            fastrand::fill(&mut buffer);
            Bytes::from(buffer)
        }
        (None, Some(encoded)) => Bytes::from(
            BASE64
                .decode(encoded.trim())
                .map_err(|error| format!("base64: invalid: {error}"))?,
        ),
        _ => return Err("exactly one of size / base64 is required".to_string()),
    };
    let stored = state.media.store(NewMedia {
        bytes,
        mime_type,
        filename: text("filename")?,
        owner: text("phone_number_id")?,
    });
    Ok(json!({"id": stored.id, "sha256": stored.sha256_hex, "file_size": stored.file_size}))
}

/// `GET /_emulator/media/<id>`.
pub fn control_describe(state: &AppState, media_id: &str) -> Option<Value> {
    let inner = state.media.lock();
    let entry = inner.entries.get(media_id)?;
    Some(json!({
        "id": media_id,
        "mime_type": entry.mime_type,
        "sha256": entry.sha256_hex,
        "file_size": entry.file_size,
        "filename": entry.filename,
        "phone_number_id": entry.owner,
        "downloads": entry.downloads,
        "deleted": entry.deleted,
    }))
}

/// `POST /_emulator/media/config`: replaces the given settings, answers the whole config.
pub fn control_configure(state: &AppState, body: &Value) -> Result<Value, String> {
    let fields = body.as_object().ok_or("body: must be a JSON object")?;
    // Merged under the lock: a concurrent lookup's use of expire_next_urls is not undone.
    let mut media = state.media.lock();
    let mut config = media.config.clone();
    for (key, value) in fields {
        match key.as_str() {
            "url_ttl_ms" => {
                config.url_ttl_ms = value
                    .as_u64()
                    .ok_or("url_ttl_ms: must be a non-negative integer")?;
            }
            "corrupt_sha256" => {
                config.corrupt_sha256 = value.as_bool().ok_or("corrupt_sha256: must be a bool")?;
            }
            "url_host" => {
                config.url_host = match value {
                    Value::Null => None,
                    Value::String(host) if is_plain_host(host) => Some(host.clone()),
                    _ => return Err("url_host: must be a host name or IP (or null)".to_string()),
                };
            }
            "expire_next_urls" => {
                config.expire_next_urls = value
                    .as_u64()
                    .ok_or("expire_next_urls: must be a non-negative integer")?;
            }
            other => return Err(format!("{other}: unknown media config field")),
        }
    }
    let answer = json!(config);
    media.config = config;
    Ok(answer)
}

/// A host that can go into a URL as is (no port, path or user info).
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b".-[]:".contains(&byte))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn kinds_and_limits() {
        assert_eq!(media_kind("image/png"), Some(("image", 5 * MIB)));
        assert_eq!(media_kind("image/webp"), Some(("sticker", 500 * KIB)));
        assert_eq!(media_kind("image/gif"), None);
        assert_eq!(mime_essence("Audio/OGG; codecs=opus"), "audio/ogg");
        assert_eq!(default_filename("image/jpeg"), "whatsapp.jpg");
    }
}
