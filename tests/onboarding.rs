//! Onboarding through the C API against the emulator's Embedded Signup routes: the full flow,
//! failure at each stage, expired and reused codes, a wrong app secret, a callback URI that does
//! not answer Meta's verification, a wrong PIN, resuming, and closing mid-run.

mod common;

use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use whatsapp_connector::ffi::onboarding::*;
use whatsapp_connector::ffi::options::*;
use whatsapp_connector::ffi::result::whatsapp_error_t::*;
use whatsapp_connector::ffi::wa_result;

const APP_ID: &str = "1234567890";
const EMULATOR_SECRET: &str = "test-app-secret";
const PIN: &str = "581063";
const VERIFY: &str = "onboarding-verify-token";

#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    ctx: usize,
    src: String,
    status: u32,
    token: Option<String>,
    error: Option<String>,
}

#[derive(Default, Debug)]
struct OnboardingSeen {
    outcomes: Vec<Outcome>,
    order: Vec<&'static str>,
    destroyed: usize,
}

fn seen(user_data: *mut c_void) -> &'static Mutex<OnboardingSeen> {
    // SAFETY: user_data is a leaked Mutex<OnboardingSeen> (tests are short-lived).
    unsafe { &*(user_data as *const Mutex<OnboardingSeen>) }
}

fn text(p: *const c_char) -> Option<String> {
    // SAFETY: NUL-terminated strings from the library, valid during the callback.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

unsafe extern "C" fn on_result(
    user_data: *mut c_void,
    ctx: *mut c_void,
    src: *const c_char,
    status: u32,
    token: *const c_char,
    error: *const c_char,
) {
    let mut s = seen(user_data).lock().unwrap();
    s.order.push("result");
    s.outcomes.push(Outcome {
        ctx: ctx as usize,
        src: text(src).unwrap_or_default(),
        status,
        token: text(token),
        error: text(error),
    });
}

unsafe extern "C" fn on_close(user_data: *mut c_void) {
    seen(user_data).lock().unwrap().order.push("close");
}

unsafe extern "C" fn on_destroy(user_data: *mut c_void) {
    let mut s = seen(user_data).lock().unwrap();
    s.order.push("destroy");
    s.destroyed += 1;
}

struct Onboarder {
    host: Host,
    onboarding: *mut wa_onboarding,
    seen: &'static Mutex<OnboardingSeen>,
    emu: Emulator,
}

impl Onboarder {
    fn new() -> Self {
        let emu = Emulator::start();
        let opts = Opts::for_emulator(&emu);
        // Everything logged, so that the secret checks cover hyper's and reqwest's lines too.
        assert_eq!(
            wa_options_set_log_level(opts.0, wa_log_level::WA_LOG_TRACE as u32),
            wa_result::WA_OK
        );
        assert_eq!(
            wa_options_set_app_id(opts.0, cstr(APP_ID).as_ptr()),
            wa_result::WA_OK
        );
        assert_eq!(
            wa_options_set_webhook_listen(opts.0, cstr("127.0.0.1:0").as_ptr()),
            wa_result::WA_OK
        );
        let host = Host::new(&opts);
        set_config(&host, "", EMULATOR_SECRET);
        let seen: &'static Mutex<OnboardingSeen> = Box::leak(Box::default());
        let callbacks = wa_onboarding_callbacks {
            user_data: seen as *const _ as *mut c_void,
            close_complete: Some(on_close),
            onboard_result: Some(on_result),
            destroy: Some(on_destroy),
        };
        let mut onboarding = std::ptr::null_mut();
        assert_eq!(
            wa_onboarding_new(host.client, &callbacks, &mut onboarding),
            wa_result::WA_OK
        );
        Onboarder {
            host,
            onboarding,
            seen,
            emu,
        }
    }

    fn callback_uri(&self) -> String {
        format!("http://127.0.0.1:{}/webhook", self.host.webhook_port())
    }

    /// Simulates the browser half of Embedded Signup: a fresh code for a WABA and number.
    fn code(&self, extra: Value) -> (String, String, String) {
        let mut body = json!({});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let v = self.emu.post_json("/_emulator/oauth/codes", body);
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        (s("code"), s("waba_id"), s("phone_number_id"))
    }

    #[allow(clippy::too_many_arguments)]
    fn onboard(
        &self,
        ctx: usize,
        code: Option<&str>,
        waba: &str,
        uri: &str,
        phone: &str,
        pin: &str,
        start: wa_onboarding_status,
    ) -> wa_result {
        let src = format!("src-{ctx}");
        self.onboard_nullable(
            ctx,
            [Some(&src), code, Some(VERIFY), Some(waba), Some(uri)],
            phone,
            pin,
            start,
        )
    }

    /// `wa_onboarding_onboard` with src, code, webhook token, WABA and callback URI given as
    /// they are (`None` = NULL); the version is always NULL.
    fn onboard_nullable(
        &self,
        ctx: usize,
        texts: [Option<&str>; 5],
        phone: &str,
        pin: &str,
        start: wa_onboarding_status,
    ) -> wa_result {
        let texts = texts.map(|text| text.map(cstr));
        let [src, code, verify, waba, uri] = texts
            .each_ref()
            .map(|t| t.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()));
        wa_onboarding_onboard(
            self.onboarding,
            common::ctx(ctx),
            src,
            std::ptr::null(),
            code,
            verify,
            waba,
            uri,
            cstr(phone).as_ptr(),
            cstr(pin).as_ptr(),
            start as u32,
        )
    }

    /// A full run from the code, with the client's listener as the callback URI.
    fn full(&self, ctx: usize, code: &str, waba: &str, phone: &str) -> wa_result {
        self.onboard(
            ctx,
            Some(code),
            waba,
            &self.callback_uri(),
            phone,
            PIN,
            WA_ONBOARDING_FETCH_TOKEN,
        )
    }

    /// Dispatches the client until `n` onboarding results arrived.
    fn outcomes(&self, n: usize) -> Vec<Outcome> {
        let deadline = Instant::now() + 15 * SECS;
        loop {
            let outcomes = self.seen.lock().unwrap().outcomes.clone();
            if outcomes.len() >= n {
                return outcomes;
            }
            assert!(
                Instant::now() < deadline,
                "onboarding results missing: {outcomes:?}"
            );
            let _ = whatsapp_connector::ffi::client::wa_client_wait(
                self.host.client,
                50,
                std::ptr::null_mut(),
            );
        }
    }

    fn state(&self) -> Value {
        direct_http()
            .get(format!("{}/_emulator/onboarding", self.emu.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

fn set_config(host: &Host, token: &str, secret: &str) {
    assert_eq!(
        whatsapp_connector::ffi::client::wa_client_set_config(
            host.client,
            cstr(token).as_ptr(),
            cstr(secret).as_ptr()
        ),
        wa_result::WA_OK
    );
}

use wa_onboarding_status::*;

#[test]
fn full_onboarding_then_sending_with_the_new_token() {
    let o = Onboarder::new();
    // The client's own number is the one onboarded: the business token reaches only the
    // numbers of its WABA, as on Graph.
    let (code, waba, phone) = o.code(json!({"phone_number_id": PHONE_ID}));
    assert_eq!(o.full(1, &code, &waba, &phone), wa_result::WA_OK);
    let r = o.outcomes(1).remove(0);
    assert_eq!(
        (r.ctx, r.src.as_str(), r.status, r.error.as_deref()),
        (1, "src-1", WA_ONBOARDING_FINISHED as u32, None),
        "{r:?}"
    );
    let token = r.token.clone().expect("token");
    assert!(token.starts_with("EAA"), "{token}");
    // Meta's verification GET reached the client's listener with our verify token and passed.
    let state = o.state();
    assert!(
        state.to_string().contains(&o.callback_uri()),
        "override stored: {state}"
    );
    // The token is now the client's: a send goes out with it.
    assert_eq!(
        o.host.text("after onboarding", "+4915112345678", 9),
        wa_result::WA_OK
    );
    let sent = o.host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(sent.error, WHATSAPP_ERR_OK, "{sent:?}");
    let send = o.emu.sends().pop().unwrap();
    assert_eq!(send["headers"]["authorization"], format!("Bearer {token}"));
    let calls: Vec<String> = o
        .emu
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        calls.contains(&"GET /v26.0/oauth/access_token".to_string()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&format!("POST /v26.0/{waba}/subscribed_apps")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&format!("POST /v26.0/{phone}/register")),
        "{calls:?}"
    );
    let register = o
        .emu
        .requests()
        .into_iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("/register"))
        .unwrap();
    assert_eq!(
        register["body"],
        json!({"messaging_product":"whatsapp","pin":PIN})
    );
    // Neither the app secret (sent as client_secret) nor the new token reaches a log line.
    let logs = o.host.seen().logs.clone();
    assert!(!logs.is_empty());
    for (_, line) in &logs {
        assert!(
            !line.contains(EMULATOR_SECRET) && !line.contains(&token),
            "secret in log: {line}"
        );
    }
}

#[test]
fn each_stage_reports_its_failure() {
    // FETCH_TOKEN: an unknown code; no token.
    let o = Onboarder::new();
    let (_, waba, phone) = o.code(json!({}));
    assert_eq!(
        o.onboard(
            1,
            Some("not-a-code"),
            &waba,
            &o.callback_uri(),
            &phone,
            PIN,
            WA_ONBOARDING_FETCH_TOKEN
        ),
        wa_result::WA_OK
    );
    let r = o.outcomes(1).remove(0);
    assert_eq!(
        (r.status, r.token.as_deref()),
        (WA_ONBOARDING_FETCH_TOKEN as u32, None),
        "{r:?}"
    );
    assert!(r.error.unwrap().starts_with("token exchange"));

    // REGISTER_WEBHOOKS: the callback URI does not answer the verification; the token is given.
    let o = Onboarder::new();
    let (code, waba, phone) = o.code(json!({}));
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_uri = format!("http://{}/webhook", dead.local_addr().unwrap());
    drop(dead);
    assert_eq!(
        o.onboard(
            2,
            Some(&code),
            &waba,
            &dead_uri,
            &phone,
            PIN,
            WA_ONBOARDING_FETCH_TOKEN
        ),
        wa_result::WA_OK
    );
    let r = o.outcomes(1).remove(0);
    assert_eq!(r.status, WA_ONBOARDING_REGISTER_WEBHOOKS as u32, "{r:?}");
    assert!(r.token.as_deref().is_some_and(|t| t.starts_with("EAA")));
    assert!(r.error.as_deref().unwrap().contains("2200"), "{r:?}");

    // A listener that answers with the wrong verify token fails the same way.
    let o = Onboarder::new();
    let (code, waba, phone) = o.code(json!({}));
    assert_eq!(
        whatsapp_connector::ffi::client::wa_client_set_webhook_token(
            o.host.client,
            cstr("something-else").as_ptr()
        ),
        wa_result::WA_OK
    );
    let other = Host::new(&{
        let opts = Opts::for_emulator(&o.emu);
        assert_eq!(
            wa_options_set_webhook_listen(opts.0, cstr("127.0.0.1:0").as_ptr()),
            wa_result::WA_OK
        );
        opts
    });
    let other_uri = format!("http://127.0.0.1:{}/webhook", other.webhook_port());
    assert_eq!(
        o.onboard(
            3,
            Some(&code),
            &waba,
            &other_uri,
            &phone,
            PIN,
            WA_ONBOARDING_FETCH_TOKEN
        ),
        wa_result::WA_OK
    );
    assert_eq!(
        o.outcomes(1)[0].status,
        WA_ONBOARDING_REGISTER_WEBHOOKS as u32
    );

    // REGISTER_PHONE: the number already has another PIN.
    let o = Onboarder::new();
    let (code, waba, phone) = o.code(json!({}));
    assert_eq!(o.full(4, &code, &waba, &phone), wa_result::WA_OK);
    assert_eq!(o.outcomes(1)[0].status, WA_ONBOARDING_FINISHED as u32);
    assert_eq!(
        o.onboard(
            5,
            None,
            &waba,
            "",
            &phone,
            "111111",
            WA_ONBOARDING_REGISTER_PHONE
        ),
        wa_result::WA_OK
    );
    let r = o.outcomes(2).remove(1);
    assert_eq!(r.status, WA_ONBOARDING_REGISTER_PHONE as u32, "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("133005"), "{r:?}");
    assert!(r.token.is_some());
}

#[test]
fn expired_and_reused_codes_and_a_wrong_secret() {
    let o = Onboarder::new();
    let (code, waba, phone) = o.code(json!({"ttl_ms": 50}));
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(o.full(1, &code, &waba, &phone), wa_result::WA_OK);
    let r = o.outcomes(1).remove(0);
    assert_eq!(r.status, WA_ONBOARDING_FETCH_TOKEN as u32);
    assert!(r.error.as_deref().unwrap().contains("expired"), "{r:?}");
    assert_eq!(
        o.emu
            .requests()
            .iter()
            .filter(|q| q["path"].as_str().unwrap().contains("oauth"))
            .count(),
        1,
        "no retry"
    );

    let (code, waba, phone) = o.code(json!({}));
    assert_eq!(o.full(2, &code, &waba, &phone), wa_result::WA_OK);
    assert_eq!(o.outcomes(2)[1].status, WA_ONBOARDING_FINISHED as u32);
    assert_eq!(o.full(3, &code, &waba, &phone), wa_result::WA_OK);
    let r = o.outcomes(3).remove(2);
    assert_eq!(r.status, WA_ONBOARDING_FETCH_TOKEN as u32);
    assert!(r.error.as_deref().unwrap().contains("used"), "{r:?}");

    let o = Onboarder::new();
    set_config(&o.host, "", "wrong-secret");
    let (code, waba, phone) = o.code(json!({}));
    assert_eq!(o.full(4, &code, &waba, &phone), wa_result::WA_OK);
    let r = o.outcomes(1).remove(0);
    assert_eq!(r.status, WA_ONBOARDING_FETCH_TOKEN as u32, "{r:?}");
    assert!(
        !r.error.as_deref().unwrap().contains("wrong-secret"),
        "the secret never appears in texts"
    );
}

#[test]
fn resuming_at_register_phone_with_a_known_token() {
    let o = Onboarder::new();
    let (code, waba, phone) = o.code(json!({}));
    // First run stops at REGISTER_PHONE: the emulator refuses registrations for now.
    o.emu.post_json(
        "/_emulator/onboarding/config",
        json!({"register_fail_code": 133004}),
    );
    assert_eq!(o.full(1, &code, &waba, &phone), wa_result::WA_OK);
    let first = o.outcomes(1).remove(0);
    assert_eq!(
        first.status, WA_ONBOARDING_REGISTER_PHONE as u32,
        "{first:?}"
    );
    let token = first.token.expect("token from stage 1");
    o.emu.post_json(
        "/_emulator/onboarding/config",
        json!({"register_fail_code": null}),
    );
    // A later run, perhaps after a restart: the host restores the token and resumes.
    set_config(&o.host, &token, EMULATOR_SECRET);
    let oauth_calls = |o: &Onboarder| {
        o.emu
            .requests()
            .iter()
            .filter(|q| q["path"].as_str().unwrap().contains("oauth"))
            .count()
    };
    let before = oauth_calls(&o);
    // Resuming at REGISTER_PHONE: the webhook arguments are unused and may be NULL.
    assert_eq!(
        o.onboard_nullable(
            2,
            [Some("src-2"), None, None, None, None],
            &phone,
            PIN,
            WA_ONBOARDING_REGISTER_PHONE
        ),
        wa_result::WA_OK,
        "{}",
        last_error()
    );
    let second = o.outcomes(2).remove(1);
    assert_eq!(
        (second.status, second.token.as_deref()),
        (WA_ONBOARDING_FINISHED as u32, Some(token.as_str())),
        "{second:?}"
    );
    assert_eq!(oauth_calls(&o), before, "no code exchange when resuming");
}

/// A run resumed at REGISTER_WEBHOOKS without a callback URI or verify token subscribes
/// without override and leaves the client's verify token as it was.
#[test]
fn resuming_without_a_verify_token_keeps_the_clients() {
    let o = Onboarder::new();
    let (code, waba, phone) = o.code(json!({}));
    assert_eq!(o.full(1, &code, &waba, &phone), wa_result::WA_OK);
    assert_eq!(o.outcomes(1)[0].status, WA_ONBOARDING_FINISHED as u32);
    let verify = |token: &str| {
        o.host
            .webhook(
                "GET",
                &format!("/webhook?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=42"),
                None,
                b"",
            )
            .status
    };
    assert_eq!(verify(VERIFY), 200);
    assert_eq!(
        o.onboard_nullable(
            2,
            [None, None, None, Some(&waba), None],
            &phone,
            PIN,
            WA_ONBOARDING_REGISTER_WEBHOOKS
        ),
        wa_result::WA_OK,
        "{}",
        last_error()
    );
    let second = o.outcomes(2).remove(1);
    assert_eq!(second.status, WA_ONBOARDING_FINISHED as u32, "{second:?}");
    assert_eq!(verify(VERIFY), 200, "the client's verify token was kept");
    assert_eq!(verify(""), 403);
}

#[test]
fn closing_mid_run_reports_the_stage_reached_then_completes() {
    let o = Onboarder::new();
    let (code, waba, phone) = o.code(json!({}));
    o.emu.fault(
        json!({"match": {"path_contains": "subscribed_apps"}, "action": {"delay_ms": 3000}}),
    );
    assert_eq!(o.full(1, &code, &waba, &phone), wa_result::WA_OK);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(wa_onboarding_close(o.onboarding), wa_result::WA_OK);
    let r = o.outcomes(1).remove(0);
    assert_eq!(r.status, WA_ONBOARDING_REGISTER_WEBHOOKS as u32, "{r:?}");
    assert!(r.token.is_some(), "stage 1 had passed");
    let deadline = Instant::now() + 5 * SECS;
    while !o.seen.lock().unwrap().order.contains(&"close") {
        assert!(Instant::now() < deadline);
        let _ = whatsapp_connector::ffi::client::wa_client_wait(
            o.host.client,
            50,
            std::ptr::null_mut(),
        );
    }
    assert_eq!(o.seen.lock().unwrap().order, vec!["result", "close"]);
    wa_onboarding_free(o.onboarding);
    assert_eq!(
        o.seen.lock().unwrap().order,
        vec!["result", "close", "destroy"]
    );
}

#[test]
fn bad_arguments_are_refused_and_free_is_safe() {
    let o = Onboarder::new();
    let (code, waba, phone) = o.code(json!({}));
    let uri = o.callback_uri();
    use wa_result::*;
    assert_eq!(
        o.onboard(
            1,
            Some(&code),
            &waba,
            &uri,
            &phone,
            "12345",
            WA_ONBOARDING_FETCH_TOKEN
        ),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        o.onboard(1, None, &waba, &uri, &phone, PIN, WA_ONBOARDING_FETCH_TOKEN),
        WA_ERR_INVALID_ARGUMENT,
        "a full run needs a code"
    );
    assert_eq!(
        o.onboard(
            1,
            Some(&code),
            "../waba",
            &uri,
            &phone,
            PIN,
            WA_ONBOARDING_FETCH_TOKEN
        ),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        o.onboard(
            1,
            Some(&code),
            &waba,
            "ftp://x",
            &phone,
            PIN,
            WA_ONBOARDING_FETCH_TOKEN
        ),
        WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        o.onboard(
            1,
            Some(&code),
            &waba,
            &uri,
            &phone,
            PIN,
            WA_ONBOARDING_FINISHED
        ),
        WA_ERR_INVALID_ARGUMENT
    );
    let none = std::ptr::null();
    assert_eq!(
        wa_onboarding_onboard(
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            none,
            none,
            none,
            none,
            none,
            none,
            none,
            none,
            1
        ),
        WA_ERR_NULL_ARGUMENT
    );
    assert_eq!(
        wa_onboarding_close(std::ptr::null_mut()),
        WA_ERR_NULL_ARGUMENT
    );
    wa_onboarding_free(std::ptr::null_mut());
    let mut out = std::ptr::null_mut();
    assert_eq!(
        wa_onboarding_new(std::ptr::null_mut(), std::ptr::null(), &mut out),
        WA_ERR_NULL_ARGUMENT
    );
    // Dispatch for a while: a result or outcome of a refused call would show up.
    o.host.drain_inbound(Duration::from_millis(100));
    assert!(o.host.seen().results.is_empty());
    assert!(
        o.seen.lock().unwrap().outcomes.is_empty(),
        "refused calls have no result"
    );
    // Freeing the client also ends its onboarding objects (destroy once).
    let mut host = o.host;
    host.free();
    assert_eq!(o.seen.lock().unwrap().destroyed, 1);
    wa_onboarding_free(o.onboarding);
    assert_eq!(o.seen.lock().unwrap().destroyed, 1);
}

/// After its close-complete an onboarding takes no run: nothing may follow that callback. A
/// second close is a no-op (one close-complete: a host may free its state in it).
#[test]
fn a_closed_onboarding_refuses_new_runs() {
    let o = Onboarder::new();
    let (code, waba, phone) = o.code(json!({}));
    assert_eq!(wa_onboarding_close(o.onboarding), wa_result::WA_OK);
    assert_eq!(wa_onboarding_close(o.onboarding), wa_result::WA_OK);
    assert_eq!(o.full(1, &code, &waba, &phone), wa_result::WA_ERR_CLOSED);
    let deadline = Instant::now() + 2 * SECS;
    while Instant::now() < deadline {
        let _ = whatsapp_connector::ffi::client::wa_client_wait(
            o.host.client,
            50,
            std::ptr::null_mut(),
        );
    }
    assert_eq!(o.seen.lock().unwrap().order, vec!["close"]);
    wa_onboarding_free(o.onboarding);
}

/// Runs started while the client closes: each accepted one reports exactly once, before the
/// client's close-complete (the last callback); the others are refused with WA_ERR_CLOSED.
#[test]
fn runs_racing_the_client_close_each_report_before_it_completes() {
    for round in 0..10 {
        let o = Onboarder::new();
        let onboarding = o.onboarding as usize;
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let starters: Vec<_> = (0..2)
            .map(|t| {
                let accepted = accepted.clone();
                std::thread::spawn(move || {
                    let s = |v: &str| cstr(v);
                    let (src, code, verify) = (s("race"), s("no-such-code"), s(VERIFY));
                    let (waba, uri, phone, pin) =
                        (s("524126980791429"), s(""), s("106540352242922"), s(PIN));
                    loop {
                        let r = wa_onboarding_onboard(
                            onboarding as *mut wa_onboarding,
                            common::ctx(t),
                            src.as_ptr(),
                            std::ptr::null(),
                            code.as_ptr(),
                            verify.as_ptr(),
                            waba.as_ptr(),
                            uri.as_ptr(),
                            phone.as_ptr(),
                            pin.as_ptr(),
                            WA_ONBOARDING_FETCH_TOKEN as u32,
                        );
                        if r != wa_result::WA_OK {
                            assert_eq!(r, wa_result::WA_ERR_CLOSED);
                            return;
                        }
                        accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        o.host.close_and_wait(10 * SECS);
        for starter in starters {
            starter.join().unwrap();
        }
        // Read before asserting: a poisoned lock would abort in the destroy callback.
        let reported = o.seen.lock().unwrap().outcomes.len();
        wa_onboarding_free(o.onboarding);
        assert_eq!(
            reported,
            accepted.load(std::sync::atomic::Ordering::Relaxed),
            "round {round}: every accepted run reports once, before close-complete"
        );
    }
}

/// An onboarding closed while its client closes: WA_OK means its close_complete comes (before
/// the client's), WA_ERR_CLOSED means none does; never WA_OK and silence.
#[test]
fn an_onboarding_close_racing_the_clients_is_answered_truthfully() {
    for round in 0..40 {
        let o = Onboarder::new();
        let onboarding = o.onboarding as usize;
        let client = o.host.client as usize;
        let go = std::sync::Arc::new(std::sync::Barrier::new(2));
        let closer = {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                wa_onboarding_close(onboarding as *mut wa_onboarding)
            })
        };
        go.wait();
        if round % 2 == 1 {
            std::thread::sleep(Duration::from_micros(round as u64 * 5));
        }
        assert_eq!(
            whatsapp_connector::ffi::client::wa_client_close(
                client as *mut whatsapp_connector::ffi::client::wa_client
            ),
            wa_result::WA_OK
        );
        let answer = closer.join().unwrap();
        o.host.close_and_wait(10 * SECS);
        let closes = o
            .seen
            .lock()
            .unwrap()
            .order
            .iter()
            .filter(|e| **e == "close")
            .count();
        wa_onboarding_free(o.onboarding);
        match answer {
            wa_result::WA_OK => assert_eq!(closes, 1, "round {round}: WA_OK, then its callback"),
            wa_result::WA_ERR_CLOSED => assert_eq!(closes, 0, "round {round}"),
            other => panic!("round {round}: {other:?}"),
        }
    }
}
