//! Log capture: the global tracing subscriber, and the in-memory history that WebSocket
//! `subscribe-logs` streams.
//!
//! The capture layer runs on whatever thread emits the event, so it must never wait on a
//! reader: it appends to a bounded history under a short lock and hands the entry to a
//! broadcast channel, whose slow receivers lose the oldest entries instead of holding the
//! sender back.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How many entries the history keeps (the most recent ones).
pub const HISTORY_LEN: usize = 1000;
/// How many live entries a subscriber may fall behind before it starts skipping.
const LIVE_BACKLOG: usize = 1024;

/// One captured log event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// RFC 3339, UTC written as `+00:00`.
    pub timestamp: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: &'static str,
    /// The event's message, followed by its other fields as `key=value`.
    pub message: String,
}

/// What a new log subscriber starts from: the history at the moment it subscribed, and
/// the feed of every entry recorded after that (no gap, no duplicate).
pub struct LogSubscription {
    pub history: Vec<Arc<LogEntry>>,
    pub live: broadcast::Receiver<Arc<LogEntry>>,
}

/// The last log lines and a live feed of new ones.
/// Requirements: WS-0018
pub struct LogHub {
    capturing: bool,
    history: Mutex<VecDeque<Arc<LogEntry>>>,
    live: broadcast::Sender<Arc<LogEntry>>,
}

impl LogHub {
    /// A capturing hub that no subscriber feeds yet: install [`LogHub::layer`] somewhere,
    /// or [`LogHub::record`] entries by hand.
    pub fn new() -> Arc<LogHub> {
        Arc::new(Self::build(true))
    }

    /// A hub that is not wired to any subscriber (tests): `subscribe-logs` on it answers
    /// `not_available`.
    /// Requirements: WS-0028
    pub fn detached() -> Arc<LogHub> {
        Arc::new(Self::build(false))
    }

    fn build(capturing: bool) -> LogHub {
        let (live, _) = broadcast::channel(LIVE_BACKLOG);
        LogHub { capturing, history: Mutex::new(VecDeque::with_capacity(HISTORY_LEN)), live }
    }

    /// Whether this hub captures logs at all.
    pub fn is_capturing(&self) -> bool {
        self.capturing
    }

    /// The tracing layer that feeds this hub.
    pub fn layer(self: &Arc<Self>) -> CaptureLayer {
        CaptureLayer { hub: Arc::clone(self) }
    }

    /// Adds one entry to the history and the live feed. Never blocks on readers.
    pub fn record(&self, entry: LogEntry) {
        let entry = Arc::new(entry);

        // One lock around both steps so a concurrent `subscribe` sees each entry exactly
        // once: either in its history snapshot or on its live feed.
        let mut history = self.history.lock();
        if history.len() == HISTORY_LEN {
            history.pop_front();
        }
        history.push_back(Arc::clone(&entry));
        // No receivers is not an error here: nobody is listening right now.
        let _ = self.live.send(entry);
    }

    /// The history so far plus the live feed from now on; `None` when not capturing.
    pub fn subscribe(&self) -> Option<LogSubscription> {
        if !self.capturing {
            return None;
        }
        let history = self.history.lock();
        let live = self.live.subscribe();
        Some(LogSubscription { history: history.iter().cloned().collect(), live })
    }
}

/// A `tracing_subscriber` layer that records every enabled event into a [`LogHub`].
pub struct CaptureLayer {
    hub: Arc<LogHub>,
}

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = EventText::default();
        event.record(&mut text);
        let now_ns =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        self.hub.record(LogEntry {
            timestamp: rfc3339_utc(now_ns),
            level: event.metadata().level().as_str(),
            message: text.finish(),
        });
    }
}

/// Collects an event's message and its other fields as one line.
#[derive(Default)]
struct EventText {
    message: String,
    fields: String,
}

impl EventText {
    fn finish(mut self) -> String {
        if !self.fields.is_empty() {
            if !self.message.is_empty() {
                self.message.push(' ');
            }
            self.message.push_str(&self.fields);
        }
        self.message
    }

    fn push_field(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}={}", field.name(), value);
    }
}

impl Visit for EventText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.push_field(field, format_args!("{value}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.push_field(field, format_args!("{value:?}"));
        }
    }
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 with nanoseconds and an explicit
/// `+00:00` offset, the form 0.15.0 clients parse.
pub fn rfc3339_utc(ns_since_epoch: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns_since_epoch))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

static GLOBAL: OnceLock<Arc<LogHub>> = OnceLock::new();

/// Installs the global tracing subscriber (filter from `RUST_LOG` syntax, text or JSON
/// lines on stdout) with the capture layer; returns the hub. Later calls return the hub
/// of the first one and change nothing.
/// Requirements: SYS-0012, SYS-0013
pub fn init(filter: &str, json: bool) -> Arc<LogHub> {
    let hub = GLOBAL.get_or_init(|| {
        let hub = LogHub::new();
        let filter = EnvFilter::try_new(filter).unwrap_or_else(|err| {
            eprintln!("invalid log filter {filter:?} ({err}); using \"info\"");
            EnvFilter::new("info")
        });
        let fmt = if json {
            tracing_subscriber::fmt::layer().json().with_writer(std::io::stdout).boxed()
        } else {
            // Colour codes only for a terminal: in a file or a log collector they are noise.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
            tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stdout).boxed()
        };
        // Another subscriber may already be global (a test harness): then only the hub
        // is missing its feed, which is not worth failing startup for.
        let _ = tracing_subscriber::registry().with(filter).with(fmt).with(hub.layer()).try_init();
        hub
    });
    Arc::clone(hub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> LogEntry {
        LogEntry { timestamp: rfc3339_utc(0), level: "INFO", message: format!("line {n}") }
    }

    // Verifies: WS-0018
    #[test]
    fn history_keeps_only_the_most_recent_entries() {
        let hub = LogHub::new();
        for n in 0..HISTORY_LEN + 5 {
            hub.record(entry(n));
        }
        let sub = hub.subscribe().expect("capturing hub");
        assert_eq!(sub.history.len(), HISTORY_LEN);
        assert_eq!(sub.history[0].message, "line 5");
        assert_eq!(sub.history[HISTORY_LEN - 1].message, format!("line {}", HISTORY_LEN + 4));
    }

    // Verifies: WS-0018
    #[test]
    fn a_lagging_subscriber_skips_instead_of_blocking_the_logger() {
        let hub = LogHub::new();
        let mut sub = hub.subscribe().unwrap();
        for n in 0..LIVE_BACKLOG * 3 {
            hub.record(entry(n));
        }
        assert!(matches!(sub.live.try_recv(), Err(broadcast::error::TryRecvError::Lagged(_))));
        let next = sub.live.try_recv().unwrap();
        assert_eq!(next.message, format!("line {}", LIVE_BACKLOG * 2));
    }

    // Verifies: WS-0028
    #[test]
    fn detached_hub_offers_no_stream() {
        assert!(LogHub::detached().subscribe().is_none());
    }

    // Verifies: WS-0018
    #[test]
    fn timestamps_are_rfc3339_with_explicit_utc_offset() {
        assert_eq!(rfc3339_utc(1_764_785_645_123_456_789), "2025-12-03T18:14:05.123456789+00:00");
    }

    // Verifies: SYS-0013
    #[test]
    fn events_carry_message_and_fields() {
        let hub = LogHub::new();
        let subscriber = tracing_subscriber::registry().with(hub.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(queue = "orders", records = 3, "replayed");
        });
        let sub = hub.subscribe().unwrap();
        assert_eq!(sub.history.len(), 1);
        assert_eq!(sub.history[0].level, "WARN");
        assert_eq!(sub.history[0].message, "replayed queue=orders records=3");
    }
}
