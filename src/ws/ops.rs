//! What each request type does. Requests of one connection take effect one at a time, in
//! arrival order; writes then wait for their fsync side by side (see `start_write`).

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::errors::WsError;
use super::logstream::LogStream;
use super::outbound::Outbound;
use super::protocol::Request;
use super::subscription::Subscription;
use crate::engine::{Engine, EngineError, Holder, NewMessage};
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

/// A request whose reply waits only for the durability of what it already did.
pub type Write = BoxFuture<'static, Reply>;

impl Connection {
    /// Starts a request that changes queue state and touches nothing of the connection
    /// (publish, ack, nack, their batches, renew); any other request comes back as `Err`.
    ///
    /// Every engine call made here applies its change before its first wait, so the
    /// first poll of the returned future is when the request takes effect: the session
    /// polls it once at once, in arrival order, and only the wait for the fsync overlaps
    /// with later requests.
    /// Requirements: WS-0002, WS-0008, WS-0012, WS-0016, WS-0017
    pub fn start_write(&self, request: Request) -> Result<Write, Request> {
        let engine = Arc::clone(&self.engine);
        let holder = |lock_token| self.holder(lock_token);
        let conn_id = Arc::clone(&self.conn_id);
        Ok(match request {
            Request::Publish { queue, payload, priority, max_retries } => Box::pin(async move {
                let msg = NewMessage { priority, payload, max_retries };
                let id = engine.publish(&queue, msg).await?;
                ok_with([("id", Value::String(id))])
            }),
            Request::Ack { queue, id, lock_token } => {
                let holder = holder(lock_token);
                Box::pin(
                    async move { not_held_is_ok(engine.ack(&queue, &id, &holder).await.map(drop)) },
                )
            }
            Request::Nack { queue, id, lock_token } => {
                let holder = holder(lock_token);
                Box::pin(async move {
                    not_held_is_ok(engine.nack(&queue, &id, &holder).await.map(drop))
                })
            }
            Request::BatchAck { queue, ids } => Box::pin(async move {
                let acked = match engine.ack_batch(&queue, &conn_id, &ids).await {
                    Ok(outcome) => outcome.acked.len(),
                    Err(EngineError::QueueNotFound(_)) => 0,
                    Err(err) => return Err(err.into()),
                };
                ok_with([("acked", Value::from(acked))])
            }),
            Request::BatchNack { queue, ids } => Box::pin(async move {
                let (unlocked, dropped) = match engine.nack_batch(&queue, &conn_id, &ids).await {
                    Ok(outcome) => (outcome.unlocked.len(), outcome.dead_lettered.len()),
                    Err(EngineError::QueueNotFound(_)) => (0, 0),
                    Err(err) => return Err(err.into()),
                };
                ok_with([("unlocked", Value::from(unlocked)), ("dropped", Value::from(dropped))])
            }),
            Request::Renew { queue, id, lock_token, timeout_secs } => {
                let holder = holder(lock_token);
                Box::pin(async move {
                    match engine.renew(&queue, &id, &holder, timeout_secs).await {
                        Ok(until_ms) => ok_with([("locked_until_ms", Value::from(until_ms))]),
                        // A queue this connection holds nothing in: the message is not ours.
                        Err(EngineError::QueueNotFound(_)) => Err(EngineError::NotLocked.into()),
                        Err(err) => Err(err.into()),
                    }
                })
            }
            other => return Err(other),
        })
    }

    /// Runs any request to its reply.
    pub async fn handle(&mut self, request: Request) -> Reply {
        match self.start_write(request) {
            Ok(write) => write.await,
            Err(request) => self.handle_local(request).await,
        }
    }

    /// The requests that change the connection itself: subscriptions and log streams.
    async fn handle_local(&mut self, request: Request) -> Reply {
        match request {
            Request::Subscribe { queue, credits } => self.subscribe(queue, credits),
            Request::Unsubscribe { queue } => {
                if let Some(sub) = self.subscriptions.remove(&queue) {
                    sub.stop().await;
                }
                ok()
            }
            Request::Credit { queue, credits } => match self.subscriptions.get(&queue) {
                Some(sub) => {
                    sub.credits.add(credits);
                    ok()
                }
                None => Err(WsError::new(
                    "not_subscribed",
                    format!("not subscribed to queue '{queue}'"),
                )),
            },
            Request::SubscribeLogs => {
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
            Request::UnsubscribeLogs => {
                if let Some(old) = self.log_stream.take() {
                    old.stop().await;
                }
                ok()
            }
            // `handle` sends these to `start_write`, which takes every one of them.
            _ => unreachable!("a write request reached handle_local"),
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
