//! The outbox: every accepted message waits here until its one final result.
//!
//! A single scheduler task owns all state (no locks on the hot path). It keeps one FIFO per
//! (channel, recipient) so messages to a recipient go out in acceptance order, the next only after
//! the previous reached its final outcome, while different recipients proceed concurrently. A token
//! bucket per channel keeps the sending rate under Meta's per-number throughput limit; when Graph
//! answers that the number is over its limit anyway (130429), the whole channel pauses and then
//! sends slower, recovering gradually (see `TokenBucket::throttle`). Attempts
//! are futures polled by this same task (media jobs run as separate tasks and report back);
//! retries, hold-until-token and close are decided here.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use reqwest::header::HeaderValue;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::error::DeliveryError;
use crate::events::{Event, EventSink};
use crate::graph::{Attempt, Failure, GraphClient};
use crate::media::{MediaClient, UploadSource};
use crate::secrets::Credentials;

/// A message accepted by `send`.
#[derive(Debug)]
pub struct Outgoing {
    pub channel: Arc<str>,
    pub recipient: Arc<str>,
    pub body: Bytes,
    pub request_ctx: usize,
    pub callback_info: Option<String>,
    pub accepted_at: Instant,
    /// Its row in the durable outbox, if there is one.
    pub seq: Option<u64>,
}

/// A media request (forward, download or upload): one result like a message.
#[derive(Debug)]
pub struct MediaJob {
    pub work: MediaWork,
    pub request_ctx: usize,
    /// Comes back as the result's callback_info (the media id, or the upload's file name).
    pub callback_info: String,
    pub accepted_at: Instant,
}

#[derive(Debug, Clone)]
pub enum MediaWork {
    Forward {
        media_id: String,
        destination: String,
        mime_type: Option<String>,
    },
    Download {
        media_id: String,
        path: std::path::PathBuf,
    },
    Upload {
        channel: String,
        source: UploadSource,
        mime_type: String,
    },
}

#[derive(Debug)]
pub enum Command {
    Send(Outgoing),
    Media(MediaJob),
    /// A new token (`None`: no token; sends are held).
    SetToken(Option<Arc<str>>),
    /// Stop accepting, drain, answer everything, then `CloseComplete`.
    Close,
    /// The host is freeing the client without waiting: stop at once, no events.
    Abort,
}

type QueueKey = (Arc<str>, Arc<str>);

/// Keys are the host's own channels and recipients, hashed several times per message.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

struct Pending {
    msg: Outgoing,
    attempts: u32,
    /// Of those, attempts Graph refused for a rate limit (throughput or pair rate): they do not
    /// count against `max_attempts`, the message's age bounds them.
    throttled: u32,
}

struct RecipientQueue {
    /// (channel, recipient): the queue's entry in `Queues::index`.
    key: QueueKey,
    pending: VecDeque<Pending>,
    /// The head is on the wire.
    in_flight: bool,
    /// Listed in its channel's ready list.
    listed: bool,
    /// No attempt before this (retry backoff, pair-rate spacing).
    not_before: Option<Instant>,
    /// A wake-up timer is armed for `not_before`.
    timer_armed: bool,
    /// After a pair-rate error the recipient is spaced out until then.
    slow_until: Option<Instant>,
}

/// A queue's place in `Queues`. The generation makes an id of a removed queue (held by a timer
/// or an answer still on its way) miss instead of reaching a newer queue in the same slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct QueueId {
    slot: u32,
    generation: u32,
}

/// The recipient queues in a slab: the hot path (start, answer, next message) reaches a queue by
/// index, and only accepting a message hashes (channel, recipient).
#[derive(Default)]
struct Queues {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: FastMap<QueueKey, QueueId>,
}

struct Slot {
    generation: u32,
    queue: Option<RecipientQueue>,
}

impl Queues {
    fn get(&self, id: QueueId) -> Option<&RecipientQueue> {
        let slot = self.slots.get(id.slot as usize)?;
        (slot.generation == id.generation)
            .then_some(slot.queue.as_ref())
            .flatten()
    }

    fn get_mut(&mut self, id: QueueId) -> Option<&mut RecipientQueue> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.queue.as_mut()
    }

    /// The queue of (channel, recipient), created empty if there is none.
    fn id_or_insert(&mut self, key: &QueueKey) -> QueueId {
        if let Some(id) = self.index.get(key) {
            return *id;
        }
        let queue = RecipientQueue {
            key: key.clone(),
            pending: VecDeque::new(),
            in_flight: false,
            listed: false,
            not_before: None,
            timer_armed: false,
            slow_until: None,
        };
        let id = match self.free.pop() {
            Some(slot) => {
                let entry = &mut self.slots[slot as usize];
                entry.queue = Some(queue);
                QueueId {
                    slot,
                    generation: entry.generation,
                }
            }
            None => {
                let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 recipients");
                self.slots.push(Slot {
                    generation: 0,
                    queue: Some(queue),
                });
                QueueId {
                    slot,
                    generation: 0,
                }
            }
        };
        self.index.insert(key.clone(), id);
        id
    }

    fn remove(&mut self, id: QueueId) {
        let Some(slot) = self.slots.get_mut(id.slot as usize) else {
            return;
        };
        if slot.generation != id.generation {
            return;
        }
        if let Some(queue) = slot.queue.take() {
            self.index.remove(&queue.key);
            slot.generation = slot.generation.wrapping_add(1);
            self.free.push(id.slot);
        }
    }

    fn ids(&self) -> Vec<QueueId> {
        self.index.values().copied().collect()
    }

    fn values(&self) -> impl Iterator<Item = &RecipientQueue> {
        self.slots.iter().filter_map(|s| s.queue.as_ref())
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut RecipientQueue> {
        self.slots.iter_mut().filter_map(|s| s.queue.as_mut())
    }

    fn retain(&mut self, mut keep: impl FnMut(&RecipientQueue) -> bool) {
        for id in self.ids() {
            if self.get(id).is_some_and(|q| !keep(q)) {
                self.remove(id);
            }
        }
    }

    fn clear(&mut self) {
        self.retain(|_| false);
    }
}

/// How long a channel pauses when Graph answers 130429 without a Retry-After: Meta counts a
/// number's throughput per second, so after a second the count starts afresh.
const THROUGHPUT_PAUSE: Duration = Duration::from_secs(1);
/// The longest a 130429 pauses a channel, whatever its Retry-After (which may say up to a day):
/// the pause holds every message of the number, also those never refused, whose age limit does
/// not run while they wait unsent. After it, a limit still there is answered again.
const MAX_THROUGHPUT_PAUSE: Duration = Duration::from_secs(10);

/// The pause after a 130429 (see `MAX_THROUGHPUT_PAUSE`).
fn throughput_pause(retry_after: Option<Duration>) -> Duration {
    retry_after
        .unwrap_or(THROUGHPUT_PAUSE)
        .min(MAX_THROUGHPUT_PAUSE)
}
/// After a throughput cut, the rate grows by this fraction per second until it is back at the
/// configured rate: a limit that was only low for a while is found again within about half a
/// minute, and a lasting one is hit again only every few seconds.
const THROTTLE_RECOVERY_PER_SEC: f64 = 0.03;
/// The rate of a throttled channel never goes below this many sends per second.
const THROTTLE_MIN_RATE: f64 = 1.0;
/// A channel configured as unlimited is unlimited again once its throttled rate recovered to
/// this: the highest throughput Meta gives a number (cloud-api.md §3.4).
const GRAPH_MAX_RATE: f64 = 1000.0;
/// The rate assumed for an unlimited channel that hit the limit before Graph accepted anything
/// on it: Meta's default throughput.
const GRAPH_DEFAULT_RATE: f64 = 80.0;

/// Sends per second for one channel; `rate == 0` means unlimited. After Graph's throughput
/// limit was hit the rate is lower than the configured one and recovers towards it.
struct TokenBucket {
    rate: f64,
    /// What the host configured (0 = unlimited).
    configured: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate_per_sec: u32, now: Instant) -> Self {
        let rate = f64::from(rate_per_sec);
        let mut bucket = Self {
            rate,
            configured: rate,
            capacity: 0.0,
            tokens: 0.0,
            last: now,
        };
        bucket.set_rate(rate);
        bucket.tokens = bucket.capacity;
        bucket
    }

    fn set_rate(&mut self, rate: f64) {
        self.rate = rate;
        // A small burst (a tenth of a second's worth) keeps every sliding one-second window
        // within about 110% of the rate; a full second's burst could double it.
        self.capacity = (rate / 10.0).max(1.0);
        self.tokens = self.tokens.min(self.capacity);
    }

    /// Below the configured rate after Graph's throughput limit.
    fn is_throttled(&self) -> bool {
        self.rate != self.configured
    }

    /// Graph refused a send for throughput: from `resume` on, send a little below `accepted`,
    /// the estimated number of sends it accepted in the last second (halve the rate when
    /// there is no estimate), and in any case slower than now.
    fn throttle(&mut self, accepted: f64, resume: Instant) {
        let current = if self.rate == 0.0 {
            f64::INFINITY
        } else {
            self.rate
        };
        let target = if accepted >= 1.0 {
            // With the burst (a tenth more) a second after resuming stays under `accepted`,
            // with room for the rate's recovery and for inbound messages, which Meta counts too.
            accepted * 0.85
        } else if current.is_finite() {
            current / 2.0
        } else {
            GRAPH_DEFAULT_RATE / 2.0
        };
        self.set_rate(target.min(current * 0.85).max(THROTTLE_MIN_RATE));
        // Nothing is taken before `resume`: the pause neither refills nor recovers the rate.
        self.tokens = self.capacity;
        self.last = resume;
    }

    /// A throttled rate grows back gradually, up to the configured one.
    fn recover(&mut self, elapsed: f64) {
        let rate = self.rate * (1.0 + THROTTLE_RECOVERY_PER_SEC * elapsed);
        let ceiling = if self.configured == 0.0 {
            GRAPH_MAX_RATE
        } else {
            self.configured
        };
        if rate >= ceiling {
            self.set_rate(self.configured);
        } else {
            self.set_rate(rate);
        }
    }

    fn try_take(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        if self.is_throttled() {
            self.recover(elapsed);
            if self.rate == 0.0 {
                return true;
            }
        }
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn next_token_at(&self, now: Instant) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        now + Duration::from_secs_f64(missing / self.rate.max(f64::MIN_POSITIVE))
    }
}

/// Sends Graph accepted on a channel, counted per second: Graph's throughput limit is about a
/// sliding second, which the current and the previous count estimate.
struct AcceptedCount {
    /// Start of the current second.
    since: Instant,
    current: u32,
    previous: u32,
}

impl AcceptedCount {
    fn new(now: Instant) -> Self {
        Self {
            since: now,
            current: 0,
            previous: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= Duration::from_secs(2) {
            (self.previous, self.current, self.since) = (0, 0, now);
        } else if elapsed >= Duration::from_secs(1) {
            self.previous = std::mem::take(&mut self.current);
            self.since += Duration::from_secs(1);
        }
    }

    fn add(&mut self, now: Instant) {
        self.roll(now);
        self.current += 1;
    }

    /// Accepted within the second before `now`: the current count and the part of the previous
    /// one that is still inside that second.
    fn last_second(&mut self, now: Instant) -> f64 {
        self.roll(now);
        let into_current = now.saturating_duration_since(self.since).as_secs_f64();
        f64::from(self.current) + f64::from(self.previous) * (1.0 - into_current).max(0.0)
    }

    fn is_recent(&mut self, now: Instant) -> bool {
        self.roll(now);
        self.current + self.previous > 0
    }
}

struct ChannelState {
    bucket: TokenBucket,
    ready: VecDeque<QueueId>,
    refill_timer_armed: bool,
    /// After Graph's throughput limit: no attempt before this. Refusals of attempts that
    /// started before it were answered by that pause already.
    paused_until: Option<Instant>,
    accepted: AcceptedCount,
}

impl ChannelState {
    fn new(rate_per_sec: u32, now: Instant) -> Self {
        Self {
            bucket: TokenBucket::new(rate_per_sec, now),
            ready: VecDeque::new(),
            refill_timer_armed: false,
            paused_until: None,
            accepted: AcceptedCount::new(now),
        }
    }

    /// Graph answered 130429 to an attempt that started at `started`: unless a pause after an
    /// earlier refusal already covers it, the channel pauses (for the Retry-After, else a
    /// second) and then sends slower. Returns the new rate when it changed.
    fn throughput_limited(
        &mut self,
        started: Instant,
        retry_after: Option<Duration>,
        now: Instant,
    ) -> Option<f64> {
        if self.paused_until.is_some_and(|until| started < until) {
            return None;
        }
        let resume = now + throughput_pause(retry_after);
        let accepted = self.accepted.last_second(now);
        self.bucket.throttle(accepted, resume);
        self.paused_until = Some(resume);
        Some(self.bucket.rate)
    }
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerTarget {
    Queue(QueueId),
    Channel(Arc<str>),
    HoldExpiry,
    DrainDeadline,
    FlushResults,
}

/// Results wait at most this long for company while more answers are due, so that the host's
/// thread is woken once per batch instead of once per message.
const RESULT_COALESCING: Duration = Duration::from_millis(1);
/// A batch this large is handed over at once.
const RESULT_BATCH: usize = 64;

struct MediaDone {
    id: u64,
    result: Result<String, (DeliveryError, String)>,
}

struct Done {
    id: QueueId,
    /// When the attempt started.
    started: Instant,
    outcome: Attempt,
}

pub struct Scheduler {
    config: Arc<ClientConfig>,
    graph: Arc<GraphClient>,
    media: Arc<MediaClient>,
    /// Media jobs waiting for a token or for a free place among the running ones
    /// (`max_media_in_flight`), in acceptance order.
    media_waiting: VecDeque<MediaJob>,
    /// Media jobs running, by id: their task and what their result carries.
    media_running: HashMap<u64, (AbortHandle, usize, String)>,
    next_media_id: u64,
    media_tx: mpsc::UnboundedSender<MediaDone>,
    media_rx: mpsc::UnboundedReceiver<MediaDone>,
    sink: Arc<dyn EventSink>,
    credentials: Arc<Credentials>,
    token: Option<Arc<str>>,
    /// The token as a ready `Authorization` header value.
    authorization: Option<HeaderValue>,
    queues: Queues,
    channels: FastMap<Arc<str>, ChannelState>,
    timers: BinaryHeap<Reverse<(Instant, TimerTarget)>>,
    hold_timer_armed: bool,
    flush_timer_armed: bool,
    closing: bool,
    /// Results of this loop iteration, handed to the sink together.
    results: Vec<Event>,
    /// Attempts on the wire.
    running: FuturesUnordered<BoxFuture<'static, Done>>,
    /// Scratch list of `pump`, kept to reuse its allocation.
    to_start: Vec<QueueId>,
}

impl Scheduler {
    pub fn new(
        config: Arc<ClientConfig>,
        graph: Arc<GraphClient>,
        media: Arc<MediaClient>,
        sink: Arc<dyn EventSink>,
        credentials: Arc<Credentials>,
    ) -> Self {
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        Self {
            config,
            graph,
            media,
            media_waiting: VecDeque::new(),
            media_running: HashMap::new(),
            next_media_id: 0,
            media_tx,
            media_rx,
            sink,
            credentials,
            token: None,
            authorization: None,
            queues: Queues::default(),
            channels: FastMap::default(),
            timers: BinaryHeap::new(),
            hold_timer_armed: false,
            flush_timer_armed: false,
            closing: false,
            running: FuturesUnordered::new(),
            results: Vec::with_capacity(RESULT_BATCH),
            to_start: Vec::new(),
        }
    }

    /// Runs until closed (or aborted); returns after `CloseComplete` was queued.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut batch = Vec::with_capacity(256);
        // One timer, moved when the earliest deadline changes: a fresh `Sleep` per loop
        // iteration would register and deregister a timer entry for every answer.
        let mut timer = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
        let mut timer_at: Option<Instant> = None;
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            if next_timer != timer_at {
                if let Some(at) = next_timer {
                    timer.as_mut().reset(at);
                }
                timer_at = next_timer;
            }
            tokio::select! {
                biased;
                Some(done) = self.media_rx.recv() => self.on_media_done(done),
                Some(done) = self.running.next(), if !self.running.is_empty() => {
                    self.on_done(done);
                    // Take every completion that is already there: their results then reach
                    // the host as one batch, with one wake-up of its thread.
                    while let Some(Some(done)) = self.running.next().now_or_never() {
                        self.on_done(done);
                    }
                }
                n = commands.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        // Every sender is gone: the client was dropped without close.
                        return;
                    }
                    for command in batch.drain(..) {
                        if let Command::Abort = command {
                            self.abort_all();
                            return;
                        }
                        self.on_command(command);
                    }
                }
                _ = &mut timer, if timer_at.is_some() => {
                    timer_at = None;
                    self.on_timers();
                }
            }
            self.pump();
            self.flush_or_defer_results();
            if self.closing && self.running.is_empty() && self.media_running.is_empty() {
                // Refuse further commands, then answer whatever raced in before the refusal,
                // so that every accepted message still gets its one result before CloseComplete.
                commands.close();
                while let Ok(command) = commands.try_recv() {
                    match command {
                        Command::Send(msg) => {
                            self.finish(msg, Err((DeliveryError::Closing, closing_text())))
                        }
                        Command::Media(job) => self.finish_media(
                            job.request_ctx,
                            job.callback_info,
                            Err((DeliveryError::Closing, closing_text())),
                        ),
                        _ => {}
                    }
                }
                tracing::info!("client closed");
                self.results.push(Event::CloseComplete);
                self.flush_results();
                return;
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Send(msg) => self.accept(msg),
            Command::Media(job) => self.accept_media(job),
            Command::SetToken(token) => {
                (self.token, self.authorization) = usable_token(token);
                if self.token.is_none() {
                    self.arm_hold_timer();
                } else {
                    self.start_waiting_media();
                }
            }
            Command::Close => self.start_close(),
            Command::Abort => self.abort_all(),
        }
    }

    fn accept(&mut self, msg: Outgoing) {
        if self.closing {
            self.finish(msg, Err((DeliveryError::Closing, closing_text())));
            return;
        }
        if self.config.api_version.is_empty() {
            let text = "no Graph API version is configured".to_string();
            self.finish(msg, Err((DeliveryError::MissingVersion, text)));
            return;
        }
        let key: QueueKey = (msg.channel.clone(), msg.recipient.clone());
        let id = self.queues.id_or_insert(&key);
        if let Some(queue) = self.queues.get_mut(id) {
            queue.pending.push_back(Pending {
                msg,
                attempts: 0,
                throttled: 0,
            });
        }
        if self.token.is_none() {
            self.arm_hold_timer();
        }
        self.make_ready(id, Instant::now());
    }

    /// Lists a queue as ready to send its head, or arms its timer if it must wait.
    fn make_ready(&mut self, id: QueueId, now: Instant) {
        let Some(queue) = self.queues.get_mut(id) else {
            return;
        };
        if queue.in_flight || queue.listed || queue.pending.is_empty() {
            if queue.pending.is_empty() && !queue.in_flight && !queue.timer_armed {
                self.queues.remove(id);
            }
            return;
        }
        if let Some(at) = queue.not_before.filter(|at| *at > now) {
            if !queue.timer_armed {
                queue.timer_armed = true;
                self.timers.push(Reverse((at, TimerTarget::Queue(id))));
            }
            return;
        }
        queue.listed = true;
        if let Some(state) = self.channels.get_mut(&queue.key.0) {
            state.ready.push_back(id);
        } else {
            let mut state = ChannelState::new(self.config.channel_rate_per_sec, now);
            state.ready.push_back(id);
            self.channels.insert(queue.key.0.clone(), state);
        }
    }

    /// Starts attempts for ready queues as far as tokens, pacing and in-flight limits allow.
    fn pump(&mut self) {
        if self.closing || self.running.len() >= self.config.max_in_flight {
            return;
        }
        let Some(authorization) = self.authorization.clone() else {
            return;
        };
        let now = Instant::now();
        let mut to_start = std::mem::take(&mut self.to_start);
        let mut budget = self.config.max_in_flight - self.running.len();
        for (channel, state) in self.channels.iter_mut() {
            while budget > 0 && !state.ready.is_empty() {
                if let Some(until) = state.paused_until.filter(|until| *until > now) {
                    if !state.refill_timer_armed {
                        state.refill_timer_armed = true;
                        self.timers
                            .push(Reverse((until, TimerTarget::Channel(channel.clone()))));
                    }
                    break;
                }
                if !state.bucket.try_take(now) {
                    if !state.refill_timer_armed {
                        state.refill_timer_armed = true;
                        let at = state.bucket.next_token_at(now);
                        self.timers
                            .push(Reverse((at, TimerTarget::Channel(channel.clone()))));
                    }
                    break;
                }
                if let Some(id) = state.ready.pop_front() {
                    budget -= 1;
                    to_start.push(id);
                }
            }
        }
        for id in to_start.drain(..) {
            self.start_attempt(id, &authorization, now);
        }
        self.to_start = to_start;
        // A channel's state goes once it is idle; while Graph recently limited it (or accepted
        // on it, which a throughput cut estimates the limit from) it stays.
        self.channels.retain(|_, s| {
            !s.ready.is_empty()
                || s.refill_timer_armed
                || s.bucket.tokens < s.bucket.capacity
                || s.bucket.is_throttled()
                || s.paused_until.is_some_and(|until| until > now)
                || s.accepted.is_recent(now)
        });
    }

    fn start_attempt(&mut self, id: QueueId, authorization: &HeaderValue, started: Instant) {
        let Some(queue) = self.queues.get_mut(id) else {
            return;
        };
        queue.listed = false;
        let channel = queue.key.0.clone();
        let Some(head) = queue.pending.front_mut() else {
            return;
        };
        head.attempts += 1;
        let body = head.msg.body.clone();
        let graph = self.graph.clone();
        let authorization = authorization.clone();
        // Polled by this task (no spawn per request): dropping it abandons the request.
        self.running.push(Box::pin(async move {
            let outcome = graph.send(&channel, authorization, body).await;
            Done {
                id,
                started,
                outcome,
            }
        }));
        queue.in_flight = true;
    }

    fn on_done(&mut self, done: Done) {
        let Some(queue) = self.queues.get_mut(done.id) else {
            return;
        };
        if !std::mem::take(&mut queue.in_flight) {
            return;
        }
        let now = Instant::now();
        let Some(head) = queue.pending.front_mut() else {
            return;
        };
        let attempts = head.attempts;
        let age = now.saturating_duration_since(head.msg.accepted_at);
        let result = match done.outcome {
            Attempt::Accepted { wamid } => {
                if queue.slow_until.is_some_and(|until| until > now) {
                    queue.not_before = Some(now + self.config.pair_rate_backoff);
                }
                if let Some(state) = self.channels.get_mut(&queue.key.0) {
                    state.accepted.add(now);
                }
                Ok(wamid)
            }
            Attempt::Failed(failure) => {
                if failure.pair_rate_limited || failure.throughput_limited {
                    head.throttled += 1;
                }
                let counted = attempts - head.throttled;
                if failure.pair_rate_limited {
                    queue.slow_until = Some(now + self.config.pair_rate_backoff * 10);
                }
                if failure.throughput_limited {
                    let channel = &queue.key.0;
                    let rate = self
                        .channels
                        .entry(channel.clone())
                        .or_insert_with(|| ChannelState::new(self.config.channel_rate_per_sec, now))
                        .throughput_limited(done.started, failure.retry_after, now);
                    if let Some(rate) = rate {
                        tracing::info!(
                            %channel,
                            rate = rate.round() as u64,
                            "Graph's throughput limit for the number was reached (130429): \
                             pausing its sends, then sending at the rate given"
                        );
                    }
                }
                match retry_delay(&self.config, &failure, counted, age) {
                    Some(delay) if !self.closing => {
                        let text = self.credentials.redact(&failure.text);
                        tracing::debug!(attempt = attempts, delay_ms = delay.as_millis() as u64, error = %text, "retrying");
                        queue.not_before = Some(now + delay);
                        self.make_ready(done.id, now);
                        return;
                    }
                    Some(_) => Err((DeliveryError::Closing, closing_text())),
                    None => Err((failure.error, failure.text)),
                }
            }
        };
        if let Some(head) = queue.pending.pop_front() {
            self.finish(head.msg, result);
        }
        self.make_ready(done.id, now);
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, target))) = self.timers.pop() else {
                break;
            };
            match target {
                TimerTarget::Queue(id) => {
                    if let Some(queue) = self.queues.get_mut(id) {
                        queue.timer_armed = false;
                    }
                    self.make_ready(id, now);
                }
                TimerTarget::Channel(channel) => {
                    if let Some(state) = self.channels.get_mut(&channel) {
                        state.refill_timer_armed = false;
                    }
                }
                TimerTarget::HoldExpiry => {
                    self.hold_timer_armed = false;
                    self.expire_held(now);
                }
                TimerTarget::DrainDeadline => self.abort_in_flight(),
                TimerTarget::FlushResults => {
                    self.flush_timer_armed = false;
                    self.flush_results();
                }
            }
        }
    }

    /// Arms one timer for the oldest message waiting for a token.
    fn arm_hold_timer(&mut self) {
        if self.hold_timer_armed || self.token.is_some() {
            return;
        }
        let oldest = self
            .queues
            .values()
            .filter_map(|q| q.pending.front())
            .map(|p| p.msg.accepted_at)
            .chain(self.media_waiting.front().map(|j| j.accepted_at))
            .min();
        if let Some(oldest) = oldest {
            self.hold_timer_armed = true;
            self.timers.push(Reverse((
                oldest + self.config.token_hold,
                TimerTarget::HoldExpiry,
            )));
        }
    }

    /// Without a token, messages older than the hold time end with `MissingToken`.
    fn expire_held(&mut self, now: Instant) {
        if self.token.is_some() {
            return;
        }
        let hold = self.config.token_hold;
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            if queue.in_flight {
                continue;
            }
            while queue
                .pending
                .front()
                .is_some_and(|p| now.saturating_duration_since(p.msg.accepted_at) >= hold)
            {
                if let Some(p) = queue.pending.pop_front() {
                    expired.push(p.msg);
                }
            }
        }
        let text = "no access token was configured in time (SetConfig)".to_string();
        for msg in expired {
            self.finish(msg, Err((DeliveryError::MissingToken, text.clone())));
        }
        while self
            .media_waiting
            .front()
            .is_some_and(|j| now.saturating_duration_since(j.accepted_at) >= hold)
        {
            if let Some(job) = self.media_waiting.pop_front() {
                self.finish_media(
                    job.request_ctx,
                    job.callback_info,
                    Err((DeliveryError::MissingToken, text.clone())),
                );
            }
        }
        self.queues
            .retain(|q| !q.pending.is_empty() || q.in_flight || q.timer_armed);
        for state in self.channels.values_mut() {
            let queues = &self.queues;
            state
                .ready
                .retain(|id| queues.get(*id).is_some_and(|q| !q.pending.is_empty()));
        }
        self.arm_hold_timer();
    }

    fn start_close(&mut self) {
        if self.closing {
            return;
        }
        self.closing = true;
        tracing::info!(in_flight = self.running.len(), "closing");
        let mut cancelled = Vec::new();
        for queue in self.queues.values_mut() {
            // The head stays while on the wire: it gets its real result if it finishes in time.
            let keep = usize::from(queue.in_flight);
            cancelled.extend(queue.pending.drain(keep..).map(|p| p.msg));
            queue.listed = false;
        }
        for state in self.channels.values_mut() {
            state.ready.clear();
        }
        for msg in cancelled {
            self.finish(msg, Err((DeliveryError::Closing, closing_text())));
        }
        for job in std::mem::take(&mut self.media_waiting) {
            self.finish_media(
                job.request_ctx,
                job.callback_info,
                Err((DeliveryError::Closing, closing_text())),
            );
        }
        let deadline = Instant::now() + self.config.drain_timeout;
        self.timers
            .push(Reverse((deadline, TimerTarget::DrainDeadline)));
    }

    /// The drain time is over: requests still on the wire are abandoned with `Closing`.
    fn abort_in_flight(&mut self) {
        for (_, (task, request_ctx, info)) in std::mem::take(&mut self.media_running) {
            task.abort();
            self.finish_media(
                request_ctx,
                info,
                Err((DeliveryError::Closing, closing_text())),
            );
        }
        self.running = FuturesUnordered::new();
        let mut cancelled = Vec::new();
        for queue in self.queues.values_mut() {
            if std::mem::take(&mut queue.in_flight) {
                cancelled.extend(queue.pending.drain(..).map(|p| p.msg));
            }
        }
        for msg in cancelled {
            self.finish(msg, Err((DeliveryError::Closing, closing_text())));
        }
    }

    fn abort_all(&mut self) {
        for (_, (task, _, _)) in self.media_running.drain() {
            task.abort();
        }
        self.running = FuturesUnordered::new();
        self.queues.clear();
    }

    /// Hands results over now when nothing else is due soon (or the batch is large), otherwise
    /// within `RESULT_COALESCING`.
    fn flush_or_defer_results(&mut self) {
        if self.results.is_empty() {
            return;
        }
        let more_due = !self.running.is_empty() && !self.closing;
        if !more_due || self.results.len() >= RESULT_BATCH {
            self.flush_results();
        } else if !self.flush_timer_armed {
            self.flush_timer_armed = true;
            let at = Instant::now() + RESULT_COALESCING;
            self.timers.push(Reverse((at, TimerTarget::FlushResults)));
        }
    }

    fn flush_results(&mut self) {
        if !self.results.is_empty() {
            let batch = std::mem::replace(&mut self.results, Vec::with_capacity(RESULT_BATCH));
            self.sink.push_batch(batch);
        }
    }

    fn accept_media(&mut self, job: MediaJob) {
        if self.closing {
            self.finish_media(
                job.request_ctx,
                job.callback_info,
                Err((DeliveryError::Closing, closing_text())),
            );
        } else if self.config.api_version.is_empty() {
            let text = "no Graph API version is configured".to_string();
            self.finish_media(
                job.request_ctx,
                job.callback_info,
                Err((DeliveryError::MissingVersion, text)),
            );
        } else {
            self.media_waiting.push_back(job);
            if self.token.is_none() {
                self.arm_hold_timer();
            }
            self.start_waiting_media();
        }
    }

    /// Starts waiting media jobs, oldest first, while there is a token and a free place.
    fn start_waiting_media(&mut self) {
        while self.token.is_some() && self.media_running.len() < self.config.max_media_in_flight {
            let Some(job) = self.media_waiting.pop_front() else {
                return;
            };
            self.start_media(job);
        }
    }

    fn start_media(&mut self, job: MediaJob) {
        let Some(token) = self.token.clone() else {
            self.media_waiting.push_front(job);
            return;
        };
        let id = self.next_media_id;
        self.next_media_id += 1;
        let (media, tx, work) = (self.media.clone(), self.media_tx.clone(), job.work);
        let task = tokio::spawn(async move {
            let result = match work {
                MediaWork::Forward {
                    media_id,
                    destination,
                    mime_type,
                } => {
                    media
                        .forward(&media_id, &destination, mime_type.as_deref(), &token)
                        .await
                }
                MediaWork::Download { media_id, path } => {
                    media.download_to_file(&media_id, &path, &token).await
                }
                MediaWork::Upload {
                    channel,
                    source,
                    mime_type,
                } => media.upload(&channel, source, &mime_type, &token).await,
            };
            let _ = tx.send(MediaDone { id, result });
        });
        self.media_running.insert(
            id,
            (task.abort_handle(), job.request_ctx, job.callback_info),
        );
    }

    fn on_media_done(&mut self, done: MediaDone) {
        if let Some((_, request_ctx, info)) = self.media_running.remove(&done.id) {
            self.finish_media(request_ctx, info, done.result);
        }
        if !self.closing {
            self.start_waiting_media();
        }
    }

    /// Delivers the one final result of a media job.
    fn finish_media(
        &mut self,
        request_ctx: usize,
        callback_info: String,
        result: Result<String, (DeliveryError, String)>,
    ) {
        let log = |error, text: &str| tracing::warn!(?error, media = %callback_info, "media request failed: {text}");
        let info = callback_info.clone();
        self.push_result(request_ctx, Some(info), None, result, log);
    }

    /// Delivers the one final result of a message.
    fn finish(&mut self, msg: Outgoing, result: Result<String, (DeliveryError, String)>) {
        let recipient = msg.recipient;
        let log = |error, text: &str| tracing::warn!(?error, recipient = %recipient, "send failed: {text}");
        self.push_result(msg.request_ctx, msg.callback_info, msg.seq, result, log);
    }

    /// Queues a request's one result (its place in the outbox is freed once the result reached
    /// the host: `Client::result_delivered`); a failure's text is redacted and, unless the
    /// client is closing, logged by `log`.
    fn push_result(
        &mut self,
        request_ctx: usize,
        callback_info: Option<String>,
        stored: Option<u64>,
        result: Result<String, (DeliveryError, String)>,
        log: impl FnOnce(DeliveryError, &str),
    ) {
        let (error, content) = match result {
            Ok(content) => (None, content),
            Err((error, text)) => {
                let text = self.credentials.redact(&text);
                if error != DeliveryError::Closing {
                    log(error, &text);
                }
                (Some(error), text)
            }
        };
        self.results.push(Event::SendResult {
            request_ctx,
            error,
            callback_info,
            content,
            stored,
        });
    }
}

/// A token with its `Authorization` header value, or neither: a token that cannot travel in a
/// header (whoever set it) counts as no token, so messages are held and then end with
/// `MissingToken` instead of waiting for a header that can never be built.
fn usable_token(token: Option<Arc<str>>) -> (Option<Arc<str>>, Option<HeaderValue>) {
    match token.as_deref().and_then(GraphClient::authorization) {
        Some(authorization) => (token, Some(authorization)),
        None => (None, None),
    }
}

fn closing_text() -> String {
    "the client was closed before the message was sent".to_string()
}

/// The wait before the next attempt, or `None` when the failure is final. `attempts` counts
/// the attempts made that count against `max_attempts`: refusals for a rate limit (throughput,
/// pair rate) do not, so that a lasting limit delays messages rather than failing them; the
/// message's age bounds those.
fn retry_delay(
    config: &ClientConfig,
    failure: &Failure,
    attempts: u32,
    age: Duration,
) -> Option<Duration> {
    if !failure.retryable || attempts >= config.max_attempts {
        return None;
    }
    if failure.throughput_limited {
        // The whole channel waits and slows down (`ChannelState::throughput_limited`); the
        // message only needs to queue again, within the channel's (bounded) pause.
        let delay = failure
            .retry_after
            .map_or(Duration::ZERO, |after| throughput_pause(Some(after)));
        return (age + delay <= config.max_retry_age).then_some(delay);
    }
    let exponent = attempts.saturating_sub(1).min(20);
    let backoff = config
        .backoff_initial
        .saturating_mul(1u32 << exponent)
        .min(config.backoff_max);
    // Full jitter over the upper half keeps retries of many recipients from synchronising.
    let jittered = backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
    let mut delay = match failure.retry_after {
        Some(retry_after) => retry_after,
        None => jittered,
    };
    if failure.pair_rate_limited {
        delay = delay.max(config.pair_rate_backoff);
    }
    (age + delay <= config.max_retry_age).then_some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(retryable: bool, retry_after: Option<Duration>) -> Failure {
        Failure {
            error: DeliveryError::OtherHttp,
            text: String::new(),
            retryable,
            retry_after,
            pair_rate_limited: false,
            throughput_limited: false,
        }
    }

    #[test]
    fn retry_delay_is_bounded_by_attempts_and_age() {
        let config = ClientConfig {
            max_attempts: 3,
            max_retry_age: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
            ..Default::default()
        };
        let f = failure(true, None);
        let d1 = retry_delay(&config, &f, 1, Duration::ZERO).unwrap();
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        let d2 = retry_delay(&config, &f, 2, Duration::ZERO).unwrap();
        assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
        assert_eq!(retry_delay(&config, &f, 3, Duration::ZERO), None);
        assert_eq!(retry_delay(&config, &f, 1, Duration::from_secs(10)), None);
        assert_eq!(
            retry_delay(&config, &failure(false, None), 1, Duration::ZERO),
            None
        );
        let f = failure(true, Some(Duration::from_secs(2)));
        assert_eq!(
            retry_delay(&config, &f, 1, Duration::ZERO),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn throughput_refusals_are_bounded_by_age_not_attempts() {
        let config = ClientConfig {
            max_attempts: 3,
            max_retry_age: Duration::from_secs(10),
            ..Default::default()
        };
        let refused = |retry_after| Failure {
            throughput_limited: true,
            ..failure(true, retry_after)
        };
        // `attempts` leaves refusals out (see `on_done`); the channel does the waiting.
        assert_eq!(
            retry_delay(&config, &refused(None), 2, Duration::from_secs(9)),
            Some(Duration::ZERO)
        );
        let later = refused(Some(Duration::from_secs(2)));
        assert_eq!(
            retry_delay(&config, &later, 0, Duration::from_secs(8)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_delay(&config, &later, 0, Duration::from_secs(9)),
            None,
            "past its age"
        );
    }

    #[test]
    fn a_throughput_refusal_pauses_the_channel_then_slows_it() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let mut channel = ChannelState::new(80, start);
        // Graph accepted 20 in the first 150 ms, then refused one started at 150 ms.
        for _ in 0..20 {
            channel.accepted.add(ms(100));
        }
        assert_eq!(
            channel.throughput_limited(ms(150), None, ms(160)),
            Some(17.0)
        );
        assert!(channel.bucket.is_throttled());
        assert_eq!(channel.paused_until, Some(ms(1160)));
        // Refusals of attempts that started before the pause ends were answered by it.
        assert_eq!(channel.throughput_limited(ms(155), None, ms(170)), None);
        assert_eq!(channel.paused_until, Some(ms(1160)));
        // From the end of the pause, a second holds fewer sends than Graph accepted.
        let sent = (1160..2160)
            .filter(|t| channel.bucket.try_take(ms(*t)))
            .count();
        assert!((15..20).contains(&sent), "{sent} sends in the second after");
        // A refusal after the pause counts again, and a Retry-After sets the pause.
        let rate = channel.throughput_limited(ms(2100), Some(Duration::from_secs(3)), ms(2110));
        assert!(rate.is_some_and(|r| r < 17.0), "{rate:?}");
        assert_eq!(channel.paused_until, Some(ms(5110)));
        // A Retry-After of an hour pauses the number at most MAX_THROUGHPUT_PAUSE: the pause
        // holds messages never refused, whose age limit does not run while they wait.
        channel.throughput_limited(ms(5200), Some(Duration::from_secs(3600)), ms(5210));
        assert_eq!(channel.paused_until, Some(ms(5210) + MAX_THROUGHPUT_PAUSE));
    }

    #[test]
    fn a_throttled_rate_recovers_gradually() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut bucket = TokenBucket::new(80, start);
        bucket.throttle(20.0, start);
        assert_eq!(bucket.rate, 17.0);
        assert!(bucket.try_take(at(10)));
        assert!(bucket.rate > 17.0 && bucket.rate < 80.0, "{}", bucket.rate);
        assert!(bucket.try_take(at(100)));
        assert_eq!(bucket.rate, 80.0);
        assert!(!bucket.is_throttled());
        // Graph accepting as many as were sent (inbound messages used the rest): slower still.
        bucket.throttle(200.0, at(100));
        assert_eq!(bucket.rate, 68.0);

        // Without an estimate the rate halves; an unlimited channel starts from Meta's default.
        let mut unlimited = TokenBucket::new(0, start);
        unlimited.throttle(0.0, start);
        assert_eq!(unlimited.rate, 40.0);
        unlimited.throttle(0.0, start);
        assert_eq!(unlimited.rate, 20.0);
        assert!(unlimited.try_take(at(100)));
        assert!(unlimited.is_throttled(), "{}", unlimited.rate);
        assert!(unlimited.try_take(at(10_000)));
        assert!(!unlimited.is_throttled(), "unlimited again");
        assert!((0..10_000).all(|_| unlimited.try_take(at(10_000))));
    }

    #[test]
    fn accepted_sends_are_counted_per_second() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let mut count = AcceptedCount::new(start);
        for _ in 0..10 {
            count.add(ms(500));
        }
        assert_eq!(count.last_second(ms(900)), 10.0);
        // Half of the previous second is still inside the last one.
        assert_eq!(count.last_second(ms(1500)), 5.0);
        assert!(count.is_recent(ms(1500)));
        assert!(!count.is_recent(ms(3500)));
    }

    #[test]
    fn a_removed_queue_id_misses_even_when_its_slot_is_reused() {
        let key = |r: &str| -> QueueKey { (Arc::from("chan"), Arc::from(r)) };
        let mut queues = Queues::default();
        let a = queues.id_or_insert(&key("a"));
        assert_eq!(queues.id_or_insert(&key("a")), a, "one queue per key");
        let b = queues.id_or_insert(&key("b"));
        assert_ne!(a, b);
        queues.remove(a);
        assert!(queues.get(a).is_none());
        let c = queues.id_or_insert(&key("c"));
        assert_eq!(c.slot, a.slot, "the freed slot is reused");
        assert!(
            queues.get_mut(a).is_none(),
            "a stale id must not reach the new queue"
        );
        assert_eq!(&*queues.get(c).unwrap().key.1, "c");
        assert_eq!(
            queues.id_or_insert(&key("a")).slot as usize,
            2,
            "a fresh queue for a"
        );
        queues.retain(|q| &*q.key.1 != "b");
        assert!(queues.get(b).is_none());
        assert_eq!(queues.values().count(), 2);
        queues.clear();
        assert_eq!(queues.values().count(), 0);
        assert!(queues.index.is_empty());
    }

    #[test]
    fn a_token_that_cannot_be_a_header_counts_as_none() {
        let (token, authorization) = usable_token(Some(Arc::from("EAAB-ok")));
        assert_eq!(token.as_deref(), Some("EAAB-ok"));
        assert_eq!(authorization.unwrap().to_str().unwrap(), "Bearer EAAB-ok");
        // A token from anywhere (onboarding's exchange included) with a line break in it.
        assert_eq!(usable_token(Some(Arc::from("EAAB\nX"))), (None, None));
        assert_eq!(usable_token(None), (None, None));
    }

    #[test]
    fn token_bucket_paces() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start));
        let next = bucket.next_token_at(start);
        assert!(next > start && next <= start + Duration::from_millis(101));
        assert!(bucket.try_take(start + Duration::from_millis(100)));
        let mut unlimited = TokenBucket::new(0, start);
        assert!((0..10_000).all(|_| unlimited.try_take(start)));
    }
}
