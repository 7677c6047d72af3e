//! Media operations of `wa_client`: the seed's RequestMedia, download to a file, upload.
//! Each accepted request gets exactly one `send_result` callback, like a message.

use std::ffi::{c_char, c_void};
use std::path::PathBuf;

use super::client::{rejection, shared_of, wa_client};
use super::{borrow_opt_str, borrow_str, fail, guard, wa_result};
use crate::media::{validate_upload, UploadSource};
use crate::message::validate_channel;
use crate::outbox::MediaWork;

fn check_media_id(media_id: &str) -> Result<(), wa_result> {
    let valid = !media_id.is_empty()
        && media_id.len() <= 128
        && media_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(fail(
            wa_result::WA_ERR_INVALID_ARGUMENT,
            format!("{media_id:?} is not a media id"),
        ))
    }
}

/// The seed's `RequestMedia`: fetches media `media_id` from WhatsApp (`GET /{media-id}`, then
/// the download URL with the token) and POSTs the bytes to `destination_url` with
/// `Content-Type` = `mime_type` (or Graph's type when NULL or "") and `Content-Length`. Streamed
/// end to end; the SHA-256 Graph announces is verified on the way (a mismatch fails the request
/// and aborts the upload). The token is only sent to the Graph host and allowed media hosts.
///
/// Result: one `send_result` with `callback_info` = the media id and `content` = the
/// destination's HTTP status (e.g. "200"), or on failure the error text with the error of the
/// failing stage (unknown media: NOT_FOUND; token: AUTHENTICATION_FAILED; the destination's
/// non-2xx answer, a hash mismatch, a transfer failure: OTHER_HTTP).
#[no_mangle]
pub extern "C" fn wa_client_request_media(
    client: *mut wa_client,
    destination_url: *const c_char,
    media_id: *const c_char,
    mime_type: *const c_char,
    request_ctx: *mut c_void,
) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        // SAFETY (three strings): NUL-terminated strings valid for the call (header contract).
        let destination = unsafe { borrow_str(destination_url, "destination_url") }?;
        // SAFETY: as above.
        let media_id = unsafe { borrow_str(media_id, "media_id") }?;
        // SAFETY: as above; NULL = Graph's type.
        let mime_type = unsafe { borrow_opt_str(mime_type, "mime_type") }?;
        check_media_id(media_id)?;
        let parsed = reqwest::Url::parse(destination).ok();
        if !parsed.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        {
            return Err(fail(
                wa_result::WA_ERR_INVALID_ARGUMENT,
                "destination_url must be an http(s) URL",
            ));
        }
        let work = MediaWork::Forward {
            media_id: media_id.to_string(),
            destination: destination.to_string(),
            mime_type: mime_type.filter(|m| !m.is_empty()).map(str::to_string),
        };
        shared
            .core
            .media(work, media_id.to_string(), request_ctx as usize)
            .map_err(rejection)
    })
}

/// Downloads media `media_id` into the file `path`: written to a new temporary file
/// `.<file name>.<pid>.<n>.part` in the same directory, renamed over `path` when complete and
/// verified, removed on failure. For hosts that serve inbound media from their own web server.
/// Result: one `send_result` with `callback_info` = the media id and `content` = the media's
/// MIME type, or the error text.
#[no_mangle]
pub extern "C" fn wa_client_download_media(
    client: *mut wa_client,
    media_id: *const c_char,
    path: *const c_char,
    request_ctx: *mut c_void,
) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        // SAFETY: NUL-terminated strings valid for the call (header contract).
        let media_id = unsafe { borrow_str(media_id, "media_id") }?;
        // SAFETY: as above.
        let path = unsafe { borrow_str(path, "path") }?;
        check_media_id(media_id)?;
        if path.is_empty() {
            return Err(fail(wa_result::WA_ERR_INVALID_ARGUMENT, "path is empty"));
        }
        let work = MediaWork::Download {
            media_id: media_id.to_string(),
            path: PathBuf::from(path),
        };
        shared
            .core
            .media(work, media_id.to_string(), request_ctx as usize)
            .map_err(rejection)
    })
}

fn check_upload(channel: &str, mime_type: &str, size: u64) -> Result<(), wa_result> {
    validate_channel(channel)
        .map_err(|e| fail(wa_result::WA_ERR_INVALID_ARGUMENT, e.to_string()))?;
    validate_upload(mime_type, size).map_err(|e| {
        let code = if size > 0 && crate::media::upload_limit(mime_type).is_some() {
            wa_result::WA_ERR_TOO_LARGE
        } else {
            wa_result::WA_ERR_INVALID_ARGUMENT
        };
        fail(code, e)
    })
}

/// Uploads the file at `path` as media of `mime_type` for phone number `channel`
/// (`POST /{channel}/media`, multipart), to be sent with `wa_client_send_message` type "image"
/// etc. and `{"id":"<media id>"}`. The type and size are checked against WhatsApp's limits
/// first (`WA_ERR_INVALID_ARGUMENT` for a type WhatsApp does not take, `WA_ERR_TOO_LARGE` over
/// its limit; nothing is sent then). Result: one `send_result` with `callback_info` = `path` and
/// `content` = the new media id, or the error text.
#[no_mangle]
pub extern "C" fn wa_client_upload_media_file(
    client: *mut wa_client,
    channel: *const c_char,
    path: *const c_char,
    mime_type: *const c_char,
    request_ctx: *mut c_void,
) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        // SAFETY (three strings): NUL-terminated strings valid for the call (header contract).
        let channel = unsafe { borrow_str(channel, "channel") }?;
        // SAFETY: as above.
        let path = unsafe { borrow_str(path, "path") }?;
        // SAFETY: as above.
        let mime_type = unsafe { borrow_str(mime_type, "mime_type") }?;
        let metadata = std::fs::metadata(path).map_err(|e| {
            fail(
                wa_result::WA_ERR_INVALID_ARGUMENT,
                format!("cannot read {path:?}: {e}"),
            )
        })?;
        if !metadata.is_file() {
            return Err(fail(
                wa_result::WA_ERR_INVALID_ARGUMENT,
                format!("{path:?} is not a file"),
            ));
        }
        check_upload(channel, mime_type, metadata.len())?;
        let work = MediaWork::Upload {
            channel: channel.to_string(),
            source: UploadSource::File(PathBuf::from(path)),
            mime_type: mime_type.to_string(),
        };
        shared
            .core
            .media(work, path.to_string(), request_ctx as usize)
            .map_err(rejection)
    })
}

/// Like `wa_client_upload_media_file` for `len` bytes at `data` (copied before returning),
/// sent with file name `filename`. `callback_info` of the result is `filename`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn wa_client_upload_media_buffer(
    client: *mut wa_client,
    channel: *const c_char,
    data: *const u8,
    len: usize,
    mime_type: *const c_char,
    filename: *const c_char,
    request_ctx: *mut c_void,
) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        // SAFETY (three strings): NUL-terminated strings valid for the call (header contract).
        let channel = unsafe { borrow_str(channel, "channel") }?;
        // SAFETY: as above.
        let mime_type = unsafe { borrow_str(mime_type, "mime_type") }?;
        // SAFETY: as above.
        let filename = unsafe { borrow_str(filename, "filename") }?;
        // As everywhere in this API, NULL is fine for zero bytes (and refused below as empty).
        if data.is_null() && len > 0 {
            return Err(fail(wa_result::WA_ERR_NULL_ARGUMENT, "data is NULL"));
        }
        check_upload(channel, mime_type, len as u64)?;
        // SAFETY: the caller gives `len` readable bytes at `data` for the call; copied here.
        let bytes = bytes::Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(data, len) });
        let work = MediaWork::Upload {
            channel: channel.to_string(),
            source: UploadSource::Buffer {
                data: bytes,
                filename: filename.to_string(),
            },
            mime_type: mime_type.to_string(),
        };
        shared
            .core
            .media(work, filename.to_string(), request_ctx as usize)
            .map_err(rejection)
    })
}
