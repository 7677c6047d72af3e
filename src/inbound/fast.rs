//! The common shapes of a webhook (text, media and reaction messages; statuses other than
//! `failed`) mapped in one pass of the JSON scanner over the body, without a `Value` tree or
//! serde's typed structs: this runs for every webhook. Strings stay the raw JSON received and
//! are decoded straight into the event's buffer, so a message costs one allocation however many
//! escapes Meta put in it. Anything else (another message type, a field of an unexpected type,
//! a repeated field, a second content object) returns `None` and the body or change goes through
//! the general path, which gives the same result for what both accept (tested in `super`).

use std::borrow::Cow;

use super::scan::{Kind, RawStr, Scanner};
use super::{dedupe_key, MappedChange, MappedItem, MEDIA_KINDS};
use crate::events::{InboundMedia, InboundMessage};

/// A string field: absent or null (`None`), or the raw string.
type Text<'a> = Option<RawStr<'a>>;

/// The decoded text, borrowed unless it has escapes; `None` for an escape serde_json would
/// refuse.
fn decode(raw: RawStr<'_>) -> Option<Cow<'_, str>> {
    if !raw.escaped {
        return Some(Cow::Borrowed(raw.inner()));
    }
    let mut decoded = String::with_capacity(raw.raw.len());
    super::unescape_into(raw.raw, &mut decoded)?;
    Some(Cow::Owned(decoded))
}

/// `decode` of an optional field: `Some(None)` when absent, `None` (decline) when its escapes
/// are invalid.
fn decode_field(text: Text<'_>) -> Option<Option<Cow<'_, str>>> {
    text.map(decode)
        .map_or(Some(None), |decoded| decoded.map(Some))
}

/// Stores a field read once; a repeated one declines, like serde's derive does (the general
/// path decides what it means).
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.replace(value).is_none().then_some(())
}

/// A string or null field read into `slot` once.
fn text_once<'a>(scanner: &mut Scanner<'a>, slot: &mut Option<Text<'a>>) -> Option<()> {
    let text = scanner.text_or_null()?;
    once(slot, text)
}

/// A string field (null declines) read into `slot` once.
fn string_once<'a>(scanner: &mut Scanner<'a>, slot: &mut Option<RawStr<'a>>) -> Option<()> {
    let text = scanner.string()?;
    once(slot, text)
}

/// Walks an object whose members are all string-or-null fields named in `names`, other keys
/// skipped; each named field at most once.
fn text_fields<'a, const N: usize>(
    scanner: &mut Scanner<'a>,
    names: [&str; N],
) -> Option<[Text<'a>; N]> {
    let mut fields: [Text<'a>; N] = [None; N];
    // Bit i: names[i] was read (kept apart so that the fields need no second Option).
    let mut seen = 0u32;
    scanner.object(
        |scanner, key| match names.iter().position(|name| *name == key) {
            Some(i) => {
                if seen & 1 << i != 0 {
                    return None;
                }
                seen |= 1 << i;
                fields[i] = scanner.text_or_null()?;
                Some(())
            }
            None => scanner.skip_value(),
        },
    )?;
    Some(fields)
}

/// An object of string fields, or null (all absent).
fn text_fields_or_null<'a, const N: usize>(
    scanner: &mut Scanner<'a>,
    names: [&str; N],
) -> Option<[Text<'a>; N]> {
    match scanner.peek()? {
        Kind::Null => scanner.null().map(|()| [None; N]),
        Kind::Object => text_fields(scanner, names),
        _ => None,
    }
}

/// The fields read from the content object of any of the kinds below.
const CONTENT_FIELDS: [&str; 6] = ["body", "id", "mime_type", "caption", "emoji", "message_id"];
const BODY: usize = 0;
const MEDIA_ID: usize = 1;
const MIME_TYPE: usize = 2;
const CAPTION: usize = 3;
const EMOJI: usize = 4;
const REACTED_TO: usize = 5;

/// The message types the fast path maps; each names its content object.
const FAST_KINDS: [&str; 7] = [
    "text", "image", "audio", "video", "document", "sticker", "reaction",
];

/// A message's fields, raw.
struct Message<'a> {
    from: Text<'a>,
    from_user_id: Text<'a>,
    id: Text<'a>,
    kind: Text<'a>,
    /// `context.id`.
    reply_to: Text<'a>,
    /// The content object's key (one of `FAST_KINDS`) and fields (all absent when null).
    content: Option<(&'static str, [Text<'a>; 6])>,
}

fn message<'a>(scanner: &mut Scanner<'a>) -> Option<Message<'a>> {
    let (mut from, mut from_user_id, mut id, mut kind) = (None, None, None, None);
    let (mut context, mut content) = (None, None);
    scanner.object(|scanner, key| match key {
        "from" => text_once(scanner, &mut from),
        "from_user_id" => text_once(scanner, &mut from_user_id),
        "id" => text_once(scanner, &mut id),
        "type" => text_once(scanner, &mut kind),
        "context" => {
            let [context_id] = text_fields_or_null(scanner, ["id"])?;
            once(&mut context, context_id)
        }
        _ => match FAST_KINDS.iter().find(|kind| **kind == key) {
            // A second content object, even of another kind, declines.
            Some(kind) => {
                let fields = text_fields_or_null(scanner, CONTENT_FIELDS)?;
                once(&mut content, (*kind, fields))
            }
            None => scanner.skip_value(),
        },
    })?;
    Some(Message {
        from: from.flatten(),
        from_user_id: from_user_id.flatten(),
        id: id.flatten(),
        kind: kind.flatten(),
        reply_to: context.flatten(),
        content,
    })
}

const STATUS_FIELDS: [&str; 7] = [
    "id",
    "status",
    "recipient_id",
    "recipient_user_id",
    "biz_opaque_callback_data",
    "recipient_participant_id",
    "recipient_participant_user_id",
];

/// An array field whose elements are read by `element`; null is an empty array.
fn array_or_null<'a>(
    scanner: &mut Scanner<'a>,
    element: impl FnMut(&mut Scanner<'a>) -> Option<()>,
) -> Option<()> {
    match scanner.peek()? {
        Kind::Null => scanner.null(),
        Kind::Array => scanner.array(element),
        _ => None,
    }
}

/// An array field read into a list by `element`; null is an empty list.
fn list_or_null<'a, T>(
    scanner: &mut Scanner<'a>,
    mut element: impl FnMut(&mut Scanner<'a>) -> Option<T>,
) -> Option<Vec<T>> {
    let mut list = Vec::new();
    array_or_null(scanner, |scanner| {
        list.push(element(scanner)?);
        Some(())
    })?;
    Some(list)
}

/// The value of a `messages` change, mapped: `(channel, items)`.
fn change_value<'a>(scanner: &mut Scanner<'a>) -> Option<(Option<Cow<'a, str>>, Vec<MappedItem>)> {
    let (mut metadata, mut contacts) = (None, None);
    let (mut messages, mut statuses) = (None, None);
    scanner.object(|scanner, key| match key {
        "metadata" => {
            let [channel] = text_fields_or_null(scanner, ["phone_number_id"])?;
            once(&mut metadata, channel)
        }
        "contacts" => {
            // Only the first contact is read (the sender when a message names none).
            let mut first = None;
            array_or_null(scanner, |scanner| {
                if first.is_some() {
                    return scanner.skip_value();
                }
                first = Some(text_fields(scanner, ["wa_id", "user_id"])?);
                Some(())
            })?;
            once(&mut contacts, first)
        }
        "messages" => {
            let list = list_or_null(scanner, message)?;
            once(&mut messages, list)
        }
        "statuses" => {
            let list = list_or_null(scanner, |scanner| text_fields(scanner, STATUS_FIELDS))?;
            once(&mut statuses, list)
        }
        // Errors of the account or app, not tied to a message: rare, and logged by the
        // general path.
        "errors" => None,
        _ => scanner.skip_value(),
    })?;
    let channel = decode_field(metadata.flatten())?;
    let channel_str = channel.as_deref().unwrap_or("");
    let first_contact = contacts.flatten();
    let mut items = Vec::new();
    for message in messages.into_iter().flatten() {
        items.push(map_message(message, channel_str, first_contact)?);
    }
    for status in statuses.into_iter().flatten() {
        items.push(map_status(status, channel_str)?);
    }
    Some((channel, items))
}

/// `super::map_payload` without keeping the raw values, in one pass over the body; `None` for
/// anything it leaves to the general path (which also words the errors).
pub(super) fn map_body(body: &str) -> Option<Vec<MappedChange<'_>>> {
    let mut scanner = Scanner::new(body);
    let (mut object, mut entries) = (None, None);
    scanner.object(|scanner, key| match key {
        "object" => string_once(scanner, &mut object),
        "entry" => {
            let mut changes = Vec::new();
            scanner.array(|scanner| entry(scanner, &mut changes))?;
            once(&mut entries, changes)
        }
        _ => scanner.skip_value(),
    })?;
    if !scanner.at_end() || decode(object?)? != "whatsapp_business_account" {
        return None;
    }
    entries
}

/// One `entry[]` object: its changes appended to `changes`.
fn entry<'a>(scanner: &mut Scanner<'a>, changes: &mut Vec<MappedChange<'a>>) -> Option<()> {
    let mut seen_changes = None;
    scanner.object(|scanner, key| match key {
        "changes" => {
            once(&mut seen_changes, ())?;
            scanner.array(|scanner| {
                changes.push(change(scanner)?);
                Some(())
            })
        }
        _ => scanner.skip_value(),
    })
}

/// What a change's `value` turned out to be.
enum ChangeValue<'a> {
    /// Null or absent: no items, whatever the field.
    Nothing,
    /// Mapped as a `messages` value (used only if the field says so).
    Mapped(Option<Cow<'a, str>>, Vec<MappedItem>),
    /// Valid JSON of a shape the fast path does not map.
    Unmapped,
}

/// One `changes[]` object. Meta sends `value` before `field`, so the value is mapped as a
/// `messages` value on the way and dropped if the field turns out to be another.
fn change<'a>(scanner: &mut Scanner<'a>) -> Option<MappedChange<'a>> {
    let (mut field, mut value) = (None, None);
    scanner.object(|scanner, key| match key {
        // Absent is "", null is refused (as the general path's typed field does).
        "field" => string_once(scanner, &mut field),
        "value" => {
            let mapped = match scanner.peek()? {
                Kind::Null => scanner.null().map(|()| ChangeValue::Nothing)?,
                Kind::Object => {
                    let mut attempt = scanner.clone();
                    match change_value(&mut attempt) {
                        Some((channel, items)) => {
                            *scanner = attempt;
                            ChangeValue::Mapped(channel, items)
                        }
                        None => {
                            scanner.skip_value()?;
                            ChangeValue::Unmapped
                        }
                    }
                }
                _ => {
                    scanner.skip_value()?;
                    ChangeValue::Unmapped
                }
            };
            once(&mut value, mapped)
        }
        _ => scanner.skip_value(),
    })?;
    let field = match field {
        Some(raw) => decode(raw)?,
        None => Cow::Borrowed(""),
    };
    let (channel, items) = match (field.as_ref(), value.unwrap_or(ChangeValue::Nothing)) {
        ("messages", ChangeValue::Mapped(channel, items)) => (channel, items),
        ("messages", ChangeValue::Unmapped) => return None,
        _ => (None, Vec::new()),
    };
    Some(MappedChange {
        field,
        value_json: String::new(),
        channel,
        items,
        entry_key: String::new(),
    })
}

/// `(channel, items)` like `super::map_value`, or `None` for a shape it leaves to it.
pub(super) fn map_value(raw_value: &str) -> Option<(Option<Cow<'_, str>>, Vec<MappedItem>)> {
    let mut scanner = Scanner::new(raw_value);
    let mapped = change_value(&mut scanner)?;
    scanner.at_end().then_some(mapped)
}

fn map_message(
    m: Message<'_>,
    channel: &str,
    first_contact: Option<[Text<'_>; 2]>,
) -> Option<MappedItem> {
    let kind = decode_field(m.kind)?;
    let kind = kind.as_deref().unwrap_or("unknown");
    let kind = *FAST_KINDS.iter().find(|k| **k == kind)?;
    // The object named by the type; another kind's object is not this message's content.
    let content = match m.content {
        Some((key, fields)) if key == kind => fields,
        _ => [None; 6],
    };
    let id = decode_field(m.id)?;
    let id = id.as_deref().unwrap_or("");
    let (from, from_user) = (decode_field(m.from)?, decode_field(m.from_user_id)?);
    let tel = match (from, from_user) {
        (Some(from), _) if !from.is_empty() => from,
        (_, Some(user)) if !user.is_empty() => user,
        _ => match first_contact {
            Some([wa_id, user_id]) => match decode_field(wa_id)? {
                Some(wa_id) => wa_id,
                None => decode_field(user_id)?.unwrap_or_default(),
            },
            None => Cow::Borrowed(""),
        },
    };
    let reply_to = decode_field(m.reply_to)?;
    let mut media = None;
    let (msg, refers_to) = match kind {
        "text" => (content[BODY], reply_to),
        "reaction" => (content[EMOJI], decode_field(content[REACTED_TO])?),
        _ => {
            debug_assert!(MEDIA_KINDS.contains(&kind));
            let media_id = decode_field(content[MEDIA_ID])?.unwrap_or_default();
            let mime_type = decode_field(content[MIME_TYPE])?.unwrap_or_default();
            media = Some(InboundMedia::new(&tel, channel, id, &media_id, &mime_type));
            (content[CAPTION], reply_to)
        }
    };
    let message = InboundMessage::build(
        msg.map_or(0, |raw| raw.raw.len()),
        |out| match msg {
            Some(raw) if raw.escaped => super::unescape_into(raw.raw, out),
            Some(raw) => {
                out.push_str(raw.inner());
                Some(())
            }
            None => Some(()),
        },
        [&tel, channel, kind, id],
        refers_to.as_deref(),
    )?;
    Some(MappedItem {
        dedupe_key: dedupe_key(id, &["m:", id]),
        media,
        message,
    })
}

fn map_status(fields: [Text<'_>; 7], channel: &str) -> Option<MappedItem> {
    let [id, status, recipient_id, recipient_user_id, callback_data, participant, participant_user] =
        fields;
    // A group participant's receipt (rare) is left to the general mapping.
    if participant.is_some() || participant_user.is_some() {
        return None;
    }
    let status = decode_field(status)?;
    let status = status.as_deref().unwrap_or("unknown");
    // A failure's text comes from its `errors` array: left to the general mapping.
    if status == "failed" {
        return None;
    }
    let id = decode_field(id)?;
    let id = id.as_deref().unwrap_or("");
    let tel = match decode_field(recipient_id)? {
        Some(recipient) => Some(recipient),
        None => decode_field(recipient_user_id)?,
    };
    let callback_data = decode_field(callback_data)?;
    Some(MappedItem {
        dedupe_key: dedupe_key(id, &["s:", id, ":", status]),
        media: None,
        message: InboundMessage::new(
            status,
            tel.as_deref().unwrap_or(""),
            channel,
            "status",
            id,
            callback_data.as_deref(),
        ),
    })
}
