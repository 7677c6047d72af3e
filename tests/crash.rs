//! SIGKILL crash test of the durable outbox: a C host (tests/c/durable_sender.c, linked against
//! target/debug/libwhatsapp_connector.so) sends 10,000 messages over 50 recipients with the
//! durable outbox and is killed with SIGKILL at a kill point; the same program restarted on the
//! same store in "resume" mode sends nothing new and only dispatches until nothing is pending.
//! The emulator (one per kill point, never restarted) must then have answered 200 to every
//! accepted body at least once, and every body it answered must have had its result at the host
//! in one of the runs; bodies sent twice are counted and bounded by the in-flight window. Run
//! with `-- --nocapture` to see the numbers per kill point.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;

const MESSAGES: usize = 10_000;
const RECIPIENTS: usize = 50;
/// The program's `wa_options_set_max_in_flight`.
const MAX_IN_FLIGHT: usize = 64;
/// The outbox hands results over in batches of up to this many (`outbox::RESULT_BATCH`).
const RESULT_BATCH: usize = 64;
/// Bodies sent twice must stay within this: the requests on the wire at the kill (at most
/// MAX_IN_FLIGHT), answers still gathering into the outbox's next batch of results (fewer than
/// RESULT_BATCH), and a batch handed over but not yet dispatched or not yet removed from the
/// store (the host dispatches between its sends, so about one batch). The bound used to leave
/// out the gathering batch, and runs with 134 and 149 duplicates failed it.
const DUPLICATE_BOUND: usize = MAX_IN_FLIGHT + 2 * RESULT_BATCH;
/// The program prints "accepted N" every this many messages.
const ACCEPT_STEP: usize = 100;
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// The kill points share two cores with their emulators: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn program() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/durable_sender.c");
        build_c_program(&source, "durable-sender")
    })
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wa-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the program printed.
#[derive(Debug, Default)]
struct Output {
    resumed: Option<usize>,
    accepted: usize,
    /// (body, error, request context was non-NULL)
    results: Vec<(String, u32, bool)>,
    done: bool,
}

impl Output {
    fn absorb(&mut self, line: &str) {
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("resumed") => self.resumed = parts.next().and_then(|n| n.parse().ok()),
            Some("accepted") => {
                self.accepted = parts.next().and_then(|n| n.parse().ok()).unwrap();
            }
            Some("r") => {
                let body = parts.next().unwrap().to_string();
                let error = parts.next().and_then(|n| n.parse().ok()).unwrap();
                let ctx = parts.next() == Some("1");
                self.results.push((body, error, ctx));
            }
            Some("done") => self.done = true,
            _ => panic!("unexpected line from durable_sender: {line:?}"),
        }
    }
}

/// A running program whose stdout lines arrive on a channel.
struct Run {
    child: Child,
    lines: Receiver<String>,
    output: Output,
}

impl Run {
    fn start(url: &str, store: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(program())
            .arg(url)
            .arg(store)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("durable_sender starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Run {
            child,
            lines,
            output: Output::default(),
        }
    }

    /// Reads lines until `stop` holds; false if the output ended first.
    fn until(&mut self, deadline: Instant, stop: impl Fn(&Output) -> bool) -> bool {
        while !stop(&self.output) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.output.absorb(&line),
                Err(RecvTimeoutError::Disconnected) => return false,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "durable_sender made no progress in time: {:?}",
                        summary(&self.output)
                    );
                }
            }
        }
        true
    }

    /// SIGKILL, then everything it printed before dying.
    fn kill(mut self) -> Output {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "killed, not exited: {status:?}");
        for line in self.lines.iter() {
            self.output.absorb(&line);
        }
        self.output
    }

    /// Runs to its end; it must exit 0 after "done".
    fn finish(mut self) -> Output {
        let ended = self.until(Instant::now() + RUN_LIMIT, |o| o.done);
        let status = self.child.wait().unwrap();
        for line in self.lines.iter() {
            self.output.absorb(&line);
        }
        assert!(
            ended && status.success(),
            "durable_sender failed: {status:?}"
        );
        self.output
    }
}

fn summary(o: &Output) -> String {
    format!(
        "resumed {:?}, accepted {}, results {}",
        o.resumed,
        o.accepted,
        o.results.len()
    )
}

#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// After the program printed "accepted N" (N ≥ this), while it is still accepting.
    Accepted(usize),
    /// After all 10,000 were accepted and at least this many results were dispatched.
    Results(usize),
}

fn index_of(body: &str) -> usize {
    body.strip_prefix('m')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not one of ours: {body:?}"))
}

fn crash_and_resume(name: &str, kill_at: KillAt) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let program = program();
    assert!(program.exists());
    let emu = Emulator::start();
    let dir = temp_dir(name);
    let store = dir.join("outbox.db");
    let started = Instant::now();

    // 1. Send, and die by SIGKILL at the kill point.
    let mut run = Run::start(
        &emu.url,
        &store,
        &["send", &MESSAGES.to_string(), &RECIPIENTS.to_string()],
    );
    let deadline = Instant::now() + RUN_LIMIT;
    let reached = match kill_at {
        KillAt::Accepted(n) => run.until(deadline, |o| o.accepted >= n),
        KillAt::Results(n) => {
            run.until(deadline, |o| o.accepted == MESSAGES && o.results.len() >= n)
        }
    };
    assert!(
        reached,
        "the program ended before the kill point {kill_at:?}"
    );
    let first = run.kill();
    let killed_after = started.elapsed();
    let sent_before_kill = emu.sends().len();
    assert_eq!(first.resumed, Some(0), "a fresh store");

    // 2. Restart on the same store: it resends what the store holds, nothing else.
    let resume_started = Instant::now();
    let second = Run::start(&emu.url, &store, &["resume"]).finish();
    let resume_took = resume_started.elapsed();
    let resumed = second.resumed.expect("resumed N");
    assert_eq!(
        second.results.len(),
        resumed,
        "one result per resumed message"
    );
    // 3. Nothing is left in the store.
    let third = Run::start(&emu.url, &store, &["resume"]).finish();
    assert_eq!(
        third.resumed,
        Some(0),
        "the store is empty after the resume"
    );
    assert!(third.results.is_empty());

    // The accepted messages: every index below the last printed count, perhaps a few more
    // (accepted after the last print, before the kill).
    let accepted_surely = first.accepted;
    let accepted_at_most = (first.accepted + ACCEPT_STEP).min(MESSAGES);
    if matches!(kill_at, KillAt::Results(_)) {
        assert_eq!(accepted_surely, MESSAGES);
    }

    // Results at the host: run 1 with its request contexts, run 2 with NULL (they do not
    // survive a restart), never a failure.
    for (body, error, ctx) in &first.results {
        assert_eq!(*error, 0, "{body} failed in the first run");
        assert!(
            *ctx,
            "{body}: the first run's results carry its request context"
        );
    }
    for (body, error, ctx) in &second.results {
        assert_eq!(*error, 0, "{body} failed after the resume");
        assert!(!*ctx, "{body}: a resumed result has a NULL request context");
    }

    // At the emulator: every accepted body answered 200 at least once, nothing else sent.
    let sends = emu.sends();
    let mut answered: HashMap<usize, usize> = HashMap::new();
    for s in &sends {
        assert_eq!(s["response_status"], 200, "no faults were injected: {s}");
        let body = s["body"]["text"]["body"].as_str().unwrap();
        *answered.entry(index_of(body)).or_default() += 1;
    }
    let missing: Vec<usize> = (0..accepted_surely)
        .filter(|i| !answered.contains_key(i))
        .collect();
    assert!(
        missing.is_empty(),
        "{name}: {} accepted messages were never delivered, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let beyond: Vec<&usize> = answered
        .keys()
        .filter(|i| **i >= accepted_at_most)
        .collect();
    assert!(
        beyond.is_empty(),
        "{name}: sent but never accepted: {beyond:?}"
    );
    // Per-recipient order across the crash: the first delivery of each body, per recipient, in
    // arrival order, is that recipient's messages in acceptance order. Resends after the crash
    // (messages whose results the killed host had not yet seen) are copies of earlier ones.
    let mut order: HashMap<String, Vec<usize>> = HashMap::new();
    let mut first_seen = std::collections::HashSet::new();
    for s in &sends {
        let to = s["body"]["to"].as_str().unwrap().to_string();
        let i = index_of(s["body"]["text"]["body"].as_str().unwrap());
        if first_seen.insert(i) {
            order.entry(to).or_default().push(i);
        }
    }
    for (to, got) in &order {
        let mut expected: Vec<usize> = got.clone();
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(got, &expected, "{name}: order at the emulator for {to}");
        assert!(
            expected
                .iter()
                .all(|i| format!("+1555020{:04}", i % RECIPIENTS) == *to),
            "{name}: a body went to the wrong recipient"
        );
    }
    let duplicate_bodies = answered.values().filter(|n| **n > 1).count();
    let extra_sends: usize = answered.values().map(|n| n - 1).sum();
    let max_copies = answered.values().copied().max().unwrap_or(0);

    // Results the host saw, per body, over both runs.
    let mut host: HashMap<usize, usize> = HashMap::new();
    for (body, _, _) in first.results.iter().chain(&second.results) {
        *host.entry(index_of(body)).or_default() += 1;
    }
    let twice_at_host = host.values().filter(|n| **n > 1).count();
    // A message is stored before it is sent and its row goes only after its result's callback
    // returned (the program writes the line inside the callback, with one write(2)): a body
    // Graph answered has its result either in run 1's output or, still stored, in run 2's.
    let mut no_result: Vec<usize> = answered
        .keys()
        .copied()
        .filter(|i| !host.contains_key(i))
        .collect();
    no_result.sort_unstable();
    let no_result_at_host = no_result.len();

    println!(
        "[crash] {name}: kill point {kill_at:?}; killed after {:.2} s with {} accepted (printed), \
         {} results dispatched, {sent_before_kill} sends at the emulator; resume took {:.2} s and \
         resent {resumed}; delivered {} distinct bodies in {} sends: {duplicate_bodies} bodies sent \
         twice ({extra_sends} extra sends, at most {max_copies} copies; bound {DUPLICATE_BOUND}); \
         host results: {} + {} (bodies with 2 results: {twice_at_host}, delivered bodies \
         without any result at the host: {no_result_at_host})",
        killed_after.as_secs_f64(),
        first.accepted,
        first.results.len(),
        resume_took.as_secs_f64(),
        answered.len(),
        sends.len(),
        first.results.len(),
        second.results.len(),
    );
    assert!(
        duplicate_bodies <= DUPLICATE_BOUND,
        "{name}: {duplicate_bodies} bodies were sent twice, more than the in-flight window allows"
    );
    assert!(
        max_copies <= 2,
        "{name}: a body was sent {max_copies} times"
    );
    assert!(
        twice_at_host <= DUPLICATE_BOUND,
        "{name}: {twice_at_host} bodies got two results"
    );
    assert!(
        no_result.is_empty(),
        "{name}: {no_result_at_host} delivered bodies never got a result at the host, e.g. {:?}",
        &no_result[..no_result.len().min(20)]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A random point in `range` (printed with the results), so that repeated runs probe
/// different moments.
fn pick(range: std::ops::Range<usize>) -> usize {
    fastrand::usize(range)
}

#[test]
fn sigkill_while_accepting() {
    crash_and_resume("accepting", KillAt::Accepted(pick(2_000..5_000)));
}

#[test]
fn sigkill_early_in_delivery() {
    crash_and_resume("early", KillAt::Results(pick(0..1_500)));
}

#[test]
fn sigkill_midway() {
    crash_and_resume("middle", KillAt::Results(pick(4_500..5_500)));
}

#[test]
fn sigkill_late() {
    crash_and_resume("late", KillAt::Results(pick(9_000..9_900)));
}

/// Issue 7: a message is "removed (or marked final) when its final result is delivered to the
/// host": a crash after Graph's answer but before the host's callback ran must not lose the
/// result. Here the host accepts 300 messages and does not dispatch; once every result is
/// queued it is killed; the restarted host must get all 300 results (the messages are sent
/// again: at-least-once).
#[test]
fn results_queued_at_a_crash_are_not_lost() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let emu = Emulator::start();
    let dir = temp_dir("queued");
    let store = dir.join("outbox.db");
    let mut run = Run::start(&emu.url, &store, &["send", "300", "10", "nodispatch"]);
    assert!(run.until(Instant::now() + RUN_LIMIT, |o| o.accepted == 300));
    // Every message answered by Graph (the host cannot tell: a result it has not dispatched
    // keeps its message pending), then a moment for the results to be queued.
    let deadline = Instant::now() + RUN_LIMIT;
    while emu
        .sends()
        .iter()
        .filter(|s| s["response_status"] == 200)
        .count()
        < 300
    {
        assert!(
            Instant::now() < deadline,
            "Graph did not answer every message"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let first = run.kill();
    assert_eq!(first.accepted, 300);
    assert!(first.results.is_empty(), "this host never dispatched");
    assert_eq!(emu.sends().len(), 300, "every message was sent");
    let second = Run::start(&emu.url, &store, &["resume"]).finish();
    let with_result = first.results.len() + second.results.len();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        with_result, 300,
        "every accepted message gets a result in some run of the host (at least once across a \
         crash); resumed {:?}",
        second.resumed
    );
}
