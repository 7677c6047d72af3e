//! Conformance against real-shaped payloads from other projects, kept in `../shared/fixtures/`
//! beside the repository in this project's CI (not shipped to users). Every file is handled:
//! webhooks through the host-fed entry point, Graph answers through the code that reads them (or,
//! for the phone numbers the library never reads, against the emulator), request bodies
//! through the message builder and the emulator's validation. Skipped, saying so, when absent.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use whatsapp_connector::config::ClientConfig;
use whatsapp_connector::error::{DeliveryError, GraphError};
use whatsapp_connector::ffi::options::wa_options_set_dedupe_capacity;
use whatsapp_connector::ffi::wa_result;
use whatsapp_connector::graph::GraphClient;
use whatsapp_connector::media::{MediaClient, UploadSource};
use whatsapp_connector::message::{build, MessageInput};
use whatsapp_connector::onboarding::{self, OnboardContext, OnboardRequest, Stage};

fn fixtures_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/cloud-api");
    dir.is_dir().then_some(dir)
}

/// Every (name, payload) in the fixtures: pywa files hold scenarios, the others one payload.
fn payloads(dir: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for sub in ["pywa", "whatsapp-business-java-api"] {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "json"))
        {
            let text = std::fs::read_to_string(&file).unwrap();
            let value: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let name = format!("{sub}/{}", file.file_name().unwrap().to_string_lossy());
            if sub == "pywa" {
                for (scenario, payload) in value.as_object().unwrap() {
                    out.push((format!("{name}#{scenario}"), payload.clone()));
                }
            } else {
                out.push((name, value));
            }
        }
    }
    out
}

fn expected_kind(message: &Value) -> String {
    match message["type"].as_str().unwrap_or("unknown") {
        "contacts" => "contact".to_string(),
        other => other.to_string(),
    }
}

#[test]
fn every_fixture_is_handled() {
    let Some(dir) = fixtures_dir() else {
        println!("SKIPPED: ../shared/fixtures/cloud-api is not present (it exists only in the project's CI)");
        return;
    };
    let emu = Emulator::start();
    let opts = Opts::for_emulator(&emu);
    // Scenarios reuse message ids; dedupe would hide the repeats.
    assert_eq!(wa_options_set_dedupe_capacity(opts.0, 0), wa_result::WA_OK);
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    let mut counts = (0, 0, 0);
    for (name, payload) in payloads(&dir) {
        if payload["object"] == "whatsapp_business_account" {
            counts.0 += 1;
            check_webhook(&host, &name, &payload);
        } else if payload.get("messaging_product").is_some() && payload.get("type").is_some() {
            counts.1 += 1;
            check_request_body(&emu, &name, &payload);
        } else {
            counts.2 += 1;
            check_graph_answer(&emu, &name, &payload);
        }
    }
    println!(
        "fixtures: {} webhooks, {} request bodies, {} Graph answers",
        counts.0, counts.1, counts.2
    );
    assert!(
        counts.0 >= 30 && counts.1 == 3 && counts.2 >= 6,
        "{counts:?}"
    );
}

/// What `RecvMessage`'s msg carries for a reply: text, or JSON compared as a value.
enum Reply<'a> {
    Text(&'a str),
    Json(&'a Value),
}

/// The inbound mapping of README.md for `interactive` and `button` messages: button_reply and
/// list_reply give the reply's title, nfm_reply (a Flow) its `response_json` (the nfm_reply
/// object as JSON if it has none), another interactive type the interactive object as JSON, an
/// interactive message without its object the whole message as JSON; a template quick reply
/// (`button`) gives the button's text (its payload only when it has no text).
fn expected_reply(m: &Value) -> Reply<'_> {
    if m["type"] == "button" {
        let button = &m["button"];
        return Reply::Text(
            button["text"]
                .as_str()
                .or(button["payload"].as_str())
                .expect("a quick reply with text or payload"),
        );
    }
    let interactive = &m["interactive"];
    if !interactive.is_object() {
        return Reply::Json(m);
    }
    let subtype = interactive["type"].as_str().unwrap_or("");
    let reply = &interactive[subtype];
    match subtype {
        "button_reply" | "list_reply" => Reply::Text(reply["title"].as_str().expect("a title")),
        "nfm_reply" => reply["response_json"]
            .as_str()
            .map_or(Reply::Json(reply), Reply::Text),
        _ => Reply::Json(interactive),
    }
}

fn check_webhook(host: &Host, name: &str, payload: &Value) {
    let before = host.seen().inbound.len();
    let body = meta_json(payload);
    let reply = host.webhook("POST", "/webhook", Some(&sign(APP_SECRET, &body)), &body);
    assert_eq!(reply.status, 200, "{name}: {reply:?}");
    let got: Vec<Inbound> = host
        .drain_inbound(Duration::from_millis(30))
        .split_off(before);
    let mut expected_raw = 0;
    for entry in payload["entry"].as_array().unwrap() {
        for change in entry["changes"].as_array().unwrap() {
            expected_raw += 1;
            let field = change["field"].as_str().unwrap();
            assert!(
                got.iter()
                    .any(|i| i.kind == "raw" && i.args[0].as_deref() == Some(field)),
                "{name}: no raw change for {field}"
            );
            let value = &change["value"];
            let channel = value["metadata"]["phone_number_id"].as_str();
            for m in value["messages"].as_array().into_iter().flatten() {
                let id = m["id"].as_str().unwrap();
                let mapped = got
                    .iter()
                    .find(|i| i.kind == "message" && i.args[4].as_deref() == Some(id))
                    .unwrap_or_else(|| panic!("{name}: no recv_message for {id}"));
                assert_eq!(
                    mapped.args[3].as_deref(),
                    Some(expected_kind(m).as_str()),
                    "{name}"
                );
                assert_eq!(mapped.args[2].as_deref(), channel, "{name}: channel");
                let sender = m["from"].as_str().or(m["from_user_id"].as_str());
                assert_eq!(mapped.args[1].as_deref(), sender, "{name}: tel");
                let kind = m["type"].as_str().unwrap();
                match kind {
                    "text" => assert_eq!(
                        mapped.args[0].as_deref(),
                        m["text"]["body"].as_str(),
                        "{name}"
                    ),
                    "reaction" => {
                        assert_eq!(
                            mapped.args[0].as_deref(),
                            Some(m["reaction"]["emoji"].as_str().unwrap_or("")),
                            "{name}"
                        );
                        assert_eq!(
                            mapped.args[5].as_deref(),
                            m["reaction"]["message_id"].as_str(),
                            "{name}"
                        );
                    }
                    "image" | "audio" | "video" | "document" | "sticker" => {
                        let media = got
                            .iter()
                            .find(|i| i.kind == "media" && i.args[2].as_deref() == Some(id))
                            .unwrap_or_else(|| panic!("{name}: no recv_media for {id}"));
                        assert_eq!(media.args[3].as_deref(), m[kind]["id"].as_str(), "{name}");
                        assert_eq!(
                            media.args[4].as_deref(),
                            m[kind]["mime_type"].as_str(),
                            "{name}"
                        );
                        assert_eq!(
                            mapped.args[0].as_deref(),
                            Some(m[kind]["caption"].as_str().unwrap_or("")),
                            "{name}"
                        );
                    }
                    "location" | "contacts" => {
                        let msg: Value =
                            serde_json::from_str(mapped.args[0].as_deref().unwrap()).unwrap();
                        assert_eq!(msg, m[kind], "{name}");
                    }
                    "interactive" | "button" => {
                        let msg = mapped.args[0].as_deref().unwrap();
                        match expected_reply(m) {
                            Reply::Text(text) => assert_eq!(msg, text, "{name}: {kind} msg"),
                            Reply::Json(json) => {
                                let got: Value = serde_json::from_str(msg).unwrap_or_else(|e| {
                                    panic!("{name}: {kind} msg is not JSON ({e}): {msg}")
                                });
                                assert_eq!(&got, json, "{name}: {kind} msg");
                            }
                        }
                    }
                    _ => {
                        let msg: Value =
                            serde_json::from_str(mapped.args[0].as_deref().unwrap()).unwrap();
                        assert_eq!(&msg, m, "{name}: raw message JSON");
                    }
                }
                if kind != "reaction" {
                    if let Some(context_id) = m["context"]["id"].as_str() {
                        assert_eq!(
                            mapped.args[5].as_deref(),
                            Some(context_id),
                            "{name}: refersToID"
                        );
                    }
                }
            }
            for st in value["statuses"].as_array().into_iter().flatten() {
                let id = st["id"].as_str().unwrap();
                let status = st["status"].as_str().unwrap();
                let mapped = got
                    .iter()
                    .find(|i| {
                        i.kind == "message"
                            && i.args[3].as_deref() == Some("status")
                            && i.args[4].as_deref() == Some(id)
                            && i.args[0].as_deref().unwrap().starts_with(status)
                    })
                    .unwrap_or_else(|| panic!("{name}: no status callback for {id} {status}"));
                assert_eq!(
                    mapped.args[5].as_deref(),
                    st["biz_opaque_callback_data"].as_str(),
                    "{name}"
                );
                if status == "failed" {
                    let code = st["errors"][0]["code"].as_i64().unwrap();
                    assert!(
                        mapped.args[0]
                            .as_deref()
                            .unwrap()
                            .contains(&format!("(#{code})")),
                        "{name}"
                    );
                }
            }
        }
    }
    assert_eq!(
        got.iter().filter(|i| i.kind == "raw").count(),
        expected_raw,
        "{name}"
    );
}

/// A request body some other SDK sends: our builder produces the same, the emulator accepts it.
fn check_request_body(emu: &Emulator, name: &str, expected: &Value) {
    let kind = expected["type"].as_str().unwrap();
    let content = expected[kind].to_string();
    let to = expected["to"].as_str().unwrap();
    let built = build(&MessageInput {
        message_json: &content,
        remote_num: to,
        message_type: kind,
        channel: PHONE_ID,
        callback_info: None,
        refers_to_id: None,
    })
    .unwrap_or_else(|e| panic!("{name}: the builder refused a real body: {e}"));
    let ours: Value = serde_json::from_slice(&built.body).unwrap();
    assert_eq!(&ours, expected, "{name}");
    let answer = direct_http()
        .post(format!("{}/v26.0/{PHONE_ID}/messages", emu.url))
        .bearer_auth(TOKEN)
        .json(expected)
        .send()
        .unwrap();
    assert_eq!(
        answer.status().as_u16(),
        200,
        "{name}: the emulator refused it: {}",
        answer.text().unwrap()
    );
}

/// Graph answers, each through the library code that reads it: errors and send answers through
/// their parsers; media lookups, uploads and `{"success":true}` through the real client paths,
/// with the emulator forced (a fault rule) to answer with the fixture.
fn check_graph_answer(emu: &Emulator, name: &str, answer: &Value) {
    let bytes = serde_json::to_vec(answer).unwrap();
    if let Some(expected) = answer.get("error") {
        let error = GraphError::parse(400, &bytes);
        assert_eq!(error.code, expected["code"].as_i64(), "{name}");
        assert_eq!(error.subcode, expected["error_subcode"].as_i64(), "{name}");
        assert_eq!(
            Some(error.message.as_str()),
            expected["message"].as_str(),
            "{name}"
        );
        assert_eq!(
            error.delivery_error(),
            DeliveryError::NotFound,
            "{name}: unknown object → NOT_FOUND"
        );
    } else if answer.get("messages").is_some() {
        let wamid = whatsapp_connector::graph::wamid_of(&bytes);
        assert_eq!(
            wamid.as_deref(),
            answer["messages"][0]["id"].as_str(),
            "{name}"
        );
    } else if answer.get("url").is_some() {
        check_media_lookup(emu, name, answer);
    } else if answer.get("success").is_some() {
        check_success_answer(emu, name, answer);
    } else if answer.get("data").is_some() || answer.get("verified_name").is_some() {
        check_phone_numbers(emu, name, answer);
    } else if answer.as_object().is_some_and(|o| o.len() == 1) && answer["id"].is_string() {
        check_upload_answer(emu, name, answer);
    } else {
        panic!("{name}: a Graph answer this test does not know: {answer}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn config_for(emu: &Emulator) -> ClientConfig {
    ClientConfig {
        graph_base_url: emu.url.clone(),
        ..ClientConfig::default()
    }
}

/// The next request whose path contains `path` is answered with `answer` (status 200).
fn answer_next(emu: &Emulator, path: &str, answer: &Value) {
    emu.fault(json!({
        "match": {"path_contains": path},
        "times": 1,
        "action": {"http_status": 200, "body": answer.to_string()},
    }));
}

/// Each request to `path` was answered by a fault rule with `answer` (not by the emulator's own
/// route, whose answer could happen to look the same).
fn assert_answered_with(emu: &Emulator, name: &str, path: &str, answer: &Value, times: usize) {
    let answered: Vec<Value> = emu
        .requests()
        .into_iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with(path)))
        .collect();
    assert_eq!(answered.len(), times, "{name}: requests to {path}");
    for r in answered {
        assert!(
            r["fault_id"].is_u64(),
            "{name}: {path} not answered by the fixture: {r}"
        );
        let body: Value = serde_json::from_str(r["response_body"].as_str().unwrap()).unwrap();
        assert_eq!(&body, answer, "{name}: {path}");
    }
}

/// `GET /{media-id}`: `MediaClient::resolve` reads url, mime_type, sha256 and file_size.
fn check_media_lookup(emu: &Emulator, name: &str, answer: &Value) {
    let media_id = answer["id"].as_str().unwrap();
    answer_next(emu, &format!("/{media_id}"), answer);
    let media = MediaClient::new(&config_for(emu)).unwrap();
    let info = runtime()
        .block_on(media.resolve(media_id, TOKEN))
        .unwrap_or_else(|e| panic!("{name}: the lookup answer was refused: {e:?}"));
    assert_answered_with(emu, name, &format!("/{media_id}"), answer, 1);
    assert_eq!(
        Some(info.url.as_str()),
        answer["url"].as_str(),
        "{name}: url"
    );
    assert_eq!(
        Some(info.mime_type.as_str()),
        answer["mime_type"].as_str(),
        "{name}: mime_type"
    );
    let sha256 = info.sha256.map(|digest| {
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    });
    assert_eq!(
        sha256.as_deref(),
        answer["sha256"].as_str(),
        "{name}: sha256"
    );
    assert_eq!(
        info.file_size,
        answer["file_size"].as_u64(),
        "{name}: file_size"
    );
}

/// `POST /{phone-number-id}/media`: `MediaClient::upload` returns the answer's `id`.
fn check_upload_answer(emu: &Emulator, name: &str, answer: &Value) {
    let path = format!("/{PHONE_ID}/media");
    answer_next(emu, &path, answer);
    let media = MediaClient::new(&config_for(emu)).unwrap();
    let source = UploadSource::Buffer {
        data: bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\n fixture upload"),
        filename: "fixture.png".into(),
    };
    let id = runtime()
        .block_on(media.upload(PHONE_ID, source, "image/png", TOKEN))
        .unwrap_or_else(|e| panic!("{name}: the upload answer was refused: {e:?}"));
    assert_answered_with(emu, name, &path, answer, 1);
    assert_eq!(Some(id.as_str()), answer["id"].as_str(), "{name}: media id");
}

/// `{"success":true}` answers the onboarding stages after the token exchange (webhook
/// subscription and phone registration): a run that gets it from both finishes.
fn check_success_answer(emu: &Emulator, name: &str, answer: &Value) {
    const WABA_ID: &str = "102290129340398";
    let subscribe = format!("/{WABA_ID}/subscribed_apps");
    let register = format!("/{PHONE_ID}/register");
    answer_next(emu, &subscribe, answer);
    answer_next(emu, &register, answer);
    let config = config_for(emu);
    let ctx = OnboardContext {
        graph: std::sync::Arc::new(GraphClient::new(&config).unwrap()),
        app_id: None,
        app_secret: String::new(),
        default_version: config.api_version.clone(),
        current_token: Some(TOKEN.to_string()),
    };
    let request = OnboardRequest {
        version: String::new(),
        code: None,
        webhook_token: String::new(),
        waba_id: WABA_ID.into(),
        callback_uri: String::new(),
        phone_id: PHONE_ID.into(),
        pin: "123456".into(),
        start: Stage::RegisterWebhooks,
    };
    onboarding::validate(&request).unwrap();
    let outcome = runtime().block_on(onboarding::run(
        ctx,
        request,
        Default::default(),
        |_| {},
        |_| {},
    ));
    assert_eq!(outcome.error, None, "{name}");
    assert_eq!(outcome.stage, Stage::Finished, "{name}");
    assert_eq!(outcome.token.as_deref(), Some(TOKEN), "{name}");
    assert_answered_with(emu, name, &subscribe, answer, 1);
    assert_answered_with(emu, name, &register, answer, 1);
}

/// Phone number objects: the library reads none (it neither looks numbers up nor lists them),
/// so they are held against the emulator instead: a number in its `GET /{waba-id}/phone_numbers`
/// answer has every field the fixture's numbers have, with the same JSON types, and a listing
/// has the fixture's paging cursors.
fn check_phone_numbers(emu: &Emulator, name: &str, answer: &Value) {
    let code = emu.post_json("/_emulator/oauth/codes", json!({}));
    let waba_id = code["waba_id"].as_str().unwrap();
    let phone_id = code["phone_number_id"].as_str().unwrap();
    let listed: Value = direct_http()
        .get(format!("{}/v26.0/{waba_id}/phone_numbers", emu.url))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ours = listed["data"]
        .as_array()
        .and_then(|data| data.iter().find(|n| n["id"] == phone_id))
        .unwrap_or_else(|| panic!("{name}: the emulator does not list {phone_id}: {listed}"));
    let theirs: Vec<&Value> = match answer["data"].as_array() {
        Some(data) => data.iter().collect(),
        None => vec![answer],
    };
    assert!(!theirs.is_empty(), "{name}");
    for number in theirs {
        if let Err(path) = same_shape(ours, number, "") {
            panic!("{name}: the emulator's number differs at {path}: {ours} vs {number}");
        }
    }
    if answer.get("paging").is_some() {
        if let Err(path) = same_shape(&listed["paging"], &answer["paging"], "paging") {
            panic!("{name}: the emulator's paging differs at {path}: {listed}");
        }
    }
}

/// Whether `ours` has every field of `theirs`, recursively, each of the same JSON type; the
/// path of the first difference otherwise.
fn same_shape(ours: &Value, theirs: &Value, path: &str) -> Result<(), String> {
    match (ours, theirs) {
        (Value::Object(ours), Value::Object(theirs)) => {
            for (key, value) in theirs {
                let path = format!("{path}.{key}");
                same_shape(ours.get(key).unwrap_or(&Value::Null), value, &path)?;
            }
            Ok(())
        }
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Array(_), Value::Array(_)) => Ok(()),
        _ => Err(path.to_string()),
    }
}
