//! Embedded Signup onboarding (cloud-api.md §6): the OAuth code exchange with single-use,
//! expiring codes, `debug_token`, `subscribed_apps` with Meta's verification GET against the
//! override callback URI, the phone number's own webhook override, phone registration with its
//! PIN and rate limit, the `phone_numbers` listing, and the onboarding control endpoints.
//!
//! All state sits behind one short `std::sync::Mutex` section per operation; the only `.await`
//! (the verification GET) runs with the lock released.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hyper::header::CONTENT_TYPE;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::control::{percent_decode, query_param};
use crate::graph::{self, is_graph_id as is_digits, success, GraphError, GraphRequest, Reply};
use crate::state::{AppState, Config};
use crate::webhook::{self, Verification};

/// Meta's exchangeable code is valid 30 seconds (cloud-api.md §6.1).
pub const DEFAULT_CODE_TTL_MS: u64 = 30_000;
pub const DEFAULT_APP_ID: &str = "1234567890";
const APP_NAME: &str = "Emulated App";
/// `expires_in` of a 60-day expiring business token, as Meta answers it.
const EXPIRING_TOKEN_SECONDS: u64 = 5_183_944;
/// Meta: at most 10 register (and separately 10 deregister) calls per number in a moving 72 h
/// window (cloud-api.md §3.4).
const REGISTER_CALLS_PER_WINDOW: usize = 10;
const REGISTER_WINDOW: Duration = Duration::from_secs(72 * 3600);
/// Longest `override_callback_uri` Meta accepts (§5.10).
const MAX_CALLBACK_URI_CHARS: usize = 200;
/// Meta's verification GET gives the subscriber this long to answer.
const VERIFICATION_TIMEOUT: Duration = Duration::from_secs(5);
/// `data_localization_region` values allowed by Local Storage (§6.6).
const LOCALIZATION_REGIONS: &[&str] = &[
    "AU", "ID", "IN", "JP", "SG", "KR", "DE", "CH", "GB", "BR", "BH", "ZA", "AE", "CA",
];
const SCOPES: [&str; 2] = [
    "whatsapp_business_management",
    "whatsapp_business_messaging",
];

/// Settings of `POST /_emulator/onboarding/config` (the first two also come from the CLI).
#[derive(Clone, Debug, Serialize)]
pub struct OnboardingConfig {
    pub app_id: String,
    pub code_ttl_ms: u64,
    /// When set, every register call fails with this Graph error code.
    pub register_fail_code: Option<i64>,
}

/// One code handed to the "browser" by `POST /_emulator/oauth/codes`.
struct Code {
    code: String,
    waba_id: String,
    phone_number_id: String,
    expiring: bool,
    ttl: Duration,
    created: Instant,
    created_at_ms: u64,
    used: bool,
}

impl Code {
    fn expired(&self) -> bool {
        self.created.elapsed() > self.ttl
    }
}

/// A business token issued by a successful exchange.
struct IssuedToken {
    token: String,
    waba_id: String,
    phone_number_id: String,
    /// Unix seconds; `None` for a never-expiring token.
    expires_at: Option<u64>,
    user_id: String,
    issued_at_ms: u64,
}

/// What the emulator knows about one WABA.
#[derive(Default)]
struct Waba {
    subscribed: bool,
    override_callback_uri: Option<String>,
    verify_token: Option<String>,
    last_verification: Option<Value>,
}

/// What the emulator knows about one phone number.
struct Phone {
    waba_id: Option<String>,
    display_phone_number: String,
    pin: Option<String>,
    /// `None` before the first successful register.
    registered: Option<bool>,
    data_localization_region: Option<String>,
    register_calls: u64,
    deregister_calls: u64,
    /// Instants of register calls in the 72 h window.
    recent_registers: VecDeque<Instant>,
    /// Instants of deregister calls in the 72 h window (a separate limit).
    recent_deregisters: VecDeque<Instant>,
    /// The number's own callback override (cloud-api.md §5.10), ahead of its WABA's.
    override_callback_uri: Option<String>,
    verify_token: Option<String>,
    last_verification: Option<Value>,
}

impl Phone {
    fn new(waba_id: Option<String>) -> Self {
        Phone {
            waba_id,
            display_phone_number: format!(
                "+1 555-0{:02}-{:04}",
                fastrand::u8(..100),
                fastrand::u16(..10_000)
            ),
            pin: None,
            registered: None,
            data_localization_region: None,
            register_calls: 0,
            deregister_calls: 0,
            recent_registers: VecDeque::new(),
            recent_deregisters: VecDeque::new(),
            override_callback_uri: None,
            verify_token: None,
            last_verification: None,
        }
    }

    fn status(&self) -> &'static str {
        match self.registered {
            None => "PENDING",
            Some(true) => "CONNECTED",
            Some(false) => "DISCONNECTED",
        }
    }

    /// Counts one register (or deregister) call in its own window; `true` when it is over the
    /// limit.
    fn count_call(&mut self, deregister: bool) -> bool {
        let calls = if deregister {
            &mut self.recent_deregisters
        } else {
            &mut self.recent_registers
        };
        let now = Instant::now();
        while calls
            .front()
            .is_some_and(|oldest| now.duration_since(*oldest) >= REGISTER_WINDOW)
        {
            calls.pop_front();
        }
        calls.push_back(now);
        calls.len() > REGISTER_CALLS_PER_WINDOW
    }
}

struct Inner {
    config: OnboardingConfig,
    codes: Vec<Code>,
    tokens: Vec<IssuedToken>,
    wabas: BTreeMap<String, Waba>,
    phones: BTreeMap<String, Phone>,
}

/// Which kind of object an onboarding route addresses.
#[derive(Clone, Copy)]
enum Object {
    Phone,
    Waba,
}

impl Inner {
    /// Whether `id` names an object Graph would find (cloud-api.md §6.6: an
    /// "unknown/unauthorised ID (400, code 100/33)"). Before any code was created there is no
    /// onboarding state and every id is taken as given (the emulator's defaults, tests that
    /// register arbitrary numbers); once there is, only the ids of codes are known, plus the
    /// emulator's default phone number id and WABA (and the WABA of the webhook config).
    /// Graph's 100/33 answer to `method` on an object this emulator does not know.
    fn require(
        &self,
        object: Object,
        id: &str,
        configured_waba: &str,
        method: &hyper::Method,
    ) -> Result<(), GraphError> {
        if self.knows(object, id, configured_waba) {
            Ok(())
        } else {
            Err(GraphError::unsupported(method, id))
        }
    }

    fn knows(&self, object: Object, id: &str, configured_waba: &str) -> bool {
        if self.codes.is_empty() {
            return true;
        }
        match object {
            Object::Phone => {
                id == webhook::DEFAULT_PHONE_NUMBER_ID
                    || self.codes.iter().any(|code| code.phone_number_id == id)
            }
            Object::Waba => {
                id == webhook::DEFAULT_WABA_ID
                    || id == configured_waba
                    || self.codes.iter().any(|code| code.waba_id == id)
            }
        }
    }

    fn new(config: OnboardingConfig) -> Self {
        Inner {
            config,
            codes: Vec::new(),
            tokens: Vec::new(),
            wabas: BTreeMap::new(),
            phones: BTreeMap::new(),
        }
    }
}

pub struct Onboarding {
    startup_config: OnboardingConfig,
    inner: Mutex<Inner>,
    /// Keeps generated WABA / phone ids unique for the run.
    next_id: AtomicU64,
    started: Instant,
}

impl Onboarding {
    pub fn new(app_id: String, code_ttl_ms: u64) -> Self {
        let config = OnboardingConfig {
            app_id,
            code_ttl_ms,
            register_fail_code: None,
        };
        Onboarding {
            startup_config: config.clone(),
            inner: Mutex::new(Inner::new(config)),
            next_id: AtomicU64::new(1),
            started: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Forgets codes, tokens, subscriptions and registrations; restores the start-up config.
    pub fn reset(&self) {
        *self.lock() = Inner::new(self.startup_config.clone());
    }

    pub fn config(&self) -> OnboardingConfig {
        self.lock().config.clone()
    }

    /// A 15-digit id like Meta's WABA and phone number ids, unique for the run.
    fn fresh_id(&self, leading: u8) -> String {
        let counter = self.next_id.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        format!("{leading}{:08}{counter:06}", fastrand::u32(..100_000_000))
    }

    /// Where Meta routes webhooks about `phone_number_id`, as far as onboarding knows.
    pub fn route_for_phone(&self, phone_number_id: &str) -> PhoneRoute {
        let inner = self.lock();
        let phone = inner.phones.get(phone_number_id);
        // cloud-api.md §5.10: phone-number override → WABA override → app callback URL.
        let phone_override = phone.and_then(|phone| phone.override_callback_uri.clone());
        let Some(waba_id) = phone.and_then(|phone| phone.waba_id.clone()) else {
            return PhoneRoute::Unknown {
                override_callback_uri: phone_override,
            };
        };
        match inner.wabas.get(&waba_id) {
            None => PhoneRoute::Unknown {
                override_callback_uri: phone_override,
            },
            Some(waba) if !waba.subscribed => PhoneRoute::Unsubscribed { waba_id },
            Some(waba) => PhoneRoute::Subscribed {
                override_callback_uri: phone_override
                    .or_else(|| waba.override_callback_uri.clone()),
                waba_id,
            },
        }
    }
}

/// The Graph object a route addresses, for [`Onboarding::check_reach`].
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// A phone number id (`/{id}/messages`, `/media`, `/register`, `/deregister`).
    Phone(&'a str),
    /// A WABA id (`/{id}/subscribed_apps`, `/phone_numbers`).
    Waba(&'a str),
}

impl Onboarding {
    /// Whether the bearer `token` may reach `target`. A business token from the code exchange
    /// is scoped to the WABA of its code (debug_token's `granular_scopes[].target_ids`): it
    /// reaches that WABA and the numbers onboarding knows under it, and nothing else, which
    /// Graph answers as an object that "does not exist, cannot be loaded due to missing
    /// permissions" (cloud-api.md §6.6: unknown/unauthorised ID, 400 code 100/33). Tokens not
    /// issued here (`--token`, `POST /_emulator/config`) are tied to no WABA and reach
    /// everything.
    pub fn check_reach(
        &self,
        token: &str,
        method: &hyper::Method,
        target: Target<'_>,
    ) -> Result<(), GraphError> {
        let inner = self.lock();
        let Some(issued) = inner.tokens.iter().find(|issued| issued.token == token) else {
            return Ok(());
        };
        let (reached, id) = match target {
            Target::Waba(id) => (id == issued.waba_id, id),
            Target::Phone(id) => (
                inner
                    .phones
                    .get(id)
                    .and_then(|phone| phone.waba_id.as_deref())
                    == Some(issued.waba_id.as_str()),
                id,
            ),
        };
        if reached {
            Ok(())
        } else {
            Err(GraphError::unsupported(method, id))
        }
    }
}

/// Webhook routing of one phone number (cloud-api.md §5.10).
pub enum PhoneRoute {
    /// No WABA known for the number: the webhook config decides, with the number's own
    /// override (if one was set) in place of its URL.
    Unknown {
        override_callback_uri: Option<String>,
    },
    /// The number's WABA is known but the app is not subscribed to it: Meta delivers nothing,
    /// overrides or not.
    Unsubscribed { waba_id: String },
    /// Subscribed: the number's override when set, else the WABA's, else the app callback
    /// URL; `entry[].id` is the WABA.
    Subscribed {
        waba_id: String,
        override_callback_uri: Option<String>,
    },
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn random_text(length: usize, alphabet: &[u8]) -> String {
    (0..length)
        .map(|_| char::from(alphabet[fastrand::usize(..alphabet.len())]))
        .collect()
}

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Parameters of a request: the query string, overridden by a form-encoded or JSON-object body
/// (Graph accepts parameters in either place). Values are kept as JSON so a body's types can be
/// checked; query and form values are strings. `access_token` is never a parameter.
fn parameters(request: &GraphRequest) -> Result<Map<String, Value>, GraphError> {
    let mut parameters = Map::new();
    let add_pairs = |text: &str, parameters: &mut Map<String, Value>| {
        for pair in text.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            parameters.insert(percent_decode(key), Value::String(percent_decode(value)));
        }
    };
    add_pairs(&request.query, &mut parameters);
    let content_type = request
        .headers
        .get(CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase())
        .unwrap_or_default();
    if request.body_too_large {
        return Err(GraphError::invalid_parameter(format!(
            "body: larger than {} bytes",
            graph::MAX_BODY_BYTES
        )));
    }
    if request.body.iter().all(u8::is_ascii_whitespace) {
        // No body at all is valid (e.g. the "subscribe without override" call).
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        add_pairs(&String::from_utf8_lossy(&request.body), &mut parameters);
    } else {
        match &request.json {
            Some(Value::Object(fields)) => {
                for (key, value) in fields {
                    parameters.insert(key.clone(), value.clone());
                }
            }
            _ => {
                return Err(GraphError::invalid_parameter(
                    "body: must be a JSON object or application/x-www-form-urlencoded",
                ))
            }
        }
    }
    parameters.remove("access_token");
    Ok(parameters)
}

/// A string parameter; JSON numbers are taken as their digits (a PIN sent as a number).
fn text_parameter(
    parameters: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, GraphError> {
    match parameters.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(GraphError::invalid_parameter(format!(
            "{key}: must be a string"
        ))),
    }
}

fn oauth_error(code: i64, subcode: Option<i64>, message: &str) -> GraphError {
    GraphError {
        http_status: 400,
        code,
        subcode,
        message: message.to_string(),
        error_type: "OAuthException".to_string(),
        details: None,
    }
}

#[derive(Serialize)]
struct TokenBody {
    access_token: String,
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in: Option<u64>,
}

/// `GET /{version}/oauth/access_token?client_id=&client_secret=&code=`: no bearer token. Only a
/// successful exchange consumes the code, so a client that fixes its secret can retry in time.
pub fn exchange_code(state: &AppState, request: &GraphRequest) -> Result<Reply, GraphError> {
    let parameters = parameters(request)?;
    let text = |key: &str| text_parameter(&parameters, key).map(Option::unwrap_or_default);
    let (client_id, client_secret, code) =
        (text("client_id")?, text("client_secret")?, text("code")?);
    // JS-SDK codes are issued without a redirect URI (cloud-api.md §6.2): an absent or empty
    // `redirect_uri` matches, any other value is Meta's mismatch, 36008.
    let redirect_uri = text("redirect_uri")?;
    let app_secret = state.webhooks.config().app_secret.clone();
    let mut inner = state.onboarding.lock();
    if client_id != inner.config.app_id {
        return Err(oauth_error(
            101,
            None,
            "Error validating application. Invalid application ID.",
        ));
    }
    if client_secret != app_secret {
        return Err(oauth_error(100, None, "Error validating client secret."));
    }
    let Some(entry) = inner.codes.iter_mut().find(|entry| entry.code == code) else {
        return Err(oauth_error(100, None, "Invalid verification code format."));
    };
    if !redirect_uri.is_empty() {
        return Err(oauth_error(
            100,
            Some(36008),
            "Error validating verification code. Please make sure your redirect_uri is \
             identical to the one you used in the OAuth dialog request",
        ));
    }
    if entry.used {
        return Err(oauth_error(
            100,
            Some(36009),
            "This authorization code has been used.",
        ));
    }
    if entry.expired() {
        return Err(oauth_error(
            100,
            Some(36007),
            "This authorization code has expired.",
        ));
    }
    entry.used = true;
    let token = format!("EAA{}", random_text(40, ALPHANUMERIC));
    let expires_in = entry.expiring.then_some(EXPIRING_TOKEN_SECONDS);
    let issued = IssuedToken {
        token: token.clone(),
        waba_id: entry.waba_id.clone(),
        phone_number_id: entry.phone_number_id.clone(),
        expires_at: expires_in.map(|seconds| unix_seconds() + seconds),
        user_id: format!("1{:014}", fastrand::u64(..100_000_000_000_000)),
        issued_at_ms: state.onboarding.elapsed_ms(),
    };
    inner.tokens.push(issued);
    drop(inner);
    // A valid bearer token for every Graph route from now on (revocable through the config).
    state.accept_token(token.clone());
    Ok(Reply::new(
        200,
        &TokenBody {
            access_token: token,
            token_type: "bearer",
            expires_in,
        },
    ))
}

#[derive(Serialize)]
struct DebugTokenBody {
    data: DebugTokenData,
}

#[derive(Serialize)]
struct DebugTokenData {
    app_id: String,
    #[serde(rename = "type")]
    token_type: &'static str,
    application: &'static str,
    data_access_expires_at: u64,
    expires_at: u64,
    is_valid: bool,
    scopes: [&'static str; 2],
    granular_scopes: Vec<GranularScope>,
    user_id: String,
}

#[derive(Serialize)]
struct GranularScope {
    scope: &'static str,
    target_ids: Vec<String>,
}

/// `GET /{version}/debug_token?input_token=...`, authorised by a valid bearer token or the app
/// token `APPID|SECRET`. Tokens given with `--token` are described as system-user tokens of the
/// default WABA of the webhook config; unknown ones as invalid, the way Graph answers them (200).
pub fn debug_token(
    state: &AppState,
    config: &Config,
    request: &GraphRequest,
) -> Result<Reply, GraphError> {
    let webhook_config = state.webhooks.config();
    let (app_id, issued) = {
        let inner = state.onboarding.lock();
        let app_token = format!("{}|{}", inner.config.app_id, webhook_config.app_secret);
        if graph::presented_token(request).as_deref() != Some(app_token.as_str()) {
            graph::check_token(config, request)?;
        }
        let input = query_param(&request.query, "input_token").unwrap_or_default();
        if input.is_empty() {
            return Err(GraphError {
                message: "(#100) The parameter input_token is required".to_string(),
                ..GraphError::with_code(100)
            });
        }
        let issued = inner
            .tokens
            .iter()
            .find(|token| token.token == input)
            .map(|token| {
                (
                    token.waba_id.clone(),
                    token.expires_at,
                    token.user_id.clone(),
                )
            });
        let issued = match issued {
            Some(found) => Some(found),
            None if config.tokens.contains(&input) => Some((
                webhook_config.waba_id.clone(),
                None,
                "100000000000001".to_string(),
            )),
            None => None,
        };
        (
            inner.config.app_id.clone(),
            issued.map(|found| (input, found)),
        )
    };
    let Some((input, (waba_id, expires_at, user_id))) = issued else {
        let body = json!({"data": {
            "error": {"code": 190, "message": "Invalid OAuth access token - Cannot parse access token"},
            "is_valid": false,
            "scopes": [],
        }});
        return Ok(Reply::new(200, &body));
    };
    let granular_scopes = SCOPES
        .iter()
        .map(|scope| GranularScope {
            scope,
            target_ids: vec![waba_id.clone()],
        })
        .collect();
    Ok(Reply::new(
        200,
        &DebugTokenBody {
            data: DebugTokenData {
                app_id,
                token_type: "SYSTEM_USER",
                application: APP_NAME,
                data_access_expires_at: 0,
                expires_at: expires_at.unwrap_or(0),
                // A revoked issued token is still described, as invalid.
                is_valid: config.tokens.contains(&input),
                scopes: SCOPES,
                granular_scopes,
                user_id,
            },
        },
    ))
}

#[derive(Serialize)]
struct SubscribedAppsBody {
    data: Vec<SubscribedApp>,
}

#[derive(Serialize)]
struct SubscribedApp {
    whatsapp_business_api_data: AppData,
    #[serde(skip_serializing_if = "Option::is_none")]
    override_callback_uri: Option<String>,
}

#[derive(Serialize)]
struct AppData {
    id: String,
    link: String,
    name: &'static str,
}

/// `GET /{version}/{waba_id}/subscribed_apps`: the app, with its override, or nothing; 100/33
/// for a WABA onboarding does not know.
pub fn list_subscribed_apps(state: &AppState, waba_id: &str) -> Result<Reply, GraphError> {
    let configured_waba = state.webhooks.config().waba_id.clone();
    let inner = state.onboarding.lock();
    inner.require(Object::Waba, waba_id, &configured_waba, &hyper::Method::GET)?;
    let data = match inner.wabas.get(waba_id) {
        Some(waba) if waba.subscribed => vec![SubscribedApp {
            whatsapp_business_api_data: AppData {
                id: inner.config.app_id.clone(),
                link: format!(
                    "https://www.facebook.com/games/?app_id={}",
                    inner.config.app_id
                ),
                name: APP_NAME,
            },
            override_callback_uri: waba.override_callback_uri.clone(),
        }],
        _ => Vec::new(),
    };
    Ok(Reply::new(200, &SubscribedAppsBody { data }))
}

/// `DELETE /{version}/{waba_id}/subscribed_apps`: unsubscribes (and forgets the override).
pub fn unsubscribe(state: &AppState, waba_id: &str) -> Result<Reply, GraphError> {
    let configured_waba = state.webhooks.config().waba_id.clone();
    let mut inner = state.onboarding.lock();
    inner.require(
        Object::Waba,
        waba_id,
        &configured_waba,
        &hyper::Method::DELETE,
    )?;
    let waba = inner.wabas.entry(waba_id.to_string()).or_default();
    waba.subscribed = false;
    waba.override_callback_uri = None;
    waba.verify_token = None;
    Ok(success())
}

/// `POST /{version}/{waba_id}/subscribed_apps`: subscribes; with `override_callback_uri` and
/// `verify_token` Meta first verifies the URI with a GET and refuses (2200) unless it echoes
/// the challenge. No body (or an empty URI) subscribes and clears the override.
pub async fn subscribe(
    state: &AppState,
    request: &GraphRequest,
    waba_id: &str,
) -> Result<Reply, GraphError> {
    let configured_waba = state.webhooks.config().waba_id.clone();
    state.onboarding.lock().require(
        Object::Waba,
        waba_id,
        &configured_waba,
        &hyper::Method::POST,
    )?;
    let parameters = parameters(request)?;
    let uri = text_parameter(&parameters, "override_callback_uri")?.filter(|uri| !uri.is_empty());
    let Some(uri) = uri else {
        let mut inner = state.onboarding.lock();
        let waba = inner.wabas.entry(waba_id.to_string()).or_default();
        waba.subscribed = true;
        waba.override_callback_uri = None;
        waba.verify_token = None;
        return Ok(success());
    };
    let verify_token = text_parameter(&parameters, "verify_token")?;
    let verified = verify_override(state, "", &uri, verify_token).await?;
    let mut inner = state.onboarding.lock();
    let waba = inner.wabas.entry(waba_id.to_string()).or_default();
    waba.last_verification = Some(verified.record);
    if let Some(error) = verified.failure {
        return Err(error);
    }
    waba.subscribed = true;
    waba.override_callback_uri = Some(uri);
    waba.verify_token = Some(verified.verify_token);
    Ok(success())
}

/// The outcome of [`verify_override`].
struct Verified {
    verify_token: String,
    /// Kept as the object's `last_verification`.
    record: Value,
    /// The 2200 answer when Meta's GET did not pass.
    failure: Option<GraphError>,
}

/// Checks a non-empty `override_callback_uri` (at most 200 characters, http(s)) and its
/// required `verify_token`, then runs Meta's verification GET against it (cloud-api.md §5.10),
/// for the WABA and the phone-number override alike. `prefix` names the enclosing parameter
/// in error details (`webhook_configuration.`).
async fn verify_override(
    state: &AppState,
    prefix: &str,
    uri: &str,
    verify_token: Option<String>,
) -> Result<Verified, GraphError> {
    if uri.chars().count() > MAX_CALLBACK_URI_CHARS {
        return Err(GraphError::invalid_parameter(format!(
            "{prefix}override_callback_uri: longer than {MAX_CALLBACK_URI_CHARS} characters"
        )));
    }
    webhook::check_url(uri).map_err(|_| {
        GraphError::invalid_parameter(format!(
            "{prefix}override_callback_uri: must be an http(s) URL"
        ))
    })?;
    let verify_token = verify_token.ok_or_else(|| {
        GraphError::invalid_parameter(format!(
            "{prefix}verify_token: required with override_callback_uri"
        ))
    })?;
    let verification =
        webhook::verification_get(state, uri, &verify_token, VERIFICATION_TIMEOUT).await;
    let failure = verification_failure(&verification);
    let record = json!({
        "uri": uri,
        "verify_token": verify_token,
        "challenge": verification.challenge,
        "status": verification.status,
        "body": verification.body,
        "error": verification.error,
        "ok": failure.is_none(),
        "at_ms": state.elapsed_ms(),
    });
    let failure = failure.map(|reason| GraphError {
        http_status: 400,
        message: format!(
            "(#2200) Callback verification failed with the following errors: {reason}"
        ),
        ..GraphError::with_code(2200)
    });
    Ok(Verified {
        verify_token,
        record,
        failure,
    })
}

/// `POST /{version}/{phone_number_id}` `{"webhook_configuration":{"override_callback_uri",
/// "verify_token"}}` (JSON, or the object as JSON text in a form field): the number's own
/// callback override, verified like the WABA's; `"override_callback_uri":""` clears it
/// (cloud-api.md §5.10). The call's other settings (PIN, display name, ...) are not modelled
/// and answer code 100.
pub async fn configure_phone(
    state: &AppState,
    request: &GraphRequest,
    phone_number_id: &str,
) -> Result<Reply, GraphError> {
    let configured_waba = state.webhooks.config().waba_id.clone();
    state.onboarding.lock().require(
        Object::Phone,
        phone_number_id,
        &configured_waba,
        &hyper::Method::POST,
    )?;
    let parameters = parameters(request)?;
    if let Some(other) = parameters
        .keys()
        .find(|key| key.as_str() != "webhook_configuration")
    {
        return Err(GraphError::invalid_parameter(format!(
            "{other}: not modelled by the emulator on POST /{{phone-number-id}} (only \
             webhook_configuration)"
        )));
    }
    let not_an_object =
        || GraphError::invalid_parameter("webhook_configuration: must be a JSON object");
    let configuration = match parameters.get("webhook_configuration") {
        Some(Value::Object(fields)) => fields.clone(),
        Some(Value::String(text)) => match serde_json::from_str(text) {
            Ok(Value::Object(fields)) => fields,
            _ => return Err(not_an_object()),
        },
        None | Some(Value::Null) => {
            return Err(GraphError::invalid_parameter(
                "webhook_configuration: required",
            ))
        }
        Some(_) => return Err(not_an_object()),
    };
    if let Some(other) = configuration
        .keys()
        .find(|key| !matches!(key.as_str(), "override_callback_uri" | "verify_token"))
    {
        return Err(GraphError::invalid_parameter(format!(
            "webhook_configuration.{other}: unknown field"
        )));
    }
    let uri = text_parameter(&configuration, "override_callback_uri")?.ok_or_else(|| {
        GraphError::invalid_parameter(
            "webhook_configuration.override_callback_uri: required (\"\" clears the override)",
        )
    })?;
    let verified = if uri.is_empty() {
        None
    } else {
        let verify_token = text_parameter(&configuration, "verify_token")?;
        Some(verify_override(state, "webhook_configuration.", &uri, verify_token).await?)
    };
    let mut inner = state.onboarding.lock();
    let phone = inner
        .phones
        .entry(phone_number_id.to_string())
        .or_insert_with(|| Phone::new(None));
    let Some(verified) = verified else {
        phone.override_callback_uri = None;
        phone.verify_token = None;
        return Ok(success());
    };
    phone.last_verification = Some(verified.record);
    if let Some(error) = verified.failure {
        return Err(error);
    }
    phone.override_callback_uri = Some(uri);
    phone.verify_token = Some(verified.verify_token);
    Ok(success())
}

#[derive(Serialize)]
struct PhoneWebhookBody {
    webhook_configuration: WebhookConfigurationBody,
    id: String,
}

#[derive(Serialize)]
struct WebhookConfigurationBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    whatsapp_business_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application: Option<String>,
}

/// `GET /{version}/{phone_number_id}?fields=webhook_configuration`: the callback URLs that
/// apply to the number, each level that has one (cloud-api.md §5.10): its own override, its
/// WABA's (while the app is subscribed to it) and the app's (`--webhook-url`).
pub fn phone_webhook_configuration(
    state: &AppState,
    phone_number_id: &str,
) -> Result<Reply, GraphError> {
    let webhook_config = state.webhooks.config();
    let inner = state.onboarding.lock();
    inner.require(
        Object::Phone,
        phone_number_id,
        &webhook_config.waba_id,
        &hyper::Method::GET,
    )?;
    let phone = inner.phones.get(phone_number_id);
    let waba_override = phone
        .and_then(|phone| phone.waba_id.as_ref())
        .and_then(|waba_id| inner.wabas.get(waba_id))
        .filter(|waba| waba.subscribed)
        .and_then(|waba| waba.override_callback_uri.clone());
    let body = PhoneWebhookBody {
        webhook_configuration: WebhookConfigurationBody {
            phone_number: phone.and_then(|phone| phone.override_callback_uri.clone()),
            whatsapp_business_account: waba_override,
            application: webhook_config.url.clone(),
        },
        id: phone_number_id.to_string(),
    };
    Ok(Reply::new(200, &body))
}

/// Why a verification GET did not pass, in Meta's wording; `None` when it passed.
fn verification_failure(verification: &Verification) -> Option<String> {
    match verification.status {
        None => Some(format!(
            "HTTP Status Code = 0; HTTP Message = {}",
            verification.error.as_deref().unwrap_or("no answer")
        )),
        Some(status) if status != 200 => Some(format!(
            "HTTP Status Code = {status}; HTTP Message = {}",
            hyper::StatusCode::from_u16(status)
                .ok()
                .and_then(|code| code.canonical_reason())
                .unwrap_or("Unknown")
        )),
        Some(_) if verification.body != verification.challenge => {
            let received: String = verification.body.chars().take(100).collect();
            Some(format!(
                "HTTP Status Code = 200; HTTP Message = OK; Response does not match challenge, \
                 expected value=\"{}\", received=\"{received}\"",
                verification.challenge
            ))
        }
        Some(_) => None,
    }
}

/// `POST /{version}/{phone_number_id}/register` (`deregister: false`) and `/deregister`.
/// Every call counts against its own 10 per 72 h limit (register and deregister apart),
/// successful or not.
pub fn register(
    state: &AppState,
    request: &GraphRequest,
    phone_number_id: &str,
    deregister: bool,
) -> Result<Reply, GraphError> {
    let parameters = parameters(request);
    let configured_waba = state.webhooks.config().waba_id.clone();
    let mut inner = state.onboarding.lock();
    // An unknown number is refused before its calls are counted: there is nothing to count
    // them against.
    inner.require(
        Object::Phone,
        phone_number_id,
        &configured_waba,
        &hyper::Method::POST,
    )?;
    let fail_code = inner.config.register_fail_code;
    let phone = inner
        .phones
        .entry(phone_number_id.to_string())
        .or_insert_with(|| Phone::new(None));
    if deregister {
        phone.deregister_calls += 1;
    } else {
        phone.register_calls += 1;
    }
    if phone.count_call(deregister) {
        let call = if deregister { "Deregister" } else { "Register" };
        return Err(GraphError {
            details: Some(format!(
                "{call} calls are limited to 10 per phone number in 72 hours."
            )),
            ..GraphError::with_code(133016)
        });
    }
    let parameters = parameters?;
    match text_parameter(&parameters, "messaging_product")?.as_deref() {
        Some("whatsapp") => {}
        Some(_) => {
            return Err(GraphError::invalid_parameter(
                "messaging_product: must be \"whatsapp\"",
            ))
        }
        None => return Err(GraphError::invalid_parameter("messaging_product: required")),
    }
    if deregister {
        // Local Storage ends with the registration (changing region needs deregister first).
        phone.registered = Some(false);
        phone.data_localization_region = None;
        return Ok(success());
    }
    if let Some(code) = fail_code {
        return Err(GraphError {
            details: (code >= 130_000).then(|| graph::code_title(code).to_string()),
            ..GraphError::with_code(code)
        });
    }
    let pin = text_parameter(&parameters, "pin")?.unwrap_or_default();
    if pin.len() != 6 || !is_digits(&pin) {
        return Err(GraphError {
            message: "(#100) Param pin must be 6 characters long".to_string(),
            details: Some("pin: must be 6 digits".to_string()),
            ..GraphError::with_code(100)
        });
    }
    let region = text_parameter(&parameters, "data_localization_region")?;
    if let Some(region) = &region {
        if !LOCALIZATION_REGIONS.contains(&region.as_str()) {
            return Err(GraphError::invalid_parameter(format!(
                "data_localization_region: must be one of {}",
                LOCALIZATION_REGIONS.join(", ")
            )));
        }
    }
    match &phone.pin {
        Some(existing) if *existing != pin => {
            return Err(GraphError {
                details: Some(
                    "The PIN does not match the two-step verification PIN of this number."
                        .to_string(),
                ),
                ..GraphError::with_code(133005)
            })
        }
        Some(_) => {}
        None => phone.pin = Some(pin),
    }
    phone.registered = Some(true);
    if region.is_some() {
        phone.data_localization_region = region;
    }
    Ok(success())
}

#[derive(Serialize)]
struct PhoneNumbersBody {
    data: Vec<PhoneNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paging: Option<Paging>,
}

#[derive(Serialize)]
struct PhoneNumber {
    id: String,
    display_phone_number: String,
    verified_name: &'static str,
    quality_rating: &'static str,
    code_verification_status: &'static str,
    platform_type: &'static str,
    throughput: Throughput,
    status: &'static str,
}

#[derive(Serialize)]
struct Throughput {
    level: &'static str,
}

#[derive(Serialize)]
struct Paging {
    cursors: Cursors,
}

#[derive(Serialize)]
struct Cursors {
    before: String,
    after: String,
}

/// `GET /{version}/{waba_id}/phone_numbers`: the numbers codes were created for under this WABA
/// (all fields, whatever `fields=` asks for). An empty list has no `paging`, as on Graph; a
/// WABA onboarding does not know answers 100/33.
pub fn phone_numbers(state: &AppState, waba_id: &str) -> Result<Reply, GraphError> {
    let configured_waba = state.webhooks.config().waba_id.clone();
    let inner = state.onboarding.lock();
    inner.require(Object::Waba, waba_id, &configured_waba, &hyper::Method::GET)?;
    let data: Vec<PhoneNumber> = inner
        .phones
        .iter()
        .filter(|(_, phone)| phone.waba_id.as_deref() == Some(waba_id))
        .map(|(id, phone)| PhoneNumber {
            id: id.clone(),
            display_phone_number: phone.display_phone_number.clone(),
            verified_name: "Emulated Business",
            quality_rating: "GREEN",
            code_verification_status: "VERIFIED",
            platform_type: "CLOUD_API",
            throughput: Throughput { level: "STANDARD" },
            status: phone.status(),
        })
        .collect();
    let cursor =
        |phone: Option<&PhoneNumber>| BASE64.encode(phone.map_or("", |phone| phone.id.as_str()));
    let paging = (!data.is_empty()).then(|| Paging {
        cursors: Cursors {
            before: cursor(data.first()),
            after: cursor(data.last()),
        },
    });
    Ok(Reply::new(200, &PhoneNumbersBody { data, paging }))
}

// ----- control endpoints -----

/// `POST /_emulator/oauth/codes`: the browser half of Embedded Signup. Fresh WABA and phone
/// ids are generated unless given.
pub fn control_create_code(state: &AppState, body: &Value) -> Result<Value, String> {
    let fields = body
        .as_object()
        .ok_or("oauth code: must be a JSON object")?;
    let mut waba_id = None;
    let mut phone_number_id = None;
    let mut expiring = false;
    let mut ttl_ms = None;
    for (key, value) in fields {
        match key.as_str() {
            "waba_id" | "phone_number_id" => {
                let id = match value {
                    Value::String(text) if is_digits(text) => text.clone(),
                    Value::Number(number) if number.is_u64() => number.to_string(),
                    Value::Null => continue,
                    _ => return Err(format!("{key}: must be a string of digits")),
                };
                if key == "waba_id" {
                    waba_id = Some(id);
                } else {
                    phone_number_id = Some(id);
                }
            }
            "expiring" => expiring = value.as_bool().ok_or("expiring: must be a boolean")?,
            "ttl_ms" => {
                ttl_ms = match value {
                    Value::Null => None,
                    _ => Some(
                        value
                            .as_u64()
                            .ok_or("ttl_ms: must be a non-negative integer")?,
                    ),
                }
            }
            other => return Err(format!("{other}: unknown field")),
        }
    }
    let waba_id = waba_id.unwrap_or_else(|| state.onboarding.fresh_id(5));
    let phone_number_id = phone_number_id.unwrap_or_else(|| state.onboarding.fresh_id(1));
    // Meta's codes are long URL-safe strings starting with "AQ".
    let code = format!(
        "AQ{}",
        random_text(
            120,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
    );
    let created_at_ms = state.onboarding.elapsed_ms();
    let mut inner = state.onboarding.lock();
    let ttl = Duration::from_millis(ttl_ms.unwrap_or(inner.config.code_ttl_ms));
    inner.codes.push(Code {
        code: code.clone(),
        waba_id: waba_id.clone(),
        phone_number_id: phone_number_id.clone(),
        expiring,
        ttl,
        created: Instant::now(),
        created_at_ms,
        used: false,
    });
    inner.wabas.entry(waba_id.clone()).or_default();
    match inner.phones.get_mut(&phone_number_id) {
        Some(phone) => phone.waba_id = Some(waba_id.clone()),
        None => {
            inner
                .phones
                .insert(phone_number_id.clone(), Phone::new(Some(waba_id.clone())));
        }
    }
    Ok(json!({"code": code, "waba_id": waba_id, "phone_number_id": phone_number_id}))
}

/// `GET /_emulator/onboarding`: everything, for tests to assert on.
pub fn control_state(state: &AppState) -> Value {
    let inner = state.onboarding.lock();
    let codes: Vec<Value> = inner
        .codes
        .iter()
        .map(|code| {
            json!({
                "code": code.code,
                "waba_id": code.waba_id,
                "phone_number_id": code.phone_number_id,
                "expiring": code.expiring,
                "ttl_ms": u64::try_from(code.ttl.as_millis()).unwrap_or(u64::MAX),
                "created_at_ms": code.created_at_ms,
                "used": code.used,
                "expired": code.expired(),
            })
        })
        .collect();
    let tokens: Vec<Value> = inner
        .tokens
        .iter()
        .map(|token| {
            json!({
                "token": token.token,
                "waba_id": token.waba_id,
                "phone_number_id": token.phone_number_id,
                "expires_at": token.expires_at,
                "user_id": token.user_id,
                "issued_at_ms": token.issued_at_ms,
            })
        })
        .collect();
    let subscriptions: Vec<Value> = inner
        .wabas
        .iter()
        .map(|(id, waba)| {
            json!({
                "waba_id": id,
                "subscribed": waba.subscribed,
                "override_callback_uri": waba.override_callback_uri,
                "verify_token": waba.verify_token,
                "last_verification": waba.last_verification,
            })
        })
        .collect();
    let registrations: Vec<Value> = inner
        .phones
        .iter()
        .map(|(id, phone)| {
            json!({
                "phone_number_id": id,
                "waba_id": phone.waba_id,
                "status": phone.status(),
                "pin_set": phone.pin.is_some(),
                "pin": phone.pin,
                "data_localization_region": phone.data_localization_region,
                "register_calls": phone.register_calls,
                "deregister_calls": phone.deregister_calls,
                "calls_in_window": phone.recent_registers.len() + phone.recent_deregisters.len(),
                "register_calls_in_window": phone.recent_registers.len(),
                "deregister_calls_in_window": phone.recent_deregisters.len(),
                "override_callback_uri": phone.override_callback_uri,
                "verify_token": phone.verify_token,
                "last_verification": phone.last_verification,
            })
        })
        .collect();
    json!({
        "config": inner.config,
        "codes": codes,
        "tokens": tokens,
        "subscriptions": subscriptions,
        "registrations": registrations,
    })
}

/// `POST /_emulator/onboarding/config` `{"register_fail_code":N|null,"app_id","code_ttl_ms"}`.
pub fn control_configure(state: &AppState, body: &Value) -> Result<Value, String> {
    let fields = body
        .as_object()
        .ok_or("onboarding config: must be a JSON object")?;
    let mut inner = state.onboarding.lock();
    let mut config = inner.config.clone();
    for (key, value) in fields {
        match key.as_str() {
            "register_fail_code" => {
                config.register_fail_code = match value {
                    Value::Null => None,
                    _ => Some(
                        value
                            .as_i64()
                            .ok_or("register_fail_code: must be an integer or null")?,
                    ),
                }
            }
            "app_id" => {
                config.app_id = value
                    .as_str()
                    .filter(|id| !id.is_empty())
                    .ok_or("app_id: must be a non-empty string")?
                    .to_string()
            }
            "code_ttl_ms" => {
                config.code_ttl_ms = value
                    .as_u64()
                    .ok_or("code_ttl_ms: must be a non-negative integer")?
            }
            other => return Err(format!("{other}: unknown onboarding config field")),
        }
    }
    inner.config = config.clone();
    Ok(json!(config))
}
