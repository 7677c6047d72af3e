//! `wa_client`: the seed's `IWhatsAppClient` as a C object.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::onboarding::OnboardingEntry;
use super::options::{wa_log_level, wa_options};
use super::result::whatsapp_error_t;
use super::{
    borrow_opt_str, borrow_str, fail, guard, guard_value, wa_result, with_c_strings, write_out,
};
use crate::client::{Client, SendRejected, StartError};
use crate::config::{DispatchMode, Options};
use crate::events::{Event, EventQueue, EventSink, HostTask};
use crate::message::{InvalidMessage, MessageInput};

/// A client. Create with `wa_client_new`, end with `wa_client_close`, wait for close-complete,
/// then `wa_client_free`. All functions taking a `wa_client*` may be called from any thread,
/// concurrently, except `wa_client_free` (once, when no other call on it is running).
pub struct wa_client {
    shared: Arc<Shared>,
}

/// The host's callbacks. Every callback receives `user_data` first; a NULL function pointer means
/// "not interested". Strings passed to callbacks are valid only during the call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wa_client_callbacks {
    pub user_data: *mut c_void,
    /// The client finished closing. Always the last callback; the client may be freed from
    /// inside it.
    pub close_complete: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    /// The final result of one accepted message (exactly one per message). `request_ctx` is
    /// the pointer given to `wa_client_send_message`; `callback_info` is the caller's text
    /// (NULL if none was given); `content` is the message id ("wamid...") on success and the
    /// error text otherwise.
    pub send_result: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            request_ctx: *mut c_void,
            error: whatsapp_error_t,
            callback_info: *const c_char,
            content: *const c_char,
        ),
    >,
    /// An inbound message or status (the seed's `WhatsAppClientRecvMessage`). `type` is the
    /// message kind ("text", "image", "reaction", "location", "contact", "interactive",
    /// "button", "status", or a type as Meta named it); `msg`, `id` and `refers_to_id` per the
    /// INBOUND MAPPING table at the top of this header. `refers_to_id` may be NULL.
    pub recv_message: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            msg: *const c_char,
            tel: *const c_char,
            channel: *const c_char,
            r#type: *const c_char,
            id: *const c_char,
            refers_to_id: *const c_char,
        ),
    >,
    /// An inbound image, audio, video, document or sticker (the seed's
    /// `WhatsAppClientRecvMedia`), delivered just before the `recv_message` of the same message.
    pub recv_media: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            sender: *const c_char,
            channel: *const c_char,
            wamid: *const c_char,
            media_id: *const c_char,
            mime_type: *const c_char,
        ),
    >,
    /// Every webhook change as received: `field` (e.g. "messages", "account_update") and its
    /// `value` object as compact JSON, for what the seed's callbacks cannot carry (edits,
    /// deletes, system messages, account and template updates). Before the change's mapped
    /// callbacks.
    pub raw_change: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            field: *const c_char,
            value_json: *const c_char,
        ),
    >,
    /// A log line of this client (never containing a token or secret).
    pub log: Option<
        unsafe extern "C" fn(user_data: *mut c_void, level: wa_log_level, text: *const c_char),
    >,
    /// Called exactly once, after the last callback, when the client is freed. Not called when
    /// `wa_client_new` fails.
    pub destroy: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// The callback table behind a `Send + Sync` wrapper.
struct Callbacks(wa_client_callbacks);
// SAFETY: the header requires user_data and the functions to be usable from the dispatching
// thread (the host's thread in poll mode, the client's thread in thread mode); the table is
// only read, and callbacks of one client never run concurrently.
unsafe impl Send for Callbacks {}
// SAFETY: as above; shared references only read the copied table.
unsafe impl Sync for Callbacks {}

pub(crate) struct Shared {
    pub(crate) core: Client,
    events: Arc<EventQueue>,
    callbacks: Callbacks,
    mode: DispatchMode,
    /// Poll mode: the most events per dispatch call (`usize::MAX`: no bound).
    dispatch_max_events: usize,
    version: CString,
    /// Serialises dispatch (poll mode, and the thread-mode dispatcher so that freeing an
    /// onboarding object waits for its running callback): callbacks never run concurrently.
    pub(crate) dispatching: Mutex<()>,
    dispatcher_thread: Mutex<Option<JoinHandle<()>>>,
    /// `wa_client_free` was called inside one of this client's callbacks: the dispatching frame
    /// tears down once the callback returns.
    free_requested: AtomicBool,
    torn_down: AtomicBool,
    /// Onboarding objects of this client (their events come through its queue).
    pub(crate) onboardings: Mutex<HashMap<u64, Arc<OnboardingEntry>>>,
    pub(crate) onboardings_to_destroy: Mutex<Vec<Arc<OnboardingEntry>>>,
    pub(crate) next_onboarding: AtomicU64,
}

thread_local! {
    /// Clients whose callbacks are running on this thread (detects re-entrant dispatch and
    /// free-from-callback).
    static DISPATCHING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn is_dispatching_here(shared: &Arc<Shared>) -> bool {
    let id = Arc::as_ptr(shared) as usize;
    DISPATCHING
        .try_with(|d| d.borrow().contains(&id))
        .unwrap_or(false)
}

/// The pointer for an optional string: NULL when it is absent.
fn present_or_null<T>(value: &Option<T>, pointer: *const c_char) -> *const c_char {
    if value.is_some() {
        pointer
    } else {
        std::ptr::null()
    }
}

struct DrainEnd<'a>(&'a EventQueue);

impl Drop for DrainEnd<'_> {
    fn drop(&mut self) {
        self.0.end_drain();
    }
}

struct DispatchMark(usize);

impl DispatchMark {
    fn new(shared: &Arc<Shared>) -> Self {
        let id = Arc::as_ptr(shared) as usize;
        let _ = DISPATCHING.try_with(|d| d.borrow_mut().push(id));
        DispatchMark(id)
    }
}

impl Drop for DispatchMark {
    fn drop(&mut self) {
        let _ = DISPATCHING.try_with(|d| {
            let mut d = d.borrow_mut();
            if let Some(pos) = d.iter().rposition(|x| *x == self.0) {
                d.remove(pos);
            }
        });
    }
}

impl Shared {
    /// Runs the callbacks for `events` on the calling thread; returns how many ran.
    fn invoke_all(self: &Arc<Self>, events: impl IntoIterator<Item = Event>) -> usize {
        let _mark = DispatchMark::new(self);
        let mut count = 0;
        let mut delivered = Vec::new();
        for event in events {
            if self.torn_down.load(Ordering::Acquire) || self.free_requested.load(Ordering::Acquire)
            {
                break;
            }
            if let Event::SendResult { stored, .. } = &event {
                // Before the callback: a host that sends again from inside it finds the room.
                self.core.result_delivered();
                delivered.extend(*stored);
            }
            self.invoke(event);
            count += 1;
        }
        // Onboarding objects freed by these callbacks: destroyed now that the callbacks returned.
        self.destroy_freed_onboardings();
        // Durable rows go once their results reached the host, not when they were queued.
        if !delivered.is_empty() {
            self.core.acknowledge(&delivered);
        }
        count
    }

    /// Onboarding objects freed from inside a callback are destroyed once it returned.
    fn destroy_freed_onboardings(&self) {
        let freed = std::mem::take(
            &mut *self
                .onboardings_to_destroy
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for entry in freed {
            entry.destroy();
        }
    }

    fn onboarding(&self, id: u64) -> Option<Arc<OnboardingEntry>> {
        self.onboardings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    fn invoke(&self, event: Event) {
        let cb = &self.callbacks.0;
        match event {
            Event::SendResult {
                request_ctx,
                error,
                callback_info,
                content,
                stored: _,
            } => {
                if let Some(f) = cb.send_result {
                    let info = callback_info.as_deref();
                    with_c_strings([info.unwrap_or(""), &content], |[info_ptr, content]| {
                        let info_ptr = present_or_null(&info, info_ptr);
                        // SAFETY: host callback per the table contract; strings live until it returns.
                        unsafe {
                            f(
                                cb.user_data,
                                request_ctx as *mut c_void,
                                error.into(),
                                info_ptr,
                                content,
                            )
                        };
                    });
                }
            }
            Event::RecvMessage(m) => {
                if let Some(f) = cb.recv_message {
                    let ([msg, tel, channel, kind, id], refers) = m.c_ptrs();
                    // SAFETY: host callback per the table contract; the pointers are C strings
                    // in `m`, which lives until it returns.
                    unsafe { f(cb.user_data, msg, tel, channel, kind, id, refers) };
                }
            }
            Event::RecvMedia(m) => {
                if let Some(f) = cb.recv_media {
                    let [sender, channel, wamid, media_id, mime] = m.c_ptrs();
                    // SAFETY: host callback per the table contract; the pointers are C strings
                    // in `m`, which lives until it returns.
                    unsafe { f(cb.user_data, sender, channel, wamid, media_id, mime) };
                }
            }
            Event::RawChange { field, value_json } => {
                if let Some(f) = cb.raw_change {
                    with_c_strings([&*field, &value_json], |[field, value]| {
                        // SAFETY: host callback per the table contract; strings live until it returns.
                        unsafe { f(cb.user_data, field, value) };
                    });
                }
            }
            Event::Log { level, text } => {
                if let Some(f) = cb.log {
                    with_c_strings([&*text], |[text]| {
                        // SAFETY: host callback per the table contract; the string lives until it returns.
                        unsafe { f(cb.user_data, level.into(), text) };
                    });
                }
            }
            Event::OnboardResult {
                onboarding,
                request_ctx,
                src,
                stage,
                token,
                error,
            } => {
                let Some(entry) = self.onboarding(onboarding) else {
                    return;
                };
                let cb = &entry.callbacks.0;
                if let (Some(f), false) = (cb.onboard_result, entry.is_finished()) {
                    let (token, error) = (token.as_deref(), error.as_deref());
                    with_c_strings(
                        [&*src, token.unwrap_or(""), error.unwrap_or("")],
                        |[src, token_ptr, error_ptr]| {
                            let token_ptr = present_or_null(&token, token_ptr);
                            let error_ptr = present_or_null(&error, error_ptr);
                            // SAFETY: host callback per the onboarding table contract; strings live until it returns.
                            unsafe {
                                f(
                                    cb.user_data,
                                    request_ctx as *mut c_void,
                                    src,
                                    stage,
                                    token_ptr,
                                    error_ptr,
                                )
                            };
                        },
                    );
                }
            }
            Event::OnboardingClosed { onboarding } => {
                let Some(entry) = self.onboarding(onboarding) else {
                    return;
                };
                let cb = &entry.callbacks.0;
                if let (Some(f), false) = (cb.close_complete, entry.is_finished()) {
                    // SAFETY: host callback per the onboarding table contract.
                    unsafe { f(cb.user_data) };
                }
            }
            Event::HostTask(task) => task.run(),
            Event::CloseComplete => {
                if let Some(f) = cb.close_complete {
                    // SAFETY: host callback per the table contract.
                    unsafe { f(cb.user_data) };
                }
            }
        }
    }

    /// Stops everything, joins the threads, then calls `destroy` (exactly once).
    fn teardown(self: &Arc<Self>) {
        if self.torn_down.swap(true, Ordering::AcqRel) {
            return;
        }
        self.core.shutdown();
        self.events.discard();
        self.events.stop();
        let thread = self
            .dispatcher_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
        // Onboarding objects end with their client (also those freed from a callback whose
        // batch ended in a panic).
        self.destroy_freed_onboardings();
        let onboardings: Vec<_> = self
            .onboardings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, e)| e)
            .collect();
        for entry in onboardings {
            entry.destroy();
        }
        if let Some(destroy) = self.callbacks.0.destroy {
            // SAFETY: host callback per the table contract; no callback follows it.
            unsafe { destroy(self.callbacks.0.user_data) };
        }
    }

    /// Poll mode: drains pending events on the calling thread.
    fn dispatch(self: &Arc<Self>) -> Result<usize, wa_result> {
        if is_dispatching_here(self) {
            return Err(fail(
                wa_result::WA_ERR_INVALID_STATE,
                "wa_client_dispatch called from inside one of the same client's callbacks",
            ));
        }
        let count = {
            let _serial = self.dispatching.lock().unwrap_or_else(|p| p.into_inner());
            if self.torn_down.load(Ordering::Acquire) {
                return Ok(0);
            }
            // Events that arrive while callbacks run are taken in the same call (a few rounds,
            // so a busy client cannot hold the host's loop), without a signal on the fd each.
            let mut events = self.events.begin_drain();
            // Ends the drain however this block is left: a panic in a callback must not leave
            // the queue believing a dispatch is running (the fd would never be signalled).
            let _drain = DrainEnd(&self.events);
            let mut count = 0;
            let mut budget = self.dispatch_max_events;
            for _ in 0..4 {
                if events.is_empty() || budget == 0 {
                    break;
                }
                // Beyond the host's bound, the rest waits for its next call.
                let later = (events.len() > budget).then(|| events.split_off(budget));
                budget -= events.len();
                count += self.invoke_all(events);
                if let Some(later) = later {
                    events = later;
                    break;
                }
                events = self.events.take_during_drain();
            }
            // Whatever is left goes back for the next call, with the fd readable.
            if !events.is_empty() {
                self.events.requeue_front(events);
            }
            count
        };
        if self.free_requested.load(Ordering::Acquire) {
            self.teardown();
        }
        Ok(count)
    }
}

/// Thread mode: the client's own thread runs the callbacks.
fn run_dispatcher(shared: Arc<Shared>, batching: Duration) {
    // After a batch, the next one gathers for up to `batching` (or until GATHER_COUNT events are
    // pending): under a steady stream each wake-up of this thread costs the producing thread a
    // futex call and both a context switch, so one per batch instead of one per event. A window
    // without events ends the stream, and the next event is delivered as soon as it arrives.
    let mut streaming = false;
    loop {
        let events = if streaming {
            shared.events.gather_batch(GATHER_COUNT, batching)
        } else {
            shared.events.wait_batch()
        };
        let Some(events) = events else {
            break;
        };
        streaming = !events.is_empty() && !batching.is_zero();
        if events.is_empty() {
            continue;
        }
        // Held while callbacks run, so that freeing an onboarding from another thread waits
        // for its callback to return.
        let serial = shared.dispatching.lock().unwrap_or_else(|p| p.into_inner());
        let _ =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.invoke_all(events)));
        drop(serial);
        if shared.free_requested.load(Ordering::Acquire) {
            shared.teardown();
            break;
        }
    }
}

/// Pending events that end a gathering pause early: enough to amortise the wake-up (on one CPU
/// the webhook bench costs the same with 16, 32, 64 or 256; the count only bounds the delay
/// at high rates).
const GATHER_COUNT: usize = 32;

/// Borrows the shared state behind a handle.
pub(crate) fn shared_of(client: *const wa_client) -> Result<Arc<Shared>, wa_result> {
    if client.is_null() {
        return Err(fail(wa_result::WA_ERR_NULL_ARGUMENT, "client is NULL"));
    }
    // SAFETY: non-NULL; the caller passes a live client from wa_client_new that is not being
    // freed concurrently (header contract). The Arc clone keeps the state alive for this call
    // even if a callback frees the handle.
    Ok(unsafe { (*client).shared.clone() })
}

/// Creates a client and starts its runtime thread. `options` may be NULL (defaults and
/// environment). `callbacks` is copied; it may be NULL (no callbacks). On success `*out` owns
/// the client (free with `wa_client_free`); on failure nothing is written and `destroy` is not
/// called.
#[no_mangle]
pub extern "C" fn wa_client_new(
    options: *const wa_options,
    callbacks: *const wa_client_callbacks,
    out: *mut *mut wa_client,
) -> wa_result {
    guard(|| {
        if out.is_null() {
            return Err(fail(wa_result::WA_ERR_NULL_ARGUMENT, "out is NULL"));
        }
        let explicit = if options.is_null() {
            Options::default()
        } else {
            // SAFETY: non-NULL live options object (header contract); only read.
            unsafe { (*options).inner.clone() }
        };
        let callbacks = if callbacks.is_null() {
            wa_client_callbacks {
                user_data: std::ptr::null_mut(),
                close_complete: None,
                send_result: None,
                recv_message: None,
                recv_media: None,
                raw_change: None,
                log: None,
                destroy: None,
            }
        } else {
            // SAFETY: non-NULL callback table readable for the call (header contract); copied.
            unsafe { *callbacks }
        };
        let mut config = explicit
            .resolve(|name| std::env::var(name).ok())
            .map_err(|e| fail(wa_result::WA_ERR_INVALID_ARGUMENT, e))?;
        // Raw changes cost a copy of each change: only produced for a host that wants them.
        config.raw_changes = callbacks.raw_change.is_some();
        let mode = config.dispatch_mode;
        let batching = config.dispatch_batching;
        let dispatch_max_events = match config.dispatch_max_events {
            0 => usize::MAX,
            n => n,
        };
        let version = CString::new(config.api_version.clone())
            .map_err(|_| fail(wa_result::WA_ERR_INVALID_ARGUMENT, "version contains NUL"))?;
        let events = Arc::new(EventQueue::new(mode == DispatchMode::Poll).map_err(|e| {
            fail(
                wa_result::WA_ERR_SYSTEM,
                format!("cannot create the event fd: {e}"),
            )
        })?);
        let core = Client::start(config, events.clone()).map_err(|e| match e {
            StartError::Storage(text) => fail(wa_result::WA_ERR_STORAGE, text),
            StartError::Other(text) => fail(wa_result::WA_ERR_SYSTEM, text),
        })?;
        let shared = Arc::new(Shared {
            core,
            events,
            callbacks: Callbacks(callbacks),
            mode,
            dispatch_max_events,
            version,
            dispatching: Mutex::new(()),
            dispatcher_thread: Mutex::new(None),
            free_requested: AtomicBool::new(false),
            torn_down: AtomicBool::new(false),
            onboardings: Mutex::new(HashMap::new()),
            onboardings_to_destroy: Mutex::new(Vec::new()),
            next_onboarding: AtomicU64::new(1),
        });
        if mode == DispatchMode::Thread {
            let for_thread = shared.clone();
            let thread = std::thread::Builder::new()
                .name("wa-dispatch".into())
                .spawn(move || run_dispatcher(for_thread, batching))
                .map_err(|e| {
                    shared.core.shutdown();
                    fail(
                        wa_result::WA_ERR_SYSTEM,
                        format!("cannot start the dispatch thread: {e}"),
                    )
                })?;
            *shared
                .dispatcher_thread
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(thread);
        }
        let handle = Box::into_raw(Box::new(wa_client { shared }));
        // SAFETY: `out` is non-NULL and writable (header contract).
        unsafe { write_out(out, handle) }
    })
}

/// Sets the access token (Bearer for Graph) and the app secret (verifies webhooks). Either may
/// be "" (no token: sends are held for the token hold time; no secret: webhook POSTs are
/// refused with 503). The token travels in an HTTP header: visible ASCII only (a trailing
/// newline read from a file is refused with `WA_ERR_INVALID_ARGUMENT`). Messages held for lack of a token go out once one is set. `app_secret`
/// NULL keeps the current app secret (to renew only the token).
#[no_mangle]
pub extern "C" fn wa_client_set_config(
    client: *mut wa_client,
    token: *const c_char,
    app_secret: *const c_char,
) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        // SAFETY: NUL-terminated strings valid for the call (header contract).
        let token = unsafe { borrow_str(token, "token") }?;
        // SAFETY: as above.
        let app_secret = unsafe { borrow_opt_str(app_secret, "app_secret") }?;
        shared
            .core
            .set_config(token, app_secret)
            .map_err(|e| fail(wa_result::WA_ERR_INVALID_ARGUMENT, e))
    })
}

/// Sets the verify token that Meta's webhook verification request must present.
#[no_mangle]
pub extern "C" fn wa_client_set_webhook_token(
    client: *mut wa_client,
    token: *const c_char,
) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        // SAFETY: NUL-terminated string valid for the call (header contract).
        let token = unsafe { borrow_str(token, "token") }?;
        shared.core.set_webhook_token(token);
        Ok(())
    })
}

/// The configured Graph API version, e.g. "v26.0" ("" when none is configured, or for NULL).
/// The string belongs to the client and stays valid until `wa_client_free`.
#[no_mangle]
pub extern "C" fn wa_client_version(client: *const wa_client) -> *const c_char {
    guard_value(c"".as_ptr(), || match shared_of(client) {
        // The CString lives in the shared state, which the handle keeps alive until free.
        Ok(shared) => shared.version.as_ptr(),
        Err(_) => c"".as_ptr(),
    })
}

/// Queues a message for `remote_num` (phone number with country code, or a business-scoped
/// user id) from `channel` (the sending phone number id). A leading `00` (the international
/// call prefix) is sent as `+`; a number without either is taken by Graph as local to the
/// business number's country.
///
/// `type` is a Cloud API type (text, image, audio, video, document, sticker, location,
/// contacts, interactive, template, reaction) or an alias: "contact" (one contact object or an
/// array, sent as contacts) or "media" (the object's "type" names the media kind). `message_json`
/// is the content object for the type, e.g. `{"body":"hi","preview_url":false}` for text (for
/// text a bare JSON string is also taken as the body). `callback_info` (may be NULL) comes back
/// with the result and, up to 512 bytes, as `biz_opaque_callback_data` in status webhooks.
/// `refers_to_id` (may be NULL) makes the message a reply to that message id. `request_ctx` is
/// returned with the result.
///
/// Returns WA_OK when the message was accepted: exactly one `send_result` callback follows.
/// Invalid input returns an error at once (`wa_last_error_message` says why); no request is
/// made and no callback follows. `WA_ERR_CLOSED` after `wa_client_close`; `WA_ERR_QUEUE_FULL`
/// when the outbox is full; `WA_ERR_STORAGE` when the durable outbox could not store it.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn wa_client_send_message(
    client: *mut wa_client,
    message_json: *const c_char,
    remote_num: *const c_char,
    r#type: *const c_char,
    channel: *const c_char,
    callback_info: *const c_char,
    refers_to_id: *const c_char,
    request_ctx: *mut c_void,
) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        // SAFETY (all five): NUL-terminated strings valid for the call (header contract).
        let input = unsafe {
            MessageInput {
                message_json: borrow_str(message_json, "message_json")?,
                remote_num: borrow_str(remote_num, "remote_num")?,
                message_type: borrow_str(r#type, "type")?,
                channel: borrow_str(channel, "channel")?,
                callback_info: borrow_opt_str(callback_info, "callback_info")?,
                refers_to_id: borrow_opt_str(refers_to_id, "refers_to_id")?,
            }
        };
        shared
            .core
            .send(&input, request_ctx as usize)
            .map_err(rejection)
    })
}

/// The result code for a refused send or media request.
pub(crate) fn rejection(rejected: SendRejected) -> wa_result {
    match rejected {
        SendRejected::Closed => fail(wa_result::WA_ERR_CLOSED, "the client is closed"),
        SendRejected::QueueFull => fail(wa_result::WA_ERR_QUEUE_FULL, "the outbox is full"),
        SendRejected::Storage(text) => fail(wa_result::WA_ERR_STORAGE, text),
        SendRejected::Invalid(invalid) => {
            let code = match &invalid {
                InvalidMessage::Json(_) => wa_result::WA_ERR_INVALID_JSON,
                InvalidMessage::UnknownType(_) => wa_result::WA_ERR_UNKNOWN_TYPE,
                InvalidMessage::TooLarge(_) => wa_result::WA_ERR_TOO_LARGE,
                InvalidMessage::Argument(_) => wa_result::WA_ERR_INVALID_ARGUMENT,
            };
            fail(code, invalid.to_string())
        }
    }
}

/// Starts closing: new sends return `WA_ERR_CLOSED`, requests on the wire get up to the drain
/// time to finish, every other accepted message gets a `WHATSAPP_ERR_CLOSING` result, then
/// `close_complete` is called as the last callback. Returns at once; calling it again is a
/// no-op returning WA_OK. May be called from inside a callback.
#[no_mangle]
pub extern "C" fn wa_client_close(client: *mut wa_client) -> wa_result {
    guard(|| {
        shared_of(client)?.core.close();
        Ok(())
    })
}

/// Frees the client: stops and joins every thread it started, then calls `destroy`. Call it
/// after `close_complete` (it may be called from inside `close_complete`). Called earlier, it
/// closes at once and discards the results not yet dispatched (no further callbacks except
/// `destroy`). Called from inside one of the client's callbacks it returns at once, and the
/// stopping and `destroy` follow when that callback returns (thread mode: on the dispatch
/// thread, which then ends; it is not joined, so a host that unloads the library or exits
/// right away should wait for `destroy`). NULL is ignored. Must not run concurrently with
/// another call on the same client.
#[no_mangle]
pub extern "C" fn wa_client_free(client: *mut wa_client) {
    if client.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the pointer came from wa_client_new and is freed once (header contract).
        let handle = unsafe { Box::from_raw(client) };
        let shared = handle.shared.clone();
        if is_dispatching_here(&shared) {
            // Inside one of its callbacks: the dispatching frame finishes the job after the
            // callback returns.
            shared.free_requested.store(true, Ordering::Release);
        } else {
            // The handle outlives the teardown: a callback still running on the dispatch thread
            // (thread mode: the host cannot know when close_complete returned) may call the
            // API with it until the thread is joined.
            shared.teardown();
        }
        drop(handle);
    }));
}

/// Poll mode: a file descriptor that is readable while events are pending. Register it with
/// the host's poll/epoll loop for reading and call `wa_client_dispatch` when it is readable. Do
/// not read, write or close it; it stays valid until `wa_client_free`.
/// `WA_ERR_INVALID_STATE` in thread mode.
#[no_mangle]
pub extern "C" fn wa_client_event_fd(client: *const wa_client, out_fd: *mut c_int) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        let fd = shared.events.wake_fd().ok_or_else(|| {
            fail(
                wa_result::WA_ERR_INVALID_STATE,
                "no event fd in thread dispatch mode",
            )
        })?;
        // SAFETY: writable output per the header contract (NULL is checked).
        unsafe { write_out(out_fd, fd) }
    })
}

/// Poll mode: runs the callbacks of every pending event on the calling thread and returns
/// without waiting. `out_count` (may be NULL) receives how many callbacks-worth of events ran.
/// Not allowed from inside a callback of the same client, nor in thread mode
/// (`WA_ERR_INVALID_STATE`).
#[no_mangle]
pub extern "C" fn wa_client_dispatch(client: *mut wa_client, out_count: *mut usize) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        if shared.mode != DispatchMode::Poll {
            return Err(fail(
                wa_result::WA_ERR_INVALID_STATE,
                "dispatch is for poll mode",
            ));
        }
        let count = shared.dispatch()?;
        if !out_count.is_null() {
            // SAFETY: non-NULL writable output (header contract).
            unsafe { out_count.write(count) };
        }
        Ok(())
    })
}

/// Poll mode: waits up to `timeout_ms` (negative: no limit) for events, then dispatches them
/// like `wa_client_dispatch` (the same refusals). For simple programs without an event loop.
#[no_mangle]
pub extern "C" fn wa_client_wait(
    client: *mut wa_client,
    timeout_ms: i32,
    out_count: *mut usize,
) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        if shared.mode != DispatchMode::Poll {
            return Err(fail(
                wa_result::WA_ERR_INVALID_STATE,
                "wait is for poll mode",
            ));
        }
        if is_dispatching_here(&shared) {
            return Err(fail(
                wa_result::WA_ERR_INVALID_STATE,
                "wa_client_wait called from inside a callback",
            ));
        }
        let timeout = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
        shared.events.wait_readable(timeout);
        let count = shared.dispatch()?;
        if !out_count.is_null() {
            // SAFETY: non-NULL writable output (header contract).
            unsafe { out_count.write(count) };
        }
        Ok(())
    })
}

/// Queues `task(arg)` to run where this client's callbacks run (its dispatch thread, or inside
/// `wa_client_dispatch`), after the callbacks already queued and never concurrently with them or
/// inside this call. For host code that must run in sequence with the callbacks, such as
/// reporting a refused call through the same callback a result would use. Accepted until
/// `close_complete` is queued (the task then runs before it); `WA_ERR_CLOSED` after that (the
/// task will not run). A task not yet run when the client is freed is dropped without running.
/// Any thread.
#[no_mangle]
pub extern "C" fn wa_client_post(
    client: *mut wa_client,
    task: Option<unsafe extern "C" fn(arg: *mut c_void)>,
    arg: *mut c_void,
) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        let Some(task) = task else {
            return Err(fail(wa_result::WA_ERR_NULL_ARGUMENT, "task is NULL"));
        };
        // The host's pointer, carried as a number (it is only handed back to the host).
        let arg = arg as usize;
        // SAFETY: a host function that takes the host's own argument (header contract).
        let run = move || unsafe { task(arg as *mut c_void) };
        if shared.events.try_push(Event::HostTask(HostTask::new(run))) {
            Ok(())
        } else {
            Err(fail(
                wa_result::WA_ERR_CLOSED,
                "close_complete was queued: nothing runs after it",
            ))
        }
    })
}

/// Requests (messages, media requests) accepted by this client whose `send_result` callback has
/// not run yet: a result waiting to be dispatched counts (0 for NULL).
#[no_mangle]
pub extern "C" fn wa_client_pending(client: *const wa_client) -> usize {
    guard_value(0, || shared_of(client).map_or(0, |s| s.core.outstanding()))
}

/// Events waiting to be dispatched: results, inbound messages, log lines and other callbacks
/// not yet run (0 for NULL). Read without a lock: events may arrive at any moment. A poll-mode
/// host with `wa_options_set_dispatch_max_events` learns from it whether a dispatch left some.
#[no_mangle]
pub extern "C" fn wa_client_events_pending(client: *const wa_client) -> usize {
    guard_value(0, || shared_of(client).map_or(0, |s| s.events.backlog()))
}

/// The port the built-in webhook listener is bound to (useful after listening on port 0).
/// `WA_ERR_INVALID_STATE` when no listen address was configured.
#[no_mangle]
pub extern "C" fn wa_client_webhook_port(
    client: *const wa_client,
    out_port: *mut u16,
) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        let address = shared.core.webhook_address().ok_or_else(|| {
            fail(
                wa_result::WA_ERR_INVALID_STATE,
                "no webhook listener (set a listen address)",
            )
        })?;
        // SAFETY: writable output per the header contract (NULL is checked).
        unsafe { write_out(out_port, address.port()) }
    })
}

/// Host-fed webhook entry, for hosts that run their own web server: pass each request to the
/// webhook URL in and answer with what comes out. Same validation and callbacks as the built-in
/// listener.
///
/// `method` is "GET" or "POST"; `path_and_query` is the request target (only the part after
/// `?` is used: the host routes the path); `signature` is the `X-Hub-Signature-256` header value
/// (NULL when absent); `body`/`body_len` are the raw body bytes exactly as received (`body` may
/// be NULL when `body_len` is 0). On WA_OK, `*out_status` is the HTTP status to answer,
/// `*out_content_type` (may be NULL) a static content type, and the body is copied into
/// `out_body` (`out_body_cap` bytes, NUL-terminated) with its length in `*out_body_len` (may be
/// NULL). `WA_ERR_BUFFER_TOO_SMALL` when the body does not fit (`*out_body_len` then holds the
/// body's length, so `out_body_cap` must be at least that plus one for the NUL; nothing else is
/// written, but a POST was processed: calling again answers it as a redelivery). 256 bytes always suffice except for the echo of a verification challenge,
/// which is as long as the challenge Meta sent.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn wa_client_webhook_request(
    client: *mut wa_client,
    method: *const c_char,
    path_and_query: *const c_char,
    signature: *const c_char,
    body: *const u8,
    body_len: usize,
    out_status: *mut u16,
    out_content_type: *mut *const c_char,
    out_body: *mut c_char,
    out_body_cap: usize,
    out_body_len: *mut usize,
) -> wa_result {
    guard(|| {
        let shared = shared_of(client)?;
        // SAFETY (three strings): NUL-terminated strings valid for the call (header contract).
        let method = unsafe { borrow_str(method, "method") }?;
        // SAFETY: as above.
        let target = unsafe { borrow_str(path_and_query, "path_and_query") }?;
        // SAFETY: as above; NULL means no header.
        let signature = unsafe { borrow_opt_str(signature, "signature") }?;
        if out_status.is_null() {
            return Err(fail(wa_result::WA_ERR_NULL_ARGUMENT, "out_status is NULL"));
        }
        let body: &[u8] = if body_len == 0 {
            &[]
        } else if body.is_null() {
            return Err(fail(wa_result::WA_ERR_NULL_ARGUMENT, "body is NULL"));
        } else {
            // SAFETY: the caller gives `body_len` readable bytes at `body` (header contract).
            unsafe { std::slice::from_raw_parts(body, body_len) }
        };
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let reply = shared.core.handle_webhook(method, query, signature, body);
        let needed = reply.body.len();
        if needed + 1 > out_body_cap || out_body.is_null() {
            if !out_body_len.is_null() {
                // SAFETY: non-NULL writable output (header contract).
                unsafe { out_body_len.write(needed) };
            }
            return Err(fail(
                wa_result::WA_ERR_BUFFER_TOO_SMALL,
                format!("the reply body needs {} bytes", needed + 1),
            ));
        }
        // SAFETY: `out_body` has `out_body_cap` >= needed + 1 writable bytes (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(reply.body.as_ptr(), out_body.cast::<u8>(), needed);
            *out_body.add(needed) = 0;
            out_status.write(reply.status);
            if !out_content_type.is_null() {
                out_content_type.write(content_type_ptr(reply.content_type));
            }
            if !out_body_len.is_null() {
                out_body_len.write(needed);
            }
        }
        Ok(())
    })
}

/// Static C strings of the content types a webhook reply can have (only one today).
fn content_type_ptr(content_type: &str) -> *const c_char {
    debug_assert_eq!(content_type, "text/plain; charset=utf-8");
    c"text/plain; charset=utf-8".as_ptr()
}
