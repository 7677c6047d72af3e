//! Conformance against real-shaped payloads from other projects, kept in `../shared/fixtures/`
//! beside the repository in this project's CI (not shipped to users). Every file is handled:
//! webhooks through the host-fed entry point, Graph answers through the parsers, request bodies
//! through the message builder and the emulator's validation. Skipped, saying so, when absent.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use whatsapp_connector::error::{DeliveryError, GraphError};
use whatsapp_connector::ffi::options::wa_options_set_dedupe_capacity;
use whatsapp_connector::ffi::wa_result;
use whatsapp_connector::message::{build, MessageInput};

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
            check_graph_answer(&name, &payload);
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
                    "interactive" | "button" => assert!(
                        !mapped.args[0].as_deref().unwrap().is_empty() || m[kind].is_null(),
                        "{name}"
                    ),
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

/// Graph answers: what the client reads from each.
fn check_graph_answer(name: &str, answer: &Value) {
    let bytes = serde_json::to_vec(answer).unwrap();
    if answer.get("error").is_some() {
        let error = GraphError::parse(400, &bytes);
        assert_eq!(error.code, Some(100), "{name}");
        assert_eq!(
            error.delivery_error(),
            DeliveryError::NotFound,
            "{name}: unknown object → NOT_FOUND"
        );
    } else if answer.get("messages").is_some() {
        let wamid = whatsapp_connector::graph::wamid_of(&bytes).unwrap();
        assert!(wamid.starts_with("wamid."), "{name}");
    } else {
        // Media, upload, phone number and `{"success":true}` answers belong to the media and
        // onboarding paths; until they exist, they only have to be well-formed Graph JSON.
        let known = ["url", "id", "success", "verified_name", "data"];
        assert!(
            known.iter().any(|k| answer.get(k).is_some()),
            "{name}: unexpected answer {answer}"
        );
        let _ = json!(null);
    }
}
