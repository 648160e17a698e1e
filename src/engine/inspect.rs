//! A read-only dump of the whole engine state, ids, locks and dead letters included, for
//! the crash fuzzer and tests that compare it with a model. Nothing on the wire uses it.

use super::messages::format_id;
use super::types::{Priority, QueueConfig};
use super::Engine;

/// One message as the engine holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageDump {
    pub id: String,
    /// The publish sequence number that breaks priority ties.
    pub seq: u64,
    pub priority: Priority,
    pub payload: String,
    pub max_retries: u32,
    pub retry_count: u32,
    /// Holder and deadline (epoch ms) of the lock, if any, expired or not.
    pub lock: Option<(String, u64)>,
}

/// One dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterDump {
    pub msg: MessageDump,
    pub at_ms: u64,
}

/// One queue: messages in delivery order (locked ones at the place they return to), dead
/// letters oldest first. Locks that expired are shown as they are, not settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDump {
    pub name: String,
    pub config: QueueConfig,
    pub messages: Vec<MessageDump>,
    pub dead: Vec<DeadLetterDump>,
}

impl Engine {
    /// Every queue, sorted by name. O(messages); takes each queue's lock in turn.
    pub fn inspect(&self) -> Vec<QueueDump> {
        let cat = self.catalog.read();
        cat.by_name
            .values()
            .filter_map(|qid| cat.queues.get(qid))
            .map(|q| {
                let st = q.state.lock();
                let (mut msgs, dead) = st.snapshot();
                let ordering = st.config.ordering;
                msgs.sort_by_cached_key(|m| m.key(ordering));
                let dump = |m: &super::queue::Message| MessageDump {
                    id: format_id(&m.id),
                    seq: m.seq,
                    priority: m.priority.clone(),
                    // Only tests and the fuzzer read this: an unreadable payload shows as
                    // such and fails their comparison.
                    payload: self
                        .payload_text(&m.payload)
                        .unwrap_or_else(|e| format!("<unreadable payload: {e}>")),
                    max_retries: m.max_retries,
                    retry_count: m.retry_count,
                    lock: m.lock.as_ref().map(|l| (l.consumer.to_string(), l.deadline_ms)),
                };
                QueueDump {
                    name: st.name.clone(),
                    config: st.config.clone(),
                    messages: msgs.iter().map(dump).collect(),
                    dead: dead
                        .iter()
                        .map(|d| DeadLetterDump { msg: dump(&d.msg), at_ms: d.at_ms })
                        .collect(),
                }
            })
            .collect()
    }
}
