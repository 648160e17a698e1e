//! Queue administration: create, update (rename, duplicate policy), delete, purge.

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;

use super::body::ApiRequest;
use super::error::ApiError;
use super::{empty_reply, json_reply, HandlerResult};
use crate::engine::{Engine, EngineError, Ordering, PriorityKind, QueueConfig};

#[derive(Deserialize)]
struct CreateQueueBody {
    name: String,
    config: CreateConfig,
}

#[derive(Deserialize)]
struct CreateConfig {
    ordering: Ordering,
    #[serde(default = "default_allow_duplicates")]
    allow_duplicates: bool,
    #[serde(default)]
    priority_kind: PriorityKind,
}

fn default_allow_duplicates() -> bool {
    true
}

#[derive(Deserialize)]
struct UpdateQueueBody {
    name: String,
    config: UpdateConfig,
}

/// `ordering` and `priority_kind` may be sent but are ignored: both are fixed at creation.
#[derive(Deserialize)]
struct UpdateConfig {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    allow_duplicates: Option<bool>,
}

#[derive(Serialize)]
struct DeleteQueueReply<'a> {
    queue: &'a str,
    deleted_messages: u64,
}

#[derive(Serialize)]
struct PurgeQueueReply<'a> {
    queue: &'a str,
    purged_messages: u64,
}

#[derive(Serialize)]
struct PurgeAllReply {
    purged_queues: u64,
    purged_messages: u64,
}

#[derive(Serialize)]
struct DeleteAllReply {
    deleted_queues: u64,
    deleted_messages: u64,
}

/// Requirements: API-0008
pub async fn create(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let body: CreateQueueBody = req.json().await?;
    let config = QueueConfig {
        ordering: body.config.ordering,
        allow_duplicates: body.config.allow_duplicates,
        priority_kind: body.config.priority_kind,
    };
    engine.create_queue(&body.name, config).await?;
    Ok(empty_reply())
}

/// Checks run in the 0.15.0 order: blank name, missing queue, blank new name; then the
/// rename and the duplicate policy are applied by the engine.
/// Requirements: API-0009
pub async fn update(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let body: UpdateQueueBody = req.json().await?;
    if body.name.trim().is_empty() {
        return Err(blank_name("name"));
    }
    if let Some(new_name) = &body.config.name {
        if new_name.trim().is_empty() {
            if !engine.queue_exists(&body.name) {
                return Err(EngineError::QueueNotFound(body.name).into());
            }
            return Err(blank_name("config.name"));
        }
    }

    let rename = body.config.name.as_deref().filter(|new| *new != body.name);
    engine.update_queue(&body.name, rename, body.config.allow_duplicates).await?;
    Ok(empty_reply())
}

fn blank_name(field: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_queue_name", format!("{field} is blank"))
}

/// Requirements: API-0011
pub async fn delete(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let queue = req.param(0);
    let deleted_messages = engine.delete_queue(queue).await?;
    tracing::info!(queue, messages = deleted_messages, "queue deleted");
    Ok(json_reply(&DeleteQueueReply { queue, deleted_messages }))
}

/// Requirements: API-0012
pub async fn purge(engine: &Engine, req: ApiRequest) -> HandlerResult {
    let queue = req.param(0);
    let purged_messages = engine.purge_queue(queue).await?;
    tracing::info!(queue, messages = purged_messages, "queue purged");
    Ok(json_reply(&PurgeQueueReply { queue, purged_messages }))
}

/// Requirements: API-0013
pub async fn purge_all(engine: &Engine) -> HandlerResult {
    let (purged_queues, purged_messages) = engine.purge_all().await?;
    tracing::info!(queues = purged_queues, messages = purged_messages, "all queues purged");
    Ok(json_reply(&PurgeAllReply { purged_queues, purged_messages }))
}

/// Requirements: API-0013
pub async fn delete_all(engine: &Engine) -> HandlerResult {
    let (deleted_queues, deleted_messages) = engine.delete_all().await?;
    tracing::info!(queues = deleted_queues, messages = deleted_messages, "all queues deleted");
    Ok(json_reply(&DeleteAllReply { deleted_queues, deleted_messages }))
}
