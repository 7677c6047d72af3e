//! Events produced by the client's runtime and consumed on the host's thread.
//!
//! The runtime never calls host code. It pushes [`Event`]s into an [`EventQueue`]; the host drains
//! the queue either from its own event loop (poll mode: an eventfd becomes readable when events
//! are pending) or through a dispatcher thread owned by the library (thread mode).

use std::collections::VecDeque;
use std::ffi::c_char;
#[cfg(test)]
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::DeliveryError;

/// Severity of a log line, most severe first (numbers are part of the C ABI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

/// Something the host must be told about.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// The final result of one accepted message (exactly one per message).
    SendResult {
        /// The host's per-request context pointer, carried as an opaque number.
        request_ctx: usize,
        /// `None` means success.
        error: Option<DeliveryError>,
        callback_info: Option<String>,
        /// The `wamid` on success, the error text on failure.
        content: String,
        /// Its durable outbox row: removed once the host's callback has run.
        stored: Option<u64>,
    },
    /// An inbound message or status, mapped onto the seed's `RecvMessage`.
    RecvMessage(InboundMessage),
    /// An inbound media message, mapped onto the seed's `RecvMedia`.
    RecvMedia(InboundMedia),
    /// Every webhook change as received (`field` and the change's `value` as compact JSON).
    RawChange {
        field: String,
        value_json: String,
    },
    Log {
        level: LogLevel,
        text: String,
    },
    /// The result of one onboarding run (`stage` is a `crate::onboarding::Stage` number).
    OnboardResult {
        onboarding: u64,
        request_ctx: usize,
        src: String,
        stage: u32,
        token: Option<String>,
        error: Option<String>,
    },
    /// An onboarding object finished closing: its last event.
    OnboardingClosed {
        onboarding: u64,
    },
    /// Work the host queued to run among its callbacks (`wa_client_post`).
    HostTask(HostTask),
    /// Always the last event of a client.
    CloseComplete,
}

/// A host's closure, run once where the client's callbacks run.
pub struct HostTask(Box<dyn FnOnce() + Send>);

impl HostTask {
    pub fn new(task: impl FnOnce() + Send + 'static) -> Self {
        HostTask(Box::new(task))
    }

    pub fn run(self) {
        (self.0)()
    }
}

impl std::fmt::Debug for HostTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostTask")
    }
}

/// Two tasks are never the same event (`Event`'s comparisons look for close-complete).
impl PartialEq for HostTask {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

/// Several strings in one allocation, each followed by a NUL, so that an event costs one
/// allocation on the runtime's thread, one free on the host's, and the dispatcher hands the
/// strings to C without copying them. A NUL inside a string (JSON allows `\u0000`) is stored
/// as U+FFFD: C would otherwise see the string cut short.
#[derive(Clone, PartialEq, Eq)]
struct PackedStrings<const N: usize> {
    text: String,
    /// Where each string ends (its NUL's index).
    ends: [usize; N],
}

impl<const N: usize> PackedStrings<N> {
    fn get(&self, index: usize) -> &str {
        &self.text[self.start(index)..self.ends[index]]
    }

    #[cfg(test)]
    fn c_str(&self, index: usize) -> &CStr {
        CStr::from_bytes_with_nul(&self.text.as_bytes()[self.start(index)..=self.ends[index]])
            .unwrap_or_default()
    }

    /// Where string `index` starts: a C string, since packing ends each string with a NUL and
    /// allows none inside it. Valid while `self` lives. (Building a `CStr` would scan the whole
    /// text again for NULs; message texts are the largest part of an event.)
    fn c_ptr(&self, index: usize) -> *const c_char {
        self.text[self.start(index)..].as_ptr().cast()
    }

    fn start(&self, index: usize) -> usize {
        match index {
            0 => 0,
            i => self.ends[i - 1] + 1,
        }
    }
}

/// Builds a [`PackedStrings`] one string at a time.
struct Packer<const N: usize> {
    packed: PackedStrings<N>,
    count: usize,
}

impl<const N: usize> Packer<N> {
    fn with_capacity(bytes: usize) -> Self {
        Self {
            packed: PackedStrings {
                text: String::with_capacity(bytes + N),
                ends: [0; N],
            },
            count: 0,
        }
    }

    /// Appends the next string as written by `write` (which may refuse, e.g. a bad escape).
    fn push_with(&mut self, write: impl FnOnce(&mut String) -> Option<()>) -> Option<()> {
        let start = self.packed.text.len();
        write(&mut self.packed.text)?;
        if memchr::memchr(0, &self.packed.text.as_bytes()[start..]).is_some() {
            let replaced = self.packed.text[start..].replace('\0', "\u{FFFD}");
            self.packed.text.truncate(start);
            self.packed.text.push_str(&replaced);
        }
        self.packed.ends[self.count] = self.packed.text.len();
        self.packed.text.push('\0');
        self.count += 1;
        Some(())
    }

    fn push(&mut self, text: &str) {
        let _ = self.push_with(|out| {
            out.push_str(text);
            Some(())
        });
    }

    fn finish(self) -> PackedStrings<N> {
        debug_assert_eq!(self.count, N, "every string given");
        self.packed
    }
}

/// Arguments of the seed's `WhatsAppClientRecvMessage(client, msg, tel, channel, type, id,
/// refersToID)`, packed into one allocation (see [`InboundMessage::new`]).
#[derive(Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// msg, tel, channel, kind, id, refers_to ("" when absent).
    parts: PackedStrings<6>,
    has_refers_to: bool,
}

impl InboundMessage {
    pub fn new(
        msg: &str,
        tel: &str,
        channel: &str,
        kind: &str,
        id: &str,
        refers_to: Option<&str>,
    ) -> Self {
        let rest = [tel, channel, kind, id];
        let mut packer = Self::packer(msg.len(), rest, refers_to);
        packer.push(msg);
        Self::finish(packer, rest, refers_to)
    }

    /// Like `new`, with the message text written by `write_msg` straight into the event's
    /// buffer (`msg_len` is a capacity hint); `None` when `write_msg` refuses.
    pub(crate) fn build(
        msg_len: usize,
        write_msg: impl FnOnce(&mut String) -> Option<()>,
        rest: [&str; 4],
        refers_to: Option<&str>,
    ) -> Option<Self> {
        let mut packer = Self::packer(msg_len, rest, refers_to);
        packer.push_with(write_msg)?;
        Some(Self::finish(packer, rest, refers_to))
    }

    fn packer(msg_len: usize, rest: [&str; 4], refers_to: Option<&str>) -> Packer<6> {
        let rest_len: usize = rest.iter().map(|p| p.len()).sum();
        Packer::with_capacity(msg_len + rest_len + refers_to.map_or(0, str::len))
    }

    /// The strings after `msg`, which is already in `packer`.
    fn finish(mut packer: Packer<6>, rest: [&str; 4], refers_to: Option<&str>) -> Self {
        for part in rest {
            packer.push(part);
        }
        packer.push(refers_to.unwrap_or(""));
        Self {
            parts: packer.finish(),
            has_refers_to: refers_to.is_some(),
        }
    }

    pub fn msg(&self) -> &str {
        self.parts.get(0)
    }
    pub fn tel(&self) -> &str {
        self.parts.get(1)
    }
    pub fn channel(&self) -> &str {
        self.parts.get(2)
    }
    /// The seed's `type` argument.
    pub fn kind(&self) -> &str {
        self.parts.get(3)
    }
    pub fn id(&self) -> &str {
        self.parts.get(4)
    }
    pub fn refers_to(&self) -> Option<&str> {
        self.has_refers_to.then(|| self.parts.get(5))
    }

    /// msg, tel, channel, kind, id and refers_to as C strings, valid while `self` lives
    /// (refers_to NULL when absent).
    pub fn c_ptrs(&self) -> ([*const c_char; 5], *const c_char) {
        let p = &self.parts;
        (
            std::array::from_fn(|i| p.c_ptr(i)),
            if self.has_refers_to {
                p.c_ptr(5)
            } else {
                std::ptr::null()
            },
        )
    }

    /// msg, tel, channel, kind, id and refers_to as C strings (refers_to `None` when absent).
    #[cfg(test)]
    pub fn c_strs(&self) -> ([&CStr; 5], Option<&CStr>) {
        let p = &self.parts;
        (
            [p.c_str(0), p.c_str(1), p.c_str(2), p.c_str(3), p.c_str(4)],
            self.has_refers_to.then(|| p.c_str(5)),
        )
    }
}

impl std::fmt::Debug for InboundMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundMessage")
            .field("msg", &self.msg())
            .field("tel", &self.tel())
            .field("channel", &self.channel())
            .field("kind", &self.kind())
            .field("id", &self.id())
            .field("refers_to", &self.refers_to())
            .finish()
    }
}

/// Arguments of the seed's `WhatsAppClientRecvMedia(client, sender, channel, wamid, mediaid,
/// mimeType)`, packed into one allocation like [`InboundMessage`].
#[derive(Clone, PartialEq, Eq)]
pub struct InboundMedia {
    /// sender, channel, wamid, media_id, mime_type.
    parts: PackedStrings<5>,
}

impl InboundMedia {
    pub fn new(sender: &str, channel: &str, wamid: &str, media_id: &str, mime_type: &str) -> Self {
        let parts = [sender, channel, wamid, media_id, mime_type];
        let mut packer = Packer::with_capacity(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            packer.push(part);
        }
        Self {
            parts: packer.finish(),
        }
    }

    pub fn sender(&self) -> &str {
        self.parts.get(0)
    }
    pub fn channel(&self) -> &str {
        self.parts.get(1)
    }
    pub fn wamid(&self) -> &str {
        self.parts.get(2)
    }
    pub fn media_id(&self) -> &str {
        self.parts.get(3)
    }
    pub fn mime_type(&self) -> &str {
        self.parts.get(4)
    }

    /// sender, channel, wamid, media_id and mime_type as C strings, valid while `self` lives.
    pub fn c_ptrs(&self) -> [*const c_char; 5] {
        std::array::from_fn(|i| self.parts.c_ptr(i))
    }

    /// sender, channel, wamid, media_id and mime_type as C strings.
    #[cfg(test)]
    pub fn c_strs(&self) -> [&CStr; 5] {
        std::array::from_fn(|i| self.parts.c_str(i))
    }
}

impl std::fmt::Debug for InboundMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundMedia")
            .field("sender", &self.sender())
            .field("channel", &self.channel())
            .field("wamid", &self.wamid())
            .field("media_id", &self.media_id())
            .field("mime_type", &self.mime_type())
            .finish()
    }
}

/// Where the runtime delivers events.
pub trait EventSink: Send + Sync + 'static {
    fn push(&self, event: Event);

    /// Several events at once, in order (one wake-up of the consumer instead of one each).
    /// False when the sink takes no more events (close-complete was queued): none was taken.
    fn push_batch(&self, events: Vec<Event>) -> bool {
        for event in events {
            self.push(event);
        }
        true
    }

    /// Events waiting for the host (an estimate: read without a lock).
    fn backlog(&self) -> usize {
        0
    }
}

struct QueueState {
    events: VecDeque<Event>,
    /// Set once `CloseComplete` was queued: nothing may follow it.
    finished: bool,
    /// Thread mode: the dispatcher thread is asked to exit.
    stop: bool,
    /// Thread mode: the dispatcher sleeps on the condition variable (a wake-up costs a
    /// syscall, so it is only sent when someone waits).
    consumer_waiting: bool,
    /// Thread mode: how many pending events wake the waiting dispatcher (more than one while it
    /// gathers a batch).
    wake_at: usize,
    /// Poll mode: a dispatch is running and looks at the queue again before returning, so
    /// new events need no signal on the fd.
    draining: bool,
}

/// A multi-producer queue of events with a wake-up signal for the consumer.
pub struct EventQueue {
    state: Mutex<QueueState>,
    /// Thread mode wakes the dispatcher thread through this.
    available: Condvar,
    /// Poll mode: readable while events are pending.
    wake_fd: Option<OwnedFd>,
    /// The queue's length after its last change, for `backlog` without taking the lock.
    queued: std::sync::atomic::AtomicUsize,
}

impl EventQueue {
    /// `with_fd` creates the eventfd used by poll mode.
    pub fn new(with_fd: bool) -> std::io::Result<Self> {
        let wake_fd = if with_fd {
            // SAFETY: plain syscall; the returned descriptor is checked and then owned.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        } else {
            None
        };
        Ok(Self {
            state: Mutex::new(QueueState {
                events: VecDeque::new(),
                finished: false,
                stop: false,
                consumer_waiting: false,
                wake_at: 1,
                draining: false,
            }),
            available: Condvar::new(),
            wake_fd,
            queued: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Records the queue's length; called under the lock after every change of it.
    fn note_len(&self, state: &QueueState) {
        self.queued
            .store(state.events.len(), std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding this lock cannot leave the queue inconsistent (pushes and drains
        // are single operations), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn wake_fd(&self) -> Option<RawFd> {
        self.wake_fd.as_ref().map(|fd| fd.as_raw_fd())
    }

    fn signal_fd(&self) {
        if let Some(fd) = &self.wake_fd {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our own eventfd. EAGAIN (counter full)
            // is harmless: the fd is readable anyway.
            unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    fn clear_fd(&self) {
        if let Some(fd) = &self.wake_fd {
            let mut value: u64 = 0;
            // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd.
            unsafe { libc::read(fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
        }
    }

    /// Poll mode: starts a dispatch; events pushed until `end_drain` raise no fd signal.
    pub fn begin_drain(&self) -> VecDeque<Event> {
        self.clear_fd();
        let mut state = self.lock();
        state.draining = true;
        let events = std::mem::take(&mut state.events);
        self.note_len(&state);
        events
    }

    /// Poll mode: takes what arrived during the dispatch so far.
    pub fn take_during_drain(&self) -> VecDeque<Event> {
        let mut state = self.lock();
        let events = std::mem::take(&mut state.events);
        self.note_len(&state);
        events
    }

    /// Poll mode: puts events taken but not dispatched back at the front, in order.
    pub fn requeue_front(&self, events: VecDeque<Event>) {
        let mut state = self.lock();
        let newer = std::mem::replace(&mut state.events, events);
        state.events.extend(newer);
        self.note_len(&state);
    }

    /// Poll mode: ends a dispatch; if events are still pending the fd is made readable so the
    /// host's loop comes back for them.
    pub fn end_drain(&self) {
        let mut state = self.lock();
        state.draining = false;
        let pending = !state.events.is_empty();
        drop(state);
        if pending {
            self.signal_fd();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lock().events.is_empty()
    }

    /// Thread mode: blocks until events are pending or `stop` was called. `None` means stop.
    pub fn wait_batch(&self) -> Option<VecDeque<Event>> {
        self.wait_for(1, None)
    }

    /// Thread mode: waits until `count` events are pending or `max_wait` passed, then takes
    /// whatever is pending (possibly nothing). `None` means stop.
    pub fn gather_batch(&self, count: usize, max_wait: Duration) -> Option<VecDeque<Event>> {
        self.wait_for(count.max(1), Some(Instant::now() + max_wait))
    }

    fn wait_for(&self, count: usize, deadline: Option<Instant>) -> Option<VecDeque<Event>> {
        let mut state = self.lock();
        loop {
            if state.stop {
                return None;
            }
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            // Close-complete is the last event: nothing more will join its batch.
            let last = state.finished && !state.events.is_empty();
            if state.events.len() >= count || last || timed_out {
                let events = std::mem::take(&mut state.events);
                self.note_len(&state);
                return Some(events);
            }
            state.consumer_waiting = true;
            state.wake_at = count;
            state = match deadline {
                None => self
                    .available
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    self.available
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            state.consumer_waiting = false;
        }
    }

    /// Poll mode: waits up to `timeout` for the wake fd to become readable.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> bool {
        let Some(fd) = &self.wake_fd else {
            return false;
        };
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if !self.is_empty() {
                return true;
            }
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    left.as_millis().clamp(1, i32::MAX as u128) as i32
                }
            };
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd on the stack.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n > 0 {
                return true;
            }
            if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return false;
            }
        }
    }

    /// Asks a thread-mode dispatcher to exit.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.available.notify_all();
    }

    /// Discards pending events and refuses new ones (used when the host frees the client
    /// without waiting for close-complete).
    pub fn discard(&self) {
        let mut state = self.lock();
        state.events.clear();
        state.finished = true;
        self.note_len(&state);
    }
}

impl EventQueue {
    fn push_locked(state: &mut QueueState, event: Event) {
        if state.finished {
            return;
        }
        if event == Event::CloseComplete {
            state.finished = true;
        }
        state.events.push_back(event);
    }
}

impl EventSink for EventQueue {
    fn push(&self, event: Event) {
        self.push_all(std::iter::once(event));
    }

    fn push_batch(&self, events: Vec<Event>) -> bool {
        self.push_all(events)
    }

    fn backlog(&self) -> usize {
        self.queued.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl EventQueue {
    /// Queues `event` unless close-complete was queued already; false then (nothing queued).
    pub fn try_push(&self, event: Event) -> bool {
        self.push_all(std::iter::once(event))
    }

    /// Queues `events` under one lock, with at most one wake-up of the consumer. False when the
    /// queue had finished (close-complete queued): nothing was queued.
    fn push_all(&self, events: impl IntoIterator<Item = Event>) -> bool {
        let mut state = self.lock();
        let before = state.events.len();
        let was_finished = state.finished;
        for event in events {
            Self::push_locked(&mut state, event);
        }
        self.note_len(&state);
        let arrived = before == 0 && !state.events.is_empty();
        let signal_fd = arrived && !state.draining && self.wake_fd.is_some();
        // One wake-up when the pending events reach what the dispatcher waits for.
        let notify = state.consumer_waiting
            && ((before < state.wake_at && state.events.len() >= state.wake_at)
                || (state.finished && !was_finished));
        drop(state);
        if signal_fd {
            self.signal_fd();
        }
        if notify {
            self.available.notify_one();
        }
        !was_finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn inbound_strings_are_packed_nul_terminated() {
        let m = InboundMessage::new("hi\0there", "111", "PN", "text", "wamid.1", None);
        assert_eq!(
            (
                m.msg(),
                m.tel(),
                m.channel(),
                m.kind(),
                m.id(),
                m.refers_to()
            ),
            ("hi\u{FFFD}there", "111", "PN", "text", "wamid.1", None)
        );
        // The pointers handed to C are the C strings' (checked whole here).
        let (pointers, refers_pointer) = m.c_ptrs();
        let (strs, refers) = m.c_strs();
        assert_eq!(pointers, strs.map(CStr::as_ptr));
        assert!(refers_pointer.is_null() && refers.is_none());
        let ([msg, tel, channel, kind, id], refers) = m.c_strs();
        assert_eq!(msg.to_str(), Ok("hi\u{FFFD}there"));
        assert_eq!(
            [tel, channel, kind, id].map(|c| c.to_str().unwrap()),
            ["111", "PN", "text", "wamid.1"]
        );
        assert!(refers.is_none());
        let empty = InboundMessage::new("", "", "", "", "", Some(""));
        assert_eq!(empty.refers_to(), Some(""));
        assert_eq!(empty.c_strs().1.map(CStr::to_bytes), Some(&b""[..]));
        assert_eq!(empty.c_ptrs().1, empty.c_strs().1.unwrap().as_ptr());
        let media = InboundMedia::new("111", "PN", "wamid.2", "M\0", "image/png");
        assert_eq!(media.c_ptrs(), media.c_strs().map(CStr::as_ptr));
        assert_eq!(
            media.c_strs().map(|c| c.to_str().unwrap()),
            ["111", "PN", "wamid.2", "M\u{FFFD}", "image/png"]
        );
        assert_eq!(
            format!("{media:?}"),
            "InboundMedia { sender: \"111\", channel: \"PN\", wamid: \"wamid.2\", \
             media_id: \"M\u{FFFD}\", mime_type: \"image/png\" }"
        );
    }

    #[test]
    fn nothing_follows_close_complete() {
        let q = EventQueue::new(true).unwrap();
        q.push(Event::CloseComplete);
        q.push(Event::Log {
            level: LogLevel::Info,
            text: "late".into(),
        });
        let all = q.begin_drain();
        q.end_drain();
        assert_eq!(all, VecDeque::from(vec![Event::CloseComplete]));
    }

    #[test]
    fn fd_is_readable_only_while_events_are_pending() {
        let q = EventQueue::new(true).unwrap();
        assert!(!q.wait_readable(Some(Duration::from_millis(1))));
        q.push(Event::CloseComplete);
        assert!(q.wait_readable(Some(Duration::from_millis(1))));
        assert_eq!(q.begin_drain().len(), 1);
        q.end_drain();
        assert!(!q.wait_readable(Some(Duration::from_millis(1))));
    }

    fn log(text: &str) -> Event {
        Event::Log {
            level: LogLevel::Info,
            text: text.into(),
        }
    }

    /// The producer's push that completes the batch wakes the gathering consumer; the pause
    /// ends there, not at its deadline.
    #[test]
    fn a_gathered_batch_is_taken_once_complete() {
        let q = Arc::new(EventQueue::new(false).unwrap());
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..3 {
                    std::thread::sleep(Duration::from_millis(20));
                    q.push(log(&i.to_string()));
                }
            })
        };
        let start = Instant::now();
        let batch = q.gather_batch(3, Duration::from_secs(600)).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "woken by the third push"
        );
        assert_eq!(batch, VecDeque::from(vec![log("0"), log("1"), log("2")]));
        producer.join().unwrap();
    }

    #[test]
    fn a_gathering_pause_ends_at_its_deadline_or_at_close() {
        let q = EventQueue::new(false).unwrap();
        assert_eq!(
            q.gather_batch(5, Duration::from_millis(10)),
            Some(VecDeque::new())
        );
        q.push(log("a"));
        q.push(log("b"));
        let batch = q.gather_batch(5, Duration::from_millis(10)).unwrap();
        assert_eq!(batch, VecDeque::from(vec![log("a"), log("b")]));
        // Close-complete is the last event: its batch is not held back.
        q.push(log("c"));
        q.push(Event::CloseComplete);
        let start = Instant::now();
        let batch = q.gather_batch(5, Duration::from_secs(600)).unwrap();
        assert!(start.elapsed() < Duration::from_secs(300));
        assert_eq!(batch, VecDeque::from(vec![log("c"), Event::CloseComplete]));
        q.stop();
        assert_eq!(q.gather_batch(5, Duration::from_secs(600)), None);
    }
}
