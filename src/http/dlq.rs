//! The dead-letter routes: list, redrive, purge.

use serde::{Deserialize, Serialize};

use super::body::ApiRequest;
use super::error::ApiError;
use super::{form_value, json_reply, HandlerResult};
use crate::engine::{DeadLetterView, Engine, Priority};

const DEFAULT_LIST_LIMIT: usize = 100;
const MAX_LIST_LIMIT: usize = 10_000;

#[derive(Serialize)]
struct DeadLetterReply {
    id: String,
    payload: String,
    priority: Priority,
    retry_count: u32,
    dead_lettered_at_ms: u64,
}

impl From<DeadLetterView> for DeadLetterReply {
    fn from(d: DeadLetterView) -> Self {
        DeadLetterReply {
            id: d.id,
            payload: d.payload,
            priority: d.priority,
            retry_count: d.retry_count,
            dead_lettered_at_ms: d.dead_lettered_at_ms,
        }
    }
}

#[derive(Deserialize, Default)]
struct RedriveBody {
    #[serde(default)]
    ids: Option<Vec<String>>,
}

#[derive(Serialize)]
struct RedriveReply {
    redriven: u64,
}

#[derive(Serialize)]
struct PurgeReply {
    purged: u64,
}

/// Requirements: DLV-0015
pub fn list(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let limit = list_limit(req.query.as_deref())?;
    let letters = engine.dlq_list(req.param(0), limit)?;
    let replies: Vec<DeadLetterReply> = letters.into_iter().map(DeadLetterReply::from).collect();
    Ok(json_reply(&replies))
}

/// Requirements: DLV-0016
pub async fn redrive(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let queue = req.param(0).to_owned();
    let body: RedriveBody = req.optional_json().await?;
    let redriven = engine.dlq_redrive(&queue, body.ids.as_deref()).await?;
    Ok(json_reply(&RedriveReply { redriven }))
}

/// Requirements: DLV-0017
pub async fn purge(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let purged = engine.dlq_purge(req.param(0)).await?;
    Ok(json_reply(&PurgeReply { purged }))
}

/// `limit` from the query string; other parameters are ignored.
/// Requirements: DLV-0028
fn list_limit(query: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = form_value(query.unwrap_or_default(), "limit") else {
        return Ok(DEFAULT_LIST_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(n) if n <= MAX_LIST_LIMIT => Ok(n),
        _ => Err(ApiError::invalid_request(format!(
            "limit must be an integer from 0 to {MAX_LIST_LIMIT}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: DLV-0015, DLV-0028
    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(list_limit(None).unwrap(), DEFAULT_LIST_LIMIT);
        assert_eq!(list_limit(Some("x=1&limit=5")).unwrap(), 5);
        assert!(list_limit(Some("limit=-1")).is_err());
        assert!(list_limit(Some("limit=10001")).is_err());
        assert!(list_limit(Some("limit")).is_err());
    }
}
