//! Test support: a wa-emulator process per test and a host that drives the C API exactly as a C
//! program would (through the exported `extern "C"` functions).
#![allow(dead_code)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use serde_json::Value;
use whatsapp_connector::ffi::client::*;
use whatsapp_connector::ffi::options::*;
use whatsapp_connector::ffi::result::whatsapp_error_t;
use whatsapp_connector::ffi::wa_result;

pub const TOKEN: &str = "test-token";
pub const PHONE_ID: &str = "106540352242922";

/// A running emulator; killed on drop.
pub struct Emulator {
    child: Child,
    pub url: String,
    http: reqwest::blocking::Client,
}

impl Emulator {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Self {
        let (child, url) =
            spawn_emulator("127.0.0.1:0", args).expect("wa-emulator prints its address");
        Emulator {
            child,
            url,
            http: direct_http(),
        }
    }

    pub fn requests(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/_emulator/requests", self.url))
            .send()
            .and_then(|r| r.json())
            .expect("requests listing");
        v["requests"].as_array().cloned().unwrap_or_default()
    }

    /// Requests to the send endpoint, in arrival order.
    pub fn sends(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/messages")))
            .collect()
    }

    pub fn fault(&self, rule: Value) {
        let r = self
            .http
            .post(format!("{}/_emulator/faults", self.url))
            .json(&rule)
            .send()
            .expect("fault accepted");
        assert!(r.status().is_success(), "fault rule refused: {rule}");
    }

    pub fn config(&self, config: Value) {
        let r = self
            .http
            .post(format!("{}/_emulator/config", self.url))
            .json(&config)
            .send()
            .expect("config accepted");
        assert!(r.status().is_success(), "config refused: {config}");
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One send result as the host saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct SendResult {
    pub ctx: usize,
    pub error: whatsapp_error_t,
    pub callback_info: Option<String>,
    pub content: String,
    pub thread: ThreadId,
}

/// One inbound callback as the host saw it: ("message", [msg, tel, channel, type, id,
/// refers_to]) or ("media", [sender, channel, wamid, media_id, mime]) or ("raw", [field, json]).
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub kind: &'static str,
    pub args: Vec<Option<String>>,
    pub thread: ThreadId,
}

#[derive(Default, Debug)]
pub struct Seen {
    pub results: Vec<SendResult>,
    pub inbound: Vec<Inbound>,
    pub logs: Vec<(u32, String)>,
    pub close_complete: usize,
    pub destroyed: usize,
    /// Every callback in order: "result", "log", "close", "destroy".
    pub order: Vec<&'static str>,
    /// A callback arrived after close-complete or destroy.
    pub after_end: bool,
}

type ResultHook = Box<dyn Fn(&SendResult) + Send + Sync>;

pub struct HostState {
    pub seen: Mutex<Seen>,
    pub changed: Condvar,
    /// Runs inside the send-result callback (reentrancy tests).
    pub on_result: Mutex<Option<ResultHook>>,
    /// Called inside close-complete (e.g. to free the client there).
    pub on_close: Mutex<Option<Box<dyn FnMut() + Send>>>,
}

fn state<'a>(user_data: *mut c_void) -> &'a HostState {
    // SAFETY: user_data is the HostState leaked by Host::new; it outlives destroy.
    unsafe { &*(user_data as *const HostState) }
}

fn opt_string(p: *const c_char) -> Option<String> {
    // SAFETY: the library passes NUL-terminated strings valid during the callback.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

unsafe extern "C" fn on_send_result(
    user_data: *mut c_void,
    ctx: *mut c_void,
    error: whatsapp_error_t,
    info: *const c_char,
    content: *const c_char,
) {
    let st = state(user_data);
    let result = SendResult {
        ctx: ctx as usize,
        error,
        callback_info: opt_string(info),
        content: opt_string(content).expect("content is never NULL"),
        thread: std::thread::current().id(),
    };
    {
        let mut seen = st.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.close_complete > 0 || seen.destroyed > 0 {
            seen.after_end = true;
        }
        seen.order.push("result");
        seen.results.push(result.clone());
    }
    if let Some(hook) = st
        .on_result
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        hook(&result);
    }
    st.changed.notify_all();
}

fn record_inbound(user_data: *mut c_void, kind: &'static str, args: &[*const c_char]) {
    let st = state(user_data);
    let mut seen = st.seen.lock().unwrap_or_else(|p| p.into_inner());
    if seen.close_complete > 0 || seen.destroyed > 0 {
        seen.after_end = true;
    }
    seen.order.push(kind);
    seen.inbound.push(Inbound {
        kind,
        args: args.iter().map(|p| opt_string(*p)).collect(),
        thread: std::thread::current().id(),
    });
    drop(seen);
    st.changed.notify_all();
}

unsafe extern "C" fn on_recv_message(
    user_data: *mut c_void,
    msg: *const c_char,
    tel: *const c_char,
    channel: *const c_char,
    kind: *const c_char,
    id: *const c_char,
    refers_to: *const c_char,
) {
    record_inbound(
        user_data,
        "message",
        &[msg, tel, channel, kind, id, refers_to],
    );
}

unsafe extern "C" fn on_recv_media(
    user_data: *mut c_void,
    sender: *const c_char,
    channel: *const c_char,
    wamid: *const c_char,
    media_id: *const c_char,
    mime: *const c_char,
) {
    record_inbound(
        user_data,
        "media",
        &[sender, channel, wamid, media_id, mime],
    );
}

unsafe extern "C" fn on_raw_change(
    user_data: *mut c_void,
    field: *const c_char,
    json: *const c_char,
) {
    record_inbound(user_data, "raw", &[field, json]);
}

unsafe extern "C" fn on_log(user_data: *mut c_void, level: wa_log_level, text: *const c_char) {
    let st = state(user_data);
    let mut seen = st.seen.lock().unwrap_or_else(|p| p.into_inner());
    if seen.close_complete > 0 || seen.destroyed > 0 {
        seen.after_end = true;
    }
    seen.order.push("log");
    seen.logs
        .push((level as u32, opt_string(text).unwrap_or_default()));
}

unsafe extern "C" fn on_close_complete(user_data: *mut c_void) {
    let st = state(user_data);
    {
        let mut seen = st.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.close_complete > 0 || seen.destroyed > 0 {
            seen.after_end = true;
        }
        seen.order.push("close");
        seen.close_complete += 1;
    }
    if let Some(f) = st
        .on_close
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
    {
        f();
    }
    st.changed.notify_all();
}

unsafe extern "C" fn on_destroy(user_data: *mut c_void) {
    let st = state(user_data);
    let mut seen = st.seen.lock().unwrap_or_else(|p| p.into_inner());
    seen.order.push("destroy");
    seen.destroyed += 1;
    drop(seen);
    st.changed.notify_all();
}

/// An HTTP client for the tests' own requests to loopback servers (plain http): never through a
/// proxy set in the developer's environment (it could not reach this machine's loopback), and
/// without the system's CA certificates, which it does not need.
pub fn direct_http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .tls_certs_only(Vec::new())
        .build()
        .expect("HTTP client")
}

pub fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Builds a wa_options through the C API.
pub struct Opts(pub *mut wa_options);

impl Opts {
    pub fn for_emulator(emu: &Emulator) -> Self {
        Self::for_graph(&emu.url)
    }

    /// Options for a Graph at `url` (the emulator, or a stand-in server of a test).
    pub fn for_graph(url: &str) -> Self {
        let mut raw = std::ptr::null_mut();
        assert_eq!(wa_options_new(&mut raw), wa_result::WA_OK);
        let o = Opts(raw);
        assert_eq!(
            wa_options_set_graph_base_url(raw, cstr(url).as_ptr()),
            wa_result::WA_OK
        );
        // Fast retries so that tests of retry behaviour stay short.
        assert_eq!(
            wa_options_set_retry(raw, 4, 60_000, 20, 200),
            wa_result::WA_OK
        );
        assert_eq!(wa_options_set_channel_rate(raw, 0), wa_result::WA_OK);
        assert_eq!(
            wa_options_set_log_level(raw, wa_log_level::WA_LOG_DEBUG as u32),
            wa_result::WA_OK
        );
        o
    }
}

impl Drop for Opts {
    fn drop(&mut self) {
        wa_options_free(self.0);
    }
}

/// A C-API host in poll mode (or thread mode), recording every callback.
pub struct Host {
    pub client: *mut wa_client,
    pub state: Arc<HostState>,
}

// SAFETY: the client handle may be used from any thread (header contract).
unsafe impl Send for Host {}
// SAFETY: as above.
unsafe impl Sync for Host {}

impl Host {
    pub fn new(opts: &Opts) -> Self {
        Self::with_callbacks(opts, |_| {})
    }

    /// `new` with the callback table adjusted first (e.g. a callback left out).
    pub fn with_callbacks(opts: &Opts, adjust: impl FnOnce(&mut wa_client_callbacks)) -> Self {
        let state = Arc::new(HostState {
            seen: Mutex::new(Seen::default()),
            changed: Condvar::new(),
            on_result: Mutex::new(None),
            on_close: Mutex::new(None),
        });
        let mut callbacks = wa_client_callbacks {
            user_data: Arc::into_raw(state.clone()) as *mut c_void,
            close_complete: Some(on_close_complete),
            send_result: Some(on_send_result),
            recv_message: Some(on_recv_message),
            recv_media: Some(on_recv_media),
            raw_change: Some(on_raw_change),
            log: Some(on_log),
            destroy: Some(on_destroy),
        };
        adjust(&mut callbacks);
        let mut client = std::ptr::null_mut();
        let r = wa_client_new(opts.0, &callbacks, &mut client);
        assert_eq!(r, wa_result::WA_OK);
        // The Arc leaked into user_data is reclaimed by nobody: tests are short-lived.
        Host { client, state }
    }

    pub fn with_token(emu: &Emulator) -> Self {
        let host = Host::new(&Opts::for_emulator(emu));
        host.set_token(TOKEN);
        host
    }

    pub fn set_token(&self, token: &str) {
        assert_eq!(
            wa_client_set_config(
                self.client,
                cstr(token).as_ptr(),
                cstr("app-secret").as_ptr()
            ),
            wa_result::WA_OK
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub fn send_full(
        &self,
        json: &str,
        to: &str,
        kind: &str,
        channel: &str,
        info: Option<&str>,
        refers_to: Option<&str>,
        ctx: usize,
    ) -> wa_result {
        let info = info.map(cstr);
        let refers = refers_to.map(cstr);
        wa_client_send_message(
            self.client,
            cstr(json).as_ptr(),
            cstr(to).as_ptr(),
            cstr(kind).as_ptr(),
            cstr(channel).as_ptr(),
            info.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            refers.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            ctx as *mut c_void,
        )
    }

    pub fn send(&self, json: &str, to: &str, kind: &str, ctx: usize) -> wa_result {
        self.send_full(
            json,
            to,
            kind,
            PHONE_ID,
            Some(&format!("info-{ctx}")),
            None,
            ctx,
        )
    }

    pub fn text(&self, body: &str, to: &str, ctx: usize) -> wa_result {
        let json = serde_json::json!({ "body": body }).to_string();
        self.send(&json, to, "text", ctx)
    }

    /// Poll mode: dispatches until `n` results arrived (or panics after `timeout`).
    pub fn wait_results(&self, n: usize, timeout: Duration) -> Vec<SendResult> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let seen = self.state.seen.lock().unwrap_or_else(|p| p.into_inner());
                if seen.results.len() >= n {
                    return seen.results.clone();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {n} results; seen {:?}",
                self.state.seen.lock().unwrap_or_else(|p| p.into_inner())
            );
            let r = wa_client_wait(
                self.client,
                left.as_millis().min(200) as i32,
                std::ptr::null_mut(),
            );
            assert_eq!(r, wa_result::WA_OK);
        }
    }

    /// Thread mode: waits until `n` results arrived.
    pub fn wait_results_threaded(&self, n: usize, timeout: Duration) -> Vec<SendResult> {
        let seen = self.state.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (seen, t) = self
            .state
            .changed
            .wait_timeout_while(seen, timeout, |s| s.results.len() < n)
            .unwrap();
        assert!(
            !t.timed_out(),
            "timed out waiting for {n} results; seen {:?}",
            *seen
        );
        seen.results.clone()
    }

    /// Poll mode: closes and dispatches until close-complete.
    pub fn close_and_wait(&self, timeout: Duration) {
        assert_eq!(wa_client_close(self.client), wa_result::WA_OK);
        let deadline = Instant::now() + timeout;
        while self
            .state
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close_complete
            == 0
        {
            assert!(Instant::now() < deadline, "close-complete did not arrive");
            assert_eq!(
                wa_client_wait(self.client, 100, std::ptr::null_mut()),
                wa_result::WA_OK
            );
        }
    }

    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.state.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn free(&mut self) {
        wa_client_free(self.client);
        self.client = std::ptr::null_mut();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if !self.client.is_null() {
            wa_client_free(self.client);
        }
    }
}

pub fn last_error() -> String {
    let mut buf = vec![0 as c_char; 512];
    let mut len = 0usize;
    whatsapp_connector::ffi::wa_last_error_message(buf.as_mut_ptr(), buf.len(), &mut len);
    // SAFETY: NUL-terminated by the library.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

pub const SECS: Duration = Duration::from_secs(1);

/// Serialises like Meta does for webhook bodies: compact, `/` as `\/`, non-ASCII as lowercase
/// `\uXXXX` (UTF-16 surrogate pairs beyond the BMP). Both only occur inside JSON strings, so a
/// character-level pass over compact JSON is exact.
pub fn meta_json(value: &Value) -> Vec<u8> {
    let compact = serde_json::to_string(value).unwrap();
    let mut out = String::with_capacity(compact.len());
    for c in compact.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.into_bytes()
}

pub const APP_SECRET: &str = "app-secret";

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A `messages` webhook body with the given value.
pub fn envelope(value: Value) -> Value {
    serde_json::json!({"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":value,"field":"messages"}]}]})
}

/// One inbound message from 16505551234 to PHONE_ID.
pub fn inbound_message(message: Value) -> Value {
    envelope(serde_json::json!({
        "messaging_product":"whatsapp",
        "metadata":{"display_phone_number":"15550783881","phone_number_id":PHONE_ID},
        "contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234","user_id":"US.13491208655302741918"}],
        "messages":[message]}))
}

/// A reply from the webhook entry point.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookReply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Host {
    /// Feeds a request through the host-fed entry point.
    pub fn webhook(
        &self,
        method: &str,
        target: &str,
        signature: Option<&str>,
        body: &[u8],
    ) -> WebhookReply {
        let mut status = 0u16;
        let mut content_type: *const c_char = std::ptr::null();
        let mut out = vec![0 as c_char; 4096];
        let mut len = 0usize;
        let sig = signature.map(cstr);
        let r = wa_client_webhook_request(
            self.client,
            cstr(method).as_ptr(),
            cstr(target).as_ptr(),
            sig.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            body.as_ptr(),
            body.len(),
            &mut status,
            &mut content_type,
            out.as_mut_ptr(),
            out.len(),
            &mut len,
        );
        assert_eq!(r, wa_result::WA_OK, "{}", last_error());
        WebhookReply {
            status,
            // SAFETY: static NUL-terminated strings from the library.
            content_type: unsafe { CStr::from_ptr(content_type) }
                .to_string_lossy()
                .into_owned(),
            // SAFETY: NUL-terminated by the library.
            body: unsafe { CStr::from_ptr(out.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
        }
    }

    /// Dispatches for a while and returns every inbound callback seen so far.
    pub fn drain_inbound(&self, settle: Duration) -> Vec<Inbound> {
        let deadline = Instant::now() + settle;
        while Instant::now() < deadline {
            let _ = wa_client_wait(self.client, 20, std::ptr::null_mut());
        }
        self.seen().inbound.clone()
    }

    pub fn webhook_port(&self) -> u16 {
        let mut port = 0u16;
        assert_eq!(
            wa_client_webhook_port(self.client, &mut port),
            wa_result::WA_OK
        );
        port
    }
}

/// A request as a test HTTP receiver saw it (the body is only hashed and counted, so that large
/// transfers do not inflate the test process).
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body_sha256: String,
    pub complete: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

fn header_in<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// An HTTP/1.1 request head as a test server read it.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

/// Reads one request head (request line and headers, up to the blank line); `None` when the
/// stream ends before a request line.
pub fn read_request_head(reader: &mut impl BufRead) -> Option<RequestHead> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let mut head = RequestHead {
        method: parts.next().unwrap_or("").to_string(),
        target: parts.next().unwrap_or("").to_string(),
        headers: Vec::new(),
    };
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            return Some(head);
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            head.headers
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// A minimal HTTP/1.1 server on loopback that records requests and answers `status`.
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start(status: u16) -> Self {
        Self::start_on("127.0.0.1:0", status)
    }

    pub fn start_on(address: &str, status: u16) -> Self {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind(address).expect("receiver binds");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let Some(head) = read_request_head(&mut reader) else {
                            return;
                        };
                        let mut r = Received {
                            method: head.method,
                            target: head.target,
                            headers: head.headers,
                            ..Default::default()
                        };
                        use sha2::Digest;
                        let mut hasher = sha2::Sha256::new();
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut ok = true;
                        if r.header("transfer-encoding")
                            .is_some_and(|v| v.contains("chunked"))
                        {
                            loop {
                                let mut size = String::new();
                                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                                    ok = false;
                                    break;
                                }
                                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                                let mut left = n;
                                while left > 0 {
                                    let take = left.min(buf.len());
                                    if reader.read_exact(&mut buf[..take]).is_err() {
                                        ok = false;
                                        break;
                                    }
                                    hasher.update(&buf[..take]);
                                    r.body_len += take as u64;
                                    left -= take;
                                }
                                let mut crlf = String::new();
                                let _ = reader.read_line(&mut crlf);
                                if n == 0 || !ok {
                                    break;
                                }
                            }
                        } else {
                            let mut left: u64 = r
                                .header("content-length")
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0);
                            while left > 0 {
                                let take = (left as usize).min(buf.len());
                                match reader.read(&mut buf[..take]) {
                                    Ok(0) | Err(_) => {
                                        ok = false;
                                        break;
                                    }
                                    Ok(n) => {
                                        hasher.update(&buf[..n]);
                                        r.body_len += n as u64;
                                        left -= n as u64;
                                    }
                                }
                            }
                        }
                        r.complete = ok;
                        r.body_sha256 = hasher
                            .finalize()
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect();
                        log.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                        if !ok {
                            return;
                        }
                        let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok");
                        if (&stream).write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Receiver { url, received }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Emulator {
    pub fn post_json(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{}", self.url, path))
            .json(&body)
            .send()
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path} {body}: {status} {v}");
        v
    }

    /// Creates media of `size` pseudo-random bytes; returns (id, sha256 hex).
    pub fn create_media(&self, mime_type: &str, size: u64) -> (String, String) {
        let v = self.post_json(
            "/_emulator/media",
            serde_json::json!({"mime_type": mime_type, "size": size}),
        );
        (
            v["id"].as_str().unwrap().to_string(),
            v["sha256"].as_str().unwrap().to_string(),
        )
    }
}

/// A request context value for tests (an opaque number the library hands back).
pub fn ctx(n: usize) -> *mut c_void {
    n as *mut c_void
}

// ---------------------------------------------------------------------------------------------
// Fault-matrix and crash-test helpers (tests/faults.rs, tests/crash.rs).

/// Spawns `wa-emulator --listen <listen>` and reads its address; `None` if it exited without
/// printing one (e.g. the port is still taken).
fn spawn_emulator(listen: &str, args: &[&str]) -> Option<(Child, String)> {
    // The test's own blocking reqwest client needs the process-wide rustls provider too.
    whatsapp_connector::graph::install_crypto_provider();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wa-emulator"))
        .args(["--listen", listen, "--exit-on-stdin-eof", "--quiet"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("wa-emulator starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    match line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
    {
        Some(url) => Some((child, url.to_string())),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

impl Emulator {
    /// An emulator on a given loopback port (retried for up to 5 s while the port is still
    /// held, e.g. right after the previous emulator on it was killed).
    pub fn start_on_port(port: u16, args: &[&str]) -> Self {
        let listen = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some((child, url)) = spawn_emulator(&listen, args) {
                return Emulator {
                    child,
                    url,
                    http: direct_http(),
                };
            }
            assert!(
                Instant::now() < deadline,
                "cannot start an emulator on {listen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the emulator URL has a port")
    }

    /// Kills the emulator process (SIGKILL: no state is flushed, connections are reset).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the emulator and starts a new one on the same port after `down`; the new one has
    /// an empty record and default configuration.
    pub fn restart(&mut self, down: Duration, args: &[&str]) {
        self.kill();
        std::thread::sleep(down);
        let fresh = Emulator::start_on_port(self.port(), args);
        // The old process is gone: replacing `self` drops nothing that is still running.
        *self = fresh;
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        let r = self
            .http
            .delete(format!("{}/_emulator/faults", self.url))
            .send()
            .expect("faults cleared");
        assert!(r.status().is_success(), "DELETE /_emulator/faults refused");
    }
}

/// The directory holding the test binary's profile output (target/debug), where the shared
/// library is.
pub fn profile_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// Compiles a C program (C11, warnings as errors) against the shared library; returns its path.
pub fn build_c_program(source: &std::path::Path, name: &str) -> std::path::PathBuf {
    build_native("cc", &["-std=c11", "-g", "-O1"], source, name)
}

/// Compiles `source` with `compiler` (warnings as errors) against the shared library in the
/// target directory, with an rpath so it runs from anywhere.
pub fn build_native(
    compiler: &str,
    flags: &[&str],
    source: &std::path::Path,
    name: &str,
) -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib_dir = profile_dir();
    let out = lib_dir.join(name);
    assert!(
        lib_dir.join("libwhatsapp_connector.so").exists(),
        "build the shared library first: cargo build --lib (scripts/test.sh does)"
    );
    let status = Command::new(compiler)
        .args(flags)
        .args(["-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(manifest.join("include"))
        .arg(source)
        .arg("-o")
        .arg(&out)
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lwhatsapp_connector")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .status()
        .unwrap_or_else(|e| panic!("{compiler} is needed for this test: {e}"));
    assert!(
        status.success(),
        "{compiler} failed to build {}",
        source.display()
    );
    out
}

/// A TLS server on loopback whose certificate no CA vouches for (tests/data: self-signed, for
/// 127.0.0.1); it counts the connections that reached it.
pub struct UntrustedTls {
    pub url: String,
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl UntrustedTls {
    pub fn start() -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        whatsapp_connector::graph::install_crypto_provider();
        let cert = CertificateDer::from_pem_slice(include_bytes!("../data/untrusted-cert.pem"))
            .expect("certificate");
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("../data/untrusted-key.pem"))
            .expect("key");
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .expect("server config"),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let config = config.clone();
                std::thread::spawn(move || {
                    use std::io::Read;
                    let connection = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(connection, stream);
                    // The client gives up during the handshake.
                    let _ = tls.read(&mut [0u8; 64]);
                });
            }
        });
        UntrustedTls { url, connections }
    }
}
