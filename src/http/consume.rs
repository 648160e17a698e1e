//! Delivery: consume (single, batch, long poll), ack, nack, renew and their batch forms.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::body::ApiRequest;
use super::error::ApiError;
use super::{empty_reply, json_reply, ApiState, HandlerResult};
use crate::engine::{
    Delivery, Engine, EngineError, Holder, MAX_CONSUME_BATCH, MAX_TIMEOUT_SECS, MAX_WAIT_SECS,
};

/// Lock length when the request names none.
const DEFAULT_TIMEOUT_SECS: u64 = 30;

#[derive(Deserialize)]
struct ConsumeBody {
    consumer_id: String,
    #[serde(default)]
    timeout_seconds: Option<u64>,
    #[serde(default)]
    wait_seconds: Option<u64>,
}

#[derive(Deserialize)]
struct ConsumeBatchBody {
    consumer_id: String,
    #[serde(default)]
    timeout_seconds: Option<u64>,
    #[serde(default)]
    wait_seconds: Option<u64>,
    max_messages: u64,
}

#[derive(Deserialize)]
struct HolderBody {
    consumer_id: String,
    #[serde(default)]
    lock_token: Option<String>,
}

#[derive(Deserialize)]
struct RenewBody {
    consumer_id: String,
    #[serde(default)]
    timeout_seconds: Option<u64>,
    #[serde(default)]
    lock_token: Option<String>,
}

#[derive(Deserialize)]
struct BatchBody {
    consumer_id: String,
    message_ids: Vec<String>,
}

/// A delivery as consume replies show it: the 0.15.0 fields plus `lock_token`.
#[derive(Serialize)]
struct DeliveryReply {
    id: String,
    payload: String,
    retry_count: u32,
    lock_token: String,
}

impl From<Delivery> for DeliveryReply {
    fn from(d: Delivery) -> Self {
        DeliveryReply {
            id: d.id,
            payload: d.payload,
            retry_count: d.retry_count,
            lock_token: d.lock_token,
        }
    }
}

#[derive(Serialize)]
struct RenewReply {
    locked_until_ms: u64,
}

#[derive(Serialize)]
struct AckBatchReply {
    acked: Vec<String>,
    not_found: Vec<String>,
}

#[derive(Serialize)]
struct NackBatchReply {
    unlocked: Vec<String>,
    dead_lettered: Vec<String>,
    /// Always empty; kept because 0.15.0 clients read it.
    dropped: Vec<String>,
    not_found: Vec<String>,
}

/// Requirements: DLV-0002
fn lock_timeout(requested: Option<u64>) -> Result<u64, ApiError> {
    let secs = requested.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if secs > MAX_TIMEOUT_SECS {
        let msg = format!("timeout_seconds {secs} is above {MAX_TIMEOUT_SECS}");
        return Err(EngineError::InvalidTimeout(msg).into());
    }
    Ok(secs)
}

/// Requirements: DLV-0027
fn long_poll_wait(requested: Option<u64>) -> Result<Duration, ApiError> {
    let secs = requested.unwrap_or(0);
    if secs > MAX_WAIT_SECS {
        let msg = format!("wait_seconds {secs} is above {MAX_WAIT_SECS}");
        return Err(EngineError::InvalidTimeout(msg).into());
    }
    Ok(Duration::from_secs(secs))
}

fn holder(consumer_id: String, lock_token: Option<String>) -> Holder {
    Holder { consumer_id, lock_token }
}

// Limitation: a long poll holds its connection open for up to `wait_seconds`, and a
// graceful shutdown waits for it to finish (at most MAX_WAIT_SECS).
/// Requirements: API-0016
pub async fn consume(state: &ApiState, req: ApiRequest) -> HandlerResult {
    let queue = req.param(0).to_owned();
    let body: ConsumeBody = req.json().await?;
    let timeout = lock_timeout(body.timeout_seconds)?;
    let wait = long_poll_wait(body.wait_seconds)?;

    let mut got =
        state.waiters.consume(&state.engine, &queue, &body.consumer_id, timeout, 1, wait).await?;
    let first = got.drain(..).next().map(DeliveryReply::from);
    Ok(json_reply(&first))
}

/// Requirements: DLV-0026
pub async fn consume_batch(state: &ApiState, req: ApiRequest) -> HandlerResult {
    let queue = req.param(0).to_owned();
    let body: ConsumeBatchBody = req.json().await?;
    let timeout = lock_timeout(body.timeout_seconds)?;
    let wait = long_poll_wait(body.wait_seconds)?;
    let max = usize::try_from(body.max_messages).unwrap_or(usize::MAX);
    if !(1..=MAX_CONSUME_BATCH).contains(&max) {
        return Err(ApiError::invalid_request(format!(
            "max_messages must be from 1 to {MAX_CONSUME_BATCH}"
        )));
    }

    let got =
        state.waiters.consume(&state.engine, &queue, &body.consumer_id, timeout, max, wait).await?;
    let replies: Vec<DeliveryReply> = got.into_iter().map(DeliveryReply::from).collect();
    Ok(json_reply(&replies))
}

/// Requirements: API-0017
pub async fn ack(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let (queue, id) = (req.param(0).to_owned(), req.param(1).to_owned());
    let body: HolderBody = req.json().await?;
    engine.ack(&queue, &id, &holder(body.consumer_id, body.lock_token)).await?;
    Ok(empty_reply())
}

/// Requirements: API-0017
pub async fn nack(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let (queue, id) = (req.param(0).to_owned(), req.param(1).to_owned());
    let body: HolderBody = req.json().await?;
    engine.nack(&queue, &id, &holder(body.consumer_id, body.lock_token)).await?;
    Ok(empty_reply())
}

/// Requirements: DLV-0012
pub async fn renew(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let (queue, id) = (req.param(0).to_owned(), req.param(1).to_owned());
    let body: RenewBody = req.json().await?;
    let timeout = lock_timeout(body.timeout_seconds)?;
    let holder = holder(body.consumer_id, body.lock_token);
    let locked_until_ms = engine.renew(&queue, &id, &holder, timeout).await?;
    Ok(json_reply(&RenewReply { locked_until_ms }))
}

/// Requirements: DLV-0023
pub async fn ack_batch(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let queue = req.param(0).to_owned();
    let body: BatchBody = req.json().await?;
    let mut out = engine.ack_batch(&queue, &body.consumer_id, &body.message_ids).await?;

    // The contract lists an id that was acked once and repeated in the request only under
    // `acked`; the engine reports the repetition as not found too.
    let acked: HashSet<&String> = out.acked.iter().collect();
    out.not_found.retain(|id| !acked.contains(id));
    Ok(json_reply(&AckBatchReply { acked: out.acked, not_found: out.not_found }))
}

/// Requirements: DLV-0024
pub async fn nack_batch(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let queue = req.param(0).to_owned();
    let body: BatchBody = req.json().await?;
    let mut out = engine.nack_batch(&queue, &body.consumer_id, &body.message_ids).await?;

    // As for ack-batch: a repeated id that was nacked once is not also "not found".
    let nacked: HashSet<&String> = out.unlocked.iter().chain(&out.dead_lettered).collect();
    out.not_found.retain(|id| !nacked.contains(id));
    Ok(json_reply(&NackBatchReply {
        unlocked: out.unlocked,
        dead_lettered: out.dead_lettered,
        dropped: Vec::new(),
        not_found: out.not_found,
    }))
}
