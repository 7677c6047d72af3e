//! Turns the seed's `SendMessage(message JSON, remoteNum, type, channel, callback_info,
//! refersToID)` into the Cloud API request body, validating what can be checked locally so that
//! bad input fails at once instead of costing a round trip.

use serde_json::{json, Map, Value};

/// Largest `message_json` accepted; Graph's own bodies are far smaller (text ≤ 4096 chars).
pub const MAX_MESSAGE_JSON_BYTES: usize = 64 * 1024;
/// Graph's limit on `biz_opaque_callback_data` (cloud-api.md §2.1).
pub const MAX_CALLBACK_DATA_BYTES: usize = 512;
const MAX_TEXT_CHARS: usize = 4096;
const MAX_CAPTION_CHARS: usize = 1024;
const MAX_ID_BYTES: usize = 256;

/// Cloud API message types (cloud-api.md §2.1).
const MEDIA_TYPES: &[&str] = &["image", "audio", "video", "document", "sticker"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidMessage {
    /// `message_json` is not JSON.
    Json(String),
    /// `type` is not a Cloud API type nor one of the seed's aliases.
    UnknownType(String),
    /// Over a size limit.
    TooLarge(String),
    /// Anything else: a missing or malformed field or argument.
    Argument(String),
}

impl std::fmt::Display for InvalidMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvalidMessage::Json(m) => write!(f, "message is not valid JSON: {m}"),
            InvalidMessage::UnknownType(t) => write!(f, "unknown message type {t:?}"),
            InvalidMessage::TooLarge(m) | InvalidMessage::Argument(m) => f.write_str(m),
        }
    }
}

/// What the host asked to send.
pub struct MessageInput<'a> {
    pub message_json: &'a str,
    pub remote_num: &'a str,
    pub message_type: &'a str,
    pub channel: &'a str,
    pub callback_info: Option<&'a str>,
    pub refers_to_id: Option<&'a str>,
}

/// A validated request, ready to post to `/{version}/{channel}/messages`.
#[derive(Debug, Clone)]
pub struct BuiltMessage {
    pub body: Vec<u8>,
    /// The recipient as used for ordering: digits only for phone numbers, else as given.
    pub recipient_key: String,
}

fn arg(msg: impl Into<String>) -> InvalidMessage {
    InvalidMessage::Argument(msg.into())
}

/// Validates a channel (phone number id) well enough to put it into a URL path.
pub fn validate_channel(channel: &str) -> Result<(), InvalidMessage> {
    if channel.is_empty() || channel.len() > 64 {
        return Err(arg(
            "channel (the phone number id) must be 1 to 64 characters",
        ));
    }
    if !channel
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(arg(
            "channel (the phone number id) may contain only letters, digits, '_', '-' and '.'",
        ));
    }
    // A URL resolves these path segments away: `{version}/../messages` would drop the version.
    if channel == "." || channel == ".." {
        return Err(arg("channel (the phone number id) cannot be '.' or '..'"));
    }
    Ok(())
}

/// A business-scoped user id such as `US.13491208655302741918` (cloud-api.md §5.4).
fn is_bsuid(s: &str) -> bool {
    let mut parts = s.splitn(2, '.');
    let country = parts.next().unwrap_or("");
    let rest = parts.next().unwrap_or("");
    country.len() == 2
        && country.bytes().all(|b| b.is_ascii_uppercase())
        && !rest.is_empty()
        && rest.len() <= 140
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

/// A number written with the international call prefix `00` as `+`: Graph reads a number
/// without `+` as local to the business number's country (cloud-api.md §2.1), which would
/// send `0049…` to the wrong place, and the ordering key must be the same either way.
fn international(remote_num: &str) -> std::borrow::Cow<'_, str> {
    match remote_num.trim_start().strip_prefix("00") {
        Some(rest) => std::borrow::Cow::Owned(format!("+{rest}")),
        None => std::borrow::Cow::Borrowed(remote_num),
    }
}

/// Returns the ordering key of a recipient, or why it is not a phone number or BSUID.
fn recipient_key(remote_num: &str) -> Result<String, InvalidMessage> {
    if is_bsuid(remote_num) {
        return Ok(remote_num.to_string());
    }
    let allowed = |c: char| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.');
    let digits: String = remote_num.chars().filter(char::is_ascii_digit).collect();
    if remote_num.len() > 32
        || !remote_num.chars().all(allowed)
        || !(5..=20).contains(&digits.len())
    {
        return Err(arg(format!(
            "remoteNum {remote_num:?} is neither a phone number (with country code) nor a business-scoped user id"
        )));
    }
    Ok(digits)
}

fn object<'v>(value: &'v Value, what: &str) -> Result<&'v Map<String, Value>, InvalidMessage> {
    value
        .as_object()
        .ok_or_else(|| arg(format!("{what} must be a JSON object")))
}

fn non_empty_str(obj: &Map<String, Value>, key: &str, what: &str) -> Result<(), InvalidMessage> {
    match obj.get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(()),
        _ => Err(arg(format!(
            "{what}.{key} is required (a non-empty string)"
        ))),
    }
}

fn max_chars(
    obj: &Map<String, Value>,
    key: &str,
    limit: usize,
    what: &str,
) -> Result<(), InvalidMessage> {
    match obj.get(key) {
        None => Ok(()),
        Some(Value::String(s)) if s.chars().count() <= limit => Ok(()),
        Some(Value::String(_)) => Err(InvalidMessage::TooLarge(format!(
            "{what}.{key} is longer than {limit} characters"
        ))),
        Some(_) => Err(arg(format!("{what}.{key} must be a string"))),
    }
}

fn is_coordinate(v: Option<&Value>, limit: f64) -> bool {
    let n = match v {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.is_some_and(|n| n.is_finite() && n.abs() <= limit)
}

/// Checks the content object of a Cloud API type (required fields and limits, cloud-api.md §2.2).
fn validate_content(kind: &str, content: &Value) -> Result<(), InvalidMessage> {
    match kind {
        "text" => {
            let obj = object(content, "text")?;
            non_empty_str(obj, "body", "text")?;
            max_chars(obj, "body", MAX_TEXT_CHARS, "text")?;
            if obj.get("preview_url").is_some_and(|v| !v.is_boolean()) {
                return Err(arg("text.preview_url must be a boolean"));
            }
        }
        k if MEDIA_TYPES.contains(&k) => {
            let obj = object(content, k)?;
            match (obj.get("id"), obj.get("link")) {
                (Some(_), Some(_)) => {
                    return Err(arg(format!("{k} must have either id or link, not both")))
                }
                (Some(_), None) => non_empty_str(obj, "id", k)?,
                (None, Some(_)) => {
                    non_empty_str(obj, "link", k)?;
                    let link = obj.get("link").and_then(Value::as_str).unwrap_or("");
                    if !(link.starts_with("https://") || link.starts_with("http://")) {
                        return Err(arg(format!("{k}.link must be an http(s) URL")));
                    }
                }
                (None, None) => {
                    return Err(arg(format!("{k} needs an id (uploaded media) or a link")))
                }
            }
            if obj.contains_key("caption") && !matches!(k, "image" | "video" | "document") {
                return Err(arg(format!(
                    "{k} cannot have a caption (only image, video, document)"
                )));
            }
            max_chars(obj, "caption", MAX_CAPTION_CHARS, k)?;
            if obj.contains_key("filename") && k != "document" {
                return Err(arg(format!("{k} cannot have a filename (only document)")));
            }
        }
        "location" => {
            let obj = object(content, "location")?;
            if !is_coordinate(obj.get("latitude"), 90.0)
                || !is_coordinate(obj.get("longitude"), 180.0)
            {
                return Err(arg(
                    "location needs latitude (-90..90) and longitude (-180..180) as numbers",
                ));
            }
        }
        "contacts" => {
            let cards = content
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| arg("contacts must be a non-empty array of contact cards"))?;
            for card in cards {
                let name = object(card, "contacts[]")?.get("name");
                match name
                    .and_then(|n| n.get("formatted_name"))
                    .and_then(Value::as_str)
                {
                    Some(s) if !s.is_empty() => {}
                    _ => return Err(arg("contacts[].name.formatted_name is required")),
                }
            }
        }
        "interactive" => {
            let obj = object(content, "interactive")?;
            non_empty_str(obj, "type", "interactive")?;
            if !obj.get("action").is_some_and(Value::is_object) {
                return Err(arg("interactive.action is required (an object)"));
            }
        }
        "template" => {
            let obj = object(content, "template")?;
            non_empty_str(obj, "name", "template")?;
            let language = obj.get("language").and_then(Value::as_object);
            match language.and_then(|l| l.get("code")).and_then(Value::as_str) {
                Some(code) if !code.is_empty() => {}
                _ => return Err(arg("template.language.code is required")),
            }
        }
        "reaction" => {
            let obj = object(content, "reaction")?;
            non_empty_str(obj, "message_id", "reaction")?;
            // An empty emoji removes a reaction, so only its presence is required.
            if !obj.get("emoji").is_some_and(Value::is_string) {
                return Err(arg(
                    "reaction.emoji is required (a string; empty removes the reaction)",
                ));
            }
        }
        other => return Err(InvalidMessage::UnknownType(other.to_string())),
    }
    Ok(())
}

/// Resolves the seed's aliases into a Cloud API type and its content object.
fn normalise(message_type: &str, content: Value) -> Result<(String, Value), InvalidMessage> {
    match message_type {
        "contact" => match content {
            Value::Array(_) => Ok(("contacts".into(), content)),
            Value::Object(_) => Ok(("contacts".into(), Value::Array(vec![content]))),
            _ => Err(arg(
                "a contact message must be a contact object or an array of them",
            )),
        },
        "media" => {
            let mut obj = match content {
                Value::Object(obj) => obj,
                _ => return Err(arg("a media message must be an object with a type")),
            };
            let kind = match obj.remove("type") {
                Some(Value::String(kind)) if MEDIA_TYPES.contains(&kind.as_str()) => kind,
                _ => return Err(arg(
                    "a media message needs \"type\": one of image, audio, video, document, sticker",
                )),
            };
            Ok((kind, Value::Object(obj)))
        }
        // A bare JSON string is accepted as the body of a text message.
        "text" => match content {
            Value::String(body) => Ok(("text".into(), json!({ "body": body }))),
            other => Ok(("text".into(), other)),
        },
        "image" | "audio" | "video" | "document" | "sticker" | "location" | "contacts"
        | "interactive" | "template" | "reaction" => Ok((message_type.to_string(), content)),
        other => Err(InvalidMessage::UnknownType(other.to_string())),
    }
}

/// `"name":"value"` with JSON escaping.
fn write_member(out: &mut Vec<u8>, name: &str, value: &str) -> Result<(), InvalidMessage> {
    serde_json::to_writer(&mut *out, name).map_err(|e| arg(e.to_string()))?;
    out.push(b':');
    serde_json::to_writer(&mut *out, value).map_err(|e| arg(e.to_string()))
}

/// The most common content, a text object with `body` and at most `preview_url` (a boolean),
/// valid, written exactly as the general path would write it (keys in order, same escaping)
/// without building a `Value`. `None`: anything else, including anything invalid, which the
/// general path then validates and words.
fn text_fast_path(message_type: &str, json: &str) -> Option<Vec<u8>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Text<'a> {
        #[serde(borrow)]
        body: std::borrow::Cow<'a, str>,
        // Present-but-null must stay visible (it is invalid): not `Option`'s own handling.
        #[serde(borrow, default, deserialize_with = "present")]
        preview_url: Option<&'a serde_json::value::RawValue>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<&'de serde_json::value::RawValue>, D::Error> {
        serde::Deserialize::deserialize(deserializer).map(Some)
    }
    if message_type != "text" {
        return None;
    }
    // A derived struct also deserialises from an array (`["hi"]`), which is no text object.
    if !json.trim_start().starts_with('{') {
        return None;
    }
    let text: Text<'_> = serde_json::from_str(json).ok()?;
    if text.body.is_empty() || text.body.chars().count() > MAX_TEXT_CHARS {
        return None;
    }
    let preview_url = match text.preview_url.map(|raw| raw.get()) {
        None => None,
        Some(flag @ ("true" | "false")) => Some(flag),
        Some(_) => return None,
    };
    let mut content = Vec::with_capacity(text.body.len() + 40);
    content.extend_from_slice(br#"{"body":"#);
    serde_json::to_writer(&mut content, &*text.body).ok()?;
    if let Some(flag) = preview_url {
        content.extend_from_slice(br#","preview_url":"#);
        content.extend_from_slice(flag.as_bytes());
    }
    content.push(b'}');
    Some(content)
}

/// Validates the input and builds the request body.
pub fn build(input: &MessageInput<'_>) -> Result<BuiltMessage, InvalidMessage> {
    if input.message_json.len() > MAX_MESSAGE_JSON_BYTES {
        return Err(InvalidMessage::TooLarge(format!(
            "message JSON is {} bytes; the limit is {MAX_MESSAGE_JSON_BYTES}",
            input.message_json.len()
        )));
    }
    validate_channel(input.channel)?;
    let remote_num = international(input.remote_num);
    let recipient_key = recipient_key(&remote_num)?;
    let (kind, content) = match text_fast_path(input.message_type, input.message_json) {
        Some(content) => ("text".to_string(), content),
        None => {
            let content: Value = serde_json::from_str(input.message_json)
                .map_err(|e| InvalidMessage::Json(e.to_string()))?;
            let (kind, content) = normalise(input.message_type, content)?;
            validate_content(&kind, &content)?;
            let content = serde_json::to_vec(&content).map_err(|e| arg(e.to_string()))?;
            (kind, content)
        }
    };

    // Written directly in the order of Meta's examples rather than through a `Map`: this runs
    // once per message on the host's thread, and the map's key allocations were most of it.
    let mut body = Vec::with_capacity(input.message_json.len() + 160);
    body.extend_from_slice(br#"{"messaging_product":"whatsapp","recipient_type":"individual","#);
    // Since 2026 Graph takes business-scoped user ids in `recipient` (cloud-api.md §2.1).
    let recipient_field = if is_bsuid(input.remote_num) {
        "recipient"
    } else {
        "to"
    };
    write_member(&mut body, recipient_field, &remote_num)?;
    body.push(b',');
    write_member(&mut body, "type", &kind)?;
    if let Some(refers_to) = input.refers_to_id {
        if refers_to.is_empty() || refers_to.len() > MAX_ID_BYTES {
            return Err(arg("refersToID must be a message id (1 to 256 bytes)"));
        }
        body.extend_from_slice(br#","context":{"#);
        write_member(&mut body, "message_id", refers_to)?;
        body.push(b'}');
    }
    // Echoed back in status webhooks so they can be correlated; Graph caps it at 512 bytes, so
    // longer callback_info only travels with the local result.
    if let Some(info) = input.callback_info {
        if !info.is_empty() && info.len() <= MAX_CALLBACK_DATA_BYTES {
            body.push(b',');
            write_member(&mut body, "biz_opaque_callback_data", info)?;
        }
    }
    body.push(b',');
    serde_json::to_writer(&mut body, &kind).map_err(|e| arg(e.to_string()))?;
    body.push(b':');
    body.extend_from_slice(&content);
    body.push(b'}');
    Ok(BuiltMessage {
        body,
        recipient_key,
    })
}

/// The text fast path's contract, checkable on any input: where it takes a text it writes
/// exactly what the general path writes; building never panics and every body built is a JSON
/// object of Meta's envelope. Used by the unit tests and by the fuzz target in `fuzz/`.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod contract {
    use super::*;

    /// The general path alone, for a content of `message_type`.
    pub(super) fn general(message_type: &str, json: &str) -> Result<Vec<u8>, InvalidMessage> {
        let content: Value =
            serde_json::from_str(json).map_err(|e| InvalidMessage::Json(e.to_string()))?;
        let (kind, content) = normalise(message_type, content)?;
        validate_content(&kind, &content)?;
        Ok(serde_json::to_vec(&content).expect("a Value serialises"))
    }

    /// Whether the text fast path took `json` (and agreed).
    pub fn check(input: &MessageInput<'_>) -> bool {
        let fast = text_fast_path(input.message_type, input.message_json);
        if let Some(fast) = &fast {
            assert_eq!(
                Ok(fast.clone()),
                general(input.message_type, input.message_json),
                "{}",
                input.message_json
            );
        }
        if let Ok(built) = build(input) {
            let body: Value = serde_json::from_slice(&built.body).expect("a body is JSON");
            assert_eq!(body["messaging_product"], "whatsapp");
            let kind = body["type"].as_str().expect("a body names its type");
            assert!(body.get(kind).is_some(), "the content is under its type");
        }
        fast.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(t: &'a str, json: &'a str) -> MessageInput<'a> {
        MessageInput {
            message_json: json,
            remote_num: "+49 (151) 234-5678",
            message_type: t,
            channel: "106540352242922",
            callback_info: Some("order-42"),
            refers_to_id: None,
        }
    }

    fn body(t: &str, json: &str) -> Value {
        serde_json::from_slice(&build(&input(t, json)).unwrap().body).unwrap()
    }

    #[test]
    fn writes_the_envelope_in_order_with_json_escaping() {
        let mut i = input("text", r#"{"body":"a \"quote\" and é"}"#);
        i.callback_info = Some("say \"hi\"\n");
        i.refers_to_id = Some("wamid.Q\\");
        let built = build(&i).unwrap();
        assert_eq!(
            std::str::from_utf8(&built.body).unwrap(),
            r#"{"messaging_product":"whatsapp","recipient_type":"individual","to":"+49 (151) 234-5678","type":"text","context":{"message_id":"wamid.Q\\"},"biz_opaque_callback_data":"say \"hi\"\n","text":{"body":"a \"quote\" and é"}}"#
        );
    }

    #[test]
    fn the_international_prefix_00_is_sent_as_plus() {
        let mut i = input("text", r#"{"body":"x"}"#);
        i.remote_num = "0049 151 2345678";
        let built = build(&i).unwrap();
        assert_eq!(built.recipient_key, "491512345678");
        let v: Value = serde_json::from_slice(&built.body).unwrap();
        assert_eq!(v["to"], "+49 151 2345678");
        // The same recipient as written with +: one ordering key.
        i.remote_num = "+49 151 2345678";
        assert_eq!(build(&i).unwrap().recipient_key, "491512345678");
        // A national number (one 0) is left to Graph, which adds the business's country code.
        i.remote_num = "0151 2345678";
        let v: Value = serde_json::from_slice(&build(&i).unwrap().body).unwrap();
        assert_eq!(v["to"], "0151 2345678");
    }

    #[test]
    fn channels_are_single_safe_path_segments() {
        for good in ["106540352242922", "a.b", "...", "x_y-z"] {
            assert!(validate_channel(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a?b", "a%2e", &"1".repeat(65)] {
            assert!(validate_channel(bad).is_err(), "{bad}");
        }
    }

    /// The text fast path writes exactly what the general path writes, and leaves every
    /// invalid or unusual text to it.
    #[test]
    fn text_fast_path_agrees_with_the_general_path() {
        let long = "é".repeat(MAX_TEXT_CHARS);
        let too_long = "é".repeat(MAX_TEXT_CHARS + 1);
        let cases = [
            r#"{"body":"hi"}"#.to_string(),
            r#"{"body":"hi","preview_url":false}"#.to_string(),
            r#"{ "preview_url" : true , "body" : "a \"q\" \/ \u00e9 \n" }"#.to_string(),
            r#"{"body":"hi","preview_url":null}"#.to_string(),
            r#"{"body":"hi","preview_url":1}"#.to_string(),
            r#"{"body":"hi","preview_url":"true"}"#.to_string(),
            r#"{"body":""}"#.to_string(),
            r#"{"body":5}"#.to_string(),
            r#"{"body":"a","body":"b"}"#.to_string(),
            r#"{"body":"a","extra":1}"#.to_string(),
            r#"{"preview_url":true}"#.to_string(),
            r#""just a string""#.to_string(),
            r#"[1]"#.to_string(),
            r#"["as an array"]"#.to_string(),
            r#" ["hi", true]"#.to_string(),
            r#"{"body":"a""#.to_string(),
            format!(r#"{{"body":"{long}"}}"#),
            format!(r#"{{"body":"{too_long}"}}"#),
        ];
        let mut fast_taken = 0;
        for json in &cases {
            if contract::check(&input("text", json)) {
                fast_taken += 1;
            } else {
                assert!(
                    contract::general("text", json).is_err()
                        || json.contains("extra")
                        || json.contains(r#""body":"a","body""#)
                        || json.starts_with('"'),
                    "valid plain text left to the general path: {json}"
                );
            }
        }
        assert_eq!(fast_taken, 4, "body, body+flag, spaced, longest");
        assert_eq!(text_fast_path("image", r#"{"body":"hi"}"#), None);
    }

    #[test]
    fn builds_the_full_envelope() {
        let mut i = input("text", r#"{"body":"hi","preview_url":false}"#);
        i.refers_to_id = Some("wamid.X");
        let built = build(&i).unwrap();
        assert_eq!(built.recipient_key, "491512345678");
        let v: Value = serde_json::from_slice(&built.body).unwrap();
        assert_eq!(
            v,
            json!({"messaging_product":"whatsapp","recipient_type":"individual","to":"+49 (151) 234-5678",
                   "type":"text","text":{"body":"hi","preview_url":false},
                   "context":{"message_id":"wamid.X"},"biz_opaque_callback_data":"order-42"})
        );
    }

    #[test]
    fn resolves_aliases() {
        let v = body("contact", r#"{"name":{"formatted_name":"A"}}"#);
        assert_eq!(v["type"], "contacts");
        assert_eq!(v["contacts"], json!([{"name":{"formatted_name":"A"}}]));
        let v = body(
            "media",
            r#"{"type":"document","link":"https://x/a.pdf","filename":"a.pdf"}"#,
        );
        assert_eq!(v["type"], "document");
        assert_eq!(
            v["document"],
            json!({"link":"https://x/a.pdf","filename":"a.pdf"})
        );
        let v = body("text", r#""plain""#);
        assert_eq!(v["text"], json!({"body":"plain"}));
    }

    #[test]
    fn bsuid_goes_to_recipient() {
        let mut i = input("text", r#"{"body":"hi"}"#);
        i.remote_num = "US.13491208655302741918";
        let v: Value = serde_json::from_slice(&build(&i).unwrap().body).unwrap();
        assert_eq!(v["recipient"], "US.13491208655302741918");
        assert!(v.get("to").is_none());
    }

    #[test]
    fn rejects_bad_input() {
        let bad = |t: &str, j: &str| build(&input(t, j)).unwrap_err();
        assert!(matches!(bad("text", "{"), InvalidMessage::Json(_)));
        assert!(matches!(bad("fax", "{}"), InvalidMessage::UnknownType(_)));
        assert!(matches!(bad("text", "{}"), InvalidMessage::Argument(_)));
        let long = format!(r#"{{"body":"{}"}}"#, "x".repeat(4097));
        assert!(matches!(bad("text", &long), InvalidMessage::TooLarge(_)));
        assert!(matches!(
            bad("image", r#"{"id":"1","link":"https://a"}"#),
            InvalidMessage::Argument(_)
        ));
        assert!(matches!(
            bad("audio", r#"{"id":"1","caption":"c"}"#),
            InvalidMessage::Argument(_)
        ));
        assert!(matches!(
            bad("image", r#"{"id":"1","filename":"c"}"#),
            InvalidMessage::Argument(_)
        ));
        assert!(matches!(
            bad("location", r#"{"latitude":91,"longitude":0}"#),
            InvalidMessage::Argument(_)
        ));
        assert!(matches!(
            bad("reaction", r#"{"message_id":"w"}"#),
            InvalidMessage::Argument(_)
        ));
        assert!(matches!(
            bad("media", r#"{"type":"text"}"#),
            InvalidMessage::Argument(_)
        ));
        let mut i = input("text", r#"{"body":"hi"}"#);
        i.remote_num = "not a number";
        assert!(build(&i).is_err());
        i.remote_num = "+491512345678";
        i.channel = "../x";
        assert!(build(&i).is_err());
    }
}
