//! The inbound path end to end with the emulator as Meta: signed deliveries to the built-in
//! listener, statuses after sends correlated through callback_info, inbound media that resolve
//! to real bytes, duplicates, and redelivery after a refusal.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use whatsapp_connector::ffi::client::*;
use whatsapp_connector::ffi::media::wa_client_request_media;
use whatsapp_connector::ffi::options::*;
use whatsapp_connector::ffi::result::whatsapp_error_t::*;
use whatsapp_connector::ffi::wa_result;

const VERIFY: &str = "emulated-verify";

/// A listening client with the emulator's webhooks pointed at it.
fn listening(emu: &Emulator, secret: &str, extra: Value) -> Host {
    let opts = Opts::for_emulator(emu);
    assert_eq!(
        wa_options_set_webhook_listen(opts.0, cstr("127.0.0.1:0").as_ptr()),
        wa_result::WA_OK
    );
    let host = Host::new(&opts);
    assert_eq!(
        wa_client_set_config(host.client, cstr(TOKEN).as_ptr(), cstr(secret).as_ptr()),
        wa_result::WA_OK
    );
    assert_eq!(
        wa_client_set_webhook_token(host.client, cstr(VERIFY).as_ptr()),
        wa_result::WA_OK
    );
    let mut config = json!({
        "url": format!("http://127.0.0.1:{}/webhook", host.webhook_port()),
        "app_secret": APP_SECRET,
        "verify_token": VERIFY,
        "retry": {"max_attempts": 6, "initial_backoff_ms": 50},
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut config, extra) {
        c.extend(e);
    }
    emu.post_json("/_emulator/webhook/config", config);
    host
}

fn messages(host: &Host, n: usize) -> Vec<Inbound> {
    let deadline = Instant::now() + 10 * SECS;
    loop {
        let got: Vec<Inbound> = host
            .drain_inbound(Duration::from_millis(20))
            .into_iter()
            .filter(|i| i.kind != "raw")
            .collect();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
    }
}

#[test]
fn meta_verification_and_signed_inbound_messages() {
    let emu = Emulator::start();
    let host = listening(&emu, APP_SECRET, json!({}));
    let verify = emu.post_json("/_emulator/webhook/verify", json!({}));
    assert_eq!(verify["ok"], true, "{verify}");
    let wrong = emu.post_json("/_emulator/webhook/verify", json!({"verify_token": "nope"}));
    assert_eq!(wrong["ok"], false);

    let sent = emu.post_json(
        "/_emulator/webhook/inbound",
        json!({
        "from": "16505551234", "phone_number_id": PHONE_ID, "type": "text",
        "text": {"body": "Caf\u{e9} \u{1F600} https://example.com/a"}}),
    );
    assert_eq!(sent["delivery"]["status"], 200, "{sent}");
    let body = sent["delivery"]["body"].as_str().unwrap();
    assert!(
        body.contains("\\u00e9") && body.contains("\\ud83d\\ude00") && body.contains("\\/"),
        "Meta escaping: {body}"
    );
    let image = emu.post_json("/_emulator/webhook/inbound", json!({
        "from": "16505551234", "phone_number_id": PHONE_ID, "type": "image", "image": {"caption": "look"}}));
    let got = messages(&host, 3);
    assert_eq!(
        got[0].args[0].as_deref(),
        Some("Caf\u{e9} \u{1F600} https://example.com/a")
    );
    assert_eq!(got[0].args[4].as_deref(), sent["id"].as_str());
    assert_eq!(got[1].kind, "media");
    assert_eq!(got[1].args[2].as_deref(), image["id"].as_str());
    assert_eq!(got[2].args[0].as_deref(), Some("look"));

    // The inbound media id resolves to real bytes: forward it.
    let media_id = got[1].args[3].clone().unwrap();
    let receiver = Receiver::start(200);
    let r = wa_client_request_media(
        host.client,
        cstr(&receiver.url).as_ptr(),
        cstr(&media_id).as_ptr(),
        std::ptr::null(),
        ctx(5),
    );
    assert_eq!(r, wa_result::WA_OK);
    let result = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(
        (result.error, result.content.as_str()),
        (WHATSAPP_ERR_OK, "200"),
        "{result:?}"
    );
    assert!(receiver.requests()[0].body_len > 0);
}

#[test]
fn statuses_after_a_send_come_back_with_its_callback_info() {
    let emu = Emulator::start();
    let host = listening(&emu, APP_SECRET, json!({"auto_statuses": true}));
    assert_eq!(
        host.send(r#"{"body":"track me"}"#, "+16505551234", "text", 1),
        wa_result::WA_OK
    );
    let result = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(result.error, WHATSAPP_ERR_OK);
    let statuses = messages(&host, 3);
    let seen: Vec<(String, String, String)> = statuses
        .iter()
        .map(|s| {
            (
                s.args[0].clone().unwrap(),
                s.args[4].clone().unwrap(),
                s.args[5].clone().unwrap_or_default(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = ["sent", "delivered", "read"]
        .iter()
        .map(|st| (st.to_string(), result.content.clone(), "info-1".to_string()))
        .collect();
    assert_eq!(
        seen, expected,
        "status, the send's wamid, its callback_info"
    );
    assert!(statuses
        .iter()
        .all(|s| s.args[3].as_deref() == Some("status")));

    // A failure reported only by webhook (131047 after a 200).
    emu.fault(json!({"times": 1, "action": {"async_error": {"code": 131047}}}));
    assert_eq!(
        host.send(r#"{"body":"too late"}"#, "+16505551234", "text", 2),
        wa_result::WA_OK
    );
    let result = host.wait_results(2, 10 * SECS).remove(1);
    assert_eq!(result.error, WHATSAPP_ERR_OK, "Graph accepted it");
    let failed = messages(&host, 4).remove(3);
    assert!(
        failed.args[0]
            .as_deref()
            .unwrap()
            .starts_with("failed (#131047)"),
        "{failed:?}"
    );
    assert_eq!(failed.args[4].as_deref(), Some(result.content.as_str()));
}

#[test]
fn duplicates_are_dropped_and_refusals_are_redelivered() {
    let emu = Emulator::start();
    // Without the app secret the listener refuses (fail closed) and Meta retries.
    let host = listening(&emu, "", json!({}));
    let first = emu.post_json("/_emulator/webhook/inbound", json!({
        "from": "16505551234", "phone_number_id": PHONE_ID, "type": "text", "text": {"body": "later"}, "duplicate": true}));
    assert_eq!(first["delivery"]["status"], 503, "{first}");
    assert!(host.drain_inbound(Duration::from_millis(20)).is_empty());
    // The secret arrives; the emulator's retries now succeed, the duplicate is dropped.
    assert_eq!(
        wa_client_set_config(host.client, cstr(TOKEN).as_ptr(), cstr(APP_SECRET).as_ptr()),
        wa_result::WA_OK
    );
    let _ = messages(&host, 1);
    std::thread::sleep(Duration::from_millis(500));
    let got_all: Vec<_> = messages(&host, 0)
        .into_iter()
        .filter(|i| i.kind == "message")
        .collect();
    assert_eq!(got_all.len(), 1, "{got_all:?}");
    assert_eq!(got_all[0].args[0].as_deref(), Some("later"));
    let deliveries: Value = direct_http()
        .get(format!("{}/_emulator/webhook/deliveries", emu.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let attempts: usize = deliveries["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["attempts"].as_array().unwrap().len())
        .sum();
    assert!(attempts >= 3, "refused, retried, duplicated: {deliveries}");
    // Every delivery (the original and its duplicate) ended answered 200, the duplicate too:
    // dropping a repeat is not refusing it (Meta would retry a refusal).
    for delivery in deliveries["deliveries"].as_array().unwrap() {
        assert_eq!(delivery["delivered"], true, "{delivery}");
        let last = delivery["attempts"].as_array().unwrap().last().unwrap();
        assert_eq!(last["status"], 200, "{delivery}");
    }
}
