//! Maps webhook payloads onto the seed's callbacks (`RecvMessage`, `RecvMedia`) plus a raw
//! per-change event.
//!
//! | inbound | RecvMessage type | msg | refersToID | also |
//! |---|---|---|---|---|
//! | text | `text` | the body | `context.id` (reply) | |
//! | image, audio, video, document, sticker | the kind | caption or "" | `context.id` | RecvMedia(sender, channel, wamid, media id, mime type) first |
//! | reaction | `reaction` | the emoji ("" = removed) | the reacted-to message id | |
//! | location | `location` | JSON of the location object | `context.id` | |
//! | contacts | `contact` | JSON of the contacts array | `context.id` | |
//! | interactive button_reply / list_reply | `interactive` | the reply's title | `context.id` | |
//! | interactive nfm_reply (Flow) | `interactive` | the Flow's `response_json` | `context.id` | |
//! | interactive of another type | `interactive` | JSON of the interactive object | `context.id` | |
//! | button (template quick reply) | `button` | the button text | `context.id` | |
//! | anything else (order, system, edit, revoke, unsupported, future types; interactive without its object) | as given | JSON of the whole message | `context.id`, or the original message id for edit/revoke | |
//! | status | `status` | sent, delivered, read, played; `failed (#code) title: details` | `biz_opaque_callback_data` | id = the status's message id, tel = recipient (a group participant's receipt: the participant) |
//!
//! `tel` is the sender's `from`, or the business-scoped user id when the payload carries no phone
//! number; `channel` is `metadata.phone_number_id`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::events::{InboundMedia, InboundMessage};

const MEDIA_KINDS: &[&str] = &["image", "audio", "video", "document", "sticker"];

/// What one change of a webhook delivers.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedChange<'a> {
    /// Borrowed from the body unless it had escapes.
    pub field: Cow<'a, str>,
    /// The change's `value` exactly as received; empty unless `map_payload` was asked to keep it.
    pub value_json: String,
    pub channel: Option<Cow<'a, str>>,
    pub items: Vec<MappedItem>,
    /// The entry's `id` (the account) and `time` as received, one per line; empty unless
    /// `map_payload` was asked to keep the raw values. A change without messages or statuses
    /// is told apart from a redelivery by these: its value alone (a template status, an
    /// account update) may repeat with a new meaning.
    pub entry_key: String,
}

/// One message or status of a change, with the key that identifies it for dedupe.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedItem {
    pub dedupe_key: String,
    pub media: Option<InboundMedia>,
    pub message: InboundMessage,
}

/// Why a body is not a WhatsApp webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAWebhook(pub String);

/// `m:<wamid>` or `s:<wamid>:<status>`, built without the formatting machinery (every webhook).
/// Empty when the message has no id: nothing identifies a repeat of it, and a shared key would
/// hide every later id-less message as a duplicate of the first.
fn dedupe_key(id: &str, parts: &[&str]) -> String {
    if id.is_empty() {
        return String::new();
    }
    let mut key = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        key.push_str(part);
    }
    key
}

fn str_at<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Parses a webhook body (already signature-checked) into its changes, in order. `keep_raw`:
/// also copy each change's `value` text into `value_json` (only the raw-change callback needs it).
pub fn map_payload(body: &[u8], keep_raw: bool) -> Result<Vec<MappedChange<'_>>, NotAWebhook> {
    // JSON is UTF-8 (RFC 8259): checked once here, so that the parsers below need not check
    // each string again (serde_json's byte-slice reader does, its str reader does not).
    let body = std::str::from_utf8(body)
        .map_err(|e| NotAWebhook(format!("body is not a webhook envelope: not UTF-8 ({e})")))?;
    if !keep_raw {
        if let Some(changes) = fast::map_body(body) {
            return Ok(changes);
        }
    }
    map_payload_general(body, keep_raw)
}

/// `map_payload` for any body: typed down to each change's `value`, which is kept as the exact
/// text received and mapped on its own.
fn map_payload_general(body: &str, keep_raw: bool) -> Result<Vec<MappedChange<'_>>, NotAWebhook> {
    // Typed down to each change's `value`, which is kept as the exact text received (for the
    // raw-change callback) and parsed only where it is mapped.
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        object: Option<Cow<'a, str>>,
        #[serde(borrow)]
        entry: Option<Vec<Object<Entry<'a>>>>,
    }
    /// `changes` (at most once), and `id` and `time` kept raw for the raw-change dedupe key.
    /// Read by hand: a derived struct refuses a repeated `id`, which the fast path (and this
    /// path before the key needed it) skips as an unused member; the last one wins.
    struct Entry<'a> {
        changes: Vec<Object<Change<'a>>>,
        id: Option<&'a RawValue>,
        time: Option<&'a RawValue>,
    }
    impl<'de: 'a, 'a> Deserialize<'de> for Entry<'a> {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Members<'a>(std::marker::PhantomData<&'a ()>);
            impl<'de: 'a, 'a> serde::de::Visitor<'de> for Members<'a> {
                type Value = Entry<'a>;
                fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    formatter.write_str("an entry object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Entry<'a>, A::Error> {
                    let (mut changes, mut id, mut time) = (None, None, None);
                    while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                        match key.as_ref() {
                            "changes" if changes.is_some() => {
                                return Err(serde::de::Error::duplicate_field("changes"))
                            }
                            "changes" => changes = Some(map.next_value()?),
                            "id" => id = Some(map.next_value()?),
                            "time" => time = Some(map.next_value()?),
                            _ => {
                                map.next_value::<serde::de::IgnoredAny>()?;
                            }
                        }
                    }
                    Ok(Entry {
                        changes: changes.unwrap_or_default(),
                        id,
                        time,
                    })
                }
            }
            deserializer.deserialize_map(Members(std::marker::PhantomData))
        }
    }
    #[derive(Deserialize)]
    struct Change<'a> {
        #[serde(borrow, default)]
        field: Cow<'a, str>,
        #[serde(borrow)]
        value: Option<&'a RawValue>,
    }
    let Object(payload): Object<Envelope<'_>> = serde_json::from_str(body)
        .map_err(|e| NotAWebhook(format!("body is not a webhook envelope: {e}")))?;
    match payload.object.as_deref() {
        Some("whatsapp_business_account") => {}
        other => {
            return Err(NotAWebhook(format!(
                "object is {other:?}, not whatsapp_business_account"
            )))
        }
    }
    let entries = payload
        .entry
        .ok_or_else(|| NotAWebhook("no entry array".into()))?;
    let mut changes = Vec::new();
    for Object(entry) in entries {
        let entry_key = if keep_raw {
            format!(
                "{}\n{}",
                entry.id.map_or("", RawValue::get),
                entry.time.map_or("", RawValue::get)
            )
        } else {
            String::new()
        };
        for Object(change) in entry.changes {
            let raw = change.value.map_or("null", RawValue::get);
            let mut change = map_change(change.field, raw, keep_raw);
            change.entry_key.clone_from(&entry_key);
            changes.push(change);
        }
    }
    Ok(changes)
}

/// A JSON object, and only that: a derived struct would also take an array of its fields in
/// order (`["whatsapp_business_account",[]]`), which is no webhook.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Fields(std::marker::PhantomData))
            .map(Object)
    }
}

fn map_change<'a>(field: Cow<'a, str>, raw_value: &'a str, keep_raw: bool) -> MappedChange<'a> {
    let mut items = Vec::new();
    let mut channel = None;
    if field == "messages" {
        match fast::map_value(raw_value) {
            Some((fast_channel, fast_items)) => {
                channel = fast_channel;
                items = fast_items;
            }
            None => (channel, items) = map_value(raw_value),
        }
    } else if keep_raw {
        // Other fields reach the raw-change callback only: the allow-list needs their number.
        channel = phone_number_id(raw_value);
    }
    MappedChange {
        field,
        value_json: if keep_raw {
            raw_value.to_string()
        } else {
            String::new()
        },
        channel,
        items,
        entry_key: String::new(),
    }
}

/// `metadata.phone_number_id` of any change's value, when it has one (account-level changes,
/// such as template status updates, have none).
fn phone_number_id(raw_value: &str) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct AnyValue<'a> {
        #[serde(borrow)]
        metadata: Option<Metadata<'a>>,
    }
    #[derive(Deserialize)]
    struct Metadata<'a> {
        #[serde(borrow)]
        phone_number_id: Option<Cow<'a, str>>,
    }
    serde_json::from_str::<AnyValue<'_>>(raw_value)
        .ok()?
        .metadata?
        .phone_number_id
}

/// The general mapping of a `messages` change's value, through `serde_json::Value`: it takes
/// any shape. `fast::map_value` handles the common shapes without building a `Value`.
fn map_value(raw_value: &str) -> (Option<Cow<'_, str>>, Vec<MappedItem>) {
    let mut items = Vec::new();
    let channel;
    {
        let value = parse_value(raw_value);
        channel = value
            .pointer("/metadata/phone_number_id")
            .and_then(Value::as_str)
            .map(|c| Cow::Owned(c.to_string()));
        let channel = channel.as_deref().unwrap_or("");
        let contacts = value.get("contacts").and_then(Value::as_array);
        if let Some(messages) = value.get("messages").and_then(Value::as_array) {
            items.extend(messages.iter().map(|m| map_message(m, channel, contacts)));
        }
        if let Some(statuses) = value.get("statuses").and_then(Value::as_array) {
            items.extend(statuses.iter().map(|s| map_status(s, channel)));
        }
        // Value-level errors concern the phone number, app or account (a rate limit, an
        // unsupported payload), not one message: no callback of the seed's fits them, so they
        // are logged here and reach the raw-change callback whole.
        for error in value
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            tracing::warn!(
                "webhook reports an error for phone number {channel}: {}",
                error_text(error)
            );
        }
    }
    (channel, items)
}

/// A change's `value` as a `Value`. The envelope's parse only checked its grammar, and
/// `serde_json::Value` refuses three things the grammar allows: a lone surrogate escape (a
/// client that cut an emoji in half), a number beyond f64, nesting deeper than 128. The first
/// two are repaired (U+FFFD, `null`) so that the change is still delivered; what cannot be read
/// is logged, since the POST is answered 200 and Meta will not send it again.
fn parse_value(raw_value: &str) -> Value {
    let error = match serde_json::from_str(raw_value) {
        Ok(value) => return value,
        Err(error) => error,
    };
    match repaired(raw_value).and_then(|text| serde_json::from_str(&text).ok()) {
        Some(value) => {
            tracing::warn!("webhook change read after repair ({error}): lone surrogates became U+FFFD, out-of-range numbers null");
            value
        }
        None => {
            tracing::warn!(
                "webhook change could not be read ({error}); no callback but the raw-change one"
            );
            Value::Null
        }
    }
}

/// `raw` (grammatical JSON) with each lone surrogate escape replaced by `\ufffd` and each number
/// beyond f64 by `null`; `None` when there is neither.
fn repaired(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let (mut copied, mut at, mut changed) = (0, 0, false);
    let mut replace = |out: &mut String, copied: &mut usize, from: usize, to: usize, with: &str| {
        out.push_str(&raw[*copied..from]);
        out.push_str(with);
        *copied = to;
        changed = true;
    };
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' {
                    if bytes[at] != b'\\' {
                        at += 1;
                        continue;
                    }
                    if bytes.get(at + 1) != Some(&b'u') {
                        at += 2;
                        continue;
                    }
                    let unit = scan::hex4(bytes, at + 2).unwrap_or(0);
                    let low = (bytes.get(at + 6..at + 8) == Some(b"\\u"))
                        .then(|| scan::hex4(bytes, at + 8))
                        .flatten()
                        .unwrap_or(0);
                    if (0xD800..0xDC00).contains(&unit) && (0xDC00..0xE000).contains(&low) {
                        at += 12;
                    } else if (0xD800..0xE000).contains(&unit) {
                        replace(&mut out, &mut copied, at, at + 6, "\\ufffd");
                        at += 6;
                    } else {
                        at += 6;
                    }
                }
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let end = bytes[at..]
                    .iter()
                    .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .map_or(bytes.len(), |n| at + n);
                if raw[at..end].parse::<f64>().is_ok_and(f64::is_infinite) {
                    replace(&mut out, &mut copied, at, end, "null");
                }
                at = end;
            }
            _ => at += 1,
        }
    }
    changed.then(|| {
        out.push_str(&raw[copied..]);
        out
    })
}

/// The sender: the phone number, else the business-scoped user id (2026 payloads may omit the
/// phone), looked up in `contacts` when the message itself has neither.
fn sender_of(message: &Value, contacts: Option<&Vec<Value>>) -> String {
    if let Some(from) = str_at(message, "from").filter(|s| !s.is_empty()) {
        return from.to_string();
    }
    if let Some(user) = str_at(message, "from_user_id").filter(|s| !s.is_empty()) {
        return user.to_string();
    }
    contacts
        .and_then(|c| c.first())
        .and_then(|c| str_at(c, "wa_id").or_else(|| str_at(c, "user_id")))
        .unwrap_or("")
        .to_string()
}

fn map_message(m: &Value, channel: &str, contacts: Option<&Vec<Value>>) -> MappedItem {
    let id = str_at(m, "id").unwrap_or("").to_string();
    let tel = sender_of(m, contacts);
    let kind = str_at(m, "type").unwrap_or("unknown").to_string();
    let content = m.get(kind.as_str()).unwrap_or(&Value::Null);
    let reply_to = m
        .pointer("/context/id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut media = None;
    let (msg, out_kind, refers_to) = match kind.as_str() {
        "text" => (
            str_at(content, "body").unwrap_or("").to_string(),
            kind.clone(),
            reply_to,
        ),
        k if MEDIA_KINDS.contains(&k) => {
            media = Some(InboundMedia::new(
                &tel,
                channel,
                &id,
                str_at(content, "id").unwrap_or(""),
                str_at(content, "mime_type").unwrap_or(""),
            ));
            (
                str_at(content, "caption").unwrap_or("").to_string(),
                kind.clone(),
                reply_to,
            )
        }
        // A removed reaction omits the emoji or sends it empty (cloud-api.md §5.6).
        "reaction" => (
            str_at(content, "emoji").unwrap_or("").to_string(),
            kind.clone(),
            str_at(content, "message_id").map(str::to_string),
        ),
        "location" => (compact(content), kind.clone(), reply_to),
        "contacts" => (compact(content), "contact".to_string(), reply_to),
        // Without its object (an interactive message Meta could not read, with `errors`), the
        // whole message is what there is to deliver, as for unknown types.
        "interactive" if content.is_object() => (interactive_text(content), kind.clone(), reply_to),
        "button" => {
            let text = str_at(content, "text").or_else(|| str_at(content, "payload"));
            (text.unwrap_or("").to_string(), kind.clone(), reply_to)
        }
        "edit" | "revoke" => {
            let original = str_at(content, "original_message_id").map(str::to_string);
            (compact(m), kind.clone(), original.or(reply_to))
        }
        _ => (compact(m), kind.clone(), reply_to),
    };
    MappedItem {
        dedupe_key: dedupe_key(&id, &["m:", &id]),
        media,
        message: InboundMessage::new(&msg, &tel, channel, &out_kind, &id, refers_to.as_deref()),
    }
}

/// button_reply/list_reply: the title the user tapped; nfm_reply: the Flow's response JSON;
/// anything else: the interactive object as JSON.
fn interactive_text(content: &Value) -> String {
    let kind = str_at(content, "type").unwrap_or("");
    let reply = content.get(kind).unwrap_or(&Value::Null);
    match kind {
        "button_reply" | "list_reply" => str_at(reply, "title").unwrap_or("").to_string(),
        "nfm_reply" => str_at(reply, "response_json")
            .map(str::to_string)
            .unwrap_or_else(|| compact(reply)),
        _ => compact(content),
    }
}

fn map_status(s: &Value, channel: &str) -> MappedItem {
    let id = str_at(s, "id").unwrap_or("").to_string();
    let status = str_at(s, "status").unwrap_or("unknown").to_string();
    // A message sent to a group gets a receipt from each participant: the participant is the
    // recipient that tells them apart (the group is known by the message id).
    let participant = str_at(s, "recipient_participant_id")
        .filter(|p| !p.is_empty())
        .or_else(|| str_at(s, "recipient_participant_user_id").filter(|p| !p.is_empty()));
    let tel = participant
        .or_else(|| str_at(s, "recipient_id"))
        .or_else(|| str_at(s, "recipient_user_id"))
        .unwrap_or("")
        .to_string();
    let msg = if status == "failed" {
        match s
            .get("errors")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            Some(error) => format!("failed {}", error_text(error)),
            None => status.clone(),
        }
    } else {
        status.clone()
    };
    MappedItem {
        dedupe_key: match participant {
            Some(participant) => dedupe_key(&id, &["s:", &id, ":", &status, ":", participant]),
            None => dedupe_key(&id, &["s:", &id, ":", &status]),
        },
        media: None,
        message: InboundMessage::new(
            &msg,
            &tel,
            channel,
            "status",
            &id,
            str_at(s, "biz_opaque_callback_data"),
        ),
    }
}

/// `(#131047) Re-engagement message: <details>` from a webhook error object (§3.2).
fn error_text(error: &Value) -> String {
    let code = error.get("code").map(|c| c.to_string()).unwrap_or_default();
    let title = str_at(error, "title")
        .or_else(|| str_at(error, "message"))
        .unwrap_or("");
    let mut text = format!("(#{code}) {title}");
    if let Some(details) = error.pointer("/error_data/details").and_then(Value::as_str) {
        text.push_str(": ");
        text.push_str(details);
    }
    text
}

/// Appends the text of the JSON string literal `raw` (quotes included, as serde_json validated
/// it) to `out`, decoded as serde_json decodes it; `None` for a lone surrogate, which
/// serde_json refuses too. Writing into the caller's buffer spares serde_json's scratch buffer,
/// which grows by doubling for every escaped string (Meta escapes every `/` and non-ASCII
/// character).
fn unescape_into(raw: &str, out: &mut String) -> Option<()> {
    let mut rest = raw.strip_prefix('"')?.strip_suffix('"')?;
    while let Some(at) = memchr::memchr(b'\\', rest.as_bytes()) {
        out.push_str(&rest[..at]);
        let escape = *rest.as_bytes().get(at + 1)?;
        rest = &rest[at + 2..];
        let decoded = match escape {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let (unit, after) = hex4(rest)?;
                rest = after;
                if (0xD800..0xDC00).contains(&unit) {
                    let (low, after) = hex4(rest.strip_prefix("\\u")?)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    rest = after;
                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?
                } else {
                    // A lone low surrogate is no char: refused.
                    char::from_u32(unit)?
                }
            }
            _ => return None,
        };
        out.push(decoded);
    }
    out.push_str(rest);
    Some(())
}

/// Four hex digits at the start of `text`, and what follows them.
fn hex4(text: &str) -> Option<(u32, &str)> {
    // Four ASCII digits: `text[4..]` starts at a character.
    scan::hex4(text.as_bytes(), 0).map(|unit| (unit, &text[4..]))
}

mod fast;
mod scan;

/// The fast path's contract, checkable on any input: wherever it takes a body or a change it
/// maps exactly as the general path through `serde_json::Value` does, and nothing panics.
/// Used by the unit tests and by the coverage-guided fuzz target in `fuzz/`.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod contract {
    use super::*;

    /// Whether `fast::map_body` took the body (and agreed).
    pub fn check_body(body: &[u8]) -> bool {
        let _ = map_payload(body, true);
        let Ok(body) = std::str::from_utf8(body) else {
            return false;
        };
        let Some(fast) = fast::map_body(body) else {
            return false;
        };
        // Expected through `serde_json::Value` alone: the general path itself tries the fast
        // mapping per change first, so only its envelope is used here.
        let expected: Vec<_> = map_payload_general(body, true)
            .expect("a body the fast path takes is an envelope")
            .into_iter()
            .map(|c| {
                let (channel, items) = match c.field.as_ref() {
                    "messages" => map_value(&c.value_json),
                    _ => (None, Vec::new()),
                };
                (c.field.into_owned(), channel.map(Cow::into_owned), items)
            })
            .collect();
        let got: Vec<_> = fast
            .into_iter()
            .map(|c| {
                (
                    c.field.into_owned(),
                    c.channel.map(Cow::into_owned),
                    c.items,
                )
            })
            .collect();
        assert_eq!(got, expected, "{body}");
        true
    }

    /// Whether `fast::map_value` took the change value (and agreed).
    pub fn check_value(raw_value: &str) -> bool {
        let Some(fast) = fast::map_value(raw_value) else {
            return false;
        };
        assert_eq!(fast, map_value(raw_value), "{raw_value}");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(value: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":value}]}]})).unwrap()
    }

    fn one(message: Value) -> MappedItem {
        let value = json!({"messaging_product":"whatsapp","metadata":{"phone_number_id":"PN"},
            "contacts":[{"profile":{"name":"A"},"wa_id":"111"}],"messages":[message]});
        map_payload(&envelope(value), true)
            .unwrap()
            .remove(0)
            .items
            .remove(0)
    }

    #[test]
    fn maps_each_kind() {
        let t = one(
            json!({"from":"111","id":"wamid.T","type":"text","text":{"body":"caf\u{e9}"},"context":{"id":"wamid.Q"}}),
        );
        assert_eq!(
            t.message,
            InboundMessage::new("café", "111", "PN", "text", "wamid.T", Some("wamid.Q"))
        );
        assert_eq!(t.dedupe_key, "m:wamid.T");
        let i = one(
            json!({"from":"111","id":"wamid.I","type":"image","image":{"id":"M1","mime_type":"image/jpeg","caption":"c"}}),
        );
        assert_eq!(
            i.media.unwrap(),
            InboundMedia::new("111", "PN", "wamid.I", "M1", "image/jpeg")
        );
        assert_eq!((i.message.kind(), i.message.msg()), ("image", "c"));
        let r = one(
            json!({"from":"111","id":"wamid.R","type":"reaction","reaction":{"message_id":"wamid.X"}}),
        );
        assert_eq!(
            (r.message.msg(), r.message.refers_to()),
            ("", Some("wamid.X"))
        );
        let c = one(
            json!({"from":"111","id":"wamid.C","type":"contacts","contacts":[{"name":{"formatted_name":"Z"}}]}),
        );
        assert_eq!(c.message.kind(), "contact");
        assert_eq!(c.message.msg(), r#"[{"name":{"formatted_name":"Z"}}]"#);
        let b = one(
            json!({"from":"111","id":"wamid.B","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"y","title":"Yes"}}}),
        );
        assert_eq!(b.message.msg(), "Yes");
        let u =
            one(json!({"from_user_id":"US.1","id":"wamid.U","type":"pool_party","pool_party":{}}));
        assert_eq!((u.message.kind(), u.message.tel()), ("pool_party", "US.1"));
        assert!(u.message.msg().contains("pool_party"));
    }

    #[test]
    fn maps_statuses() {
        let value = json!({"metadata":{"phone_number_id":"PN"},"statuses":[
            {"id":"wamid.S","status":"delivered","recipient_id":"222","biz_opaque_callback_data":"order-42"},
            {"id":"wamid.S","status":"failed","recipient_id":"222","errors":[{"code":131047,"title":"Re-engagement message","error_data":{"details":"24h"}}]}]});
        let body = envelope(value);
        let change = map_payload(&body, true).unwrap().remove(0);
        let [a, b] = [&change.items[0], &change.items[1]];
        assert_eq!(
            (
                a.message.msg(),
                a.message.refers_to(),
                a.dedupe_key.as_str()
            ),
            ("delivered", Some("order-42"), "s:wamid.S:delivered")
        );
        assert_eq!(
            b.message.msg(),
            "failed (#131047) Re-engagement message: 24h"
        );
    }

    /// A deterministic pseudo-random index below `n` (a linear congruential step of `seed`).
    fn pick(seed: &mut u64, n: usize) -> usize {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 33) as usize) % n
    }

    /// JSON text escaped as Meta sends it: `\/`, and `\uXXXX` (lowercase) for non-ASCII.
    fn meta_escaped(json: &str) -> String {
        let mut out = String::new();
        for c in json.chars() {
            match c {
                '/' => out.push_str("\\/"),
                c if c.is_ascii() => out.push(c),
                c => {
                    for unit in c.encode_utf16(&mut [0; 2]) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn decodes_strings_as_serde_json_does() {
        let texts = [
            "",
            "plain",
            "caf\u{e9} \u{1F600} \u{0} \"q\" \\ / \n\r\t\u{8}\u{c} \u{1f}",
        ];
        for text in texts {
            for raw in [
                serde_json::to_string(text).unwrap(),
                meta_escaped(&serde_json::to_string(text).unwrap()),
            ] {
                let mut out = String::from("prefix ");
                assert_eq!(unescape_into(&raw, &mut out), Some(()), "{raw}");
                assert_eq!(out, format!("prefix {text}"), "{raw}");
            }
        }
        assert_eq!(
            unescape_into(r#""\u00E9\u00e9""#, &mut String::new()),
            Some(())
        );
        // What serde_json refuses is refused (and the general path decides).
        for bad in [
            r#""\ud83d""#,
            r#""\ud83d x""#,
            r#""\ude00""#,
            r#""\ud83d\u0041""#,
            r#""\x""#,
            r#""\u12""#,
            r#""\u+123""#,
        ] {
            assert_eq!(unescape_into(bad, &mut String::new()), None, "{bad}");
            assert!(serde_json::from_str::<String>(bad).is_err(), "{bad}");
        }
    }

    /// The typed fast path must agree with the general mapping wherever it takes a change.
    #[test]
    fn fast_mapping_agrees_with_the_general_one() {
        let strings = [
            json!(null),
            json!(""),
            json!("x"),
            json!("caf\u{e9} \"q\" https://a/b"),
            json!("emoji \u{1F600} nul \u{0} \n\t\\ \u{7f} \u{2028} end"),
            json!(7),
            json!({"k": 1}),
        ];
        let kinds = [
            "text",
            "image",
            "audio",
            "video",
            "document",
            "sticker",
            "reaction",
            "location",
            "interactive",
            "edit",
            "unsupported",
        ];
        let statuses = ["sent", "delivered", "read", "failed", "played"];
        let (mut fast_hits, mut body_hits, mut total) = (0, 0, 0);
        let mut seed = 42u64;
        for _ in 0..4000 {
            let field =
                |seed: &mut u64, obj: &mut serde_json::Map<String, Value>, name: &str| match pick(
                    seed,
                    strings.len() + 1,
                ) {
                    0 => {}
                    i => {
                        obj.insert(name.into(), strings[i - 1].clone());
                    }
                };
            let mut content = serde_json::Map::new();
            for name in ["body", "id", "mime_type", "caption", "emoji", "message_id"] {
                field(&mut seed, &mut content, name);
            }
            let kind = kinds[pick(&mut seed, kinds.len())];
            let mut message = serde_json::Map::new();
            for name in ["from", "from_user_id", "id"] {
                field(&mut seed, &mut message, name);
            }
            message.insert("type".into(), json!(kind));
            message.insert(kind.into(), Value::Object(content));
            if pick(&mut seed, 3) == 0 {
                message.insert("context".into(), json!({"id": "wamid.CTX"}));
            }
            let mut status = serde_json::Map::new();
            for name in [
                "id",
                "recipient_id",
                "recipient_user_id",
                "biz_opaque_callback_data",
            ] {
                field(&mut seed, &mut status, name);
            }
            status.insert(
                "status".into(),
                json!(statuses[pick(&mut seed, statuses.len())]),
            );
            if pick(&mut seed, 2) == 0 {
                status.insert("errors".into(), json!([{"code": 131047, "title": "T"}]));
            }
            let contacts = match pick(&mut seed, 5) {
                0 => None,
                1 => Some(json!([])),
                2 => Some(json!([{"wa_id": "111", "profile": {"name": "A"}}])),
                3 => Some(json!([{"user_id": "US.9"}])),
                _ => Some(json!([{"wa_id": null, "user_id": "US.8"}])),
            };
            let mut value = serde_json::Map::new();
            value.insert("messaging_product".into(), json!("whatsapp"));
            match pick(&mut seed, 4) {
                0 => {}
                1 => {
                    value.insert("metadata".into(), json!({"phone_number_id": 5}));
                }
                _ => {
                    value.insert("metadata".into(), json!({"phone_number_id": "PN"}));
                }
            }
            if let Some(contacts) = contacts {
                value.insert("contacts".into(), contacts);
            }
            match pick(&mut seed, 3) {
                0 => {
                    value.insert("messages".into(), json!([message, message]));
                }
                1 => {
                    value.insert("statuses".into(), json!([status]));
                }
                _ => {
                    value.insert("messages".into(), json!([message]));
                    value.insert("statuses".into(), json!([status]));
                }
            }
            let mut raw = serde_json::to_string(&Value::Object(value)).unwrap();
            match pick(&mut seed, 3) {
                // Meta escapes slashes and every non-ASCII character; borrowed and decoded
                // strings must map alike.
                0 => raw = meta_escaped(&raw),
                1 => raw = raw.replace('/', "\\/"),
                _ => {}
            }
            total += 1;
            if contract::check_value(&raw) {
                fast_hits += 1;
            }
            // Whole bodies: several entries and changes, fields other than messages.
            let other = [
                "account_update",
                "messages",
                "message_template_status_update",
            ][pick(&mut seed, 3)];
            let body = format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"value":{raw},"field":"messages"}},{{"field":"{other}","value":{{"event":"X","phone_number":"1"}}}}]}},{{"id":"2","time":1,"changes":[{{"field":"{other}","value":{raw}}}]}}]}}"#
            );
            if contract::check_body(body.as_bytes()) {
                body_hits += 1;
            }
        }
        assert!(body_hits > total / 20, "{body_hits} of {total}");
        assert!(
            fast_hits > total / 20 && fast_hits < total,
            "both paths exercised: {fast_hits} of {total}"
        );
    }

    /// The fast path keeps one content object per message: the one its type names.
    #[test]
    fn fast_path_takes_the_content_its_type_names() {
        let value = |message: &str| {
            format!(r#"{{"metadata":{{"phone_number_id":"PN"}},"messages":[{message}]}}"#)
        };
        let agrees = [
            // Another kind's object only: not this message's content (an empty text).
            r#"{"from":"1","id":"w1","type":"text","image":{"id":"M"}}"#,
            r#"{"from":"1","id":"w2","type":"image","image":null}"#,
            r#"{"from":"1","id":"w3","type":"reaction","reaction":{"emoji":"x","message_id":"w0"},"context":null}"#,
            r#"{"from":"1","id":"w4","type":"text","text":{"body":"hi"},"context":{"id":"w0"},"extra":[1,{"a":2}]}"#,
        ];
        for message in agrees {
            let raw = value(message);
            let fast = fast::map_value(&raw).expect(message);
            assert_eq!(fast, map_value(&raw), "{message}");
        }
        // Two content objects or a repeated field: left to the general path.
        for message in [
            r#"{"from":"1","id":"w5","type":"text","text":{"body":"a"},"image":{"id":"M"}}"#,
            r#"{"from":"1","id":"w6","id":"w7","type":"text","text":{"body":"a"}}"#,
        ] {
            assert!(fast::map_value(&value(message)).is_none(), "{message}");
        }
        assert_eq!(
            map_value(&value(agrees[3])).1[0].message.msg(),
            "hi",
            "the general path as reference"
        );
    }

    /// Mutated Meta-escaped bodies (stray backslashes, quotes, cut escapes): never a panic, and
    /// wherever the fast path takes a body it agrees with the general one.
    #[test]
    fn mutated_bodies_map_alike_or_decline() {
        let value = json!({"metadata":{"phone_number_id":"PN/1"},
            "contacts":[{"wa_id":"111","profile":{"name":"Zo\u{eb}"}}],
            "messages":[{"from":"111","id":"wamid.\u{1F600}/x","type":"text",
                "text":{"body":"caf\u{e9} \u{1F44D} \"q\" https://a/b\n"},"context":{"id":"wamid.Q"}},
                {"from":"111","id":"wamid.I","type":"image","image":{"id":"M1","mime_type":"image/jpeg","caption":"\u{e9}"}}],
            "statuses":[{"id":"wamid.S","status":"read","recipient_id":"222","biz_opaque_callback_data":"ctx/\u{e9}"}]});
        let seed = meta_escaped(&String::from_utf8(envelope(value)).unwrap()).into_bytes();
        let mut state = 7u64;
        let mut next = |n: usize| pick(&mut state, n);
        let mut fast_hits = 0;
        for _ in 0..5000 {
            let mut body = seed.clone();
            for _ in 0..1 + next(3) {
                let i = next(body.len());
                match next(4) {
                    0 => body.insert(i, b'\\'),
                    1 => body.insert(i, b'"'),
                    2 => {
                        body.remove(i);
                    }
                    _ => body[i] = b"u0dD8\\/\"x"[next(9)],
                }
            }
            if contract::check_body(&body) {
                fast_hits += 1;
            }
        }
        assert!(fast_hits > 100, "fast path exercised: {fast_hits}");
    }

    /// What serde_json takes but reads otherwise than the scanner would is left to the general
    /// path, whose answer stands.
    #[test]
    fn fast_path_leaves_edge_cases_to_the_general_one() {
        let message = |extra: &str| {
            format!(
                r#"{{"metadata":{{"phone_number_id":"PN"}},"messages":[{{"from":"1","id":"w1","type":"text","text":{{"body":"hi"}}{extra}}}]}}"#
            )
        };
        // A number beyond f64 (the general path's `Value` refuses it and maps nothing), a lone
        // surrogate (refused where serde_json decodes), an escaped key (needs decoding).
        for extra in [
            r#","timestamp":1e400"#,
            r#","timestamp":2E3"#,
            r#","note":"\ud800""#,
            r#","t\u0069mestamp":"1""#,
        ] {
            let raw = message(extra);
            assert!(fast::map_value(&raw).is_none(), "{raw}");
            let body = format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"changes":[{{"field":"messages","value":{raw}}}]}}]}}"#
            );
            assert!(fast::map_body(&body).is_none(), "{body}");
        }
        assert!(fast::map_value(&message("")).is_some());
        // Value-level errors are logged by the general path; the message beside them is
        // delivered all the same.
        let with_errors = message("").replace(
            r#""messages":"#,
            r#""errors":[{"code":131000,"title":"Something went wrong"}],"messages":"#,
        );
        assert!(fast::map_value(&with_errors).is_none());
        let (channel, items) = map_value(&with_errors);
        assert_eq!((channel.as_deref(), items.len()), (Some("PN"), 1));
        assert_eq!(items[0].message.msg(), "hi");
        // A null field is no change: refused (400) by the general path's typed envelope.
        let null_field = br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":null,"value":null}]}]}"#;
        assert!(fast::map_body(std::str::from_utf8(null_field).unwrap()).is_none());
        assert!(map_payload(null_field, false).is_err());
    }

    /// What `serde_json::Value` refuses in a change whose grammar the envelope accepted is
    /// repaired, and the message still delivered (the POST is answered 200: never dropped).
    #[test]
    fn repairs_what_serde_json_values_refuse() {
        let change = |body: &str, extra: &str| {
            format!(
                r#"{{"metadata":{{"phone_number_id":"PN"}},"messages":[{{"from":"1","id":"w1","type":"text","text":{{"body":"{body}"}}{extra}}}]}}"#
            )
        };
        for (body, extra, expected) in [
            (r"a\ud83d", "", "a\u{FFFD}"),
            (r"\ude00b", "", "\u{FFFD}b"),
            (r"\ud83d\u0041", "", "\u{FFFD}A"),
            (r"\ud83d\ud83d\ude00", "", "\u{FFFD}\u{1F600}"),
            (r"\\ud83d", r#","timestamp":1e400"#, r"\ud83d"),
            (r"x", r#","n":[-1e999,1e308,"1e999"]"#, "x"),
        ] {
            let raw = change(body, extra);
            let (channel, items) = map_value(&raw);
            assert_eq!(channel.as_deref(), Some("PN"), "{raw}");
            assert_eq!(items.len(), 1, "{raw}");
            assert_eq!(items[0].message.msg(), expected, "{raw}");
            let body = format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"changes":[{{"value":{raw},"field":"messages"}}]}}]}}"#
            );
            for keep_raw in [false, true] {
                let changes = map_payload(body.as_bytes(), keep_raw).unwrap();
                assert_eq!(changes[0].items, items, "{body}");
            }
        }
        assert_eq!(
            repaired(r#"{"a":[1e400,-2E+999,0.5e-999,"\ud800",{"\udfff":12}]}"#).as_deref(),
            Some(r#"{"a":[null,null,0.5e-999,"\ufffd",{"\ufffd":12}]}"#)
        );
        assert_eq!(repaired(r#"{"a":"\\ud800\"\ud83d\ude00","b":1e30}"#), None);
        // Any text at all, grammatical or not: no panic, and what comes back is the input with
        // only whole escapes or numbers replaced.
        let alphabet = [
            "\\", "u", "d", "8", "3", "D", "c", "0", "\"", "-", "1e999", "é", "😀", "e", ".",
        ];
        let mut seed = 7_u64;
        for _ in 0..20_000 {
            let text: String = (0..12)
                .map(|_| alphabet[pick(&mut seed, alphabet.len())])
                .collect();
            if let Some(fixed) = repaired(&text) {
                assert!(
                    fixed.contains("\\ufffd") || fixed.contains("null"),
                    "{text:?} → {fixed:?}"
                );
            }
        }
        // Deeper than serde_json's limit: nothing to map, and no panic.
        let deep = format!(
            r#"{{"metadata":{{"phone_number_id":"PN"}},"messages":[],"x":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(map_value(&deep), (None, vec![]));
    }

    #[test]
    fn rejects_what_is_not_a_webhook() {
        assert!(map_payload(b"nope", true).is_err());
        assert!(map_payload(br#"{"object":"page","entry":[]}"#, true).is_err());
        assert!(map_payload(br#"{"object":"whatsapp_business_account"}"#, true).is_err());
        // Not UTF-8, even where no field is read (here a contact's name): not JSON.
        let mut latin1 = envelope(json!({"messaging_product": "whatsapp",
            "contacts": [{"profile": {"name": "Ren~e"}, "wa_id": "1"}],
            "messages": [{"from": "1", "id": "wamid.L", "type": "text", "text": {"body": "x"}}]}));
        assert!(map_payload(&latin1, false).is_ok());
        let tilde = latin1.iter().position(|b| *b == b'~').unwrap();
        latin1[tilde] = 0xE9;
        for keep_raw in [false, true] {
            let error = map_payload(&latin1, keep_raw).unwrap_err();
            assert!(error.0.contains("not UTF-8"), "{}", error.0);
        }
        assert_eq!(
            map_payload(
                br#"{"object":"whatsapp_business_account","entry":[]}"#,
                true
            )
            .unwrap(),
            vec![]
        );
        // Arrays in place of the envelope, an entry or a change: the fields in order, which a
        // derived struct would take.
        let text =
            r#"{"messages":[{"from":"1","id":"wamid.A","type":"text","text":{"body":"x"}}]}"#;
        let well_formed = format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"changes":[{{"field":"messages","value":{text}}}]}}]}}"#
        );
        for keep_raw in [false, true] {
            assert_eq!(
                map_payload(well_formed.as_bytes(), keep_raw).unwrap()[0]
                    .items
                    .len(),
                1
            );
        }
        for body in [
            format!(
                r#"["whatsapp_business_account",[{{"changes":[{{"field":"messages","value":{text}}}]}}]]"#
            ),
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[[[{{"field":"messages","value":{text}}}]]]}}"#
            ),
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"changes":[["messages",{text}]]}}]}}"#
            ),
        ] {
            for keep_raw in [false, true] {
                let error = map_payload(body.as_bytes(), keep_raw).unwrap_err();
                assert!(
                    error.0.contains("expected a JSON object"),
                    "{body}: {}",
                    error.0
                );
            }
        }
    }

    /// An entry's `id` and `time` feed the raw-change key, read by hand: a repeated one is
    /// taken (the last wins) with or without the raw values, as the fast path takes it; a
    /// repeated `changes` is refused both ways. Found by the webhook_body fuzz target.
    #[test]
    fn entry_members_read_alike_with_and_without_raw_values() {
        let text =
            r#"{"messages":[{"from":"1","id":"wamid.A","type":"text","text":{"body":"x"}}]}"#;
        let repeated = format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","time":1,"id":"2","time":2,"changes":[{{"field":"messages","value":{text}}}]}}]}}"#
        );
        for keep_raw in [false, true] {
            let changes = map_payload(repeated.as_bytes(), keep_raw).unwrap();
            assert_eq!(changes[0].items.len(), 1, "keep_raw {keep_raw}");
        }
        let raw = map_payload(repeated.as_bytes(), true).unwrap();
        assert_eq!(raw[0].entry_key, "\"2\"\n2");
        let twice = format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"changes":[],"changes":[{{"field":"messages","value":{text}}}]}}]}}"#
        );
        for keep_raw in [false, true] {
            assert!(
                map_payload(twice.as_bytes(), keep_raw).is_err(),
                "keep_raw {keep_raw}"
            );
        }
    }
}
