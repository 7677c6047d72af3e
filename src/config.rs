//! Client settings: defaults, environment overrides, explicit settings.
//!
//! Precedence: an explicit setting (from the options object) wins over the environment, which
//! wins over the default. The environment exists so that a host calling the seed's parameterless
//! `Create()` can still be pointed at the emulator.

use std::time::Duration;

use crate::events::LogLevel;

pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.facebook.com";
/// Newest stable Graph API version at the time of writing (cloud-api.md §7).
pub const DEFAULT_API_VERSION: &str = "v26.0";

/// See `ClientConfig::dispatch_batching`. Every wake-up of the dispatch thread costs tens of µs
/// of machine time on a VM (timer, context switches). On one CPU the webhook bench's ratio was
/// 0.74 with 1 ms, 0.75 with 2 ms and 0.77 with 4 ms (a batch also ends at 32 events); 4 ms is
/// in line with what message clients commonly linger (librdkafka's default is 5 ms) and far
/// below the delay of Meta's own webhook delivery.
pub const DEFAULT_DISPATCH_BATCHING: Duration = Duration::from_millis(4);

/// Media jobs running at once by default. Each holds connections (Graph, the media host, a
/// destination) and, for downloads and file uploads, a file for as long as its transfer takes;
/// thousands at once would exhaust the process's file descriptors. A few transfers already
/// fill a link: more only split it.
pub const DEFAULT_MAX_MEDIA_IN_FLIGHT: usize = 16;

/// How callbacks reach the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchMode {
    /// Events are queued; the host drains them on its own thread (`dispatch`).
    Poll,
    /// A thread owned by the library runs the callbacks.
    Thread,
}

/// Every setting of a client, resolved.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Scheme, host and optional port, without a trailing slash.
    pub graph_base_url: String,
    /// Empty means "no version": every send ends with `MissingVersion`.
    pub api_version: String,
    pub app_id: Option<String>,
    pub webhook_listen: Option<String>,
    /// Path served by the built-in listener.
    pub webhook_path: String,
    /// Largest webhook body accepted (Meta's payloads are at most 3 MB; most are tiny).
    pub webhook_max_body: usize,
    /// The built-in listener closes a connection that moved no byte for this long; `None`
    /// never.
    pub webhook_idle_timeout: Option<Duration>,
    /// The most connections the built-in listener holds at once; `None` = no limit.
    pub webhook_max_connections: Option<usize>,
    /// Message and status ids remembered to drop redeliveries; 0 disables dedupe.
    pub dedupe_capacity: usize,
    /// Callbacks waiting for the host beyond which webhooks are refused (503); 0 = no limit.
    pub webhook_max_backlog: usize,
    /// Phone number ids whose webhook changes are delivered; empty = all.
    pub allowed_channels: Vec<String>,
    /// Whether raw-change events are produced (the host registered that callback).
    pub raw_changes: bool,
    /// Hosts besides the Graph host that may receive the token with a media download.
    pub media_hosts: Vec<String>,
    /// Largest media transferred.
    pub media_max_bytes: u64,
    /// Token required by the listener's `/client/getMedia`; `None` = endpoint refuses all.
    pub media_access_token: Option<crate::secrets::Secret>,
    /// The durable outbox's file; `None` keeps the outbox in memory.
    pub outbox_path: Option<std::path::PathBuf>,
    pub request_timeout: Duration,
    /// A media transfer fails once nothing moved for this long.
    pub media_idle_timeout: Duration,
    pub connect_timeout: Duration,
    /// Attempts per message, the first included.
    pub max_attempts: u32,
    /// No retry starts later than this after the message was accepted.
    pub max_retry_age: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Messages accepted but without a final result, at most.
    pub outbox_capacity: usize,
    /// Sends per second per channel (phone number id); 0 = unlimited.
    pub channel_rate_per_sec: u32,
    /// Pause for a recipient after Graph's pair-rate error 131056.
    pub pair_rate_backoff: Duration,
    /// How long messages wait for a token before ending with `MissingToken`.
    pub token_hold: Duration,
    /// How long `close` lets requests already on the wire finish.
    pub drain_timeout: Duration,
    /// Requests on the wire at once, over all recipients.
    pub max_in_flight: usize,
    /// Media jobs (forward, download, upload) running at once; the others wait their turn.
    pub max_media_in_flight: usize,
    pub dispatch_mode: DispatchMode,
    /// Thread mode: while events stream in, how long the dispatcher lets a batch gather
    /// (it runs sooner once 32 events are pending); zero = every event at once.
    pub dispatch_batching: Duration,
    /// Poll mode: the most events one `wa_client_dispatch` runs (0 = all pending).
    pub dispatch_max_events: usize,
    pub log_level: LogLevel,
    pub worker_threads: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            graph_base_url: DEFAULT_GRAPH_BASE_URL.to_string(),
            api_version: DEFAULT_API_VERSION.to_string(),
            app_id: None,
            webhook_listen: None,
            webhook_path: crate::webhook::DEFAULT_PATH.to_string(),
            webhook_max_body: crate::webhook::DEFAULT_MAX_BODY,
            webhook_idle_timeout: Some(crate::listener::DEFAULT_IDLE_TIMEOUT),
            webhook_max_connections: Some(crate::listener::DEFAULT_MAX_CONNECTIONS),
            dedupe_capacity: crate::webhook::DEFAULT_DEDUPE_CAPACITY,
            webhook_max_backlog: crate::webhook::DEFAULT_MAX_BACKLOG,
            allowed_channels: Vec::new(),
            raw_changes: true,
            media_hosts: vec![crate::media::DEFAULT_MEDIA_HOST.to_string()],
            media_max_bytes: crate::media::DEFAULT_MAX_BYTES,
            media_access_token: None,
            outbox_path: None,
            request_timeout: Duration::from_secs(30),
            media_idle_timeout: crate::media::DEFAULT_IDLE_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
            max_attempts: 5,
            max_retry_age: Duration::from_secs(300),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            outbox_capacity: 100_000,
            channel_rate_per_sec: 80,
            pair_rate_backoff: Duration::from_secs(6),
            token_hold: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(5),
            max_in_flight: 256,
            max_media_in_flight: DEFAULT_MAX_MEDIA_IN_FLIGHT,
            dispatch_mode: DispatchMode::Poll,
            dispatch_batching: DEFAULT_DISPATCH_BATCHING,
            dispatch_max_events: 0,
            log_level: LogLevel::Info,
            worker_threads: 1,
        }
    }
}

/// Settings given explicitly by the host; `None` = not set.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub graph_base_url: Option<String>,
    pub api_version: Option<String>,
    pub app_id: Option<String>,
    pub webhook_listen: Option<String>,
    pub webhook_path: Option<String>,
    pub webhook_max_body: Option<usize>,
    /// `Some(None)`: never close idle connections.
    pub webhook_idle_timeout: Option<Option<Duration>>,
    /// `Some(None)`: no limit.
    pub webhook_max_connections: Option<Option<usize>>,
    pub dedupe_capacity: Option<usize>,
    pub webhook_max_backlog: Option<usize>,
    pub allowed_channels: Vec<String>,
    pub extra_media_hosts: Vec<String>,
    pub media_max_bytes: Option<u64>,
    pub media_access_token: Option<crate::secrets::Secret>,
    pub outbox_path: Option<std::path::PathBuf>,
    pub request_timeout: Option<Duration>,
    pub media_idle_timeout: Option<Duration>,
    pub max_attempts: Option<u32>,
    pub max_retry_age: Option<Duration>,
    pub backoff_initial: Option<Duration>,
    pub backoff_max: Option<Duration>,
    pub outbox_capacity: Option<usize>,
    pub channel_rate_per_sec: Option<u32>,
    pub pair_rate_backoff: Option<Duration>,
    pub token_hold: Option<Duration>,
    pub drain_timeout: Option<Duration>,
    pub max_in_flight: Option<usize>,
    pub max_media_in_flight: Option<usize>,
    pub dispatch_mode: Option<DispatchMode>,
    pub dispatch_batching: Option<Duration>,
    pub dispatch_max_events: Option<usize>,
    pub log_level: Option<LogLevel>,
    pub worker_threads: Option<usize>,
    /// `Some(false)`: the `WA_*` environment variables are not read.
    pub use_environment: Option<bool>,
}

/// Checks a Graph base URL: http or https, a host, no path, query or credentials.
pub fn validate_base_url(url: &str) -> Result<String, String> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or("the Graph base URL must start with http:// or https://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("the Graph base URL must be scheme://host[:port] with nothing after it".into());
    }
    Ok(trimmed.to_string())
}

/// Checks an API version: empty (no version) or `v<major>.<minor>`.
pub fn validate_api_version(version: &str) -> Result<(), String> {
    if version.is_empty() {
        return Ok(());
    }
    let valid = version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        });
    if valid {
        Ok(())
    } else {
        Err(format!("API version {version:?} is not of the form vNN.N"))
    }
}

impl Options {
    /// Resolves explicit settings over `env` over defaults. `env` is a lookup so tests need not
    /// touch the process environment.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<ClientConfig, String> {
        let d = ClientConfig::default();
        let use_environment = self.use_environment.unwrap_or(true);
        let env = |name: &str| if use_environment { env(name) } else { None };
        let from_env = |name: &str| env(name).filter(|v| !v.is_empty());
        let graph_base_url = match self
            .graph_base_url
            .clone()
            .or_else(|| from_env("WA_GRAPH_BASE_URL"))
        {
            Some(url) => validate_base_url(&url)?,
            None => d.graph_base_url,
        };
        // An explicitly empty version is meaningful ("no version"), so the environment variable
        // is taken even when empty as long as it is set.
        let api_version = self
            .api_version
            .clone()
            .or_else(|| env("WA_API_VERSION"))
            .unwrap_or(d.api_version);
        validate_api_version(&api_version)?;
        let request_timeout = self.request_timeout.unwrap_or(d.request_timeout);
        Ok(ClientConfig {
            graph_base_url,
            api_version,
            app_id: self.app_id.clone().or_else(|| from_env("WA_APP_ID")),
            // An explicit "" means no listener, whatever the environment says.
            webhook_listen: match &self.webhook_listen {
                Some(address) if address.is_empty() => None,
                Some(address) => Some(address.clone()),
                None => from_env("WA_WEBHOOK_LISTEN"),
            },
            webhook_path: self.webhook_path.clone().unwrap_or(d.webhook_path),
            webhook_max_body: self.webhook_max_body.unwrap_or(d.webhook_max_body),
            webhook_idle_timeout: self.webhook_idle_timeout.unwrap_or(d.webhook_idle_timeout),
            webhook_max_connections: self
                .webhook_max_connections
                .unwrap_or(d.webhook_max_connections),
            dedupe_capacity: self.dedupe_capacity.unwrap_or(d.dedupe_capacity),
            webhook_max_backlog: self.webhook_max_backlog.unwrap_or(d.webhook_max_backlog),
            allowed_channels: self.allowed_channels.clone(),
            raw_changes: d.raw_changes,
            media_hosts: d
                .media_hosts
                .into_iter()
                .chain(self.extra_media_hosts.iter().cloned())
                .collect(),
            media_max_bytes: self.media_max_bytes.unwrap_or(d.media_max_bytes),
            media_access_token: self.media_access_token.clone(),
            outbox_path: self.outbox_path.clone(),
            request_timeout,
            media_idle_timeout: self.media_idle_timeout.unwrap_or(d.media_idle_timeout),
            connect_timeout: d.connect_timeout.min(request_timeout),
            max_attempts: self.max_attempts.unwrap_or(d.max_attempts).max(1),
            max_retry_age: self.max_retry_age.unwrap_or(d.max_retry_age),
            backoff_initial: self.backoff_initial.unwrap_or(d.backoff_initial),
            backoff_max: self.backoff_max.unwrap_or(d.backoff_max),
            outbox_capacity: self.outbox_capacity.unwrap_or(d.outbox_capacity).max(1),
            channel_rate_per_sec: self.channel_rate_per_sec.unwrap_or(d.channel_rate_per_sec),
            pair_rate_backoff: self.pair_rate_backoff.unwrap_or(d.pair_rate_backoff),
            token_hold: self.token_hold.unwrap_or(d.token_hold),
            drain_timeout: self.drain_timeout.unwrap_or(d.drain_timeout),
            max_in_flight: self.max_in_flight.unwrap_or(d.max_in_flight).max(1),
            max_media_in_flight: self
                .max_media_in_flight
                .unwrap_or(d.max_media_in_flight)
                .max(1),
            dispatch_mode: self.dispatch_mode.unwrap_or(d.dispatch_mode),
            dispatch_batching: self.dispatch_batching.unwrap_or(d.dispatch_batching),
            dispatch_max_events: self.dispatch_max_events.unwrap_or(d.dispatch_max_events),
            log_level: self.log_level.unwrap_or(d.log_level),
            worker_threads: self.worker_threads.unwrap_or(d.worker_threads).clamp(1, 64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn explicit_wins_over_environment_wins_over_default() {
        let env = env_of(&[
            ("WA_GRAPH_BASE_URL", "http://127.0.0.1:9"),
            ("WA_API_VERSION", "v25.0"),
        ]);
        let c = Options::default().resolve(&env).unwrap();
        assert_eq!(c.graph_base_url, "http://127.0.0.1:9");
        assert_eq!(c.api_version, "v25.0");
        let explicit = Options {
            graph_base_url: Some("http://localhost:1/".into()),
            api_version: Some("".into()),
            ..Default::default()
        };
        let c = explicit.resolve(&env).unwrap();
        assert_eq!(c.graph_base_url, "http://localhost:1");
        assert_eq!(c.api_version, "");
        let c = Options::default().resolve(|_| None).unwrap();
        assert_eq!(c.graph_base_url, DEFAULT_GRAPH_BASE_URL);
        assert_eq!(c.api_version, DEFAULT_API_VERSION);
    }

    #[test]
    fn an_empty_listen_address_or_no_environment_keeps_the_environment_out() {
        let env = env_of(&[
            ("WA_WEBHOOK_LISTEN", "0.0.0.0:0"),
            ("WA_GRAPH_BASE_URL", "http://127.0.0.1:9"),
            ("WA_API_VERSION", "v25.0"),
            ("WA_APP_ID", "42"),
        ]);
        assert_eq!(
            Options::default()
                .resolve(&env)
                .unwrap()
                .webhook_listen
                .as_deref(),
            Some("0.0.0.0:0")
        );
        let no_listener = Options {
            webhook_listen: Some(String::new()),
            ..Default::default()
        };
        let c = no_listener.resolve(&env).unwrap();
        assert_eq!(c.webhook_listen, None);
        assert_eq!(
            c.graph_base_url, "http://127.0.0.1:9",
            "the rest still from env"
        );
        let own = Options {
            use_environment: Some(false),
            ..Default::default()
        };
        let c = own.resolve(&env).unwrap();
        assert_eq!(
            (
                c.webhook_listen,
                c.graph_base_url.as_str(),
                c.api_version.as_str(),
                c.app_id
            ),
            (None, DEFAULT_GRAPH_BASE_URL, DEFAULT_API_VERSION, None)
        );
    }

    #[test]
    fn rejects_malformed_settings() {
        assert!(validate_base_url("ftp://x").is_err());
        assert!(validate_base_url("http://host/path").is_err());
        assert!(validate_base_url("http://user@host").is_err());
        assert!(validate_api_version("26.0").is_err());
        assert!(validate_api_version("v26").is_err());
        assert!(validate_api_version("v26.0").is_ok());
    }
}
