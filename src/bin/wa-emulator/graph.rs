//! The Graph API side: routing of `/{version}/...` paths, the messages route, the error envelope
//! and Graph's JSON encoding.

use bytes::Bytes;
use hyper::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use hyper::Method;
use serde::Serialize;
use serde_json::{json, Value};

use crate::media;
use crate::onboarding;
use crate::state::{digits_only, AppState, Config, RateLimited};
use crate::validate::{validate_body, ValidBody, ValidSend};

/// Version reported when the request's own version is unusable (the newest at time of writing).
pub const DEFAULT_VERSION: &str = "v26.0";

/// A calendar date: year, month, day.
type Date = (i64, u32, u32);

/// The versions of cloud-api.md §7's table, newest first, with the last day each is available
/// (`None`: no end announced). Earlier releases are all retired.
const VERSION_TABLE: [(&str, Option<Date>); 8] = [
    ("v26.0", None),
    ("v25.0", Some((2028, 7, 29))),
    ("v24.0", Some((2028, 2, 18))),
    ("v23.0", Some((2027, 10, 8))),
    ("v22.0", Some((2027, 5, 20))),
    ("v21.0", Some((2027, 1, 21))),
    ("v20.0", Some((2026, 9, 24))),
    ("v19.0", Some((2026, 5, 21))),
];

/// How a request's `/{version}` is served (cloud-api.md §1.4: "`facebook-api-version: v20.0`
/// (the version actually served), `X-Ad-Api-Version-Warning: The call has been auto-upgraded
/// to v20.0 as v19.0 will be deprecated.`").
#[derive(Debug, PartialEq, Eq)]
pub enum ServedVersion {
    /// A live version as asked, or the default for an unversioned path.
    Live(String),
    /// A retired version, answered by the oldest live one.
    Upgraded {
        requested: String,
        served: &'static str,
    },
    /// Shaped like a version but never released (`v0.5`, `v99999.0`, `v27.0` today).
    Unknown(String),
}

impl ServedVersion {
    /// The `facebook-api-version` value.
    pub fn served(&self) -> &str {
        match self {
            ServedVersion::Live(version) => version,
            ServedVersion::Upgraded { served, .. } => served,
            ServedVersion::Unknown(_) => DEFAULT_VERSION,
        }
    }

    /// The `X-Ad-Api-Version-Warning` value of an auto-upgraded call.
    pub fn warning(&self) -> Option<String> {
        match self {
            ServedVersion::Upgraded { requested, served } => Some(format!(
                "The call has been auto-upgraded to {served} as {requested} will be deprecated."
            )),
            _ => None,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn today_days() -> i64 {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    i64::try_from(seconds / 86_400).unwrap_or(i64::MAX)
}

/// Releases before the table: v1.0, v2.0–v2.12, v3.0–v3.3, v4.0–v18.0.
fn is_old_release(major: u32, minor: u32) -> bool {
    match major {
        1 | 4..=18 => minor == 0,
        2 => minor <= 12,
        3 => minor <= 3,
        _ => false,
    }
}

/// Resolves a requested version on day `today` (days since the epoch).
fn resolve_version(requested: Option<&str>, today: i64) -> ServedVersion {
    let Some(requested) = requested else {
        return ServedVersion::Live(DEFAULT_VERSION.to_string());
    };
    let live = |end: &Option<Date>| {
        end.is_none_or(|(year, month, day)| today <= days_from_civil(year, month, day))
    };
    let oldest_live = VERSION_TABLE
        .iter()
        .rev()
        .find(|(_, end)| live(end))
        .map_or(DEFAULT_VERSION, |(version, _)| *version);
    let upgraded = || ServedVersion::Upgraded {
        requested: requested.to_string(),
        served: oldest_live,
    };
    if let Some((_, end)) = VERSION_TABLE
        .iter()
        .find(|(version, _)| *version == requested)
    {
        return if live(end) {
            ServedVersion::Live(requested.to_string())
        } else {
            upgraded()
        };
    }
    let parsed = requested
        .strip_prefix('v')
        .and_then(|number| number.split_once('.'))
        .and_then(|(major, minor)| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)));
    // Only the canonical spelling: `v05.0` is not a release.
    match parsed {
        Some((major, minor))
            if is_old_release(major, minor) && requested == format!("v{major}.{minor}") =>
        {
            upgraded()
        }
        _ => ServedVersion::Unknown(requested.to_string()),
    }
}

/// Bodies larger than this are refused before parsing.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A Graph request as read off the connection.
pub struct GraphRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body exceeded [`MAX_BODY_BYTES`]; `body` then holds nothing.
    pub body_too_large: bool,
    /// The body parsed as JSON, when it is JSON.
    pub json: Option<Value>,
}

impl GraphRequest {
    /// The path split on `/` without the leading empty segment.
    pub fn segments(&self) -> Vec<&str> {
        self.path.trim_start_matches('/').split('/').collect()
    }

    /// The `{version}` segment when it looks like `v<digits>.<digits>`.
    pub fn version(&self) -> Option<&str> {
        let first = self.path.trim_start_matches('/').split('/').next()?;
        is_version(first).then_some(first)
    }

    /// How the request's version is served today (cloud-api.md §7's table).
    pub fn served_version(&self) -> ServedVersion {
        resolve_version(self.version(), today_days())
    }

    /// The segments after the version, or all of them for an unversioned path (Graph serves
    /// those at the app's default version, cloud-api.md §1.1).
    pub fn after_version(&self) -> Vec<&str> {
        let mut segments = self.segments();
        if self.version().is_some() {
            segments.remove(0);
        }
        segments
    }

    /// The first segment after the (optional) version: the phone-number-id on the messages
    /// route.
    pub fn object_id(&self) -> Option<&str> {
        self.after_version()
            .first()
            .copied()
            .filter(|id| !id.is_empty())
    }

    /// The phone number id a request concerns (recorded and matched by fault rules): the
    /// object id of an edge like `/{v}/{id}/messages`; for a bare object like `/{v}/{media_id}`
    /// the `phone_number_id` query parameter, if any (the object there is the media).
    /// WABA edges (`subscribed_apps`, `phone_numbers`) and app-level routes (`oauth`,
    /// `debug_token`) concern no phone number.
    pub fn phone_number_id(&self) -> Option<String> {
        let id = self.object_id()?;
        let segments = self.after_version();
        if matches!(id, "oauth" | "debug_token")
            || matches!(
                segments.get(1),
                Some(&("subscribed_apps" | "phone_numbers"))
            )
        {
            return None;
        }
        if segments.len() == 1 && !self.is_phone_object() {
            return crate::control::query_param(&self.query, "phone_number_id");
        }
        Some(id.to_string())
    }

    /// Whether a bare `/{v}/{id}` addresses a phone number rather than a media object: `POST`
    /// (the number's settings, such as its webhook override) and a `GET` asking for
    /// `fields=webhook_configuration` (cloud-api.md §5.10). Other bare `GET`s and `DELETE`s
    /// are media calls.
    pub fn is_phone_object(&self) -> bool {
        match self.method {
            Method::POST => true,
            Method::GET => {
                crate::control::query_param(&self.query, "fields").is_some_and(|fields| {
                    fields
                        .split(',')
                        .any(|field| field.trim() == "webhook_configuration")
                })
            }
            _ => false,
        }
    }

    /// `to` as sent, rendered as text (a JSON number becomes its digits).
    pub fn to_text(&self) -> Option<String> {
        match self.json.as_ref()?.get("to")? {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        }
    }

    /// The message type a send body asks for; `text` when omitted, as Graph defaults it.
    /// Mark-as-read bodies, non-objects and bodies with neither `type` nor `text` have none.
    pub fn message_type(&self) -> Option<String> {
        let body = self.json.as_ref()?.as_object()?;
        if body.contains_key("status") {
            return None;
        }
        match body.get("type") {
            Some(Value::String(kind)) => Some(kind.clone()),
            None if body.contains_key("text") => Some("text".to_string()),
            _ => None,
        }
    }
}

/// Whether a request goes to the media upload route, whose body may be far larger than others
/// (decided from the request line, before the body is read).
pub fn is_upload_path(method: &Method, path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    method == Method::POST
        && match segments.as_slice() {
            [version, id, "media"] => is_version(version) && is_graph_id(id),
            // Unversioned (the app's default version, cloud-api.md §1.1).
            [id, "media"] => is_graph_id(id),
            _ => false,
        }
}

/// `v` then a digit: a version, well-formed or not.
fn looks_like_version(segment: &str) -> bool {
    segment
        .strip_prefix('v')
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

fn is_version(segment: &str) -> bool {
    let Some(number) = segment.strip_prefix('v') else {
        return false;
    };
    let Some((major, minor)) = number.split_once('.') else {
        return false;
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    all_digits(major) && all_digits(minor)
}

/// What the Graph side answers; the server turns it into an HTTP response and a record.
pub struct Reply {
    pub status: u16,
    /// The answer as Graph-encoded text, keys in Graph's order (also what gets recorded).
    pub body_text: String,
    pub headers: Vec<(&'static str, String)>,
    pub wamid: Option<String>,
    pub accepted_send: bool,
}

impl Reply {
    /// Serialises a typed body, whose struct field order is Graph's key order (a `Value` would
    /// sort keys alphabetically).
    pub fn new(status: u16, body: &impl Serialize) -> Self {
        Reply {
            status,
            body_text: encode_graph_json(body),
            headers: Vec::new(),
            wamid: None,
            accepted_send: false,
        }
    }
}

#[derive(Serialize)]
struct SuccessBody {
    success: bool,
}

/// Graph's `{"success": true}`.
pub fn success() -> Reply {
    Reply::new(200, &SuccessBody { success: true })
}

#[derive(Serialize)]
struct SendBody {
    messaging_product: &'static str,
    contacts: Vec<Value>,
    messages: Vec<Value>,
}

#[derive(Serialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Serialize)]
struct ErrorBody {
    message: String,
    #[serde(rename = "type")]
    error_type: String,
    code: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_subcode: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_data: Option<ErrorData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_transient: Option<bool>,
    fbtrace_id: String,
}

#[derive(Serialize)]
struct ErrorData {
    messaging_product: &'static str,
    details: String,
}

/// One Graph error, rendered as Meta's envelope
/// `{"error":{"message","type","code",["error_subcode"],["error_data"],"fbtrace_id"}}`.
#[derive(Debug, Clone)]
pub struct GraphError {
    pub http_status: u16,
    pub code: i64,
    pub subcode: Option<i64>,
    pub message: String,
    pub error_type: String,
    pub details: Option<String>,
}

impl GraphError {
    /// An error with the defaults for `code`: status per code, `"(#code) title"` message,
    /// `OAuthException` type.
    pub fn with_code(code: i64) -> Self {
        GraphError {
            http_status: default_status(code),
            code,
            subcode: None,
            message: format!("(#{code}) {}", code_title(code)),
            error_type: "OAuthException".to_string(),
            details: None,
        }
    }

    /// `(#100) Invalid parameter` with a specific reason in `error_data.details`.
    pub fn invalid_parameter(details: impl Into<String>) -> Self {
        GraphError {
            details: Some(details.into()),
            ..GraphError::with_code(100)
        }
    }

    /// GraphMethodException 100/33, Graph's answer for an unknown object or unsupported edge.
    pub fn unsupported(method: &Method, object_id: &str) -> Self {
        GraphError {
            http_status: 400,
            code: 100,
            subcode: Some(33),
            message: format!(
                "Unsupported {} request. Object with ID '{object_id}' does not exist, cannot be \
                 loaded due to missing permissions, or does not support this operation",
                method.as_str().to_ascii_lowercase()
            ),
            error_type: "GraphMethodException".to_string(),
            details: None,
        }
    }

    pub fn into_reply(self) -> Reply {
        let kind = if self.code == 190 {
            "invalid_token"
        } else {
            "invalid_request"
        };
        let challenge = format!(
            "OAuth \"Facebook Platform\" \"{kind}\" \"{}\"",
            header_safe(&self.message)
        );
        let envelope = ErrorEnvelope {
            error: ErrorBody {
                error_type: self.error_type,
                code: self.code,
                error_subcode: self.subcode,
                error_data: self.details.map(|details| ErrorData {
                    messaging_product: "whatsapp",
                    details,
                }),
                is_transient: is_transient(self.code).then_some(true),
                fbtrace_id: random_trace_id(),
                message: self.message,
            },
        };
        let mut reply = Reply::new(self.http_status, &envelope);
        reply.headers.push(("www-authenticate", challenge));
        reply
    }
}

/// Keeps a message usable inside a quoted header value: printable ASCII without `"` or `\`.
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect()
}

/// Codes Graph marks `is_transient` and answers with a 5xx.
fn is_transient(code: i64) -> bool {
    matches!(code, 1 | 2 | 131000 | 131016 | 133004)
}

/// HTTP status Graph uses by default for an error code (Meta says not to rely on it; clients
/// must branch on `code`).
pub fn default_status(code: i64) -> u16 {
    match code {
        190 => 401,
        code if is_transient(code) => 500,
        _ => 400,
    }
}

/// Titles of the error codes in cloud-api.md §3.3, used for `"(#code) title"` messages.
pub fn code_title(code: i64) -> &'static str {
    match code {
        0 => "AuthException",
        1 => "API Unknown",
        2 => "API Service",
        3 => "API Method",
        4 => "API Too Many Calls",
        10 => "API Permission Denied",
        33 => "Parameter value is not valid",
        100 => "Invalid parameter",
        190 => "Access token has expired",
        200..=299 => "API Permission",
        368 => "Temporarily blocked for policies violations",
        80007 => "Rate limit issues",
        130403 => "Business has blocked this user",
        130429 => "Rate limit hit",
        130472 => "User's number is part of an experiment",
        130497 => "Business account is restricted from messaging users in this country",
        131000 => "Something went wrong",
        131005 => "Access denied",
        131008 => "Required parameter is missing",
        131009 => "Parameter value is not valid",
        131016 => "Service unavailable",
        131021 => "Recipient cannot be sender",
        131026 => "Message Undeliverable",
        131030 => "Recipient phone number not in allowed list",
        131031 => "Business Account locked",
        131037 => "WhatsApp provided number needs display name approval before message can be sent",
        131042 => "Business eligibility payment issue",
        131045 => "Incorrect certificate",
        131047 => "Re-engagement message",
        131048 => "Spam rate limit hit",
        131049 => "This message was not delivered to maintain healthy ecosystem engagement",
        131050 => "User has stopped receiving marketing messages",
        131051 => "Unsupported message type",
        131052 => "Media download error",
        131053 => "Media upload error",
        131056 => "(Business Account, Consumer Account) pair rate limit hit",
        131057 => "Account in maintenance mode",
        131062 => "Business-scoped user ID recipients not supported",
        131063 => "Marketing templates disabled for Cloud API",
        131064 => "Messaging limit reached due to template classification violations",
        132000 => "Number of parameters does not match the expected number of params",
        132001 => "Template name does not exist in the translation",
        132005 => "Translated text too long",
        132007 => "Template Format Character Policy Violated",
        132012 => "Parameter format does not match format in the created template",
        132015 => "Template is Paused",
        132016 => "Template is Disabled",
        132068 => "Flow is in blocked state",
        132069 => "Flow is in throttled state",
        133000 => "Incomplete Deregistration",
        133004 => "Server Temporarily Unavailable",
        133005 => "Two step verification PIN Mismatch",
        133006 => "Phone number Re-verification Needed",
        133008 => "Too Many two step verification PIN Guesses",
        133009 => "Two step verification PIN Guessed Too Fast",
        133010 => "Phone number Not Registered",
        133015 => "Please wait a few minutes before attempting to register this phone number",
        133016 => "Account register deregister rate limit exceeded",
        134011 => "WhatsApp Payments terms of service not accepted",
        135000 => "Generic user error",
        137000 => "Recipient identity key hash mismatch",
        2494100 => "Phone number in maintenance mode",
        _ => "Unknown error",
    }
}

/// Url-safe base64-looking id like Graph's `fbtrace_id` (`Az8or2yhqkZfEZ-_4Qn_Bam`).
pub fn random_trace_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..23)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}

/// Serialises like Graph: compact JSON with `/` escaped as `\/` and every non-ASCII character
/// as lowercase `\uXXXX` (UTF-16 surrogate pairs beyond the BMP), as PHP's json_encode does.
/// Outside strings compact JSON has neither `/` nor non-ASCII, so a pass over the text is enough.
pub fn encode_graph_json(value: &impl Serialize) -> String {
    // Serialising these plain structs and values cannot fail; fall back to null regardless.
    let compact = serde_json::to_string(value).unwrap_or_else(|_| "null".to_string());
    let mut out = String::with_capacity(compact.len() + 16);
    let mut units = [0u16; 2];
    for c in compact.chars() {
        if c == '/' {
            out.push_str("\\/");
        } else if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Answers one Graph request (faults were already considered by the server). Async only for
/// the routes that call out (the `subscribed_apps` verification GET).
pub async fn route(state: &AppState, config: &Config, request: &GraphRequest) -> Reply {
    if let ServedVersion::Unknown(_) = request.served_version() {
        // The reference documents no dedicated error for a version that never existed; Graph
        // resolves the path first and answers an unknown component as a bad path.
        return GraphError {
            http_status: 400,
            code: 100,
            subcode: None,
            message: format!("Unknown path components: {}", request.path),
            error_type: "OAuthException".to_string(),
            details: None,
        }
        .into_reply();
    }
    match route_inner(state, config, request).await {
        Ok(reply) => reply,
        Err(error) => error.into_reply(),
    }
}

async fn route_inner(
    state: &AppState,
    config: &Config,
    request: &GraphRequest,
) -> Result<Reply, GraphError> {
    // Graph also accepts calls without a version (cloud-api.md §1.1: "Omitting the version hits
    // the app's default version"): every route is served that way too.
    let segments = request.after_version();
    let after_version = segments.as_slice();
    let unsupported = || {
        let all = request.segments();
        // A malformed version (`/v26/{id}/...`) is taken as the version slot: the object is
        // the next segment.
        let object_id = if looks_like_version(all[0]) && all.len() > 1 {
            all[1]
        } else {
            after_version.first().copied().unwrap_or(all[0])
        };
        GraphError::unsupported(&request.method, object_id)
    };
    // Routes authorised by something other than a bearer token.
    match (&request.method, after_version) {
        (&Method::GET | &Method::POST, ["oauth", "access_token"]) => {
            return onboarding::exchange_code(state, request)
        }
        (&Method::GET, ["debug_token"]) => return onboarding::debug_token(state, config, request),
        _ => {}
    }
    let token = check_token(config, request)?;
    // A business token reaches only its own WABA's objects.
    let target = match after_version {
        [id, "messages" | "media" | "register" | "deregister"] if is_graph_id(id) => {
            Some(onboarding::Target::Phone(id))
        }
        [id, "subscribed_apps" | "phone_numbers"] if is_graph_id(id) => {
            Some(onboarding::Target::Waba(id))
        }
        [id] if is_graph_id(id) && request.is_phone_object() => Some(onboarding::Target::Phone(id)),
        _ => None,
    };
    if let Some(target) = target {
        state
            .onboarding
            .check_reach(&token, &request.method, target)?;
    }
    // Edges are matched by their exact name, so `/{id}/register` never falls into the
    // messages or media arms (and `/{id}/registerx` is 100/33).
    match (&request.method, after_version) {
        (&Method::POST, [phone_number_id, "messages"]) if is_graph_id(phone_number_id) => {
            post_messages(state, config, request, phone_number_id)
        }
        (&Method::POST, [phone_number_id, "media"]) if is_graph_id(phone_number_id) => {
            media::upload(state, request, phone_number_id)
        }
        (&Method::POST, [phone_number_id]) if is_graph_id(phone_number_id) => {
            onboarding::configure_phone(state, request, phone_number_id).await
        }
        (&Method::GET, [phone_number_id])
            if is_graph_id(phone_number_id) && request.is_phone_object() =>
        {
            onboarding::phone_webhook_configuration(state, phone_number_id)
        }
        (&Method::GET, [media_id]) if is_graph_id(media_id) => {
            media::lookup(state, request, media_id)
        }
        (&Method::DELETE, [media_id]) if is_graph_id(media_id) => {
            media::delete(state, request, media_id)
        }
        (&Method::POST, [waba_id, "subscribed_apps"]) if is_graph_id(waba_id) => {
            onboarding::subscribe(state, request, waba_id).await
        }
        (&Method::GET, [waba_id, "subscribed_apps"]) if is_graph_id(waba_id) => {
            onboarding::list_subscribed_apps(state, waba_id)
        }
        (&Method::DELETE, [waba_id, "subscribed_apps"]) if is_graph_id(waba_id) => {
            onboarding::unsubscribe(state, waba_id)
        }
        (&Method::GET, [waba_id, "phone_numbers"]) if is_graph_id(waba_id) => {
            onboarding::phone_numbers(state, waba_id)
        }
        (&Method::POST, [phone_number_id, "register"]) if is_graph_id(phone_number_id) => {
            onboarding::register(state, request, phone_number_id, false)
        }
        (&Method::POST, [phone_number_id, "deregister"]) if is_graph_id(phone_number_id) => {
            onboarding::register(state, request, phone_number_id, true)
        }
        _ => Err(unsupported()),
    }
}

/// A Graph object id (all digits), also used for WABA and phone ids and PINs.
pub fn is_graph_id(segment: &str) -> bool {
    !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit())
}

/// The bearer token from `Authorization`, or Graph's `access_token` query parameter.
pub fn presented_token(request: &GraphRequest) -> Option<String> {
    if let Some(value) = request.headers.get(AUTHORIZATION) {
        let text = String::from_utf8_lossy(value.as_bytes());
        let text = text.trim();
        let token = match text.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => text,
        };
        return Some(token.to_string());
    }
    request.query.split('&').find_map(|pair| {
        pair.strip_prefix("access_token=")
            .map(crate::control::percent_decode)
    })
}

/// Both a missing and a wrong token answer code 190 (401) so clients need one branch; a missing
/// token gets Graph's "active access token" message, a wrong one subcode 463. Answers the
/// accepted token.
pub fn check_token(config: &Config, request: &GraphRequest) -> Result<String, GraphError> {
    match presented_token(request) {
        Some(token) if !token.is_empty() && config.tokens.contains(&token) => Ok(token),
        Some(token) if !token.is_empty() => Err(GraphError {
            subcode: Some(463),
            message: "Error validating access token: Session has expired or the access token \
                      is invalid."
                .to_string(),
            ..GraphError::with_code(190)
        }),
        _ => Err(GraphError {
            message: "An active access token must be used to query information about the \
                      current user."
                .to_string(),
            ..GraphError::with_code(190)
        }),
    }
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase())
        .is_some_and(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|mime| mime.trim() == "application/json")
        })
}

fn post_messages(
    state: &AppState,
    config: &Config,
    request: &GraphRequest,
    phone_number_id: &str,
) -> Result<Reply, GraphError> {
    if !is_json_content_type(&request.headers) {
        return Err(GraphError::invalid_parameter(
            "Content-Type: must be application/json",
        ));
    }
    if request.body_too_large {
        return Err(GraphError::invalid_parameter(format!(
            "body: larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    let Some(body) = &request.json else {
        return Err(GraphError::invalid_parameter("body: must be valid JSON"));
    };
    match validate_body(body).map_err(GraphError::invalid_parameter)? {
        ValidBody::MarkRead { message_id } => {
            if state.is_outgoing_wamid(&message_id) {
                return Err(GraphError::invalid_parameter(format!(
                    "Message supplied to mark message as read API with message ID: {message_id} \
                     is outgoing. Please use an incoming message ID."
                )));
            }
            Ok(success())
        }
        ValidBody::Send(send) => accept_send(state, config, phone_number_id, send),
    }
}

fn accept_send(
    state: &AppState,
    config: &Config,
    phone_number_id: &str,
    send: ValidSend,
) -> Result<Reply, GraphError> {
    // `to` wins over `recipient` when both are given, as on Graph.
    let (contact, recipient_key) = match (&send.to, &send.recipient) {
        // A group send echoes the group ID as both `input` and `wa_id` (Meta's group messaging
        // page shows `"contacts":[{"input":"Y2FwaV9ncm91cDo….","wa_id":"Y2FwaV9ncm91cDo…."}]`).
        (Some(Value::String(group_id)), _) if send.group => (
            json!({"input": group_id, "wa_id": group_id}),
            group_id.clone(),
        ),
        (Some(to), _) => {
            let as_text = match to {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let wa_id = digits_only(&as_text);
            (json!({"input": to, "wa_id": wa_id}), wa_id)
        }
        (None, Some(bsuid)) => (json!({"input": bsuid, "user_id": bsuid}), bsuid.clone()),
        // Validation guarantees one of them; answer a parameter error rather than panic.
        (None, None) => return Err(GraphError::invalid_parameter("to: required")),
    };
    state
        .admit_send(config, phone_number_id, &recipient_key)
        .map_err(|limited| match limited {
            RateLimited::Throughput => GraphError {
                subcode: Some(2494055),
                details: Some("Cloud API message throughput has been reached.".to_string()),
                ..GraphError::with_code(130429)
            },
            RateLimited::Pair => GraphError {
                details: Some(
                    "Message failed to send because there were too many messages sent from this \
                     phone number to the same phone number in a short period of time."
                        .to_string(),
                ),
                ..GraphError::with_code(131056)
            },
        })?;
    let wamid = state.issue_wamid(&recipient_key);
    let mut message = json!({"id": wamid});
    if send.group {
        // cloud-api.md §2.3: "`messages[0].group_id` appears for group sends".
        message["group_id"] = json!(recipient_key);
    }
    if send.message_type == "template" {
        message["message_status"] = json!("accepted");
    }
    let mut reply = Reply::new(
        200,
        &SendBody {
            messaging_product: "whatsapp",
            contacts: vec![contact],
            messages: vec![message],
        },
    );
    reply.wamid = Some(wamid);
    reply.accepted_send = true;
    Ok(reply)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn graph_encoding_escapes_slash_and_non_ascii() {
        let text = encode_graph_json(&json!({"u": "a/b é 😀"}));
        assert_eq!(text, r#"{"u":"a\/b \u00e9 \ud83d\ude00"}"#);
    }

    #[test]
    fn versions_resolve_per_the_table_and_the_day() {
        let day = |year, month, day| days_from_civil(year, month, day);
        assert_eq!(day(1970, 1, 1), 0);
        assert_eq!(day(2026, 11, 26), 20_783);
        let today = day(2026, 11, 26);
        for live in ["v21.0", "v22.0", "v23.0", "v24.0", "v25.0", "v26.0"] {
            assert_eq!(
                resolve_version(Some(live), today),
                ServedVersion::Live(live.to_string())
            );
        }
        assert_eq!(
            resolve_version(None, today),
            ServedVersion::Live("v26.0".to_string())
        );
        for retired in ["v20.0", "v19.0", "v18.0", "v4.0", "v3.3", "v2.12", "v1.0"] {
            let resolved = resolve_version(Some(retired), today);
            assert_eq!(resolved.served(), "v21.0", "{retired}");
            assert_eq!(
                resolved.warning().as_deref(),
                Some(
                    format!(
                        "The call has been auto-upgraded to v21.0 as {retired} will be deprecated."
                    )
                    .as_str()
                )
            );
        }
        for unknown in [
            "v0.5",
            "v99999.0",
            "v27.0",
            "v26.1",
            "v2.13",
            "v3.4",
            "v05.0",
            "v1.00",
            "v99999999999.0",
        ] {
            assert_eq!(
                resolve_version(Some(unknown), today),
                ServedVersion::Unknown(unknown.to_string()),
                "{unknown}"
            );
        }
        // The last day listed is still served; the next day upgrades.
        assert_eq!(
            resolve_version(Some("v21.0"), day(2027, 1, 21)).served(),
            "v21.0"
        );
        assert_eq!(
            resolve_version(Some("v21.0"), day(2027, 1, 22)).served(),
            "v22.0"
        );
        assert_eq!(
            resolve_version(Some("v20.0"), day(2026, 9, 24)).served(),
            "v20.0"
        );
        // Once only v26.0 is left, everything older lands there.
        assert_eq!(
            resolve_version(Some("v19.0"), day(2030, 1, 1)).served(),
            "v26.0"
        );
    }

    #[test]
    fn version_pattern() {
        assert!(is_version("v26.0"));
        assert!(!is_version("v26"));
        assert!(!is_version("26.0"));
        assert!(!is_version("v2x.0"));
    }
}
