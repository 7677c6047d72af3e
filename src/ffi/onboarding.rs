//! `wa_onboarding`: the seed's `IWhatsAppOnboarding` as a C object, tied to a client whose
//! queue carries its events (so its callbacks run where the client's run: poll or thread mode).

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::client::{is_dispatching_here, rejection, shared_of, wa_client, Shared};
use super::{borrow_opt_str, borrow_str, fail, guard, wa_result};
use crate::onboarding::{OnboardRequest, Stage};

/// The stage an onboarding reached (the seed's `onboardingStatus`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wa_onboarding_status {
    WA_ONBOARDING_UNSTARTED = 0,
    /// Exchanging the Embedded Signup code for a business token.
    WA_ONBOARDING_FETCH_TOKEN = 1,
    /// Subscribing the app to the WABA with the webhook override (Meta verifies the callback
    /// URI against the client's listener).
    WA_ONBOARDING_REGISTER_WEBHOOKS = 2,
    /// Registering the phone number with its two-step PIN.
    WA_ONBOARDING_REGISTER_PHONE = 3,
    WA_ONBOARDING_FINISHED = 4,
}

/// The host's onboarding callbacks; `user_data` first, NULL = not interested. They run on the
/// client's dispatching thread (poll mode: inside `wa_client_dispatch`; thread mode: the
/// client's thread).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wa_onboarding_callbacks {
    pub user_data: *mut c_void,
    /// The onboarding finished closing; its last callback.
    pub close_complete: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    /// One per `wa_onboarding_onboard`: `callback_info` is its `src`; `status` is
    /// `WA_ONBOARDING_FINISHED` on success, else the stage that failed (or was running when
    /// the onboarding was closed); `token` is the business token whenever the code exchange
    /// succeeded (or the token a resumed run used), else NULL; `error` says what failed (NULL on
    /// success).
    pub onboard_result: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            request_ctx: *mut c_void,
            callback_info: *const c_char,
            status: u32,
            token: *const c_char,
            error: *const c_char,
        ),
    >,
    /// Exactly once, after the last callback: when the onboarding (or its client) is freed.
    pub destroy: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// The registration of an onboarding object with its client.
pub(crate) struct OnboardingEntry {
    pub(crate) callbacks: OnboardingCallbacks,
    destroyed: AtomicBool,
}

/// The callback table behind a `Send + Sync` wrapper.
pub(crate) struct OnboardingCallbacks(pub(crate) wa_onboarding_callbacks);
// SAFETY: as for the client's table: only read, and called only on the client's dispatching
// thread, never concurrently.
unsafe impl Send for OnboardingCallbacks {}
// SAFETY: as above.
unsafe impl Sync for OnboardingCallbacks {}

impl OnboardingEntry {
    /// No callback may run once destroy has.
    pub(crate) fn is_finished(&self) -> bool {
        self.destroyed.load(Ordering::Acquire)
    }

    /// Calls `destroy` exactly once.
    pub(crate) fn destroy(&self) {
        if !self.destroyed.swap(true, Ordering::AcqRel) {
            if let Some(destroy) = self.callbacks.0.destroy {
                // SAFETY: host callback per the table contract; no callback follows it.
                unsafe { destroy(self.callbacks.0.user_data) };
            }
        }
    }
}

/// An onboarding object. Create with `wa_onboarding_new`, free with `wa_onboarding_free`
/// (after its close-complete, or any time: freeing drops runs still going without a result).
pub struct wa_onboarding {
    client: Arc<Shared>,
    id: u64,
}

fn onboarding_of<'a>(onboarding: *const wa_onboarding) -> Result<&'a wa_onboarding, wa_result> {
    if onboarding.is_null() {
        return Err(fail(wa_result::WA_ERR_NULL_ARGUMENT, "onboarding is NULL"));
    }
    // SAFETY: non-NULL pointer from wa_onboarding_new, not freed concurrently (header contract).
    Ok(unsafe { &*onboarding })
}

/// Creates an onboarding object for `client`: its runs use the client's Graph settings, app id
/// (`wa_options_set_app_id` / `WA_APP_ID`) and app secret (`wa_client_set_config`), set the new
/// token and the webhook verify token on the client, and rely on the client's webhook listener
/// to answer Meta's verification of the callback URI. `callbacks` is copied (NULL = none).
#[no_mangle]
pub extern "C" fn wa_onboarding_new(
    client: *mut wa_client,
    callbacks: *const wa_onboarding_callbacks,
    out: *mut *mut wa_onboarding,
) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        if out.is_null() {
            return Err(fail(wa_result::WA_ERR_NULL_ARGUMENT, "out is NULL"));
        }
        let callbacks = if callbacks.is_null() {
            wa_onboarding_callbacks {
                user_data: std::ptr::null_mut(),
                close_complete: None,
                onboard_result: None,
                destroy: None,
            }
        } else {
            // SAFETY: non-NULL table readable for the call (header contract); copied.
            unsafe { *callbacks }
        };
        let id = shared.next_onboarding.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(OnboardingEntry {
            callbacks: OnboardingCallbacks(callbacks),
            destroyed: AtomicBool::new(false),
        });
        shared
            .onboardings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, entry);
        let handle = Box::into_raw(Box::new(wa_onboarding { client: shared, id }));
        // SAFETY: `out` is non-NULL and writable (header contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// The seed's `Onboard(context, src, version, code, webhookToken, wabaID, callbackUri, phoneID,
/// phonePin)`, with where to start: `start_status` is `WA_ONBOARDING_FETCH_TOKEN` for a full
/// run (`code` required), or `WA_ONBOARDING_REGISTER_WEBHOOKS` / `WA_ONBOARDING_REGISTER_PHONE`
/// to resume a run that failed there, with the token the client already has (`code` may then be
/// NULL). `version` may be NULL or "" (the client's). `callback_uri` may be NULL or ""
/// (subscribe without override; `webhook_token` is needed with one). `webhook_token`, `waba_id`
/// and `callback_uri` may be NULL (= "") when starting at REGISTER_PHONE, which does not use
/// them. Stages: FETCH_TOKEN (`GET /oauth/access_token`; the token is then set on the client),
/// REGISTER_WEBHOOKS (the client's webhook token is set to `webhook_token` unless that is
/// empty, then `POST /{waba}/subscribed_apps`), REGISTER_PHONE (`POST /{phone}/register` with
/// the PIN).
/// Exactly one `onboard_result` follows an accepted call, before the onboarding's and the
/// client's `close_complete`; bad arguments are refused at once, and `WA_ERR_CLOSED` once the
/// onboarding or its client was closed.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn wa_onboarding_onboard(
    onboarding: *mut wa_onboarding,
    request_ctx: *mut c_void,
    src: *const c_char,
    version: *const c_char,
    code: *const c_char,
    webhook_token: *const c_char,
    waba_id: *const c_char,
    callback_uri: *const c_char,
    phone_id: *const c_char,
    phone_pin: *const c_char,
    start_status: u32,
) -> wa_result {
    guard(|| {
        let handle = onboarding_of(onboarding)?;
        // SAFETY (all strings): NUL-terminated strings valid for the call (header contract).
        let request = unsafe {
            OnboardRequest {
                version: borrow_opt_str(version, "version")?
                    .unwrap_or("")
                    .to_string(),
                code: borrow_opt_str(code, "code")?.map(str::to_string),
                // NULL = "": unused when resuming at REGISTER_PHONE, as the C++ layer allows.
                webhook_token: borrow_opt_str(webhook_token, "webhook_token")?
                    .unwrap_or("")
                    .to_string(),
                waba_id: borrow_opt_str(waba_id, "waba_id")?
                    .unwrap_or("")
                    .to_string(),
                callback_uri: borrow_opt_str(callback_uri, "callback_uri")?
                    .unwrap_or("")
                    .to_string(),
                phone_id: borrow_str(phone_id, "phone_id")?.to_string(),
                pin: borrow_str(phone_pin, "phone_pin")?.to_string(),
                start: Stage::from_u32(start_status).ok_or_else(|| {
                    fail(wa_result::WA_ERR_INVALID_ARGUMENT, "unknown start status")
                })?,
            }
        };
        // SAFETY: as above; NULL = no callback info.
        let src = unsafe { borrow_opt_str(src, "src") }?
            .unwrap_or("")
            .to_string();
        handle
            .client
            .core
            .onboard(handle.id, request_ctx as usize, src, request)
            .map_err(rejection)
    })
}

/// Closes the onboarding: runs still going end with their `onboard_result` (the stage reached),
/// then `close_complete`. Calling it again is a no-op (`WA_OK`, no second `close_complete`).
/// `WA_ERR_CLOSED` (and no callbacks) once the client is closed.
#[no_mangle]
pub extern "C" fn wa_onboarding_close(onboarding: *mut wa_onboarding) -> wa_result {
    guard(|| {
        let handle = onboarding_of(onboarding)?;
        if handle.client.core.is_closed() {
            return Err(fail(wa_result::WA_ERR_CLOSED, "the client is closed"));
        }
        // The client may close between the check above and this call: then no close_complete
        // can follow, and the host is told so.
        if !handle.client.core.close_onboarding(handle.id, true) {
            return Err(fail(wa_result::WA_ERR_CLOSED, "the client is closed"));
        }
        Ok(())
    })
}

/// Frees the onboarding and calls its `destroy` (after its current callback, when called from
/// inside one). Runs still going are dropped without a result. NULL is ignored.
#[no_mangle]
pub extern "C" fn wa_onboarding_free(onboarding: *mut wa_onboarding) {
    if onboarding.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: from wa_onboarding_new, freed once (header contract).
        let handle = unsafe { Box::from_raw(onboarding) };
        let client = &handle.client;
        client.core.forget_onboarding(handle.id);
        let entry = client
            .onboardings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&handle.id);
        let Some(entry) = entry else { return };
        if is_dispatching_here(client) {
            client
                .onboardings_to_destroy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(entry);
        } else {
            // Waits for a callback running on another thread to return first.
            let _serial = client.dispatching.lock().unwrap_or_else(|p| p.into_inner());
            entry.destroy();
        }
    }));
}
