//! The send path through the C API against the emulator: request bodies, error mapping,
//! retries, hold-until-token, ordering, pacing, queue limits and close.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use whatsapp_connector::ffi::options::*;
use whatsapp_connector::ffi::result::whatsapp_error_t::*;
use whatsapp_connector::ffi::wa_result;

const TO: &str = "+49 151 2345678";

fn ok_results(results: &[SendResult]) {
    for r in results {
        assert_eq!(r.error, WHATSAPP_ERR_OK, "{r:?}");
        assert!(r.content.starts_with("wamid."), "{r:?}");
    }
}

#[test]
fn every_message_type_is_sent_as_the_cloud_api_expects() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    // (type given, message JSON, type on the wire, content expected on the wire)
    let cases: Vec<(&str, Value, &str, Value)> = vec![
        (
            "text",
            json!({"body":"hi","preview_url":false}),
            "text",
            json!({"body":"hi","preview_url":false}),
        ),
        (
            "image",
            json!({"id":"1037543291543636","caption":"Invoice"}),
            "image",
            json!({"id":"1037543291543636","caption":"Invoice"}),
        ),
        (
            "audio",
            json!({"id":"4490709327384033","voice":true}),
            "audio",
            json!({"id":"4490709327384033","voice":true}),
        ),
        (
            "video",
            json!({"link":"https://example.com/v.mp4","caption":"Demo"}),
            "video",
            json!({"link":"https://example.com/v.mp4","caption":"Demo"}),
        ),
        (
            "document",
            json!({"link":"https://example.com/a.pdf","filename":"a.pdf"}),
            "document",
            json!({"link":"https://example.com/a.pdf","filename":"a.pdf"}),
        ),
        (
            "sticker",
            json!({"id":"503335829198997"}),
            "sticker",
            json!({"id":"503335829198997"}),
        ),
        (
            "location",
            json!({"latitude":37.758056,"longitude":-122.425332,"name":"META HQ","address":"1 Hacker Way"}),
            "location",
            json!({"latitude":37.758056,"longitude":-122.425332,"name":"META HQ","address":"1 Hacker Way"}),
        ),
        (
            "contacts",
            json!([{"name":{"formatted_name":"John Smith","first_name":"John"},"phones":[{"phone":"+1 (650) 555-1234","type":"WORK"}]}]),
            "contacts",
            json!([{"name":{"formatted_name":"John Smith","first_name":"John"},"phones":[{"phone":"+1 (650) 555-1234","type":"WORK"}]}]),
        ),
        (
            "contact",
            json!({"name":{"formatted_name":"Jane"}}),
            "contacts",
            json!([{"name":{"formatted_name":"Jane"}}]),
        ),
        (
            "media",
            json!({"type":"image","link":"https://example.com/p.png"}),
            "image",
            json!({"link":"https://example.com/p.png"}),
        ),
        (
            "interactive",
            json!({"type":"button","body":{"text":"Pick one"},"action":{"buttons":[{"type":"reply","reply":{"id":"yes","title":"Yes"}},{"type":"reply","reply":{"id":"no","title":"No"}}]}}),
            "interactive",
            json!({"type":"button","body":{"text":"Pick one"},"action":{"buttons":[{"type":"reply","reply":{"id":"yes","title":"Yes"}},{"type":"reply","reply":{"id":"no","title":"No"}}]}}),
        ),
        (
            "interactive",
            json!({"type":"list","body":{"text":"Choose"},"action":{"button":"Options","sections":[{"title":"Fast","rows":[{"id":"express","title":"Express"}]}]}}),
            "interactive",
            json!({"type":"list","body":{"text":"Choose"},"action":{"button":"Options","sections":[{"title":"Fast","rows":[{"id":"express","title":"Express"}]}]}}),
        ),
        (
            "template",
            json!({"name":"hello_world","language":{"code":"en_US"}}),
            "template",
            json!({"name":"hello_world","language":{"code":"en_US"}}),
        ),
        (
            "template",
            json!({"name":"order_update","language":{"code":"en_US"},"components":[{"type":"body","parameters":[{"type":"text","text":"Jessica"}]},{"type":"button","sub_type":"quick_reply","index":"0","parameters":[{"type":"payload","payload":"STOP"}]}]}),
            "template",
            json!({"name":"order_update","language":{"code":"en_US"},"components":[{"type":"body","parameters":[{"type":"text","text":"Jessica"}]},{"type":"button","sub_type":"quick_reply","index":"0","parameters":[{"type":"payload","payload":"STOP"}]}]}),
        ),
        (
            "reaction",
            json!({"message_id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRB","emoji":"\u{1F600}"}),
            "reaction",
            json!({"message_id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRB","emoji":"\u{1F600}"}),
        ),
        (
            "reaction",
            json!({"message_id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRB","emoji":""}),
            "reaction",
            json!({"message_id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRB","emoji":""}),
        ),
    ];
    for (i, (kind, content, _, _)) in cases.iter().enumerate() {
        assert_eq!(
            host.send(&content.to_string(), TO, kind, i + 1),
            wa_result::WA_OK,
            "{kind}: {}",
            last_error()
        );
    }
    let results = host.wait_results(cases.len(), 10 * SECS);
    ok_results(&results);
    let sends = emu.sends();
    assert_eq!(sends.len(), cases.len());
    for (i, (kind, _, wire_type, wire_content)) in cases.iter().enumerate() {
        let ctx = i + 1;
        let request = sends
            .iter()
            .find(|r| r["body"]["biz_opaque_callback_data"] == format!("info-{ctx}"))
            .unwrap_or_else(|| panic!("no request for case {ctx} ({kind})"));
        assert_eq!(request["method"], "POST");
        assert_eq!(request["path"], format!("/v26.0/{PHONE_ID}/messages"));
        assert_eq!(
            request["headers"]["authorization"],
            format!("Bearer {TOKEN}")
        );
        assert!(request["headers"]["content-type"]
            .as_str()
            .unwrap()
            .starts_with("application/json"));
        assert!(request["headers"]["user-agent"]
            .as_str()
            .unwrap()
            .starts_with("whatsapp-connector/"));
        let mut expected = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": TO,
            "type": wire_type,
            "biz_opaque_callback_data": format!("info-{ctx}"),
        });
        expected[*wire_type] = wire_content.clone();
        assert_eq!(request["body"], expected, "case {ctx} ({kind})");
        assert_eq!(request["response_status"], 200);
        let result = results
            .iter()
            .find(|r| r.ctx == ctx)
            .expect("result for each ctx");
        assert_eq!(
            result.callback_info.as_deref(),
            Some(format!("info-{ctx}").as_str())
        );
        assert_eq!(
            Some(result.content.as_str()),
            request["wamid"].as_str(),
            "result carries Graph's wamid"
        );
    }
}

#[test]
fn replies_carry_context_and_long_callback_info_stays_local() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    let long_info = "x".repeat(600);
    assert_eq!(
        host.send_full(
            r#"{"body":"re"}"#,
            TO,
            "text",
            PHONE_ID,
            Some(&long_info),
            Some("wamid.ORIGINAL"),
            1
        ),
        wa_result::WA_OK
    );
    assert_eq!(
        host.send_full(r#"{"body":"no info"}"#, TO, "text", PHONE_ID, None, None, 2),
        wa_result::WA_OK
    );
    let results = host.wait_results(2, 5 * SECS);
    ok_results(&results);
    let sends = emu.sends();
    assert_eq!(
        sends[0]["body"]["context"],
        json!({"message_id":"wamid.ORIGINAL"})
    );
    assert!(sends[0]["body"].get("biz_opaque_callback_data").is_none());
    assert_eq!(
        results[0].callback_info.as_deref(),
        Some(long_info.as_str())
    );
    assert_eq!(results[1].callback_info, None);
    assert!(sends[1]["body"].get("context").is_none());
}

#[test]
fn configured_version_is_used_and_reported() {
    let emu = Emulator::start();
    let opts = Opts::for_emulator(&emu);
    assert_eq!(
        wa_options_set_api_version(opts.0, cstr("v25.0").as_ptr()),
        wa_result::WA_OK
    );
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    let version = unsafe {
        std::ffi::CStr::from_ptr(whatsapp_connector::ffi::client::wa_client_version(
            host.client,
        ))
    };
    assert_eq!(version.to_str().unwrap(), "v25.0");
    assert_eq!(host.text("hi", TO, 1), wa_result::WA_OK);
    ok_results(&host.wait_results(1, 5 * SECS));
    assert_eq!(
        emu.sends()[0]["path"],
        format!("/v25.0/{PHONE_ID}/messages")
    );
}

/// Sends one text and returns its result and the requests the emulator saw.
fn one_result(emu: &Emulator, host: &Host, channel: &str) -> (SendResult, Vec<Value>) {
    assert_eq!(
        host.send_full(r#"{"body":"x"}"#, TO, "text", channel, None, None, 7),
        wa_result::WA_OK
    );
    let r = host.wait_results(1, 10 * SECS).remove(0);
    (r, emu.sends())
}

fn graph_error(code: i64) -> Value {
    json!({"times": 1, "action": {"error": {"code": code}}})
}

#[test]
fn error_mapping_missing_token_and_version() {
    let emu = Emulator::start();
    let opts = Opts::for_emulator(&emu);
    assert_eq!(wa_options_set_token_hold_ms(opts.0, 200), wa_result::WA_OK);
    let host = Host::new(&opts);
    let (r, sends) = one_result(&emu, &host, PHONE_ID);
    assert_eq!(r.error, WHATSAPP_ERR_MISSING_TOKEN);
    assert!(sends.is_empty(), "no request without a token");

    let opts = Opts::for_emulator(&emu);
    assert_eq!(
        wa_options_set_api_version(opts.0, cstr("").as_ptr()),
        wa_result::WA_OK
    );
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    let version = unsafe {
        std::ffi::CStr::from_ptr(whatsapp_connector::ffi::client::wa_client_version(
            host.client,
        ))
    };
    assert_eq!(version.to_str().unwrap(), "");
    let (r, sends) = one_result(&emu, &host, PHONE_ID);
    assert_eq!(r.error, WHATSAPP_ERR_MISSING_VERSION);
    assert!(sends.is_empty(), "no request without a version");
}

#[test]
fn error_mapping_not_found() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    // The emulator answers 100/33 "does not exist" for an unknown phone number id.
    let (r, sends) = one_result(&emu, &host, "unknown_phone");
    assert_eq!(r.error, WHATSAPP_ERR_NOT_FOUND, "{r:?}");
    assert_eq!(sends.len(), 1, "not retried");
    assert!(r.content.contains("does not exist"), "{}", r.content);

    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    emu.fault(json!({"action": {"http_status": 404, "body": "Not Found"}}));
    let (r, sends) = one_result(&emu, &host, PHONE_ID);
    assert_eq!(r.error, WHATSAPP_ERR_NOT_FOUND, "{r:?}");
    assert_eq!(sends.len(), 1);
}

#[test]
fn error_mapping_bad_request() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    // Accepted locally (the library checks required fields only), refused by Graph's rules.
    let four_buttons = json!({"type":"button","body":{"text":"b"},"action":{"buttons":[
        {"type":"reply","reply":{"id":"1","title":"1"}},{"type":"reply","reply":{"id":"2","title":"2"}},
        {"type":"reply","reply":{"id":"3","title":"3"}},{"type":"reply","reply":{"id":"4","title":"4"}}]}});
    assert_eq!(
        host.send(&four_buttons.to_string(), TO, "interactive", 1),
        wa_result::WA_OK
    );
    let r = host.wait_results(1, 5 * SECS).remove(0);
    assert_eq!(r.error, WHATSAPP_ERR_BAD_REQUEST, "{r:?}");
    assert!(
        r.content.starts_with("(#100)"),
        "Graph's text is passed on: {}",
        r.content
    );
    assert_eq!(emu.sends().len(), 1, "not retried");

    for code in [131047, 131026, 132001, 100] {
        let emu = Emulator::start();
        let host = Host::with_token(&emu);
        emu.fault(graph_error(code));
        let (r, sends) = one_result(&emu, &host, PHONE_ID);
        assert_eq!(r.error, WHATSAPP_ERR_BAD_REQUEST, "code {code}: {r:?}");
        assert_eq!(sends.len(), 1, "code {code} is not retried");
        assert!(r.content.contains(&format!("(#{code})")), "{}", r.content);
    }
}

#[test]
fn error_mapping_authentication_failed() {
    let emu = Emulator::start();
    let host = Host::new(&Opts::for_emulator(&emu));
    host.set_token("wrong-token");
    let (r, sends) = one_result(&emu, &host, PHONE_ID);
    assert_eq!(r.error, WHATSAPP_ERR_AUTHENTICATION_FAILED, "{r:?}");
    assert_eq!(sends.len(), 1, "not retried");
    assert_eq!(sends[0]["response_status"], 401);

    for code in [0, 10, 190, 200, 299] {
        let emu = Emulator::start();
        let host = Host::with_token(&emu);
        emu.fault(graph_error(code));
        let (r, sends) = one_result(&emu, &host, PHONE_ID);
        assert_eq!(
            r.error, WHATSAPP_ERR_AUTHENTICATION_FAILED,
            "code {code}: {r:?}"
        );
        assert_eq!(sends.len(), 1);
    }
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    emu.fault(json!({"action": {"http_status": 403, "body": "<html>forbidden</html>"}}));
    let (r, _) = one_result(&emu, &host, PHONE_ID);
    assert_eq!(r.error, WHATSAPP_ERR_AUTHENTICATION_FAILED, "{r:?}");
}

#[test]
fn error_mapping_other_http_after_retries_are_exhausted() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    emu.fault(json!({"action": {"http_status": 503, "body": "overloaded"}}));
    let (r, sends) = one_result(&emu, &host, PHONE_ID);
    assert_eq!(r.error, WHATSAPP_ERR_OTHER_HTTP, "{r:?}");
    assert_eq!(sends.len(), 4, "max_attempts = 4 in the test options");

    // A non-retryable Graph code on a 5xx is final at once.
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    emu.fault(json!({"action": {"error": {"code": 368, "http_status": 500}}}));
    let (r, sends) = one_result(&emu, &host, PHONE_ID);
    assert_eq!(r.error, WHATSAPP_ERR_OTHER_HTTP, "{r:?}");
    assert_eq!(sends.len(), 1);

    // Nothing listening: connection refused on every attempt.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let host = Host::new(&Opts::for_graph(&dead_url));
    host.set_token(TOKEN);
    assert_eq!(host.text("x", TO, 1), wa_result::WA_OK);
    let r = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(r.error, WHATSAPP_ERR_OTHER_HTTP);
    assert!(r.content.contains("connection"), "{}", r.content);
}

#[test]
fn transient_errors_are_retried_until_success() {
    for action in [
        json!({"error": {"code": 131016}}),
        json!({"error": {"code": 130429}}),
        json!({"error": {"code": 2}}),
        json!({"http_status": 502, "body": "bad gateway"}),
        json!({"drop": true}),
    ] {
        let emu = Emulator::start();
        let host = Host::with_token(&emu);
        emu.fault(json!({"times": 2, "action": action}));
        let (r, sends) = one_result(&emu, &host, PHONE_ID);
        assert_eq!(r.error, WHATSAPP_ERR_OK, "{action}: {r:?}");
        assert_eq!(sends.len(), 3, "{action}: two failures then success");
        assert_eq!(
            sends[0]["body"], sends[2]["body"],
            "the same request is repeated"
        );
    }
}

#[test]
fn timeouts_are_retried() {
    let emu = Emulator::start();
    let opts = Opts::for_emulator(&emu);
    assert_eq!(
        wa_options_set_request_timeout_ms(opts.0, 300),
        wa_result::WA_OK
    );
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    emu.fault(json!({"times": 1, "action": {"delay_ms": 1500}}));
    let (r, _) = one_result(&emu, &host, PHONE_ID);
    assert_eq!(r.error, WHATSAPP_ERR_OK, "{r:?}");
    // The emulator records the abandoned request once its delay is over: two sends prove the
    // slow answer was not awaited (awaiting it would have succeeded with one).
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(emu.sends().len(), 2);
}

#[test]
fn retry_after_is_honoured() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    emu.fault(json!({"times": 1, "action": {"error": {"code": 130429, "http_status": 429}, "retry_after_s": 1}}));
    let (r, sends) = one_result(&emu, &host, PHONE_ID);
    assert_eq!(r.error, WHATSAPP_ERR_OK);
    assert_eq!(sends.len(), 2);
    let gap =
        sends[1]["received_at_ms"].as_u64().unwrap() - sends[0]["received_at_ms"].as_u64().unwrap();
    assert!(gap >= 950, "retried after {gap} ms despite Retry-After: 1");
}

#[test]
fn messages_are_held_until_a_token_is_set() {
    let emu = Emulator::start();
    let host = Host::new(&Opts::for_emulator(&emu));
    for i in 0..3 {
        assert_eq!(host.text(&format!("held {i}"), TO, i), wa_result::WA_OK);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(wa_client_dispatch_count(&host), 0, "no result while held");
    assert!(emu.sends().is_empty());
    host.set_token(TOKEN);
    let results = host.wait_results(3, 5 * SECS);
    ok_results(&results);
    let bodies: Vec<_> = emu
        .sends()
        .iter()
        .map(|s| s["body"]["text"]["body"].clone())
        .collect();
    assert_eq!(
        bodies,
        vec![json!("held 0"), json!("held 1"), json!("held 2")]
    );
}

fn wa_client_dispatch_count(host: &Host) -> usize {
    let mut n = 0;
    assert_eq!(
        whatsapp_connector::ffi::client::wa_client_dispatch(host.client, &mut n),
        wa_result::WA_OK
    );
    host.seen().results.len()
}

#[test]
fn order_holds_per_recipient_while_recipients_proceed_concurrently() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    let slow = "+15550000001";
    let fast = "+15550000002";
    emu.fault(json!({"match": {"to": slow}, "action": {"delay_ms": 200}}));
    for i in 0..5 {
        assert_eq!(host.text(&format!("slow {i}"), slow, i), wa_result::WA_OK);
        assert_eq!(
            host.text(&format!("fast {i}"), fast, 100 + i),
            wa_result::WA_OK
        );
    }
    let results = host.wait_results(10, 10 * SECS);
    ok_results(&results);
    let sends = emu.sends();
    let texts = |to: &str| -> Vec<String> {
        sends
            .iter()
            .filter(|s| s["to"].as_str() == Some(to))
            .map(|s| s["body"]["text"]["body"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        texts(slow),
        (0..5).map(|i| format!("slow {i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        texts(fast),
        (0..5).map(|i| format!("fast {i}")).collect::<Vec<_>>()
    );
    // The next message to a recipient waits for the previous one's outcome.
    let slow_times: Vec<u64> = sends
        .iter()
        .filter(|s| s["to"].as_str() == Some(slow))
        .map(|s| s["received_at_ms"].as_u64().unwrap())
        .collect();
    for pair in slow_times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 190,
            "sent before the previous answer: {slow_times:?}"
        );
    }
    // The fast recipient did not wait behind the slow one.
    let order: Vec<usize> = results.iter().map(|r| r.ctx).collect();
    let last_fast = order.iter().position(|c| *c == 104).unwrap();
    let last_slow = order.iter().position(|c| *c == 4).unwrap();
    assert!(last_fast < last_slow, "results order {order:?}");
    // Results per recipient arrive in send order.
    let slow_order: Vec<usize> = order.iter().copied().filter(|c| *c < 100).collect();
    assert_eq!(slow_order, vec![0, 1, 2, 3, 4]);
}

#[test]
fn sending_is_paced_per_channel() {
    let emu = Emulator::start();
    // The emulator enforces the limit too: any excess would come back as 130429.
    emu.config(json!({"throughput_mps": 25}));
    let opts = Opts::for_emulator(&emu);
    assert_eq!(wa_options_set_channel_rate(opts.0, 20), wa_result::WA_OK);
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    for i in 0..40 {
        assert_eq!(
            host.text("paced", &format!("+1555000{i:04}"), i),
            wa_result::WA_OK
        );
    }
    ok_results(&host.wait_results(40, 10 * SECS));
    let times: Vec<u64> = emu
        .sends()
        .iter()
        .map(|s| s["received_at_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(times.len(), 40, "no request was refused or retried");
    let span = times[39] - times[0];
    assert!(span >= 1600, "40 messages at 20/s took only {span} ms");
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..].iter().take_while(|u| **u < t + 1000).count();
        assert!(in_window <= 23, "{in_window} requests within one second");
    }
}

/// Graph's real limit for the number is a quarter of what the client was told: the 130429
/// answers slow the whole channel down (and their retries are bounded by the message's age, not
/// its attempts), so that every message of the burst is delivered, late rather than failed, in
/// per-recipient order.
#[test]
fn a_lower_throughput_limit_delays_messages_instead_of_failing_them() {
    const MESSAGES: usize = 120;
    const RECIPIENTS: usize = 6;
    let emu = Emulator::start();
    emu.config(json!({"throughput_mps": 40}));
    // The test options: 4 attempts within 60 s, backoff 20..200 ms.
    let opts = Opts::for_emulator(&emu);
    assert_eq!(wa_options_set_channel_rate(opts.0, 160), wa_result::WA_OK);
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    let to = |i: usize| format!("+1555000{:04}", i % RECIPIENTS);
    for i in 0..MESSAGES {
        assert_eq!(host.text(&format!("t{i}"), &to(i), i), wa_result::WA_OK);
    }
    let results = host.wait_results(MESSAGES, 30 * SECS);
    ok_results(&results);
    let sends = emu.sends();
    for k in 0..RECIPIENTS {
        let expected: Vec<usize> = (k..MESSAGES).step_by(RECIPIENTS).collect();
        let answered: Vec<usize> = results
            .iter()
            .map(|r| r.ctx)
            .filter(|c| c % RECIPIENTS == k)
            .collect();
        assert_eq!(answered, expected, "results to recipient {k} in send order");
        let delivered: Vec<usize> = sends
            .iter()
            .filter(|s| s["response_status"] == 200 && s["to"].as_str() == Some(&to(k)))
            .map(|s| {
                s["body"]["text"]["body"].as_str().unwrap()[1..]
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(delivered, expected, "order at Graph for recipient {k}");
    }
    let refused = sends
        .iter()
        .filter(|s| s["response_body"]["error"]["code"] == 130429)
        .count();
    assert!(refused > 0, "the limit was hit");
    // Only the channel slowing down keeps the refusals this rare: at the configured rate, with
    // only the refused recipients backing off, most of the offered excess came back as 130429.
    assert!(
        refused <= MESSAGES / 4,
        "{refused} requests answered 130429 for {MESSAGES} messages"
    );
}

/// Refusals for throughput do not use up a message's attempts (4 in the test options): only
/// its age bounds them.
#[test]
fn throughput_refusals_do_not_use_up_the_attempts() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    emu.fault(json!({"times": 5, "action": {"error": {"code": 130429}, "retry_after_s": 0}}));
    let (r, sends) = one_result(&emu, &host, PHONE_ID);
    assert_eq!(r.error, WHATSAPP_ERR_OK, "{r:?}");
    assert_eq!(sends.len(), 6, "five refusals, then the message went out");
}

#[test]
fn pair_rate_limit_slows_the_recipient() {
    let emu = Emulator::start();
    let opts = Opts::for_emulator(&emu);
    assert_eq!(
        wa_options_set_pair_rate_backoff_ms(opts.0, 400),
        wa_result::WA_OK
    );
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    emu.fault(json!({"times": 1, "match": {"to": TO}, "action": {"error": {"code": 131056}}}));
    for i in 0..3 {
        assert_eq!(host.text(&format!("m{i}"), TO, i), wa_result::WA_OK);
    }
    ok_results(&host.wait_results(3, 10 * SECS));
    let times: Vec<u64> = emu
        .sends()
        .iter()
        .map(|s| s["received_at_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(times.len(), 4, "one 131056 then three successes");
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 390,
            "recipient not slowed down: {times:?}"
        );
    }
}

#[test]
fn a_full_outbox_refuses_at_once() {
    let emu = Emulator::start();
    let opts = Opts::for_emulator(&emu);
    assert_eq!(wa_options_set_outbox_capacity(opts.0, 5), wa_result::WA_OK);
    let host = Host::new(&opts);
    for i in 0..5 {
        assert_eq!(host.text("q", TO, i), wa_result::WA_OK);
    }
    assert_eq!(host.text("q", TO, 5), wa_result::WA_ERR_QUEUE_FULL);
    assert_eq!(
        whatsapp_connector::ffi::client::wa_client_pending(host.client),
        5
    );
    host.set_token(TOKEN);
    let results = host.wait_results(5, 5 * SECS);
    ok_results(&results);
    assert!(
        results.iter().all(|r| r.ctx < 5),
        "the refused message got no result"
    );
    assert_eq!(
        host.text("q", TO, 6),
        wa_result::WA_OK,
        "room again after results"
    );
    let results = host.wait_results(6, 5 * SECS);
    ok_results(&results);
    let mut ctxs: Vec<usize> = results.iter().map(|r| r.ctx).collect();
    ctxs.sort_unstable();
    assert_eq!(ctxs, vec![0, 1, 2, 3, 4, 6]);
}

/// A result holds its message's place in the outbox until the host's callback got it: a host
/// that does not dispatch is refused instead of results piling up in memory.
#[test]
fn results_not_yet_dispatched_hold_their_place_in_the_outbox() {
    let emu = Emulator::start();
    let opts = Opts::for_emulator(&emu);
    assert_eq!(wa_options_set_outbox_capacity(opts.0, 10), wa_result::WA_OK);
    // No version: every message fails at once, without a request.
    assert_eq!(
        wa_options_set_api_version(opts.0, cstr("").as_ptr()),
        wa_result::WA_OK
    );
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    for i in 0..10 {
        assert_eq!(host.text("x", TO, i), wa_result::WA_OK);
    }
    // Give the results time to be queued (they are, within microseconds).
    let mut fd = -1;
    assert_eq!(
        whatsapp_connector::ffi::client::wa_client_event_fd(host.client, &mut fd),
        wa_result::WA_OK
    );
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(
        unsafe { libc::poll(&mut poll, 1, 5000) },
        1,
        "results queued"
    );
    std::thread::sleep(Duration::from_millis(200));
    for i in 10..20 {
        assert_eq!(
            host.text("x", TO, i),
            wa_result::WA_ERR_QUEUE_FULL,
            "message {i} accepted while 10 results wait to be dispatched"
        );
    }
    assert_eq!(
        whatsapp_connector::ffi::client::wa_client_pending(host.client),
        10
    );
    let results = host.wait_results(10, 5 * SECS);
    assert!(results
        .iter()
        .all(|r| r.error == WHATSAPP_ERR_MISSING_VERSION && r.ctx < 10));
    assert_eq!(
        whatsapp_connector::ffi::client::wa_client_pending(host.client),
        0
    );
    for i in 20..30 {
        assert_eq!(
            host.text("x", TO, i),
            wa_result::WA_OK,
            "room once dispatched"
        );
    }
    assert_eq!(host.text("x", TO, 30), wa_result::WA_ERR_QUEUE_FULL);
    // A host sending again from inside a result callback finds the room that result left,
    // though the nine results after it still wait.
    let client = host.client as usize;
    let again = Arc::new(Mutex::new(None));
    let seen_again = again.clone();
    *host.state.on_result.lock().unwrap() = Some(Box::new(move |r| {
        if r.ctx == 20 {
            let json = cstr(r#"{"body":"again"}"#);
            let result = whatsapp_connector::ffi::client::wa_client_send_message(
                client as *mut whatsapp_connector::ffi::client::wa_client,
                json.as_ptr(),
                cstr(TO).as_ptr(),
                cstr("text").as_ptr(),
                cstr(PHONE_ID).as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                31 as *mut std::ffi::c_void,
            );
            *seen_again.lock().unwrap() = Some(result);
        }
    }));
    host.wait_results(20, 5 * SECS);
    assert_eq!(*again.lock().unwrap(), Some(wa_result::WA_OK));
    let results = host.wait_results(21, 5 * SECS);
    assert_eq!(results[20].ctx, 31);
}

#[test]
fn close_answers_pending_messages_then_completes_last() {
    let emu = Emulator::start();
    let mut host = Host::new(&Opts::for_emulator(&emu));
    for i in 0..5 {
        assert_eq!(
            host.text("pending", &format!("+1555000{i:04}"), i),
            wa_result::WA_OK
        );
    }
    host.close_and_wait(5 * SECS);
    assert_eq!(host.text("late", TO, 9), wa_result::WA_ERR_CLOSED);
    assert_eq!(
        whatsapp_connector::ffi::client::wa_client_close(host.client),
        wa_result::WA_OK,
        "close twice is a no-op"
    );
    // Nothing more arrives after close-complete.
    assert_eq!(
        whatsapp_connector::ffi::client::wa_client_wait(host.client, 200, std::ptr::null_mut()),
        wa_result::WA_OK
    );
    host.free();
    let seen = host.seen();
    assert_eq!(seen.results.len(), 5);
    assert!(seen.results.iter().all(|r| r.error == WHATSAPP_ERR_CLOSING));
    assert_eq!(seen.close_complete, 1);
    assert_eq!(seen.destroyed, 1);
    assert!(!seen.after_end);
    let tail: Vec<_> = seen.order.iter().rev().take(2).collect();
    assert_eq!(tail, vec![&"destroy", &"close"]);
    assert!(emu.sends().is_empty());
}

#[test]
fn close_lets_requests_on_the_wire_finish_within_the_drain_time() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    emu.fault(json!({"action": {"delay_ms": 300}}));
    assert_eq!(host.text("in flight", TO, 1), wa_result::WA_OK);
    assert_eq!(host.text("queued behind", TO, 2), wa_result::WA_OK);
    // The emulator records a request once answered, so wait a fraction of the delay instead.
    std::thread::sleep(Duration::from_millis(100));
    host.close_and_wait(5 * SECS);
    let seen = host.seen();
    let by_ctx = |c: usize| seen.results.iter().find(|r| r.ctx == c).unwrap().error;
    assert_eq!(
        by_ctx(1),
        WHATSAPP_ERR_OK,
        "the request on the wire finished"
    );
    assert_eq!(by_ctx(2), WHATSAPP_ERR_CLOSING);
    assert_eq!(seen.order.last(), Some(&"close"));
    drop(seen);

    // A drain time shorter than the answer: the request is abandoned with CLOSING.
    let emu = Emulator::start();
    let opts = Opts::for_emulator(&emu);
    assert_eq!(
        wa_options_set_drain_timeout_ms(opts.0, 100),
        wa_result::WA_OK
    );
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    emu.fault(json!({"action": {"delay_ms": 3000}}));
    assert_eq!(host.text("slow", TO, 1), wa_result::WA_OK);
    std::thread::sleep(Duration::from_millis(100));
    host.close_and_wait(5 * SECS);
    // Waiting for the slow answer would have ended the message OK, not CLOSING.
    assert_eq!(host.seen().results[0].error, WHATSAPP_ERR_CLOSING);
}

#[test]
fn secrets_never_reach_results_or_logs() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    emu.fault(json!({"times": 1, "action": {"error": {"code": 100, "message": format!("bad token {TOKEN} and app-secret"), "details": format!("echo {TOKEN}")}}}));
    let (r, _) = one_result(&emu, &host, PHONE_ID);
    assert_eq!(r.error, WHATSAPP_ERR_BAD_REQUEST);
    assert!(
        !r.content.contains(TOKEN) && !r.content.contains("app-secret"),
        "{}",
        r.content
    );
    assert!(r.content.contains("[redacted]"));
    let seen = host.seen();
    assert!(!seen.logs.is_empty(), "debug logging produced lines");
    for (_, line) in &seen.logs {
        assert!(
            !line.contains(TOKEN) && !line.contains("app-secret"),
            "secret in log: {line}"
        );
    }
}

/// A Graph whose certificate does not verify (no CA certificates on the machine, an
/// intercepting proxy): the message fails at once with a text that says so, instead of being
/// retried for the whole retry time.
#[test]
fn an_untrusted_certificate_fails_the_send_at_once() {
    let server = UntrustedTls::start();
    let host = Host::new(&Opts::for_graph(&server.url));
    host.set_token(TOKEN);
    assert_eq!(host.text("hi", TO, 1), wa_result::WA_OK);
    let result = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(result.error, WHATSAPP_ERR_OTHER_HTTP, "{result:?}");
    assert!(
        result
            .content
            .starts_with("TLS: the server's certificate was refused")
            && result.content.contains("CA certificates"),
        "{result:?}"
    );
    assert_eq!(
        server.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "not retried"
    );
}
