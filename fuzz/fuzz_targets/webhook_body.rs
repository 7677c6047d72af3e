//! Any bytes as a webhook body (after the signature check): no panic, and wherever the fast
//! path maps a body or a change value it maps exactly as the general path does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whatsapp_connector::inbound::contract;

fuzz_target!(|body: &[u8]| {
    contract::check_body(body);
    if let Ok(text) = std::str::from_utf8(body) {
        contract::check_value(text);
    }
});
