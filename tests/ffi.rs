//! The C surface itself: bad input at every export, dispatch modes, re-entrant calls from
//! callbacks, and the lifetime contract (close-complete last, destroy exactly once).

mod common;

use std::ffi::{c_char, c_void, CStr};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use whatsapp_connector::ffi::client::*;
use whatsapp_connector::ffi::options::*;
use whatsapp_connector::ffi::result::whatsapp_error_t::*;
use whatsapp_connector::ffi::result::{wa_result_text, wa_whatsapp_error_name};
use whatsapp_connector::ffi::{wa_last_error_message, wa_library_version, wa_result};

const TO: &str = "+4915112345678";

#[test]
fn null_arguments_are_reported_not_dereferenced() {
    let s = cstr("x");
    let mut client = null_mut();
    let mut opts = null_mut();
    let mut fd = 0;
    assert_eq!(wa_options_new(null_mut()), wa_result::WA_ERR_NULL_ARGUMENT);
    assert_eq!(
        wa_options_set_graph_base_url(null_mut(), s.as_ptr()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_api_version(null_mut(), s.as_ptr()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_app_id(null_mut(), s.as_ptr()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_webhook_listen(null_mut(), s.as_ptr()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_request_timeout_ms(null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_retry(null_mut(), 1, 1, 1, 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_outbox_capacity(null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_channel_rate(null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_pair_rate_backoff_ms(null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_token_hold_ms(null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_drain_timeout_ms(null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_max_in_flight(null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_max_media_in_flight(null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_worker_threads(null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_dispatch_batching_us(null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_dispatch_mode(null_mut(), 0),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_log_level(null_mut(), 0),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_webhook_idle_timeout_ms(null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_webhook_max_connections(null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_webhook_max_backlog(null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    wa_options_free(null_mut());

    assert_eq!(wa_options_new(&mut opts), wa_result::WA_OK);
    assert_eq!(
        wa_options_set_graph_base_url(opts, null()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_options_set_api_version(opts, null()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert!(
        last_error().contains("version"),
        "detail names the argument: {}",
        last_error()
    );
    assert_eq!(
        wa_client_new(opts, null(), null_mut()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    wa_options_free(opts);

    assert_eq!(
        wa_client_set_config(null_mut(), s.as_ptr(), s.as_ptr()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_client_set_webhook_token(null_mut(), s.as_ptr()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_client_send_message(
            null_mut(),
            s.as_ptr(),
            s.as_ptr(),
            s.as_ptr(),
            s.as_ptr(),
            null(),
            null(),
            null_mut()
        ),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(wa_client_close(null_mut()), wa_result::WA_ERR_NULL_ARGUMENT);
    assert_eq!(
        wa_client_event_fd(null(), &mut fd),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_client_dispatch(null_mut(), null_mut()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_client_wait(null_mut(), 0, null_mut()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(wa_client_pending(null()), 0);
    // SAFETY: the returned pointers are static strings.
    assert_eq!(
        unsafe { CStr::from_ptr(wa_client_version(null())) }.to_bytes(),
        b""
    );
    wa_client_free(null_mut());

    // A client with no callbacks at all works.
    assert_eq!(wa_client_new(null(), null(), &mut client), wa_result::WA_OK);
    assert_eq!(
        wa_client_event_fd(client, null_mut()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_client_set_config(client, null(), null()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_client_set_webhook_token(client, null()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    wa_client_free(client);
}

#[test]
fn bad_message_input_is_refused_without_request_or_callback() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    let text = r#"{"body":"hi"}"#;
    let invalid_utf8 = [0xffu8, 0xfe, 0];
    let p = |s: &std::ffi::CString| s.as_ptr();
    let (json, to, kind, channel) = (cstr(text), cstr(TO), cstr("text"), cstr(PHONE_ID));
    let bad: *const c_char = invalid_utf8.as_ptr().cast();
    let send = |j: *const c_char,
                t: *const c_char,
                k: *const c_char,
                c: *const c_char,
                info: *const c_char,
                re: *const c_char| {
        wa_client_send_message(host.client, j, t, k, c, info, re, null_mut())
    };
    use wa_result::*;
    assert_eq!(
        send(null(), p(&to), p(&kind), p(&channel), null(), null()),
        WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        send(p(&json), null(), p(&kind), p(&channel), null(), null()),
        WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        send(p(&json), p(&to), null(), p(&channel), null(), null()),
        WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        send(p(&json), p(&to), p(&kind), null(), null(), null()),
        WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        send(bad, p(&to), p(&kind), p(&channel), null(), null()),
        WA_ERR_INVALID_UTF8
    );
    assert_eq!(
        send(p(&json), bad, p(&kind), p(&channel), null(), null()),
        WA_ERR_INVALID_UTF8
    );
    assert_eq!(
        send(p(&json), p(&to), bad, p(&channel), null(), null()),
        WA_ERR_INVALID_UTF8
    );
    assert_eq!(
        send(p(&json), p(&to), p(&kind), bad, null(), null()),
        WA_ERR_INVALID_UTF8
    );
    assert_eq!(
        send(p(&json), p(&to), p(&kind), p(&channel), bad, null()),
        WA_ERR_INVALID_UTF8
    );
    assert_eq!(
        send(p(&json), p(&to), p(&kind), p(&channel), null(), bad),
        WA_ERR_INVALID_UTF8
    );
    assert_eq!(host.send(r#"{"body":"#, TO, "text", 1), WA_ERR_INVALID_JSON);
    assert!(last_error().contains("JSON"), "{}", last_error());
    assert_eq!(host.send(text, TO, "fax", 1), WA_ERR_UNKNOWN_TYPE);
    assert!(last_error().contains("fax"));
    assert_eq!(
        host.send(r#"{"caption":"no id"}"#, TO, "image", 1),
        WA_ERR_INVALID_ARGUMENT
    );
    assert!(last_error().contains("id"), "{}", last_error());
    assert_eq!(host.send(r#"{}"#, TO, "text", 1), WA_ERR_INVALID_ARGUMENT);
    assert_eq!(
        host.send(text, "not-a-number", "text", 1),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        host.send_full(text, TO, "text", "../../x", None, None, 1),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        host.send_full(text, TO, "text", "", None, None, 1),
        WA_ERR_INVALID_ARGUMENT
    );
    let oversize = serde_json::json!({ "body": "y".repeat(70 * 1024) }).to_string();
    assert_eq!(host.send(&oversize, TO, "text", 1), WA_ERR_TOO_LARGE);
    let long_text = serde_json::json!({ "body": "y".repeat(4097) }).to_string();
    assert_eq!(host.send(&long_text, TO, "text", 1), WA_ERR_TOO_LARGE);
    assert_eq!(wa_client_pending(host.client), 0);
    assert_eq!(wa_client_wait(host.client, 200, null_mut()), WA_OK);
    assert!(
        host.seen().results.is_empty(),
        "refused input produced a callback"
    );
    assert!(emu.sends().is_empty(), "refused input produced a request");
}

#[test]
fn option_setters_validate_their_values() {
    let mut o = null_mut();
    assert_eq!(wa_options_new(&mut o), wa_result::WA_OK);
    use wa_result::*;
    assert_eq!(
        wa_options_set_graph_base_url(o, cstr("ftp://x").as_ptr()),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        wa_options_set_graph_base_url(o, cstr("http://h/p").as_ptr()),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        wa_options_set_api_version(o, cstr("26").as_ptr()),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        wa_options_set_request_timeout_ms(o, 0),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(wa_options_set_retry(o, 0, 1, 1, 1), WA_ERR_INVALID_ARGUMENT);
    assert_eq!(
        wa_options_set_retry(o, 3, 1, 10, 1),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        wa_options_set_outbox_capacity(o, 0),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(wa_options_set_max_in_flight(o, 0), WA_ERR_INVALID_ARGUMENT);
    assert_eq!(
        wa_options_set_max_media_in_flight(o, 0),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(wa_options_set_worker_threads(o, 0), WA_ERR_INVALID_ARGUMENT);
    assert_eq!(wa_options_set_dispatch_mode(o, 7), WA_ERR_INVALID_ARGUMENT);
    assert_eq!(
        wa_options_set_dedupe_capacity(o, 16_777_216),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(wa_options_set_dedupe_capacity(o, 16_777_215), WA_OK);
    assert_eq!(
        wa_options_set_dispatch_batching_us(o, 1_000_001),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(wa_options_set_dispatch_batching_us(o, 1_000_000), WA_OK);
    assert_eq!(wa_options_set_dispatch_batching_us(o, 0), WA_OK);
    assert_eq!(
        wa_options_set_webhook_idle_timeout_ms(o, 86_400_001),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(wa_options_set_webhook_idle_timeout_ms(o, 86_400_000), WA_OK);
    assert_eq!(wa_options_set_webhook_idle_timeout_ms(o, 0), WA_OK);
    assert_eq!(
        wa_options_set_webhook_max_connections(o, 1_000_001),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(wa_options_set_webhook_max_connections(o, 1_000_000), WA_OK);
    assert_eq!(wa_options_set_webhook_max_connections(o, 0), WA_OK);
    assert_eq!(
        wa_options_set_webhook_max_backlog(o, 10_000_001),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(wa_options_set_webhook_max_backlog(o, 10_000_000), WA_OK);
    assert_eq!(wa_options_set_webhook_max_backlog(o, 0), WA_OK);
    assert_eq!(wa_options_set_log_level(o, 99), WA_ERR_INVALID_ARGUMENT);
    let bad = [0xc3u8, 0x28, 0];
    assert_eq!(
        wa_options_set_app_id(o, bad.as_ptr().cast()),
        WA_ERR_INVALID_UTF8
    );
    wa_options_free(o);
}

#[test]
fn static_texts_and_error_details() {
    // SAFETY: static NUL-terminated strings.
    let text = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
    assert_eq!(text(wa_result_text(0)), "ok");
    assert_eq!(
        text(wa_result_text(wa_result::WA_ERR_QUEUE_FULL as u32)),
        "the outbox is full"
    );
    assert_eq!(text(wa_result_text(12345)), "unknown result code");
    for code in 0..=wa_result::WA_ERR_STORAGE as u32 {
        assert_ne!(text(wa_result_text(code)), "unknown result code", "{code}");
    }
    assert_eq!(text(wa_whatsapp_error_name(3)), "WHATSAPP_ERR_NOT_FOUND");
    assert_eq!(text(wa_whatsapp_error_name(7)), "WHATSAPP_ERR_CLOSING");
    assert_eq!(text(wa_library_version()), env!("CARGO_PKG_VERSION"));
    assert_eq!(WHATSAPP_ERR_OK as u32, 0);
    assert_eq!(WHATSAPP_ERR_CLOSING as u32, 7);

    assert_eq!(wa_options_new(null_mut()), wa_result::WA_ERR_NULL_ARGUMENT);
    let mut small = [0 as c_char; 4];
    let mut len = 0usize;
    assert_eq!(
        wa_last_error_message(small.as_mut_ptr(), small.len(), &mut len),
        wa_result::WA_ERR_BUFFER_TOO_SMALL
    );
    assert_eq!(len, "out is NULL".len());
    assert_eq!(text(small.as_ptr()), "out");
    // A size query: the length only, nothing written.
    let mut queried = 0usize;
    assert_eq!(
        wa_last_error_message(null_mut(), 0, &mut queried),
        wa_result::WA_ERR_BUFFER_TOO_SMALL
    );
    assert_eq!(queried, "out is NULL".len());
    assert_eq!(
        wa_last_error_message(null_mut(), 0, null_mut()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    // The detail stays until the next failed call: a successful call leaves it.
    let read_detail = || {
        let mut buf = [0 as c_char; 128];
        let mut len = 0usize;
        assert_eq!(
            wa_last_error_message(buf.as_mut_ptr(), buf.len(), &mut len),
            wa_result::WA_OK
        );
        text(buf.as_ptr())
    };
    let mut options = null_mut();
    assert_eq!(wa_options_new(&mut options), wa_result::WA_OK);
    assert_eq!(read_detail(), "out is NULL");
    assert_eq!(
        wa_options_set_request_timeout_ms(options, 0),
        wa_result::WA_ERR_INVALID_ARGUMENT
    );
    let replaced = read_detail();
    assert!(replaced.contains("timeout"), "{replaced}");
    assert_eq!(
        wa_options_set_request_timeout_ms(options, 100),
        wa_result::WA_OK
    );
    assert_eq!(read_detail(), replaced);
    wa_options_free(options);
}

#[test]
fn poll_mode_runs_callbacks_on_the_dispatching_thread_and_signals_the_fd() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    let mut fd = -1;
    assert_eq!(wa_client_event_fd(host.client, &mut fd), wa_result::WA_OK);
    assert!(fd >= 0);
    assert_eq!(host.text("hi", TO, 1), wa_result::WA_OK);
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
    assert_eq!(n, 1, "the event fd became readable");
    assert!(
        host.seen().results.is_empty(),
        "nothing runs before dispatch"
    );
    let mut count = 0;
    // Log events may precede the result: dispatch until it is there.
    while host.seen().results.is_empty() {
        assert_eq!(
            wa_client_dispatch(host.client, &mut count),
            wa_result::WA_OK
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(host.seen().results[0].thread, std::thread::current().id());
    // Drained: no longer readable.
    assert_eq!(
        wa_client_dispatch(host.client, &mut count),
        wa_result::WA_OK
    );
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
}

#[test]
fn thread_mode_runs_callbacks_on_one_library_thread() {
    thread_mode_runs_callbacks(None);
}

#[test]
fn thread_mode_without_batching_runs_callbacks_on_one_library_thread() {
    thread_mode_runs_callbacks(Some(0));
}

fn thread_mode_runs_callbacks(batching_us: Option<u32>) {
    let emu = Emulator::start();
    let opts = Opts::for_emulator(&emu);
    assert_eq!(
        wa_options_set_dispatch_mode(opts.0, wa_dispatch_mode::WA_DISPATCH_THREAD as u32),
        wa_result::WA_OK
    );
    if let Some(us) = batching_us {
        assert_eq!(
            wa_options_set_dispatch_batching_us(opts.0, us),
            wa_result::WA_OK
        );
    }
    let mut host = Host::new(&opts);
    host.set_token(TOKEN);
    let mut fd = 0;
    assert_eq!(
        wa_client_event_fd(host.client, &mut fd),
        wa_result::WA_ERR_INVALID_STATE
    );
    assert_eq!(
        wa_client_dispatch(host.client, null_mut()),
        wa_result::WA_ERR_INVALID_STATE
    );
    for i in 0..10 {
        assert_eq!(
            host.text("t", &format!("+1555000{i:04}"), i),
            wa_result::WA_OK
        );
    }
    let results = host.wait_results_threaded(10, 10 * SECS);
    let first = results[0].thread;
    assert_ne!(first, std::thread::current().id());
    assert!(results
        .iter()
        .all(|r| r.thread == first && r.error == WHATSAPP_ERR_OK));
    assert_eq!(wa_client_close(host.client), wa_result::WA_OK);
    let seen = host.state.seen.lock().unwrap();
    let seen = host
        .state
        .changed
        .wait_timeout_while(seen, 5 * SECS, |s| s.close_complete == 0)
        .unwrap()
        .0;
    assert_eq!(seen.close_complete, 1);
    drop(seen);
    host.free();
    assert_eq!(host.seen().destroyed, 1);
    assert_eq!(host.seen().order.last(), Some(&"destroy"));
}

/// Re-entrant calls from inside a result callback: send, dispatch (refused), close.
fn reentrant_calls(mode: wa_dispatch_mode) {
    let emu = Emulator::start();
    let opts = Opts::for_emulator(&emu);
    assert_eq!(
        wa_options_set_dispatch_mode(opts.0, mode as u32),
        wa_result::WA_OK
    );
    let host = Arc::new(Host::new(&opts));
    host.set_token(TOKEN);
    let calls = Arc::new(AtomicUsize::new(0));
    let (h, c) = (host.clone(), calls.clone());
    *host.state.on_result.lock().unwrap() = Some(Box::new(move |r| {
        match c.fetch_add(1, Ordering::SeqCst) {
            0 => {
                assert_eq!(r.ctx, 1);
                assert_eq!(h.text("sent from a callback", TO, 2), wa_result::WA_OK);
                // Dispatching the same client from inside its callback is refused, not deadlocked.
                assert_eq!(
                    wa_client_dispatch(h.client, null_mut()),
                    wa_result::WA_ERR_INVALID_STATE
                );
            }
            1 => {
                assert_eq!(r.ctx, 2);
                assert_eq!(wa_client_close(h.client), wa_result::WA_OK);
                assert_eq!(h.text("after close", TO, 3), wa_result::WA_ERR_CLOSED);
            }
            _ => {}
        }
    }));
    assert_eq!(host.text("first", TO, 1), wa_result::WA_OK);
    let deadline = std::time::Instant::now() + 10 * SECS;
    while host.seen().close_complete == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "deadlock or lost callback: {:?}",
            host.seen()
        );
        if mode == wa_dispatch_mode::WA_DISPATCH_POLL {
            assert_eq!(
                wa_client_wait(host.client, 50, null_mut()),
                wa_result::WA_OK
            );
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let seen = host.seen();
    assert_eq!(seen.results.len(), 2);
    assert!(
        seen.results.iter().all(|r| r.error == WHATSAPP_ERR_OK),
        "{:?}",
        seen.results
    );
    assert_eq!(emu.sends().len(), 2);
}

#[test]
fn api_calls_from_inside_callbacks_work_in_poll_mode() {
    reentrant_calls(wa_dispatch_mode::WA_DISPATCH_POLL);
}

#[test]
fn api_calls_from_inside_callbacks_work_in_thread_mode() {
    reentrant_calls(wa_dispatch_mode::WA_DISPATCH_THREAD);
}

/// The C++ idiom: delete the client inside close-complete.
fn free_inside_close_complete(mode: wa_dispatch_mode) {
    let emu = Emulator::start();
    let opts = Opts::for_emulator(&emu);
    assert_eq!(
        wa_options_set_dispatch_mode(opts.0, mode as u32),
        wa_result::WA_OK
    );
    let host = Host::new(&opts);
    let client = host.client as usize;
    *host.state.on_close.lock().unwrap() =
        Some(Box::new(move || wa_client_free(client as *mut wa_client)));
    assert_eq!(host.text("pending", TO, 1), wa_result::WA_OK);
    assert_eq!(wa_client_close(host.client), wa_result::WA_OK);
    let state = host.state.clone();
    let client_ptr = host.client;
    std::mem::forget(host); // freed inside close-complete
    let deadline = std::time::Instant::now() + 10 * SECS;
    while state.seen.lock().unwrap().destroyed == 0 {
        assert!(std::time::Instant::now() < deadline, "destroy not called");
        if mode == wa_dispatch_mode::WA_DISPATCH_POLL {
            assert_eq!(wa_client_wait(client_ptr, 50, null_mut()), wa_result::WA_OK);
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let seen = state.seen.lock().unwrap();
    let without_logs: Vec<_> = seen.order.iter().copied().filter(|e| *e != "log").collect();
    assert_eq!(without_logs, vec!["result", "close", "destroy"]);
    assert_eq!(seen.results[0].error, WHATSAPP_ERR_CLOSING);
    assert_eq!((seen.close_complete, seen.destroyed), (1, 1));
    assert!(!seen.after_end);
    assert_eq!(seen.order.last(), Some(&"destroy"));
}

#[test]
fn free_from_inside_close_complete_in_poll_mode() {
    free_inside_close_complete(wa_dispatch_mode::WA_DISPATCH_POLL);
}

#[test]
fn free_from_inside_close_complete_in_thread_mode() {
    free_inside_close_complete(wa_dispatch_mode::WA_DISPATCH_THREAD);
}

#[test]
fn free_without_close_calls_only_destroy() {
    let emu = Emulator::start();
    let mut host = Host::new(&Opts::for_emulator(&emu));
    assert_eq!(host.text("never sent", TO, 1), wa_result::WA_OK);
    host.free();
    let seen = host.seen();
    assert_eq!(seen.destroyed, 1);
    assert_eq!(seen.close_complete, 0);
    assert!(seen.results.is_empty());
}

static DESTROYS: AtomicUsize = AtomicUsize::new(0);
unsafe extern "C" fn count_destroy(_: *mut c_void) {
    DESTROYS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn destroy_is_not_called_when_creation_fails() {
    let mut o = null_mut();
    assert_eq!(wa_options_new(&mut o), wa_result::WA_OK);
    let callbacks = wa_client_callbacks {
        user_data: null_mut(),
        close_complete: None,
        send_result: None,
        recv_message: None,
        recv_media: None,
        raw_change: None,
        log: None,
        destroy: Some(count_destroy),
    };
    // Creation fails on a bad environment-independent setting: none can be set badly through
    // the setters, so use a NULL out pointer.
    assert_eq!(
        wa_client_new(o, &callbacks, null_mut()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(DESTROYS.load(Ordering::SeqCst), 0);
    let mut client = null_mut();
    assert_eq!(wa_client_new(o, &callbacks, &mut client), wa_result::WA_OK);
    wa_client_free(client);
    assert_eq!(DESTROYS.load(Ordering::SeqCst), 1);
    wa_options_free(o);
}

/// What a posted task records: the order it ran in and its thread.
static POSTED: std::sync::Mutex<Vec<(usize, std::thread::ThreadId)>> =
    std::sync::Mutex::new(Vec::new());

unsafe extern "C" fn posted_task(arg: *mut c_void) {
    POSTED
        .lock()
        .unwrap()
        .push((arg as usize, std::thread::current().id()));
}

fn posted_with(base: usize) -> Vec<(usize, std::thread::ThreadId)> {
    POSTED
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| n / 100 == base / 100)
        .cloned()
        .collect()
}

/// Host tasks run where the callbacks run, in order, never inside wa_client_post; refused once
/// close_complete is queued.
#[test]
fn posted_tasks_run_among_the_callbacks() {
    let emu = Emulator::start();
    // Poll mode: inside wa_client_dispatch, on the dispatching thread.
    let host = Host::with_token(&emu);
    assert_eq!(
        wa_client_post(host.client, None, null_mut()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_client_post(null_mut(), Some(posted_task), null_mut()),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    for n in [101usize, 102, 103] {
        assert_eq!(
            wa_client_post(host.client, Some(posted_task), n as *mut c_void),
            wa_result::WA_OK
        );
    }
    assert!(posted_with(100).is_empty(), "not inside the call");
    while posted_with(100).len() < 3 {
        assert_eq!(
            wa_client_wait(host.client, 100, null_mut()),
            wa_result::WA_OK
        );
    }
    let me = std::thread::current().id();
    assert_eq!(
        posted_with(100),
        vec![(101, me), (102, me), (103, me)],
        "in order, on the dispatching thread"
    );
    // After close: still accepted until close_complete is queued, which runs last.
    host.close_and_wait(5 * SECS);
    assert_eq!(
        wa_client_post(host.client, Some(posted_task), 104 as *mut c_void),
        wa_result::WA_ERR_CLOSED
    );
    assert_eq!(
        wa_client_dispatch(host.client, null_mut()),
        wa_result::WA_OK
    );
    assert_eq!(posted_with(100).len(), 3, "a refused task never runs");

    // Thread mode: on the library's dispatch thread.
    let opts = Opts::for_emulator(&emu);
    assert_eq!(
        wa_options_set_dispatch_mode(opts.0, wa_dispatch_mode::WA_DISPATCH_THREAD as u32),
        wa_result::WA_OK
    );
    let threaded = Host::new(&opts);
    for n in [201usize, 202] {
        assert_eq!(
            wa_client_post(threaded.client, Some(posted_task), n as *mut c_void),
            wa_result::WA_OK
        );
    }
    let deadline = std::time::Instant::now() + 5 * SECS;
    while posted_with(200).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "tasks did not run");
        std::thread::sleep(Duration::from_millis(5));
    }
    let ran = posted_with(200);
    assert_eq!(ran.iter().map(|r| r.0).collect::<Vec<_>>(), [201, 202]);
    assert!(ran.iter().all(|r| r.1 != me && r.1 == ran[0].1));
}

/// `wa_options_set_dispatch_max_events`: one dispatch runs at most that many events, the rest
/// wait in order with the fd still readable.
#[test]
fn a_dispatch_runs_at_most_its_bound_and_keeps_the_fd_readable() {
    let emu = Emulator::start();
    let opts = Opts::for_emulator(&emu);
    assert_eq!(
        wa_options_set_dispatch_max_events(opts.0, 3),
        wa_result::WA_OK
    );
    assert_eq!(
        wa_options_set_log_level(opts.0, wa_log_level::WA_LOG_OFF as u32),
        wa_result::WA_OK
    );
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    let messages: Vec<_> = (0..10)
        .map(|i| serde_json::json!({"from":"16505551234","id":format!("wamid.BOUND{i}"),"type":"text","text":{"body":format!("m{i}")}}))
        .collect();
    let mut body = inbound_message(serde_json::json!(null));
    body["entry"][0]["changes"][0]["value"]["messages"] = serde_json::Value::Array(messages);
    let body = meta_json(&body);
    let reply = host.webhook("POST", "/webhook", Some(&sign(APP_SECRET, &body)), &body);
    assert_eq!(reply.status, 200, "{reply:?}");
    let mut fd = -1;
    assert_eq!(wa_client_event_fd(host.client, &mut fd), wa_result::WA_OK);
    let readable = || {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 1000) == 1 }
    };
    let mut counts = Vec::new();
    while host.seen().inbound.len() < 11 {
        assert!(readable(), "events pending: the fd is readable");
        let mut count = 0;
        assert_eq!(
            wa_client_dispatch(host.client, &mut count),
            wa_result::WA_OK
        );
        counts.push(count);
        assert!(counts.len() < 10, "{counts:?}");
    }
    // The raw change and its ten messages, three at a time.
    assert_eq!(counts, vec![3, 3, 3, 2]);
    let texts: Vec<_> = host
        .seen()
        .inbound
        .iter()
        .filter(|i| i.kind == "message")
        .map(|i| i.args[0].clone().unwrap())
        .collect();
    assert_eq!(texts, (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
}
