//! The engine's resource limits, checked in one place before a publish is logged, and the
//! gauge of memory held by queued messages that the memory limit reads.
//!
//! The gauge is a counter kept by `QueueState` as messages enter and leave it (publish,
//! snapshot load, ack, purge, duplicate removal, dead-letter purge, queue deletion); it is
//! never computed by scanning the queues.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::EngineError;
use super::payload::stays_in_log;
use super::queue::QueueState;
use super::table::MAX_MESSAGES;
use super::types::{NewMessage, Priority};
use super::Result;

/// What one message costs in RAM beyond the payload bytes it holds in RAM (none when its
/// payload stays in the log) and its text priority: the `Message` itself, its entries in the
/// id map and in the ready index or the lock skip list, and its share of the duplicate set.
/// An estimate from the structure sizes, rounded up; it makes the limit hold for queues of
/// many small messages too.
pub const MESSAGE_OVERHEAD_BYTES: u64 = 256;

/// The bytes a message with this payload and priority is charged.
pub fn message_cost(payload_len: usize, priority: &Priority) -> u64 {
    let priority_len = match priority {
        Priority::Text(t) => t.len(),
        Priority::Num(_) => 0,
    };
    (payload_len + priority_len) as u64 + MESSAGE_OVERHEAD_BYTES
}

/// Longest `consumer_id` a consume accepts. Each lock keeps a copy of its holder's id, and
/// that copy is not charged to the memory gauge: without a cap one consume of a huge id
/// would hold megabytes the memory limit never sees, and a batch of such locks would make
/// a log record too big to write. Empty ids stay allowed: the 0.15.0 contract takes any
/// string.
pub const MAX_CONSUMER_ID_BYTES: usize = 255;

/// Refuses a `consumer_id` that a lock could not hold. Ack, nack and renew need no check:
/// an id above the cap never holds a lock, so they answer `not_locked`.
/// Requirements: SYS-0029
pub fn check_consumer_id(consumer_id: &str) -> Result<()> {
    if consumer_id.len() > MAX_CONSUMER_ID_BYTES {
        return Err(EngineError::InvalidRequest(format!(
            "consumer_id is {} bytes; at most {MAX_CONSUMER_ID_BYTES} are allowed",
            consumer_id.len()
        )));
    }
    Ok(())
}

/// Bytes held by every message and dead letter of every queue, and the publishes the
/// memory limit refused.
#[derive(Debug, Default)]
pub struct MemoryGauge {
    held: AtomicU64,
    refusals: AtomicU64,
}

impl MemoryGauge {
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Publishes refused with `memory_limit` since start.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    pub(super) fn add(&self, bytes: u64) {
        self.held.fetch_add(bytes, Ordering::Relaxed);
    }

    fn count_refusal(&self) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn sub(&self, bytes: u64) {
        // Never below zero: a bookkeeping slip must not wrap into "memory is full".
        let _ = self.held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
            Some(held.saturating_sub(bytes))
        });
    }
}

/// Limits of 0 mean "no limit".
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub max_queues: usize,
    pub max_messages_per_queue: usize,
    /// Largest payload of one message, in bytes.
    pub max_payload_bytes: usize,
    /// Most bytes all queued messages may hold (see `message_cost`).
    pub max_memory_bytes: u64,
}

impl Limits {
    /// Requirements: API-0029, SYS-0024
    pub fn check_queue_count(&self, queues: usize) -> Result<()> {
        if self.max_queues > 0 && queues >= self.max_queues {
            return Err(EngineError::QueueFull(format!(
                "the server holds {} queues, its limit",
                self.max_queues
            )));
        }
        Ok(())
    }

    /// Everything a publish of `msgs` into `state` must pass besides priorities and
    /// duplicates. Payloads above `spill_above` bytes (0: none) will stay in the log and
    /// cost no RAM.
    /// Requirements: API-0029, API-0031, SYS-0026
    // Limitation: nothing is reserved: publishes to other queues running at the same time
    // may each pass the memory check, overshooting the limit by up to one body each.
    pub fn check_publish(
        &self,
        state: &QueueState,
        msgs: &[NewMessage],
        gauge: &MemoryGauge,
        spill_above: usize,
    ) -> Result<()> {
        if self.max_payload_bytes > 0 {
            if let Some(m) = msgs.iter().find(|m| m.payload.len() > self.max_payload_bytes) {
                return Err(EngineError::PayloadTooLarge(format!(
                    "a payload of {} bytes is above the limit of {} bytes",
                    m.payload.len(),
                    self.max_payload_bytes
                )));
            }
        }
        // A queue's table holds at most `MAX_MESSAGES`, whatever the setting.
        let limit = match self.max_messages_per_queue {
            0 => MAX_MESSAGES,
            n => n.min(MAX_MESSAGES),
        } as u64;
        if state.len() + msgs.len() as u64 > limit {
            return Err(EngineError::QueueFull(format!(
                "queue '{}' holds {} messages; its limit is {limit}",
                state.name,
                state.len()
            )));
        }
        if self.max_memory_bytes > 0 {
            let in_ram = |len| if stays_in_log(spill_above, len) { 0 } else { len };
            let cost: u64 =
                msgs.iter().map(|m| message_cost(in_ram(m.payload.len()), &m.priority)).sum();
            // Counted as a refused publish (the metric), unlike other refusals.
            self.check_memory(gauge, cost, "the publish").inspect_err(|_| gauge.count_refusal())?;
        }
        Ok(())
    }

    /// Refuses `what`, which would add `cost` bytes to what `gauge` holds, with
    /// `MemoryLimit` when that passes the limit.
    /// Requirements: SYS-0026
    pub fn check_memory(&self, gauge: &MemoryGauge, cost: u64, what: &str) -> Result<()> {
        let (held, limit) = (gauge.held(), self.max_memory_bytes);
        if limit > 0 && held.saturating_add(cost) > limit {
            return Err(EngineError::MemoryLimit(format!(
                "queued messages hold {held} bytes; {what} needs {cost} more, which would pass \
                 the limit of {limit} bytes"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: SYS-0026
    #[test]
    fn the_gauge_never_goes_below_zero() {
        let g = MemoryGauge::default();
        g.add(10);
        g.sub(25);
        assert_eq!(g.held(), 0);
        g.add(7);
        assert_eq!(g.held(), 7);
    }

    // Verifies: SYS-0026
    #[test]
    fn text_priorities_count_towards_the_cost() {
        let num = message_cost(100, &Priority::Num(5));
        let text = message_cost(100, &Priority::Text("abcd".into()));
        assert_eq!(num, 100 + MESSAGE_OVERHEAD_BYTES);
        assert_eq!(text, num + 4);
    }
}
