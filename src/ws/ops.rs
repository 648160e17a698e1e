//! What each request type does. Requests of one connection take effect one at a time, in
//! arrival order; writes then wait for their fsync side by side (see `start_write`), so
//! the handlers of connection-local requests may freely change the connection's state.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::errors::WsError;
use super::logstream::LogStream;
use super::outbound::Outbound;
use super::protocol::{LocalRequest, WriteRequest};
use super::subscription::Subscription;
use crate::engine::{Applied, Engine, EngineError, Holder, NewMessage};
use crate::logs::LogHub;

/// One connection's state: its identity, subscriptions and log stream.
/// Requirements: WS-0007
pub struct Connection {
    pub engine: Arc<Engine>,
    pub logs: Arc<LogHub>,
    /// Random per connection, never sent: every lock this connection takes uses it.
    pub conn_id: Arc<str>,
    pub out: Outbound,
    pub subscriptions: HashMap<String, Subscription>,
    pub log_stream: Option<LogStream>,
}

type Reply = Result<Map<String, Value>, WsError>;

fn ok() -> Reply {
    Ok(Map::new())
}

fn ok_with(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Reply {
    Ok(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// The reply to a write that has taken effect, once the write is durable.
pub type Write = BoxFuture<'static, Reply>;

/// Waits for an applied change to become durable, keeping an early refusal as it is.
async fn durable<T>(applied: Result<Applied<T>, EngineError>) -> Result<T, EngineError> {
    applied?.durable().await
}

impl Connection {
    /// Makes a write take effect now and returns its reply, which waits for the fsync.
    /// Every state change happens before this returns, so the session can take the next
    /// request at once while this one's fsync is pending, and one fsync may cover both.
    /// Requirements: WS-0002, WS-0008, WS-0016, WS-0017, WS-0029
    pub fn start_write(&self, request: WriteRequest) -> Write {
        let engine = &self.engine;
        match request {
            WriteRequest::Publish { queue, payload, priority, max_retries } => {
                let msg = NewMessage { priority, payload, max_retries };
                let applied = engine.apply_publish(&queue, msg);
                Box::pin(async move { ok_with([("id", Value::String(durable(applied).await?))]) })
            }
            WriteRequest::Ack { queue, id, lock_token } => {
                let applied = engine.apply_ack(&queue, &id, &self.holder(lock_token));
                Box::pin(async move { not_held_is_ok(durable(applied).await) })
            }
            WriteRequest::Nack { queue, id, lock_token } => {
                let applied = engine.apply_nack(&queue, &id, &self.holder(lock_token));
                Box::pin(async move { not_held_is_ok(durable(applied).await.map(drop)) })
            }
            WriteRequest::BatchAck { queue, ids } => {
                let applied = engine.apply_ack_batch(&queue, &self.conn_id, &ids);
                Box::pin(async move {
                    let acked = match durable(applied).await {
                        Ok(outcome) => outcome.acked.len(),
                        Err(EngineError::QueueNotFound(_)) => 0,
                        Err(err) => return Err(err.into()),
                    };
                    ok_with([("acked", Value::from(acked))])
                })
            }
            WriteRequest::BatchNack { queue, ids } => {
                let applied = engine.apply_nack_batch(&queue, &self.conn_id, &ids);
                Box::pin(async move {
                    let (unlocked, dropped) = match durable(applied).await {
                        Ok(outcome) => (outcome.unlocked.len(), outcome.dead_lettered.len()),
                        Err(EngineError::QueueNotFound(_)) => (0, 0),
                        Err(err) => return Err(err.into()),
                    };
                    ok_with([
                        ("unlocked", Value::from(unlocked)),
                        ("dropped", Value::from(dropped)),
                    ])
                })
            }
            WriteRequest::Renew { queue, id, lock_token, timeout_secs } => {
                let applied =
                    engine.apply_renew(&queue, &id, &self.holder(lock_token), timeout_secs);
                Box::pin(async move {
                    match durable(applied).await {
                        Ok(until_ms) => ok_with([("locked_until_ms", Value::from(until_ms))]),
                        // A queue this connection holds nothing in: the message is not ours.
                        Err(EngineError::QueueNotFound(_)) => Err(EngineError::NotLocked.into()),
                        Err(err) => Err(err.into()),
                    }
                })
            }
        }
    }

    /// Runs a request that changes the connection itself to its reply.
    /// Requirements: WS-0010, WS-0011, WS-0012, WS-0018
    pub async fn handle_local(&mut self, request: LocalRequest) -> Reply {
        match request {
            LocalRequest::Subscribe { queue, credits } => self.subscribe(queue, credits),
            LocalRequest::Unsubscribe { queue } => {
                if let Some(sub) = self.subscriptions.remove(&queue) {
                    sub.stop().await;
                }
                ok()
            }
            LocalRequest::Credit { queue, credits } => match self.subscriptions.get(&queue) {
                Some(sub) => {
                    sub.credits.add(credits);
                    ok()
                }
                None => Err(WsError::new(
                    "not_subscribed",
                    format!("not subscribed to queue '{queue}'"),
                )),
            },
            LocalRequest::SubscribeLogs => {
                let Some(feed) = self.logs.subscribe() else {
                    return Err(WsError::new("not_available", "log streaming not configured"));
                };
                // Subscribing again restarts the stream, history included.
                if let Some(old) = self.log_stream.take() {
                    old.stop().await;
                }
                self.log_stream = Some(LogStream::start(feed, self.out.clone()));
                ok()
            }
            LocalRequest::UnsubscribeLogs => {
                if let Some(old) = self.log_stream.take() {
                    old.stop().await;
                }
                ok()
            }
        }
    }

    fn subscribe(&mut self, queue: String, credits: Option<u64>) -> Reply {
        // Subscribing twice changes nothing, credit included (0.15.0).
        if self.subscriptions.contains_key(&queue) {
            return ok();
        }
        if !self.engine.queue_exists(&queue) {
            return Err(EngineError::QueueNotFound(queue).into());
        }
        let sub = Subscription::start(
            Arc::clone(&self.engine),
            Arc::clone(&self.conn_id),
            queue.clone(),
            credits,
            self.out.clone(),
        );
        self.subscriptions.insert(queue, sub);
        ok()
    }

    fn holder(&self, lock_token: Option<String>) -> Holder {
        Holder { consumer_id: self.conn_id.to_string(), lock_token }
    }

    /// Stops every background task of the connection, then hands its unacked deliveries
    /// back to their queues. The order matters: a consume still running after the
    /// release would leave its message locked to a connection that is gone.
    /// Requirements: WS-0021
    pub async fn close(&mut self) {
        for sub in self.subscriptions.values() {
            sub.signal_stop();
        }
        for (_, sub) in self.subscriptions.drain() {
            sub.join().await;
        }
        if let Some(stream) = self.log_stream.take() {
            stream.stop().await;
        }
        match self.engine.release_consumer(&self.conn_id).await {
            Ok(0) => {}
            Ok(released) => tracing::debug!(released, "websocket disconnect released messages"),
            Err(err) => tracing::warn!(error = %err, "websocket disconnect release failed"),
        }
    }
}

/// 0.15.0: ack or nack of a message this connection does not hold is a silent success.
/// A lock token that names another delivery is still an error (`stale_lock`).
/// Requirements: WS-0015
fn not_held_is_ok(result: Result<(), EngineError>) -> Reply {
    match result {
        Ok(()) | Err(EngineError::NotLocked) | Err(EngineError::QueueNotFound(_)) => ok(),
        Err(err) => Err(err.into()),
    }
}
