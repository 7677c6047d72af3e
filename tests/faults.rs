//! The fault matrix: bursts of messages through the C API (poll mode) against the emulator's
//! fault injection. For every case: each accepted message gets exactly one final result; the
//! results match the emulator's record (an OK result carries a wamid the emulator issued in a
//! 200 answer to that message's body; a failed message has no 200 answer); per-recipient order
//! holds at the emulator. Cases where a request can be processed by Graph after the client gave
//! up on it (timeouts, a hang, a restart) allow at-least-once duplicates; they are counted,
//! bounded and printed (`cargo test --test faults -- --nocapture`).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use whatsapp_connector::ffi::client::*;
use whatsapp_connector::ffi::options::*;
use whatsapp_connector::ffi::result::whatsapp_error_t::*;
use whatsapp_connector::ffi::wa_result;

const MESSAGES: usize = 1000;
const RECIPIENTS: usize = 20;
const MAX_ATTEMPTS: u32 = 10;
const WAIT: Duration = Duration::from_secs(60);

fn recipient(r: usize) -> String {
    format!("+1555010{r:04}")
}

/// A burst over one emulator and one poll-mode host.
struct Burst {
    tag: &'static str,
    emu: Emulator,
    host: Host,
    started: Instant,
}

impl Burst {
    /// A host with generous retries (10 attempts, 120 s, backoff 20..200 ms), pacing off,
    /// then `configure` for the case's own options; the token is set.
    fn new(tag: &'static str, emu: Emulator, configure: impl FnOnce(*mut wa_options)) -> Self {
        let opts = Opts::for_emulator(&emu);
        assert_eq!(
            wa_options_set_retry(opts.0, MAX_ATTEMPTS, 120_000, 20, 200),
            wa_result::WA_OK
        );
        assert_eq!(wa_options_set_channel_rate(opts.0, 0), wa_result::WA_OK);
        // Warnings and errors only: a log line per retry would dominate the run.
        assert_eq!(
            wa_options_set_log_level(opts.0, wa_log_level::WA_LOG_WARN as u32),
            wa_result::WA_OK
        );
        configure(opts.0);
        let host = Host::new(&opts);
        host.set_token(TOKEN);
        Burst {
            tag,
            emu,
            host,
            started: Instant::now(),
        }
    }

    fn body(&self, i: usize) -> String {
        format!("{}-m{i}", self.tag)
    }

    /// Sends the whole burst: message `i` to recipient `i % RECIPIENTS`, request context
    /// `i + 1`.
    fn send_all(&mut self) {
        self.started = Instant::now();
        for i in 0..MESSAGES {
            assert_eq!(
                self.host
                    .text(&self.body(i), &recipient(i % RECIPIENTS), i + 1),
                wa_result::WA_OK,
                "{}",
                last_error()
            );
        }
    }

    /// Dispatches until `n` results arrived.
    fn wait(&self, n: usize) {
        self.host.wait_results(n, WAIT);
    }

    /// Dispatches for `time`.
    fn pump(&self, time: Duration) {
        let until = Instant::now() + time;
        while Instant::now() < until {
            wa_client_wait(self.host.client, 20, std::ptr::null_mut());
        }
    }

    /// Waits for every result, closes (close-complete must follow), returns every result.
    fn finish(&self) -> Vec<SendResult> {
        self.wait(MESSAGES);
        self.host.close_and_wait(10 * SECS);
        let seen = self.host.seen();
        assert!(!seen.after_end, "a callback after close-complete");
        seen.results.clone()
    }
}

/// What a case saw, for its own assertions and the printed summary.
#[derive(Debug, Default)]
struct Report {
    ok: usize,
    failed: HashMap<String, usize>,
    requests: usize,
    answered_200: usize,
    /// Bodies answered 200 more than once.
    duplicates: usize,
    /// Failed messages that nevertheless have a 200 answer (only where duplicates are allowed).
    failed_but_sent: usize,
    /// HTTP status (or "dropped") of every send request, counted.
    statuses: HashMap<String, usize>,
    /// The first few failures as "message i: error: text", so that a failed case says why.
    failure_texts: Vec<String>,
    elapsed: Duration,
}

fn text(v: &Value) -> Option<&str> {
    v.as_str()
}

/// The body text of a recorded text send.
fn record_body(r: &Value) -> Option<&str> {
    text(&r["body"]["text"]["body"])
}

/// Checks the three properties against `records` (the sends of one or more emulators, in
/// time order); `duplicates_allowed` for at-least-once cases.
fn verify(
    burst: &Burst,
    results: &[SendResult],
    records: &[Value],
    duplicates_allowed: bool,
) -> Report {
    let tag = burst.tag;
    let mut report = Report {
        elapsed: burst.started.elapsed(),
        requests: records.len(),
        ..Default::default()
    };

    // 1. Exactly one final result per accepted message.
    let mut by_message: Vec<Option<&SendResult>> = vec![None; MESSAGES];
    for r in results {
        assert!(
            (1..=MESSAGES).contains(&r.ctx),
            "{tag}: result with an unknown request context: {r:?}"
        );
        let slot = &mut by_message[r.ctx - 1];
        assert!(
            slot.is_none(),
            "{tag}: second result for message {}: {r:?} after {slot:?}",
            r.ctx - 1
        );
        assert_eq!(
            r.callback_info.as_deref(),
            Some(format!("info-{}", r.ctx).as_str()),
            "{tag}: callback_info comes back"
        );
        *slot = Some(r);
    }
    let missing: Vec<usize> = (0..MESSAGES).filter(|i| by_message[*i].is_none()).collect();
    assert!(
        missing.is_empty(),
        "{tag}: no result for messages {missing:?}"
    );

    // The emulator's record: 200 answers (with their wamids) per body, in arrival order.
    let mut answered: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in records {
        let status = r["response_status"]
            .as_u64()
            .map_or_else(|| "dropped".to_string(), |s| s.to_string());
        *report.statuses.entry(status).or_default() += 1;
        let Some(body) = record_body(r) else {
            panic!("{tag}: a send that is not one of ours: {r}");
        };
        assert!(body.starts_with(tag), "{tag}: foreign body {body:?}");
        if r["response_status"] == 200 {
            let wamid =
                text(&r["wamid"]).unwrap_or_else(|| panic!("{tag}: 200 without wamid: {r}"));
            answered.entry(body).or_default().push(wamid);
            report.answered_200 += 1;
        }
    }

    // 2. Results match the record.
    let mut wamids_used: HashMap<&str, usize> = HashMap::new();
    for (i, result) in by_message.iter().enumerate() {
        let result = result.unwrap();
        let body = burst.body(i);
        let issued = answered.get(body.as_str());
        if result.error == WHATSAPP_ERR_OK {
            report.ok += 1;
            assert!(
                issued.is_some_and(|w| w.contains(&result.content.as_str())),
                "{tag}: message {i} ended OK with {} but the emulator issued {issued:?} for {body:?}",
                result.content
            );
            if let Some(other) = wamids_used.insert(result.content.as_str(), i) {
                panic!(
                    "{tag}: messages {other} and {i} got the same wamid {}",
                    result.content
                );
            }
        } else {
            *report
                .failed
                .entry(format!("{:?}", result.error))
                .or_default() += 1;
            if report.failure_texts.len() < 5 {
                report.failure_texts.push(format!(
                    "message {i}: {:?}: {}",
                    result.error, result.content
                ));
            }
            if issued.is_some() {
                report.failed_but_sent += 1;
                assert!(
                    duplicates_allowed,
                    "{tag}: message {i} failed ({:?}: {}) but the emulator answered 200: {issued:?}",
                    result.error, result.content
                );
            }
        }
    }
    report.duplicates = answered.values().filter(|w| w.len() > 1).count();
    if !duplicates_allowed {
        let dups: Vec<_> = answered.iter().filter(|(_, w)| w.len() > 1).collect();
        assert!(dups.is_empty(), "{tag}: sent twice: {dups:?}");
    }

    // 3. Per-recipient order: the 200-answered bodies per recipient, in arrival order (repeats
    // of the same body collapsed where duplicates are allowed), are the OK messages in send
    // order.
    let mut seen_order: HashMap<String, Vec<&str>> = HashMap::new();
    for r in records.iter().filter(|r| r["response_status"] == 200) {
        let to = text(&r["body"]["to"]).unwrap().to_string();
        let body = record_body(r).unwrap();
        let list = seen_order.entry(to).or_default();
        if duplicates_allowed && list.last() == Some(&body) {
            continue;
        }
        list.push(body);
    }
    for k in 0..RECIPIENTS {
        let expected: Vec<String> = (0..MESSAGES)
            .filter(|i| i % RECIPIENTS == k && by_message[*i].unwrap().error == WHATSAPP_ERR_OK)
            .map(|i| burst.body(i))
            .collect();
        let got = seen_order.remove(&recipient(k)).unwrap_or_default();
        assert_eq!(
            got,
            expected,
            "{tag}: order at the emulator for {}",
            recipient(k)
        );
    }
    assert!(
        seen_order.is_empty(),
        "{tag}: unknown recipients {:?}",
        seen_order.keys()
    );

    println!(
        "[faults] {tag}: {} messages in {:.2} s: ok {}, failed {:?}, send requests {} ({:?}), \
         answered 200 {}, duplicates {}, failed-but-sent {}",
        MESSAGES,
        report.elapsed.as_secs_f64(),
        report.ok,
        report.failed,
        report.requests,
        report.statuses,
        report.answered_200,
        report.duplicates,
        report.failed_but_sent
    );
    report
}

fn status_count(report: &Report, status: &str) -> usize {
    report.statuses.get(status).copied().unwrap_or(0)
}

fn all_ok(report: &Report, tag: &str) {
    assert_eq!(
        report.ok, MESSAGES,
        "{tag}: every message outlives the faults: {report:?}"
    );
}

#[test]
fn bursts_of_5xx_are_retried() {
    let emu = Emulator::start();
    // A front-end 503 without Graph's envelope, then (mid-burst) Graph's own transient 131000.
    emu.fault(json!({"times": 80, "action": {"http_status": 503, "body": "<html>Service Unavailable</html>"}}));
    let mut burst = Burst::new("5xx", emu, |_| {});
    burst.send_all();
    burst.wait(400);
    burst
        .emu
        .fault(json!({"times": 80, "action": {"error": {"code": 131000, "http_status": 500}}}));
    let results = burst.finish();
    let report = verify(&burst, &results, &burst.emu.sends(), false);
    all_ok(&report, burst.tag);
    assert_eq!(status_count(&report, "503"), 80);
    assert_eq!(status_count(&report, "500"), 80);
    assert_eq!(report.requests, MESSAGES + 160, "one extra request per 5xx");
}

#[test]
fn too_many_calls_429_waits_for_retry_after() {
    let emu = Emulator::start();
    emu.fault(json!({"times": 40, "action": {"error": {"code": 4, "http_status": 429}, "retry_after_s": 1}}));
    let mut burst = Burst::new("429", emu, |_| {});
    burst.send_all();
    let results = burst.finish();
    let records = burst.emu.sends();
    let report = verify(&burst, &results, &records, false);
    all_ok(&report, burst.tag);
    assert_eq!(status_count(&report, "429"), 40);
    // Retry-After is honoured: the next attempt of a 429'd body comes at least 1 s later.
    let mut last_429: HashMap<&str, u64> = HashMap::new();
    let mut checked = 0;
    for r in &records {
        let body = record_body(r).unwrap();
        let at = r["received_at_ms"].as_u64().unwrap();
        if let Some(previous) = last_429.remove(body) {
            assert!(
                at >= previous + 990,
                "429: {body} retried {} ms after a Retry-After: 1",
                at - previous
            );
            checked += 1;
        }
        if r["response_status"] == 429 {
            last_429.insert(body, at);
        }
    }
    assert_eq!(checked, 40, "every 429 was followed by a retry");
}

#[test]
fn throughput_limit_130429_is_outlived() {
    let emu = Emulator::start();
    // Graph allows 400 sends/s on this number; the client offers 600/s.
    emu.config(json!({"throughput_mps": 400}));
    let mut burst = Burst::new("130429", emu, |o| {
        assert_eq!(wa_options_set_channel_rate(o, 600), wa_result::WA_OK);
    });
    burst.send_all();
    let results = burst.finish();
    let records = burst.emu.sends();
    let report = verify(&burst, &results, &records, false);
    all_ok(&report, burst.tag);
    let throttled = records
        .iter()
        .filter(|r| r["response_body"]["error"]["code"] == 130429)
        .count();
    println!("[faults] 130429: {throttled} requests answered 130429");
    assert!(throttled > 0, "the limit was hit");
}

#[test]
fn pair_rate_131056_is_outlived() {
    let emu = Emulator::start();
    // At most 2 sends per recipient per 100 ms; the client spaces a recipient 60 ms apart after
    // a pair-rate error.
    emu.config(json!({"pair_limit": {"max": 2, "window_ms": 100}}));
    let mut burst = Burst::new("131056", emu, |o| {
        assert_eq!(wa_options_set_pair_rate_backoff_ms(o, 60), wa_result::WA_OK);
    });
    burst.send_all();
    let results = burst.finish();
    let records = burst.emu.sends();
    let report = verify(&burst, &results, &records, false);
    all_ok(&report, burst.tag);
    let limited = records
        .iter()
        .filter(|r| r["response_body"]["error"]["code"] == 131056)
        .count();
    println!("[faults] 131056: {limited} requests answered 131056");
    assert!(limited > 0, "the pair limit was hit");
    // The spacing keeps the errors to a fraction of the sends.
    assert!(
        limited < MESSAGES,
        "{limited} pair-rate errors for {MESSAGES} messages"
    );
}

/// Two windows of consecutive dropped connections. Messages to one recipient go one at a time,
/// so a window is shared by the 20 recipients' first messages, each retrying into it: with 100
/// drops per window some recipient now and then took 10 of them and ran out of its 10 attempts
/// (about one run in fifteen); 50 keep every message well inside its budget.
#[test]
fn connection_resets_are_retried() {
    const DROPS: usize = 50;
    let emu = Emulator::start();
    emu.fault(json!({"times": DROPS, "action": {"drop": true}}));
    let mut burst = Burst::new("reset", emu, |_| {});
    burst.send_all();
    burst.wait(500);
    burst
        .emu
        .fault(json!({"times": DROPS, "action": {"drop": true}}));
    let results = burst.finish();
    let report = verify(&burst, &results, &burst.emu.sends(), false);
    all_ok(&report, burst.tag);
    assert_eq!(status_count(&report, "dropped"), 2 * DROPS);
    assert_eq!(report.requests, MESSAGES + 2 * DROPS);
}

/// Requests delayed past the client's timeout are still processed by the emulator (as Graph
/// may): at-least-once, so duplicates are allowed, but bounded by the delayed requests.
#[test]
fn timeouts_are_retried_at_least_once() {
    let emu = Emulator::start();
    let delayed = json!({"times": 30, "action": {"delay_ms": 2000}});
    emu.fault(delayed.clone());
    let mut burst = Burst::new("timeout", emu, |o| {
        assert_eq!(wa_options_set_request_timeout_ms(o, 1000), wa_result::WA_OK);
    });
    burst.send_all();
    burst.wait(500);
    burst.emu.fault(delayed);
    let results = burst.finish();
    // Let the delayed requests finish at the emulator before reading its record.
    burst.pump(Duration::from_millis(1200));
    let records = burst.emu.sends();
    let report = verify(&burst, &results, &records, true);
    all_ok(&report, burst.tag);
    let faulted = records.iter().filter(|r| !r["fault_id"].is_null()).count();
    assert_eq!(faulted, 60);
    assert!(
        report.duplicates <= faulted,
        "timeout: {} duplicates for {faulted} delayed requests",
        report.duplicates
    );
}

/// Graph hangs (every request delayed 2.5 s, client timeout 1 s) for about 2 s, then recovers.
#[test]
fn graph_hangs_then_recovers() {
    let emu = Emulator::start();
    let mut burst = Burst::new("hang", emu, |o| {
        assert_eq!(wa_options_set_request_timeout_ms(o, 1000), wa_result::WA_OK);
    });
    burst.send_all();
    burst.wait(300);
    burst.emu.fault(json!({"action": {"delay_ms": 2500}}));
    burst.pump(Duration::from_secs(2));
    burst.emu.clear_faults();
    let results = burst.finish();
    burst.pump(Duration::from_millis(2600));
    let records = burst.emu.sends();
    let report = verify(&burst, &results, &records, true);
    all_ok(&report, burst.tag);
    let hung = records.iter().filter(|r| !r["fault_id"].is_null()).count();
    assert!(hung >= RECIPIENTS, "the hang held every recipient: {hung}");
    assert!(
        report.duplicates <= hung,
        "hang: {} duplicates for {hung} hung requests",
        report.duplicates
    );
}

/// The emulator is frozen (so its record is complete), its record read, then it is killed and
/// a new one started on the same port 200 ms later: results are matched against both records.
#[test]
fn emulator_restarted_mid_burst() {
    let emu = Emulator::start();
    let mut burst = Burst::new("restart", emu, |o| {
        assert_eq!(wa_options_set_request_timeout_ms(o, 5000), wa_result::WA_OK);
    });
    burst.send_all();
    burst.wait(300);
    burst.emu.fault(json!({"action": {"delay_ms": 60000}}));
    burst.pump(Duration::from_millis(100));
    let mut records: Vec<Value> = burst.emu.sends();
    // Requests held by the freeze never reach the handler's end: they are not 200s.
    records.retain(|r| r["fault_id"].is_null());
    let before = records.len();
    burst.emu.restart(Duration::from_millis(200), &[]);
    let results = burst.finish();
    records.extend(burst.emu.sends());
    println!(
        "[faults] restart: {before} requests before the restart, {} after",
        records.len() - before
    );
    let report = verify(&burst, &results, &records, true);
    all_ok(&report, burst.tag);
    assert!(before >= 300 && records.len() > before);
    assert!(
        report.duplicates <= RECIPIENTS,
        "restart: {} duplicates, more than the requests in flight",
        report.duplicates
    );
}

/// The token is revoked after about 300 results: the rest end with AUTHENTICATION_FAILED
/// after one request each (no retry of a 401).
#[test]
fn token_revoked_mid_burst() {
    let emu = Emulator::start();
    let mut burst = Burst::new("revoked", emu, |_| {});
    burst.send_all();
    burst.wait(300);
    burst.emu.config(json!({"tokens": []}));
    let results = burst.finish();
    let records = burst.emu.sends();
    let report = verify(&burst, &results, &records, false);
    let failed: usize = report.failed.values().sum();
    assert!(report.ok >= 300, "{report:?}");
    assert!(
        failed >= 500,
        "most of the burst came after the revocation: {report:?}"
    );
    assert_eq!(
        report
            .failed
            .get(&format!("{WHATSAPP_ERR_AUTHENTICATION_FAILED:?}")),
        Some(&failed),
        "every failure is an authentication failure: {report:?}"
    );
    for r in results.iter().filter(|r| r.error != WHATSAPP_ERR_OK) {
        assert!(!r.content.is_empty(), "a failure says why: {r:?}");
    }
    assert_eq!(
        status_count(&report, "401"),
        failed,
        "one 401 per failed message"
    );
    assert_eq!(
        report.requests, MESSAGES,
        "no message was retried after a 401"
    );
}

/// Graph answered 200 but the connection broke inside the answer's body: the message was
/// accepted, so it is not sent again (a retry would deliver it twice); the host gets an
/// OTHER_HTTP result that says so.
#[test]
fn a_success_answer_cut_off_is_not_retried() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // The request head and its small body, then an answer promising more than it sends.
            let mut request = [0u8; 65536];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"messaging_product\":",
            );
        }
    });
    let opts = Opts::for_graph(&format!("http://127.0.0.1:{port}"));
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    assert_eq!(host.text("hi", "+15551234567", 1), wa_result::WA_OK);
    let result = host.wait_results(1, 20 * SECS).remove(0);
    assert_eq!(result.error, WHATSAPP_ERR_OTHER_HTTP, "{result:?}");
    assert!(
        result.content.contains("the answer was cut off"),
        "{result:?}"
    );
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Freeing a client whose close is still draining ends it at once (its results are discarded,
/// as the header says), instead of holding the host's thread for the drain time.
#[test]
fn free_during_a_close_does_not_wait_for_the_drain() {
    let emu = Emulator::start();
    emu.fault(json!({"action": {"delay_ms": 60000}}));
    let opts = Opts::for_emulator(&emu);
    assert_eq!(
        wa_options_set_drain_timeout_ms(opts.0, 60_000),
        wa_result::WA_OK
    );
    let mut host = Host::new(&opts);
    host.set_token(TOKEN);
    assert_eq!(host.text("held", "+15551234567", 1), wa_result::WA_OK);
    // On the wire (the emulator records a request only once answered), answered in a minute;
    // the close would wait as long for it.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(wa_client_close(host.client), wa_result::WA_OK);
    let start = Instant::now();
    host.free();
    let took = start.elapsed();
    // Far below the drain time (60 s); the bound only leaves room for a loaded machine.
    assert!(took < Duration::from_secs(20), "free took {took:?}");
    assert!(host.seen().results.is_empty(), "no result after free");
}
