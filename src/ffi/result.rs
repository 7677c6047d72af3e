//! Result codes of the C API and the seed's `whatsapp_error_t`.

use std::ffi::c_char;

use crate::error::DeliveryError;

/// Result of every fallible C API call. Numbers are stable and never reused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wa_result {
    WA_OK = 0,
    /// A required pointer argument was NULL.
    WA_ERR_NULL_ARGUMENT = 1,
    /// A string argument was not valid UTF-8.
    WA_ERR_INVALID_UTF8 = 2,
    /// The message JSON did not parse.
    WA_ERR_INVALID_JSON = 3,
    /// An argument or a field of the message is missing or malformed.
    WA_ERR_INVALID_ARGUMENT = 4,
    /// The message type is not a Cloud API type nor a known alias.
    WA_ERR_UNKNOWN_TYPE = 5,
    /// The message (or a field of it) is over a size limit.
    WA_ERR_TOO_LARGE = 6,
    /// The client is closed (or closing).
    WA_ERR_CLOSED = 7,
    /// The outbox is full (see `wa_options_set_outbox_capacity`).
    WA_ERR_QUEUE_FULL = 8,
    /// An internal error was caught at the boundary; the call had no effect.
    WA_ERR_PANIC = 9,
    /// The call is not allowed in this state (e.g. dispatch from inside a callback, or the
    /// event fd in thread mode).
    WA_ERR_INVALID_STATE = 10,
    /// The operating system refused a resource (thread, eventfd, ...).
    WA_ERR_SYSTEM = 11,
    /// The output buffer was too small: the text was truncated, or nothing was written (see the
    /// function).
    WA_ERR_BUFFER_TOO_SMALL = 12,
    /// The durable outbox could not be opened or written (missing directory, read-only,
    /// corrupt, locked by another client, newer schema).
    WA_ERR_STORAGE = 13,
}

impl wa_result {
    fn text(self) -> &'static str {
        match self {
            wa_result::WA_OK => "ok\0",
            wa_result::WA_ERR_NULL_ARGUMENT => "a required argument is NULL\0",
            wa_result::WA_ERR_INVALID_UTF8 => "a string argument is not valid UTF-8\0",
            wa_result::WA_ERR_INVALID_JSON => "the message is not valid JSON\0",
            wa_result::WA_ERR_INVALID_ARGUMENT => {
                "an argument or message field is missing or malformed\0"
            }
            wa_result::WA_ERR_UNKNOWN_TYPE => "unknown message type\0",
            wa_result::WA_ERR_TOO_LARGE => "over a size limit\0",
            wa_result::WA_ERR_CLOSED => "the client is closed\0",
            wa_result::WA_ERR_QUEUE_FULL => "the outbox is full\0",
            wa_result::WA_ERR_PANIC => "internal error\0",
            wa_result::WA_ERR_INVALID_STATE => "not allowed in the current state\0",
            wa_result::WA_ERR_SYSTEM => "the operating system refused a resource\0",
            wa_result::WA_ERR_BUFFER_TOO_SMALL => "the buffer is too small\0",
            wa_result::WA_ERR_STORAGE => "the durable outbox could not be opened or written\0",
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        use wa_result::*;
        [
            WA_OK,
            WA_ERR_NULL_ARGUMENT,
            WA_ERR_INVALID_UTF8,
            WA_ERR_INVALID_JSON,
            WA_ERR_INVALID_ARGUMENT,
            WA_ERR_UNKNOWN_TYPE,
            WA_ERR_TOO_LARGE,
            WA_ERR_CLOSED,
            WA_ERR_QUEUE_FULL,
            WA_ERR_PANIC,
            WA_ERR_INVALID_STATE,
            WA_ERR_SYSTEM,
            WA_ERR_BUFFER_TOO_SMALL,
            WA_ERR_STORAGE,
        ]
        .into_iter()
        .find(|r| *r as u32 == code)
    }
}

/// A static, human-readable text for a `wa_result` value (never NULL, never freed).
#[no_mangle]
pub extern "C" fn wa_result_text(result: u32) -> *const c_char {
    let text = wa_result::from_code(result).map_or("unknown result code\0", wa_result::text);
    text.as_ptr().cast()
}

/// The seed's error code of a send result. Values 0..7 are fixed by the seed interface.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum whatsapp_error_t {
    WHATSAPP_ERR_OK = 0,
    /// No token was set (SetConfig) within the token hold time.
    WHATSAPP_ERR_MISSING_TOKEN = 1,
    /// No Graph API version is configured.
    WHATSAPP_ERR_MISSING_VERSION = 2,
    /// Graph does not know the object (HTTP 404, or code 100 with an unknown object / code 33).
    WHATSAPP_ERR_NOT_FOUND = 3,
    /// Graph refused the request (other 4xx request errors).
    WHATSAPP_ERR_BAD_REQUEST = 4,
    /// HTTP 401/403 or Graph codes 0, 10, 190, 200-299: the token is invalid or lacks permission.
    WHATSAPP_ERR_AUTHENTICATION_FAILED = 5,
    /// Anything else, including network failure after the last retry.
    WHATSAPP_ERR_OTHER_HTTP = 6,
    /// The client was closed before the message reached a final result.
    WHATSAPP_ERR_CLOSING = 7,
}

impl From<Option<DeliveryError>> for whatsapp_error_t {
    fn from(error: Option<DeliveryError>) -> Self {
        match error {
            None => whatsapp_error_t::WHATSAPP_ERR_OK,
            Some(DeliveryError::MissingToken) => whatsapp_error_t::WHATSAPP_ERR_MISSING_TOKEN,
            Some(DeliveryError::MissingVersion) => whatsapp_error_t::WHATSAPP_ERR_MISSING_VERSION,
            Some(DeliveryError::NotFound) => whatsapp_error_t::WHATSAPP_ERR_NOT_FOUND,
            Some(DeliveryError::BadRequest) => whatsapp_error_t::WHATSAPP_ERR_BAD_REQUEST,
            Some(DeliveryError::AuthenticationFailed) => {
                whatsapp_error_t::WHATSAPP_ERR_AUTHENTICATION_FAILED
            }
            Some(DeliveryError::OtherHttp) => whatsapp_error_t::WHATSAPP_ERR_OTHER_HTTP,
            Some(DeliveryError::Closing) => whatsapp_error_t::WHATSAPP_ERR_CLOSING,
        }
    }
}

/// A static name for a `whatsapp_error_t` value, e.g. "WHATSAPP_ERR_NOT_FOUND".
#[no_mangle]
pub extern "C" fn wa_whatsapp_error_name(error: u32) -> *const c_char {
    let name = match error {
        0 => "WHATSAPP_ERR_OK\0",
        1 => "WHATSAPP_ERR_MISSING_TOKEN\0",
        2 => "WHATSAPP_ERR_MISSING_VERSION\0",
        3 => "WHATSAPP_ERR_NOT_FOUND\0",
        4 => "WHATSAPP_ERR_BAD_REQUEST\0",
        5 => "WHATSAPP_ERR_AUTHENTICATION_FAILED\0",
        6 => "WHATSAPP_ERR_OTHER_HTTP\0",
        7 => "WHATSAPP_ERR_CLOSING\0",
        _ => "unknown whatsapp_error_t\0",
    };
    name.as_ptr().cast()
}
