//! wa-emulator: a loopback emulator of Meta's WhatsApp Business Cloud API (Graph API), for
//! integration tests and benchmarks of the connector. See `--help`.

mod control;
mod graph;
mod media;
mod multipart;
mod onboarding;
mod ordered_json;
mod server;
mod state;
mod validate;
mod webhook;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use crate::state::{AppState, Config};
use crate::webhook::{Hub, WebhookConfig};

const HELP: &str = "\
wa-emulator: a loopback emulator of the WhatsApp Business Cloud API (Graph API)

USAGE:
    wa-emulator [OPTIONS]

OPTIONS:
    --listen ADDR             Address to bind (default 127.0.0.1:0, i.e. any free port).
                              Non-loopback addresses are refused unless
                              --allow-non-loopback is given.
    --allow-non-loopback      Permit binding a non-loopback address.
    --token TOKEN             Accepted bearer token; repeatable (default: test-token).
                              Missing and wrong tokens both answer HTTP 401, code 190
                              (subcode 463 for a wrong one) with WWW-Authenticate.
    --throughput-mps N        Per phone-number-id limit of accepted sends per sliding
                              1 s window; above it answers code 130429 (default off).
    --pair-limit N            Per (phone-number-id, recipient) limit of sends per window;
                              above it answers code 131056 (default off).
    --pair-window-ms MS       Window of --pair-limit (default 6000).
    --latency-ms MS           Fixed latency added to every Graph request (default 0).
    --record-limit N          Recorded requests kept, oldest dropped first (default 200000).
    --threads N               Tokio worker threads, 1 to 256 (default 2).
    --quiet                   No per-request log line on stderr.
    --exit-on-stdin-eof       Exit when stdin is closed (tests spawn the emulator with a
                              piped stdin so a crashed test never leaks it).
    --webhook-url URL         Target of webhook deliveries, e.g.
                              http://127.0.0.1:8080/webhook (default: none; set it at run
                              time with POST /_emulator/webhook/config).
    --app-secret SECRET       App secret signing webhooks (X-Hub-Signature-256: sha256=..
                              and the legacy X-Hub-Signature: sha1=.., both HMACs of the
                              exact body bytes) (default test-app-secret).
    --verify-token TOKEN      hub.verify_token of the verification GET
                              (default test-verify-token).
    --auto-statuses           Follow every accepted send with status webhooks sent,
                              delivered, read (status_delay_ms apart, default 20 ms); a
                              group send's delivered and read come from one participant,
                              16505551234 (recipient_participant_id).
    --webhook-concurrency N   Webhook attempts in flight at once, 1 to 10000 (default 1:
                              one after another, in order, like a single subscriber endpoint).
    --app-id ID               The app's id for the Embedded Signup routes: the OAuth
                              client_id and the app in debug_token / subscribed_apps
                              (default 1234567890). --app-secret is its client_secret.
    --code-ttl-ms MS          Lifetime of codes from POST /_emulator/oauth/codes
                              (default 30000, Meta's 30 s).
    -h, --help                Print this help and exit.

On startup exactly one line is printed to stdout:
    wa-emulator listening on http://127.0.0.1:PORT
SIGTERM and SIGINT end the process at once with exit status 0 (no state to flush).

GRAPH ROUTES (bearer token required on all; 401 / code 190 otherwise). Every route also
answers without its /{version} prefix, at the default version v26.0, as Graph does.
Versions follow Meta's table (v19.0 .. v26.0 and their end dates) against today's date:
a live version is served as asked (facebook-api-version echoes it); a retired one (v20.0
and older, later ones once past their end) is auto-upgraded to the oldest live version,
named in facebook-api-version, with X-Ad-Api-Version-Warning: The call has been
auto-upgraded to vA.0 as vB.0 will be deprecated.; a version that never existed (v0.5,
v99999.0, v26.1, an unreleased v27.0) answers 400 OAuthException code 100 \"Unknown path
components: /PATH\" before any other check.
    POST   /{version}/{phone_number_id}/messages  send a message, mark as read / typing;
                                                  \"recipient_type\":\"group\" takes an opaque
                                                  group ID as `to` (contacts echo it as input
                                                  and wa_id, messages[0].group_id names it);
                                                  \"recipient\" must be a BSUID
                                                  (CC.[ENT.]1-128 alphanumerics), else 100
    POST   /{version}/{phone_number_id}/media     upload: multipart/form-data with fields
                                                  messaging_product=whatsapp, type=<MIME>,
                                                  file (filename + part Content-Type); MIME
                                                  types and size limits as Meta's table
                                                  (400 code 100), type != part Content-Type
                                                  answers 131053; body limit 110 MiB
    GET    /{version}/{media_id}[?phone_number_id=ID]   {\"url\",\"mime_type\",\"sha256\",
                                                         \"file_size\",\"id\",\"messaging_product\"}
    DELETE /{version}/{media_id}                  {\"success\":true}
    GET    /media/download/{media_id}?ext=..&hash=..   the download URL (Meta's lookaside
                                                  host): bearer token required (401), 404
                                                  when expired (default 300 s) or not issued
                                                  by this emulator, an HTML page (200) when
                                                  the request has no User-Agent
    GET    /{version}/oauth/access_token?client_id=&client_secret=&code=[&redirect_uri=]
                                                  no bearer needed; {\"access_token\":\"EAA..\",
                                                  \"token_type\":\"bearer\"[,\"expires_in\"]}; the
                                                  token is then accepted, scoped to the code's
                                                  WABA: on another WABA, or a number not under
                                                  it (messages, media, register, deregister,
                                                  the number's webhook_configuration,
                                                  subscribed_apps, phone_numbers), it answers
                                                  100/33 as an object it may not load (--token
                                                  tokens reach every object). HTTP
                                                  400 OAuthException, checked in this order:
                                                  wrong client_id 101; wrong client_secret 100
                                                  \"Error validating client secret.\" (code 100
                                                  as the issue asks; Graph itself answers code
                                                  1 here); unknown code 100; a non-empty
                                                  redirect_uri 100/36008 (codes are issued as
                                                  by the JS SDK, without one); used code
                                                  100/36009; expired code 100/36007. Only a
                                                  successful exchange consumes a code.
    GET    /{version}/debug_token?input_token=T   bearer or access_token=APPID|SECRET
    POST   /{version}/{waba_id}/subscribed_apps   empty body: subscribe, clear the override;
                                                  {\"override_callback_uri\",\"verify_token\"}
                                                  (JSON or form): Meta's verification GET first
                                                  (5 s, no redirects), 2200 unless it answers
                                                  200 with the challenge; uri > 200 chars 100.
                                                  Webhooks about a number of a WABA known from
                                                  oauth/codes go to the number's override, else
                                                  the WABA's, else the app URL (--webhook-url),
                                                  with entry[].id = that WABA; nowhere while
                                                  the app is not subscribed to it
                                                  (webhook/inbound and webhook/status then
                                                  answer 400). Other numbers use the webhook
                                                  config, with the number's override as URL.
    GET    /{version}/{waba_id}/subscribed_apps   the app and its override, or empty data
    DELETE /{version}/{waba_id}/subscribed_apps   unsubscribe
    POST   /{version}/{phone_number_id}/register  {\"messaging_product\":\"whatsapp\",\"pin\":\"6 digits\"
                                                  [,\"data_localization_region\"]}: the first
                                                  success sets the PIN, another PIN 133005;
                                                  over 10 register calls per number in 72 h
                                                  133016, and separately over 10 deregister
                                                  calls (every call counts)
    POST   /{version}/{phone_number_id}/deregister
    GET    /{version}/{waba_id}/phone_numbers     numbers of codes for that WABA; status
                                                  PENDING, CONNECTED after register,
                                                  DISCONNECTED after deregister
    POST   /{version}/{phone_number_id}       {\"webhook_configuration\":{\"override_callback_uri\",
                                                  \"verify_token\"}} (JSON, or that object as
                                                  JSON text in a form field): the number's own
                                                  override, verified like the WABA's (2200);
                                                  \"override_callback_uri\":\"\" clears it; other
                                                  parameters (pin, ...) are not modelled: 100
    GET    /{version}/{phone_number_id}?fields=webhook_configuration
                                                  {\"webhook_configuration\":{\"phone_number\",
                                                  \"whatsapp_business_account\",\"application\"},
                                                  \"id\"}: the URLs set at each level (other
                                                  GET /{id} are media lookups)
    Any other path answers GraphMethodException 100/33, as does a non-numeric id.
    Once a code exists (POST /_emulator/oauth/codes), register, deregister, the number's
    POST and webhook_configuration GET, subscribed_apps (GET, POST, DELETE) and
    phone_numbers answer 100/33 too for ids no code named, except
    the default phone number id 106540352242922 and WABA 102290129340398 (and the webhook
    config's waba_id); before that, and after a reset, every id is accepted.

CONTROL ENDPOINTS (no auth, JSON):
    GET    /_emulator/health                     {\"ok\":true}
    GET    /_emulator/requests[?since=SEQ&path_contains=S]   recorded Graph requests
    DELETE /_emulator/requests                   clear the recording
    GET    /_emulator/stats                      request / accepted-send / status counts
    POST   /_emulator/faults                     add a fault rule, answers {\"id\":N}
           {\"match\":{\"to\",\"phone_number_id\",\"type\",\"path_contains\"},\"times\":N,
            \"action\":{\"delay_ms\":N,\"error\":{\"code\",\"http_status\",\"message\",\"subcode\",
            \"details\",\"type\"},\"retry_after_s\":N,\"http_status\":N,\"body\":\"raw\",\"drop\":true}}
    GET    /_emulator/faults                     list fault rules
    DELETE /_emulator/faults                     remove all fault rules
    GET    /_emulator/config                     current config
    POST   /_emulator/config                     {\"tokens\":[..],\"throughput_mps\":N|null,
                                                  \"pair_limit\":{\"max\":N,\"window_ms\":MS}|null,
                                                  \"latency_ms\":N}
    POST   /_emulator/reset                      clear requests, faults, counters, webhook log,
                                                 media, onboarding state (codes, issued tokens,
                                                 subscriptions, PINs); restore config, webhook,
                                                 media and onboarding config
    A fault action may also hold \"async_error\":{\"code\":131047} (optional \"title\",
    \"details\"): the send answers 200, then one `failed` status webhook carries that error.

ONBOARDING CONTROL (Embedded Signup):
    POST   /_emulator/oauth/codes                {\"waba_id\",\"phone_number_id\",\"expiring\":false,
                                                  \"ttl_ms\":N} all optional (fresh ids when
                                                  absent) -> {\"code\",\"waba_id\",\"phone_number_id\"}
    GET    /_emulator/onboarding                 config, codes (used/expired), tokens issued,
                                                  subscriptions (override, last verification),
                                                  registrations (PIN set, call counts, the
                                                  number's override, last verification)
    GET    /_emulator/onboarding/config          current onboarding config
    POST   /_emulator/onboarding/config          {\"register_fail_code\":N|null (every register
                                                  call fails with that code until null),
                                                  \"app_id\",\"code_ttl_ms\"}

MEDIA CONTROL:
    POST   /_emulator/media                      {\"mime_type\",\"size\":N (N random bytes) |
                                                  \"base64\":\"..\",\"filename\",\"phone_number_id\"}
                                                  -> {\"id\",\"sha256\",\"file_size\"}
    GET    /_emulator/media/{id}                 {\"id\",\"mime_type\",\"sha256\",\"file_size\",
                                                  \"filename\",\"phone_number_id\",\"downloads\",\"deleted\"}
    GET    /_emulator/media/config               current media config
    POST   /_emulator/media/config               {\"url_ttl_ms\":300000,\"corrupt_sha256\":bool,
                                                  \"url_host\":\"127.0.0.2\"|null,\"expire_next_urls\":N}
                                                  (expire_next_urls: the next N lookups hand
                                                  out an already expired URL)
    Recorded upload bodies keep their first 1 KiB only (\"body_truncated\":true).

WEBHOOK DRIVER (deliveries are signed with the app secret, retried on any non-200 answer,
connection failure or timeout with exponential backoff, redirects not followed; the POST
routes answer after the FIRST attempt, with its outcome):
    GET    /_emulator/webhook/config             current webhook config
    POST   /_emulator/webhook/config             {\"url\":\"...\"|null,\"app_secret\",\"verify_token\",
                                                  \"auto_statuses\":bool,\"status_delay_ms\":20,
                                                  \"retry\":{\"max_attempts\":5,\"initial_backoff_ms\":100},
                                                  \"timeout_ms\":5000,\"waba_id\",\"display_phone_number\"}
    POST   /_emulator/webhook/inbound            a user's message: {\"from\",\"name\",\"phone_number_id\",
                                                  \"type\",\"<type>\":{...},\"context\",\"id\",\"timestamp\",
                                                  \"duplicate\":true,\"omit_phone\":true,
                                                  \"omit_url\":true}; media without an id get
                                                  a stored generated file, and a download URL
                                                  (\"url\" after \"id\", source=webhook, lives
                                                  url_ttl_ms like lookup URLs) unless omit_url
                                                  gives the shape from before 2025-11-12
    POST   /_emulator/webhook/status             {\"id\",\"status\",\"recipient_id\",\"phone_number_id\",
                                                  \"biz_opaque_callback_data\",\"errors\":[{\"code\"}],
                                                  \"recipient_type\":\"group\",
                                                  \"recipient_participant_id\"} (a group's
                                                  delivered/read/played default to participant
                                                  16505551234, null for none)
    POST   /_emulator/webhook/batch              {\"entries\":[{\"id\",\"changes\":[{\"messages\":[..],
                                                  \"statuses\":[..],\"errors\":[{\"code\",\"title\",
                                                  \"message\",\"details\",\"href\"}],\"phone_number_id\",
                                                  \"display_phone_number\"}]}]} in ONE POST;
                                                  errors are value-level (§5.8 shape; default
                                                  href /documentation/business-messaging/
                                                  whatsapp/support/error-codes, status errors
                                                  get that page's full https:// URL); a change
                                                  with another key or with none of messages,
                                                  statuses, errors answers 400
    POST   /_emulator/webhook/raw                {\"body_text\":\"...\"} or {\"body\":{..}}, optional
                                                  \"signature\":\"sha256=...\"|null and
                                                  \"signature_sha1\":\"sha1=...\"|null (absent:
                                                  the real one unless signature is given);
                                                  one attempt
    POST   /_emulator/webhook/verify             Meta's GET ?hub.mode=subscribe&hub.challenge=..
                                                  &hub.verify_token=..; optional {\"verify_token\"}
    GET    /_emulator/webhook/deliveries         every delivery with its attempts
    DELETE /_emulator/webhook/deliveries         clear that log

EXAMPLE SESSION:
    $ wa-emulator --token secret
    wa-emulator listening on http://127.0.0.1:40123
    $ curl -s http://127.0.0.1:40123/v26.0/1234567890/messages \\
        -H 'Authorization: Bearer secret' -H 'Content-Type: application/json' \\
        -d '{\"messaging_product\":\"whatsapp\",\"to\":\"+1 650 555 1234\",\"type\":\"text\",\"text\":{\"body\":\"Hi\"}}'
    {\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":\"+1 650 555 1234\",\"wa_id\":\"16505551234\"}],\"messages\":[{\"id\":\"wamid.HBgL...\"}]}
    $ curl -s http://127.0.0.1:40123/_emulator/faults \\
        -d '{\"match\":{\"to\":\"16505551234\"},\"times\":1,\"action\":{\"error\":{\"code\":131056},\"retry_after_s\":6}}'
    {\"id\":1}
    $ curl -s 'http://127.0.0.1:40123/_emulator/requests?since=0'
    {\"requests\":[{\"seq\":1,\"method\":\"POST\",\"path\":\"/v26.0/1234567890/messages\",...}]}
    $ curl -s http://127.0.0.1:40123/_emulator/webhook/config -d '{\"url\":\"http://127.0.0.1:8080/webhook\"}'
    $ curl -s http://127.0.0.1:40123/_emulator/webhook/inbound \\
        -d '{\"from\":\"16505551234\",\"name\":\"Sheena Nelson\",\"type\":\"text\",\"text\":{\"body\":\"Hi\"}}'
    {\"id\":\"wamid.HBgL...\",\"delivery\":{\"status\":200,\"attempts\":1,\"body\":\"...\",\"signature\":\"sha256=...\",...}}
    $ curl -s http://127.0.0.1:40123/_emulator/oauth/codes -d '{}'
    {\"code\":\"AQ...\",\"phone_number_id\":\"1...\",\"waba_id\":\"5...\"}
    $ curl -s 'http://127.0.0.1:40123/v26.0/oauth/access_token?client_id=1234567890&client_secret=test-app-secret&code=AQ...'
    {\"access_token\":\"EAA...\",\"token_type\":\"bearer\"}
";

#[derive(Debug)]
struct Options {
    listen: String,
    allow_non_loopback: bool,
    tokens: Vec<String>,
    throughput_mps: Option<u32>,
    pair_limit: Option<u32>,
    pair_window_ms: Option<u64>,
    latency_ms: u64,
    record_limit: usize,
    threads: usize,
    quiet: bool,
    exit_on_stdin_eof: bool,
    webhook_url: Option<String>,
    app_secret: Option<String>,
    verify_token: Option<String>,
    auto_statuses: bool,
    webhook_concurrency: usize,
    app_id: String,
    code_ttl_ms: u64,
}

enum Parsed {
    // Boxed: the options are large next to the data-less `Help`.
    Run(Box<Options>),
    Help,
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: expected a number, got '{value}'"))
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut options = Options {
        listen: "127.0.0.1:0".to_string(),
        allow_non_loopback: false,
        tokens: Vec::new(),
        throughput_mps: None,
        pair_limit: None,
        pair_window_ms: None,
        latency_ms: 0,
        record_limit: 200_000,
        threads: 2,
        quiet: false,
        exit_on_stdin_eof: false,
        webhook_url: None,
        app_secret: None,
        verify_token: None,
        auto_statuses: false,
        webhook_concurrency: 1,
        app_id: onboarding::DEFAULT_APP_ID.to_string(),
        code_ttl_ms: onboarding::DEFAULT_CODE_TTL_MS,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name}: missing value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--listen" => options.listen = value("--listen")?,
            "--allow-non-loopback" => options.allow_non_loopback = true,
            "--token" => options.tokens.push(value("--token")?),
            "--throughput-mps" => {
                options.throughput_mps = Some(parse_number(
                    "--throughput-mps",
                    &value("--throughput-mps")?,
                )?)
            }
            "--pair-limit" => {
                options.pair_limit = Some(parse_number("--pair-limit", &value("--pair-limit")?)?)
            }
            "--pair-window-ms" => {
                options.pair_window_ms = Some(parse_number(
                    "--pair-window-ms",
                    &value("--pair-window-ms")?,
                )?)
            }
            "--latency-ms" => {
                options.latency_ms = parse_number("--latency-ms", &value("--latency-ms")?)?
            }
            "--record-limit" => {
                options.record_limit = parse_number("--record-limit", &value("--record-limit")?)?
            }
            "--threads" => options.threads = parse_number("--threads", &value("--threads")?)?,
            "--quiet" => options.quiet = true,
            "--exit-on-stdin-eof" => options.exit_on_stdin_eof = true,
            "--webhook-url" => {
                let url = value("--webhook-url")?;
                webhook::check_url(&url).map_err(|reason| format!("--webhook-url: {reason}"))?;
                options.webhook_url = Some(url);
            }
            "--app-secret" => options.app_secret = Some(value("--app-secret")?),
            "--verify-token" => options.verify_token = Some(value("--verify-token")?),
            "--auto-statuses" => options.auto_statuses = true,
            "--webhook-concurrency" => {
                options.webhook_concurrency =
                    parse_number("--webhook-concurrency", &value("--webhook-concurrency")?)?
            }
            "--app-id" => {
                options.app_id = value("--app-id")?;
                if options.app_id.is_empty() {
                    return Err("--app-id: must not be empty".to_string());
                }
            }
            "--code-ttl-ms" => {
                options.code_ttl_ms = parse_number("--code-ttl-ms", &value("--code-ttl-ms")?)?
            }
            other => return Err(format!("unknown argument '{other}' (see --help)")),
        }
    }
    if options.tokens.is_empty() {
        options.tokens.push("test-token".to_string());
    }
    if options.throughput_mps == Some(0) || options.pair_limit == Some(0) {
        return Err("limits must be positive".to_string());
    }
    if options.pair_window_ms == Some(0) {
        return Err("--pair-window-ms must be positive".to_string());
    }
    // Bounded so that tokio and the semaphore never see values they would panic on.
    if !(1..=MAX_THREADS).contains(&options.threads) {
        return Err(format!("--threads must be 1 to {MAX_THREADS}"));
    }
    if !(1..=MAX_WEBHOOK_CONCURRENCY).contains(&options.webhook_concurrency) {
        return Err(format!(
            "--webhook-concurrency must be 1 to {MAX_WEBHOOK_CONCURRENCY}"
        ));
    }
    Ok(Parsed::Run(Box::new(options)))
}

const MAX_THREADS: usize = 256;
const MAX_WEBHOOK_CONCURRENCY: usize = 10_000;

fn listen_address(options: &Options) -> Result<SocketAddr, String> {
    // `localhost` is spelled out by people; resolve it to the IPv4 loopback ourselves.
    let text = match options.listen.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => options.listen.clone(),
    };
    let address: SocketAddr = text
        .parse()
        .map_err(|_| format!("--listen: '{}' is not an IP:PORT address", options.listen))?;
    if !address.ip().is_loopback() && !options.allow_non_loopback {
        return Err(format!(
            "--listen: {address} is not a loopback address (pass --allow-non-loopback to permit it)"
        ));
    }
    Ok(address)
}

/// Exits the whole process once stdin reaches EOF, so a test that crashes (and so closes the
/// pipe) cannot leave an emulator running. A plain thread: tokio's stdin needs a feature the
/// project does not enable.
fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut stdin = std::io::stdin();
        let mut buffer = [0u8; 1024];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) => std::process::exit(0),
                Ok(_) => continue,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => std::process::exit(0),
            }
        }
    });
}

/// Makes SIGTERM and SIGINT end the process with status 0 instead of "killed by signal", so test
/// harnesses and scripts see a clean exit. Nothing needs flushing: stdout was flushed at startup
/// and the state is in memory.
#[cfg(unix)]
fn exit_cleanly_on_termination_signals() {
    extern "C" fn on_termination_signal(_signum: libc::c_int) {
        // SAFETY: `_exit` is async-signal-safe and takes no pointers.
        unsafe { libc::_exit(0) }
    }
    let handler = on_termination_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installs a handler that only calls an async-signal-safe function; `signal` has no
    // other preconditions.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

#[cfg(not(unix))]
fn exit_cleanly_on_termination_signals() {}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(options)) => *options,
        Ok(Parsed::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("wa-emulator: {message}");
            return ExitCode::from(2);
        }
    };
    let address = match listen_address(&options) {
        Ok(address) => address,
        Err(message) => {
            eprintln!("wa-emulator: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wa-emulator: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let config = Config {
        tokens: options.tokens.clone(),
        throughput_mps: options.throughput_mps,
        pair_limit: control::pair_limit(options.pair_limit, options.pair_window_ms),
        latency_ms: options.latency_ms,
    };
    // The webhook client may reach https targets; rustls needs its crypto provider chosen once
    // per process (a second install only fails, which is harmless).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Meta does not follow redirects (only an exact 200 counts), and a loopback tool must not
    // route through a proxy configured for the machine.
    let builder = || {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
    };
    // Without the system's CA certificates (a slim container) only https targets fail.
    let client = match builder()
        .build()
        .or_else(|_| builder().tls_certs_only(Vec::new()).build())
    {
        Ok(client) => client,
        Err(error) => {
            eprintln!("wa-emulator: cannot build the webhook HTTP client: {error}");
            return ExitCode::FAILURE;
        }
    };
    let webhook_config = WebhookConfig::new(
        options.webhook_url.clone(),
        options.app_secret.clone(),
        options.verify_token.clone(),
        options.auto_statuses,
    );
    let hub = Hub::new(webhook_config, client);
    let state = Arc::new(AppState::new(
        config,
        options.record_limit,
        options.quiet,
        hub,
        onboarding::Onboarding::new(options.app_id.clone(), options.code_ttl_ms),
    ));
    runtime.block_on(async move {
        webhook::start_dispatcher(state.clone(), options.webhook_concurrency);
        let listener = match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("wa-emulator: cannot listen on {address}: {error}");
                return ExitCode::FAILURE;
            }
        };
        let bound = listener.local_addr().unwrap_or(address);
        state.media.set_bound_address(bound);
        let mut stdout = std::io::stdout();
        let announced = writeln!(stdout, "wa-emulator listening on http://{bound}")
            .and_then(|()| stdout.flush());
        if let Err(error) = announced {
            eprintln!("wa-emulator: cannot write to stdout: {error}");
            return ExitCode::FAILURE;
        }
        exit_cleanly_on_termination_signals();
        if options.exit_on_stdin_eof {
            exit_when_stdin_closes();
        }
        server::serve(listener, state).await;
        ExitCode::SUCCESS
    })
}
