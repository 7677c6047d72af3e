//! The inbound path: Meta's verification GET, signatures over the exact bytes, every mapping
//! row of the README's table, dedupe, batches, the allow-list, and bad input; each through the
//! built-in listener and through the host-fed entry point.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use whatsapp_connector::ffi::options::*;
use whatsapp_connector::ffi::wa_result;

const SETTLE: Duration = Duration::from_millis(150);
const VERIFY_TOKEN: &str = "verify-me";

/// How a test reaches the webhook.
#[derive(Clone, Copy, Debug)]
enum Way {
    Listener,
    HostFed,
}

struct Inbox {
    host: Host,
    http: reqwest::blocking::Client,
    way: Way,
    // Keeps the emulator (only used as the Graph base URL) alive.
    _emu: Emulator,
}

impl Inbox {
    fn new(way: Way) -> Self {
        Self::with(way, |_| {})
    }

    fn with(way: Way, configure: impl FnOnce(&Opts)) -> Self {
        let emu = Emulator::start();
        let opts = Opts::for_emulator(&emu);
        if let Way::Listener = way {
            assert_eq!(
                wa_options_set_webhook_listen(opts.0, cstr("127.0.0.1:0").as_ptr()),
                wa_result::WA_OK
            );
        }
        configure(&opts);
        let host = Host::new(&opts);
        host.set_token(TOKEN); // also sets APP_SECRET
        assert_eq!(
            whatsapp_connector::ffi::client::wa_client_set_webhook_token(
                host.client,
                cstr(VERIFY_TOKEN).as_ptr()
            ),
            wa_result::WA_OK
        );
        Inbox {
            host,
            // No pooled connections: after refusing an oversize body the listener closes the
            // connection, and a request that picked it from the pool at that moment would fail.
            http: reqwest::blocking::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            way,
            _emu: emu,
        }
    }

    fn request(
        &self,
        method: &str,
        target: &str,
        signature: Option<&str>,
        body: &[u8],
    ) -> WebhookReply {
        match self.way {
            Way::HostFed => self.host.webhook(method, target, signature, body),
            Way::Listener => {
                let url = format!("http://127.0.0.1:{}{}", self.host.webhook_port(), target);
                let mut request = match method {
                    "GET" => self.http.get(url),
                    "POST" => self.http.post(url).body(body.to_vec()),
                    other => self.http.request(other.parse().unwrap(), url),
                };
                if let Some(signature) = signature {
                    request = request.header("X-Hub-Signature-256", signature);
                }
                request = request.header("Content-Type", "application/json");
                let response = match request.send() {
                    Ok(response) => response,
                    // The listener may answer 413 and close before a large body is written:
                    // the client then sees the connection reset instead of the answer.
                    Err(e) if e.is_request() || e.is_body() => {
                        return WebhookReply {
                            status: 0,
                            content_type: String::new(),
                            body: e.to_string(),
                        }
                    }
                    Err(e) => panic!("listener did not answer: {e}"),
                };
                WebhookReply {
                    status: response.status().as_u16(),
                    content_type: response
                        .headers()
                        .get("content-type")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default(),
                    body: response.text().unwrap(),
                }
            }
        }
    }

    /// POSTs a payload serialised and signed exactly like Meta does.
    fn deliver(&self, payload: &Value) -> WebhookReply {
        self.post_signed(&meta_json(payload))
    }

    /// POSTs `body` as it is, signed with the app secret.
    fn post_signed(&self, body: &[u8]) -> WebhookReply {
        self.request("POST", "/webhook", Some(&sign(APP_SECRET, body)), body)
    }

    /// Inbound callbacks without the raw-change ones.
    fn mapped(&self) -> Vec<Inbound> {
        self.host
            .drain_inbound(SETTLE)
            .into_iter()
            .filter(|i| i.kind != "raw")
            .collect()
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// Expected `recv_message` arguments: msg, tel, channel, type, id, refers_to.
fn message(msg: &str, kind: &str, id: &str, refers_to: Option<&str>) -> Vec<Option<String>> {
    vec![
        s(msg),
        s("16505551234"),
        s(PHONE_ID),
        s(kind),
        s(id),
        refers_to.map(str::to_string),
    ]
}

fn both_ways(test: impl Fn(Way)) {
    test(Way::Listener);
    test(Way::HostFed);
}

#[test]
fn verification_echoes_the_challenge_only_for_the_right_token() {
    both_ways(|way| {
        let inbox = Inbox::new(way);
        let ok = inbox.request(
            "GET",
            "/webhook?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=verify-me",
            None,
            b"",
        );
        assert_eq!(
            (ok.status, ok.body.as_str()),
            (200, "1158201444"),
            "{way:?}"
        );
        assert!(
            ok.content_type.starts_with("text/plain"),
            "{way:?}: {}",
            ok.content_type
        );
        let wrong = inbox.request(
            "GET",
            "/webhook?hub.mode=subscribe&hub.challenge=1&hub.verify_token=nope",
            None,
            b"",
        );
        assert_eq!(wrong.status, 403, "{way:?}");
        assert!(
            !wrong.body.contains('1'),
            "the challenge is not echoed on refusal"
        );
        let no_mode = inbox.request(
            "GET",
            "/webhook?hub.challenge=1&hub.verify_token=verify-me",
            None,
            b"",
        );
        assert_eq!(no_mode.status, 403);
        // Percent-encoded parameters are decoded.
        let encoded = inbox.request(
            "GET",
            "/webhook?hub.mode=subscribe&hub.challenge=a%20b&hub.verify_token=verify%2Dme",
            None,
            b"",
        );
        assert_eq!((encoded.status, encoded.body.as_str()), (200, "a b"));
    });
    // No verify token configured: always refused.
    let emu = Emulator::start();
    let host = Host::new(&Opts::for_emulator(&emu));
    let reply = host.webhook(
        "GET",
        "/webhook?hub.mode=subscribe&hub.challenge=1&hub.verify_token=",
        None,
        b"",
    );
    assert_eq!(reply.status, 403);
}

#[test]
fn every_message_kind_is_mapped_as_documented() {
    both_ways(|way| {
        let inbox = Inbox::new(way);
        let cases: Vec<(Value, Vec<Vec<Option<String>>>)> = vec![
            (
                json!({"from":"16505551234","id":"wamid.TEXT","timestamp":"1749416383","type":"text","text":{"body":"Caf\u{e9} \u{1F600} https://example.com/x"}}),
                vec![message(
                    "Caf\u{e9} \u{1F600} https://example.com/x",
                    "text",
                    "wamid.TEXT",
                    None,
                )],
            ),
            (
                json!({"from":"16505551234","id":"wamid.REPLY","type":"text","text":{"body":"yes"},"context":{"from":"15550783881","id":"wamid.ORIGINAL"}}),
                vec![message(
                    "yes",
                    "text",
                    "wamid.REPLY",
                    Some("wamid.ORIGINAL"),
                )],
            ),
            (
                json!({"from":"16505551234","id":"wamid.IMG","type":"image","image":{"caption":"Taj Mahal","mime_type":"image/jpeg","sha256":"SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=","id":"1003383421387256"}}),
                vec![
                    vec![
                        s("16505551234"),
                        s(PHONE_ID),
                        s("wamid.IMG"),
                        s("1003383421387256"),
                        s("image/jpeg"),
                    ],
                    message("Taj Mahal", "image", "wamid.IMG", None),
                ],
            ),
            (
                json!({"from":"16505551234","id":"wamid.AUD","type":"audio","audio":{"mime_type":"audio/ogg; codecs=opus","sha256":"x=","id":"777","voice":true}}),
                vec![
                    vec![
                        s("16505551234"),
                        s(PHONE_ID),
                        s("wamid.AUD"),
                        s("777"),
                        s("audio/ogg; codecs=opus"),
                    ],
                    message("", "audio", "wamid.AUD", None),
                ],
            ),
            (
                json!({"from":"16505551234","id":"wamid.VID","type":"video","video":{"mime_type":"video/mp4","sha256":"x=","id":"778","caption":"clip"}}),
                vec![
                    vec![
                        s("16505551234"),
                        s(PHONE_ID),
                        s("wamid.VID"),
                        s("778"),
                        s("video/mp4"),
                    ],
                    message("clip", "video", "wamid.VID", None),
                ],
            ),
            (
                json!({"from":"16505551234","id":"wamid.DOC","type":"document","document":{"filename":"r.pdf","mime_type":"application/pdf","sha256":"x=","id":"779"}}),
                vec![
                    vec![
                        s("16505551234"),
                        s(PHONE_ID),
                        s("wamid.DOC"),
                        s("779"),
                        s("application/pdf"),
                    ],
                    message("", "document", "wamid.DOC", None),
                ],
            ),
            (
                json!({"from":"16505551234","id":"wamid.STK","type":"sticker","sticker":{"mime_type":"image/webp","sha256":"x=","id":"780","animated":false}}),
                vec![
                    vec![
                        s("16505551234"),
                        s(PHONE_ID),
                        s("wamid.STK"),
                        s("780"),
                        s("image/webp"),
                    ],
                    message("", "sticker", "wamid.STK", None),
                ],
            ),
            (
                json!({"from":"16505551234","id":"wamid.REACT","type":"reaction","reaction":{"message_id":"wamid.MINE","emoji":"\u{1F44D}"}}),
                vec![message(
                    "\u{1F44D}",
                    "reaction",
                    "wamid.REACT",
                    Some("wamid.MINE"),
                )],
            ),
            (
                json!({"from":"16505551234","id":"wamid.UNREACT","type":"reaction","reaction":{"message_id":"wamid.MINE"}}),
                vec![message("", "reaction", "wamid.UNREACT", Some("wamid.MINE"))],
            ),
            (
                json!({"from":"16505551234","id":"wamid.LOC","type":"location","location":{"latitude":37.44221496582,"longitude":-122.16165924072,"name":"Philz Coffee"}}),
                vec![message(
                    r#"{"latitude":37.44221496582,"longitude":-122.16165924072,"name":"Philz Coffee"}"#,
                    "location",
                    "wamid.LOC",
                    None,
                )],
            ),
            (
                json!({"from":"16505551234","id":"wamid.CON","type":"contacts","contacts":[{"name":{"formatted_name":"Luc\u{ed}a G\u{f3}mez"},"phones":[{"phone":"+1 (983) 555-2319","wa_id":"19835552319","type":"MOBILE"}]}]}),
                vec![message(
                    r#"[{"name":{"formatted_name":"Lucía Gómez"},"phones":[{"phone":"+1 (983) 555-2319","type":"MOBILE","wa_id":"19835552319"}]}]"#,
                    "contact",
                    "wamid.CON",
                    None,
                )],
            ),
            (
                json!({"from":"16505551234","id":"wamid.BTN","type":"interactive","context":{"from":"15550783881","id":"wamid.ASK"},"interactive":{"type":"button_reply","button_reply":{"id":"cancel-button","title":"Cancel"}}}),
                vec![message(
                    "Cancel",
                    "interactive",
                    "wamid.BTN",
                    Some("wamid.ASK"),
                )],
            ),
            (
                json!({"from":"16505551234","id":"wamid.LIST","type":"interactive","context":{"id":"wamid.ASK"},"interactive":{"type":"list_reply","list_reply":{"id":"priority_express","title":"Priority Mail Express","description":"Next Day"}}}),
                vec![message(
                    "Priority Mail Express",
                    "interactive",
                    "wamid.LIST",
                    Some("wamid.ASK"),
                )],
            ),
            (
                json!({"from":"16505551234","id":"wamid.FLOW","type":"interactive","context":{"id":"wamid.ASK"},"interactive":{"type":"nfm_reply","nfm_reply":{"name":"flow","body":"Sent","response_json":"{\"flow_token\":\"t\",\"field\":\"value\"}"}}}),
                vec![message(
                    r#"{"flow_token":"t","field":"value"}"#,
                    "interactive",
                    "wamid.FLOW",
                    Some("wamid.ASK"),
                )],
            ),
            (
                json!({"from":"16505551234","id":"wamid.QR","type":"button","context":{"from":"15550783881","id":"wamid.TPL"},"button":{"payload":"Unsubscribe","text":"Unsubscribe me"}}),
                vec![message(
                    "Unsubscribe me",
                    "button",
                    "wamid.QR",
                    Some("wamid.TPL"),
                )],
            ),
        ];
        for (m, _) in &cases {
            assert_eq!(inbox.deliver(&inbound_message(m.clone())).status, 200);
        }
        let got = inbox.mapped();
        let expected: Vec<Vec<Option<String>>> =
            cases.iter().flat_map(|(_, e)| e.clone()).collect();
        let got_args: Vec<Vec<Option<String>>> = got.iter().map(|i| i.args.clone()).collect();
        assert_eq!(got_args, expected, "{way:?}");
        // Media notices come through recv_media, the rest through recv_message.
        assert_eq!(got.iter().filter(|i| i.kind == "media").count(), 5);
        // Callbacks run on the dispatching (test) thread.
        assert!(got.iter().all(|i| i.thread == std::thread::current().id()));
    });
}

#[test]
fn unknown_and_unsupported_types_arrive_as_raw_json() {
    let inbox = Inbox::new(Way::HostFed);
    let unsupported = json!({"from":"16505551234","id":"wamid.UNS","type":"unsupported","errors":[{"code":131051,"title":"Message type unknown"}],"unsupported":{"type":"pool"}});
    let future =
        json!({"from":"16505551234","id":"wamid.FUT","type":"hologram","hologram":{"x":1}});
    let revoke = json!({"from":"16505551234","id":"wamid.DEL","type":"revoke","revoke":{"original_message_id":"wamid.GONE"}});
    for m in [&unsupported, &future, &revoke] {
        assert_eq!(inbox.deliver(&inbound_message(m.clone())).status, 200);
    }
    let got = inbox.mapped();
    assert_eq!(got.len(), 3);
    for (got, sent) in got.iter().zip([&unsupported, &future, &revoke]) {
        let msg: Value = serde_json::from_str(got.args[0].as_deref().unwrap()).unwrap();
        assert_eq!(&msg, sent, "msg is the whole message as JSON");
        assert_eq!(got.args[3].as_deref(), sent["type"].as_str());
    }
    assert_eq!(
        got[2].args[5].as_deref(),
        Some("wamid.GONE"),
        "revoke refers to the deleted message"
    );
}

/// JSON that serde_json's `Value` refuses but whose grammar is fine (a text cut in the middle
/// of an emoji, a number beyond f64) is answered 200, so it must still be delivered.
#[test]
fn a_cut_emoji_or_an_overflowing_number_is_still_delivered() {
    both_ways(|way| {
        let inbox = Inbox::new(way);
        let payload = inbound_message(
            json!({"from":"16505551234","id":"wamid.CUT","timestamp":"TS","type":"text","text":{"body":"so \u{1F600}"}}),
        );
        let text = String::from_utf8(meta_json(&payload)).unwrap();
        // Meta escapes the emoji as a surrogate pair; a client cut it after the first half.
        let cut = text.replace(r"\ud83d\ude00", r"\ud83d");
        assert_ne!(cut, text);
        assert_eq!(inbox.post_signed(cut.as_bytes()).status, 200);
        let overflowing = text
            .replace("wamid.CUT", "wamid.BIG")
            .replace(r#""TS""#, "1e999");
        assert_eq!(inbox.post_signed(overflowing.as_bytes()).status, 200);
        let got: Vec<_> = inbox.mapped().into_iter().map(|i| i.args).collect();
        assert_eq!(
            got,
            vec![
                message("so \u{FFFD}", "text", "wamid.CUT", None),
                message("so \u{1F600}", "text", "wamid.BIG", None)
            ],
            "{way:?}"
        );
        let warnings = warnings(&inbox);
        assert_eq!(warnings.len(), 2, "{way:?}: {warnings:?}");
        assert!(
            warnings
                .iter()
                .all(|w| w.starts_with("webhook change read after repair")),
            "{warnings:?}"
        );
    });
}

#[test]
fn statuses_are_mapped_with_callback_data_and_errors() {
    both_ways(|way| {
        let inbox = Inbox::new(way);
        let value = json!({"messaging_product":"whatsapp","metadata":{"phone_number_id":PHONE_ID},
            "statuses":[
                {"id":"wamid.OUT","status":"sent","timestamp":"1","recipient_id":"16505551234","biz_opaque_callback_data":"order-42","pricing":{"billable":true,"pricing_model":"PMP","category":"utility"}},
                {"id":"wamid.OUT","status":"delivered","timestamp":"2","recipient_id":"16505551234","biz_opaque_callback_data":"order-42"},
                {"id":"wamid.OUT","status":"read","timestamp":"3","recipient_id":"16505551234"},
                {"id":"wamid.VOICE","status":"played","timestamp":"4","recipient_id":"16505551234"},
                {"id":"wamid.LATE","status":"failed","timestamp":"5","recipient_id":"16505551234","errors":[{"code":131047,"title":"Re-engagement message","message":"Re-engagement message","error_data":{"details":"More than 24 hours have passed."}}]}]});
        assert_eq!(inbox.deliver(&envelope(value)).status, 200);
        let got: Vec<_> = inbox.mapped().into_iter().map(|i| i.args).collect();
        let status = |msg: &str, id: &str, info: Option<&str>| {
            vec![
                s(msg),
                s("16505551234"),
                s(PHONE_ID),
                s("status"),
                s(id),
                info.map(str::to_string),
            ]
        };
        assert_eq!(
            got,
            vec![
                status("sent", "wamid.OUT", Some("order-42")),
                status("delivered", "wamid.OUT", Some("order-42")),
                status("read", "wamid.OUT", None),
                status("played", "wamid.VOICE", None),
                status(
                    "failed (#131047) Re-engagement message: More than 24 hours have passed.",
                    "wamid.LATE",
                    None
                ),
            ],
            "{way:?}"
        );
    });
}

#[test]
fn sender_falls_back_to_the_business_scoped_user_id() {
    let inbox = Inbox::new(Way::HostFed);
    let payload = envelope(json!({"metadata":{"phone_number_id":PHONE_ID},
        "contacts":[{"profile":{"name":"X"},"user_id":"US.13491208655302741918"}],
        "messages":[{"from_user_id":"US.13491208655302741918","id":"wamid.B","type":"text","text":{"body":"hi"}}]}));
    assert_eq!(inbox.deliver(&payload).status, 200);
    let got = inbox.mapped();
    assert_eq!(got[0].args[1].as_deref(), Some("US.13491208655302741918"));
}

#[test]
fn refused_requests_produce_no_callbacks() {
    both_ways(|way| {
        let body = meta_json(&inbound_message(
            json!({"from":"16505551234","id":"wamid.X","type":"text","text":{"body":"caf\u{e9} https://x.example/"}}),
        ));
        let inbox = Inbox::new(way);
        let r = inbox.request("POST", "/webhook", None, &body);
        assert_eq!(r.status, 401, "{way:?}: missing signature");
        let r = inbox.request(
            "POST",
            "/webhook",
            Some(&sign("other-secret", &body)),
            &body,
        );
        assert_eq!(r.status, 403, "{way:?}: wrong secret");
        let r = inbox.request("POST", "/webhook", Some("sha256=zz"), &body);
        assert_eq!(r.status, 403, "{way:?}: malformed signature");
        // The signature covers the exact bytes: re-serialising (unescaping) breaks it.
        let reserialised =
            serde_json::to_vec(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
        let r = inbox.request(
            "POST",
            "/webhook",
            Some(&sign(APP_SECRET, &body)),
            &reserialised,
        );
        assert_eq!(r.status, 403, "{way:?}: bytes differ from what was signed");
        let junk = b"{not json".to_vec();
        let r = inbox.post_signed(&junk);
        assert_eq!(r.status, 400, "{way:?}: malformed JSON");
        let other = br#"{"object":"page","entry":[]}"#.to_vec();
        let r = inbox.post_signed(&other);
        assert_eq!(r.status, 400, "{way:?}: not a WhatsApp envelope");
        let latin1 =
            b"{\"object\":\"whatsapp_business_account\",\"entry\":[],\"x\":\"\xe9\"}".to_vec();
        let r = inbox.post_signed(&latin1);
        assert_eq!(r.status, 400, "{way:?}: not UTF-8");
        // The parser's detail may quote the body: the answer stays within 200 bytes.
        let quoted = format!("\"{}\"", "x".repeat(5000)).into_bytes();
        let r = inbox.post_signed(&quoted);
        assert_eq!(r.status, 400, "{way:?}: a JSON string");
        assert!(r.body.len() <= 200, "{way:?}: {} bytes", r.body.len());
        let big = vec![b' '; 1024 * 1024 + 1];
        let r = inbox.post_signed(&big);
        // 0: the listener refused before the client finished writing (connection reset).
        assert!(
            r.status == 413 || (r.status == 0 && matches!(way, Way::Listener)),
            "{way:?}: oversize {r:?}"
        );
        let r = inbox.request("PUT", "/webhook", None, b"");
        assert_eq!(r.status, 405, "{way:?}");
        assert!(
            inbox.host.drain_inbound(SETTLE).is_empty(),
            "{way:?}: a refused request produced a callback"
        );
    });

    // No app secret: fail closed.
    let emu = Emulator::start();
    let host = Host::new(&Opts::for_emulator(&emu));
    let body = meta_json(&inbound_message(
        json!({"from":"16505551234","id":"wamid.X","type":"text","text":{"body":"x"}}),
    ));
    let r = host.webhook("POST", "/webhook", Some(&sign("", &body)), &body);
    assert_eq!(r.status, 503);
    assert!(host.drain_inbound(SETTLE).is_empty());

    // Renewing only the token (NULL secret) keeps the secret; "" removes it.
    host.set_token(TOKEN); // with APP_SECRET
    let config = |token: &str, secret: Option<&str>| {
        let secret = secret.map(cstr);
        whatsapp_connector::ffi::client::wa_client_set_config(
            host.client,
            cstr(token).as_ptr(),
            secret.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        )
    };
    assert_eq!(config("EAArenewed", None), wa_result::WA_OK);
    let signed = sign(APP_SECRET, &body);
    assert_eq!(
        host.webhook("POST", "/webhook", Some(&signed), &body)
            .status,
        200
    );
    assert_eq!(config("EAArenewed", Some("")), wa_result::WA_OK);
    assert_eq!(
        host.webhook("POST", "/webhook", Some(&signed), &body)
            .status,
        503
    );
}

#[test]
fn the_listener_serves_only_its_path_and_a_configured_limit() {
    let inbox = Inbox::with(Way::Listener, |o| {
        assert_eq!(
            wa_options_set_webhook_path(o.0, cstr("/hooks/wa").as_ptr()),
            wa_result::WA_OK
        );
        assert_eq!(wa_options_set_webhook_max_body(o.0, 2048), wa_result::WA_OK);
    });
    let port = inbox.host.webhook_port();
    let get = |path: &str| {
        direct_http()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        get("/webhook?hub.mode=subscribe&hub.challenge=1&hub.verify_token=verify-me"),
        404
    );
    assert_eq!(
        get("/hooks/wa?hub.mode=subscribe&hub.challenge=1&hub.verify_token=verify-me"),
        200
    );
    let body = vec![b'x'; 4096];
    let r = direct_http()
        .post(format!("http://127.0.0.1:{port}/hooks/wa"))
        .header("X-Hub-Signature-256", sign(APP_SECRET, &body))
        .body(body)
        .send();
    // 413, or a reset when the listener refused before the client finished writing.
    match r {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    assert_eq!(
        wa_options_set_webhook_path(std::ptr::null_mut(), cstr("/x").as_ptr()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
}

/// A body sent in pieces (chunked, with pauses, so the listener reads several frames) is
/// joined before its signature is checked; the limit counts every piece.
#[test]
fn the_listener_joins_a_body_sent_in_pieces() {
    use std::io::{Read, Write};
    let inbox = Inbox::with(Way::Listener, |o| {
        assert_eq!(wa_options_set_webhook_max_body(o.0, 2048), wa_result::WA_OK);
    });
    let post_in_pieces = |body: &[u8], signature: &str| {
        let mut stream = connect(&inbox);
        write!(
            stream,
            "POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
             X-Hub-Signature-256: {signature}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        for piece in body.chunks(body.len().div_ceil(3)) {
            // The listener may refuse (413) and close before the last pieces.
            let _ = write!(stream, "{:x}\r\n", piece.len())
                .and_then(|_| stream.write_all(piece))
                .and_then(|_| stream.write_all(b"\r\n"))
                .and_then(|_| stream.flush());
            std::thread::sleep(Duration::from_millis(30));
        }
        let _ = stream.write_all(b"0\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    let body = meta_json(&inbound_message(
        json!({"from":"16505551234","id":"wamid.PIECES","type":"text","text":{"body":"in pieces"}}),
    ));
    let answer = post_in_pieces(&body, &sign(APP_SECRET, &body));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mapped = inbox.mapped();
    assert_eq!(mapped.len(), 1, "{mapped:?}");
    assert_eq!(
        mapped[0].args,
        message("in pieces", "text", "wamid.PIECES", None)
    );
    // No Content-Length to refuse early: the pieces together exceed the limit.
    let big = vec![b' '; 3000];
    let answer = post_in_pieces(&big, &sign(APP_SECRET, &big));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

/// A raw connection to the listener, with a bound on every read.
fn connect(inbox: &Inbox) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(("127.0.0.1", inbox.host.webhook_port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads until the listener closes the connection; what it sent, and how long that took.
fn until_closed(stream: &mut std::net::TcpStream) -> (String, Duration) {
    use std::io::Read;
    let start = std::time::Instant::now();
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .expect("closed by the listener before the read timeout");
    (
        String::from_utf8_lossy(&received).into_owned(),
        start.elapsed(),
    )
}

/// The raw HTTP/1.1 head of a signed webhook POST of `body`.
fn raw_post_head(body: &[u8]) -> String {
    format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n",
        sign(APP_SECRET, body),
        body.len()
    )
}

/// Writes a signed webhook POST of `body`, head and body, on a raw connection.
fn write_signed_post(stream: &mut std::net::TcpStream, body: &[u8]) {
    use std::io::Write;
    stream.write_all(raw_post_head(body).as_bytes()).unwrap();
    stream.write_all(body).unwrap();
}

/// A Meta-shaped webhook body: a text "hi" from the usual sender, with message id `id`.
fn hi_with_id(id: &str) -> Vec<u8> {
    meta_json(&inbound_message(
        json!({"from":"16505551234","id":id,"type":"text","text":{"body":"hi"}}),
    ))
}

/// Connections that move no byte for the idle timeout are closed, however they stalled; a body
/// trickled in is cut off with 408; a connection in use stays open.
#[test]
fn idle_and_stalled_listener_connections_are_closed() {
    use std::io::Write;
    const IDLE_MS: u32 = 300;
    let inbox = Inbox::with(Way::Listener, |opts| {
        assert_eq!(
            wa_options_set_webhook_idle_timeout_ms(opts.0, IDLE_MS),
            wa_result::WA_OK
        );
    });
    // Closed after one to two periods without progress (with slack for a loaded machine).
    let closes_in_time = |took: Duration| {
        took >= Duration::from_millis(u64::from(IDLE_MS)) && took < Duration::from_secs(5)
    };
    // Nothing sent at all.
    let mut silent = connect(&inbox);
    let (sent, took) = until_closed(&mut silent);
    assert!(sent.is_empty() && closes_in_time(took), "{sent:?} {took:?}");
    // Half a request head.
    let mut half_head = connect(&inbox);
    half_head
        .write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let (sent, took) = until_closed(&mut half_head);
    assert!(sent.is_empty() && closes_in_time(took), "{sent:?} {took:?}");
    // A head trickled a byte every 100 ms: progress, but never a complete head (slowloris). Closed
    // once the head took longer than its deadline (the idle timeout, when shorter than 30 s).
    let mut trickled_head = connect(&inbox);
    let head_writer = trickled_head.try_clone().unwrap();
    let head_feeder = std::thread::spawn(move || {
        let mut writer = head_writer;
        for byte in b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Padding: "
            .iter()
            .chain([b'a'; 200].iter())
        {
            if writer.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (sent, took) = until_closed(&mut trickled_head);
    assert!(sent.is_empty(), "{sent:?}");
    assert!(
        took < Duration::from_secs(5),
        "a trickled head held its connection {took:?}"
    );
    head_feeder.join().unwrap();
    // A whole request, then silence: answered, then closed.
    let body = hi_with_id("wamid.IDLE");
    let mut answered = connect(&inbox);
    write_signed_post(&mut answered, &body);
    let (sent, took) = until_closed(&mut answered);
    assert!(sent.starts_with("HTTP/1.1 200 OK\r\n"), "{sent:?}");
    assert!(closes_in_time(took), "{took:?}");
    // A body trickled in, a byte every 50 ms: progress, but not in time for the body deadline.
    let slow_body = hi_with_id("wamid.SLOW");
    let mut trickle = connect(&inbox);
    trickle
        .write_all(raw_post_head(&slow_body).as_bytes())
        .unwrap();
    let writer = trickle.try_clone().unwrap();
    let feeder = std::thread::spawn(move || {
        let mut writer = writer;
        for byte in slow_body {
            if writer.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let (sent, _) = until_closed(&mut trickle);
    assert!(
        sent.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{sent:?}"
    );
    assert!(sent.contains("connection: close\r\n"), "{sent:?}");
    feeder.join().unwrap();
    // A request every 100 ms for several idle periods: all answered on one open connection.
    let mut busy = connect(&inbox);
    for i in 0..15 {
        let body = hi_with_id(&format!("wamid.BUSY{i}"));
        write_signed_post(&mut busy, &body);
        let mut answer = [0u8; 512];
        let n = std::io::Read::read(&mut busy, &mut answer).unwrap();
        assert!(
            answer[..n].starts_with(b"HTTP/1.1 200 OK\r\n"),
            "request {i}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let delivered: Vec<_> = inbox
        .mapped()
        .into_iter()
        .map(|i| i.args[4].clone().unwrap())
        .collect();
    let mut expected = vec!["wamid.IDLE".to_string()];
    expected.extend((0..15).map(|i| format!("wamid.BUSY{i}")));
    assert_eq!(delivered, expected, "the trickled body was never delivered");
}

/// Beyond its connection limit the listener leaves new connections in the kernel's queue,
/// says so once, and serves them as soon as a connection closes.
#[test]
fn the_listener_holds_at_most_its_connection_limit() {
    use std::io::Read;
    let inbox = Inbox::with(Way::Listener, |opts| {
        assert_eq!(
            wa_options_set_webhook_max_connections(opts.0, 2),
            wa_result::WA_OK
        );
    });
    let post =
        |stream: &mut std::net::TcpStream, id: &str| write_signed_post(stream, &hi_with_id(id));
    let answer = |stream: &mut std::net::TcpStream| {
        let mut answer = [0u8; 512];
        let n = stream.read(&mut answer)?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer[..n]).into_owned())
    };
    let mut held: Vec<_> = ["wamid.CAP1", "wamid.CAP2"]
        .iter()
        .map(|id| {
            let mut stream = connect(&inbox);
            post(&mut stream, id);
            assert!(answer(&mut stream)
                .unwrap()
                .starts_with("HTTP/1.1 200 OK\r\n"));
            stream
        })
        .collect();
    let mut waiting = connect(&inbox);
    post(&mut waiting, "wamid.CAP3");
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let early = answer(&mut waiting);
    assert!(early.is_err(), "served beyond the limit: {early:?}");
    drop(held.remove(0));
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(answer(&mut waiting)
        .unwrap()
        .starts_with("HTTP/1.1 200 OK\r\n"));
    let delivered: Vec<_> = inbox
        .mapped()
        .into_iter()
        .map(|i| i.args[4].clone().unwrap())
        .collect();
    assert_eq!(delivered, ["wamid.CAP1", "wamid.CAP2", "wamid.CAP3"]);
    assert_eq!(
        warnings(&inbox),
        ["webhook listener holds its limit of 2 connections: new ones wait until one closes (wa_options_set_webhook_max_connections)"]
    );
}

#[test]
fn redeliveries_are_suppressed() {
    both_ways(|way| {
        let inbox = Inbox::new(way);
        let payload = inbound_message(
            json!({"from":"16505551234","id":"wamid.ONCE","type":"text","text":{"body":"once"}}),
        );
        for _ in 0..3 {
            assert_eq!(
                inbox.deliver(&payload).status,
                200,
                "a redelivery is still answered 200"
            );
        }
        let status = envelope(
            json!({"metadata":{"phone_number_id":PHONE_ID},"statuses":[{"id":"wamid.S","status":"read","recipient_id":"1"}]}),
        );
        inbox.deliver(&status);
        inbox.deliver(&status);
        let all = inbox.host.drain_inbound(SETTLE);
        let mapped: Vec<_> = all.iter().filter(|i| i.kind == "message").collect();
        assert_eq!(mapped.len(), 2, "{way:?}: {mapped:?}");
        assert_eq!(
            all.iter().filter(|i| i.kind == "raw").count(),
            2,
            "raw changes are deduplicated too"
        );
    });
}

#[test]
fn concurrent_duplicates_are_delivered_once() {
    let inbox = Inbox::new(Way::Listener);
    let payload = inbound_message(
        json!({"from":"16505551234","id":"wamid.RACE","type":"text","text":{"body":"race"}}),
    );
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| assert_eq!(inbox.deliver(&payload).status, 200));
        }
    });
    assert_eq!(inbox.mapped().len(), 1);
}

#[test]
fn batched_posts_are_delivered_completely_and_in_order() {
    both_ways(|way| {
        let inbox = Inbox::new(way);
        let text =
            |id: &str| json!({"from":"16505551234","id":id,"type":"text","text":{"body":id}});
        let change = |ids: &[&str], phone: &str| json!({"field":"messages","value":{"metadata":{"phone_number_id":phone},"messages":ids.iter().map(|i| text(i)).collect::<Vec<_>>()}});
        let payload = json!({"object":"whatsapp_business_account","entry":[
            {"id":"1","changes":[change(&["a1","a2"], PHONE_ID), change(&["b1"], "222")]},
            {"id":"2","changes":[change(&["c1","c2","c3"], PHONE_ID)]}]});
        assert_eq!(inbox.deliver(&payload).status, 200);
        let got = inbox.mapped();
        let ids: Vec<_> = got.iter().map(|i| i.args[4].clone().unwrap()).collect();
        assert_eq!(ids, ["a1", "a2", "b1", "c1", "c2", "c3"], "{way:?}");
        assert_eq!(
            got[2].args[2].as_deref(),
            Some("222"),
            "channel = metadata.phone_number_id"
        );
    });
}

#[test]
fn the_allow_list_drops_other_phone_numbers() {
    let inbox = Inbox::with(Way::HostFed, |o| {
        assert_eq!(
            wa_options_add_allowed_channel(o.0, cstr(PHONE_ID).as_ptr()),
            wa_result::WA_OK
        );
    });
    let mine = inbound_message(
        json!({"from":"16505551234","id":"wamid.MINE","type":"text","text":{"body":"m"}}),
    );
    let other = envelope(
        json!({"metadata":{"phone_number_id":"999"},"messages":[{"from":"1","id":"wamid.OTHER","type":"text","text":{"body":"o"}}]}),
    );
    assert_eq!(inbox.deliver(&other).status, 200);
    assert_eq!(inbox.deliver(&mine).status, 200);
    let got = inbox.host.drain_inbound(SETTLE);
    assert!(
        got.iter()
            .all(|i| !format!("{:?}", i.args).contains("wamid.OTHER")),
        "{got:?}"
    );
    assert_eq!(got.iter().filter(|i| i.kind == "message").count(), 1);
}

/// The lines of one level that this client's log callback received, in order.
fn logged(host: &Host, level: wa_log_level) -> Vec<String> {
    host.seen()
        .logs
        .iter()
        .filter(|(logged_level, _)| *logged_level == level as u32)
        .map(|(_, line)| line.clone())
        .collect()
}

/// Warnings of this client's webhook handling, as its log callback received them.
fn warnings(inbox: &Inbox) -> Vec<String> {
    logged(&inbox.host, wa_log_level::WA_LOG_WARN)
}

/// Errors of the account or app at the level of a change's value (cloud-api.md §5.8) belong to
/// no message: logged as a warning, and whole in the raw-change callback.
#[test]
fn value_level_errors_are_logged_and_reach_the_raw_change_callback() {
    both_ways(|way| {
        let inbox = Inbox::new(way);
        let value = json!({"messaging_product":"whatsapp",
            "metadata":{"display_phone_number":"15550783881","phone_number_id":PHONE_ID},
            "errors":[{"code":130429,"title":"Rate limit hit","message":"Rate limit hit",
                "error_data":{"details":"Too many messages sent from this phone number"}}]});
        let payload = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[
            {"value":value,"field":"messages"}]}]});
        assert_eq!(inbox.deliver(&payload).status, 200);
        let got = inbox.host.drain_inbound(SETTLE);
        assert_eq!(got.len(), 1, "{way:?}: {got:?}");
        assert_eq!(got[0].kind, "raw");
        let raw: Value = serde_json::from_str(got[0].args[1].as_deref().unwrap()).unwrap();
        assert_eq!(raw, value);
        let expected = format!(
            "webhook reports an error for phone number {PHONE_ID}: (#130429) Rate limit hit: Too many messages sent from this phone number"
        );
        assert_eq!(warnings(&inbox), vec![expected], "{way:?}");
    });
}

/// A webhook passed in by the host runs on the host's thread: its log lines still go to the
/// client's log callback, as the built-in listener's do.
#[test]
fn webhook_log_lines_reach_the_client_either_way() {
    both_ways(|way| {
        let inbox = Inbox::new(way);
        let body = hi_with_id("wamid.LOG");
        assert_eq!(
            inbox
                .request(
                    "POST",
                    "/webhook",
                    Some(&sign("wrong-secret", &body)),
                    &body
                )
                .status,
            403
        );
        assert!(inbox.host.drain_inbound(SETTLE).is_empty());
        assert_eq!(
            warnings(&inbox),
            vec!["webhook refused: signature does not match".to_string()],
            "{way:?}"
        );
    });
}

#[test]
fn other_fields_reach_the_raw_change_callback() {
    let inbox = Inbox::new(Way::HostFed);
    let payload = json!({"object":"whatsapp_business_account","entry":[{"id":"35602","time":1731617831,"changes":[
        {"value":{"event":"PARTNER_ADDED","waba_info":{"waba_id":"495709","owner_business_id":"11"}},"field":"account_update"}]}]});
    assert_eq!(inbox.deliver(&payload).status, 200);
    let got = inbox.host.drain_inbound(SETTLE);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].kind, "raw");
    assert_eq!(got[0].args[0].as_deref(), Some("account_update"));
    let value: Value = serde_json::from_str(got[0].args[1].as_deref().unwrap()).unwrap();
    assert_eq!(value["event"], "PARTNER_ADDED");
}

/// Without a raw-change callback such a change reaches no callback: a debug line says so.
#[test]
fn other_fields_without_a_raw_change_callback_are_logged() {
    let emu = Emulator::start();
    let host = Host::with_callbacks(&Opts::for_emulator(&emu), |callbacks| {
        callbacks.raw_change = None;
    });
    host.set_token(TOKEN);
    let payload = json!({"object":"whatsapp_business_account","entry":[{"id":"35602","changes":[
        {"value":{"event":"PARTNER_ADDED"},"field":"account_update"}]}]});
    let body = meta_json(&payload);
    let reply = host.webhook("POST", "/webhook", Some(&sign(APP_SECRET, &body)), &body);
    assert_eq!(reply.status, 200);
    assert!(host.drain_inbound(SETTLE).is_empty());
    let debug_lines: Vec<_> = logged(&host, wa_log_level::WA_LOG_DEBUG)
        .into_iter()
        .filter(|line| line.starts_with("webhook change"))
        .collect();
    assert_eq!(
        debug_lines,
        ["webhook change of field account_update not delivered: only the raw-change callback receives it"]
    );
}

#[test]
fn arbitrary_bytes_never_crash_the_handler() {
    let inbox = Inbox::new(Way::HostFed);
    let seed = meta_json(&inbound_message(
        json!({"from":"16505551234","id":"wamid.F","type":"image","image":{"id":"1","mime_type":"image/png"},"context":{"id":"x"}}),
    ));
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for round in 0..3000 {
        let mut body = if round % 3 == 0 {
            (0..rng.usize(0..512))
                .map(|_| rng.u8(..))
                .collect::<Vec<u8>>()
        } else {
            let mut b = seed.clone();
            for _ in 0..rng.usize(1..8) {
                if b.is_empty() {
                    break;
                }
                let i = rng.usize(..b.len());
                match rng.u8(..4) {
                    0 => b[i] = rng.u8(..),
                    1 => {
                        b.remove(i);
                    }
                    2 => b.insert(i, *b"{}[]\",:0\\".get(rng.usize(..9)).unwrap()),
                    _ => b.truncate(i),
                }
            }
            b
        };
        if body.is_empty() {
            body.push(b'{');
        }
        // Signed, so the bytes reach the parser and the mapping.
        let reply = inbox
            .host
            .webhook("POST", "/webhook", Some(&sign(APP_SECRET, &body)), &body);
        assert!(
            matches!(reply.status, 200 | 400),
            "round {round}: {reply:?}"
        );
    }
    inbox.host.drain_inbound(SETTLE);
}

/// Account-level changes carry no id: a redelivery repeats the entry's account and time, while
/// the same value at another time (a template approved again) or for another account is new.
#[test]
fn account_changes_that_repeat_later_are_delivered_again() {
    both_ways(|way| {
        let inbox = Inbox::new(way);
        let update = |waba: &str, time: u64, event: &str| {
            json!({"object":"whatsapp_business_account","entry":[{"id":waba,"time":time,"changes":[
                {"value":{"event":event,"message_template_id":12345,"message_template_name":"order_update","message_template_language":"en_US","reason":null},
                 "field":"message_template_status_update"}]}]})
        };
        for payload in [
            update("35602", 1000, "APPROVED"),
            update("35602", 1000, "APPROVED"), // redelivery
            update("35602", 2000, "PAUSED"),
            update("35602", 3000, "APPROVED"),
            update("35602", 3000, "APPROVED"), // redelivery
            update("77001", 3000, "APPROVED"), // another account
        ] {
            assert_eq!(inbox.deliver(&payload).status, 200);
        }
        let events: Vec<String> = inbox
            .host
            .drain_inbound(SETTLE)
            .into_iter()
            .filter(|i| i.kind == "raw")
            .map(|i| {
                let value: Value = serde_json::from_str(i.args[1].as_deref().unwrap()).unwrap();
                value["event"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            events,
            ["APPROVED", "PAUSED", "APPROVED", "APPROVED"],
            "{way:?}"
        );
    });
}

/// A message without an id cannot be recognised again: never taken for a repeat of another.
#[test]
fn messages_without_an_id_are_always_delivered() {
    both_ways(|way| {
        let inbox = Inbox::new(way);
        for body in ["first", "second", "second"] {
            let payload =
                inbound_message(json!({"from":"16505551234","type":"text","text":{"body":body}}));
            assert_eq!(inbox.deliver(&payload).status, 200);
        }
        let status = envelope(json!({"metadata":{"phone_number_id":PHONE_ID},
            "statuses":[{"status":"read","recipient_id":"16505551234"}]}));
        assert_eq!(inbox.deliver(&status).status, 200);
        assert_eq!(inbox.deliver(&status).status, 200);
        let got: Vec<_> = inbox
            .mapped()
            .into_iter()
            .map(|i| (i.args[0].clone().unwrap(), i.args[3].clone().unwrap()))
            .collect();
        let pair = |msg: &str, kind: &str| (msg.to_string(), kind.to_string());
        assert_eq!(
            got,
            [
                pair("first", "text"),
                pair("second", "text"),
                pair("second", "text"),
                pair("read", "status"),
                pair("read", "status"),
            ],
            "{way:?}"
        );
    });
}

/// A message sent to a group gets a receipt from each participant (cloud-api.md §5.7): each
/// is delivered once, with the participant as `tel`.
#[test]
fn group_receipts_are_delivered_per_participant() {
    both_ways(|way| {
        let inbox = Inbox::new(way);
        let receipt = |status: &str, participant: Option<&str>| {
            let mut s = json!({"id":"wamid.GROUP","status":status,"timestamp":"1698266945",
                "recipient_id":"120363040000000000","recipient_type":"group",
                "biz_opaque_callback_data":"announce-7"});
            if let Some(participant) = participant {
                s["recipient_participant_id"] = json!(participant);
                s["recipient_participant_user_id"] = json!("US.123456");
            }
            s
        };
        let payload = envelope(json!({"metadata":{"phone_number_id":PHONE_ID},"statuses":[
            receipt("sent", None),
            receipt("read", Some("16505551234")),
            receipt("read", Some("16505559876")),
        ]}));
        assert_eq!(inbox.deliver(&payload).status, 200);
        // A redelivery of one participant's receipt.
        let again = envelope(json!({"metadata":{"phone_number_id":PHONE_ID},
            "statuses":[receipt("read", Some("16505559876"))]}));
        assert_eq!(inbox.deliver(&again).status, 200);
        // Without a phone number, the participant's business-scoped user id.
        let mut by_user = receipt("delivered", None);
        by_user["recipient_participant_user_id"] = json!("US.777");
        let by_user =
            envelope(json!({"metadata":{"phone_number_id":PHONE_ID},"statuses":[by_user]}));
        assert_eq!(inbox.deliver(&by_user).status, 200);
        let got: Vec<_> = inbox.mapped().into_iter().map(|i| i.args).collect();
        let status = |msg: &str, tel: &str| {
            vec![
                s(msg),
                s(tel),
                s(PHONE_ID),
                s("status"),
                s("wamid.GROUP"),
                s("announce-7"),
            ]
        };
        assert_eq!(
            got,
            [
                status("sent", "120363040000000000"),
                status("read", "16505551234"),
                status("read", "16505559876"),
                status("delivered", "US.777"),
            ],
            "{way:?}"
        );
    });
}

/// Interactive replies other than the documented three carry their interactive object; one
/// without that object (Meta could not read it) carries the whole message.
#[test]
fn other_interactive_messages_are_delivered_as_documented() {
    both_ways(|way| {
        let inbox = Inbox::new(way);
        let permission = json!({"type":"call_permission_reply",
            "call_permission_reply":{"response":"accept","is_permanent":false,"response_source":"user_action"}});
        let unreadable = json!({"from":"16505551234","id":"wamid.IERR","timestamp":"1","type":"interactive",
            "errors":[{"code":131051,"title":"Message type unknown","message":"Message type unknown",
                "error_data":{"details":"Message type is currently not supported."}}]});
        for message in [
            json!({"from":"16505551234","id":"wamid.CALL","timestamp":"1","type":"interactive","interactive":permission}),
            unreadable.clone(),
        ] {
            assert_eq!(inbox.deliver(&inbound_message(message)).status, 200);
        }
        let got = inbox.mapped();
        assert_eq!(got.len(), 2, "{way:?}: {got:?}");
        assert_eq!(got[0].args[3].as_deref(), Some("interactive"));
        let msg: Value = serde_json::from_str(got[0].args[0].as_deref().unwrap()).unwrap();
        assert_eq!(msg, permission, "{way:?}");
        assert_eq!(got[1].args[3].as_deref(), Some("interactive"));
        let msg: Value = serde_json::from_str(got[1].args[0].as_deref().unwrap()).unwrap();
        assert_eq!(msg, unreadable, "{way:?}");
    });
}

/// With an allow-list, every change that names a phone number is checked (not only messages),
/// a messages change naming none is dropped, and changes of the whole account still arrive.
#[test]
fn the_allow_list_covers_every_field() {
    both_ways(|way| {
        let inbox = Inbox::with(way, |o| {
            assert_eq!(
                wa_options_add_allowed_channel(o.0, cstr(PHONE_ID).as_ptr()),
                wa_result::WA_OK
            );
        });
        let change = |field: &str, value: Value| {
            json!({"object":"whatsapp_business_account","entry":[{"id":"35602","time":1,
                "changes":[{"value":value,"field":field}]}]})
        };
        let preferences = |phone: &str| {
            json!({"messaging_product":"whatsapp",
                "metadata":{"display_phone_number":"15550783881","phone_number_id":phone},
                "contacts":[{"profile":{"name":"X"},"wa_id":"16505551234"}],
                "user_preferences":[{"wa_id":"16505551234","detail":"User requested to stop marketing messages","category":"marketing_messages","value":"stop","timestamp":1}]})
        };
        for payload in [
            change("user_preferences", preferences("999OTHER")),
            change("user_preferences", preferences(PHONE_ID)),
            change("account_update", json!({"event":"VERIFIED_ACCOUNT"})),
            change(
                "messages",
                json!({"messaging_product":"whatsapp",
                "messages":[{"from":"16505551234","id":"wamid.NOMETA","type":"text","text":{"body":"?"}}]}),
            ),
        ] {
            assert_eq!(inbox.deliver(&payload).status, 200);
        }
        let got = inbox.host.drain_inbound(SETTLE);
        let delivered: Vec<_> = got
            .iter()
            .map(|i| {
                let value: Value = i
                    .args
                    .get(1)
                    .and_then(|v| v.as_deref())
                    .and_then(|v| serde_json::from_str(v).ok())
                    .unwrap_or(Value::Null);
                (
                    i.kind.to_string(),
                    i.args[0].clone().unwrap_or_default(),
                    value["metadata"]["phone_number_id"].clone(),
                )
            })
            .collect();
        assert_eq!(
            delivered,
            [
                (
                    "raw".to_string(),
                    "user_preferences".to_string(),
                    json!(PHONE_ID)
                ),
                ("raw".to_string(), "account_update".to_string(), Value::Null),
            ],
            "{way:?}: {got:?}"
        );
    });
}

/// After close no callback may come: POSTs are refused (503, so Meta delivers them again later)
/// and produce none.
#[test]
fn posts_after_close_are_refused_without_callbacks() {
    both_ways(|way| {
        let inbox = Inbox::new(way);
        inbox.host.close_and_wait(Duration::from_secs(10));
        let reply = inbox.deliver(&inbound_message(
            json!({"from":"16505551234","id":"wamid.LATE","type":"text","text":{"body":"late"}}),
        ));
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (503, "client closed"),
            "{way:?}"
        );
        assert!(inbox.host.drain_inbound(SETTLE).is_empty(), "{way:?}");
        // Verification still answers (it delivers nothing).
        let target =
            format!("/webhook?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=42");
        assert_eq!(inbox.request("GET", &target, None, b"").status, 200);
    });
}

/// `WA_ERR_BUFFER_TOO_SMALL` gives the body's length; that plus one (the NUL) fits.
#[test]
fn a_too_small_answer_buffer_says_the_length_needed() {
    use std::ffi::{c_char, CStr};
    use whatsapp_connector::ffi::client::wa_client_webhook_request;
    let inbox = Inbox::new(Way::HostFed);
    let challenge = "c".repeat(300);
    let target = cstr(&format!(
        "/webhook?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge={challenge}"
    ));
    let answer = |capacity: usize| {
        let (mut status, mut content_type, mut len) = (0u16, std::ptr::null(), 0usize);
        let mut out = vec![1 as c_char; capacity];
        let r = wa_client_webhook_request(
            inbox.host.client,
            cstr("GET").as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            0,
            &mut status,
            &mut content_type,
            out.as_mut_ptr(),
            out.len(),
            &mut len,
        );
        // SAFETY: NUL-terminated by the library on WA_OK.
        let text = (r == wa_result::WA_OK).then(|| {
            unsafe { CStr::from_ptr(out.as_ptr()) }
                .to_str()
                .unwrap()
                .to_string()
        });
        (r, len, text)
    };
    let (r, needed, _) = answer(256);
    assert_eq!((r, needed), (wa_result::WA_ERR_BUFFER_TOO_SMALL, 300));
    assert_eq!(answer(needed).0, wa_result::WA_ERR_BUFFER_TOO_SMALL);
    assert_eq!(answer(needed + 1), (wa_result::WA_OK, 300, Some(challenge)));
}

/// A host that stops dispatching does not make the queue grow without bound: beyond the
/// backlog limit POSTs are refused (503, not remembered as seen), with one warning; once the
/// host dispatched, Meta's redelivery is taken.
#[test]
fn a_host_that_stops_dispatching_gets_webhooks_refused_until_it_catches_up() {
    both_ways(|way| {
        let inbox = Inbox::with(way, |opts| {
            assert_eq!(
                // Each text below is two callbacks (raw change, then message): three texts.
                wa_options_set_webhook_max_backlog(opts.0, 6),
                wa_result::WA_OK
            );
            // Only the webhook's own lines: the log callback's lines are events too.
            assert_eq!(
                wa_options_set_log_level(opts.0, wa_log_level::WA_LOG_WARN as u32),
                wa_result::WA_OK
            );
        });
        let text = |id: &str| {
            inbound_message(json!({"from":"16505551234","id":id,"type":"text","text":{"body":id}}))
        };
        // Whatever the set-up queued (log lines) is dispatched first; then nothing is, and three
        // texts wait.
        inbox.host.drain_inbound(SETTLE);
        for id in ["wamid.B1", "wamid.B2", "wamid.B3"] {
            assert_eq!(inbox.deliver(&text(id)).status, 200, "{way:?}");
        }
        for _ in 0..2 {
            let refused = inbox.deliver(&text("wamid.B4"));
            assert_eq!(
                (refused.status, refused.body.as_str()),
                (503, "the host is not keeping up"),
                "{way:?}"
            );
        }
        let got: Vec<_> = inbox
            .mapped()
            .into_iter()
            .map(|i| i.args[4].clone().unwrap())
            .collect();
        assert_eq!(got, ["wamid.B1", "wamid.B2", "wamid.B3"], "{way:?}");
        let full: Vec<_> = warnings(&inbox)
            .into_iter()
            .filter(|w| w.starts_with("webhooks refused (503"))
            .collect();
        assert_eq!(full.len(), 1, "{way:?}: once a minute at most: {full:?}");
        // Meta's redelivery, now that the host caught up: delivered, not taken for a repeat.
        assert_eq!(inbox.deliver(&text("wamid.B4")).status, 200, "{way:?}");
        let got: Vec<_> = inbox
            .mapped()
            .into_iter()
            .map(|i| i.args[4].clone().unwrap())
            .collect();
        assert_eq!(got.last().map(String::as_str), Some("wamid.B4"), "{way:?}");
    });
}
