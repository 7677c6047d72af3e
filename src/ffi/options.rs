//! `wa_options`: settings for `wa_client_new` (sentry-native style: new, setters, free).
//!
//! A setting made here wins over the environment variables (`WA_GRAPH_BASE_URL`,
//! `WA_API_VERSION`, `WA_APP_ID`, `WA_WEBHOOK_LISTEN`), which win over the defaults.

use std::ffi::c_char;
use std::time::Duration;

use super::{borrow_str, fail, guard, wa_result, write_out};
use crate::config::{validate_api_version, validate_base_url, DispatchMode, Options};
use crate::events::LogLevel;

/// Settings for a client. Owned by the caller; free with `wa_options_free`. Not thread-safe:
/// use one options object from one thread at a time. `wa_client_new` copies it.
pub struct wa_options {
    pub(crate) inner: Options,
}

/// How callbacks reach the host (`wa_options_set_dispatch_mode`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wa_dispatch_mode {
    /// Default. Callbacks run only inside `wa_client_dispatch`/`wa_client_wait`, on the thread
    /// that calls them; `wa_client_event_fd` is readable while events are pending.
    WA_DISPATCH_POLL = 0,
    /// Callbacks run on a thread owned by the client. An event that arrives alone is delivered
    /// at once; while events stream in the thread lets them gather between batches, up to 4 ms
    /// or until 32 are pending (`wa_options_set_dispatch_batching_us`), so a callback may run
    /// up to that much later in exchange for far fewer wake-ups.
    WA_DISPATCH_THREAD = 1,
}

/// Severity of log lines delivered to the log callback (`wa_options_set_log_level`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wa_log_level {
    WA_LOG_OFF = 0,
    WA_LOG_ERROR = 1,
    WA_LOG_WARN = 2,
    /// Default.
    WA_LOG_INFO = 3,
    WA_LOG_DEBUG = 4,
    WA_LOG_TRACE = 5,
}

impl From<LogLevel> for wa_log_level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Off => wa_log_level::WA_LOG_OFF,
            LogLevel::Error => wa_log_level::WA_LOG_ERROR,
            LogLevel::Warn => wa_log_level::WA_LOG_WARN,
            LogLevel::Info => wa_log_level::WA_LOG_INFO,
            LogLevel::Debug => wa_log_level::WA_LOG_DEBUG,
            LogLevel::Trace => wa_log_level::WA_LOG_TRACE,
        }
    }
}

/// Runs `f` on the options behind `options`, checking for NULL.
fn with_options(
    options: *mut wa_options,
    f: impl FnOnce(&mut Options) -> Result<(), wa_result>,
) -> wa_result {
    guard(|| {
        if options.is_null() {
            return Err(fail(wa_result::WA_ERR_NULL_ARGUMENT, "options is NULL"));
        }
        // SAFETY: non-NULL; the caller passes a live options object from wa_options_new and
        // does not use it from another thread at the same time (header contract).
        f(unsafe { &mut (*options).inner })
    })
}

/// Sets a setting that must not be zero (`WA_ERR_INVALID_ARGUMENT` otherwise).
fn set_nonzero<T: Copy + PartialEq + Default>(
    options: *mut wa_options,
    value: T,
    name: &str,
    apply: impl FnOnce(&mut Options, T),
) -> wa_result {
    with_options(options, |o| {
        if value == T::default() {
            return Err(fail(
                wa_result::WA_ERR_INVALID_ARGUMENT,
                format!("{name} must be > 0"),
            ));
        }
        apply(o, value);
        Ok(())
    })
}

/// Like `set_nonzero`, for a value with an upper bound (0 allowed).
fn set_at_most<T: Copy + PartialOrd + std::fmt::Display>(
    options: *mut wa_options,
    value: T,
    max: T,
    name: &str,
    apply: impl FnOnce(&mut Options, T),
) -> wa_result {
    with_options(options, |o| {
        if value > max {
            return Err(fail(
                wa_result::WA_ERR_INVALID_ARGUMENT,
                format!("{name} must be at most {max}"),
            ));
        }
        apply(o, value);
        Ok(())
    })
}

fn ms(value: u32) -> Duration {
    Duration::from_millis(u64::from(value))
}

/// Creates an options object with every setting unset (defaults apply). Free it with
/// `wa_options_free`.
#[no_mangle]
pub extern "C" fn wa_options_new(out: *mut *mut wa_options) -> wa_result {
    guard(|| {
        if out.is_null() {
            return Err(fail(wa_result::WA_ERR_NULL_ARGUMENT, "out is NULL"));
        }
        let options = Box::into_raw(Box::new(wa_options {
            inner: Options::default(),
        }));
        // SAFETY: `out` is non-NULL and writable per the header contract.
        unsafe { write_out(out, options) }
    })
}

/// Frees an options object. NULL is ignored.
#[no_mangle]
pub extern "C" fn wa_options_free(options: *mut wa_options) {
    if options.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the pointer came from wa_options_new and is freed once (header contract).
        drop(unsafe { Box::from_raw(options) });
    });
}

/// Whether the `WA_GRAPH_BASE_URL`, `WA_API_VERSION`, `WA_APP_ID` and `WA_WEBHOOK_LISTEN`
/// environment variables fill the settings not set here (default 1: they do, below the
/// setters and above the defaults). 0: this client's settings come from these options alone,
/// whatever the process environment holds.
#[no_mangle]
pub extern "C" fn wa_options_set_use_environment(
    options: *mut wa_options,
    use_environment: u32,
) -> wa_result {
    with_options(options, |o| {
        o.use_environment = Some(use_environment != 0);
        Ok(())
    })
}

/// Graph base URL, scheme://host[:port] (default `https://graph.facebook.com`; the emulator's
/// address in tests). `WA_ERR_INVALID_ARGUMENT` when it has a path, query or credentials.
/// Environment: `WA_GRAPH_BASE_URL`.
#[no_mangle]
pub extern "C" fn wa_options_set_graph_base_url(
    options: *mut wa_options,
    url: *const c_char,
) -> wa_result {
    with_options(options, |o| {
        // SAFETY: NUL-terminated string valid for the call (header contract).
        let url = unsafe { borrow_str(url, "url") }?;
        let url =
            validate_base_url(url).map_err(|e| fail(wa_result::WA_ERR_INVALID_ARGUMENT, e))?;
        o.graph_base_url = Some(url);
        Ok(())
    })
}

/// Graph API version such as "v26.0" (default "v26.0"). The empty string means "no version":
/// every send then ends with `WHATSAPP_ERR_MISSING_VERSION`. Environment: `WA_API_VERSION`.
#[no_mangle]
pub extern "C" fn wa_options_set_api_version(
    options: *mut wa_options,
    version: *const c_char,
) -> wa_result {
    with_options(options, |o| {
        // SAFETY: NUL-terminated string valid for the call (header contract).
        let version = unsafe { borrow_str(version, "version") }?;
        validate_api_version(version).map_err(|e| fail(wa_result::WA_ERR_INVALID_ARGUMENT, e))?;
        o.api_version = Some(version.to_string());
        Ok(())
    })
}

/// Meta app id (used by onboarding). Environment: `WA_APP_ID`.
#[no_mangle]
pub extern "C" fn wa_options_set_app_id(
    options: *mut wa_options,
    app_id: *const c_char,
) -> wa_result {
    with_options(options, |o| {
        // SAFETY: NUL-terminated string valid for the call (header contract).
        o.app_id = Some(unsafe { borrow_str(app_id, "app_id") }?.to_string());
        Ok(())
    })
}

/// Address for the built-in webhook listener, e.g. "127.0.0.1:8080"; port 0 picks a free port
/// (read it with `wa_client_webhook_port`). Without one, no listener runs (use
/// `wa_client_webhook_request` from the host's own web server). Environment: `WA_WEBHOOK_LISTEN`;
/// "" means no listener even when that variable is set.
#[no_mangle]
pub extern "C" fn wa_options_set_webhook_listen(
    options: *mut wa_options,
    address: *const c_char,
) -> wa_result {
    with_options(options, |o| {
        // SAFETY: NUL-terminated string valid for the call (header contract).
        o.webhook_listen = Some(unsafe { borrow_str(address, "address") }?.to_string());
        Ok(())
    })
}

/// Timeout of one HTTP request in milliseconds (default 30000; must be > 0). Media transfers have
/// their own idle bound (`wa_options_set_media_idle_timeout_ms`).
#[no_mangle]
pub extern "C" fn wa_options_set_request_timeout_ms(
    options: *mut wa_options,
    timeout_ms: u32,
) -> wa_result {
    set_nonzero(options, timeout_ms, "timeout_ms", |o, v| {
        o.request_timeout = Some(ms(v))
    })
}

/// A media transfer (upload, download, forward) may take as long as it needs while it makes
/// progress: it fails once nothing moved for `timeout_ms` (default 120000; must be > 0).
/// Progress is seen when the connection takes data, and the kernel's send buffer may take a few
/// MB at once: on a slow link the time between two takes is that buffer's drain time, so lower
/// this only for fast links (the default allows a 4 MB buffer down to about 270 kbit/s).
#[no_mangle]
pub extern "C" fn wa_options_set_media_idle_timeout_ms(
    options: *mut wa_options,
    timeout_ms: u32,
) -> wa_result {
    set_nonzero(options, timeout_ms, "timeout_ms", |o, v| {
        o.media_idle_timeout = Some(ms(v))
    })
}

/// Retry limits for transient failures: at most `max_attempts` attempts per message (first
/// included; default 5; 1 = no retry of other failures), no retry later than `max_age_ms` after
/// the message was accepted (default 300000), exponential backoff from `backoff_initial_ms`
/// (default 500) up to `backoff_max_ms` (default 30000) with jitter. A `Retry-After` from Graph
/// is honoured. Refusals for Graph's rate limits (130429 throughput, 131056 pair rate) do not
/// count as attempts, also with `max_attempts` 1: only `max_age_ms` bounds them. A 130429
/// pauses the whole phone number for its Retry-After, at most 10 s, then sends slower.
#[no_mangle]
pub extern "C" fn wa_options_set_retry(
    options: *mut wa_options,
    max_attempts: u32,
    max_age_ms: u32,
    backoff_initial_ms: u32,
    backoff_max_ms: u32,
) -> wa_result {
    with_options(options, |o| {
        if max_attempts == 0 || backoff_initial_ms > backoff_max_ms {
            return Err(fail(
                wa_result::WA_ERR_INVALID_ARGUMENT,
                "max_attempts must be >= 1 and backoff_initial_ms <= backoff_max_ms",
            ));
        }
        o.max_attempts = Some(max_attempts);
        o.max_retry_age = Some(ms(max_age_ms));
        o.backoff_initial = Some(ms(backoff_initial_ms));
        o.backoff_max = Some(ms(backoff_max_ms));
        Ok(())
    })
}

/// Most requests (messages, media requests) accepted whose `send_result` callback has not run
/// yet (default 100000); beyond it `send_message` returns `WA_ERR_QUEUE_FULL`. A result
/// waiting to be dispatched still holds its place, so a host that stops dispatching is
/// refused rather than results piling up in memory. 0 is refused (`WA_ERR_INVALID_ARGUMENT`).
#[no_mangle]
pub extern "C" fn wa_options_set_outbox_capacity(
    options: *mut wa_options,
    capacity: usize,
) -> wa_result {
    set_nonzero(options, capacity, "capacity", |o, v| {
        o.outbox_capacity = Some(v)
    })
}

/// Sends per second per channel (phone number id), default 80 (Meta's default throughput);
/// 0 = unlimited. When Graph answers 130429 (the number's throughput is lower), the channel
/// pauses (for the `Retry-After`, else a second), then sends a little below what Graph accepted
/// in the last second, recovering gradually towards this rate.
#[no_mangle]
pub extern "C" fn wa_options_set_channel_rate(
    options: *mut wa_options,
    messages_per_second: u32,
) -> wa_result {
    with_options(options, |o| {
        o.channel_rate_per_sec = Some(messages_per_second);
        Ok(())
    })
}

/// Pause before retrying a recipient after Graph's pair-rate error 131056, and the spacing of
/// that recipient's next messages for a while after it (default 6000 ms, Meta's pair rate).
#[no_mangle]
pub extern "C" fn wa_options_set_pair_rate_backoff_ms(
    options: *mut wa_options,
    backoff_ms: u32,
) -> wa_result {
    with_options(options, |o| {
        o.pair_rate_backoff = Some(ms(backoff_ms));
        Ok(())
    })
}

/// How long messages sent before a token is set wait for one (default 300000 ms); after it
/// they end with `WHATSAPP_ERR_MISSING_TOKEN`.
#[no_mangle]
pub extern "C" fn wa_options_set_token_hold_ms(
    options: *mut wa_options,
    hold_ms: u32,
) -> wa_result {
    with_options(options, |o| {
        o.token_hold = Some(ms(hold_ms));
        Ok(())
    })
}

/// How long `wa_client_close` lets requests already on the wire finish (default 5000 ms).
#[no_mangle]
pub extern "C" fn wa_options_set_drain_timeout_ms(
    options: *mut wa_options,
    drain_ms: u32,
) -> wa_result {
    with_options(options, |o| {
        o.drain_timeout = Some(ms(drain_ms));
        Ok(())
    })
}

/// Requests on the wire at once over all recipients (default 256; must be > 0).
#[no_mangle]
pub extern "C" fn wa_options_set_max_in_flight(
    options: *mut wa_options,
    max_in_flight: u32,
) -> wa_result {
    set_nonzero(options, max_in_flight, "max_in_flight", |o, v| {
        o.max_in_flight = Some(v as usize)
    })
}

/// Media requests (`wa_client_request_media`, `wa_client_download_media`, uploads) transferring
/// at once (default 16; must be > 0); further ones wait their turn in acceptance order.
#[no_mangle]
pub extern "C" fn wa_options_set_max_media_in_flight(
    options: *mut wa_options,
    max_media_in_flight: u32,
) -> wa_result {
    set_nonzero(
        options,
        max_media_in_flight,
        "max_media_in_flight",
        |o, v| o.max_media_in_flight = Some(v as usize),
    )
}

/// Runtime worker threads of the client (default 1, at most 64).
#[no_mangle]
pub extern "C" fn wa_options_set_worker_threads(
    options: *mut wa_options,
    threads: u32,
) -> wa_result {
    with_options(options, |o| {
        if threads == 0 || threads > 64 {
            return Err(fail(
                wa_result::WA_ERR_INVALID_ARGUMENT,
                "threads must be 1..64",
            ));
        }
        o.worker_threads = Some(threads as usize);
        Ok(())
    })
}

/// `mode` is a `wa_dispatch_mode` value; default `WA_DISPATCH_POLL`.
#[no_mangle]
pub extern "C" fn wa_options_set_dispatch_mode(options: *mut wa_options, mode: u32) -> wa_result {
    with_options(options, |o| {
        o.dispatch_mode = Some(match mode {
            0 => DispatchMode::Poll,
            1 => DispatchMode::Thread,
            _ => {
                return Err(fail(
                    wa_result::WA_ERR_INVALID_ARGUMENT,
                    "unknown dispatch mode",
                ))
            }
        });
        Ok(())
    })
}

/// Thread mode: while events stream in (one arrives within this time of the previous batch),
/// the dispatch thread waits up to `batching_us` microseconds, or until 32 events are pending,
/// before running the next batch of callbacks; an event after a quiet period runs at once.
/// Fewer wake-ups of the dispatch thread mean less CPU per event under load. 0 runs every
/// event as soon as it arrives. Default 4000 (4 ms); at most 1 000 000. Poll mode ignores it.
#[no_mangle]
pub extern "C" fn wa_options_set_dispatch_batching_us(
    options: *mut wa_options,
    batching_us: u32,
) -> wa_result {
    set_at_most(options, batching_us, 1_000_000, "batching_us", |o, us| {
        o.dispatch_batching = Some(Duration::from_micros(u64::from(us)));
    })
}

/// Poll mode: the most events one `wa_client_dispatch` (or `wa_client_wait`) runs; the rest
/// wait, in order, for the next call, with the event fd still readable. A host whose loop
/// serves other sockets too bounds the time one dispatch may take under a burst (a backlog of
/// webhooks can hold tens of thousands of events). 0 (the default): every pending event, and
/// those arriving meanwhile for a few rounds. Thread mode ignores it.
#[no_mangle]
pub extern "C" fn wa_options_set_dispatch_max_events(
    options: *mut wa_options,
    max_events: usize,
) -> wa_result {
    with_options(options, |o| {
        o.dispatch_max_events = Some(max_events);
        Ok(())
    })
}

/// `level` is a `wa_log_level` value: lines up to that severity reach the log callback
/// (default `WA_LOG_INFO`).
#[no_mangle]
pub extern "C" fn wa_options_set_log_level(options: *mut wa_options, level: u32) -> wa_result {
    with_options(options, |o| {
        o.log_level = Some(match level {
            0 => LogLevel::Off,
            1 => LogLevel::Error,
            2 => LogLevel::Warn,
            3 => LogLevel::Info,
            4 => LogLevel::Debug,
            5 => LogLevel::Trace,
            _ => {
                return Err(fail(
                    wa_result::WA_ERR_INVALID_ARGUMENT,
                    "unknown log level",
                ))
            }
        });
        Ok(())
    })
}

/// Path served by the built-in webhook listener (default "/webhook"); must start with '/'.
#[no_mangle]
pub extern "C" fn wa_options_set_webhook_path(
    options: *mut wa_options,
    path: *const c_char,
) -> wa_result {
    with_options(options, |o| {
        // SAFETY: NUL-terminated string valid for the call (header contract).
        let path = unsafe { borrow_str(path, "path") }?;
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(fail(
                wa_result::WA_ERR_INVALID_ARGUMENT,
                "the webhook path must start with '/' and hold no query",
            ));
        }
        o.webhook_path = Some(path.to_string());
        Ok(())
    })
}

/// Largest webhook body accepted, in bytes (default 1 MiB); larger ones are answered 413. 0 is
/// refused (`WA_ERR_INVALID_ARGUMENT`).
#[no_mangle]
pub extern "C" fn wa_options_set_webhook_max_body(
    options: *mut wa_options,
    max_bytes: usize,
) -> wa_result {
    set_nonzero(options, max_bytes, "max_bytes", |o, v| {
        o.webhook_max_body = Some(v)
    })
}

/// The built-in listener closes a connection that moved no byte either way for `timeout_ms`
/// (checked every 10 s at most, so a little later): peers that vanished, idle kept-alive
/// connections, stalled requests, answers nobody reads. Default 75000 (longer than the 60 s
/// idle timeouts of common reverse proxies, which should close first); 0 never closes an idle
/// connection and sets no head deadline; at most 86400000 (a day). A request head must arrive
/// within 30 s of its first bytes (or this time, if shorter), else the connection is closed: a
/// head trickled a byte at a time would hold its slot forever. A webhook's body must arrive
/// within 30 s of its head (or this time, if shorter; also with 0), else 408.
#[no_mangle]
pub extern "C" fn wa_options_set_webhook_idle_timeout_ms(
    options: *mut wa_options,
    timeout_ms: u32,
) -> wa_result {
    set_at_most(
        options,
        timeout_ms,
        86_400_000,
        "timeout_ms",
        |o, timeout| {
            o.webhook_idle_timeout = Some((timeout > 0).then(|| ms(timeout)));
        },
    )
}

/// The most connections the built-in listener holds at once (default 256; 0 = no limit; at
/// most 1000000). Further connections wait in the kernel's accept queue until one closes; a
/// warning says the limit was reached (at most one a minute). The listener shares the
/// process's file descriptors: the limit keeps a flood of connections from exhausting the
/// host's.
#[no_mangle]
pub extern "C" fn wa_options_set_webhook_max_connections(
    options: *mut wa_options,
    max_connections: u32,
) -> wa_result {
    set_at_most(
        options,
        max_connections,
        1_000_000,
        "max_connections",
        |o, max| o.webhook_max_connections = Some((max > 0).then_some(max as usize)),
    )
}

/// How many inbound message and status ids are remembered to drop Meta's redeliveries
/// (default 100000, at most 16777215; 0 disables dedupe). Memory: up to about 40 bytes per id.
#[no_mangle]
pub extern "C" fn wa_options_set_dedupe_capacity(
    options: *mut wa_options,
    capacity: usize,
) -> wa_result {
    set_at_most(
        options,
        capacity,
        crate::dedupe::MAX_CAPACITY,
        "capacity",
        |o, capacity| o.dedupe_capacity = Some(capacity),
    )
}

/// Callbacks waiting for the host (queued and not yet dispatched) beyond which webhook POSTs are
/// answered 503 without callbacks, so that a host that stopped dispatching does not make memory
/// grow without bound; Meta delivers them again later (default 50000, 0 = no limit, at most
/// 10000000). A warning says so at most once a minute.
#[no_mangle]
pub extern "C" fn wa_options_set_webhook_max_backlog(
    options: *mut wa_options,
    max_backlog: u32,
) -> wa_result {
    set_at_most(options, max_backlog, 10_000_000, "max_backlog", |o, max| {
        o.webhook_max_backlog = Some(max as usize)
    })
}

/// Adds a phone number id to the webhook allow-list. With a non-empty list, changes for other
/// phone numbers, and message changes naming none, are answered 200 and dropped with a log line;
/// changes of the whole account (no phone number id) still reach raw_change. Default: every
/// number.
#[no_mangle]
pub extern "C" fn wa_options_add_allowed_channel(
    options: *mut wa_options,
    channel: *const c_char,
) -> wa_result {
    with_options(options, |o| {
        // SAFETY: NUL-terminated string valid for the call (header contract).
        let channel = unsafe { borrow_str(channel, "channel") }?;
        if channel.is_empty() {
            return Err(fail(wa_result::WA_ERR_INVALID_ARGUMENT, "channel is empty"));
        }
        o.allowed_channels.push(channel.to_string());
        Ok(())
    })
}

/// Adds a host that may receive the access token with a media download (besides the Graph
/// host and the default `lookaside.fbsbx.com`). Downloads from any other host fail without
/// sending the token. A bare host name (no scheme, port, path or credentials), else
/// `WA_ERR_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn wa_options_add_media_host(
    options: *mut wa_options,
    host: *const c_char,
) -> wa_result {
    with_options(options, |o| {
        // SAFETY: NUL-terminated string valid for the call (header contract).
        let host = unsafe { borrow_str(host, "host") }?;
        if host.is_empty() || host.contains(['/', ':', ' ', '@']) {
            return Err(fail(
                wa_result::WA_ERR_INVALID_ARGUMENT,
                "host must be a bare host name",
            ));
        }
        o.extra_media_hosts.push(host.to_ascii_lowercase());
        Ok(())
    })
}

/// Largest media transferred by RequestMedia, downloads and getMedia, in bytes (default
/// 128 MiB, above WhatsApp's 100 MB document limit). 0 is refused (`WA_ERR_INVALID_ARGUMENT`).
#[no_mangle]
pub extern "C" fn wa_options_set_media_max_bytes(
    options: *mut wa_options,
    max_bytes: u64,
) -> wa_result {
    set_nonzero(options, max_bytes, "max_bytes", |o, v| {
        o.media_max_bytes = Some(v)
    })
}

/// The access token callers of the listener's `GET /client/getMedia?id=<media id>` must present
/// (`Authorization: Bearer <token>` or `&access_token=<token>`). Without one the endpoint
/// answers 401 to everyone (it must not be an open proxy to the business's media). At least 8
/// characters, else `WA_ERR_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn wa_options_set_media_access_token(
    options: *mut wa_options,
    token: *const c_char,
) -> wa_result {
    with_options(options, |o| {
        // SAFETY: NUL-terminated string valid for the call (header contract).
        let token = unsafe { borrow_str(token, "token") }?;
        if token.len() < 8 {
            return Err(fail(
                wa_result::WA_ERR_INVALID_ARGUMENT,
                "the media access token needs at least 8 characters",
            ));
        }
        o.media_access_token = Some(crate::secrets::Secret::new(token));
        Ok(())
    })
}

/// Makes the outbox durable: every accepted message is written to the SQLite file at `path`
/// (created if missing; its directory must exist) before `wa_client_send_message` returns
/// WA_OK, and removed once its `send_result` callback has run. A client created on an
/// existing store first resends the messages left in it, in their original order; their
/// results carry a NULL request context and the stored callback_info. The store also keeps the
/// webhook dedupe window, so Meta's redeliveries after a restart are recognised. One client at a
/// time may use a store. `wa_client_new` fails with WA_ERR_STORAGE when the store cannot be
/// used (also when the file is another application's SQLite database, which is left
/// unchanged); it never falls back to memory. Default: in memory.
#[no_mangle]
pub extern "C" fn wa_options_set_outbox_path(
    options: *mut wa_options,
    path: *const c_char,
) -> wa_result {
    with_options(options, |o| {
        // SAFETY: NUL-terminated string valid for the call (header contract).
        let path = unsafe { borrow_str(path, "path") }?;
        if path.is_empty() {
            return Err(fail(wa_result::WA_ERR_INVALID_ARGUMENT, "path is empty"));
        }
        o.outbox_path = Some(std::path::PathBuf::from(path));
        Ok(())
    })
}
