//! The webhook driver: builds webhook payloads exactly as Meta sends them (compact JSON in Meta's
//! key order with Graph's escaping), signs the bytes with the app secret, and delivers them to the
//! configured URL through a FIFO queue with exponential-backoff retries. Also performs Meta's
//! verification GET and emits the automatic status webhooks that follow accepted sends.

use std::collections::{HashMap, VecDeque};
use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::graph::{code_title, encode_graph_json};
use crate::media::NewMedia;
use crate::onboarding::PhoneRoute;
use crate::ordered_json::{Json, Object};
use crate::state::{AppState, AsyncError};

pub const DEFAULT_APP_SECRET: &str = "test-app-secret";
pub const DEFAULT_VERIFY_TOKEN: &str = "test-verify-token";
pub const DEFAULT_WABA_ID: &str = "102290129340398";
const DEFAULT_DISPLAY_PHONE_NUMBER: &str = "15550783881";
pub const DEFAULT_PHONE_NUMBER_ID: &str = "106540352242922";
const DEFAULT_SENDER: &str = "16505551234";
const DEFAULT_SENDER_NAME: &str = "Sheena Nelson";
/// The error-code page at its current address (cloud-api.md [S8]: Meta's docs moved from
/// `/docs/whatsapp/cloud-api/…` to `/documentation/business-messaging/whatsapp/…`), the
/// default `href` of status and message errors.
const ERROR_HREF: &str =
    "https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes";
/// The default `href` of value-level errors, relative as in cloud-api.md §5.8's sample.
const VALUE_ERROR_HREF: &str = "/documentation/business-messaging/whatsapp/support/error-codes";
/// Deliveries kept in the log, oldest dropped first, so a long benchmark with auto statuses
/// cannot grow memory without bound.
const DELIVERY_LOG_LIMIT: usize = 10_000;
/// Receiver answers are only kept for inspection; a huge one is cut here.
const RESPONSE_BODY_LIMIT: usize = 64 * 1024;
/// Media types whose inbound content object names a downloadable file.
const MEDIA_TYPES: [&str; 5] = ["image", "audio", "video", "document", "sticker"];
/// Keys of an inbound spec that steer the emulator; every other key is copied into the message.
const INBOUND_CONTROL_KEYS: [&str; 15] = [
    "from",
    "name",
    "username",
    "user_id",
    "parent_user_id",
    "phone_number_id",
    "display_phone_number",
    "waba_id",
    "id",
    "timestamp",
    "type",
    "duplicate",
    "omit_phone",
    "omit_url",
    "context",
];
/// Keys of a status spec that the emulator places itself; others are appended verbatim.
const STATUS_CONTROL_KEYS: [&str; 17] = [
    "id",
    "recipient_type",
    "recipient_participant_id",
    "status",
    "timestamp",
    "recipient_id",
    "recipient_user_id",
    "name",
    "phone_number_id",
    "display_phone_number",
    "waba_id",
    "biz_opaque_callback_data",
    "pricing",
    "errors",
    "duplicate",
    "omit_phone",
    "contacts",
];

// ----- configuration -----

/// Settings of the webhook driver; `POST /_emulator/webhook/config` replaces parts of it.
#[derive(Clone, Debug, Serialize)]
pub struct WebhookConfig {
    pub url: Option<String>,
    pub app_secret: String,
    pub verify_token: String,
    pub auto_statuses: bool,
    pub status_delay_ms: u64,
    pub retry: RetryPolicy,
    pub timeout_ms: u64,
    /// `entry[].id` of every payload unless a spec names another.
    pub waba_id: String,
    /// `metadata.display_phone_number` of every payload unless a spec names another.
    pub display_phone_number: String,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
}

impl WebhookConfig {
    pub fn new(
        url: Option<String>,
        app_secret: Option<String>,
        verify_token: Option<String>,
        auto_statuses: bool,
    ) -> Self {
        WebhookConfig {
            url,
            app_secret: app_secret.unwrap_or_else(|| DEFAULT_APP_SECRET.to_string()),
            verify_token: verify_token.unwrap_or_else(|| DEFAULT_VERIFY_TOKEN.to_string()),
            auto_statuses,
            status_delay_ms: 20,
            retry: RetryPolicy {
                max_attempts: 5,
                initial_backoff_ms: 100,
            },
            timeout_ms: 5000,
            waba_id: DEFAULT_WABA_ID.to_string(),
            display_phone_number: DEFAULT_DISPLAY_PHONE_NUMBER.to_string(),
        }
    }
}

/// Checks a target URL given on the command line or in the config.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!(
            "webhook url '{url}' must start with http:// or https://"
        ))
    }
}

// ----- the hub: config, queue, log -----

/// What the first attempt of a delivery produced.
#[derive(Clone, Debug)]
pub struct AttemptOutcome {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub response_body: String,
}

struct AttemptRecord {
    status: Option<u16>,
    error: Option<String>,
    at_ms: u64,
}

/// One logged delivery (a webhook POST and its attempts).
struct Delivery {
    seq: u64,
    kind: &'static str,
    url: String,
    body: Arc<str>,
    signature: Option<String>,
    signature_sha1: Option<String>,
    attempts: Vec<AttemptRecord>,
    delivered: bool,
    duplicate_of: Option<u64>,
    ids: Vec<String>,
}

impl Delivery {
    fn to_json(&self) -> Value {
        let attempts: Vec<Value> = self
            .attempts
            .iter()
            .map(|attempt| json!({"status": attempt.status, "error": attempt.error, "at_ms": attempt.at_ms}))
            .collect();
        json!({
            "seq": self.seq,
            "kind": self.kind,
            "url": self.url,
            "body": &*self.body,
            "signature": self.signature,
            "signature_sha1": self.signature_sha1,
            "attempts": attempts,
            "delivered": self.delivered,
            "duplicate_of": self.duplicate_of,
            "ids": self.ids,
        })
    }
}

#[derive(Default)]
struct DeliveryLog {
    next_seq: u64,
    entries: VecDeque<Delivery>,
}

/// One attempt waiting in the queue.
struct Job {
    seq: u64,
    /// Reset generation the job belongs to; a reset makes older jobs vanish.
    generation: u64,
    kind: &'static str,
    url: String,
    body: Arc<str>,
    signature: Option<String>,
    signature_sha1: Option<String>,
    /// 1-based number of this attempt.
    attempt: u32,
    /// `None`: a single attempt (raw deliveries).
    retry: Option<RetryPolicy>,
    timeout: Duration,
    /// Send the identical body once more after this one succeeded.
    send_duplicate: bool,
    first_outcome: Option<oneshot::Sender<AttemptOutcome>>,
}

/// A payload ready to be queued.
struct Outgoing {
    kind: &'static str,
    body: String,
    /// `X-Hub-Signature-256` (`sha256=…`).
    signature: Option<String>,
    /// The legacy `X-Hub-Signature` (`sha1=…`).
    signature_sha1: Option<String>,
    retry: bool,
    duplicate: bool,
    ids: Vec<String>,
}

/// Webhook state shared by the control routes, the Graph side (auto statuses) and the
/// delivery workers.
pub struct Hub {
    startup_config: WebhookConfig,
    config: RwLock<Arc<WebhookConfig>>,
    client: reqwest::Client,
    queue: mpsc::UnboundedSender<Job>,
    /// Taken once by [`start_dispatcher`].
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    log: Mutex<DeliveryLog>,
    generation: AtomicU64,
    /// Profile names users gave in inbound messages, by wa_id, so status webhooks to them carry
    /// the same name (Meta's `contacts[].profile.name`).
    names: Mutex<HashMap<String, String>>,
}

/// Locks a mutex even if poisoned: bookkeeping stays usable after a panicking task.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    pub fn new(config: WebhookConfig, client: reqwest::Client) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        Hub {
            startup_config: config.clone(),
            config: RwLock::new(Arc::new(config)),
            client,
            queue,
            receiver: Mutex::new(Some(receiver)),
            log: Mutex::new(DeliveryLog {
                next_seq: 1,
                entries: VecDeque::new(),
            }),
            generation: AtomicU64::new(0),
            names: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> Arc<WebhookConfig> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_config(&self, config: WebhookConfig) {
        *self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
    }

    /// Restores the start-up config, clears the log and abandons queued and retrying jobs.
    pub fn reset(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.set_config(self.startup_config.clone());
        lock(&self.log).entries.clear();
        lock(&self.names).clear();
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Applies the given settings on top of the current config.
    pub fn update_config(&self, body: &Value) -> Result<WebhookConfig, String> {
        let fields = body
            .as_object()
            .ok_or("webhook config: must be a JSON object")?;
        let mut config = (*self.config()).clone();
        let text = |key: &str, value: &Value| -> Result<String, String> {
            value
                .as_str()
                .map(str::to_string)
                .ok_or(format!("{key}: must be a string"))
        };
        let number = |key: &str, value: &Value| -> Result<u64, String> {
            value
                .as_u64()
                .ok_or(format!("{key}: must be a non-negative integer"))
        };
        for (key, value) in fields {
            match key.as_str() {
                "url" => {
                    config.url = match value {
                        Value::Null => None,
                        Value::String(url) if url.is_empty() => None,
                        Value::String(url) => {
                            check_url(url)?;
                            Some(url.clone())
                        }
                        _ => return Err("url: must be a string or null".to_string()),
                    }
                }
                "app_secret" => config.app_secret = text(key, value)?,
                "verify_token" => config.verify_token = text(key, value)?,
                "waba_id" => config.waba_id = text(key, value)?,
                "display_phone_number" => config.display_phone_number = text(key, value)?,
                "auto_statuses" => {
                    config.auto_statuses = value.as_bool().ok_or("auto_statuses: must be a bool")?
                }
                "status_delay_ms" => config.status_delay_ms = number(key, value)?,
                "timeout_ms" => {
                    config.timeout_ms = number(key, value)?;
                    if config.timeout_ms == 0 {
                        return Err("timeout_ms: must be positive".to_string());
                    }
                }
                "retry" => {
                    let retry = value.as_object().ok_or("retry: must be an object")?;
                    for (key, value) in retry {
                        match key.as_str() {
                            "max_attempts" => {
                                let attempts = number("retry.max_attempts", value)?;
                                config.retry.max_attempts = u32::try_from(attempts)
                                    .ok()
                                    .filter(|attempts| *attempts > 0)
                                    .ok_or("retry.max_attempts: must be a positive integer")?;
                            }
                            "initial_backoff_ms" => {
                                config.retry.initial_backoff_ms =
                                    number("retry.initial_backoff_ms", value)?
                            }
                            other => return Err(format!("retry.{other}: unknown field")),
                        }
                    }
                }
                other => return Err(format!("{other}: unknown webhook config field")),
            }
        }
        self.set_config(config.clone());
        Ok(config)
    }

    pub fn deliveries_json(&self) -> Value {
        let log = lock(&self.log);
        let deliveries: Vec<Value> = log.entries.iter().map(Delivery::to_json).collect();
        json!({ "deliveries": deliveries })
    }

    pub fn clear_deliveries(&self) {
        lock(&self.log).entries.clear();
    }

    fn remember_name(&self, wa_id: &str, name: &str) {
        lock(&self.names).insert(wa_id.to_string(), name.to_string());
    }

    fn name_of(&self, wa_id: &str) -> Option<String> {
        lock(&self.names).get(wa_id).cloned()
    }

    /// Logs a delivery and queues its first attempt; returns its seq.
    fn enqueue(
        &self,
        config: &WebhookConfig,
        url: &str,
        outgoing: Outgoing,
        duplicate_of: Option<u64>,
        first_outcome: Option<oneshot::Sender<AttemptOutcome>>,
    ) -> u64 {
        let body: Arc<str> = Arc::from(outgoing.body);
        let seq = {
            let mut log = lock(&self.log);
            let seq = log.next_seq;
            log.next_seq += 1;
            log.entries.push_back(Delivery {
                seq,
                kind: outgoing.kind,
                url: url.to_string(),
                body: body.clone(),
                signature: outgoing.signature.clone(),
                signature_sha1: outgoing.signature_sha1.clone(),
                attempts: Vec::new(),
                delivered: false,
                duplicate_of,
                ids: outgoing.ids,
            });
            while log.entries.len() > DELIVERY_LOG_LIMIT {
                log.entries.pop_front();
            }
            seq
        };
        let job = Job {
            seq,
            generation: self.generation(),
            kind: outgoing.kind,
            url: url.to_string(),
            body,
            signature: outgoing.signature,
            signature_sha1: outgoing.signature_sha1,
            attempt: 1,
            retry: outgoing.retry.then_some(config.retry),
            timeout: Duration::from_millis(config.timeout_ms),
            send_duplicate: outgoing.duplicate,
            first_outcome,
        };
        // The receiver lives as long as the process (the dispatcher never stops), so a send
        // error cannot happen in practice; the waiter then sees a cancelled delivery.
        let _ = self.queue.send(job);
        seq
    }

    fn record_attempt(&self, seq: u64, outcome: &AttemptOutcome, at_ms: u64) {
        let mut log = lock(&self.log);
        // Deliveries are appended in seq order, so the log is sorted and searchable.
        if let Ok(index) = log.entries.binary_search_by_key(&seq, |entry| entry.seq) {
            let entry = &mut log.entries[index];
            entry.attempts.push(AttemptRecord {
                status: outcome.status,
                error: outcome.error.clone(),
                at_ms,
            });
            entry.delivered |= outcome.status == Some(200);
        }
    }
}

// ----- delivery -----

/// Starts the queue consumer: attempts run in queue order, at most `concurrency` at a time
/// (1 = one after another, the way a single subscriber endpoint sees them). Failed attempts
/// are re-queued after their backoff, so a failing delivery does not hold up later ones.
pub fn start_dispatcher(state: Arc<AppState>, concurrency: usize) {
    let Some(mut receiver) = lock(&state.webhooks.receiver).take() else {
        return;
    };
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let Some(job) = receiver.recv().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                run_attempt(&state, job).await;
                drop(slot);
            });
        }
    });
}

async fn run_attempt(state: &Arc<AppState>, mut job: Job) {
    let hub = &state.webhooks;
    if job.generation != hub.generation() {
        return;
    }
    let outcome = post(&hub.client, &job).await;
    hub.record_attempt(job.seq, &outcome, state.elapsed_ms());
    if !state.quiet {
        eprintln!(
            "webhook #{} ({}) attempt {} -> {}",
            job.seq,
            job.kind,
            job.attempt,
            outcome.status.map_or_else(
                || outcome.error.clone().unwrap_or_default(),
                |status| status.to_string()
            ),
        );
    }
    let delivered = outcome.status == Some(200);
    if let Some(waiter) = job.first_outcome.take() {
        // The control call may have given up (client gone); nothing to do then.
        let _ = waiter.send(outcome);
    }
    if delivered {
        if job.send_duplicate {
            // Meta's deliberate duplicate: the identical signed bytes, logged as a delivery of
            // its own that points at the original.
            let config = hub.config();
            let outgoing = Outgoing {
                kind: job.kind,
                body: job.body.to_string(),
                signature: job.signature.clone(),
                signature_sha1: job.signature_sha1.clone(),
                retry: job.retry.is_some(),
                duplicate: false,
                ids: Vec::new(),
            };
            hub.enqueue(&config, &job.url, outgoing, Some(job.seq), None);
        }
        return;
    }
    let Some(retry) = job.retry else { return };
    if job.attempt >= retry.max_attempts {
        return;
    }
    let exponent = (job.attempt - 1).min(30);
    let backoff = retry.initial_backoff_ms.saturating_mul(1u64 << exponent);
    job.attempt += 1;
    let state = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(backoff)).await;
        if job.generation == state.webhooks.generation() {
            let _ = state.webhooks.queue.send(job);
        }
    });
}

/// One POST of a job's body; connection failures and timeouts become an `error` text.
async fn post(client: &reqwest::Client, job: &Job) -> AttemptOutcome {
    let mut request = client
        .post(&job.url)
        .timeout(job.timeout)
        .header("content-type", "application/json")
        .header("user-agent", "facebookexternalua")
        .body(job.body.as_bytes().to_vec());
    if let Some(signature) = &job.signature {
        request = request.header("x-hub-signature-256", signature.as_str());
    }
    if let Some(signature) = &job.signature_sha1 {
        request = request.header("x-hub-signature", signature.as_str());
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let (response_body, error) = read_answer(response).await;
            AttemptOutcome {
                status: Some(status),
                error,
                response_body,
            }
        }
        Err(error) => AttemptOutcome {
            status: None,
            error: Some(describe(&error, job.timeout)),
            response_body: String::new(),
        },
    }
}

async fn read_answer(response: reqwest::Response) -> (String, Option<String>) {
    match response.bytes().await {
        Ok(bytes) => {
            let kept = &bytes[..bytes.len().min(RESPONSE_BODY_LIMIT)];
            (String::from_utf8_lossy(kept).into_owned(), None)
        }
        Err(error) => (
            String::new(),
            Some(format!("reading the answer failed: {error}")),
        ),
    }
}

/// The error with its causes ("error sending request: connection refused"), or a plain timeout.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timeout after {} ms", timeout.as_millis());
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `sha256=<lowercase hex HMAC-SHA256(app_secret, body)>`, Meta's `X-Hub-Signature-256`.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    hex_mac::<Hmac<Sha256>>("sha256", app_secret, body)
}

/// `sha1=<lowercase hex HMAC-SHA1(app_secret, body)>`, Meta's legacy `X-Hub-Signature`, sent
/// next to `X-Hub-Signature-256` over the same bytes.
pub fn sign_sha1(app_secret: &str, body: &[u8]) -> String {
    hex_mac::<Hmac<Sha1>>("sha1", app_secret, body)
}

/// `<prefix>=<lowercase hex MAC>`. HMAC takes keys of any length, so keying never fails; an
/// empty signature would only make the receiver reject the delivery, visible in the test.
fn hex_mac<M: Mac + hmac::digest::KeyInit>(prefix: &str, app_secret: &str, body: &[u8]) -> String {
    let mut text = format!("{prefix}=");
    let Ok(mut mac) = <M as Mac>::new_from_slice(app_secret.as_bytes()) else {
        return text;
    };
    mac.update(body);
    for byte in mac.finalize().into_bytes() {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Encodes, signs and queues a payload, then waits for its first attempt.
async fn deliver_payload(
    state: &AppState,
    config: &WebhookConfig,
    kind: &'static str,
    payload: &Json,
    duplicate: bool,
    ids: Vec<String>,
) -> Result<Value, String> {
    let url = config.url.clone().ok_or_else(no_url)?;
    let body = encode_graph_json(payload);
    let signature = sign(&config.app_secret, body.as_bytes());
    let signature_sha1 = sign_sha1(&config.app_secret, body.as_bytes());
    let outgoing = Outgoing {
        kind,
        body: body.clone(),
        signature: Some(signature.clone()),
        signature_sha1: Some(signature_sha1.clone()),
        retry: true,
        duplicate,
        ids,
    };
    let (seq, outcome) = deliver_and_wait(state, config, &url, outgoing).await?;
    Ok(json!({
        "seq": seq,
        "status": outcome.status,
        "error": outcome.error,
        "attempts": 1,
        "body": body,
        "signature": signature,
        "signature_sha1": signature_sha1,
        "response_body": outcome.response_body,
    }))
}

async fn deliver_and_wait(
    state: &AppState,
    config: &WebhookConfig,
    url: &str,
    outgoing: Outgoing,
) -> Result<(u64, AttemptOutcome), String> {
    let (sender, receiver) = oneshot::channel();
    let seq = state
        .webhooks
        .enqueue(config, url, outgoing, None, Some(sender));
    let outcome = receiver
        .await
        .map_err(|_| "the delivery was abandoned by a reset".to_string())?;
    Ok((seq, outcome))
}

fn no_url() -> String {
    "no webhook url configured: start with --webhook-url or POST /_emulator/webhook/config \
     {\"url\":\"http://...\"}"
        .to_string()
}

// ----- payload building -----

fn unix_seconds_text() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
        .to_string()
}

/// A stable BSUID for a phone number (same number, same id), shaped like Meta's
/// `US.13491208655302741918`.
fn bsuid_for(phone: &str) -> String {
    let digest = Sha256::digest(phone.as_bytes());
    let digits: String = digest
        .iter()
        .take(20)
        .map(|byte| char::from(b'0' + byte % 10))
        .collect();
    format!("US.{digits}")
}

/// A string (or number, rendered as digits) member; `Ok(None)` when absent or null.
fn text_field(spec: &Object, key: &str) -> Result<Option<String>, String> {
    match spec.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(value) => value
            .to_text()
            .map(Some)
            .ok_or(format!("{key}: must be a string")),
    }
}

fn bool_field(spec: &Object, key: &str) -> Result<bool, String> {
    match spec.get(key) {
        None | Some(Json::Null) => Ok(false),
        Some(value) => value.as_bool().ok_or(format!("{key}: must be a bool")),
    }
}

fn as_spec<'a>(value: &'a Json, what: &str) -> Result<&'a Object, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{what}: must be a JSON object"))
}

/// A built message or status with what its change needs.
struct Built {
    item: Json,
    contact: Option<Json>,
    id: String,
    phone_number_id: Option<String>,
}

/// Builds one inbound message object (and its contact) from an inbound spec.
fn build_inbound(state: &AppState, spec: &Object) -> Result<Built, String> {
    let kind = text_field(spec, "type")?
        .filter(|kind| !kind.is_empty())
        .ok_or("type: required (a non-empty string)")?;
    let omit_phone = bool_field(spec, "omit_phone")?;
    let from = text_field(spec, "from")?.unwrap_or_else(|| DEFAULT_SENDER.to_string());
    let user_id = text_field(spec, "user_id")?.unwrap_or_else(|| bsuid_for(&from));
    let name = text_field(spec, "name")?.unwrap_or_else(|| DEFAULT_SENDER_NAME.to_string());
    let id = match text_field(spec, "id")? {
        Some(id) => id,
        None => state.issue_inbound_wamid(&from),
    };
    let timestamp = text_field(spec, "timestamp")?.unwrap_or_else(unix_seconds_text);

    // Meta's order: context first, then sender, id, timestamp, type, then the content.
    let mut message = Object::new();
    if let Some(context) = spec.get("context") {
        message.insert("context", context.clone());
    }
    if !omit_phone {
        message.insert("from", from.as_str());
    }
    message.insert("from_user_id", user_id.as_str());
    message.insert("id", id.as_str());
    message.insert("timestamp", timestamp);
    message.insert("type", kind.as_str());
    let is_media = MEDIA_TYPES.contains(&kind.as_str());
    // The media belongs to the number the message was sent to, when the spec names it.
    let owner = text_field(spec, "phone_number_id")?;
    let with_url = !bool_field(spec, "omit_url")?;
    for (key, value) in spec.iter() {
        if INBOUND_CONTROL_KEYS.contains(&key.as_str()) {
            continue;
        }
        let value = if is_media && *key == kind {
            media_content(state, &kind, value, owner.clone(), with_url)?
        } else {
            value.clone()
        };
        message.insert(key.as_str(), value);
    }
    if is_media && !message.contains_key(&kind) {
        let empty = Json::Object(Object::new());
        let content = media_content(state, &kind, &empty, owner, with_url)?;
        message.insert(kind.as_str(), content);
    }

    // System messages (number changes and the like) come without contacts.
    let contact = (kind != "system").then(|| {
        let mut profile = Object::new().with("name", name.as_str());
        if let Ok(Some(username)) = text_field(spec, "username") {
            profile.insert("username", username);
        }
        let mut contact = Object::new().with("profile", profile);
        if !omit_phone {
            contact.insert("wa_id", from.as_str());
        }
        contact.insert("user_id", user_id.as_str());
        if let Ok(Some(parent)) = text_field(spec, "parent_user_id") {
            contact.insert("parent_user_id", parent);
        }
        Json::Object(contact)
    });
    if !omit_phone {
        state.webhooks.remember_name(&from, &name);
    }
    Ok(Built {
        item: Json::Object(message),
        contact,
        id,
        phone_number_id: text_field(spec, "phone_number_id")?,
    })
}

/// Default MIME type per media kind, as inbound webhooks carry them.
fn default_mime(kind: &str) -> &'static str {
    match kind {
        "image" => "image/jpeg",
        "audio" => "audio/ogg; codecs=opus",
        "video" => "video/mp4",
        "document" => "application/pdf",
        _ => "image/webp",
    }
}

/// A small file that starts like the real format (magic bytes), then random filler.
fn generated_media(mime_type: &str) -> Vec<u8> {
    let essence = mime_type.split(';').next().unwrap_or("").trim();
    let mut bytes: Vec<u8> = match essence {
        "image/jpeg" => vec![0xff, 0xd8, 0xff, 0xe0],
        "image/png" => b"\x89PNG\r\n\x1a\n".to_vec(),
        "image/webp" => b"RIFF\x24\x00\x00\x00WEBPVP8 ".to_vec(),
        "application/pdf" => b"%PDF-1.4\n".to_vec(),
        "audio/ogg" => b"OggS".to_vec(),
        "video/mp4" => b"\x00\x00\x00\x18ftypmp42".to_vec(),
        _ => b"wa-emulator media\n".to_vec(),
    };
    bytes.extend((0..64).map(|_| fastrand::u8(..)));
    bytes
}

/// The content object of a media message: copied verbatim when it names an `id`; otherwise a
/// file is generated and stored, and `mime_type`, `sha256` (base64, as webhooks carry it),
/// `id` and, unless `with_url` is false (the shape before Meta's 2025-11-12 rollout), `url` are
/// filled in (plus `animated`/`voice` for stickers/audio, which Meta always sends). The `url`
/// is a download URL of this emulator with `source=webhook`, as in Meta's captures.
fn media_content(
    state: &AppState,
    kind: &str,
    content: &Json,
    owner: Option<String>,
    with_url: bool,
) -> Result<Json, String> {
    let object = as_spec(content, kind)?;
    if object.contains_key("id") {
        return Ok(content.clone());
    }
    let mime_type =
        text_field(object, "mime_type")?.unwrap_or_else(|| default_mime(kind).to_string());
    let bytes = generated_media(&mime_type);
    let sha256 = BASE64.encode(Sha256::digest(&bytes));
    let id = state
        .media
        .store(NewMedia {
            bytes: bytes.into(),
            mime_type: mime_type.clone(),
            filename: text_field(object, "filename")?,
            owner,
        })
        .id;
    let mut filled = object.clone();
    filled.insert("mime_type", mime_type);
    filled.insert("sha256", sha256);
    filled.insert("id", id.as_str());
    if with_url && !filled.contains_key("url") {
        if let Some(url) = state.media.webhook_url(&id) {
            filled.insert("url", url);
        }
    }
    if kind == "sticker" && !filled.contains_key("animated") {
        filled.insert("animated", false);
    }
    if kind == "audio" && !filled.contains_key("voice") {
        filled.insert("voice", false);
    }
    Ok(Json::Object(filled))
}

/// The `error_data.details` Meta uses for the common asynchronous failures.
fn default_error_details(code: i64) -> Option<&'static str> {
    match code {
        131026 => Some("Message Undeliverable."),
        131047 => Some(
            "Message failed to send because more than 24 hours have passed since the customer \
             last replied to this number.",
        ),
        131049 => Some(
            "In order to maintain a healthy ecosystem engagement, the message failed to be \
             delivered.",
        ),
        131050 => Some(
            "Unable to deliver the message. This recipient has chosen to stop receiving \
             marketing messages on WhatsApp from your business.",
        ),
        _ => None,
    }
}

/// Completes an `errors[]` item to the §3.2 shape: code, title, message (= title),
/// `error_data.details`, href (`default_href` unless the item gives one).
fn full_error(item: &Json, default_href: &str) -> Result<Json, String> {
    let object = as_spec(item, "errors[]")?;
    let code = object
        .get("code")
        .and_then(Json::as_i64)
        .ok_or("errors[].code: required (an integer)")?;
    let title = text_field(object, "title")?.unwrap_or_else(|| code_title(code).to_string());
    let message = text_field(object, "message")?.unwrap_or_else(|| title.clone());
    let details = match object
        .get("error_data")
        .and_then(|data| data.get("details"))
    {
        Some(details) => details.clone(),
        None => Json::String(
            text_field(object, "details")?
                .or_else(|| default_error_details(code).map(str::to_string))
                .unwrap_or_else(|| title.clone()),
        ),
    };
    let href = text_field(object, "href")?.unwrap_or_else(|| default_href.to_string());
    Ok(Json::Object(
        Object::new()
            .with("code", code)
            .with("title", title)
            .with("message", message)
            .with("error_data", Object::new().with("details", details))
            .with("href", href),
    ))
}

/// The pricing object of a `sent` or `delivered` status (cloud-api.md §5.7: "`pricing` appears
/// on `sent` and on one of `delivered`/`read`"): free service conversation unless told otherwise.
fn default_pricing(template: bool) -> Json {
    let (billable, kind, category) = if template {
        (true, "regular", "utility")
    } else {
        (false, "free_customer_service", "service")
    };
    Json::Object(
        Object::new()
            .with("billable", billable)
            .with("pricing_model", "PMP")
            .with("type", kind)
            .with("category", category),
    )
}

/// Builds one status object (and its contact, absent on `failed`) from a status spec.
fn build_status(hub: &Hub, spec: &Object) -> Result<Built, String> {
    let id = text_field(spec, "id")?
        .filter(|id| !id.is_empty())
        .ok_or("id: required (the wamid the status is about)")?;
    let status = text_field(spec, "status")?
        .filter(|status| !status.is_empty())
        .ok_or("status: required (sent, delivered, read, played or failed)")?;
    let omit_phone = bool_field(spec, "omit_phone")?;
    let recipient_id =
        text_field(spec, "recipient_id")?.unwrap_or_else(|| DEFAULT_SENDER.to_string());
    let recipient_user_id =
        text_field(spec, "recipient_user_id")?.unwrap_or_else(|| bsuid_for(&recipient_id));
    let timestamp = text_field(spec, "timestamp")?.unwrap_or_else(unix_seconds_text);
    let failed = status == "failed";
    // Group statuses (Meta's group messaging page): `recipient_id` is the group ID, with
    // `recipient_type: "group"`, no BSUID and no contacts. A participant's receipt adds
    // `recipient_participant_id` (cloud-api.md §5.7): `delivered`, `read` and `played` come
    // from a participant (the emulator's default user unless the spec names one, or null for
    // none); `sent` and `failed` are about the group as a whole, as Meta's samples show them.
    let group = text_field(spec, "recipient_type")?.as_deref() == Some("group");
    let participant = match spec.get("recipient_participant_id") {
        Some(Json::Null) => None,
        Some(_) => text_field(spec, "recipient_participant_id")?,
        None if group && matches!(status.as_str(), "delivered" | "read" | "played") => {
            Some(DEFAULT_SENDER.to_string())
        }
        None => None,
    };

    let mut object = Object::new()
        .with("id", id.as_str())
        .with("status", status.as_str())
        .with("timestamp", timestamp);
    if !omit_phone {
        object.insert("recipient_id", recipient_id.as_str());
    }
    if group {
        object.insert("recipient_type", "group");
    } else {
        object.insert("recipient_user_id", recipient_user_id.as_str());
    }
    if let Some(participant) = participant {
        object.insert("recipient_participant_id", participant);
    }
    if let Some(data) = text_field(spec, "biz_opaque_callback_data")? {
        object.insert("biz_opaque_callback_data", data);
    }
    match spec.get("pricing") {
        Some(Json::Null) => {}
        Some(pricing) => object.insert("pricing", pricing.clone()),
        None if matches!(status.as_str(), "sent" | "delivered") => {
            object.insert("pricing", default_pricing(false));
        }
        None => {}
    }
    for (key, value) in spec.iter() {
        if !STATUS_CONTROL_KEYS.contains(&key.as_str()) {
            object.insert(key.as_str(), value.clone());
        }
    }
    let errors = match spec.get("errors") {
        None | Some(Json::Null) if failed => Some(vec![full_error(
            &Json::Object(Object::new().with("code", 131_000_i64)),
            ERROR_HREF,
        )?]),
        None | Some(Json::Null) => None,
        Some(errors) => Some(
            errors
                .as_array()
                .ok_or("errors: must be an array")?
                .iter()
                .map(|error| full_error(error, ERROR_HREF))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    if let Some(errors) = errors {
        object.insert("errors", errors);
    }

    // Since the 2026 BSUID change statuses carry contacts, except `failed` ones.
    let contact = (!failed && !group).then(|| {
        let name = text_field(spec, "name")
            .ok()
            .flatten()
            .or_else(|| hub.name_of(&recipient_id))
            .unwrap_or_else(|| DEFAULT_SENDER_NAME.to_string());
        let mut contact = Object::new().with("profile", Object::new().with("name", name));
        if !omit_phone {
            contact.insert("wa_id", recipient_id.as_str());
        }
        contact.insert("user_id", recipient_user_id.as_str());
        Json::Object(contact)
    });
    Ok(Built {
        item: Json::Object(object),
        contact,
        id,
        phone_number_id: text_field(spec, "phone_number_id")?,
    })
}

/// One `changes[].value`: metadata, contacts (each distinct one once), messages, statuses.
fn change_value(
    display_phone_number: &str,
    phone_number_id: &str,
    contacts: Vec<Json>,
    messages: Vec<Json>,
    statuses: Vec<Json>,
    errors: Vec<Json>,
) -> Json {
    let mut distinct: Vec<Json> = Vec::new();
    for contact in contacts {
        if !distinct.contains(&contact) {
            distinct.push(contact);
        }
    }
    let mut value = Object::new().with("messaging_product", "whatsapp").with(
        "metadata",
        Object::new()
            .with("display_phone_number", display_phone_number)
            .with("phone_number_id", phone_number_id),
    );
    if !distinct.is_empty() {
        value.insert("contacts", distinct);
    }
    if !messages.is_empty() {
        value.insert("messages", messages);
    }
    if !statuses.is_empty() {
        value.insert("statuses", statuses);
    }
    if !errors.is_empty() {
        value.insert("errors", errors);
    }
    Json::Object(value)
}

/// `{"object":"whatsapp_business_account","entry":[{"id","changes":[{"value","field"}]}]}`.
fn envelope(entries: Vec<(String, Vec<Json>)>) -> Json {
    let entries: Vec<Json> = entries
        .into_iter()
        .map(|(waba_id, values)| {
            let changes: Vec<Json> = values
                .into_iter()
                .map(|value| {
                    Json::Object(Object::new().with("value", value).with("field", "messages"))
                })
                .collect();
            Json::Object(Object::new().with("id", waba_id).with("changes", changes))
        })
        .collect();
    Json::Object(
        Object::new()
            .with("object", "whatsapp_business_account")
            .with("entry", entries),
    )
}

fn parse_spec(body: &[u8]) -> Result<Json, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Json::Object(Object::new()));
    }
    serde_json::from_slice(body).map_err(|error| format!("invalid JSON: {error}"))
}

/// A single-change payload around one built item.
fn single_change(config: &WebhookConfig, spec: &Object, built: Built, is_status: bool) -> Json {
    let display = text_field(spec, "display_phone_number")
        .ok()
        .flatten()
        .unwrap_or_else(|| config.display_phone_number.clone());
    let waba_id = text_field(spec, "waba_id")
        .ok()
        .flatten()
        .unwrap_or_else(|| config.waba_id.clone());
    let phone_number_id = built
        .phone_number_id
        .unwrap_or_else(|| DEFAULT_PHONE_NUMBER_ID.to_string());
    let contacts = built.contact.into_iter().collect();
    let (messages, statuses) = if is_status {
        (Vec::new(), vec![built.item])
    } else {
        (vec![built.item], Vec::new())
    };
    let value = change_value(
        &display,
        &phone_number_id,
        contacts,
        messages,
        statuses,
        Vec::new(),
    );
    envelope(vec![(waba_id, vec![value])])
}

// ----- control routes (called from control.rs) -----

/// `POST /_emulator/webhook/inbound`.
pub async fn inbound(state: &AppState, body: &[u8]) -> Result<Value, String> {
    let spec = parse_spec(body)?;
    let spec = as_spec(&spec, "inbound")?;
    let phone_number_id =
        text_field(spec, "phone_number_id")?.unwrap_or_else(|| DEFAULT_PHONE_NUMBER_ID.to_string());
    let config = config_for_phone(state, &phone_number_id)?;
    config.url.as_ref().ok_or_else(no_url)?;
    let built = build_inbound(state, spec)?;
    let id = built.id.clone();
    let payload = single_change(&config, spec, built, false);
    let duplicate = bool_field(spec, "duplicate")?;
    let delivery = deliver_payload(
        state,
        &config,
        "inbound",
        &payload,
        duplicate,
        vec![id.clone()],
    )
    .await?;
    Ok(json!({"id": id, "delivery": delivery}))
}

/// `POST /_emulator/webhook/status`.
pub async fn status(state: &AppState, body: &[u8]) -> Result<Value, String> {
    let spec = parse_spec(body)?;
    let spec = as_spec(&spec, "status")?;
    let phone_number_id =
        text_field(spec, "phone_number_id")?.unwrap_or_else(|| DEFAULT_PHONE_NUMBER_ID.to_string());
    let config = config_for_phone(state, &phone_number_id)?;
    config.url.as_ref().ok_or_else(no_url)?;
    let built = build_status(&state.webhooks, spec)?;
    let id = built.id.clone();
    let payload = single_change(&config, spec, built, true);
    let duplicate = bool_field(spec, "duplicate")?;
    let delivery = deliver_payload(
        state,
        &config,
        "status",
        &payload,
        duplicate,
        vec![id.clone()],
    )
    .await?;
    Ok(json!({"id": id, "delivery": delivery}))
}

/// The fields a change of `POST /_emulator/webhook/batch` may hold.
const BATCH_CHANGE_KEYS: [&str; 5] = [
    "phone_number_id",
    "display_phone_number",
    "messages",
    "statuses",
    "errors",
];

/// `POST /_emulator/webhook/batch`: several entries / changes / messages / statuses in ONE POST.
pub async fn batch(state: &AppState, body: &[u8]) -> Result<Value, String> {
    let config = state.webhooks.config();
    // As on Meta, an app callback URL comes first (overrides are set on top of it).
    config.url.as_ref().ok_or_else(no_url)?;
    // Routed like Meta's deliveries (cloud-api.md §5.10): by the first change's phone number.
    let mut routed: Option<Arc<WebhookConfig>> = None;
    let spec = parse_spec(body)?;
    let spec = as_spec(&spec, "batch")?;
    let entry_specs = spec
        .get("entries")
        .and_then(Json::as_array)
        .filter(|entries| !entries.is_empty())
        .ok_or("entries: required (a non-empty array)")?;
    let mut ids = Vec::new();
    let mut entries = Vec::new();
    for (entry_index, entry_spec) in entry_specs.iter().enumerate() {
        let entry_spec = as_spec(entry_spec, &format!("entries[{entry_index}]"))?;
        let explicit_waba_id = text_field(entry_spec, "id")?;
        let mut entry_route: Option<Arc<WebhookConfig>> = None;
        let change_specs = entry_spec
            .get("changes")
            .and_then(Json::as_array)
            .filter(|changes| !changes.is_empty())
            .ok_or(format!(
                "entries[{entry_index}].changes: required (a non-empty array)"
            ))?;
        let mut values = Vec::new();
        for (change_index, change_spec) in change_specs.iter().enumerate() {
            let path = format!("entries[{entry_index}].changes[{change_index}]");
            let change_spec = as_spec(change_spec, &path)?;
            if let Some((key, _)) = change_spec
                .iter()
                .find(|(key, _)| !BATCH_CHANGE_KEYS.contains(&key.as_str()))
            {
                return Err(format!(
                    "{path}.{key}: unknown field (allowed: {})",
                    BATCH_CHANGE_KEYS.join(", ")
                ));
            }
            let list = |key: &str| -> Result<&[Json], String> {
                match change_spec.get(key) {
                    None | Some(Json::Null) => Ok(&[]),
                    Some(items) => items
                        .as_array()
                        .ok_or(format!("{path}.{key}: must be an array")),
                }
            };
            let mut first_phone_number_id = None;
            let mut contacts = Vec::new();
            let mut messages = Vec::new();
            for (index, message_spec) in list("messages")?.iter().enumerate() {
                let message_spec = as_spec(message_spec, &format!("{path}.messages[{index}]"))?;
                let built = build_inbound(state, message_spec)
                    .map_err(|reason| format!("{path}.messages[{index}].{reason}"))?;
                first_phone_number_id = first_phone_number_id.or(built.phone_number_id);
                contacts.extend(built.contact);
                ids.push(built.id);
                messages.push(built.item);
            }
            let mut statuses = Vec::new();
            for (index, status_spec) in list("statuses")?.iter().enumerate() {
                let status_spec = as_spec(status_spec, &format!("{path}.statuses[{index}]"))?;
                let built = build_status(&state.webhooks, status_spec)
                    .map_err(|reason| format!("{path}.statuses[{index}].{reason}"))?;
                first_phone_number_id = first_phone_number_id.or(built.phone_number_id);
                contacts.extend(built.contact);
                ids.push(built.id);
                statuses.push(built.item);
            }
            // Value-level errors (cloud-api.md §5.8): system or account problems, no wamid.
            let mut errors = Vec::new();
            for (index, error_spec) in list("errors")?.iter().enumerate() {
                let error = full_error(error_spec, VALUE_ERROR_HREF).map_err(|reason| {
                    format!(
                        "{path}.errors[{index}]{}",
                        reason.strip_prefix("errors[]").unwrap_or(&reason)
                    )
                })?;
                errors.push(error);
            }
            if messages.is_empty() && statuses.is_empty() && errors.is_empty() {
                return Err(format!(
                    "{path}: needs at least one of messages, statuses, errors"
                ));
            }
            let phone_number_id = text_field(change_spec, "phone_number_id")?
                .or(first_phone_number_id)
                .unwrap_or_else(|| DEFAULT_PHONE_NUMBER_ID.to_string());
            if entry_route.is_none() {
                entry_route = Some(config_for_phone(state, &phone_number_id)?);
            }
            let display = text_field(change_spec, "display_phone_number")?
                .unwrap_or_else(|| config.display_phone_number.clone());
            values.push(change_value(
                &display,
                &phone_number_id,
                contacts,
                messages,
                statuses,
                errors,
            ));
        }
        let entry_route = entry_route.unwrap_or_else(|| config.clone());
        // entry.id is the WABA that owns the number (§5.3), unless the spec names one.
        let waba_id = explicit_waba_id.unwrap_or_else(|| entry_route.waba_id.clone());
        routed.get_or_insert(entry_route);
        entries.push((waba_id, values));
    }
    let routed = routed.unwrap_or(config);
    routed.url.as_ref().ok_or_else(no_url)?;
    let payload = envelope(entries);
    let duplicate = bool_field(spec, "duplicate")?;
    let delivery =
        deliver_payload(state, &routed, "batch", &payload, duplicate, ids.clone()).await?;
    Ok(json!({"ids": ids, "delivery": delivery}))
}

/// `POST /_emulator/webhook/raw`: exact bytes (or JSON with Meta's escaping), a real, given or
/// missing signature, one attempt, no retry.
pub async fn raw(state: &AppState, body: &[u8]) -> Result<Value, String> {
    let config = state.webhooks.config();
    let url = config.url.clone().ok_or_else(no_url)?;
    let spec = parse_spec(body)?;
    let spec = as_spec(&spec, "raw")?;
    let body = match (spec.get("body_text"), spec.get("body")) {
        (Some(Json::String(text)), None) => text.clone(),
        (Some(_), None) => return Err("body_text: must be a string".to_string()),
        (None, Some(json)) => encode_graph_json(json),
        _ => return Err("exactly one of body_text / body is required".to_string()),
    };
    let signature = match spec.get("signature") {
        None => Some(sign(&config.app_secret, body.as_bytes())),
        Some(Json::Null) => None,
        Some(Json::String(given)) => Some(given.clone()),
        Some(_) => return Err("signature: must be a string or null".to_string()),
    };
    // Absent: the real one, unless `signature` was given or null (a forged or missing
    // X-Hub-Signature-256 must not be rescued by a valid legacy header).
    let signature_sha1 = match spec.get("signature_sha1") {
        None if spec.get("signature").is_none() => {
            Some(sign_sha1(&config.app_secret, body.as_bytes()))
        }
        None | Some(Json::Null) => None,
        Some(Json::String(given)) => Some(given.clone()),
        Some(_) => return Err("signature_sha1: must be a string or null".to_string()),
    };
    let outgoing = Outgoing {
        kind: "raw",
        body,
        signature,
        signature_sha1,
        retry: false,
        duplicate: false,
        ids: Vec::new(),
    };
    let (seq, outcome) = deliver_and_wait(state, &config, &url, outgoing).await?;
    Ok(json!({
        "seq": seq,
        "status": outcome.status,
        "body": outcome.response_body,
        "error": outcome.error,
    }))
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn query_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The outcome of one verification GET.
pub struct Verification {
    pub challenge: String,
    /// `None` when no HTTP answer came (connection failure, timeout).
    pub status: Option<u16>,
    pub body: String,
    pub error: Option<String>,
}

/// Meta's subscription handshake: `GET <url>?hub.mode=subscribe&hub.challenge=<random digits>
/// &hub.verify_token=<token>` (no redirects followed). Used by `POST /_emulator/webhook/verify`
/// and by `subscribed_apps` with an override callback URI.
pub async fn verification_get(
    state: &AppState,
    url: &str,
    verify_token: &str,
    timeout: Duration,
) -> Verification {
    // Meta's challenges are 9-10 digit numbers; no leading zero so it also reads as an int.
    let challenge = format!(
        "{}{:09}",
        fastrand::u8(1..10),
        fastrand::u32(..1_000_000_000)
    );
    let separator = if url.contains('?') { '&' } else { '?' };
    let target = format!(
        "{url}{separator}hub.mode=subscribe&hub.challenge={challenge}&hub.verify_token={}",
        query_encode(verify_token)
    );
    let sent = state
        .webhooks
        .client
        .get(target)
        .timeout(timeout)
        .header("user-agent", "facebookexternalua")
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let (body, error) = read_answer(response).await;
            Verification {
                challenge,
                status: Some(status),
                body,
                error,
            }
        }
        // Without the URL: it carries the verify token, which answers must not echo.
        Err(error) => Verification {
            challenge,
            status: None,
            body: String::new(),
            error: Some(describe(&error.without_url(), timeout)),
        },
    }
}

/// `POST /_emulator/webhook/verify`: Meta's subscription handshake against the configured url.
pub async fn verify(state: &AppState, body: &[u8]) -> Result<Value, String> {
    let config = state.webhooks.config();
    let url = config.url.clone().ok_or_else(no_url)?;
    let spec = parse_spec(body)?;
    let spec = as_spec(&spec, "verify")?;
    let token = text_field(spec, "verify_token")?.unwrap_or_else(|| config.verify_token.clone());
    let timeout = Duration::from_millis(config.timeout_ms);
    let verification = verification_get(state, &url, &token, timeout).await;
    Ok(json!({
        "ok": verification.status == Some(200) && verification.body == verification.challenge,
        "status": verification.status,
        "body": verification.body,
        "challenge": verification.challenge,
        "error": verification.error,
    }))
}

/// The webhook config for payloads about `phone_number_id`, following Meta's resolution order
/// (cloud-api.md §5.10: "phone-number override → WABA override → app callback URL") with the
/// number's WABA as `entry[].id` (§5.3). A number whose WABA onboarding knows but the app is not
/// subscribed to gets nothing (`Err` says why); a number under no known WABA uses the
/// configured webhook, with the number's own override as its URL when one was set.
pub fn config_for_phone(
    state: &AppState,
    phone_number_id: &str,
) -> Result<Arc<WebhookConfig>, String> {
    let config = state.webhooks.config();
    match state.onboarding.route_for_phone(phone_number_id) {
        PhoneRoute::Unknown {
            override_callback_uri: None,
        } => Ok(config),
        PhoneRoute::Unknown {
            override_callback_uri: Some(uri),
        } => Ok(Arc::new(WebhookConfig {
            url: Some(uri),
            ..(*config).clone()
        })),
        PhoneRoute::Unsubscribed { waba_id } => Err(format!(
            "phone number {phone_number_id}: the app is not subscribed to its WABA {waba_id} \
             (POST /{{version}}/{waba_id}/subscribed_apps), so Meta delivers no webhooks for it"
        )),
        PhoneRoute::Subscribed {
            waba_id,
            override_callback_uri,
        } => Ok(Arc::new(WebhookConfig {
            url: override_callback_uri.or_else(|| config.url.clone()),
            waba_id,
            ..(*config).clone()
        })),
    }
}

// ----- automatic statuses after sends (called from server.rs) -----

/// What the Graph side knows about an accepted send.
pub struct AcceptedSend {
    pub wamid: String,
    pub phone_number_id: String,
    /// `to` of a group send (`recipient_type` `"group"`).
    pub group_id: Option<String>,
    /// Digits of `to`; `None` for a send to a BSUID (`recipient`) or a group.
    pub wa_id: Option<String>,
    pub bsuid: Option<String>,
    pub biz_opaque_callback_data: Option<String>,
    pub template: bool,
}

/// Queues the status webhooks that follow an accepted send: `sent`, `delivered`, `read`
/// (`status_delay_ms` apart) when auto statuses are on, or one `failed` status for an
/// `async_error` fault (whether or not auto statuses are on: the fault asked for it).
pub fn after_accepted_send(
    state: &Arc<AppState>,
    send: AcceptedSend,
    async_error: Option<AsyncError>,
) {
    let Ok(config) = config_for_phone(state, &send.phone_number_id) else {
        return;
    };
    let Some(url) = config.url.clone() else {
        return;
    };
    if async_error.is_none() && !config.auto_statuses {
        return;
    }
    let state = state.clone();
    let generation = state.webhooks.generation();
    tokio::spawn(async move {
        let statuses: &[&str] = if async_error.is_some() {
            &["failed"]
        } else {
            &["sent", "delivered", "read"]
        };
        for status in statuses {
            tokio::time::sleep(Duration::from_millis(config.status_delay_ms)).await;
            if state.webhooks.generation() != generation {
                return;
            }
            let mut spec = Object::new()
                .with("id", send.wamid.as_str())
                .with("status", *status)
                .with("phone_number_id", send.phone_number_id.as_str());
            match (&send.wa_id, &send.bsuid) {
                _ if send.group_id.is_some() => {
                    let group_id = send.group_id.as_deref().unwrap_or_default();
                    spec.insert("recipient_id", group_id);
                    spec.insert("recipient_type", "group");
                }
                (Some(wa_id), _) => spec.insert("recipient_id", wa_id.as_str()),
                (None, Some(bsuid)) => {
                    spec.insert("omit_phone", true);
                    spec.insert("recipient_user_id", bsuid.as_str());
                }
                (None, None) => {}
            }
            if let Some(data) = &send.biz_opaque_callback_data {
                spec.insert("biz_opaque_callback_data", data.as_str());
            }
            if matches!(*status, "sent" | "delivered") {
                spec.insert("pricing", default_pricing(send.template));
            }
            if let Some(error) = &async_error {
                let mut item = Object::new().with("code", error.code);
                if let Some(title) = &error.title {
                    item.insert("title", title.as_str());
                }
                if let Some(details) = &error.details {
                    item.insert("details", details.as_str());
                }
                spec.insert("errors", vec![Json::Object(item)]);
            }
            let Ok(built) = build_status(&state.webhooks, &spec) else {
                return;
            };
            let payload = single_change(&config, &spec, built, true);
            let body = encode_graph_json(&payload);
            let outgoing = Outgoing {
                kind: "auto_status",
                signature: Some(sign(&config.app_secret, body.as_bytes())),
                signature_sha1: Some(sign_sha1(&config.app_secret, body.as_bytes())),
                body,
                retry: true,
                duplicate: false,
                ids: vec![send.wamid.clone()],
            };
            state.webhooks.enqueue(&config, &url, outgoing, None, None);
        }
    });
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn signature_is_lowercase_hex_hmac() {
        // RFC 4231 test case 2.
        let signature = sign("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            signature,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn legacy_signature_is_lowercase_hex_hmac_sha1() {
        // RFC 2202 test case 2.
        assert_eq!(
            sign_sha1("Jefe", b"what do ya want for nothing?"),
            "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn envelope_keeps_meta_key_order() {
        let value = change_value("1", "2", Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let text = encode_graph_json(&envelope(vec![("9".to_string(), vec![value])]));
        assert_eq!(
            text,
            r#"{"object":"whatsapp_business_account","entry":[{"id":"9","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"2"}},"field":"messages"}]}]}"#
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
