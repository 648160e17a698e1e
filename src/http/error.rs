//! The one place where failures become HTTP replies: every 4xx/5xx the API sends is an
//! `ApiError`, rendered as `{"error": "<text>", "code": "<snake_case>"}`. The `code`
//! strings are part of the contract; the `error` text is for humans and may change.

use serde::Serialize;
use warp::http::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use warp::http::StatusCode;
use warp::reply::Response;

use crate::engine::EngineError;

/// Seconds a client is told to wait (`Retry-After`) when a limit that frees itself soon
/// refused it: a waiter slot, a session slot, memory.
const RETRY_AFTER_SECS: &str = "1";

/// A failed request: status, stable code, human text, for 405 the allowed methods, and for
/// refusals that pass with time a `Retry-After`.
/// Requirements: API-0003
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub allow: Option<String>,
    pub retry_after: bool,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    code: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), allow: None, retry_after: false }
    }

    fn retry_later(mut self) -> Self {
        self.retry_after = true;
        self
    }

    /// Body is valid JSON of the wrong shape: missing field, wrong type, out of range.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    /// Body is not JSON at all (syntax error, truncated, empty).
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit} bytes"),
        )
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    /// `allow` lists the methods the path does answer, for the `Allow` header.
    pub fn method_not_allowed(allow: String) -> Self {
        let mut err = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("method not allowed here; allowed: {allow}"),
        );
        err.allow = Some(allow);
        err
    }

    /// Every long-poll slot is taken (QRUSTY_MAX_WAITING_CONSUMERS).
    pub fn too_many_waiters(limit: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_waiters",
            format!("every long-poll slot ({limit}) is taken; retry later"),
        )
        .retry_later()
    }

    /// Every WebSocket session slot is taken (QRUSTY_MAX_WS_SESSIONS).
    pub fn too_many_sessions(limit: usize) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_sessions",
            format!("{limit} WebSocket sessions are open, the limit; retry later"),
        )
        .retry_later()
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer token")
    }

    /// A handler panicked. Only a bug gets here; the reply keeps the connection usable.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Classifies a serde_json failure: text that is not JSON is a 400, JSON of the wrong
    /// shape a 422.
    /// Requirements: API-0002
    pub fn from_json_error(err: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        match err.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                Self::invalid_json(format!("body is not valid JSON: {err}"))
            }
            Category::Data => Self::invalid_request(format!("body has the wrong shape: {err}")),
        }
    }

    pub fn into_response(self) -> Response {
        let body = ErrorBody { error: &self.message, code: self.code };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = Response::new(bytes.into());
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(allow) = self.allow.as_deref().and_then(|a| HeaderValue::from_str(a).ok()) {
            resp.headers_mut().insert(ALLOW, allow);
        }
        if self.retry_after {
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        resp
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        let message = err.to_string();
        // Memory comes back as consumers ack: worth retrying, unlike the other refusals.
        let retry = matches!(err, EngineError::MemoryLimit(_));
        let (status, code) = match err {
            EngineError::InvalidQueueName(_) => (StatusCode::BAD_REQUEST, "invalid_queue_name"),
            EngineError::QueueNotFound(_) => (StatusCode::NOT_FOUND, "queue_not_found"),
            EngineError::QueueExists(_) => (StatusCode::CONFLICT, "queue_exists"),
            EngineError::DuplicatePayload => (StatusCode::CONFLICT, "duplicate_payload"),
            EngineError::InvalidPriority(_) => (StatusCode::BAD_REQUEST, "invalid_priority"),
            EngineError::InvalidTimeout(_) => (StatusCode::BAD_REQUEST, "invalid_timeout"),
            EngineError::InvalidRequest(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            EngineError::NotLocked => (StatusCode::NOT_FOUND, "not_locked"),
            EngineError::StaleLock => (StatusCode::CONFLICT, "stale_lock"),
            EngineError::QueueFull(_) => (StatusCode::INSUFFICIENT_STORAGE, "queue_full"),
            EngineError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large"),
            EngineError::RecordTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            EngineError::MemoryLimit(_) => (StatusCode::SERVICE_UNAVAILABLE, "memory_limit"),
            EngineError::StorageUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
        };
        let err = ApiError::new(status, code, message);
        if retry {
            err.retry_later()
        } else {
            err
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: API-0002
    #[test]
    fn json_syntax_errors_are_400_and_shape_errors_are_422() {
        let syntax = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert_eq!(ApiError::from_json_error(&syntax).status, StatusCode::BAD_REQUEST);

        let shape = serde_json::from_str::<u32>("-1").unwrap_err();
        assert_eq!(ApiError::from_json_error(&shape).status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    // Verifies: API-0003
    #[test]
    fn engine_errors_map_to_their_contract_codes() {
        let cases = [
            (EngineError::DuplicatePayload, 409, "duplicate_payload"),
            (EngineError::StaleLock, 409, "stale_lock"),
            (EngineError::NotLocked, 404, "not_locked"),
            (EngineError::QueueFull("q".into()), 507, "queue_full"),
            (EngineError::PayloadTooLarge("big".into()), 413, "message_too_large"),
            (EngineError::RecordTooLarge("big".into()), 413, "payload_too_large"),
            (EngineError::MemoryLimit("full".into()), 503, "memory_limit"),
            (EngineError::StorageUnavailable("disk".into()), 503, "storage_unavailable"),
            (EngineError::InvalidQueueName("_x".into()), 400, "invalid_queue_name"),
        ];
        for (err, status, code) in cases {
            let api = ApiError::from(err);
            assert_eq!((api.status.as_u16(), api.code), (status, code));
        }
    }

    // Verifies: API-0005
    #[test]
    fn method_not_allowed_carries_an_allow_header() {
        let resp = ApiError::method_not_allowed("GET, HEAD".into()).into_response();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[ALLOW], "GET, HEAD");
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
    }
}
