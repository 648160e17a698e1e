//! Log capture: the tracing subscriber, and the in-memory history that WebSocket
//! `subscribe-logs` streams. (Stub: owned by the WebSocket work.)

use std::sync::Arc;

/// The last log lines and a live feed of new ones.
#[derive(Default)]
pub struct LogHub {}

impl LogHub {
    /// A hub that is not wired to any subscriber (tests).
    pub fn detached() -> Arc<LogHub> {
        Arc::new(LogHub {})
    }
}

/// Installs the global tracing subscriber (filter from `RUST_LOG` syntax, text or JSON
/// lines) with the capture layer; returns the hub. Safe to call once per process.
pub fn init(_filter: &str, _json: bool) -> Arc<LogHub> {
    LogHub::detached()
}
