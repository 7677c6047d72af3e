//! Control endpoints under `/_emulator/` (no auth, plain JSON): health, recorded requests,
//! stats, fault rules, run-time config, reset, the webhook driver (`/_emulator/webhook/...`),
//! media (`/_emulator/media...`) and Embedded Signup (`/_emulator/oauth/codes`,
//! `/_emulator/onboarding...`).
//! Tests drive the emulator through these.

use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::{json, Map, Value};

use crate::graph::MAX_BODY_BYTES;
use crate::media;
use crate::onboarding;
use crate::server::{json_response, read_control_body, text_json_response, HttpResponse};
use crate::state::{AppState, Config, FaultRequest, PairLimit, DEFAULT_PAIR_WINDOW_MS};
use crate::webhook;

pub async fn handle(request: Request<Incoming>, state: &AppState) -> HttpResponse {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let endpoint = path.trim_start_matches("/_emulator/").trim_end_matches('/');
    // `POST /_emulator/media` may carry a base64 file; everything else is small JSON.
    let limit = if endpoint == "media" {
        CONTROL_MEDIA_BODY_BYTES
    } else {
        MAX_BODY_BYTES
    };
    let body = if method == Method::POST {
        match read_control_body(request.into_body(), limit).await {
            Ok(bytes) => Some(bytes),
            Err(reason) => return bad_request(&reason),
        }
    } else {
        None
    };
    // An empty body counts as `{}` so `curl -X POST .../reset` works without `-d`.
    let parse_body = || -> Result<Value, String> {
        let bytes = body.as_deref().unwrap_or(b"");
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        serde_json::from_slice(bytes).map_err(|error| format!("invalid JSON: {error}"))
    };

    match (&method, endpoint) {
        (&Method::GET, "health") => ok(json!({"ok": true})),
        (&Method::GET, "requests") => list_requests(state, &query),
        (&Method::DELETE, "requests") => {
            state.clear_requests();
            ok(json!({"success": true}))
        }
        (&Method::GET, "stats") => ok(state.stats_json()),
        (&Method::POST, "faults") => match parse_body() {
            Ok(body) => add_fault(state, body),
            Err(reason) => bad_request(&reason),
        },
        (&Method::GET, "faults") => ok(json!({"faults": state.faults()})),
        (&Method::DELETE, "faults") => {
            state.clear_faults();
            ok(json!({"success": true}))
        }
        (&Method::POST, "config") => match parse_body() {
            Ok(body) => update_config(state, &body),
            Err(reason) => bad_request(&reason),
        },
        (&Method::GET, "config") => ok(json!(*state.config())),
        (&Method::POST, "reset") => {
            state.reset();
            ok(json!({"success": true}))
        }
        (&Method::GET, "webhook/config") => ok(json!(*state.webhooks.config())),
        (&Method::POST, "webhook/config") => match parse_body() {
            Ok(body) => match state.webhooks.update_config(&body) {
                Ok(config) => ok(json!(config)),
                Err(reason) => bad_request(&reason),
            },
            Err(reason) => bad_request(&reason),
        },
        (&Method::GET, "webhook/deliveries") => ok(state.webhooks.deliveries_json()),
        (&Method::DELETE, "webhook/deliveries") => {
            state.webhooks.clear_deliveries();
            ok(json!({"success": true}))
        }
        // These answer after the first delivery attempt, with its outcome.
        (&Method::POST, "webhook/inbound") => {
            answer(webhook::inbound(state, body.as_deref().unwrap_or(b"")).await)
        }
        (&Method::POST, "webhook/status") => {
            answer(webhook::status(state, body.as_deref().unwrap_or(b"")).await)
        }
        (&Method::POST, "webhook/batch") => {
            answer(webhook::batch(state, body.as_deref().unwrap_or(b"")).await)
        }
        (&Method::POST, "webhook/raw") => {
            answer(webhook::raw(state, body.as_deref().unwrap_or(b"")).await)
        }
        (&Method::POST, "webhook/verify") => {
            answer(webhook::verify(state, body.as_deref().unwrap_or(b"")).await)
        }
        (&Method::POST, "oauth/codes") => match parse_body() {
            Ok(body) => answer(onboarding::control_create_code(state, &body)),
            Err(reason) => bad_request(&reason),
        },
        (&Method::GET, "onboarding") => ok(onboarding::control_state(state)),
        (&Method::GET, "onboarding/config") => ok(json!(state.onboarding.config())),
        (&Method::POST, "onboarding/config") => match parse_body() {
            Ok(body) => answer(onboarding::control_configure(state, &body)),
            Err(reason) => bad_request(&reason),
        },
        (&Method::POST, "media") => match parse_body() {
            Ok(body) => answer(media::control_create(state, &body)),
            Err(reason) => bad_request(&reason),
        },
        (&Method::GET, "media/config") => ok(json!(state.media.config())),
        (&Method::POST, "media/config") => match parse_body() {
            Ok(body) => answer(media::control_configure(state, &body)),
            Err(reason) => bad_request(&reason),
        },
        (&Method::GET, endpoint) if endpoint.starts_with("media/") => {
            let media_id = endpoint.trim_start_matches("media/");
            match media::control_describe(state, media_id) {
                Some(description) => ok(description),
                None => json_response(404, &json!({"error": format!("no media {media_id}")})),
            }
        }
        _ => json_response(
            404,
            &json!({"error": format!("unknown control endpoint {method} {path}")}),
        ),
    }
}

/// Body limit of `POST /_emulator/media`: room for a base64 file of about 24 MB. Larger test
/// files are generated with `size` instead.
const CONTROL_MEDIA_BODY_BYTES: usize = 32 * 1024 * 1024;

fn ok(body: Value) -> HttpResponse {
    json_response(200, &body)
}

fn answer(result: Result<Value, String>) -> HttpResponse {
    match result {
        Ok(body) => ok(body),
        Err(reason) => bad_request(&reason),
    }
}

fn bad_request(reason: &str) -> HttpResponse {
    json_response(400, &json!({"error": reason}))
}

/// Decodes `%XX` escapes and `+` (as space) in a query component; bad escapes stay literal.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .and_then(|pair| std::str::from_utf8(pair).ok())
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn list_requests(state: &AppState, query: &str) -> HttpResponse {
    let since = match query_param(query, "since") {
        Some(text) => match text.parse::<u64>() {
            Ok(since) => Some(since),
            Err(_) => return bad_request("since: must be a non-negative integer"),
        },
        None => None,
    };
    let path_contains = query_param(query, "path_contains");
    let requests = state.requests(since, path_contains.as_deref());
    // Rendered one record at a time: building every record's `Value` first would need several
    // times the memory of the final text for a large recording.
    let mut text = String::from("{\"requests\":[");
    for (index, entry) in requests.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(&entry.to_json().to_string());
    }
    text.push_str("]}");
    text_json_response(200, text)
}

fn add_fault(state: &AppState, body: Value) -> HttpResponse {
    match serde_json::from_value::<FaultRequest>(body) {
        Ok(request) => ok(json!({"id": state.add_fault(request)})),
        Err(error) => bad_request(&format!("invalid fault rule: {error}")),
    }
}

/// Applies the given settings on top of the current config; `null` turns a limit off.
fn update_config(state: &AppState, body: &Value) -> HttpResponse {
    let Some(fields) = body.as_object() else {
        return bad_request("config: must be a JSON object");
    };
    match state.update_config(|current| merged_config(current, fields)) {
        Ok(config) => ok(json!(*config)),
        Err(reason) => bad_request(&reason),
    }
}

fn merged_config(current: &Config, fields: &Map<String, Value>) -> Result<Config, String> {
    let mut config = current.clone();
    for (key, value) in fields {
        match key.as_str() {
            "tokens" => {
                let tokens = value
                    .as_array()
                    .and_then(|items| {
                        items
                            .iter()
                            .map(|item| item.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or("tokens: must be an array of strings")?;
                config.tokens = tokens;
            }
            "throughput_mps" => {
                config.throughput_mps = match value {
                    Value::Null => None,
                    _ => Some(
                        positive_u32(value)
                            .ok_or("throughput_mps: must be a positive integer or null")?,
                    ),
                };
            }
            "pair_limit" => {
                config.pair_limit = match value {
                    Value::Null => None,
                    _ => {
                        let limit: PairLimit = serde_json::from_value(value.clone())
                            .map_err(|error| format!("pair_limit: {error}"))?;
                        if limit.max == 0 || limit.window_ms == 0 {
                            return Err("pair_limit: max and window_ms must be positive".into());
                        }
                        Some(limit)
                    }
                };
            }
            "latency_ms" => {
                config.latency_ms = value
                    .as_u64()
                    .ok_or("latency_ms: must be a non-negative integer")?;
            }
            other => return Err(format!("{other}: unknown config field")),
        }
    }
    Ok(config)
}

fn positive_u32(value: &Value) -> Option<u32> {
    value
        .as_u64()
        .filter(|number| *number > 0)
        .and_then(|number| u32::try_from(number).ok())
}

/// Used by the CLI too, so `--pair-limit` alone gets Meta's 6 s window.
pub fn pair_limit(max: Option<u32>, window_ms: Option<u64>) -> Option<PairLimit> {
    max.map(|max| PairLimit {
        max,
        window_ms: window_ms.unwrap_or(DEFAULT_PAIR_WINDOW_MS),
    })
}
