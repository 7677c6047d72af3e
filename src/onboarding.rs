//! Embedded Signup onboarding (cloud-api.md §6): exchange the signup code for a business token,
//! subscribe the app to the customer's WABA with our webhook as override callback, register
//! the phone number. Each run reports the stage it reached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::error::GraphError;
use crate::graph::GraphClient;

/// The seed's `onboardingStatus`; numbers are part of the C ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Unstarted = 0,
    FetchToken = 1,
    RegisterWebhooks = 2,
    RegisterPhone = 3,
    Finished = 4,
}

impl Stage {
    pub fn from_u32(value: u32) -> Option<Stage> {
        [
            Stage::Unstarted,
            Stage::FetchToken,
            Stage::RegisterWebhooks,
            Stage::RegisterPhone,
            Stage::Finished,
        ]
        .into_iter()
        .find(|s| *s as u32 == value)
    }
}

/// What one `Onboard` call asks for. Its `Debug` leaves the code, verify token and PIN out.
#[derive(Clone)]
pub struct OnboardRequest {
    /// Graph version for these calls; empty = the client's.
    pub version: String,
    /// The Embedded Signup code (needed when starting at `FetchToken`).
    pub code: Option<String>,
    pub webhook_token: String,
    pub waba_id: String,
    /// Our webhook URL, set as the WABA's override callback; empty = no override.
    pub callback_uri: String,
    pub phone_id: String,
    pub pin: String,
    /// Where to start: `FetchToken`, or later to resume with the token the client has.
    pub start: Stage,
}

/// How a run ended: `stage` is `Finished` or the stage that failed. Its `Debug` leaves the
/// token out.
#[derive(Clone, PartialEq)]
pub struct OnboardOutcome {
    pub stage: Stage,
    pub token: Option<String>,
    pub error: Option<String>,
}

const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for OnboardRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnboardRequest")
            .field("version", &self.version)
            .field("code", &self.code.as_ref().map(|_| REDACTED))
            .field("webhook_token", &REDACTED)
            .field("waba_id", &self.waba_id)
            .field("callback_uri", &self.callback_uri)
            .field("phone_id", &self.phone_id)
            .field("pin", &REDACTED)
            .field("start", &self.start)
            .finish()
    }
}

impl std::fmt::Debug for OnboardOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnboardOutcome")
            .field("stage", &self.stage)
            .field("token", &self.token.as_ref().map(|_| REDACTED))
            .field("error", &self.error)
            .finish()
    }
}

/// What a run needs from its client.
pub struct OnboardContext {
    pub graph: Arc<GraphClient>,
    pub app_id: Option<String>,
    pub app_secret: String,
    pub default_version: String,
    /// The token the client has (for resumed runs).
    pub current_token: Option<String>,
}

/// Checks a request before any call.
pub fn validate(request: &OnboardRequest) -> Result<(), String> {
    let id_ok = |s: &str| {
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    if !matches!(
        request.start,
        Stage::FetchToken | Stage::RegisterWebhooks | Stage::RegisterPhone
    ) {
        return Err("start must be FETCH_TOKEN, REGISTER_WEBHOOKS or REGISTER_PHONE".into());
    }
    if request.start == Stage::FetchToken && request.code.as_deref().is_none_or(str::is_empty) {
        return Err("a signup code is needed to start at FETCH_TOKEN".into());
    }
    if request.start <= Stage::RegisterWebhooks {
        if !id_ok(&request.waba_id) {
            return Err("wabaID must be a WhatsApp Business Account id".into());
        }
        let uri = &request.callback_uri;
        let is_http = uri.starts_with("https://") || uri.starts_with("http://");
        if !(uri.is_empty() || is_http) || uri.len() > 200 {
            return Err("callbackUri must be an http(s) URL of at most 200 characters".into());
        }
        if !uri.is_empty() && request.webhook_token.is_empty() {
            return Err("a webhook verify token is needed with a callbackUri".into());
        }
    }
    if !id_ok(&request.phone_id) {
        return Err("phoneID must be a phone number id".into());
    }
    if request.pin.len() != 6 || !request.pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err("phonePin must be 6 digits".into());
    }
    if !request.version.is_empty() {
        crate::config::validate_api_version(&request.version)?;
    }
    Ok(())
}

/// The live state of a run, readable when it is cancelled.
#[derive(Default)]
pub struct Progress {
    stage: AtomicU32,
    token: Mutex<Option<String>>,
}

impl Progress {
    pub fn stage(&self) -> Stage {
        Stage::from_u32(self.stage.load(Ordering::Acquire)).unwrap_or(Stage::Unstarted)
    }
    fn enter(&self, stage: Stage) {
        self.stage.store(stage as u32, Ordering::Release);
    }
    pub fn token(&self) -> Option<String> {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn set_token(&self, token: &str) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.to_string());
    }
}

fn failure(progress: &Progress, what: &str, error: GraphError) -> OnboardOutcome {
    let detail = if error.code.is_some() {
        error.text()
    } else {
        error.message.clone()
    };
    OnboardOutcome {
        stage: progress.stage(),
        token: progress.token(),
        error: Some(format!("{what}: {detail}")),
    }
}

/// Runs the stages from `request.start`. `on_token` is told the new token as soon as stage 1
/// succeeds, and `on_webhook_token` before stage 2 (the client's listener must answer Meta's
/// verification of the callback URI).
pub async fn run(
    ctx: OnboardContext,
    request: OnboardRequest,
    progress: Arc<Progress>,
    on_token: impl Fn(&str),
    on_webhook_token: impl Fn(&str),
) -> OnboardOutcome {
    let version = if request.version.is_empty() {
        ctx.default_version.clone()
    } else {
        request.version.clone()
    };
    let graph = &ctx.graph;
    let token = if request.start == Stage::FetchToken {
        progress.enter(Stage::FetchToken);
        let Some(app_id) = ctx.app_id.as_deref().filter(|a| !a.is_empty()) else {
            return failure(
                &progress,
                "token exchange",
                GraphError {
                    message: "no app id configured (wa_options_set_app_id or WA_APP_ID)".into(),
                    ..Default::default()
                },
            );
        };
        if ctx.app_secret.is_empty() {
            return failure(
                &progress,
                "token exchange",
                GraphError {
                    message: "no app secret configured (SetConfig)".into(),
                    ..Default::default()
                },
            );
        }
        let code = request.code.as_deref().unwrap_or("");
        // The code is single-use and short-lived (36007 expired, 36009 used): no retry.
        let query = [
            ("client_id", app_id),
            ("client_secret", ctx.app_secret.as_str()),
            ("code", code),
        ];
        let answer = match graph
            .call(
                reqwest::Method::GET,
                &version,
                "oauth/access_token",
                None,
                &query,
                None,
            )
            .await
        {
            Ok(answer) => answer,
            Err(e) => return failure(&progress, "token exchange", e),
        };
        let Some(token) = answer["access_token"].as_str().filter(|t| !t.is_empty()) else {
            return failure(
                &progress,
                "token exchange",
                GraphError {
                    message: "answer has no access_token".into(),
                    ..Default::default()
                },
            );
        };
        progress.set_token(token);
        on_token(token);
        token.to_string()
    } else {
        match ctx.current_token.filter(|t| !t.is_empty()) {
            Some(token) => {
                progress.set_token(&token);
                token
            }
            None => {
                progress.enter(request.start);
                return failure(
                    &progress,
                    "resume",
                    GraphError {
                        message: "the client has no token to resume with (SetConfig)".into(),
                        ..Default::default()
                    },
                );
            }
        }
    };
    if request.start <= Stage::RegisterWebhooks {
        progress.enter(Stage::RegisterWebhooks);
        // Without a token of its own (no callbackUri), a run keeps the client's.
        if !request.webhook_token.is_empty() {
            on_webhook_token(&request.webhook_token);
        }
        let body = if request.callback_uri.is_empty() {
            json!({})
        } else {
            json!({"override_callback_uri": request.callback_uri, "verify_token": request.webhook_token})
        };
        let path = format!("{}/subscribed_apps", request.waba_id);
        if let Err(e) = post(graph, &version, &path, &token, &body).await {
            return failure(&progress, "webhook subscription", e);
        }
    }
    progress.enter(Stage::RegisterPhone);
    let body = json!({"messaging_product": "whatsapp", "pin": request.pin});
    let path = format!("{}/register", request.phone_id);
    if let Err(e) = post(graph, &version, &path, &token, &body).await {
        return failure(&progress, "phone registration", e);
    }
    progress.enter(Stage::Finished);
    OnboardOutcome {
        stage: Stage::Finished,
        token: Some(token),
        error: None,
    }
}

/// A stage's `POST {version}/{path}` with the business token and a JSON body.
async fn post(
    graph: &GraphClient,
    version: &str,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, GraphError> {
    graph
        .call(
            reqwest::Method::POST,
            version,
            path,
            Some(token),
            &[],
            Some(body),
        )
        .await
}

/// Runs in progress, by onboarding object; the run removed from here delivers its result.
#[derive(Default)]
pub struct Runs {
    state: Mutex<RunsState>,
}

#[derive(Default)]
pub struct RunsState {
    pub by_onboarding: HashMap<u64, Vec<Run>>,
    /// Onboarding objects closed by the host: no run may start (and report) after their
    /// close-complete. Checked and set under this lock, so that a start racing the close
    /// either is ended by it or is refused.
    pub closed: std::collections::HashSet<u64>,
}

pub struct Run {
    pub id: u64,
    pub request_ctx: usize,
    pub src: String,
    pub progress: Arc<Progress>,
    pub abort: Option<tokio::task::AbortHandle>,
}

impl Runs {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, RunsState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> OnboardRequest {
        OnboardRequest {
            version: String::new(),
            code: Some("code".into()),
            webhook_token: "verify".into(),
            waba_id: "524126980791429".into(),
            callback_uri: "https://example.com/webhook".into(),
            phone_id: "106540352242922".into(),
            pin: "581063".into(),
            start: Stage::FetchToken,
        }
    }

    #[test]
    fn validation() {
        assert!(validate(&request()).is_ok());
        let mut r = request();
        r.pin = "12345".into();
        assert!(validate(&r).is_err());
        let mut r = request();
        r.code = None;
        assert!(validate(&r).is_err());
        r.start = Stage::RegisterPhone;
        assert!(validate(&r).is_ok(), "resuming needs no code");
        let mut r = request();
        r.waba_id = "../x".into();
        assert!(validate(&r).is_err());
        let mut r = request();
        r.callback_uri = "ftp://x".into();
        assert!(validate(&r).is_err());
        let mut r = request();
        r.start = Stage::Finished;
        assert!(validate(&r).is_err());
    }
}
