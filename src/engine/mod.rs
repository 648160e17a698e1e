//! The queue engine: every queue's state, the record type that changes it, and the one
//! function that applies a record. Live traffic and log replay go through that same
//! function, so what a restart rebuilds is what clients saw.

pub mod error;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

pub use error::EngineError;
pub use types::*;

use crate::clock::Clock;
use crate::wal::WalOptions;

/// Where the engine keeps its records.
#[derive(Clone, Debug)]
pub enum StorageConfig {
    /// No log at all: volatile.
    Memory,
    /// The write-ahead log.
    Wal(WalOptions),
}

/// Engine settings. Limits of 0 mean "no limit".
#[derive(Clone)]
pub struct EngineOptions {
    pub storage: StorageConfig,
    pub clock: Arc<dyn Clock>,
    pub max_queues: usize,
    pub max_messages_per_queue: usize,
}

/// Longest lock a consume or renew may ask for: 12 hours.
pub const MAX_TIMEOUT_SECS: u64 = 43_200;
/// Longest long-poll wait.
pub const MAX_WAIT_SECS: u64 = 20;
/// Most messages one consume-batch may take.
pub const MAX_CONSUME_BATCH: usize = 1000;
/// Default `max_retries` of a message.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

pub type Result<T> = std::result::Result<T, EngineError>;

pub struct Engine {
    _private: (),
}

#[allow(unused_variables)]
impl Engine {
    /// Opens the engine: with a log, replays it first.
    pub fn open(opts: EngineOptions) -> std::result::Result<Arc<Engine>, String> {
        todo!()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        todo!()
    }

    /// True when the engine runs with no log.
    pub fn is_volatile(&self) -> bool {
        todo!()
    }

    /// Creates a queue. `QueueExists` if it exists already (config untouched).
    pub async fn create_queue(&self, name: &str, config: QueueConfig) -> Result<()> {
        todo!()
    }

    /// Renames and/or changes `allow_duplicates`. Ordering and priority kind are fixed.
    pub async fn update_queue(
        &self,
        name: &str,
        new_name: Option<&str>,
        allow_duplicates: Option<bool>,
    ) -> Result<()> {
        todo!()
    }

    /// Deletes a queue with its messages and dead letters. Unknown queue: Ok(0).
    pub async fn delete_queue(&self, name: &str) -> Result<u64> {
        todo!()
    }

    /// Removes every message (locked ones too); keeps config and dead letters.
    pub async fn purge_queue(&self, name: &str) -> Result<u64> {
        todo!()
    }

    /// Purges every queue: (queues, messages).
    pub async fn purge_all(&self) -> Result<(u64, u64)> {
        todo!()
    }

    /// Deletes every queue: (queues, messages).
    pub async fn delete_all(&self) -> Result<(u64, u64)> {
        todo!()
    }

    /// Publishes one message; an unknown queue is created with the default config.
    /// Returns the message id.
    pub async fn publish(&self, queue: &str, msg: NewMessage) -> Result<String> {
        todo!()
    }

    /// Publishes several messages as one all-or-nothing durable write.
    pub async fn publish_batch(&self, queue: &str, msgs: Vec<NewMessage>) -> Result<Vec<String>> {
        todo!()
    }

    /// Takes up to `max` messages, locking each to `consumer_id` for `timeout_secs`.
    /// When none is available and `wait` is non-zero, waits up to that long for one.
    pub async fn consume(
        &self,
        queue: &str,
        consumer_id: &str,
        timeout_secs: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        todo!()
    }

    pub async fn ack(&self, queue: &str, id: &str, holder: &Holder) -> Result<()> {
        todo!()
    }

    pub async fn nack(&self, queue: &str, id: &str, holder: &Holder) -> Result<NackOutcome> {
        todo!()
    }

    pub async fn ack_batch(
        &self,
        queue: &str,
        consumer_id: &str,
        ids: &[String],
    ) -> Result<AckBatchOutcome> {
        todo!()
    }

    pub async fn nack_batch(
        &self,
        queue: &str,
        consumer_id: &str,
        ids: &[String],
    ) -> Result<NackBatchOutcome> {
        todo!()
    }

    /// Extends a held lock to now + `timeout_secs`; returns the new deadline (epoch ms).
    pub async fn renew(
        &self,
        queue: &str,
        id: &str,
        holder: &Holder,
        timeout_secs: u64,
    ) -> Result<u64> {
        todo!()
    }

    /// Puts every message locked by `consumer_id` back in its queue at once,
    /// `retry_count` kept (a WebSocket connection that went away).
    pub async fn release_consumer(&self, consumer_id: &str) -> Result<u64> {
        todo!()
    }

    pub fn queue_exists(&self, name: &str) -> bool {
        todo!()
    }

    /// Every existing queue, sorted by name (byte order).
    pub fn stats(&self) -> Vec<QueueStats> {
        todo!()
    }

    /// One queue's stats; unknown queue: zeros with the default config.
    pub fn queue_stats(&self, name: &str) -> Result<QueueStats> {
        todo!()
    }

    /// Sorted names of every existing queue.
    pub fn queue_names(&self) -> Vec<String> {
        todo!()
    }

    /// The 1 s metrics series of a queue, oldest first (at most 61 points).
    pub fn metrics_series(&self, name: &str) -> Vec<MetricPoint> {
        todo!()
    }

    /// Dead letters of a queue, oldest first.
    pub fn dlq_list(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetterView>> {
        todo!()
    }

    /// Moves dead letters (all, or the named ones) back to their original position with
    /// `retry_count` 0, honouring `allow_duplicates`. Returns how many moved.
    pub async fn dlq_redrive(&self, queue: &str, ids: Option<&[String]>) -> Result<u64> {
        todo!()
    }

    pub async fn dlq_purge(&self, queue: &str) -> Result<u64> {
        todo!()
    }

    /// Resolves when a message may have become available in `queue` (publish, nack,
    /// expiry, redrive) or when `deadline` passes. Used by long polls and WebSocket
    /// subscriptions.
    pub async fn wait_available(&self, queue: &str, deadline: tokio::time::Instant) {
        todo!()
    }

    /// Engine-wide event counters for `/metrics`.
    pub fn counters(&self) -> EngineCounters {
        todo!()
    }

    /// Takes one metrics sample of every queue (the 1 s sampler calls this).
    pub fn sample_metrics(&self) {
        todo!()
    }

    /// Makes every acknowledged write durable and stops the log writer.
    pub async fn shutdown(&self) {
        todo!()
    }
}
