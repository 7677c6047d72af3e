//! One HTTP attempt against Graph's send endpoint, and what its answer means.

use std::collections::HashMap;
use std::sync::{Mutex, Once};

use reqwest::header::HeaderValue;
use reqwest::Url;
use std::time::Duration;

use crate::config::ClientConfig;
use crate::error::{parse_retry_after, DeliveryError, GraphError};

pub const USER_AGENT: &str = concat!("whatsapp-connector/", env!("CARGO_PKG_VERSION"));
/// Graph success and error bodies are small; a larger answer is not Graph's.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Accepted { wamid: String },
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The final error if this failure ends the message.
    pub error: DeliveryError,
    /// Host-facing text (Graph's message and details, or the transport problem).
    pub text: String,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
    /// Graph's pair rate limit (131056): this recipient gets too many messages.
    pub pair_rate_limited: bool,
    /// Graph's throughput limit (130429): the sending phone number is over its rate.
    pub throughput_limited: bool,
}

/// rustls needs one process-wide crypto provider; ours is ring (see Cargo.toml).
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means the host process already installed one, which serves us as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The standard proxy variables (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, also
/// in lower case) apply to Graph on the network, as a host's egress proxy expects; a Graph on a
/// loopback address (the emulator) is always reached directly: a proxy cannot reach this
/// machine's loopback, and test traffic with its token would otherwise go through it.
fn with_proxy_policy(
    builder: reqwest::ClientBuilder,
    graph_base_url: &str,
) -> reqwest::ClientBuilder {
    if is_loopback_url(graph_base_url) {
        builder.no_proxy()
    } else {
        builder
    }
}

fn is_loopback_url(url: &str) -> bool {
    let Some(parsed) = Url::parse(url).ok() else {
        return false;
    };
    let host = parsed.host_str().unwrap_or("");
    // An IPv6 host comes in brackets.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = host.strip_suffix('.').unwrap_or(host);
            name.eq_ignore_ascii_case("localhost")
        }
    }
}

/// Builds the client `make` describes, with the proxy policy above. On a machine without CA
/// certificates no https server can be verified and the builder fails: for an https Graph
/// that is an error now, naming the cause; a plain-http Graph (the emulator, a test double)
/// still gets a client, whose https requests (a media host) fail verification.
pub(crate) fn build_client(
    graph_base_url: &str,
    make: impl Fn() -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, String> {
    let error = match with_proxy_policy(make(), graph_base_url).build() {
        Ok(client) => return Ok(client),
        Err(error) => error,
    };
    if graph_base_url.starts_with("http://") {
        if let Ok(client) = with_proxy_policy(make(), graph_base_url)
            .tls_certs_only(Vec::new())
            .build()
        {
            tracing::warn!(
                "no CA certificates could be loaded ({}): https requests will fail",
                error_text(&error)
            );
            return Ok(client);
        }
    }
    Err(format!(
        "cannot create the HTTP client: {}; {CA_STORE_HINT}",
        error_text(&error)
    ))
}

/// Graph's send endpoint for one configuration.
pub struct GraphClient {
    http: reqwest::Client,
    /// Scheme, host and port of Graph.
    base_url: String,
    /// `base_url` plus the configured version.
    base: String,
    endpoints: Mutex<HashMap<String, Url>>,
}

impl GraphClient {
    pub fn new(config: &ClientConfig) -> Result<Self, String> {
        install_crypto_provider();
        let http = build_client(&config.graph_base_url, || {
            reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .timeout(config.request_timeout)
                .connect_timeout(config.connect_timeout)
                .pool_max_idle_per_host(config.max_in_flight)
                .pool_idle_timeout(Duration::from_secs(60))
                .tcp_nodelay(true)
                // One place decides retries: the outbox (bounded, with backoff and Retry-After,
                // counted per message). reqwest's own layer copies every request to replay
                // HTTP/2 refusals (GOAWAY, REFUSED_STREAM) at once; without it those few
                // requests come back as transport errors and the outbox retries them after its
                // first backoff.
                .retry(reqwest::retry::never().max_retries_per_request(0))
        })?;
        Ok(Self {
            http,
            base_url: config.graph_base_url.clone(),
            base: format!("{}/{}", config.graph_base_url, config.api_version),
            endpoints: Mutex::new(HashMap::new()),
        })
    }

    /// `Authorization: Bearer <token>`, built once per token rather than once per request.
    pub fn authorization(token: &str) -> Option<HeaderValue> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// The send endpoint of a channel, parsed once per channel (URL parsing, with IDNA, is a
    /// noticeable part of a request's cost).
    fn messages_url(&self, channel: &str) -> Result<Url, String> {
        let mut cache = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(url) = cache.get(channel) {
            return Ok(url.clone());
        }
        let url = Url::parse(&format!("{}/{}/messages", self.base, channel))
            .map_err(|e| e.to_string())?;
        // Channels are the business's few phone numbers; the bound only guards against misuse.
        if cache.len() >= 1024 {
            cache.clear();
        }
        cache.insert(channel.to_string(), url.clone());
        Ok(url)
    }

    /// A Graph call other than sending (onboarding): `{base}/{version}/{path}`, with a bearer
    /// token when given, query pairs, and a JSON body for POST. Returns the answer's JSON, or
    /// Graph's error (a transport failure has no code).
    pub async fn call(
        &self,
        method: reqwest::Method,
        version: &str,
        path: &str,
        bearer: Option<&str>,
        query: &[(&str, &str)],
        json: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, GraphError> {
        let mut url =
            Url::parse(&format!("{}/{}/{}", self.base_url, version, path)).map_err(|e| {
                GraphError {
                    message: format!("invalid Graph URL: {e}"),
                    ..Default::default()
                }
            })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self.http.request(method, url);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(json) = json {
            request = request.json(json);
        }
        let response = request.send().await.map_err(|e| GraphError {
            message: format!("Graph request failed: {}", error_text(&e)),
            ..Default::default()
        })?;
        let status = response.status().as_u16();
        let body = read_limited(response).await.map_err(|e| GraphError {
            http_status: status,
            message: format!("Graph answer unreadable: {}", error_text(&e)),
            ..Default::default()
        })?;
        if (200..300).contains(&status) {
            serde_json::from_slice(&body).map_err(|_| GraphError {
                http_status: status,
                message: "Graph's answer is not JSON".into(),
                ..Default::default()
            })
        } else {
            Err(GraphError::parse(status, &body))
        }
    }

    /// `POST {base}/{version}/{channel}/messages`.
    pub async fn send(
        &self,
        channel: &str,
        authorization: HeaderValue,
        body: bytes::Bytes,
    ) -> Attempt {
        let url = match self.messages_url(channel) {
            Ok(url) => url,
            Err(e) => {
                return Attempt::Failed(Failure {
                    error: DeliveryError::BadRequest,
                    text: format!("invalid send URL: {e}"),
                    retryable: false,
                    retry_after: None,
                    pair_rate_limited: false,
                    throughput_limited: false,
                })
            }
        };
        let response = self
            .http
            .post(url)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return transport_failure(&e),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = match read_limited(response).await {
            Ok(body) => body,
            // Graph accepted the message: sending it again would deliver it twice.
            Err(_) if (200..300).contains(&status) => {
                return Attempt::Failed(Failure {
                    error: DeliveryError::OtherHttp,
                    text: format!(
                        "HTTP {status}, but the answer was cut off: the message was probably \
                         sent (not retried, to avoid a duplicate)"
                    ),
                    retryable: false,
                    retry_after: None,
                    pair_rate_limited: false,
                    throughput_limited: false,
                })
            }
            Err(e) => return transport_failure(&e),
        };
        if (200..300).contains(&status) {
            return match wamid_of(&body) {
                Some(wamid) => Attempt::Accepted { wamid },
                None => Attempt::Failed(Failure {
                    error: DeliveryError::OtherHttp,
                    text: format!("HTTP {status} without a message id in the answer"),
                    retryable: false,
                    retry_after: None,
                    pair_rate_limited: false,
                    throughput_limited: false,
                }),
            };
        }
        let error = GraphError::parse(status, &body);
        Attempt::Failed(Failure {
            error: error.delivery_error(),
            text: error.text(),
            retryable: error.is_retryable(),
            retry_after,
            pair_rate_limited: error.is_pair_rate_limit(),
            throughput_limited: error.is_throughput_limit(),
        })
    }
}

/// The answer's body, cut at `MAX_RESPONSE_BYTES` (Graph's bodies are small; nothing else is
/// read whole).
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
) -> Result<bytes::Bytes, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|n| n <= MAX_RESPONSE_BYTES as u64)
    {
        // The usual case: one small chunk, taken without copying.
        return response.bytes().await;
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

/// The message id of a send success body (`messages[0].id`).
pub fn wamid_of(body: &[u8]) -> Option<String> {
    // Typed and borrowing: this runs once per sent message.
    #[derive(serde::Deserialize)]
    struct Sent<'a> {
        #[serde(borrow)]
        messages: Vec<MessageId<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct MessageId<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    let sent: Sent<'_> = serde_json::from_slice(body).ok()?;
    let id = sent.messages.into_iter().next()?.id;
    (!id.is_empty()).then(|| id.into_owned())
}

/// Connection problems and timeouts are transient: the request may not have reached Graph. A
/// certificate that fails verification is not: retrying only hides a missing CA store or an
/// interception proxy for the whole retry time, so the message fails at once, saying why.
fn transport_failure(e: &reqwest::Error) -> Attempt {
    if let Some(text) = certificate_refusal(e) {
        return Attempt::Failed(Failure {
            error: DeliveryError::OtherHttp,
            text,
            retryable: false,
            retry_after: None,
            pair_rate_limited: false,
            throughput_limited: false,
        });
    }
    let what = if e.is_timeout() {
        "request timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    // The URL is left out: it is ours, and error texts stay short.
    let detail = error_text(e);
    Attempt::Failed(Failure {
        error: DeliveryError::OtherHttp,
        text: format!("{what}: {detail}"),
        retryable: true,
        retry_after: None,
        pair_rate_limited: false,
        throughput_limited: false,
    })
}

/// Where a certificate that fails verification most often comes from.
const CA_STORE_HINT: &str =
    "are the system's CA certificates installed (ca-certificates, SSL_CERT_FILE)?";

/// The host-facing text of a transport error that is a refused certificate, if it is one.
pub(crate) fn certificate_refusal(e: &reqwest::Error) -> Option<String> {
    certificate_problem(e).map(|problem| {
        format!("TLS: the server's certificate was refused ({problem}); {CA_STORE_HINT}")
    })
}

/// The certificate verification failure behind a transport error, if that is what it is. TLS
/// errors come wrapped in I/O errors, whose `source` skips the wrapped error itself.
fn certificate_problem(e: &reqwest::Error) -> Option<rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        // I/O errors may wrap I/O errors (hyper-util's connect error wraps tokio-rustls's).
        let mut unwrapped: &(dyn std::error::Error + 'static) = s;
        while let Some(inner) = unwrapped
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            unwrapped = inner;
        }
        let tls = unwrapped.downcast_ref::<rustls::Error>();
        if let Some(
            problem @ (rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented),
        ) = tls
        {
            return Some(problem.clone());
        }
        source = s.source();
    }
    None
}

/// A reqwest error as host-facing text: its cause chain (what actually happened), else its own
/// description without the URL, which is ours and may carry secrets in its query (the token
/// exchange's `client_secret`).
pub(crate) fn error_text(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s.to_string());
        source = s.source();
    }
    if text.is_empty() {
        text = e.to_string();
        if let Some(url) = e.url() {
            text = text.replace(&format!(" for url ({url})"), "");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_graph_urls_are_recognised() {
        for loopback in [
            "http://127.0.0.1:9",
            "http://127.8.0.1",
            "http://[::1]:80",
            "http://[::ffff:127.0.0.1]:80",
            "http://LocalHost:1",
            "http://localhost.:1",
        ] {
            assert!(is_loopback_url(loopback), "{loopback}");
        }
        for network in [
            "https://graph.facebook.com",
            "http://10.0.0.1",
            "http://localhost.example",
            "not a url",
        ] {
            assert!(!is_loopback_url(network), "{network}");
        }
    }

    #[test]
    fn error_text_leaves_the_url_out() {
        // An error without a cause chain: reqwest's own text names the URL.
        let answer = hyper::Response::builder().status(404).body("").unwrap();
        let e = reqwest::Response::from(answer)
            .error_for_status()
            .unwrap_err();
        let url = e.url().expect("the error carries a URL").to_string();
        assert!(e.to_string().contains(&url), "{e}");
        let text = error_text(&e);
        assert!(text.contains("404") && !text.contains(&url), "{text}");
    }
}
