//! Shared emulator state: run-time configuration, the request recording, fault rules, rate-limit
//! windows and wamid issuing. Every lock here is a short `std::sync::Mutex` critical section that
//! never spans an `.await`, so connections on different worker threads never wait on each other
//! for longer than a push or a scan.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::media::MediaStore;
use crate::onboarding::Onboarding;
use crate::webhook::Hub;

/// Default pair-limit window when only `--pair-limit` is given (Meta: about one message per 6 s).
pub const DEFAULT_PAIR_WINDOW_MS: u64 = 6000;

/// Settings that `POST /_emulator/config` may replace while the emulator runs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Config {
    pub tokens: Vec<String>,
    pub throughput_mps: Option<u32>,
    pub pair_limit: Option<PairLimit>,
    pub latency_ms: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PairLimit {
    pub max: u32,
    #[serde(default = "default_pair_window_ms")]
    pub window_ms: u64,
}

fn default_pair_window_ms() -> u64 {
    DEFAULT_PAIR_WINDOW_MS
}

/// Which requests a fault rule applies to; every field given must match.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
}

/// A Graph error to answer instead of handling the request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultError {
    pub code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
}

/// What to do to a matching request. The parts combine: the delay runs first, then the
/// connection is dropped, or the error / raw answer is sent, or (with only a delay) the request
/// is handled normally.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<FaultError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<bool>,
    /// Accept the send (200) but report it failed through a `failed` status webhook, the way
    /// Meta reports 131026/131047/131049 and friends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_error: Option<AsyncError>,
}

/// The error a `failed` status webhook carries for an `async_error` fault.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncError {
    pub code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// The body of `POST /_emulator/faults`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    #[serde(default, rename = "match")]
    pub matcher: FaultMatch,
    #[serde(default)]
    pub times: Option<u64>,
    pub action: FaultAction,
}

#[derive(Clone, Debug, Serialize)]
pub struct FaultRule {
    pub id: u64,
    #[serde(rename = "match")]
    pub matcher: FaultMatch,
    /// Applications left; `None` means the rule never expires.
    pub times: Option<u64>,
    pub applied: u64,
    pub action: FaultAction,
}

/// The facts about a request that fault rules match on.
pub struct FaultSubject<'a> {
    pub path: &'a str,
    pub phone_number_id: Option<&'a str>,
    pub to: Option<&'a str>,
    pub message_type: Option<&'a str>,
}

impl FaultMatch {
    fn matches(&self, subject: &FaultSubject<'_>) -> bool {
        if let Some(wanted) = &self.to {
            // Compared as digits so "+1 (650) 555-1234" matches "16505551234".
            let Some(to) = subject.to else { return false };
            if digits_only(wanted) != digits_only(to) {
                return false;
            }
        }
        if let Some(wanted) = &self.phone_number_id {
            if subject.phone_number_id != Some(wanted.as_str()) {
                return false;
            }
        }
        if let Some(wanted) = &self.message_type {
            if subject.message_type != Some(wanted.as_str()) {
                return false;
            }
        }
        if let Some(fragment) = &self.path_contains {
            if !subject.path.contains(fragment.as_str()) {
                return false;
            }
        }
        true
    }
}

pub fn digits_only(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// Counters behind `GET /_emulator/stats`; they survive record eviction, not a reset.
#[derive(Default)]
struct Stats {
    requests: u64,
    accepted_sends: u64,
    by_status: BTreeMap<u16, u64>,
}

/// Why a send was refused by a rate limit.
pub enum RateLimited {
    Throughput,
    Pair,
}

/// Sliding windows of accepted-send instants, per phone-number-id and per (id, recipient).
struct RateWindows {
    per_number: HashMap<String, VecDeque<Instant>>,
    per_pair: HashMap<(String, String), VecDeque<Instant>>,
    /// Map size at which idle windows are next swept (see [`SWEEP_THRESHOLD`]).
    next_sweep_at: usize,
}

impl Default for RateWindows {
    fn default() -> Self {
        RateWindows {
            per_number: HashMap::new(),
            per_pair: HashMap::new(),
            next_sweep_at: SWEEP_THRESHOLD,
        }
    }
}

/// Windows are only pruned when touched; idle ones are swept once the maps grow this large, so a
/// benchmark over many recipients cannot grow memory without bound. The next sweep waits until
/// the maps double, keeping the cost amortised O(1) per send.
const SWEEP_THRESHOLD: usize = 100_000;

fn prune(window: &mut VecDeque<Instant>, now: Instant, length: Duration) {
    while window
        .front()
        .is_some_and(|oldest| now.duration_since(*oldest) >= length)
    {
        window.pop_front();
    }
}

pub struct AppState {
    started: Instant,
    startup_config: Config,
    config: RwLock<Arc<Config>>,
    record_limit: usize,
    pub quiet: bool,
    next_seq: AtomicU64,
    records: Mutex<VecDeque<Arc<Record>>>,
    stats: Mutex<Stats>,
    faults: Mutex<Vec<FaultRule>>,
    next_fault_id: AtomicU64,
    windows: Mutex<RateWindows>,
    /// Random per run, embedded in every wamid so that outgoing ids can be recognised later
    /// without remembering each one.
    run_tag: u32,
    next_wamid: AtomicU64,
    next_inbound_wamid: AtomicU64,
    /// Uploaded, control-created and webhook-announced media, served by the media routes.
    pub media: MediaStore,
    /// Webhook configuration, delivery queue and delivery log.
    pub webhooks: Hub,
    /// Embedded Signup: codes, issued tokens, subscriptions, registrations.
    pub onboarding: Onboarding,
}

/// Locks a mutex even if a panicking thread poisoned it: the data is plain bookkeeping that stays
/// usable, and one failed request must not take the whole emulator down.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AppState {
    pub fn new(
        config: Config,
        record_limit: usize,
        quiet: bool,
        webhooks: Hub,
        onboarding: Onboarding,
    ) -> Self {
        AppState {
            started: Instant::now(),
            startup_config: config.clone(),
            config: RwLock::new(Arc::new(config)),
            record_limit: record_limit.max(1),
            quiet,
            next_seq: AtomicU64::new(1),
            records: Mutex::new(VecDeque::new()),
            stats: Mutex::new(Stats::default()),
            faults: Mutex::new(Vec::new()),
            next_fault_id: AtomicU64::new(1),
            windows: Mutex::new(RateWindows::default()),
            run_tag: fastrand::u32(..) & 0x00ff_ffff,
            next_wamid: AtomicU64::new(1),
            next_inbound_wamid: AtomicU64::new(1),
            media: MediaStore::default(),
            webhooks,
            onboarding,
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    // ----- configuration -----

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_config(&self, config: Config) {
        *self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
    }

    /// Replaces the config with `change(current)` under the write lock, so that concurrent
    /// changes (a `POST /_emulator/config`, a token issued by the OAuth exchange) cannot lose
    /// each other. Returns the new config.
    pub fn update_config(
        &self,
        change: impl FnOnce(&Config) -> Result<Config, String>,
    ) -> Result<Arc<Config>, String> {
        let mut config = self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *config = Arc::new(change(&config)?);
        Ok(config.clone())
    }

    /// Adds a bearer token (one issued by the OAuth code exchange) to the accepted ones.
    pub fn accept_token(&self, token: String) {
        let _ = self.update_config(|current| {
            let mut updated = current.clone();
            updated.tokens.push(token);
            Ok(updated)
        });
    }

    // ----- recording -----

    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Stores one finished request. `seq` was taken on arrival so the order is arrival order even
    /// when a delayed request finishes late; recording inserts it in place.
    pub fn record(&self, entry: Record, accepted_send: bool) {
        let seq = entry.seq;
        let status = entry.response_status;
        {
            let mut stats = lock(&self.stats);
            stats.requests += 1;
            if accepted_send {
                stats.accepted_sends += 1;
            }
            if let Some(status) = status {
                *stats.by_status.entry(status).or_insert(0) += 1;
            }
        }
        let entry = Arc::new(entry);
        let mut records = lock(&self.records);
        // Almost always appended at the end; a request that waited on a delay is slotted back
        // by seq, scanning from the newest end.
        let position = records
            .iter()
            .rposition(|existing| existing.seq < seq)
            .map_or(0, |index| index + 1);
        records.insert(position, entry);
        while records.len() > self.record_limit {
            records.pop_front();
        }
    }

    /// Matching records, oldest first. Only `Arc`s are cloned under the lock; the caller renders
    /// JSON after releasing it so a large listing does not stall request handling.
    pub fn requests(&self, since: Option<u64>, path_contains: Option<&str>) -> Vec<Arc<Record>> {
        let records = lock(&self.records);
        records
            .iter()
            .filter(|entry| since.is_none_or(|since| entry.seq > since))
            .filter(|entry| path_contains.is_none_or(|fragment| entry.path.contains(fragment)))
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.records).clear();
    }

    pub fn stats_json(&self) -> Value {
        let stats = lock(&self.stats);
        let by_status: serde_json::Map<String, Value> = stats
            .by_status
            .iter()
            .map(|(status, count)| (status.to_string(), json!(count)))
            .collect();
        json!({
            "requests": stats.requests,
            "accepted_sends": stats.accepted_sends,
            "by_status": by_status,
        })
    }

    // ----- faults -----

    pub fn add_fault(&self, request: FaultRequest) -> u64 {
        let id = self.next_fault_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.faults).push(FaultRule {
            id,
            matcher: request.matcher,
            times: request.times,
            applied: 0,
            action: request.action,
        });
        id
    }

    pub fn faults(&self) -> Vec<FaultRule> {
        lock(&self.faults).clone()
    }

    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// Finds the first live rule matching the request, counts one application (removing the rule
    /// when it is used up) and returns its id and action.
    pub fn take_fault(&self, subject: &FaultSubject<'_>) -> Option<(u64, FaultAction)> {
        let mut faults = lock(&self.faults);
        let index = faults
            .iter()
            .position(|rule| rule.times != Some(0) && rule.matcher.matches(subject))?;
        let rule = &mut faults[index];
        rule.applied += 1;
        if let Some(times) = rule.times.as_mut() {
            *times -= 1;
        }
        let taken = (rule.id, rule.action.clone());
        if rule.times == Some(0) {
            faults.remove(index);
        }
        Some(taken)
    }

    // ----- rate limits -----

    /// Counts one send for the number and the pair unless a configured limit is already reached;
    /// refused sends are not counted, as only accepted sends use up Meta's quota.
    pub fn admit_send(
        &self,
        config: &Config,
        phone_number_id: &str,
        recipient: &str,
    ) -> Result<(), RateLimited> {
        if config.throughput_mps.is_none() && config.pair_limit.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        let mut windows = lock(&self.windows);
        let pair_length = config
            .pair_limit
            .map_or(Duration::ZERO, |pair| Duration::from_millis(pair.window_ms));
        if windows.per_number.len() + windows.per_pair.len() > windows.next_sweep_at {
            windows.per_number.retain(|_, window| {
                window
                    .back()
                    .is_some_and(|last| now.duration_since(*last) < Duration::from_secs(1))
            });
            windows.per_pair.retain(|_, window| {
                window
                    .back()
                    .is_some_and(|last| now.duration_since(*last) < pair_length)
            });
            let remaining = windows.per_number.len() + windows.per_pair.len();
            windows.next_sweep_at = SWEEP_THRESHOLD.max(remaining * 2);
        }
        if let Some(limit) = config.throughput_mps {
            let window = windows
                .per_number
                .entry(phone_number_id.to_string())
                .or_default();
            prune(window, now, Duration::from_secs(1));
            if window.len() >= limit as usize {
                return Err(RateLimited::Throughput);
            }
        }
        if let Some(pair) = config.pair_limit {
            let window = windows
                .per_pair
                .entry((phone_number_id.to_string(), recipient.to_string()))
                .or_default();
            prune(window, now, pair_length);
            if window.len() >= pair.max as usize {
                return Err(RateLimited::Pair);
            }
            window.push_back(now);
        }
        if config.throughput_mps.is_some() {
            if let Some(window) = windows.per_number.get_mut(phone_number_id) {
                window.push_back(now);
            }
        }
        Ok(())
    }

    /// Clears requests, faults, counters, rate windows, stored media, the webhook delivery log
    /// and the onboarding state (codes, issued tokens, subscriptions, registrations), and
    /// restores the start-up config (webhook, media and onboarding config included). The wamid
    /// and media id counters keep running so ids stay unique for the whole run.
    pub fn reset(&self) {
        self.clear_requests();
        self.clear_faults();
        *lock(&self.stats) = Stats::default();
        *lock(&self.windows) = RateWindows::default();
        self.media.reset();
        self.set_config(self.startup_config.clone());
        self.webhooks.reset();
        self.onboarding.reset();
    }

    // ----- wamids -----

    /// Issues a wamid shaped like Meta's: base64 of `1C 18 <len> <recipient> 15 02 00 11 18 12
    /// <18 hex chars> 00`, where the hex is the run tag, a counter and a random byte.
    pub fn issue_wamid(&self, recipient: &str) -> String {
        let counter = self.next_wamid.fetch_add(1, Ordering::Relaxed) & 0xff_ffff_ffff;
        let recipient: Vec<u8> = recipient.bytes().take(60).collect();
        let mut raw = Vec::with_capacity(recipient.len() + 30);
        raw.extend_from_slice(&[0x1c, 0x18, recipient.len() as u8]);
        raw.extend_from_slice(&recipient);
        raw.extend_from_slice(&[0x15, 0x02, 0x00, 0x11, 0x18, 0x12]);
        let hex = format!(
            "{:06X}{:010X}{:02X}",
            self.run_tag,
            counter,
            fastrand::u8(..)
        );
        raw.extend_from_slice(hex.as_bytes());
        raw.push(0x00);
        format!("wamid.{}", BASE64.encode(raw))
    }

    /// Issues a wamid for an inbound (user-sent) message, shaped like Meta's inbound ids: base64
    /// of `1C 18 <len> <sender> 15 02 00 12 18 14 <20 hex chars> 00`. The `12 18 14` marker and
    /// length differ from outgoing ids, so [`AppState::is_outgoing_wamid`] never mistakes one
    /// for the other (marking an inbound message as read must work).
    pub fn issue_inbound_wamid(&self, sender: &str) -> String {
        let counter = self.next_inbound_wamid.fetch_add(1, Ordering::Relaxed) & 0xff_ffff_ffff;
        let sender: Vec<u8> = sender.bytes().take(60).collect();
        let mut raw = Vec::with_capacity(sender.len() + 32);
        raw.extend_from_slice(&[0x1c, 0x18, sender.len() as u8]);
        raw.extend_from_slice(&sender);
        raw.extend_from_slice(&[0x15, 0x02, 0x00, 0x12, 0x18, 0x14]);
        let hex = format!("3A{:08X}{counter:010X}", fastrand::u32(..));
        raw.extend_from_slice(hex.as_bytes());
        raw.push(0x00);
        format!("wamid.{}", BASE64.encode(raw))
    }

    /// True when `message_id` is a wamid this run issued for an outgoing message.
    pub fn is_outgoing_wamid(&self, message_id: &str) -> bool {
        let Some(encoded) = message_id.strip_prefix("wamid.") else {
            return false;
        };
        let Ok(raw) = BASE64.decode(encoded) else {
            return false;
        };
        let Some(&recipient_len) = raw.get(2) else {
            return false;
        };
        let hex_start = 3 + recipient_len as usize + 6;
        // The marker bytes before the hex tell outgoing ids from inbound ones.
        if raw.get(hex_start - 3..hex_start) != Some(&[0x11, 0x18, 0x12][..]) {
            return false;
        }
        let Some(hex) = raw.get(hex_start..hex_start + 18) else {
            return false;
        };
        // Client-supplied bytes: only plain ASCII may be sliced by byte offsets below.
        let Ok(hex) = std::str::from_utf8(hex) else {
            return false;
        };
        if !hex.is_ascii() {
            return false;
        }
        let tag = u32::from_str_radix(&hex[..6], 16).ok();
        let counter = u64::from_str_radix(&hex[6..16], 16).ok();
        tag == Some(self.run_tag)
            && counter.is_some_and(|counter| counter < self.next_wamid.load(Ordering::Relaxed))
    }
}

/// One recorded Graph request. Kept as raw text rather than parsed JSON (about ten times smaller
/// in memory); `to_json` rebuilds the documented shape when a test asks for it.
pub struct Record {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `body` holds only the first [`crate::media::RECORDED_BODY_LIMIT`] bytes (large uploads).
    pub body_truncated: bool,
    /// The body parsed as JSON on arrival; `body` is then re-parsed for listings.
    pub body_is_json: bool,
    pub phone_number_id: Option<String>,
    pub to: Option<String>,
    pub message_type: Option<String>,
    pub response_status: Option<u16>,
    /// What was answered: Graph JSON text, a raw fault body, or `None` for a dropped connection.
    pub response: Option<RecordedResponse>,
    pub wamid: Option<String>,
    pub fault_id: Option<u64>,
    pub received_at_ms: u64,
}

pub enum RecordedResponse {
    Json(String),
    Raw(String),
}

impl Record {
    pub fn to_json(&self) -> Value {
        let mut headers = serde_json::Map::new();
        for (name, value) in &self.headers {
            // Repeated headers are joined the way HTTP allows them to be folded.
            match headers.get_mut(name) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(value);
                }
                _ => {
                    headers.insert(name.clone(), Value::String(value.clone()));
                }
            }
        }
        let body = if self.body_is_json {
            serde_json::from_slice(&self.body).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        let response_body = match &self.response {
            Some(RecordedResponse::Json(text)) => serde_json::from_str(text).unwrap_or(Value::Null),
            Some(RecordedResponse::Raw(text)) => Value::String(text.clone()),
            None => Value::Null,
        };
        json!({
            "seq": self.seq,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": headers,
            "body": body,
            "body_text": String::from_utf8_lossy(&self.body),
            "body_truncated": self.body_truncated,
            "phone_number_id": self.phone_number_id,
            "to": self.to,
            "type": self.message_type,
            "response_status": self.response_status,
            "response_body": response_body,
            "wamid": self.wamid,
            "fault_id": self.fault_id,
            "received_at_ms": self.received_at_ms,
        })
    }
}
