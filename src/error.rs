//! How a send ends, and how Graph's answers map onto it.
//!
//! Graph says not to build logic on the HTTP status (cloud-api.md §3.1), so the mapping branches on
//! `error.code` first and uses the status only when the body carries no Graph error.

use std::time::Duration;

/// Why a message failed; mirrors the seed's `whatsapp_error_t` (success is the absence of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryError {
    MissingToken,
    MissingVersion,
    NotFound,
    BadRequest,
    AuthenticationFailed,
    OtherHttp,
    Closing,
}

/// The parts of Graph's error envelope the client acts on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphError {
    pub http_status: u16,
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    pub message: String,
    pub details: Option<String>,
    pub is_transient: bool,
}

/// Codes Meta documents as "retry later" (cloud-api.md §3.3).
const TRANSIENT_CODES: &[i64] = &[
    1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057, 133004, 2494100,
];
/// Graph's pair rate limit: too many messages to one user.
pub const PAIR_RATE_CODE: i64 = 131056;
/// Graph's throughput limit: too many messages from one phone number per second.
pub const THROUGHPUT_CODE: i64 = 130429;

impl GraphError {
    /// Parses `{"error":{...}}`; anything else becomes a bare status error.
    pub fn parse(http_status: u16, body: &[u8]) -> Self {
        let mut parsed = GraphError {
            http_status,
            message: format!("HTTP {http_status}"),
            ..Default::default()
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return parsed;
        };
        let Some(error) = value.get("error").filter(|e| e.is_object()) else {
            return parsed;
        };
        parsed.code = error.get("code").and_then(as_i64);
        parsed.subcode = error.get("error_subcode").and_then(as_i64);
        if let Some(message) = error.get("message").and_then(|m| m.as_str()) {
            parsed.message = message.to_string();
        }
        parsed.details = error
            .pointer("/error_data/details")
            .and_then(|d| d.as_str())
            .map(str::to_string);
        parsed.is_transient = error
            .get("is_transient")
            .and_then(|t| t.as_bool())
            .unwrap_or(false);
        parsed
    }

    /// True when the same request may succeed later unchanged.
    pub fn is_retryable(&self) -> bool {
        match self.code {
            Some(code) if TRANSIENT_CODES.contains(&code) => true,
            Some(_) if self.is_transient => true,
            // A Graph error code that is not transient is final whatever the status says.
            Some(_) => false,
            None => self.http_status >= 500 || self.http_status == 429 || self.http_status == 408,
        }
    }

    pub fn is_pair_rate_limit(&self) -> bool {
        self.code == Some(PAIR_RATE_CODE)
    }

    pub fn is_throughput_limit(&self) -> bool {
        self.code == Some(THROUGHPUT_CODE)
    }

    /// The final error when this answer ends a message (retryable ones only after the last retry).
    pub fn delivery_error(&self) -> DeliveryError {
        if let Some(code) = self.code {
            if code == 0 || code == 10 || code == 190 || (200..=299).contains(&code) {
                return DeliveryError::AuthenticationFailed;
            }
            if code == 33
                || (code == 100 && (self.subcode == Some(33) || self.names_unknown_object()))
            {
                return DeliveryError::NotFound;
            }
            if self.is_retryable() {
                return DeliveryError::OtherHttp;
            }
        }
        match self.http_status {
            401 | 403 => DeliveryError::AuthenticationFailed,
            404 => DeliveryError::NotFound,
            400..=499 if !self.is_retryable() => DeliveryError::BadRequest,
            _ => DeliveryError::OtherHttp,
        }
    }

    fn names_unknown_object(&self) -> bool {
        let text = |s: &str| s.contains("does not exist") || s.contains("Unknown path components");
        text(&self.message) || self.details.as_deref().is_some_and(text)
    }

    /// The text handed to the host: Graph's message, then its details when present.
    pub fn text(&self) -> String {
        match &self.details {
            Some(details) if !details.is_empty() => format!("{}: {}", self.message, details),
            _ => self.message.clone(),
        }
    }
}

fn as_i64(v: &serde_json::Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Reads a `Retry-After` header given in seconds (Graph never sends the date form).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &str) -> GraphError {
        GraphError::parse(status, body.as_bytes())
    }

    #[test]
    fn maps_on_code_before_status() {
        let e = err(
            400,
            r#"{"error":{"message":"bad token","code":190,"error_subcode":463}}"#,
        );
        assert_eq!(e.delivery_error(), DeliveryError::AuthenticationFailed);
        let e = err(
            400,
            r#"{"error":{"message":"x","code":100,"error_subcode":33}}"#,
        );
        assert_eq!(e.delivery_error(), DeliveryError::NotFound);
        let e = err(
            400,
            r#"{"error":{"message":"(#100) Invalid parameter","code":100}}"#,
        );
        assert_eq!(e.delivery_error(), DeliveryError::BadRequest);
        assert!(!e.is_retryable());
        let e = err(
            400,
            r#"{"error":{"message":"(#131056) pair","code":131056}}"#,
        );
        assert!(e.is_retryable() && e.is_pair_rate_limit() && !e.is_throughput_limit());
        assert_eq!(e.delivery_error(), DeliveryError::OtherHttp);
        let e = err(
            400,
            r#"{"error":{"message":"(#130429) Rate limit hit","code":130429,"error_subcode":2494055}}"#,
        );
        assert!(e.is_retryable() && e.is_throughput_limit() && !e.is_pair_rate_limit());
        assert_eq!(e.delivery_error(), DeliveryError::OtherHttp);
        let e = err(
            500,
            r#"{"error":{"message":"(#131047) window","code":131047}}"#,
        );
        assert!(!e.is_retryable());
        let e = err(403, "<html>");
        assert_eq!(e.delivery_error(), DeliveryError::AuthenticationFailed);
        let e = err(503, "");
        assert!(e.is_retryable());
        assert_eq!(e.delivery_error(), DeliveryError::OtherHttp);
        let e = err(404, "");
        assert_eq!(e.delivery_error(), DeliveryError::NotFound);
        for code in [0, 10, 200, 299] {
            let e = err(
                400,
                &format!(r#"{{"error":{{"message":"m","code":{code}}}}}"#),
            );
            assert_eq!(
                e.delivery_error(),
                DeliveryError::AuthenticationFailed,
                "{code}"
            );
        }
    }

    #[test]
    fn text_joins_message_and_details() {
        let e = err(
            400,
            r#"{"error":{"message":"(#100) Invalid parameter","code":100,"error_data":{"details":"text.body: required"}}}"#,
        );
        assert_eq!(e.text(), "(#100) Invalid parameter: text.body: required");
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
