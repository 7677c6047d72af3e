//! Throughput and cost benchmark of the C API against the `wa-emulator` (loopback only).
//!
//! Measures, in this order:
//! 1. resident memory of a client holding 100k queued messages (first, while the allocator has
//!    no freed memory to reuse, so the delta is not understated);
//! 2. the cost of one `wa_client_send_message` call (no token set, so nothing leaves the process);
//! 3. messages/s of the library (thread and poll dispatch) against a raw reqwest loop posting the
//!    identical bodies with the same concurrency, alternating the variants so that drift of the
//!    machine affects each of them alike;
//! 4. in the same rounds, the library in thread dispatch with the durable outbox (an SQLite
//!    store in a fresh directory under the target dir, i.e. on the project's disk): every
//!    accepted message is committed before `wa_client_send_message` returns and removed after
//!    its result; reported as a ratio to the in-memory thread-mode run of the same round.
//!
//! Progress goes to stderr; the Markdown result goes to stdout (`scripts/bench.sh` captures it).
//!
//! Environment: `WA_EMULATOR_BIN` (emulator binary; default: the crate's own `wa-emulator`),
//! `WA_BENCH_MESSAGES` (messages per throughput run; default 20000), `WA_BENCH_ONLY` (profiling:
//! one variant alone, see `profile_one_variant`).

use std::ffi::{c_char, c_void, CStr, CString};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use whatsapp_connector::ffi::client::{
    wa_client, wa_client_callbacks, wa_client_free, wa_client_new, wa_client_pending,
    wa_client_send_message, wa_client_set_config, wa_client_wait,
};
use whatsapp_connector::ffi::options::{
    wa_dispatch_mode, wa_options, wa_options_free, wa_options_new, wa_options_set_channel_rate,
    wa_options_set_dispatch_mode, wa_options_set_graph_base_url, wa_options_set_max_in_flight,
    wa_options_set_outbox_capacity, wa_options_set_outbox_path, wa_options_set_token_hold_ms,
};
use whatsapp_connector::ffi::result::whatsapp_error_t;
use whatsapp_connector::ffi::{wa_last_error_message, wa_result};
use whatsapp_connector::message::{self, MessageInput};

const TOKEN: &str = "test-token";
const PHONE_NUMBER_ID: &str = "106540352242922";
const API_VERSION: &str = "v26.0";
/// Messages to one recipient are serialised by design (one on the wire at a time), so the load
/// is spread over many recipients; 2000 is far more than the 64 requests in flight.
const RECIPIENTS: usize = 2000;
const IN_FLIGHT: usize = 64;
const DEFAULT_MESSAGES: usize = 20_000;
const WARMUP_MESSAGES: usize = 2_000;
const ROUNDS: usize = 11;
const SEND_COST_CALLS: usize = 100_000;
const SEND_COST_BATCHES: usize = 3;
const RSS_MESSAGES: usize = 100_000;
/// A single run taking longer than this means something is stuck: the bench stops.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// The measured rounds are shrunk (fewer messages per run) if the warm-up predicts more than
/// this, so the whole program stays well under five minutes even on a slow machine.
const THROUGHPUT_BUDGET: Duration = Duration::from_secs(150);
/// Loopback's discard port (normally closed): clients that must never reach the network (no
/// token) point there, so that even a bug could not send a request off the machine.
const UNREACHABLE_BASE_URL: &str = "http://127.0.0.1:9";

const TARGET_RATIO: f64 = 0.9;
/// Durable outbox throughput relative to the in-memory outbox (issue 7).
const TARGET_DURABLE_RATIO: f64 = 0.5;
const TARGET_SEND_NS: f64 = 5_000.0;
const TARGET_RSS_MB: f64 = 100.0;

fn main() {
    whatsapp_connector::graph::install_crypto_provider();
    let messages = std::env::var("WA_BENCH_MESSAGES")
        .ok()
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| panic!("WA_BENCH_MESSAGES must be a positive integer: {v:?}"))
        })
        .unwrap_or(DEFAULT_MESSAGES);
    let mut notes = Vec::new();

    if let Ok(only) = std::env::var("WA_BENCH_ONLY") {
        profile_one_variant(&only, messages);
        return;
    }

    // Inputs are prepared before anything is measured: formatting them is the host's cost,
    // not the library's, and they must not count towards the RSS delta either.
    let workload = Workload::new(messages.max(SEND_COST_CALLS).max(RSS_MESSAGES));

    eprintln!("[bench] RSS with {RSS_MESSAGES} queued messages ...");
    let rss = measure_rss(&workload);
    eprintln!("[bench] cost of wa_client_send_message ...");
    let send_cost = measure_send_cost(&workload);

    let emulator = Emulator::start();
    eprintln!("[bench] emulator at {}", emulator.url);

    eprintln!("[bench] warm-up round ({WARMUP_MESSAGES} messages per variant) ...");
    let warmup = run_round(&emulator, &workload, WARMUP_MESSAGES, &mut notes);
    let per_run = fit_to_budget(messages, &warmup, &mut notes);

    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 1..=ROUNDS {
        eprintln!("[bench] round {round}/{ROUNDS} ({per_run} messages per variant) ...");
        let result = run_round(&emulator, &workload, per_run, &mut notes);
        eprintln!(
            "[bench]   baseline {:.0}/s, thread {:.0}/s, poll {:.0}/s, durable (thread) {:.0}/s",
            result.baseline.rate, result.thread.rate, result.poll.rate, result.durable.rate
        );
        rounds.push(result);
    }
    drop(emulator);

    print_report(&rounds, per_run, send_cost, rss, &notes);
}

/// `WA_BENCH_ONLY=baseline|thread|poll|durable|graph`: five runs of that variant alone and no
/// report, so that a profiler attached to the process (`perf record`) sees nothing else.
fn profile_one_variant(only: &str, messages: usize) {
    let run: fn(&Emulator, &Workload, usize) -> Sample = match only {
        "baseline" => run_baseline,
        "graph" => run_graph_only,
        "thread" => |e, w, n| run_library(e, w, n, Variant::Thread),
        "poll" => |e, w, n| run_library(e, w, n, Variant::Poll),
        "durable" => |e, w, n| run_library(e, w, n, Variant::Durable),
        other => {
            panic!("WA_BENCH_ONLY must be baseline, thread, poll, durable or graph: {other:?}")
        }
    };
    let workload = Workload::new(messages);
    let emulator = Emulator::start();
    for round in 1..=5 {
        emulator.reset();
        let switches_before = context_switches();
        let sample = run(&emulator, &workload, messages);
        let switches = context_switches().saturating_sub(switches_before);
        eprintln!(
            "[bench] {only} run {round}: {:.0}/s, client CPU {:.1} us/msg, emulator CPU {:.1} us/msg, {:.2} context switches/msg",
            sample.rate,
            sample.client_cpu_us.unwrap_or(f64::NAN),
            sample.emulator_cpu_us.unwrap_or(f64::NAN),
            switches as f64 / messages as f64
        );
    }
}

/// Context switches (voluntary and not) of this process so far, ended threads included.
fn context_switches() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF covers every thread of the process.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    (usage.ru_nvcsw + usage.ru_nivcsw) as u64
}

// ---------------------------------------------------------------------------------------------
// Workload

/// The messages of every run, prepared once.
struct Workload {
    /// Message JSON of message `i` (distinct bodies, as a real host would send).
    texts: Vec<CString>,
    recipients: Vec<CString>,
    channel: CString,
}

impl Workload {
    fn new(len: usize) -> Self {
        Self {
            texts: (0..len)
                .map(|i| cstring(&format!(r#"{{"body":"benchmark message {i}"}}"#)))
                .collect(),
            recipients: (0..RECIPIENTS)
                .map(|r| cstring(&format!("+1555{r:07}")))
                .collect(),
            channel: cstring(PHONE_NUMBER_ID),
        }
    }

    fn text(&self, i: usize) -> &CStr {
        &self.texts[i % self.texts.len()]
    }

    fn recipient(&self, i: usize) -> &CStr {
        &self.recipients[i % RECIPIENTS]
    }

    /// The request bodies the library sends for messages `0..n`, built by the library's own
    /// builder so that the baseline posts byte-identical requests.
    fn bodies(&self, n: usize) -> Vec<Bytes> {
        (0..n)
            .map(|i| {
                let input = MessageInput {
                    message_json: utf8(self.text(i)),
                    remote_num: utf8(self.recipient(i)),
                    message_type: "text",
                    channel: PHONE_NUMBER_ID,
                    callback_info: None,
                    refers_to_id: None,
                };
                let built = message::build(&input)
                    .unwrap_or_else(|e| panic!("benchmark message {i} does not build: {e}"));
                Bytes::from(built.body)
            })
            .collect()
    }
}

fn cstring(s: &str) -> CString {
    CString::new(s).expect("benchmark strings contain no NUL")
}

fn utf8(s: &CStr) -> &str {
    s.to_str().expect("benchmark strings are ASCII")
}

// ---------------------------------------------------------------------------------------------
// The emulator process

/// A running emulator; killed on drop (also when the bench panics).
struct Emulator {
    child: Child,
    pid: String,
    url: String,
    control: reqwest::blocking::Client,
}

impl Emulator {
    fn start() -> Self {
        let bin = std::env::var_os("WA_EMULATOR_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wa-emulator")));
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0", "--exit-on-stdin-eof", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        // Read on a helper thread so that an emulator that never prints cannot hang the bench;
        // the thread keeps draining stdout afterwards so the emulator never writes into a
        // closed pipe.
        let (first_line, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line).map(|_| line);
            let _ = first_line.send(read);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!("reading the emulator's address failed: {e}"),
            Err(_) => {
                let _ = child.kill();
                panic!("{} printed no address within 10 s", bin.display());
            }
        };
        let url = line
            .trim()
            .strip_prefix("wa-emulator listening on ")
            .filter(|url| url.starts_with("http://127.0.0.1:"))
            .map(str::to_string);
        let Some(url) = url else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "unexpected first line from {}: {line:?} (the stub emulator prints nothing; \
                 set WA_EMULATOR_BIN to a built emulator)",
                bin.display()
            );
        };
        let control = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("control HTTP client");
        Self {
            pid: child.id().to_string(),
            child,
            url,
            control,
        }
    }

    /// Clears the emulator's recording and counters between runs, so its memory stays flat and
    /// every run meets the same emulator state. Best effort: a failure only costs the check.
    fn reset(&self) -> bool {
        self.control
            .post(format!("{}/_emulator/reset", self.url))
            .send()
            .is_ok_and(|r| r.status().is_success())
    }

    /// Sends the emulator accepted since the last reset (`None` if it cannot tell).
    fn accepted_sends(&self) -> Option<u64> {
        let stats: serde_json::Value = self
            .control
            .get(format!("{}/_emulator/stats", self.url))
            .send()
            .ok()?
            .json()
            .ok()?;
        stats["accepted_sends"].as_u64()
    }
}

/// CPU time used so far by the threads of process `pid` ("self" for this one), in nanoseconds,
/// from the scheduler's per-thread accounting (`/proc/PID/task/*/schedstat`, first field).
/// Exact to the nanosecond, unlike the 10 ms ticks of `/proc/PID/stat`; threads that exit are
/// not counted, so it is read while every thread of interest is alive. `None` when the kernel
/// does not provide it.
fn cpu_ns(pid: &str) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    let mut any = false;
    for task in tasks.flatten() {
        // A thread may exit between listing and reading: it is skipped.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            total += ns;
            any = true;
        }
    }
    any.then_some(total)
}

/// CPU time of this process and of the emulator at one moment.
struct CpuMark {
    client_ns: Option<u64>,
    emulator_ns: Option<u64>,
}

impl CpuMark {
    fn now(emulator: &Emulator) -> Self {
        Self {
            client_ns: cpu_ns("self"),
            emulator_ns: cpu_ns(&emulator.pid),
        }
    }
}

/// One throughput run: messages/s and CPU microseconds spent per message on each side.
#[derive(Clone, Copy)]
struct Sample {
    rate: f64,
    client_cpu_us: Option<f64>,
    emulator_cpu_us: Option<f64>,
}

impl Sample {
    fn new(n: usize, elapsed: Duration, start: &CpuMark, end: &CpuMark) -> Self {
        let per_message =
            |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / 1000.0 / n as f64);
        Self {
            rate: n as f64 / elapsed.as_secs_f64(),
            client_cpu_us: per_message(start.client_ns, end.client_ns),
            emulator_cpu_us: per_message(start.emulator_ns, end.emulator_ns),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The library through its C API

/// Results of one client as counted by its `send_result` callback.
struct Tally {
    expected: usize,
    done: AtomicUsize,
    failed: AtomicUsize,
    first_failure: Mutex<Option<String>>,
    /// When the last expected result arrived; the condvar signals it.
    finished_at: Mutex<Option<Instant>>,
    finished: Condvar,
}

impl Tally {
    fn new(expected: usize) -> Self {
        Self {
            expected,
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            first_failure: Mutex::new(None),
            finished_at: Mutex::new(None),
            finished: Condvar::new(),
        }
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::Acquire)
    }

    fn finished_at(&self) -> Option<Instant> {
        *self
            .finished_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Thread mode: blocks until the last result arrived or `deadline` passed.
    fn wait_finished(&self, deadline: Instant) -> Option<Instant> {
        let guard = self
            .finished_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let timeout = deadline.saturating_duration_since(Instant::now());
        let (guard, _) = self
            .finished
            .wait_timeout_while(guard, timeout, |at| at.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

unsafe extern "C" fn on_send_result(
    user_data: *mut c_void,
    _request_ctx: *mut c_void,
    error: whatsapp_error_t,
    _callback_info: *const c_char,
    content: *const c_char,
) {
    // SAFETY: user_data is the `Arc<Tally>` leaked in `LibClient::new`; it is released only by
    // the destroy callback, which runs after every other callback.
    let tally = unsafe { &*(user_data as *const Tally) };
    if error != whatsapp_error_t::WHATSAPP_ERR_OK {
        tally.failed.fetch_add(1, Ordering::AcqRel);
        let mut first = tally
            .first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            // SAFETY: the library passes a NUL-terminated string valid during the callback.
            let text = unsafe { CStr::from_ptr(content) }.to_string_lossy();
            *first = Some(format!("{error:?}: {text}"));
        }
    }
    // Only the last result takes the lock and wakes the waiter: a notify per result would put
    // a syscall on the measured path that a real host does not need.
    if tally.done.fetch_add(1, Ordering::AcqRel) + 1 == tally.expected {
        let mut at = tally
            .finished_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *at = Some(Instant::now());
        tally.finished.notify_all();
    }
}

unsafe extern "C" fn on_destroy(user_data: *mut c_void) {
    // SAFETY: the pointer came from `Arc::into_raw` in `LibClient::new`; destroy is called
    // exactly once, after the last callback, so the reference is released exactly once.
    drop(unsafe { Arc::from_raw(user_data as *const Tally) });
}

fn last_error() -> String {
    let mut buf = vec![0 as c_char; 1024];
    let mut len = 0usize;
    let _ = wa_last_error_message(buf.as_mut_ptr(), buf.len(), &mut len);
    // SAFETY: wa_last_error_message always NUL-terminates inside the buffer it was given.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn check(result: wa_result, what: &str) {
    assert_eq!(result, wa_result::WA_OK, "{what}: {}", last_error());
}

/// A `wa_options` object; freed on drop.
struct LibOptions(*mut wa_options);

impl LibOptions {
    fn new(base_url: &str) -> Self {
        let mut raw = std::ptr::null_mut();
        check(wa_options_new(&mut raw), "wa_options_new");
        let options = Self(raw);
        check(
            wa_options_set_graph_base_url(raw, cstring(base_url).as_ptr()),
            "wa_options_set_graph_base_url",
        );
        options
    }
}

impl Drop for LibOptions {
    fn drop(&mut self) {
        wa_options_free(self.0);
    }
}

/// A client created through the C API; freed on drop (which discards undelivered messages).
struct LibClient {
    raw: *mut wa_client,
    tally: Arc<Tally>,
}

impl LibClient {
    fn new(options: &LibOptions, expected_results: usize) -> Self {
        let tally = Arc::new(Tally::new(expected_results));
        // SAFETY: every field of the callback table is a raw pointer or an `Option` of a
        // function pointer, for which all-zero bytes mean NULL / None ("not interested"): the
        // C idiom `wa_client_callbacks cb = {0};`, which also keeps this bench compiling when
        // the table grows callbacks it does not use.
        let mut callbacks: wa_client_callbacks = unsafe { std::mem::zeroed() };
        callbacks.user_data = Arc::into_raw(tally.clone()) as *mut c_void;
        callbacks.send_result = Some(on_send_result);
        callbacks.destroy = Some(on_destroy);
        let mut raw = std::ptr::null_mut();
        let result = wa_client_new(options.0, &callbacks, &mut raw);
        if result != wa_result::WA_OK {
            // destroy is not called when wa_client_new fails: release its reference here.
            // SAFETY: the pointer came from Arc::into_raw just above and was not taken over.
            drop(unsafe { Arc::from_raw(callbacks.user_data as *const Tally) });
            panic!("wa_client_new: {}", last_error());
        }
        Self { raw, tally }
    }

    fn set_token(&self, token: &str) {
        check(
            wa_client_set_config(self.raw, cstring(token).as_ptr(), std::ptr::null()),
            "wa_client_set_config",
        );
    }

    fn send(&self, workload: &Workload, i: usize) {
        let result = wa_client_send_message(
            self.raw,
            workload.text(i).as_ptr(),
            workload.recipient(i).as_ptr(),
            c"text".as_ptr(),
            workload.channel.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            i as *mut c_void,
        );
        if result != wa_result::WA_OK {
            panic!("wa_client_send_message #{i}: {result:?}: {}", last_error());
        }
    }
}

impl Drop for LibClient {
    fn drop(&mut self) {
        wa_client_free(self.raw);
    }
}

/// A client that holds every message (no token) and can never reach the network.
fn holding_client(capacity: usize) -> LibClient {
    let options = LibOptions::new(UNREACHABLE_BASE_URL);
    check(
        wa_options_set_outbox_capacity(options.0, capacity),
        "wa_options_set_outbox_capacity",
    );
    // An hour: no held message may expire (and produce work) while it is measured.
    check(
        wa_options_set_token_hold_ms(options.0, 3_600_000),
        "wa_options_set_token_hold_ms",
    );
    LibClient::new(&options, 0)
}

// ---------------------------------------------------------------------------------------------
// Memory and per-call cost

struct Rss {
    before_kib: u64,
    after_kib: u64,
}

impl Rss {
    fn delta_mb(&self) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 * 1024.0 / 1e6
    }
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn measure_rss(workload: &Workload) -> Rss {
    let before_kib = vm_rss_kib();
    let client = holding_client(RSS_MESSAGES);
    for i in 0..RSS_MESSAGES {
        client.send(workload, i);
    }
    assert_eq!(wa_client_pending(client.raw), RSS_MESSAGES);
    // send_message returns once the message is in the outbox's channel; give the outbox task
    // time to move everything into its per-recipient queues, where messages sit while held.
    std::thread::sleep(Duration::from_millis(500));
    let after_kib = vm_rss_kib();
    drop(client);
    Rss {
        before_kib,
        after_kib,
    }
}

/// Median nanoseconds per `wa_client_send_message` call.
fn measure_send_cost(workload: &Workload) -> (f64, Vec<f64>) {
    let client = holding_client(SEND_COST_CALLS * SEND_COST_BATCHES);
    let mut batches = Vec::with_capacity(SEND_COST_BATCHES);
    for _ in 0..SEND_COST_BATCHES {
        let start = Instant::now();
        for i in 0..SEND_COST_CALLS {
            client.send(workload, i);
        }
        batches.push(start.elapsed().as_nanos() as f64 / SEND_COST_CALLS as f64);
    }
    drop(client);
    (median(&batches), batches)
}

// ---------------------------------------------------------------------------------------------
// Throughput

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Baseline,
    Thread,
    Poll,
    /// Thread dispatch with the durable outbox.
    Durable,
}

/// Each variant's run in one round.
struct Round {
    baseline: Sample,
    thread: Sample,
    poll: Sample,
    durable: Sample,
}

fn run_round(emulator: &Emulator, workload: &Workload, n: usize, notes: &mut Vec<String>) -> Round {
    let mut rate = |variant| {
        if !emulator.reset() {
            push_note(notes, "could not reset the emulator between runs");
        }
        let sample = match variant {
            Variant::Baseline => run_baseline(emulator, workload, n),
            Variant::Thread | Variant::Poll | Variant::Durable => {
                run_library(emulator, workload, n, variant)
            }
        };
        match emulator.accepted_sends() {
            Some(accepted) if accepted != n as u64 => push_note(
                notes,
                &format!("{variant:?}: the emulator accepted {accepted} sends for {n} messages"),
            ),
            Some(_) => {}
            None => push_note(notes, "the emulator's stats were unavailable"),
        }
        sample
    };
    Round {
        baseline: rate(Variant::Baseline),
        thread: rate(Variant::Thread),
        poll: rate(Variant::Poll),
        durable: rate(Variant::Durable),
    }
}

fn push_note(notes: &mut Vec<String>, note: &str) {
    if !notes.iter().any(|n| n == note) {
        eprintln!("[bench] note: {note}");
        notes.push(note.to_string());
    }
}

/// A runtime with one worker like the library's, named so that profiles tell it apart.
fn one_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("baseline-rt")
        .enable_all()
        .build()
        .expect("baseline runtime")
}

/// The raw loop: the same bodies over a similarly configured reqwest client, on a runtime
/// with one worker like the library's, `IN_FLIGHT` requests at a time.
fn run_baseline(emulator: &Emulator, workload: &Workload, n: usize) -> Sample {
    let runtime = one_worker_runtime();
    // The same timeouts and pool settings as the library's GraphClient with its defaults. As
    // in a plain loop, reqwest's default retry layer stays (the library turns it off because
    // its outbox retries by itself).
    let http = {
        let _enter = runtime.enter();
        reqwest::Client::builder()
            // As the library does for a Graph on loopback.
            .no_proxy()
            .user_agent(whatsapp_connector::graph::USER_AGENT)
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(IN_FLIGHT)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .expect("baseline HTTP client")
    };
    let endpoint = format!("{}/{API_VERSION}/{PHONE_NUMBER_ID}/messages", emulator.url);
    drive_raw_loop(emulator, runtime, workload.bodies(n), move |body| {
        let request = http
            .post(&endpoint)
            .bearer_auth(TOKEN)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        async move {
            match request.send().await {
                // The body is read to the end, as the library does, so the connection goes
                // back to the pool.
                Ok(response) => {
                    let ok = response.status() == reqwest::StatusCode::OK;
                    response.bytes().await.is_ok() && ok
                }
                Err(_) => false,
            }
        }
    })
}

/// Profiling aid (`WA_BENCH_ONLY=graph`): the library's `GraphClient::send` in the raw loop's
/// place, without the outbox, the C API or callbacks, to tell their cost from the HTTP path's.
fn run_graph_only(emulator: &Emulator, workload: &Workload, n: usize) -> Sample {
    let runtime = one_worker_runtime();
    let config = whatsapp_connector::config::ClientConfig {
        graph_base_url: emulator.url.clone(),
        api_version: API_VERSION.into(),
        max_in_flight: IN_FLIGHT,
        ..Default::default()
    };
    let graph = {
        let _enter = runtime.enter();
        std::sync::Arc::new(whatsapp_connector::graph::GraphClient::new(&config).unwrap())
    };
    let auth = whatsapp_connector::graph::GraphClient::authorization(TOKEN).unwrap();
    drive_raw_loop(emulator, runtime, workload.bodies(n), move |body| {
        let (graph, auth) = (graph.clone(), auth.clone());
        async move {
            matches!(
                graph.send(PHONE_NUMBER_ID, auth, body).await,
                whatsapp_connector::graph::Attempt::Accepted { .. }
            )
        }
    })
}

/// Posts every body with `send_one` (true: answered 200), `IN_FLIGHT` at a time, on the
/// runtime's one worker; every body must succeed.
fn drive_raw_loop<F, Fut>(
    emulator: &Emulator,
    runtime: tokio::runtime::Runtime,
    bodies: Vec<Bytes>,
    send_one: F,
) -> Sample
where
    F: FnMut(Bytes) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let n = bodies.len();
    // Spawned rather than run by block_on, so that the loop runs on the one worker thread as
    // the library's outbox does, instead of on this thread in addition to the worker.
    let cpu_start = CpuMark::now(emulator);
    let task = runtime.spawn(async move {
        let start = Instant::now();
        let ok = futures_util::stream::iter(bodies)
            .map(send_one)
            .buffer_unordered(IN_FLIGHT)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await;
        (ok, start.elapsed())
    });
    let (ok, elapsed) = runtime
        .block_on(async { tokio::time::timeout(RUN_TIMEOUT, task).await })
        .unwrap_or_else(|_| panic!("raw loop did not finish within {RUN_TIMEOUT:?}"))
        .expect("raw loop task");
    let cpu_end = CpuMark::now(emulator);
    runtime.shutdown_timeout(Duration::from_secs(5));
    assert_eq!(ok, n, "raw loop: only {ok} of {n} requests answered 200");
    Sample::new(ok, elapsed, &cpu_start, &cpu_end)
}

/// The library through the C API in thread or poll dispatch mode.
fn run_library(emulator: &Emulator, workload: &Workload, n: usize, variant: Variant) -> Sample {
    let options = LibOptions::new(&emulator.url);
    // Unlimited: the default pacing (80/s, Meta's default per-number throughput) would be all
    // that is measured otherwise.
    check(
        wa_options_set_channel_rate(options.0, 0),
        "wa_options_set_channel_rate",
    );
    check(
        wa_options_set_max_in_flight(options.0, IN_FLIGHT as u32),
        "wa_options_set_max_in_flight",
    );
    check(
        wa_options_set_outbox_capacity(options.0, n.max(100_000)),
        "wa_options_set_outbox_capacity",
    );
    let mode = match variant {
        Variant::Thread | Variant::Durable => wa_dispatch_mode::WA_DISPATCH_THREAD,
        _ => wa_dispatch_mode::WA_DISPATCH_POLL,
    };
    check(
        wa_options_set_dispatch_mode(options.0, mode as u32),
        "wa_options_set_dispatch_mode",
    );
    // A fresh store per run, on the project's disk (not a tmpfs), removed afterwards.
    let store_dir = (variant == Variant::Durable).then(|| {
        static RUN: AtomicUsize = AtomicUsize::new(0);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "bench-durable-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("store directory");
        check(
            wa_options_set_outbox_path(
                options.0,
                cstring(dir.join("outbox.db").to_str().unwrap()).as_ptr(),
            ),
            "wa_options_set_outbox_path",
        );
        dir
    });
    let client = LibClient::new(&options, n);
    client.set_token(TOKEN);

    let cpu_start = CpuMark::now(emulator);
    let start = Instant::now();
    let deadline = start + RUN_TIMEOUT;
    for i in 0..n {
        client.send(workload, i);
    }
    let finished = match variant {
        Variant::Thread | Variant::Durable => client.tally.wait_finished(deadline),
        _ => {
            while client.tally.done() < n && Instant::now() < deadline {
                let mut dispatched = 0usize;
                check(
                    wa_client_wait(client.raw, 100, &mut dispatched),
                    "wa_client_wait",
                );
            }
            client.tally.finished_at()
        }
    };
    let cpu_end = CpuMark::now(emulator);
    let Some(finished) = finished else {
        panic!(
            "{variant:?}: only {} of {n} results within {RUN_TIMEOUT:?}",
            client.tally.done()
        );
    };
    let failed = client.tally.failed.load(Ordering::Acquire);
    assert_eq!(
        failed,
        0,
        "{variant:?}: {failed} of {n} results were not WHATSAPP_ERR_OK; first: {}",
        client
            .tally
            .first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_deref()
            .unwrap_or("?")
    );
    drop(client);
    if let Some(dir) = store_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Sample::new(n, finished.duration_since(start), &cpu_start, &cpu_end)
}

/// Messages per measured run: the requested number, unless the warm-up predicts that `ROUNDS`
/// rounds of it would not fit the time budget.
fn fit_to_budget(requested: usize, warmup: &Round, notes: &mut Vec<String>) -> usize {
    let seconds_per_message: f64 = [warmup.baseline, warmup.thread, warmup.poll, warmup.durable]
        .iter()
        .map(|sample| 1.0 / sample.rate.max(1.0))
        .sum();
    let predicted = seconds_per_message * requested as f64 * ROUNDS as f64;
    if predicted <= THROUGHPUT_BUDGET.as_secs_f64() {
        return requested;
    }
    let fitted = ((THROUGHPUT_BUDGET.as_secs_f64() / (seconds_per_message * ROUNDS as f64))
        as usize)
        .max(WARMUP_MESSAGES);
    push_note(
        notes,
        &format!(
            "runs shortened from {requested} to {fitted} messages: the warm-up predicted {predicted:.0} s"
        ),
    );
    fitted
}

// ---------------------------------------------------------------------------------------------
// Report

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

fn list(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Median of values that may be unavailable; `None` if any is.
fn median_of(values: &[Option<f64>]) -> Option<f64> {
    let values: Option<Vec<f64>> = values.iter().copied().collect();
    values.map(|v| median(&v))
}

fn or_na(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.decimals$}"))
}

fn print_report(
    rounds: &[Round],
    per_run: usize,
    (send_ns, send_batches): (f64, Vec<f64>),
    rss: Rss,
    notes: &[String],
) {
    let thread_ratio: Vec<f64> = rounds
        .iter()
        .map(|r| r.thread.rate / r.baseline.rate)
        .collect();
    let poll_ratio: Vec<f64> = rounds
        .iter()
        .map(|r| r.poll.rate / r.baseline.rate)
        .collect();
    let durable_ratio: Vec<f64> = rounds
        .iter()
        .map(|r| r.durable.rate / r.thread.rate)
        .collect();
    let (thread_ratio_median, poll_ratio_median) = (median(&thread_ratio), median(&poll_ratio));
    let durable_ratio_median = median(&durable_ratio);
    let rss_mb = rss.delta_mb();

    println!("| metric | result | target | verdict |");
    println!("|---|---|---|---|");
    println!(
        "| library throughput, thread mode / raw reqwest loop | {thread_ratio_median:.2}× (runs: {}) | ≥ {TARGET_RATIO}× | {} |",
        list(&thread_ratio, 2),
        verdict(thread_ratio_median >= TARGET_RATIO)
    );
    println!(
        "| library throughput, poll mode / raw reqwest loop | {poll_ratio_median:.2}× (runs: {}) | ≥ {TARGET_RATIO}× | {} |",
        list(&poll_ratio, 2),
        verdict(poll_ratio_median >= TARGET_RATIO)
    );
    println!(
        "| library throughput, durable outbox / in-memory outbox (thread mode) | {durable_ratio_median:.2}× (runs: {}) | ≥ {TARGET_DURABLE_RATIO}× | {} |",
        list(&durable_ratio, 2),
        verdict(durable_ratio_median >= TARGET_DURABLE_RATIO)
    );
    println!(
        "| cost of one `wa_client_send_message` call | {:.2} µs (batches: {} ns) | ≤ {:.0} µs | {} |",
        send_ns / 1000.0,
        list(&send_batches, 0),
        TARGET_SEND_NS / 1000.0,
        verdict(send_ns <= TARGET_SEND_NS)
    );
    println!(
        "| RSS growth with {RSS_MESSAGES} queued messages | {rss_mb:.1} MB (VmRSS {} → {} KiB) | ≤ {TARGET_RSS_MB:.0} MB | {} |",
        rss.before_kib,
        rss.after_kib,
        verdict(rss_mb <= TARGET_RSS_MB)
    );
    println!();
    // The CPU columns show where the time goes: with the emulator on the same machine, the
    // benchmark is usually CPU-bound, and then every microsecond the client spends per message
    // comes straight out of the throughput.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "| variant | messages/s (median) | runs | client CPU µs/msg | emulator CPU µs/msg | CPU busy (of {cores} cores) |"
    );
    println!("|---|---|---|---|---|---|");
    type Pick = fn(&Round) -> Sample;
    let variants: [(&str, Pick); 4] = [
        ("raw reqwest loop (baseline)", |r| r.baseline),
        ("library, thread dispatch", |r| r.thread),
        ("library, poll dispatch", |r| r.poll),
        ("library, thread dispatch, durable outbox", |r| r.durable),
    ];
    for (name, pick) in variants {
        let samples: Vec<Sample> = rounds.iter().map(pick).collect();
        let rates: Vec<f64> = samples.iter().map(|s| s.rate).collect();
        let client = median_of(&samples.iter().map(|s| s.client_cpu_us).collect::<Vec<_>>());
        let emulator = median_of(
            &samples
                .iter()
                .map(|s| s.emulator_cpu_us)
                .collect::<Vec<_>>(),
        );
        let busy = client
            .zip(emulator)
            .map(|(c, e)| (c + e) * median(&rates) / 1e6);
        println!(
            "| {name} | {:.0} | {} | {} | {} | {} |",
            median(&rates),
            list(&rates, 0),
            or_na(client, 1),
            or_na(emulator, 1),
            or_na(busy, 2)
        );
    }
    println!();
    println!(
        "{per_run} text messages per run to {RECIPIENTS} recipients, {IN_FLIGHT} requests in flight, \
         {ROUNDS} rounds (baseline, thread, poll, durable) after a warm-up round of {WARMUP_MESSAGES}; \
         medians of the rounds, ratios taken within each round. CPU: scheduler run time of all \
         threads of the bench process (client) and of the emulator during the measured window."
    );
    if !notes.is_empty() {
        println!();
        for note in notes {
            println!("- Note: {note}");
        }
    }
}
