//! Webhook ingest throughput: signed ~1 KB message webhooks POSTed to the library's built-in
//! listener until every `recv_message` callback has run, against a bare hyper server that reads
//! the body and answers 200, in the same run with the same load generator over keep-alive
//! connections that stay open from run to run. Three sets of rounds, each alternating which
//! side goes first: whole runs with every thread of the process pinned to one CPU (the target's
//! figure); whole runs on both CPUs; the same webhooks in four parts on both CPUs, each sent to
//! both sides in turn. On one CPU the load generator and the server share it as they share a
//! small machine, and a variant's throughput is the inverse of the CPU it spends per webhook:
//! stable to about a percent from round to round. On two CPUs the rates swing with where the
//! scheduler places four busy threads on two cores (a placement that lasts seconds, so
//! successive rounds are not independent, and that shorter runs change): identical code gave
//! ratios from 0.55 to 1.23 per round, so those sets are information, not the verdict. Each
//! thread's share comes from the scheduler's run time per thread (/proc/self/task/*/schedstat).
//!
//! Prints a Markdown table on stdout (scripts/bench.sh adds it to BENCHMARKS.md).
//!
//! Environment: `WA_BENCH_WEBHOOKS` (webhooks per run, at least the warm-up's 2000 so that the
//! measured ids never repeat it; default 20000), `WA_BENCH_HANDLER_ONLY` (profiling: the
//! handler's loop alone, best of 10, no HTTP).

use std::convert::Infallible;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use whatsapp_connector::ffi::client::*;
use whatsapp_connector::ffi::options::*;
use whatsapp_connector::ffi::wa_result;

const SECRET: &str = "bench-app-secret";
const IN_FLIGHT: usize = 32;
const ROUNDS: usize = 11;
/// Parts of a two-CPU round, each POSTed to both sides in turn.
const CHUNKS: usize = 4;
const DEFAULT_MESSAGES: usize = 20_000;

/// Distinct signed bodies of about 1 KB, Meta-shaped, one per message number in `ids`.
fn bodies(ids: std::ops::Range<usize>) -> Vec<(Bytes, String)> {
    let padding = "x".repeat(620);
    ids
        .map(|i| {
            let body = format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},"contacts":[{{"profile":{{"name":"Sheena Nelson"}},"wa_id":"16505551234"}}],"messages":[{{"from":"16505551234","id":"wamid.BENCH{i:012}","timestamp":"1749416383","type":"text","text":{{"body":"Does it come in another color? https:\/\/example.com\/p\/{i} {padding}"}}}}]}},"field":"messages"}}]}}]}}"#
            );
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
            mac.update(body.as_bytes());
            let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
            (Bytes::from(body), format!("sha256={signature}"))
        })
        .collect()
}

/// One side under load: where to POST, over connections kept open from run to run.
struct Target {
    url: String,
    http: reqwest::Client,
    /// The library (its runs wait for the callbacks), or the bare server.
    library: bool,
}

impl Target {
    fn new(runtime: &tokio::runtime::Runtime, url: String, library: bool) -> Self {
        let _enter = runtime.enter();
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(IN_FLIGHT)
            .tcp_nodelay(true)
            .build()
            .expect("client");
        Target { url, http, library }
    }
}

/// POSTs every body to `target` with `IN_FLIGHT` concurrent keep-alive connections; returns
/// how many got 200.
fn load(runtime: &tokio::runtime::Runtime, target: &Target, bodies: &[(Bytes, String)]) -> usize {
    let bodies = bodies.to_vec();
    let (http, url) = (target.http.clone(), target.url.clone());
    runtime.block_on(async move {
        futures_util::stream::iter(bodies)
            .map(|(body, signature)| {
                let request = http
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .header("X-Hub-Signature-256", signature)
                    .body(body);
                async move {
                    match request.send().await {
                        Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                        Err(_) => false,
                    }
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await
    })
}

/// A bare hyper server on its own one-worker runtime: read the body, answer 200.
fn bare_server() -> (tokio::runtime::Runtime, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bare-server")
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}/webhook", listener.local_addr().expect("addr"));
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(
                    |request: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = request.into_body().collect().await;
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"OK",
                        ))))
                    },
                );
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (runtime, url)
}

static RECEIVED: AtomicUsize = AtomicUsize::new(0);
/// The count at which `on_message` wakes `WAITER`: the run waits for the last callbacks asleep,
/// not spinning, so its own waiting is not charged to the library as CPU.
static EXPECTED: AtomicUsize = AtomicUsize::new(usize::MAX);
static WAITER: std::sync::OnceLock<std::thread::Thread> = std::sync::OnceLock::new();

unsafe extern "C" fn on_message(
    _: *mut c_void,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
) {
    if RECEIVED.fetch_add(1, Ordering::AcqRel) + 1 == EXPECTED.load(Ordering::Acquire) {
        if let Some(waiter) = WAITER.get() {
            waiter.unpark();
        }
    }
}

/// A library client listening on loopback, callbacks on its own thread.
fn library_client() -> (*mut wa_client, String) {
    let mut options = std::ptr::null_mut();
    assert_eq!(wa_options_new(&mut options), wa_result::WA_OK);
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    assert_eq!(
        wa_options_set_webhook_listen(options, c("127.0.0.1:0").as_ptr()),
        wa_result::WA_OK
    );
    assert_eq!(
        wa_options_set_graph_base_url(options, c("http://127.0.0.1:9").as_ptr()),
        wa_result::WA_OK
    );
    assert_eq!(
        wa_options_set_dispatch_mode(options, wa_dispatch_mode::WA_DISPATCH_THREAD as u32),
        wa_result::WA_OK
    );
    // SAFETY: all-zero is a valid table (NULL pointers = no callbacks).
    let mut callbacks: wa_client_callbacks = unsafe { std::mem::zeroed() };
    callbacks.recv_message = Some(on_message);
    let mut client = std::ptr::null_mut();
    assert_eq!(
        wa_client_new(options, &callbacks, &mut client),
        wa_result::WA_OK
    );
    wa_options_free(options);
    assert_eq!(
        wa_client_set_config(client, c("token").as_ptr(), c(SECRET).as_ptr()),
        wa_result::WA_OK
    );
    let mut port = 0u16;
    assert_eq!(wa_client_webhook_port(client, &mut port), wa_result::WA_OK);
    (client, format!("http://127.0.0.1:{port}/webhook"))
}

/// CPU cost of the handler alone (signature, parse, map, dedupe, queue), no HTTP.
fn handler_cost(bodies: &[(Bytes, String)]) -> f64 {
    use whatsapp_connector::events::{Event, EventSink};
    use whatsapp_connector::webhook::{WebhookHandler, WebhookSettings};
    struct Discard;
    impl EventSink for Discard {
        fn push(&self, _: Event) {}
    }
    let credentials = Arc::new(whatsapp_connector::secrets::Credentials::default());
    credentials.set_config("token", Some(SECRET));
    let settings = WebhookSettings {
        max_body: 1 << 20,
        dedupe_capacity: 100_000,
        max_backlog: 0,
        allowed_channels: Default::default(),
        raw_changes: false,
    };
    let handler = WebhookHandler::new(settings, credentials, Arc::new(Discard), None);
    let start = Instant::now();
    for (body, signature) in bodies {
        assert_eq!(
            handler.handle("POST", "", Some(signature), body).status,
            200
        );
    }
    start.elapsed().as_secs_f64() * 1e6 / bodies.len() as f64
}

/// CPU time (user and system) of the whole process so far: load generator, server and library.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF covers every thread of the process.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Pins every thread of the process (load generator, bare server, library) to `cpus`.
fn pin_process(cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET only writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in cpus {
        // SAFETY: as above.
        unsafe { libc::CPU_SET(*cpu, &mut set) };
    }
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<libc::pid_t>().ok())
        {
            // SAFETY: sched_setaffinity reads the set it is given; a thread that ended meanwhile
            // only makes the call fail.
            unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        }
    }
}

/// The CPUs the process may run on now.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity only writes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above (0 = the calling thread).
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Vec::new();
    }
    // SAFETY: reads inside the set.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|c| unsafe { libc::CPU_ISSET(*c, &set) })
        .collect()
}

/// Run time of each thread of the process so far, in ns, by thread name (the scheduler's own
/// account in /proc, not sampled).
fn thread_cpu() -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let read = |file: &str| std::fs::read_to_string(task.path().join(file)).unwrap_or_default();
        let ns: u64 = read("schedstat")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        *by_name.entry(read("comm").trim().to_string()).or_insert(0) += ns;
    }
    by_name
}

/// µs per webhook of each thread that ran during a run, by name.
fn thread_cpu_since(
    before: &std::collections::BTreeMap<String, u64>,
    n: usize,
) -> Vec<(String, f64)> {
    thread_cpu()
        .into_iter()
        .map(|(name, ns)| {
            let used = ns.saturating_sub(before.get(&name).copied().unwrap_or(0));
            // The main thread drives the load generator's requests.
            let name = if name.starts_with("webhook") {
                "load-main".into()
            } else {
                name
            };
            (name, used as f64 / 1e3 / n as f64)
        })
        .filter(|(_, us)| *us >= 0.05)
        .collect()
}

fn listed_threads(threads: &[(String, f64)]) -> String {
    threads
        .iter()
        .map(|(name, us)| format!("{name} {us:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One measured run.
struct Run {
    /// Until every POST was answered and, for the library when the tail is timed, until every
    /// callback ran.
    seconds: f64,
    /// Process CPU per webhook, µs.
    cpu: f64,
    /// The CPU per webhook of each thread, µs.
    threads: Vec<(String, f64)>,
}

/// POSTs `batch` to `target`. For the library the run ends when the last callback ran; with
/// `timed_tail` false that last wait (the dispatch thread's gathering pause, up to 4 ms) is
/// left out of `seconds`.
fn run(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    batch: &[(Bytes, String)],
    timed_tail: bool,
) -> Run {
    let n = batch.len();
    RECEIVED.store(0, Ordering::Release);
    EXPECTED.store(n, Ordering::Release);
    WAITER.get_or_init(std::thread::current);
    let cpu = process_cpu();
    let threads = thread_cpu();
    let start = Instant::now();
    assert_eq!(load(runtime, target, batch), n, "every POST answered 200");
    let answered = start.elapsed();
    while target.library && RECEIVED.load(Ordering::Acquire) < n {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "callbacks missing"
        );
        // Unparked by the last callback (a token left by an earlier run only ends this
        // wait early, and the loop checks again).
        std::thread::park_timeout(Duration::from_millis(100));
    }
    let elapsed = if timed_tail {
        start.elapsed()
    } else {
        answered
    };
    Run {
        seconds: elapsed.as_secs_f64(),
        cpu: (process_cpu() - cpu).as_secs_f64() * 1e6 / n as f64,
        threads: thread_cpu_since(&threads, n),
    }
}

/// A two-CPU round: `batch` in `CHUNKS` parts, each POSTed to both sides in turn (which goes
/// first alternates), so that both sample the same placements of their threads. Returns the
/// rates (bare, library) over the whole batch. The library's last part runs until its last
/// callback; the earlier parts wait for theirs untimed (in a stream the dispatch thread's
/// gathering pause ends one batch, not every part).
fn interleaved(
    runtime: &tokio::runtime::Runtime,
    (bare, library): (&Target, &Target),
    batch: &[(Bytes, String)],
    round: usize,
) -> (f64, f64) {
    let parts: Vec<_> = batch.chunks(batch.len().div_ceil(CHUNKS)).collect();
    let (mut bare_seconds, mut library_seconds) = (0.0, 0.0);
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if (round + i) % 2 == 0 {
            bare_seconds += run(runtime, bare, part, true).seconds;
            library_seconds += run(runtime, library, part, last).seconds;
        } else {
            library_seconds += run(runtime, library, part, last).seconds;
            bare_seconds += run(runtime, bare, part, true).seconds;
        }
    }
    let n = batch.len() as f64;
    (n / bare_seconds, n / library_seconds)
}

fn main() {
    whatsapp_connector::graph::install_crypto_provider();
    let handler = handler_cost(&bodies(0..20_000));
    eprintln!("[webhook bench] handler alone: {handler:.2} µs per webhook");
    if std::env::var_os("WA_BENCH_HANDLER_ONLY").is_some() {
        // For profilers: the handler's loop alone, repeated.
        let bodies = bodies(0..20_000);
        let best = (0..10)
            .map(|_| handler_cost(&bodies))
            .fold(f64::INFINITY, f64::min);
        eprintln!("[webhook bench] handler alone, best of 10: {best:.2} µs per webhook");
        return;
    }
    let n = std::env::var("WA_BENCH_WEBHOOKS")
        .ok()
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 2_000)
                .unwrap_or_else(|| panic!("WA_BENCH_WEBHOOKS must be at least 2000: {v:?}"))
        })
        .unwrap_or(DEFAULT_MESSAGES);
    let load_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("load-worker")
        .enable_all()
        .build()
        .expect("runtime");
    let (_bare_runtime, bare_url) = bare_server();
    let (client, library_url) = library_client();
    let bare = Target::new(&load_runtime, bare_url, false);
    let library = Target::new(&load_runtime, library_url, true);
    // Per round: (library / bare) throughput on one CPU (the target's figure) and on two,
    // the interleaved parts' ratio, and bare / library CPU per webhook on one CPU.
    let (mut ratios, mut two_cpu_ratios, mut part_ratios, mut cpu_ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Webhooks/s (bare, library), one CPU and two.
    let (mut rates, mut two_cpu_rates) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    let mut cpus = (Vec::new(), Vec::new());
    // Each thread's CPU per webhook in the one-CPU rounds, (bare, library).
    let mut by_thread: (
        std::collections::BTreeMap<String, Vec<f64>>,
        std::collections::BTreeMap<String, Vec<f64>>,
    ) = Default::default();
    // Each round uses fresh message ids: the library would rightly drop repeats as duplicates.
    let warmup = bodies(0..2_000);
    run(&load_runtime, &bare, &warmup, true);
    run(&load_runtime, &library, &warmup, true);
    let all_cpus = allowed_cpus();
    // Three sets of rounds: whole runs with every thread on one CPU (the target's figure),
    // whole runs on both CPUs, runs in interleaved parts on both CPUs.
    pin_process(all_cpus.get(..1).unwrap_or_default());
    for round in 0..3 * ROUNDS {
        let batch = &bodies(n * (round + 1)..n * (round + 2));
        let pinned = round < ROUNDS;
        if round == ROUNDS {
            pin_process(&all_cpus);
        }
        if round / ROUNDS == 2 {
            let (bare_rate, library_rate) =
                interleaved(&load_runtime, (&bare, &library), batch, round);
            eprintln!(
                "[webhook bench] round {} (parts): bare {bare_rate:.0}/s, library {library_rate:.0}/s",
                round % ROUNDS + 1
            );
            part_ratios.push(library_rate / bare_rate);
            continue;
        }
        // Alternate which variant goes first, so that neither always runs in the other's wake.
        let (bare_run, library_run) = if round % 2 == 0 {
            let bare_run = run(&load_runtime, &bare, batch, true);
            (bare_run, run(&load_runtime, &library, batch, true))
        } else {
            let library_run = run(&load_runtime, &library, batch, true);
            (run(&load_runtime, &bare, batch, true), library_run)
        };
        let (bare_rate, library_rate) =
            (n as f64 / bare_run.seconds, n as f64 / library_run.seconds);
        eprintln!(
            "[webhook bench] round {}{}: bare {bare_rate:.0}/s ({:.1} µs CPU each: {}), library {library_rate:.0}/s ({:.1} µs CPU each: {})",
            round % ROUNDS + 1,
            if pinned { " (one CPU)" } else { " (two CPUs)" },
            bare_run.cpu, listed_threads(&bare_run.threads),
            library_run.cpu, listed_threads(&library_run.threads)
        );
        if !pinned {
            two_cpu_ratios.push(library_rate / bare_rate);
            two_cpu_rates.0.push(bare_rate);
            two_cpu_rates.1.push(library_rate);
            continue;
        }
        for (name, us) in bare_run.threads {
            by_thread.0.entry(name).or_default().push(us);
        }
        for (name, us) in library_run.threads {
            by_thread.1.entry(name).or_default().push(us);
        }
        ratios.push(library_rate / bare_rate);
        rates.0.push(bare_rate);
        rates.1.push(library_rate);
        cpu_ratios.push(bare_run.cpu / library_run.cpu);
        cpus.0.push(bare_run.cpu);
        cpus.1.push(library_run.cpu);
    }
    wa_client_free(client);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let listed = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ratio = median(&mut ratios.clone());
    println!("| metric | result | target | verdict |");
    println!("|---|---|---|---|");
    println!(
        "| webhook ingest, library listener (signed ~1 KB POST → recv_message callback) / bare hyper server, webhooks/s with every thread on one CPU | {ratio:.3}× (runs: {}) | ≥ 0.8× | {} |",
        listed(&ratios),
        if ratio >= 0.8 { "PASS" } else { "FAIL" }
    );
    println!(
        "| the same, CPU per webhook (bare / library, one CPU) | {:.2}× (runs: {}) | (information) | |",
        median(&mut cpu_ratios.clone()),
        listed(&cpu_ratios)
    );
    println!(
        "| the same on both CPUs, whole runs | {:.2}× (runs: {}) | (information) | |",
        median(&mut two_cpu_ratios.clone()),
        listed(&two_cpu_ratios)
    );
    println!(
        "| the same on both CPUs, each round in four interleaved parts of {} webhooks | {:.2}× (runs: {}) | (information) | |",
        n.div_ceil(CHUNKS),
        median(&mut part_ratios.clone()),
        listed(&part_ratios)
    );
    println!("| handler alone (signature, parse, mapping, dedupe, queueing; no HTTP) | {handler:.2} µs per webhook | (information) | |");
    println!();
    let per_thread = |threads: std::collections::BTreeMap<String, Vec<f64>>| {
        // Threads that ran in only some rounds (e.g. the other variant's idle server) are left out.
        let threads: Vec<(String, f64)> = threads
            .into_iter()
            .filter(|(_, v)| v.len() == ROUNDS)
            .map(|(name, mut v)| (name, median(&mut v)))
            .filter(|(_, us)| *us >= 0.05)
            .collect();
        listed_threads(&threads)
    };
    println!("| variant | webhooks/s (median, one CPU) | webhooks/s (median, both CPUs) | CPU µs per webhook (median, one CPU) | of which, by thread (median, one CPU) |");
    println!("|---|---|---|---|---|");
    println!(
        "| bare hyper server (answers 200 after reading the body) | {:.0} | {:.0} | {:.1} | {} |",
        median(&mut rates.0),
        median(&mut two_cpu_rates.0),
        median(&mut cpus.0),
        per_thread(by_thread.0)
    );
    println!(
        "| library listener, until every callback ran | {:.0} | {:.0} | {:.1} | {} |",
        median(&mut rates.1),
        median(&mut two_cpu_rates.1),
        median(&mut cpus.1),
        per_thread(by_thread.1)
    );
}
