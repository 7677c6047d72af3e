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
//! | button (template quick reply) | `button` | the button text | `context.id` | |
//! | anything else (order, system, edit, revoke, unsupported, future types) | as given | JSON of the whole message | `context.id`, or the original message id for edit/revoke | |
//! | status | `status` | sent, delivered, read, played; `failed (#code) title: details` | `biz_opaque_callback_data` | id = the status's message id, tel = recipient |
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
pub struct MappedChange {
    pub field: String,
    pub value_json: String,
    pub channel: Option<String>,
    pub items: Vec<MappedItem>,
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

fn str_at<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Parses a webhook body (already signature-checked) into its changes, in order.
pub fn map_payload(body: &[u8]) -> Result<Vec<MappedChange>, NotAWebhook> {
    // Typed down to each change's `value`, which is kept as the exact text received (for the
    // raw-change callback) and parsed only where it is mapped.
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        object: Option<Cow<'a, str>>,
        #[serde(borrow)]
        entry: Option<Vec<Entry<'a>>>,
    }
    #[derive(Deserialize)]
    struct Entry<'a> {
        #[serde(borrow, default)]
        changes: Vec<Change<'a>>,
    }
    #[derive(Deserialize)]
    struct Change<'a> {
        #[serde(borrow, default)]
        field: Cow<'a, str>,
        #[serde(borrow)]
        value: Option<&'a RawValue>,
    }
    let payload: Envelope<'_> = serde_json::from_slice(body)
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
    for entry in entries {
        for change in entry.changes {
            let raw = change.value.map_or("null", RawValue::get);
            changes.push(map_change(change.field.into_owned(), raw));
        }
    }
    Ok(changes)
}

fn map_change(field: String, raw_value: &str) -> MappedChange {
    let mut items = Vec::new();
    let mut channel = None;
    if field == "messages" {
        let value: Value = serde_json::from_str(raw_value).unwrap_or(Value::Null);
        channel = value
            .pointer("/metadata/phone_number_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        let channel = channel.as_deref().unwrap_or("");
        let contacts = value.get("contacts").and_then(Value::as_array);
        if let Some(messages) = value.get("messages").and_then(Value::as_array) {
            items.extend(messages.iter().map(|m| map_message(m, channel, contacts)));
        }
        if let Some(statuses) = value.get("statuses").and_then(Value::as_array) {
            items.extend(statuses.iter().map(|s| map_status(s, channel)));
        }
    }
    MappedChange {
        field,
        value_json: raw_value.to_string(),
        channel,
        items,
    }
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
            media = Some(InboundMedia {
                sender: tel.clone(),
                channel: channel.to_string(),
                wamid: id.clone(),
                media_id: str_at(content, "id").unwrap_or("").to_string(),
                mime_type: str_at(content, "mime_type").unwrap_or("").to_string(),
            });
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
        "interactive" => (interactive_text(content), kind.clone(), reply_to),
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
        dedupe_key: format!("m:{id}"),
        media,
        message: InboundMessage {
            msg,
            tel,
            channel: channel.to_string(),
            kind: out_kind,
            id,
            refers_to,
        },
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
    let tel = str_at(s, "recipient_id")
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
        dedupe_key: format!("s:{id}:{status}"),
        media: None,
        message: InboundMessage {
            msg,
            tel,
            channel: channel.to_string(),
            kind: "status".to_string(),
            id,
            refers_to: str_at(s, "biz_opaque_callback_data").map(str::to_string),
        },
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
        map_payload(&envelope(value))
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
            InboundMessage {
                msg: "café".into(),
                tel: "111".into(),
                channel: "PN".into(),
                kind: "text".into(),
                id: "wamid.T".into(),
                refers_to: Some("wamid.Q".into())
            }
        );
        assert_eq!(t.dedupe_key, "m:wamid.T");
        let i = one(
            json!({"from":"111","id":"wamid.I","type":"image","image":{"id":"M1","mime_type":"image/jpeg","caption":"c"}}),
        );
        assert_eq!(
            i.media.unwrap(),
            InboundMedia {
                sender: "111".into(),
                channel: "PN".into(),
                wamid: "wamid.I".into(),
                media_id: "M1".into(),
                mime_type: "image/jpeg".into()
            }
        );
        assert_eq!(
            (i.message.kind.as_str(), i.message.msg.as_str()),
            ("image", "c")
        );
        let r = one(
            json!({"from":"111","id":"wamid.R","type":"reaction","reaction":{"message_id":"wamid.X"}}),
        );
        assert_eq!(
            (r.message.msg.as_str(), r.message.refers_to.as_deref()),
            ("", Some("wamid.X"))
        );
        let c = one(
            json!({"from":"111","id":"wamid.C","type":"contacts","contacts":[{"name":{"formatted_name":"Z"}}]}),
        );
        assert_eq!(c.message.kind, "contact");
        assert_eq!(c.message.msg, r#"[{"name":{"formatted_name":"Z"}}]"#);
        let b = one(
            json!({"from":"111","id":"wamid.B","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"y","title":"Yes"}}}),
        );
        assert_eq!(b.message.msg, "Yes");
        let u =
            one(json!({"from_user_id":"US.1","id":"wamid.U","type":"pool_party","pool_party":{}}));
        assert_eq!(
            (u.message.kind.as_str(), u.message.tel.as_str()),
            ("pool_party", "US.1")
        );
        assert!(u.message.msg.contains("pool_party"));
    }

    #[test]
    fn maps_statuses() {
        let value = json!({"metadata":{"phone_number_id":"PN"},"statuses":[
            {"id":"wamid.S","status":"delivered","recipient_id":"222","biz_opaque_callback_data":"order-42"},
            {"id":"wamid.S","status":"failed","recipient_id":"222","errors":[{"code":131047,"title":"Re-engagement message","error_data":{"details":"24h"}}]}]});
        let change = map_payload(&envelope(value)).unwrap().remove(0);
        let [a, b] = [&change.items[0], &change.items[1]];
        assert_eq!(
            (
                a.message.msg.as_str(),
                a.message.refers_to.as_deref(),
                a.dedupe_key.as_str()
            ),
            ("delivered", Some("order-42"), "s:wamid.S:delivered")
        );
        assert_eq!(b.message.msg, "failed (#131047) Re-engagement message: 24h");
    }

    #[test]
    fn rejects_what_is_not_a_webhook() {
        assert!(map_payload(b"nope").is_err());
        assert!(map_payload(br#"{"object":"page","entry":[]}"#).is_err());
        assert!(map_payload(br#"{"object":"whatsapp_business_account"}"#).is_err());
        assert_eq!(
            map_payload(br#"{"object":"whatsapp_business_account","entry":[]}"#).unwrap(),
            vec![]
        );
    }
}
