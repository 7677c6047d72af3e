//! Routes `tracing` events of a client's runtime threads to that client's log callback.
//!
//! Each client installs this subscriber as the thread default on its own runtime threads, so two
//! clients in one process (or a host that uses `tracing` itself) never see each other's lines.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event as TracingEvent, Level, Metadata, Subscriber};

use crate::events::{Event, EventSink, LogLevel};

pub struct LogForwarder {
    max_level: LogLevel,
    sink: Arc<dyn EventSink>,
    next_span: AtomicU64,
}

impl LogForwarder {
    pub fn new(max_level: LogLevel, sink: Arc<dyn EventSink>) -> Self {
        Self {
            max_level,
            sink,
            next_span: AtomicU64::new(1),
        }
    }

    fn level_of(level: &Level) -> LogLevel {
        match *level {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }

    fn wants(&self, metadata: &Metadata<'_>) -> bool {
        let level = Self::level_of(metadata.level());
        if level > self.max_level {
            return false;
        }
        // Dependencies' internals (hyper, reqwest, rustls) only at debug and beyond.
        metadata.target().starts_with("whatsapp_connector") || self.max_level >= LogLevel::Debug
    }
}

/// Collects an event's fields as `message k=v ...`.
struct LineBuilder(String);

impl Visit for LineBuilder {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }
}

impl Subscriber for LogForwarder {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.wants(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.wants(metadata)
    }

    /// Lets every disabled callsite (hyper's and reqwest's trace lines on the hot path) stop at
    /// one atomic load instead of asking the subscriber each time.
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        use tracing::level_filters::LevelFilter;
        Some(match self.max_level {
            LogLevel::Off => LevelFilter::OFF,
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        })
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &TracingEvent<'_>) {
        let mut line = LineBuilder(String::new());
        event.record(&mut line);
        self.sink.push(Event::Log {
            level: Self::level_of(event.metadata().level()),
            text: line.0,
        });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

thread_local! {
    static THREAD_LOG_GUARD: RefCell<Option<tracing::subscriber::DefaultGuard>> = const { RefCell::new(None) };
}

/// Makes `dispatch` the default on the calling thread (a runtime thread start hook).
pub fn install_on_thread(dispatch: &tracing::Dispatch) {
    let guard = tracing::dispatcher::set_default(dispatch);
    THREAD_LOG_GUARD.with(|g| *g.borrow_mut() = Some(guard));
}

/// Undoes [`install_on_thread`] (a runtime thread stop hook).
pub fn remove_from_thread() {
    let _ = THREAD_LOG_GUARD.try_with(|g| g.borrow_mut().take());
}
