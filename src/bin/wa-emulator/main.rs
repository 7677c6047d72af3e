//! wa-emulator: a loopback emulator of Meta's WhatsApp Business Cloud API (Graph API), for
//! integration tests and benchmarks of the connector. See `--help`.

mod control;
mod graph;
mod server;
mod state;
mod validate;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use crate::state::{AppState, Config};

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
    --threads N               Tokio worker threads (default 2).
    --quiet                   No per-request log line on stderr.
    --exit-on-stdin-eof       Exit when stdin is closed (tests spawn the emulator with a
                              piped stdin so a crashed test never leaks it).
    -h, --help                Print this help and exit.

On startup exactly one line is printed to stdout:
    wa-emulator listening on http://127.0.0.1:PORT
SIGTERM and SIGINT end the process at once with exit status 0 (no state to flush).

GRAPH ROUTES:
    POST /{version}/{phone_number_id}/messages   send a message, mark as read / typing
    Any other path answers GraphMethodException 100/33, as does a non-numeric id.

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
    POST   /_emulator/reset                      clear requests, faults, counters; restore config

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
}

enum Parsed {
    Run(Options),
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
    if options.threads == 0 {
        return Err("--threads must be positive".to_string());
    }
    Ok(Parsed::Run(options))
}

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
/// harnesses and scripts see a clean exit. The project enables no tokio `signal` feature and has
/// no libc crate here, so the two C functions are declared directly (the C library is linked by
/// std anyway). Nothing needs flushing: stdout was flushed at startup and the state is in memory.
#[cfg(unix)]
fn exit_cleanly_on_termination_signals() {
    // Same numbers on Linux, the BSDs and macOS.
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;
    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        fn _exit(status: i32) -> !;
    }
    extern "C" fn on_termination_signal(_signum: i32) {
        // SAFETY: `_exit` is async-signal-safe and takes no pointers.
        unsafe { _exit(0) }
    }
    // SAFETY: installs a handler that only calls an async-signal-safe function; `signal` has no
    // other preconditions.
    unsafe {
        signal(SIGINT, on_termination_signal);
        signal(SIGTERM, on_termination_signal);
    }
}

#[cfg(not(unix))]
fn exit_cleanly_on_termination_signals() {}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(options)) => options,
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
    let state = Arc::new(AppState::new(config, options.record_limit, options.quiet));
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("wa-emulator: cannot listen on {address}: {error}");
                return ExitCode::FAILURE;
            }
        };
        let bound = listener.local_addr().unwrap_or(address);
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
