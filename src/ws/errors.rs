//! Error frames: the one place where engine errors become WebSocket `code` strings.
//!
//! Codes match the HTTP API's wherever both mean the same thing, so a client can share
//! its error handling between the two transports.

use crate::engine::EngineError;

/// What an error frame says: a stable `code` and a human-readable `message`.
/// Requirements: WS-0022
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsError {
    pub code: &'static str,
    pub message: String,
}

impl WsError {
    pub fn new(code: &'static str, message: impl Into<String>) -> WsError {
        WsError { code, message: message.into() }
    }

    pub fn invalid_request(message: impl Into<String>) -> WsError {
        WsError::new("invalid_request", message)
    }
}

impl From<EngineError> for WsError {
    fn from(err: EngineError) -> WsError {
        // Exhaustive on purpose: a new engine error must get its code chosen here.
        let code = match &err {
            EngineError::InvalidQueueName(_) => "invalid_queue_name",
            EngineError::QueueNotFound(_) => "queue_not_found",
            EngineError::QueueExists(_) => "queue_exists",
            EngineError::DuplicatePayload => "duplicate_payload",
            EngineError::InvalidPriority(_) => "invalid_priority",
            EngineError::InvalidTimeout(_) => "invalid_timeout",
            EngineError::InvalidRequest(_) => "invalid_request",
            EngineError::NotLocked => "not_locked",
            EngineError::StaleLock => "stale_lock",
            EngineError::QueueFull(_) => "queue_full",
            EngineError::PayloadTooLarge(_) => "message_too_large",
            EngineError::RecordTooLarge(_) => "payload_too_large",
            EngineError::MemoryLimit(_) => "memory_limit",
            EngineError::StorageUnavailable(_) => "storage_unavailable",
        };
        WsError::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: WS-0022
    #[test]
    fn engine_errors_keep_their_http_codes() {
        let cases = [
            (EngineError::DuplicatePayload, "duplicate_payload"),
            (EngineError::NotLocked, "not_locked"),
            (EngineError::StaleLock, "stale_lock"),
            (EngineError::InvalidQueueName("_x".into()), "invalid_queue_name"),
            (EngineError::InvalidPriority("text".into()), "invalid_priority"),
            (EngineError::QueueFull("q".into()), "queue_full"),
            (EngineError::StorageUnavailable("disk full".into()), "storage_unavailable"),
            (EngineError::PayloadTooLarge("big".into()), "message_too_large"),
            (EngineError::MemoryLimit("full".into()), "memory_limit"),
        ];
        for (err, code) in cases {
            assert_eq!(WsError::from(err).code, code);
        }
    }
}
