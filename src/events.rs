//! Events produced by the client's runtime and consumed on the host's thread.
//!
//! The runtime never calls host code. It pushes [`Event`]s into an [`EventQueue`]; the host drains
//! the queue either from its own event loop (poll mode: an eventfd becomes readable when events
//! are pending) or through a dispatcher thread owned by the library (thread mode).

use std::collections::VecDeque;
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
#[derive(Debug, Clone, PartialEq)]
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
    /// Always the last event of a client.
    CloseComplete,
}

/// Arguments of the seed's `WhatsAppClientRecvMessage(client, msg, tel, channel, type, id, refersToID)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub msg: String,
    pub tel: String,
    pub channel: String,
    pub kind: String,
    pub id: String,
    pub refers_to: Option<String>,
}

/// Arguments of the seed's `WhatsAppClientRecvMedia(client, sender, channel, wamid, mediaid, mimeType)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMedia {
    pub sender: String,
    pub channel: String,
    pub wamid: String,
    pub media_id: String,
    pub mime_type: String,
}

/// Where the runtime delivers events.
pub trait EventSink: Send + Sync + 'static {
    fn push(&self, event: Event);

    /// Several events at once, in order (one wake-up of the consumer instead of one each).
    fn push_batch(&self, events: Vec<Event>) {
        for event in events {
            self.push(event);
        }
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
                draining: false,
            }),
            available: Condvar::new(),
            wake_fd,
        })
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
        std::mem::take(&mut state.events)
    }

    /// Poll mode: takes what arrived during the dispatch so far.
    pub fn take_during_drain(&self) -> VecDeque<Event> {
        std::mem::take(&mut self.lock().events)
    }

    /// Poll mode: puts events taken but not dispatched back at the front, in order.
    pub fn requeue_front(&self, events: VecDeque<Event>) {
        let mut state = self.lock();
        let newer = std::mem::replace(&mut state.events, events);
        state.events.extend(newer);
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
        let mut state = self.lock();
        loop {
            if state.stop {
                return None;
            }
            if !state.events.is_empty() {
                return Some(std::mem::take(&mut state.events));
            }
            state.consumer_waiting = true;
            state = self
                .available
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
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

    fn push_batch(&self, events: Vec<Event>) {
        self.push_all(events);
    }
}

impl EventQueue {
    /// Queues `events` under one lock, with at most one wake-up of the consumer.
    fn push_all(&self, events: impl IntoIterator<Item = Event>) {
        let mut state = self.lock();
        let was_empty = state.events.is_empty();
        for event in events {
            Self::push_locked(&mut state, event);
        }
        let arrived = was_empty && !state.events.is_empty();
        let signal_fd = arrived && !state.draining && self.wake_fd.is_some();
        let notify = arrived && state.consumer_waiting;
        drop(state);
        if signal_fd {
            self.signal_fd();
        }
        if notify {
            self.available.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
