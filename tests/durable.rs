//! The durable outbox through the C API: messages survive the client (and a restart) and are
//! resumed in order; bad stores are refused at creation with a clear error.

mod common;

use std::path::PathBuf;

use common::*;
use whatsapp_connector::ffi::client::*;
use whatsapp_connector::ffi::options::*;
use whatsapp_connector::ffi::result::whatsapp_error_t::*;
use whatsapp_connector::ffi::wa_result;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wa-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn durable_opts(emu: &Emulator, path: &std::path::Path) -> Opts {
    let opts = Opts::for_emulator(emu);
    assert_eq!(
        wa_options_set_outbox_path(opts.0, cstr(path.to_str().unwrap()).as_ptr()),
        wa_result::WA_OK
    );
    opts
}

#[test]
fn accepted_messages_survive_the_client_and_resume_in_order() {
    let emu = Emulator::start();
    let dir = temp_dir("resume");
    let store = dir.join("outbox.db");
    {
        // No token: everything stays queued; then the client goes away without a close.
        let mut host = Host::new(&durable_opts(&emu, &store));
        for i in 0..30 {
            let to = format!("+1555000{:04}", i % 3);
            assert_eq!(
                host.send(&format!(r#"{{"body":"m{i}"}}"#), &to, "text", 100 + i),
                wa_result::WA_OK
            );
        }
        host.free();
        assert!(host.seen().results.is_empty());
    }
    assert!(emu.sends().is_empty());
    let host = Host::new(&durable_opts(&emu, &store));
    assert_eq!(wa_client_pending(host.client), 30, "resumed from the store");
    host.set_token(TOKEN);
    let results = host.wait_results(30, 20 * SECS);
    // Each result belongs to the send its wamid names; body m{i} was accepted with info-{100+i}.
    let sends = emu.sends();
    let mut bodies = std::collections::HashSet::new();
    for r in &results {
        assert_eq!(r.error, WHATSAPP_ERR_OK, "{r:?}");
        assert_eq!(r.ctx, 0, "request contexts do not survive a restart");
        let send = sends
            .iter()
            .find(|s| s["wamid"] == r.content.as_str())
            .unwrap_or_else(|| panic!("no send has the result's wamid: {r:?}"));
        let body = send["body"]["text"]["body"].as_str().unwrap();
        let i: usize = body.strip_prefix('m').unwrap().parse().unwrap();
        assert_eq!(
            r.callback_info.as_deref(),
            Some(format!("info-{}", 100 + i).as_str()),
            "stored callback_info of {body}: {r:?}"
        );
        assert!(bodies.insert(i), "two results for {body}");
    }
    assert_eq!(bodies.len(), 30);
    // Per-recipient order is the original acceptance order.
    for k in 0..3 {
        let to = format!("+1555000{k:04}");
        let got: Vec<String> = sends
            .iter()
            .filter(|s| s["to"] == to.as_str())
            .map(|s| s["body"]["text"]["body"].as_str().unwrap().to_string())
            .collect();
        let expected: Vec<String> = (0..30)
            .filter(|i| i % 3 == k)
            .map(|i| format!("m{i}"))
            .collect();
        assert_eq!(got, expected);
    }
    host.close_and_wait(5 * SECS);
    drop(host);
    // Finished messages are gone from the store: nothing is resumed again.
    let host = Host::new(&durable_opts(&emu, &store));
    assert_eq!(wa_client_pending(host.client), 0);
    drop(host);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unusable_stores_fail_at_creation() {
    let emu = Emulator::start();
    let dir = temp_dir("bad");
    let try_new = |path: &std::path::Path| {
        let opts = durable_opts(&emu, path);
        let mut client = std::ptr::null_mut();
        let r = wa_client_new(opts.0, std::ptr::null(), &mut client);
        if r == wa_result::WA_OK {
            wa_client_free(client);
        }
        (r, last_error())
    };
    let (r, text) = try_new(&dir.join("missing/outbox.db"));
    assert_eq!(r, wa_result::WA_ERR_STORAGE);
    assert!(text.contains("does not exist"), "{text}");
    let junk = dir.join("junk.db");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    let (r, text) = try_new(&junk);
    assert_eq!(r, wa_result::WA_ERR_STORAGE);
    assert!(text.contains("not a store"), "{text}");
    // Another application's SQLite database, given by mistake: refused and left as it was.
    let foreign = dir.join("app.db");
    {
        let db = rusqlite::Connection::open(&foreign).unwrap();
        db.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);")
            .unwrap();
    }
    let (r, text) = try_new(&foreign);
    assert_eq!(r, wa_result::WA_ERR_STORAGE);
    assert!(
        text.contains("another application's SQLite database"),
        "{text}"
    );
    {
        let db = rusqlite::Connection::open(&foreign).unwrap();
        let tables: Vec<String> = db
            .prepare("SELECT name FROM sqlite_master")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(tables, ["users"]);
        let journal: String = db
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(journal, "delete");
    }
    // A store written before stores carried their application id is still taken (and marked).
    let earlier = dir.join("earlier.db");
    {
        let db = rusqlite::Connection::open(&earlier).unwrap();
        db.execute_batch(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, channel TEXT NOT NULL,
                 recipient TEXT NOT NULL, body BLOB NOT NULL, callback_info TEXT);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    assert_eq!(try_new(&earlier).0, wa_result::WA_OK, "{}", last_error());
    {
        let db = rusqlite::Connection::open(&earlier).unwrap();
        let id: i64 = db
            .query_row("PRAGMA application_id", [], |row| row.get(0))
            .unwrap();
        assert_ne!(id, 0);
    }
    // One client per store.
    let store = dir.join("outbox.db");
    let first = Host::new(&durable_opts(&emu, &store));
    let (r, text) = try_new(&store);
    assert_eq!(r, wa_result::WA_ERR_STORAGE);
    assert!(text.contains("in use"), "{text}");
    drop(first);
    let (r, _) = try_new(&store);
    assert_eq!(
        r,
        wa_result::WA_OK,
        "usable again once the first client is gone"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_webhook_dedupe_window_survives_a_restart() {
    let emu = Emulator::start();
    let dir = temp_dir("dedupe");
    let store = dir.join("outbox.db");
    let text = |id: &str| {
        meta_json(&inbound_message(
            serde_json::json!({"from":"16505551234","id":id,"type":"text","text":{"body":id}}),
        ))
    };
    let deliver = |host: &Host, id: &str| {
        let body = text(id);
        assert_eq!(
            host.webhook("POST", "/webhook", Some(&sign(APP_SECRET, &body)), &body)
                .status,
            200
        );
    };
    let messages = |host: &Host| -> Vec<String> {
        host.drain_inbound(std::time::Duration::from_millis(100))
            .into_iter()
            .filter(|i| i.kind == "message")
            .map(|i| i.args[4].clone().unwrap())
            .collect()
    };
    {
        let host = Host::new(&durable_opts(&emu, &store));
        host.set_token(TOKEN);
        deliver(&host, "wamid.BEFORE");
        assert_eq!(messages(&host), vec!["wamid.BEFORE"]);
    }
    // Meta redelivers after the restart: recognised; a new message still comes through.
    let host = Host::new(&durable_opts(&emu, &store));
    host.set_token(TOKEN);
    deliver(&host, "wamid.BEFORE");
    deliver(&host, "wamid.AFTER");
    assert_eq!(messages(&host), vec!["wamid.AFTER"]);
    drop(host);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A send that loses the race with close is refused (WA_ERR_CLOSED): it must not stay in the
/// store to be sent by the next client. Senders race a close many times; after each close,
/// whose results were all dispatched (which forgets their rows), the store holds nothing.
#[test]
fn sends_refused_by_a_finished_close_leave_nothing_in_the_store() {
    let emu = Emulator::start();
    let dir = temp_dir("close-race");
    for round in 0..20 {
        let store = dir.join(format!("outbox-{round}.db"));
        let mut host = Host::new(&durable_opts(&emu, &store));
        let client = host.client as usize;
        let senders: Vec<_> = (0..3)
            .map(|t| {
                std::thread::spawn(move || {
                    let (json, kind, channel) =
                        (cstr(r#"{"body":"x"}"#), cstr("text"), cstr(PHONE_ID));
                    let to = cstr(&format!("+1555000{t:04}"));
                    // Until refused: the last call is the one that meets the close.
                    loop {
                        let r = wa_client_send_message(
                            client as *mut wa_client,
                            json.as_ptr(),
                            to.as_ptr(),
                            kind.as_ptr(),
                            channel.as_ptr(),
                            std::ptr::null(),
                            std::ptr::null(),
                            std::ptr::null_mut(),
                        );
                        if r != wa_result::WA_OK {
                            assert_eq!(r, wa_result::WA_ERR_CLOSED);
                            return;
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(2));
        host.close_and_wait(10 * SECS);
        for sender in senders {
            sender.join().unwrap();
        }
        host.free();
        let reopened = Host::new(&durable_opts(&emu, &store));
        assert_eq!(
            wa_client_pending(reopened.client),
            0,
            "round {round}: a refused send was kept in the store"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
