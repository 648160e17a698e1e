//! Plain data types shared by the engine and the layers above it.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// How a queue picks its next message. Fixed when the queue is created.
/// Requirements: SCH-0001
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub enum Ordering {
    /// Highest priority first; equal priorities in publish order.
    #[default]
    MaxFirst,
    /// Lowest priority first; equal priorities in publish order.
    MinFirst,
    /// Publish order; the priority is stored but ignored.
    Fifo,
}

/// Whether a queue takes numeric (u64) or text priorities. Fixed at creation.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub enum PriorityKind {
    #[default]
    Numeric,
    Text,
}

/// A queue's configuration as clients see it.
/// Requirements: SCH-0009
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct QueueConfig {
    pub ordering: Ordering,
    pub allow_duplicates: bool,
    pub priority_kind: PriorityKind,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            ordering: Ordering::MaxFirst,
            allow_duplicates: true,
            priority_kind: PriorityKind::Numeric,
        }
    }
}

/// A message priority: a u64 on numeric queues, 1 to 255 bytes of UTF-8 on text queues.
/// Text is a `Box<str>`, so the enum takes 16 bytes (a `String` would make it 24, and every
/// queued message 16 bytes more as allocated). Encoded as a `String` is.
/// Requirements: SCH-0006, SCH-0007
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
#[serde(untagged)]
pub enum Priority {
    Num(u64),
    Text(Box<str>),
}

impl Priority {
    pub fn kind(&self) -> PriorityKind {
        match self {
            Priority::Num(_) => PriorityKind::Numeric,
            Priority::Text(_) => PriorityKind::Text,
        }
    }
}

/// What a publisher hands in for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub priority: Priority,
    pub payload: String,
    pub max_retries: u32,
}

/// One message handed to a consumer, now locked to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub queue: String,
    pub id: String,
    pub payload: String,
    pub priority: Priority,
    pub retry_count: u32,
    /// Opaque, new for every delivery; ack/nack/renew may name it to prove they hold
    /// this delivery and not an earlier one of the same message.
    pub lock_token: String,
    /// Nanoseconds since the Unix epoch at publish.
    pub created_at_ns: u64,
    pub locked_until_ms: u64,
}

/// Who claims to hold a lock: the 0.15.0 rule (consumer id), optionally tightened by a
/// lock token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub consumer_id: String,
    pub lock_token: Option<String>,
}

/// What a nack did with the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NackOutcome {
    Requeued,
    DeadLettered,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckBatchOutcome {
    /// Acked ids, in the queue's consumption order.
    pub acked: Vec<String>,
    /// Every requested id that was not acked, in request order.
    pub not_found: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NackBatchOutcome {
    pub unlocked: Vec<String>,
    pub dead_lettered: Vec<String>,
    pub not_found: Vec<String>,
}

/// Counts and rates of one queue, as `/stats` and `/queue-stats` report them.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueStats {
    pub name: String,
    pub available: u64,
    pub locked: u64,
    pub dead_lettered: u64,
    pub config: QueueConfig,
    pub publish_rate_per_sec: f64,
    pub ack_rate_per_sec: f64,
    pub nack_rate_per_sec: f64,
}

impl QueueStats {
    pub fn total(&self) -> u64 {
        self.available + self.locked
    }
}

/// One dead letter, as `GET /dlq/{queue}` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterView {
    pub id: String,
    pub payload: String,
    pub priority: Priority,
    pub retry_count: u32,
    pub dead_lettered_at_ms: u64,
}

/// One point of a queue's 1 s metrics series.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    pub t_ms: u64,
    pub total: u64,
    pub locked: u64,
    pub publish_rate_per_sec: f64,
    pub ack_rate_per_sec: f64,
    pub nack_rate_per_sec: f64,
}

/// Engine-wide counters for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineCounters {
    pub published: u64,
    pub acked: u64,
    pub nacked: u64,
    pub expired: u64,
    pub dead_lettered: u64,
}
