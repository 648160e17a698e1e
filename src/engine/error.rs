//! The engine's error type: one variant per thing a caller can act on. The HTTP and
//! WebSocket layers map these to status codes and stable `code` strings in one place each.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("queue name is invalid: {0}")]
    InvalidQueueName(String),
    #[error("queue '{0}' not found")]
    QueueNotFound(String),
    #[error("queue '{0}' already exists")]
    QueueExists(String),
    #[error("duplicate payload rejected")]
    DuplicatePayload,
    #[error("invalid priority: {0}")]
    InvalidPriority(String),
    #[error("invalid timeout: {0}")]
    InvalidTimeout(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("message not locked by this consumer")]
    NotLocked,
    #[error("lock token does not match the current delivery")]
    StaleLock,
    #[error("queue '{0}' is full")]
    QueueFull(String),
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// The request's log record is above the log's record limit (the body limit plus room
    /// for framing): the request is too big, the storage is fine.
    #[error("request too large to store: {0}")]
    RecordTooLarge(String),
    #[error("memory limit reached: {0}")]
    MemoryLimit(String),
    #[error("storage unavailable: {0}")]
    StorageUnavailable(String),
}
