//! The client core: owns the runtime, accepts messages, hands them to the outbox.
//!
//! Every method may be called from any thread and returns without waiting for the network; the
//! outcome arrives later as an [`Event`] through the sink given to [`Client::start`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::events::Event;
use crate::events::EventSink;
use crate::graph::GraphClient;
use crate::logging::{self, LogForwarder};
use crate::message::{self, InvalidMessage, MessageInput};
use crate::onboarding::{OnboardContext, OnboardRequest, Progress, Run, Runs};
use crate::outbox::{Command, MediaJob, MediaWork, Outgoing, Scheduler};
use crate::secrets::Credentials;
use crate::store::StoredMessage;
use crate::webhook::{WebhookHandler, WebhookSettings};

/// Why `send` refused a message (no result event follows a refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendRejected {
    Invalid(InvalidMessage),
    Closed,
    QueueFull,
    /// The durable outbox could not store it.
    Storage(String),
}

/// Why a client could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The durable outbox could not be opened.
    Storage(String),
    Other(String),
}

impl From<String> for StartError {
    fn from(text: String) -> Self {
        StartError::Other(text)
    }
}

pub struct Client {
    config: Arc<ClientConfig>,
    credentials: Arc<Credentials>,
    commands: mpsc::UnboundedSender<Command>,
    /// Requests accepted whose result has not reached the host yet: a result waiting in the
    /// event queue still holds its place, so that a host that does not dispatch gets
    /// `QueueFull` instead of results piling up without bound.
    outstanding: AtomicUsize,
    closed: AtomicBool,
    runtime: Mutex<Option<Runtime>>,
    scheduler: Mutex<Option<JoinHandle<()>>>,
    webhook: Arc<WebhookHandler>,
    webhook_address: Option<std::net::SocketAddr>,
    graph: Arc<GraphClient>,
    sink: Arc<dyn EventSink>,
    /// The durable outbox, when configured.
    durable: Option<Arc<crate::store::Durable>>,
    onboarding_runs: Arc<Runs>,
    next_run: std::sync::atomic::AtomicU64,
    /// The channel of the last send, shared by the messages that follow on it: hosts send
    /// from one or a few phone numbers, so this saves an allocation (and a cold cache line
    /// on the runtime thread) per message.
    last_channel: Mutex<Option<Arc<str>>>,
    /// This client's log lines, for work done on a host's thread (the runtime threads have it
    /// installed already).
    log_dispatch: tracing::Dispatch,
}

impl Client {
    /// Starts the runtime threads and the outbox.
    pub fn start(config: ClientConfig, sink: Arc<dyn EventSink>) -> Result<Self, StartError> {
        let config = Arc::new(config);
        let dispatch = tracing::Dispatch::new(LogForwarder::new(config.log_level, sink.clone()));
        let start_dispatch = dispatch.clone();
        // Lines logged while starting (e.g. resuming a durable outbox) run on the host's thread.
        let _log_scope = tracing::dispatcher::set_default(&dispatch);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads)
            .max_blocking_threads(4)
            .thread_name("wa-runtime")
            .enable_io()
            .enable_time()
            .on_thread_start(move || logging::install_on_thread(&start_dispatch))
            .on_thread_stop(logging::remove_from_thread)
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let graph = {
            let _guard = runtime.enter();
            Arc::new(GraphClient::new(&config)?)
        };
        let credentials = Arc::new(Credentials::default());
        let outstanding = AtomicUsize::new(0);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (durable, resumed) = match &config.outbox_path {
            Some(path) => {
                let store = crate::store::SqliteStore::open(path).map_err(StartError::Storage)?;
                let (durable, resumed) =
                    crate::store::Durable::new(Box::new(store)).map_err(StartError::Storage)?;
                (Some(Arc::new(durable)), resumed)
            }
            None => (None, Vec::new()),
        };
        let webhook = Arc::new(WebhookHandler::new(
            WebhookSettings {
                max_body: config.webhook_max_body,
                dedupe_capacity: config.dedupe_capacity,
                max_backlog: config.webhook_max_backlog,
                allowed_channels: config.allowed_channels.iter().cloned().collect(),
                raw_changes: config.raw_changes,
            },
            credentials.clone(),
            sink.clone(),
            durable.clone(),
        ));
        let media = {
            let _guard = runtime.enter();
            Arc::new(crate::media::MediaClient::new(&config)?)
        };
        let webhook_address = match &config.webhook_listen {
            Some(address) => Some(crate::listener::start(
                &runtime,
                address,
                crate::listener::Routes {
                    webhook_path: config.webhook_path.clone(),
                    webhook: webhook.clone(),
                    media: media.clone(),
                    credentials: credentials.clone(),
                    media_access_token: config.media_access_token.clone(),
                    idle_timeout: config.webhook_idle_timeout,
                    max_connections: config.webhook_max_connections,
                },
            )?),
            None => None,
        };
        let scheduler = Scheduler::new(
            config.clone(),
            graph.clone(),
            media,
            sink.clone(),
            credentials.clone(),
        );
        let handle = runtime.spawn(scheduler.run(command_rx));
        // Messages a previous client accepted and did not finish go first, in their order.
        // Their request context did not survive: results carry a NULL context and the stored
        // callback_info.
        if !resumed.is_empty() {
            tracing::info!(
                count = resumed.len(),
                "resuming messages from the durable outbox"
            );
        }
        let accepted_at = Instant::now();
        for stored in resumed {
            outstanding.fetch_add(1, Ordering::AcqRel);
            let _ = commands.send(Command::Send(Outgoing {
                channel: Arc::from(stored.channel.as_str()),
                recipient: Arc::from(stored.recipient.as_str()),
                body: stored.body,
                request_ctx: 0,
                callback_info: stored.callback_info,
                accepted_at,
                seq: Some(stored.seq),
            }));
        }
        Ok(Self {
            log_dispatch: dispatch,
            config,
            credentials,
            commands,
            outstanding,
            closed: AtomicBool::new(false),
            runtime: Mutex::new(Some(runtime)),
            scheduler: Mutex::new(Some(handle)),
            webhook,
            webhook_address,
            graph,
            sink,
            durable,
            onboarding_runs: Arc::new(Runs::default()),
            next_run: std::sync::atomic::AtomicU64::new(1),
            last_channel: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    /// Sets the access token and the app secret (`None`: kept); held messages go out once a
    /// token is set.
    pub fn set_config(&self, token: &str, app_secret: Option<&str>) -> Result<(), String> {
        // It travels in an HTTP header: visible ASCII only.
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token may contain only visible ASCII characters".into());
        }
        self.credentials.set_config(token, app_secret);
        let token = (!token.is_empty()).then(|| Arc::<str>::from(token));
        let _ = self.commands.send(Command::SetToken(token));
        Ok(())
    }

    pub fn set_webhook_token(&self, token: &str) {
        self.credentials.set_webhook_token(token);
    }

    /// The webhook endpoint's logic, for hosts that run their own web server.
    pub fn webhook(&self) -> &WebhookHandler {
        &self.webhook
    }

    /// A webhook request passed in by the host (on its thread), with this client's log lines
    /// going to this client's log callback as they do from the built-in listener.
    pub fn handle_webhook(
        &self,
        method: &str,
        query: &str,
        signature: Option<&str>,
        body: &[u8],
    ) -> crate::webhook::Reply {
        tracing::dispatcher::with_default(&self.log_dispatch, || {
            self.webhook.handle(method, query, signature, body)
        })
    }

    /// Where the built-in webhook listener is bound, if one was configured.
    pub fn webhook_address(&self) -> Option<std::net::SocketAddr> {
        self.webhook_address
    }

    /// Validates and queues a message. On success exactly one result event follows.
    pub fn send(&self, input: &MessageInput<'_>, request_ctx: usize) -> Result<(), SendRejected> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SendRejected::Closed);
        }
        let built = message::build(input).map_err(SendRejected::Invalid)?;
        self.reserve_slot()?;
        let body = bytes::Bytes::from(built.body);
        let seq = match &self.durable {
            Some(durable) => {
                let stored = StoredMessage {
                    seq: 0,
                    channel: input.channel.to_string(),
                    recipient: built.recipient_key.clone(),
                    body: body.clone(),
                    callback_info: input.callback_info.map(str::to_string),
                };
                match durable.persist(stored) {
                    Ok(seq) => Some(seq),
                    Err(e) => {
                        self.outstanding.fetch_sub(1, Ordering::AcqRel);
                        return Err(SendRejected::Storage(e));
                    }
                }
            }
            None => None,
        };
        let outgoing = Outgoing {
            channel: self.shared_channel(input.channel),
            recipient: Arc::from(built.recipient_key.as_str()),
            body,
            request_ctx,
            callback_info: input.callback_info.map(str::to_string),
            accepted_at: Instant::now(),
            seq,
        };
        if self.commands.send(Command::Send(outgoing)).is_err() {
            // The outbox already finished closing: the message was not accepted, so it must not
            // be sent by the next client on this store either.
            if let (Some(durable), Some(seq)) = (&self.durable, seq) {
                durable.remove(&[seq]);
            }
            self.outstanding.fetch_sub(1, Ordering::AcqRel);
            return Err(SendRejected::Closed);
        }
        Ok(())
    }

    /// Queues a media job (forward, download, upload). On success exactly one result event
    /// follows, with `callback_info` as given.
    pub fn media(
        &self,
        work: MediaWork,
        callback_info: String,
        request_ctx: usize,
    ) -> Result<(), SendRejected> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SendRejected::Closed);
        }
        self.reserve_slot()?;
        let job = MediaJob {
            work,
            request_ctx,
            callback_info,
            accepted_at: Instant::now(),
        };
        if self.commands.send(Command::Media(job)).is_err() {
            self.outstanding.fetch_sub(1, Ordering::AcqRel);
            return Err(SendRejected::Closed);
        }
        Ok(())
    }

    fn shared_channel(&self, channel: &str) -> Arc<str> {
        let mut last = self.last_channel.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some(shared) if **shared == *channel => shared.clone(),
            _ => {
                let shared: Arc<str> = Arc::from(channel);
                *last = Some(shared.clone());
                shared
            }
        }
    }

    /// Counts one more accepted request against the outbox capacity.
    fn reserve_slot(&self) -> Result<(), SendRejected> {
        if self.outstanding.fetch_add(1, Ordering::AcqRel) >= self.config.outbox_capacity {
            self.outstanding.fetch_sub(1, Ordering::AcqRel);
            return Err(SendRejected::QueueFull);
        }
        Ok(())
    }

    /// Starts an onboarding run for onboarding object `onboarding`; exactly one
    /// `OnboardResult` event follows (also when the object or the client is closed first).
    pub fn onboard(
        &self,
        onboarding: u64,
        request_ctx: usize,
        src: String,
        request: OnboardRequest,
    ) -> Result<(), SendRejected> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SendRejected::Closed);
        }
        crate::onboarding::validate(&request)
            .map_err(|e| SendRejected::Invalid(InvalidMessage::Argument(e)))?;
        let runtime = self.runtime.lock().unwrap_or_else(|p| p.into_inner());
        let Some(runtime) = runtime.as_ref() else {
            return Err(SendRejected::Closed);
        };
        let token = self.credentials.token();
        let ctx = OnboardContext {
            graph: self.graph.clone(),
            app_id: self.config.app_id.clone(),
            app_secret: self.credentials.app_secret().expose().to_string(),
            default_version: self.config.api_version.clone(),
            current_token: (!token.is_empty()).then(|| token.expose().to_string()),
        };
        let id = self.next_run.fetch_add(1, Ordering::Relaxed);
        let progress = Arc::new(Progress::default());
        let mut runs = self.onboarding_runs.lock();
        // Checked again under the lock that `close` and `close_onboarding` take: a run is
        // either registered before they end the runs, or refused.
        if self.closed.load(Ordering::Acquire) || runs.closed.contains(&onboarding) {
            return Err(SendRejected::Closed);
        }
        let (commands, credentials, sink, all_runs) = (
            self.commands.clone(),
            self.credentials.clone(),
            self.sink.clone(),
            self.onboarding_runs.clone(),
        );
        let task_progress = progress.clone();
        let task = runtime.spawn(async move {
            let set_token = |token: &str| {
                // "Saved to config and used for further authorization" (the seed).
                credentials.set_config(token, None);
                let _ = commands.send(Command::SetToken(Some(Arc::from(token))));
            };
            let set_webhook_token = |token: &str| credentials.set_webhook_token(token);
            let outcome =
                crate::onboarding::run(ctx, request, task_progress, set_token, set_webhook_token)
                    .await;
            // Whoever takes the run out of the registry delivers its result.
            let mut runs = all_runs.lock();
            let Some(list) = runs.by_onboarding.get_mut(&onboarding) else {
                return;
            };
            let Some(position) = list.iter().position(|r| r.id == id) else {
                return;
            };
            let run = list.remove(position);
            if let Some(error) = &outcome.error {
                tracing::warn!(
                    stage = outcome.stage as u32,
                    "onboarding stopped: {}",
                    credentials.redact(error)
                );
            }
            sink.push(Event::OnboardResult {
                onboarding,
                request_ctx: run.request_ctx,
                src: run.src,
                stage: outcome.stage as u32,
                token: outcome.token,
                error: outcome.error.map(|e| credentials.redact(&e)),
            });
        });
        runs.by_onboarding.entry(onboarding).or_default().push(Run {
            id,
            request_ctx,
            src,
            progress,
            abort: Some(task.abort_handle()),
        });
        Ok(())
    }

    /// Ends the runs of `onboarding`: each gets its result with the stage reached, then
    /// `OnboardingClosed` when `announce` is set (once: closing it again does nothing). False
    /// when that announcement could not be queued: the client's close-complete came first (a
    /// close racing the client's), so nothing will follow.
    pub fn close_onboarding(&self, onboarding: u64, announce: bool) -> bool {
        let mut runs = self.onboarding_runs.lock();
        if announce && !runs.closed.insert(onboarding) {
            return true;
        }
        for run in runs.by_onboarding.remove(&onboarding).unwrap_or_default() {
            if let Some(abort) = &run.abort {
                abort.abort();
            }
            self.sink.push(Event::OnboardResult {
                onboarding,
                request_ctx: run.request_ctx,
                src: run.src,
                stage: run.progress.stage() as u32,
                token: run.progress.token(),
                error: Some("closed before the onboarding finished".into()),
            });
        }
        !announce
            || self
                .sink
                .push_batch(vec![Event::OnboardingClosed { onboarding }])
    }

    /// Drops the runs of `onboarding` without any event (its object is being freed).
    pub fn forget_onboarding(&self, onboarding: u64) {
        let runs = {
            let mut state = self.onboarding_runs.lock();
            // The object is gone: nothing can start a run on it any more.
            state.closed.remove(&onboarding);
            state.by_onboarding.remove(&onboarding)
        };
        for run in runs.unwrap_or_default() {
            if let Some(abort) = run.abort {
                abort.abort();
            }
        }
    }

    /// The host has seen the results of these durable outbox rows: forget them. Until then a
    /// crash resends those messages (at-least-once) rather than losing their results.
    pub fn acknowledge(&self, stored: &[u64]) {
        if let Some(durable) = &self.durable {
            // Called where callbacks run (the host's thread or the dispatch thread): a store
            // error is logged to this client, not to whatever subscriber that thread has.
            tracing::dispatcher::with_default(&self.log_dispatch, || durable.remove(stored));
        }
    }

    /// Starts an orderly close (idempotent); `CloseComplete` is the last event.
    pub fn close(&self) {
        // Marked closed first: `onboard` checks it under the runs' lock, so every run either
        // is among those ended below or was refused.
        let first_close = !self.closed.swap(true, Ordering::AcqRel);
        self.webhook.refuse_deliveries();
        // Onboarding runs get their results before the client's close completes.
        let open: Vec<u64> = self
            .onboarding_runs
            .lock()
            .by_onboarding
            .keys()
            .copied()
            .collect();
        for onboarding in open {
            self.close_onboarding(onboarding, false);
        }
        if first_close {
            let _ = self.commands.send(Command::Close);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Requests accepted whose result has not reached the host yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Acquire)
    }

    /// The consumer of the event queue hands a `SendResult` to the host: its request's place
    /// in the outbox is free again.
    pub fn result_delivered(&self) {
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
    }

    /// Stops everything at once (a close still draining is cut short) and joins the runtime's
    /// threads. Must not be called from a runtime thread.
    pub fn shutdown(&self) {
        self.webhook.refuse_deliveries();
        self.closed.store(true, Ordering::Release);
        // Also after a close still draining: freeing ends at once (the results are discarded
        // anyway), rather than holding the host's thread for the drain time.
        let _ = self.commands.send(Command::Abort);
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(runtime) = runtime else {
            return;
        };
        if let Some(handle) = self
            .scheduler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let limit = self.config.drain_timeout + Duration::from_secs(2);
            runtime.block_on(async {
                let abort = handle.abort_handle();
                if tokio::time::timeout(limit, handle).await.is_err() {
                    abort.abort();
                }
            });
        }
        runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shutdown();
    }
}
