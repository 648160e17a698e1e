//! What a handler gets: the decoded path parameters, the query, the headers and the
//! still-unread body. Body reading enforces the content type and the size limit (also for
//! chunked bodies that announce no length) before any JSON is parsed.

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use warp::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use warp::http::{HeaderMap, Method};

use super::error::ApiError;

pub type BodyStream = BoxStream<'static, Result<Bytes, warp::Error>>;

/// How much of an oversized body is still read (and thrown away) before the 413 goes
/// out. A client that is still writing when the server closes the socket sees a reset
/// instead of the reply; draining a bounded amount lets ordinary clients read the 413.
const DRAIN_AFTER_LIMIT: usize = 8 * 1024 * 1024;

pub struct ApiRequest {
    pub method: Method,
    /// Path parameters in route order, percent-decoded.
    pub params: Vec<String>,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: BodyStream,
    pub max_body_bytes: usize,
}

impl ApiRequest {
    /// The `n`th path parameter. The router only dispatches when every parameter of the
    /// route's template matched, so a missing one is a bug in the route table.
    pub fn param(&self, n: usize) -> &str {
        self.params.get(n).map(String::as_str).unwrap_or_default()
    }

    /// Parses a mandatory JSON body.
    /// Requirements: API-0002
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, ApiError> {
        self.check_announced_length()?;
        self.check_content_type()?;
        let limit = self.max_body_bytes;
        let bytes = read_capped(self.body, limit).await?;
        parse(&bytes)
    }

    /// Parses a JSON body that may be left out entirely (no content type and no bytes):
    /// then the default value stands in for it.
    pub async fn optional_json<T: DeserializeOwned + Default>(self) -> Result<T, ApiError> {
        self.check_announced_length()?;
        let has_type = self.headers.contains_key(CONTENT_TYPE);
        if has_type {
            self.check_content_type()?;
        }
        let limit = self.max_body_bytes;
        let bytes = read_capped(self.body, limit).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        if !has_type {
            return Err(ApiError::unsupported_media_type(
                "a request body needs Content-Type: application/json",
            ));
        }
        parse(&bytes)
    }

    fn check_announced_length(&self) -> Result<(), ApiError> {
        let announced = self
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match announced {
            Some(len) if len > self.max_body_bytes as u64 => {
                Err(ApiError::payload_too_large(self.max_body_bytes))
            }
            _ => Ok(()),
        }
    }

    fn check_content_type(&self) -> Result<(), ApiError> {
        let value = self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        match value {
            Some(v) if is_json_media_type(v) => Ok(()),
            Some(v) => Err(ApiError::unsupported_media_type(format!(
                "content type '{v}' is not JSON; send application/json"
            ))),
            None => {
                Err(ApiError::unsupported_media_type("missing Content-Type; send application/json"))
            }
        }
    }
}

/// Parses a body. A failure is told apart by a second, shape-free pass: serde_json stops
/// at the first problem, so a shape error can hide a syntax error further on (`{"a":1}}`
/// misses a field before the stray brace is seen: not JSON, a 400), and it reports some
/// shape errors as syntax errors (an enum such as `ordering` given a number: valid JSON of
/// the wrong shape, a 422).
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|err| {
        match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Err(syntax) => ApiError::from_json_error(&syntax),
            Ok(_) => ApiError::invalid_request(format!("body has the wrong shape: {err}")),
        }
    })
}

/// `application/json` or `application/<anything>+json`, parameters allowed.
/// Requirements: API-0002
pub fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.strip_prefix("application/") {
        Some("json") => true,
        Some(sub) => sub.len() > "+json".len() && sub.ends_with("+json"),
        None => false,
    }
}

/// Requirements: API-0004, SYS-0024
// Limitation: the cap counts bytes as they arrive. A chunked body whose chunk header
// announces more than the cap is refused only once that many bytes came, or when the idle
// timeout closes a client that sends no more: hyper does not hand the announced size on.
async fn read_capped(mut body: BodyStream, limit: usize) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid_json(format!("body unreadable: {e}")))?;
        if buf.len() + chunk.len() > limit {
            drain(body, DRAIN_AFTER_LIMIT).await;
            return Err(ApiError::payload_too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

async fn drain(mut body: BodyStream, mut budget: usize) {
    let read_rest = async {
        while let Some(Ok(chunk)) = body.next().await {
            if chunk.len() >= budget {
                break;
            }
            budget -= chunk.len();
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), read_rest).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: API-0002
    #[test]
    fn json_media_types_are_recognised() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/merge-patch+json"));
        assert!(!is_json_media_type("application/+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/jsonx"));
        assert!(!is_json_media_type(""));
    }
}
