//! End-to-end tests of the wa-emulator binary: each test spawns its own emulator on a free
//! loopback port (stdin piped with `--exit-on-stdin-eof`, so a crashed test cannot leak it) and
//! talks to it over real HTTP.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

const PHONE_ID: &str = "106540352242922";

struct Emulator {
    child: Child,
    base: String,
    client: Client,
}

impl Emulator {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wa-emulator"))
            .args(["--listen", "127.0.0.1:0", "--exit-on-stdin-eof", "--quiet"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wa-emulator");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read startup line");
        let base = line
            .trim()
            .strip_prefix("wa-emulator listening on ")
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
            .to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        // The emulator's own reqwest dependency enables rustls without a crypto provider, and
        // features are shared with this dev-dependency: choose the provider before building.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        Emulator {
            child,
            base,
            client,
        }
    }

    fn messages_url(&self, phone_id: &str) -> String {
        format!("{}/v26.0/{phone_id}/messages", self.base)
    }

    fn send_with_token(&self, token: &str, body: &Value) -> Response {
        self.client
            .post(self.messages_url(PHONE_ID))
            .bearer_auth(token)
            .json(body)
            .send()
            .expect("send")
    }

    fn send(&self, body: &Value) -> Response {
        self.send_with_token("test-token", body)
    }

    fn send_to_phone(&self, phone_id: &str, body: &Value) -> Response {
        self.client
            .post(self.messages_url(phone_id))
            .bearer_auth("test-token")
            .json(body)
            .send()
            .expect("send")
    }

    fn control_get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}/_emulator/{path}", self.base))
            .send()
            .expect("control get");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().expect("control json")
    }

    fn control_post(&self, path: &str, body: &Value) -> Value {
        let response = self
            .client
            .post(format!("{}/_emulator/{path}", self.base))
            .json(body)
            .send()
            .expect("control post");
        assert_eq!(response.status(), 200, "POST {path}");
        response.json().expect("control json")
    }

    fn add_fault(&self, rule: Value) -> u64 {
        self.control_post("faults", &rule)["id"]
            .as_u64()
            .expect("fault id")
    }

    fn requests(&self) -> Vec<Value> {
        self.control_get("requests")["requests"]
            .as_array()
            .expect("requests array")
            .clone()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A body as JSON plus the status it answered, for tests that need both.
fn json_of(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().expect("json body"))
}

/// Graph's answer for an object that does not exist (or the token may not see): 400,
/// GraphMethodException 100/33 naming the object.
fn assert_unknown_object((status, answer): (u16, Value), object_id: &str, verb: &str) {
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], 100, "{answer}");
    assert_eq!(answer["error"]["error_subcode"], 33, "{answer}");
    assert_eq!(answer["error"]["type"], "GraphMethodException", "{answer}");
    assert_eq!(
        answer["error"]["message"],
        format!(
            "Unsupported {verb} request. Object with ID '{object_id}' does not exist, cannot be \
             loaded due to missing permissions, or does not support this operation"
        )
    );
}

fn text_body(body: &str) -> Value {
    json!({"messaging_product":"whatsapp","to":"16505551234","type":"text","text":{"body":body}})
}

/// One valid body of each of the 11 message types.
fn valid_bodies() -> Vec<(&'static str, Value)> {
    let to = "+1 (650) 555-1234";
    let with = |kind: &str, content: Value| -> Value {
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":to,"type":kind,(kind):content})
    };
    vec![
        (
            "text",
            with(
                "text",
                json!({"preview_url":true,"body":"See https://example.com"}),
            ),
        ),
        (
            "image",
            with(
                "image",
                json!({"id":"1037543291543636","caption":"Invoice"}),
            ),
        ),
        (
            "audio",
            with("audio", json!({"id":"4490709327384033","voice":true})),
        ),
        (
            "video",
            with(
                "video",
                json!({"link":"https://example.com/v.mp4","caption":"Demo"}),
            ),
        ),
        (
            "document",
            with(
                "document",
                json!({"link":"https://example.com/a.pdf","caption":"PDF","filename":"a.pdf"}),
            ),
        ),
        ("sticker", with("sticker", json!({"id":"503335829198997"}))),
        (
            "location",
            with(
                "location",
                json!({"latitude":37.758056,"longitude":-122.425332,"name":"META HQ","address":"1 Hacker Way"}),
            ),
        ),
        (
            "contacts",
            with(
                "contacts",
                json!([{"name":{"formatted_name":"John Smith","first_name":"John"},
                    "phones":[{"phone":"+1 (650) 555-1234","type":"WORK","wa_id":"16505551234"}],
                    "emails":[{"email":"j@example.com","type":"WORK"}],
                    "org":{"company":"WhatsApp","title":"Manager"},
                    "addresses":[{"street":"1 Hacker Way","city":"Menlo Park"}],
                    "urls":[{"url":"https://www.facebook.com","type":"WORK"}],
                    "birthday":"2012-08-18"}]),
            ),
        ),
        (
            "interactive",
            with(
                "interactive",
                json!({"type":"button","body":{"text":"Pick one"},
                    "action":{"buttons":[{"type":"reply","reply":{"id":"yes","title":"Yes"}},
                                         {"type":"reply","reply":{"id":"no","title":"No"}}]}}),
            ),
        ),
        (
            "template",
            with(
                "template",
                json!({"name":"order_update","language":{"code":"en_US"},"components":[
                    {"type":"header","parameters":[{"type":"image","image":{"link":"https://example.com/h.jpg"}}]},
                    {"type":"body","parameters":[
                        {"type":"text","text":"Jessica"},
                        {"type":"currency","currency":{"fallback_value":"$100.99","code":"USD","amount_1000":100990}},
                        {"type":"date_time","date_time":{"fallback_value":"February 25, 1977"}}]},
                    {"type":"button","sub_type":"quick_reply","index":"0","parameters":[{"type":"payload","payload":"STOP"}]},
                    {"type":"button","sub_type":"url","index":"1","parameters":[{"type":"text","text":"order-42"}]}]}),
            ),
        ),
        (
            "reaction",
            with(
                "reaction",
                json!({"message_id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI","emoji":"\u{1f600}"}),
            ),
        ),
    ]
}

#[test]
fn help_exits_zero_and_documents_every_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_wa-emulator"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--allow-non-loopback",
        "--token",
        "--throughput-mps",
        "--pair-limit",
        "--pair-window-ms",
        "--latency-ms",
        "--record-limit",
        "--threads",
        "--quiet",
        "--exit-on-stdin-eof",
        "--webhook-url",
        "--app-secret",
        "--verify-token",
        "--auto-statuses",
        "--webhook-concurrency",
        "--app-id",
        "--code-ttl-ms",
        "/_emulator/oauth/codes",
        "/_emulator/onboarding",
        "/_emulator/webhook/inbound",
        "async_error",
        "omit_url",
        "signature_sha1",
        "--help",
        "curl",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn non_loopback_listen_is_refused_and_bad_flags_fail() {
    let status = Command::new(env!("CARGO_BIN_EXE_wa-emulator"))
        .args(["--listen", "0.0.0.0:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run");
    assert_eq!(status.code(), Some(2));
    let status = Command::new(env!("CARGO_BIN_EXE_wa-emulator"))
        .args(["--bogus"])
        .stderr(Stdio::null())
        .status()
        .expect("run");
    assert_eq!(status.code(), Some(2));
    // Values tokio or the webhook semaphore would panic on are refused like any bad value.
    for args in [
        ["--threads", "100000"],
        ["--webhook-concurrency", "4000000000000000000"],
    ] {
        let status = Command::new(env!("CARGO_BIN_EXE_wa-emulator"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run");
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn exits_when_stdin_is_closed() {
    let mut emulator = Emulator::start();
    drop(emulator.child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = emulator.child.try_wait().expect("try_wait") {
            assert!(status.success());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "emulator did not exit on stdin EOF"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_exits_with_status_zero() {
    let mut emulator = Emulator::start();
    let status = Command::new("kill")
        .args(["-TERM", &emulator.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = emulator.child.try_wait().expect("try_wait") {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "emulator did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_message_type_succeeds_with_the_exact_shape_and_unique_wamids() {
    let emulator = Emulator::start();
    let mut wamids = HashSet::new();
    for (kind, body) in valid_bodies() {
        let response = emulator.send(&body);
        assert_eq!(response.status(), 200, "{kind}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json; charset=UTF-8"
        );
        assert_eq!(response.headers()["facebook-api-version"], "v26.0");
        assert!(response.headers().contains_key("x-fb-trace-id"));
        assert!(response.headers().contains_key("x-fb-request-id"));
        let text = response.text().expect("text");
        assert!(
            text.starts_with(r#"{"messaging_product":"whatsapp","contacts":[{"input":"+1 (650) 555-1234","wa_id":"16505551234"}],"messages":[{"id":"wamid.HBgL"#),
            "{kind}: {text}"
        );
        let answer: Value = serde_json::from_str(&text).expect("json");
        let wamid = answer["messages"][0]["id"]
            .as_str()
            .expect("wamid")
            .to_string();
        let mut expected_message = json!({"id": wamid});
        if kind == "template" {
            expected_message["message_status"] = json!("accepted");
        }
        assert_eq!(
            answer,
            json!({"messaging_product":"whatsapp",
                   "contacts":[{"input":"+1 (650) 555-1234","wa_id":"16505551234"}],
                   "messages":[expected_message]}),
            "{kind}"
        );
        assert!(wamids.insert(wamid), "duplicate wamid");
    }
    assert_eq!(wamids.len(), 11);
    let stats = emulator.control_get("stats");
    assert_eq!(stats["accepted_sends"], 11);
}

#[test]
fn other_valid_forms_are_accepted() {
    let emulator = Emulator::start();
    // `to` as a JSON number is echoed as a number.
    let (status, answer) =
        json_of(emulator.send(
            &json!({"messaging_product":"whatsapp","to":13437772910u64,"text":{"body":"hi"}}),
        ));
    assert_eq!(status, 200);
    assert_eq!(
        answer["contacts"][0],
        json!({"input":13437772910u64,"wa_id":"13437772910"})
    );
    // A BSUID recipient without `to` gets `user_id` instead of `wa_id`.
    let (status, answer) = json_of(emulator.send(
        &json!({"messaging_product":"whatsapp","recipient":"US.13491208655302741918","type":"text","text":{"body":"hi"}}),
    ));
    assert_eq!(status, 200);
    assert_eq!(
        answer["contacts"][0],
        json!({"input":"US.13491208655302741918","user_id":"US.13491208655302741918"})
    );
    // A parent BSUID (with ENT) is a valid recipient too.
    let (status, answer) = json_of(emulator.send(
        &json!({"messaging_product":"whatsapp","recipient":"US.ENT.11815799212886844830","text":{"body":"hi"}}),
    ));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["contacts"][0]["user_id"],
        "US.ENT.11815799212886844830"
    );
    // A group send: `to` is the opaque group ID, echoed as input and wa_id, and the message
    // names the group.
    let group_id = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD";
    let (status, answer) = json_of(emulator.send(
        &json!({"messaging_product":"whatsapp","recipient_type":"group","to":group_id,"type":"text","text":{"body":"hi all"}}),
    ));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["contacts"],
        json!([{"input":group_id,"wa_id":group_id}])
    );
    assert_eq!(answer["messages"][0]["group_id"], group_id);
    assert!(answer["messages"][0]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("wamid.")));
    // An individual send has no group_id.
    let (_, answer) = json_of(emulator.send(&text_body("solo")));
    assert!(answer["messages"][0].get("group_id").is_none(), "{answer}");
    let others = [
        // 4096 two-byte characters: the limit counts characters, not bytes.
        text_body(&"é".repeat(4096)),
        json!({"messaging_product":"whatsapp","to":"1","type":"location","location":{"latitude":"37.5","longitude":"-122.4"}}),
        json!({"messaging_product":"whatsapp","to":"1","type":"reaction","reaction":{"message_id":"wamid.X","emoji":""}}),
        json!({"messaging_product":"whatsapp","to":"1","text":{"body":"reply"},"context":{"message_id":"wamid.X"},
               "biz_opaque_callback_data":"x".repeat(512),"recipient_identity_key_hash":"abc"}),
        json!({"messaging_product":"whatsapp","to":"1","type":"template","template":{"name":"hello_world","language":{"code":"en_US","policy":"deterministic"}}}),
        json!({"messaging_product":"whatsapp","to":"1","type":"interactive","interactive":{"type":"list",
            "header":{"type":"text","text":"Shipping"},"body":{"text":"Choose"},"footer":{"text":"VAT"},
            "action":{"button":"Options","sections":[
                {"title":"Fast","rows":[{"id":"a","title":"Express","description":"Next day"}]},
                {"title":"Slow","rows":[{"id":"b","title":"Ground"}]}]}}}),
        json!({"messaging_product":"whatsapp","to":"1","type":"interactive","interactive":{"type":"cta_url",
            "body":{"text":"Track"},"action":{"name":"cta_url","parameters":{"display_text":"Track","url":"https://example.com/t/42"}}}}),
        json!({"messaging_product":"whatsapp","to":"1","type":"interactive","interactive":{"type":"flow",
            "body":{"text":"Sign up"},"action":{"name":"flow","parameters":{"flow_message_version":"3","flow_name":"signup",
            "flow_token":"t","flow_cta":"Open","mode":"draft","flow_action":"navigate","flow_action_payload":{"screen":"WELCOME"}}}}}),
        json!({"messaging_product":"whatsapp","to":"1","type":"interactive","interactive":{"type":"location_request_message",
            "body":{"text":"Share your location"},"action":{"name":"send_location"}}}),
    ];
    for body in others {
        let (status, answer) = json_of(emulator.send(&body));
        assert_eq!(status, 200, "{body}: {answer}");
    }
}

/// Each rule's violation and the start of the `details` text it must produce.
fn violations() -> Vec<(Value, &'static str)> {
    let base = |kind: &str, content: Value| -> Value {
        json!({"messaging_product":"whatsapp","to":"16505551234","type":kind,(kind):content})
    };
    let interactive = |content: Value| base("interactive", content);
    let buttons = |items: Value| {
        interactive(json!({"type":"button","body":{"text":"b"},"action":{"buttons":items}}))
    };
    let reply = |id: &str, title: &str| json!({"type":"reply","reply":{"id":id,"title":title}});
    let list = |sections: Value| {
        interactive(
            json!({"type":"list","body":{"text":"b"},"action":{"button":"Open","sections":sections}}),
        )
    };
    let rows = |count: usize, prefix: &str| -> Value {
        (0..count)
            .map(|index| json!({"id":format!("{prefix}{index}"),"title":"t"}))
            .collect()
    };
    let flow = |parameters: Value| {
        interactive(
            json!({"type":"flow","body":{"text":"b"},"action":{"name":"flow","parameters":parameters}}),
        )
    };
    let template = |content: Value| base("template", content);
    let component = |component: Value| {
        template(json!({"name":"t","language":{"code":"en"},"components":[component]}))
    };
    let long = |count: usize| "x".repeat(count);
    vec![
        (json!([1]), "body: must be a JSON object"),
        (json!({"to":"1","text":{"body":"x"}}), "messaging_product: required"),
        (json!({"messaging_product":"sms","to":"1","text":{"body":"x"}}), "messaging_product: must be \"whatsapp\""),
        (json!({"messaging_product":"whatsapp","recipient_type":"bulk","to":"1","text":{"body":"x"}}), "recipient_type: must be one of"),
        (json!({"messaging_product":"whatsapp","text":{"body":"x"}}), "to: required"),
        (json!({"messaging_product":"whatsapp","to":"abc","text":{"body":"x"}}), "to: must be a phone number"),
        (json!({"messaging_product":"whatsapp","to":true,"text":{"body":"x"}}), "to: must be a phone number"),
        // A group ID needs recipient_type group.
        (json!({"messaging_product":"whatsapp","to":"Y2FwaV9ncm91cDoxNz","text":{"body":"x"}}), "to: must be a phone number"),
        (json!({"messaging_product":"whatsapp","recipient_type":"group","text":{"body":"x"}}), "to: required (the group ID)"),
        (json!({"messaging_product":"whatsapp","recipient_type":"group","to":"a group","text":{"body":"x"}}), "to: must be a group ID"),
        (json!({"messaging_product":"whatsapp","recipient_type":"group","to":123,"text":{"body":"x"}}), "to: must be a group ID"),
        // BSUIDs: two upper-case letters, '.', optional ENT., 1 to 128 alphanumerics.
        (json!({"messaging_product":"whatsapp","recipient":"13491208655302741918","text":{"body":"x"}}), "recipient: must be a business-scoped user ID"),
        (json!({"messaging_product":"whatsapp","recipient":"us.13491208655302741918","text":{"body":"x"}}), "recipient: must be a business-scoped user ID"),
        (json!({"messaging_product":"whatsapp","recipient":"USA.1349","text":{"body":"x"}}), "recipient: must be a business-scoped user ID"),
        (json!({"messaging_product":"whatsapp","recipient":"US.","text":{"body":"x"}}), "recipient: must be a business-scoped user ID"),
        (json!({"messaging_product":"whatsapp","recipient":"US.ENT.","text":{"body":"x"}}), "recipient: must be a business-scoped user ID"),
        (json!({"messaging_product":"whatsapp","recipient":"US.1349-1208","text":{"body":"x"}}), "recipient: must be a business-scoped user ID"),
        (json!({"messaging_product":"whatsapp","recipient":format!("US.{}", "1".repeat(129)),"text":{"body":"x"}}), "recipient: must be a business-scoped user ID"),
        // Checked even when `to` (which wins) is present.
        (json!({"messaging_product":"whatsapp","to":"1","recipient":"bogus","text":{"body":"x"}}), "recipient: must be a business-scoped user ID"),
        (json!({"messaging_product":"whatsapp","to":"1","type":"fax"}), "type: must be one of"),
        (json!({"messaging_product":"whatsapp","to":"1","type":"image"}), "image: required"),
        (json!({"messaging_product":"whatsapp","to":"1","type":"text","text":{"body":"x"},"image":{"id":"1"}}), "image: not allowed when type is text"),
        (json!({"messaging_product":"whatsapp","to":"1","text":{"body":"x"},"foo":1}), "foo: unknown field"),
        (json!({"messaging_product":"whatsapp","to":"1","text":{"body":"x"},"context":{}}), "context.message_id: required"),
        (json!({"messaging_product":"whatsapp","to":"1","text":{"body":"x"},"biz_opaque_callback_data":long(513)}), "biz_opaque_callback_data: must be at most 512 bytes"),
        (json!({"messaging_product":"whatsapp","to":"1","text":{"body":"x"},"recipient_identity_key_hash":5}), "recipient_identity_key_hash: must be a string"),
        // text
        (base("text", json!({})), "text.body: required"),
        (base("text", json!({"body":""})), "text.body: must not be empty"),
        (base("text", json!({"body":"é".repeat(4097)})), "text.body: must be at most 4096 characters"),
        (base("text", json!({"body":"x","foo":1})), "text.foo: unknown field"),
        (base("text", json!({"body":"x","preview_url":"yes"})), "text.preview_url: must be a boolean"),
        // media
        (base("image", json!({"id":"1","link":"https://x.y/a"})), "image: exactly one of id or link"),
        (base("image", json!({})), "image.id: required (or link)"),
        (base("image", json!({"id":""})), "image.id: must not be empty"),
        (base("image", json!({"link":"ftp://x.y/a"})), "image.link: must be an http or https URL"),
        (base("audio", json!({"id":"1","caption":"c"})), "audio.caption: only allowed on image, video and document"),
        (base("sticker", json!({"id":"1","caption":"c"})), "sticker.caption: only allowed on image, video and document"),
        (base("image", json!({"id":"1","filename":"a.png"})), "image.filename: only allowed on document"),
        (base("video", json!({"id":"1","voice":true})), "video.voice: only allowed on audio"),
        (base("image", json!({"id":"1","caption":long(1025)})), "image.caption: must be at most 1024 characters"),
        (base("document", json!({"id":"1","size":3})), "document.size: unknown field"),
        // location
        (base("location", json!({"latitude":91,"longitude":0})), "location.latitude: must be between -90 and 90"),
        (base("location", json!({"latitude":0,"longitude":-180.5})), "location.longitude: must be between -180 and 180"),
        (base("location", json!({"latitude":0})), "location.longitude: required"),
        (base("location", json!({"latitude":"north","longitude":0})), "location.latitude: must be a number"),
        (base("location", json!({"latitude":0,"longitude":0,"name":5})), "location.name: must be a string"),
        // contacts
        (base("contacts", json!([])), "contacts: must have at least 1 item(s)"),
        (base("contacts", json!({})), "contacts: must be an array"),
        (base("contacts", json!([{"name":{}}])), "contacts[0].name.formatted_name: required"),
        (base("contacts", json!([{"phones":[]}])), "contacts[0].name: required"),
        (base("contacts", json!([{"name":{"formatted_name":"x"},"phones":{}}])), "contacts[0].phones: must be an array"),
        (base("contacts", json!([{"name":{"formatted_name":"x"},"emails":["a"]}])), "contacts[0].emails[0]: must be an object"),
        // interactive
        (interactive(json!({"type":"carousel"})), "interactive.type: must be one of"),
        (interactive(json!({"type":"button","action":{"buttons":[reply("a","A")]}})), "interactive.body: required"),
        (interactive(json!({"type":"button","body":{"text":long(1025)},"action":{"buttons":[reply("a","A")]}})), "interactive.body.text: must be at most 1024 characters"),
        (interactive(json!({"type":"button","header":{"type":"text","text":long(61)},"body":{"text":"b"},"action":{"buttons":[reply("a","A")]}})), "interactive.header.text: must be at most 60 characters"),
        (interactive(json!({"type":"button","footer":{"text":long(61)},"body":{"text":"b"},"action":{"buttons":[reply("a","A")]}})), "interactive.footer.text: must be at most 60 characters"),
        (buttons(json!([])), "interactive.action.buttons: must have at least 1 item(s)"),
        (buttons(json!([reply("a","A"),reply("b","B"),reply("c","C"),reply("d","D")])), "interactive.action.buttons: must have at most 3 items"),
        (buttons(json!([reply("a",&long(21))])), "interactive.action.buttons[0].reply.title: must be at most 20 characters"),
        (buttons(json!([reply("a","")])), "interactive.action.buttons[0].reply.title: must not be empty"),
        (buttons(json!([reply(&long(257),"A")])), "interactive.action.buttons[0].reply.id: must be at most 256 characters"),
        (buttons(json!([reply("a","A"),reply("a","B")])), "interactive.action.buttons[1].reply.id: must be unique"),
        (buttons(json!([reply("a","A"),reply("b","A")])), "interactive.action.buttons[1].reply.title: must be unique"),
        (buttons(json!([{"type":"url","reply":{"id":"a","title":"A"}}])), "interactive.action.buttons[0].type: must be one of reply"),
        (interactive(json!({"type":"list","body":{"text":"b"},"action":{"button":long(21),"sections":[{"rows":rows(1,"r")}]}})), "interactive.action.button: must be at most 20 characters"),
        (list(json!([])), "interactive.action.sections: must have at least 1 item(s)"),
        (list((0..11).map(|index| json!({"title":format!("s{index}"),"rows":[{"id":format!("r{index}"),"title":"t"}]})).collect()), "interactive.action.sections: must have at most 10 items"),
        (list(json!([{"title":"a","rows":rows(6,"a")},{"title":"b","rows":rows(5,"b")}])), "interactive.action.sections: must have at most 10 rows in total"),
        (list(json!([{"rows":rows(1,"a")},{"title":"b","rows":rows(1,"b")}])), "interactive.action.sections[0].title: required"),
        (list(json!([{"title":long(25),"rows":rows(1,"a")}])), "interactive.action.sections[0].title: must be at most 24 characters"),
        (list(json!([{"rows":[]}])), "interactive.action.sections[0].rows: must have at least 1 item(s)"),
        (list(json!([{"rows":[{"id":"a","title":long(25)}]}])), "interactive.action.sections[0].rows[0].title: must be at most 24 characters"),
        (list(json!([{"rows":[{"id":"a","title":"t","description":long(73)}]}])), "interactive.action.sections[0].rows[0].description: must be at most 72 characters"),
        (list(json!([{"rows":[{"id":long(201),"title":"t"}]}])), "interactive.action.sections[0].rows[0].id: must be at most 200 characters"),
        (list(json!([{"rows":[{"id":"a","title":"t"},{"id":"a","title":"u"}]}])), "interactive.action.sections[0].rows[1].id: must be unique"),
        (interactive(json!({"type":"cta_url","body":{"text":"b"},"action":{"name":"url","parameters":{"display_text":"d","url":"https://x.y"}}})), "interactive.action.name: must be one of cta_url"),
        (interactive(json!({"type":"cta_url","body":{"text":"b"},"action":{"name":"cta_url","parameters":{"display_text":long(21),"url":"https://x.y"}}})), "interactive.action.parameters.display_text: must be at most 20 characters"),
        (interactive(json!({"type":"cta_url","body":{"text":"b"},"action":{"name":"cta_url","parameters":{"display_text":"d"}}})), "interactive.action.parameters.url: required"),
        (flow(json!({"flow_message_version":"2","flow_id":"1","flow_cta":"c"})), "interactive.action.parameters.flow_message_version: must be one of 3"),
        (flow(json!({"flow_message_version":"3","flow_id":"1","flow_name":"n","flow_cta":"c"})), "interactive.action.parameters: exactly one of flow_id or flow_name"),
        (flow(json!({"flow_message_version":"3","flow_cta":"c"})), "interactive.action.parameters.flow_id: required (or flow_name)"),
        (flow(json!({"flow_message_version":"3","flow_id":"1"})), "interactive.action.parameters.flow_cta: required"),
        (flow(json!({"flow_message_version":"3","flow_id":"1","flow_cta":"c","mode":"beta"})), "interactive.action.parameters.mode: must be one of draft, published"),
        (flow(json!({"flow_message_version":"3","flow_id":"1","flow_cta":"c","flow_action":"jump"})), "interactive.action.parameters.flow_action: must be one of navigate, data_exchange"),
        (interactive(json!({"type":"flow","body":{"text":"b"},"action":{"name":"cta_url","parameters":{}}})), "interactive.action.name: must be one of flow"),
        (interactive(json!({"type":"location_request_message","body":{"text":"b"},"action":{"name":"location"}})), "interactive.action.name: must be one of send_location"),
        // template
        (template(json!({"name":"","language":{"code":"en"}})), "template.name: must not be empty"),
        (template(json!({"name":"t"})), "template.language: required"),
        (template(json!({"name":"t","language":{"code":""}})), "template.language.code: must not be empty"),
        (template(json!({"name":"t","language":{"code":"en","policy":"fallback"}})), "template.language.policy: must be one of deterministic"),
        (template(json!({"name":"t","language":{"code":"en"},"components":{}})), "template.components: must be an array"),
        (component(json!({"type":"hdr"})), "template.components[0].type: must be one of"),
        (component(json!({"type":"button","index":"0"})), "template.components[0].sub_type: required"),
        (component(json!({"type":"button","sub_type":"bogus","index":"0"})), "template.components[0].sub_type: must be one of"),
        (component(json!({"type":"button","sub_type":"url","index":"10"})), "template.components[0].index: must be a string \"0\"..\"9\""),
        (component(json!({"type":"button","sub_type":"url","index":10})), "template.components[0].index: must be a string \"0\"..\"9\""),
        (component(json!({"type":"button","sub_type":"url"})), "template.components[0].index: required"),
        (component(json!({"type":"body","parameters":[{"type":"bogus"}]})), "template.components[0].parameters[0].type: must be one of"),
        (component(json!({"type":"body","parameters":[{"type":"text"}]})), "template.components[0].parameters[0].text: required"),
        (component(json!({"type":"body","parameters":[{"type":"currency"}]})), "template.components[0].parameters[0].currency: required"),
        (component(json!({"type":"header","parameters":[{"type":"image","image":{}}]})), "template.components[0].parameters[0].image.id: required (or link)"),
        // reaction
        (base("reaction", json!({"emoji":"x"})), "reaction.message_id: required"),
        (base("reaction", json!({"message_id":"wamid.X"})), "reaction.emoji: required"),
        // mark as read
        (json!({"messaging_product":"whatsapp","status":"delivered","message_id":"wamid.X"}), "status: must be one of read"),
        (json!({"messaging_product":"whatsapp","status":"read"}), "message_id: required"),
        (json!({"messaging_product":"whatsapp","status":"read","message_id":"wamid.X","typing_indicator":{"type":"audio"}}), "typing_indicator.type: must be one of text"),
    ]
}

#[test]
fn each_validation_rule_answers_400_code_100_naming_the_path() {
    let emulator = Emulator::start();
    for (body, expected) in violations() {
        let response = emulator.send(&body);
        let (status, answer) = json_of(response);
        assert_eq!(status, 400, "{body}: {answer}");
        let error = &answer["error"];
        assert_eq!(error["code"], 100, "{answer}");
        assert_eq!(error["message"], "(#100) Invalid parameter");
        assert_eq!(error["type"], "OAuthException");
        assert_eq!(error["error_data"]["messaging_product"], "whatsapp");
        assert!(error["fbtrace_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()));
        let details = error["error_data"]["details"].as_str().unwrap_or("");
        assert!(
            details.starts_with(expected),
            "body {body}\nexpected details starting with {expected:?}\ngot {details:?}"
        );
    }
    assert_eq!(emulator.control_get("stats")["accepted_sends"], 0);
}

#[test]
fn transport_level_rejections() {
    let emulator = Emulator::start();
    // Not JSON content type.
    let response = emulator
        .client
        .post(emulator.messages_url(PHONE_ID))
        .bearer_auth("test-token")
        .header("content-type", "text/plain")
        .body(text_body("x").to_string())
        .send()
        .expect("send");
    let (status, answer) = json_of(response);
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], 100);
    assert!(answer["error"]["error_data"]["details"]
        .as_str()
        .is_some_and(|details| details.contains("Content-Type")));
    // Malformed JSON, including bytes that are not UTF-8, never crashes the emulator.
    for raw in [&b"{not json"[..], &b"\xff\xfe{\"a\":"[..], &b""[..]] {
        let response = emulator
            .client
            .post(emulator.messages_url(PHONE_ID))
            .bearer_auth("test-token")
            .header("content-type", "application/json")
            .body(raw.to_vec())
            .send()
            .expect("send");
        let (status, answer) = json_of(response);
        assert_eq!(status, 400);
        assert_eq!(
            answer["error"]["error_data"]["details"],
            "body: must be valid JSON"
        );
    }
    // Over 256 KiB.
    let response = emulator.send(&text_body(&"x".repeat(300 * 1024)));
    let (status, answer) = json_of(response);
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], 100);
    assert!(answer["error"]["error_data"]["details"]
        .as_str()
        .is_some_and(|details| details.starts_with("body: larger than")));
    // Still healthy.
    assert_eq!(emulator.control_get("health"), json!({"ok": true}));
}

#[test]
fn missing_or_wrong_token_answers_401_code_190_with_www_authenticate() {
    let emulator = Emulator::start_with(&["--token", "alpha", "--token", "beta"]);
    let response = emulator
        .client
        .post(emulator.messages_url(PHONE_ID))
        .json(&text_body("x"))
        .send()
        .expect("send");
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        challenge.starts_with("OAuth \"Facebook Platform\" \"invalid_token\""),
        "{challenge}"
    );
    let answer: Value = response.json().expect("json");
    assert_eq!(answer["error"]["code"], 190);
    assert_eq!(answer["error"]["type"], "OAuthException");
    assert_eq!(
        answer["error"]["message"],
        "An active access token must be used to query information about the current user."
    );

    let response = emulator.send_with_token("test-token", &text_body("x"));
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let answer: Value = response.json().expect("json");
    assert_eq!(answer["error"]["code"], 190);
    assert_eq!(answer["error"]["error_subcode"], 463);
    assert!(answer["error"]["message"]
        .as_str()
        .is_some_and(|message| message.starts_with("Error validating access token:")));

    for token in ["alpha", "beta"] {
        assert_eq!(
            emulator.send_with_token(token, &text_body("x")).status(),
            200
        );
    }
}

#[test]
fn unknown_objects_and_paths_answer_graph_method_exception_100_33() {
    let emulator = Emulator::start();
    let check = |response: Response, object_id: &str, verb: &str| {
        assert_unknown_object(json_of(response), object_id, verb)
    };
    check(
        emulator.send_to_phone("12ab", &text_body("x")),
        "12ab",
        "post",
    );
    check(
        emulator
            .client
            .post(format!("{}/v26.0/{PHONE_ID}/widgets", emulator.base))
            .bearer_auth("test-token")
            .json(&json!({}))
            .send()
            .expect("send"),
        PHONE_ID,
        "post",
    );
    check(
        emulator
            .client
            .get(emulator.messages_url(PHONE_ID))
            .bearer_auth("test-token")
            .send()
            .expect("send"),
        PHONE_ID,
        "get",
    );
    check(
        emulator
            .client
            .post(format!("{}/v26/{PHONE_ID}/messages", emulator.base))
            .bearer_auth("test-token")
            .json(&text_body("x"))
            .send()
            .expect("send"),
        PHONE_ID,
        "post",
    );
}

#[test]
fn mark_as_read_and_typing_indicator() {
    let emulator = Emulator::start();
    let incoming = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=";
    for body in [
        json!({"messaging_product":"whatsapp","status":"read","message_id":incoming}),
        json!({"messaging_product":"whatsapp","status":"read","message_id":incoming,"typing_indicator":{"type":"text"}}),
    ] {
        let response = emulator.send(&body);
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().expect("text"), r#"{"success":true}"#);
    }
    let (_, sent) = json_of(emulator.send(&text_body("hello")));
    let outgoing = sent["messages"][0]["id"].as_str().expect("wamid");
    let (status, answer) = json_of(
        emulator
            .send(&json!({"messaging_product":"whatsapp","status":"read","message_id":outgoing})),
    );
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], 100);
    assert_eq!(
        answer["error"]["error_data"]["details"],
        format!(
            "Message supplied to mark message as read API with message ID: {outgoing} is outgoing. \
             Please use an incoming message ID."
        )
    );
    // Mark-as-read is not a send.
    assert_eq!(emulator.control_get("stats")["accepted_sends"], 1);
}

#[test]
fn requests_are_recorded_with_every_field() {
    let emulator = Emulator::start();
    let body = text_body("recorded");
    let raw = body.to_string();
    let response = emulator
        .client
        .post(format!("{}?trace=1", emulator.messages_url(PHONE_ID)))
        .bearer_auth("test-token")
        .header("content-type", "application/json")
        .header("X-Test-Header", "abc")
        .body(raw.clone())
        .send()
        .expect("send");
    let (status, answer) = json_of(response);
    assert_eq!(status, 200);
    let bad = json!({"messaging_product":"whatsapp","to":"+1 650","type":"image","image":{}});
    assert_eq!(emulator.send(&bad).status(), 400);

    let requests = emulator.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first["seq"], 1);
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], format!("/v26.0/{PHONE_ID}/messages"));
    assert_eq!(first["query"], "trace=1");
    assert_eq!(first["headers"]["x-test-header"], "abc");
    assert_eq!(first["headers"]["authorization"], "Bearer test-token");
    assert_eq!(first["headers"]["content-type"], "application/json");
    assert_eq!(first["body"], body);
    assert_eq!(first["body_text"], raw);
    assert_eq!(first["phone_number_id"], PHONE_ID);
    assert_eq!(first["to"], "16505551234");
    assert_eq!(first["type"], "text");
    assert_eq!(first["response_status"], 200);
    assert_eq!(first["response_body"], answer);
    assert_eq!(first["wamid"], answer["messages"][0]["id"]);
    assert_eq!(first["fault_id"], Value::Null);
    assert!(first["received_at_ms"].is_u64());

    let second = &requests[1];
    assert_eq!(second["seq"], 2);
    assert_eq!(second["to"], "+1 650");
    assert_eq!(second["type"], "image");
    assert_eq!(second["response_status"], 400);
    assert_eq!(second["wamid"], Value::Null);
    assert_eq!(second["response_body"]["error"]["code"], 100);

    // Filters, stats and clearing.
    let since = emulator.control_get("requests?since=1")["requests"].clone();
    assert_eq!(since.as_array().map(Vec::len), Some(1));
    assert_eq!(since[0]["seq"], 2);
    let none = emulator.control_get("requests?path_contains=%2Fmedia")["requests"].clone();
    assert_eq!(none, json!([]));
    let some = emulator.control_get("requests?path_contains=%2Fmessages")["requests"].clone();
    assert_eq!(some.as_array().map(Vec::len), Some(2));
    assert_eq!(
        emulator.control_get("stats"),
        json!({"requests":2,"accepted_sends":1,"by_status":{"200":1,"400":1}})
    );
    let response = emulator
        .client
        .delete(format!("{}/_emulator/requests", emulator.base))
        .send()
        .expect("delete");
    assert_eq!(
        response.json::<Value>().expect("json"),
        json!({"success": true})
    );
    assert!(emulator.requests().is_empty());
    // Sequence numbers keep growing after a clear.
    emulator.send(&text_body("again"));
    assert_eq!(emulator.requests()[0]["seq"], 3);
}

#[test]
fn record_limit_drops_the_oldest() {
    let emulator = Emulator::start_with(&["--record-limit", "3"]);
    for index in 0..5 {
        emulator.send(&text_body(&format!("m{index}")));
    }
    let seqs: Vec<u64> = emulator
        .requests()
        .iter()
        .filter_map(|entry| entry["seq"].as_u64())
        .collect();
    assert_eq!(seqs, vec![3, 4, 5]);
    assert_eq!(emulator.control_get("stats")["requests"], 5);
}

#[test]
fn fault_error_with_retry_after_then_normal_after_times() {
    let emulator = Emulator::start();
    let id = emulator.add_fault(json!({
        "match": {"to": "+1 (650) 555-1234", "type": "text"},
        "times": 2,
        "action": {"error": {"code": 131056}, "retry_after_s": 7}
    }));
    // A different type does not match.
    let image = json!({"messaging_product":"whatsapp","to":"16505551234","type":"image","image":{"id":"1"}});
    assert_eq!(emulator.send(&image).status(), 200);
    for _ in 0..2 {
        let response = emulator.send(&text_body("x"));
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()["retry-after"], "7");
        assert!(response.headers().contains_key("www-authenticate"));
        let answer: Value = response.json().expect("json");
        assert_eq!(answer["error"]["code"], 131056);
        assert_eq!(
            answer["error"]["message"],
            "(#131056) (Business Account, Consumer Account) pair rate limit hit"
        );
        assert_eq!(answer["error"]["type"], "OAuthException");
        assert_eq!(
            answer["error"]["error_data"]["messaging_product"],
            "whatsapp"
        );
    }
    // Used up: normal handling again, and the rule is gone.
    assert_eq!(emulator.send(&text_body("x")).status(), 200);
    assert_eq!(emulator.control_get("faults"), json!({"faults": []}));
    let faulted: Vec<Value> = emulator
        .requests()
        .into_iter()
        .filter(|entry| entry["fault_id"] == json!(id))
        .collect();
    assert_eq!(faulted.len(), 2);
    assert_eq!(faulted[0]["response_status"], 400);
}

#[test]
fn fault_error_fields_and_default_statuses() {
    let emulator = Emulator::start();
    emulator.add_fault(json!({
        "times": 1,
        "action": {"error": {"code": 368, "http_status": 403, "message": "custom", "subcode": 2494055,
                              "details": "why", "type": "GraphMethodException"}}
    }));
    let (status, answer) = json_of(emulator.send(&text_body("x")));
    assert_eq!(status, 403);
    assert_eq!(answer["error"]["message"], "custom");
    assert_eq!(answer["error"]["error_subcode"], 2494055);
    assert_eq!(answer["error"]["type"], "GraphMethodException");
    assert_eq!(answer["error"]["error_data"]["details"], "why");

    emulator.add_fault(json!({"times": 1, "action": {"error": {"code": 131000}}}));
    let (status, answer) = json_of(emulator.send(&text_body("x")));
    assert_eq!(status, 500);
    assert_eq!(answer["error"]["is_transient"], true);
    assert_eq!(answer["error"]["message"], "(#131000) Something went wrong");

    emulator.add_fault(json!({"times": 1, "action": {"error": {"code": 190}}}));
    assert_eq!(emulator.send(&text_body("x")).status(), 401);
}

#[test]
fn fault_raw_status_and_body() {
    let emulator = Emulator::start();
    emulator.add_fault(json!({
        "match": {"phone_number_id": PHONE_ID},
        "times": 1,
        "action": {"http_status": 503, "body": "<html>Service Unavailable</html>", "retry_after_s": 2}
    }));
    // Another number is unaffected.
    assert_eq!(emulator.send_to_phone("999", &text_body("x")).status(), 200);
    let response = emulator.send(&text_body("x"));
    assert_eq!(response.status(), 503);
    assert!(response.headers()["content-type"]
        .to_str()
        .is_ok_and(|value| value.starts_with("text/html")));
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(
        response.text().expect("text"),
        "<html>Service Unavailable</html>"
    );
    assert_eq!(emulator.send(&text_body("x")).status(), 200);
}

#[test]
fn fault_delay_then_normal_handling() {
    let emulator = Emulator::start();
    emulator.add_fault(
        json!({"match": {"path_contains": "/messages"}, "times": 1, "action": {"delay_ms": 400}}),
    );
    let started = Instant::now();
    let response = emulator.send(&text_body("x"));
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(response.status(), 200);
    assert_eq!(emulator.send(&text_body("x")).status(), 200);
    let requests = emulator.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1]["fault_id"],
        Value::Null,
        "the one-time fault is used up"
    );
}

#[test]
fn fault_drop_closes_the_connection_without_an_answer() {
    let emulator = Emulator::start();
    let id = emulator.add_fault(json!({"times": 1, "action": {"drop": true}}));
    let result = emulator
        .client
        .post(emulator.messages_url(PHONE_ID))
        .bearer_auth("test-token")
        .json(&text_body("x"))
        .send();
    assert!(result.is_err(), "expected a connection error");
    // The emulator keeps serving, and recorded the dropped request.
    assert_eq!(emulator.send(&text_body("x")).status(), 200);
    let requests = emulator.requests();
    assert_eq!(requests[0]["fault_id"], id);
    assert_eq!(requests[0]["response_body"], Value::Null);
    assert_eq!(requests[0]["response_status"], Value::Null);
    assert_eq!(requests[0]["body"], text_body("x"));
}

#[test]
fn fault_rules_are_listed_cleared_and_validated() {
    let emulator = Emulator::start();
    let first = emulator.add_fault(json!({"match": {"to": "1"}, "action": {"error": {"code": 2}}}));
    let second = emulator.add_fault(json!({"action": {"delay_ms": 1}}));
    assert!(second > first);
    let listed = emulator.control_get("faults");
    assert_eq!(listed["faults"].as_array().map(Vec::len), Some(2));
    assert_eq!(listed["faults"][0]["id"], first);
    let response = emulator
        .client
        .post(format!("{}/_emulator/faults", emulator.base))
        .body("{\"action\":{\"explode\":true}}")
        .send()
        .expect("post");
    assert_eq!(response.status(), 400);
    let response = emulator
        .client
        .post(format!("{}/_emulator/faults", emulator.base))
        .body("not json")
        .send()
        .expect("post");
    assert_eq!(response.status(), 400);
    let response = emulator
        .client
        .delete(format!("{}/_emulator/faults", emulator.base))
        .send()
        .expect("delete");
    assert_eq!(response.status(), 200);
    assert_eq!(emulator.control_get("faults"), json!({"faults": []}));
}

#[test]
fn throughput_limit_answers_130429_per_phone_number() {
    let emulator = Emulator::start_with(&["--throughput-mps", "3"]);
    for _ in 0..3 {
        assert_eq!(emulator.send(&text_body("x")).status(), 200);
    }
    let (status, answer) = json_of(emulator.send(&text_body("x")));
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], 130429);
    assert_eq!(answer["error"]["message"], "(#130429) Rate limit hit");
    assert_eq!(answer["error"]["error_subcode"], 2494055);
    // Other numbers have their own window.
    assert_eq!(emulator.send_to_phone("777", &text_body("x")).status(), 200);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(emulator.send(&text_body("x")).status(), 200);
    assert_eq!(emulator.control_get("stats")["accepted_sends"], 5);
}

#[test]
fn pair_limit_answers_131056_per_recipient() {
    let emulator = Emulator::start_with(&["--pair-limit", "2", "--pair-window-ms", "500"]);
    for _ in 0..2 {
        assert_eq!(emulator.send(&text_body("x")).status(), 200);
    }
    let (status, answer) = json_of(emulator.send(&text_body("x")));
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], 131056);
    // Formatting of the same number does not escape the limit.
    let formatted =
        json!({"messaging_product":"whatsapp","to":"+1 650-555-1234","text":{"body":"x"}});
    assert_eq!(emulator.send(&formatted).status(), 400);
    let other = json!({"messaging_product":"whatsapp","to":"16505550000","text":{"body":"x"}});
    assert_eq!(emulator.send(&other).status(), 200);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(emulator.send(&text_body("x")).status(), 200);
}

#[test]
fn config_changes_at_run_time_and_reset_restores_it() {
    let emulator = Emulator::start();
    assert_eq!(
        emulator.control_get("config"),
        json!({"tokens":["test-token"],"throughput_mps":null,"pair_limit":null,"latency_ms":0})
    );
    let updated = emulator.control_post(
        "config",
        &json!({"tokens":["fresh"],"throughput_mps":1,"pair_limit":{"max":5},"latency_ms":150}),
    );
    assert_eq!(
        updated,
        json!({"tokens":["fresh"],"throughput_mps":1,"pair_limit":{"max":5,"window_ms":6000},"latency_ms":150})
    );
    // The revoked token is refused from now on.
    let (status, answer) = json_of(emulator.send_with_token("test-token", &text_body("x")));
    assert_eq!(status, 401);
    assert_eq!(answer["error"]["code"], 190);
    let started = Instant::now();
    assert_eq!(
        emulator.send_with_token("fresh", &text_body("x")).status(),
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    let (_, answer) = json_of(emulator.send_with_token("fresh", &text_body("x")));
    assert_eq!(answer["error"]["code"], 130429);
    // Bad config input is refused without changing anything.
    let response = emulator
        .client
        .post(format!("{}/_emulator/config", emulator.base))
        .json(&json!({"tokens":"nope"}))
        .send()
        .expect("post");
    assert_eq!(response.status(), 400);

    emulator.add_fault(json!({"action": {"error": {"code": 2}}}));
    let reset = emulator.control_post("reset", &json!({}));
    assert_eq!(reset, json!({"success": true}));
    assert_eq!(
        emulator.control_get("config")["tokens"],
        json!(["test-token"])
    );
    assert_eq!(emulator.control_get("faults"), json!({"faults": []}));
    assert_eq!(
        emulator.control_get("stats"),
        json!({"requests":0,"accepted_sends":0,"by_status":{}})
    );
    assert_eq!(emulator.send(&text_body("x")).status(), 200);
}

#[test]
fn answers_use_graph_escaping() {
    let emulator = Emulator::start();
    let body = json!({"messaging_product":"whatsapp","to":"1","text":{"body":"x"},"café/bar":1});
    let response = emulator.send(&body);
    assert_eq!(response.status(), 400);
    let text = response.text().expect("text");
    assert!(
        text.contains(r#""details":"caf\u00e9\/bar: unknown field""#),
        "{text}"
    );
    let parsed: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        parsed["error"]["error_data"]["details"],
        "café/bar: unknown field"
    );

    emulator.add_fault(json!({"times": 1, "action": {"error": {"code": 131053, "details": "see https://example.com/é"}}}));
    let text = emulator.send(&text_body("x")).text().expect("text");
    assert!(
        text.contains(r#"see https:\/\/example.com\/\u00e9"#),
        "{text}"
    );
}

#[test]
fn control_endpoints_basics() {
    let emulator = Emulator::start();
    assert_eq!(emulator.control_get("health"), json!({"ok": true}));
    let response = emulator
        .client
        .get(format!("{}/_emulator/nothing", emulator.base))
        .send()
        .expect("get");
    assert_eq!(response.status(), 404);
    let response = emulator
        .client
        .get(format!("{}/_emulator/requests?since=abc", emulator.base))
        .send()
        .expect("get");
    assert_eq!(response.status(), 400);
    // Control calls are not recorded as Graph requests.
    assert!(emulator.requests().is_empty());
}

#[test]
fn many_requests_over_keep_alive_from_several_threads() {
    let emulator = Emulator::start();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let emulator = &emulator;
            scope.spawn(move || {
                for index in 0..50 {
                    let response = emulator.send(&text_body(&format!("{thread}-{index}")));
                    assert_eq!(response.status(), 200);
                }
            });
        }
    });
    let requests = emulator.requests();
    assert_eq!(requests.len(), 200);
    let wamids: HashSet<&str> = requests
        .iter()
        .filter_map(|entry| entry["wamid"].as_str())
        .collect();
    assert_eq!(wamids.len(), 200);
    // Recorded in arrival (seq) order.
    let seqs: Vec<u64> = requests
        .iter()
        .filter_map(|entry| entry["seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]));
}

// ===================================================================================== //
// Webhook driver
// ===================================================================================== //

/// One HTTP request as the test receiver saw it.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    fn query_param(&self, name: &str) -> Option<String> {
        let (_, query) = self.target.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| value.to_string())
        })
    }
}

type Answer = Box<dyn Fn(&Received) -> (u16, String) + Send + Sync>;

/// A tiny HTTP/1.1 webhook subscriber on 127.0.0.1:0: records every request and answers with
/// `answer` (one connection per request, `Connection: close`).
struct Receiver {
    url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

const APP_SECRET: &str = "test-app-secret";

fn signature_of(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256={hex}")
}

/// Meta's legacy `X-Hub-Signature` value: `sha1=<hex HMAC-SHA1(secret, body)>`.
fn legacy_signature_of(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha1={hex}")
}

impl Receiver {
    /// Answers like a correct subscriber: 403 to a bad signature or verify token, the challenge
    /// to a good verification GET, 200 otherwise.
    fn start() -> Self {
        Self::start_with(Box::new(|request: &Received| {
            if request.method == "GET" {
                let token = request.query_param("hub.verify_token");
                let mode = request.query_param("hub.mode");
                return match (mode.as_deref(), token.as_deref()) {
                    (Some("subscribe"), Some("test-verify-token")) => (
                        200,
                        request.query_param("hub.challenge").unwrap_or_default(),
                    ),
                    _ => (403, "forbidden".to_string()),
                };
            }
            let expected = signature_of(APP_SECRET, &request.body);
            if request.header("x-hub-signature-256") == Some(expected.as_str()) {
                (200, "EVENT_RECEIVED".to_string())
            } else {
                (403, "bad signature".to_string())
            }
        }))
    }

    fn start_with(answer: Answer) -> Self {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let url = format!("http://{}/webhook", listener.local_addr().expect("address"));
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut data = Vec::new();
                let mut buffer = [0u8; 8192];
                let header_end = loop {
                    if let Some(end) = data.windows(4).position(|window| window == b"\r\n\r\n") {
                        break Some(end);
                    }
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break None,
                        Ok(count) => data.extend_from_slice(&buffer[..count]),
                    }
                };
                let Some(header_end) = header_end else {
                    continue;
                };
                let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
                let mut lines = head.split("\r\n");
                let request_line = lines.next().unwrap_or_default().to_string();
                let mut parts = request_line.split(' ');
                let method = parts.next().unwrap_or_default().to_string();
                let target = parts.next().unwrap_or_default().to_string();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|line| line.split_once(':'))
                    .map(|(name, value)| {
                        (name.trim().to_ascii_lowercase(), value.trim().to_string())
                    })
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(name, _)| name == "content-length")
                    .and_then(|(_, value)| value.parse().ok())
                    .unwrap_or(0);
                let mut body = data[header_end + 4..].to_vec();
                while body.len() < length {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(count) => body.extend_from_slice(&buffer[..count]),
                    }
                }
                let request = Received {
                    method,
                    target,
                    headers,
                    body,
                };
                let (status, text) = answer(&request);
                log.lock().expect("log").push(request);
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Receiver { url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }

    /// Waits until at least `count` requests arrived (or panics after 5 s).
    fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "expected {count} webhook requests, got {}",
                received.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Emulator {
    fn with_webhooks(receiver: &Receiver, extra: &[&str]) -> Self {
        let mut args = vec!["--webhook-url", receiver.url.as_str()];
        args.extend_from_slice(extra);
        Self::start_with(&args)
    }

    fn control_post_status(&self, path: &str, body: &Value) -> (u16, Value) {
        json_of(
            self.client
                .post(format!("{}/_emulator/{path}", self.base))
                .json(body)
                .send()
                .expect("control post"),
        )
    }

    fn deliveries(&self) -> Vec<Value> {
        self.control_get("webhook/deliveries")["deliveries"]
            .as_array()
            .expect("deliveries")
            .clone()
    }

    /// Waits until the delivery log satisfies `done` (or panics after 5 s).
    fn wait_deliveries(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let deliveries = self.deliveries();
            if done(&deliveries) {
                return deliveries;
            }
            assert!(
                Instant::now() < deadline,
                "deliveries never settled: {deliveries:#?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The single `value` of a one-entry, one-change payload.
/// Each webhook names the WABA as its entry id and concerns `phone` (cloud-api.md §5.3).
fn assert_routed(received: &[Received], waba: &str, phone: &str) {
    for request in received {
        let payload = request.json();
        assert_eq!(payload["entry"][0]["id"], waba, "{payload}");
        assert_eq!(only_value(&payload)["metadata"]["phone_number_id"], phone);
    }
}

fn only_value(payload: &Value) -> &Value {
    assert_eq!(payload["object"], "whatsapp_business_account");
    assert_eq!(payload["entry"].as_array().map(Vec::len), Some(1));
    let changes = &payload["entry"][0]["changes"];
    assert_eq!(changes.as_array().map(Vec::len), Some(1));
    assert_eq!(changes[0]["field"], "messages");
    &changes[0]["value"]
}

#[test]
fn webhook_is_signed_over_the_exact_bytes_with_graph_escaping() {
    let receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&receiver, &[]);
    let (status, answer) = emulator.control_post_status(
        "webhook/inbound",
        &json!({"from":"16505551234","name":"Zoë","phone_number_id":PHONE_ID,"type":"text",
                "text":{"body":"café 😀 https://example.com/a/b"}}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["delivery"]["status"], 200);
    assert_eq!(answer["delivery"]["attempts"], 1);
    let received = receiver.wait_for(1);
    let request = &received[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/webhook");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("user-agent"), Some("facebookexternalua"));
    let signature = signature_of(APP_SECRET, &request.body);
    assert_eq!(
        request.header("x-hub-signature-256"),
        Some(signature.as_str())
    );
    assert_eq!(answer["delivery"]["signature"], signature.as_str());
    // The legacy header over the same bytes, verifiable on its own (receivers on older
    // frameworks check only this one).
    let legacy = legacy_signature_of(APP_SECRET, &request.body);
    assert_eq!(request.header("x-hub-signature"), Some(legacy.as_str()));
    assert_eq!(legacy.len(), 5 + 40);
    assert_eq!(answer["delivery"]["signature_sha1"], legacy.as_str());
    let text = String::from_utf8(request.body.clone()).expect("ASCII body");
    assert!(text.is_ascii());
    assert_eq!(answer["delivery"]["body"], text.as_str());
    assert!(
        text.contains(r#"caf\u00e9 \ud83d\ude00 https:\/\/example.com\/a\/b"#),
        "{text}"
    );
    assert!(text.contains(r#""name":"Zo\u00eb""#), "{text}");
    // Compact and in Meta's key order.
    assert!(text.starts_with(r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Zo\u00eb"},"wa_id":"16505551234","user_id":"US."#), "{text}");
    assert!(text.ends_with(r#"}]},"field":"messages"}]}]}"#), "{text}");
    assert!(!text.contains(' ') || text.contains("caf\\u00e9 "));

    let payload = request.json();
    let value = only_value(&payload);
    let message = &value["messages"][0];
    assert_eq!(message["from"], "16505551234");
    assert_eq!(message["from_user_id"], value["contacts"][0]["user_id"]);
    assert!(message["from_user_id"]
        .as_str()
        .unwrap_or("")
        .starts_with("US."));
    assert_eq!(message["id"], answer["id"]);
    assert!(message["id"].as_str().unwrap_or("").starts_with("wamid."));
    assert!(message["timestamp"]
        .as_str()
        .is_some_and(|t| t.parse::<u64>().is_ok()));
    assert_eq!(message["type"], "text");
    assert_eq!(
        message["text"],
        json!({"body":"café 😀 https://example.com/a/b"})
    );
    let keys: Vec<&str> = message
        .as_object()
        .map(|object| object.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut expected = vec!["from", "from_user_id", "id", "timestamp", "type", "text"];
    expected.sort_unstable();
    assert_eq!(keys, expected);

    // A custom app secret signs with that secret.
    let receiver = Receiver::start_with(Box::new(|_| (200, String::new())));
    let emulator = Emulator::with_webhooks(&receiver, &["--app-secret", "another secret"]);
    emulator.control_post(
        "webhook/inbound",
        &json!({"type":"text","text":{"body":"x"}}),
    );
    let request = &receiver.wait_for(1)[0];
    assert_eq!(
        request.header("x-hub-signature-256"),
        Some(signature_of("another secret", &request.body).as_str())
    );
    assert_eq!(
        request.header("x-hub-signature"),
        Some(legacy_signature_of("another secret", &request.body).as_str())
    );

    // An inbound wamid can be marked as read (it is not mistaken for an outgoing one).
    let response = emulator
        .send(&json!({"messaging_product":"whatsapp","status":"read","message_id":answer["id"]}));
    assert_eq!(response.status(), 200);
}

#[test]
fn every_inbound_type_builds_the_documented_shape() {
    let receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&receiver, &[]);
    let context = json!({"from":"15550783881","id":"wamid.OUR_MESSAGE"});
    let cases: Vec<(&str, Value)> = vec![
        (
            "text",
            json!({"text":{"body":"Does it come in another color?"}}),
        ),
        ("image", json!({"image":{"caption":"Taj Mahal"}})),
        (
            "image",
            json!({"image":{"caption":"given","mime_type":"image/png","sha256":"abc=","id":"1003383421387256","url":"https://lookaside.fbsbx.com/x?mid=1"}}),
        ),
        ("video", json!({"video":{"caption":"My vacation video"}})),
        (
            "document",
            json!({"document":{"caption":"c","filename":"receipt.pdf"}}),
        ),
        ("audio", json!({"audio":{"voice":true}})),
        ("sticker", json!({})),
        (
            "location",
            json!({"location":{"latitude":37.44221496582,"longitude":-122.16165924072,"name":"Philz Coffee","address":"101 Forest Ave, Palo Alto, CA 94301","url":"https://philzcoffee.com/"}}),
        ),
        (
            "contacts",
            json!({"contacts":[{"name":{"formatted_name":"Lucía Gómez","first_name":"Lucía"},"phones":[{"phone":"+1 (983) 555-2319","wa_id":"19835552319","type":"MOBILE"}]}]}),
        ),
        (
            "reaction",
            json!({"reaction":{"message_id":"wamid.X","emoji":"👍"}}),
        ),
        (
            "interactive",
            json!({"context":context,"interactive":{"type":"button_reply","button_reply":{"id":"cancel-button","title":"Cancel"}}}),
        ),
        (
            "interactive",
            json!({"context":context,"interactive":{"type":"list_reply","list_reply":{"id":"priority_express","title":"Priority Mail Express","description":"Next Day to 2 Days"}}}),
        ),
        (
            "interactive",
            json!({"context":context,"interactive":{"type":"nfm_reply","nfm_reply":{"name":"flow","body":"Sent","response_json":"{\"flow_token\":\"t\"}"}}}),
        ),
        (
            "button",
            json!({"context":context,"button":{"payload":"Unsubscribe","text":"Unsubscribe"}}),
        ),
        (
            "order",
            json!({"order":{"catalog_id":"194836987003835","text":"","product_items":[{"product_retailer_id":"di9ozbzfi4","quantity":2,"item_price":30,"currency":"USD"}]}}),
        ),
        (
            "system",
            json!({"system":{"body":"User changed number","wa_id":"12195555358","type":"user_changed_number"}}),
        ),
        (
            "unsupported",
            json!({"errors":[{"code":131051,"title":"Message type unknown","message":"Message type unknown","error_data":{"details":"Message type is currently not supported."}}],"unsupported":{"type":"pool"}}),
        ),
        (
            "revoke",
            json!({"revoke":{"original_message_id":"wamid.OLD"}}),
        ),
        (
            "edit",
            json!({"edit":{"original_message_id":"wamid.OLD","message":{"type":"text","text":{"body":"new"}}}}),
        ),
        ("hologram", json!({"hologram":{"anything":[1,2,3]}})),
        (
            "text",
            json!({"context":{"forwarded":true},"referral":{"source_url":"https://fb.me/ad","source_type":"ad"},"text":{"body":"fwd"}}),
        ),
    ];
    for (index, (kind, extra)) in cases.iter().enumerate() {
        let mut spec = json!({"from":"16505551234","name":"Sheena Nelson","phone_number_id":PHONE_ID,"type":kind});
        for (key, value) in extra.as_object().expect("object") {
            spec[key] = value.clone();
        }
        let answer = emulator.control_post("webhook/inbound", &spec);
        assert_eq!(answer["delivery"]["status"], 200, "{kind}: {answer}");
        let received = receiver.wait_for(index + 1);
        let payload = received[index].json();
        let value = only_value(&payload);
        assert_eq!(value["messaging_product"], "whatsapp");
        assert_eq!(value["metadata"]["phone_number_id"], PHONE_ID);
        let message = &value["messages"][0];
        assert_eq!(message["type"], *kind);
        assert_eq!(message["from"], "16505551234");
        assert_eq!(message["id"], answer["id"]);
        if *kind == "system" {
            assert!(
                value.get("contacts").is_none(),
                "system messages carry no contacts"
            );
        } else {
            assert_eq!(value["contacts"][0]["profile"]["name"], "Sheena Nelson");
            assert_eq!(value["contacts"][0]["wa_id"], "16505551234");
        }
        // Every non-control key is copied verbatim, except filled-in media.
        for (key, expected) in extra.as_object().expect("object") {
            let is_generated_media =
                matches!(*kind, "image" | "video" | "document" | "audio" | "sticker")
                    && key == kind
                    && expected.get("id").is_none();
            if !is_generated_media {
                assert_eq!(&message[key], expected, "{kind}.{key}");
            }
        }
        if matches!(*kind, "image" | "video" | "document" | "audio" | "sticker") {
            let media = &message[*kind];
            assert!(
                media["id"].as_str().is_some_and(|id| !id.is_empty()),
                "{kind}"
            );
            assert!(media["mime_type"].as_str().is_some(), "{kind}");
            let sha = media["sha256"].as_str().unwrap_or("");
            if extra[*kind].get("id").is_none() {
                // Base64 of a SHA-256: 44 characters ending in '='.
                assert_eq!(sha.len(), 44, "{kind}: {sha}");
                assert!(sha.ends_with('='));
                for (key, value) in extra[*kind].as_object().into_iter().flatten() {
                    assert_eq!(&media[key], value, "{kind}.{key} kept");
                }
            }
        }
    }
    let received = receiver.received();
    let media = |index: usize, kind: &str| {
        received[index].json()["entry"][0]["changes"][0]["value"]["messages"][0][kind].clone()
    };
    assert_eq!(media(1, "image")["mime_type"], "image/jpeg");
    assert_eq!(media(3, "video")["mime_type"], "video/mp4");
    assert_eq!(media(4, "document")["mime_type"], "application/pdf");
    assert_eq!(media(5, "audio")["mime_type"], "audio/ogg; codecs=opus");
    assert_eq!(media(6, "sticker")["mime_type"], "image/webp");
    assert_eq!(media(6, "sticker")["animated"], false);
    assert_ne!(media(1, "image")["id"], media(3, "video")["id"]);

    // Context and explicit id/timestamp; the 2026 BSUID-only sender.
    let answer = emulator.control_post(
        "webhook/inbound",
        &json!({"type":"text","text":{"body":"hi"},"id":"wamid.GIVEN","timestamp":"1749416383",
                "omit_phone":true,"user_id":"US.13491208655302741918","name":"Anon"}),
    );
    assert_eq!(answer["id"], "wamid.GIVEN");
    let payload = receiver.wait_for(cases.len() + 1)[cases.len()].json();
    let value = only_value(&payload);
    assert_eq!(
        value["contacts"],
        json!([{"profile":{"name":"Anon"},"user_id":"US.13491208655302741918"}])
    );
    let message = &value["messages"][0];
    assert!(message.get("from").is_none());
    assert_eq!(message["from_user_id"], "US.13491208655302741918");
    assert_eq!(message["timestamp"], "1749416383");
    assert_eq!(message["id"], "wamid.GIVEN");

    // Malformed specs are refused without a delivery.
    for bad in [
        json!({"text":{"body":"no type"}}),
        json!({"type":"image","image":"not an object"}),
        json!([1]),
    ] {
        let (status, body) = emulator.control_post_status("webhook/inbound", &bad);
        assert_eq!(status, 400, "{bad} -> {body}");
    }
    assert_eq!(receiver.received().len(), cases.len() + 1);
}

#[test]
fn status_webhooks_sent_delivered_failed() {
    let receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&receiver, &[]);
    let answer = emulator.control_post(
        "webhook/status",
        &json!({"id":"wamid.S1","status":"sent","recipient_id":"16505551234","phone_number_id":PHONE_ID,
                "biz_opaque_callback_data":"order-42"}),
    );
    assert_eq!(answer["id"], "wamid.S1");
    assert_eq!(answer["delivery"]["status"], 200);
    let payload = receiver.wait_for(1)[0].json();
    let value = only_value(&payload);
    assert_eq!(value["contacts"][0]["wa_id"], "16505551234");
    let status = &value["statuses"][0];
    assert_eq!(status["id"], "wamid.S1");
    assert_eq!(status["status"], "sent");
    assert_eq!(status["recipient_id"], "16505551234");
    assert!(status["recipient_user_id"]
        .as_str()
        .unwrap_or("")
        .starts_with("US."));
    assert!(status["timestamp"]
        .as_str()
        .is_some_and(|t| t.parse::<u64>().is_ok()));
    assert_eq!(status["biz_opaque_callback_data"], "order-42");
    assert_eq!(status["pricing"]["pricing_model"], "PMP");
    assert!(status.get("errors").is_none());

    emulator.control_post(
        "webhook/status",
        &json!({"id":"wamid.S1","status":"delivered","recipient_id":"16505551234"}),
    );
    let payload = receiver.wait_for(2)[1].json();
    let status = &only_value(&payload)["statuses"][0];
    assert_eq!(status["status"], "delivered");
    // cloud-api.md §5.7: "`pricing` appears on `sent` and on one of `delivered`/`read`".
    assert_eq!(status["pricing"]["pricing_model"], "PMP");
    assert!(status.get("biz_opaque_callback_data").is_none());

    emulator.control_post(
        "webhook/status",
        &json!({"id":"wamid.S2","status":"failed","recipient_id":"16505551234",
                "biz_opaque_callback_data":"order-43",
                "errors":[{"code":131047,"title":"Re-engagement message"}]}),
    );
    let received = receiver.wait_for(3);
    let payload = received[2].json();
    let value = only_value(&payload);
    assert!(
        value.get("contacts").is_none(),
        "failed statuses carry no contacts"
    );
    let status = &value["statuses"][0];
    assert_eq!(status["status"], "failed");
    assert_eq!(status["biz_opaque_callback_data"], "order-43");
    assert!(status.get("pricing").is_none());
    assert_eq!(
        status["errors"],
        json!([{"code":131047,"title":"Re-engagement message","message":"Re-engagement message",
                "error_data":{"details":"Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
                "href":"https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes"}])
    );
    let text = String::from_utf8_lossy(&received[2].body).into_owned();
    assert!(
        text.contains(
            r#""href":"https:\/\/developers.facebook.com\/documentation\/business-messaging"#
        ),
        "{text}"
    );

    let (status, _) = emulator.control_post_status("webhook/status", &json!({"status":"sent"}));
    assert_eq!(status, 400, "id is required");
}

#[test]
fn batch_is_one_post_in_the_given_order() {
    let receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&receiver, &[]);
    let answer = emulator.control_post(
        "webhook/batch",
        &json!({"entries":[
            {"changes":[
                {"phone_number_id":"111","messages":[
                    {"from":"16505550001","name":"A","type":"text","text":{"body":"one"},"id":"wamid.M1"},
                    {"from":"16505550002","name":"B","type":"text","text":{"body":"two"},"id":"wamid.M2"},
                    {"from":"16505550001","name":"A","type":"text","text":{"body":"three"},"id":"wamid.M3"}]},
                {"phone_number_id":"222","statuses":[
                    {"id":"wamid.S1","status":"delivered","recipient_id":"16505550003"},
                    {"id":"wamid.S2","status":"read","recipient_id":"16505550003"}]}]},
            {"id":"999","changes":[{"statuses":[{"id":"wamid.S3","status":"failed","errors":[{"code":131026}]}]}]}
        ]}),
    );
    assert_eq!(
        answer["ids"],
        json!(["wamid.M1", "wamid.M2", "wamid.M3", "wamid.S1", "wamid.S2", "wamid.S3"])
    );
    assert_eq!(answer["delivery"]["status"], 200);
    std::thread::sleep(Duration::from_millis(100));
    let received = receiver.received();
    assert_eq!(received.len(), 1, "a batch is ONE POST");
    let payload = received[0].json();
    let entries = payload["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["id"], "102290129340398");
    assert_eq!(entries[1]["id"], "999");
    let first = &entries[0]["changes"][0]["value"];
    assert_eq!(first["metadata"]["phone_number_id"], "111");
    let bodies: Vec<&str> = first["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|message| message["text"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["one", "two", "three"]);
    // One contact per distinct sender.
    assert_eq!(first["contacts"].as_array().map(Vec::len), Some(2));
    let second = &entries[0]["changes"][1]["value"];
    assert_eq!(second["metadata"]["phone_number_id"], "222");
    assert_eq!(second["statuses"][0]["id"], "wamid.S1");
    assert_eq!(second["statuses"][1]["id"], "wamid.S2");
    let third = &entries[1]["changes"][0]["value"];
    assert_eq!(third["statuses"][0]["errors"][0]["code"], 131026);
    assert!(third.get("contacts").is_none());
}

#[test]
fn retries_after_a_500_then_succeeds() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let receiver = Receiver::start_with(Box::new(move |_| {
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            (500, "try later".to_string())
        } else {
            (200, "ok".to_string())
        }
    }));
    let emulator = Emulator::with_webhooks(&receiver, &[]);
    emulator.control_post(
        "webhook/config",
        &json!({"retry":{"max_attempts":3,"initial_backoff_ms":50}}),
    );
    let answer = emulator.control_post(
        "webhook/inbound",
        &json!({"type":"text","text":{"body":"r"}}),
    );
    assert_eq!(answer["delivery"]["status"], 500);
    assert_eq!(answer["delivery"]["response_body"], "try later");
    let deliveries =
        emulator.wait_deliveries(|all| all.first().is_some_and(|d| d["delivered"] == true));
    let attempts = deliveries[0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(attempts[1]["status"], 200);
    let gap =
        attempts[1]["at_ms"].as_u64().unwrap_or(0) - attempts[0]["at_ms"].as_u64().unwrap_or(0);
    assert!(gap >= 45, "backoff respected: {gap} ms");
    let received = receiver.wait_for(2);
    assert_eq!(received[0].body, received[1].body);
    assert_eq!(
        received[0].header("x-hub-signature-256"),
        received[1].header("x-hub-signature-256")
    );

    // A dead target: connection failures are retried up to max_attempts, then given up.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}/webhook", dead.local_addr().expect("address"));
    drop(dead);
    emulator
        .client
        .delete(format!("{}/_emulator/webhook/deliveries", emulator.base))
        .send()
        .expect("delete");
    emulator.control_post(
        "webhook/config",
        &json!({"url":dead_url,"retry":{"max_attempts":2,"initial_backoff_ms":10}}),
    );
    let answer = emulator.control_post(
        "webhook/inbound",
        &json!({"type":"text","text":{"body":"d"}}),
    );
    assert_eq!(answer["delivery"]["status"], Value::Null);
    assert!(answer["delivery"]["error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    let deliveries = emulator.wait_deliveries(|all| {
        all.first()
            .is_some_and(|d| d["attempts"].as_array().map(Vec::len) == Some(2))
    });
    std::thread::sleep(Duration::from_millis(100));
    let deliveries = emulator
        .deliveries()
        .into_iter()
        .chain(deliveries)
        .collect::<Vec<_>>();
    assert_eq!(
        deliveries[0]["attempts"].as_array().map(Vec::len),
        Some(2),
        "no third attempt"
    );
    assert_eq!(deliveries[0]["delivered"], false);
    assert_eq!(deliveries[0]["attempts"][1]["status"], Value::Null);
}

#[test]
fn duplicate_is_delivered_twice_with_identical_bytes() {
    let receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&receiver, &[]);
    let answer = emulator.control_post(
        "webhook/inbound",
        &json!({"type":"text","text":{"body":"twice"},"duplicate":true}),
    );
    let received = receiver.wait_for(2);
    assert_eq!(received[0].body, received[1].body);
    assert_eq!(
        received[0].header("x-hub-signature-256"),
        received[1].header("x-hub-signature-256")
    );
    assert_eq!(
        received[1].json()["entry"][0]["changes"][0]["value"]["messages"][0]["id"],
        answer["id"]
    );
    let deliveries = emulator.wait_deliveries(|all| all.len() == 2 && all[1]["delivered"] == true);
    assert_eq!(deliveries[0]["duplicate_of"], Value::Null);
    assert_eq!(deliveries[1]["duplicate_of"], deliveries[0]["seq"]);
    assert_eq!(deliveries[0]["body"], deliveries[1]["body"]);

    // Statuses can be duplicated too.
    emulator.control_post(
        "webhook/status",
        &json!({"id":"wamid.D","status":"read","duplicate":true}),
    );
    let received = receiver.wait_for(4);
    assert_eq!(received[2].body, received[3].body);
}

#[test]
fn raw_deliveries_with_wrong_or_missing_signature() {
    let receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&receiver, &[]);
    let exact = "{\"object\" : \"whatsapp_business_account\", \"entry\":[]}";
    let answer = emulator.control_post("webhook/raw", &json!({"body_text":exact}));
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["body"], "EVENT_RECEIVED");
    let received = receiver.wait_for(1);
    assert_eq!(received[0].body, exact.as_bytes());
    assert_eq!(
        received[0].header("x-hub-signature-256"),
        Some(signature_of(APP_SECRET, exact.as_bytes()).as_str())
    );
    assert_eq!(
        received[0].header("x-hub-signature"),
        Some(legacy_signature_of(APP_SECRET, exact.as_bytes()).as_str())
    );

    let answer = emulator.control_post(
        "webhook/raw",
        &json!({"body_text":exact,"signature":"sha256=0000"}),
    );
    assert_eq!(answer["status"], 403);
    assert_eq!(answer["body"], "bad signature");
    assert_eq!(
        receiver.wait_for(2)[1].header("x-hub-signature-256"),
        Some("sha256=0000")
    );
    // A forged signature is not accompanied by a valid legacy one.
    assert_eq!(receiver.wait_for(2)[1].header("x-hub-signature"), None);

    let answer = emulator.control_post("webhook/raw", &json!({"body_text":exact,"signature":null}));
    assert_eq!(answer["status"], 403);
    assert_eq!(receiver.wait_for(3)[2].header("x-hub-signature-256"), None);
    assert_eq!(receiver.wait_for(3)[2].header("x-hub-signature"), None);

    // JSON bodies get Meta's escaping.
    let answer = emulator.control_post("webhook/raw", &json!({"body":{"u":"a/b é"}}));
    assert_eq!(answer["status"], 200);
    assert_eq!(receiver.wait_for(4)[3].body, br#"{"u":"a\/b \u00e9"}"#);

    // A given legacy signature is sent as is.
    let answer = emulator.control_post(
        "webhook/raw",
        &json!({"body_text":exact,"signature_sha1":"sha1=0000"}),
    );
    assert_eq!(answer["status"], 200);
    assert_eq!(
        receiver.wait_for(5)[4].header("x-hub-signature"),
        Some("sha1=0000")
    );

    // Raw deliveries are never retried.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.received().len(), 5);
    let (status, _) = emulator.control_post_status("webhook/raw", &json!({}));
    assert_eq!(status, 400);
}

#[test]
fn verification_get_with_good_and_wrong_token() {
    let receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&receiver, &[]);
    let answer = emulator.control_post("webhook/verify", &json!({}));
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["body"], answer["challenge"]);
    let received = receiver.wait_for(1);
    assert_eq!(received[0].method, "GET");
    assert!(received[0]
        .target
        .starts_with("/webhook?hub.mode=subscribe&hub.challenge="));
    assert_eq!(
        received[0].query_param("hub.verify_token").as_deref(),
        Some("test-verify-token")
    );
    assert_eq!(
        received[0].query_param("hub.challenge").as_deref(),
        answer["challenge"].as_str()
    );

    let answer = emulator.control_post("webhook/verify", &json!({"verify_token":"wrong token"}));
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["status"], 403);
    assert_eq!(
        receiver.wait_for(2)[1]
            .query_param("hub.verify_token")
            .as_deref(),
        Some("wrong%20token")
    );

    // The configured token is used; a wrong one configured fails too.
    emulator.control_post("webhook/config", &json!({"verify_token":"other"}));
    let answer = emulator.control_post("webhook/verify", &json!({}));
    assert_eq!(answer["ok"], false);
}

#[test]
fn auto_statuses_follow_an_accepted_send() {
    let receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&receiver, &["--auto-statuses"]);
    let response = emulator.send(
        &json!({"messaging_product":"whatsapp","to":"+1 650 555 1234","type":"text",
        "text":{"body":"hi"},"biz_opaque_callback_data":"order/42"}),
    );
    assert_eq!(response.status(), 200);
    let (_, body) = json_of(response);
    let wamid = body["messages"][0]["id"]
        .as_str()
        .expect("wamid")
        .to_string();
    let received = receiver.wait_for(3);
    let statuses: Vec<Value> = received
        .iter()
        .map(|request| only_value(&request.json())["statuses"][0].clone())
        .collect();
    let names: Vec<&str> = statuses
        .iter()
        .filter_map(|s| s["status"].as_str())
        .collect();
    assert_eq!(names, ["sent", "delivered", "read"]);
    for status in &statuses {
        assert_eq!(status["id"], wamid.as_str());
        assert_eq!(status["recipient_id"], "16505551234");
        assert_eq!(status["biz_opaque_callback_data"], "order/42");
    }
    assert!(statuses[0].get("pricing").is_some());
    assert!(
        statuses[1].get("pricing").is_some(),
        "delivered carries pricing"
    );
    assert!(
        statuses[2].get("pricing").is_none(),
        "only one of delivered/read"
    );
    let metadata = &received[0].json()["entry"][0]["changes"][0]["value"]["metadata"];
    assert_eq!(metadata["phone_number_id"], PHONE_ID);

    for request in &received {
        assert_eq!(
            request.header("x-hub-signature-256"),
            Some(signature_of(APP_SECRET, &request.body).as_str())
        );
    }
    // Rejected sends and mark-as-read produce nothing.
    let response =
        emulator.send(&json!({"messaging_product":"whatsapp","to":"1","type":"text","text":{}}));
    assert_eq!(response.status(), 400);
    // Marking an inbound message read (its own webhook is the fourth request).
    let inbound = emulator.control_post(
        "webhook/inbound",
        &json!({"from":"16505551234","type":"text","text":{"body":"hello"}}),
    );
    receiver.wait_for(4);
    let read = emulator
        .send(&json!({"messaging_product":"whatsapp","status":"read","message_id":inbound["id"]}));
    let (status, answer) = json_of(read);
    assert_eq!(status, 200, "mark-as-read accepted: {answer}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(receiver.received().len(), 4);

    // Turned off at run time: no more statuses.
    emulator.control_post("webhook/config", &json!({"auto_statuses":false}));
    assert_eq!(emulator.send(&text_body("quiet")).status(), 200);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(receiver.received().len(), 4);

    emulator.control_post("webhook/config", &json!({"auto_statuses":true}));
    // A group send's statuses name the group, as on Meta's group messaging page: recipient_id
    // is the group ID, recipient_type group, no BSUID and no contacts.
    let group_id = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD";
    let response = emulator.send(
        &json!({"messaging_product":"whatsapp","recipient_type":"group","to":group_id,"text":{"body":"hi"}}),
    );
    assert_eq!(response.status(), 200);
    let group_received = receiver.wait_for(7);
    let group_statuses: Vec<Value> = group_received[4..]
        .iter()
        .map(|request| {
            let payload = request.json();
            let value = only_value(&payload);
            assert!(value.get("contacts").is_none(), "{value}");
            value["statuses"][0].clone()
        })
        .collect();
    for status in &group_statuses {
        assert_eq!(status["recipient_id"], group_id);
        assert_eq!(status["recipient_type"], "group");
        assert!(status.get("recipient_user_id").is_none(), "{status}");
    }
    // `sent` is about the group; delivered and read are a participant's receipts, which name
    // the participant (cloud-api.md §5.7: group sends add recipient_participant_id).
    assert_eq!(group_statuses[0]["status"], "sent");
    assert!(
        group_statuses[0].get("recipient_participant_id").is_none(),
        "{}",
        group_statuses[0]
    );
    for status in &group_statuses[1..] {
        assert_eq!(
            status["recipient_participant_id"], "16505551234",
            "{status}"
        );
    }
    // In Meta's key order: right after recipient_type.
    let read_body = String::from_utf8_lossy(&group_received[6].body).into_owned();
    assert!(
        read_body.contains(r#""recipient_type":"group","recipient_participant_id":"16505551234""#),
        "{read_body}"
    );
}

#[test]
fn crafted_group_statuses_name_their_participant() {
    let receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&receiver, &[]);
    let group_id = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD";
    let status_of = |spec: Value| -> Value {
        let answer = emulator.control_post("webhook/status", &spec);
        assert_eq!(answer["delivery"]["status"], 200, "{answer}");
        let body: Value =
            serde_json::from_str(answer["delivery"]["body"].as_str().expect("body")).unwrap();
        only_value(&body)["statuses"][0].clone()
    };
    let group = |status: &str| {
        json!({"id":"wamid.GROUP","status":status,"recipient_id":group_id,
            "recipient_type":"group"})
    };
    let mut named = group("read");
    named["recipient_participant_id"] = json!("4915112345678");
    assert_eq!(
        status_of(named)["recipient_participant_id"],
        "4915112345678"
    );
    assert_eq!(
        status_of(group("delivered"))["recipient_participant_id"],
        "16505551234"
    );
    assert_eq!(
        status_of(group("played"))["recipient_participant_id"],
        "16505551234"
    );
    let mut none = group("read");
    none["recipient_participant_id"] = Value::Null;
    assert!(status_of(none).get("recipient_participant_id").is_none());
    for status in ["sent", "failed"] {
        let built = status_of(group(status));
        assert!(built.get("recipient_participant_id").is_none(), "{built}");
    }
    // An individual's status has no participant.
    let built = status_of(json!({"id":"wamid.ONE","status":"read"}));
    assert!(built.get("recipient_participant_id").is_none(), "{built}");
}

#[test]
fn async_error_fault_produces_one_failed_status() {
    let receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&receiver, &["--auto-statuses"]);
    emulator.add_fault(json!({"times":1,"action":{"async_error":{"code":131047}}}));
    let response = emulator.send(&text_body("late"));
    assert_eq!(response.status(), 200);
    let (_, body) = json_of(response);
    let wamid = body["messages"][0]["id"].clone();
    let received = receiver.wait_for(1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(receiver.received().len(), 1, "only the failed status");
    let payload = received[0].json();
    let value = only_value(&payload);
    assert!(value.get("contacts").is_none());
    let status = &value["statuses"][0];
    assert_eq!(status["id"], wamid);
    assert_eq!(status["status"], "failed");
    assert_eq!(status["errors"][0]["code"], 131047);
    assert_eq!(status["errors"][0]["title"], "Re-engagement message");
    assert_eq!(status["errors"][0]["message"], "Re-engagement message");
    assert!(status["errors"][0]["error_data"]["details"]
        .as_str()
        .is_some());
}

#[test]
fn webhook_config_get_post_reset_and_missing_url() {
    let emulator = Emulator::start();
    let config = emulator.control_get("webhook/config");
    assert_eq!(config["url"], Value::Null);
    assert_eq!(config["app_secret"], "test-app-secret");
    assert_eq!(config["verify_token"], "test-verify-token");
    assert_eq!(config["auto_statuses"], false);
    assert_eq!(config["status_delay_ms"], 20);
    assert_eq!(
        config["retry"],
        json!({"max_attempts":5,"initial_backoff_ms":100})
    );
    assert_eq!(config["timeout_ms"], 5000);
    for path in [
        "webhook/inbound",
        "webhook/status",
        "webhook/batch",
        "webhook/raw",
        "webhook/verify",
    ] {
        let (status, body) =
            emulator.control_post_status(path, &json!({"type":"text","text":{"body":"x"}}));
        assert_eq!(status, 400, "{path}");
        assert!(
            body["error"].as_str().unwrap_or("").contains("url"),
            "{path}: {body}"
        );
    }
    let updated = emulator.control_post(
        "webhook/config",
        &json!({"url":"http://127.0.0.1:9/hook","app_secret":"s","auto_statuses":true,"timeout_ms":100}),
    );
    assert_eq!(updated["url"], "http://127.0.0.1:9/hook");
    assert_eq!(emulator.control_get("webhook/config")["app_secret"], "s");
    for bad in [
        json!({"url":"ftp://x"}),
        json!({"retry":{"max_attempts":0}}),
        json!({"nope":1}),
    ] {
        let (status, _) = emulator.control_post_status("webhook/config", &bad);
        assert_eq!(status, 400, "{bad}");
    }
    emulator.control_post("reset", &json!({}));
    let config = emulator.control_get("webhook/config");
    assert_eq!(config["url"], Value::Null);
    assert_eq!(config["app_secret"], "test-app-secret");
    assert_eq!(config["auto_statuses"], false);
}

// ===================================================================================== //
// Media
// ===================================================================================== //

/// One form field of a hand-built multipart body (the dev-dependency reqwest has no
/// multipart feature, and building it by hand lets tests control every byte).
struct FormPart<'a> {
    name: &'a str,
    filename: Option<&'a str>,
    content_type: Option<&'a str>,
    body: &'a [u8],
}

fn field<'a>(name: &'a str, value: &'a str) -> FormPart<'a> {
    FormPart {
        name,
        filename: None,
        content_type: None,
        body: value.as_bytes(),
    }
}

fn file_part<'a>(filename: &'a str, content_type: &'a str, body: &'a [u8]) -> FormPart<'a> {
    FormPart {
        name: "file",
        filename: Some(filename),
        content_type: Some(content_type),
        body,
    }
}

const BOUNDARY: &str = "----emuTestBoundary7MA4YWxkTrZu0gW";

fn multipart_body(parts: &[FormPart<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", part.name);
        if let Some(filename) = part.filename {
            disposition.push_str(&format!("; filename=\"{filename}\""));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(content_type) = part.content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(part.body);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A standard upload: messaging_product, file, type (the order of the Ruby capture in §4.1).
fn upload_body(mime: &str, filename: &str, bytes: &[u8]) -> Vec<u8> {
    multipart_body(&[
        field("messaging_product", "whatsapp"),
        file_part(filename, mime, bytes),
        field("type", mime),
    ])
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Bytes that stress a multipart parser: every byte value, CRLFs, blank lines, dashes and a
/// look-alike of the boundary that is not a delimiter.
fn tricky_bytes(length: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..=255u8).collect();
    bytes.extend_from_slice(b"\r\n\r\n--\r\n-- \r\n");
    bytes.extend_from_slice(format!("\r\n--{BOUNDARY}X\r\n").as_bytes());
    bytes.extend_from_slice(format!("--{BOUNDARY}").as_bytes());
    bytes.extend_from_slice(b"\n\r\r\n");
    while bytes.len() < length {
        bytes.push(fastrand::u8(..));
    }
    bytes.extend_from_slice(b"\r\n");
    bytes
}

impl Emulator {
    fn upload_raw(&self, content_type: &str, body: Vec<u8>) -> Response {
        self.client
            .post(format!("{}/v26.0/{PHONE_ID}/media", self.base))
            .bearer_auth("test-token")
            .header("content-type", content_type)
            .body(body)
            .send()
            .expect("upload")
    }

    fn upload(&self, body: Vec<u8>) -> (u16, Value) {
        json_of(self.upload_raw(&format!("multipart/form-data; boundary={BOUNDARY}"), body))
    }

    /// Uploads and returns the new media id.
    fn upload_ok(&self, mime: &str, filename: &str, bytes: &[u8]) -> String {
        let (status, answer) = self.upload(upload_body(mime, filename, bytes));
        assert_eq!(status, 200, "{answer}");
        answer["id"].as_str().expect("media id").to_string()
    }

    fn media_info(&self, path_and_query: &str) -> (u16, Value) {
        json_of(
            self.client
                .get(format!("{}/{path_and_query}", self.base))
                .bearer_auth("test-token")
                .send()
                .expect("media get"),
        )
    }

    fn media_url(&self, media_id: &str) -> String {
        let (status, answer) = self.media_info(&format!("v26.0/{media_id}"));
        assert_eq!(status, 200, "{answer}");
        answer["url"].as_str().expect("url").to_string()
    }

    /// Downloads like a well-behaved client: bearer token and a User-Agent.
    fn download(&self, url: &str) -> Response {
        self.client
            .get(url)
            .bearer_auth("test-token")
            .header("user-agent", "emu-test/1.0")
            .send()
            .expect("download")
    }
}

fn assert_graph_error(response: Response, status: u16, code: i64) -> Value {
    let (actual, answer) = json_of(response);
    assert_eq!(actual, status, "{answer}");
    assert_eq!(answer["error"]["code"], code, "{answer}");
    answer
}

#[test]
fn upload_then_url_then_download_returns_the_same_bytes() {
    let emulator = Emulator::start();
    let bytes = tricky_bytes(3000);
    let media_id = emulator.upload_ok("image/png", "photo.png", &bytes);
    assert!(media_id.len() >= 15 && media_id.bytes().all(|b| b.is_ascii_digit()));

    // Graph's shape and escaping, keys in Graph's order.
    let response = emulator
        .client
        .get(format!("{}/v26.0/{media_id}", emulator.base))
        .bearer_auth("test-token")
        .send()
        .expect("get");
    assert_eq!(response.status(), 200);
    let raw = response.text().expect("text");
    let port = emulator.base.rsplit(':').next().expect("port");
    assert!(
        raw.starts_with(&format!(
            "{{\"url\":\"http:\\/\\/127.0.0.1:{port}\\/media\\/download\\/{media_id}?ext="
        )),
        "{raw}"
    );
    let answer: Value = serde_json::from_str(&raw).expect("json");
    let keys: Vec<&str> = answer
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 6);
    assert!(
        raw.contains("\"mime_type\":\"image\\/png\",\"sha256\":"),
        "{raw}"
    );
    assert!(raw.ends_with(&format!(
        "\"file_size\":{},\"id\":\"{media_id}\",\"messaging_product\":\"whatsapp\"}}",
        bytes.len()
    )));
    assert_eq!(answer["sha256"], sha256_hex(&bytes));
    let url = answer["url"].as_str().expect("url");
    let ext: u64 = url
        .split("ext=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .and_then(|ext| ext.parse().ok())
        .expect("ext");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        (now + 295..=now + 302).contains(&ext),
        "ext {ext} now {now}"
    );
    assert!(url.contains("&hash="));

    let download = emulator.download(url);
    assert_eq!(download.status(), 200);
    let header = |name: &str| {
        download
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(header("content-type").as_deref(), Some("image/png"));
    assert_eq!(header("content-length"), Some(bytes.len().to_string()));
    assert_eq!(
        header("content-disposition").as_deref(),
        Some("inline;filename=photo.png")
    );
    let downloaded = download.bytes().expect("bytes");
    assert_eq!(&downloaded[..], &bytes[..]);
    assert_eq!(sha256_hex(&downloaded), answer["sha256"]);
    // The same URL works again within its lifetime.
    assert_eq!(emulator.download(url).status(), 200);

    // Unversioned lookup and the owner filter.
    let (status, unversioned) = emulator.media_info(&media_id);
    assert_eq!(status, 200, "{unversioned}");
    assert_eq!(unversioned["id"], media_id.as_str());
    let (status, _) = emulator.media_info(&format!("v26.0/{media_id}?phone_number_id={PHONE_ID}"));
    assert_eq!(status, 200);
    let (status, other) = emulator.media_info(&format!("v26.0/{media_id}?phone_number_id=999"));
    assert_eq!(status, 400);
    assert_eq!(other["error"]["error_subcode"], 33);

    let described = emulator.control_get(&format!("media/{media_id}"));
    assert_eq!(
        described,
        json!({"id": media_id, "mime_type": "image/png", "sha256": sha256_hex(&bytes),
               "file_size": bytes.len(), "filename": "photo.png", "phone_number_id": PHONE_ID,
               "downloads": 2, "deleted": false})
    );

    // Recorded like other routes; the upload body only by its first KiB.
    let requests = emulator.requests();
    let upload = &requests[0];
    assert_eq!(upload["path"], format!("/v26.0/{PHONE_ID}/media"));
    assert_eq!(upload["phone_number_id"], PHONE_ID);
    assert_eq!(upload["body_truncated"], true);
    assert_eq!(upload["body"], Value::Null);
    assert!(upload["body_text"]
        .as_str()
        .expect("body_text")
        .starts_with(&format!("--{BOUNDARY}\r\n")));
    assert_eq!(upload["response_body"]["id"], media_id.as_str());
    let lookups: Vec<&Value> = requests
        .iter()
        .filter(|request| {
            request["method"] == "GET" && request["path"] == format!("/v26.0/{media_id}")
        })
        .collect();
    assert_eq!(lookups[0]["body_truncated"], false);
    assert_eq!(lookups[0]["phone_number_id"], Value::Null);
    let download_record = requests
        .iter()
        .find(|request| {
            request["path"]
                .as_str()
                .is_some_and(|path| path.starts_with("/media/download/"))
        })
        .expect("download recorded");
    assert_eq!(download_record["response_status"], 200);
}

#[test]
fn multipart_edge_cases_are_parsed_exactly() {
    let emulator = Emulator::start();
    // A file that is nothing but CRLFs and dashes, with the type field first and an audio
    // MIME type with parameters on the part.
    let bytes = b"\r\n\r\n--\r\n\r\n".to_vec();
    let body = multipart_body(&[
        field("type", "audio/ogg"),
        field("messaging_product", "whatsapp"),
        file_part("voice.ogg", "audio/ogg; codecs=opus", &bytes),
    ]);
    let (status, answer) = json_of(emulator.upload_raw(
        &format!("multipart/form-data; boundary=\"{BOUNDARY}\""),
        body,
    ));
    assert_eq!(status, 200, "{answer}");
    let media_id = answer["id"].as_str().expect("id");
    let url = emulator.media_url(media_id);
    let downloaded = emulator.download(&url).bytes().expect("bytes");
    assert_eq!(&downloaded[..], &bytes[..]);

    // A preamble, a document with a quoted filename containing a semicolon.
    let mut body = b"this is a preamble\r\n".to_vec();
    let pdf = tricky_bytes(600);
    body.extend(multipart_body(&[
        field("messaging_product", "whatsapp"),
        file_part("a;b.pdf", "application/pdf", &pdf),
        field("type", "application/pdf"),
    ]));
    let (status, answer) = emulator.upload(body);
    assert_eq!(status, 200, "{answer}");
    let media_id = answer["id"].as_str().expect("id");
    let download = emulator.download(&emulator.media_url(media_id));
    assert_eq!(
        download
            .headers()
            .get("content-disposition")
            .and_then(|value| value.to_str().ok()),
        Some("inline;filename=a_b.pdf")
    );
    assert_eq!(&download.bytes().expect("bytes")[..], &pdf[..]);
}

#[test]
fn invalid_uploads_are_refused() {
    let emulator = Emulator::start();
    let png = b"\x89PNG\r\n\x1a\nrest".to_vec();
    let details = |answer: &Value| {
        answer["error"]["error_data"]["details"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    // Unsupported MIME type.
    let (status, answer) = emulator.upload(upload_body("image/gif", "a.gif", &png));
    assert_eq!((status, answer["error"]["code"].clone()), (400, json!(100)));
    assert!(details(&answer).contains("image/gif"), "{answer}");

    // Over the 5 MB image limit.
    let big = vec![7u8; 5 * 1024 * 1024 + 1];
    let (status, answer) = emulator.upload(upload_body("image/jpeg", "big.jpg", &big));
    assert_eq!((status, answer["error"]["code"].clone()), (400, json!(100)));
    assert!(details(&answer).contains("limit"), "{answer}");
    // Exactly at the limit is fine.
    emulator.upload_ok("image/jpeg", "max.jpg", &big[1..]);
    // Stickers: webp over 500 KB.
    let (status, _) = emulator.upload(upload_body("image/webp", "s.webp", &vec![1u8; 600 * 1024]));
    assert_eq!(status, 400);

    // `type` differs from the part's Content-Type: 131053.
    let body = multipart_body(&[
        field("messaging_product", "whatsapp"),
        file_part("a.png", "image/jpeg", &png),
        field("type", "image/png"),
    ]);
    let (status, answer) = emulator.upload(body);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], 131053);
    assert_eq!(answer["error"]["message"], "(#131053) Media upload error");
    assert!(details(&answer).contains("image/jpeg"), "{answer}");

    // Missing fields.
    for (parts, reason) in [
        (
            vec![
                file_part("a.png", "image/png", &png),
                field("type", "image/png"),
            ],
            "messaging_product",
        ),
        (
            vec![
                field("messaging_product", "sms"),
                file_part("a.png", "image/png", &png),
                field("type", "image/png"),
            ],
            "messaging_product",
        ),
        (
            vec![
                field("messaging_product", "whatsapp"),
                field("type", "image/png"),
            ],
            "file",
        ),
        (
            vec![
                field("messaging_product", "whatsapp"),
                file_part("a.png", "image/png", &png),
            ],
            "type",
        ),
        (
            vec![
                field("messaging_product", "whatsapp"),
                file_part("a.png", "image/png", b""),
                field("type", "image/png"),
            ],
            "file",
        ),
    ] {
        let (status, answer) = emulator.upload(multipart_body(&parts));
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], 100);
        assert!(details(&answer).starts_with(reason), "{reason}: {answer}");
    }

    // Not multipart, no boundary, malformed body.
    let answer = assert_graph_error(
        emulator.upload_raw("application/json", b"{}".to_vec()),
        400,
        100,
    );
    assert!(details(&answer).contains("multipart"), "{answer}");
    assert_graph_error(
        emulator.upload_raw(
            "multipart/form-data",
            upload_body("image/png", "a.png", &png),
        ),
        400,
        100,
    );
    let mut truncated = upload_body("image/png", "a.png", &png);
    truncated.truncate(truncated.len() - 20);
    let (status, answer) = emulator.upload(truncated);
    assert_eq!((status, answer["error"]["code"].clone()), (400, json!(100)));
    assert!(details(&answer).starts_with("body:"), "{answer}");

    // Token required.
    let response = emulator
        .client
        .post(format!("{}/v26.0/{PHONE_ID}/media", emulator.base))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(upload_body("image/png", "a.png", &png))
        .send()
        .expect("upload");
    assert!(response.headers().contains_key("www-authenticate"));
    assert_graph_error(response, 401, 190);
    // Nothing was stored by any of these.
    assert_eq!(
        emulator
            .requests()
            .iter()
            .filter(|request| request["response_status"] == 200)
            .count(),
        1
    );
}

#[test]
fn unknown_media_ids_and_delete() {
    let emulator = Emulator::start();
    for path in ["v26.0/1234567890123", "1234567890123"] {
        let (status, answer) = emulator.media_info(path);
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], 100);
        assert_eq!(answer["error"]["error_subcode"], 33);
        assert_eq!(answer["error"]["type"], "GraphMethodException");
        assert!(answer["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("Unsupported get request. Object with ID '1234567890123' does not exist"));
    }
    // The lookup needs the token too.
    let response = emulator
        .client
        .get(format!("{}/v26.0/1234567890123", emulator.base))
        .send()
        .expect("get");
    assert_graph_error(response, 401, 190);

    let delete = |media_id: &str| {
        emulator
            .client
            .delete(format!("{}/v26.0/{media_id}", emulator.base))
            .bearer_auth("test-token")
            .send()
            .expect("delete")
    };
    let answer = assert_graph_error(delete("1234567890123"), 400, 100);
    assert_eq!(
        answer["error"]["message"],
        "(#100) Invalid post_id parameter"
    );

    let media_id = emulator.upload_ok("text/plain", "notes.txt", b"hello\r\n");
    let url = emulator.media_url(&media_id);
    let (status, answer) = json_of(delete(&media_id));
    assert_eq!((status, answer), (200, json!({"success": true})));
    let (status, answer) = emulator.media_info(&format!("v26.0/{media_id}"));
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["error_subcode"], 33);
    assert_eq!(emulator.download(&url).status(), 404);
    let answer = assert_graph_error(delete(&media_id), 400, 100);
    assert_eq!(
        answer["error"]["message"],
        "(#100) Invalid post_id parameter"
    );
    let described = emulator.control_get(&format!("media/{media_id}"));
    assert_eq!(described["deleted"], true);
    assert_eq!(described["downloads"], 0);
}

#[test]
fn download_urls_expire_and_a_new_lookup_gives_a_working_one() {
    let emulator = Emulator::start();
    let bytes = tricky_bytes(500);
    let media_id = emulator.upload_ok("video/mp4", "clip.mp4", &bytes);

    let config = emulator.control_post("media/config", &json!({"url_ttl_ms": 300}));
    assert_eq!(config["url_ttl_ms"], 300);
    let url = emulator.media_url(&media_id);
    assert_eq!(emulator.download(&url).status(), 200);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(emulator.download(&url).status(), 404);
    let fresh = emulator.media_url(&media_id);
    assert_ne!(fresh, url);
    emulator.control_post("media/config", &json!({"url_ttl_ms": 300_000}));
    let fresh = emulator.media_url(&media_id);
    let response = emulator.download(&fresh);
    assert_eq!(response.status(), 200);
    assert_eq!(&response.bytes().expect("bytes")[..], &bytes[..]);

    // Forced expiry of the next URL only.
    emulator.control_post("media/config", &json!({"expire_next_urls": 1}));
    let expired = emulator.media_url(&media_id);
    assert_eq!(emulator.download(&expired).status(), 404);
    assert_eq!(
        emulator.download(&emulator.media_url(&media_id)).status(),
        200
    );

    // A hash this emulator did not issue, or a changed ext, is not found either.
    let (base, _) = fresh.split_once("&hash=").expect("hash");
    assert_eq!(
        emulator.download(&format!("{base}&hash=forged")).status(),
        404
    );
    let ext: u64 = base
        .rsplit("ext=")
        .next()
        .and_then(|e| e.parse().ok())
        .expect("ext");
    let moved = fresh.replace(&format!("ext={ext}"), &format!("ext={}", ext + 1000));
    assert_eq!(emulator.download(&moved).status(), 404);
    let other_id = fresh.replace(&media_id, "1111111111111111");
    assert_eq!(emulator.download(&other_id).status(), 404);
}

#[test]
fn download_needs_the_token_and_a_user_agent() {
    let emulator = Emulator::start();
    let media_id = emulator.upload_ok("image/png", "a.png", b"\x89PNG\r\n\x1a\n");
    let url = emulator.media_url(&media_id);

    let response = emulator
        .client
        .get(&url)
        .header("user-agent", "emu-test/1.0")
        .send()
        .expect("download");
    assert!(response.headers().contains_key("www-authenticate"));
    assert_graph_error(response, 401, 190);
    let response = emulator
        .client
        .get(&url)
        .bearer_auth("wrong-token")
        .header("user-agent", "emu-test/1.0")
        .send()
        .expect("download");
    assert_graph_error(response, 401, 190);

    // No User-Agent: Meta's quirk, an HTML page with status 200 instead of the file.
    let response = emulator
        .client
        .get(&url)
        .bearer_auth("test-token")
        .send()
        .expect("download");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(response.text().expect("text").contains("<html"));

    assert_eq!(emulator.download(&url).status(), 200);
    assert_eq!(
        emulator.control_get(&format!("media/{media_id}"))["downloads"],
        1
    );
}

#[test]
fn inbound_webhook_media_resolves_to_real_bytes() {
    use base64::Engine as _;
    let receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&receiver, &[]);
    let answer = emulator.control_post(
        "webhook/inbound",
        &json!({"from":"16505551234","phone_number_id":PHONE_ID,"type":"image",
                "image":{"caption":"look"}}),
    );
    assert_eq!(answer["delivery"]["status"], 200);
    let payload: Value =
        serde_json::from_str(answer["delivery"]["body"].as_str().expect("body")).expect("json");
    let image = &only_value(&payload)["messages"][0]["image"];
    let media_id = image["id"].as_str().expect("media id");

    let (status, info) =
        emulator.media_info(&format!("v26.0/{media_id}?phone_number_id={PHONE_ID}"));
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["mime_type"], image["mime_type"]);
    let response = emulator.download(info["url"].as_str().expect("url"));
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().expect("bytes");
    assert_eq!(info["file_size"], bytes.len());
    assert_eq!(info["sha256"], sha256_hex(&bytes));
    // The webhook carries the same digest in base64.
    use sha2::Digest;
    let base64_digest =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&bytes));
    assert_eq!(image["sha256"], base64_digest);
    assert_eq!(&bytes[..4], &[0xff, 0xd8, 0xff, 0xe0]);

    // Since Meta's 2025-11-12 rollout the webhook itself carries a download URL (after `id`,
    // with `source=webhook`), written with Graph's `\/` escaping like every URL on the wire.
    let body = answer["delivery"]["body"].as_str().expect("body");
    assert!(
        body.contains(&format!(r#""id":"{media_id}","url":"http:\/\/127.0.0.1:"#)),
        "{body}"
    );
    let url = image["url"].as_str().expect("webhook url");
    assert!(url.contains("source=webhook&ext="), "{url}");
    let response = emulator.download(url);
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().expect("bytes"), bytes);
    // The token is needed, as for any download URL.
    let response = emulator.client.get(url).send().expect("download");
    assert_eq!(response.status(), 401);

    // "omit_url":true gives the older shape.
    let answer = emulator.control_post(
        "webhook/inbound",
        &json!({"type":"document","document":{"filename":"a.pdf"},"omit_url":true}),
    );
    let payload: Value =
        serde_json::from_str(answer["delivery"]["body"].as_str().expect("body")).expect("json");
    let document = &only_value(&payload)["messages"][0]["document"];
    assert!(document["id"].is_string(), "{document}");
    assert!(document.get("url").is_none(), "{document}");
    assert!(only_value(&payload)["messages"][0]
        .get("omit_url")
        .is_none());

    // Webhook URLs live as long as lookup URLs (url_ttl_ms): expired, they answer 404.
    emulator.control_post("media/config", &json!({"url_ttl_ms": 0}));
    let answer = emulator.control_post(
        "webhook/inbound",
        &json!({"type":"audio","audio":{"voice":true}}),
    );
    let payload: Value =
        serde_json::from_str(answer["delivery"]["body"].as_str().expect("body")).expect("json");
    let url = only_value(&payload)["messages"][0]["audio"]["url"]
        .as_str()
        .expect("audio url")
        .to_string();
    assert_eq!(emulator.download(&url).status(), 404);
}

#[test]
fn control_created_50_mb_media_downloads_fully() {
    let emulator = Emulator::start();
    let size = 50 * 1024 * 1024;
    let created = emulator.control_post(
        "media",
        &json!({"mime_type":"application/pdf","size":size,"filename":"big.pdf"}),
    );
    assert_eq!(created["file_size"], size);
    let media_id = created["id"].as_str().expect("id");
    let (status, info) = emulator.media_info(&format!("v26.0/{media_id}"));
    assert_eq!(status, 200);
    assert_eq!(info["sha256"], created["sha256"]);
    assert_eq!(info["file_size"], size);

    let client = Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let response = client
        .get(info["url"].as_str().expect("url"))
        .bearer_auth("test-token")
        .header("user-agent", "emu-test/1.0")
        .send()
        .expect("download");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-length")
            .and_then(|value| value.to_str().ok()),
        Some(size.to_string().as_str())
    );
    let bytes = response.bytes().expect("bytes");
    assert_eq!(bytes.len(), size);
    assert_eq!(created["sha256"], sha256_hex(&bytes));
}

#[test]
fn media_control_config_and_reset() {
    let emulator = Emulator::start();
    let created = emulator.control_post(
        "media",
        &json!({"mime_type":"image/png","base64":"iVBORw0KGgo=","phone_number_id":"42"}),
    );
    let media_id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["file_size"], 8);
    assert_eq!(
        emulator.control_get(&format!("media/{media_id}"))["filename"],
        "whatsapp.png"
    );
    // Owned by number 42 now.
    let (status, _) = emulator.media_info(&format!("v26.0/{media_id}?phone_number_id={PHONE_ID}"));
    assert_eq!(status, 400);

    emulator.control_post(
        "media/config",
        &json!({"corrupt_sha256": true, "url_host": "127.0.0.2"}),
    );
    let (_, info) = emulator.media_info(&format!("v26.0/{media_id}"));
    assert_ne!(info["sha256"], created["sha256"]);
    assert_eq!(info["sha256"].as_str().map(str::len), Some(64));
    let port = emulator.base.rsplit(':').next().expect("port");
    let url = info["url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!(
            "http://127.0.0.2:{port}/media/download/{media_id}?"
        )),
        "{url}"
    );
    // The URL is valid, only its host is foreign: the same path on the real host serves it.
    let path = url.split_once(port).map(|(_, path)| path).expect("path");
    assert_eq!(
        emulator
            .download(&format!("{}{path}", emulator.base))
            .status(),
        200
    );

    // Bad control bodies.
    for body in [
        json!({"mime_type":"image/png"}),
        json!({"mime_type":"image/png","size":1,"base64":"AA=="}),
        json!({"size":1}),
        json!({"mime_type":"image/png","base64":"***"}),
        json!({"mime_type":"image/png","size":1,"colour":"red"}),
    ] {
        let (status, _) = emulator.control_post_status("media", &body);
        assert_eq!(status, 400, "{body}");
    }
    let (status, _) = emulator.control_post_status("media/config", &json!({"url_ttl_ms": -1}));
    assert_eq!(status, 400);

    emulator.control_post("reset", &json!({}));
    assert_eq!(
        emulator.control_get("media/config"),
        json!({"url_ttl_ms":300000,"corrupt_sha256":false,"url_host":null,"expire_next_urls":0})
    );
    let response = emulator
        .client
        .get(format!("{}/_emulator/media/{media_id}", emulator.base))
        .send()
        .expect("get");
    assert_eq!(response.status(), 404);
}

#[test]
fn faults_apply_to_media_routes() {
    let emulator = Emulator::start();
    let media_id = emulator.upload_ok("image/png", "a.png", b"png");
    let url = emulator.media_url(&media_id);
    emulator.add_fault(
        json!({"match":{"path_contains":"/media/download/"},"times":1,
                              "action":{"http_status":503,"body":"busy"}}),
    );
    let response = emulator.download(&url);
    assert_eq!(response.status(), 503);
    assert_eq!(emulator.download(&url).status(), 200);
}

// ===================================================================================== //
// Embedded Signup onboarding
// ===================================================================================== //

const APP_ID: &str = "1234567890";
const PIN: &str = "581063";

/// `?k=v&...` with values percent-encoded (the blocking client here has no `query` feature).
fn query_string(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|byte| {
                if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                    char::from(byte).to_string()
                } else {
                    format!("%{byte:02X}")
                }
            })
            .collect()
    };
    let joined: Vec<String> = pairs
        .iter()
        .map(|(key, value)| format!("{key}={}", encode(value)))
        .collect();
    format!("?{}", joined.join("&"))
}

impl Emulator {
    /// A code from the simulated browser side: (code, waba_id, phone_number_id).
    fn oauth_code(&self, body: &Value) -> (String, String, String) {
        let answer = self.control_post("oauth/codes", body);
        let text = |key: &str| answer[key].as_str().expect(key).to_string();
        (text("code"), text("waba_id"), text("phone_number_id"))
    }

    fn exchange(&self, client_id: &str, secret: &str, code: &str) -> (u16, Value) {
        json_of(
            self.client
                .get(format!(
                    "{}/v26.0/oauth/access_token{}",
                    self.base,
                    query_string(&[
                        ("client_id", client_id),
                        ("client_secret", secret),
                        ("code", code),
                    ])
                ))
                .send()
                .expect("exchange"),
        )
    }

    /// Exchanges a fresh code and returns (token, waba_id, phone_number_id).
    fn onboarded_token(&self) -> (String, String, String) {
        let (code, waba, phone) = self.oauth_code(&json!({}));
        let (status, answer) = self.exchange(APP_ID, APP_SECRET, &code);
        assert_eq!(status, 200, "{answer}");
        let token = answer["access_token"].as_str().expect("token").to_string();
        (token, waba, phone)
    }

    fn graph(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::blocking::RequestBuilder {
        self.client
            .request(method, format!("{}/v26.0/{path}", self.base))
            .bearer_auth(token)
    }

    fn register(&self, token: &str, phone: &str, body: &Value) -> (u16, Value) {
        json_of(
            self.graph(reqwest::Method::POST, &format!("{phone}/register"), token)
                .json(body)
                .send()
                .expect("register"),
        )
    }

    fn deregister(&self, token: &str, phone: &str) -> (u16, Value) {
        json_of(
            self.graph(reqwest::Method::POST, &format!("{phone}/deregister"), token)
                .json(&json!({"messaging_product":"whatsapp"}))
                .send()
                .expect("deregister"),
        )
    }

    fn subscribe(&self, token: &str, waba: &str, body: Option<&Value>) -> Response {
        let request = self.graph(
            reqwest::Method::POST,
            &format!("{waba}/subscribed_apps"),
            token,
        );
        match body {
            Some(body) => request.json(body),
            None => request,
        }
        .send()
        .expect("subscribed_apps")
    }
}

#[test]
fn embedded_signup_full_flow() {
    let receiver = Receiver::start();
    let emulator = Emulator::start();
    let (code, waba, phone) = emulator.oauth_code(&json!({}));
    assert!(code.starts_with("AQ") && waba.len() == 15 && phone.len() == 15);
    assert!(waba
        .bytes()
        .chain(phone.bytes())
        .all(|b| b.is_ascii_digit()));

    let (status, answer) = emulator.exchange(APP_ID, APP_SECRET, &code);
    assert_eq!(status, 200, "{answer}");
    let token = answer["access_token"].as_str().expect("token").to_string();
    assert!(token.starts_with("EAA") && token.len() == 43, "{token}");
    assert!(token[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(answer["token_type"], "bearer");
    assert!(answer.get("expires_in").is_none(), "{answer}");

    // The new token works on the messages route of its number (and is listed among the
    // accepted tokens).
    let response = emulator
        .graph(reqwest::Method::POST, &format!("{phone}/messages"), &token)
        .json(&text_body("after signup"))
        .send()
        .expect("send");
    assert_eq!(response.status(), 200);
    let tokens = emulator.control_get("config")["tokens"].clone();
    assert!(
        tokens.as_array().unwrap().contains(&json!(token)),
        "{tokens}"
    );

    // subscribed_apps with an override: Meta's verification GET reaches the receiver first.
    let response = emulator.subscribe(
        &token,
        &waba,
        Some(&json!({"override_callback_uri": receiver.url, "verify_token": "test-verify-token"})),
    );
    let (status, answer) = json_of(response);
    assert_eq!((status, answer.clone()), (200, json!({"success": true})));
    let verification = receiver.wait_for(1).remove(0);
    assert_eq!(verification.method, "GET");
    assert!(verification
        .target
        .starts_with("/webhook?hub.mode=subscribe&hub.challenge="));
    assert_eq!(
        verification.query_param("hub.verify_token").as_deref(),
        Some("test-verify-token")
    );
    let state = emulator.control_get("onboarding");
    let subscription = state["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["waba_id"] == waba.as_str())
        .expect("subscription")
        .clone();
    assert_eq!(subscription["subscribed"], true);
    assert_eq!(subscription["override_callback_uri"], receiver.url.as_str());
    assert_eq!(subscription["last_verification"]["status"], 200);
    assert_eq!(subscription["last_verification"]["ok"], true);
    assert_eq!(
        subscription["last_verification"]["body"],
        subscription["last_verification"]["challenge"]
    );

    // GET subscribed_apps shows the app and the override, Graph-escaped.
    let response = emulator
        .graph(
            reqwest::Method::GET,
            &format!("{waba}/subscribed_apps"),
            &token,
        )
        .send()
        .unwrap();
    let text = response.text().unwrap();
    assert!(
        text.contains(r#""link":"https:\/\/www.facebook.com\/games\/?app_id=1234567890""#),
        "{text}"
    );
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        listed,
        json!({"data":[{"whatsapp_business_api_data":{"id":APP_ID,
            "link":"https://www.facebook.com/games/?app_id=1234567890","name":"Emulated App"},
            "override_callback_uri": receiver.url}]})
    );

    // phone_numbers lists the number, PENDING until registered.
    let numbers = |emulator: &Emulator| -> Value {
        emulator
            .graph(
                reqwest::Method::GET,
                &format!("{waba}/phone_numbers"),
                &token,
            )
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let listing = numbers(&emulator);
    assert_eq!(
        listing["data"].as_array().map(Vec::len),
        Some(1),
        "{listing}"
    );
    assert_eq!(listing["data"][0]["id"], phone.as_str());
    assert_eq!(listing["data"][0]["status"], "PENDING");

    let (status, answer) = emulator.register(
        &token,
        &phone,
        &json!({"messaging_product":"whatsapp","pin":PIN}),
    );
    assert_eq!((status, answer.clone()), (200, json!({"success": true})));
    let listing = numbers(&emulator);
    let number = &listing["data"][0];
    for (key, value) in [
        ("quality_rating", "GREEN"),
        ("code_verification_status", "VERIFIED"),
        ("platform_type", "CLOUD_API"),
        ("status", "CONNECTED"),
    ] {
        assert_eq!(number[key], value, "{listing}");
    }
    assert_eq!(number["throughput"], json!({"level":"STANDARD"}));
    assert!(number["display_phone_number"]
        .as_str()
        .unwrap()
        .starts_with("+1 555"));
    assert!(number["verified_name"].is_string());
    assert!(listing["paging"]["cursors"]["before"].is_string());
    assert!(listing["paging"]["cursors"]["after"].is_string());
    // A known WABA without numbers has an empty list (and no paging, as on Graph); one no
    // code named does not exist.
    let other: Value = emulator
        .graph(
            reqwest::Method::GET,
            "102290129340398/phone_numbers",
            "test-token",
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(other, json!({"data": []}));
    assert_unknown_object(
        json_of(
            emulator
                .graph(reqwest::Method::GET, "999999999/phone_numbers", &token)
                .send()
                .unwrap(),
        ),
        "999999999",
        "get",
    );

    // The recorded requests carry the onboarding calls; WABA routes concern no phone number.
    let requests = emulator.requests();
    let paths: Vec<&str> = requests
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/v26.0/oauth/access_token"), "{paths:?}");
    let register = requests
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("/register"))
        .unwrap();
    assert_eq!(
        register["body"],
        json!({"messaging_product":"whatsapp","pin":PIN})
    );
    assert_eq!(register["phone_number_id"], phone.as_str());
    let subscribe = requests
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("/subscribed_apps"))
        .unwrap();
    assert_eq!(subscribe["phone_number_id"], Value::Null);

    // DELETE unsubscribes; GET is then empty; an empty POST subscribes without override.
    let (status, answer) = json_of(
        emulator
            .graph(
                reqwest::Method::DELETE,
                &format!("{waba}/subscribed_apps"),
                &token,
            )
            .send()
            .unwrap(),
    );
    assert_eq!((status, answer), (200, json!({"success": true})));
    let listed: Value = emulator
        .graph(
            reqwest::Method::GET,
            &format!("{waba}/subscribed_apps"),
            &token,
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed, json!({"data": []}));
    let (status, answer) = json_of(emulator.subscribe(&token, &waba, None));
    assert_eq!((status, answer), (200, json!({"success": true})));
    let listed: Value = emulator
        .graph(
            reqwest::Method::GET,
            &format!("{waba}/subscribed_apps"),
            &token,
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    assert!(
        listed["data"][0].get("override_callback_uri").is_none(),
        "{listed}"
    );
    assert_eq!(
        receiver.received().len(),
        1,
        "no verification without an override"
    );
}

#[test]
fn oauth_code_errors_in_order() {
    let emulator = Emulator::start();
    let oauth_error = |(status, answer): (u16, Value), code: i64, subcode: Option<i64>| {
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert_eq!(answer["error"]["type"], "OAuthException", "{answer}");
        assert_eq!(
            answer["error"].get("error_subcode").and_then(Value::as_i64),
            subcode,
            "{answer}"
        );
        assert!(answer["error"]["fbtrace_id"].is_string());
        answer["error"]["message"].as_str().unwrap().to_string()
    };
    let (code, _, _) = emulator.oauth_code(&json!({}));
    let message = oauth_error(emulator.exchange("42", APP_SECRET, &code), 101, None);
    assert_eq!(
        message,
        "Error validating application. Invalid application ID."
    );
    let message = oauth_error(emulator.exchange(APP_ID, "wrong-secret", &code), 100, None);
    assert_eq!(message, "Error validating client secret.");
    assert!(!message.contains("wrong-secret"));
    let message = oauth_error(emulator.exchange(APP_ID, APP_SECRET, "AQnope"), 100, None);
    assert_eq!(message, "Invalid verification code format.");
    // cloud-api.md §6.2: 36008 is a redirect_uri mismatch; JS-SDK codes have none, so only an
    // absent or empty redirect_uri matches.
    let with_redirect = |redirect: &str| {
        json_of(
            emulator
                .client
                .get(format!(
                    "{}/v26.0/oauth/access_token{}",
                    emulator.base,
                    query_string(&[
                        ("client_id", APP_ID),
                        ("client_secret", APP_SECRET),
                        ("code", &code),
                        ("redirect_uri", redirect),
                    ])
                ))
                .send()
                .expect("exchange"),
        )
    };
    let message = oauth_error(
        with_redirect("https://example.com/callback"),
        100,
        Some(36008),
    );
    assert!(message.contains("redirect_uri"), "{message}");

    // Failed exchanges did not consume the code; the first success (an empty redirect_uri,
    // as some integrators send) does.
    let (status, answer) = with_redirect("");
    assert_eq!(status, 200, "{answer}");
    let message = oauth_error(
        emulator.exchange(APP_ID, APP_SECRET, &code),
        100,
        Some(36009),
    );
    assert_eq!(message, "This authorization code has been used.");
    assert!(message.contains("used"));

    // An expired code (ttl_ms) answers 36007, and the exchange stays usable for others.
    let (short, _, _) = emulator.oauth_code(&json!({"ttl_ms": 50}));
    std::thread::sleep(Duration::from_millis(120));
    let message = oauth_error(
        emulator.exchange(APP_ID, APP_SECRET, &short),
        100,
        Some(36007),
    );
    assert_eq!(message, "This authorization code has expired.");

    // An expiring token reports expires_in; given ids are kept.
    let (code, waba, phone) = emulator.oauth_code(
        &json!({"waba_id":"524126980791429","phone_number_id":"106540352242922","expiring":true}),
    );
    assert_eq!(
        (waba.as_str(), phone.as_str()),
        ("524126980791429", "106540352242922")
    );
    let (status, answer) = emulator.exchange(APP_ID, APP_SECRET, &code);
    assert_eq!(status, 200);
    assert_eq!(answer["expires_in"], 5183944);

    // The state shows codes as used / expired and the issued tokens.
    let state = emulator.control_get("onboarding");
    let codes = state["codes"].as_array().unwrap();
    assert_eq!(codes.len(), 3);
    assert_eq!(
        (codes[0]["used"].clone(), codes[1]["expired"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(codes[1]["used"], false);
    assert_eq!(state["tokens"].as_array().map(Vec::len), Some(2));
    assert_eq!(state["tokens"][1]["waba_id"], "524126980791429");

    // Bad control input is refused.
    let (status, _) = emulator.control_post_status("oauth/codes", &json!({"waba_id":"../x"}));
    assert_eq!(status, 400);
    let (status, _) = emulator.control_post_status("oauth/codes", &json!({"bogus":1}));
    assert_eq!(status, 400);
}

#[test]
fn app_id_and_code_ttl_flags() {
    let emulator = Emulator::start_with(&[
        "--app-id",
        "777",
        "--code-ttl-ms",
        "100",
        "--app-secret",
        "s3cret",
    ]);
    let (code, _, _) = emulator.oauth_code(&json!({}));
    let (status, answer) = emulator.exchange(APP_ID, "s3cret", &code);
    assert_eq!((status, answer["error"]["code"].clone()), (400, json!(101)));
    let (status, answer) = emulator.exchange("777", "s3cret", &code);
    assert_eq!(status, 200, "{answer}");
    let (late, _, _) = emulator.oauth_code(&json!({}));
    std::thread::sleep(Duration::from_millis(200));
    let (status, answer) = emulator.exchange("777", "s3cret", &late);
    assert_eq!(
        (status, answer["error"]["error_subcode"].clone()),
        (400, json!(36007))
    );
    let config = emulator.control_get("onboarding/config");
    assert_eq!(
        config,
        json!({"app_id":"777","code_ttl_ms":100,"register_fail_code":null})
    );
}

#[test]
fn debug_token_shape_and_auth() {
    let emulator = Emulator::start();
    let (token, waba, _) = emulator.onboarded_token();
    let expected = json!({"data":{"app_id":APP_ID,"type":"SYSTEM_USER","application":"Emulated App",
        "data_access_expires_at":0,"expires_at":0,"is_valid":true,
        "scopes":["whatsapp_business_management","whatsapp_business_messaging"],
        "granular_scopes":[{"scope":"whatsapp_business_management","target_ids":[waba]},
                           {"scope":"whatsapp_business_messaging","target_ids":[waba]}]}});
    let check = |answer: Value| {
        let user_id = answer["data"]["user_id"]
            .as_str()
            .expect("user_id")
            .to_string();
        assert!(!user_id.is_empty() && user_id.bytes().all(|b| b.is_ascii_digit()));
        let mut without_user = answer.clone();
        without_user["data"]
            .as_object_mut()
            .unwrap()
            .remove("user_id");
        assert_eq!(without_user, expected);
    };
    // With the app token APPID|SECRET ...
    let response = emulator
        .client
        .get(format!(
            "{}/v26.0/debug_token{}",
            emulator.base,
            query_string(&[
                ("input_token", token.as_str()),
                ("access_token", &format!("{APP_ID}|{APP_SECRET}")),
            ])
        ))
        .send()
        .unwrap();
    let text = response.text().unwrap();
    assert!(
        text.starts_with(r#"{"data":{"app_id":"1234567890","type":"SYSTEM_USER""#),
        "{text}"
    );
    check(serde_json::from_str(&text).unwrap());
    // ... or a bearer token.
    let response = emulator
        .graph(
            reqwest::Method::GET,
            &format!("debug_token?input_token={token}"),
            "test-token",
        )
        .send()
        .unwrap();
    check(response.json().unwrap());
    // No valid credentials: 190.
    let response = emulator
        .graph(
            reqwest::Method::GET,
            &format!("debug_token?input_token={token}"),
            "nope",
        )
        .send()
        .unwrap();
    assert_graph_error(response, 401, 190);
    // An unknown input token is described as invalid.
    let (status, answer) = json_of(
        emulator
            .graph(
                reqwest::Method::GET,
                "debug_token?input_token=EAAunknown",
                &token,
            )
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200);
    assert_eq!(answer["data"]["is_valid"], false);
    assert_eq!(answer["data"]["error"]["code"], 190);
}

#[test]
fn subscribed_apps_verification_failures_answer_2200() {
    let emulator = Emulator::start();
    let (token, waba, _) = emulator.onboarded_token();
    let good = Receiver::start();
    let wrong_body = Receiver::start_with(Box::new(|_| (200, "not the challenge".to_string())));
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/webhook", dead.local_addr().unwrap());
    drop(dead);

    let failure = |response: Response| -> String {
        let answer = assert_graph_error(response, 400, 2200);
        assert_eq!(answer["error"]["type"], "OAuthException");
        answer["error"]["message"].as_str().unwrap().to_string()
    };
    // The receiver answers 403 to a wrong verify token.
    let message = failure(emulator.subscribe(
        &token,
        &waba,
        Some(&json!({"override_callback_uri": good.url, "verify_token": "wrong"})),
    ));
    assert_eq!(
        message,
        "(#2200) Callback verification failed with the following errors: HTTP Status Code = 403; HTTP Message = Forbidden"
    );
    let message = failure(emulator.subscribe(
        &token,
        &waba,
        Some(
            &json!({"override_callback_uri": wrong_body.url, "verify_token": "test-verify-token"}),
        ),
    ));
    assert!(
        message.starts_with("(#2200) Callback verification failed"),
        "{message}"
    );
    assert!(message.contains("not the challenge"), "{message}");
    let message = failure(emulator.subscribe(
        &token,
        &waba,
        Some(&json!({"override_callback_uri": dead_url, "verify_token": "secret-token"})),
    ));
    assert!(message.contains("HTTP Status Code = 0"), "{message}");
    assert!(!message.contains("secret-token"), "{message}");

    // Nothing was stored; the last attempt is visible.
    let state = emulator.control_get("onboarding");
    let subscription = state["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["waba_id"] == waba.as_str())
        .unwrap()
        .clone();
    assert_eq!(subscription["subscribed"], false);
    assert_eq!(subscription["override_callback_uri"], Value::Null);
    assert_eq!(subscription["last_verification"]["uri"], dead_url.as_str());
    assert_eq!(subscription["last_verification"]["status"], Value::Null);
    assert!(subscription["last_verification"]["error"].is_string());

    // Too long a URI: 100, without any GET.
    let long = format!("{}?{}", good.url, "x".repeat(200));
    let response = emulator.subscribe(
        &token,
        &waba,
        Some(&json!({"override_callback_uri": long, "verify_token": "test-verify-token"})),
    );
    assert_graph_error(response, 400, 100);
    assert_eq!(good.received().len(), 1);

    // A form-encoded body works like JSON.
    let response = emulator
        .graph(
            reqwest::Method::POST,
            &format!("{waba}/subscribed_apps"),
            &token,
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "override_callback_uri={}&verify_token=test-verify-token",
            good.url.replace(':', "%3A").replace('/', "%2F")
        ))
        .send()
        .unwrap();
    assert_eq!(json_of(response), (200, json!({"success": true})));
    // Without a token: 401 before any verification.
    let response = emulator
        .client
        .post(format!("{}/v26.0/{waba}/subscribed_apps", emulator.base))
        .send()
        .unwrap();
    assert_graph_error(response, 401, 190);
    assert_eq!(good.received().len(), 2);
}

#[test]
fn register_pin_state_rate_limit_and_forced_failures() {
    let emulator = Emulator::start();
    let (token, _, phone) = emulator.onboarded_token();
    let body = |pin: &str| json!({"messaging_product":"whatsapp","pin":pin});

    // Malformed calls: 100 (and they count).
    let (status, answer) = emulator.register(&token, &phone, &body("12345"));
    assert_eq!((status, answer["error"]["code"].clone()), (400, json!(100)));
    assert_eq!(
        answer["error"]["message"],
        "(#100) Param pin must be 6 characters long"
    );
    let (status, answer) = emulator.register(&token, &phone, &json!({"pin": PIN}));
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!(100)),
        "{answer}"
    );
    let (status, answer) = emulator.register(
        &token,
        &phone,
        &json!({"messaging_product":"whatsapp","pin":PIN,"data_localization_region":"XX"}),
    );
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!(100)),
        "{answer}"
    );

    // The first success sets the PIN; the same PIN again is fine; another one is 133005.
    let (status, answer) = emulator.register(
        &token,
        &phone,
        &json!({"messaging_product":"whatsapp","pin":PIN,"data_localization_region":"DE"}),
    );
    assert_eq!((status, answer), (200, json!({"success": true})));
    let (status, _) = emulator.register(&token, &phone, &body(PIN));
    assert_eq!(status, 200);
    let state = emulator.control_get("onboarding");
    assert_eq!(
        state["registrations"][0]["data_localization_region"], "DE",
        "{state}"
    );
    let (status, answer) = emulator.register(&token, &phone, &body("111111"));
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], 133005);
    assert_eq!(
        answer["error"]["message"],
        "(#133005) Two step verification PIN Mismatch"
    );

    // Deregister has its own limit (cloud-api.md §3.4: "10 register (and separately 10
    // deregister) calls per number per moving 72 h"): register calls 7..=10 still pass, the
    // 11th is 133016.
    assert_eq!(
        emulator.deregister(&token, &phone),
        (200, json!({"success": true}))
    );
    for call in 7..=10 {
        let (status, answer) = emulator.register(&token, &phone, &body(PIN));
        assert_eq!(status, 200, "call {call}: {answer}");
    }
    let (status, answer) = emulator.register(&token, &phone, &body(PIN));
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], 133016);
    assert_eq!(
        answer["error"]["message"],
        "(#133016) Account register deregister rate limit exceeded"
    );
    // The register limit does not block deregister calls.
    assert_eq!(
        emulator.deregister(&token, &phone),
        (200, json!({"success": true}))
    );
    let state = emulator.control_get("onboarding");
    let registration = state["registrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["phone_number_id"] == phone.as_str())
        .unwrap()
        .clone();
    assert_eq!(registration["pin_set"], true);
    assert_eq!(registration["register_calls"], 11);
    assert_eq!(registration["deregister_calls"], 2);
    assert_eq!(registration["register_calls_in_window"], 11);
    assert_eq!(registration["deregister_calls_in_window"], 2);
    assert_eq!(registration["status"], "DISCONNECTED");
    assert_eq!(
        registration["data_localization_region"],
        Value::Null,
        "deregister ended it"
    );

    // A forced failure code until cleared; a form-encoded body on another number.
    let (token, _, phone) = emulator.onboarded_token();
    emulator.control_post("onboarding/config", &json!({"register_fail_code": 133004}));
    let (status, answer) = emulator.register(&token, &phone, &body(PIN));
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"]["code"], 133004);
    assert_eq!(answer["error"]["is_transient"], true);
    let config = emulator.control_post("onboarding/config", &json!({"register_fail_code": null}));
    assert_eq!(config["register_fail_code"], Value::Null);
    let response = emulator
        .graph(reqwest::Method::POST, &format!("{phone}/register"), &token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("messaging_product=whatsapp&pin={PIN}"))
        .send()
        .unwrap();
    assert_eq!(json_of(response), (200, json!({"success": true})));

    // Generic fault rules match the onboarding routes by path.
    emulator.add_fault(json!({"match":{"path_contains":"/register"},"times":1,
        "action":{"error":{"code":133015}}}));
    let (status, answer) = emulator.register(&token, &phone, &body(PIN));
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!(133015))
    );
    emulator.add_fault(
        json!({"match":{"path_contains":"oauth/access_token"},"times":1,
        "action":{"http_status":503,"body":"down"}}),
    );
    let (code, _, _) = emulator.oauth_code(&json!({}));
    let response = emulator
        .client
        .get(format!(
            "{}/v26.0/oauth/access_token{}",
            emulator.base,
            query_string(&[
                ("client_id", APP_ID),
                ("client_secret", APP_SECRET),
                ("code", &code),
            ])
        ))
        .send()
        .unwrap();
    assert_eq!(response.status(), 503);
    // The faulted exchange did not consume the code.
    assert_eq!(emulator.exchange(APP_ID, APP_SECRET, &code).0, 200);
    let started = Instant::now();
    emulator.add_fault(
        json!({"match":{"path_contains":"subscribed_apps"},"times":1,
        "action":{"delay_ms":300}}),
    );
    let (token, waba, _) = emulator.onboarded_token();
    assert_eq!(json_of(emulator.subscribe(&token, &waba, None)).0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Unknown edges next to register stay 100/33.
    let response = emulator
        .graph(reqwest::Method::POST, &format!("{phone}/registerx"), &token)
        .json(&body(PIN))
        .send()
        .unwrap();
    let answer = assert_graph_error(response, 400, 100);
    assert_eq!(answer["error"]["error_subcode"], 33);
}

#[test]
fn reset_clears_onboarding_and_issued_tokens() {
    let emulator = Emulator::start();
    let (token, _, phone) = emulator.onboarded_token();
    assert_eq!(
        emulator
            .register(
                &token,
                &phone,
                &json!({"messaging_product":"whatsapp","pin":PIN})
            )
            .0,
        200
    );
    emulator.control_post("onboarding/config", &json!({"register_fail_code": 131000}));
    emulator.control_post("reset", &json!({}));
    let state = emulator.control_get("onboarding");
    for key in ["codes", "tokens", "subscriptions", "registrations"] {
        assert_eq!(state[key], json!([]), "{key}: {state}");
    }
    assert_eq!(state["config"]["register_fail_code"], Value::Null);
    let response = emulator.send_with_token(&token, &text_body("revoked"));
    assert_graph_error(response, 401, 190);
}

#[test]
fn override_callback_receives_webhooks_when_no_url_is_configured() {
    let receiver = Receiver::start();
    let emulator = Emulator::start();
    let (token, waba, phone) = emulator.onboarded_token();
    let response = emulator.subscribe(
        &token,
        &waba,
        Some(&json!({"override_callback_uri": receiver.url, "verify_token": "test-verify-token"})),
    );
    assert_eq!(response.status(), 200);
    let answer = emulator.control_post(
        "webhook/inbound",
        &json!({"phone_number_id": phone, "type":"text","text":{"body":"hello"}}),
    );
    assert_eq!(answer["delivery"]["status"], 200, "{answer}");
    let received = receiver.wait_for(2);
    let payload = received[1].json();
    assert_eq!(payload["entry"][0]["id"], waba.as_str());
    assert_eq!(
        only_value(&payload)["metadata"]["phone_number_id"],
        phone.as_str()
    );
    // Other numbers still have no target.
    let (status, _) = emulator.control_post_status(
        "webhook/inbound",
        &json!({"type":"text","text":{"body":"hello"}}),
    );
    assert_eq!(status, 400);
}

#[test]
fn onboarded_number_webhooks_follow_waba_subscription() {
    // cloud-api.md §5.10: phone-number override → WABA override → app callback URL; §5.3:
    // entry[].id is the WABA id.
    let app = Receiver::start();
    let waba_receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&app, &["--auto-statuses"]);
    let (token, waba, phone) = emulator.onboarded_token();
    // Known WABA, not subscribed yet: nothing is delivered for its number.
    let (status, answer) = emulator.control_post_status(
        "webhook/inbound",
        &json!({"phone_number_id": phone, "type":"text","text":{"body":"early"}}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("not subscribed"), "{answer}");

    let response = emulator.subscribe(
        &token,
        &waba,
        Some(&json!({"override_callback_uri": waba_receiver.url, "verify_token": "test-verify-token"})),
    );
    assert_eq!(response.status(), 200);
    let response = emulator.send_to_phone(&phone, &text_body("routed"));
    assert_eq!(response.status(), 200);
    // Verification GET + sent, delivered, read.
    let received = waba_receiver.wait_for(4);
    assert_routed(&received[1..], &waba, &phone);
    assert!(app.received().is_empty(), "the app URL got nothing");

    // Subscribed without override: the app URL, still with the WABA as entry id.
    assert_eq!(emulator.subscribe(&token, &waba, None).status(), 200);
    let answer = emulator.control_post(
        "webhook/inbound",
        &json!({"phone_number_id": phone, "type":"text","text":{"body":"app"}}),
    );
    assert_eq!(answer["delivery"]["status"], 200, "{answer}");
    let received = app.wait_for(1);
    assert_eq!(received[0].json()["entry"][0]["id"], waba.as_str());
    // A crafted batch is routed the same way, by its first change's number.
    let answer = emulator.control_post(
        "webhook/batch",
        &json!({"entries":[{"changes":[{"phone_number_id": phone,
            "messages":[{"type":"text","text":{"body":"batched"}}]}]}]}),
    );
    assert_eq!(answer["delivery"]["status"], 200, "{answer}");
    let received = app.wait_for(2);
    assert_eq!(received[1].json()["entry"][0]["id"], waba.as_str());

    // Unsubscribed: statuses of a send go nowhere.
    let response = emulator
        .graph(
            reqwest::Method::DELETE,
            &format!("{waba}/subscribed_apps"),
            &token,
        )
        .send()
        .expect("unsubscribe");
    assert_eq!(response.status(), 200);
    let response = emulator.send_to_phone(&phone, &text_body("dropped"));
    assert_eq!(response.status(), 200);
    let (status, answer) = emulator.control_post_status(
        "webhook/batch",
        &json!({"entries":[{"changes":[{"phone_number_id": phone,
            "messages":[{"type":"text","text":{"body":"unsubscribed"}}]}]}]}),
    );
    assert_eq!(status, 400, "{answer}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(app.received().len(), 2);
    assert_eq!(waba_receiver.received().len(), 4);
    // Numbers onboarding does not know keep using the app URL.
    let response = emulator.send(&text_body("default"));
    assert_eq!(response.status(), 200);
    app.wait_for(5);
}

#[test]
fn meta_catalog_template_and_order_interactive_examples_are_accepted() {
    let emulator = Emulator::start();
    let base =
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":"16505551234"});
    let with = |kind: &str, content: Value| {
        let mut body = base.clone();
        body["type"] = json!(kind);
        body[kind] = content;
        body
    };
    let bodies = [
        // Meta's catalog template example spells the sub_type in upper case.
        with(
            "template",
            json!({"name":"intro_catalog_offer","language":{"code":"en_US"},"components":[
                {"type":"body","parameters":[{"type":"text","text":"100"}]},
                {"type":"button","sub_type":"CATALOG","index":0,"parameters":[
                    {"type":"action","action":{"thumbnail_product_retailer_id":"2lc20305pt"}}]}]}),
        ),
        with(
            "interactive",
            json!({"type":"order_details",
                "header":{"type":"image","image":{"link":"https://example.com/i.jpg"}},
                "body":{"text":"Your order is ready"},"footer":{"text":"Thanks"},
                "action":{"name":"review_and_pay","parameters":{"reference_id":"ref-1",
                    "type":"digital-goods","payment_type":"upi","currency":"INR",
                    "total_amount":{"value":21000,"offset":100},
                    "order":{"status":"pending","items":[{"retailer_id":"1","name":"Item",
                        "amount":{"value":20000,"offset":100},"quantity":1}],
                        "subtotal":{"value":20000,"offset":100},
                        "tax":{"value":1000,"offset":100}}}}}),
        ),
        with(
            "interactive",
            json!({"type":"order_status","body":{"text":"Your order has shipped"},
                "action":{"name":"review_order","parameters":{"reference_id":"ref-1",
                    "order":{"status":"shipped","description":"On its way"}}}}),
        ),
    ];
    for body in bodies {
        let (status, answer) = json_of(emulator.send(&body));
        assert_eq!(status, 200, "{body} -> {answer}");
        assert!(answer["messages"][0]["id"].is_string(), "{answer}");
    }
    // A sub_type outside the list is still refused, whatever its case.
    let body = with(
        "template",
        json!({"name":"x","language":{"code":"en_US"},"components":[
            {"type":"button","sub_type":"BOGUS","index":"0"}]}),
    );
    let answer = assert_graph_error(emulator.send(&body), 400, 100);
    assert!(
        answer.to_string().contains("sub_type: must be one of"),
        "{answer}"
    );
}

#[test]
fn batch_carries_value_level_errors_and_refuses_unknown_or_empty_changes() {
    let receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&receiver, &[]);
    let answer = emulator.control_post(
        "webhook/batch",
        &json!({"entries":[{"changes":[{"phone_number_id":"111","errors":[
            {"code":130429,"title":"Rate limit hit",
             "details":"Message failed to send because there were too many messages sent from this phone number in a short period of time"}]}]}]}),
    );
    assert_eq!(answer["delivery"]["status"], 200, "{answer}");
    let payload = receiver.wait_for(1)[0].json();
    let value = only_value(&payload);
    assert_eq!(value["metadata"]["phone_number_id"], "111");
    assert!(value.get("messages").is_none() && value.get("statuses").is_none());
    // cloud-api.md §5.8 shape: code, title, message, error_data.details, href (by default
    // the relative one of §5.8's sample).
    assert_eq!(
        value["errors"],
        json!([{"code":130429,"title":"Rate limit hit","message":"Rate limit hit",
            "error_data":{"details":"Message failed to send because there were too many messages sent from this phone number in a short period of time"},
            "href":"/documentation/business-messaging/whatsapp/support/error-codes"}])
    );

    // A given href is kept as is.
    emulator.control_post(
        "webhook/batch",
        &json!({"entries":[{"changes":[{"errors":[{"code":131000,"href":"https://example.com/e"}]}]}]}),
    );
    let payload = receiver.wait_for(2)[1].json();
    assert_eq!(
        only_value(&payload)["errors"][0]["href"],
        "https://example.com/e"
    );

    for (bad, expected) in [
        (
            json!({"entries":[{"changes":[{"phone_number_id":"111"}]}]}),
            "entries[0].changes[0]: needs at least one of messages, statuses, errors",
        ),
        (
            json!({"entries":[{"changes":[{"statuses":[{"id":"wamid.X","status":"sent"}],"erors":[]}]}]}),
            "entries[0].changes[0].erors: unknown field",
        ),
        (
            json!({"entries":[{"changes":[{"errors":[{"title":"no code"}]}]}]}),
            "entries[0].changes[0].errors[0].code: required",
        ),
    ] {
        let (status, body) = emulator.control_post_status("webhook/batch", &bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains(expected),
            "{bad}: {body}"
        );
    }
    assert_eq!(receiver.received().len(), 2, "refused batches send nothing");
}

#[test]
fn unversioned_graph_paths_use_the_default_version() {
    // cloud-api.md §1.1: "Omitting the version hits the app's default version".
    let emulator = Emulator::start();
    let send_unversioned = |phone: &str, text: &str| {
        json_of(
            emulator
                .client
                .post(format!("{}/{phone}/messages", emulator.base))
                .bearer_auth("test-token")
                .json(&text_body(text))
                .send()
                .expect("send"),
        )
    };
    let (status, answer) = send_unversioned(PHONE_ID, "unversioned");
    assert_eq!(status, 200, "{answer}");
    assert!(answer["messages"][0]["id"].is_string(), "{answer}");

    let response = emulator
        .client
        .post(format!("{}/{PHONE_ID}/media", emulator.base))
        .bearer_auth("test-token")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(upload_body("image/jpeg", "a.jpg", b"\xff\xd8\xff\xe0jpeg"))
        .send()
        .expect("upload");
    let (status, answer) = json_of(response);
    assert_eq!(status, 200, "{answer}");
    let media_id = answer["id"].as_str().expect("media id").to_string();
    let (status, info) = emulator.media_info(&media_id);
    assert_eq!(status, 200, "{info}");
    let (status, answer) = json_of(
        emulator
            .client
            .delete(format!("{}/{media_id}", emulator.base))
            .bearer_auth("test-token")
            .send()
            .expect("delete"),
    );
    assert_eq!((status, answer), (200, json!({"success": true})));

    // The recorded request names the phone number like a versioned one.
    let requests = emulator.control_get(&format!("requests?path_contains=/{PHONE_ID}/messages"));
    let recorded = &requests["requests"][0];
    assert_eq!(recorded["phone_number_id"], PHONE_ID, "{recorded}");

    // An unknown object is named by its own id, not by the edge.
    let (status, answer) = send_unversioned("12ab", "x");
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["error_subcode"], 33);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("Object with ID '12ab' does not exist"),
        "{answer}"
    );
    // Without a token, unversioned routes answer 401 / 190 like versioned ones.
    let response = emulator
        .client
        .post(format!("{}/{PHONE_ID}/messages", emulator.base))
        .json(&text_body("x"))
        .send()
        .expect("send");
    assert_graph_error(response, 401, 190);
}

#[test]
fn api_versions_are_served_upgraded_or_unknown() {
    let emulator = Emulator::start();
    let send_at = |version: &str| {
        emulator
            .client
            .post(format!("{}/{version}/{PHONE_ID}/messages", emulator.base))
            .bearer_auth("test-token")
            .json(&text_body("versioned"))
            .send()
            .expect("send")
    };
    // Live versions are served as asked, without a warning (v25.0 and v26.0 are live until
    // at least 2028 per cloud-api.md §7).
    for version in ["v25.0", "v26.0"] {
        let response = send_at(version);
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["facebook-api-version"], version);
        assert!(!response.headers().contains_key("x-ad-api-version-warning"));
    }
    // Retired versions (v19.0 ended 2026-05-21, v2.3 long ago) are auto-upgraded to the oldest
    // live one, which answers, with Graph's warning.
    for retired in ["v19.0", "v2.3"] {
        let response = send_at(retired);
        assert_eq!(response.status(), 200);
        let served = response.headers()["facebook-api-version"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert_ne!(served, retired);
        let major: u32 = served
            .trim_start_matches('v')
            .trim_end_matches(".0")
            .parse()
            .expect("served version");
        assert!((21..=26).contains(&major), "{served}");
        assert_eq!(
            response.headers()["x-ad-api-version-warning"],
            format!("The call has been auto-upgraded to {served} as {retired} will be deprecated.")
                .as_str()
        );
        let (_, answer) = json_of(response);
        assert!(answer["messages"][0]["id"].is_string(), "{answer}");
    }
    // Versions that never existed answer a bad-path error before anything else (even the
    // token check), on every route.
    for unknown in ["v99999.0", "v0.5", "v26.1"] {
        let response = send_at(unknown);
        assert_eq!(response.headers()["facebook-api-version"], "v26.0");
        let (status, answer) = json_of(response);
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], 100);
        assert_eq!(answer["error"]["type"], "OAuthException");
        assert!(answer["error"].get("error_subcode").is_none(), "{answer}");
        assert_eq!(
            answer["error"]["message"],
            format!("Unknown path components: /{unknown}/{PHONE_ID}/messages")
        );
    }
    let (status, answer) = json_of(
        emulator
            .client
            .get(format!("{}/v0.5/123", emulator.base))
            .send()
            .expect("get"),
    );
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], 100, "{answer}");
    assert_eq!(emulator.control_get("stats")["accepted_sends"], 4);
}

#[test]
fn unknown_numbers_and_wabas_answer_100_33_once_onboarding_state_exists() {
    let emulator = Emulator::start();
    let pin = json!({"messaging_product":"whatsapp","pin":"123456"});
    // Without onboarding state any id is taken as given.
    let (status, answer) = emulator.register("test-token", "777000111", &pin);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        json_of(emulator.subscribe("test-token", "888000111", None)).0,
        200
    );
    let waba_get = |token: &str, waba: &str, edge: &str| {
        json_of(
            emulator
                .graph(reqwest::Method::GET, &format!("{waba}/{edge}"), token)
                .send()
                .expect("WABA edge"),
        )
    };
    for edge in ["subscribed_apps", "phone_numbers"] {
        assert_eq!(waba_get("test-token", "999000222", edge).0, 200, "{edge}");
    }

    let (token, waba, phone) = emulator.onboarded_token();
    // Unknown ids now answer GraphMethodException 100/33 (cloud-api.md §6.6).
    let unsupported = assert_unknown_object;
    unsupported(
        emulator.register(&token, "999000111", &pin),
        "999000111",
        "post",
    );
    unsupported(
        emulator.deregister(&token, "999000111"),
        "999000111",
        "post",
    );
    unsupported(
        json_of(emulator.subscribe(&token, "999000222", None)),
        "999000222",
        "post",
    );
    unsupported(
        json_of(
            emulator
                .graph(reqwest::Method::DELETE, "999000222/subscribed_apps", &token)
                .send()
                .expect("unsubscribe"),
        ),
        "999000222",
        "delete",
    );
    // The WABA-scoped reads too, with the same answer as a write.
    for edge in ["subscribed_apps", "phone_numbers"] {
        unsupported(waba_get(&token, "999000222", edge), "999000222", "get");
        unsupported(
            waba_get("test-token", "999000222", edge),
            "999000222",
            "get",
        );
    }
    // Refused calls do not count against the number's register limit.
    let state = emulator.control_get("onboarding");
    assert!(!state.to_string().contains("999000111"), "{state}");

    // The onboarded ids and the emulator's defaults keep working.
    assert_eq!(json_of(emulator.subscribe(&token, &waba, None)).0, 200);
    assert_eq!(emulator.register(&token, &phone, &pin).0, 200);
    assert_eq!(
        json_of(emulator.subscribe("test-token", "102290129340398", None)).0,
        200
    );
    assert_eq!(emulator.register("test-token", PHONE_ID, &pin).0, 200);
    for edge in ["subscribed_apps", "phone_numbers"] {
        let (status, answer) = waba_get(&token, &waba, edge);
        assert_eq!(status, 200, "{edge}: {answer}");
        assert_eq!(answer["data"].as_array().map(Vec::len), Some(1), "{answer}");
        let (status, answer) = waba_get("test-token", "102290129340398", edge);
        assert_eq!(status, 200, "{edge}: {answer}");
    }

    // A reset forgets the onboarding state: any id is accepted again.
    emulator.control_post("reset", &json!({}));
    assert_eq!(emulator.register("test-token", "999000111", &pin).0, 200);
}

#[test]
fn business_tokens_reach_only_the_objects_of_their_own_waba() {
    let emulator = Emulator::start();
    let (token_a, waba_a, phone_a) = emulator.onboarded_token();
    let (_, waba_b, phone_b) = emulator.onboarded_token();
    let pin = json!({"messaging_product":"whatsapp","pin":PIN});
    let upload = |token: &str, phone: &str| {
        json_of(
            emulator
                .graph(reqwest::Method::POST, &format!("{phone}/media"), token)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(upload_body("image/png", "a.png", b"\x89PNG\r\n\x1a\n"))
                .send()
                .expect("upload"),
        )
    };
    let call = |method: reqwest::Method, path: &str, token: &str| {
        json_of(emulator.graph(method, path, token).send().expect(path))
    };
    let send = |token: &str, phone: &str| {
        json_of(
            emulator
                .graph(reqwest::Method::POST, &format!("{phone}/messages"), token)
                .json(&text_body("scoped"))
                .send()
                .expect("send"),
        )
    };

    // A's business token on B's objects (and on the emulator's default number, which is under
    // no WABA of A's): Graph's "cannot be loaded due to missing permissions" (100/33).
    let refused = [
        (send(&token_a, &phone_b), phone_b.as_str(), "post"),
        (send(&token_a, PHONE_ID), PHONE_ID, "post"),
        (upload(&token_a, &phone_b), phone_b.as_str(), "post"),
        (
            emulator.register(&token_a, &phone_b, &pin),
            &phone_b,
            "post",
        ),
        (emulator.deregister(&token_a, &phone_b), &phone_b, "post"),
        (
            json_of(emulator.subscribe(&token_a, &waba_b, None)),
            &waba_b,
            "post",
        ),
        (
            call(
                reqwest::Method::GET,
                &format!("{waba_b}/subscribed_apps"),
                &token_a,
            ),
            &waba_b,
            "get",
        ),
        (
            call(
                reqwest::Method::DELETE,
                &format!("{waba_b}/subscribed_apps"),
                &token_a,
            ),
            &waba_b,
            "delete",
        ),
        (
            call(
                reqwest::Method::GET,
                &format!("{waba_b}/phone_numbers"),
                &token_a,
            ),
            &waba_b,
            "get",
        ),
        (
            json_of(emulator.subscribe(&token_a, "102290129340398", None)),
            "102290129340398",
            "post",
        ),
    ];
    for (answer, id, verb) in refused {
        assert!(!answer.1.to_string().contains(&token_a), "token echoed");
        assert_unknown_object(answer, id, verb);
    }
    // Nothing was sent, registered or counted for B.
    assert_eq!(emulator.control_get("stats")["accepted_sends"], 0);
    let state = emulator.control_get("onboarding");
    let b = state["registrations"]
        .as_array()
        .expect("registrations")
        .iter()
        .find(|registration| registration["phone_number_id"] == phone_b.as_str())
        .expect("B's number");
    assert_eq!(b["register_calls"], 0, "{b}");
    assert_eq!(b["deregister_calls"], 0, "{b}");
    assert_eq!(b["status"], "PENDING", "{b}");

    // On its own WABA and number the token works throughout.
    assert_eq!(send(&token_a, &phone_a).0, 200);
    assert_eq!(upload(&token_a, &phone_a).0, 200);
    assert_eq!(emulator.register(&token_a, &phone_a, &pin).0, 200);
    assert_eq!(json_of(emulator.subscribe(&token_a, &waba_a, None)).0, 200);
    for edge in ["subscribed_apps", "phone_numbers"] {
        let (status, answer) = call(reqwest::Method::GET, &format!("{waba_a}/{edge}"), &token_a);
        assert_eq!(status, 200, "{edge}: {answer}");
    }
    // The configured token is tied to no WABA: it reaches B's objects and the defaults.
    assert_eq!(send("test-token", &phone_b).0, 200);
    assert_eq!(send("test-token", PHONE_ID).0, 200);
    assert_eq!(upload("test-token", &phone_b).0, 200);
    assert_eq!(emulator.register("test-token", &phone_b, &pin).0, 200);
    assert_eq!(
        json_of(emulator.subscribe("test-token", &waba_b, None)).0,
        200
    );
    let (status, answer) = call(
        reqwest::Method::GET,
        &format!("{waba_b}/phone_numbers"),
        "test-token",
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"][0]["id"], phone_b.as_str());
}

#[test]
fn phone_number_override_wins_over_its_waba_override() {
    // cloud-api.md §5.10: phone-number override → WABA override → app callback URL.
    let app = Receiver::start();
    let waba_receiver = Receiver::start();
    let phone_receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&app, &["--auto-statuses"]);
    let (token, waba, phone) = emulator.onboarded_token();
    // A second number under the same WABA keeps following the WABA's override.
    let (_, _, sibling) = emulator.oauth_code(&json!({"waba_id": waba}));
    let override_body = |uri: &str, verify_token: &str| json!({"webhook_configuration":{"override_callback_uri": uri, "verify_token": verify_token}});
    let configure = |token: &str, phone: &str, body: &Value| {
        json_of(
            emulator
                .graph(reqwest::Method::POST, phone, token)
                .json(body)
                .send()
                .expect("phone settings"),
        )
    };
    let read_configuration = |token: &str, phone: &str| {
        json_of(
            emulator
                .graph(
                    reqwest::Method::GET,
                    &format!("{phone}?fields=webhook_configuration"),
                    token,
                )
                .send()
                .expect("webhook_configuration"),
        )
    };
    let inbound = |phone: &str, body: &str| {
        emulator.control_post_status(
            "webhook/inbound",
            &json!({"phone_number_id": phone, "type":"text","text":{"body": body}}),
        )
    };

    let response = emulator.subscribe(
        &token,
        &waba,
        Some(&json!({"override_callback_uri": waba_receiver.url, "verify_token": "test-verify-token"})),
    );
    assert_eq!(response.status(), 200);
    waba_receiver.wait_for(1);
    let (status, answer) = configure(
        &token,
        &phone,
        &override_body(&phone_receiver.url, "test-verify-token"),
    );
    assert_eq!((status, &answer), (200, &json!({"success": true})));
    // Meta's verification GET went to the number's override.
    let verification = phone_receiver.wait_for(1).remove(0);
    assert_eq!(verification.method, "GET");
    let (status, answer) = read_configuration(&token, &phone);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"webhook_configuration":{"phone_number": phone_receiver.url,
            "whatsapp_business_account": waba_receiver.url, "application": app.url},
            "id": phone})
    );

    // The number's webhooks (control-driven and auto statuses) go to its own override, still
    // with the WABA as entry[].id; its sibling's go to the WABA's override.
    let (status, answer) = inbound(&phone, "to the number");
    assert_eq!(status, 200, "{answer}");
    let response = emulator
        .graph(reqwest::Method::POST, &format!("{phone}/messages"), &token)
        .json(&text_body("statuses follow"))
        .send()
        .expect("send");
    assert_eq!(response.status(), 200);
    let received = phone_receiver.wait_for(5);
    assert_routed(&received[1..], &waba, &phone);
    let (status, answer) = inbound(&sibling, "to the sibling");
    assert_eq!(status, 200, "{answer}");
    let received = waba_receiver.wait_for(2);
    assert_eq!(
        only_value(&received[1].json())["metadata"]["phone_number_id"],
        sibling.as_str()
    );
    assert!(app.received().is_empty(), "the app URL got nothing");

    // A failed verification answers 2200 and keeps the override as it was.
    let (status, answer) = configure(&token, &phone, &override_body(&app.url, "wrong-token"));
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], 2200, "{answer}");
    assert!(!answer.to_string().contains("wrong-token"), "{answer}");
    assert_eq!(
        read_configuration(&token, &phone).1["webhook_configuration"]["phone_number"],
        phone_receiver.url.as_str()
    );

    // Cleared with an empty URI: the WABA's override applies again.
    let (status, answer) = configure(&token, &phone, &override_body("", ""));
    assert_eq!(status, 200, "{answer}");
    let (_, answer) = read_configuration(&token, &phone);
    assert!(
        answer["webhook_configuration"]
            .get("phone_number")
            .is_none(),
        "{answer}"
    );
    let (status, answer) = inbound(&phone, "back to the WABA");
    assert_eq!(status, 200, "{answer}");
    let received = waba_receiver.wait_for(3);
    assert_eq!(
        only_value(&received[2].json())["metadata"]["phone_number_id"],
        phone.as_str()
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(phone_receiver.received().len(), 5);

    // Without the app's subscription to the WABA, no override delivers anything.
    assert_eq!(
        configure(
            &token,
            &phone,
            &override_body(&phone_receiver.url, "test-verify-token")
        )
        .0,
        200
    );
    let response = emulator
        .graph(
            reqwest::Method::DELETE,
            &format!("{waba}/subscribed_apps"),
            &token,
        )
        .send()
        .expect("unsubscribe");
    assert_eq!(response.status(), 200);
    let (status, answer) = inbound(&phone, "unsubscribed");
    assert_eq!(status, 400, "{answer}");

    // Refusals: an unknown number, another WABA's token, parameters the emulator does not
    // model, a missing verify token.
    assert_unknown_object(
        configure(
            &token,
            "999000333",
            &override_body(&phone_receiver.url, "test-verify-token"),
        ),
        "999000333",
        "post",
    );
    assert_unknown_object(
        read_configuration("test-token", "999000333"),
        "999000333",
        "get",
    );
    let (other_token, _, _) = emulator.onboarded_token();
    assert_unknown_object(
        configure(&other_token, &phone, &override_body("", "")),
        &phone,
        "post",
    );
    assert_unknown_object(read_configuration(&other_token, &phone), &phone, "get");
    for body in [
        json!({"pin": "123456"}),
        json!({}),
        json!({"webhook_configuration": "not json"}),
        json!({"webhook_configuration": {"override_callback_uri": phone_receiver.url}}),
        json!({"webhook_configuration": {"override_callback_uri": "ftp://x", "verify_token": "t"}}),
        json!({"webhook_configuration": {"callback": "http://x"}}),
    ] {
        let (status, answer) = configure(&token, &phone, &body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], 100, "{body}: {answer}");
    }
}

#[test]
fn phone_override_of_a_number_under_no_known_waba_replaces_the_app_url() {
    let app = Receiver::start();
    let phone_receiver = Receiver::start();
    let emulator = Emulator::with_webhooks(&app, &[]);
    // As a form field holding the object's JSON, as Graph also takes it.
    let response = emulator
        .graph(reqwest::Method::POST, PHONE_ID, "test-token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            query_string(&[(
                "webhook_configuration",
                &json!({"override_callback_uri": phone_receiver.url,
                    "verify_token": "test-verify-token"})
                .to_string(),
            )])[1..]
                .to_string(),
        )
        .send()
        .expect("phone settings");
    assert_eq!(json_of(response).0, 200);
    phone_receiver.wait_for(1);
    let answer = emulator.control_post(
        "webhook/inbound",
        &json!({"type":"text","text":{"body":"default number"}}),
    );
    assert_eq!(answer["delivery"]["status"], 200, "{answer}");
    let received = phone_receiver.wait_for(2);
    assert_eq!(
        only_value(&received[1].json())["metadata"]["phone_number_id"],
        PHONE_ID
    );
    assert!(app.received().is_empty());
    // The request is recorded as concerning that number; a plain GET /{id} is still media.
    let recorded = emulator.requests();
    assert_eq!(recorded[0]["phone_number_id"], PHONE_ID, "{}", recorded[0]);
    let (status, answer) = json_of(
        emulator
            .graph(reqwest::Method::GET, PHONE_ID, "test-token")
            .send()
            .expect("media lookup"),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["error_subcode"], 33, "{answer}");
}
