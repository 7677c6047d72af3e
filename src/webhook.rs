//! The webhook endpoint's logic, shared by the built-in listener and the host-fed entry point:
//! Meta's verification GET, the signature check over the exact bytes, dedupe, the phone-number
//! allow-list, and queueing the mapped callbacks (never awaited before answering).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::dedupe::Dedupe;
use crate::events::{Event, EventSink};
use crate::inbound::map_payload;
use crate::secrets::Credentials;
use crate::store::Durable;

pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
pub const DEFAULT_PATH: &str = "/webhook";
pub const DEFAULT_DEDUPE_CAPACITY: usize = 100_000;
/// Callbacks waiting for the host beyond which webhooks are refused with 503: a host that
/// stopped dispatching must not make the queue grow without bound (Meta redelivers later).
pub const DEFAULT_MAX_BACKLOG: usize = 50_000;
/// A refused delivery is logged at most this often: Meta's retries would repeat the line.
const BACKLOG_WARNING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// The HTTP answer for one webhook request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    /// Mostly fixed texts ("OK" for every accepted POST), so not allocated per request.
    pub body: std::borrow::Cow<'static, str>,
}

impl Reply {
    pub(crate) fn text(status: u16, body: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

pub struct WebhookSettings {
    pub max_body: usize,
    pub dedupe_capacity: usize,
    /// Callbacks waiting for the host beyond which POSTs are answered 503; 0 = no limit.
    pub max_backlog: usize,
    /// Phone number ids whose changes are delivered; empty = all.
    pub allowed_channels: HashSet<String>,
    /// Whether the host wants every change as raw JSON (it registered that callback).
    pub raw_changes: bool,
}

pub struct WebhookHandler {
    credentials: Arc<Credentials>,
    sink: Arc<dyn EventSink>,
    dedupe: Dedupe,
    /// Changes without message or status ids (account updates, template updates...) are
    /// recognised by their entry's account and time and their content.
    raw_dedupe: Dedupe,
    max_body: usize,
    allowed_channels: HashSet<String>,
    raw_changes: bool,
    /// The durable store keeps the dedupe window across restarts.
    durable: Option<Arc<Durable>>,
    /// Set when the client closes: no callback may follow its close-complete, so deliveries
    /// are refused (Meta retries them, to the next client).
    closed: AtomicBool,
    max_backlog: usize,
    /// When a full backlog was last logged.
    backlog_warned: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Decodes `sha256=<hex>`; `None` when malformed.
fn signature_bytes(header: &str) -> Option<[u8; 32]> {
    decode_hex_sha256(header.trim().strip_prefix("sha256=")?)
}

/// 64 hex digits (either case) as 32 bytes; `None` for anything else.
pub(crate) fn decode_hex_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    Some(bytes)
}

/// One hex digit (either case); `None` for anything else, a sign included.
fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            // Two hex digits exactly: `from_str_radix` would also take a sign ("%+1").
            b'%' if i + 2 < bytes.len() => match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
            {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded value of `name` in a query string.
/// Longest answer text besides a verification challenge's echo: the parser's detail of a
/// refused body may quote the body itself. Keeps host-fed answers within a known buffer.
pub const MAX_REPLY_TEXT: usize = 200;

fn bounded(mut text: String) -> String {
    if text.len() > MAX_REPLY_TEXT {
        let mut end = MAX_REPLY_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_component(k) == name).then(|| decode_component(v))
    })
}

impl WebhookHandler {
    pub fn new(
        settings: WebhookSettings,
        credentials: Arc<Credentials>,
        sink: Arc<dyn EventSink>,
        durable: Option<Arc<Durable>>,
    ) -> Self {
        let dedupe = Dedupe::new(settings.dedupe_capacity);
        // No window (capacity 0), nothing to keep across restarts.
        let durable = durable.filter(|_| settings.dedupe_capacity > 0);
        if let Some(durable) = &durable {
            dedupe.preload(durable.seen_keys(settings.dedupe_capacity));
        }
        Self {
            credentials,
            sink,
            dedupe,
            raw_dedupe: Dedupe::new(settings.dedupe_capacity.min(10_000)),
            max_body: settings.max_body,
            allowed_channels: settings.allowed_channels,
            raw_changes: settings.raw_changes,
            durable,
            closed: AtomicBool::new(false),
            max_backlog: settings.max_backlog,
            backlog_warned: std::sync::Mutex::new(None),
        }
    }

    fn warn_backlog_full(&self) {
        let mut warned = self
            .backlog_warned
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if warned.is_none_or(|at| at.elapsed() >= BACKLOG_WARNING_INTERVAL) {
            *warned = Some(std::time::Instant::now());
            tracing::warn!(
                "webhooks refused (503, Meta delivers them again later): {} callbacks are waiting \
                 for the host to dispatch them (logged at most once a minute)",
                self.max_backlog
            );
        }
    }

    /// From now on POSTs are answered 503 without callbacks (the client is closing).
    pub fn refuse_deliveries(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Handles one request. `query` is the part after `?` (may be empty).
    pub fn handle(&self, method: &str, query: &str, signature: Option<&str>, body: &[u8]) -> Reply {
        match method {
            "GET" => self.verify(query),
            "POST" => self.receive(signature, body),
            _ => Reply::text(405, "method not allowed"),
        }
    }

    /// Meta's subscription check: echo the challenge when the verify token matches.
    fn verify(&self, query: &str) -> Reply {
        let expected = self.credentials.webhook_token();
        let mode = query_param(query, "hub.mode");
        let token = query_param(query, "hub.verify_token").unwrap_or_default();
        let challenge = query_param(query, "hub.challenge");
        let token_ok = !expected.is_empty()
            && bool::from(token.as_bytes().ct_eq(expected.expose().as_bytes()));
        match (mode.as_deref(), challenge) {
            (Some("subscribe"), Some(challenge)) if token_ok => Reply::text(200, challenge),
            _ => {
                tracing::warn!("webhook verification refused (wrong or missing verify token)");
                Reply::text(403, "verification failed")
            }
        }
    }

    fn receive(&self, signature: Option<&str>, body: &[u8]) -> Reply {
        if self.closed.load(Ordering::Acquire) {
            return Reply::text(503, "client closed");
        }
        if body.len() > self.max_body {
            return Reply::text(413, "payload too large");
        }
        let Some(mac) = self.credentials.webhook_mac() else {
            // Fail closed: without the app secret nothing can be authenticated. Meta retries
            // non-200 deliveries, so nothing is lost once the secret is configured.
            tracing::warn!("webhook refused: no app secret configured (SetConfig)");
            return Reply::text(503, "no app secret configured");
        };
        let Some(signature) = signature else {
            return Reply::text(401, "missing X-Hub-Signature-256");
        };
        let valid = signature_bytes(signature).is_some_and(|expected| mac.verify(body, &expected));
        if !valid {
            tracing::warn!("webhook refused: signature does not match");
            return Reply::text(403, "invalid signature");
        }
        if self.max_backlog > 0 && self.sink.backlog() >= self.max_backlog {
            // Before dedupe: the redelivery must not be taken for a repeat.
            self.warn_backlog_full();
            return Reply::text(503, "the host is not keeping up");
        }
        let changes = match map_payload(body, self.raw_changes) {
            Ok(changes) => changes,
            Err(e) => return Reply::text(400, bounded(e.0)),
        };
        // Queued together: one wake-up of the host's thread per delivery.
        let mut events = Vec::new();
        let mut remembered = Vec::new();
        for change in changes {
            if !self.allowed_channels.is_empty() {
                match &change.channel {
                    Some(channel) if !self.allowed_channels.contains(channel.as_ref()) => {
                        tracing::info!(channel = %channel, "webhook change for a phone number not in the allow-list dropped");
                        continue;
                    }
                    // Messages and statuses always name their number: without it, nothing
                    // says the change is for an allowed one.
                    None if change.field == "messages" => {
                        tracing::info!("webhook messages change without a phone number id dropped (allow-list set)");
                        continue;
                    }
                    // Listed, or a change of the whole account (no phone number).
                    _ => {}
                }
            }
            let had_items = !change.items.is_empty();
            if !had_items && !self.raw_changes && change.field != "messages" {
                // Documented as raw-change only; a line lets a host see what it is missing.
                tracing::debug!(
                    "webhook change of field {} not delivered: only the raw-change callback \
                     receives it",
                    change.field
                );
            }
            let first_event = events.len();
            let mut any_fresh = false;
            for item in change.items {
                // An empty key (no message id) identifies nothing: always delivered.
                let keyed = !item.dedupe_key.is_empty();
                if keyed && !self.dedupe.first_time(&item.dedupe_key) {
                    continue;
                }
                any_fresh = true;
                if keyed && self.durable.is_some() {
                    remembered.push(item.dedupe_key);
                }
                if let Some(media) = item.media {
                    events.push(Event::RecvMedia(media));
                }
                events.push(Event::RecvMessage(item.message));
            }
            if self.raw_changes {
                let new_change = if had_items {
                    any_fresh
                } else {
                    // A redelivery repeats the entry's account and time; the same value at
                    // another time is a new event. The window keeps fingerprints of its keys:
                    // the text itself is the key.
                    let key = format!(
                        "{}\n{}\n{}",
                        change.entry_key, change.field, change.value_json
                    );
                    self.raw_dedupe.first_time(&key)
                };
                if new_change {
                    // Ahead of the change's messages, as the host expects.
                    events.insert(
                        first_event,
                        Event::RawChange {
                            field: change.field.into_owned(),
                            value_json: change.value_json,
                        },
                    );
                }
            }
        }
        if !events.is_empty() && !self.sink.push_batch(events) {
            // The client closed while this body was being read: its close-complete is queued
            // and nothing may follow it. Not answered 200, so Meta delivers it again (the ids
            // are not stored as seen).
            return Reply::text(503, "client closed");
        }
        // Stored before answering 200: a redelivery after a restart is still recognised.
        if let Some(durable) = &self.durable {
            durable.remember(&remembered, self.dedupe.capacity());
        }
        Reply::text(200, "OK")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink whose consumer has finished (close-complete queued) takes nothing.
    struct Finished;
    impl EventSink for Finished {
        fn push(&self, _: Event) {}
        fn push_batch(&self, _: Vec<Event>) -> bool {
            false
        }
    }

    /// A POST that loses the race with close (the queue finished while it was being read) is
    /// not answered 200: Meta would not deliver the lost messages again.
    #[test]
    fn a_delivery_the_closed_queue_refuses_is_not_acknowledged() {
        use hmac::Mac;
        let credentials = Arc::new(Credentials::default());
        credentials.set_config("token", Some("secret"));
        let settings = WebhookSettings {
            max_body: 1 << 20,
            dedupe_capacity: 100,
            max_backlog: 0,
            allowed_channels: HashSet::new(),
            raw_changes: false,
        };
        let handler = WebhookHandler::new(settings, credentials, Arc::new(Finished), None);
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"106540352242922"},"messages":[{"from":"16505551234","id":"wamid.RACE","type":"text","text":{"body":"hi"}}]}}]}]}"#;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(body);
        let signature: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let reply = handler.handle("POST", "", Some(&format!("sha256={signature}")), body);
        assert_eq!((reply.status, reply.body.as_ref()), (503, "client closed"));
    }

    #[test]
    fn query_values_are_percent_and_plus_decoded() {
        let query = "hub.mode=subscribe&hub.challenge=a+b%20c%2F%e2%9c%93&hub.verify_token=t";
        assert_eq!(
            query_param(query, "hub.challenge").unwrap(),
            "a b c/\u{2713}"
        );
        assert_eq!(query_param(query, "hub.verify_token").unwrap(), "t");
        assert_eq!(query_param(query, "hub.missing"), None);
        assert_eq!(query_param("flag", "flag").unwrap(), "");
        // Not two hex digits: kept as they are (a sign is not a digit).
        for (raw, decoded) in [
            ("%+1", "% 1"),
            ("%-1", "%-1"),
            ("%4", "%4"),
            ("%", "%"),
            ("%zz", "%zz"),
            ("%4G", "%4G"),
            ("100%25", "100%"),
        ] {
            assert_eq!(
                query_param(&format!("v={raw}"), "v").unwrap(),
                decoded,
                "{raw}"
            );
        }
        // Invalid UTF-8 after decoding: replaced, never a panic.
        assert_eq!(query_param("v=%ff", "v").unwrap(), "\u{fffd}");
    }

    #[test]
    fn signatures_are_64_hex_digits_after_the_prefix() {
        let hex = "0f".repeat(32);
        assert_eq!(signature_bytes(&format!("sha256={hex}")), Some([0x0f; 32]));
        assert_eq!(
            signature_bytes(&format!("sha256={}", hex.to_uppercase())),
            Some([0x0f; 32])
        );
        for bad in [
            hex.clone(),
            format!("sha1={hex}"),
            format!("sha256={}", &hex[1..]),
            format!("sha256={hex}0"),
            format!("sha256=+f{}", &hex[2..]),
            format!("sha256={}é", &hex[..62]),
        ] {
            assert_eq!(signature_bytes(&bad), None, "{bad}");
        }
    }
}
