//! Any message JSON and arguments, as a host passes them to `SendMessage`: building never
//! panics, a body built is Meta's envelope, and the text fast path writes exactly what the
//! general path writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whatsapp_connector::message::contract;
use whatsapp_connector::message::MessageInput;

/// The seed's types and aliases, and one that is none of them.
const TYPES: &[&str] = &[
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "media",
    "location",
    "contact",
    "contacts",
    "interactive",
    "template",
    "reaction",
    "nonsense",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    // The message JSON first; remote number and refersToID after NUL separators, if any.
    let mut parts = text.split('\0');
    let message_json = parts.next().unwrap_or_default();
    let remote_num = parts.next().unwrap_or("+1 650 555 1234");
    let refers_to_id = parts.next();
    contract::check(&MessageInput {
        message_json,
        remote_num,
        message_type: TYPES[usize::from(selector) % TYPES.len()],
        channel: "106540352242922",
        callback_info: (selector & 0x80 != 0).then_some("order-42"),
        refers_to_id,
    });
});
